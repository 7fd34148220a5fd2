"""Policy administration through GraphQL (issue 5 §1, §6): only security officers, each within
its jurisdiction; four-eyes approval; every version kept, a rollback is a new version; a
proposal's field effects and the console's grid; an approved region-limited line enforced on
the very next request; ``policy export``/``policy import`` round-trip through the same
proposal path.

One gateway per backend for the module (SQLite and PostgreSQL): the policy moves on from test
to test, so every test reads the version in force instead of assuming a number, and uses lines
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from authz.store import PolicyLine, parse_policy_text
from gateway import cli
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.exchange_support import (  # noqa: F401
    exchange_gateway,
    extra_policy,
    identity,
    nodes,
    only_error,
    pushed,
    someone,
)
from tests.harness import Harness

OFFICER = ["security_officer"]

POLICIES = "query { policies { version createdAt createdBy note lines { subject object action purpose region editable } } }"  # noqa: E501
PROPOSAL_FIELDS = """
  id status title note proposedBy proposedAt baseVersion decidedBy decidedAt decisionNote
  resultingVersion canApprove
  added { subject object action purpose region editable }
  removed { subject object action purpose region editable }
"""
PROPOSE = f"""
mutation Propose($title: String!, $note: String, $add: [PolicyLineInput!]! = [],
                 $remove: [PolicyLineInput!]! = []) {{
  proposePolicyChange(title: $title, note: $note, add: $add, remove: $remove) {{
    {PROPOSAL_FIELDS}
  }}
}}
"""
APPROVE = f"""
mutation Approve($id: ID!, $note: String) {{
  approvePolicyChange(id: $id, note: $note) {{ {PROPOSAL_FIELDS} }}
}}
"""
REJECT = f"""
mutation Reject($id: ID!, $note: String!) {{
  rejectPolicyChange(id: $id, note: $note) {{ {PROPOSAL_FIELDS} }}
}}
"""
ROLLBACK = f"""
mutation Rollback($version: Int!, $note: String) {{
  proposePolicyRollback(version: $version, note: $note) {{ {PROPOSAL_FIELDS} }}
}}
"""
PROPOSAL = f"""
query Proposal($id: ID!) {{
  policyProposal(id: $id) {{
    {PROPOSAL_FIELDS}
    fieldChanges {{ subject field before after }}
  }}
}}
"""
PROPOSALS = f"""
query Proposals($status: ProposalStatus, $first: Int = 20, $after: String) {{
  policyProposals(status: $status, first: $first, after: $after) {{
    totalCount pageInfo {{ hasNextPage endCursor }}
    edges {{ cursor node {{ {PROPOSAL_FIELDS} }} }}
  }}
}}
"""
VERSIONS = """
query Versions($first: Int = 20, $after: String) {
  policyVersions(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { version createdAt createdBy approvedBy note proposalId lineCount
                          lines { subject object action purpose } } }
  }
}
"""
MATRIX = """
query Matrix($proposalId: ID) {
  policyMatrix(proposalId: $proposalId) {
    version proposalId subjects fields cells { subject field effect changed }
  }
}
"""
PHONES = """
query Phones($prefix: String!) {
  persons(filter: {regionPrefix: $prefix}, first: 200) { edges { node { idNumber phone } } }
}
"""


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


# ---------------------------------------------------------------------------- helpers
def officer(gateway: Harness, name: str, level: str = "province", region: str = "37") -> str:
    """A security officer's token (the department does not matter for policy work)."""
    return gateway.token("big_data", level, region, roles=OFFICER, subject=name)


def line(subject: str, obj: str, action: str = "read", purpose: str = "*") -> dict[str, str]:
    return {"subject": subject, "object": obj, "action": action.upper(), "purpose": purpose}


def stored(given: dict[str, str]) -> PolicyLine:
    return (given["subject"], given["object"], given["action"].lower(), given["purpose"])


async def ok(gateway: Harness, token: str, document: str, **variables: Any) -> dict[str, Any]:
    body = await gateway.query(token, document, variables)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def refused(gateway: Harness, token: str, document: str, **variables: Any) -> tuple[str, str]:
    """(code, message) of the one error a refused call returns."""
    body = await gateway.query(token, document, variables)
    _, code, message = only_error(body)
    return code, message


async def propose(
    gateway: Harness,
    token: str,
    title: str,
    add: list[dict[str, str]] | None = None,
    remove: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    data = await ok(gateway, token, PROPOSE, title=title, add=add or [], remove=remove or [])
    proposal: dict[str, Any] = data["proposePolicyChange"]
    return proposal


async def approve(gateway: Harness, token: str, proposal_id: str) -> dict[str, Any]:
    data = await ok(gateway, token, APPROVE, id=proposal_id, note="同意")
    approved: dict[str, Any] = data["approvePolicyChange"]
    return approved


async def in_force(gateway: Harness) -> dict[str, Any]:
    data = await ok(gateway, officer(gateway, "reader"), POLICIES)
    policies: dict[str, Any] = data["policies"]
    return policies


async def installed(gateway: Harness, *lines: dict[str, str]) -> int:
    """Propose and approve ``lines`` (two province officers); the new version."""
    proposal = await propose(gateway, officer(gateway, "setup-a"), "测试准备", list(lines))
    return int(
        (await approve(gateway, officer(gateway, "setup-b"), proposal["id"]))["resultingVersion"]
    )


async def assert_consistent(gateway: Harness) -> None:
    """casbin_rule (what is enforced) holds exactly the snapshot of the version in force."""
    async with gateway.runtime.engine.connect() as connection:
        rules = await connection.execute(
            select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3).where(
                CasbinRule.ptype == "p"
            )
        )
        enforced = Counter((r[0], r[1], r[2], r[3]) for r in rules)
        latest = (
            await connection.execute(
                select(PolicyVersion.lines).order_by(PolicyVersion.id.desc()).limit(1)
            )
        ).scalar_one()
    assert latest is not None
    assert Counter(tuple(x) for x in json.loads(latest)) == enforced


# ============================================================================ who may
NON_OFFICER_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "policies": (POLICIES, {}),
    "policyVersions": (VERSIONS, {}),
    "policyProposals": (PROPOSALS, {}),
    "policyProposal": (PROPOSAL, {"id": "00000000-0000-0000-0000-000000000000"}),
    "policyMatrix": (MATRIX, {}),
    "proposePolicyChange": (
        PROPOSE,
        {"title": "t", "add": [line("civil_affairs@3701:county", "Person.phone")]},
    ),
    "proposePolicyRollback": (ROLLBACK, {"version": 1}),
    "approvePolicyChange": (APPROVE, {"id": "00000000-0000-0000-0000-000000000000"}),
    "rejectPolicyChange": (
        REJECT,
        {"id": "00000000-0000-0000-0000-000000000000", "note": "no"},
    ),
}


@pytest.mark.parametrize("call", sorted(NON_OFFICER_CALLS))
@pytest.mark.parametrize(
    ("dept", "level", "region"),
    [("medical_insurance", "province", "37"), ("civil_affairs", "county", "370102")],
    ids=["mib-province-without-the-role", "civil-county"],
)
async def test_only_security_officers_reach_the_policy(
    gw: Harness, call: str, dept: str, level: str, region: str
) -> None:
    document, variables = NON_OFFICER_CALLS[call]
    token = gw.token(dept, level, region, subject=f"not-an-officer-{dept}")
    code, message = await refused(gw, token, document, **variables)
    assert code == "FORBIDDEN"
    assert message.startswith("仅安全管理员")


# ============================================================================ reading
async def test_policies_are_the_lines_in_force(gw: Harness) -> None:
    policies = await in_force(gw)
    async with gw.runtime.engine.connect() as connection:
        version = (
            (await connection.execute(select(PolicyVersion.id).order_by(PolicyVersion.id.desc())))
            .scalars()
            .first()
        )
        count = len((await connection.execute(select(CasbinRule.id))).all())
    assert policies["version"] == version
    assert len(policies["lines"]) == count
    assert {"subject": "civil_affairs:*", "object": "Person.phone", "action": "MASK",
            "purpose": "*", "region": None, "editable": True} in policies["lines"]  # fmt: skip
    assert all(entry["editable"] for entry in policies["lines"])  # a province officer


async def test_editable_follows_the_officers_jurisdiction(gw: Harness) -> None:
    jinan = line("health@3701:*", "Person.address")
    await installed(gw, jinan)

    def editable(policies: dict[str, Any]) -> dict[tuple[str, str], bool]:
        return {(e["subject"], e["object"]): e["editable"] for e in policies["lines"]}

    seen = {
        who: editable((await ok(gw, officer(gw, who, level, region), POLICIES))["policies"])
        for who, level, region in [
            ("city-3701", "city", "3701"),
            ("city-3702", "city", "3702"),
            ("county-370102", "county", "370102"),
        ]
    }
    assert seen["city-3701"][("health@3701:*", "Person.address")] is True
    assert seen["city-3702"][("health@3701:*", "Person.address")] is False
    # A county lies inside the city, but the city's line binds the whole city.
    assert seen["county-370102"][("health@3701:*", "Person.address")] is False
    for found in seen.values():  # never a province-wide line below the province
        assert found[("civil_affairs:*", "Person.phone")] is False
    region = {(e["subject"], e["object"]): e["region"] for e in (await in_force(gw))["lines"]}
    assert region[("health@3701:*", "Person.address")] == "3701"


# ============================================================================ proposing
INVALID = [
    ("unknown-field", [line("civil_affairs@3701:county", "Person.salary")], [], "未知字段"),
    ("unknown-department", [line("police@3701:county", "Person.name")], [], "未知部门"),
    ("region-of-5-digits", [line("civil_affairs@37010:county", "Person.name")], [], "区划代码"),
    ("bad-row-scope", [line("civil_affairs:*", "Person(rich)", "rows")], [], "行范围"),
    ("unknown-operation", [line("civil_affairs:*", "Ingest.deleteAll", "call")], [], "未知操作"),
    ("empty-purpose", [line("civil_affairs:*", "Person.name", "read", "")], [], "用途不能为空"),
    ("duplicate", [line("health:*", "Person.phone")] * 2, [], "重复"),
    ("remove-not-in-force", [], [line("health:*", "Person.phone")], "不在当前策略"),
    ("add-in-force", [line("civil_affairs:*", "Person.phone", "mask")], [], "已在当前策略"),
    ("empty-change", [], [], "没有变化"),
    (
        "add-and-remove",
        [line("health:*", "Person.phone")],
        [line("health:*", "Person.phone")],
        "既新增又删除",
    ),
]


@pytest.mark.parametrize(
    ("add", "remove", "expected"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
async def test_a_change_is_validated_line_by_line(
    gw: Harness, add: list[dict[str, str]], remove: list[dict[str, str]], expected: str
) -> None:
    code, message = await refused(
        gw, officer(gw, "proposer"), PROPOSE, title="检查", add=add, remove=remove
    )
    assert code == "BAD_USER_INPUT"
    assert expected in message
    if add and expected not in {"已在当前策略", "没有变化", "既新增又删除", "重复"}:
        assert "新增第 1 行" in message
        assert add[0]["subject"] in message


@pytest.mark.parametrize(
    ("title", "note", "expected"),
    [
        ("", None, "标题"),
        ("   ", None, "标题"),
        ("长" * 201, None, "最多 200 字"),
        ("好标题", "长" * 2001, "最多 2000 字"),
    ],
    ids=["empty-title", "blank-title", "title-201", "note-2001"],
)
async def test_title_and_note_limits(
    gw: Harness, title: str, note: str | None, expected: str
) -> None:
    add = [line("health@3705:county", "Person.phone")]
    code, message = await refused(
        gw, officer(gw, "proposer"), PROPOSE, title=title, note=note, add=add
    )
    assert (code, expected in message) == ("BAD_USER_INPUT", True)


async def test_title_of_200_and_note_of_2000_are_accepted(gw: Harness) -> None:
    add = [line("health@3705:county", "Person.phone")]
    proposal = await propose(gw, officer(gw, "proposer"), "长" * 200, add)
    assert proposal["status"] == "PENDING"
    data = await ok(gw, officer(gw, "proposer"), PROPOSE, title="t", note="长" * 2000, add=add)
    assert data["proposePolicyChange"]["note"] == "长" * 2000


@pytest.mark.parametrize(
    ("level", "region", "subject", "allowed"),
    [
        ("province", "37", "civil_affairs:county", True),
        ("province", "37", "role:security_officer", True),
        ("province", "37", "civil_affairs@1401:county", True),
        ("city", "3701", "civil_affairs@3701:county", True),
        ("city", "3701", "civil_affairs@370102:county", True),
        ("city", "3701", "civil_affairs@3702:county", False),
        ("city", "3701", "civil_affairs@37:county", False),  # the whole province
        ("city", "3701", "civil_affairs:county", False),  # province-wide
        ("city", "3701", "role:security_officer", False),
        ("county", "370102", "civil_affairs@370102:county", True),
        ("county", "370102", "civil_affairs@370103:county", False),
        ("county", "370102", "civil_affairs@3701:county", False),  # its city
        ("county", "370102", "civil_affairs:*", False),
    ],
)
async def test_officers_propose_within_their_jurisdiction(
    gw: Harness, level: str, region: str, subject: str, allowed: bool
) -> None:
    token = officer(gw, f"jurisdiction-{level}-{region}", level, region)
    add = [line(subject, "Person.gender")]
    body = await gw.query(token, PROPOSE, {"title": "辖区", "add": add})
    if allowed:
        assert "errors" not in body, body["errors"]
        proposal = body["data"]["proposePolicyChange"]
        assert proposal["status"] == "PENDING"
        assert proposal["proposedBy"] == f"jurisdiction-{level}-{region}"
        assert proposal["baseVersion"] == (await in_force(gw))["version"]
        assert proposal["added"][0]["editable"] is True
    else:
        _, code, message = only_error(body)
        assert code == "FORBIDDEN"
        assert "超出辖区" in message
        assert subject in message


# ============================================================================ four eyes
async def test_the_proposer_cannot_approve_a_colleague_can(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    before = await in_force(gw)
    grant = line("health@3703:county", "Person.phone", "mask")
    proposal = await propose(gw, alice, "淄博卫健脱敏电话", [grant])
    assert proposal["canApprove"] is False  # the proposer's own view

    code, message = await refused(gw, alice, APPROVE, id=proposal["id"])
    assert (code, message) == ("FORBIDDEN", "不能批准自己提出的变更 (四眼原则)")
    assert (await in_force(gw))["version"] == before["version"]  # nothing installed

    seen_by_bob = (await ok(gw, bob, PROPOSAL, id=proposal["id"]))["policyProposal"]
    assert seen_by_bob["status"] == "PENDING"
    assert seen_by_bob["canApprove"] is True
    approved = await approve(gw, bob, proposal["id"])
    assert approved["status"] == "APPROVED"
    assert approved["decidedBy"] == "bob"
    assert approved["decisionNote"] == "同意"
    assert approved["resultingVersion"] == before["version"] + 1
    assert approved["canApprove"] is False

    after = await in_force(gw)
    assert after["version"] == before["version"] + 1
    assert after["createdBy"] == "alice"
    assert after["note"] == "淄博卫健脱敏电话"
    assert stored(grant) in {stored(e) for e in after["lines"]}
    await assert_consistent(gw)

    newest = (await ok(gw, bob, VERSIONS, first=1))["policyVersions"]["edges"][0]["node"]
    assert newest["version"] == after["version"]
    assert (newest["createdBy"], newest["approvedBy"]) == ("alice", "bob")
    assert newest["proposalId"] == proposal["id"]
    assert newest["lineCount"] == len(after["lines"])


async def test_the_approver_must_cover_every_line(gw: Harness) -> None:
    city = officer(gw, "city-officer-3701", "city", "3701")
    change = [line("health@370102:county", "Person.phone", "mask")]
    proposal = await propose(gw, city, "历下区卫健脱敏电话", change)

    for who, level, region in [
        ("city-3702", "city", "3702"),
        ("county-370103", "county", "370103"),
    ]:
        outsider = officer(gw, who, level, region)
        seen = (await ok(gw, outsider, PROPOSAL, id=proposal["id"]))["policyProposal"]
        assert seen["canApprove"] is False
        code, message = await refused(gw, outsider, APPROVE, id=proposal["id"])
        assert code == "FORBIDDEN"
        assert "超出辖区" in message

    county = officer(gw, "county-officer-370102", "county", "370102")
    assert (await ok(gw, county, PROPOSAL, id=proposal["id"]))["policyProposal"]["canApprove"]
    assert (await approve(gw, county, proposal["id"]))["status"] == "APPROVED"


async def test_a_city_officer_cannot_approve_a_province_wide_change(gw: Harness) -> None:
    proposal = await propose(
        gw, officer(gw, "prov-x"), "全省卫健读性别以外", [line("health:*", "Person.phone", "mask")]
    )
    city = officer(gw, "city-y", "city", "3701")
    code, message = await refused(gw, city, APPROVE, id=proposal["id"])
    assert code == "FORBIDDEN"
    assert "全省通用的行" in message
    await ok(gw, officer(gw, "prov-x"), REJECT, id=proposal["id"], note="测试结束")


# ============================================================================ stale
async def test_a_proposal_on_an_older_version_cannot_be_approved(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    first = await propose(gw, alice, "第一项", [line("health@3704:county", "Person.phone", "mask")])
    second = await propose(gw, alice, "第二项", [line("health@3704:county", "Person.address")])
    base = first["baseVersion"]
    assert second["baseVersion"] == base

    approved = await approve(gw, bob, first["id"])
    new = approved["resultingVersion"]

    seen = (await ok(gw, bob, PROPOSAL, id=second["id"]))["policyProposal"]
    assert seen["status"] == "STALE"
    assert seen["canApprove"] is False
    code, message = await refused(gw, bob, APPROVE, id=second["id"])
    assert code == "BAD_USER_INPUT"
    assert f"该申请基于版本 {base}, 当前为版本 {new}; 请重新提出" in message


async def test_a_version_installed_elsewhere_makes_a_pending_proposal_stale(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    proposal = await propose(
        gw, alice, "第三项", [line("health@3706:county", "Person.phone", "mask")]
    )
    async with extra_policy(gw, [("health@3799:county", "Person.name", "read")]):
        current = (await in_force(gw))["version"]
        assert current > proposal["baseVersion"]
        code, message = await refused(gw, bob, APPROVE, id=proposal["id"])
        assert code == "BAD_USER_INPUT"
        assert message == (
            f"该申请基于版本 {proposal['baseVersion']}, 当前为版本 {current}; 请重新提出"
        )
    seen = (await ok(gw, bob, PROPOSAL, id=proposal["id"]))["policyProposal"]
    assert seen["status"] == "STALE"
    assert seen["decisionNote"] == message


# ============================================================================ decisions
async def test_only_pending_proposals_are_decided(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    approved = await approve(
        gw,
        bob,
        (await propose(gw, alice, "甲", [line("health@3707:county", "Person.phone", "mask")]))[
            "id"
        ],
    )
    for document, variables in [(APPROVE, {}), (REJECT, {"note": "晚了"})]:
        code, message = await refused(gw, bob, document, id=approved["id"], **variables)
        assert code == "BAD_USER_INPUT"
        assert "已批准" in message
    rejected = await propose(gw, alice, "乙", [line("health@3707:county", "Person.address")])
    await ok(gw, bob, REJECT, id=rejected["id"], note="不需要")
    code, message = await refused(gw, bob, APPROVE, id=rejected["id"])
    assert code == "BAD_USER_INPUT"
    assert "已驳回" in message


@pytest.mark.parametrize(
    ("proposal_id", "expected"),
    [("00000000-0000-0000-0000-000000000000", "未找到"), ("not-a-uuid", "无效")],
    ids=["unknown", "malformed"],
)
@pytest.mark.parametrize("document", ["approve", "reject"])
async def test_an_unknown_proposal_is_bad_user_input(
    gw: Harness, proposal_id: str, expected: str, document: str
) -> None:
    query, variables = (APPROVE, {}) if document == "approve" else (REJECT, {"note": "x"})
    code, message = await refused(gw, officer(gw, "bob"), query, id=proposal_id, **variables)
    assert code == "BAD_USER_INPUT"
    assert expected in message


async def test_an_unknown_proposal_reads_as_null(gw: Harness) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (await ok(gw, officer(gw, "bob"), PROPOSAL, id=unknown))["policyProposal"] is None
    code, _ = await refused(gw, officer(gw, "bob"), PROPOSAL, id="not-a-uuid")
    assert code == "BAD_USER_INPUT"


async def test_rejection_needs_a_reason_and_jurisdiction(gw: Harness) -> None:
    city = officer(gw, "city-3701-r", "city", "3701")
    proposal = await propose(
        gw, city, "济南卫健读电话", [line("health@3701:county", "Person.phone")]
    )

    code, message = await refused(gw, officer(gw, "bob"), REJECT, id=proposal["id"], note="  ")
    assert code == "BAD_USER_INPUT"
    assert "理由" in message
    code, _ = await refused(
        gw, officer(gw, "c", "city", "3702"), REJECT, id=proposal["id"], note="不"
    )
    assert code == "FORBIDDEN"

    rejected = await ok(gw, officer(gw, "bob"), REJECT, id=proposal["id"], note="范围过大")
    result = rejected["rejectPolicyChange"]
    assert (result["status"], result["decidedBy"], result["decisionNote"]) == (
        "REJECTED",
        "bob",
        "范围过大",
    )
    assert result["resultingVersion"] is None


async def test_the_proposer_may_withdraw_its_own_proposal(gw: Harness) -> None:
    county = officer(gw, "county-370102-w", "county", "370102")
    proposal = await propose(
        gw, county, "撤回测试", [line("health@370102:county", "Person.address")]
    )
    result = (await ok(gw, county, REJECT, id=proposal["id"], note="写错了"))["rejectPolicyChange"]
    assert result["status"] == "REJECTED"
    assert result["decidedBy"] == "county-370102-w"
    assert result["decisionNote"] == "(申请人撤回) 写错了"


# ============================================================================ versions, rollback
async def test_every_version_is_kept_and_a_rollback_is_a_new_version(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    await installed(gw, line("health@3708:county", "Person.gender"))  # a version with snapshot
    kept = await in_force(gw)
    grant = line("health@3708:county", "Person.phone", "mask")
    changed = await installed(gw, grant)

    proposal = (await ok(gw, alice, ROLLBACK, version=kept["version"], note="撤销"))[
        "proposePolicyRollback"
    ]
    assert proposal["title"] == f"回滚到版本 {kept['version']}"
    assert proposal["baseVersion"] == changed
    assert [stored(e) for e in proposal["removed"]] == [stored(grant)]
    assert proposal["added"] == []
    restored = await approve(gw, bob, proposal["id"])
    assert restored["resultingVersion"] == changed + 1

    now = await in_force(gw)
    assert Counter(stored(e) for e in now["lines"]) == Counter(stored(e) for e in kept["lines"])
    await assert_consistent(gw)
    history = {
        edge["node"]["version"]: edge["node"]
        for edge in (await ok(gw, bob, VERSIONS, first=200))["policyVersions"]["edges"]
    }
    assert {kept["version"], changed, changed + 1} <= set(history)  # nothing rewritten
    assert stored(grant) in {stored(e) for e in history[changed]["lines"]}
    assert stored(grant) not in {stored(e) for e in history[kept["version"]]["lines"]}


async def test_rollback_refusals(gw: Harness) -> None:
    alice = officer(gw, "alice")
    current = (await in_force(gw))["version"]
    code, message = await refused(gw, alice, ROLLBACK, version=current)
    assert code == "BAD_USER_INPUT"
    assert "就是当前生效的版本" in message
    code, message = await refused(gw, alice, ROLLBACK, version=current + 100)
    assert code == "BAD_USER_INPUT"
    assert f"没有版本 {current + 100}" in message
    async with extra_policy(gw, [("health@3709:county", "Person.name", "read")]):
        without_snapshot = (await in_force(gw))["version"]
    code, message = await refused(gw, alice, ROLLBACK, version=without_snapshot)
    assert code == "BAD_USER_INPUT"
    assert "没有保存完整的策略行" in message
    city = officer(gw, "city-rb", "city", "3701")
    code, message = await refused(gw, city, ROLLBACK, version=1)
    assert code == "FORBIDDEN"  # restoring version 1 touches province-wide lines


# ============================================================================ effects and grid
SUBJECTS_24 = [
    f"{dept}:{level}"
    for dept in (
        "medical_insurance",
        "civil_affairs",
        "rural_revitalization",
        "health",
        "public_security",
        "disabled_federation",
        "human_resources",
        "big_data",
    )
    for level in ("province", "city", "county")
]


async def test_field_changes_and_the_grid_of_a_proposal(gw: Harness) -> None:
    alice, bob = officer(gw, "alice"), officer(gw, "bob")
    grant = line("public_security@3702:county", "Person.address")
    proposal = await propose(gw, alice, "青岛公安县级读地址", [grant])

    seen = (await ok(gw, bob, PROPOSAL, id=proposal["id"]))["policyProposal"]
    assert seen["fieldChanges"] == [
        {"subject": "public_security@3702:county", "field": "Person.address",
         "before": "DENY", "after": "READ"},
    ]  # fmt: skip

    grid = (await ok(gw, bob, MATRIX, proposalId=proposal["id"]))["policyMatrix"]
    assert grid["proposalId"] == proposal["id"]
    assert grid["version"] == proposal["baseVersion"]
    assert grid["subjects"][:24] == SUBJECTS_24
    assert "public_security@3702:county" in grid["subjects"]
    changed = [(c["subject"], c["field"], c["effect"]) for c in grid["cells"] if c["changed"]]
    assert changed == [("public_security@3702:county", "Person.address", "READ")]
    assert len(grid["cells"]) == len(grid["subjects"]) * len(grid["fields"])
    await ok(gw, alice, REJECT, id=proposal["id"], note="测试结束")


async def test_the_grid_of_the_policy_in_force(gw: Harness) -> None:
    grid = (await ok(gw, officer(gw, "bob"), MATRIX))["policyMatrix"]
    assert grid["version"] == (await in_force(gw))["version"]
    assert grid["proposalId"] is None
    assert grid["subjects"][:24] == SUBJECTS_24
    assert {"Person.phone", "Loop.tasks", "Person(all)"} <= set(grid["fields"])
    cells = {(c["subject"], c["field"]): c["effect"] for c in grid["cells"]}
    assert not any(c["changed"] for c in grid["cells"])
    assert cells[("civil_affairs:county", "Person.phone")] == "MASK"
    assert cells[("medical_insurance:province", "Person.phone")] == "READ"
    assert cells[("big_data:city", "Person.name")] == "DENY"
    assert cells[("civil_affairs:county", "Loop.tasks")] == "READ"
    assert cells[("health:county", "Loop.tasks")] == "DENY"
    assert cells[("civil_affairs:city", "Person(all; places: residence|identity)")] == "READ"
    assert cells[("health:city", "Person(all)")] == "READ"


async def test_a_rollback_proposal_shows_what_it_takes_back(gw: Harness) -> None:
    before = await installed(gw, line("disabled_federation@3703:city", "Person.gender"))
    await installed(gw, line("disabled_federation@3703:city", "Person.name"))
    proposal = (await ok(gw, officer(gw, "alice"), ROLLBACK, version=before))[
        "proposePolicyRollback"
    ]
    seen = (await ok(gw, officer(gw, "bob"), PROPOSAL, id=proposal["id"]))["policyProposal"]
    assert seen["fieldChanges"] == [
        {"subject": "disabled_federation@3703:city", "field": "Person.name",
         "before": "READ", "after": "DENY"},
    ]  # fmt: skip
    await ok(gw, officer(gw, "alice"), REJECT, id=proposal["id"], note="保留")


# ============================================================================ effect
async def test_an_approved_region_limited_line_is_enforced_on_the_next_request(
    gw: Harness,
) -> None:
    """``civil_affairs@3701:county, Person.phone, read`` (a list Jinan agreed for its own
    counties): a civil affairs county clerk in 370102 reads phones in clear at once; one in
    Qingdao (370202) still sees them masked."""
    jinan, qingdao = someone(90, "370102"), someone(91, "370202")
    phones = {jinan.id_number: "13812345601", qingdao.id_number: "13812345602"}
    clerks = {}
    for person in (jinan, qingdao):
        token = gw.token("civil_affairs", "county", person.county, subject=f"clerk-{person.county}")
        record = {**identity(person), "联系电话": phones[person.id_number]}
        assert (await pushed(gw, token, [record]))["counts"]["rowsAccepted"] == 1
        clerks[person.county] = token

    async def phone_of(person: Any) -> str:
        data = await ok(gw, clerks[person.county], PHONES, prefix=person.county)
        found = {n["idNumber"]: n["phone"] for n in nodes(data["persons"])}
        return str(found[person.id_number])

    assert await phone_of(jinan) == "138****5601"  # the province-wide list masks phones
    assert await phone_of(qingdao) == "138****5602"

    await installed(gw, line("civil_affairs@3701:county", "Person.phone"))  # no wait after

    assert await phone_of(jinan) == "13812345601"
    assert await phone_of(qingdao) == "138****5602"
    me = await ok(gw, clerks["370102"], "query { me { policyVersion } }")
    assert me["me"]["policyVersion"] == (await in_force(gw))["version"]


# ============================================================================ paging
async def test_versions_and_proposals_page_with_cursors(gw: Harness) -> None:
    bob = officer(gw, "bob")
    first = (await ok(gw, bob, VERSIONS, first=2))["policyVersions"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await ok(gw, bob, VERSIONS, first=200, after=first["pageInfo"]["endCursor"]))[
        "policyVersions"
    ]
    numbers = [e["node"]["version"] for e in first["edges"] + rest["edges"]]
    assert numbers == sorted(numbers, reverse=True)
    assert len(numbers) == first["totalCount"] == len(set(numbers))

    approved = (await ok(gw, bob, PROPOSALS, status="APPROVED", first=1))["policyProposals"]
    assert approved["totalCount"] >= 2
    assert approved["pageInfo"]["hasNextPage"]
    more = (
        await ok(
            gw,
            bob,
            PROPOSALS,
            status="APPROVED",
            first=100,
            after=approved["pageInfo"]["endCursor"],
        )
    )["policyProposals"]
    ids = [e["node"]["id"] for e in approved["edges"] + more["edges"]]
    assert len(ids) == len(set(ids)) == approved["totalCount"]
    assert all(e["node"]["status"] == "APPROVED" for e in more["edges"])

    code, _ = await refused(gw, bob, VERSIONS, after="bm9wZQ==")
    assert code == "BAD_USER_INPUT"


# ============================================================================ policy as text
def run_cli(gateway: Harness, *args: str) -> tuple[int, str, str]:
    """``relief-gateway`` in this process, against this module's database."""
    settings = gateway.runtime.settings
    argv = [
        *args,
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.resolved_database_url,
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


async def test_policy_text_round_trips_through_a_proposal(gw: Harness, tmp_path: Path) -> None:
    code, exported, _ = await asyncio.to_thread(run_cli, gw, "policy", "export")
    assert code == 0
    current = await in_force(gw)
    assert f"版本 {current['version']}" in exported
    assert Counter(parse_policy_text(exported)) == Counter(stored(e) for e in current["lines"])

    unchanged = tmp_path / "policy.csv"
    unchanged.write_text(exported, encoding="utf-8")
    code, _, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(unchanged), "--proposed-by", "ops-alice"
    )
    assert code == 2
    assert "没有变化" in error

    old = "p, civil_affairs:*, Person.phone, mask, *"
    new = "p, civil_affairs:*, Person.phone, read, *"
    assert exported.count(old + "\n") == 1
    edited = tmp_path / "edited.csv"
    edited.write_text(exported.replace(old + "\n", new + "\n"), encoding="utf-8")
    code, printed, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(edited), "--proposed-by", "ops-alice",
        "--title", "民政读取明文电话",
    )  # fmt: skip
    assert code == 0, error
    assert "须由另一名安全管理员" in printed

    pending = (await ok(gw, officer(gw, "bob"), PROPOSALS, status="PENDING", first=1))[
        "policyProposals"
    ]["edges"][0]["node"]
    assert pending["title"] == "民政读取明文电话"
    assert pending["proposedBy"] == "ops-alice"
    assert [stored(e) for e in pending["added"]] == [
        ("civil_affairs:*", "Person.phone", "read", "*")
    ]
    assert [stored(e) for e in pending["removed"]] == [
        ("civil_affairs:*", "Person.phone", "mask", "*")
    ]
    refusal = await refused(gw, officer(gw, "ops-alice"), APPROVE, id=pending["id"])
    assert refusal[0] == "FORBIDDEN"  # the operator who imported cannot approve it
    approved = await approve(gw, officer(gw, "bob"), pending["id"])

    code, exported_after, _ = await asyncio.to_thread(run_cli, gw, "policy", "export")
    assert code == 0
    assert new in exported_after.splitlines()
    assert old not in exported_after.splitlines()
    assert f"版本 {approved['resultingVersion']}" in exported_after
    assert "批准人: bob" in exported_after
    body_before = [x for x in exported.splitlines() if not x.startswith("#")]
    body_after = [x for x in exported_after.splitlines() if not x.startswith("#")]
    assert [a for a, b in zip(body_before, body_after, strict=True) if a != b] == [old]


async def test_policy_import_refuses_a_bad_file(gw: Harness, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("p, civil_affairs:*, Person.salary, read, *\n", encoding="utf-8")
    code, _, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(bad), "--proposed-by", "ops"
    )
    assert code == 2
    assert "第 1 行" in error
    assert "未知字段" in error
    code, _, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(tmp_path / "missing.csv"), "--proposed-by", "ops"
    )
    assert code == 2
    assert "找不到文件" in error
    code, _, error = await asyncio.to_thread(run_cli, gw, "policy", "import", str(bad))
    assert code == 2
    assert "--proposed-by" in error
