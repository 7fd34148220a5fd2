"""High-cost warnings in GraphQL (``warnings``): who crossed which rule, with which figure,
and what was pushed to whom (DOMAIN.md rule 7, 001 §4, 002 §3, 004 §2).

Granted by policy (``Loop.warnings``) and narrowed in SQL by ``gateway.loop.warnings``: the
caller's jurisdiction, and only the warnings pushed to its own department unless it may see
other departments' work (``Loop.otherDepartments``: medical insurance, the hub). The person
goes through the caller's row scope (``ScopedPeople``); the figure is cost data and is released
only with a read grant on the cost-burden field it comes from.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry

from gateway.domain.errors import BadUserInput
from gateway.loop.warnings import WarningCriteria, WarningReader
from schema.enums import Level
from schema.paging import PageInfo
from schema.tasks import Task
from schema.tasks import _service as task_service
from schema.tasks import _task as as_task
from schema.types import Ctx, Person, as_person

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_RULE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")
# The cost-burden field a warning's figure is read from (the field guard decides on it).
_FIGURE_FIELD = {
    "PERSONAL_BURDEN": "CostBurden.personalBurden",
    "INPATIENT_COUNT": "CostBurden.inpatientCount",
}


@strawberry.enum(description="预警的监测指标")
class WarningMeasure(Enum):
    PERSONAL_BURDEN = strawberry.enum_value(
        "personal_burden", description="年度个人累计负担 (经基本医保、大病保险后的个人自付, 元)"
    )
    INPATIENT_COUNT = strawberry.enum_value("inpatient_count", description="年度住院次数")


@strawberry.type(
    name="Warning", description="高额医疗费用负担预警: 某人某年度的费用达到某项监测标准"
)
class CostWarning:
    id: strawberry.ID
    month: str = strawberry.field(description="发现预警的月份 (YYYY-MM)")
    year: int = strawberry.field(description="费用年度")
    rule: str = strawberry.field(description="预警规则代码, 如 SHANXI_OTHERS_20000")
    rule_description: str = strawberry.field(description="预警规则说明")
    measure: WarningMeasure = strawberry.field(description="监测指标")
    threshold: Decimal = strawberry.field(description="监测标准 (元或次)")
    attention: Level = strawberry.field(description="需予以关注的层级")
    region_code: str = strawberry.field(description="人员所在县 (市、区) 行政区划代码")
    person_id: strawberry.Private[uuid.UUID]
    stored_figure: strawberry.Private[Decimal]

    @strawberry.field(
        description="触发预警的数值 (个人负担金额或住院次数); 属费用信息, 无权读取时为空"
    )
    def figure(self, info: Ctx) -> Decimal | None:
        field = _FIGURE_FIELD[self.measure.name]
        return info.context.guard.release(field, self.person_id, lambda: self.stored_figure)

    @strawberry.field(description="预警人员 (按调用方的访问策略返回; 不可见时为空)")
    async def person(self, info: Ctx) -> Person | None:
        context = info.context
        context.guard.touched_person_data = True
        rows = await context.loader(("person_by_id",), context.people.by_ids).load(self.person_id)
        return as_person(rows[0]) if rows else None

    @strawberry.field(description="预警产生的推送任务 (本部门的; 医保部门可见全部部门的)")
    async def tasks(self, info: Ctx) -> list[Task]:
        context = info.context
        # One loader for the page: every warning's tasks in one scoped query.
        loader = context.loader(("warning_tasks",), _reader(info).tasks)
        rows = await loader.load(uuid.UUID(str(self.id)))
        service = task_service(info)
        return [as_task(row, service, context.today) for row in rows]


def _warning(row: Any, descriptions: dict[str, str]) -> CostWarning:
    return CostWarning(
        id=strawberry.ID(str(row.id)),
        month=row.month,
        year=row.year,
        rule=row.rule,
        rule_description=descriptions.get(row.rule, row.rule),
        measure=WarningMeasure(row.measure),
        threshold=Decimal(row.threshold),
        attention=Level(row.attention),
        region_code=row.county_code,
        person_id=row.person_id,
        stored_figure=Decimal(row.figure),
    )


@strawberry.type
class WarningEdge:
    cursor: str
    node: CostWarning


@strawberry.type(description="预警分页结果 (最近月份在前)")
class WarningConnection:
    edges: list[WarningEdge]
    page_info: PageInfo
    criteria: strawberry.Private[WarningCriteria]

    @strawberry.field(description="调用方可见范围内符合条件的预警总数")
    async def total_count(self, info: Ctx) -> int:
        return await _reader(info).count(self.criteria)


@strawberry.input(description="预警筛选条件")
class WarningFilter:
    month: str | None = strawberry.field(default=None, description="发现预警的月份 YYYY-MM")
    rule: str | None = strawberry.field(default=None, description="预警规则代码")
    attention: Level | None = strawberry.field(default=None, description="关注层级")
    region_prefix: str | None = strawberry.field(
        default=None, description="县及以上行政区划代码前缀 (2-6 位), 在调用方辖区内进一步缩小"
    )


def _reader(info: Ctx) -> WarningReader:
    context = info.context
    return WarningReader(
        context.people.execute,
        department=context.principal.department.value,
        region=context.principal.region,
        all_departments="Loop.otherDepartments" in context.guard.decision.operations,
    )


def _criteria(warning_filter: WarningFilter | None) -> WarningCriteria:
    if warning_filter is None:
        return WarningCriteria()
    month, rule, prefix = warning_filter.month, warning_filter.rule, warning_filter.region_prefix
    if month is not None and not _MONTH.fullmatch(month):
        raise BadUserInput("month 应为 YYYY-MM, 如 2026-10")
    if rule is not None and not _RULE.fullmatch(rule):
        raise BadUserInput("rule 应为预警规则代码 (大写英文), 如 SHANXI_OTHERS_20000")
    if prefix is not None and not (prefix.isascii() and prefix.isdigit() and 2 <= len(prefix) <= 6):
        raise BadUserInput("regionPrefix 应为 2 到 6 位数字 (预警按县汇总)")
    return WarningCriteria(
        month=month,
        rule=rule,
        attention=warning_filter.attention.name.lower() if warning_filter.attention else None,
        region_prefix=prefix or None,
    )


def _cursor(month: str, warning_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"warning:{month}|{warning_id.hex}".encode()).decode()


def _decode(cursor: str) -> tuple[str, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        head, _, rest = raw.partition(":")
        month, _, hex_id = rest.rpartition("|")
        if head != "warning" or not _MONTH.fullmatch(month):
            raise ValueError(raw)
        return month, uuid.UUID(hex=hex_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


async def warnings(
    info: Ctx, filter: WarningFilter | None = None, first: int = 50, after: str | None = None
) -> WarningConnection:
    context = info.context
    context.guard.require_operation("Loop.warnings")
    if first < 0 or first > context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {context.max_page_size} 之间")
    criteria = _criteria(filter)
    position = _decode(after) if after else None
    # Warnings are person-level facts (someone's costs crossed a line): the request is audited.
    context.guard.touched_person_data = True
    rows, has_next = await _reader(info).page(criteria, first=first, after=position)
    descriptions = {rule.rule: rule.description for rule in context.rules.warnings}
    edges = [
        WarningEdge(cursor=_cursor(row.month, row.id), node=_warning(row, descriptions))
        for row in rows
    ]
    return WarningConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        criteria=criteria,
    )
