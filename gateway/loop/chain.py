"""One relief chain per person (一人一条救助链, 000 §1, 004 §1): the person's timeline across
departments, from the records the exchange already holds.

Sources, one query each whatever the person's history: relief statuses (recognised, exited),
enrollments per year, high-cost warnings, tasks pushed and answered, anomalies sent back and
resolved, and deaths. What a caller may see is decided once per request
(:class:`ChainVisibility`, from the access decision) and applied in SQL: a source the caller may
not see is not queried at all, and tasks, warnings and anomalies are narrowed to the caller's
department and jurisdiction unless the policy grants ``Loop.otherDepartments`` (the hub, MIB).

Summaries are Chinese sentences a clerk reads; they carry categories, dates, departments and
figures, never a name or an ID number.

    visibility = ChainVisibility.decide(guard.permits, decision.operations,
                                        department="civil_affairs", region="370102")
    events = await relief_chain(execute, person_id, visibility, rules)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Result, and_, exists, select

from gateway.domain.clock import CHINA_TZ, as_utc
from gateway.domain.departments import CATEGORY_NAMES_ZH, DEPARTMENT_NAMES_ZH, Department
from gateway.domain.regions import provinces
from gateway.loop.config import ProvinceRules
from gateway.storage.models import (
    Anomaly,
    CostWarning,
    Enrollment,
    OutboxEvent,
    Person,
    ReliefStatus,
    Task,
    VitalEvent,
)
from gateway.storage.outbox import EVENT_KIND_NAMES_ZH, EventKind

Execute = Callable[[Any], Awaitable[Result[Any]]]


class ChainEventKind(StrEnum):
    """Kinds of event, in the order events of one day are listed (cause before effect)."""

    IDENTITY_RECOGNIZED = "IDENTITY_RECOGNIZED"  # 身份认定
    ENROLLED = "ENROLLED"  # 正常参保
    ENROLLMENT_SUSPENDED = "ENROLLMENT_SUSPENDED"  # 暂停参保
    ENROLLMENT_TERMINATED = "ENROLLMENT_TERMINATED"  # 终止参保
    WARNING = "WARNING"  # 高额医疗费用预警
    TASK_PUSHED = "TASK_PUSHED"  # 推送核实
    TASK_DELIVERED = "TASK_DELIVERED"  # 已送达部门系统 (回执, issue 18)
    TASK_READ = "TASK_READ"  # 部门已查阅 (回执)
    TASK_ANSWERED = "TASK_ANSWERED"  # 核实答复
    ANOMALY_OPENED = "ANOMALY_OPENED"  # 异常回传
    ANOMALY_RESOLVED = "ANOMALY_RESOLVED"  # 异常处理
    IDENTITY_EXITED = "IDENTITY_EXITED"  # 身份退出
    DEATH = "DEATH"  # 死亡


_KIND_ORDER = {kind: position for position, kind in enumerate(ChainEventKind)}

_ENROLLMENT_KIND = {
    "ACTIVE": ChainEventKind.ENROLLED,
    "SUSPENDED": ChainEventKind.ENROLLMENT_SUSPENDED,
    "TERMINATED": ChainEventKind.ENROLLMENT_TERMINATED,
}
_ENROLLMENT_STATUS_ZH = {"ACTIVE": "正常参保", "SUSPENDED": "暂停参保", "TERMINATED": "终止参保"}
_INSURANCE_TYPE_ZH = {"RESIDENT": "城乡居民基本医疗保险", "EMPLOYEE": "职工基本医疗保险"}
_TASK_KIND_ZH = {
    "WARNING_REVIEW": "高额医疗费用预警, 请核实是否符合救助条件",
    "IDENTITY_VERIFICATION": "新增救助身份, 请核查参保并标识身份",
}
# Answers as ``gateway.loop.tasks`` records them (004 §1, 000 §1); an unknown code is shown as
# is. NEEDS_MORE_INFORMATION keeps the task waiting: the chain shows the latest answer.
_ANSWER_ZH = {
    "RECOGNIZED": "已认定为救助对象",
    "NOT_ELIGIBLE": "经核查不符合认定条件",
    "IDENTITY_MARKED": "已核查参保并完成身份标识",
    "NOT_ENROLLED": "未参保, 已动员参保",
    "NEEDS_MORE_INFORMATION": "需补充材料",
}
_ANOMALY_KIND_ZH = {
    "NAME_MISMATCH": "同一身份证号码的姓名与已登记的不一致",
    "BIRTH_DATE_MISMATCH": "出生日期与身份证号码不一致",
    "DECEASED_WITH_ACTIVE_STATUS": "已报告死亡但救助身份仍有效",
    "DECEASED_STILL_ENROLLED": "已报告死亡但仍正常参保",
    "EXITED_IDENTITY_ACTIVE_ELSEWHERE": "身份已被一个部门退出, 另一部门数据中仍有效",
    "REPORTED_BY_ANOTHER_REGION": "另一辖区的同一部门也报送了该人员",
}
_RESOLUTION_ZH = {
    "CORRECTED": "已更正",
    "CONFIRMED_CORRECT": "经核实数据无误",
    "NOT_APPLICABLE": "不属于异常",
    "CORRECTED_BY_DATA": "后续报送的数据已消除差异",
}


@dataclass(frozen=True, slots=True)
class ChainVisibility:
    """What one caller may see of a chain: decided once per request, applied in SQL."""

    department: str  # the caller's department code
    region: str  # the caller's jurisdiction (2, 4 or 6 digits)
    identities: bool  # Person.reliefStatuses with its dates
    identity_department: bool  # ReliefStatus.sourceDepartment
    enrollments: bool  # Person.enrollments with Enrollment.status
    insurance_type: bool
    subsidy_category: bool
    subsidy_amount: bool
    warnings: bool  # Loop.warnings
    tasks: bool  # Loop.tasks
    anomalies: bool  # Ingest.anomalies
    other_departments: bool  # Loop.otherDepartments: every department's work, deaths
    # seen only through the caller's own report (issue 14): the records its region sent
    as_reported: bool = False

    @classmethod
    def decide(
        cls,
        permits: Callable[[str], bool],
        operations: Collection[str],
        *,
        department: str,
        region: str,
        as_reported: bool = False,
    ) -> ChainVisibility:
        """From the request's access decision: ``permits(field)`` is a read grant."""
        enrollments = permits("Person.enrollments") and permits("Enrollment.status")
        return cls(
            department=department,
            region=region,
            identities=all(
                permits(field)
                for field in (
                    "Person.reliefStatuses",
                    "ReliefStatus.recognizedOn",
                    "ReliefStatus.validFrom",
                    "ReliefStatus.validTo",
                )
            ),
            identity_department=permits("ReliefStatus.sourceDepartment"),
            enrollments=enrollments,
            insurance_type=enrollments and permits("Enrollment.insuranceType"),
            subsidy_category=enrollments and permits("Enrollment.subsidyCategory"),
            subsidy_amount=enrollments and permits("Enrollment.subsidyAmount"),
            warnings="Loop.warnings" in operations,
            tasks="Loop.tasks" in operations,
            anomalies="Ingest.anomalies" in operations,
            other_departments="Loop.otherDepartments" in operations and not as_reported,
            as_reported=as_reported,
        )

    def released_fields(self) -> list[str]:
        """The guarded fields the chain's events reveal (for the audit entry)."""
        fields: list[str] = []
        if self.identities:
            fields += [
                "Person.reliefStatuses",
                "ReliefStatus.recognizedOn",
                "ReliefStatus.validFrom",
                "ReliefStatus.validTo",
            ]
            if self.identity_department:
                fields.append("ReliefStatus.sourceDepartment")
        if self.enrollments:
            fields += ["Person.enrollments", "Enrollment.status"]
            for shown, field in (
                (self.insurance_type, "Enrollment.insuranceType"),
                (self.subsidy_category, "Enrollment.subsidyCategory"),
                (self.subsidy_amount, "Enrollment.subsidyAmount"),
            ):
                if shown:
                    fields.append(field)
        return fields


@dataclass(frozen=True, slots=True)
class ChainEvent:
    on: date
    kind: ChainEventKind
    summary: str  # Chinese; never a name or an ID number
    department: str | None = None  # the department that acted (or must act)
    category: str | None = None  # the relief category concerned
    task_id: uuid.UUID | None = None
    warning_id: uuid.UUID | None = None
    anomaly_id: uuid.UUID | None = None
    tie: str = ""  # a stable order among events of one kind and day (the source row's id)
    at: datetime | None = None  # the instant, for events recorded with one (receipts)
    # Another province's code: the event came from its gateway (issue 18 item 5).
    origin: str | None = None

    @property
    def order(self) -> tuple[date, int, str]:
        return (self.on, _KIND_ORDER[self.kind], self.tie)


async def relief_chain(
    execute: Execute,
    person_id: uuid.UUID,
    visibility: ChainVisibility,
    rules: ProvinceRules,
) -> list[ChainEvent]:
    """The events of one person's chain the caller may see, by date then a stable order.

    ``person_id`` must come out of the caller's scoped lookup: this function narrows the
    person's records, not the person."""
    events: list[ChainEvent] = []
    if visibility.identities:
        events += await _identities(execute, person_id, visibility)
    if visibility.enrollments:
        events += await _enrollments(execute, person_id, visibility)
    if visibility.warnings:
        events += await _warnings(execute, person_id, visibility, rules)
    if visibility.tasks:
        events += await _tasks(execute, person_id, visibility)
        events += await _other_provinces(execute, person_id, visibility)
    if visibility.anomalies:
        events += await _anomalies(execute, person_id, visibility)
    if visibility.other_departments:
        events += await _deaths(execute, person_id)
    return sorted(events, key=lambda event: event.order)


# ---------------------------------------------------------------- sources
async def _identities(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility
) -> list[ChainEvent]:
    stmt = (
        select(
            ReliefStatus.id,
            ReliefStatus.category,
            ReliefStatus.source_department,
            ReliefStatus.recognized_on,
            ReliefStatus.valid_from,
            ReliefStatus.valid_to,
        )
        .where(ReliefStatus.person_id == person_id)
        .order_by(ReliefStatus.id)
    )
    if visibility.as_reported:
        stmt = stmt.where(ReliefStatus.county_code.like(visibility.region + "%"))
    events: list[ChainEvent] = []
    for row in await execute(stmt):
        category = _category_zh(row.category)
        department = row.source_department if visibility.identity_department else None
        by = _department_zh(department)
        since = "" if row.valid_from == row.recognized_on else f", 自 {row.valid_from} 起有效"
        events.append(
            ChainEvent(
                on=row.recognized_on,
                kind=ChainEventKind.IDENTITY_RECOGNIZED,
                summary=f"{by}认定为{category}{since}",
                department=department,
                category=row.category,
                tie=f"{row.id:020d}",
            )
        )
        if row.valid_to is not None:
            events.append(
                ChainEvent(
                    on=row.valid_to,
                    kind=ChainEventKind.IDENTITY_EXITED,
                    summary=f"{category}身份终止 (最后有效日 {row.valid_to})",
                    department=department,
                    category=row.category,
                    tie=f"{row.id:020d}",
                )
            )
    return events


async def _enrollments(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility
) -> list[ChainEvent]:
    stmt = (
        select(
            Enrollment.id,
            Enrollment.year,
            Enrollment.insurance_type,
            Enrollment.status,
            Enrollment.subsidy_category,
            Enrollment.subsidy_amount,
        )
        .where(Enrollment.person_id == person_id)
        .order_by(Enrollment.id)
    )
    if visibility.as_reported:
        stmt = stmt.where(Enrollment.region_code.like(visibility.region + "%"))
    events: list[ChainEvent] = []
    for row in await execute(stmt):
        parts = [f"{row.year}年度"]
        if visibility.insurance_type:
            parts.append(_INSURANCE_TYPE_ZH.get(row.insurance_type, row.insurance_type))
        parts.append(_ENROLLMENT_STATUS_ZH.get(row.status, row.status))
        category = row.subsidy_category if visibility.subsidy_category else None
        if category:
            parts.append(f"资助类别 {_category_zh(category)}")
        if visibility.subsidy_amount and row.subsidy_amount is not None:
            parts.append(f"资助参保 {_money(row.subsidy_amount)} 元")
        events.append(
            ChainEvent(
                # An enrollment is a year's fact: it is placed on the first day of that year.
                on=date(row.year, 1, 1),
                kind=_ENROLLMENT_KIND.get(row.status, ChainEventKind.ENROLLED),
                summary="参保: " + ", ".join(parts),
                department=Department.MEDICAL_INSURANCE.value,
                category=category,
                tie=f"{row.id:020d}",
            )
        )
    return events


async def _warnings(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility, rules: ProvinceRules
) -> list[ChainEvent]:
    stmt = select(
        CostWarning.id,
        CostWarning.month,
        CostWarning.rule,
        CostWarning.measure,
        CostWarning.figure,
        CostWarning.threshold,
        CostWarning.created_at,
    ).where(
        CostWarning.person_id == person_id,
        CostWarning.county_code.like(visibility.region + "%"),
    )
    if not visibility.other_departments:
        # Only the warnings pushed to the caller's department (001 §4: warnings go to civil
        # affairs and rural revitalisation of the person's county).
        stmt = stmt.where(
            exists(
                select(Task.id).where(
                    Task.warning_id == CostWarning.id, Task.department == visibility.department
                )
            )
        )
    described = {rule.rule: rule.description for rule in rules.warnings}
    events: list[ChainEvent] = []
    for row in await execute(stmt.order_by(CostWarning.id)):
        rule = described.get(row.rule, row.rule)
        if row.measure == "inpatient_count":
            figures = f"住院 {int(row.figure)} 次, 达到 {int(row.threshold)} 次"
        else:
            figures = f"个人负担 {_money(row.figure)} 元, 超过标准 {_money(row.threshold)} 元"
        events.append(
            ChainEvent(
                on=_beijing_day(row.created_at),
                kind=ChainEventKind.WARNING,
                summary=f"{row.month} 高额医疗费用预警 ({rule}): {figures}",
                department=Department.MEDICAL_INSURANCE.value,
                warning_id=row.id,
                tie=str(row.id),
            )
        )
    return events


async def _tasks(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility
) -> list[ChainEvent]:
    stmt = select(
        Task.id,
        Task.kind,
        Task.department,
        Task.category,
        Task.warning_id,
        Task.opened_on,
        Task.due_on,
        Task.answer,
        Task.answer_category,
        Task.answered_on,
        Task.delivered_at,
        Task.read_at,
    ).where(Task.person_id == person_id, Task.county_code.like(visibility.region + "%"))
    if not visibility.other_departments:
        stmt = stmt.where(Task.department == visibility.department)
    events: list[ChainEvent] = []
    for row in await execute(stmt.order_by(Task.id)):
        department = _department_zh(row.department)
        about = _TASK_KIND_ZH.get(row.kind, "待核实事项")
        if row.category:
            about += f" ({_category_zh(row.category)})"
        warning_id = row.warning_id if visibility.warnings else None
        events.append(
            ChainEvent(
                on=row.opened_on,
                kind=ChainEventKind.TASK_PUSHED,
                summary=f"推送{department}: {about}; 应于 {row.due_on} 前答复",
                department=row.department,
                category=row.category,
                task_id=row.id,
                warning_id=warning_id,
                tie=str(row.id),
            )
        )
        # Receipts (issue 18 item 4): reached the department's system; opened by its people.
        for at, kind, said in (
            (row.delivered_at, ChainEventKind.TASK_DELIVERED, "已送达{}业务系统"),
            (row.read_at, ChainEventKind.TASK_READ, "{}已查阅"),
        ):
            if at is not None:
                moment = as_utc(at)
                events.append(
                    ChainEvent(
                        on=moment.astimezone(CHINA_TZ).date(),
                        kind=kind,
                        summary=said.format(department)
                        + f" ({moment.astimezone(CHINA_TZ):%Y-%m-%d %H:%M})",
                        department=row.department,
                        task_id=row.id,
                        warning_id=warning_id,
                        tie=str(row.id),
                        at=moment,
                    )
                )
        if row.answered_on is not None:
            answer = _ANSWER_ZH.get(row.answer or "", row.answer or "已答复")
            if row.answer_category:
                answer += f" ({_category_zh(row.answer_category)})"
            late = f", 超过期限 {row.due_on}" if row.answered_on > row.due_on else ""
            events.append(
                ChainEvent(
                    on=row.answered_on,
                    kind=ChainEventKind.TASK_ANSWERED,
                    summary=f"{department}答复: {answer}{late}",
                    department=row.department,
                    category=row.answer_category,
                    task_id=row.id,
                    warning_id=warning_id,
                    tie=str(row.id),
                )
            )
    return events


async def _anomalies(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility
) -> list[ChainEvent]:
    stmt = select(
        Anomaly.id,
        Anomaly.kind,
        Anomaly.department,
        Anomaly.opened_on,
        Anomaly.due_on,
        Anomaly.resolved_on,
        Anomaly.resolution,
    ).where(Anomaly.person_id == person_id, Anomaly.county_code.like(visibility.region + "%"))
    if not visibility.other_departments:
        stmt = stmt.where(Anomaly.department == visibility.department)
    events: list[ChainEvent] = []
    for row in await execute(stmt.order_by(Anomaly.id)):
        department = _department_zh(row.department)
        what = _ANOMALY_KIND_ZH.get(row.kind, "数据不一致")
        events.append(
            ChainEvent(
                on=row.opened_on,
                kind=ChainEventKind.ANOMALY_OPENED,
                summary=f"发现异常: {what}; 回传{department}核实, 期限 {row.due_on} (003 §2)",
                department=row.department,
                anomaly_id=row.id,
                tie=str(row.id),
            )
        )
        if row.resolved_on is not None:
            resolution = _RESOLUTION_ZH.get(row.resolution or "", "已处理")
            events.append(
                ChainEvent(
                    on=row.resolved_on,
                    kind=ChainEventKind.ANOMALY_RESOLVED,
                    summary=f"{department}处理异常: {resolution}",
                    department=row.department,
                    anomaly_id=row.id,
                    tie=str(row.id),
                )
            )
    return events


async def _deaths(execute: Execute, person_id: uuid.UUID) -> list[ChainEvent]:
    """The death health reported (vital_event), else the date stored on the person."""
    stmt = (
        select(Person.deceased_on, VitalEvent.event_date)
        .select_from(Person)
        .outerjoin(VitalEvent, and_(VitalEvent.person_id == Person.id, VitalEvent.event == "DEATH"))
        .where(Person.id == person_id)
    )
    row = (await execute(stmt)).first()
    if row is None:
        return []
    day = row.event_date or row.deceased_on
    if day is None:
        return []
    return [
        ChainEvent(
            on=day,
            kind=ChainEventKind.DEATH,
            summary=f"{_department_zh(Department.HEALTH.value)}报告死亡",
            department=Department.HEALTH.value,
        )
    ]


# Outbox kinds as chain kinds, for events another province's gateway sent (省际交换).
_EXCHANGED_KIND = {
    "task.pushed": ChainEventKind.TASK_PUSHED,
    "task.answered": ChainEventKind.TASK_ANSWERED,
    "warning.raised": ChainEventKind.WARNING,
    "anomaly.opened": ChainEventKind.ANOMALY_OPENED,
    "anomaly.closed": ChainEventKind.ANOMALY_RESOLVED,
    "identity.recognised": ChainEventKind.IDENTITY_RECOGNIZED,
}


async def _other_provinces(
    execute: Execute, person_id: uuid.UUID, visibility: ChainVisibility
) -> list[ChainEvent]:
    """Events received from other provinces' gateways (``outbox_event.origin``, issue 18
    item 5), narrowed like tasks: the caller's jurisdiction, its own department's unless the
    policy grants the other departments' work."""
    stmt = select(
        OutboxEvent.id,
        OutboxEvent.kind,
        OutboxEvent.audience,
        OutboxEvent.occurred_at,
        OutboxEvent.origin,
    ).where(
        OutboxEvent.person_id == person_id,
        OutboxEvent.origin.is_not(None),
        OutboxEvent.county_code.like(visibility.region + "%"),
        OutboxEvent.kind.in_(sorted(_EXCHANGED_KIND)),
    )
    if not visibility.other_departments:
        stmt = stmt.where(OutboxEvent.audience == visibility.department)
    names = {province.code: province.name for province in provinces()}
    events: list[ChainEvent] = []
    for row in await execute(stmt.order_by(OutboxEvent.id)):
        origin = str(row.origin)
        province = names.get(origin, origin)
        what = EVENT_KIND_NAMES_ZH.get(EventKind(row.kind), row.kind)
        known = row.audience in {department.value for department in Department}
        to = f" ({_department_zh(row.audience)})" if known else ""
        events.append(
            ChainEvent(
                on=_beijing_day(row.occurred_at),
                kind=_EXCHANGED_KIND[row.kind],
                summary=f"{province}网关传来: {what}{to}",
                department=row.audience if known else None,
                tie=f"exchange:{row.id}",
                at=as_utc(row.occurred_at),
                origin=origin,
            )
        )
    return events


# ---------------------------------------------------------------- wording
def _department_zh(code: str | None) -> str:
    if code is None:
        return ""
    try:
        return DEPARTMENT_NAMES_ZH[Department(code)]
    except ValueError:
        return code


def _category_zh(code: str) -> str:
    return CATEGORY_NAMES_ZH.get(code, code)


def _money(amount: Decimal | int | str) -> str:
    return f"{Decimal(str(amount)):.2f}"


def _beijing_day(moment: datetime) -> date:
    return as_utc(moment).astimezone(CHINA_TZ).date()
