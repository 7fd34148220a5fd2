"""Separation of duties (三权分立, issue 16 item 4; 等保 8.1.5, GB/T 39786 §8.6).

- ``security_admin`` (and its deprecated alias ``security_officer``): policies, proposals,
  review, simulation; ``audit_admin``: the audit log, explanations, the chain's verification;
  ``system_admin``: the commands on the server (no GraphQL duty beyond ``me``); anyone else:
  none of these. Every other combination is FORBIDDEN, and nothing is recorded for a refusal.
- No subject holds two administrator roles: refused by ``relief-gateway token`` and at sign-in
  (HTTP 401, in Chinese), for every pair.
- The administrators' own trail: policy changes, simulations, explanations, audit queries and
  verifications, and commands run on the server each write an entry naming the operation; the
  audit administrator reads them all except its own (another audit administrator reads
  those); no field of the API alters the trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from gateway import cli
from gateway.domain.errors import BadUserInput
from gateway.domain.principal import ADMIN_ROLES, SECURITY_OFFICER, SYSTEM_ADMIN
from gateway.storage.admin_audit import record_admin_action
from gateway.storage.audit_chain import verify_chain
from tests.exchange_support import (  # noqa: F401
    audit_entries,
    exchange_gateway,
    last_audit_id,
    only_error,
)
from tests.harness import Harness

ROLE_NAMES = sorted(ADMIN_ROLES | {SECURITY_OFFICER})
# Pairs of distinct duties (security_officer is security_admin under its old name).
PAIRS = [
    pair
    for pair in itertools.combinations(ROLE_NAMES, 2)
    if set(pair) != {"security_admin", "security_officer"}
]

PROPOSE = """
mutation Propose($title: String!, $add: [PolicyLineInput!]!) {
  proposePolicyChange(title: $title, add: $add) { id status }
}"""
APPROVE = "mutation A($id: ID!) { approvePolicyChange(id: $id) { id status } }"
REJECT = "mutation R($id: ID!, $note: String!) { rejectPolicyChange(id: $id, note: $note) { id } }"
SIMULATE = """
query S($id: ID!, $subject: SimulatedSubject!, $query: String!) {
  simulateAccess(proposalId: $id, subject: $subject, query: $query) {
    current { errors { path code message } }
  }
}"""
LOG = """
query L($filter: AuditFilter) {
  auditLog(filter: $filter, first: 200) {
    edges { node { id subject operation fields { field effect } } }
  }
}"""
CHAIN = "query C { auditChain { ok entries } }"
EXPLAIN = "query E($id: ID!) { explainAccess(auditEntryId: $id) { entryId subject } }"
ME = "query M { me { subject roles } }"

# What each duty's GraphQL fields need (a document and its variables, given a proposal and an
# audit entry to work on).
DUTIES: dict[str, str] = {
    "policies": "security",
    "policyProposals": "security",
    "policyMatrix": "security",
    "proposePolicyChange": "security",
    "simulateAccess": "security",
    "auditLog": "audit",
    "auditChain": "audit",
    "explainAccess": "audit",
}
ROLE_DUTY = {
    "security_admin": "security",
    "security_officer": "security",
    "audit_admin": "audit",
    "system_admin": None,
    None: None,
}


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


def admin(gateway: Harness, role: str | None, subject: str) -> str:
    roles = [role] if role else []
    return gateway.token("big_data", "province", "37", roles=roles, subject=subject)


async def ok(gateway: Harness, token: str, document: str, **variables: Any) -> dict[str, Any]:
    body = await gateway.query(token, document, variables)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


_COUNTIES = itertools.count(370201)


async def propose(gateway: Harness, token: str) -> str:
    county = next(_COUNTIES)
    add = [{"subject": f"health@{county}:county", "object": "Person.phone", "action": "MASK"}]
    data = await ok(gateway, token, PROPOSE, title="三权分立", add=add)
    return str(data["proposePolicyChange"]["id"])


def documents(proposal_id: str, entry_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
    county = next(_COUNTIES)
    line = {"subject": f"health@{county}:county", "object": "Person.phone", "action": "MASK"}
    subject = {"department": "HEALTH", "level": "COUNTY", "region": "370102"}
    return {
        "policies": ("query { policies { version } }", {}),
        "policyProposals": ("query { policyProposals { totalCount } }", {}),
        "policyMatrix": ("query { policyMatrix { version } }", {}),
        "proposePolicyChange": (PROPOSE, {"title": "职责", "add": [line]}),
        "simulateAccess": (
            SIMULATE,
            {"id": proposal_id, "subject": subject, "query": "{ me { subject } }"},
        ),
        "auditLog": (LOG, {}),
        "auditChain": (CHAIN, {}),
        "explainAccess": (EXPLAIN, {"id": str(entry_id)}),
    }


# --------------------------------------------------------------------------- who does what
@pytest.mark.parametrize("role", list(ROLE_DUTY), ids=lambda r: r or "no-role")
async def test_each_role_only_its_duties(gw: Harness, role: str | None) -> None:
    proposal_id = await propose(gw, admin(gw, "security_admin", "setup.officer"))
    entry_id = await last_audit_id(gw)  # the proposal's own entry, by someone else
    token = admin(gw, role, f"duty-{role or 'none'}")
    for field, (document, variables) in documents(proposal_id, entry_id).items():
        allowed = DUTIES[field] == ROLE_DUTY[role]
        before = await last_audit_id(gw)
        body = await gw.query(token, document, variables)
        if allowed:
            assert "errors" not in body, (field, body)
            continue
        assert not (body["data"] or {}).get(field), (field, body)
        path, code, message = only_error(body)
        assert (path, code) == ((field,), "FORBIDDEN"), (field, body)
        assert "三权分立" in message or "仅安全管理员" in message, message
        assert await last_audit_id(gw) == before, field  # a refusal reads and records nothing


async def test_system_admin_sees_itself_only(gw: Harness) -> None:
    data = await ok(gw, admin(gw, "system_admin", "ops.admin"), ME)
    assert data["me"] == {"subject": "ops.admin", "roles": ["system_admin"]}


async def test_simulating_the_audit_role_reads_no_audit(gw: Harness) -> None:
    """A security administrator cannot borrow the audit role through a simulation."""
    officer = admin(gw, "security_admin", "sim.officer")
    proposal_id = await propose(gw, admin(gw, "security_admin", "sim.proposer"))
    subject = {"department": "BIG_DATA", "level": "PROVINCE", "region": "37", "roles": []}
    for query in ("{ auditLog { totalCount } }", "{ auditChain { ok } }"):
        for roles in (["audit_admin"], ["security_officer"]):
            subject["roles"] = roles
            data = await ok(gw, officer, SIMULATE, id=proposal_id, subject=subject, query=query)
            errors = data["simulateAccess"]["current"]["errors"]
            assert [error["code"] for error in errors] == ["FORBIDDEN"], (query, roles, errors)


# --------------------------------------------------------------------------- two roles
@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
async def test_two_roles_refused_at_sign_in(gw: Harness, pair: tuple[str, str]) -> None:
    """A token the identity platform (or anyone with the key) signed with two duties: 401."""
    key = gw.runtime.settings.token_key_path.read_text().strip().encode()
    now = int(time.time())
    claims = {
        "iss": gw.runtime.settings.token_issuer,
        "sub": "two.hats",
        "dept": "big_data",
        "level": "province",
        "region": "37",
        "roles": list(pair),
        "iat": now,
        "exp": now + 600,
    }
    token = jwt.encode(claims, key, algorithm="HS256")
    response = await gw.post(token, ME)
    assert response.status_code == 401, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "三权分立" in error["message"], error["message"]
    assert "不得兼任" in error["message"]


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
async def test_two_roles_refused_by_the_token_command(gw: Harness, pair: tuple[str, str]) -> None:
    with pytest.raises(BadUserInput, match="三权分立"):
        gw.runtime.tokens.mint(
            subject="two.hats", dept="big_data", level="province", region="37", roles=list(pair)
        )
    code, out, err = await asyncio.to_thread(
        run_cli, gw, "token", "--dept", "big_data", "--level", "province", "--region", "37",
        "--role", pair[0], "--role", pair[1],
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert "三权分立" in err
    assert "Traceback" not in err


async def test_the_alias_and_its_role_are_one_duty(gw: Harness) -> None:
    token = gw.token("big_data", "province", "37", roles=["security_officer", "security_admin"])
    data = await ok(gw, token, ME)
    assert data["me"]["roles"] == ["security_admin"]


# --------------------------------------------------------------------------- the trail
def run_cli(gateway: Harness, *args: str) -> tuple[int, str, str]:
    settings = gateway.runtime.settings
    argv = [*args, "--data-dir", str(settings.data_dir)]
    if args[0] != "token":
        argv += ["--database-url", settings.resolved_database_url]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _released(entry: Any) -> dict[str, str]:
    fields: dict[str, str] = json.loads(entry.fields)
    return fields


async def test_administrators_actions_are_in_the_trail(gw: Harness) -> None:
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice.{tag}", f"bob.{tag}"  # security administrators
    carol, dave = f"carol.{tag}", f"dave.{tag}"  # audit administrators
    erin = f"erin.{tag}"  # system administrator
    start = await last_audit_id(gw)

    # The security administrators' work.
    approved = await propose(gw, admin(gw, "security_admin", alice))
    await ok(gw, admin(gw, "security_admin", bob), APPROVE, id=approved)
    rejected = await propose(gw, admin(gw, "security_admin", alice))
    await ok(gw, admin(gw, "security_admin", bob), REJECT, id=rejected, note="依据不足")
    own = await propose(gw, admin(gw, "security_admin", alice))
    refused = await gw.query(admin(gw, "security_admin", alice), APPROVE, {"id": own})
    assert only_error(refused)[1] == "FORBIDDEN"  # four eyes: the attempt is recorded too
    subject = {"department": "HEALTH", "level": "COUNTY", "region": "370102"}
    query = "{ persons(first: 1) { edges { node { name } } } }"
    await ok(gw, admin(gw, "security_admin", bob), SIMULATE, id=own, subject=subject, query=query)
    # The system administrator's command on the server.
    await record_admin_action(
        gw.runtime.settings,
        role=SYSTEM_ADMIN,
        operation="keys rotate",
        operator=erin.upper(),
        details={"key": "dk-test"},
    )
    # The audit administrators' work.
    await ok(gw, admin(gw, "audit_admin", carol), CHAIN)
    await ok(gw, admin(gw, "audit_admin", carol), LOG, filter={"subject": alice})
    await ok(gw, admin(gw, "audit_admin", carol), EXPLAIN, id=str(start + 1))

    trail = [(e.subject, e.operation, _released(e)) for e in await audit_entries(gw, start)]
    policy = {"Policy.change": "read"}
    assert trail == [
        (alice, "proposePolicyChange", policy),
        (bob, "approvePolicyChange", policy),
        (alice, "proposePolicyChange", policy),
        (bob, "rejectPolicyChange", policy),
        (alice, "proposePolicyChange", policy),
        (alice, "approvePolicyChange", policy),  # refused, but attempted
        (bob, "simulateAccess", {"Simulation.shapes": "read"}),
        (
            erin,
            "relief-gateway keys rotate",
            {"Admin.key": "dk-test", "Admin.role": "system_admin"},
        ),
        (carol, "auditChain", {"AuditLog.chain": "read"}),
        (carol, "auditLog", {"AuditLog.entries": "read"}),
        (carol, "explainAccess", {"AuditLog.explanation": "read"}),
    ]

    # Dave (another audit administrator) reads all of it; carol all but her own.
    dave_sees = await _trail_seen(gw, admin(gw, "audit_admin", dave), start)
    carol_sees = await _trail_seen(gw, admin(gw, "audit_admin", carol), start)
    everyone = [subject for subject, _, _ in trail]
    assert [s for s in dave_sees if s != dave] == everyone
    assert carol not in carol_sees
    assert [s for s in carol_sees if s != carol] == [s for s in everyone if s != carol] + [dave]
    # The security and system administrators read none of it, their own included.
    for role, who in (("security_admin", alice), ("system_admin", erin)):
        body = await gw.query(admin(gw, role, who), LOG, {"filter": {"subject": who}})
        assert only_error(body)[1] == "FORBIDDEN"


async def _trail_seen(gateway: Harness, token: str, after: int) -> list[str]:
    """Subjects of the entries after ``after`` that ``token``'s holder reads, oldest first."""
    data = await ok(gateway, token, LOG)
    nodes = [edge["node"] for edge in data["auditLog"]["edges"]]
    return [node["subject"] for node in reversed(nodes) if int(node["id"]) > after]


async def test_explanations_of_own_entries_look_absent(gw: Harness) -> None:
    carol = f"carol.{uuid.uuid4().hex[:6]}"
    token = admin(gw, "audit_admin", carol)
    await ok(gw, token, CHAIN)  # an entry of carol's
    own = await last_audit_id(gw)
    assert (await ok(gw, token, EXPLAIN, id=str(own)))["explainAccess"] is None
    other = await ok(gw, admin(gw, "audit_admin", "dave.x"), EXPLAIN, id=str(own))
    assert other["explainAccess"]["subject"] == carol


async def test_record_admin_action_refuses_bad_input(gw: Harness) -> None:
    settings = gw.runtime.settings
    with pytest.raises(BadUserInput, match="管理员角色"):
        await record_admin_action(settings, role="clerk", operation="keys rotate")
    with pytest.raises(BadUserInput, match="不能为空"):
        await record_admin_action(settings, role=SYSTEM_ADMIN, operation="x", operator=" \u3000")
    entry = await record_admin_action(settings, role="security_officer", operation="policy import")
    assert _released(entry) == {"Admin.role": "security_admin"}
    assert entry.subject  # the operating-system user, canonical
    assert entry.subject == entry.subject.strip().casefold()


# --------------------------------------------------------------------------- no alteration
async def test_no_field_of_the_api_alters_the_trail(gw: Harness) -> None:
    introspection = """
    query { __schema { mutationType { fields { name type { name ofType { name } } } } } }"""
    data = await ok(gw, admin(gw, "audit_admin", "introspector"), introspection)
    mutations = data["__schema"]["mutationType"]["fields"]
    for field in mutations:
        returned = field["type"]["name"] or (field["type"]["ofType"] or {}).get("name") or ""
        assert "audit" not in field["name"].lower(), field
        assert "Audit" not in returned, field
    # Everything this module's tests did is still one intact chain.
    async with gw.runtime.sessions() as session:
        report = await verify_chain(session)
    assert report.ok, report
