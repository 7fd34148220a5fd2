"""The synthetic population: real places, valid IDs, believable households, money that adds up."""

from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from gateway.domain import regions
from gateway.domain.id_numbers import birth_date_of, gender_of, make_id_number, validate_id_number
from gateway.domain.records import HouseholdBundle, PersonRecord, ReliefStatusRecord
from gateway.domain.synthetic import generate_population

TODAY = date(2026, 3, 15)
YEARS = (2025, 2026)
PERSONS = 5_000

# DOMAIN.md's default ranking, highest first (待遇从优、就高不就低, 001 §2, 002 §4, 004 §3).
RANKING = [
    "EXTREME_POVERTY",
    "MINIMUM_LIVING",
    "RETURNED_TO_POVERTY",
    "MONITORED_UNSTABLE",
    "MONITORED_MARGINAL",
    "MONITORED_SUDDEN_HARDSHIP",
    "MINIMUM_LIVING_EDGE",
    "RIGID_EXPENDITURE",
    "SERIOUS_ILLNESS",
    "LIFTED_FROM_POVERTY",
]
SOURCE_DEPARTMENT = {
    **dict.fromkeys(
        [
            "EXTREME_POVERTY",
            "MINIMUM_LIVING",
            "MINIMUM_LIVING_EDGE",
            "RIGID_EXPENDITURE",
            "SERIOUS_ILLNESS",
            "ORPHAN",
            "UNSUPPORTED_CHILD",
        ],
        "civil_affairs",
    ),
    **dict.fromkeys(
        [
            "RETURNED_TO_POVERTY",
            "MONITORED_UNSTABLE",
            "MONITORED_MARGINAL",
            "MONITORED_SUDDEN_HARDSHIP",
            "LIFTED_FROM_POVERTY",
        ],
        "rural_revitalization",
    ),
    "SEVERE_DISABILITY": "disabled_federation",
}
StatusesByPerson = dict[uuid.UUID, list[ReliefStatusRecord]]
MOBILE = re.compile(r"\A1[3-9][0-9]{9}\Z")


@pytest.fixture(scope="module")
def population() -> list[HouseholdBundle]:
    return list(generate_population(PERSONS, seed=20260315, today=TODAY))


@pytest.fixture(scope="module")
def people(population: list[HouseholdBundle]) -> list[PersonRecord]:
    return [person for bundle in population for person in bundle.members]


@pytest.fixture(scope="module")
def statuses_by_person(population: list[HouseholdBundle]) -> StatusesByPerson:
    found: StatusesByPerson = defaultdict(list)
    for bundle in population:
        for status in bundle.relief_statuses:
            found[status.person_id].append(status)
    return found


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def held_in(statuses: list[ReliefStatusRecord], year: int) -> list[str]:
    start, end = date(year, 1, 1), min(date(year, 12, 31), TODAY)
    return [
        status.category
        for status in statuses
        if status.valid_from <= end and (status.valid_to is None or status.valid_to >= start)
    ]


# -- regions.json ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "code"), [("shandong", "37"), ("shanxi", "14"), ("anhui", "34")])
def test_regions_cover_each_province_with_cities_and_counties(key: str, code: str) -> None:
    assert any(p.key == key and p.code == code for p in regions.provinces())
    counties = [c for c in regions.all_counties() if c.province_code == code]
    assert len({c.city_code for c in counties}) >= 3
    assert len(counties) >= 20
    assert all(c.code.startswith(c.city_code) and c.city_code.startswith(code) for c in counties)
    assert regions.is_known_province(code)


def test_region_names_agree_with_stdnum_for_current_codes() -> None:
    """Every shipped county is a current GB/T 2260 code: stdnum's table, asked for someone born
    in 2025, knows it under the same name."""
    for county in regions.all_counties():
        number = make_id_number(county.code, date(2025, 1, 1), 1)
        place = ric.get_birth_place(number)
        assert (place["province"], place["county"]) == (county.province_name, county.name)
        assert len(county.code) == 6


def test_region_lookup_helpers() -> None:
    found = regions.county("370112")
    assert found is not None
    assert (found.name, found.city_name, found.province_name) == ("历城区", "济南市", "山东省")
    assert regions.county("379999") is None
    assert not regions.is_known_province("11")
    assert len({c.code for c in regions.all_counties()}) == len(regions.all_counties())


# -- the generator's contract ----------------------------------------------------------------


def test_same_arguments_give_identical_output() -> None:
    first = list(generate_population(300, seed=1, today=TODAY))
    second = list(generate_population(300, seed=1, today=TODAY))
    assert first == second


def test_different_seed_gives_different_output() -> None:
    first = list(generate_population(300, seed=1, today=TODAY))
    other = list(generate_population(300, seed=2, today=TODAY))
    assert first != other
    assert {p.id_number for b in first for p in b.members}.isdisjoint(
        p.id_number for b in other for p in b.members
    )


def test_province_order_does_not_matter() -> None:
    one = list(generate_population(200, seed=3, today=TODAY, provinces=["anhui", "shanxi"]))
    two = list(generate_population(200, seed=3, today=TODAY, provinces=("shanxi", "anhui")))
    assert one == two
    assert {p.region_code[:2] for b in one for p in b.members} <= {"14", "34"}


@pytest.mark.parametrize("key", ["shandong", "shanxi", "anhui"])
def test_provinces_restrict_where_people_live(key: str) -> None:
    code = next(p.code for p in regions.provinces() if p.key == key)
    population = list(generate_population(300, seed=4, today=TODAY, provinces=[key]))
    assert {p.id_number[:2] for b in population for p in b.members} == {code}


@pytest.mark.parametrize("persons", [0, 1, 2, 5, 7, 100, 1_001])
def test_exactly_the_requested_number_of_people(persons: int) -> None:
    population = list(generate_population(persons, seed=persons, today=TODAY))
    assert sum(len(bundle.members) for bundle in population) == persons
    assert all(bundle.members for bundle in population)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"persons": -1}, "negative", id="negative-persons"),
        pytest.param({"persons": 5, "provinces": ["beijing"]}, "provinces", id="unknown-key"),
        pytest.param({"persons": 5, "provinces": []}, "provinces", id="no-province"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(generate_population(seed=1, today=TODAY, **kwargs))  # type: ignore[arg-type]


# -- people and households -------------------------------------------------------------------


def test_id_numbers_are_valid_unique_and_match_the_person(people: list[PersonRecord]) -> None:
    assert len({p.id_number for p in people}) == len(people)
    for person in people:
        assert validate_id_number(person.id_number, today=TODAY) == person.id_number
        assert gender_of(person.id_number) == person.gender
        assert birth_date_of(person.id_number) == person.birth_date


@given(seed=st.integers(min_value=0, max_value=2**64), persons=st.integers(1, 30))
@settings(max_examples=25, deadline=None)
def test_every_generated_id_validates_for_any_seed(seed: int, persons: int) -> None:
    for bundle in generate_population(persons, seed=seed, today=TODAY):
        for person in bundle.members:
            assert validate_id_number(person.id_number, today=TODAY) == person.id_number
            assert gender_of(person.id_number) == person.gender
            assert birth_date_of(person.id_number) == person.birth_date
            assert date(1900, 1, 1) <= person.birth_date <= TODAY


def test_region_codes_are_villages_in_real_counties(population: list[HouseholdBundle]) -> None:
    for bundle in population:
        code = bundle.household.region_code
        assert re.fullmatch(r"[0-9]{12}", code)
        county = regions.county(code[:6])
        assert county is not None
        assert 1 <= int(code[6:9]) <= 20
        assert 1 <= int(code[9:12]) <= 30
        for person in bundle.members:
            # Members live in the household's village; the ID carries its county.
            assert person.region_code == code
            assert person.id_number[:6] == code[:6]
            assert person.household_id == bundle.household.household_id


def test_people_spread_unevenly_over_all_counties(people: list[PersonRecord]) -> None:
    per_county = Counter(p.region_code[:6] for p in people)
    assert set(per_county) == {c.code for c in regions.all_counties()}
    assert max(per_county.values()) > 2 * min(per_county.values())


def test_household_sizes_and_relations(population: list[HouseholdBundle]) -> None:
    sizes = Counter(len(bundle.members) for bundle in population)
    assert set(sizes) == {1, 2, 3, 4, 5, 6}
    for bundle in population:
        head, *others = bundle.members
        assert head.relation == "户主"
        head_age = age_on(head.birth_date, TODAY)
        assert 25 <= head_age <= 85
        for member in others:
            age = age_on(member.birth_date, TODAY)
            if member.relation == "配偶":
                assert abs(age - head_age) <= 10
                assert member.gender != head.gender
            elif member.relation == "子女":
                assert head_age - age >= 18
            elif member.relation == "孙子女":
                assert head_age - age >= 40
            elif member.relation == "父母":
                assert age - head_age >= 18
            else:
                assert member.relation == "其他"


def test_identifiers_are_unique_version_4_uuids(population: list[HouseholdBundle]) -> None:
    ids = [b.household.household_id for b in population]
    ids += [p.person_id for b in population for p in b.members]
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}


def test_names_phones_and_addresses(people: list[PersonRecord]) -> None:
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", p.name) for p in people)
    phones = [p.phone for p in people if p.phone is not None]
    assert all(MOBILE.match(phone) for phone in phones)
    assert len(phones) > 0.7 * len(people)
    with_address = [p for p in people if p.address is not None]
    assert len(with_address) > 0.85 * len(people)
    for person in with_address:
        county = regions.county(person.region_code[:6])
        assert county is not None
        assert person.address is not None
        assert person.address.startswith(county.province_name + county.city_name + county.name)


# -- relief identities -----------------------------------------------------------------------


def test_relief_mix(people: list[PersonRecord], statuses_by_person: StatusesByPerson) -> None:
    holders = len(statuses_by_person)
    assert 0.25 <= holders / len(people) <= 0.35
    two_or_more = sum(1 for held in statuses_by_person.values() if len(held) >= 2)
    assert 0.15 <= two_or_more / holders <= 0.35
    by_category = Counter(s.category for held in statuses_by_person.values() for s in held)
    top_two = {category for category, _ in by_category.most_common(2)}
    assert top_two == {"LIFTED_FROM_POVERTY", "MINIMUM_LIVING"}
    assert set(by_category) == set(SOURCE_DEPARTMENT)
    everything = [s for held in statuses_by_person.values() for s in held]
    exited = sum(1 for s in everything if s.valid_to is not None)
    assert 0.2 <= exited / len(everything) <= 0.4


def test_households_usually_share_their_identity(population: list[HouseholdBundle]) -> None:
    shared = partial = 0
    for bundle in population:
        if len(bundle.members) < 3:
            continue
        holders = Counter(s.category for s in bundle.relief_statuses)
        for category in ("MINIMUM_LIVING", "LIFTED_FROM_POVERTY"):
            if holders[category]:
                if holders[category] == len(bundle.members):
                    shared += 1
                else:
                    partial += 1
    assert shared > 2 * partial


def test_relief_status_dates_are_ordered_and_not_after_today(
    people: list[PersonRecord], statuses_by_person: StatusesByPerson
) -> None:
    born = {p.person_id: p.birth_date for p in people}
    for person_id, held in statuses_by_person.items():
        assert len({s.category for s in held}) == len(held)
        for status in held:
            assert status.source_department == SOURCE_DEPARTMENT[status.category]
            assert born[person_id] <= status.recognized_on <= status.valid_from <= TODAY
            assert status.recognized_on >= TODAY - timedelta(days=6 * 366)
            assert status.valid_from - status.recognized_on <= timedelta(days=10)
            if status.valid_to is not None:
                assert status.valid_from <= status.valid_to < TODAY
            if status.category in ("ORPHAN", "UNSUPPORTED_CHILD"):
                assert age_on(born[person_id], status.recognized_on) < 18


# -- enrollment ------------------------------------------------------------------------------


def test_enrollments(
    population: list[HouseholdBundle],
    people: list[PersonRecord],
    statuses_by_person: StatusesByPerson,
) -> None:
    enrollments = [e for b in population for e in b.enrollments]
    assert len({(e.person_id, e.year) for e in enrollments}) == len(enrollments)
    assert {e.year for e in enrollments} == set(YEARS)
    types = Counter(e.insurance_type for e in enrollments)
    assert types["RESIDENT"] > 0.75 * len(enrollments)
    assert types["EMPLOYEE"] > 0
    status = Counter(e.status for e in enrollments)
    assert status["ACTIVE"] > 0.9 * len(enrollments)
    assert status["SUSPENDED"] > 0
    assert status["TERMINATED"] > 0

    home = {p.person_id: p.region_code for p in people}
    elsewhere = [e for e in enrollments if e.region_code != home[e.person_id]]
    assert 0 < len(elsewhere) < 0.1 * len(enrollments)
    for enrollment in elsewhere:
        assert re.fullmatch(r"[0-9]{12}", enrollment.region_code)
        assert regions.county(enrollment.region_code[:6]) is not None
        assert enrollment.region_code[:6] != home[enrollment.person_id][:6]

    # 002 §1: a few relief holders are not enrolled at all in a year (suspected non-enrolled).
    enrolled = {(e.person_id, e.year) for e in enrollments}
    born = {p.person_id: p.birth_date for p in people}
    for year in YEARS:
        holders = [pid for pid in statuses_by_person if born[pid].year <= year]
        missing = sum(1 for pid in holders if (pid, year) not in enrolled)
        assert 0.002 <= missing / len(holders) <= 0.04
        assert not any(e.year < born[e.person_id].year for e in enrollments)


def test_subsidy_follows_the_highest_identity_held_that_year(
    population: list[HouseholdBundle],
    statuses_by_person: StatusesByPerson,
) -> None:
    rank = {category: index for index, category in enumerate(RANKING)}
    for enrollment in (e for b in population for e in b.enrollments):
        held = held_in(statuses_by_person.get(enrollment.person_id, []), enrollment.year)
        if not held or enrollment.insurance_type == "EMPLOYEE":
            assert enrollment.subsidy_category is None
            assert enrollment.subsidy_amount is None
            continue
        ranked = [c for c in held if c in rank]
        if ranked:
            assert enrollment.subsidy_category == min(ranked, key=rank.__getitem__)
        else:
            assert enrollment.subsidy_category in held
        amount = enrollment.subsidy_amount
        assert amount is not None
        assert amount.as_tuple().exponent == -2
        assert Decimal("0") < amount <= Decimal("400.00")
        if enrollment.subsidy_category == "EXTREME_POVERTY":
            assert Decimal("380.00") <= amount <= Decimal("400.00")
        if enrollment.subsidy_category == "MONITORED_SUDDEN_HARDSHIP":
            assert amount == Decimal("280.00")


# -- cost burdens ----------------------------------------------------------------------------


def test_cost_burden_money_adds_up(population: list[HouseholdBundle]) -> None:
    for burden in (c for b in population for c in b.cost_burdens):
        parts = (
            burden.basic_insurance_paid,
            burden.critical_illness_paid,
            burden.medical_assistance_paid,
            burden.personal_burden,
        )
        assert sum(parts, Decimal("0")) == burden.total_cost
        for amount in (burden.total_cost, *parts):
            assert amount.as_tuple().exponent == -2
            assert amount >= 0
        assert 0 <= burden.inpatient_count <= 8
        assert burden.year in YEARS


def test_cost_burden_shape(
    population: list[HouseholdBundle],
    statuses_by_person: StatusesByPerson,
) -> None:
    burdens = [c for b in population for c in b.cost_burdens]
    assert len({(c.person_id, c.year) for c in burdens}) == len(burdens)
    for year in YEARS:
        share = sum(1 for c in burdens if c.year == year) / PERSONS
        assert 0.33 <= share <= 0.47
    totals = sorted(c.total_cost for c in burdens)
    assert Decimal("300") <= totals[len(totals) // 2] <= Decimal("5000")
    over_20k = sum(1 for t in totals if t > 20_000) / len(totals)
    assert 0.01 <= over_20k <= 0.05
    assert totals[-1] > 50_000
    # More money, more hospital stays.
    ordered = sorted(burdens, key=lambda c: c.total_cost)
    low, high = ordered[: len(ordered) // 2], ordered[-len(ordered) // 10 :]
    assert sum(c.inpatient_count for c in high) / len(high) > 2 * (
        sum(c.inpatient_count for c in low) / len(low)
    )
    # Medical assistance only for people holding a relief identity that year.
    for burden in burdens:
        if burden.medical_assistance_paid > 0:
            assert held_in(statuses_by_person.get(burden.person_id, []), burden.year)


def test_a_few_catastrophic_costs_in_a_larger_population() -> None:
    """The long tail the high-cost warnings look for (001 §4, 002 §3): a few burdens over
    100,000 yuan, but only a few."""
    burdens = [c for b in generate_population(20_000, seed=99, today=TODAY) for c in b.cost_burdens]
    over_100k = sum(1 for c in burdens if c.total_cost > 100_000)
    assert 3 <= over_100k <= 0.005 * len(burdens)
