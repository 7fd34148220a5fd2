"""Keyset pages of a place-aware scope (issue 14) read by sources give the plain predicate's pages.

``ScopedPeople.page`` with the scope's sources (``authz.compiler.row_scope``) reads the
residence and each stored kind along its own index in id order and merges them; without them it
runs ``WHERE <row predicate> AND <filters> [AND id > :after] ORDER BY id LIMIT n + 1``. The two
must agree page for page: the same people, in the same order, with the same "more follow" flag,
for every scope shape (residence, identity, insured, addressed; all rows, pushed, categories;
county, city, province), every filter (region prefix, category, active on, enrolled in), any
page size and any cursor, on SQLite and on PostgreSQL.

People are synthetic; their places are written directly (as ``gateway.storage.places`` stores
them), so a person can hold two places of one kind in one city, a place that ended, or one that
starts tomorrow.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from authz.compiler import row_scope
from authz.conditions import AllRows, HoldsCategory, PushedToDepartment, RowCondition
from authz.decision import AccessDecision
from gateway.domain.departments import Level
from gateway.domain.places import PlaceKind
from gateway.storage.models import Enrollment, Person, PersonPlace, ReliefStatus, Task
from gateway.storage.people import PersonCriteria, ScopedPeople
from tests.ingest_support import (  # noqa: F401
    IngestDB,
    db_fixture,
    ingest_database_fixture,
)
from tests.places_support import (
    CIVIL,
    JINGHU,
    LIXIA,
    LUYANG,
    MIB,
    RURAL,
    SHUSHAN,
    TODAY,
    YAOHAI,
    YESTERDAY,
    Facts,
)

COUNTIES = (YAOHAI, LUYANG, SHUSHAN, JINGHU, LIXIA)
DEPARTMENTS = (CIVIL, RURAL, MIB)
CATEGORIES = ("MINIMUM_LIVING", "LIFTED_FROM_POVERTY")
STORED = ("identity", "insured", "addressed", "reported")
RESIDENCE, IDENTITY, INSURED, ADDRESSED = (
    PlaceKind.RESIDENCE,
    PlaceKind.IDENTITY,
    PlaceKind.INSURED,
    PlaceKind.ADDRESSED,
)


@dataclass(frozen=True)
class PlacePlan:
    kind: str
    department: str
    county: str
    since: int  # days from today
    until: int | None


@dataclass(frozen=True)
class PersonPlan:
    residence: str  # 6 or 12 digits
    places: tuple[PlacePlan, ...]  # unique by (kind, department, county), as stored
    pushed_to: frozenset[str]
    holds: frozenset[str]  # categories held today
    lapsed: frozenset[str]  # categories that ended yesterday
    enrolled_2026: bool


@dataclass(frozen=True)
class Caller:
    department: str
    level: Level
    region: str
    conditions: tuple[RowCondition, ...]


async def _write(db: IngestDB, plans: list[PersonPlan]) -> None:
    """Replace the database's people with ``plans``."""
    facts = Facts(db.vault)
    places: list[dict[str, Any]] = []
    for plan in plans:
        person = facts.person(plan.residence)
        for department in sorted(plan.pushed_to):
            facts.task(person, department, LIXIA, TODAY - timedelta(days=5))
        for category in sorted(plan.holds):
            facts.identity(person, LIXIA, category=category, valid_from=TODAY - timedelta(days=30))
        for category in sorted(plan.lapsed):
            facts.identity(person, LIXIA, category=category, valid_to=YESTERDAY)
        if plan.enrolled_2026:
            facts.enrollment(person, 2026, plan.residence[:6])
        places += [
            {
                "person_id": person,
                "kind": place.kind,
                "department": place.department,
                "county_code": place.county,
                "city_code": place.county[:4],
                "province_code": place.county[:2],
                "since": TODAY + timedelta(days=place.since),
                "until": None if place.until is None else TODAY + timedelta(days=place.until),
            }
            for place in plan.places
        ]
    async with db.engine.begin() as connection:
        for model in (PersonPlace, Task, ReliefStatus, Enrollment, Person):
            await connection.execute(delete(model))
        await facts.write_on(connection)
        if places:
            await connection.execute(insert(PersonPlace), places)


Page = tuple[tuple[uuid.UUID, ...], bool]


async def _pages(
    db: IngestDB,
    caller: Caller,
    criteria: PersonCriteria,
    first: int,
    *,
    by_sources: bool,
    after: uuid.UUID | None = None,
) -> list[Page]:
    """Every page from ``after`` to the end, as (ids, more follow)."""
    scope = row_scope(
        AccessDecision(1, "*", {}, caller.conditions),
        department=caller.department,
        level=caller.level,
        region=caller.region,
        today=TODAY,
    )
    pages: list[Page] = []
    async with db.engine.connect() as connection:
        people = ScopedPeople(
            connection, scope.predicate, TODAY, sources=scope.sources if by_sources else ()
        )
        while True:
            rows, more = await people.page(criteria, first=first, after=after)
            pages.append((tuple(row.id for row in rows), more))
            if not more:
                return pages
            assert rows, "more follow, so the page has rows"
            assert after is None or rows[0].id > after, "the cursor must advance"
            after = rows[-1].id


async def _assert_same_pages(
    db: IngestDB,
    caller: Caller,
    criteria: PersonCriteria,
    first: int,
    after: uuid.UUID | None = None,
) -> list[Page]:
    plain = await _pages(db, caller, criteria, first, by_sources=False, after=after)
    merged = await _pages(db, caller, criteria, first, by_sources=True, after=after)
    assert merged == plain, (caller, criteria, first, after)
    return plain


# ============================================================================ a county, paged
def _county(rng: random.Random, size: int) -> list[PersonPlan]:
    """``size`` people tied to Hefei's districts and Jinan every way, overlapping: residents
    also insured there, people insured or recognised in a district they do not live in, two
    insured places in one city, places that ended or have not started, pushes, categories."""

    def place() -> PlacePlan:
        kind = rng.choice(STORED)
        department = {"insured": MIB}.get(kind, rng.choice(DEPARTMENTS))
        since = rng.choice((-400, -400, -400, -1, 0, 1))
        until = rng.choice((None, None, None, -1, 0, 30))
        return PlacePlan(kind, department, rng.choice(COUNTIES), since, until)

    plans = []
    for n in range(size):
        residence = rng.choice(COUNTIES)
        if n % 3 == 0:
            residence += f"{rng.randrange(1, 4):03d}{rng.randrange(1, 4):03d}"
        places: dict[tuple[str, str, str], PlacePlan] = {}
        if rng.random() < 0.6:  # insured where they live
            places[("insured", MIB, residence[:6])] = PlacePlan(
                "insured", MIB, residence[:6], -400, None
            )
        if n % 5 == 0:  # insured in two districts of Hefei: listed twice at the city level
            for county in (YAOHAI, LUYANG):
                places[("insured", MIB, county)] = PlacePlan("insured", MIB, county, -400, None)
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            plan = place()
            places.setdefault((plan.kind, plan.department, plan.county), plan)
        holds = frozenset(rng.sample(CATEGORIES, rng.choice((0, 0, 1))))
        plans.append(
            PersonPlan(
                residence=residence,
                places=tuple(places.values()),
                pushed_to=frozenset(rng.sample(DEPARTMENTS, rng.choice((0, 0, 0, 1, 2)))),
                holds=holds,
                lapsed=frozenset(rng.sample(CATEGORIES, rng.choice((0, 0, 1)))) - holds,
                enrolled_2026=rng.random() < 0.7,
            )
        )
    return plans


def _all(*places: PlaceKind) -> AllRows:
    return AllRows(frozenset(places))


def _pushed(*places: PlaceKind) -> PushedToDepartment:
    return PushedToDepartment(frozenset(places))


def _category(
    *places: PlaceKind, categories: tuple[str, ...] = ("MINIMUM_LIVING",)
) -> HoldsCategory:
    return HoldsCategory(frozenset(categories), frozenset(places))


SCOPES = {
    # the shipped defaults (authz/default_policy.csv), at each level
    "medical insurance, county: residence|insured": Caller(
        MIB, Level.COUNTY, YAOHAI, (_all(RESIDENCE, INSURED),)
    ),
    "medical insurance, city: two insured places in one city": Caller(
        MIB, Level.CITY, "3401", (_all(RESIDENCE, INSURED),)
    ),
    "medical insurance, province": Caller(MIB, Level.PROVINCE, "34", (_all(RESIDENCE, INSURED),)),
    "civil affairs, county: residence|identity, pushed via addressed": Caller(
        CIVIL, Level.COUNTY, LUYANG, (_all(RESIDENCE, IDENTITY), _pushed(ADDRESSED))
    ),
    "rural, city: categories via residence|identity, pushed via addressed": Caller(
        RURAL,
        Level.CITY,
        "3401",
        (
            _category(RESIDENCE, IDENTITY, categories=CATEGORIES),
            _pushed(ADDRESSED),
        ),
    ),
    # shapes the defaults do not have
    "a place only, no residence": Caller(MIB, Level.COUNTY, SHUSHAN, (_all(INSURED),)),
    "a place only, city": Caller(MIB, Level.CITY, "3401", (_all(INSURED),)),
    "conditions differ by way in: category via residence, all via insured": Caller(
        MIB, Level.COUNTY, YAOHAI, (_category(RESIDENCE), _all(INSURED))
    ),
    "every kind, pushed only": Caller(
        CIVIL, Level.PROVINCE, "34", (_pushed(RESIDENCE, IDENTITY, INSURED, ADDRESSED),)
    ),
    "one way in named by two conditions": Caller(
        CIVIL,
        Level.COUNTY,
        LIXIA,
        (_category(RESIDENCE, IDENTITY), _pushed(IDENTITY), _all(ADDRESSED)),
    ),
    "residence only (the plain plan: no place source)": Caller(
        MIB, Level.COUNTY, YAOHAI, (_all(RESIDENCE),)
    ),
    "nothing granted": Caller(MIB, Level.COUNTY, YAOHAI, ()),
}
FILTERS = {
    "no filter": PersonCriteria(),
    "category held today": PersonCriteria(category="MINIMUM_LIVING"),
    "any category held yesterday": PersonCriteria(active_on=YESTERDAY),
    "enrolled in 2026": PersonCriteria(enrolled_in=2026),
    "region prefix, a county": PersonCriteria(region_prefix=YAOHAI),
    "region prefix, a city": PersonCriteria(region_prefix="3401"),
    "region prefix, below a county (LIKE)": PersonCriteria(region_prefix=LUYANG + "001"),
    "everything at once": PersonCriteria(
        region_prefix="34", category="LIFTED_FROM_POVERTY", enrolled_in=2026
    ),
}


@pytest.mark.slow
async def test_pages_by_sources_are_the_predicates_pages(db: IngestDB) -> None:
    """Every scope × filter × page size, paged to the end from the start and from a cursor
    that is nobody's id in scope: the same pages as the plain predicate."""
    await _write(db, _county(random.Random(14), 120))
    ids = sorted(row[0] for row in await db.all(select(Person.id)))
    failures = []
    seen_pages = 0
    for case, caller in SCOPES.items():
        for name, criteria in FILTERS.items():
            for first in (1, 3, 7, 50):
                for after in (None, ids[len(ids) // 3]):
                    try:
                        pages = await _assert_same_pages(db, caller, criteria, first, after)
                    except AssertionError:
                        failures.append(f"{case} / {name} / first={first} / after={after}")
                    else:
                        seen_pages += len(pages)
    assert failures == []
    assert seen_pages > 1000  # the cases page, not just answer empty


async def test_a_place_aware_scope_pages_by_sources() -> None:
    """The shipped scopes with a place are read by sources, and so is every scope that brings
    the department's own reports (issue 14: any "all" or category condition); a deny-all one,
    or a residence-only one of pushes, keeps the plain plan."""
    for case, caller in SCOPES.items():
        scope = row_scope(
            AccessDecision(1, "*", {}, caller.conditions),
            department=caller.department,
            level=caller.level,
            region=caller.region,
            today=TODAY,
        )
        reads_places = any(source.reads_places for source in scope.sources)
        names_a_place = any(c.places - {RESIDENCE} for c in caller.conditions)
        brings_reports = any(isinstance(c, AllRows | HoldsCategory) for c in caller.conditions)
        assert reads_places == (names_a_place or brings_reports), case


# ============================================================================ the property
place_plans = st.builds(
    PlacePlan,
    kind=st.sampled_from(STORED),
    department=st.sampled_from(DEPARTMENTS),
    county=st.sampled_from(COUNTIES),
    since=st.integers(-3, 2),
    until=st.one_of(st.none(), st.integers(-3, 2)),
)


def _unique_places(places: list[PlacePlan]) -> tuple[PlacePlan, ...]:
    seen: dict[tuple[str, str, str], PlacePlan] = {}
    for place in places:
        seen.setdefault((place.kind, place.department, place.county), place)
    return tuple(seen.values())


person_plans = st.builds(
    PersonPlan,
    residence=st.one_of(
        st.sampled_from(COUNTIES), st.sampled_from([c + "001002" for c in COUNTIES])
    ),
    places=st.lists(place_plans, max_size=4).map(_unique_places),
    pushed_to=st.frozensets(st.sampled_from(DEPARTMENTS), max_size=2),
    holds=st.frozensets(st.sampled_from(CATEGORIES), max_size=1),
    lapsed=st.frozensets(st.sampled_from(CATEGORIES), max_size=1),
    enrolled_2026=st.booleans(),
).filter(lambda p: not p.holds & p.lapsed)
place_sets = st.frozensets(st.sampled_from(tuple(PlaceKind)), min_size=1)
conditions = st.one_of(
    st.builds(AllRows, place_sets),
    st.builds(PushedToDepartment, place_sets),
    st.builds(HoldsCategory, st.frozensets(st.sampled_from(CATEGORIES), min_size=1), place_sets),
)
callers = st.builds(
    lambda department, level, county, row_conditions: Caller(
        department, level, county[: level.region_digits], row_conditions
    ),
    st.sampled_from(DEPARTMENTS),
    st.sampled_from(tuple(Level)),
    st.sampled_from((*COUNTIES, "349999")),
    st.lists(conditions, min_size=0, max_size=3).map(tuple),
)
criteria = st.builds(
    PersonCriteria,
    region_prefix=st.sampled_from((None, None, "34", "3401", YAOHAI, LUYANG + "001")),
    category=st.sampled_from((None, None, *CATEGORIES)),
    active_on=st.sampled_from((None, None, YESTERDAY, TODAY)),
    enrolled_in=st.sampled_from((None, None, 2026)),
)

# No shrink phase (each replay rewrites the database); Hypothesis prints the failing example.
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    plans=st.lists(person_plans, min_size=1, max_size=12),
    queries=st.lists(
        st.tuples(callers, criteria, st.integers(1, 4), st.integers(0, 12)),
        min_size=1,
        max_size=6,
    ),
)
async def test_any_scope_pages_alike(
    db: IngestDB, plans: list[PersonPlan], queries: list[tuple[Caller, PersonCriteria, int, int]]
) -> None:
    """Random people and random scopes, filters, page sizes and cursors (the n-th person's id,
    in scope or not, or none): the pages by sources are the predicate's."""
    await _write(db, plans)
    ids = sorted(row[0] for row in await db.all(select(Person.id)))
    for caller, criterion, first, start in queries:
        after = ids[start] if start < len(ids) else None
        await _assert_same_pages(db, caller, criterion, first, after)


async def test_a_lookup_probes_places_and_finds_exactly_the_predicates_people(
    db: IngestDB,
) -> None:
    """Lookups (by ID number, by ids) use the predicate with each place probed per person:
    for every scope, the same people as the predicate's ``IN (SELECT …)`` form."""
    await _write(db, _county(random.Random(17), 120))
    for case, caller in SCOPES.items():
        scope = row_scope(
            AccessDecision(1, "*", {}, caller.conditions),
            department=caller.department,
            level=caller.level,
            region=caller.region,
            today=TODAY,
        )
        assert "EXISTS" in str(scope.probe) or "person_place" not in str(scope.predicate), case
        by_predicate = {row[0] for row in await db.all(select(Person.id).where(scope.predicate))}
        by_probe = {row[0] for row in await db.all(select(Person.id).where(scope.probe))}
        assert by_probe == by_predicate, case
        async with db.engine.connect() as connection:
            people = ScopedPeople(connection, scope.predicate, TODAY, probe=scope.probe)
            found = await people.by_ids(
                sorted(by_predicate | {row[0] for row in await db.all(select(Person.id))})
            )
        assert set(found) == by_predicate, case
