"""The audit administrator reads the audit log through GraphQL (issue 5 item 5, issue 16):
``auditLog`` lists the requests made inside its jurisdiction, by person, department, subject
and period, never its own; ``auditChain`` verifies the hash chain and names the first bad entry;
a query of the audit is itself audited; anyone without the ``audit_admin`` role is refused, the
security and system administrators included (三权分立)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.domain.clock import CHINA_TZ, as_utc
from gateway.domain.id_numbers import make_id_number
from gateway.domain.principal import canonical_subject
from gateway.storage.models import AuditEntry
from tests.exchange_support import (
    audit_entries,
    codes,
    exchange_gateway,  # noqa: F401 - the module's own gateway (fixture)
    last_audit_id,
    person_id,
)
from tests.harness import Harness

AUDITOR = ["audit_admin"]

LOG = """
query AuditLog($filter: AuditFilter, $first: Int = 50, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id occurredAt requestId subject department level region purpose operation
      policyVersion personCount fields { field effect } prevHash entryHash
    } }
  }
}
"""

CHAIN = "query AuditChain { auditChain { entries ok firstBadId reason headHash } }"


@dataclass(frozen=True)
class Readings:
    """Requests made before the officers look: who read what, from where."""

    id_number: str  # the person read by ``near``
    person: uuid.UUID
    county: str  # the person's county; ``near`` is a clerk there
    city: str
    far_county: str  # in another city
    near: AuditEntry  # civil affairs of ``county`` looked the person up
    hub: AuditEntry  # medical insurance of ``city`` listed people
    far: AuditEntry  # civil affairs of ``far_county`` listed people


async def _read(gateway: Harness, token: str, query: str, **variables: Any) -> AuditEntry:
    before = await last_audit_id(gateway)
    body = await gateway.query(token, query, variables or None, purpose="relief_recognition")
    assert "errors" not in body, body
    (entry,) = await audit_entries(gateway, before)
    return entry


@pytest.fixture(scope="module")
async def readings(exchange_gateway: Harness) -> Readings:  # noqa: F811
    gateway = exchange_gateway
    someone = gateway.persons[0]
    county, city = someone.region_code[:6], someone.region_code[:4]
    far_county = "370102" if city == "3702" else "370202"
    near = await _read(
        gateway,
        gateway.token("civil_affairs", "county", county, subject="near-clerk"),
        "query Lookup($id: String!) { person(idNumber: $id) { name } }",
        id=someone.id_number,
    )
    hub = await _read(
        gateway,
        gateway.token("medical_insurance", "city", city, subject="hub-clerk"),
        "query Page { persons(first: 3) { edges { node { name } } } }",
    )
    far = await _read(
        gateway,
        gateway.token("civil_affairs", "county", far_county, subject="far-clerk"),
        "query Page { persons(first: 2) { edges { node { id } } } }",
    )
    return Readings(
        id_number=someone.id_number,
        person=await person_id(gateway, someone.id_number),
        county=county,
        city=city,
        far_county=far_county,
        near=near,
        hub=hub,
        far=far,
    )


def _officer(gateway: Harness, level: str, region: str, subject: str | None = None) -> str:
    """An audit administrator's token (subject by default the harness's ``test-big_data-…``)."""
    return gateway.token("big_data", level, region, roles=AUDITOR, subject=subject)


def _reader(level: str, region: str) -> str:
    return f"test-big_data-{level}-{region}"


def _visible(entries: list[AuditEntry], reader: str) -> list[AuditEntry]:
    """What the reader may see: every entry but its own (any spelling)."""
    own = canonical_subject(reader)
    return [e for e in entries if canonical_subject(e.subject) != own]


async def _log(gateway: Harness, token: str, **variables: Any) -> dict[str, Any]:
    body = await gateway.query(token, LOG, variables)
    assert "errors" not in body, body
    log: dict[str, Any] = body["data"]["auditLog"]
    return log


def _ids(log: dict[str, Any]) -> list[int]:
    return [int(edge["node"]["id"]) for edge in log["edges"]]


async def _count(gateway: Harness, region: str, reader: str) -> int:
    async with gateway.runtime.engine.connect() as connection:
        stmt = select(AuditEntry.subject).where(AuditEntry.region.startswith(region))
        subjects = list((await connection.execute(stmt)).scalars())
    return sum(1 for subject in subjects if canonical_subject(subject) != canonical_subject(reader))


def _beijing_day(entry: AuditEntry) -> date:
    return as_utc(entry.occurred_at).astimezone(CHINA_TZ).date()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("field", ["auditLog", "auditChain"])
async def test_non_officer_is_refused(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
    field: str,
) -> None:
    """Even the province hub without the role, and the other two administrators: reading the
    log is the audit administrator's job alone (三权分立)."""
    gateway = exchange_gateway
    query = LOG if field == "auditLog" else CHAIN
    for token in (
        gateway.token("civil_affairs", "county", readings.county),
        gateway.token("medical_insurance", "province", "37"),
        gateway.token("big_data", "province", "37", roles=["security_admin"]),
        gateway.token("big_data", "province", "37", roles=["security_officer"]),
        gateway.token("big_data", "province", "37", roles=["system_admin"]),
    ):
        before = await last_audit_id(gateway)
        body = await gateway.query(token, query)
        assert body["data"] is None
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert "仅审计管理员" in error["message"]
        assert await last_audit_id(gateway) == before  # nothing was read, nothing recorded


async def test_bad_arguments_are_refused(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    token = _officer(gateway, "province", "37")
    for variables in (
        {"filter": {"idNumber": "12345"}},
        {"filter": {"from": "2026-11-23", "to": "2026-11-22"}},
        {"first": -1},
        {"first": 10_000},
        {"after": "not-a-cursor"},
    ):
        body = await gateway.query(token, LOG, variables)
        assert codes(body) == {("auditLog",): "BAD_USER_INPUT"}, (variables, body)


# --------------------------------------------------------------------------- jurisdiction


async def test_officer_sees_its_jurisdiction_only(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    r = readings
    cases = {
        # officer (level, region): the readings it sees, and those it must not
        ("province", "37"): ({r.near.id, r.hub.id, r.far.id}, set()),
        ("city", r.city): ({r.near.id, r.hub.id}, {r.far.id}),
        ("county", r.county): ({r.near.id}, {r.hub.id, r.far.id}),
        ("county", r.far_county): ({r.far.id}, {r.near.id, r.hub.id}),
    }
    for (level, region), (seen, unseen) in cases.items():
        expected = await _count(gateway, region, _reader(level, region))
        log = await _log(gateway, _officer(gateway, level, region), first=200)
        ids = set(_ids(log))
        assert seen <= ids, (level, region)
        assert not unseen & ids, (level, region)
        assert log["totalCount"] == expected == len(ids)
        assert all(edge["node"]["region"].startswith(region) for edge in log["edges"])


async def test_entry_is_shown_as_recorded(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    log = await _log(
        gateway, _officer(gateway, "city", readings.city), filter={"subject": "near-clerk"}
    )
    (edge,) = log["edges"]
    node, near = edge["node"], readings.near
    assert node == {
        "id": str(near.id),
        "occurredAt": as_utc(near.occurred_at).isoformat(),
        "requestId": near.request_id,
        "subject": "near-clerk",
        "department": "CIVIL_AFFAIRS",
        "level": "COUNTY",
        "region": readings.county,
        "purpose": "relief_recognition",
        "operation": "Lookup",
        "policyVersion": near.policy_version,
        "personCount": 1,
        "fields": [{"field": "Person.name", "effect": "read"}],
        "prevHash": near.prev_hash,
        "entryHash": near.entry_hash,
    }


# --------------------------------------------------------------------------- filters


async def test_filter_by_person(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    token = _officer(gateway, "province", "37")
    expected = [
        e.id
        for e in reversed(_visible(await audit_entries(gateway), _reader("province", "37")))
        if str(readings.person) in json.loads(e.person_ids)
    ]
    log = await _log(gateway, token, filter={"idNumber": readings.id_number}, first=200)
    assert readings.near.id in _ids(log)
    assert readings.far.id not in _ids(log)
    assert _ids(log) == expected
    assert log["totalCount"] == len(expected)

    # A valid ID number of nobody: no entries (and no error that tells who exists).
    seeded = {p.id_number for p in gateway.persons}
    nobody = next(
        n
        for n in (make_id_number(readings.county, date(1971, 5, 6), s) for s in range(500))
        if n not in seeded
    )
    empty = await _log(gateway, token, filter={"idNumber": nobody})
    assert empty == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


async def test_filter_by_department_and_subject(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    token = _officer(gateway, "city", readings.city)
    civil = await _log(gateway, token, filter={"department": "CIVIL_AFFAIRS"}, first=200)
    assert readings.near.id in _ids(civil)
    assert readings.hub.id not in _ids(civil)
    assert {edge["node"]["department"] for edge in civil["edges"]} == {"CIVIL_AFFAIRS"}

    hub = await _log(gateway, token, filter={"subject": "hub-clerk"})
    assert _ids(hub) == [readings.hub.id]
    assert hub["totalCount"] == 1
    both = await _log(
        gateway, token, filter={"subject": "hub-clerk", "department": "CIVIL_AFFAIRS"}
    )
    assert both["totalCount"] == 0


async def test_filter_by_period_in_beijing_days(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    token = _officer(gateway, "province", "37")
    day = _beijing_day(readings.near)
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    cases = [  # from, to, whether the near clerk's entry (made on ``day``) is in the period
        (day, day, True),
        (after, None, False),
        (None, before, False),
        (before, after, True),
        (None, day, True),
    ]
    for start, end, includes_near in cases:
        period = {"from": start and start.isoformat(), "to": end and end.isoformat()}
        # What this query sees: every entry so far (its own is written after it answers).
        expected = [
            e.id
            for e in reversed(_visible(await audit_entries(gateway), _reader("province", "37")))
            if (start is None or _beijing_day(e) >= start)
            and (end is None or _beijing_day(e) <= end)
        ]
        log = await _log(gateway, token, filter=period, first=200)
        assert _ids(log) == expected, period
        assert (readings.near.id in expected) is includes_near, period


async def test_paging_newest_first(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    token = _officer(gateway, "province", "37")
    # Each page is itself audited, so the log grows while the administrator pages through it,
    # but with entries of its own, which it never sees: the walk yields exactly the entries it
    # began with, newest first, once each. Another reader's pages are newer than the cursor.
    other = _officer(gateway, "province", "37", subject="another-auditor")
    visible = _visible(await audit_entries(gateway), _reader("province", "37"))
    at_start = [e.id for e in reversed(visible) if e.region.startswith("37")]
    seen: list[int] = []
    after = None
    for pages_read in range(len(at_start)):
        log = await _log(gateway, token, first=2, after=after)
        assert log["totalCount"] == len(at_start) + pages_read  # the other's reads only
        await _log(gateway, other, first=1)
        seen.extend(_ids(log))
        if not log["pageInfo"]["hasNextPage"]:
            break
        after = log["pageInfo"]["endCursor"]
        assert after == log["edges"][-1]["cursor"]
    assert seen == at_start


# --------------------------------------------------------------------------- audit of the audit


async def test_query_of_the_audit_is_audited(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    subject = f"officer-{uuid.uuid4().hex[:8]}"
    token = _officer(gateway, "city", readings.city, subject=subject)
    before = await last_audit_id(gateway)
    await _log(gateway, token, filter={"idNumber": readings.id_number})
    (entry,) = await audit_entries(gateway, before)
    assert entry.subject == subject
    assert entry.department == "big_data"
    assert entry.region == readings.city
    assert entry.purpose == "supervision"
    assert entry.operation == "auditLog"  # whatever the client named its operation
    assert json.loads(entry.person_ids) == [str(readings.person)]
    assert json.loads(entry.fields) == {"AuditLog.entries": "read"}

    # ... and another audit administrator finds it in the log afterwards.
    log = await _log(gateway, _officer(gateway, "province", "37"), filter={"subject": subject})
    (edge,) = log["edges"]
    assert edge["node"]["id"] == str(entry.id)
    assert edge["node"]["personCount"] == 1
    assert edge["node"]["fields"] == [{"field": "AuditLog.entries", "effect": "read"}]


async def test_query_without_person_filter_names_nobody(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    before = await last_audit_id(gateway)
    await _log(gateway, _officer(gateway, "county", readings.county), first=1)
    (entry,) = await audit_entries(gateway, before)
    assert json.loads(entry.person_ids) == []
    assert json.loads(entry.fields) == {"AuditLog.entries": "read"}


# --------------------------------------------------------------------------- the chain


async def _chain(gateway: Harness) -> dict[str, Any]:
    body = await gateway.query(_officer(gateway, "province", "37"), CHAIN)
    assert "errors" not in body, body
    chain: dict[str, Any] = body["data"]["auditChain"]
    return chain


async def test_chain_reports_tampering_and_head(
    exchange_gateway: Harness,  # noqa: F811
    readings: Readings,
) -> None:
    gateway = exchange_gateway
    entries = await audit_entries(gateway)
    assert await _chain(gateway) == {
        "entries": len(entries),
        "ok": True,
        "firstBadId": None,
        "reason": None,
        "headHash": entries[-1].entry_hash,
    }

    async def set_subject(value: str) -> None:
        async with gateway.runtime.engine.begin() as connection:
            await connection.execute(
                update(AuditEntry).where(AuditEntry.id == readings.hub.id).values(subject=value)
            )

    await set_subject("someone-innocent")  # tampering, directly in the database
    try:
        chain = await _chain(gateway)
        assert chain["ok"] is False
        assert chain["firstBadId"] == str(readings.hub.id)
        assert "修改" in chain["reason"]
        intact = [e for e in entries if e.id < readings.hub.id]
        assert chain["entries"] == len(intact)
        assert chain["headHash"] == intact[-1].entry_hash
    finally:
        await set_subject("hub-clerk")
    assert (await _chain(gateway))["ok"] is True
