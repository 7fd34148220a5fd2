"""``reliefChain(idNumber)``: one person's relief chain (一人一条救助链, 000 §1, 004 §1).

Granted by ``Loop.reliefChain``; the person is looked up exactly like ``person`` (a lookup by
ID number needs ``Person.idNumber`` in clear; absent and out of scope are both ``null``). Which
events the caller sees is decided once per request (``gateway.loop.chain.ChainVisibility``)
and filtered in SQL, a constant number of queries per chain.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum

import strawberry

from authz.decision import Effect
from gateway.domain.id_numbers import validate_id_number
from gateway.loop import chain as rules
from schema.enums import Department, ReliefCategory
from schema.prefetch import prefetch_people
from schema.types import Ctx, Person, as_person


@strawberry.enum(description="救助链事件类型")
class ChainEventKind(Enum):
    IDENTITY_RECOGNIZED = strawberry.enum_value("IDENTITY_RECOGNIZED", description="认定救助身份")
    ENROLLED = strawberry.enum_value("ENROLLED", description="正常参保 (参保年度)")
    ENROLLMENT_SUSPENDED = strawberry.enum_value(
        "ENROLLMENT_SUSPENDED", description="暂停参保 (参保年度)"
    )
    ENROLLMENT_TERMINATED = strawberry.enum_value(
        "ENROLLMENT_TERMINATED", description="终止参保 (参保年度)"
    )
    WARNING = strawberry.enum_value("WARNING", description="高额医疗费用预警")
    TASK_PUSHED = strawberry.enum_value("TASK_PUSHED", description="推送部门核实 (限期答复)")
    TASK_DELIVERED = strawberry.enum_value(
        "TASK_DELIVERED", description="推送已送达部门业务系统 (回执)"
    )
    TASK_READ = strawberry.enum_value("TASK_READ", description="部门已查阅推送任务 (回执)")
    TASK_ANSWERED = strawberry.enum_value("TASK_ANSWERED", description="部门答复核实结果")
    ANOMALY_OPENED = strawberry.enum_value("ANOMALY_OPENED", description="数据异常回传来源部门")
    ANOMALY_RESOLVED = strawberry.enum_value("ANOMALY_RESOLVED", description="来源部门处理异常")
    IDENTITY_EXITED = strawberry.enum_value(
        "IDENTITY_EXITED", description="救助身份终止 (退出或身份变更)"
    )
    DEATH = strawberry.enum_value("DEATH", description="死亡 (卫生健康委报告)")


@strawberry.type(description="救助链上的一个事件; 说明中不含姓名和身份证号码")
class ChainEvent:
    on: date = strawberry.field(name="date", description="日期 (参保事件为参保年度的1月1日)")
    kind: ChainEventKind = strawberry.field(description="事件类型")
    department: Department | None = strawberry.field(
        description="办理 (或须办理) 的部门; 调用方无权查看认定部门时为空"
    )
    category: ReliefCategory | None = strawberry.field(
        description="涉及的救助身份 (认定、退出、资助参保类别、核实的身份)"
    )
    summary: str = strawberry.field(description="说明 (中文)")
    task_id: strawberry.ID | None = strawberry.field(description="相关推送任务")
    warning_id: strawberry.ID | None = strawberry.field(description="相关高额费用预警")
    anomaly_id: strawberry.ID | None = strawberry.field(description="相关异常")
    at: datetime | None = strawberry.field(
        default=None, description="发生时刻 (有时刻记录的事件, 如送达、查阅回执; 其余为空)"
    )
    origin_province: str | None = strawberry.field(
        default=None, description="来源省份代码: 经省际交换由另一省网关传来的事件; 本省事件为空"
    )


@strawberry.type(description="一人一条救助链: 跨部门的认定、参保、预警、推送与答复、异常")
class ReliefChain:
    person: Person = strawberry.field(description="人员 (按调用方的访问策略返回各字段)")
    events: list[ChainEvent] = strawberry.field(
        description="按日期排序的事件, 只含调用方有权查看的部分"
    )


def _event(event: rules.ChainEvent) -> ChainEvent:
    return ChainEvent(
        on=event.on,
        kind=ChainEventKind(event.kind.value),
        department=Department(event.department) if event.department else None,
        category=ReliefCategory[event.category] if event.category else None,
        summary=event.summary,
        task_id=strawberry.ID(str(event.task_id)) if event.task_id else None,
        warning_id=strawberry.ID(str(event.warning_id)) if event.warning_id else None,
        anomaly_id=strawberry.ID(str(event.anomaly_id)) if event.anomaly_id else None,
        at=event.at,
        origin_province=event.origin,
    )


async def relief_chain(info: Ctx, id_number: str) -> ReliefChain | None:
    context = info.context
    guard = context.guard
    guard.require_operation("Loop.reliefChain")
    guard.require_argument("person.idNumber")
    normalized = validate_id_number(id_number, today=context.today)
    guard.touched_person_data = True
    row = await context.people.by_id_number_index(context.vault.id_number_index(normalized))
    if row is None:
        return None
    principal = context.principal
    visibility = rules.ChainVisibility.decide(
        # per person: fields follow the place through which the caller sees this one
        lambda field: guard.effect(field, row.id) is Effect.READ,
        guard.decision.operations,
        department=principal.department.value,
        region=principal.region,
        as_reported=row.id in context.reported,
    )
    events = await rules.relief_chain(context.people.execute, row.id, visibility, context.rules)
    guard.people.add(row.id)
    for field in visibility.released_fields():
        guard.relation(field, row.id)  # audit: which record fields the events revealed
    await prefetch_people(context, info._raw_info, [row], path=("person",))
    return ReliefChain(person=as_person(row), events=[_event(event) for event in events])
