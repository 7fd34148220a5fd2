"""Statistics without person data (共享统计, DOMAIN.md rule 11, 000 §5).

The province monitors how the loop and the sharing run: people per relief category, high-cost
warnings, open and overdue pushes, enrollment coverage, and the number of shares and person-times
shared (共享次数、共享人次) per department and month. A subject may be allowed these aggregates
without any person-level access (``Statistics.read``; by default big_data and the three loop
departments), so they are computed here, in SQL, and nothing about a single person leaves:

* **Scope.** Cells are published for the caller's jurisdiction (the region prefix of its token),
  optionally narrowed by ``regionPrefix``; the row policy does not apply (an aggregate-only
  subject has no row scope), which is why small cells are suppressed.
* **Small cells.** A count of people from 1 to ``min_cell_size - 1`` (default 1..4) is published
  as null with ``suppressed``. Zero is published: it describes nobody, and statistical offices
  publish zeros (suppressing them would also mark every non-zero suppressed cell as "1..4").
* **Secondary suppression.** A published total and all but one published member of a group
  would give the missing one by subtraction. Within every group -- a region's row (categories
  and the region's total), and a column (one category across the regions of one parent region,
  whose parent figure another ``groupBy`` publishes) -- a lone suppressed cell takes the next
  smallest positive published cell with it, until no group has exactly one suppressed cell.
* **Same figure for everyone.** Suppression is computed over the parent region of the grouping
  level (the city for county cells, the province for city cells), not over what this caller
  happens to see; the cells are filtered afterwards. A county clerk, a city clerk narrowing to
  that county and the province all see the same value (or the same suppression) for a cell, so
  asking with different prefixes cannot undo a suppression by differencing.
* **Sharing counts** (audit log, ingest batches) count requests and rows, not people: they are
  not suppressed, and carry no person ids.
* **Where a person counts** (issue 14, docs/closed-loop.md "Counting by place"): people
  (``reliefPeople``, ``coverage``) in the one region they live in (居住地, ``person``'s own
  code), never through an identity, insured or addressed place, so each person is in exactly
  one county, counties add up to their city and suppression can rely on it; warnings and tasks
  in the county they were pushed to (推送地), a person once per region and period.

Every section is one ``GROUP BY`` statement (totals are a ``UNION ALL`` branch of it) on the
request's connection; nothing is loaded per person.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Result,
    String,
    case,
    cast,
    distinct,
    exists,
    func,
    null,
    or_,
    select,
    union_all,
)

from gateway.domain.clock import beijing_day_start
from gateway.domain.departments import Level
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.loop.config import ProvinceRules
from gateway.loop.coverage import reference_date
from gateway.storage.models import (
    AuditEntry,
    CostWarning,
    Enrollment,
    IngestBatch,
    OutboxEvent,
    Person,
    ReliefStatus,
    Task,
    WebhookDelivery,
    WebhookEndpoint,
)

Execute = Callable[[Any], Awaitable[Result[Any]]]
Key = tuple[str | None, ...]

TASK_KINDS = ("WARNING_REVIEW", "IDENTITY_VERIFICATION")
# Measures of open tasks: how many, overdue, delivered to the department's system, read by it.
_TASK_MEASURES = ("open", "overdue", "delivered", "read")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# ============================================================================ suppression
@dataclass(frozen=True, slots=True)
class Group:
    """Cells that add up: ``members`` and, when published in the same table, their ``total``.
    A column group has no total here: its total is the parent region's cell of another
    ``groupBy``."""

    members: tuple[Key, ...]
    total: Key | None = None


def suppress(counts: Mapping[Key, int], groups: Iterable[Group], min_cell_size: int) -> set[Key]:
    """The cells to publish as null: every count in ``1..min_cell_size-1`` (primary), then, in
    any group with exactly one suppressed cell, the next smallest positive cell of the group
    (secondary), repeated until no group has exactly one.

    Zero cells are never chosen as the second cell: subtracting a published zero reveals as much
    as a published zero. The choice depends only on the group's own cells, in a fixed order,
    so a region's pattern does not depend on which other regions are in the table.

        >>> counts = {("a",): 4, ("b",): 7, ("c",): 9, ("t",): 20}
        >>> sorted(suppress(counts, [Group((("a",), ("b",), ("c",)), ("t",))], 5))
        [('a',), ('b',)]
    """
    suppressed = {key for key, value in counts.items() if 0 < value < min_cell_size}
    ordered = list(groups)
    changed = True
    while changed:
        changed = False
        for group in ordered:
            cells = [*group.members, *([group.total] if group.total is not None else [])]
            if sum(1 for cell in cells if cell in suppressed) != 1:
                continue
            # Prefer a member: the total is the figure an analyst needs most.
            for candidates in (group.members, cells):
                positive = [c for c in candidates if c not in suppressed and counts.get(c, 0) > 0]
                if positive:
                    suppressed.add(min(positive, key=lambda c: (counts[c], _sort_key(c))))
                    changed = True
                    break
    return suppressed


def _sort_key(key: Key) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)


def column_groups(keys: Iterable[Key], level: Level) -> list[Group]:
    """One group per parent region and the rest of the key: the cells of one category (rule,
    department …) across the regions of one parent, whose figure ``groupBy`` of the parent
    level publishes. Provinces have no published parent."""
    parent = _parent_digits(level)
    if parent is None:
        return []
    columns: dict[Key, list[Key]] = defaultdict(list)
    for key in keys:
        region = str(key[0])
        columns[(region[:parent], *key[1:])].append(key)
    return [Group(tuple(sorted(m, key=_sort_key))) for _, m in sorted(columns.items(), key=_kv)]


def _kv(item: tuple[Key, list[Key]]) -> tuple[str, ...]:
    return _sort_key(item[0])


def _parent_digits(level: Level) -> int | None:
    return {Level.PROVINCE: None, Level.CITY: 2, Level.COUNTY: 4}[level]


@dataclass(frozen=True, slots=True)
class Count:
    """One published figure: ``value`` is None exactly when ``suppressed``."""

    value: int | None
    suppressed: bool


def _published(counts: Mapping[Key, int], suppressed: set[Key], key: Key) -> Count:
    if key in suppressed:
        return Count(None, True)
    return Count(counts.get(key, 0), False)


# ============================================================================ scope
@dataclass(frozen=True, slots=True)
class StatisticsScope:
    """Where cells come from.

    ``published``: the region prefix of the cells returned (the jurisdiction, or the narrower
    ``regionPrefix``). ``computed``: the prefix suppression is computed over (``published``
    widened to the parent of the grouping level), see the module docstring.
    """

    published: str
    computed: str
    group_by: Level

    @property
    def digits(self) -> int:
        return self.group_by.region_digits


def statistics_scope(
    jurisdiction: str, region_prefix: str | None, group_by: Level
) -> StatisticsScope:
    """Validate ``regionPrefix`` and ``groupBy`` against the caller's jurisdiction.

    Raises:
        BadUserInput: a prefix that is not a 2-, 4- or 6-digit region code, or a grouping
            coarser than the region asked about (a county's figures cannot be a city's cell).
        Forbidden: a prefix outside (or wider than) the caller's jurisdiction.
    """
    published = jurisdiction
    if region_prefix is not None:
        if not (region_prefix.isascii() and region_prefix.isdigit()) or len(region_prefix) not in (
            2,
            4,
            6,
        ):
            raise BadUserInput(
                "regionPrefix 应为省、市或县级行政区划代码 (2、4 或 6 位数字); "
                "统计最细到县级, 不按乡镇、村发布"
            )
        if not region_prefix.startswith(jurisdiction):
            raise Forbidden(f"regionPrefix {region_prefix} 超出本辖区 ({jurisdiction}) 的统计范围")
        published = region_prefix
    if group_by.region_digits < len(published):
        finest = {2: "PROVINCE、CITY 或 COUNTY", 4: "CITY 或 COUNTY", 6: "COUNTY"}[len(published)]
        raise BadUserInput(f"统计范围 {published} 只能按 {finest} 分组 (groupBy 不能粗于统计范围)")
    parent = _parent_digits(group_by) or 2
    return StatisticsScope(
        published=published,
        computed=published[: max(2, min(len(published), parent))],
        group_by=group_by,
    )


# ============================================================================ results
@dataclass(frozen=True, slots=True)
class ReliefPeopleCell:
    region_code: str
    category: str | None  # None: people holding any category (a person counts once)
    people: Count


@dataclass(frozen=True, slots=True)
class WarningCell:
    region_code: str
    rule: str | None  # None: people warned under any rule
    month: str | None  # None: the whole year
    people: Count


@dataclass(frozen=True, slots=True)
class TaskCell:
    region_code: str
    department: str
    kind: str | None  # None: all kinds
    open: Count
    overdue: Count
    delivered: Count  # of the open ones: delivered to the department's system (issue 18)
    read: Count  # of the open ones: opened by the department's people


@dataclass(frozen=True, slots=True)
class CoverageCell:
    region_code: str
    population: Count
    enrolled: Count
    not_enrolled: Count
    rate: Decimal | None  # enrolled / population, 4 places rounded down; None when suppressed
    meets_target: bool | None


@dataclass(frozen=True, slots=True)
class CoverageStatistics:
    year: int
    reference_date: date
    target: Decimal
    regions: list[CoverageCell]


@dataclass(frozen=True, slots=True)
class SharingReads:
    department: str
    month: str
    requests: int  # 共享次数: requests that released at least one person's data
    person_times: int  # 共享人次: people released, summed over those requests


@dataclass(frozen=True, slots=True)
class DataProvided:
    department: str
    month: str
    batches: int
    rows_received: int
    rows_accepted: int


@dataclass(frozen=True, slots=True)
class SharingPushes:
    department: str
    month: str
    deliveries: int  # 推送送达次数: deliveries that reached the department's system
    person_times: int  # 推送人次: the people those deliveries were about


@dataclass(frozen=True, slots=True)
class SharingStatistics:
    reads: list[SharingReads]
    provided: list[DataProvided]
    pushes: list[SharingPushes]


# ============================================================================ the service
class Statistics:
    """The aggregates of one request, each section one statement on ``execute``."""

    def __init__(
        self,
        execute: Execute,
        *,
        dialect: str,
        scope: StatisticsScope,
        rules: ProvinceRules,
        today: date,
    ) -> None:
        self._execute = execute
        self._dialect = dialect
        self._scope = scope
        self._rules = rules
        self._today = today

    @property
    def scope(self) -> StatisticsScope:
        return self._scope

    # ---------------------------------------------------------------- relief people
    async def relief_people(self, on: date | None = None) -> list[ReliefPeopleCell]:
        """People holding each category on ``on`` (default today), by region × category, and
        per region the people holding any (a person with two categories counts once there).
        "Holding" as everywhere: ``valid_from <= on <= valid_to``; people who died before
        ``on`` are not counted."""
        day = on or self._today
        region = self._person_region()
        where = (
            self._person_scope(),
            _alive_on(day),
            ReliefStatus.valid_from <= day,
            or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= day),
        )
        joined = (
            select().select_from(Person).join(ReliefStatus, ReliefStatus.person_id == Person.id)
        )
        people = func.count(distinct(Person.id)).label("n")
        by_category = (
            joined.add_columns(region.label("region"), ReliefStatus.category.label("d1"), people)
            .where(*where)
            .group_by(region, ReliefStatus.category)
        )
        total = (
            joined.add_columns(region.label("region"), _null("d1"), people)
            .where(*where)
            .group_by(region)
        )
        counts = await self._counts(union_all(by_category, total), dims=1)
        regions = sorted({str(key[0]) for key in counts})
        categories = sorted(self._rules.ranking, key=lambda c: (self._rules.rank(c), c))
        rows: list[Group] = []
        for code in regions:
            members = tuple((code, category) for category in categories)
            rows.append(Group(members, (code, None)))
            for key in (*members, (code, None)):
                counts.setdefault(key, 0)
        hidden = suppress(
            counts, [*rows, *column_groups(counts, self._scope.group_by)], self._min_cell
        )
        return [
            ReliefPeopleCell(str(key[0]), key[1], _published(counts, hidden, key))
            for key in self._ordered(counts, [None, *categories])
        ]

    # ---------------------------------------------------------------- warnings
    async def warnings(self, year: int, month: str | None = None) -> list[WarningCell]:
        """High-cost warnings (001 §4, 002 §3, 004 §2) by region × rule × month of ``year``
        (or of the one ``month``), with per rule the year's total and per region the people
        warned under any rule in the period. A warning is one person × year × rule, so counts
        are people."""
        _check_year(year)
        if month is not None:
            found = _MONTH.match(month)
            if found is None or int(found.group(1)) != year:
                raise BadUserInput(f"month 应为 {year} 年内的月份, 格式 YYYY-MM, 如 {year}-03")
        region = self._task_region(CostWarning.county_code)
        where = [
            CostWarning.year == year,
            CostWarning.county_code.like(self._scope.computed + "%"),
        ]
        if month is not None:
            where.append(CostWarning.month == month)
        base = select().select_from(CostWarning).where(*where)
        branches = [
            base.add_columns(
                region.label("region"),
                CostWarning.rule.label("d1"),
                CostWarning.month.label("d2"),
                func.count().label("n"),
            ).group_by(region, CostWarning.rule, CostWarning.month)
        ]
        if month is None:
            branches.append(
                base.add_columns(
                    region.label("region"),
                    CostWarning.rule.label("d1"),
                    _null("d2"),
                    func.count().label("n"),
                ).group_by(region, CostWarning.rule)
            )
            branches.append(
                base.add_columns(
                    region.label("region"),
                    _null("d1"),
                    _null("d2"),
                    func.count(distinct(CostWarning.person_id)).label("n"),
                ).group_by(region)
            )
        else:
            branches.append(
                base.add_columns(
                    region.label("region"),
                    _null("d1"),
                    CostWarning.month.label("d2"),
                    func.count(distinct(CostWarning.person_id)).label("n"),
                ).group_by(region, CostWarning.month)
            )
        counts = await self._counts(union_all(*branches), dims=2)
        regions = sorted({str(key[0]) for key in counts})
        configured = [rule.rule for rule in self._rules.warnings]
        rules = configured + sorted(
            {str(k[1]) for k in counts if k[1] is not None} - set(configured)
        )
        months = [month] if month is not None else sorted({str(k[2]) for k in counts if k[2]})
        period = month  # the column of the region's row: the month asked for, else the year
        groups: list[Group] = []
        for code in regions:
            if month is None:
                for rule in rules:
                    members = tuple((code, rule, m) for m in months)
                    groups.append(Group(members, (code, rule, None)))
            row = tuple((code, rule, period) for rule in rules)
            groups.append(Group(row, (code, None, period)))
            for key in (*row, (code, None, period)):
                counts.setdefault(key, 0)
            for rule in rules:
                for m in months:
                    counts.setdefault((code, rule, m), 0)
        hidden = suppress(
            counts, [*groups, *column_groups(counts, self._scope.group_by)], self._min_cell
        )
        order_rules = {rule: i for i, rule in enumerate([None, *rules])}
        keys = sorted(
            (k for k in counts if str(k[0]).startswith(self._scope.published)),
            key=lambda k: (str(k[0]), order_rules[k[1]], k[2] is not None, str(k[2])),
        )
        return [WarningCell(str(k[0]), k[1], k[2], _published(counts, hidden, k)) for k in keys]

    # ---------------------------------------------------------------- tasks
    async def tasks(self) -> list[TaskCell]:
        """Open and overdue pushes (000 §1, 004 §1: answered within 5 working days) by region
        × department that must answer × kind, with per department the total of its kinds.
        Open: not answered yet (status OPEN); overdue: open and past ``due_on``. Each task is
        about one person, so the counts are suppressed like counts of people."""
        region = self._task_region(Task.county_code)
        overdue = func.sum(case((Task.due_on < self._today, 1), else_=0))
        delivered = func.sum(case((Task.delivered_at.is_not(None), 1), else_=0))
        read = func.sum(case((Task.read_at.is_not(None), 1), else_=0))
        base = (
            select()
            .select_from(Task)
            .where(Task.status == "OPEN", Task.county_code.like(self._scope.computed + "%"))
        )
        by_kind = base.add_columns(
            region.label("region"),
            Task.department.label("d1"),
            Task.kind.label("d2"),
            func.count().label("open"),
            overdue.label("overdue"),
            delivered.label("delivered"),
            read.label("read"),
        ).group_by(region, Task.department, Task.kind)
        total = base.add_columns(
            region.label("region"),
            Task.department.label("d1"),
            _null("d2"),
            func.count().label("open"),
            overdue.label("overdue"),
            delivered.label("delivered"),
            read.label("read"),
        ).group_by(region, Task.department)
        counts: dict[Key, int] = {}
        for row in await self._execute(union_all(by_kind, total)):
            counts[(row.region, row.d1, row.d2, "open")] = int(row.open)
            counts[(row.region, row.d1, row.d2, "overdue")] = int(row.overdue or 0)
            counts[(row.region, row.d1, row.d2, "delivered")] = int(row.delivered or 0)
            counts[(row.region, row.d1, row.d2, "read")] = int(row.read or 0)
        cells = {key[:3] for key in counts}
        kinds = [*TASK_KINDS, *sorted({str(k[2]) for k in cells if k[2]} - set(TASK_KINDS))]
        groups: list[Group] = []
        for code, department in sorted({(str(k[0]), str(k[1])) for k in cells}):
            for measure in _TASK_MEASURES:
                members = tuple((code, department, kind, measure) for kind in kinds)
                groups.append(Group(members, (code, department, None, measure)))
                for key in (*members, (code, department, None, measure)):
                    counts.setdefault(key, 0)
        hidden = suppress(
            counts, [*groups, *column_groups(counts, self._scope.group_by)], self._min_cell
        )
        order_kinds = {kind: i for i, kind in enumerate([None, *kinds])}
        keys = sorted(
            {k[:3] for k in counts if str(k[0]).startswith(self._scope.published)},
            key=lambda k: (str(k[0]), str(k[1]), order_kinds[k[2]]),
        )
        return [
            TaskCell(
                region_code=str(k[0]),
                department=str(k[1]),
                kind=k[2],
                open=_published(counts, hidden, (*k, "open")),
                overdue=_published(counts, hidden, (*k, "overdue")),
                delivered=_published(counts, hidden, (*k, "delivered")),
                read=_published(counts, hidden, (*k, "read")),
            )
            for k in keys
        ]

    # ---------------------------------------------------------------- coverage
    async def coverage(self, year: int) -> CoverageStatistics:
        """Enrollment coverage (002 §1: at least 99%) per region: people holding one of the
        coverage categories on 31 December of ``year`` (today for the current year), not
        deceased before that day, and how many of them have an ACTIVE enrollment in ``year``
        (``gateway.loop.coverage``'s definition). Population, enrolled and not enrolled
        (population - enrolled) are all suppressed when small: two would give the third."""
        day = reference_date(year, self._today)
        region = self._person_region()
        holds = exists(
            select(ReliefStatus.id).where(
                ReliefStatus.person_id == Person.id,
                ReliefStatus.category.in_(sorted(self._rules.coverage_categories)),
                ReliefStatus.valid_from <= day,
                or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= day),
            )
        )
        enrolled = exists(
            select(Enrollment.id).where(
                Enrollment.person_id == Person.id,
                Enrollment.year == year,
                Enrollment.status == "ACTIVE",
            )
        )
        stmt = (
            select(
                region.label("region"),
                func.count().label("population"),
                func.sum(case((enrolled, 1), else_=0)).label("enrolled"),
            )
            .select_from(Person)
            .where(self._person_scope(), _alive_on(day), holds)
            .group_by(region)
        )
        counts: dict[Key, int] = {}
        groups: list[Group] = []
        for row in await self._execute(stmt):
            population, insured = int(row.population), int(row.enrolled or 0)
            counts[(row.region, "population")] = population
            counts[(row.region, "enrolled")] = insured
            counts[(row.region, "not_enrolled")] = population - insured
            groups.append(
                Group(
                    ((row.region, "enrolled"), (row.region, "not_enrolled")),
                    (row.region, "population"),
                )
            )
        hidden = suppress(
            counts, [*groups, *column_groups(counts, self._scope.group_by)], self._min_cell
        )
        target = self._rules.coverage_target
        cells: list[CoverageCell] = []
        for code in sorted({str(k[0]) for k in counts}):
            if not code.startswith(self._scope.published):
                continue
            people = _published(counts, hidden, (code, "population"))
            covered = _published(counts, hidden, (code, "enrolled"))
            rate = meets = None
            if people.value and covered.value is not None:
                rate = (Decimal(covered.value) / Decimal(people.value)).quantize(
                    Decimal("0.0001"), rounding=ROUND_DOWN
                )
                meets = Decimal(covered.value) >= target * people.value
            cells.append(
                CoverageCell(
                    region_code=code,
                    population=people,
                    enrolled=covered,
                    not_enrolled=_published(counts, hidden, (code, "not_enrolled")),
                    rate=rate,
                    meets_target=meets,
                )
            )
        return CoverageStatistics(year=year, reference_date=day, target=target, regions=cells)

    # ---------------------------------------------------------------- sharing
    async def sharing(self, start: date, end: date) -> SharingStatistics:
        """Rule 11 (000 §5): 共享次数 and 共享人次 per reading department and (Beijing) month,
        from the audit log, for readers whose jurisdiction lies in the published scope; and
        the data provided: batches and rows per sending department and month (file imports
        and pushes; the synthetic seed is not a department's data). Counts of requests and
        rows, not of people: not suppressed."""
        if start > end:
            raise BadUserInput("from 不能晚于 to")
        low, high = (
            beijing_day_start(start),
            beijing_day_start(date.fromordinal(end.toordinal() + 1)),
        )
        released = self._json_length(AuditEntry.person_ids)
        read_month = self._month(AuditEntry.occurred_at)
        reads = (
            select(
                AuditEntry.department.label("department"),
                read_month.label("month"),
                func.count().label("requests"),
                func.sum(released).label("person_times"),
            )
            .where(
                AuditEntry.region.like(self._scope.published + "%"),
                AuditEntry.occurred_at >= low,
                AuditEntry.occurred_at < high,
                released > 0,
            )
            .group_by(AuditEntry.department, read_month)
            .order_by(AuditEntry.department, read_month)
        )
        sent_month = self._month(IngestBatch.received_at)
        provided = (
            select(
                IngestBatch.department.label("department"),
                sent_month.label("month"),
                func.count().label("batches"),
                func.sum(IngestBatch.rows_total).label("rows_received"),
                func.sum(IngestBatch.rows_accepted).label("rows_accepted"),
            )
            .where(
                IngestBatch.region.like(self._scope.published + "%"),
                IngestBatch.channel.in_(("FILE", "PUSH")),
                IngestBatch.received_at >= low,
                IngestBatch.received_at < high,
            )
            .group_by(IngestBatch.department, sent_month)
            .order_by(IngestBatch.department, sent_month)
        )
        pushed_month = self._month(WebhookDelivery.delivered_at)
        pushes = (
            select(
                WebhookEndpoint.department.label("department"),
                pushed_month.label("month"),
                func.count().label("deliveries"),
                func.count(OutboxEvent.person_id).label("person_times"),
            )
            .select_from(WebhookDelivery)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.status == "DELIVERED",
                OutboxEvent.county_code.like(self._scope.published + "%"),
                WebhookDelivery.delivered_at >= low,
                WebhookDelivery.delivered_at < high,
            )
            .group_by(WebhookEndpoint.department, pushed_month)
            .order_by(WebhookEndpoint.department, pushed_month)
        )
        return SharingStatistics(
            pushes=[
                SharingPushes(r.department, r.month, int(r.deliveries), int(r.person_times))
                for r in await self._execute(pushes)
            ],
            reads=[
                SharingReads(r.department, r.month, int(r.requests), int(r.person_times or 0))
                for r in await self._execute(reads)
            ],
            provided=[
                DataProvided(
                    r.department,
                    r.month,
                    int(r.batches),
                    int(r.rows_received or 0),
                    int(r.rows_accepted or 0),
                )
                for r in await self._execute(provided)
            ],
        )

    # ---------------------------------------------------------------- helpers
    @property
    def _min_cell(self) -> int:
        return self._rules.min_cell_size

    async def _counts(self, stmt: Any, *, dims: int) -> dict[Key, int]:
        return {
            (row.region, *(getattr(row, f"d{i}") for i in range(1, dims + 1))): int(row.n)
            for row in await self._execute(stmt)
        }

    def _ordered(self, counts: Mapping[Key, int], second: Sequence[str | None]) -> list[Key]:
        order = {value: i for i, value in enumerate(second)}
        return sorted(
            (k for k in counts if str(k[0]).startswith(self._scope.published)),
            key=lambda k: (str(k[0]), order.get(k[1], len(order)), str(k[1])),
        )

    def _person_region(self) -> Any:
        return {
            Level.PROVINCE: Person.province_code,
            Level.CITY: Person.city_code,
            Level.COUNTY: Person.county_code,
        }[self._scope.group_by]

    def _person_scope(self) -> ColumnElement[bool]:
        # Equality on the split code columns: indexed, no LIKE.
        prefix = self._scope.computed
        column = {2: Person.province_code, 4: Person.city_code, 6: Person.county_code}[len(prefix)]
        return column == prefix

    def _task_region(self, county_code: Any) -> ColumnElement[str]:
        if self._scope.group_by is Level.COUNTY:
            return county_code  # type: ignore[no-any-return]
        return func.substr(county_code, 1, self._scope.digits)

    def _month(self, moment: Any) -> ColumnElement[str]:
        """The Beijing-time month ``YYYY-MM`` of a stored UTC timestamp."""
        if self._dialect == "postgresql":
            return func.to_char(func.timezone("Asia/Shanghai", moment), "YYYY-MM")
        return func.strftime("%Y-%m", moment, "+8 hours")

    def _json_length(self, column: Any) -> ColumnElement[int]:
        if self._dialect == "postgresql":
            return func.json_array_length(cast(column, JSON))
        return func.json_array_length(column)


def _alive_on(day: date) -> ColumnElement[bool]:
    """Not deceased before ``day`` (someone who died that day still held the identity that
    day), as the coverage API counts."""
    return or_(Person.deceased_on.is_(None), Person.deceased_on >= day)


def _null(label: str) -> Any:
    return cast(null(), String(40)).label(label)


def _check_year(year: int) -> None:
    if not 1990 <= year <= 2100:
        raise BadUserInput("year 应为四位年份")


__all__ = [
    "Count",
    "CoverageCell",
    "CoverageStatistics",
    "DataProvided",
    "Group",
    "Key",
    "ReliefPeopleCell",
    "SharingReads",
    "SharingStatistics",
    "Statistics",
    "StatisticsScope",
    "TaskCell",
    "WarningCell",
    "column_groups",
    "statistics_scope",
    "suppress",
]
