"""The closed loop's tasks in GraphQL: ``tasks`` (what is pushed to my department, most urgent
first) and ``answerTask`` (answer one within its deadline; a recognition creates the relief
status). Rules, scoping and writes are in ``gateway.loop.tasks``; these are thin resolvers.

Granted by policy (``Loop.tasks``, ``Loop.answerTask``, action ``call``), then narrowed in SQL to
the caller's department and jurisdiction; ``Loop.otherDepartments`` (the hub, medical
insurance) widens listing to every department, never answering.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry

from gateway.domain.clock import as_utc
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.loop import tasks as rules
from gateway.loop.tasks import DepartmentTasks, TaskCriteria
from schema.enums import Department, ReliefCategory, TaskKind
from schema.paging import PageInfo
from schema.types import Ctx, Person, as_person

_CURSOR_PREFIX = "task"
# acknowledgeTasks: one page of the workbench, or a system confirming what it was delivered
MAX_ACKNOWLEDGE = 500


@strawberry.enum(description="任务状态 (每个任务恰好一个; 期限优先: 超期、临期先于待办、待补充)")
class TaskState(Enum):
    OPEN = strawberry.enum_value("OPEN", description="待办 (期限未临近)")
    WAITING = strawberry.enum_value(
        "WAITING", description="待补充材料: 已答复需补充材料, 期限重新计算, 仍需最终答复"
    )
    DUE_SOON = strawberry.enum_value("DUE_SOON", description="临期: 几个工作日内到期 (含今日到期)")
    OVERDUE = strawberry.enum_value("OVERDUE", description="已超期未答复")
    ANSWERED = strawberry.enum_value("ANSWERED", description="已答复")


@strawberry.enum(description="任务答复")
class TaskAnswer(Enum):
    RECOGNIZED = strawberry.enum_value(
        "RECOGNIZED", description="已认定为救助对象 (须填写类别; 生成救助身份) — 预警核查任务"
    )
    NOT_ELIGIBLE = strawberry.enum_value(
        "NOT_ELIGIBLE", description="经核查不符合认定条件 — 预警核查任务"
    )
    IDENTITY_MARKED = strawberry.enum_value(
        "IDENTITY_MARKED", description="参保核查并完成身份标识 — 参保核查任务"
    )
    NOT_ENROLLED = strawberry.enum_value(
        "NOT_ENROLLED", description="未参保, 已动员参保 — 参保核查任务"
    )
    NEEDS_MORE_INFORMATION = strawberry.enum_value(
        "NEEDS_MORE_INFORMATION",
        description="需补充材料 (须在 note 说明; 期限重新计算, 之后仍需最终答复) — 两类任务",
    )


@strawberry.type(description="任务所针对的高额费用预警")
class TaskWarning:
    id: strawberry.ID
    rule: str = strawberry.field(description="预警规则代码")
    rule_description: str = strawberry.field(description="预警规则说明")
    month: str = strawberry.field(description="预警月份 (YYYY-MM)")


@strawberry.type(description="推送任务: 推送给某部门、须在期限内答复 (5 个工作日)")
class Task:
    id: strawberry.ID
    kind: TaskKind = strawberry.field(description="任务类型")
    department: Department = strawberry.field(description="负责答复的部门")
    region_code: str = strawberry.field(description="任务所属县级辖区 (人员所在县)")
    category: ReliefCategory | None = strawberry.field(
        description="待核查的救助身份 (参保核查任务)"
    )
    opened_on: date = strawberry.field(description="推送日期")
    due_on: date = strawberry.field(description="答复期限 (含当日)")
    state: TaskState = strawberry.field(description="任务状态 (按今日与期限计算)")
    overdue: bool = strawberry.field(description="已超期未答复")
    working_days_left: int | None = strawberry.field(
        description="距期限的工作日数: 今日到期为 0, 超期为负数; 已答复时为空"
    )
    answer: TaskAnswer | None = strawberry.field(description="答复 (需补充材料时为其答复)")
    answer_category: ReliefCategory | None = strawberry.field(description="认定的救助类别")
    answered_on: date | None = strawberry.field(description="答复日期")
    answered_by: str | None = strawberry.field(description="答复人")
    note: str | None = strawberry.field(description="答复说明")
    delivered_at: datetime | None = strawberry.field(
        default=None, description="回执: 首次送达本部门业务系统的时刻 (Webhook 投递成功)"
    )
    read_at: datetime | None = strawberry.field(
        default=None, description="回执: 承办部门首次查阅的时刻 (打开任务或确认已阅)"
    )
    read_by: str | None = strawberry.field(default=None, description="回执: 首次查阅人")
    warning: TaskWarning | None = strawberry.field(description="所针对的预警 (预警核查任务)")
    person_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="涉及的人员 (按调用方的访问策略返回; 不可见时为空)")
    async def person(self, info: Ctx) -> Person | None:
        context = info.context
        context.guard.touched_person_data = True
        # One loader for the page: every task's person in one scoped query.
        rows = await context.loader(("person_by_id",), context.people.by_ids).load(self.person_id)
        return as_person(rows[0]) if rows else None


def _task(row: Any, service: DepartmentTasks, today: date) -> Task:
    state = service.state(row)
    answered = state is rules.TaskState.ANSWERED
    warning = None
    if row.warning_id is not None and row.warning_rule is not None:
        warning = TaskWarning(
            id=strawberry.ID(str(row.warning_id)),
            rule=row.warning_rule,
            rule_description=service.warning_description(row.warning_rule),
            month=row.warning_month,
        )
    return Task(
        id=strawberry.ID(str(row.id)),
        kind=TaskKind(row.kind),
        department=Department(row.department),
        region_code=row.county_code,
        category=ReliefCategory(row.category) if row.category else None,
        opened_on=row.opened_on,
        due_on=row.due_on,
        state=TaskState[state.name],
        overdue=state is rules.TaskState.OVERDUE,
        working_days_left=None if answered else rules.working_days_left(row.due_on, today),
        answer=TaskAnswer(row.answer) if row.answer else None,
        answer_category=ReliefCategory(row.answer_category) if row.answer_category else None,
        answered_on=row.answered_on,
        answered_by=row.answered_by,
        note=row.note,
        delivered_at=row.delivered_at and as_utc(row.delivered_at),
        read_at=row.read_at and as_utc(row.read_at),
        read_by=row.read_by,
        warning=warning,
        person_id=row.person_id,
    )


# ---------------------------------------------------------------- connection and filter
@strawberry.type
class TaskEdge:
    cursor: str
    node: Task


@strawberry.type(description="任务分页结果 (最紧急的在前: 按期限)")
class TaskConnection:
    edges: list[TaskEdge]
    page_info: PageInfo
    criteria: strawberry.Private[TaskCriteria]
    service: strawberry.Private[DepartmentTasks]

    @strawberry.field(description="符合条件的任务总数")
    async def total_count(self) -> int:
        return await self.service.count(self.criteria)


@strawberry.input(description="任务筛选条件")
class TaskFilter:
    state: TaskState | None = None
    kind: TaskKind | None = None
    department: Department | None = strawberry.field(
        default=None, description="负责答复的部门 (查看其他部门的任务需相应权限)"
    )
    region_prefix: str | None = strawberry.field(
        default=None, description="县级辖区代码前缀 (2-6 位数字), 在调用方辖区内进一步缩小"
    )
    due_before: date | None = strawberry.field(default=None, description="期限在该日或之前")


@strawberry.type(description="答复结果")
class AnswerTaskResult:
    task: Task
    relief_status_created: bool = strawberry.field(
        description="本次答复新建了救助身份 (已认定; 当日已有同一认定时为 false, 任务与之关联)"
    )


def _service(info: Ctx) -> DepartmentTasks:
    context = info.context
    principal = context.principal
    return DepartmentTasks(
        context.people.execute,
        context.engine,
        department=principal.department.value,
        region=principal.region,
        today=context.today,
        rules=context.rules,
        other_departments="Loop.otherDepartments" in context.guard.decision.operations,
    )


def _criteria(info: Ctx, task_filter: TaskFilter | None) -> TaskCriteria:
    if task_filter is None:
        return TaskCriteria()
    context = info.context
    # The GraphQL enum's names are the domain's department codes in upper case.
    department = task_filter.department.name.lower() if task_filter.department else None
    other = department is not None and department != context.principal.department.value
    if other and "Loop.otherDepartments" not in context.guard.decision.operations:
        raise Forbidden("无权查看其他部门的任务 (只能按本部门筛选)")
    prefix = task_filter.region_prefix
    if prefix is not None and not (prefix.isascii() and prefix.isdigit() and 2 <= len(prefix) <= 6):
        raise BadUserInput("regionPrefix 应为 2 到 6 位数字 (任务按县级辖区分派)")
    return TaskCriteria(
        state=rules.TaskState(task_filter.state.name) if task_filter.state else None,
        kind=rules.TaskKind(task_filter.kind.name) if task_filter.kind else None,
        department=department,
        region_prefix=prefix or None,
        due_before=task_filter.due_before,
    )


def _cursor(due_on: date, task_id: uuid.UUID) -> str:
    raw = f"{_CURSOR_PREFIX}:{due_on.isoformat()}|{task_id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode(cursor: str) -> tuple[date, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        head, _, rest = raw.partition(":")
        key, _, hex_id = rest.rpartition("|")
        if head != _CURSOR_PREFIX:
            raise ValueError(raw)
        return date.fromisoformat(key), uuid.UUID(hex=hex_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


# ---------------------------------------------------------------- resolvers
async def tasks(
    info: Ctx, filter: TaskFilter | None = None, first: int = 50, after: str | None = None
) -> TaskConnection:
    context = info.context
    context.guard.require_operation("Loop.tasks")
    if first < 0 or first > context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {context.max_page_size} 之间")
    criteria = _criteria(info, filter)
    position = _decode(after) if after else None
    service = _service(info)
    rows, has_next = await service.page(criteria, first=first, after=position)
    edges = [
        TaskEdge(cursor=_cursor(row.due_on, row.id), node=_task(row, service, context.today))
        for row in rows
    ]
    return TaskConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        criteria=criteria,
        service=service,
    )


async def task(info: Ctx, id: strawberry.ID) -> Task | None:
    """One task; opened by the department it is pushed to, it leaves the read receipt."""
    context = info.context
    context.guard.require_operation("Loop.tasks")
    task_id = _task_id(id, "id")
    service = _service(info)
    row = await service.one(task_id)
    if row is None:
        return None
    opened = row.read_at is None and context.leaves_receipts
    if opened and await service.acknowledge([task_id], by=context.principal.subject):
        row = await service.one(task_id)
    return _task(row, service, context.today)


@strawberry.type(description="确认已阅的结果")
class AcknowledgeTasksResult:
    acknowledged: int = strawberry.field(description="本次新记录已阅回执的任务数")
    tasks: list[Task] = strawberry.field(description="本次记录了回执的任务")


async def acknowledge_tasks(info: Ctx, ids: list[strawberry.ID]) -> AcknowledgeTasksResult:
    """The department's system (or clerk) confirms it has received and read its tasks."""
    context = info.context
    context.guard.require_operation("Loop.answerTask")
    if len(ids) > MAX_ACKNOWLEDGE:
        raise BadUserInput(f"一次最多确认 {MAX_ACKNOWLEDGE} 个任务")
    service = _service(info)
    marked = await service.acknowledge(
        [_task_id(value, "ids") for value in ids], by=context.principal.subject
    )
    rows = [row for task_id in marked if (row := await service.one(task_id)) is not None]
    return AcknowledgeTasksResult(
        acknowledged=len(marked), tasks=[_task(row, service, context.today) for row in rows]
    )


def _task_id(value: strawberry.ID, argument: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadUserInput(f"任务编号 {argument} 无效") from None


async def answer_task(
    info: Ctx,
    task_id: strawberry.ID,
    answer: TaskAnswer,
    category: ReliefCategory | None = None,
    note: str | None = None,
) -> AnswerTaskResult:
    """Answer a task pushed to the caller's department in its jurisdiction."""
    context = info.context
    context.guard.require_operation("Loop.answerTask")
    try:
        parsed = uuid.UUID(str(task_id))
    except ValueError:
        raise BadUserInput("任务编号 taskId 无效") from None
    service = _service(info)
    answered = await service.answer(
        parsed,
        rules.TaskAnswer(answer.name),
        category=category.name if category else None,
        note=note,
        answered_by=context.principal.subject,
        feeds=context.feeds,
    )
    return AnswerTaskResult(
        task=_task(answered.row, service, context.today),
        relief_status_created=answered.relief_status_created,
    )


__all__ = [
    "AcknowledgeTasksResult",
    "AnswerTaskResult",
    "Task",
    "TaskAnswer",
    "TaskConnection",
    "TaskFilter",
    "TaskKind",
    "TaskState",
    "TaskWarning",
    "acknowledge_tasks",
    "answer_task",
    "task",
    "tasks",
]
