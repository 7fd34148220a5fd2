"""Policy → SQL: the only code that turns an access decision into a row filter.

The predicate is a SQLAlchemy expression over ``person``; storage puts it inside the WHERE
clause of every query that returns people (pages, lookups, counts, household members), so an
out-of-scope row is never fetched, never counted and never joined to.

    for each set of places named by the granted conditions:
        in_jurisdiction(places, level, region)  AND  (condition₁ OR condition₂ …)
    OR-ed together

``in_jurisdiction`` is the residence's own column (``person.county_code = :region``) and, for
the other kinds (identity, insured, addressed: ``gateway.domain.places``), the person's places
held today in the region (``person.id IN (SELECT person_id FROM person_place …)``, an index
range on the place's region and kind). An addressed place counts only when it was addressed to
the caller's department. Every scope also holds the people the caller's department reported
itself while they were held elsewhere (``_reported``), seen as reported. No row condition
granted → ``false``: deny by default.

The same decision, read the other way round, is a list of ``IdSource``: one per way into the
jurisdiction (the residence column, each stored kind, the department's own reports), with the
conditions granted through it. A person is in scope exactly when some source holds them and
they meet its conditions, so a keyset page can walk each source along its own index in id
order and merge (``gateway.storage.people``): the predicate's ``OR`` of a column and a
subselect walks the whole primary key instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute

from authz.conditions import AllRows, HoldsCategory, PushedToDepartment, RowCondition
from authz.decision import AccessDecision
from gateway.domain.departments import Level
from gateway.domain.places import STORED_PLACE_KINDS, PlaceKind
from gateway.storage.models import Person, PersonPlace, ReliefStatus, Task
from gateway.storage.people import IdSource

_JURISDICTION_COLUMN = {
    Level.PROVINCE: Person.province_code,
    Level.CITY: Person.city_code,
    Level.COUNTY: Person.county_code,
}
_PLACE_COLUMN = {
    Level.PROVINCE: PersonPlace.province_code,
    Level.CITY: PersonPlace.city_code,
    Level.COUNTY: PersonPlace.county_code,
}


@dataclass(frozen=True, slots=True)
class RowScope:
    """One caller scope compiled: ``predicate`` ≡ some source holds the person and the person
    meets its conditions (a residence-only or deny-all scope has no place source)."""

    predicate: ColumnElement[bool]
    sources: tuple[IdSource, ...]
    # The same predicate with each place as a correlated EXISTS (an index probe per person)
    # instead of ``IN (SELECT …)``, which PostgreSQL hashes whole — every place of the kind in
    # the region — before it looks at the one person a lookup is about.
    probe: ColumnElement[bool]


def row_predicate(
    decision: AccessDecision, *, department: str, level: Level, region: str, today: date
) -> ColumnElement[bool]:
    return row_scope(
        decision, department=department, level=level, region=region, today=today
    ).predicate


def row_scope(
    decision: AccessDecision, *, department: str, level: Level, region: str, today: date
) -> RowScope:
    return _row_scope(decision.row_conditions, department, level, region, today)


@lru_cache(maxsize=1024)
def _row_scope(
    row_conditions: tuple[RowCondition, ...],
    department: str,
    level: Level,
    region: str,
    today: date,
) -> RowScope:
    """One predicate object per caller scope: the statements built on it are cached
    (``gateway.storage.people``) and SQLAlchemy memoises its cache key."""
    if not row_conditions:
        return RowScope(false(), (), false())
    by_places: dict[frozenset[PlaceKind], list[RowCondition]] = {}
    for condition in row_conditions:
        by_places.setdefault(condition.places, []).append(condition)
    groups = sorted(by_places.items(), key=lambda item: sorted(item[0]))
    scopes, probes = (
        [
            and_(
                in_jurisdiction(places, department, level, region, today, probe=probe),
                or_(*(_condition(c, department, today) for c in conditions)),
            )
            for places, conditions in groups
        ]
        for probe in (False, True)
    )
    # Per way in: the conditions of every group that names it.
    granted: dict[PlaceKind, list[RowCondition]] = {}
    for places, conditions in groups:
        for kind in places:
            granted.setdefault(kind, []).extend(conditions)
    sources = [
        _source(kind, granted[kind], department, level, region, today)
        for kind in PlaceKind
        if kind in granted
    ]
    own = _reported(row_conditions, region, today)
    if own:
        held = _places_held(frozenset({PlaceKind.REPORTED}), department, level, region, today)
        everyone = any(isinstance(c, AllRows) for c in row_conditions)
        scopes.append(and_(_holds(held, probe=False), or_(*own)))
        probes.append(and_(_holds(held, probe=True), or_(*own)))
        sources.append(IdSource(PersonPlace.person_id, held, None if everyone else or_(*own)))
    return RowScope(or_(*scopes), tuple(sources), or_(*probes))


def _source(
    kind: PlaceKind,
    conditions: list[RowCondition],
    department: str,
    level: Level,
    region: str,
    today: date,
) -> IdSource:
    if kind is PlaceKind.RESIDENCE:
        key: InstrumentedAttribute[uuid.UUID] = Person.id
        jurisdiction = _JURISDICTION_COLUMN[level] == region
    else:
        key = PersonPlace.person_id
        jurisdiction = _places_held(frozenset({kind}), department, level, region, today)
    if any(isinstance(c, AllRows) for c in conditions):
        return IdSource(key, jurisdiction, None)
    return IdSource(key, jurisdiction, or_(*(_condition(c, department, today) for c in conditions)))


def _reported(
    row_conditions: Iterable[RowCondition], region: str, today: date
) -> list[ColumnElement[bool]]:
    """The conditions under which the caller sees the people its department itself reported
    while they were held outside its region (issue 14 item 4), evaluated on what its region
    sent: the sender sees them exactly as it would see a person its row had created
    (``PlaceKind.REPORTED``). Empty: its scope brings none."""
    own: list[ColumnElement[bool]] = []
    for condition in row_conditions:
        if isinstance(condition, AllRows):
            own.append(true())
        elif isinstance(condition, HoldsCategory):
            own.append(
                exists(
                    select(ReliefStatus.id).where(
                        ReliefStatus.person_id == Person.id,
                        ReliefStatus.county_code.like(region + "%"),
                        ReliefStatus.category.in_(sorted(condition.categories)),
                        ReliefStatus.valid_from <= today,
                        or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= today),
                    )
                )
            )
        # a push is addressed to the person's own county: a report brings none
    return own


# Places that belong to one department: where it recognised an identity, where a push was
# addressed to it, where it reported a person held elsewhere. An insured place is medical
# insurance's, and counts for whoever names it.
_OWN_DEPARTMENT_KINDS = frozenset({PlaceKind.IDENTITY, PlaceKind.ADDRESSED, PlaceKind.REPORTED})


def _own_department(kinds: frozenset[PlaceKind], department: str) -> ColumnElement[bool]:
    if not kinds & _OWN_DEPARTMENT_KINDS:
        return true()
    if kinds <= _OWN_DEPARTMENT_KINDS:
        return PersonPlace.department == department
    return or_(
        PersonPlace.kind.not_in([kind.value for kind in sorted(_OWN_DEPARTMENT_KINDS)]),
        PersonPlace.department == department,
    )


def _places_held(
    kinds: frozenset[PlaceKind], department: str, level: Level, region: str, today: date
) -> ColumnElement[bool]:
    """Stored places of these kinds in the caller's region, held today. A push addressed to
    another department, or an identity another department recognised, counts for nobody else."""
    return and_(
        _PLACE_COLUMN[level] == region,
        PersonPlace.kind.in_(sorted(kind.value for kind in kinds)),
        PersonPlace.since <= today,
        or_(PersonPlace.until.is_(None), PersonPlace.until >= today),
        _own_department(kinds, department),
    )


def in_jurisdiction(
    places: frozenset[PlaceKind],
    department: str,
    level: Level,
    region: str,
    today: date,
    *,
    probe: bool = False,
) -> ColumnElement[bool]:
    """A person tied to ``region`` (at the caller's ``level``) by one of ``places``; with
    ``probe``, each place looked up for the person at hand (see ``RowScope.probe``)."""
    parts: list[ColumnElement[bool]] = []
    if PlaceKind.RESIDENCE in places:
        parts.append(_JURISDICTION_COLUMN[level] == region)
    stored = sorted(places & STORED_PLACE_KINDS)
    if stored:
        held = _places_held(frozenset(stored), department, level, region, today)
        parts.append(_holds(held, probe))
    return or_(*parts) if parts else false()


def _holds(held: ColumnElement[bool], probe: bool) -> ColumnElement[bool]:
    if probe:
        return exists(select(PersonPlace.id).where(PersonPlace.person_id == Person.id, held))
    return Person.id.in_(select(PersonPlace.person_id).where(held))


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


@dataclass(frozen=True, slots=True)
class PlaceNarrowing:
    """Which people of a loaded page the caller sees only through a place other than the
    residence, and through which places (fields follow the place: ``FieldGuard.narrow``).

    Only a decision whose row scopes name identity or insured places needs this; a person
    living in the caller's region, or pushed to the caller's department, is seen whole."""

    department: str
    level: Level
    region: str
    today: date
    kinds: frozenset[PlaceKind]  # the stored kinds the decision's row scopes name

    def outside(self, region_code: str) -> bool:
        """The person does not live in the caller's region."""
        return not region_code.startswith(self.region)

    def places_held(self, person_ids: Sequence[uuid.UUID]) -> Select[Any]:
        """(person_id, kind) of the places held today in the caller's region, for these people."""
        held = _places_held(self.kinds, self.department, self.level, self.region, self.today)
        stmt = select(PersonPlace.person_id, PersonPlace.kind).where(
            PersonPlace.person_id.in_(person_ids), held
        )
        return cast("Select[Any]", stmt)

    def kinds_held(self) -> ColumnElement[Any]:
        """For a statement over ``person``: NULL for a person living in the caller's region
        (``outside`` is false), else the kinds of the places ``places_held`` finds for them,
        as an array (compiled reads: ``gateway.storage.person_json``)."""
        held = _places_held(self.kinds, self.department, self.level, self.region, self.today)
        kinds = select(PersonPlace.kind).where(PersonPlace.person_id == Person.id, held)
        inside = Person.region_code.like(bindparam("narrowing_region", self.region + "%"))
        return case(
            (inside, null()),
            else_=func.array(kinds.correlate(Person).scalar_subquery()),
        )

    @staticmethod
    def narrowed(
        person_ids: Sequence[uuid.UUID], held: Iterable[tuple[uuid.UUID, str]]
    ) -> dict[uuid.UUID, frozenset[PlaceKind]]:
        """The people to narrow, each with its places; a push to the department shows the
        person whole. A person with no place found (it cannot be seen, then) shows nothing.
        A person seen only through the department's own report is shown as reported
        (``{REPORTED}``); a report beside another place adds nothing to that place."""
        places: dict[uuid.UUID, set[PlaceKind]] = {person_id: set() for person_id in person_ids}
        for person_id, kind in held:
            places[person_id].add(PlaceKind(kind))
        narrowed: dict[uuid.UUID, frozenset[PlaceKind]] = {}
        for person_id, kinds in places.items():
            if PlaceKind.ADDRESSED in kinds:
                continue
            if kinds != {PlaceKind.REPORTED}:
                kinds.discard(PlaceKind.REPORTED)
            narrowed[person_id] = frozenset(kinds)
        return narrowed


def place_narrowing(
    decision: AccessDecision, *, department: str, level: Level, region: str, today: date
) -> PlaceNarrowing | None:
    kinds = frozenset().union(*(c.places for c in decision.row_conditions)) & STORED_PLACE_KINDS
    if _reported(decision.row_conditions, region, today):
        kinds |= {PlaceKind.REPORTED}
    if not kinds - {PlaceKind.ADDRESSED}:
        return None  # residence and pushes only: everyone it sees, it sees whole
    return PlaceNarrowing(department, level, region, today, kinds)
