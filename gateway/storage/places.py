"""Places of a person (``person_place``), derived from the facts that tie a person to a region.

    identity   one row per (person, recognising department, county) from ``relief_status``:
               from the earliest ``valid_from``; ends on the latest ``valid_to`` once every
               identity recognised there has exited (null while one holds)
    insured    one row per (person, county of ``enrollment.region_code``): from 1 January of
               the first year enrolled there; holds while the person's latest enrollment year
               has a live (not terminated) enrollment there, else ends on 31 December of the
               last year with one (a terminated-only place never held)
    addressed  one row per (person, department, county) a task was pushed to: from the first
               task's day, never ending (the department that must, or did, answer keeps the
               person in view)
    reported   one row per ``person_report``: a department's row about a person held outside
               its jurisdiction, from the day first sent to the day the person's county
               verified it (null while unverified). Until then the identity or insured place
               that sender's facts would give is not derived: its sender sees only what it
               sent (issue 14 item 4)

``refresh_places`` recomputes the rows of the given people from those facts and writes them
with one upsert: idempotent, so a re-run, a resumed import or a repeated warning run leaves the
same rows as a clean one. Callers run it in the transaction that changed the facts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Date, Select, String, case, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.departments import Department
from gateway.domain.places import PlaceKind
from gateway.storage.models import (
    Enrollment,
    Person,
    PersonPlace,
    PersonReport,
    ReliefStatus,
    Task,
)
from gateway.storage.setwise import dialect_insert

TERMINATED = "TERMINATED"
_COLUMNS = [
    "person_id", "kind", "department", "county_code", "city_code", "province_code", "since",
    "until",
]  # fmt: skip


async def refresh_places(
    connection: AsyncConnection, people: Select[Any] | Iterable[uuid.UUID]
) -> None:
    """Recompute the stored places of ``people`` (a SELECT of person ids, or the ids) from
    their relief statuses, enrollments and tasks: three set-based upserts, no row in Python."""
    ids: Any = people if isinstance(people, Select) else list(people)
    if not isinstance(ids, Select) and not ids:
        return
    dialect = connection.dialect.name
    for rows in (
        _identity_places(ids),
        _insured_places(ids, dialect),
        _addressed_places(ids),
        _reported_places(ids),
    ):
        statement = dialect_insert(dialect, PersonPlace).from_select(_COLUMNS, rows)
        statement = statement.on_conflict_do_update(
            index_elements=["person_id", "kind", "department", "county_code"],
            set_={"since": statement.excluded.since, "until": statement.excluded.until},
        )
        await connection.execute(statement)


def _region(county: Any) -> list[Any]:
    return [county, func.substr(county, 1, 4), func.substr(county, 1, 2)]


def _identity_places(ids: Any) -> Select[Any]:
    county = func.coalesce(ReliefStatus.county_code, Person.county_code)
    return (
        select(
            ReliefStatus.person_id,
            literal(PlaceKind.IDENTITY.value, String()),
            ReliefStatus.source_department,
            *_region(county),
            func.min(ReliefStatus.valid_from),
            # null while one identity recognised there holds
            case(
                (func.count(ReliefStatus.valid_to) == func.count(), func.max(ReliefStatus.valid_to))
            ),
        )
        .join(Person, Person.id == ReliefStatus.person_id)
        .where(
            ReliefStatus.person_id.in_(ids),
            ~_unverified(ReliefStatus.person_id, ReliefStatus.source_department, county),
        )
        .group_by(ReliefStatus.person_id, ReliefStatus.source_department, county)
    )


def _insured_places(ids: Any, dialect: str) -> Select[Any]:
    county = func.substr(Enrollment.region_code, 1, 6)
    latest = (
        select(Enrollment.person_id, func.max(Enrollment.year).label("year"))
        .where(Enrollment.person_id.in_(ids))
        .group_by(Enrollment.person_id)
        .subquery()
    )
    first_year = func.min(Enrollment.year)
    last_live = func.max(case((Enrollment.status != TERMINATED, Enrollment.year)))
    return (
        select(
            Enrollment.person_id,
            literal(PlaceKind.INSURED.value, String()),
            literal(Department.MEDICAL_INSURANCE.value, String()),
            *_region(county),
            _year_start(dialect, first_year),
            case(
                (last_live >= latest.c.year, None),
                (last_live.is_not(None), _year_end(dialect, last_live)),
                # terminated only: ends the day before it starts (never held)
                else_=_day_before(dialect, _year_start(dialect, first_year)),
            ),
        )
        .join(latest, latest.c.person_id == Enrollment.person_id)
        .where(
            Enrollment.person_id.in_(ids),
            ~_unverified(
                Enrollment.person_id, literal(Department.MEDICAL_INSURANCE.value, String()), county
            ),
        )
        .group_by(Enrollment.person_id, county, latest.c.year)
    )


def _addressed_places(ids: Any) -> Select[Any]:
    return (
        select(
            Task.person_id,
            literal(PlaceKind.ADDRESSED.value, String()),
            Task.department,
            *_region(Task.county_code),
            func.min(Task.opened_on),
            literal(None, Date()),
        )
        .where(Task.person_id.in_(ids))
        .group_by(Task.person_id, Task.department, Task.county_code)
    )


def _reported_places(ids: Any) -> Select[Any]:
    return select(
        PersonReport.person_id,
        literal(PlaceKind.REPORTED.value, String()),
        PersonReport.department,
        *_region(PersonReport.county_code),
        PersonReport.reported_on,
        PersonReport.verified_on,
    ).where(PersonReport.person_id.in_(ids))


def _unverified(person_id: Any, department: Any, county: Any) -> Any:
    """A report of ``department`` in ``county`` about the person that its county has not
    verified: the facts it stored give that sender no place yet."""
    return exists(
        select(PersonReport.person_id).where(
            PersonReport.person_id == person_id,
            PersonReport.department == department,
            PersonReport.county_code == county,
            PersonReport.verified_on.is_(None),
        )
    )


def _year_start(dialect: str, year: Any) -> Any:
    if dialect == "postgresql":
        return func.make_date(year, 1, 1)
    return func.date(func.printf("%04d-01-01", year), type_=Date())


def _year_end(dialect: str, year: Any) -> Any:
    if dialect == "postgresql":
        return func.make_date(year, 12, 31)
    return func.date(func.printf("%04d-12-31", year), type_=Date())


def _day_before(dialect: str, day: Any) -> Any:
    if dialect == "postgresql":
        return (day - literal(1)).cast(Date())
    return func.date(day, "-1 day", type_=Date())
