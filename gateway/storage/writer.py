"""Bulk writes of canonical records (synthetic seed now; ingest builds on it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import now_utc
from gateway.records import HouseholdBundle
from gateway.storage.models import CostBurden, Enrollment, Household, Person, ReliefStatus
from gateway.storage.vault import PersonVault


@dataclass(slots=True)
class WriteCounts:
    households: int = 0
    persons: int = 0
    relief_statuses: int = 0
    enrollments: int = 0
    cost_burdens: int = 0


async def write_bundles(
    session: AsyncSession,
    vault: PersonVault,
    bundles: Iterable[HouseholdBundle],
    *,
    chunk_persons: int = 2000,
) -> WriteCounts:
    """Store households chunk by chunk, one transaction per chunk (all parts of a household
    are in the same chunk, so a household is stored whole or not at all)."""
    counts = WriteCounts()
    buffer: list[HouseholdBundle] = []
    buffered = 0
    for bundle in bundles:
        buffer.append(bundle)
        buffered += len(bundle.members)
        if buffered >= chunk_persons:
            await _write_chunk(session, vault, buffer, counts)
            buffer, buffered = [], 0
    if buffer:
        await _write_chunk(session, vault, buffer, counts)
    return counts


async def _write_chunk(
    session: AsyncSession, vault: PersonVault, bundles: list[HouseholdBundle], counts: WriteCounts
) -> None:
    created = now_utc()
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
    statuses = [dataclasses.asdict(s) for b in bundles for s in b.relief_statuses]
    enrollments = [dataclasses.asdict(e) for b in bundles for e in b.enrollments]
    burdens = [dataclasses.asdict(c) for b in bundles for c in b.cost_burdens]
    for table, rows in (
        (Household, households),
        (Person, persons),
        (ReliefStatus, statuses),
        (Enrollment, enrollments),
        (CostBurden, burdens),
    ):
        if rows:
            await session.execute(insert(table), rows)
    await session.commit()
    counts.households += len(households)
    counts.persons += len(persons)
    counts.relief_statuses += len(statuses)
    counts.enrollments += len(enrollments)
    counts.cost_burdens += len(burdens)
