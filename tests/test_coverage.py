"""``coverage(regionPrefix, year)``: enrollment of rural low-income and lifted-from-poverty people
stays at 99% or more, and the suspected non-enrolled are listed for follow-up (rule 8, 002 §1).

Two gateways of this module per backend: ``built`` holds a small population loaded through the
department files (civil affairs and rural revitalisation identities, medical insurance
enrollments, health deaths) with exact, hand-counted figures; ``seeded`` holds the synthetic
population, cross-checked against a plain-Python computation over its plaintext.

The hand-built population (year 2025, reference day 2025-12-31), all 低保对象 unless stated:

    370102  100 people: 99 enrolled, 1 with no enrollment        → 99/100  = 0.99  meets
            person 0 also holds 脱贫人口 (rural revitalisation)    → counted once in totals
    370103   99 counted: 97 enrolled, 1 exited on 12-31 (still
            held that day) and enrolled, 1 suspended              → 98/99 = 0.9898… misses
            not counted: deceased 2025-06-01, exited 2025-12-30,
            holds only 孤儿 (not a coverage category), recognised
            2026-01-05 (after the reference day)
    370202    2 people: 1 enrolled, 1 terminated
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.pipeline import Ingestor
from gateway.domain.records import PersonRecord
from gateway.loop.coverage import Tally
from tests.expectations import LEVEL_DIGITS, Subject, world_of
from tests.harness import Harness, build_harness
from tests.ingest_support import (
    Someone,
    enrollment_row,
    identity_row,
    someone,
    vital_event_row,
    write_rows,
)
from tests.pgcluster import ThrowawayCluster

BACKENDS = ("sqlite", "postgres")
LEVEL_OF = {digits: level for level, digits in LEVEL_DIGITS.items()}
A, B, C = "370102", "370103", "370202"  # 济南市历下区, 济南市市中区, 青岛市市南区
YEAR = 2025

COVERAGE = """
query Coverage($prefix: String!, $year: Int!, $first: Int = 50, $after: String) {
  coverage(regionPrefix: $prefix, year: $year) {
    regionPrefix year referenceDate target population enrolled rate meetsTarget
    byCategory { category population enrolled rate }
    byCounty { regionCode population enrolled rate meetsTarget }
    notEnrolled(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { reason person { id idNumber regionCode } } }
    }
  }
}
"""

TOTALS = """
query Totals($prefix: String!, $year: Int!) {
  coverage(regionPrefix: $prefix, year: $year) {
    referenceDate population enrolled rate meetsTarget
  }
}
"""


# ---------------------------------------------------------------------------- the population
@dataclass(frozen=True)
class Population:
    a: list[Someone]
    b: list[Someone]
    c: list[Someone]
    a_missing: Someone  # no enrollment
    b_suspended: Someone
    b_exit_on_reference_day: Someone
    b_excluded: list[Someone]
    c_terminated: Someone


def _population() -> Population:
    a = [someone(n, A) for n in range(100)]
    b = [someone(n, B) for n in range(99)]
    b_excluded = [someone(n, B) for n in range(100, 104)]
    c = [someone(n, C) for n in range(2)]
    return Population(
        a=a,
        b=b,
        c=c,
        a_missing=a[99],
        b_suspended=b[98],
        b_exit_on_reference_day=b[97],
        b_excluded=b_excluded,
        c_terminated=c[1],
    )


POPULATION = _population()


async def _load(
    gateway: Harness, tmp: Path, source: str, feed: str, rows: Sequence[Mapping[str, str]]
) -> None:
    """Ingest ``rows`` as a department file, the way the CLI does."""
    path = write_rows(tmp / f"{source}-{feed}-{uuid.uuid4().hex[:6]}.csv", rows)
    ingestor = Ingestor(
        gateway.runtime.engine,
        gateway.runtime.vault,
        gateway.runtime.feeds[(source, feed)],
        submitted_by=f"test:{source}",
        today=gateway.today,
    )
    result = await ingestor.ingest_file(path)
    assert result.counts.rows_rejected == 0, result.rejections


async def _build(gateway: Harness, tmp: Path) -> None:
    p = POPULATION
    dead, exited_early, orphan, late = p.b_excluded
    identities = [identity_row(person, "低保对象", "2025-01-10") for person in p.a + p.c]
    identities += [
        identity_row(person, "低保对象", "2025-01-10")
        for person in p.b
        if person != p.b_exit_on_reference_day
    ]
    identities += [
        identity_row(p.b_exit_on_reference_day, "低保对象", "2025-01-10", "2025-12-31"),
        identity_row(dead, "低保对象", "2025-01-10"),
        identity_row(exited_early, "低保对象", "2025-01-10", "2025-12-30"),
        identity_row(orphan, "孤儿", "2025-01-10"),
        identity_row(late, "低保对象", "2026-01-05"),
    ]
    await _load(gateway, tmp, "civil_affairs", "identities", identities)
    await _load(
        gateway, tmp, "rural_revitalization", "identities", [identity_row(p.a[0], "脱贫人口")]
    )
    enrolled = [
        person
        for person in p.a + p.b + p.c
        if person not in (p.a_missing, p.b_suspended, p.c_terminated)
    ]
    enrollments = [enrollment_row(person, YEAR) for person in enrolled]
    enrollments += [
        enrollment_row(p.b_suspended, YEAR, "暂停参保"),
        enrollment_row(p.c_terminated, YEAR, "终止参保"),
    ]
    await _load(gateway, tmp, "medical_insurance", "enrollments", enrollments)
    await _load(
        gateway, tmp, "health", "vital_events", [vital_event_row(dead, "死亡", "2025-06-01")]
    )


async def _gateway(
    request: pytest.FixtureRequest, tmp: Path, persons: int
) -> AsyncIterator[Harness]:
    backend = str(request.param)
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_coverage_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    gateway = await build_harness(tmp, url, backend=backend, persons=persons)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


@pytest.fixture(scope="module", params=BACKENDS)
async def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway holding only the hand-built population."""
    tmp = tmp_path_factory.mktemp(f"coverage-built-{request.param}")
    async for gateway in _gateway(request, tmp, persons=0):
        await _build(gateway, tmp)
        yield gateway


@pytest.fixture(scope="module", params=BACKENDS)
async def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway holding the synthetic population (its plaintext in ``Harness.bundles``)."""
    tmp = tmp_path_factory.mktemp(f"coverage-seeded-{request.param}")
    async for gateway in _gateway(request, tmp, persons=600):
        yield gateway


def _token(gateway: Harness, dept: str, level: str, region: str) -> str:
    return gateway.token(dept, level, region, subject=f"cov-{dept}-{region}")


async def _coverage(
    gateway: Harness, token: str, prefix: str, year: int = YEAR, **variables: Any
) -> dict[str, Any]:
    body = await gateway.query(token, COVERAGE, {"prefix": prefix, "year": year, **variables})
    assert "errors" not in body, body["errors"]
    found: dict[str, Any] = body["data"]["coverage"]
    return found


def _error_code(body: dict[str, Any]) -> str:
    assert body["data"] is None or body["data"]["coverage"] is None, body
    (error,) = body["errors"]
    code: str = error["extensions"]["code"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"]), error["message"]
    return code


# ============================================================================ the rule
@pytest.mark.parametrize(
    ("enrolled", "population", "rate", "meets"),
    [
        (99, 100, "0.9900", True),  # exactly 99%
        (98, 99, "0.9898", False),  # 98.99%
        (9899, 10000, "0.9899", False),
        (98995, 100000, "0.9899", False),  # cut, not rounded up to a rate that looks met
        (100, 100, "1.0000", True),
        (0, 0, None, True),  # nobody to enroll: nobody left out
    ],
)
def test_rate_and_target(enrolled: int, population: int, rate: str | None, meets: bool) -> None:
    tally = Tally(population=population, enrolled=enrolled)
    assert (str(tally.rate()) if tally.rate() is not None else None) == rate
    assert tally.meets(Decimal("0.99")) is meets


# ============================================================================ exact figures
async def test_city_totals_count_each_person_once_and_miss_the_target_at_98_99(
    built: Harness,
) -> None:
    found = await _coverage(built, _token(built, "medical_insurance", "city", "3701"), "3701")

    assert found["regionPrefix"] == "3701"
    assert found["year"] == YEAR
    assert found["referenceDate"] == "2025-12-31"
    assert found["target"] == "0.99"
    # 100 in 370102 + 99 in 370103; the person holding two categories is counted once.
    assert (found["population"], found["enrolled"]) == (199, 197)
    assert found["rate"] == "0.9899"  # 197/199 = 0.98994…, cut, never rounded up
    assert found["meetsTarget"] is False
    assert found["byCategory"] == [
        {"category": "LIFTED_FROM_POVERTY", "population": 1, "enrolled": 1, "rate": "1.0000"},
        {"category": "MINIMUM_LIVING", "population": 199, "enrolled": 197, "rate": "0.9899"},
    ]


@pytest.mark.parametrize(
    ("county", "population", "enrolled", "rate", "meets"),
    [
        (A, 100, 99, "0.9900", True),  # exactly 99%: meets
        (B, 99, 98, "0.9898", False),  # 98.99%: does not
    ],
    ids=["exactly-99-percent-meets", "98.99-percent-misses"],
)
async def test_the_target_boundary_per_county(
    built: Harness, county: str, population: int, enrolled: int, rate: str, meets: bool
) -> None:
    city = await _coverage(built, _token(built, "medical_insurance", "city", "3701"), "3701")
    row = {c["regionCode"]: c for c in city["byCounty"]}[county]
    assert row == {
        "regionCode": county,
        "population": population,
        "enrolled": enrolled,
        "rate": rate,
        "meetsTarget": meets,
    }
    alone = await _coverage(built, _token(built, "civil_affairs", "county", county), county)
    assert (alone["population"], alone["enrolled"], alone["rate"], alone["meetsTarget"]) == (
        population,
        enrolled,
        rate,
        meets,
    )


async def test_excluded_people_are_neither_counted_nor_listed(built: Harness) -> None:
    """Deceased before the reference day, identity exited the day before it, holding only a
    category outside the statistics, recognised after it: not in the population."""
    found = await _coverage(built, _token(built, "medical_insurance", "county", B), B)
    listed = {edge["node"]["person"]["idNumber"] for edge in found["notEnrolled"]["edges"]}
    for person in POPULATION.b_excluded:
        assert person.id_number not in listed
    assert POPULATION.b_exit_on_reference_day.id_number not in listed  # held that day, enrolled
    assert found["population"] == 99


async def test_the_not_enrolled_are_listed_with_their_reason(built: Harness) -> None:
    p = POPULATION
    found = await _coverage(built, _token(built, "medical_insurance", "province", "37"), "37")
    assert (found["population"], found["enrolled"]) == (201, 198)
    listing = found["notEnrolled"]
    assert listing["totalCount"] == 3
    reasons = {
        edge["node"]["person"]["idNumber"]: edge["node"]["reason"] for edge in listing["edges"]
    }
    assert reasons == {
        p.a_missing.id_number: "NO_ENROLLMENT",
        p.b_suspended.id_number: "SUSPENDED",  # a suspended enrollment is not coverage
        p.c_terminated.id_number: "TERMINATED",
    }
    assert [c["regionCode"] for c in found["byCounty"]] == [A, B, C]


async def test_the_not_enrolled_page_by_cursor(built: Harness) -> None:
    token = _token(built, "medical_insurance", "province", "37")
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = (await _coverage(built, token, "37", first=1, after=after))["notEnrolled"]
        seen += [edge["node"]["person"]["id"] for edge in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert len(seen) == 3
    assert seen == sorted(seen, key=uuid.UUID)


async def test_rural_revitalisation_counts_only_its_row_scope(built: Harness) -> None:
    """Its policy shows it people holding one of its categories (脱贫人口 …): of 370102's 100
    低保对象 it sees the one who is also 脱贫人口, and counts only that one."""
    found = await _coverage(built, _token(built, "rural_revitalization", "county", A), A)
    assert (found["population"], found["enrolled"], found["rate"]) == (1, 1, "1.0000")
    assert found["byCategory"] == [
        {"category": "LIFTED_FROM_POVERTY", "population": 1, "enrolled": 1, "rate": "1.0000"},
        {"category": "MINIMUM_LIVING", "population": 1, "enrolled": 1, "rate": "1.0000"},
    ]
    assert found["notEnrolled"]["totalCount"] == 0


async def test_the_current_year_is_taken_on_today(built: Harness) -> None:
    body = await built.query(
        _token(built, "medical_insurance", "county", A), TOTALS, {"prefix": A, "year": 2026}
    )
    assert body["data"]["coverage"] == {
        "referenceDate": built.today.isoformat(),
        "population": 100,  # still held today; nobody has a 2026 enrollment on file
        "enrolled": 0,
        "rate": "0.0000",
        "meetsTarget": False,
    }


async def test_a_region_without_people_has_no_rate(built: Harness) -> None:
    found = await _coverage(built, _token(built, "medical_insurance", "county", "370104"), "370104")
    assert (found["population"], found["enrolled"], found["rate"]) == (0, 0, None)
    assert found["byCounty"] == []
    assert found["byCategory"] == []


# ============================================================================ refusals
@pytest.mark.parametrize(
    ("dept", "level", "region", "prefix", "year", "code"),
    [
        ("civil_affairs", "county", A, B, YEAR, "FORBIDDEN"),  # the neighbour county
        ("civil_affairs", "county", A, "3701", YEAR, "FORBIDDEN"),  # larger than the county
        ("civil_affairs", "city", "3701", "3702", YEAR, "FORBIDDEN"),  # another city
        ("civil_affairs", "county", A, "3701x2", YEAR, "BAD_USER_INPUT"),
        ("civil_affairs", "county", A, "3", YEAR, "BAD_USER_INPUT"),
        ("civil_affairs", "county", A, "3701020010010", YEAR, "BAD_USER_INPUT"),  # 13 digits
        ("civil_affairs", "county", A, A, 2027, "BAD_USER_INPUT"),  # a future year
        ("civil_affairs", "county", A, A, 1999, "BAD_USER_INPUT"),
        ("health", "county", A, A, YEAR, "FORBIDDEN"),  # no Loop.coverage
        ("big_data", "province", "37", "37", YEAR, "FORBIDDEN"),
    ],
    ids=[
        "neighbour-county",
        "city-from-county",
        "other-city",
        "not-digits",
        "too-short",
        "too-long",
        "future-year",
        "too-early",
        "health",
        "big-data",
    ],
)
async def test_refused_requests(
    built: Harness, dept: str, level: str, region: str, prefix: str, year: int, code: str
) -> None:
    body = await built.query(
        _token(built, dept, level, region), TOTALS, {"prefix": prefix, "year": year}
    )
    assert _error_code(body) == code


# ============================================================================ cross-check
def _expected(
    people: list[PersonRecord],
    held: Mapping[uuid.UUID, set[str]],
    statuses: Mapping[uuid.UUID, list[str]],
    counties: Mapping[uuid.UUID, set[str]],
) -> tuple[Tally, dict[str, Tally], dict[str, Tally], dict[uuid.UUID, str]]:
    """The figures over ``people`` (those counted in the region): each once in the total and
    once in every county of ``counties`` (the counties whose own office counts them)."""
    totals = [0, 0]
    per_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_county: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missing: dict[uuid.UUID, str] = {}
    for person in people:
        categories = held.get(person.person_id, set())
        if not categories:
            continue
        found = statuses.get(person.person_id, [])
        enrolled = "ACTIVE" in found
        for tally in (totals, *(per_county[county] for county in counties[person.person_id])):
            tally[0] += 1
            tally[1] += enrolled
        for category in categories:
            per_category[category][0] += 1
            per_category[category][1] += enrolled
        if not enrolled:
            missing[person.person_id] = (
                "NO_ENROLLMENT"
                if not found
                else "SUSPENDED"
                if "SUSPENDED" in found
                else "TERMINATED"
            )
    return (
        Tally(*totals),
        {k: Tally(*v) for k, v in per_category.items()},
        {k: Tally(*v) for k, v in per_county.items()},
        missing,
    )


def _rate(tally: Tally) -> str | None:
    if tally.population == 0:
        return None
    share = Decimal(tally.enrolled) / Decimal(tally.population)
    return str(share.quantize(Decimal("0.0001"), rounding=ROUND_DOWN))


@pytest.mark.parametrize(
    ("dept", "level", "year"),
    [
        ("medical_insurance", "province", 2025),
        ("medical_insurance", "province", 2026),
        ("rural_revitalization", "province", 2026),
        ("civil_affairs", "city", 2025),
    ],
)
async def test_figures_match_a_plain_python_computation(
    seeded: Harness, dept: str, level: str, year: int
) -> None:
    gateway = seeded
    today = gateway.today
    day = today if year == today.year else date(year, 12, 31)
    categories = gateway.runtime.rules.coverage_categories
    busiest = gateway.busiest_county()
    region = busiest[:2] if level == "province" else busiest[:4]

    held: dict[uuid.UUID, set[str]] = defaultdict(set)
    statuses: dict[uuid.UUID, list[str]] = defaultdict(list)
    for bundle in gateway.bundles:
        for status in bundle.relief_statuses:
            in_force = status.valid_to is None or status.valid_to >= day
            if status.valid_from <= day and in_force and status.category in categories:
                held[status.person_id].add(status.category)
        for enrollment in bundle.enrollments:
            if enrollment.year == year:
                statuses[enrollment.person_id].append(enrollment.status)

    # Who the caller lists in an area (issue 14), stated independently of the policy file by
    # tests/expectations.py: in the department's row scope (rural revitalisation: holding one
    # of its categories today) and tied to the area by the residence or by a place its row
    # scope names, held today (medical insurance: 参保地, derived from the enrollments as
    # gateway/storage/places.py does; civil affairs and rural revitalisation: their own
    # 认定地). The seeded world has no pushes and no reports.
    world = world_of(gateway)

    def visible(person: PersonRecord, area: str) -> bool:
        return world.visible(Subject(dept, LEVEL_OF[len(area)], area), person)

    def counties_of(person: PersonRecord) -> set[str]:
        """Every county of the region whose own office counts the person."""
        candidates = {person.region_code[:6]}
        candidates |= {place.county for place in world.places[person.person_id]}
        return {
            county for county in candidates if county.startswith(region) and visible(person, county)
        }

    people = [person for person in gateway.persons if visible(person, region)]
    counties = {person.person_id: counties_of(person) for person in people}
    totals, per_category, per_county, missing = _expected(people, held, statuses, counties)
    assert totals.population > 5, "the seeded population is too small for a cross-check"
    if dept == "medical_insurance":  # the cross-check covers people counted by 参保地 alone
        assert any(
            held.get(p.person_id) and not p.region_code.startswith(region) for p in people
        ), "nobody in the seeded population is counted by an insured place outside the residence"

    token = _token(gateway, dept, level, region)
    found = await _coverage(gateway, token, region, year, first=200)

    assert (found["population"], found["enrolled"]) == (totals.population, totals.enrolled)
    assert found["rate"] == _rate(totals)
    assert found["meetsTarget"] == (totals.enrolled >= Decimal("0.99") * totals.population)
    assert {c["category"]: (c["population"], c["enrolled"]) for c in found["byCategory"]} == {
        k: (v.population, v.enrolled) for k, v in per_category.items()
    }
    assert {c["regionCode"]: (c["population"], c["enrolled"]) for c in found["byCounty"]} == {
        k: (v.population, v.enrolled) for k, v in per_county.items()
    }
    listing = found["notEnrolled"]
    assert listing["totalCount"] == len(missing)
    assert not listing["pageInfo"]["hasNextPage"]
    assert {
        uuid.UUID(edge["node"]["person"]["id"]): edge["node"]["reason"] for edge in listing["edges"]
    } == missing
