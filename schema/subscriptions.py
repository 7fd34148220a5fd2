"""Live worklists (实时工作清单, issue 18 item 3): ``subscription { worklistEvents(kinds: …) }``,
served over Server-Sent Events by ``gateway.http.sse`` (the GraphQL over SSE protocol).

Each event of the outbox the caller's department hears, inside its jurisdiction, is read again
through the same scoped storage a query uses — ``DepartmentTasks`` as ``tasks`` does,
``WarningReader`` as ``warnings``, ``DepartmentExchange`` as ``anomalies`` — narrowed to the
event's row, and rendered with the same types (``Task``, ``Warning``, ``Anomaly``). So the row
scope and the field guard decide what an event shows exactly as in a query; a row the caller
may not see is skipped without a trace (not even that it exists).

Per event the transport (``LiveFeed.scope``) verifies the token again, reloads the policy in
force, opens a short database connection and gives the context a fresh guard and scoped
storage; the connection is closed when the event has been rendered. Kinds are granted by the
operations of the matching queries: ``Loop.tasks``, ``Loop.warnings``, ``Ingest.anomalies``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, cast

import strawberry

from gateway.domain.errors import BadUserInput, Forbidden
from gateway.loop.tasks import DepartmentTasks, TaskCriteria
from gateway.loop.warnings import WarningCriteria, WarningReader
from gateway.storage.exchange import AnomalyCriteria, DepartmentExchange
from gateway.storage.models import Anomaly as AnomalyRow
from gateway.storage.models import CostWarning as WarningRow
from gateway.storage.models import Task as TaskRow
from schema.context import RequestContext
from schema.exchange import Anomaly
from schema.exchange import _anomaly as as_anomaly
from schema.tasks import Task
from schema.tasks import _task as as_task
from schema.types import Ctx
from schema.warnings import CostWarning
from schema.warnings import _warning as as_warning


@strawberry.enum(description="实时工作清单的事件类型")
class WorklistEventKind(Enum):
    TASK_PUSHED = strawberry.enum_value("task.pushed", description="新推送的任务")
    TASK_ANSWERED = strawberry.enum_value(
        "task.answered", description="本部门推送的任务已被答复 (含需补充材料)"
    )
    WARNING_RAISED = strawberry.enum_value("warning.raised", description="新的高额费用预警")
    ANOMALY_OPENED = strawberry.enum_value("anomaly.opened", description="新回传的异常")
    ANOMALY_CLOSED = strawberry.enum_value("anomaly.closed", description="异常已处理")


# The query operation that grants each kind (the same grant as reading the list).
OPERATION_OF = {
    WorklistEventKind.TASK_PUSHED: "Loop.tasks",
    WorklistEventKind.TASK_ANSWERED: "Loop.tasks",
    WorklistEventKind.WARNING_RAISED: "Loop.warnings",
    WorklistEventKind.ANOMALY_OPENED: "Ingest.anomalies",
    WorklistEventKind.ANOMALY_CLOSED: "Ingest.anomalies",
}

# The outbox kinds a worklist hears (``gateway.storage.outbox.EventKind`` values).
OUTBOX_KINDS: tuple[str, ...] = tuple(cast(str, kind.value) for kind in WorklistEventKind)

KIND_NAMES_ZH = {
    WorklistEventKind.TASK_PUSHED: "任务推送",
    WorklistEventKind.TASK_ANSWERED: "任务答复",
    WorklistEventKind.WARNING_RAISED: "高额费用预警",
    WorklistEventKind.ANOMALY_OPENED: "异常回传",
    WorklistEventKind.ANOMALY_CLOSED: "异常已处理",
}


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One outbox event handed to the resolver (no name, no ID number)."""

    id: int
    kind: str
    subject_id: str
    occurred_at: datetime


class LiveFeed(Protocol):
    """What the transport gives a subscription (``gateway.http.sse``)."""

    async def next_event(self, kinds: frozenset[str]) -> LiveEvent:
        """The next event of these kinds for the caller (replayed ones first)."""
        ...

    def scope(self) -> AbstractAsyncContextManager[None]:
        """Around one event: token and policy checked again, a short connection opened and
        the context's guard and scoped storage renewed on it."""
        ...


@dataclass
class LiveContext(RequestContext):
    """A subscription's context: a request context whose storage is renewed per event."""

    live: LiveFeed | None = None


@strawberry.type(description="实时工作清单事件: 按本部门的访问策略呈现, 与查询相同")
class WorklistEvent:
    id: strawberry.ID = strawberry.field(description="事件编号 (即 SSE 的 id, 可用于断点续传)")
    kind: WorklistEventKind = strawberry.field(description="事件类型")
    occurred_at: datetime = strawberry.field(description="发生时间")
    task: Task | None = strawberry.field(description="涉及的任务 (任务事件)")
    warning: CostWarning | None = strawberry.field(description="涉及的预警 (预警事件)")
    anomaly: Anomaly | None = strawberry.field(description="涉及的异常 (异常事件)")


def granted_kinds(
    context: RequestContext, kinds: list[WorklistEventKind] | None
) -> frozenset[WorklistEventKind]:
    """The kinds asked for (all when none are named) that the caller's policy grants; a kind
    asked for by name and not granted is refused."""
    operations = context.guard.decision.operations
    if kinds is not None:
        if not kinds:
            raise BadUserInput("kinds 不能为空列表; 不填则订阅全部有权查看的事件类型")
        refused = [KIND_NAMES_ZH[kind] for kind in kinds if OPERATION_OF[kind] not in operations]
        if refused:
            raise Forbidden("无权订阅以下事件类型: " + "、".join(refused))
        return frozenset(kinds)
    granted = frozenset(kind for kind in WorklistEventKind if OPERATION_OF[kind] in operations)
    if not granted:
        raise Forbidden("无权订阅实时工作清单: 本部门的访问策略未授予任务、预警或异常的查看权限")
    return granted


Execute = Callable[[Any], Awaitable[Any]]


def _narrowed(execute: Execute, condition: Any) -> Execute:
    """The scoped storage's own statement, narrowed to one row: whatever the reader's scope
    excludes stays excluded."""

    async def run(statement: Any) -> Any:
        return await execute(statement.where(condition))

    return run


async def _task(context: RequestContext, subject_id: uuid.UUID) -> Task | None:
    principal = context.principal
    service = DepartmentTasks(
        _narrowed(context.people.execute, TaskRow.id == subject_id),
        context.engine,
        department=principal.department.value,
        region=principal.region,
        today=context.today,
        rules=context.rules,
        other_departments="Loop.otherDepartments" in context.guard.decision.operations,
    )
    rows, _ = await service.page(TaskCriteria(), first=1, after=None)
    return as_task(rows[0], service, context.today) if rows else None


async def _warning(context: RequestContext, subject_id: uuid.UUID) -> CostWarning | None:
    principal = context.principal
    reader = WarningReader(
        _narrowed(context.people.execute, WarningRow.id == subject_id),
        department=principal.department.value,
        region=principal.region,
        all_departments="Loop.otherDepartments" in context.guard.decision.operations,
    )
    rows, _ = await reader.page(WarningCriteria(), first=1, after=None)
    if not rows:
        return None
    # Warnings are person-level facts: an event read is audited as the list's read is.
    context.guard.touched_person_data = True
    return as_warning(rows[0], {rule.rule: rule.description for rule in context.rules.warnings})


async def _anomaly(context: RequestContext, subject_id: uuid.UUID) -> Anomaly | None:
    principal = context.principal
    exchange = DepartmentExchange(
        _narrowed(context.people.execute, AnomalyRow.id == subject_id),
        context.engine,
        department=principal.department.value,
        region=principal.region,
        today=context.today,
    )
    rows, _ = await exchange.anomalies(AnomalyCriteria(), first=1, after=None)
    return as_anomaly(rows[0], context.today) if rows else None


async def render(context: RequestContext, event: LiveEvent) -> WorklistEvent | None:
    """The event as the caller may see it, or None when its row is outside the caller's
    scope (or gone)."""
    kind = WorklistEventKind(event.kind)
    try:
        subject_id = uuid.UUID(event.subject_id)
    except ValueError:
        return None
    task = warning = anomaly = None
    if OPERATION_OF[kind] == "Loop.tasks":
        task = await _task(context, subject_id)
        found: object = task
    elif OPERATION_OF[kind] == "Loop.warnings":
        warning = await _warning(context, subject_id)
        found = warning
    else:
        anomaly = await _anomaly(context, subject_id)
        found = anomaly
    if found is None:
        return None
    return WorklistEvent(
        id=strawberry.ID(str(event.id)),
        kind=kind,
        occurred_at=event.occurred_at,
        task=task,
        warning=warning,
        anomaly=anomaly,
    )


async def worklist_events(
    info: Ctx, kinds: list[WorklistEventKind] | None = None
) -> AsyncGenerator[WorklistEvent, None]:
    context = info.context
    live: LiveFeed | None = getattr(context, "live", None)
    if live is None:
        raise BadUserInput("实时订阅须以 POST /graphql 并带 Accept: text/event-stream 打开")
    wanted = granted_kinds(context, kinds)
    outbox_kinds = frozenset(cast(str, kind.value) for kind in wanted)
    while True:
        event = await live.next_event(outbox_kinds)
        async with live.scope():
            # The policy in force now: a grant withdrawn since the stream opened ends it.
            kind = WorklistEventKind(event.kind)
            if OPERATION_OF[kind] not in context.guard.decision.operations:
                raise Forbidden(
                    f"访问策略已变更, 无权再订阅{KIND_NAMES_ZH[kind]}事件; 实时更新已结束"
                )
            rendered = await render(context, event)
            if rendered is None:
                continue  # not the caller's to see: nothing is sent, not even the id
            yield rendered


@strawberry.type(
    description="实时订阅 (GraphQL over SSE: POST /graphql, Accept: text/event-stream)"
)
class Subscription:
    worklist_events: AsyncGenerator[WorklistEvent, None] = strawberry.subscription(
        resolver=worklist_events,
        description=(
            "本部门、本辖区的任务、预警和异常的实时事件 (按事件类型筛选, 不填为全部有权查看的类型);"
            " 行范围与字段规则与查询相同; 断线后带 Last-Event-ID 重连可补发错过的事件"
        ),
    )


__all__ = [
    "OUTBOX_KINDS",
    "LiveContext",
    "LiveEvent",
    "LiveFeed",
    "Subscription",
    "WorklistEvent",
    "WorklistEventKind",
    "granted_kinds",
    "render",
    "worklist_events",
]
