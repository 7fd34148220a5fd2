"""Officers ask why an audited request got what it got (issue 5 item 2): ``explainAccess``
names, for every guarded field and row scope, the effect under the version the request ran
under, the lines that granted it and a reason: granted by a line (region-limited or not),
denied by default, denied because its relation is denied, denied for the declared purpose."""

from __future__ import annotations

from typing import Any

import pytest

from tests.exchange_support import (
    audit_entries,
    exchange_gateway,  # noqa: F401 - the module's own gateway (fixture)
    extra_policy,
    last_audit_id,
    only_error,
)
from tests.harness import Harness


@pytest.fixture
def gateway(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


OFFICER = ["audit_admin"]  # explanations are the audit administrator's (三权分立)

EXPLAIN = """
query Explain($id: ID!) {
  explainAccess(auditEntryId: $id) {
    entryId subject department level region purpose policyVersion subjectKeys
    fields { field effect released reason
             lines { subject object action purpose region editable } }
    rows { condition granted reason lines { subject object action purpose } }
  }
}
"""
PROPOSE = """
mutation Propose($add: [PolicyLineInput!]!) {
  proposePolicyChange(title: "测试", add: $add) { id }
}
"""
APPROVE = "mutation Approve($id: ID!) { approvePolicyChange(id: $id) { status } }"
READ = """
query Read { persons(first: 5) { edges { node {
  name phone address enrollments { status } costBurdens { totalCost } } } } }
"""


def officer(gateway: Harness, subject: str, level: str = "province", region: str = "") -> str:
    """An audit administrator (explanations are its duty)."""
    region = region or gateway.busiest_county()[: {"province": 2, "city": 4}.get(level, 6)]
    return gateway.token("big_data", level, region, roles=OFFICER, subject=subject)


def security_admin(gateway: Harness, subject: str) -> str:
    return gateway.token("big_data", "province", "37", roles=["security_admin"], subject=subject)


async def install(gateway: Harness, *lines: dict[str, str]) -> None:
    """Add lines through the four-eyes path (two province officers)."""
    body = await gateway.query(security_admin(gateway, "officer-a"), PROPOSE, {"add": list(lines)})
    assert "errors" not in body, body
    proposal = body["data"]["proposePolicyChange"]["id"]
    body = await gateway.query(security_admin(gateway, "officer-b"), APPROVE, {"id": proposal})
    assert body["data"]["approvePolicyChange"]["status"] == "APPROVED", body


async def audited(gateway: Harness, token: str, subject: str, purpose: str = "supervision") -> str:
    """Make the request ``READ`` and return the id of its audit entry."""
    mark = await last_audit_id(gateway)
    await gateway.query(token, READ, purpose=purpose)
    [entry] = [e for e in await audit_entries(gateway, mark) if e.subject == subject]
    return str(entry.id)


async def explain(gateway: Harness, entry: str, token: str | None = None) -> dict[str, Any]:
    body = await gateway.query(token or officer(gateway, "officer-a"), EXPLAIN, {"id": entry})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["explainAccess"]
    return result


def field(explanation: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [f for f in explanation["fields"] if f["field"] == name]
    assert len(found) == 1, name
    return found[0]


async def test_explanations(gateway: Harness) -> None:
    county = gateway.busiest_county()
    await install(
        gateway,
        # Civil affairs of this county reads phones in clear (others: masked).
        {"subject": f"civil_affairs@{county}:county", "object": "Person.phone", "action": "READ"},
        # Health may read addresses, only when recognising relief.
        {
            "subject": "health:*",
            "object": "Person.address",
            "action": "READ",
            "purpose": "relief_recognition",
        },
        # Health is granted cost totals, but not the relation that leads to them.
        {"subject": "health:*", "object": "CostBurden.totalCost", "action": "READ"},
        # What the officer role grants cannot be seen in an audit entry.
        {"subject": "role:security_officer", "object": "Person.phone", "action": "READ"},
    )
    health = gateway.token("health", "county", county, subject="health-clerk")
    civil = gateway.token("civil_affairs", "county", county, subject="civil-clerk")
    elsewhere = gateway.token(
        "civil_affairs", "county", county[:4] + "99", subject="civil-elsewhere"
    )

    health_entry = await explain(gateway, await audited(gateway, health, "health-clerk"))
    assert health_entry["subject"] == "health-clerk"
    assert health_entry["purpose"] == "supervision"
    assert f"health@{county}:county" in health_entry["subjectKeys"]

    # A denied field (the example): no line, deny by default, nothing released.
    phone = field(health_entry, "Person.phone")
    assert (phone["effect"], phone["released"], phone["lines"]) == ("DENY", None, [])
    assert "没有任何策略行授予 (默认拒绝)" in phone["reason"]
    assert "角色" in phone["reason"]  # a role line would grant it; roles are not audited

    # Denied for the purpose: a line exists for relief recognition only.
    address = field(health_entry, "Person.address")
    assert (address["effect"], address["lines"]) == ("DENY", [])
    assert "用途不符" in address["reason"]
    assert "relief_recognition" in address["reason"]
    assert "supervision" in address["reason"]

    # Denied because its relation is: the own line does not reach through Person.costBurdens.
    total = field(health_entry, "CostBurden.totalCost")
    assert total["effect"] == "DENY"
    assert "关系 Person.costBurdens 被拒绝" in total["reason"]

    # Granted: the line is cited with its number, the released effect is the entry's.
    name = field(health_entry, "Person.name")
    assert (name["effect"], name["released"]) == ("READ", "read")
    assert [(line["subject"], line["object"]) for line in name["lines"]] == [
        ("health:*", "Person.name")
    ]
    assert name["reason"].startswith("由第 ")
    assert "授予明文读取" in name["reason"]
    [rows] = [r for r in health_entry["rows"] if r["condition"] == "Person(all)"]
    assert rows["granted"] is True
    assert rows["lines"][0]["subject"] == "health:*"

    # With the allowed purpose the same clerk reads the address, granted by that line.
    recognising = await explain(
        gateway, await audited(gateway, health, "health-clerk", purpose="relief_recognition")
    )
    address = field(recognising, "Person.address")
    assert (address["effect"], address["released"]) == ("READ", "read")
    assert address["lines"][0]["purpose"] == "relief_recognition"

    # A region-limited line: this county's civil affairs reads phones in clear …
    civil_entry = await explain(gateway, await audited(gateway, civil, "civil-clerk"))
    phone = field(civil_entry, "Person.phone")
    assert (phone["effect"], phone["released"]) == ("READ", "read")
    assert [(line["subject"], line["region"]) for line in phone["lines"]] == [
        (f"civil_affairs@{county}:county", county)
    ]
    assert f"仅限区域 {county}" in phone["reason"]

    # … a county elsewhere gets the province-wide mask (the masked explanation).
    masked = await explain(gateway, await audited(gateway, elsewhere, "civil-elsewhere"))
    phone = field(masked, "Person.phone")
    assert phone["effect"] == "MASK"
    assert [(line["subject"], line["action"]) for line in phone["lines"]] == [
        ("civil_affairs:*", "MASK")
    ]
    assert "授予脱敏读取" in phone["reason"]
    # A province officer may change the province-wide line; a county officer may not.
    assert phone["lines"][0]["editable"] is False  # an audit administrator edits no line


async def test_jurisdiction_and_refusals(gateway: Harness) -> None:
    county = gateway.busiest_county()
    civil = gateway.token("civil_affairs", "county", county, subject="civil-clerk")
    entry = await audited(gateway, civil, "civil-clerk")

    # The county's own officer and its city's officer see it; another city's does not.
    for level in ("city", "county"):
        assert (await explain(gateway, entry, officer(gateway, f"o-{level}", level)))["entryId"]
    other = county[:2] + ("02" if county[2:4] != "02" else "03")
    assert await explain(gateway, entry, officer(gateway, "o-far", "city", other)) is None
    assert await explain(gateway, "999999") is None

    body = await gateway.query(civil, EXPLAIN, {"id": entry})
    assert only_error(body)[:2] == (("explainAccess",), "FORBIDDEN")
    body = await gateway.query(officer(gateway, "officer-a"), EXPLAIN, {"id": "x1"})
    assert only_error(body)[:2] == (("explainAccess",), "BAD_USER_INPUT")


async def test_a_version_without_snapshot_is_named(gateway: Harness) -> None:
    county = gateway.busiest_county()
    civil = gateway.token("civil_affairs", "county", county, subject="civil-clerk")
    # extra_policy installs versions the old way (casbin_rule only, no lines snapshot).
    async with extra_policy(gateway, [("big_data:*", "Person(all)", "rows")]):
        entry = await audited(gateway, civil, "civil-clerk")
        # In force: its lines are the ones enforced, so it can still be explained.
        assert field(await explain(gateway, entry), "Person.name")["effect"] == "READ"
    body = await gateway.query(officer(gateway, "officer-a"), EXPLAIN, {"id": entry})
    path, code, message = only_error(body)
    assert (path, code) == (("explainAccess",), "BAD_USER_INPUT")
    assert "没有保存完整的策略行" in message
