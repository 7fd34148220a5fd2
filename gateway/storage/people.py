"""Scoped reads of people and their records.

``ScopedPeople`` is built with the caller's row predicate (from ``authz.compiler``) and puts it
into every query that returns people: lookups, pages, counts and household members. Child
records are loaded in batches for people that came out of those scoped queries, so nothing
reachable from here leads out of scope, and a page costs a constant number of statements.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import ColumnElement, Result, Row, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.models import Anomaly, CostBurden, Enrollment, Person, ReliefStatus

PersonRow = Row[Any]

_PERSON_COLUMNS = (
    Person.id,
    Person.id_number_ct,
    Person.name_ct,
    Person.phone_ct,
    Person.address_ct,
    Person.gender,
    Person.birth_date,
    Person.region_code,
    Person.household_id,
    # 003 §3: while an anomaly about a person is open, their benefits are suspended.
    exists(
        select(Anomaly.id).where(Anomaly.person_id == Person.id, Anomaly.status == "OPEN")
    ).label("under_verification"),
)


def _select_people() -> Select[Any]:
    """The person columns resolvers may need (ciphertexts are opened only when released)."""
    return cast("Select[Any]", select(*_PERSON_COLUMNS))


@dataclass(frozen=True, slots=True)
class PersonCriteria:
    """A validated ``PersonFilter``. ``category`` without ``active_on`` means held today."""

    region_prefix: str | None = None
    category: str | None = None
    active_on: date | None = None
    enrolled_in: int | None = None


def _active_on(day: date) -> ColumnElement[bool]:
    return and_(
        ReliefStatus.valid_from <= day,
        or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= day),
    )


class ScopedPeople:
    def __init__(
        self, connection: AsyncConnection, predicate: ColumnElement[bool], today: date
    ) -> None:
        self._connection = connection
        self._predicate = predicate
        self._today = today
        # GraphQL resolves sibling root fields and batch loaders concurrently; one connection
        # (one connection, one transaction) runs one statement at a time.
        self._lock = asyncio.Lock()

    @property
    def predicate(self) -> ColumnElement[bool]:
        """The caller's row predicate, for aggregates built elsewhere (coverage) that must count
        exactly the people these methods would return."""
        return self._predicate

    async def execute(self, stmt: Any) -> Result[Any]:
        """Run one statement on the request's connection (shared with ``DepartmentExchange``)."""
        return await self._execute(stmt)

    async def _execute(self, stmt: Any) -> Result[Any]:
        async with self._lock:
            result: Result[Any] = await self._connection.execute(stmt)
            return result

    # ---------------------------------------------------------------- people
    async def by_id_number_index(self, index: bytes) -> PersonRow | None:
        stmt = _select_people().where(Person.id_number_bidx == index, self._predicate)
        row: PersonRow | None = (await self._execute(stmt)).first()
        return row

    async def by_ids(self, person_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[PersonRow]]:
        """People by id, inside the caller's scope (anomalies point at people by id)."""
        stmt = _select_people().where(Person.id.in_(person_ids), self._predicate)
        return {row.id: [row] for row in await self._execute(stmt)}

    async def page(
        self, criteria: PersonCriteria, *, first: int, after: uuid.UUID | None
    ) -> tuple[list[PersonRow], bool]:
        """Keyset page ordered by id: ``first`` rows after ``after``, and whether more follow."""
        stmt = self._filtered(_select_people(), criteria)
        if after is not None:
            stmt = stmt.where(Person.id > after)
        stmt = stmt.order_by(Person.id).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count(self, criteria: PersonCriteria) -> int:
        stmt = self._filtered(select(func.count()).select_from(Person), criteria)
        return int((await self._execute(stmt)).scalar_one())

    async def household_members(
        self, household_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[PersonRow]]:
        stmt = (
            _select_people()
            .where(Person.household_id.in_(household_ids), self._predicate)
            .order_by(Person.id)
        )
        members: dict[uuid.UUID, list[PersonRow]] = defaultdict(list)
        for row in await self._execute(stmt):
            members[row.household_id].append(row)
        return members

    def _filtered(self, stmt: Select[Any], criteria: PersonCriteria) -> Select[Any]:
        stmt = stmt.where(self._predicate)
        prefix = criteria.region_prefix
        if prefix:
            # Equality on the split code columns uses their indexes; LIKE narrows the rest.
            if len(prefix) >= 6:
                stmt = stmt.where(Person.county_code == prefix[:6])
            elif len(prefix) >= 4:
                stmt = stmt.where(Person.city_code == prefix[:4])
            elif len(prefix) >= 2:
                stmt = stmt.where(Person.province_code == prefix[:2])
            if len(prefix) not in (2, 4, 6):
                stmt = stmt.where(Person.region_code.like(prefix + "%"))
        if criteria.category is not None or criteria.active_on is not None:
            day = criteria.active_on or self._today
            conditions = [ReliefStatus.person_id == Person.id, _active_on(day)]
            if criteria.category is not None:
                conditions.append(ReliefStatus.category == criteria.category)
            stmt = stmt.where(exists(select(ReliefStatus.id).where(*conditions)))
        if criteria.enrolled_in is not None:
            stmt = stmt.where(
                exists(
                    select(Enrollment.id).where(
                        Enrollment.person_id == Person.id,
                        Enrollment.year == criteria.enrolled_in,
                        Enrollment.status == "ACTIVE",
                    )
                )
            )
        return stmt

    # ---------------------------------------------------------------- child records
    # Callers pass ids of people that came out of the scoped queries above.

    async def relief_statuses(
        self, person_ids: Sequence[uuid.UUID], active_on: date | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*ReliefStatus.__table__.c).where(ReliefStatus.person_id.in_(person_ids))
        if active_on is not None:
            stmt = stmt.where(_active_on(active_on))
        stmt = stmt.order_by(ReliefStatus.person_id, ReliefStatus.valid_from, ReliefStatus.id)
        return await self._grouped(stmt)

    async def enrollments(
        self, person_ids: Sequence[uuid.UUID], year: int | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*Enrollment.__table__.c).where(Enrollment.person_id.in_(person_ids))
        if year is not None:
            stmt = stmt.where(Enrollment.year == year)
        stmt = stmt.order_by(Enrollment.person_id, Enrollment.year, Enrollment.id)
        return await self._grouped(stmt)

    async def cost_burdens(
        self, person_ids: Sequence[uuid.UUID], year: int | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*CostBurden.__table__.c).where(CostBurden.person_id.in_(person_ids))
        if year is not None:
            stmt = stmt.where(CostBurden.year == year)
        stmt = stmt.order_by(CostBurden.person_id, CostBurden.year, CostBurden.id)
        return await self._grouped(stmt)

    async def _grouped(self, stmt: Select[Any]) -> dict[uuid.UUID, list[Any]]:
        grouped: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for record in await self._execute(stmt):  # plain rows: no ORM identity map
            grouped[record.person_id].append(record)
        return grouped
