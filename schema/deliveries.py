"""Webhook endpoints and their deliveries in GraphQL (推送端点与推送投递, issue 18 item 2).

A department's system administrator (``system_admin``) registers the endpoints its systems
receive events at, rotates their secrets and disables them; the operations team on call lists
the deliveries, sees the dead letters (死信) and replays them. Thin resolvers over
:mod:`gateway.storage.deliveries`.

Who may (三权分立: keys, clients and configuration are the system administrator's work):

- the ``system_admin`` of a department, for its own department's endpoints inside its own
  jurisdiction: a county administrator registers for its county (or nothing), never for the
  city above it, another county or another department; an endpoint's level and region default
  to the administrator's own;
- the big-data bureau's ``system_admin`` (大数据局 runs the platform: the province's operations
  team) sees, replays, rotates and disables the endpoints of every department inside its
  jurisdiction, and registers only its own department's;
- and whoever a policy line grants ``Webhook.manage`` (action ``call``), with the same
  department and jurisdiction rules.

Everyone else gets FORBIDDEN. A secret leaves the gateway twice only: in the answer to the
registration and to the rotation that made it (``secret``); no type here has a field for a
sealed secret. Every mutation of an administrator enters the administrators' trail (the
request's audit entry, ``schema.audit.note_admin_action``), attempts refused for their scope
included.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import strawberry

from gateway.domain.clock import as_utc
from gateway.domain.departments import Department as DomainDepartment
from gateway.domain.departments import Level as DomainLevel
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.domain.principal import Principal
from gateway.storage import deliveries as stored
from gateway.storage.outbox import EVENT_KIND_NAMES_ZH, EventKind
from schema.audit import note_admin_action
from schema.enums import Department, Level
from schema.paging import PageInfo
from schema.simulator import is_simulated
from schema.types import Ctx

MANAGE = "Webhook.manage"  # the policy operation that grants this module beside the role
WEBHOOK_CHANGE = "Webhook.change"  # what a mutation's audit entry names
MAX_KEEP_PREVIOUS_HOURS = 7 * 24  # the old secret signs beside the new one at most a week
MAX_DEAD_AFTER_HOURS = stored.DEAD_AFTER_RANGE[1] // 3600
MAX_REPLAY_IDS = 500
_CURSOR_PREFIX = "delivery:"
_REGION_LEVELS = {2: DomainLevel.PROVINCE, 4: DomainLevel.CITY, 6: DomainLevel.COUNTY}


# ---------------------------------------------------------------------------- enums
@strawberry.enum(description="推送签名算法")
class WebhookAlgorithm(Enum):
    HMAC_SHA256 = strawberry.enum_value(
        "HMAC-SHA256", description="HMAC-SHA-256 (标准 Webhooks 签名, 签名头 v1)"
    )
    HMAC_SM3 = strawberry.enum_value("HMAC-SM3", description="HMAC-SM3 (国密, 签名头 v1sm3)")


@strawberry.enum(description="推送的事件类型")
class WebhookEventKind(Enum):
    TASK_PUSHED = strawberry.enum_value(
        EventKind.TASK_PUSHED.value, description=EVENT_KIND_NAMES_ZH[EventKind.TASK_PUSHED]
    )
    TASK_ANSWERED = strawberry.enum_value(
        EventKind.TASK_ANSWERED.value, description=EVENT_KIND_NAMES_ZH[EventKind.TASK_ANSWERED]
    )
    WARNING_RAISED = strawberry.enum_value(
        EventKind.WARNING_RAISED.value, description=EVENT_KIND_NAMES_ZH[EventKind.WARNING_RAISED]
    )
    ANOMALY_OPENED = strawberry.enum_value(
        EventKind.ANOMALY_OPENED.value, description=EVENT_KIND_NAMES_ZH[EventKind.ANOMALY_OPENED]
    )
    ANOMALY_CLOSED = strawberry.enum_value(
        EventKind.ANOMALY_CLOSED.value, description=EVENT_KIND_NAMES_ZH[EventKind.ANOMALY_CLOSED]
    )
    BATCH_ACCEPTED = strawberry.enum_value(
        EventKind.BATCH_ACCEPTED.value, description=EVENT_KIND_NAMES_ZH[EventKind.BATCH_ACCEPTED]
    )
    IDENTITY_RECOGNISED = strawberry.enum_value(
        EventKind.IDENTITY_RECOGNISED.value,
        description=EVENT_KIND_NAMES_ZH[EventKind.IDENTITY_RECOGNISED],
    )


@strawberry.enum(description="推送状态")
class DeliveryStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="待推送 (含失败后等待重试)")
    IN_FLIGHT = strawberry.enum_value("IN_FLIGHT", description="推送中")
    DELIVERED = strawberry.enum_value("DELIVERED", description="已送达 (接收方返回 2xx)")
    DEAD = strawberry.enum_value(
        "DEAD", description="死信: 持续失败超过死信时限, 不再重试, 可重新投递"
    )
    CANCELLED = strawberry.enum_value(
        "CANCELLED", description="已取消 (端点已停用, 或人员已不在接收方范围内)"
    )


# ---------------------------------------------------------------------------- types
@strawberry.type(description="推送端点: 部门系统接收事件的地址 (不含密钥)")
class WebhookEndpoint:
    id: strawberry.ID
    name: str = strawberry.field(description="名称")
    department: Department = strawberry.field(description="接收部门 (推送内容按其访问策略生成)")
    level: Level = strawberry.field(description="层级")
    region: str = strawberry.field(description="辖区: 只推送该区划内的事件")
    url: str = strawberry.field(description="推送地址")
    algorithm: WebhookAlgorithm
    event_kinds: list[WebhookEventKind] = strawberry.field(description="订阅的事件类型")
    secret_id: str = strawberry.field(
        description="当前密钥的编号 (推送头 x-relief-key-id; 不是密钥本身)"
    )
    previous_secret_id: str | None = strawberry.field(
        description="轮换后仍在签名的旧密钥编号; 为空表示没有"
    )
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="旧密钥停止签名的时间"
    )
    dead_after_hours: float | None = strawberry.field(
        description="死信时限 (小时): 持续失败超过此时长即转为死信; 为空表示使用网关的配置"
    )
    max_in_flight: int = strawberry.field(description="同时在途的推送数上限")
    consecutive_failures: int = strawberry.field(description="连续失败次数")
    paused_until: datetime | None = strawberry.field(
        description="连续失败后暂停推送至此时间 (熔断); 为空表示未暂停"
    )
    enabled: bool = strawberry.field(description="启用中 (停用的端点保留其推送记录)")
    created_at: datetime = strawberry.field(description="登记时间")
    created_by: str = strawberry.field(description="登记人")
    disabled_at: datetime | None = strawberry.field(description="停用时间")
    disabled_by: str | None = strawberry.field(description="停用人")


def _utc(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=strawberry.ID(str(row.id)),
        name=row.name,
        department=Department(row.department),
        level=Level(row.level),
        region=row.region,
        url=row.url,
        algorithm=WebhookAlgorithm(row.algorithm),
        event_kinds=[WebhookEventKind(kind.value) for kind in stored.kinds_of(row)],
        secret_id=row.secret_id,
        previous_secret_id=row.previous_secret_id,
        previous_secret_expires_at=_utc(row.previous_secret_expires_at),
        dead_after_hours=(
            row.dead_after_seconds / 3600 if row.dead_after_seconds is not None else None
        ),
        max_in_flight=row.max_in_flight,
        consecutive_failures=row.consecutive_failures,
        paused_until=_utc(row.paused_until),
        enabled=row.disabled_at is None,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        disabled_at=_utc(row.disabled_at),
        disabled_by=row.disabled_by,
    )


@strawberry.type(
    description="登记或轮换的结果: 端点和新密钥。密钥只在此显示这一次, 请立即交给接收方系统保存"
)
class WebhookSecretIssued:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="签名密钥 whsec_… (只显示这一次; 网关只保存其密文, 无法再次查看)"
    )


@strawberry.type(description="一次推送: 一个事件发往一个端点")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID = strawberry.field(description="推送端点")
    endpoint_name: str = strawberry.field(description="推送端点名称")
    event_id: str = strawberry.field(
        description="事件编号 (推送头 webhook-id, 重试不变: 接收方据此去重)"
    )
    event_kind: WebhookEventKind = strawberry.field(description="事件类型")
    occurred_at: datetime = strawberry.field(description="事件发生时间")
    status: DeliveryStatus
    attempts: int = strawberry.field(description="已尝试次数 (重新投递后从 0 开始)")
    created_at: datetime = strawberry.field(description="进入推送队列的时间")
    next_attempt_at: datetime | None = strawberry.field(description="下次尝试时间 (待推送时)")
    last_status: int | None = strawberry.field(description="最近一次尝试的 HTTP 状态码")
    last_error: str | None = strawberry.field(description="最近一次失败的原因")
    delivered_at: datetime | None = strawberry.field(description="送达时间")
    dead_at: datetime | None = strawberry.field(description="转为死信的时间")
    cancel_reason: str | None = strawberry.field(description="取消原因")


def _delivery(row: Any) -> WebhookDelivery:
    waiting = row.status in (stored.PENDING, stored.IN_FLIGHT)
    return WebhookDelivery(
        id=strawberry.ID(str(row.id)),
        endpoint_id=strawberry.ID(str(row.endpoint_id)),
        endpoint_name=row.endpoint_name,
        event_id=f"evt_{row.event_uuid}",
        event_kind=WebhookEventKind(row.kind),
        occurred_at=as_utc(row.occurred_at),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        created_at=as_utc(row.created_at),
        next_attempt_at=_utc(row.next_attempt_at) if waiting else None,
        last_status=row.last_status,
        last_error=row.last_error,
        delivered_at=_utc(row.delivered_at),
        dead_at=_utc(row.dead_at),
        cancel_reason=row.cancel_reason,
    )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type(description="推送分页结果 (最新的在前)")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


@strawberry.input(description="登记推送端点")
class RegisterWebhookEndpointInput:
    name: str = strawberry.field(description="名称, 如: 民政救助系统 (历下区)")
    url: str = strawberry.field(
        description="推送地址, 必须是 https (开发环境可用 http://127.0.0.1 或 localhost)"
    )
    algorithm: WebhookAlgorithm
    event_kinds: list[WebhookEventKind] = strawberry.field(description="订阅的事件类型 (至少一种)")
    region_prefix: str | None = strawberry.field(
        default=None,
        description="端点的辖区 (本辖区或其下级区划, 2/4/6 位); 为空为管理员本人的辖区",
    )
    dead_after_hours: int | None = strawberry.field(
        default=None,
        description=f"死信时限 (小时, 1 到 {MAX_DEAD_AFTER_HOURS}); 为空使用网关的配置",
    )


# ---------------------------------------------------------------------------- who may
def _administrator(info: Ctx) -> Principal:
    """The caller when it may manage webhooks (its department's system administrator, or a
    policy grant of ``Webhook.manage``); FORBIDDEN otherwise, and inside a simulation."""
    context = info.context
    principal = context.principal
    if is_simulated(principal):
        raise Forbidden("模拟的请求中不能查看或管理推送端点")
    if not (principal.is_system_admin or MANAGE in context.guard.decision.operations):
        raise Forbidden(
            "仅系统管理员 (system_admin) 可以登记和管理推送端点、查看和重新投递推送 "
            "(三权分立: 安全管理员和审计管理员不能管理推送)"
        )
    return principal


def _department_scope(principal: Principal) -> str | None:
    """The department whose endpoints the caller manages; None: every department (the
    big-data bureau's administrators operate the platform)."""
    if principal.department is DomainDepartment.BIG_DATA and principal.is_system_admin:
        return None
    return principal.department.value


def _mutation(info: Ctx) -> Principal:
    """:func:`_administrator` for a change, then recorded in the administrators' trail before
    anything else is checked, so an administrator's refused attempt (another county's
    endpoint, a region outside its own) is there too. A caller without the duty is refused
    before: a refusal of the role reads and records nothing, as for the other duties."""
    principal = _administrator(info)
    note_admin_action(info, WEBHOOK_CHANGE)
    return principal


def _endpoint_id(id: strawberry.ID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(id))
    except ValueError:
        raise BadUserInput("推送端点编号 id 无效") from None


async def _endpoint_in_scope(info: Ctx, principal: Principal, endpoint_id: uuid.UUID) -> Any:
    """The endpoint's row when it is in the caller's scope; else BadUserInput saying "not
    found", whether it exists elsewhere or not (no existence oracle for another county)."""
    async with info.context.engine.connect() as connection:
        rows = await stored.endpoints(
            connection, department=_department_scope(principal), region_prefix=principal.region
        )
    for row in rows:
        if row.id == endpoint_id:
            return row
    raise BadUserInput("未找到该推送端点 (不存在, 或不属于本部门、本辖区)")


def _production(info: Ctx) -> bool:
    return bool(getattr(info.schema, "production", True))


# ---------------------------------------------------------------------------- queries
async def webhook_endpoints(info: Ctx) -> list[WebhookEndpoint]:
    principal = _administrator(info)
    async with info.context.engine.connect() as connection:
        rows = await stored.endpoints(
            connection, department=_department_scope(principal), region_prefix=principal.region
        )
    return [_endpoint(row) for row in rows]


def _encode(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{delivery_id}".encode()).decode()


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(raw)
        return int(raw.removeprefix(_CURSOR_PREFIX))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


async def webhook_deliveries(
    info: Ctx,
    status: DeliveryStatus | None = None,
    endpoint_id: strawberry.ID | None = None,
    first: int = 50,
    after: str | None = None,
) -> WebhookDeliveryConnection:
    principal = _administrator(info)
    if first < 1 or first > info.context.max_page_size:
        raise BadUserInput(f"first 应在 1 到 {info.context.max_page_size} 之间")
    position = _decode(after) if after else None
    endpoint = _endpoint_id(endpoint_id) if endpoint_id is not None else None
    async with info.context.engine.connect() as connection:
        rows, has_next = await stored.deliveries(
            connection,
            department=_department_scope(principal),
            region_prefix=principal.region,
            status=status.name if status is not None else None,
            endpoint_id=endpoint,
            first=first,
            after=position,
        )
    edges = [WebhookDeliveryEdge(cursor=_encode(row.id), node=_delivery(row)) for row in rows]
    return WebhookDeliveryConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
    )


# ---------------------------------------------------------------------------- mutations
def _jurisdiction(principal: Principal, region_prefix: str | None) -> tuple[str, str]:
    """(level, region) of a new endpoint: the administrator's own, or a region inside it."""
    if region_prefix is None or not region_prefix.strip():
        return principal.level.value, principal.region
    region = region_prefix.strip()
    level = _REGION_LEVELS.get(len(region))
    if not region.isascii() or not region.isdigit() or level is None:
        raise BadUserInput("regionPrefix 应为 2、4 或 6 位数字的行政区划代码")
    if not region.startswith(principal.region):
        raise Forbidden(
            f"只能为本辖区 ({principal.region}) 或其下级区划登记推送端点, 不能为 {region} 登记"
        )
    return level.value, region


async def register_webhook_endpoint(
    info: Ctx, input: RegisterWebhookEndpointInput
) -> WebhookSecretIssued:
    principal = _mutation(info)
    level, region = _jurisdiction(principal, input.region_prefix)
    dead_after = input.dead_after_hours
    if dead_after is not None and not 1 <= dead_after <= MAX_DEAD_AFTER_HOURS:
        raise BadUserInput(f"死信时限 deadAfterHours 应在 1 到 {MAX_DEAD_AFTER_HOURS} 小时之间")
    new = stored.NewEndpoint(
        name=input.name,
        department=principal.department.value,
        level=level,
        region=region,
        url=input.url,
        algorithm=str(input.algorithm.value),
        kinds=tuple(EventKind(str(kind.value)) for kind in input.event_kinds),
        dead_after_seconds=dead_after * 3600 if dead_after is not None else None,
    )
    row, secret = await stored.create_endpoint(
        info.context.engine,
        info.context.vault.cipher,
        new,
        created_by=principal.subject,
        production=_production(info),
    )
    return WebhookSecretIssued(endpoint=_endpoint(row), secret=secret)


async def rotate_webhook_secret(
    info: Ctx, id: strawberry.ID, keep_previous_hours: int = 24
) -> WebhookSecretIssued:
    principal = _mutation(info)
    if not 0 <= keep_previous_hours <= MAX_KEEP_PREVIOUS_HOURS:
        raise BadUserInput(
            f"旧密钥保留时长 keepPreviousHours 应在 0 到 {MAX_KEEP_PREVIOUS_HOURS} 小时之间 "
            "(密钥泄露时填 0: 旧密钥立即停止签名)"
        )
    endpoint_id = _endpoint_id(id)
    found = await _endpoint_in_scope(info, principal, endpoint_id)
    if found.disabled_at is not None:
        raise BadUserInput("该推送端点已停用, 不能轮换密钥")
    rotated = await stored.rotate_secret(
        info.context.engine,
        info.context.vault.cipher,
        endpoint_id,
        keep_previous_for=timedelta(hours=keep_previous_hours),
        by=principal.subject,
    )
    if rotated is None:  # disabled between the two statements
        raise BadUserInput("该推送端点已停用, 不能轮换密钥")
    row, secret = rotated
    return WebhookSecretIssued(endpoint=_endpoint(row), secret=secret)


async def disable_webhook_endpoint(info: Ctx, id: strawberry.ID) -> WebhookEndpoint:
    principal = _mutation(info)
    endpoint_id = _endpoint_id(id)
    await _endpoint_in_scope(info, principal, endpoint_id)
    row = await stored.disable_endpoint(info.context.engine, endpoint_id, by=principal.subject)
    if row is None:
        raise BadUserInput("未找到该推送端点 (不存在, 或不属于本部门、本辖区)")
    return _endpoint(row)


async def replay_deliveries(
    info: Ctx,
    ids: list[strawberry.ID] | None = None,
    endpoint_id: strawberry.ID | None = None,
    since: datetime | None = None,
) -> int:
    """Dead letters of the caller's scope back to the queue; how many."""
    principal = _mutation(info)
    delivery_ids: list[int] = []
    for value in ids or []:
        text = str(value)
        if not (text.isascii() and text.isdigit()):
            raise BadUserInput(f"推送编号 {text!r} 无效")
        delivery_ids.append(int(text))
    if len(delivery_ids) > MAX_REPLAY_IDS:
        raise BadUserInput(f"一次最多重新投递 {MAX_REPLAY_IDS} 条; 更多请按端点和时间重新投递")
    endpoint = _endpoint_id(endpoint_id) if endpoint_id is not None else None
    if since is not None and endpoint is None:
        raise BadUserInput("since 须与 endpointId 一起使用")
    if not delivery_ids and endpoint is None:
        raise BadUserInput("请指定要重新投递的推送 (ids), 或一个推送端点 (endpointId)")
    if since is not None and since.tzinfo is None:
        raise BadUserInput("since 须为带时区的时刻, 如 2026-11-23T08:00:00+08:00")
    if endpoint is not None:
        found = await _endpoint_in_scope(info, principal, endpoint)
        if found.disabled_at is not None:
            raise BadUserInput("该推送端点已停用, 不能重新投递; 请先登记新的端点")
    return await stored.replay(
        info.context.engine,
        delivery_ids=delivery_ids,
        endpoint_id=endpoint,
        since=since,
        department=_department_scope(principal),
        region_prefix=principal.region,
        by=principal.subject,
    )
