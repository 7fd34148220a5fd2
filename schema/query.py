"""Root query fields: ``me``, ``person`` and ``persons`` (CONTRACT.md core)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date

import strawberry

from authz.decision import Effect
from authz.guard import FieldGuard
from gateway.domain.errors import BadUserInput
from gateway.domain.id_numbers import validate_id_number
from gateway.storage.people import PersonCriteria
from schema import audit as audit_fields
from schema import chain, exchange, policy
from schema import coverage as coverage_fields
from schema import deliveries as delivery_fields
from schema import simulation as simulation_fields
from schema import statistics as statistics_fields
from schema import tasks as task_fields
from schema import warnings as warning_fields
from schema.context import RequestContext
from schema.enums import Department, FieldEffect, Level, ReliefCategory
from schema.paging import PageInfo
from schema.prefetch import requested_relations
from schema.types import Ctx, FieldAccess, Person, as_person

_CURSOR_PREFIX = "person:"


def encode_cursor(person_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + person_id.hex).encode()).decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(raw)
        return uuid.UUID(hex=raw[len(_CURSOR_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


@strawberry.type(description="当前调用方及其在当前策略版本下的权限")
class Principal:
    subject: str
    department: Department
    level: Level
    region: str = strawberry.field(description="辖区行政区划代码")
    roles: list[str]
    purpose: str = strawberry.field(description="本次请求声明的用途 (X-Purpose)")
    policy_version: int
    row_scope: list[str] = strawberry.field(description="辖区内可见的人员范围 (策略行条件)")
    field_access: list[FieldAccess]
    operations: list[str] = strawberry.field(description="策略允许使用的数据报送操作")


@strawberry.input(description="人员筛选条件; 按无权读取的字段筛选会被拒绝 (FORBIDDEN)")
class PersonFilter:
    region_prefix: str | None = strawberry.field(
        default=None, description="行政区划代码前缀 (2-12位数字), 在调用方辖区内进一步缩小"
    )
    category: ReliefCategory | None = strawberry.field(
        default=None, description="持有该救助身份 (在 activeOn 当日, 未指定则为今天)"
    )
    active_on: date | None = strawberry.field(
        default=None, description="在该日持有任一 (或 category 指定的) 救助身份"
    )
    enrolled_in: int | None = strawberry.field(default=None, description="该年度正常参保")


@strawberry.type
class PersonEdge:
    cursor: str
    node: Person


@strawberry.type(description="人员分页结果")
class PersonConnection:
    edges: list[PersonEdge]
    page_info: PageInfo
    criteria: strawberry.Private[PersonCriteria]

    @strawberry.field(description="调用方可见范围内符合条件的总人数")
    async def total_count(self, info: Ctx) -> int:
        return await info.context.people.count(self.criteria)


def criteria_of(guard: FieldGuard, person_filter: PersonFilter | None) -> PersonCriteria:
    """The validated filter (the caller may filter only on fields it reads in clear)."""
    if person_filter is None:
        return PersonCriteria()
    prefix = person_filter.region_prefix
    if prefix is not None and not (
        prefix.isascii() and prefix.isdigit() and 2 <= len(prefix) <= 12
    ):
        raise BadUserInput("regionPrefix 应为 2 到 12 位数字")
    if person_filter.category is not None:
        guard.require_argument("PersonFilter.category")
    if person_filter.active_on is not None:
        guard.require_argument("PersonFilter.activeOn")
    if person_filter.enrolled_in is not None:
        guard.require_argument("PersonFilter.enrolledIn")
        if not 1990 <= person_filter.enrolled_in <= 2100:
            raise BadUserInput("enrolledIn 应为四位年份")
    return PersonCriteria(
        region_prefix=prefix or None,
        category=person_filter.category.name if person_filter.category else None,
        active_on=person_filter.active_on,
        enrolled_in=person_filter.enrolled_in,
    )


def person_lookup(guard: FieldGuard, context: RequestContext, id_number: str) -> bytes:
    """``person(idNumber)`` before it reads: the checks, then the blind index to look up.
    (``guard`` is the context's, or the compiled read's own: ``schema.compiled``.)"""
    guard.require_argument("person.idNumber")
    normalized = validate_id_number(id_number, today=context.today)
    guard.touched_person_data = True
    return context.vault.id_number_index(normalized)


def page_request(
    guard: FieldGuard,
    context: RequestContext,
    person_filter: PersonFilter | None,
    first: int,
    after: str | None,
) -> tuple[PersonCriteria, uuid.UUID | None]:
    """``persons(...)`` before it reads: the checks, the filter and the cursor."""
    if first < 0 or first > context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {context.max_page_size} 之间")
    criteria = criteria_of(guard, person_filter)
    after_id = decode_cursor(after) if after else None
    guard.touched_person_data = True
    return criteria, after_id


@strawberry.type
class Query:
    @strawberry.field(description="当前调用方")
    def me(self, info: Ctx) -> Principal:
        context = info.context
        principal, decision = context.principal, context.guard.decision
        return Principal(
            subject=principal.subject,
            department=Department(principal.department.value),
            level=Level(principal.level.value),
            region=principal.region,
            roles=sorted(principal.roles),
            purpose=context.purpose,
            policy_version=decision.policy_version,
            row_scope=[str(condition) for condition in decision.row_conditions],
            field_access=[
                FieldAccess(field=name, effect=FieldEffect(effect.value))
                for name, effect in decision.fields.items()
                if effect is not Effect.DENY
            ],
            operations=sorted(decision.operations),
        )

    @strawberry.field(description="按身份证号码查询一个人; 不存在或不在调用方范围内时为 null")
    async def person(self, info: Ctx, id_number: str) -> Person | None:
        context = info.context
        index = person_lookup(context.guard, context, id_number)
        # The relations the query selects come with the person in one statement (PostgreSQL).
        requests = requested_relations(info._raw_info)
        embed = context.embeddable(requests)
        row = await context.people.by_id_number_index(index, embed)
        if row is None:
            return None
        await context.prefetch([row], requests, embed)
        return as_person(row)

    @strawberry.field(description="调用方范围内的人员, 按游标分页 (first 最大 200)")
    async def persons(
        self,
        info: Ctx,
        filter: PersonFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> PersonConnection:
        context = info.context
        criteria, after_id = page_request(context.guard, context, filter, first, after)
        requests = requested_relations(info._raw_info, ("edges", "node"))
        embed = context.embeddable(requests)
        rows, has_next = await context.people.page(
            criteria, first=first, after=after_id, embed=embed
        )
        if rows:
            await context.prefetch(rows, requests, embed)
        edges = [PersonEdge(cursor=encode_cursor(row.id), node=as_person(row)) for row in rows]
        return PersonConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            criteria=criteria,
        )

    batches = strawberry.field(
        resolver=exchange.batches, description="本部门在辖区内的数据报送批次及其计数 (最新的在前)"
    )
    anomalies = strawberry.field(
        resolver=exchange.anomalies, description="回传给本部门、需在期限内核实的异常"
    )
    warnings = strawberry.field(
        resolver=warning_fields.warnings,
        description="高额医疗费用负担预警 (辖区内; 非医保部门只见推送给本部门的)",
    )
    relief_chain = strawberry.field(resolver=chain.relief_chain, description="一人一条救助链")
    coverage = strawberry.field(resolver=coverage_fields.coverage, description="参保率与未参保人员")
    statistics = strawberry.field(
        resolver=statistics_fields.statistics,
        description="只含汇总数的统计 (小于 5 人的格子不发布), 不含任何人员信息",
    )
    tasks = strawberry.field(resolver=task_fields.tasks, description="推送给本部门的任务 (按期限)")
    task = strawberry.field(
        resolver=task_fields.task, description="一个推送任务 (承办部门打开即记录已阅回执)"
    )
    policies = strawberry.field(resolver=policy.policies, description="当前生效的策略")
    policy_versions = strawberry.field(resolver=policy.policy_versions, description="策略版本")
    policy_proposals = strawberry.field(resolver=policy.policy_proposals, description="变更申请")
    policy_proposal = strawberry.field(resolver=policy.policy_proposal, description="一个变更申请")
    policy_matrix = strawberry.field(resolver=policy.policy_matrix, description="策略表格")
    audit_log = strawberry.field(
        resolver=audit_fields.audit_log,
        description="审计日志 (仅审计管理员; 辖区内发起的请求, 不含本人的记录, 最新的在前); "
        "本查询本身也记入审计",
    )
    audit_chain = strawberry.field(
        resolver=audit_fields.audit_chain, description="校验审计日志哈希链 (仅审计管理员)"
    )
    simulate_access = strawberry.field(
        resolver=simulation_fields.simulate_access,
        description="以某调用方身份, 分别在当前版本和变更申请下执行一个查询并对比 "
        "(仅安全管理员; 只返回数据形状, 不返回任何人员的值; 只能执行查询, 不写入数据)",
    )
    explain_access = strawberry.field(
        resolver=simulation_fields.explain_access_entry,
        description="解释审计日志中的一次请求: 每个字段和行范围由哪些策略行授予或为何被拒绝 "
        "(仅审计管理员, 辖区内他人的记录; 不存在、不在辖区内或为本人的记录时为 null)",
    )
    webhook_endpoints = strawberry.field(
        resolver=delivery_fields.webhook_endpoints,
        description="本部门在辖区内的推送端点, 含已停用的 (仅系统管理员; 不含密钥)",
    )
    webhook_deliveries = strawberry.field(
        resolver=delivery_fields.webhook_deliveries,
        description="辖区内推送端点的推送记录, 可按状态 (如死信 DEAD) 和端点筛选 (仅系统管理员)",
    )


@strawberry.type
class Mutation:
    submit_records = strawberry.mutation(
        resolver=exchange.submit_records,
        description="实时推送本部门某一数据类别的记录 (最多 1000 条), 校验与结果同文件导入",
    )
    resolve_anomaly = strawberry.mutation(
        resolver=exchange.resolve_anomaly, description="处理一条回传的异常"
    )
    answer_task = strawberry.mutation(resolver=task_fields.answer_task, description="答复推送任务")
    acknowledge_tasks = strawberry.mutation(
        resolver=task_fields.acknowledge_tasks, description="确认已收到并查阅推送任务 (已阅回执)"
    )
    propose_policy_change = strawberry.mutation(
        resolver=policy.propose_policy_change, description="提出策略变更"
    )
    propose_policy_rollback = strawberry.mutation(
        resolver=policy.propose_policy_rollback, description="提出回滚到某版本"
    )
    approve_policy_change = strawberry.mutation(
        resolver=policy.approve_policy_change, description="批准 (四眼原则)"
    )
    reject_policy_change = strawberry.mutation(
        resolver=policy.reject_policy_change, description="驳回或撤回申请"
    )
    register_webhook_endpoint = strawberry.mutation(
        resolver=delivery_fields.register_webhook_endpoint,
        description="登记推送端点 (仅系统管理员, 本部门、本辖区); 密钥只在结果中显示这一次",
    )
    rotate_webhook_secret = strawberry.mutation(
        resolver=delivery_fields.rotate_webhook_secret,
        description="轮换推送端点的签名密钥; 旧密钥在 keepPreviousHours 小时内继续签名",
    )
    disable_webhook_endpoint = strawberry.mutation(
        resolver=delivery_fields.disable_webhook_endpoint,
        description="停用推送端点: 未完成的推送取消, 已有记录保留",
    )
    replay_deliveries = strawberry.mutation(
        resolver=delivery_fields.replay_deliveries,
        description="重新投递死信: 指定的推送 (ids), 或某端点自某时刻 (since) 起的死信; 返回条数",
    )
