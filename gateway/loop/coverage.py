"""Enrollment coverage of rural low-income and lifted-from-poverty people (rule 8, 002 §1):
stays at 99% or more; the suspected non-enrolled are listed for follow-up.

Who counts: the people the caller may see *in the region asked for* — in its row scope and
tied to that region by one of the places its row scope names (issue 14, DOMAIN.md rule 9:
residence 居住地, identity 认定地, insured 参保地, addressed 推送地, held today, exactly as the
caller's own list of that region would show them; ``people_in`` is built from the one policy
compiler by the schema) — holding one of the configured coverage categories on the reference
day (31 December of the year, or today for the current year) and not deceased before it.
Enrolled: an enrollment of that year with status ACTIVE, wherever it is (a person insured in
another county is covered, 002 §1); a suspended or terminated enrollment is not coverage.

Each person counts once in a region, however many places tie them to it; a person tied to two
counties counts once in each county's ``by_county`` row and once in the total, so the counties
of a city may add up to more than the city. Places are known per county: a prefix finer than a
county (township, village) or not a region code (3 or 5 digits) counts the people *living*
there. Every figure is SQL (``GROUP BY``, one ``UNION ALL`` for the counties); no person is
loaded to be counted, and the non-enrolled are listed a page at a time.

    counter = CoverageCounter(execute, people_in, region_prefix="370102", year=2026,
                              reference_date=date(2026, 11, 23),
                              categories=rules.coverage_categories)
    totals = await counter.totals()          # Tally(population=…, enrolled=…)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Result,
    Select,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    union,
    union_all,
)

from gateway.domain.errors import BadUserInput, Forbidden
from gateway.storage.models import Enrollment, Person, PersonPlace, ReliefStatus

Execute = Callable[[Any], Awaitable[Result[Any]]]
# The people the caller counts in a region of 2, 4 or 6 digits: in its row scope and tied to
# that region by a place its row scope names (built by the schema from ``authz.compiler``).
PeopleIn = Callable[[str], ColumnElement[bool]]

_REGION_DIGITS = (2, 4, 6)
# Counties per UNION ALL statement (SQLite allows 500 terms in a compound SELECT).
_COUNTIES_PER_STATEMENT = 200

_RATE_PLACES = Decimal("0.0001")
FIRST_YEAR = 2000


class NonEnrollmentReason(StrEnum):
    NO_ENROLLMENT = "NO_ENROLLMENT"  # 当年无参保记录
    SUSPENDED = "SUSPENDED"  # 暂停参保
    TERMINATED = "TERMINATED"  # 终止参保


@dataclass(frozen=True, slots=True)
class Tally:
    population: int
    enrolled: int

    def rate(self) -> Decimal | None:
        """Enrolled share with 4 decimals, cut (not rounded) so that a shown rate never
        reaches the target when the exact share does not; None for an empty population."""
        if self.population == 0:
            return None
        return (Decimal(self.enrolled) / Decimal(self.population)).quantize(
            _RATE_PLACES, rounding=ROUND_DOWN
        )

    def meets(self, target: Decimal) -> bool:
        """Exactly: enrolled / population ≥ target (99 of 100 meets 0.99, 98 of 99 does not).
        An empty population has nobody left out."""
        return Decimal(self.enrolled) >= target * Decimal(self.population)


def reference_date(year: int, today: date) -> date:
    """The day identities are taken on: 31 December, or today for the current year."""
    if year < FIRST_YEAR:
        raise BadUserInput(f"year 应为 {FIRST_YEAR} 年或以后的四位年份")
    if year > today.year:
        raise BadUserInput(f"{year} 年尚未开始, 无法计算参保率")
    if year == today.year:
        return today
    return date(year, 12, 31)


def check_region_prefix(prefix: str, jurisdiction: str) -> str:
    """A region code prefix inside the caller's jurisdiction (its own code or finer).

    A region larger than the jurisdiction is refused rather than silently narrowed: a county
    clerk asking for the city would otherwise read its county's rate as the city's."""
    if not (prefix.isascii() and prefix.isdigit() and 2 <= len(prefix) <= 12):
        raise BadUserInput("regionPrefix 应为 2 到 12 位数字的行政区划代码 (前缀)")
    if not prefix.startswith(jurisdiction):
        raise Forbidden(
            f"regionPrefix {prefix} 不在本辖区 ({jurisdiction}) 内; "
            "请使用本辖区代码或其下级区划代码"
        )
    return prefix


class CoverageCounter:
    """The coverage figures of one region and year, inside one caller's row scope."""

    def __init__(
        self,
        execute: Execute,
        people_in: PeopleIn,
        *,
        region_prefix: str,
        year: int,
        reference_date: date,
        categories: Collection[str],
    ) -> None:
        self._execute = execute
        self._people_in = people_in
        self._prefix = region_prefix
        self._year = year
        self._day = reference_date
        self._categories = sorted(categories)

    # ---------------------------------------------------------------- predicates
    def _status_held(self) -> list[ColumnElement[bool]]:
        """A coverage category in force on the reference day (valid_to: the last day held)."""
        return [
            ReliefStatus.category.in_(self._categories),
            ReliefStatus.valid_from <= self._day,
            or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= self._day),
        ]

    @property
    def _by_places(self) -> bool:
        """A province, city or county code: places count. Finer or partial prefixes: the
        residence only (places are known per county)."""
        return len(self._prefix) in _REGION_DIGITS

    def _in_region(self, region: str) -> list[ColumnElement[bool]]:
        """The caller's people tied to ``region`` (for a finer prefix: living there)."""
        if len(region) in _REGION_DIGITS:
            return [self._people_in(region)]
        # The enclosing region code's people, then the residence's own code: equality on the
        # split code column uses its index, LIKE narrows to the township or village.
        enclosing = max(d for d in _REGION_DIGITS if d < len(region))
        column = {2: Person.province_code, 4: Person.city_code, 6: Person.county_code}[enclosing]
        return [
            self._people_in(region[:enclosing]),
            column == region[:enclosing],
            Person.region_code.like(region + "%"),
        ]

    def _counted(self, region: str | None = None) -> list[ColumnElement[bool]]:
        """Who counts, apart from holding a category: the caller's people of the region
        (default: the one asked for), alive on the reference day."""
        return [
            *self._in_region(region or self._prefix),
            or_(Person.deceased_on.is_(None), Person.deceased_on >= self._day),
        ]

    def _holds(self) -> ColumnElement[bool]:
        return exists(
            select(ReliefStatus.id).where(ReliefStatus.person_id == Person.id, *self._status_held())
        )

    def _enrollment(self, *statuses: str) -> ColumnElement[bool]:
        conditions = [Enrollment.person_id == Person.id, Enrollment.year == self._year]
        if statuses:
            conditions.append(Enrollment.status.in_(statuses))
        return exists(select(Enrollment.id).where(*conditions))

    def _enrolled(self) -> ColumnElement[bool]:
        return self._enrollment("ACTIVE")

    def _tally_columns(self) -> tuple[Any, Any]:
        return (
            func.count().label("population"),
            func.coalesce(func.sum(case((self._enrolled(), 1), else_=0)), 0).label("enrolled"),
        )

    # ---------------------------------------------------------------- figures
    async def totals(self) -> Tally:
        """Each person once, however many categories they hold."""
        stmt = select(*self._tally_columns()).select_from(Person)
        stmt = stmt.where(*self._counted(), self._holds())
        return _tally((await self._execute(stmt)).one())

    async def by_category(self) -> list[tuple[str, Tally]]:
        """Per category: a person holding two categories counts in both (once in each, even
        when two departments recognised the same category)."""
        held = (
            select(ReliefStatus.person_id, ReliefStatus.category)
            .where(*self._status_held())
            .distinct()
            .subquery()
        )
        stmt = (
            select(held.c.category, *self._tally_columns())
            .select_from(held.join(Person, Person.id == held.c.person_id))
            .where(*self._counted())
            .group_by(held.c.category)
            .order_by(held.c.category)
        )
        return [(row.category, _tally(row)) for row in await self._execute(stmt)]

    async def by_county(self) -> list[tuple[str, Tally]]:
        """Per county of the region: the people that county's figure counts (the same figure
        the county's own office of the caller's department gets), each once per county.

        One statement finds the counties where a counted person lives or holds a place, one
        ``UNION ALL`` (a branch per county) counts them; counties with nobody are left out."""
        if not self._by_places:
            # Residents only (see the module docstring): the residence's county.
            stmt = (
                select(Person.county_code, *self._tally_columns())
                .where(*self._counted(), self._holds())
                .group_by(Person.county_code)
                .order_by(Person.county_code)
            )
            return [(row.county_code, _tally(row)) for row in await self._execute(stmt)]
        counties = [self._prefix] if len(self._prefix) == 6 else await self._counties()
        found: list[tuple[str, Tally]] = []
        for start in range(0, len(counties), _COUNTIES_PER_STATEMENT):
            branches = [
                select(literal(county).label("county_code"), *self._tally_columns())
                .select_from(Person)
                .where(*self._counted(county), self._holds())
                for county in counties[start : start + _COUNTIES_PER_STATEMENT]
            ]
            counts: Any = branches[0] if len(branches) == 1 else union_all(*branches)
            found += [(row.county_code, _tally(row)) for row in await self._execute(counts)]
        return sorted((county, tally) for county, tally in found if tally.population)

    async def _counties(self) -> list[str]:
        """Counties of the region where someone counted in it lives or holds a place (a
        superset: the per-county branches decide who counts there)."""
        counted = select(Person.id).where(*self._counted(), self._holds())
        column = {2: PersonPlace.province_code, 4: PersonPlace.city_code}[len(self._prefix)]
        living = select(Person.county_code.label("county")).where(*self._counted(), self._holds())
        placed = select(PersonPlace.county_code.label("county")).where(
            column == self._prefix, PersonPlace.person_id.in_(counted)
        )
        rows = await self._execute(union(living, placed))
        return sorted({str(row.county) for row in rows if str(row.county).startswith(self._prefix)})

    def _not_enrolled(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.where(*self._counted(), self._holds(), ~self._enrolled())

    async def not_enrolled(
        self, *, first: int, after: uuid.UUID | None
    ) -> tuple[list[tuple[uuid.UUID, NonEnrollmentReason]], bool]:
        """The suspected non-enrolled (002 §1: 疑似未参保人员), by person id, with the reason:
        no enrollment that year, else suspended (any suspended row), else terminated."""
        reason = case(
            (~self._enrollment(), NonEnrollmentReason.NO_ENROLLMENT.value),
            (self._enrollment("SUSPENDED"), NonEnrollmentReason.SUSPENDED.value),
            else_=NonEnrollmentReason.TERMINATED.value,
        )
        stmt = self._not_enrolled(select(Person.id, reason.label("reason")))
        if after is not None:
            stmt = stmt.where(Person.id > after)
        stmt = stmt.order_by(Person.id).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        found = [(uuid.UUID(str(row.id)), NonEnrollmentReason(row.reason)) for row in rows]
        return found[:first], len(found) > first

    async def count_not_enrolled(self) -> int:
        stmt = self._not_enrolled(select(func.count()).select_from(Person))
        return int((await self._execute(stmt)).scalar_one())


def _tally(row: Any) -> Tally:
    return Tally(int(row.population), int(row.enrolled))


__all__ = [
    "CoverageCounter",
    "NonEnrollmentReason",
    "PeopleIn",
    "Tally",
    "check_region_prefix",
    "reference_date",
]
