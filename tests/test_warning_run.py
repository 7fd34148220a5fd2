"""The monthly high-cost warning run (DOMAIN.md rule 7) and its pushes (rule 3).

Rules under test, each with its boundary:

* Shanxi (002 §3): personal burden above 6,000 yuan for rural low-income and lifted-from-poverty
  people, above 20,000 for everybody else; exactly at the line is no warning, a cent above is.
* Shandong (001 §4): above 50% / 150% of the previous year's per-capita disposable income; a
  missing income figure refuses the run before anything is written.
* Anhui (004 §2): 3 hospital stays or more → city attention, 5 or more → province (both).
* The population is read on the month's last day (an identity exited that day is still held,
  one exited the day before is not); people who died before the month began are left out.
* 001 §4 推送新增达到监测标准人员: a re-run, or the next month for someone still above, adds
  nothing; crossing a higher rule later is a new warning.
* Each new warning is a task for civil affairs and rural revitalisation of the person's county,
  due 5 Chinese working days later (000 §1).

Every test runs on SQLite and PostgreSQL, on a database of this module alone, emptied before
each test (the run covers the whole province). People are written with the seed writer
(``gateway.storage.writer.write_bundles``, the path of ``relief-gateway seed``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from gateway.cli import main
from gateway.domain.errors import BadUserInput, ConfigurationError
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import (
    CostBurdenRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
    ReliefStatusRecord,
)
from gateway.domain.settings import Province
from gateway.domain.synthetic import generate_population
from gateway.domain.workdays import add_working_days
from gateway.loop.config import Population, ProvinceRules, WarningRule, load_rules
from gateway.loop.warnings import Month, parse_month, previous_month, run_warnings
from gateway.storage.models import (
    CostBurden,
    CostWarning,
    Enrollment,
    Household,
    IngestBatch,
    Person,
    PersonSource,
    ReliefStatus,
    Task,
    WarningRun,
)
from gateway.storage.writer import write_bundles
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

BACKENDS = ("sqlite", "postgres")
OCTOBER = Month(2026, 10)
TODAY = date(2026, 11, 2)  # the run of October, on the first working day of November
COUNTY = {"shanxi": "140105", "anhui": "340102", "shandong": "370102"}  # real county codes
LOW = "MINIMUM_LIVING"  # 低保对象
EDGE = "MINIMUM_LIVING_EDGE"  # 低保边缘家庭成员
LIFTED = "LIFTED_FROM_POVERTY"  # 脱贫人口
DISABLED = "SEVERE_DISABILITY"  # 重度残疾人


def rules_of(province: str) -> ProvinceRules:
    rules = load_rules(Province(province))
    if province == "shandong":
        # 2025's per-capita income is not in the shipped file yet; a deployment adds it.
        income = {**rules.per_capita_income, 2025: Decimal("41000")}
        rules = dataclasses.replace(rules, per_capita_income=income)
    return rules


# ---------------------------------------------------------------------------- people
@dataclass(frozen=True, slots=True)
class Held:
    category: str
    valid_from: date = date(2024, 1, 1)
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """One synthetic person with identities and one year's cost burden."""

    key: str
    province: str
    held: tuple[Held, ...] = ()
    burden: str = "0"
    stays: int = 0
    year: int = 2026
    deceased_on: date | None = None
    county: str | None = None


@dataclass
class People:
    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def key_of(self, person_id: uuid.UUID) -> str:
        return {v: k for k, v in self.ids.items()}[person_id]


def bundle(subject: Subject, n: int) -> HouseholdBundle:
    county = subject.county or COUNTY[subject.province]
    person_id = uuid.uuid4()
    id_number = make_id_number(county, date(1960, 1, 1), n)
    person = PersonRecord(
        person_id=person_id,
        id_number=id_number,
        name="测试" + "甲乙丙丁戊己庚辛壬癸"[n % 10] + str(n),
        gender="MALE" if int(id_number[16]) % 2 else "FEMALE",
        birth_date=date(1960, 1, 1),
        region_code=county,
        household_id=uuid.uuid4(),
        relation="户主",
    )
    assert person.household_id is not None
    burden = Decimal(subject.burden)
    return HouseholdBundle(
        household=HouseholdRecord(household_id=person.household_id, region_code=county),
        members=[person],
        relief_statuses=[
            ReliefStatusRecord(
                person_id=person_id,
                category=h.category,
                source_department="civil_affairs",
                recognized_on=h.valid_from,
                valid_from=h.valid_from,
                valid_to=h.valid_to,
            )
            for h in subject.held
        ],
        cost_burdens=[
            CostBurdenRecord(
                person_id=person_id,
                year=subject.year,
                total_cost=burden * 3 + 100,
                basic_insurance_paid=burden,
                critical_illness_paid=burden,
                medical_assistance_paid=Decimal("100"),
                personal_burden=burden,
                inpatient_count=subject.stays,
            )
        ],
    )


async def add_people(gateway: Harness, subjects: Iterable[Subject]) -> People:
    chosen = list(subjects)
    bundles = [bundle(s, n) for n, s in enumerate(chosen)]
    async with gateway.runtime.sessions() as session:
        await write_bundles(session, gateway.runtime.vault, bundles)
    people = People({s.key: b.members[0].person_id for s, b in zip(chosen, bundles, strict=True)})
    async with gateway.runtime.engine.begin() as connection:
        for s in chosen:
            if s.deceased_on is not None:  # as health's vital-event feed records a death
                await connection.execute(
                    update(Person)
                    .where(Person.id == people.ids[s.key])
                    .values(deceased_on=s.deceased_on)
                )
    return people


async def clear(gateway: Harness) -> None:
    async with gateway.runtime.engine.begin() as connection:
        for model in (
            Task, CostWarning, WarningRun, CostBurden, Enrollment, ReliefStatus, PersonSource,
            Person, Household, IngestBatch,
        ):  # fmt: skip
            await connection.execute(delete(model))


async def warnings_in(gateway: Harness) -> list[Any]:
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(*CostWarning.__table__.c).order_by(CostWarning.person_id, CostWarning.rule)
        )
        return list(rows)


async def tasks_in(gateway: Harness) -> list[Any]:
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(select(*Task.__table__.c).order_by(Task.source_key))
        return list(rows)


async def count(gateway: Harness, model: Any) -> int:
    async with gateway.runtime.engine.connect() as connection:
        found = await connection.execute(select(func.count()).select_from(model))
        return int(found.scalar_one())


async def flagged(gateway: Harness, people: People) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in await warnings_in(gateway):
        found.setdefault(people.key_of(row.person_id), set()).add(row.rule)
    return found


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=BACKENDS)
async def warning_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway of this test module alone, with nobody in it yet."""
    backend = str(request.param)
    data_dir: Path = tmp_path_factory.mktemp(f"warnings-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_warn_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    gateway = await build_harness(data_dir, url, backend=backend, persons=0)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


@pytest.fixture
async def gw(warning_gateway: Harness) -> Harness:
    await clear(warning_gateway)
    return warning_gateway


async def run(
    gateway: Harness,
    province: str,
    month: Month = OCTOBER,
    *,
    today: date = TODAY,
    rules: ProvinceRules | None = None,
) -> Any:
    return await run_warnings(
        gateway.runtime.engine,
        rules or rules_of(province),
        month,
        today=today,
        triggered_by="test",
    )


# ============================================================================ thresholds
LAST_DAY = OCTOBER.last_day  # 2026-10-31
CASES: list[tuple[str, Subject, set[str]]] = [
    # -- Shanxi 002 §3: > 6,000 for low-income / lifted-from-poverty, > 20,000 for the others
    ("山西 低保 恰好6000 不预警", Subject("a", "shanxi", (Held(LOW),), "6000.00"), set()),
    ("山西 低保 6000.01 预警", Subject("b", "shanxi", (Held(LOW),), "6000.01"),
     {"SHANXI_LOW_INCOME_6000"}),
    ("山西 脱贫人口 6000.01 预警", Subject("c", "shanxi", (Held(LIFTED),), "6000.01"),
     {"SHANXI_LOW_INCOME_6000"}),
    ("山西 普通 恰好20000 不预警", Subject("d", "shanxi", (), "20000.00"), set()),
    ("山西 普通 20000.01 预警", Subject("e", "shanxi", (), "20000.01"), {"SHANXI_OTHERS_20000"}),
    ("山西 普通 8000 不适用低收入标准", Subject("f", "shanxi", (), "8000"), set()),
    ("山西 重度残疾 属其他参保居民", Subject("g", "shanxi", (Held(DISABLED),), "20000.01"),
     {"SHANXI_OTHERS_20000"}),
    ("山西 月末当日退出 仍持有", Subject("h", "shanxi", (Held(LOW, valid_to=LAST_DAY),), "7000"),
     {"SHANXI_LOW_INCOME_6000"}),
    ("山西 月末前一日退出 不再持有", Subject(
        "i", "shanxi", (Held(LOW, valid_to=date(2026, 10, 30)),), "7000"), set()),
    ("山西 前一日退出 按普通居民", Subject(
        "j", "shanxi", (Held(LOW, valid_to=date(2026, 10, 30)),), "25000"),
     {"SHANXI_OTHERS_20000"}),
    ("山西 月末后才认定 不持有", Subject(
        "k", "shanxi", (Held(LOW, valid_from=date(2026, 11, 1)),), "7000"), set()),
    ("山西 月初前死亡 排除", Subject("l", "shanxi", (), "25000", deceased_on=date(2026, 9, 30)),
     set()),
    ("山西 当月死亡 仍预警", Subject("m", "shanxi", (), "25000", deceased_on=date(2026, 10, 1)),
     {"SHANXI_OTHERS_20000"}),
    ("山西 上年费用 不计入本年", Subject("n", "shanxi", (), "25000", year=2025), set()),
    ("山西规则 不衡量外省人员", Subject("o", "shanxi", (), "25000", county="370102"), set()),
    # -- Anhui 004 §2: 3 stays → city attention, 5 → province attention (both)
    ("安徽 住院2次 不预警", Subject("p", "anhui", (Held(LOW),), stays=2), set()),
    ("安徽 住院3次 市级关注", Subject("q", "anhui", (Held(LOW),), stays=3), {"ANHUI_INPATIENT_3"}),
    ("安徽 住院4次 市级关注", Subject("r", "anhui", (Held(EDGE),), stays=4), {"ANHUI_INPATIENT_3"}),
    ("安徽 住院5次 市省两级", Subject("s", "anhui", (Held(LOW),), stays=5),
     {"ANHUI_INPATIENT_3", "ANHUI_INPATIENT_5"}),
    ("安徽 普通 住院6次 不适用", Subject("t", "anhui", (), stays=6), set()),
    # -- Shandong 001 §4: 2025 income 41,000 → 50% = 20,500.00, 150% = 61,500.00
    ("山东 低保边缘 恰好50% 不预警", Subject("u", "shandong", (Held(EDGE),), "20500.00"), set()),
    ("山东 低保边缘 50%+0.01 预警", Subject("v", "shandong", (Held(EDGE),), "20500.01"),
     {"SHANDONG_LOW_INCOME_50"}),
    ("山东 监测对象 50%+0.01 预警", Subject(
        "w", "shandong", (Held("MONITORED_MARGINAL"),), "20500.01"), {"SHANDONG_LOW_INCOME_50"}),
    ("山东 低保 不在两类标准内", Subject("x", "shandong", (Held(LOW),), "70000"), set()),
    ("山东 普通 恰好150% 不预警", Subject("y", "shandong", (), "61500.00"), set()),
    ("山东 普通 150%+0.01 预警", Subject("z", "shandong", (), "61500.01"),
     {"SHANDONG_ORDINARY_150"}),
    ("山东 脱贫人口 按普通参保人员", Subject(
        "zz", "shandong", (Held(LIFTED),), "61500.01"), {"SHANDONG_ORDINARY_150"}),
]  # fmt: skip


@pytest.mark.parametrize("province", ["shanxi", "anhui", "shandong"])
async def test_thresholds_and_boundaries_per_province(gw: Harness, province: str) -> None:
    cases = [(label, s, expected) for label, s, expected in CASES if s.province == province]
    people = await add_people(gw, [s for _, s, _ in cases])

    result = await run(gw, province)

    found = await flagged(gw, people)
    for label, subject, expected in cases:
        assert found.get(subject.key, set()) == expected, label
    assert result.warnings_created == sum(len(expected) for _, _, expected in cases)


async def test_a_warning_records_why(gw: Harness) -> None:
    people = await add_people(
        gw,
        [
            Subject("burden", "shandong", (Held(EDGE),), "20500.01"),
            Subject("stays", "anhui", (Held(LOW),), stays=5, county="340104"),
        ],
    )
    await run(gw, "shandong")
    await run(gw, "anhui")

    rows = {(people.key_of(r.person_id), r.rule): r for r in await warnings_in(gw)}
    burden = rows[("burden", "SHANDONG_LOW_INCOME_50")]
    assert (burden.month, burden.year, burden.measure) == ("2026-10", 2026, "personal_burden")
    assert (Decimal(burden.figure), Decimal(burden.threshold)) == (
        Decimal("20500.01"),
        Decimal("20500.00"),
    )
    assert (burden.attention, burden.county_code) == ("province", "370102")
    city = rows[("stays", "ANHUI_INPATIENT_3")]
    province = rows[("stays", "ANHUI_INPATIENT_5")]
    assert (city.measure, Decimal(city.figure), Decimal(city.threshold), city.attention) == (
        "inpatient_count",
        Decimal(5),
        Decimal(3),
        "city",
    )
    assert (Decimal(province.threshold), province.attention, province.county_code) == (
        Decimal(5),
        "province",
        "340104",
    )


async def test_the_run_row_keeps_thresholds_and_counts(gw: Harness) -> None:
    await add_people(gw, [Subject("v", "shandong", (Held(EDGE),), "20500.01")])

    result = await run(gw, "shandong")

    async with gw.runtime.engine.connect() as connection:
        [stored] = (await connection.execute(select(*WarningRun.__table__.c))).all()
    assert stored.id == result.run_id
    assert (stored.month, stored.province, stored.status, stored.triggered_by) == (
        "2026-10",
        "shandong",
        "COMPLETED",
        "test",
    )
    assert (stored.warnings_created, stored.tasks_opened) == (1, 2)
    assert json.loads(stored.thresholds) == {
        "SHANDONG_LOW_INCOME_50": "20500.00",
        "SHANDONG_ORDINARY_150": "61500.00",
    }
    assert stored.finished_at is not None


async def test_shandong_without_last_years_income_is_refused_and_writes_nothing(
    gw: Harness,
) -> None:
    await add_people(gw, [Subject("v", "shandong", (Held(EDGE),), "90000")])
    shipped = load_rules(Province.SHANDONG)
    assert 2025 not in shipped.per_capita_income

    with pytest.raises(ConfigurationError) as refused:
        await run(gw, "shandong", rules=shipped)

    assert "缺少 2025 年全省居民人均可支配收入" in refused.value.message
    assert "per_capita_disposable_income" in refused.value.message
    for model in (WarningRun, CostWarning, Task):
        assert await count(gw, model) == 0, model.__tablename__


# ============================================================================ idempotence
async def test_rerunning_a_month_changes_nothing(gw: Harness) -> None:
    await add_people(
        gw, [Subject("b", "shanxi", (Held(LOW),), "6000.01"), Subject("e", "shanxi", (), "20001")]
    )
    first = await run(gw, "shanxi")
    before = (await warnings_in(gw), await tasks_in(gw))

    again = await run(gw, "shanxi")

    assert (first.warnings_created, first.tasks_opened) == (2, 4)
    assert (again.warnings_created, again.tasks_opened) == (0, 0)
    assert (await warnings_in(gw), await tasks_in(gw)) == before
    assert await count(gw, WarningRun) == 2  # both runs are on record


async def test_next_month_adds_nothing_for_someone_still_above(gw: Harness) -> None:
    await add_people(gw, [Subject("b", "shanxi", (Held(LOW),), "6000.01")])
    await run(gw, "shanxi", OCTOBER)

    november = await run(gw, "shanxi", Month(2026, 11), today=date(2026, 11, 23))

    assert november.warnings_created == 0
    [warning] = await warnings_in(gw)
    assert warning.month == "2026-10"


async def test_crossing_a_higher_rule_later_is_a_new_warning(gw: Harness) -> None:
    people = await add_people(gw, [Subject("q", "anhui", (Held(LOW),), stays=3)])
    await run(gw, "anhui", OCTOBER)
    async with gw.runtime.engine.begin() as connection:  # two more stays settled in November
        await connection.execute(
            update(CostBurden)
            .where(CostBurden.person_id == people.ids["q"])
            .values(inpatient_count=5)
        )

    november = await run(gw, "anhui", Month(2026, 11), today=date(2026, 12, 1))

    assert [(o.rule, o.new_warnings) for o in november.outcomes] == [
        ("ANHUI_INPATIENT_3", 0),
        ("ANHUI_INPATIENT_5", 1),
    ]
    months = {r.rule: r.month for r in await warnings_in(gw)}
    assert months == {"ANHUI_INPATIENT_3": "2026-10", "ANHUI_INPATIENT_5": "2026-11"}


async def test_a_new_year_is_measured_afresh(gw: Harness) -> None:
    people = await add_people(gw, [Subject("b", "shanxi", (Held(LOW),), "7000", year=2025)])
    await run(gw, "shanxi", Month(2025, 12), today=date(2026, 1, 5))
    async with gw.runtime.sessions() as session:
        session.add(
            CostBurden(
                person_id=people.ids["b"], year=2026, total_cost=Decimal("9000"),
                basic_insurance_paid=Decimal(0), critical_illness_paid=Decimal(0),
                medical_assistance_paid=Decimal(0), personal_burden=Decimal("6500"),
                inpatient_count=1,
            )
        )  # fmt: skip
        await session.commit()

    january = await run(gw, "shanxi", Month(2026, 1), today=date(2026, 2, 2))

    assert january.warnings_created == 1
    assert sorted((r.year, r.month) for r in await warnings_in(gw)) == [
        (2025, "2025-12"),
        (2026, "2026-01"),
    ]


async def test_two_concurrent_runs_of_a_month_push_once(gw: Harness) -> None:
    await add_people(
        gw, [Subject("b", "shanxi", (Held(LOW),), "6000.01"), Subject("e", "shanxi", (), "20001")]
    )

    results = await asyncio.gather(run(gw, "shanxi"), run(gw, "shanxi"))

    assert sorted(r.warnings_created for r in results) == [0, 2]
    assert sorted(r.tasks_opened for r in results) == [0, 4]
    assert (await count(gw, CostWarning), await count(gw, Task)) == (2, 4)


# ============================================================================ pushes
async def test_each_new_warning_is_pushed_to_civil_affairs_and_rural_revitalisation(
    gw: Harness,
) -> None:
    people = await add_people(gw, [Subject("e", "shanxi", (), "20000.01")])

    result = await run(gw, "shanxi")

    [warning] = await warnings_in(gw)
    tasks = await tasks_in(gw)
    assert sorted(t.department for t in tasks) == ["civil_affairs", "rural_revitalization"]
    for task in tasks:
        assert task.kind == "WARNING_REVIEW"
        assert task.person_id == people.ids["e"]
        assert task.county_code == "140105"
        assert task.warning_id == warning.id
        assert task.source_key == f"warning:{warning.id}"
        assert (task.opened_on, task.status) == (TODAY, "OPEN")
        assert task.due_on == add_working_days(TODAY, 5) == result.due_on
        assert (task.answer, task.answered_on) == (None, None)


@pytest.mark.parametrize(
    ("today", "due_on"),
    [
        # National Day 2025 with Mid-Autumn: 10-01..10-08 off, Saturday 10-11 a make-up working
        # day (chinesecalendar): working days after 09-30 are 10-09, 10-10, 10-11, 10-13, 10-14.
        (date(2025, 9, 30), date(2025, 10, 14)),
        # A Friday: the weekend does not count.
        (date(2026, 11, 20), date(2026, 11, 27)),
    ],
    ids=["国庆节含调休补班", "跨周末"],
)
async def test_the_deadline_counts_chinese_working_days(
    gw: Harness, today: date, due_on: date
) -> None:
    await add_people(gw, [Subject("e", "shanxi", (), "20000.01", year=today.year)])

    result = await run(gw, "shanxi", Month(today.year, today.month), today=today)

    assert result.due_on == due_on
    assert {t.due_on for t in await tasks_in(gw)} == {due_on}


# ============================================================================ seeded data
def expected_warnings(
    bundles: Sequence[HouseholdBundle],
    rules: ProvinceRules,
    month: Month,
    deceased: dict[uuid.UUID, date],
) -> set[tuple[uuid.UUID, str]]:
    """The same selection as the run, in plain Python over the seeded records."""
    income = rules.income_for_warning_year(month.year) if rules.needs_income() else None
    day = month.last_day
    found: set[tuple[uuid.UUID, str]] = set()
    for household in bundles:
        for person in household.members:
            died = deceased.get(person.person_id)
            if died is not None and died < month.first_day:
                continue
            held = {
                s.category
                for s in household.relief_statuses
                if s.person_id == person.person_id
                and s.valid_from <= day
                and (s.valid_to is None or s.valid_to >= day)
            }
            for cost in household.cost_burdens:
                if cost.person_id != person.person_id or cost.year != month.year:
                    continue
                for rule in rules.warnings:
                    holds = bool(held & rule.categories)
                    if holds != (rule.population is Population.HOLDERS):
                        continue
                    threshold = rule.threshold(income)
                    figure = (
                        cost.personal_burden
                        if rule.measure.value == "personal_burden"
                        else Decimal(cost.inpatient_count)
                    )
                    if figure > threshold if rule.strict else figure >= threshold:
                        found.add((person.person_id, rule.rule))
    return found


def sensitive(rules: ProvinceRules) -> ProvinceRules:
    """The province's rules with lower lines (same populations, measures and comparisons), so
    a small seeded population crosses them often enough to compare many people."""

    def lowered(rule: WarningRule) -> WarningRule:
        if rule.amount is not None:
            return dataclasses.replace(rule, amount=rule.amount / 10)
        if rule.share_of_income is not None:
            return dataclasses.replace(rule, share_of_income=rule.share_of_income / 20)
        assert rule.at_least is not None
        return dataclasses.replace(rule, at_least=rule.at_least - 2)

    return dataclasses.replace(rules, warnings=tuple(lowered(r) for r in rules.warnings))


@pytest.mark.parametrize("province", ["shanxi", "anhui", "shandong"])
async def test_seeded_population_matches_a_plain_python_computation(
    gw: Harness, province: str
) -> None:
    bundles = list(generate_population(1200, seed=4, today=TODAY, provinces=[province]))
    async with gw.runtime.sessions() as session:
        await write_bundles(session, gw.runtime.vault, bundles)
    # Some deaths around the month: before it (left out) and on its first day (kept).
    everyone = [p.person_id for b in bundles for p in b.members]
    deceased = {pid: date(2026, 9, 30) for pid in everyone[::13]}
    deceased |= {pid: date(2026, 10, 1) for pid in everyone[5::13]}
    async with gw.runtime.engine.begin() as connection:
        for day in sorted(set(deceased.values())):
            ids = [pid for pid, died in deceased.items() if died == day]
            await connection.execute(
                update(Person).where(Person.id.in_(ids)).values(deceased_on=day)
            )
    rules = sensitive(rules_of(province))
    expected = expected_warnings(bundles, rules, OCTOBER, deceased)

    result = await run(gw, province, rules=rules)

    stored = {(r.person_id, r.rule) for r in await warnings_in(gw)}
    assert stored == expected
    for rule in rules.warnings:  # every rule has people to find, and some it must leave out
        assert sum(1 for _, code in expected if code == rule.rule) >= 3, rule.rule
    assert any(pid in deceased for pid, _ in expected)
    assert result.warnings_created == len(expected)
    assert result.tasks_opened == 2 * len(expected)
    by_rule = {o.rule: o.new_warnings for o in result.outcomes}
    assert by_rule == {
        r.rule: sum(1 for _, code in expected if code == r.rule) for r in rules.warnings
    }


# ============================================================================ the month
@pytest.mark.parametrize(
    ("typed", "month"),
    [(None, Month(2026, 10)), ("2026-11", Month(2026, 11)), ("2025-01", Month(2025, 1)),
     (" 2026-03 ", Month(2026, 3))],
)  # fmt: skip
def test_the_month_defaults_to_the_previous_one(typed: str | None, month: Month) -> None:
    assert parse_month(typed, date(2026, 11, 23)) == month


def test_january_runs_december() -> None:
    assert previous_month(date(2027, 1, 1)) == Month(2026, 12)
    assert Month(2024, 2).last_day == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("2026-12", "月份 2026-12 晚于本月 (2026-11)"),
        ("2027-01", "月份 2027-01 晚于本月 (2026-11)"),
        ("2026-13", "格式不正确, 应为 YYYY-MM"),
        ("2026-00", "格式不正确"),
        ("202610", "格式不正确"),
        ("26-10", "格式不正确"),
        ("十月", "格式不正确"),
    ],
)
def test_bad_months_are_refused_in_chinese(typed: str, message: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        parse_month(typed, date(2026, 11, 23))
    assert message in refused.value.message


# ============================================================================ the command
@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(warning_gateway: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(
        "RELIEF_DATABASE_URL", warning_gateway.runtime.settings.resolved_database_url
    )
    monkeypatch.setenv("RELIEF_PROVINCE", "shanxi")
    for name in ("RELIEF_ENV", "RELIEF_DATA_DIR", "RELIEF_RULES_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


async def warn(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> Ran:
    argv = ["warn", "run", *args, "--data-dir", str(data_dir)]
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return Ran(code, captured.out, captured.err)


async def test_cli_prints_a_chinese_summary(
    gw: Harness, cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELIEF_TODAY", "2025-09-30")
    await add_people(
        gw,
        [Subject("b", "shanxi", (Held(LOW),), "6000.01", year=2025),
         Subject("e", "shanxi", (), "20000.01", year=2025)],
    )  # fmt: skip

    ran = await warn(capsys, cli_env, "--month", "2025-09")

    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == "山西省 2025-09 高额医疗费用负担监测预警 (按 2025 年累计)"
    assert (
        "    标准: 超过 6000 元; 关注层级: 县级; 新预警人数 1, 推送任务 2 条 (民政局、乡村振兴局)"
        in lines
    )
    assert "新预警人数合计 2, 推送任务数 4" in lines
    assert "推送日期 2025-09-30, 截止日期 2025-10-14 (5 个工作日内反馈认定结果)" in lines

    again = await warn(capsys, cli_env, "--month", "2025-09")

    assert again.code == 0
    assert "新预警人数合计 0, 推送任务数 0" in again.out
    assert "本次没有新增达到监测标准的人员 (已预警过的人员不重复推送)" in again.out


async def test_cli_json_and_default_month(
    gw: Harness, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_people(gw, [Subject("e", "shanxi", (), "20000.01")])  # RELIEF_TODAY 2026-11-23

    ran = await warn(capsys, cli_env, "--json", "--triggered-by", "timer")

    assert ran.code == 0, ran.err
    summary = json.loads(ran.out)
    assert (summary["month"], summary["province"], summary["dueOn"]) == (
        "2026-10",
        "shanxi",
        "2026-11-30",
    )
    assert (summary["warningsCreated"], summary["tasksOpened"]) == (1, 2)
    assert [
        (r["rule"], r["comparison"], r["threshold"], r["newWarnings"]) for r in summary["rules"]
    ] == [
        ("SHANXI_LOW_INCOME_6000", ">", "6000", 0),
        ("SHANXI_OTHERS_20000", ">", "20000", 1),
    ]
    async with gw.runtime.engine.connect() as connection:
        [triggered_by] = (await connection.execute(select(WarningRun.triggered_by))).scalars()
    assert triggered_by == "timer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--month", "2026-12"), "错误: 月份 2026-12 晚于本月 (2026-11)"),
        (("--month", "2026/10"), "错误: 月份 '2026/10' 格式不正确, 应为 YYYY-MM"),
    ],
    ids=["未来月份", "格式错误"],
)
async def test_cli_refuses_bad_months(
    gw: Harness,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    ran = await warn(capsys, cli_env, *args)

    assert ran.code == 2
    assert ran.err.startswith(message), ran.err
    assert await count(gw, WarningRun) == 0


async def test_cli_refuses_a_missing_income_figure(
    gw: Harness, cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELIEF_PROVINCE", "shandong")
    await add_people(gw, [Subject("v", "shandong", (Held(EDGE),), "90000")])

    ran = await warn(capsys, cli_env, "--month", "2026-10")

    assert ran.code == 2
    assert "缺少 2025 年全省居民人均可支配收入" in ran.err
    assert ran.out == ""
    for model in (WarningRun, CostWarning, Task):
        assert await count(gw, model) == 0
