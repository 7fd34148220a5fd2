"""Deterministic synthetic population: households with relief identities, enrollment and costs.

Demos, benchmarks and tests need data that looks like what departments share (001 §1, 003 §3)
without a single real person in it. Everything here is drawn from one ``random.Random(seed)``
and one seeded ``Faker('zh_CN')``; the same ``(persons, seed, today, provinces)`` always gives
the same records, so a benchmark or a failing test can be replayed.

What the data is shaped after:

* **People and places.** Valid, unique 18-digit ID numbers whose prefix is the person's real
  county (``data/regions.json``), birth date and gender matching the ID; 12-digit statistical
  region codes (county + synthetic township 001-020 + village 001-030), since records should be
  precise to township and village (003 §3(2)); households of 1-6 people in one village with
  ages consistent with their relation to the head.
* **Relief identities** (救助身份). About 30% of people hold one, a quarter of holders hold two
  (multiple identities are normal, benefits follow the highest: 001 §2, 002 §4, 004 §3).
  Household-level identities (低保, 脱贫人口, monitored households...) usually cover the whole
  household; 特困 goes to older people living alone, orphans and unsupported children to
  children, severe disability and serious illness to individuals. About 30% have exited.
* **Enrollment** for this year and last: mostly resident insurance, a few suspended or
  terminated, 1-2% of relief holders not enrolled at all in a year (the "suspected
  non-enrolled" list of 002 §1), and a few insured in another county than their identity's
  (004 §3: the insured place and the identity place can differ). The subsidised-enrollment
  category is the highest identity held that year, with a contribution subsidy (突发严重困难人口:
  280 yuan, 002 §1).
* **Cost burdens** for about 40% of people a year with a long tail, so the high-cost warnings of
  001 §4, 002 §3 and 004 §2 have something to find.

Speed matters (a province has millions of people): Faker is only asked once for pools of names,
and per-person work is plain integer arithmetic with the seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate

from faker import Faker
from stdnum.cn import ric

from gateway.domain import regions
from gateway.domain.records import (
    CostBurdenRecord,
    EnrollmentRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
    ReliefStatusRecord,
)

__all__ = ["CATEGORY_RANKING", "PROVINCE_KEYS", "generate_population", "household_number"]

PROVINCE_KEYS = ("shandong", "shanxi", "anhui")

# Highest first (DOMAIN.md default ranking; 待遇从优、就高不就低). The generator ranks the
# categories the default leaves out below it: the real ranking is configuration.
CATEGORY_RANKING = (
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
    "ORPHAN",
    "UNSUPPORTED_CHILD",
    "SEVERE_DISABILITY",
)
_RANK = {category: rank for rank, category in enumerate(CATEGORY_RANKING)}

_SOURCE_DEPARTMENT = {
    "EXTREME_POVERTY": "civil_affairs",
    "MINIMUM_LIVING": "civil_affairs",
    "MINIMUM_LIVING_EDGE": "civil_affairs",
    "RIGID_EXPENDITURE": "civil_affairs",
    "SERIOUS_ILLNESS": "civil_affairs",
    "ORPHAN": "civil_affairs",
    "UNSUPPORTED_CHILD": "civil_affairs",
    "RETURNED_TO_POVERTY": "rural_revitalization",
    "MONITORED_UNSTABLE": "rural_revitalization",
    "MONITORED_MARGINAL": "rural_revitalization",
    "MONITORED_SUDDEN_HARDSHIP": "rural_revitalization",
    "LIFTED_FROM_POVERTY": "rural_revitalization",
    "SEVERE_DISABILITY": "disabled_federation",
}

# Identities recognised for a household (一户一条救助链, 000 §1), with relative frequency:
# 脱贫人口 and 低保 dominate, as in the departments' own statistics.
_HOUSEHOLD_CATEGORIES = (
    ("LIFTED_FROM_POVERTY", 35),
    ("MINIMUM_LIVING", 30),
    ("MINIMUM_LIVING_EDGE", 8),
    ("MONITORED_UNSTABLE", 6),
    ("MONITORED_MARGINAL", 7),
    ("MONITORED_SUDDEN_HARDSHIP", 4),
    ("RETURNED_TO_POVERTY", 3),
    ("RIGID_EXPENDITURE", 7),
)
# The second household identity that typically accompanies the first (脱贫 + 低保 and so on).
_SECOND_CATEGORY = {
    "LIFTED_FROM_POVERTY": ("MINIMUM_LIVING", "MINIMUM_LIVING", "MONITORED_UNSTABLE"),
    "MINIMUM_LIVING": ("LIFTED_FROM_POVERTY", "LIFTED_FROM_POVERTY", "RETURNED_TO_POVERTY"),
    "MINIMUM_LIVING_EDGE": ("MONITORED_MARGINAL", "LIFTED_FROM_POVERTY"),
    "MONITORED_UNSTABLE": ("LIFTED_FROM_POVERTY", "MINIMUM_LIVING_EDGE"),
    "MONITORED_MARGINAL": ("MINIMUM_LIVING_EDGE",),
    "MONITORED_SUDDEN_HARDSHIP": ("MINIMUM_LIVING_EDGE", "LIFTED_FROM_POVERTY"),
    "RETURNED_TO_POVERTY": ("MINIMUM_LIVING",),
    "RIGID_EXPENDITURE": ("MONITORED_SUDDEN_HARDSHIP", "MINIMUM_LIVING_EDGE"),
    "EXTREME_POVERTY": ("LIFTED_FROM_POVERTY",),
}

# Share of the full resident contribution paid as subsidy (资助参保), by subsidy category;
# 特困, orphans and unsupported children are paid in full.
_SUBSIDY_SHARE = {
    "EXTREME_POVERTY": 1.0,
    "ORPHAN": 1.0,
    "UNSUPPORTED_CHILD": 1.0,
    "MINIMUM_LIVING": 0.8,
    "RETURNED_TO_POVERTY": 0.7,
    "MONITORED_UNSTABLE": 0.5,
    "MONITORED_MARGINAL": 0.5,
    "MINIMUM_LIVING_EDGE": 0.5,
    "SEVERE_DISABILITY": 0.5,
    "RIGID_EXPENDITURE": 0.3,
    "SERIOUS_ILLNESS": 0.3,
    "LIFTED_FROM_POVERTY": 0.25,
}
# 002 §1: 突发严重困难人口 get a fixed 280 yuan towards the contribution.
_SUDDEN_HARDSHIP_SUBSIDY_CENTS = 28_000

# Medical assistance (医疗救助) share of what remains after basic and critical-illness insurance.
_ASSISTANCE_SHARE = {
    "EXTREME_POVERTY": 0.9,
    "ORPHAN": 0.8,
    "UNSUPPORTED_CHILD": 0.8,
    "MINIMUM_LIVING": 0.7,
    "RETURNED_TO_POVERTY": 0.65,
    "MONITORED_UNSTABLE": 0.6,
    "MONITORED_MARGINAL": 0.6,
    "MONITORED_SUDDEN_HARDSHIP": 0.6,
    "MINIMUM_LIVING_EDGE": 0.6,
    "SEVERE_DISABILITY": 0.5,
    "RIGID_EXPENDITURE": 0.5,
    "SERIOUS_ILLNESS": 0.6,
    "LIFTED_FROM_POVERTY": 0.3,
}

# Who else lives with a head of a given age (below the limit): cumulative chances per relation.
# Young heads live with children and parents, older ones with children and grandchildren.
_RELATIONS_BY_HEAD_AGE: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = (
    (40, (("子女", 0.75), ("父母", 0.97), ("其他", 1.01))),
    (45, (("子女", 0.7), ("父母", 0.95), ("其他", 1.01))),
    (62, (("子女", 0.6), ("孙子女", 0.75), ("父母", 0.95), ("其他", 1.01))),
    (200, (("子女", 0.5), ("孙子女", 0.95), ("其他", 1.01))),
)

_HOUSEHOLD_SIZES = (1, 2, 3, 4, 5, 6)
_HOUSEHOLD_SIZE_CUM = tuple(accumulate((16, 26, 24, 18, 10, 6)))

_MOBILE_PREFIXES = (
    *("130", "131", "132", "133", "135", "136", "137", "138", "139"),
    *("150", "151", "152", "153", "155", "156", "157", "158", "159"),
    *("166", "173", "175", "176", "177", "178"),
    *("180", "181", "182", "183", "185", "186", "187", "188", "189"),
    *("191", "195", "198", "199"),
)
_PLACE_FIRST = "东西南北大小新古石柳杨桃白青黄龙凤马牛高"
_PLACE_SECOND = "河桥山庄集店沟湾岭坡营寨屯园口泉林坪堡塘"
_VILLAGE_SUFFIXES = ("家庄", "庄", "集", "营", "屯", "家洼", "家沟", "楼", "寨", "店")

_YEARS_OF_RECOGNITION = 6  # identities recognised within the last ~6 years
_EXIT_SHARE = 0.34
_NAME_POOL_SIZE = 2_000


@dataclass(slots=True)
class _Place:
    county: regions.County
    township_count: int
    weight: float


@dataclass(slots=True)
class _Status:
    category: str
    recognized_on: date
    valid_from: date
    valid_to: date | None


@dataclass(slots=True)
class _Member:
    relation: str
    age: int
    male: bool


def generate_population(
    persons: int,
    *,
    seed: int,
    today: date,
    provinces: Sequence[str] | None = None,
    focus_county: str | None = None,
    focus_share: float = 0.25,
) -> Iterator[HouseholdBundle]:
    """Yield households until exactly ``persons`` people exist (the last one is trimmed).

    Args:
        persons: how many people in total.
        seed: the only source of randomness; same arguments, same records.
        today: the date the data is "as of": no birth, recognition or exit after it.
        provinces: keys among ``shandong``, ``shanxi``, ``anhui`` (default all three); people
            are spread unevenly over all their counties in ``data/regions.json``.
        focus_county: a county of those provinces that gets about ``focus_share`` of the
            households on top of its usual share (the demo's county: a clerk's workbench with
            a county's worth of people, while one generator keeps every ID number unique).
        focus_share: the share of households drawn for ``focus_county`` (0 to 1).

    Raises:
        ValueError: a negative ``persons``, an unknown province key, or a focus county outside
            the provinces.
    """
    if persons < 0:
        raise ValueError("persons must not be negative")
    if not 0.0 <= focus_share <= 1.0:
        raise ValueError("focus_share must lie between 0 and 1")
    generator = _Generator(seed=seed, today=today, provinces=provinces)
    if focus_county is not None:
        generator.focus(focus_county, focus_share)
    return generator.households(persons)


class _Generator:
    def __init__(self, *, seed: int, today: date, provinces: Sequence[str] | None) -> None:
        wanted = set(PROVINCE_KEYS if provinces is None else provinces)
        unknown = wanted - set(PROVINCE_KEYS)
        if unknown or not wanted:
            raise ValueError(f"provinces must be among {PROVINCE_KEYS}, got {provinces!r}")
        codes = {item.code for item in regions.provinces() if item.key in wanted}

        self.rng = random.Random(seed)
        self.today = today
        self.today_ordinal = today.toordinal()
        rng = self.rng

        # Faker is slow per call; draw pools once (keeping its surname frequencies) and pick
        # from them with the seeded random.
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        self.surnames = [fake.last_name() for _ in range(_NAME_POOL_SIZE)]
        self.male_given = [fake.first_name_male() for _ in range(_NAME_POOL_SIZE // 2)]
        self.female_given = [fake.first_name_female() for _ in range(_NAME_POOL_SIZE // 2)]

        # Counties in file order (not set order) so the draw is reproducible; uneven sizes.
        self.places = [
            _Place(county, rng.randint(6, 20), rng.lognormvariate(0.0, 0.7))
            for county in regions.all_counties()
            if county.province_code in codes
        ]
        self.place_cum = list(accumulate(place.weight for place in self.places))
        # The first households visit every county once (in seeded order), so even a small
        # population touches every county; after that, counties fill by their weights.
        self.first_places = self.places[:]
        rng.shuffle(self.first_places)
        self.township_names: dict[tuple[str, int], str] = {}
        self.village_names: dict[tuple[str, int, int], str] = {}
        self.used_bodies: set[str] = set()
        self.years = (today.year - 1, today.year)
        self.focus_place: _Place | None = None
        self.focus_share = 0.0

    def focus(self, county_code: str, share: float) -> None:
        for place in self.places:
            if place.county.code == county_code:
                self.focus_place, self.focus_share = place, share
                return
        raise ValueError(f"focus county {county_code!r} is not among the generated provinces")

    # -- households -------------------------------------------------------------------------

    def households(self, persons: int) -> Iterator[HouseholdBundle]:
        remaining = persons
        while remaining > 0:
            size = _HOUSEHOLD_SIZES[bisect(_HOUSEHOLD_SIZE_CUM, self.rng.random() * 100)]
            size = min(size, remaining)
            remaining -= size
            yield self._household(size)

    def _household(self, size: int) -> HouseholdBundle:
        rng = self.rng
        if self.focus_place is not None and rng.random() < self.focus_share:
            place = self.focus_place
        elif self.first_places:
            place = self.first_places.pop()
        else:
            place = self.places[bisect(self.place_cum, rng.random() * self.place_cum[-1])]
        county = place.county
        township = rng.randint(1, place.township_count)
        village = rng.randint(1, 30)
        region_code = f"{county.code}{township:03d}{village:03d}"
        household_id = self._uuid()
        township_name = self._township_name(county, township)
        village_name = self._village_name(county, township, village)
        address = (
            f"{county.province_name}{county.city_name}{county.name}"
            f"{township_name}{village_name}{rng.randint(1, 200)}号"
        )
        bundle = HouseholdBundle(household=HouseholdRecord(household_id, region_code))

        members = self._composition(size)
        surname = rng.choice(self.surnames)
        other_surname = rng.choice(self.surnames)
        people: list[PersonRecord] = []
        for member in members:
            # Children and grandchildren usually carry the family surname; spouses keep theirs.
            if member.relation == "配偶":
                family_name = other_surname
            elif member.relation in ("户主", "子女", "孙子女") and rng.random() < 0.92:
                family_name = surname
            else:
                family_name = rng.choice(self.surnames)
            given = rng.choice(self.male_given if member.male else self.female_given)
            birth = self._birth_date(member.age)
            has_phone = member.age >= 16 and rng.random() < 0.88
            people.append(
                PersonRecord(
                    person_id=self._uuid(),
                    id_number=self._id_number(county.code, birth, member.male),
                    name=family_name + given,
                    gender="MALE" if member.male else "FEMALE",
                    birth_date=birth,
                    region_code=region_code,
                    phone=self._phone() if has_phone else None,
                    address=address if rng.random() < 0.93 else None,
                    household_id=household_id,
                    relation=member.relation,
                )
            )
        bundle.members = people

        statuses = self._relief_statuses(people, members)
        for person, held in zip(people, statuses, strict=True):
            for status in held:
                bundle.relief_statuses.append(
                    ReliefStatusRecord(
                        person_id=person.person_id,
                        category=status.category,
                        source_department=_SOURCE_DEPARTMENT[status.category],
                        recognized_on=status.recognized_on,
                        valid_from=status.valid_from,
                        valid_to=status.valid_to,
                    )
                )
            self._enrollments_and_costs(bundle, person, held)
        return bundle

    def _composition(self, size: int) -> list[_Member]:
        """Relations and ages that fit together: spouses of similar age, children 20-40 years
        younger than the head, grandchildren 45+ younger, parents 22-35 years older."""
        rng = self.rng
        if size == 1:
            head_age = round(rng.triangular(25, 85, 72))
        else:
            head_age = round(rng.triangular(25, 85, 50))
        head_male = rng.random() < 0.72
        members = [_Member("户主", head_age, head_male)]
        if size >= 2 and rng.random() < 0.88:
            gap = rng.randint(-3, 6)
            spouse_age = head_age - gap if head_male else head_age + gap
            members.append(_Member("配偶", max(20, min(95, spouse_age)), not head_male))
        relations = next(table for limit, table in _RELATIONS_BY_HEAD_AGE if head_age < limit)
        while len(members) < size:
            roll = rng.random()
            relation = next(name for name, cumulative in relations if roll < cumulative)
            if relation == "子女":
                age = head_age - rng.randint(20, min(40, head_age))
            elif relation == "孙子女":
                age = max(0, head_age - rng.randint(45, max(45, min(70, head_age))))
            elif relation == "父母":
                age = min(98, head_age + rng.randint(22, 35))
            else:
                age = max(0, head_age + rng.randint(-10, 10))
            members.append(_Member(relation, age, rng.random() < 0.5))
        return members

    # -- identity pieces --------------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _birth_date(self, age: int) -> date:
        """A birth date at which the person is exactly ``age`` today (never before 1900)."""
        today = self.today
        latest = _same_day(today, today.year - age)
        earliest = _same_day(today, today.year - age - 1).toordinal() + 1
        earliest = max(earliest, _EARLIEST_BIRTH_ORDINAL)
        latest_ordinal = max(latest.toordinal(), earliest)
        return date.fromordinal(self.rng.randint(earliest, latest_ordinal))

    def _id_number(self, region6: str, birth: date, male: bool) -> str:
        """GB 11643: region + YYYYMMDD + order code (odd for men) + MOD 11-2 check digit.

        Order codes are redrawn until the number is unused, so every ID is unique."""
        rng = self.rng
        prefix = f"{region6}{birth.year:04d}{birth.month:02d}{birth.day:02d}"
        parity = 1 if male else 0
        while True:
            sequence = rng.randrange(1 - parity, 500) * 2 + parity
            body = f"{prefix}{sequence:03d}"
            if body not in self.used_bodies:
                self.used_bodies.add(body)
                return body + ric.calc_check_digit(body + "0")

    def _phone(self) -> str:
        return f"{self.rng.choice(_MOBILE_PREFIXES)}{self.rng.randrange(100_000_000):08d}"

    def _township_name(self, county: regions.County, township: int) -> str:
        key = (county.code, township)
        name = self.township_names.get(key)
        if name is None:
            rng = self.rng
            stem = rng.choice(_PLACE_FIRST) + rng.choice(_PLACE_SECOND)
            urban = county.name.endswith("区") and rng.random() < 0.6
            name = stem + ("街道" if urban else ("镇" if rng.random() < 0.75 else "乡"))
            self.township_names[key] = name
        return name

    def _village_name(self, county: regions.County, township: int, village: int) -> str:
        key = (county.code, township, village)
        name = self.village_names.get(key)
        if name is None:
            rng = self.rng
            if self.township_names[(county.code, township)].endswith("街道"):
                name = rng.choice(_PLACE_FIRST) + rng.choice(_PLACE_SECOND) + "社区"
            else:
                name = rng.choice(self.surnames) + rng.choice(_VILLAGE_SUFFIXES) + "村"
            self.village_names[key] = name
        return name

    # -- relief identities ------------------------------------------------------------------

    def _relief_statuses(
        self, people: list[PersonRecord], members: list[_Member]
    ) -> list[list[_Status]]:
        rng = self.rng
        held: list[list[_Status]] = [[] for _ in people]
        household_categories: list[str] = []
        head = members[0]
        if len(people) == 1 and head.age >= 60 and rng.random() < 0.16:
            # 特困: older people without anyone obliged or able to support them.
            household_categories.append("EXTREME_POVERTY")
        elif rng.random() < 0.275:
            household_categories.append(_weighted(rng, _HOUSEHOLD_CATEGORIES))
        if household_categories and rng.random() < 0.27:
            household_categories.append(rng.choice(_SECOND_CATEGORY[household_categories[0]]))

        for category in household_categories:
            recognized, valid_from, valid_to = self._status_dates(None)
            for index, person in enumerate(people):
                if rng.random() < 0.04:
                    continue  # a member outside the recognised household (e.g. 分户, 外出)
                status = self._member_status(
                    category, person.birth_date, recognized, valid_from, valid_to
                )
                if status is not None:
                    held[index].append(status)

        for index, (person, member) in enumerate(zip(people, members, strict=True)):
            extras: list[str] = []
            roll = rng.random()
            if roll < 0.006:
                extras.append("SEVERE_DISABILITY")
            elif roll < 0.012:
                extras.append("SERIOUS_ILLNESS")
            if member.age < 18 and member.relation in ("孙子女", "其他") and rng.random() < 0.06:
                extras.append("ORPHAN" if rng.random() < 0.4 else "UNSUPPORTED_CHILD")
            for category in extras:
                if any(status.category == category for status in held[index]):
                    continue
                status = self._member_status(
                    category, person.birth_date, *self._status_dates(person.birth_date)
                )
                if status is not None:
                    held[index].append(status)
        return held

    def _status_dates(self, born: date | None) -> tuple[date, date, date | None]:
        """Recognition within the last ~6 years, valid from then or a few days after; about
        30% exited since (valid_to in the past, never before valid_from)."""
        rng = self.rng
        today_ordinal = self.today_ordinal
        earliest = today_ordinal - _YEARS_OF_RECOGNITION * 365
        if born is not None:
            earliest = max(earliest, born.toordinal())
        recognized = rng.randint(min(earliest, today_ordinal), today_ordinal)
        valid_from = recognized if rng.random() < 0.6 else recognized + rng.randint(1, 10)
        valid_from = min(valid_from, today_ordinal)
        valid_to = None
        if rng.random() < _EXIT_SHARE and today_ordinal - valid_from > 31:
            valid_to = date.fromordinal(rng.randint(valid_from + 30, today_ordinal - 1))
        return date.fromordinal(recognized), date.fromordinal(valid_from), valid_to

    def _member_status(
        self,
        category: str,
        born: date,
        recognized: date,
        valid_from: date,
        valid_to: date | None,
    ) -> _Status | None:
        """A household identity as it applies to one member: someone born after the household
        was recognised joins it after birth registration, or not at all if it already ended."""
        if born > recognized:
            joined = born + timedelta(days=self.rng.randint(10, 90))
            if joined > self.today or (valid_to is not None and joined > valid_to):
                return None
            recognized = valid_from = joined
        return _Status(category, recognized, valid_from, valid_to)

    # -- enrollment and costs ---------------------------------------------------------------

    def _enrollments_and_costs(
        self, bundle: HouseholdBundle, person: PersonRecord, held: list[_Status]
    ) -> None:
        rng = self.rng
        for year in self.years:
            if person.birth_date.year > year:
                continue
            year_start, year_end = date(year, 1, 1), min(date(year, 12, 31), self.today)
            categories = [
                status.category
                for status in held
                if status.valid_from <= year_end
                and (status.valid_to is None or status.valid_to >= year_start)
            ]
            top = min(categories, key=_RANK.__getitem__) if categories else None
            age = year - person.birth_date.year

            # 002 §1: about 1-2% of relief holders are found without any enrollment.
            missing = 0.015 if held else 0.04
            if rng.random() >= missing:
                bundle.enrollments.append(self._enrollment(person, year, age, top))

            cost_chance = 0.33 + (0.17 if age >= 60 else 0.0) + (0.08 if top else 0.0)
            if rng.random() < cost_chance:
                bundle.cost_burdens.append(self._cost_burden(person, year, age, top, categories))

    def _enrollment(
        self, person: PersonRecord, year: int, age: int, top: str | None
    ) -> EnrollmentRecord:
        rng = self.rng
        employee_share = 0.0 if not 18 <= age < 60 else (0.05 if top else 0.3)
        insurance_type = "EMPLOYEE" if rng.random() < employee_share else "RESIDENT"
        roll = rng.random()
        status = "ACTIVE" if roll < 0.94 else ("SUSPENDED" if roll < 0.97 else "TERMINATED")
        region_code = person.region_code
        if rng.random() < 0.04:
            # 004 §3: insured in another county than the one that recognised the identity.
            place = rng.choice(self.places)
            while place.county.code == person.region_code[:6] and len(self.places) > 1:
                place = rng.choice(self.places)
            region_code = (
                f"{place.county.code}{rng.randint(1, place.township_count):03d}"
                f"{rng.randint(1, 30):03d}"
            )
        subsidy_category = subsidy_amount = None
        # Contribution subsidies (资助参保) exist for resident insurance only; employers pay
        # the employee scheme.
        if top is not None and insurance_type == "RESIDENT":
            subsidy_category = top
            if top == "MONITORED_SUDDEN_HARDSHIP":
                cents = _SUDDEN_HARDSHIP_SUBSIDY_CENTS
            else:
                full_cents = 38_000 if year <= 2023 else 40_000
                cents = round(full_cents * _SUBSIDY_SHARE[top])
            subsidy_amount = _money(cents)
        return EnrollmentRecord(
            person_id=person.person_id,
            year=year,
            insurance_type=insurance_type,
            status=status,
            region_code=region_code,
            subsidy_category=subsidy_category,
            subsidy_amount=subsidy_amount,
        )

    def _cost_burden(
        self, person: PersonRecord, year: int, age: int, top: str | None, categories: list[str]
    ) -> CostBurdenRecord:
        """Lognormal total (median ~1,500 yuan, ~2-3% over 20,000, a few over 100,000), then
        basic insurance, critical-illness insurance above a deductible, and medical assistance
        for relief holders each take a share of what the previous one left, so the parts always
        add up to the total and the personal burden is never negative."""
        rng = self.rng
        mu = 7.3 + (0.35 if age >= 60 else 0.0) + (0.8 if "SERIOUS_ILLNESS" in categories else 0.0)
        total = max(500, min(300_000_000, round(rng.lognormvariate(mu, 1.25) * 100)))

        if total >= 200_000:
            inpatient = 1 + int(math.log(total / 200_000) / 1.2) + (rng.random() < 0.3)
        else:
            inpatient = 1 if rng.random() < 0.05 else 0
        inpatient = min(8, inpatient)

        basic_share = rng.uniform(0.55, 0.75) if inpatient else rng.uniform(0.3, 0.55)
        basic = int(total * basic_share)
        left = total - basic
        deductible = 750_000 if top and top != "LIFTED_FROM_POVERTY" else 1_500_000
        compliant = int(left * rng.uniform(0.7, 0.95))
        critical = int((compliant - deductible) * 0.6) if compliant > deductible else 0
        left -= critical
        assistance = int(left * rng.uniform(0.7, 0.95) * _ASSISTANCE_SHARE[top]) if top else 0
        personal = left - assistance
        return CostBurdenRecord(
            person_id=person.person_id,
            year=year,
            total_cost=_money(total),
            basic_insurance_paid=_money(basic),
            critical_illness_paid=_money(critical),
            medical_assistance_paid=_money(assistance),
            personal_burden=_money(personal),
            inpatient_count=inpatient,
        )


_EARLIEST_BIRTH_ORDINAL = date(1900, 1, 1).toordinal()


def _same_day(day: date, year: int) -> date:
    """``day`` in another year; 29 February becomes the 28th."""
    if day.month == 2 and day.day == 29:
        return date(year, 2, 28)
    return date(year, day.month, day.day)


def _money(cents: int) -> Decimal:
    """Yuan with exactly two decimals, from integer fen (no float rounding)."""
    return Decimal(cents).scaleb(-2)


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    total = sum(weight for _, weight in table)
    roll = rng.random() * total
    for item, weight in table:
        roll -= weight
        if roll < 0:
            return item
    return table[-1][0]


def household_number(household_id: uuid.UUID) -> str:
    """The 户编号 departments' files give a synthetic household (``adapters.samples``); the
    seed records the same, so a sample file of seeded people reads as unchanged."""
    return f"H{household_id.hex[:16].upper()}"
