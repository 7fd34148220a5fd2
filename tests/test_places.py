"""Places of a person (DOMAIN.md rule 9, 004 §3): the place of enrollment pays basic and
critical-illness benefits, the place that recognised an identity pays medical assistance, so one
person can legitimately be in scope for two counties.

* ``refresh_places`` derives, from the facts, one place per
  - identity: person × recognising department × county; from the earliest ``valid_from``;
    ends on the latest ``valid_to`` once every identity there has exited, else holds;
  - insured: person × county of the enrollment; from 1 January of the first year there;
    holds while the person's latest enrollment year has a live (not TERMINATED) enrollment
    there, else ends on 31 December of the last live year there; terminated only: never held;
  - addressed: person × department × county a task was pushed to; from the first task, holds.
  It is idempotent, and a changed fact updates ``until`` or adds a place, never deletes one.
* The compiler brings a person into a caller's jurisdiction by the places its row conditions
  name: the residence (``person.<level>_code``), or a stored place held today in the caller's
  region; an addressed place only for the department it was addressed to. Held = ``since <=
  today`` and (``until`` null or ``until >= today``).
* Row objects name their places: ``Person(all; places: residence|insured)``; without places
  they mean the residence; a malformed or unknown place refuses the policy.

On SQLite and PostgreSQL (``tests.ingest_support``'s module database, emptied per test); facts
are written with SQLAlchemy (``tests.places_support``), people are synthetic.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, delete, insert, select, update

from authz.compiler import in_jurisdiction, row_predicate
from authz.conditions import (
    AllRows,
    HoldsCategory,
    PushedToDepartment,
    RowCondition,
    parse_row_object,
)
from authz.decision import AccessDecision
from gateway.domain.departments import Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.id_numbers import make_id_number
from gateway.domain.places import POLICY_PLACE_KINDS, PlaceKind
from gateway.domain.records import (
    CostBurdenRecord,
    EnrollmentRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
    ReliefStatusRecord,
)
from gateway.domain.settings import Province
from gateway.loop.config import load_rules
from gateway.loop.warnings import Month, run_warnings
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import Enrollment, Person, PersonPlace, ReliefStatus, Task
from gateway.storage.writer import write_bundles
from tests.ingest_support import (  # noqa: F401
    IngestDB,
    db_fixture,
    enrollment_row,
    identity_row,
    ingest_database_fixture,
    someone,
)
from tests.places_support import (
    ANHUI,
    CIVIL,
    HEFEI,
    JINGHU,
    LIXIA,
    LUYANG,
    MIB,
    RURAL,
    SHUSHAN,
    TODAY,
    TOMORROW,
    WUHU,
    YAOHAI,
    YESTERDAY,
    Facts,
    Place,
    held,
    place_rows,
    refresh,
    stored_places,
)

IDENTITY, INSURED, ADDRESSED = "identity", "insured", "addressed"
# Places that count only for the department they belong to (authz.compiler).
OWN_KINDS = (IDENTITY, ADDRESSED)
RESIDENCE_ONLY = frozenset({PlaceKind.RESIDENCE})


# ============================================================================ derivation
Fact = Callable[[Facts, uuid.UUID], None]


def identity(county: str | None, **details: Any) -> Fact:
    """A relief status recognised in ``county`` (civil affairs, 低保, from 2025-03-01 unless
    ``details`` say otherwise)."""
    return lambda facts, person: facts.identity(person, county, **details)


def enrolled(year: int, region: str, status: str = "ACTIVE", kind: str = "RESIDENT") -> Fact:
    return lambda facts, person: facts.enrollment(person, year, region, status, insurance_type=kind)


def pushed(department: str, county: str, opened_on: date) -> Fact:
    return lambda facts, person: facts.task(person, department, county, opened_on)


@dataclass(frozen=True)
class Derivation:
    residence: str
    facts: tuple[Fact, ...]
    places: frozenset[Place]


def derivation(residence: str, facts: list[Fact], *places: Place) -> Derivation:
    return Derivation(residence, tuple(facts), frozenset(places))


MARCH_2025 = date(2025, 3, 1)
DERIVATIONS = {
    # --- identity: person × recognising department × county
    "identity: an open identity holds from valid_from": derivation(
        LIXIA,
        [identity(SHUSHAN)],
        Place(IDENTITY, CIVIL, SHUSHAN, MARCH_2025, None),
    ),
    "identity: exited yesterday ends yesterday": derivation(
        LIXIA,
        [identity(SHUSHAN, valid_to=YESTERDAY)],
        Place(IDENTITY, CIVIL, SHUSHAN, MARCH_2025, YESTERDAY),
    ),
    "identity: exited today ends today": derivation(
        LIXIA,
        [identity(SHUSHAN, valid_to=TODAY)],
        Place(IDENTITY, CIVIL, SHUSHAN, MARCH_2025, TODAY),
    ),
    "identity: one exited and one open there, one department: open since the first": derivation(
        LIXIA,
        [
            identity(SHUSHAN, valid_from=date(2024, 1, 1), valid_to=date(2024, 12, 31)),
            identity(SHUSHAN, category="EXTREME_POVERTY", valid_from=date(2025, 6, 1)),
        ],
        Place(IDENTITY, CIVIL, SHUSHAN, date(2024, 1, 1), None),
    ),
    "identity: every identity there exited: ends on the latest exit": derivation(
        LIXIA,
        [
            identity(SHUSHAN, valid_from=date(2024, 1, 1), valid_to=date(2025, 8, 31)),
            identity(
                SHUSHAN,
                category="EXTREME_POVERTY",
                valid_from=date(2025, 1, 1),
                valid_to=date(2025, 2, 28),
            ),
        ],
        Place(IDENTITY, CIVIL, SHUSHAN, date(2024, 1, 1), date(2025, 8, 31)),
    ),
    "identity: two counties: two places": derivation(
        LIXIA,
        [
            identity(SHUSHAN, valid_from=date(2024, 5, 1), valid_to=date(2025, 4, 30)),
            identity(YAOHAI, valid_from=date(2025, 5, 1)),
        ],
        Place(IDENTITY, CIVIL, SHUSHAN, date(2024, 5, 1), date(2025, 4, 30)),
        Place(IDENTITY, CIVIL, YAOHAI, date(2025, 5, 1), None),
    ),
    "identity: two departments in one county: two places": derivation(
        LIXIA,
        [
            identity(SHUSHAN),
            identity(
                SHUSHAN,
                department=RURAL,
                category="LIFTED_FROM_POVERTY",
                valid_from=date(2021, 1, 1),
                valid_to=date(2026, 6, 30),
            ),
        ],
        Place(IDENTITY, CIVIL, SHUSHAN, MARCH_2025, None),
        Place(IDENTITY, RURAL, SHUSHAN, date(2021, 1, 1), date(2026, 6, 30)),
    ),
    "identity: county not recorded (stored before 0007): the person's county": derivation(
        "340103001002",
        [identity(None)],
        Place(IDENTITY, CIVIL, LUYANG, MARCH_2025, None),
    ),
    # --- insured: person × county of the enrollment
    "insured: 2025 in A, 2026 (latest) in B: A ends 2025-12-31, B holds": derivation(
        LIXIA,
        [enrolled(2025, YAOHAI), enrolled(2026, LUYANG)],
        Place(INSURED, MIB, YAOHAI, date(2025, 1, 1), date(2025, 12, 31)),
        Place(INSURED, MIB, LUYANG, date(2026, 1, 1), None),
    ),
    "insured: 2026 terminated after 2025 live in one county: ends 2025-12-31": derivation(
        LIXIA,
        [enrolled(2025, LUYANG), enrolled(2026, LUYANG, "TERMINATED")],
        Place(INSURED, MIB, LUYANG, date(2025, 1, 1), date(2025, 12, 31)),
    ),
    "insured: terminated only: ends the day before it starts (never held)": derivation(
        LIXIA,
        [enrolled(2026, LUYANG, "TERMINATED")],
        Place(INSURED, MIB, LUYANG, date(2026, 1, 1), date(2025, 12, 31)),
    ),
    "insured: one county across years: one place since the first year": derivation(
        LIXIA,
        [enrolled(2024, LUYANG), enrolled(2025, LUYANG), enrolled(2026, LUYANG)],
        Place(INSURED, MIB, LUYANG, date(2024, 1, 1), None),
    ),
    "insured: suspended (not terminated) in the latest year: holds": derivation(
        LIXIA,
        [enrolled(2026, LUYANG, "SUSPENDED")],
        Place(INSURED, MIB, LUYANG, date(2026, 1, 1), None),
    ),
    "insured: latest year terminated in A and live in B: A ends, B holds": derivation(
        LIXIA,
        [
            enrolled(2025, YAOHAI),
            enrolled(2026, YAOHAI, "TERMINATED", "EMPLOYEE"),
            enrolled(2026, LUYANG),
        ],
        Place(INSURED, MIB, YAOHAI, date(2025, 1, 1), date(2025, 12, 31)),
        Place(INSURED, MIB, LUYANG, date(2026, 1, 1), None),
    ),
    "insured: enrolled elsewhere next year: this year's place ends 31 December": derivation(
        LIXIA,
        [enrolled(2026, YAOHAI), enrolled(2027, JINGHU)],
        Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), date(2026, 12, 31)),
        Place(INSURED, MIB, JINGHU, date(2027, 1, 1), None),
    ),
    "insured: a 12-digit region code: its county": derivation(
        LIXIA,
        [enrolled(2026, "340102003004")],
        Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), None),
    ),
    # --- addressed: person × department × county a task was pushed to
    "addressed: two departments in one county: two places": derivation(
        LIXIA,
        [pushed(CIVIL, YAOHAI, date(2026, 10, 12)), pushed(RURAL, YAOHAI, date(2026, 11, 10))],
        Place(ADDRESSED, CIVIL, YAOHAI, date(2026, 10, 12), None),
        Place(ADDRESSED, RURAL, YAOHAI, date(2026, 11, 10), None),
    ),
    "addressed: pushed twice to one department: one place since the first": derivation(
        LIXIA,
        [pushed(CIVIL, YAOHAI, date(2026, 10, 12)), pushed(CIVIL, YAOHAI, date(2026, 9, 10))],
        Place(ADDRESSED, CIVIL, YAOHAI, date(2026, 9, 10), None),
    ),
    "addressed: two counties: two places": derivation(
        LIXIA,
        [pushed(CIVIL, YAOHAI, date(2026, 10, 12)), pushed(CIVIL, JINGHU, date(2026, 11, 10))],
        Place(ADDRESSED, CIVIL, YAOHAI, date(2026, 10, 12), None),
        Place(ADDRESSED, CIVIL, JINGHU, date(2026, 11, 10), None),
    ),
}


async def test_refresh_derives_each_kind_of_place(db: IngestDB) -> None:
    """One person per case, in one database: refresh only ever reads a person's own facts."""
    facts = Facts(db.vault)
    people = {}
    for name, case in DERIVATIONS.items():
        people[name] = facts.person(case.residence)
        for fact in case.facts:
            fact(facts, people[name])
    bystander = facts.person(LIXIA)  # has facts of its own, is not refreshed
    facts.identity(bystander, JINGHU, department=RURAL, category="LIFTED_FROM_POVERTY")
    await facts.write(db.engine)

    await refresh(db.engine, list(people.values()))

    derived = {name: await stored_places(db.engine, people[name]) for name in DERIVATIONS}
    assert {
        name: {"expected": set(case.places), "derived": derived[name]}
        for name, case in DERIVATIONS.items()
        if derived[name] != case.places
    } == {}
    assert await stored_places(db.engine, bystander) == set()
    for row in await db.all(select(PersonPlace)):
        assert (row.city_code, row.province_code) == (row.county_code[:4], row.county_code[:2])


HELD_THROUGH = {
    # (valid_from, valid_to) of the only identity → held today (the compiler's reading)
    "exited yesterday: no longer held": (date(2025, 3, 1), YESTERDAY, False),
    "exited today: held through its last day": (date(2025, 3, 1), TODAY, True),
    "exits tomorrow: held": (date(2025, 3, 1), TOMORROW, True),
    "open: held": (date(2025, 3, 1), None, True),
    "starts today: held": (TODAY, None, True),
    "starts tomorrow: not yet held": (TOMORROW, None, False),
}


async def test_an_identity_place_is_held_from_valid_from_through_valid_to(db: IngestDB) -> None:
    facts = Facts(db.vault)
    people = {}
    for name, (valid_from, valid_to, _) in HELD_THROUGH.items():
        people[name] = facts.person(LIXIA)
        facts.identity(people[name], SHUSHAN, valid_from=valid_from, valid_to=valid_to)
    await facts.write(db.engine)

    await refresh(db.engine, list(people.values()))

    # The compiler reads the stored places: the identity places in 蜀山 held today.
    in_scope = in_jurisdiction(frozenset({PlaceKind.IDENTITY}), CIVIL, Level.COUNTY, SHUSHAN, TODAY)
    seen = await _seen(db, in_scope)
    for name, (_, _, expected) in HELD_THROUGH.items():
        [place] = await stored_places(db.engine, people[name])
        assert (held(place.since, place.until), people[name] in seen) == (expected, expected), name


async def test_seeding_stores_the_places_of_the_seeded_people(db: IngestDB) -> None:
    """``seed`` (``write_bundles``) refreshes the places of every person it writes."""
    household = uuid.uuid4()
    members = [
        PersonRecord(
            person_id=uuid.uuid4(),
            id_number=make_id_number(LUYANG, date(1960 + n, 2, 3), 10 + n),
            name=f"测试户{n}",
            gender="MALE" if n % 2 else "FEMALE",
            birth_date=date(1960 + n, 2, 3),
            region_code="340103001001",
            household_id=household,
        )
        for n in range(2)
    ]
    head, child = members
    bundle = HouseholdBundle(
        household=HouseholdRecord(household, "340103001001"),
        members=members,
        relief_statuses=[
            ReliefStatusRecord(head.person_id, "MINIMUM_LIVING", CIVIL, *[date(2025, 3, 1)] * 2)
        ],
        enrollments=[
            EnrollmentRecord(head.person_id, 2026, "RESIDENT", "ACTIVE", "340102003004"),
            EnrollmentRecord(child.person_id, 2025, "RESIDENT", "ACTIVE", LUYANG),
            EnrollmentRecord(child.person_id, 2026, "RESIDENT", "TERMINATED", LUYANG),
        ],
    )
    async with make_sessionmaker(db.engine)() as session:
        await write_bundles(session, db.vault, [bundle])

    assert await stored_places(db.engine, head.person_id) == {
        Place(IDENTITY, CIVIL, LUYANG, date(2025, 3, 1), None),  # recognised where they live
        Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), None),
    }
    assert await stored_places(db.engine, child.person_id) == {
        Place(INSURED, MIB, LUYANG, date(2025, 1, 1), date(2025, 12, 31)),
    }


async def test_a_warning_run_adds_the_places_its_pushes_were_addressed_to(db: IngestDB) -> None:
    """Shanxi (002 §3): a burden over 20,000 yuan is warned and pushed to the person's county;
    the run refreshes the warned people's places: an addressed place per push."""
    xiaodian = "140105"  # 太原市小店区

    def burdened(n: int, burden: str) -> HouseholdBundle:
        household = uuid.uuid4()
        born = date(1961, 4, 5)
        member = PersonRecord(
            person_id=uuid.uuid4(),
            id_number=make_id_number(xiaodian, born, 20 + n),
            name=f"测试预警{n}",
            gender="FEMALE" if n % 2 == 0 else "MALE",
            birth_date=born,
            region_code=xiaodian,
            household_id=household,
        )
        cost = Decimal(burden)
        return HouseholdBundle(
            household=HouseholdRecord(household, xiaodian),
            members=[member],
            cost_burdens=[
                CostBurdenRecord(
                    member.person_id, 2026, cost * 2, cost, Decimal(0), Decimal(0), cost, 1
                )
            ],
        )

    warned, quiet = burdened(0, "25000.00"), burdened(1, "100.00")
    async with make_sessionmaker(db.engine)() as session:
        await write_bundles(session, db.vault, [warned, quiet])

    await run_warnings(
        db.engine, load_rules(Province.SHANXI), Month(2026, 10), today=TODAY, triggered_by="test"
    )

    pushes = await db.all(select(Task.department, Task.county_code))
    assert pushes, "the burden is over the threshold: the run pushes it"
    assert await stored_places(db.engine, warned.members[0].person_id) == {
        Place(ADDRESSED, push.department, push.county_code, TODAY, None) for push in pushes
    }
    assert await stored_places(db.engine, quiet.members[0].person_id) == set()


async def test_facts_loaded_through_ingest_become_places(db: IngestDB) -> None:
    """The public path real data takes (``adapters.pipeline.Ingestor``, as ``relief-gateway
    ingest`` and the GraphQL push run it): a civil affairs list recognising someone in 庐阳,
    then medical insurance's enrollment of them in 瑶海 — the places the rule derives."""
    person = someone(7, LUYANG)
    listed = await db.load(
        "civil_affairs", "identities", [identity_row(person, recognized="2025-03-01")]
    )
    enrolled = await db.load(
        "medical_insurance", "enrollments", [enrollment_row(person, 2026, region=YAOHAI)]
    )
    assert [r.status for r in (listed, enrolled)] == ["COMPLETED", "COMPLETED"]
    assert [r.counts.rows_accepted for r in (listed, enrolled)] == [1, 1]
    stored = await db.person_id(person)

    places = await stored_places(db.engine, stored)

    assert {(p.kind, p.department, p.county, p.until) for p in places} >= {
        (IDENTITY, CIVIL, LUYANG, None),
        (INSURED, MIB, YAOHAI, None),
    }


# ============================================================================ idempotence
def _everything(facts: Facts, person: uuid.UUID) -> None:
    """A person with every kind of place, open and ended."""
    facts.identity(person, SHUSHAN, valid_from=date(2024, 1, 1), valid_to=date(2024, 12, 31))
    facts.identity(person, SHUSHAN, category="EXTREME_POVERTY", valid_from=date(2025, 1, 1))
    facts.identity(person, YAOHAI, department=RURAL, category="LIFTED_FROM_POVERTY")
    facts.enrollment(person, 2025, YAOHAI)
    facts.enrollment(person, 2026, LUYANG)
    facts.enrollment(person, 2026, JINGHU, "TERMINATED", insurance_type="EMPLOYEE")
    facts.task(person, CIVIL, SHUSHAN, date(2026, 10, 12))
    facts.task(person, RURAL, SHUSHAN, date(2026, 10, 13))


async def test_refresh_twice_leaves_identical_rows(db: IngestDB) -> None:
    facts = Facts(db.vault)
    people = [facts.person(LUYANG) for _ in range(3)]
    for person in people:
        _everything(facts, person)
    await facts.write(db.engine)

    await refresh(db.engine, people)
    first = await place_rows(db.engine)
    await refresh(db.engine, people)
    await refresh(db.engine, select(Person.id))  # the same people, as a SELECT of their ids

    assert len(first) == 3 * 7
    assert await place_rows(db.engine) == first  # ids included: updated in place, not replaced


async def test_refresh_after_reinserting_the_same_facts_leaves_identical_rows(
    db: IngestDB,
) -> None:
    facts = Facts(db.vault)
    person = facts.person(LUYANG)
    await facts.write(db.engine)
    _everything(facts, person)
    sent = (list(facts.statuses), list(facts.enrollments), list(facts.tasks))
    await facts.write(db.engine)
    await refresh(db.engine, [person])
    first = await place_rows(db.engine)

    # A resumed import: the same facts deleted and stored again (new row ids), then refreshed.
    async with db.engine.begin() as connection:
        for table in (Task, Enrollment, ReliefStatus):
            await connection.execute(delete(table))
        statuses, enrollments, tasks = sent
        await connection.execute(insert(ReliefStatus), statuses)
        await connection.execute(insert(Enrollment), enrollments)
        await connection.execute(insert(Task), [{**task, "id": uuid.uuid4()} for task in tasks])
    await refresh(db.engine, [person])

    assert await place_rows(db.engine) == first


Change = Callable[[uuid.UUID], list[Any]]
CHANGES: dict[str, tuple[Change, set[Place]]] = {
    "an exit recorded: the identity place ends": (
        lambda person: [
            update(ReliefStatus)
            .where(ReliefStatus.person_id == person)
            .values(valid_to=YESTERDAY, exit_listed_on=TODAY)
        ],
        {
            Place(IDENTITY, CIVIL, SHUSHAN, date(2025, 3, 1), YESTERDAY),
            Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), None),
            Place(ADDRESSED, CIVIL, SHUSHAN, date(2026, 10, 12), None),
        },
    ),
    "enrolled elsewhere next year: the old place ends 31 December, a new one is added": (
        lambda person: [
            insert(Enrollment).values(
                person_id=person,
                year=2027,
                insurance_type="RESIDENT",
                status="ACTIVE",
                region_code=JINGHU,
            )
        ],
        {
            Place(IDENTITY, CIVIL, SHUSHAN, date(2025, 3, 1), None),
            Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), date(2026, 12, 31)),
            Place(INSURED, MIB, JINGHU, date(2027, 1, 1), None),
            Place(ADDRESSED, CIVIL, SHUSHAN, date(2026, 10, 12), None),
        },
    ),
    "this year's enrollment terminated: the insured place never held": (
        lambda person: [
            update(Enrollment).where(Enrollment.person_id == person).values(status="TERMINATED")
        ],
        {
            Place(IDENTITY, CIVIL, SHUSHAN, date(2025, 3, 1), None),
            Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), date(2025, 12, 31)),
            Place(ADDRESSED, CIVIL, SHUSHAN, date(2026, 10, 12), None),
        },
    ),
    "a fact deleted: its place is kept as it was (never deleted)": (
        lambda person: [delete(Task).where(Task.person_id == person)],
        {
            Place(IDENTITY, CIVIL, SHUSHAN, date(2025, 3, 1), None),
            Place(INSURED, MIB, YAOHAI, date(2026, 1, 1), None),
            Place(ADDRESSED, CIVIL, SHUSHAN, date(2026, 10, 12), None),
        },
    ),
}


async def test_refresh_after_a_fact_changes_updates_or_adds_and_never_deletes(
    db: IngestDB,
) -> None:
    facts = Facts(db.vault)
    people = {}
    for name in CHANGES:  # the same facts for each, then one change each
        people[name] = person = facts.person(LUYANG)
        facts.identity(person, SHUSHAN)
        facts.enrollment(person, 2026, YAOHAI)
        facts.task(person, CIVIL, SHUSHAN, date(2026, 10, 12))
    await facts.write(db.engine)
    await refresh(db.engine, list(people.values()))
    ids_before = {row[0] for row in await db.all(select(PersonPlace.id))}

    async with db.engine.begin() as connection:
        for name, (change, _) in CHANGES.items():
            for statement in change(people[name]):
                await connection.execute(statement)
    await refresh(db.engine, list(people.values()))

    refreshed = {name: await stored_places(db.engine, people[name]) for name in CHANGES}
    assert {
        name: {"expected": expected, "refreshed": refreshed[name]}
        for name, (_, expected) in CHANGES.items()
        if refreshed[name] != expected
    } == {}
    assert ids_before <= {row[0] for row in await db.all(select(PersonPlace.id))}


async def test_refresh_writes_only_the_people_it_is_given(db: IngestDB) -> None:
    facts = Facts(db.vault)
    a, b = facts.person(LUYANG), facts.person(LUYANG)
    for person in (a, b):
        facts.enrollment(person, 2026, YAOHAI)
    await facts.write(db.engine)

    await refresh(db.engine, [])
    assert await stored_places(db.engine) == set()
    await refresh(db.engine, [a])
    assert [row[0] for row in await db.all(select(PersonPlace.person_id))] == [a]
    await refresh(db.engine, select(Person.id).where(Person.id == b))
    assert sorted(row[0] for row in await db.all(select(PersonPlace.person_id))) == sorted([a, b])


# ============================================================================ the compiler
def _decision(*row_objects: str) -> AccessDecision:
    return AccessDecision(
        policy_version=1,
        purpose="*",
        fields={},
        row_conditions=tuple(parse_row_object(text) for text in row_objects),
    )


async def _seen(db: IngestDB, predicate: ColumnElement[bool]) -> set[uuid.UUID]:
    return {row[0] for row in await db.all(select(Person.id).where(predicate))}


def _population(facts: Facts) -> dict[str, uuid.UUID]:
    """People tied to Hefei's districts in different ways (residence 庐阳 340103, insured
    瑶海 340102, identity 蜀山 340104), one insured in Wuhu, the rest living in Jinan."""
    p: dict[str, uuid.UUID] = {}
    p["lives in 庐阳"] = facts.person(LUYANG)
    p["lives 庐阳, insured 瑶海, identity 蜀山"] = facts.person("340103002001")
    facts.enrollment(p["lives 庐阳, insured 瑶海, identity 蜀山"], 2026, YAOHAI)
    facts.identity(p["lives 庐阳, insured 瑶海, identity 蜀山"], SHUSHAN)
    p["insured 瑶海"] = facts.person(LIXIA)
    facts.enrollment(p["insured 瑶海"], 2026, YAOHAI)
    p["insured 瑶海 until last year"] = facts.person(LIXIA)
    facts.enrollment(p["insured 瑶海 until last year"], 2025, YAOHAI)
    facts.enrollment(p["insured 瑶海 until last year"], 2026, LIXIA)
    p["insured 镜湖 (Wuhu)"] = facts.person(LIXIA)
    facts.enrollment(p["insured 镜湖 (Wuhu)"], 2026, JINGHU)
    p["identity 蜀山"] = facts.person(LIXIA)
    facts.identity(p["identity 蜀山"], SHUSHAN)
    p["identity 蜀山 ended yesterday"] = facts.person(LIXIA)
    facts.identity(p["identity 蜀山 ended yesterday"], SHUSHAN, valid_to=YESTERDAY)
    p["identity 蜀山 ends today"] = facts.person(LIXIA)
    facts.identity(
        p["identity 蜀山 ends today"], SHUSHAN, category="EXTREME_POVERTY", valid_to=TODAY
    )
    p["identity 蜀山 from tomorrow"] = facts.person(LIXIA)
    facts.identity(p["identity 蜀山 from tomorrow"], SHUSHAN, valid_from=TOMORROW)
    p["rural identity 蜀山 (lifted)"] = facts.person(LIXIA)
    facts.identity(
        p["rural identity 蜀山 (lifted)"], SHUSHAN, department=RURAL, category="LIFTED_FROM_POVERTY"
    )
    p["pushed to civil 瑶海"] = facts.person(LIXIA)
    facts.task(p["pushed to civil 瑶海"], CIVIL, YAOHAI, date(2026, 10, 12))
    p["pushed to rural 瑶海"] = facts.person(LIXIA)
    facts.task(p["pushed to rural 瑶海"], RURAL, YAOHAI, date(2026, 10, 12))
    return p


JINAN_RESIDENTS = {
    "insured 瑶海",
    "insured 瑶海 until last year",
    "insured 镜湖 (Wuhu)",
    "identity 蜀山",
    "identity 蜀山 ended yesterday",
    "identity 蜀山 ends today",
    "identity 蜀山 from tomorrow",
    "rural identity 蜀山 (lifted)",
    "pushed to civil 瑶海",
    "pushed to rural 瑶海",
}
# Identities civil affairs recognised in 蜀山 and holds today (an identity place counts for the
# department that recognised it: rural revitalisation's place there is not civil affairs').
HELD_IDENTITY_IN_SHUSHAN = {
    "lives 庐阳, insured 瑶海, identity 蜀山",
    "identity 蜀山",
    "identity 蜀山 ends today",
}
ALL_INSURED = "Person(all; places: residence|insured)"
ALL_IDENTITY = "Person(all; places: residence|identity)"
PUSHED_ADDRESSED = "Person(pushed; places: addressed)"
SCOPES = {
    # department, level, region, row objects → who is seen
    "insured|residence, county 瑶海: insured there today (last year's place no longer)": (
        MIB,
        Level.COUNTY,
        YAOHAI,
        [ALL_INSURED],
        {"lives 庐阳, insured 瑶海, identity 蜀山", "insured 瑶海"},
    ),
    "insured|residence, county 庐阳: living there": (
        MIB,
        Level.COUNTY,
        LUYANG,
        [ALL_INSURED],
        {"lives in 庐阳", "lives 庐阳, insured 瑶海, identity 蜀山"},
    ),
    "insured|residence, city 合肥: any district of it": (
        MIB,
        Level.CITY,
        HEFEI,
        [ALL_INSURED],
        {"lives in 庐阳", "lives 庐阳, insured 瑶海, identity 蜀山", "insured 瑶海"},
    ),
    "insured|residence, city 芜湖: insured there": (
        MIB,
        Level.CITY,
        WUHU,
        [ALL_INSURED],
        {"insured 镜湖 (Wuhu)"},
    ),
    "insured|residence, province 安徽: Hefei and Wuhu": (
        MIB,
        Level.PROVINCE,
        ANHUI,
        [ALL_INSURED],
        {
            "lives in 庐阳",
            "lives 庐阳, insured 瑶海, identity 蜀山",
            "insured 瑶海",
            "insured 镜湖 (Wuhu)",
        },
    ),
    "insured|residence, province 山东: everyone living there, wherever insured": (
        MIB,
        Level.PROVINCE,
        "37",
        [ALL_INSURED],
        JINAN_RESIDENTS,
    ),
    "identity|residence, county 蜀山: held today (ended yesterday, from tomorrow: no)": (
        CIVIL,
        Level.COUNTY,
        SHUSHAN,
        [ALL_IDENTITY],
        HELD_IDENTITY_IN_SHUSHAN,
    ),
    "identity only, city 合肥: held identity places, no residents": (
        CIVIL,
        Level.CITY,
        HEFEI,
        ["Person(all; places: identity)"],
        HELD_IDENTITY_IN_SHUSHAN,
    ),
    "residence only, county 蜀山: nobody lives there": (
        CIVIL,
        Level.COUNTY,
        SHUSHAN,
        ["Person(all)"],
        set(),
    ),
    "category + identity|residence, county 蜀山: holds the category and tied there": (
        RURAL,
        Level.COUNTY,
        SHUSHAN,
        ["Person(category: LIFTED_FROM_POVERTY|EXTREME_POVERTY; places: residence|identity)"],
        # its own recognition only: civil affairs' identity place in 蜀山 is not its place
        {"rural identity 蜀山 (lifted)"},
    ),
    "addressed, civil affairs 瑶海: only what was pushed to civil affairs": (
        CIVIL,
        Level.COUNTY,
        YAOHAI,
        ["Person(all; places: addressed)"],
        {"pushed to civil 瑶海"},
    ),
    "addressed, rural revitalisation 瑶海: only what was pushed to it": (
        RURAL,
        Level.COUNTY,
        YAOHAI,
        ["Person(all; places: addressed)"],
        {"pushed to rural 瑶海"},
    ),
    "addressed, medical insurance 瑶海: nothing was pushed to it": (
        MIB,
        Level.COUNTY,
        YAOHAI,
        ["Person(all; places: addressed)"],
        set(),
    ),
    "pushed; addressed, province 安徽: the department's own pushes": (
        RURAL,
        Level.PROVINCE,
        ANHUI,
        [PUSHED_ADDRESSED],
        {"pushed to rural 瑶海"},
    ),
    "two place sets, civil affairs city 合肥: residents, identities and its pushes": (
        CIVIL,
        Level.CITY,
        HEFEI,
        [ALL_IDENTITY, PUSHED_ADDRESSED],
        {"lives in 庐阳", "pushed to civil 瑶海"} | HELD_IDENTITY_IN_SHUSHAN,
    ),
    "a region nobody is tied to: nobody": (
        MIB,
        Level.COUNTY,
        "340111",
        [ALL_INSURED, ALL_IDENTITY, "Person(all; places: addressed)"],
        set(),
    ),
}


async def test_places_bring_people_into_exactly_these_scopes(db: IngestDB) -> None:
    facts = Facts(db.vault)
    people = _population(facts)
    await facts.write(db.engine)
    await refresh(db.engine, select(Person.id))
    names = {person: name for name, person in people.items()}

    failures = []
    for case, (department, level, region, row_objects, expected) in SCOPES.items():
        predicate = row_predicate(
            _decision(*row_objects), department=department, level=level, region=region, today=TODAY
        )
        seen = {names[person] for person in await _seen(db, predicate)}
        if seen != expected:
            failures.append(f"{case}: missing {expected - seen}, extra {seen - expected}")
    assert failures == []


RESIDENCE_REGIONS = [
    (Level.COUNTY, LUYANG),
    (Level.COUNTY, LIXIA),
    (Level.COUNTY, YAOHAI),
    (Level.CITY, HEFEI),
    (Level.CITY, "3701"),
    (Level.PROVINCE, ANHUI),
    (Level.PROVINCE, "37"),
]
_COLUMN = {
    Level.COUNTY: Person.county_code,
    Level.CITY: Person.city_code,
    Level.PROVINCE: Person.province_code,
}


async def test_residence_only_conditions_see_the_same_rows_as_before(db: IngestDB) -> None:
    """Without places a row object means the residence: the person's own region column, and
    the predicate reads no place but the department's own reports (none in this population)."""
    facts = Facts(db.vault)
    _population(facts)
    await facts.write(db.engine)
    await refresh(db.engine, select(Person.id))

    for level, region in RESIDENCE_REGIONS:
        for department in (MIB, CIVIL):
            for row_objects in (["Person(all)"], ["Person(all; places: residence)"]):
                predicate = row_predicate(
                    _decision(*row_objects),
                    department=department,
                    level=level,
                    region=region,
                    today=TODAY,
                )
                sql = str(predicate.compile(compile_kwargs={"literal_binds": True}))
                assert re.findall(r"person_place\.kind IN \(([^)]*)\)", sql) == ["'reported'"]
                assert await _seen(db, predicate) == await _seen(db, _COLUMN[level] == region)


# ---------------------------------------------------------------------------- the property
COUNTIES = (YAOHAI, LUYANG, SHUSHAN, JINGHU, LIXIA)
DEPARTMENTS = (CIVIL, RURAL, MIB)
CATEGORIES = ("MINIMUM_LIVING", "LIFTED_FROM_POVERTY")
STORED = (IDENTITY, INSURED, ADDRESSED)


@dataclass(frozen=True)
class PlacePlan:
    kind: str
    department: str
    county: str
    since: int  # days from today
    until: int | None

    def held(self) -> bool:
        until = None if self.until is None else TODAY + timedelta(days=self.until)
        return held(TODAY + timedelta(days=self.since), until)


@dataclass(frozen=True)
class PersonPlan:
    residence: str
    places: tuple[PlacePlan, ...]  # unique by (kind, department, county), as stored
    pushed_to: frozenset[str]
    holds: frozenset[str]  # categories held today
    lapsed: frozenset[str]  # categories that ended yesterday


@dataclass(frozen=True)
class Caller:
    department: str
    level: Level
    region: str
    conditions: tuple[RowCondition, ...]


def _unique_places(places: list[PlacePlan]) -> tuple[PlacePlan, ...]:
    seen: dict[tuple[str, str, str], PlacePlan] = {}
    for place in places:
        seen.setdefault((place.kind, place.department, place.county), place)
    return tuple(seen.values())


place_plans = st.builds(
    PlacePlan,
    kind=st.sampled_from(STORED),
    department=st.sampled_from(DEPARTMENTS),
    county=st.sampled_from(COUNTIES),
    since=st.integers(-3, 2),
    until=st.one_of(st.none(), st.integers(-3, 2)),
)
person_plans = st.builds(
    PersonPlan,
    residence=st.sampled_from(COUNTIES),
    places=st.lists(place_plans, max_size=4).map(_unique_places),
    pushed_to=st.frozensets(st.sampled_from(DEPARTMENTS), max_size=2),
    holds=st.frozensets(st.sampled_from(CATEGORIES), max_size=1),
    lapsed=st.frozensets(st.sampled_from(CATEGORIES), max_size=1),
).filter(lambda p: not p.holds & p.lapsed)
place_sets = st.frozensets(st.sampled_from(POLICY_PLACE_KINDS), min_size=1)
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


def model_sees(person: PersonPlan, caller: Caller) -> bool:
    """The rule, in Python: some granted condition holds for the person, who is tied to the
    caller's region by one of the places that condition names."""
    digits = caller.level.region_digits

    def tied(places: frozenset[PlaceKind]) -> bool:
        if PlaceKind.RESIDENCE in places and person.residence[:digits] == caller.region:
            return True
        return any(
            place.kind in places
            and place.county[:digits] == caller.region
            and place.held()
            and (place.kind not in OWN_KINDS or place.department == caller.department)
            for place in person.places
        )

    def condition_holds(condition: RowCondition) -> bool:
        if isinstance(condition, AllRows):
            return True
        if isinstance(condition, PushedToDepartment):
            return caller.department in person.pushed_to
        return bool(person.holds & condition.categories)

    return any(tied(c.places) and condition_holds(c) for c in caller.conditions)


# No shrink phase: each replay rewrites the database, and shrinking a failure took minutes.
# Hypothesis prints the failing people and callers whole; the assertion names the caller.
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    plans=st.lists(person_plans, min_size=1, max_size=6),
    scopes=st.lists(callers, min_size=1, max_size=8),
)
async def test_the_sql_predicate_is_the_rule(
    db: IngestDB, plans: list[PersonPlan], scopes: list[Caller]
) -> None:
    """Random people (a residence, stored places held or not on either side of today, pushes,
    categories held or lapsed) and random callers (department × level × region × conditions
    with random place sets): the rows the compiled predicate selects are the model's."""
    facts = Facts(db.vault)
    ids = [facts.person(plan.residence) for plan in plans]
    places: list[dict[str, Any]] = []
    for person, plan in zip(ids, plans, strict=True):
        for department in sorted(plan.pushed_to):
            facts.task(person, department, LIXIA, TODAY - timedelta(days=5))
        for category in sorted(plan.holds):
            facts.identity(person, LIXIA, category=category, valid_from=TODAY - timedelta(days=30))
        for category in sorted(plan.lapsed):
            facts.identity(person, LIXIA, category=category, valid_to=YESTERDAY)
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

    for caller in scopes:
        predicate = row_predicate(
            AccessDecision(1, "*", {}, caller.conditions),
            department=caller.department,
            level=caller.level,
            region=caller.region,
            today=TODAY,
        )
        expected = {
            person for person, plan in zip(ids, plans, strict=True) if model_sees(plan, caller)
        }
        assert await _seen(db, predicate) == expected, caller


# ============================================================================ conditions
ROUND_TRIPS = {
    # text → how it is written back (places in their order, residence-only left out)
    "all rows": ("Person(all)", "all"),
    "pushed": ("Person(pushed)", "pushed"),
    "categories, sorted": (
        "Person(category: MINIMUM_LIVING|EXTREME_POVERTY)",
        "category: EXTREME_POVERTY|MINIMUM_LIVING",
    ),
    "residence named: the default, written without places": (
        "Person(all; places: residence)",
        "all",
    ),
    "insured|residence: residence first": (
        "Person(all; places: insured|residence)",
        "all; places: residence|insured",
    ),
    "every kind, any order": (
        "Person(all; places: addressed|insured|identity|residence)",
        "all; places: residence|identity|insured|addressed",
    ),
    "identity without residence": ("Person(all; places: identity)", "all; places: identity"),
    "pushed; addressed": ("Person(pushed; places: addressed)", "pushed; places: addressed"),
    "category with places": (
        "Person(category: LIFTED_FROM_POVERTY; places: identity|residence)",
        "category: LIFTED_FROM_POVERTY; places: residence|identity",
    ),
    "spaces around the parts": (
        "Person( all ;  places :  insured | residence )",
        "all; places: residence|insured",
    ),
    "a kind named twice": (
        "Person(all; places: insured|insured)",
        "all; places: insured",
    ),
}


@pytest.mark.parametrize("case", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_row_objects_round_trip(case: tuple[str, str]) -> None:
    text, written = case
    condition = parse_row_object(text)
    assert str(condition) == written
    assert parse_row_object(f"Person({written})") == condition


DEFAULT_PLACES = {
    "Person(all)": RESIDENCE_ONLY,
    "Person(pushed)": RESIDENCE_ONLY,
    "Person(category: ORPHAN)": RESIDENCE_ONLY,
    "Person(all; places: insured|residence)": frozenset({PlaceKind.RESIDENCE, PlaceKind.INSURED}),
    "Person(pushed; places: addressed)": frozenset({PlaceKind.ADDRESSED}),
}


@pytest.mark.parametrize(("text", "places"), DEFAULT_PLACES.items(), ids=DEFAULT_PLACES.keys())
def test_without_places_a_row_object_means_the_residence(
    text: str, places: frozenset[PlaceKind]
) -> None:
    assert parse_row_object(text).places == places


REFUSED = {
    "an unknown kind": "Person(all; places: home)",
    "a kind in the wrong case": "Person(all; places: Insured)",
    "an unknown kind among known ones": "Person(all; places: insured|elsewhere)",
    "places without kinds": "Person(all; places:)",
    "places of empty kinds": "Person(all; places: |)",
    "place instead of places": "Person(all; place: insured)",
    "kinds without places:": "Person(all; insured)",
    "places without a colon": "Person(all; places insured)",
    "two places clauses": "Person(all; places: insured; places: identity)",
    "a dangling semicolon": "Person(all;)",
    "places without a condition": "Person(; places: insured)",
    "a category without categories": "Person(category: ; places: identity)",
    "an unknown category with places": "Person(category: RICH; places: identity)",
    "unbalanced parentheses": "Person(all; places: residence))",
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_malformed_places_refuse_the_row_object_in_chinese(text: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_row_object(text)
    assert re.search(r"[\u4e00-\u9fff]", str(refused.value)), str(refused.value)
