"""The demo's closed loop, alive (issue 15): a few months of a county's work, made through the
same services a real deployment runs, so every workbench and dashboard screen has something.

All people are synthetic (``gateway.domain.synthetic``); nothing here is ever run on real data.
What :func:`bring_loop_alive` does, on the one clock's dates (M = this month):

1. **Month M-2's warnings, now overdue.** Medical insurance sends settlement files (结算信息,
   ``adapters`` ingest, dated in M-2) that lift a few people of the demo county over each warning
   rule of the province (rule 7); the warning run of M-2 runs on the first working day of M-1
   and pushes tasks due 5 working days later (000 §1): long past.
2. **Rosters of M-1, with anomalies.** Civil affairs and rural revitalisation send their monthly
   lists (001 §3: by the 10th): unchanged rows, two new people (medical insurance's
   verification tasks, 004 §1, also overdue now) and one ID under another name, sent back as an
   anomaly (回传, 001 §3) that stays open.
3. **Answers.** Each department answers some of its M-2 tasks (recognised, not eligible) and asks
   for more information on one, on a day chosen so that its restarted deadline is due soon now;
   medical insurance marks one identity.
4. **Month M-1's warnings.** More settlements (dated in M-1) and last month's run, today: new
   warnings with open tasks.
5. **Sharing history** (rule 11, 000 §5): the departments' reads of M-3 to today, written as
   audit entries through the audit chain (``gateway.storage.audit_chain``), the same entries a
   GraphQL read appends; ``statistics.sharing`` counts them like any other.

Idempotent: a second call (a second ``demo`` on the same data) finds the M-1 run it made and adds
nothing.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from adapters.mapping import Feed
from adapters.pipeline import Ingestor
from adapters.samples import IDENTITY_HEADERS, identity_rows, write_csv
from gateway.crypto import AuditMac
from gateway.domain.clock import CHINA_TZ, as_utc, now_utc
from gateway.domain.departments import CATEGORY_NAMES_ZH, Department, Level
from gateway.domain.id_numbers import make_id_number
from gateway.domain.principal import Principal
from gateway.domain.records import HouseholdBundle, PersonRecord
from gateway.domain.workdays import add_working_days, is_working_day
from gateway.loop.config import Measure, Population, ProvinceRules, WarningRule
from gateway.loop.tasks import DepartmentTasks, TaskAnswer, due_soon_until, verification_opener
from gateway.loop.warnings import (
    Month,
    WarningRunResult,
    previous_month,
    run_warnings,
    thresholds_for,
)
from gateway.storage.audit_chain import append_entries, read_entry
from gateway.storage.models import Anomaly, AuditEntry, CostWarning, Person, Task, WarningRun
from gateway.storage.vault import PersonVault

__all__ = ["DEMO_RUN_BY", "LoopStory", "Reader", "bring_loop_alive"]

DEMO_RUN_BY = "demo"
SETTLEMENT_HEADERS = (
    "姓名", "身份证号码", "结算日期", "就诊类型", "医疗总费用", "基本医保支付",
    "大病保险支付", "医疗救助支付", "个人负担", "结算流水号",
)  # fmt: skip
# Who answers which warnings as recognised (their own categories, 000 §1, 002 §4).
_RECOGNISED_AS = {
    "civil_affairs": "MINIMUM_LIVING_EDGE",
    "rural_revitalization": "MONITORED_UNSTABLE",
}
# People lifted over each rule: M-2's run leaves enough tasks to answer some and keep some
# overdue; M-1's adds a few new ones.
_CROSSERS_EARLIER = 6
_CROSSERS_LAST = 3


@dataclass(frozen=True, slots=True)
class Reader:
    """A department office whose reads make the sharing history (a demo token's claims)."""

    subject: str
    department: str
    level: str
    region: str
    purpose: str


@dataclass(slots=True)
class LoopStory:
    """What the demo's loop holds now (also after a second ``demo``)."""

    county: str
    last_month: Month
    run: WarningRunResult | None  # M-1's run when made by this call
    warnings_last_month: int = 0
    open_tasks: int = 0
    overdue_tasks: int = 0
    due_soon_tasks: int = 0
    answered_tasks: int = 0
    open_anomalies: int = 0
    audit_months: list[str] = field(default_factory=list)


async def bring_loop_alive(
    engine: AsyncEngine,
    sessions: Any,
    vault: PersonVault,
    rules: ProvinceRules,
    feeds: Mapping[tuple[str, str], Feed],
    bundles: Sequence[HouseholdBundle],
    *,
    county: str,
    today: date,
    readers: Sequence[Reader],
    files: Path,
    macs: AuditMac | None = None,
) -> LoopStory:
    """Make (once) and describe the demo county's loop; see the module docstring.

    ``sessions`` is the async sessionmaker (audit chain), ``vault`` the person vault (ingest),
    ``bundles`` the seeded plaintext (names and ID numbers for the departments' files), ``files``
    where the departments' files are written (kept, as a clerk keeps them), ``macs`` the
    keyring's audit MAC (the history's entries are sealed like every request's)."""
    last = previous_month(today)
    story = LoopStory(county=county, last_month=last, run=None)
    async with engine.connect() as connection:
        done = (
            await connection.execute(
                select(func.count())
                .select_from(WarningRun)
                .where(WarningRun.month == last.label, WarningRun.triggered_by == DEMO_RUN_BY)
            )
        ).scalar_one()
    if not done:
        story.run = await _make(
            engine, sessions, vault, rules, feeds, bundles, county, today, readers, files, macs
        )
    await _describe(engine, story, rules, today)
    return story


# ---------------------------------------------------------------------------- making it
async def _make(
    engine: AsyncEngine,
    sessions: Any,
    vault: PersonVault,
    rules: ProvinceRules,
    feeds: Mapping[tuple[str, str], Feed],
    bundles: Sequence[HouseholdBundle],
    county: str,
    today: date,
    readers: Sequence[Reader],
    files: Path,
    macs: AuditMac | None,
) -> WarningRunResult:
    rng = random.Random(f"demo-loop-{county}-{today}")
    files.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any file
    last = previous_month(today)
    before = previous_month(last.first_day)
    people = [p for b in bundles for p in b.members if p.region_code.startswith(county)]
    held = _held_categories(bundles)
    # The audit history comes first: its entries are older than anything a request appends.
    await _sharing_history(engine, sessions, readers, today, rng, macs)

    # 1. M-2's settlements and warning run, on the first working day of M-1.
    run_day = add_working_days(last.first_day - timedelta(days=1), 1)
    chosen = _crossers(rules, people, held, before, set(), rng, _CROSSERS_EARLIER)
    await _settle(engine, vault, rules, feeds, county, chosen, before, run_day, files, rng)
    await run_warnings(engine, rules, before, today=run_day, triggered_by=DEMO_RUN_BY)

    # 2. M-1's rosters from civil affairs and rural revitalisation, by the 10th.
    roster_day = add_working_days(run_day, 2)
    for department in ("civil_affairs", "rural_revitalization"):
        path = files / f"{_FEED_TITLES[department]}_{county}_{last.year}{last.month:02d}.csv"
        rows = _roster(bundles, department, county, roster_day)
        write_csv(path, IDENTITY_HEADERS, rows, encoding="utf-8-sig")
        ingestor = Ingestor(
            engine,
            vault,
            feeds[(department, "identities")],
            submitted_by=f"demo:{department}-county-{county}",
            today=roster_day,
            scope=county,
            on_completed=verification_opener(rules, roster_day),
        )
        await ingestor.ingest_file(path)

    # 3. Answers to M-2's tasks; one waits for information and is due soon now.
    answer_day = add_working_days(roster_day, 1)
    waiting_day = _day_due_soon(rules, today, not_before=answer_day)
    for department, category in _RECOGNISED_AS.items():
        await _answer(engine, rules, feeds, department, county, answer_day, waiting_day, category)
    await _mark_one_identity(engine, rules, feeds, county, answer_day)

    # 4. M-1's settlements and last month's run, today (what `warn run` does on the 1st).
    warned = await _warned(engine, last.year)
    chosen = _crossers(rules, people, held, last, warned, rng, _CROSSERS_LAST)
    await _settle(engine, vault, rules, feeds, county, chosen, last, today, files, rng)
    return await run_warnings(engine, rules, last, today=today, triggered_by=DEMO_RUN_BY)


_FEED_TITLES = {"civil_affairs": "民政救助对象名单", "rural_revitalization": "防返贫监测对象名单"}


def _held_categories(bundles: Sequence[HouseholdBundle]) -> dict[uuid.UUID, list[Any]]:
    held: dict[uuid.UUID, list[Any]] = {}
    for bundle in bundles:
        for status in bundle.relief_statuses:
            held.setdefault(status.person_id, []).append(status)
    return held


def _crossers(
    rules: ProvinceRules,
    people: Sequence[PersonRecord],
    held: Mapping[uuid.UUID, list[Any]],
    month: Month,
    excluded: set[uuid.UUID],
    rng: random.Random,
    per_rule: int,
) -> list[tuple[PersonRecord, WarningRule]]:
    """A few people of the county per rule, in the rule's population on the month's last day
    (as ``gateway.loop.warnings`` reads it), not yet warned this year; each person once."""
    day = month.last_day
    taken = set(excluded)
    chosen: list[tuple[PersonRecord, WarningRule]] = []
    for rule in rules.warnings:
        candidates = []
        for person in people:
            if person.person_id in taken or person.birth_date > month.first_day:
                continue
            categories = {
                s.category
                for s in held.get(person.person_id, [])
                if s.valid_from <= day and (s.valid_to is None or s.valid_to >= day)
            }
            inside = bool(categories & rule.categories)
            if inside == (rule.population is Population.HOLDERS):
                candidates.append(person)
        for person in rng.sample(candidates, min(per_rule, len(candidates))):
            taken.add(person.person_id)
            chosen.append((person, rule))
    return chosen


async def _settle(
    engine: AsyncEngine,
    vault: PersonVault,
    rules: ProvinceRules,
    feeds: Mapping[tuple[str, str], Feed],
    county: str,
    chosen: Sequence[tuple[PersonRecord, WarningRule]],
    month: Month,
    received_on: date,
    files: Path,
    rng: random.Random,
) -> None:
    """Medical insurance's settlement file of ``month`` for the county: the people chosen
    cross their rule by the month's end (the cost burden is the year's sum, 001 §4)."""
    thresholds = thresholds_for(rules, month.year)
    rows: list[dict[str, str]] = []
    for person, rule in chosen:
        threshold = thresholds[rule.rule]
        if rule.measure is Measure.INPATIENT_COUNT:
            stays = int(threshold) + rng.randint(0, 1)
            burdens = [Decimal(rng.randint(800, 3000)) for _ in range(stays)]
        else:
            burdens = [threshold + rng.randint(300, 6000)]
        for stay, personal in enumerate(burdens):
            total = (personal * Decimal("2.5")).quantize(Decimal("0.01"))
            basic = (total * Decimal("0.45")).quantize(Decimal("0.01"))
            critical = total - basic - personal
            settled = month.first_day + timedelta(days=min(26, 3 + 7 * stay))
            rows.append(
                {
                    "姓名": person.name,
                    "身份证号码": person.id_number,
                    "结算日期": settled.isoformat(),
                    "就诊类型": "住院",
                    "医疗总费用": str(total),
                    "基本医保支付": str(basic),
                    "大病保险支付": str(critical),
                    "医疗救助支付": "0.00",
                    "个人负担": str(personal),
                    "结算流水号": f"DEMO{month.year}{month.month:02d}{person.id_number[-8:]}{stay}",
                }
            )
    if not rows:
        return
    path = files / f"医保结算信息_{county}_{month.year}{month.month:02d}.csv"
    write_csv(path, SETTLEMENT_HEADERS, rows, encoding="utf-8-sig")
    ingestor = Ingestor(
        engine,
        vault,
        feeds[("medical_insurance", "settlements")],
        submitted_by=f"demo:medical_insurance-county-{county}",
        today=received_on,
        scope=county,
    )
    await ingestor.ingest_file(path)


def _roster(
    bundles: Sequence[HouseholdBundle], department: str, county: str, day: date
) -> list[dict[str, str]]:
    """The department's list of the county as it stands on ``day``: the identities it holds,
    one ID under another name (an anomaly to verify) and two new people (新增)."""
    rows = [
        row
        for row in identity_rows(bundles, department)
        if row["行政区划代码"].startswith(county)
        and not row["退出日期"]
        and row["认定日期"] <= day.isoformat()
    ]
    rows.sort(key=lambda row: row["身份证号码"])
    if rows:
        name = rows[0]["姓名"]
        rows[0] = {**rows[0], "姓名": name[0] + ("小" if name[1:2] != "小" else "晓") + name[-1]}
    category = "MINIMUM_LIVING" if department == "civil_affairs" else "MONITORED_SUDDEN_HARDSHIP"
    base = 800 if department == "civil_affairs" else 850
    for sequence in range(2):
        born = date(1958 + 11 * sequence, 5, 3 + sequence)
        rows.append(
            {
                "姓名": ("新增甲", "新增乙")[sequence]
                if department == "civil_affairs"
                else ("监测甲", "监测乙")[sequence],
                "身份证号码": make_id_number(county, born, base + sequence),
                "行政区划代码": county,
                "人员类别": CATEGORY_NAMES_ZH[category],
                "认定日期": (day - timedelta(days=2 + sequence)).isoformat(),
                "退出日期": "",
                "联系电话": f"1390000{2000 + base + sequence}",
                "家庭住址": "演示村 8 号",
                "户编号": f"DEMO{base + sequence:04d}",
                "与户主关系": "户主",
            }
        )
    return rows


def _day_due_soon(rules: ProvinceRules, today: date, *, not_before: date) -> date:
    """The latest day on or before today whose restarted deadline (``task_working_days``
    later) is due soon today (临期), not before ``not_before``."""
    until = due_soon_until(today, rules)
    day = today
    while day > not_before:
        due = add_working_days(day, rules.task_working_days)
        if today <= due <= until and is_working_day(day):
            return day
        day -= timedelta(days=1)
    return not_before


async def _own_tasks(
    engine: AsyncEngine, department: str, county: str, kind: str
) -> list[uuid.UUID]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(Task.id)
            .where(
                Task.department == department,
                Task.county_code == county,
                Task.kind == kind,
                Task.status == "OPEN",
            )
            .order_by(Task.opened_on, Task.id)
        )
        return [row.id for row in rows]


async def _answer(
    engine: AsyncEngine,
    rules: ProvinceRules,
    feeds: Mapping[tuple[str, str], Feed],
    department: str,
    county: str,
    answer_day: date,
    waiting_day: date,
    category: str,
) -> None:
    """Recognised, not eligible, and one waiting for information (due soon now)."""
    task_ids = await _own_tasks(engine, department, county, "WARNING_REVIEW")
    plan: list[tuple[TaskAnswer, str | None, str | None, date]] = [
        (TaskAnswer.RECOGNIZED, category, None, answer_day),
        (TaskAnswer.NOT_ELIGIBLE, None, "家庭收入超过认定标准", answer_day),
        (TaskAnswer.NEEDS_MORE_INFORMATION, None, "请补充住院费用明细和家庭收入证明", waiting_day),
    ]
    for task_id, (answer, recognised, note, day) in zip(task_ids, plan, strict=False):
        tasks = DepartmentTasks(
            _no_reads, engine, department=department, region=county, today=day, rules=rules
        )
        await tasks.answer(
            task_id,
            answer,
            category=recognised,
            note=note,
            answered_by=f"demo:{department}-county-{county}",
            feeds=feeds,
        )


async def _mark_one_identity(
    engine: AsyncEngine,
    rules: ProvinceRules,
    feeds: Mapping[tuple[str, str], Feed],
    county: str,
    day: date,
) -> None:
    task_ids = await _own_tasks(engine, "medical_insurance", county, "IDENTITY_VERIFICATION")
    if task_ids:
        tasks = DepartmentTasks(
            _no_reads, engine, department="medical_insurance", region=county, today=day, rules=rules
        )
        await tasks.answer(
            task_ids[0],
            TaskAnswer.IDENTITY_MARKED,
            category=None,
            note=None,
            answered_by=f"demo:medical_insurance-county-{county}",
            feeds=feeds,
        )


async def _no_reads(_statement: Any) -> Any:
    raise RuntimeError("the demo answers tasks; it lists none")


async def _warned(engine: AsyncEngine, year: int) -> set[uuid.UUID]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(CostWarning.person_id).where(CostWarning.year == year)
        )
        return {row.person_id for row in rows}


# ---------------------------------------------------------------------------- sharing history
async def _sharing_history(
    engine: AsyncEngine,
    sessions: Any,
    readers: Sequence[Reader],
    today: date,
    rng: random.Random,
    macs: AuditMac | None,
) -> None:
    """Reads of the last three months and of this month before today, in time order, each an
    audit entry for people the reader's region holds (requests and person-times, rule 11)."""
    start = previous_month(previous_month(previous_month(today).first_day).first_day).first_day
    latest = min(datetime.combine(today, time(0), CHINA_TZ).astimezone(UTC), now_utc())
    regions = {reader.region for reader in readers}
    people: dict[str, list[uuid.UUID]] = {}
    async with engine.connect() as connection:
        for region in regions:
            column = {2: Person.province_code, 4: Person.city_code, 6: Person.county_code}[
                len(region)
            ]
            found = await connection.execute(
                select(Person.id).where(column == region).order_by(Person.id).limit(400)
            )
            people[region] = [row.id for row in found]
    entries = []
    day = start
    while day < today:
        if is_working_day(day):
            for reader in readers:
                pool = people.get(reader.region) or []
                if not pool or rng.random() < 0.35:
                    continue
                for _ in range(rng.randint(1, 3)):
                    moment = datetime.combine(
                        day, time(rng.randint(8, 17), rng.randint(0, 59)), CHINA_TZ
                    ).astimezone(UTC)
                    if moment >= latest:
                        continue
                    entries.append(
                        (moment, reader, rng.sample(pool, min(len(pool), rng.randint(1, 20))))
                    )
        day += timedelta(days=1)
    entries.sort(key=lambda item: item[0])
    chained = []
    for moment, reader, person_ids in entries:
        entry = read_entry(
            principal=Principal(
                subject=reader.subject,
                department=Department(reader.department),
                level=Level(reader.level),
                region=reader.region,
            ),
            purpose=reader.purpose,
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            operation="CountyPage",
            policy_version=1,
            person_ids=person_ids,
            fields=_FIELDS,
        )
        entry.occurred_at = moment
        chained.append(entry)
    if chained:
        session: AsyncSession
        async with sessions() as session:
            await append_entries(session, chained, macs=macs)


_FIELDS = {"Person.name": "read", "Person.idNumber": "read", "Person.reliefStatuses": "read"}


# ---------------------------------------------------------------------------- describing it
async def _describe(
    engine: AsyncEngine, story: LoopStory, rules: ProvinceRules, today: date
) -> None:
    until = due_soon_until(today, rules)
    county = story.county
    async with engine.connect() as connection:

        async def count(*where: Any, table: Any = Task) -> int:
            stmt = select(func.count()).select_from(table).where(*where)
            return int((await connection.execute(stmt)).scalar_one())

        open_ = Task.status != "ANSWERED"
        here = Task.county_code == county
        story.warnings_last_month = await count(
            CostWarning.month == story.last_month.label,
            CostWarning.county_code == county,
            table=CostWarning,
        )
        story.open_tasks = await count(open_, here)
        story.overdue_tasks = await count(open_, here, Task.due_on < today)
        story.due_soon_tasks = await count(open_, here, Task.due_on >= today, Task.due_on <= until)
        story.answered_tasks = await count(Task.status == "ANSWERED", here)
        story.open_anomalies = await count(
            Anomaly.status == "OPEN", Anomaly.county_code == county, table=Anomaly
        )
        first_read = (await connection.execute(select(func.min(AuditEntry.occurred_at)))).scalar()
    if first_read is not None:
        month = as_utc(first_read).astimezone(CHINA_TZ).date().replace(day=1)
        while month <= today:
            story.audit_months.append(f"{month:%Y-%m}")
            month = (month + timedelta(days=32)).replace(day=1)
