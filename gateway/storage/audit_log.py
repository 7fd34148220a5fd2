"""The audit log as a security officer reads it (issue 5): entries of requests made inside the
officer's jurisdiction, newest first, filtered by person, department, subject and period, and
the verification of the whole chain.

Jurisdiction is the requester's region: a city officer (``3701``) sees what callers of Jinan
and its counties read, never another city's callers, whoever the people read were.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.domain.clock import beijing_day_start
from gateway.storage.audit_chain import ChainReport, verify_chain
from gateway.storage.models import AuditEntry, Person


@dataclass(frozen=True, slots=True)
class AuditCriteria:
    region: str  # the officer's jurisdiction: the requester's region starts with it
    person_id: uuid.UUID | None = None
    no_person: bool = False  # an ID-number filter that matched nobody: nothing can match
    department: str | None = None
    subject: str | None = None
    occurred_from: date | None = None  # Beijing dates, inclusive
    occurred_to: date | None = None


class AuditLogReader:
    """Reads the audit log; never writes it (entries are appended by
    ``gateway.storage.audit_chain`` only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def person_id(self, id_number_index: bytes) -> uuid.UUID | None:
        """The person with this blind index (not scoped: the officer reads the log, not the
        person; the entry of this query records the look-up)."""
        async with self._engine.connect() as connection:
            found = await connection.execute(
                select(Person.id).where(Person.id_number_bidx == id_number_index)
            )
            value = found.scalar()
        return None if value is None else uuid.UUID(str(value))

    def _conditions(self, criteria: AuditCriteria) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [AuditEntry.region.startswith(criteria.region)]
        if criteria.no_person:
            conditions.append(AuditEntry.id < 0)
        if criteria.person_id is not None:
            # person_ids is a JSON array of ids as text: the quoted id matches exactly one
            # element (same statement on SQLite and PostgreSQL; ids hold no LIKE wildcards).
            conditions.append(AuditEntry.person_ids.contains(f'"{criteria.person_id}"'))
        if criteria.department is not None:
            conditions.append(AuditEntry.department == criteria.department)
        if criteria.subject is not None:
            conditions.append(AuditEntry.subject == criteria.subject)
        # Bounds in UTC like the stored timestamps (see gateway.storage.exchange).
        if criteria.occurred_from is not None:
            conditions.append(AuditEntry.occurred_at >= beijing_day_start(criteria.occurred_from))
        if criteria.occurred_to is not None:
            end = beijing_day_start(criteria.occurred_to + timedelta(days=1))
            conditions.append(AuditEntry.occurred_at < end)
        return conditions

    async def page(
        self, criteria: AuditCriteria, *, first: int, before_id: int | None
    ) -> tuple[list[Any], bool]:
        """Newest first (ids grow with the chain); ``before_id`` is the cursor."""
        stmt = select(*AuditEntry.__table__.c).where(*self._conditions(criteria))
        if before_id is not None:
            stmt = stmt.where(AuditEntry.id < before_id)
        stmt = stmt.order_by(AuditEntry.id.desc()).limit(first + 1)
        async with self._engine.connect() as connection:
            rows = list((await connection.execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count(self, criteria: AuditCriteria) -> int:
        stmt = select(func.count()).select_from(AuditEntry).where(*self._conditions(criteria))
        async with self._engine.connect() as connection:
            return int((await connection.execute(stmt)).scalar_one())

    async def verify(self) -> ChainReport:
        async with AsyncSession(self._engine, expire_on_commit=False) as session:
            return await verify_chain(session)
