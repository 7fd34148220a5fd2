"""Bulk writes of canonical records from the synthetic generator (``seed``, ``demo``, tests).

Department data arrives through ``adapters.pipeline`` instead; this writer stores a whole
synthetic population at once, with the same provenance ingest gives real data: one batch per
department (channel ``SEED``), each fact pointing at it, and a ``person_source`` row for every
department that holds a record of the person.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.clock import now_utc
from gateway.domain.records import HouseholdBundle
from gateway.domain.regions import narrowest_jurisdiction
from gateway.domain.synthetic import household_number
from gateway.storage.models import (
    CostBurden,
    Enrollment,
    Household,
    IngestBatch,
    Person,
    PersonSource,
    ReliefStatus,
)
from gateway.storage.places import refresh_places
from gateway.storage.vault import PersonVault

MEDICAL_INSURANCE = "medical_insurance"  # sends enrollments and cost burdens


@dataclass(slots=True)
class WriteCounts:
    households: int = 0
    persons: int = 0
    relief_statuses: int = 0
    enrollments: int = 0
    cost_burdens: int = 0


@dataclass(slots=True)
class _SeedBatches:
    received_at: datetime
    submitted_by: str
    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    counties: dict[str, set[str]] = field(default_factory=dict)

    async def id_for(self, session: AsyncSession, department: str) -> uuid.UUID:
        if department not in self.ids:
            self.ids[department] = uuid.uuid4()
            self.rows[department] = 0
            self.counties[department] = set()
            await session.execute(
                insert(IngestBatch).values(
                    id=self.ids[department],
                    department=department,
                    feed="synthetic",
                    channel="SEED",
                    file_name=None,
                    content_sha256=None,
                    region="",
                    submitted_by=self.submitted_by,
                    received_at=self.received_at,
                    status="RUNNING",
                )
            )
        return self.ids[department]

    def count(self, department: str, county: str) -> None:
        self.rows[department] += 1
        self.counties[department].add(county)

    async def finish(self, session: AsyncSession) -> None:
        for department, batch_id in self.ids.items():
            rows = self.rows[department]
            await session.execute(
                update(IngestBatch)
                .where(IngestBatch.id == batch_id)
                .values(
                    status="COMPLETED",
                    finished_at=now_utc(),
                    region=narrowest_jurisdiction(self.counties[department]),
                    rows_total=rows,
                    rows_accepted=rows,
                    added=rows,
                )
            )
        await session.commit()


async def write_bundles(
    session: AsyncSession,
    vault: PersonVault,
    bundles: Iterable[HouseholdBundle],
    *,
    chunk_persons: int = 2000,
    submitted_by: str = "seed",
) -> WriteCounts:
    """Store households chunk by chunk, one transaction per chunk (all parts of a household
    are in the same chunk, so a household is stored whole or not at all)."""
    counts = WriteCounts()
    batches = _SeedBatches(received_at=now_utc(), submitted_by=submitted_by)
    buffer: list[HouseholdBundle] = []
    buffered = 0
    for bundle in bundles:
        buffer.append(bundle)
        buffered += len(bundle.members)
        if buffered >= chunk_persons:
            await _write_chunk(session, vault, buffer, counts, batches)
            buffer, buffered = [], 0
    if buffer:
        await _write_chunk(session, vault, buffer, counts, batches)
    await batches.finish(session)
    return counts


async def _write_chunk(
    session: AsyncSession,
    vault: PersonVault,
    bundles: list[HouseholdBundle],
    counts: WriteCounts,
    batches: _SeedBatches,
) -> None:
    created = batches.received_at
    households = [
        {
            "id": b.household.household_id,
            "region_code": b.household.region_code,
            "county_code": b.household.region_code[:6],
        }
        for b in bundles
    ]
    persons = [
        {**vault.person_values(member), "created_at": created}
        for b in bundles
        for member in b.members
    ]
    sources: list[dict[str, object]] = []
    statuses: list[dict[str, object]] = []
    enrollments: list[dict[str, object]] = []
    burdens: list[dict[str, object]] = []
    for b in bundles:
        members = {m.person_id: m for m in b.members}
        reported: dict[uuid.UUID, set[str]] = {}
        for s in b.relief_statuses:
            batch = await batches.id_for(session, s.source_department)
            batches.count(s.source_department, members[s.person_id].region_code[:6])
            statuses.append(
                {
                    **dataclasses.asdict(s),
                    **_provenance(batch, created),
                    # Synthetic lists reach the exchange the day they take effect.
                    "listed_on": s.valid_from,
                    "exit_listed_on": s.valid_to + timedelta(days=1) if s.valid_to else None,
                    # Synthetic identities are recognised where the person lives.
                    "county_code": members[s.person_id].region_code[:6],
                }
            )
            reported.setdefault(s.person_id, set()).add(s.source_department)
        for e in b.enrollments:
            batch = await batches.id_for(session, MEDICAL_INSURANCE)
            batches.count(MEDICAL_INSURANCE, members[e.person_id].region_code[:6])
            enrollments.append({**dataclasses.asdict(e), **_provenance(batch, created)})
            reported.setdefault(e.person_id, set()).add(MEDICAL_INSURANCE)
        for c in b.cost_burdens:
            batch = await batches.id_for(session, MEDICAL_INSURANCE)
            burdens.append({**dataclasses.asdict(c), **_provenance(batch, created)})
        for person_id, departments in reported.items():
            member = members[person_id]
            for department in sorted(departments):
                facts = (
                    (member.name,)
                    if department == MEDICAL_INSURANCE
                    else (
                        member.name,
                        member.region_code,
                        member.phone,
                        member.address,
                        household_number(b.household.household_id),
                        member.relation,
                    )
                )
                sources.append(
                    {
                        "person_id": person_id,
                        "department": department,
                        "digest": vault.source_digest(department, facts),
                        "batch_id": batches.ids[department],
                        "source_line": None,
                        "received_at": created,
                    }
                )
    for table, rows in (
        (Household, households),
        (Person, persons),
        (PersonSource, sources),
        (ReliefStatus, statuses),
        (Enrollment, enrollments),
        (CostBurden, burdens),
    ):
        if rows:
            await session.execute(insert(table), rows)
    await refresh_places(await session.connection(), [row["id"] for row in persons])
    await session.commit()
    counts.households += len(households)
    counts.persons += len(persons)
    counts.relief_statuses += len(statuses)
    counts.enrollments += len(enrollments)
    counts.cost_burdens += len(burdens)


def _provenance(batch: uuid.UUID, received: datetime) -> dict[str, object]:
    return {"batch_id": batch, "source_line": None, "received_at": received}
