"""The audit log: every read of person data is recorded (who, department, level, purpose,
which people, which fields with which effect), and the hash chain exposes an entry that was
changed, deleted or re-ordered — in the library and through ``relief-gateway audit verify``."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from gateway import cli
from gateway.domain.id_numbers import make_id_number
from gateway.storage import audit_chain as audit
from gateway.storage.models import AuditEntry
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _subject() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


async def _entries(h: Harness, subject: str | None = None) -> list[AuditEntry]:
    async with h.runtime.sessions() as session:
        stmt = select(AuditEntry).order_by(AuditEntry.id)
        if subject is not None:
            stmt = stmt.where(AuditEntry.subject == subject)
        return list((await session.execute(stmt)).scalars())


async def _count(h: Harness) -> int:
    async with h.runtime.sessions() as session:
        result = await session.execute(select(func.count()).select_from(AuditEntry))
        return int(result.scalar_one())


async def _verify(h: Harness) -> audit.ChainReport:
    async with h.runtime.sessions() as session:
        return await audit.verify_chain(session)


# --------------------------------------------------------------------------- what is recorded


async def test_person_read_is_audited(harness: Harness) -> None:
    county = harness.busiest_county()
    subject = _subject()
    token = harness.token("civil_affairs", "county", county, subject=subject)
    query = """
    query AuditPage { persons(first: 3) { edges { node { id name phone regionCode } } } }
    """
    body = await harness.query(token, query, purpose="relief_recognition")
    assert "errors" not in body
    ids = sorted(edge["node"]["id"] for edge in body["data"]["persons"]["edges"])
    assert len(ids) == 3

    entries = await _entries(harness, subject)
    assert len(entries) == 1
    entry = entries[0]
    assert entry.subject == subject
    assert entry.department == "civil_affairs"
    assert entry.level == "county"
    assert entry.region == county
    assert entry.purpose == "relief_recognition"
    assert entry.policy_version == harness.runtime.authorizer.version
    assert json.loads(entry.person_ids) == ids
    assert json.loads(entry.fields) == {"Person.name": "read", "Person.phone": "mask"}
    assert HEX64.match(entry.entry_hash)
    assert HEX64.match(entry.prev_hash)
    assert len(entry.request_id) == 36


async def test_audit_request_id_matches_response(harness: Harness) -> None:
    subject = _subject()
    token = harness.token("medical_insurance", "province", "37", subject=subject)
    response = await harness.post(token, "{ persons(first: 1) { edges { node { name } } } }")
    entries = await _entries(harness, subject)
    assert [e.request_id for e in entries] == [response.headers["x-request-id"]]
    assert entries[0].operation == "anonymous"


async def test_operation_name_is_recorded(harness: Harness) -> None:
    """With an explicit operationName the entry names the operation."""
    subject = _subject()
    token = harness.token("medical_insurance", "province", "37", subject=subject)
    response = await harness.client.post(
        "/graphql",
        json={
            "query": "query A { persons(first: 1) { edges { node { name } } } } "
            "query B { me { subject } }",
            "operationName": "A",
        },
        headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
    )
    assert response.status_code == 200, response.text
    assert [e.operation for e in await _entries(harness, subject)] == ["A"]


async def test_operation_name_from_document_is_recorded(harness: Harness) -> None:
    """Most clients send a named query without a separate operationName; the entry should
    still say which operation ran, not "anonymous"."""
    subject = _subject()
    token = harness.token("medical_insurance", "province", "37", subject=subject)
    await harness.query(token, "query CountyPage { persons(first: 1) { edges { node { name } } } }")
    assert [e.operation for e in await _entries(harness, subject)] == ["CountyPage"]


async def test_relations_and_members_are_audited(harness: Harness) -> None:
    county = harness.busiest_county()
    subject = _subject()
    token = harness.token("medical_insurance", "county", county, subject=subject)
    query = """
    { persons(first: 4) { edges { node {
        idNumber
        household { members { id gender } }
        enrollments { status }
        costBurdens { totalCost }
    } } } }
    """
    body = await harness.query(token, query, purpose="benefit_settlement")
    assert "errors" not in body
    member_ids = {
        member["id"]
        for edge in body["data"]["persons"]["edges"]
        for member in edge["node"]["household"]["members"]
    }
    entry = (await _entries(harness, subject))[0]
    recorded = set(json.loads(entry.person_ids))
    assert member_ids <= recorded
    fields = json.loads(entry.fields)
    for name in (
        "Person.idNumber",
        "Person.household",
        "Person.gender",
        "Person.enrollments",
        "Enrollment.status",
        "Person.costBurdens",
        "CostBurden.totalCost",
    ):
        assert fields.get(name) == "read", (name, fields)
    assert "Person.name" not in fields  # not asked for, not recorded
    assert entry.purpose == "benefit_settlement"


async def test_household_members_field_is_recorded(harness: Harness) -> None:
    """``Household.members`` is a guarded policy object like ``Person.household``; when it is
    released the entry lists it among the fields read."""
    subject = _subject()
    token = harness.token("civil_affairs", "county", harness.busiest_county(), subject=subject)
    body = await harness.query(
        token, "{ persons(first: 3) { edges { node { household { members { name } } } } } }"
    )
    assert "errors" not in body
    fields = json.loads((await _entries(harness, subject))[0].fields)
    assert fields == {
        "Person.household": "read",
        "Household.members": "read",
        "Person.name": "read",
    }


async def test_people_listed_by_id_only_are_audited(harness: Harness) -> None:
    """Returning people is reading person data even when only their ids are selected: the
    entry names the people the caller learned about."""
    subject = _subject()
    token = harness.token("medical_insurance", "province", "37", subject=subject)
    body = await harness.query(token, "{ persons(first: 3) { edges { node { id } } } }")
    ids = sorted(edge["node"]["id"] for edge in body["data"]["persons"]["edges"])
    entries = await _entries(harness, subject)
    assert len(entries) == 1
    assert json.loads(entries[0].person_ids) == ids


async def test_me_alone_is_not_audited(harness: Harness) -> None:
    subject = _subject()
    token = harness.token("medical_insurance", "province", "37", subject=subject)
    before = await _count(harness)
    body = await harness.query(token, "{ me { subject department fieldAccess { field } } }")
    assert body["data"]["me"]["subject"] == subject
    assert await _count(harness) == before
    assert await _entries(harness, subject) == []


def _absent_id_number(h: Harness) -> str:
    seeded = {p.id_number for p in h.persons}
    county = h.busiest_county()
    birth = date(1980, 1, 1)
    for sequence in range(1000):
        candidate = make_id_number(county, birth + timedelta(days=sequence), sequence)
        if candidate not in seeded:
            return candidate
    raise AssertionError("no absent id number")


async def test_lookup_finding_nobody_is_audited(harness: Harness) -> None:
    subject = _subject()
    token = harness.token("civil_affairs", "county", harness.busiest_county(), subject=subject)
    body = await harness.query(
        token,
        "query Lookup($id: String!) { person(idNumber: $id) { name } }",
        {"id": _absent_id_number(harness)},
        purpose="relief_recognition",
    )
    assert body == {"data": {"person": None}}
    entries = await _entries(harness, subject)
    assert len(entries) == 1
    assert json.loads(entries[0].person_ids) == []
    assert entries[0].purpose == "relief_recognition"


async def test_lookup_outside_scope_is_audited_like_absent(harness: Harness) -> None:
    county = harness.busiest_county()
    outsider = next(p for p in harness.persons if not p.region_code.startswith(county))
    subject = _subject()
    token = harness.token("civil_affairs", "county", county, subject=subject)
    body = await harness.query(
        token,
        "query L($id: String!) { person(idNumber: $id) { name } }",
        {"id": outsider.id_number},
    )
    assert body == {"data": {"person": None}}
    entries = await _entries(harness, subject)
    assert len(entries) == 1
    assert json.loads(entries[0].person_ids) == []
    assert str(outsider.person_id) not in entries[0].person_ids


async def test_empty_page_is_audited(harness: Harness) -> None:
    subject = _subject()
    token = harness.token("big_data", "province", "37", subject=subject)
    body = await harness.query(token, "{ persons(first: 5) { totalCount } }")
    assert body["data"]["persons"]["totalCount"] == 0
    entries = await _entries(harness, subject)
    assert len(entries) == 1
    assert json.loads(entries[0].person_ids) == []


async def test_chain_verifies_after_requests(harness: Harness) -> None:
    token = harness.token("medical_insurance", "province", "37")
    for _ in range(3):
        await harness.query(token, "{ persons(first: 2) { edges { node { name } } } }")
    report = await _verify(harness)
    assert report.ok, report
    assert report.reason is None
    assert report.entries == await _count(harness)
    assert report.entries >= 3
    entries = await _entries(harness)
    assert entries[0].prev_hash == audit.GENESIS
    for previous, current in itertools.pairwise(entries):
        assert current.prev_hash == previous.entry_hash


# --------------------------------------------------------------------------- tampering


@dataclass
class Private:
    harness: Harness
    url: str
    data_dir: Path
    ids: list[int]


@pytest.fixture(params=["sqlite", "postgres"])
async def private(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Private]:
    """A fresh gateway with six audited requests, for tests that tamper with the log."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_audit_{uuid.uuid4().hex[:10]}"
        url = cluster.create_database(name)
    data_dir = tmp_path / "data"
    h = await build_harness(data_dir, url, backend=request.param, persons=30)
    try:
        province = h.persons[0].region_code[:2]
        for index in range(6):
            token = h.token("medical_insurance", "province", province, subject=f"clerk-{index}")
            await h.query(
                token,
                f"query Q{index} {{ persons(first: {index + 1}) "
                "{ edges { node { name } } } }",
                purpose="supervision",
            )
        ids = [entry.id for entry in await _entries(h)]
        assert len(ids) == 6
        yield Private(h, url, data_dir, ids)
    finally:
        await h.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


async def _cli_verify(p: Private, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(
        cli.main, ["audit", "verify", "--database-url", p.url, "--data-dir", str(p.data_dir)]
    )
    out, err = capsys.readouterr()
    return code, out, err


async def _row(h: Harness, entry_id: int) -> dict[str, Any]:
    async with h.runtime.sessions() as session:
        stmt = select(AuditEntry).where(AuditEntry.id == entry_id)
        entry = (await session.execute(stmt)).scalar_one()
        return {
            column.key: getattr(entry, column.key)
            for column in AuditEntry.__table__.columns
            if column.key != "id"
        }


async def _update(h: Harness, entry_id: int, **values: Any) -> None:
    async with h.runtime.sessions() as session:
        await session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(**values))
        await session.commit()


async def test_intact_chain(private: Private, capsys: pytest.CaptureFixture[str]) -> None:
    report = await _verify(private.harness)
    assert report.ok
    assert report.entries == 6
    code, out, err = await _cli_verify(private, capsys)
    assert code == 0, err
    assert "6" in out
    assert "完整" in out


async def _tamper_subject(p: Private) -> int:
    await _update(p.harness, p.ids[2], subject="someone-else")
    return p.ids[2]


async def _tamper_person_ids(p: Private) -> int:
    row = await _row(p.harness, p.ids[3])
    ids = json.loads(row["person_ids"])
    await _update(p.harness, p.ids[3], person_ids=json.dumps(ids[1:]))
    return p.ids[3]


async def _tamper_fields(p: Private) -> int:
    await _update(p.harness, p.ids[1], fields=json.dumps({}))
    return p.ids[1]


async def _tamper_time(p: Private) -> int:
    row = await _row(p.harness, p.ids[2])
    await _update(p.harness, p.ids[2], occurred_at=row["occurred_at"] - timedelta(days=1))
    return p.ids[2]


async def _tamper_purpose_of_last(p: Private) -> int:
    await _update(p.harness, p.ids[-1], purpose="benefit_settlement")
    return p.ids[-1]


async def _tamper_first(p: Private) -> int:
    await _update(p.harness, p.ids[0], department="civil_affairs")
    return p.ids[0]


async def _delete_middle(p: Private) -> int:
    async with p.harness.runtime.sessions() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id == p.ids[2]))
        await session.commit()
    return p.ids[3]  # the entry after the gap no longer links to its predecessor


async def _delete_first(p: Private) -> int:
    async with p.harness.runtime.sessions() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id == p.ids[0]))
        await session.commit()
    return p.ids[1]


async def _swap_entries(p: Private) -> int:
    """Re-order two entries: each row takes the other's complete contents (hashes included)."""
    first, second = p.ids[1], p.ids[2]
    row_first, row_second = await _row(p.harness, first), await _row(p.harness, second)
    await _update(p.harness, first, entry_hash="f" * 64)  # free the unique hash
    await _update(p.harness, second, **row_first)
    await _update(p.harness, first, **row_second)
    return first


async def _edit_and_rehash(p: Private) -> int:
    """A forger who recomputes the edited entry's own hash breaks the next link instead."""
    target = p.ids[2]
    async with p.harness.runtime.sessions() as session:
        stmt = select(AuditEntry).where(AuditEntry.id == target)
        entry = (await session.execute(stmt)).scalar_one()
        entry.subject = "forged"
        entry.entry_hash = audit._entry_digest(entry.prev_hash, audit._hashed_fields(entry))
        await session.commit()
    return p.ids[3]


TAMPERINGS: dict[str, Callable[[Private], Any]] = {
    "update-subject": _tamper_subject,
    "update-person-ids": _tamper_person_ids,
    "update-fields": _tamper_fields,
    "update-time": _tamper_time,
    "update-last": _tamper_purpose_of_last,
    "update-first": _tamper_first,
    "delete-middle": _delete_middle,
    "delete-first": _delete_first,
    "swap-two": _swap_entries,
    "edit-and-rehash": _edit_and_rehash,
}


@pytest.mark.parametrize("kind", list(TAMPERINGS))
async def test_tampering_is_detected(
    private: Private, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    assert (await _verify(private.harness)).ok
    first_bad = await TAMPERINGS[kind](private)
    report = await _verify(private.harness)
    assert not report.ok
    assert report.first_bad_id == first_bad, report
    assert report.reason
    assert re.search(r"[\u4e00-\u9fff]", report.reason)
    # Entries before the bad one are reported as intact.
    surviving = [entry.id for entry in await _entries(private.harness)]
    assert report.entries == sum(1 for i in surviving if i < first_bad)

    code, out, err = await _cli_verify(private, capsys)
    assert code == 1, (out, err)
    assert str(first_bad) in err
    assert "篡改" in err
    assert "Traceback" not in err


async def _cli_verify_anchor(
    p: Private, capsys: pytest.CaptureFixture[str], anchor: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    args = ["audit", "verify", "--database-url", p.url, "--data-dir", str(p.data_dir)]
    code = await asyncio.to_thread(cli.main, [*args, "--anchor", anchor])
    out, err = capsys.readouterr()
    return code, out, err


async def test_deleting_the_last_entries_needs_the_recorded_head(
    private: Private, capsys: pytest.CaptureFixture[str]
) -> None:
    """The limit of a chain: cutting off its END leaves a shorter chain that is intact. The head
    hash that ``audit verify`` prints, recorded outside the database, reveals it."""
    code, out, _err = await _cli_verify(private, capsys)
    assert code == 0
    head = (await _entries(private.harness))[-1].entry_hash
    assert f"链头哈希: {head}" in out
    assert (await _verify(private.harness)).head_hash == head

    async with private.harness.runtime.sessions() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id.in_(private.ids[-2:])))
        await session.commit()
    report = await _verify(private.harness)
    assert report.ok  # the chain alone cannot tell
    assert report.entries == 4
    code, out, _err = await _cli_verify(private, capsys)
    assert code == 0
    assert head not in out  # ... but its head is no longer the one recorded

    anchored = await _verify_anchored(private.harness, head)
    assert not anchored.ok
    assert anchored.anchor_missing
    assert anchored.first_bad_id is None
    code, out, err = await _cli_verify_anchor(private, capsys, head)
    assert code == 1, (out, err)
    assert "篡改" in err
    assert "链头哈希不在日志中" in err

    # An anchor still in the chain (an earlier head) passes: entries may follow it.
    earlier = (await _entries(private.harness))[1].entry_hash
    assert (await _verify_anchored(private.harness, earlier)).ok
    code, _out, err = await _cli_verify_anchor(private, capsys, earlier.upper())
    assert code == 0, err


async def _verify_anchored(h: Harness, anchor: str) -> audit.ChainReport:
    async with h.runtime.sessions() as session:
        return await audit.verify_chain(session, anchor=anchor)


async def test_verify_refuses_a_malformed_anchor(
    private: Private, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = await _cli_verify_anchor(private, capsys, "abc")
    assert code == 2
    assert "64 位十六进制" in err
    assert "Traceback" not in err


async def test_concurrent_requests_keep_one_chain(private: Private) -> None:
    h = private.harness
    province = h.persons[0].region_code[:2]
    tokens = [
        h.token("medical_insurance", "province", province, subject=f"parallel-{i}")
        for i in range(12)
    ]
    await asyncio.gather(
        *(h.query(t, "{ persons(first: 2) { edges { node { name } } } }") for t in tokens)
    )
    report = await _verify(h)
    assert report.ok, report
    assert report.entries == 6 + 12
    entries = await _entries(h)
    assert len({e.prev_hash for e in entries}) == len(entries)  # no fork


async def test_verify_on_empty_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    h = await build_harness(tmp_path / "data", url, backend="sqlite", persons=5)
    try:
        report = await _verify(h)
        assert report.ok
        assert report.entries == 0
        p = Private(h, url, tmp_path / "data", [])
        code, _out, _err = await _cli_verify(p, capsys)
        assert code == 0
    finally:
        await h.close()
