"""High-cost early warning (高额医疗费用负担监测预警), DOMAIN.md rule 7, and its pushes.

Once a month (``relief-gateway warn run --month YYYY-MM``, scheduled on the 1st for the month
before) the province's rules are applied to the cost burdens of the month's year:

* Shandong (001 §4): personal burden above 50% (低保边缘家庭成员, 防止返贫监测对象) or 150%
  (ordinary insured people) of the province's previous-year per-capita disposable income;
* Shanxi (002 §3): above 6,000 yuan (rural low-income and lifted-from-poverty people) or
  20,000 yuan (other insured residents);
* Anhui (004 §2): 3 or more hospital stays in a year → city attention, 5 or more → province.

"Exceeds" is strictly greater; a count rule (住院3次以上) includes its number. The population of
a rule is read on the LAST day of the month: an identity whose ``valid_to`` is that day is still
held; people who died before the month began are left out.

How it runs: one ``INSERT … SELECT`` per rule over the whole province, never a person loaded
into Python, with ``ON CONFLICT DO NOTHING`` on (person, year, rule). A warning is pushed once
(001 §4: 推送新增达到监测标准人员): re-running a month, or the next month for someone still
above the line, creates nothing; crossing a higher rule later is a new warning. Each new
warning then becomes one task per department of the rule's ``push_to`` (000 §1: answered
within 5 working days), again set-based and idempotent (``ux_task_source``). Everything of one
run is one transaction, and on PostgreSQL two runs never overlap (an advisory lock).

``WarningReader`` is the read side for GraphQL: the warnings of the caller's jurisdiction, and
unless the caller sees other departments' work (medical insurance, the hub) only those pushed
to the caller's own department, filtered in SQL.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Result,
    Select,
    String,
    Uuid,
    and_,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain import observers
from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput
from gateway.domain.workdays import add_working_days
from gateway.loop.config import Measure, Population, ProvinceRules, WarningRule
from gateway.storage import outbox
from gateway.storage.models import (
    CostBurden,
    CostWarning,
    Money,
    Person,
    ReliefStatus,
    Task,
    WarningRun,
)
from gateway.storage.places import refresh_places
from gateway.storage.setwise import dialect_insert, new_uuid, uuid_text

__all__ = [
    "WARNING_LOCK_KEY",
    "Month",
    "RuleOutcome",
    "WarningCriteria",
    "WarningReader",
    "WarningRunResult",
    "parse_month",
    "previous_month",
    "run_warnings",
]

# pg_advisory_xact_lock key of every warning run ("RELWRN"): runs of different months write the
# same (person, year, rule) keys, so all runs take the one lock.
WARNING_LOCK_KEY = 0x52454C57524E
_SQLITE_LOCK = asyncio.Lock()

TASK_KIND = "WARNING_REVIEW"
_MONTH = re.compile(r"(\d{4})-(\d{2})")


# ---------------------------------------------------------------------------- the month
@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        following = (
            date(self.year + 1, 1, 1) if self.month == 12 else date(self.year, self.month + 1, 1)
        )
        return following - timedelta(days=1)

    def __str__(self) -> str:
        return self.label


def previous_month(today: date) -> Month:
    """The month a run on ``today`` covers by default: the one before (a timer on the 1st)."""
    last = today.replace(day=1) - timedelta(days=1)
    return Month(last.year, last.month)


def parse_month(value: str | None, today: date) -> Month:
    """``YYYY-MM`` as typed by an operator, or the previous month when absent.

    Raises:
        BadUserInput: malformed, or after the current month (costs not yet incurred).
    """
    if value is None:
        return previous_month(today)
    match = _MONTH.fullmatch(value.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise BadUserInput(f"月份 {value!r} 格式不正确, 应为 YYYY-MM, 如 {previous_month(today)}")
    month = Month(int(match.group(1)), int(match.group(2)))
    if month > Month(today.year, today.month):
        raise BadUserInput(
            f"月份 {month} 晚于本月 ({today:%Y-%m}), 费用尚未发生, 无法监测; 请指定不晚于本月的月份"
        )
    return month


# ---------------------------------------------------------------------------- the run
@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule: str
    description: str
    measure: Measure
    threshold: Decimal
    strict: bool  # "exceeds" (>) rather than "at least" (>=)
    attention: str
    push_to: tuple[str, ...]
    new_warnings: int
    tasks_opened: int


@dataclass(frozen=True, slots=True)
class WarningRunResult:
    run_id: uuid.UUID
    province: str
    province_name: str
    month: Month
    year: int
    opened_on: date
    due_on: date
    working_days: int
    outcomes: tuple[RuleOutcome, ...]
    seconds: float

    @property
    def warnings_created(self) -> int:
        return sum(o.new_warnings for o in self.outcomes)

    @property
    def tasks_opened(self) -> int:
        return sum(o.tasks_opened for o in self.outcomes)


def thresholds_for(rules: ProvinceRules, year: int) -> dict[str, Decimal]:
    """Each rule's threshold for a warning in ``year``.

    Raises:
        ConfigurationError: a share-of-income rule whose previous-year income is not
            configured (001 §4), naming the key to add.
    """
    income = rules.income_for_warning_year(year) if rules.needs_income() else None
    return {rule.rule: rule.threshold(income) for rule in rules.warnings}


async def run_warnings(
    engine: AsyncEngine,
    rules: ProvinceRules,
    month: Month,
    *,
    today: date,
    triggered_by: str,
) -> WarningRunResult:
    """Compute ``month``'s warnings and push the new ones; all or nothing.

    Thresholds are resolved before anything is written: a missing income figure refuses the
    run (``ConfigurationError``) with no trace in the database.
    """
    started = time.monotonic()
    year = month.year
    thresholds = thresholds_for(rules, year)
    due_on = add_working_days(today, rules.task_working_days)
    run_id = uuid.uuid4()
    postgres = engine.dialect.name == "postgresql"
    if not postgres:
        await _SQLITE_LOCK.acquire()
    try:
        async with engine.begin() as connection:
            if postgres:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": WARNING_LOCK_KEY}
                )
            outcomes = await _run(
                connection,
                rules,
                month,
                thresholds,
                run_id=run_id,
                today=today,
                due_on=due_on,
                triggered_by=triggered_by,
            )
    except Exception:
        # Nothing of the run was kept; leave a FAILED row so the operator sees it was tried.
        observers.warning_run(
            rules.province.value, warnings=0, seconds=time.monotonic() - started, failed=True
        )
        await _record_failure(engine, rules, month, run_id, thresholds, triggered_by)
        raise
    finally:
        if not postgres:
            _SQLITE_LOCK.release()
    observers.warning_run(
        rules.province.value,
        warnings=sum(o.new_warnings for o in outcomes),
        seconds=time.monotonic() - started,
        failed=False,
    )
    return WarningRunResult(
        run_id=run_id,
        province=rules.province.value,
        province_name=rules.name,
        month=month,
        year=year,
        opened_on=today,
        due_on=due_on,
        working_days=rules.task_working_days,
        outcomes=outcomes,
        seconds=time.monotonic() - started,
    )


async def _run(
    connection: AsyncConnection,
    rules: ProvinceRules,
    month: Month,
    thresholds: dict[str, Decimal],
    *,
    run_id: uuid.UUID,
    today: date,
    due_on: date,
    triggered_by: str,
) -> tuple[RuleOutcome, ...]:
    dialect = connection.dialect.name
    await connection.execute(
        insert(WarningRun).values(
            _run_row(rules, month, run_id, thresholds, triggered_by, status="RUNNING")
        )
    )
    for rule in rules.warnings:
        await connection.execute(
            _insert_warnings(dialect, rule, thresholds[rule.rule], month, run_id, rules.code)
        )
    departments = sorted({d.value for rule in rules.warnings for d in rule.push_to})
    for department in departments:
        codes = [rule.rule for rule in rules.warnings if department in rule.push_to]
        await connection.execute(
            _insert_tasks(dialect, department, codes, run_id, today=today, due_on=due_on)
        )
        # The outbox, in this transaction: the warnings, then the tasks they opened (issue 18).
        await outbox.emit_select(connection, _warnings_raised(dialect, department, codes, run_id))
    await outbox.emit_tasks_pushed(
        connection, Task.warning_id.in_(select(CostWarning.id).where(CostWarning.run_id == run_id))
    )
    # The counties the warnings were pushed to are now places of those people (issue 14).
    await refresh_places(
        connection, select(CostWarning.person_id).where(CostWarning.run_id == run_id)
    )
    created = dict(
        (
            await connection.execute(
                select(CostWarning.rule, func.count())
                .where(CostWarning.run_id == run_id)
                .group_by(CostWarning.rule)
            )
        ).all()
    )
    opened = dict(
        (
            await connection.execute(
                select(CostWarning.rule, func.count())
                .select_from(Task)
                .join(CostWarning, CostWarning.id == Task.warning_id)
                .where(CostWarning.run_id == run_id)
                .group_by(CostWarning.rule)
            )
        ).all()
    )
    outcomes = tuple(
        RuleOutcome(
            rule=rule.rule,
            description=rule.description,
            measure=rule.measure,
            threshold=thresholds[rule.rule],
            strict=rule.strict,
            attention=rule.attention.value,
            push_to=tuple(d.value for d in rule.push_to),
            new_warnings=int(created.get(rule.rule, 0)),
            tasks_opened=int(opened.get(rule.rule, 0)),
        )
        for rule in rules.warnings
    )
    await connection.execute(
        update(WarningRun)
        .where(WarningRun.id == run_id)
        .values(
            status="COMPLETED",
            finished_at=now_utc(),
            warnings_created=sum(o.new_warnings for o in outcomes),
            tasks_opened=sum(o.tasks_opened for o in outcomes),
        )
    )
    return outcomes


async def _record_failure(
    engine: AsyncEngine,
    rules: ProvinceRules,
    month: Month,
    run_id: uuid.UUID,
    thresholds: dict[str, Decimal],
    triggered_by: str,
) -> None:
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(WarningRun).values(
                    _run_row(rules, month, run_id, thresholds, triggered_by, status="FAILED")
                )
            )
    except Exception:  # the database is gone: the original error is what matters
        return


def _run_row(
    rules: ProvinceRules,
    month: Month,
    run_id: uuid.UUID,
    thresholds: dict[str, Decimal],
    triggered_by: str,
    *,
    status: str,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "month": month.label,
        "province": rules.province.value,
        "started_at": now_utc(),
        "finished_at": None if status == "RUNNING" else now_utc(),
        "status": status,
        "triggered_by": triggered_by[:128],
        "warnings_created": 0,
        "tasks_opened": 0,
        # The thresholds used, so a warning can be explained after the rules file changed.
        "thresholds": json.dumps(
            {code: str(value) for code, value in thresholds.items()}, sort_keys=True
        ),
    }


def _held_on(day: date, categories: frozenset[str]) -> ColumnElement[bool]:
    """The person holds one of ``categories`` on ``day`` (``valid_to`` is the last day held)."""
    return exists(
        select(ReliefStatus.id).where(
            ReliefStatus.person_id == Person.id,
            ReliefStatus.category.in_(sorted(categories)),
            ReliefStatus.valid_from <= day,
            or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= day),
        )
    )


def selection(
    rule: WarningRule, threshold: Decimal, month: Month, province_code: str
) -> Select[Any]:
    """The people of the province ``rule`` flags in ``month``, with their figure: the FROM and
    WHERE of the rule's INSERT (also what the benchmark's hand-written baseline counts)."""
    if rule.measure is Measure.PERSONAL_BURDEN:
        measured: ColumnElement[Any] = CostBurden.personal_burden.expression
        figure: ColumnElement[Any] = CostBurden.personal_burden.expression
        bound = literal(threshold, Money)
    else:
        measured = CostBurden.inpatient_count.expression
        figure = cast(CostBurden.inpatient_count, Money)
        bound = literal(int(threshold), Integer)
    crosses = measured > bound if rule.strict else measured >= bound
    held = _held_on(month.last_day, rule.categories)
    return (
        select(CostBurden.person_id, Person.county_code, figure.label("figure"))
        .join(Person, Person.id == CostBurden.person_id)
        .where(
            CostBurden.year == month.year,
            # One deployment, one province's rules: people of another province (moved away,
            # or a shared database) are not measured against them.
            Person.province_code == province_code,
            crosses,
            # Died before the month began: nobody left to assist (a death within it still counts).
            or_(Person.deceased_on.is_(None), Person.deceased_on >= month.first_day),
            held if rule.population is Population.HOLDERS else not_(held),
        )
    )


def _insert_warnings(
    dialect: str,
    rule: WarningRule,
    threshold: Decimal,
    month: Month,
    run_id: uuid.UUID,
    province_code: str,
) -> Any:
    chosen = selection(rule, threshold, month, province_code).subquery("flagged")
    rows = select(
        new_uuid(dialect),
        literal(run_id, Uuid()),
        literal(month.label, String()),
        literal(month.year, Integer()),
        chosen.c.person_id,
        chosen.c.county_code,
        literal(rule.rule, String()),
        literal(rule.measure.value, String()),
        chosen.c.figure,
        literal(threshold, Money),
        literal(rule.attention.value, String()),
        literal(now_utc(), DateTime(timezone=True)),
    ).where(literal_column("1") == 1)  # SQLite: an upsert after SELECT needs a WHERE
    columns = [
        "id", "run_id", "month", "year", "person_id", "county_code", "rule", "measure",
        "figure", "threshold", "attention", "created_at",
    ]  # fmt: skip
    statement = dialect_insert(dialect, CostWarning).from_select(columns, rows)
    return statement.on_conflict_do_nothing(index_elements=["person_id", "year", "rule"])


def _insert_tasks(
    dialect: str,
    department: str,
    rule_codes: Sequence[str],
    run_id: uuid.UUID,
    *,
    today: date,
    due_on: date,
) -> Any:
    rows = select(
        new_uuid(dialect),
        literal(TASK_KIND, String()),
        literal(department, String()),
        CostWarning.county_code,
        CostWarning.person_id,
        literal("warning:", String()) + uuid_text(dialect, CostWarning.id.expression),
        CostWarning.id,
        literal(today, Date()),
        literal(due_on, Date()),
        literal("OPEN", String()),
    ).where(CostWarning.run_id == run_id, CostWarning.rule.in_(list(rule_codes)))
    columns = [
        "id", "kind", "department", "county_code", "person_id", "source_key", "warning_id",
        "opened_on", "due_on", "status",
    ]  # fmt: skip
    statement = dialect_insert(dialect, Task).from_select(columns, rows)
    return statement.on_conflict_do_nothing(
        index_elements=["department", "source_key", "person_id"]
    )


def _warnings_raised(
    dialect: str, department: str, rule_codes: Sequence[str], run_id: uuid.UUID
) -> Any:
    """``warning.raised`` for the run's warnings of rules pushed to ``department``."""
    warning_id = uuid_text(dialect, CostWarning.id.expression)
    kind = outbox.EventKind.WARNING_RAISED.value
    return select(
        literal(kind, String()).label("kind"),
        literal(department, String()).label("audience"),
        CostWarning.county_code.label("county_code"),
        CostWarning.person_id.label("person_id"),
        literal("warning", String()).label("subject_type"),
        warning_id.label("subject_id"),
        (literal(f"{kind}:{department}:", String()) + warning_id).label("dedupe_key"),
        literal(None, String()).label("facts"),
    ).where(CostWarning.run_id == run_id, CostWarning.rule.in_(list(rule_codes)))


# ---------------------------------------------------------------------------- reading
Execute = Callable[[Any], Awaitable[Result[Any]]]


@dataclass(frozen=True, slots=True)
class WarningCriteria:
    """A validated ``WarningFilter``."""

    month: str | None = None
    rule: str | None = None
    attention: str | None = None
    region_prefix: str | None = None


class WarningReader:
    """Warnings as one department sees them, scoped in SQL.

    Every caller sees only warnings of people whose county lies in its jurisdiction. A caller
    without ``Loop.otherDepartments`` sees only warnings pushed to its own department (a task
    for it exists): civil affairs does not learn whom rural revitalisation was asked about.
    """

    def __init__(
        self, execute: Execute, *, department: str, region: str, all_departments: bool
    ) -> None:
        self._execute = execute
        self._department = department
        self._region = region
        self._all_departments = all_departments

    def _scope(self) -> ColumnElement[bool]:
        inside = CostWarning.county_code.like(self._region + "%")
        if self._all_departments:
            return inside
        pushed = exists(
            select(Task.id).where(
                Task.warning_id == CostWarning.id, Task.department == self._department
            )
        )
        return and_(inside, pushed)

    def _filtered(self, stmt: Select[Any], criteria: WarningCriteria) -> Select[Any]:
        stmt = stmt.where(self._scope())
        if criteria.month is not None:
            stmt = stmt.where(CostWarning.month == criteria.month)
        if criteria.rule is not None:
            stmt = stmt.where(CostWarning.rule == criteria.rule)
        if criteria.attention is not None:
            stmt = stmt.where(CostWarning.attention == criteria.attention)
        if criteria.region_prefix is not None:
            stmt = stmt.where(CostWarning.county_code.like(criteria.region_prefix + "%"))
        return stmt

    async def page(
        self, criteria: WarningCriteria, *, first: int, after: tuple[str, uuid.UUID] | None
    ) -> tuple[list[Any], bool]:
        """Newest month first (this month's list on top), then by id: a stable keyset."""
        stmt = self._filtered(select(*CostWarning.__table__.c), criteria)
        if after is not None:
            month, warning_id = after
            stmt = stmt.where(
                or_(
                    CostWarning.month < month,
                    and_(CostWarning.month == month, CostWarning.id > warning_id),
                )
            )
        stmt = stmt.order_by(CostWarning.month.desc(), CostWarning.id).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count(self, criteria: WarningCriteria) -> int:
        stmt = self._filtered(select(func.count()).select_from(CostWarning), criteria)
        return int((await self._execute(stmt)).scalar_one())

    async def tasks(self, warning_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
        """The tasks the warnings produced: the caller's own, or all for the hub. Rows carry
        the warning's rule and month like ``gateway.loop.tasks`` listings do."""
        stmt = (
            select(
                *Task.__table__.c,
                CostWarning.rule.label("warning_rule"),
                CostWarning.month.label("warning_month"),
            )
            .join(CostWarning, CostWarning.id == Task.warning_id)
            .where(Task.warning_id.in_(warning_ids))
        )
        if not self._all_departments:
            stmt = stmt.where(Task.department == self._department)
        stmt = stmt.order_by(Task.warning_id, Task.department, Task.id)
        grouped: dict[uuid.UUID, list[Any]] = {}
        for row in await self._execute(stmt):
            grouped.setdefault(row.warning_id, []).append(row)
        return grouped
