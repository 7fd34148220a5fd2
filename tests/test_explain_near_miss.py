"""Explanations name the line that almost applied (issue 16 item 8): a field or row scope denied
because the only line for it is limited to another region, to another purpose, to another
level, or has expired, says which line and why, in Chinese, in ``explainAccess``.

The rules are checked on ``authz.explain.explain_access`` directly (lines held in memory, the
moment of the request given), then once through GraphQL on an audited request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from authz.explain import explain_access
from authz.store import PolicyLine, TimedLine, default_policy_lines
from gateway.domain.departments import Department, Level
from gateway.domain.principal import Principal
from tests.exchange_support import (  # noqa: F401
    audit_entries,
    exchange_gateway,
    last_audit_id,
)
from tests.harness import Harness
from tests.policy_governance_support import install, line

CLERK = Principal("clerk", Department.CIVIL_AFFAIRS, Level.COUNTY, "370102")
END = datetime(2027, 3, 31, 16, tzinfo=UTC)  # 2027-04-01 00:00 Beijing time
WITHOUT_PHONE = [x for x in default_policy_lines() if x[1] != "Person.phone"]


def reason(lines: Sequence[PolicyLine], name: str, *, purpose: str = "", at: datetime = END) -> str:
    explanation = explain_access(lines, CLERK, purpose, released={}, at=at)
    [found] = [f for f in explanation.fields if f.field == name]
    return found.reason


def numbered(lines: Sequence[PolicyLine], wanted: PolicyLine) -> int:
    return list(lines).index(wanted) + 1


@pytest.mark.parametrize(
    ("near", "words"),
    [
        (
            ("civil_affairs@3702:county", "Person.phone", "read", "*"),
            "限于区域 3702 内的调用方, 而调用方辖区为 370102",
        ),
        (
            ("civil_affairs:city", "Person.phone", "read", "*"),
            "只授予市级调用方, 而调用方为县级",
        ),
        (
            ("civil_affairs@3702:city", "Person.phone", "mask", "*"),
            "限于区域 3702 内的调用方, 而调用方辖区为 370102; 且只授予市级调用方",
        ),
        (
            ("civil_affairs@3702:county", "Person.phone", "read", "supervision"),
            "限于区域 3702 内的调用方, 而调用方辖区为 370102; 且限于用途 supervision, "
            "而本次请求声明的用途为 未声明",
        ),
    ],
)
def test_a_denied_field_names_the_line_that_came_closest(near: PolicyLine, words: str) -> None:
    lines = [*WITHOUT_PHONE, near]
    text = reason(lines, "Person.phone")
    assert text.startswith("没有任何策略行授予 (默认拒绝); 最接近的是")
    assert f"第 {numbered(lines, near)} 行「{', '.join(near)}」" in text
    assert words in text


def test_an_expired_line_says_when_it_ended() -> None:
    expired = TimedLine(("civil_affairs:*", "Person.phone", "read", "*"), END)
    lines = [*WITHOUT_PHONE, expired]
    text = reason(lines, "Person.phone", at=END)
    assert f"第 {len(lines)} 行「civil_affairs:*, Person.phone, read, *, 2027-03-31」" in text
    assert "已于 2027-04-01 00:00:00 (北京时间) 到期" in text
    # A moment before the end, the same line granted it, and says with which end.
    granted = reason(lines, "Person.phone", at=END - timedelta(seconds=1))
    assert granted.startswith(f"由第 {len(lines)} 行「civil_affairs:*, Person.phone, read, *, ")
    assert "授予明文读取" in granted


def test_another_purpose_alone_is_the_purpose_refusal() -> None:
    lines = [*WITHOUT_PHONE, ("civil_affairs:*", "Person.phone", "read", "relief_recognition")]
    text = reason(lines, "Person.phone", purpose="supervision")
    assert text.startswith("用途不符: 仅在其他用途下授予 (用途 relief_recognition: 第 ")
    assert "本次请求声明的用途为 supervision" in text


def test_the_fewest_misses_win_and_other_departments_never_count() -> None:
    one = ("civil_affairs:city", "Person.phone", "read", "*")
    two = ("civil_affairs@3702:city", "Person.phone", "read", "*")
    lines = [*WITHOUT_PHONE, two, ("health@370102:county", "Person.phone", "read", "*"), one]
    text = reason(lines, "Person.phone")
    assert "civil_affairs:city, Person.phone" in text
    assert "civil_affairs@3702:city" not in text  # two misses: further than one
    assert "health@370102" not in text  # another department's line is not a near miss
    assert reason(WITHOUT_PHONE, "Person.phone") == "没有任何策略行授予 (默认拒绝)"


def test_a_denied_row_scope_names_its_near_line() -> None:
    scope = ("civil_affairs@3702:*", "Person(category: ORPHAN)", "rows", "*")
    explanation = explain_access([*WITHOUT_PHONE, scope], CLERK, "", released={}, at=END)
    [row] = [r for r in explanation.rows if "ORPHAN" in r.condition]
    assert not row.granted
    assert "最接近的是" in row.reason
    assert "限于区域 3702 内的调用方" in row.reason


# ============================================================================ through GraphQL
EXPLAIN = """
query Explain($id: ID!) {
  explainAccess(auditEntryId: $id) {
    policyVersion fields { field effect reason lines { subject validTo } }
  }
}
"""
READ = "{ persons(first: 5) { edges { node { name address } } } }"


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


async def test_explain_access_names_the_near_line(gw: Harness) -> None:
    county = gw.busiest_county()
    neighbour = county[:4] + ("99" if county[4:] != "99" else "98")
    await install(gw, add=[line(f"health@{neighbour}:county", "Person.address")])
    clerk = gw.token("health", "county", county, subject="near-miss-clerk")
    mark = await last_audit_id(gw)
    body = await gw.query(clerk, READ)
    assert any(e["extensions"]["code"] == "FORBIDDEN" for e in body.get("errors", []))
    [entry] = [e for e in await audit_entries(gw, mark) if e.subject == "near-miss-clerk"]
    auditor = gw.token("big_data", "province", county[:2], roles=["audit_admin"], subject="auditor")
    explained: dict[str, Any] = await gw.query(auditor, EXPLAIN, {"id": str(entry.id)})
    assert "errors" not in explained, explained
    [address] = [
        f for f in explained["data"]["explainAccess"]["fields"] if f["field"] == "Person.address"
    ]
    assert address["effect"] == "DENY"
    assert f"「health@{neighbour}:county, Person.address, read, *」" in address["reason"]
    assert f"限于区域 {neighbour} 内的调用方, 而调用方辖区为 {county}" in address["reason"]
    await install(gw, remove=[line(f"health@{neighbour}:county", "Person.address")])
