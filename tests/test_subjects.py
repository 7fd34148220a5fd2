"""One person, one subject (issue 16 item 3): ``officer.a``, ``OFFICER.A``, ``ｏｆｆｉｃｅｒ.ａ``
and `` officer.a `` are one person wherever identity matters.

- four eyes: a proposal of ``officer.a`` cannot be approved by any spelling of it, and any
  spelling may withdraw it, also when the proposal was stored by an earlier release under
  another spelling; a genuinely different subject approves;
- the audit log: a subject filter finds every spelling of the subject, entries written before
  subjects were canonical included; an audit administrator's own entries stay hidden from it
  whatever their spelling;
- rate limits: every spelling takes from one bucket;
- ``relief-gateway token --subject`` mints the canonical spelling, as the gateway compares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import string
import uuid
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import String, literal, select, update

from authz.admin import Officer
from gateway import cli
from gateway.domain.clock import now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import RateLimited
from gateway.domain.principal import Principal, canonical_subject
from gateway.runtime.rate_limit import Rate, RateLimiter
from gateway.storage.audit_chain import append_entries
from gateway.storage.audit_log import prepare_subject_key, subject_key
from gateway.storage.models import AuditEntry, PolicyProposal
from tests.exchange_support import exchange_gateway, only_error  # noqa: F401
from tests.harness import Harness

# The spellings of the issue: case, full width, white space around.
SPELLINGS = (
    "OFFICER.A",
    "ｏｆｆｉｃｅｒ.ａ",
    " officer.a ",
    "\u3000Officer.A\t",
    "ＯＦＦＩＣＥＲ．Ａ",
)

PROPOSE = """
mutation Propose($title: String!, $add: [PolicyLineInput!]!) {
  proposePolicyChange(title: $title, add: $add) { id status proposedBy canApprove }
}"""
APPROVE = """
mutation Approve($id: ID!) { approvePolicyChange(id: $id) { id status decidedBy } }"""
REJECT = """
mutation Reject($id: ID!, $note: String!) {
  rejectPolicyChange(id: $id, note: $note) { id status decidedBy decisionNote }
}"""
PROPOSAL = "query P($id: ID!) { policyProposal(id: $id) { status canApprove } }"
LOG = """
query Log($filter: AuditFilter) {
  auditLog(filter: $filter, first: 200) { totalCount edges { node { id subject } } }
}"""


# --------------------------------------------------------------------------- spellings
def full_width(text: str) -> str:
    """ASCII printable characters as their full-width forms (U+FF01…U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


SUBJECT_CHARS = string.ascii_lowercase + string.digits + ".-_@" + "张王李赵民政局"
WHITE = st.sampled_from(["", " ", "  ", "\t", "\u3000", "\u00a0", "\n"])


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, str]:
    """(a canonical subject, another spelling of it): letters' case flipped at random, some
    characters full-width, white space of several kinds around."""
    subject = draw(st.text(SUBJECT_CHARS, min_size=1, max_size=24).map(str.strip))
    flips = draw(st.lists(st.booleans(), min_size=len(subject), max_size=len(subject)))
    widths = draw(st.lists(st.booleans(), min_size=len(subject), max_size=len(subject)))
    characters = [(c.upper() if flip else c) for c, flip in zip(subject, flips, strict=True)]
    characters = [full_width(c) if wide else c for c, wide in zip(characters, widths, strict=True)]
    return subject, draw(WHITE) + "".join(characters) + draw(WHITE)


@given(spelled())
def test_every_spelling_is_the_same_person(case: tuple[str, str]) -> None:
    subject, spelling = case
    assert canonical_subject(spelling) == subject
    officer = Officer(subject, Level.PROVINCE, "37")
    assert officer.is_subject(spelling)
    assert Officer(spelling, Level.PROVINCE, "37").is_subject(subject)
    # Rate limits: one bucket of one token for the person, whichever spelling comes first.
    limiter = RateLimiter(subject=Rate(per_second=0.001, burst=1), clock=lambda: 0.0)
    limiter.check(_principal(subject))
    with pytest.raises(RateLimited):
        limiter.check(_principal(spelling))


@given(spelled(), spelled())
def test_different_subjects_stay_different(first: tuple[str, str], second: tuple[str, str]) -> None:
    if first[0] == second[0]:
        return
    assert not Officer(first[0], Level.PROVINCE, "37").is_subject(second[1])
    limiter = RateLimiter(subject=Rate(per_second=0.001, burst=1), clock=lambda: 0.0)
    limiter.check(_principal(first[1]))
    limiter.check(_principal(second[1]))  # each its own bucket


def _principal(subject: str) -> Principal:
    return Principal(subject, Department.CIVIL_AFFAIRS, Level.COUNTY, "370102")


# --------------------------------------------------------------------------- the gateway
@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


def officer(gateway: Harness, subject: str) -> str:
    """A security administrator's token minted with exactly this ``sub``."""
    return gateway.token("big_data", "province", "37", roles=["security_admin"], subject=subject)


def auditor(gateway: Harness, subject: str) -> str:
    return gateway.token("big_data", "province", "37", roles=["audit_admin"], subject=subject)


async def ok(gateway: Harness, token: str, document: str, **variables: Any) -> dict[str, Any]:
    body = await gateway.query(token, document, variables)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


_COUNTIES = itertools.count(370101)


async def propose(gateway: Harness, proposer: str) -> str:
    """A fresh proposal (a line of its own) by ``proposer``; its id."""
    county = str(next(_COUNTIES))
    add = [
        {
            "subject": f"health@{county}:county",
            "object": "Person.phone",
            "action": "MASK",
            "purpose": "*",
        }
    ]
    data = await ok(gateway, officer(gateway, proposer), PROPOSE, title="一人一主体", add=add)
    proposal: dict[str, Any] = data["proposePolicyChange"]
    assert proposal["status"] == "PENDING"
    assert proposal["proposedBy"] == canonical_subject(proposer)
    assert proposal["canApprove"] is False
    return str(proposal["id"])


async def store_proposer(gateway: Harness, proposal_id: str, spelling: str) -> None:
    """The proposer as an earlier release stored it: the token's subject as spelled."""
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            update(PolicyProposal)
            .where(PolicyProposal.id == uuid.UUID(proposal_id))
            .values(proposed_by=spelling)
        )


@pytest.mark.parametrize(
    "legacy", [None, "OFFICER.A", "ｏｆｆｉｃｅｒ.ａ"], ids=["new", "upper", "wide"]
)
async def test_four_eyes_matrix(gw: Harness, legacy: str | None) -> None:
    """Propose as ``officer.a``; every spelling of it is refused approval and may withdraw;
    ``officer.b`` approves. ``legacy``: the proposal's proposer as stored by an earlier release."""
    for spelling in ("officer.a", *SPELLINGS):
        proposal_id = await propose(gw, "officer.a")
        if legacy is not None:
            await store_proposer(gw, proposal_id, legacy)
        token = officer(gw, spelling)
        seen = await ok(gw, token, PROPOSAL, id=proposal_id)
        assert seen["policyProposal"]["canApprove"] is False, spelling
        body = await gw.query(token, APPROVE, {"id": proposal_id})
        path, code, message = only_error(body)
        assert (path, code) == (("approvePolicyChange",), "FORBIDDEN"), spelling
        assert "四眼原则" in message
        # ... the same person withdraws it (recorded as the proposer's withdrawal).
        data = await ok(gw, token, REJECT, id=proposal_id, note="撤回")
        withdrawn = data["rejectPolicyChange"]
        assert withdrawn["status"] == "REJECTED"
        assert withdrawn["decisionNote"] == "(申请人撤回) 撤回", spelling
        assert withdrawn["decidedBy"] == "officer.a"

    # A genuinely different person approves.
    proposal_id = await propose(gw, "OFFICER.A")
    if legacy is not None:
        await store_proposer(gw, proposal_id, legacy)
    other = officer(gw, "officer.b")
    assert (await ok(gw, other, PROPOSAL, id=proposal_id))["policyProposal"]["canApprove"]
    data = await ok(gw, other, APPROVE, id=proposal_id)
    assert data["approvePolicyChange"]["status"] == "APPROVED"
    assert data["approvePolicyChange"]["decidedBy"] == "officer.b"


async def test_a_withdrawal_by_someone_else_is_a_rejection(gw: Harness) -> None:
    proposal_id = await propose(gw, "officer.a")
    data = await ok(gw, officer(gw, "officer.a2"), REJECT, id=proposal_id, note="不同意")
    assert data["rejectPolicyChange"]["decisionNote"] == "不同意"  # not "(申请人撤回)"


# --------------------------------------------------------------------------- the audit log
async def _legacy_entries(gateway: Harness, subjects: list[str]) -> list[int]:
    """Entries as an earlier release wrote them: each subject as its token spelled it."""
    entries = [
        AuditEntry(
            occurred_at=now_utc(),
            request_id=str(uuid.uuid4()),
            subject=subject,
            department="civil_affairs",
            level="county",
            region="370102",
            purpose="relief_recognition",
            operation="Lookup",
            policy_version=1,
            person_ids="[]",
            fields=json.dumps({"Person.name": "read"}),
        )
        for subject in subjects
    ]
    async with gateway.runtime.sessions() as session:
        await append_entries(session, entries)
    return [entry.id for entry in entries]


async def test_audit_filter_finds_every_spelling(gw: Harness) -> None:
    tag = uuid.uuid4().hex[:6]
    person = f"clerk.{tag}"
    spellings = [person, person.upper(), full_width(person), f" {person.title()} "]
    ids = await _legacy_entries(gw, [*spellings, f"clerk.{tag}x", f"{tag}.clerk"])
    reader = auditor(gw, f"auditor-{tag}")
    for asked in (person, person.upper(), f"\u3000{full_width(person.upper())} "):
        log = (await ok(gw, reader, LOG, filter={"subject": asked}))["auditLog"]
        found = sorted(int(edge["node"]["id"]) for edge in log["edges"])
        assert found == ids[:4], asked
        assert log["totalCount"] == 4
        # Shown as recorded: the evidence is not rewritten.
        assert {edge["node"]["subject"] for edge in log["edges"]} == set(spellings)


async def test_own_entries_stay_hidden_in_every_spelling(gw: Harness) -> None:
    tag = uuid.uuid4().hex[:6]
    me = f"auditor.{tag}"
    own = await _legacy_entries(gw, [me.upper(), full_width(me), f" {me} "])
    mine = auditor(gw, f" {me.upper()}")
    log = (await ok(gw, mine, LOG))["auditLog"]
    assert not {int(edge["node"]["id"]) for edge in log["edges"]} & set(own)
    assert all(canonical_subject(edge["node"]["subject"]) != me for edge in log["edges"])
    body = await gw.query(mine, LOG, {"filter": {"subject": full_width(me)}})
    _, code, message = only_error(body)
    assert code == "FORBIDDEN"
    assert "本人" in message
    # Another audit administrator reads them (and this one's queries just made).
    log = (await ok(gw, auditor(gw, "auditor.other"), LOG, filter={"subject": me}))["auditLog"]
    found = {int(edge["node"]["id"]) for edge in log["edges"]}
    assert set(own) <= found
    assert len(found) == len(own) + 1  # + its query above (the refused one read nothing)


async def test_sql_key_is_the_canonical_subject(gw: Harness) -> None:
    """The key the database computes for a stored subject equals canonical_subject, on each
    backend, for the spellings of the issue and more."""
    cases = [
        *SPELLINGS,
        "officer.a",
        "Ｚｈａｎｇ\u3000",
        "民政局-张三",
        "\u00a0ＣＩＶＩＬ_AFFAIRS-County-370102\n",
        "①②",
        "ﬁle.clerk",
        "K\u212a",  # Kelvin sign
        "\x1f Officer.A\x1c",  # ASCII white space Python strips too
        "\u2028ｏｆｆｉｃｅｒ.a\u1680",  # white space NFKC keeps
        "",
        "   ",
    ]
    async with gw.runtime.engine.connect() as connection:
        await prepare_subject_key(connection)
        dialect = connection.dialect.name
        keys = (
            await connection.execute(
                select(*(subject_key(literal(case, String), dialect) for case in cases))
            )
        ).one()
    assert list(keys) == [canonical_subject(case) for case in cases]


# --------------------------------------------------------------------------- tokens
def run_cli(gateway: Harness, *args: str) -> tuple[int, str, str]:
    settings = gateway.runtime.settings
    argv = [*args, "--data-dir", str(settings.data_dir)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


TOKEN = ("token", "--dept", "big_data", "--level", "province", "--region", "37")


async def test_token_command_mints_the_canonical_subject(gw: Harness) -> None:
    key = gw.runtime.settings.token_key_path.read_text().strip().encode()
    for given_subject in ("officer.a", " ＯＦＦＩＣＥＲ.A ", "Officer.A"):
        code, out, err = await asyncio.to_thread(
            run_cli, gw, *TOKEN, "--subject", given_subject, "--role", "security_admin"
        )
        assert code == 0, err
        claims = jwt.decode(out.strip(), key, algorithms=["HS256"], issuer="relief-gateway")
        assert claims["sub"] == "officer.a"
        assert ("规范形式" in err) is (given_subject != "officer.a")
        # ... and the gateway sees the same person.
        principal = await gw.runtime.tokens.verify(out.strip())
        assert principal.subject == "officer.a"
    code, out, err = await asyncio.to_thread(run_cli, gw, *TOKEN, "--subject", " \u3000 ")
    assert (code, out) == (2, "")
    assert "不能为空" in err
    assert "Traceback" not in err


async def test_tokens_of_every_spelling_verify_to_one_subject(gw: Harness) -> None:
    for spelling in SPELLINGS:
        principal = await gw.runtime.tokens.verify(officer(gw, spelling))
        assert principal.subject == "officer.a"
