"""Property: people tied to one to three places across counties, cities and provinces, random
callers, never a leak (issue 14).

Each example writes one to three new people to the module's own gateway (per backend), each
with one to three places drawn among identity (civil affairs or rural revitalisation, open or
exited, maybe not begun), insured (a year's enrollment, live or terminated: the latest-year
rule decides which insured places hold) and addressed (a task pushed to civil affairs or rural
revitalisation, maybe opened in the future), in Hefei's districts, a county of another Anhui
city and one of Shandong; sometimes all in one household. Then callers of any department and
level, their region drawn near those places, ask for a ``persons`` page and every new person by
ID number, each with every field and household members; ``tests.expectations.Checker`` asserts
against the model (``World``, rebuilt from everything written so far) that

* no row outside the model appears (pages, ``totalCount``, lookups, household members);
* every field is the plaintext, its mask, or ``null`` with FORBIDDEN at its path, person by
  person: a field narrowed away by the place (phone, address, household, or the enrollment's
  place through an identity place) is never released, nor its plaintext anywhere in the body.

As in ``tests/test_access_properties.py`` the strategies draw world-independent plans; the
coroutine resolves them deterministically. Places the public paths cannot state today (an
identity recognised away from the residence, a task pushed to a county) are written as
``tests.places_access_support.write`` describes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from gateway.domain.records import (
    EnrollmentRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
    ReliefStatusRecord,
)
from tests.expectations import (
    ADDRESSED,
    IDENTITY,
    INSURED,
    LEVEL_DIGITS,
    LEVELS,
    Checker,
    Push,
    Sel,
    Subject,
    person_selection,
    render,
)
from tests.harness import Harness
from tests.places_access_support import (
    BAOHE,
    CIVIL,
    HEALTH,
    JIN_AN,
    LIXIA,
    LUYANG,
    MIB,
    RURAL,
    SHUSHAN,
    YAOHAI,
    Population,
    burden,
    enrolled,
    places_gateway,  # noqa: F401 - the module's own gateway (fixture)
    status,
    write,
)

SEED_PERSONS = 0  # only the people the examples write
COUNTIES = (YAOHAI, LUYANG, SHUSHAN, BAOHE, JIN_AN, LIXIA)
CATEGORIES = {
    CIVIL: ("MINIMUM_LIVING", "EXTREME_POVERTY", "MINIMUM_LIVING_EDGE"),
    RURAL: ("MONITORED_UNSTABLE", "LIFTED_FROM_POVERTY", "RETURNED_TO_POVERTY"),
}
DEPARTMENTS = (MIB, MIB, CIVIL, CIVIL, RURAL, RURAL, HEALTH, "big_data")
REQUEST_TIMEOUT = 5

PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,
    max_examples=40,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
        HealthCheck.data_too_large,
    ],
)


# ---------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class PlacePlan:
    kind: str  # identity, insured, addressed
    county: int  # index into COUNTIES
    department: str  # identity and addressed: civil affairs or rural revitalisation
    category: int
    start: date  # identity: valid_from; insured: the year; addressed: the day pushed
    days: int | None  # identity: held this many days more (None: still held)
    live: bool  # insured: not terminated


@dataclass(frozen=True)
class PersonPlan:
    residence: int
    places: tuple[PlacePlan, ...]
    cost: bool


@dataclass(frozen=True)
class CallerPlan:
    dept: str
    level: str
    anchor: int  # a county of the example (residences and places), or of COUNTIES
    # a caller of the department whose duty the anchored place is (insured: medical
    # insurance; identity and addressed: the place's department), in the place's region
    matched: bool


PLACES = st.builds(
    PlacePlan,
    kind=st.sampled_from((IDENTITY, IDENTITY, INSURED, INSURED, ADDRESSED)),
    county=st.integers(0, len(COUNTIES) - 1),
    department=st.sampled_from((CIVIL, RURAL)),
    category=st.integers(0, 2),
    start=st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 6, 30)),
    days=st.one_of(st.none(), st.integers(0, 900)),
    live=st.sampled_from((True, True, False)),
)
PEOPLE = st.lists(
    st.builds(
        PersonPlan,
        residence=st.integers(0, len(COUNTIES) - 1),
        places=st.lists(PLACES, min_size=1, max_size=3).map(tuple),
        cost=st.booleans(),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
CALLERS = st.lists(
    st.builds(
        CallerPlan,
        dept=st.sampled_from(DEPARTMENTS),
        level=st.sampled_from(LEVELS),
        anchor=st.integers(0, 50),
        matched=st.sampled_from((True, True, False)),
    ),
    min_size=1,
    max_size=3,
).map(tuple)


# ---------------------------------------------------------------------------- resolution
@dataclass
class Written:
    bundles: list[HouseholdBundle]
    recognised_in: dict[ReliefStatusRecord, str]
    pushes: list[Push]
    people: list[PersonRecord]
    # (department whose duty it is, county) of every place written, in plan order
    duties: list[tuple[str, str]]


def resolve(
    population: Population, plans: tuple[PersonPlan, ...], together: bool, today: date
) -> Written:
    """The records, foreign identities and pushes the plans describe (all new people)."""
    written = Written([], {}, [], [], [])
    shared = uuid.uuid4()
    for plan in plans:
        home = COUNTIES[plan.residence]
        household = shared if together else uuid.uuid4()
        village = f"{home}{1 + len(written.people):03d}001"
        person = population.person(village, household)
        written.people.append(person)
        if together and written.bundles:
            bundle = written.bundles[0]
        else:
            bundle = HouseholdBundle(HouseholdRecord(household, village))
            written.bundles.append(bundle)
        bundle.members.append(person)
        seen: set[tuple[Any, ...]] = set()
        for place in plan.places:
            county = COUNTIES[place.county]
            written.duties.append((MIB if place.kind == INSURED else place.department, county))
            if place.kind == IDENTITY:
                category = CATEGORIES[place.department][place.category]
                key = (place.department, category, place.start)
                if key in seen:
                    continue
                seen.add(key)
                end = None if place.days is None else place.start + timedelta(days=place.days)
                record = status(person, category, place.department, place.start, end)
                bundle.relief_statuses.append(record)
                if county != home:
                    written.recognised_in[record] = county
            elif place.kind == INSURED:
                enrollment = _enrollment(person, place, county, seen)
                if enrollment is not None:
                    bundle.enrollments.append(enrollment)
            else:
                written.pushes.append(Push(person.person_id, place.department, county, place.start))
        if plan.cost:
            bundle.cost_burdens.append(burden(person, today.year))
    return written


def _enrollment(
    person: PersonRecord, place: PlacePlan, county: str, seen: set[tuple[Any, ...]]
) -> EnrollmentRecord | None:
    """One enrollment a year per insurance type (the table's unique key)."""
    year = place.start.year
    for kind in ("RESIDENT", "EMPLOYEE"):
        if ("enrolled", year, kind) not in seen:
            seen.add(("enrolled", year, kind))
            state = "ACTIVE" if place.live else "TERMINATED"
            return enrolled(person, year, county, state, kind)
    return None


def caller(plan: CallerPlan, written: Written) -> Subject:
    if plan.matched:
        dept, county = written.duties[plan.anchor % len(written.duties)]
        return Subject(dept, plan.level, county[: LEVEL_DIGITS[plan.level]])
    counties = sorted(
        {p.region_code[:6] for p in written.people}
        | set(written.recognised_in.values())
        | {p.county for p in written.pushes}
        | {e.region_code[:6] for b in written.bundles for e in b.enrollments}
    )
    pool = counties if plan.anchor < 40 else list(COUNTIES)
    county = pool[plan.anchor % len(pool)]
    return Subject(plan.dept, plan.level, county[: LEVEL_DIGITS[plan.level]])


def selections(people: list[PersonRecord]) -> tuple[Sel, ...]:
    page = Sel(
        "persons",
        alias="page",
        args=(("first", 200),),
        children=(
            Sel("totalCount"),
            Sel("edges", children=(Sel("node", children=person_selection()),)),
        ),
    )
    lookups = tuple(
        Sel("person", alias=f"p{i}", args=(("idNumber", p.id_number),),
            children=person_selection())
        for i, p in enumerate(people)
    )  # fmt: skip
    return (page, *lookups)


# ---------------------------------------------------------------------------- the property
class Gateway:
    """The module's gateway and what was written to it, behind a short repr (Hypothesis
    prints every argument on failure)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.population = Population(harness.today, bundles=list(harness.bundles))

    def __repr__(self) -> str:
        return f"Gateway({self.harness.backend})"


_gateways: dict[int, Gateway] = {}


@pytest.fixture
def gateway(places_gateway: Harness) -> Gateway:  # noqa: F811
    return _gateways.setdefault(id(places_gateway), Gateway(places_gateway))


@settings(PROPERTY_SETTINGS)
@given(people=PEOPLE, together=st.booleans(), callers=CALLERS)
async def test_people_with_several_places_never_leak_to_any_caller(
    gateway: Gateway,
    people: tuple[PersonPlan, ...],
    together: bool,
    callers: tuple[CallerPlan, ...],
) -> None:
    harness, population = gateway.harness, gateway.population
    written = resolve(population, people, together, harness.today)
    await write(
        harness,
        population,
        written.bundles,
        recognised_in=written.recognised_in,
        pushes=written.pushes,
    )
    world = population.world()
    sels = selections(written.people)
    query = render(sels)
    for plan in callers:
        subject = caller(plan, written)
        note(f"subject: {subject}")
        token = harness.token(subject.dept, subject.level, subject.region)
        body = await asyncio_wait(harness.query(token, query))
        checker = Checker(world, subject)
        checker.root(body, sels)
        new = {p.person_id for p in written.people}
        seen = checker.seen_people & new
        narrowed = seen & world.narrowed(subject)
        event(f"new people seen: {len(seen)} of {len(new)}")
        event(f"seen only through a place: {'some' if narrowed else 'none'}")
        for pid in narrowed:
            kinds = world.ties(subject, world.persons[pid]) - {"residence"}
            event(f"narrowed through {'+'.join(sorted(kinds))}")


async def asyncio_wait(coroutine: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await asyncio.wait_for(coroutine, REQUEST_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no answer within {REQUEST_TIMEOUT}s (hang)") from None
    return result
