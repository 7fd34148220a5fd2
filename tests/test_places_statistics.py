"""Counting by place (issue 14 "statistics and coverage count each person once per region and
kind as documented"; docs/closed-loop.md "Counting by place", DOMAIN.md rule 9, 004 §3).

* ``coverage(regionPrefix, year)`` (a department's own figures) counts, in a region, the people
  the caller would list there: in its row scope and tied to the region by a place its row scope
  names — medical insurance 居住地|参保地, civil affairs and rural revitalisation
  居住地|认定地 (its own) and 推送地. Each person once per region, however many places tie them
  to it; ``byCounty`` gives each county the figure its own office gets, so a person tied to two
  counties is in both rows and once in the total. Enrolled means enrolled anywhere.
* ``statistics`` (aggregates, the same figure for every caller, small cells suppressed) counts
  people where they live: one county per person, so counties add up to their city.

The cast (today 2026-11-23; coverage year 2026; Hefei 瑶海 340102, 庐阳 340103, 蜀山 340104;
金安 341502 in Lu'an; 历下 370102 in Shandong):

    甲   lives 庐阳; 低保 recognised 庐阳; insured 2026 瑶海 (ACTIVE)
    乙   lives 蜀山; 低保 recognised 庐阳; insured 2026 金安 (ACTIVE)     three places, two cities
    五人 five people exactly like 乙 (so that statistics cells are large enough to publish)
    丙   lives 瑶海; 监测对象 recognised 庐阳 by rural revitalisation; insured 2025 金安, no 2026
         enrollment (the 参保地 still holds: 断保, to follow up)
    丁   lives 历下 (Shandong); 低保 recognised there; insured 2026 瑶海 (ACTIVE)
    戊   lives 瑶海; no identity; insured 2026 瑶海                  never counted (no category)
    己   lives 蜀山, in 甲's household; 低保 recognised 蜀山; insured 2026 蜀山
    庚   lives 蜀山; 脱贫人口 recognised 蜀山; 2026 enrollment in 瑶海 SUSPENDED (held; not
         enrolled)

Every figure is stated by hand in the tables below and again by the model of places
(``tests.expectations.World``); then, for every department with coverage and every region at
every level, the figure equals the number of distinct people the same caller lists with the
same filters (``persons(filter: {category, activeOn, enrolledIn})``), and a city's or a
province's figure for a region equals that region's own office's figure.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from tests.expectations import LEVEL_DIGITS, Subject, World
from tests.harness import Harness
from tests.places_access_support import (
    ANHUI,
    CIVIL,
    HEALTH,
    HEFEI,
    JIN_AN,
    LIXIA,
    LUAN,
    LUYANG,
    MIB,
    RURAL,
    SHANDONG,
    SHUSHAN,
    YAOHAI,
    HouseholdBundle,
    HouseholdRecord,
    Population,
    enrolled,
    places_gateway,  # noqa: F401 - the module's own gateway (fixture)
    status,
    write,
)

SEED_PERSONS = 0  # only the cast: every figure is exact
YEAR = 2026
MIN = 5
COVERAGE_CATEGORIES = ("MINIMUM_LIVING", "MONITORED_UNSTABLE", "LIFTED_FROM_POVERTY")
LEVEL_OF = {2: "province", 4: "city", 6: "county"}

COVERAGE = """
query($prefix: String!, $year: Int!) { coverage(regionPrefix: $prefix, year: $year) {
  population enrolled
  byCategory { category population enrolled }
  byCounty { regionCode population enrolled }
  notEnrolled(first: 100) { totalCount edges { node { reason person { id } } } }
} }
"""
RELIEF = """
query($prefix: String, $groupBy: RegionLevel!) {
  statistics(regionPrefix: $prefix, groupBy: $groupBy) {
    reliefPeople { regionCode category count suppressed }
  }
}
"""
STAT_COVERAGE = """
query($prefix: String, $year: Int!) { statistics(regionPrefix: $prefix) { coverage(year: $year) {
  regions { regionCode population populationSuppressed enrolled enrolledSuppressed
            notEnrolled notEnrolledSuppressed }
} } }
"""


@dataclass
class Cast:
    harness: Harness
    population: Population
    people: dict[str, Any]  # name -> PersonRecord
    movers: list[Any]  # the five like 乙

    def world(self) -> World:
        return self.population.world()

    def ids(self, *names: str) -> set[str]:
        return {str(self.people[name].person_id) for name in names}


@pytest.fixture(scope="module")
async def cast(places_gateway: Harness) -> Cast:  # noqa: F811
    harness = places_gateway
    population = Population(harness.today, bundles=list(harness.bundles))
    people: dict[str, Any] = {}
    bundles: list[HouseholdBundle] = []
    recognised_in: dict[Any, str] = {}

    def household(region: str) -> HouseholdBundle:
        bundle = HouseholdBundle(HouseholdRecord(uuid.uuid4(), region))
        bundles.append(bundle)
        return bundle

    def member(bundle: HouseholdBundle, key: str, region: str) -> Any:
        person = population.person(region, bundle.household.household_id, name=f"测试{key}")
        bundle.members.append(person)
        people[key] = person
        return person

    home = household(LUYANG + "001001")
    jia = member(home, "甲", LUYANG + "001001")
    home.relief_statuses.append(status(jia, "MINIMUM_LIVING", CIVIL))
    home.enrollments.append(enrolled(jia, YEAR, YAOHAI))
    ji = member(home, "己", SHUSHAN + "003001")  # 甲's household, living in 蜀山
    ji_status = status(ji, "MINIMUM_LIVING", CIVIL)
    home.relief_statuses.append(ji_status)
    recognised_in[ji_status] = SHUSHAN  # the household's region is 庐阳: state 蜀山 explicitly
    home.enrollments.append(enrolled(ji, YEAR, SHUSHAN))

    movers = []
    for key in ("乙", "乙1", "乙2", "乙3", "乙4", "乙5"):
        bundle = household(SHUSHAN + "002001")
        person = member(bundle, key, SHUSHAN + "002001")
        record = status(person, "MINIMUM_LIVING", CIVIL, date(2024, 6, 1))
        bundle.relief_statuses.append(record)
        recognised_in[record] = LUYANG
        bundle.enrollments.append(enrolled(person, YEAR, JIN_AN))
        if key != "乙":
            movers.append(person)

    bundle = household(YAOHAI + "003001")
    bing = member(bundle, "丙", YAOHAI + "003001")
    record = status(bing, "MONITORED_UNSTABLE", RURAL, date(2025, 1, 1))
    bundle.relief_statuses.append(record)
    recognised_in[record] = LUYANG
    bundle.enrollments.append(enrolled(bing, 2025, JIN_AN))

    bundle = household(LIXIA + "001001")
    ding = member(bundle, "丁", LIXIA + "001001")
    bundle.relief_statuses.append(status(ding, "MINIMUM_LIVING", CIVIL))
    bundle.enrollments.append(enrolled(ding, YEAR, YAOHAI))

    bundle = household(YAOHAI + "004001")
    wu = member(bundle, "戊", YAOHAI + "004001")
    bundle.enrollments.append(enrolled(wu, YEAR, YAOHAI))

    bundle = household(SHUSHAN + "005001")
    geng = member(bundle, "庚", SHUSHAN + "005001")
    bundle.relief_statuses.append(status(geng, "LIFTED_FROM_POVERTY", RURAL))
    bundle.enrollments.append(enrolled(geng, YEAR, YAOHAI, "SUSPENDED"))

    await write(harness, population, bundles, recognised_in=recognised_in)
    return Cast(harness, population, people, movers)


# ============================================================================ the model
def model_coverage(world: World, dept: str, region: str) -> dict[str, Any]:
    """Coverage of ``region`` for ``dept``: the people an office of ``dept`` at that region sees
    (the model's row scope) holding a coverage category today, and whether enrolled in YEAR."""
    subject = Subject(dept, LEVEL_OF[len(region)], region)
    counted = {
        pid
        for pid in world.scope(subject)
        if world.holds(world.persons[pid], COVERAGE_CATEGORIES, world.today)
    }
    insured = {
        pid
        for pid in counted
        if any(e.year == YEAR and e.status == "ACTIVE" for e in world.enrollments[pid])
    }
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid in counted:
        for category in {
            s.category
            for s in world.statuses[pid]
            if s.category in COVERAGE_CATEGORIES
            and s.valid_from <= world.today
            and (s.valid_to is None or s.valid_to >= world.today)
        }:
            by_category[category][0] += 1
            by_category[category][1] += pid in insured
    return {
        "people": {str(pid) for pid in counted},
        "population": len(counted),
        "enrolled": len(insured),
        "byCategory": {k: tuple(v) for k, v in by_category.items()},
    }


async def coverage(cast: Cast, subject: Subject, prefix: str) -> dict[str, Any]:
    token = cast.harness.token(subject.dept, subject.level, subject.region)
    body = await cast.harness.query(token, COVERAGE, {"prefix": prefix, "year": YEAR})
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["coverage"]
    return found


def counties_of(found: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {c["regionCode"]: (c["population"], c["enrolled"]) for c in found["byCounty"]}


def not_enrolled(found: dict[str, Any]) -> dict[str, str]:
    return {e["node"]["person"]["id"]: e["node"]["reason"] for e in found["notEnrolled"]["edges"]}


# ============================================================================ the tables
# (department, level, region) -> (population, enrolled, byCounty)
COVERAGE_TABLE: dict[tuple[str, str, str], tuple[int, int, dict[str, tuple[int, int]]]] = {
    # 医保: where they live or are insured (参保地 pays basic and critical-illness benefits)
    (MIB, "county", YAOHAI): (4, 2, {YAOHAI: (4, 2)}),  # 丙 lives; 甲 丁 insured; 庚 suspended
    (MIB, "county", LUYANG): (1, 1, {LUYANG: (1, 1)}),  # 甲 lives (乙's 庐阳 is civil affairs')
    (MIB, "county", SHUSHAN): (8, 7, {SHUSHAN: (8, 7)}),  # 乙 ×6, 己, 庚 live there
    (MIB, "county", JIN_AN): (7, 6, {JIN_AN: (7, 6)}),  # 乙 ×6 insured 2026; 丙 2025 (断保)
    (MIB, "city", HEFEI): (11, 9, {YAOHAI: (4, 2), LUYANG: (1, 1), SHUSHAN: (8, 7)}),
    (MIB, "city", LUAN): (7, 6, {JIN_AN: (7, 6)}),
    (MIB, "province", ANHUI): (
        11,
        9,
        {YAOHAI: (4, 2), LUYANG: (1, 1), SHUSHAN: (8, 7), JIN_AN: (7, 6)},
    ),
    (MIB, "province", SHANDONG): (1, 1, {LIXIA: (1, 1)}),  # 丁, insured in Anhui: enrolled
    # 民政: where they live or it recognised them (认定地 pays medical assistance)
    (CIVIL, "county", LUYANG): (7, 7, {LUYANG: (7, 7)}),  # 甲 lives; 乙 ×6 recognised there
    (CIVIL, "county", SHUSHAN): (8, 7, {SHUSHAN: (8, 7)}),
    (CIVIL, "county", YAOHAI): (1, 0, {YAOHAI: (1, 0)}),  # 丙 lives there (甲 丁 only insured)
    (CIVIL, "county", JIN_AN): (0, 0, {}),  # insured places are not civil affairs'
    (CIVIL, "city", HEFEI): (10, 8, {YAOHAI: (1, 0), LUYANG: (7, 7), SHUSHAN: (8, 7)}),
    (CIVIL, "province", ANHUI): (10, 8, {YAOHAI: (1, 0), LUYANG: (7, 7), SHUSHAN: (8, 7)}),
    # 乡村振兴: holders of its categories where they live or it recognised them
    (RURAL, "county", LUYANG): (1, 0, {LUYANG: (1, 0)}),  # 丙 recognised there
    (RURAL, "county", YAOHAI): (1, 0, {YAOHAI: (1, 0)}),  # 丙 lives there
    (RURAL, "county", SHUSHAN): (1, 0, {SHUSHAN: (1, 0)}),  # 庚
    (RURAL, "city", HEFEI): (2, 0, {YAOHAI: (1, 0), LUYANG: (1, 0), SHUSHAN: (1, 0)}),
}


@pytest.mark.parametrize("key", list(COVERAGE_TABLE), ids=lambda key: f"{key[0]}-{key[1]}-{key[2]}")
async def test_coverage_counts_each_person_once_per_region_through_the_callers_places(
    cast: Cast, key: tuple[str, str, str]
) -> None:
    dept, level, region = key
    population, insured, counties = COVERAGE_TABLE[key]
    model = model_coverage(cast.world(), dept, region)
    assert (model["population"], model["enrolled"]) == (population, insured), "the model agrees"

    found = await coverage(cast, Subject(dept, level, region), region)
    assert (found["population"], found["enrolled"]) == (population, insured)
    assert counties_of(found) == counties
    # a person tied to two counties is in both rows, once in the total
    assert sum(n for n, _ in counties.values()) >= population
    assert {c["category"]: (c["population"], c["enrolled"]) for c in found["byCategory"]} == (
        model["byCategory"]
    )
    listed = not_enrolled(found)
    assert found["notEnrolled"]["totalCount"] == len(listed) == population - insured
    assert set(listed) <= model["people"]


async def test_an_office_follows_up_lapses_at_the_place_insured(cast: Cast) -> None:
    """瑶海's medical insurance lists 丙 (lives there, never enrolled for 2026) and 庚 (insured
    there, suspended); 金安's lists 丙 (insured there in 2025, not renewed: 断保); 甲, who lives
    in 庐阳 and is insured in 瑶海, is counted by both and enrolled in both."""
    yaohai = await coverage(cast, Subject(MIB, "county", YAOHAI), YAOHAI)
    assert not_enrolled(yaohai) == {
        str(cast.people["丙"].person_id): "NO_ENROLLMENT",
        str(cast.people["庚"].person_id): "SUSPENDED",
    }
    jin_an = await coverage(cast, Subject(MIB, "county", JIN_AN), JIN_AN)
    assert not_enrolled(jin_an) == {str(cast.people["丙"].person_id): "NO_ENROLLMENT"}
    for region in (YAOHAI, LUYANG):
        assert (
            str(cast.people["甲"].person_id) in model_coverage(cast.world(), MIB, region)["people"]
        )


async def test_a_household_brings_nobody_in(cast: Cast) -> None:
    """己 lives in 蜀山 in 甲's household: 瑶海's medical insurance (甲 insured there) and 庐阳's
    civil affairs (甲 lives there) do not count 己; 蜀山's do."""
    ji = str(cast.people["己"].person_id)
    world = cast.world()
    assert ji not in model_coverage(world, MIB, YAOHAI)["people"]
    assert ji not in model_coverage(world, CIVIL, LUYANG)["people"]
    assert ji in model_coverage(world, CIVIL, SHUSHAN)["people"]
    for dept, region, population in ((MIB, YAOHAI, 4), (CIVIL, LUYANG, 7)):
        found = await coverage(cast, Subject(dept, "county", region), region)
        assert found["population"] == population
        assert ji not in not_enrolled(found)


async def test_health_has_no_coverage(cast: Cast) -> None:
    token = cast.harness.token(HEALTH, "county", YAOHAI)
    body = await cast.harness.query(token, COVERAGE, {"prefix": YAOHAI, "year": YEAR})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# ============================================================================ every caller
SUBJECTS = [
    Subject(dept, LEVEL_OF[len(region)], region)
    for dept in (MIB, CIVIL, RURAL)
    for region in (YAOHAI, LUYANG, SHUSHAN, JIN_AN, LIXIA, HEFEI, LUAN, "3701", ANHUI, SHANDONG)
]


def listing(categories: tuple[str, ...]) -> str:
    """One request: per coverage category, the caller's people holding it today, and those of
    them enrolled in YEAR (``persons`` pages: PersonFilter semantics)."""
    parts = []
    for i, category in enumerate(categories):
        for alias, extra in ((f"h{i}", ""), (f"e{i}", f", enrolledIn: {YEAR}")):
            parts.append(
                f"{alias}: persons(first: 200, filter: {{category: {category}, "
                f'activeOn: "{{today}}"{extra}}}) {{ totalCount edges {{ node {{ id }} }} }}'
            )
    return "{ " + " ".join(parts) + " }"


@pytest.mark.parametrize("subject", SUBJECTS, ids=str)
async def test_figures_equal_the_people_the_same_caller_lists(cast: Cast, subject: Subject) -> None:
    """For every caller with coverage: its figure for its jurisdiction is the number of distinct
    people it lists holding a coverage category today (and enrolled in YEAR) — so nobody is
    counted twice, nor anyone it cannot list — and its figure for every region inside its
    jurisdiction equals that region's own office's figure (the counties of ``byCounty``
    included) and the model's."""
    harness, world = cast.harness, cast.world()
    token = harness.token(subject.dept, subject.level, subject.region)
    query = listing(COVERAGE_CATEGORIES).replace("{today}", harness.today.isoformat())
    body = await harness.query(token, query)
    assert "errors" not in body, body
    held: set[str] = set()
    insured: set[str] = set()
    per_category: dict[str, tuple[int, int]] = {}
    for i, category in enumerate(COVERAGE_CATEGORIES):
        holders = {e["node"]["id"] for e in body["data"][f"h{i}"]["edges"]}
        covered = {e["node"]["id"] for e in body["data"][f"e{i}"]["edges"]}
        assert body["data"][f"h{i}"]["totalCount"] == len(holders)
        held |= holders
        insured |= covered
        if holders:
            per_category[category] = (len(holders), len(covered))

    own = await coverage(cast, subject, subject.region)
    assert (own["population"], own["enrolled"]) == (len(held), len(insured))
    assert {c["category"]: (c["population"], c["enrolled"]) for c in own["byCategory"]} == (
        per_category
    )
    assert set(not_enrolled(own)) == held - insured

    digits = LEVEL_DIGITS[subject.level]
    inside = [
        r for level in ("province", "city", "county") for r in world.regions(level)
        if r.startswith(subject.region) and len(r) >= digits
    ]  # fmt: skip
    for region in inside:
        model = model_coverage(world, subject.dept, region)
        asked = await coverage(cast, subject, region)
        office = await coverage(cast, Subject(subject.dept, LEVEL_OF[len(region)], region), region)
        figures = ("population", "enrolled", "byCategory", "byCounty")
        assert {k: asked[k] for k in figures} == {k: office[k] for k in figures}, region
        assert (asked["population"], asked["enrolled"]) == (
            model["population"],
            model["enrolled"],
        ), region
        for county, (population, enrolled_) in counties_of(asked).items():
            expected = model_coverage(world, subject.dept, county)
            assert (population, enrolled_) == (expected["population"], expected["enrolled"])


# ============================================================================ statistics
def residents(world: World, digits: int) -> dict[tuple[str, str | None], int]:
    """reliefPeople by residence: holders per (region, category) and (region, any)."""
    found: dict[tuple[str, str | None], set[uuid.UUID]] = defaultdict(set)
    for pid, person in world.persons.items():
        for s in world.statuses[pid]:
            if s.valid_from <= world.today and (s.valid_to is None or s.valid_to >= world.today):
                found[(person.region_code[:digits], s.category)].add(pid)
                found[(person.region_code[:digits], None)].add(pid)
    return {key: len(ids) for key, ids in found.items()}


async def relief_cells(
    cast: Cast, token: str, group_by: str, prefix: str | None = None
) -> dict[tuple[str, str | None], tuple[int | None, bool]]:
    body = await cast.harness.query(token, RELIEF, {"prefix": prefix, "groupBy": group_by})
    assert "errors" not in body, body
    return {
        (c["regionCode"], c["category"]): (c["count"], c["suppressed"])
        for c in body["data"]["statistics"]["reliefPeople"]
    }


@pytest.mark.parametrize("group_by", ["COUNTY", "CITY", "PROVINCE"])
async def test_statistics_count_each_person_once_where_they_live(cast: Cast, group_by: str) -> None:
    """``reliefPeople`` counts a person in the one region they live in, whatever places tie them
    elsewhere: 庐阳 holds 1 低保 (甲; counting the six recognised there who live in 蜀山 would
    publish 7), 金安 (insured places only) has no cell at all; every true count of 1..4 is
    suppressed, every published count is true; the same figures for the big-data bureau and
    for medical insurance, whose own list would include the people insured in its region."""
    digits = {"COUNTY": 6, "CITY": 4, "PROVINCE": 2}[group_by]
    truth = residents(cast.world(), digits)
    big_data = cast.harness.token("big_data", "province", ANHUI)
    cells = await relief_cells(cast, big_data, group_by)
    assert {region for region, _ in cells} == {
        region for region, _ in truth if region.startswith(ANHUI)
    }
    for key, (count, hidden) in cells.items():
        true = truth.get(key, 0)
        assert hidden == (count is None), key
        assert hidden or count == true, (key, count, true)
        assert not 0 < true < MIN or hidden, key
    if group_by == "COUNTY":
        assert cells[(SHUSHAN, None)] == (8, False)  # 乙 ×6, 己, 庚
        # 7 低保 (乙 ×6, 己) go with 庚's lone 脱贫人口 (1): secondary suppression still applies
        assert cells[(SHUSHAN, "MINIMUM_LIVING")] == (None, True)
        assert cells[(SHUSHAN, "LIFTED_FROM_POVERTY")] == (None, True)
        assert cells[(LUYANG, "MINIMUM_LIVING")] == (None, True)  # 甲 alone (not 7): suppressed
        assert not any(region == JIN_AN for region, _ in cells)
        mib = cast.harness.token(MIB, "county", YAOHAI)
        assert await relief_cells(cast, mib, group_by) == {
            key: value for key, value in cells.items() if key[0] == YAOHAI
        }
    elif group_by == "CITY":
        assert cells[(HEFEI, None)] == (10, False)  # 甲 乙×6 丙 己 庚, each once
        assert cells[(HEFEI, "MINIMUM_LIVING")] == (8, False)
    else:
        assert cells[(ANHUI, None)] == (10, False)  # 丁 lives in Shandong: not Anhui's
        shandong = cast.harness.token("big_data", "province", SHANDONG)
        assert (await relief_cells(cast, shandong, group_by))[(SHANDONG, None)] == (None, True)


async def test_statistics_coverage_by_residence_with_suppression(cast: Cast) -> None:
    """The statistics' coverage counts residents (蜀山: 乙 ×6, 己, 庚 = 8; 7 enrolled, so the
    1 not enrolled is suppressed and the enrolled 7 with it); 金安 has no row."""
    big_data = cast.harness.token("big_data", "province", ANHUI)
    body = await cast.harness.query(big_data, STAT_COVERAGE, {"prefix": HEFEI, "year": YEAR})
    assert "errors" not in body, body
    regions = {r["regionCode"]: r for r in body["data"]["statistics"]["coverage"]["regions"]}
    assert set(regions) == {YAOHAI, LUYANG, SHUSHAN}
    shushan = regions[SHUSHAN]
    assert (shushan["population"], shushan["populationSuppressed"]) == (8, False)
    assert (shushan["notEnrolled"], shushan["notEnrolledSuppressed"]) == (None, True)
    assert (shushan["enrolled"], shushan["enrolledSuppressed"]) == (None, True)
    for code in (YAOHAI, LUYANG):  # 1 person each: all suppressed
        assert regions[code]["population"] is None
        assert regions[code]["populationSuppressed"] is True
