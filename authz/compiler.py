"""Policy → SQL: the only code that turns an access decision into a row filter.

The predicate is a SQLAlchemy expression over ``person``; storage puts it inside the WHERE
clause of every query that returns people (pages, lookups, counts, household members), so an
out-of-scope row is never fetched, never counted and never joined to.

    jurisdiction(level, region)  AND  (condition₁ OR condition₂ …)

No row condition granted → ``false``: deny by default.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true

from authz.conditions import AllRows, HoldsCategory, PushedToDepartment, RowCondition
from authz.decision import AccessDecision
from gateway.domain.departments import Level
from gateway.storage.models import Person, ReliefStatus, Task

_JURISDICTION_COLUMN = {
    Level.PROVINCE: Person.province_code,
    Level.CITY: Person.city_code,
    Level.COUNTY: Person.county_code,
}


def row_predicate(
    decision: AccessDecision, *, department: str, level: Level, region: str, today: date
) -> ColumnElement[bool]:
    return _row_predicate(decision.row_conditions, department, level, region, today)


@lru_cache(maxsize=1024)
def _row_predicate(
    row_conditions: tuple[RowCondition, ...],
    department: str,
    level: Level,
    region: str,
    today: date,
) -> ColumnElement[bool]:
    """One predicate object per caller scope: the statements built on it are cached
    (``gateway.storage.people``) and SQLAlchemy memoises its cache key."""
    if not row_conditions:
        return false()
    jurisdiction = _JURISDICTION_COLUMN[level] == region
    conditions = [_condition(condition, department, today) for condition in row_conditions]
    return and_(jurisdiction, or_(*conditions))


def _condition(condition: RowCondition, department: str, today: date) -> ColumnElement[bool]:
    if isinstance(condition, AllRows):
        return true()
    if isinstance(condition, PushedToDepartment):
        # Pushed to the caller's department, answered or not: the person stays visible to the
        # department that must (or did) answer for them.
        return exists(
            select(Task.id).where(Task.person_id == Person.id, Task.department == department)
        )
    if isinstance(condition, HoldsCategory):
        # "Holds" = a status of that category in force today (valid_to is the last day held).
        return exists(
            select(ReliefStatus.id).where(
                ReliefStatus.person_id == Person.id,
                ReliefStatus.category.in_(sorted(condition.categories)),
                ReliefStatus.valid_from <= today,
                or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= today),
            )
        )
    raise TypeError(f"unknown row condition {condition!r}")  # pragma: no cover - exhaustive
