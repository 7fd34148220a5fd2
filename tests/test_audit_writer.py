"""The audit group-commit writer: no data leaves without its durable audit entry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.storage import audit_chain as audit
from gateway.storage.models import AuditEntry
from tests.harness import Harness, build_harness

LOOKUP = "query($id: String!) { person(idNumber: $id) { name idNumber } }"


@pytest.fixture
async def private(tmp_path: Path) -> Harness:
    built = await build_harness(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", backend="sqlite", persons=40
    )
    yield built  # type: ignore[misc]
    await built.close()


async def _entries(h: Harness) -> int:
    async with h.runtime.sessions() as session:
        return int((await session.execute(select(func.count(AuditEntry.id)))).scalar_one())


async def test_failed_audit_write_withholds_the_result(
    private: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = private.persons[0]
    token = private.token("medical_insurance", "province", person.region_code[:2])

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(audit, "append_entries", broken)
    response = await private.post(token, LOOKUP, {"id": person.id_number})
    assert response.status_code == 503
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert "data" not in body
    assert person.name not in response.text
    assert person.id_number not in response.text
    assert "disk full" not in response.text


async def test_concurrent_reads_are_group_committed_into_one_chain(private: Harness) -> None:
    before = await _entries(private)
    people = private.persons[:16]
    requests = [
        private.query(
            private.token("medical_insurance", "province", p.region_code[:2]),
            LOOKUP,
            {"id": p.id_number},
        )
        for p in people
    ]
    bodies = await asyncio.gather(*requests)
    assert all(
        body["data"]["person"]["idNumber"] == p.id_number
        for body, p in zip(bodies, people, strict=True)
    )
    assert await _entries(private) == before + len(people)
    async with private.runtime.sessions() as session:
        report = await audit.verify_chain(session)
    assert report.ok, report
