"""The audit log for the audit administrator: ``auditLog`` (entries of its jurisdiction, by
person, department, subject and period) and ``auditChain`` (verification of the hash chain);
``explainAccess`` (schema/simulation.py) takes its role and scope from here.

Separation of duties (三权分立, issue 16; docs/security.md): only ``audit_admin`` reads the
log, FORBIDDEN for the security and system administrators and everyone else, and the audit
administrator reads every entry of its jurisdiction except its own subject's (another audit
administrator reads those). No field of the API writes, changes or deletes an entry.

Reading the log is itself a read of who-read-whom: the request is audited through the one path
every read takes (the field guard notes it, ``gateway.http.graphql`` appends the entry), naming
the person of an ID-number filter. So are the administrators' other actions
(:func:`note_admin_action`): policy changes proposed, approved or rejected, simulations,
explanations, verifications of the chain.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import strawberry
from graphql import OperationType

from authz.admin import Officer
from gateway.domain.clock import as_utc
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.domain.id_numbers import validate_id_number
from gateway.domain.principal import Principal, canonical_subject
from gateway.storage.audit_log import AuditCriteria, AuditLogReader
from schema.enums import Department, Level
from schema.paging import PageInfo
from schema.simulator import is_simulated
from schema.types import Ctx

_CURSOR_PREFIX = "audit:"
# What an administrator's own request releases, as its audit entry records it.
AUDIT_ENTRIES = "AuditLog.entries"  # a query of the log
AUDIT_CHAIN = "AuditLog.chain"  # a verification of the chain
POLICY_CHANGE = "Policy.change"  # a policy change proposed, approved, rejected or withdrawn

AUDIT_ONLY = "三权分立: 审计日志、访问解释和哈希链校验只由审计管理员 (audit_admin) 负责"


def require_audit_admin(info: Ctx, what: str) -> Principal:
    """The caller, when it is an audit administrator; FORBIDDEN for anyone else (the security
    and system administrators included) and inside a simulation (a security administrator
    simulating a caller with the audit role reads no entry through it)."""
    principal = info.context.principal
    if not principal.is_audit_admin:
        raise Forbidden(f"仅审计管理员可以{what} ({AUDIT_ONLY})")
    if is_simulated(principal):
        raise Forbidden("模拟的请求中不能读取审计日志")
    return principal


def audit_scope(principal: Principal) -> AuditCriteria:
    """What an audit administrator may read: entries of requests made inside its region, except
    its own subject's, whatever their spelling (administrators never read their own trail)."""
    return AuditCriteria(region=principal.region, excluded_subject=principal.subject)


@dataclass(frozen=True, slots=True)
class Auditor(Officer):
    """An audit administrator shown policy lines (``explainAccess``): it changes none, so no
    line is ``editable`` for it."""

    def covers(self, line: object) -> bool:
        return False


def auditor(info: Ctx, what: str) -> Auditor:
    """:func:`require_audit_admin`, then the audit administrator as the reader of policy lines;
    the request is named after its field in the audit (``explainAccess``)."""
    principal = require_audit_admin(info, what)
    _name_operation(info)
    return Auditor(principal.subject, principal.level, principal.region)


def _name_operation(info: Ctx) -> None:
    """Record the request under its field's name (``approvePolicyChange``), whatever the client
    called its operation: the audit names what was done."""
    context, name = info.context, info.field_name
    done = context.audit_operation
    context.audit_operation = name if done in (None, name) else f"{done},{name}"


def note_admin_action(info: Ctx, field: str) -> None:
    """An administrator's own action, audited like a read through the one path every read
    takes (``gateway.http.graphql`` appends the entry once the request has run): the entry
    names the operation and ``field``. Called before the action, so a refused attempt (an
    officer approving its own proposal) is in the trail too."""
    _name_operation(info)
    info.context.guard.note_read(field)


def note_policy_change(info: Ctx) -> None:
    """A policy mutation (propose, roll back, approve, reject) enters the administrators'
    trail; reading the policy does not (it releases nobody's data)."""
    if info.operation.operation is OperationType.MUTATION:
        note_admin_action(info, POLICY_CHANGE)


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{entry_id}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(raw)
        return int(raw[len(_CURSOR_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


@strawberry.input(description="审计日志筛选条件 (均为可选, 同时给出时须全部满足)")
class AuditFilter:
    id_number: str | None = strawberry.field(
        default=None, description="被查询人员的身份证号码: 只列出读取过此人的请求"
    )
    department: Department | None = strawberry.field(default=None, description="发起请求的部门")
    subject: str | None = strawberry.field(
        default=None,
        description="发起请求的用户 (令牌 sub); 按规范形式比较 (大小写、全角半角、首尾空白不计)",
    )
    from_: date | None = strawberry.field(
        default=None, name="from", description="起始日期 (北京时间, 含当日)"
    )
    to: date | None = strawberry.field(default=None, description="截止日期 (北京时间, 含当日)")


@strawberry.type(description="一次请求释放的一个字段及其效果")
class ReleasedField:
    field: str = strawberry.field(
        description="字段, 如 Person.phone; 管理员自身的操作为 AuditLog.*、Policy.change "
        "或 Admin.* (命令行管理操作)"
    )
    effect: str = strawberry.field(
        description="read (明文) 或 mask (脱敏); 命令行管理操作 (Admin.*) 为其参数值"
    )


@strawberry.type(description="审计记录: 一次读取了人员数据的请求")
class AuditEntry:
    id: strawberry.ID
    occurred_at: datetime = strawberry.field(description="发生时间")
    request_id: str = strawberry.field(description="请求编号 (响应头 X-Request-Id)")
    subject: str = strawberry.field(description="发起请求的用户 (令牌 sub)")
    department: Department = strawberry.field(description="发起请求的部门")
    level: Level = strawberry.field(description="发起请求者的层级")
    region: str = strawberry.field(description="发起请求者的辖区代码")
    purpose: str = strawberry.field(description="声明的用途 (X-Purpose)")
    operation: str = strawberry.field(description="GraphQL 操作名")
    policy_version: int = strawberry.field(description="请求时生效的策略版本")
    person_count: int = strawberry.field(description="涉及的人数")
    fields: list[ReleasedField] = strawberry.field(description="释放的字段及效果")
    prev_hash: str = strawberry.field(description="前一条记录的哈希")
    entry_hash: str = strawberry.field(description="本条记录的哈希")


def _entry(row: Any) -> AuditEntry:
    released: dict[str, str] = json.loads(row.fields)
    return AuditEntry(
        id=strawberry.ID(str(row.id)),
        occurred_at=as_utc(row.occurred_at),
        request_id=row.request_id,
        subject=row.subject,
        department=Department(row.department),
        level=Level(row.level),
        region=row.region,
        purpose=row.purpose,
        operation=row.operation,
        policy_version=row.policy_version,
        person_count=len(json.loads(row.person_ids)),
        fields=[ReleasedField(field=name, effect=effect) for name, effect in released.items()],
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


@strawberry.type
class AuditEdge:
    cursor: str
    node: AuditEntry


@strawberry.type(description="审计记录分页结果 (最新的在前; 不含查询者本人的记录)")
class AuditConnection:
    edges: list[AuditEdge]
    page_info: PageInfo
    criteria: strawberry.Private[AuditCriteria]
    reader: strawberry.Private[AuditLogReader]

    @strawberry.field(description="辖区内符合条件的记录总数 (不含查询者本人的记录)")
    async def total_count(self) -> int:
        return await self.reader.count(self.criteria)


@strawberry.type(description="审计日志哈希链的校验结果")
class AuditChainStatus:
    entries: int = strawberry.field(description="校验无误的记录数 (第一条异常记录之前)")
    ok: bool = strawberry.field(description="整条链完整无误")
    first_bad_id: strawberry.ID | None = strawberry.field(
        description="第一条异常记录的编号 (被修改, 或其前一条被删除或重排)"
    )
    reason: str | None = strawberry.field(description="异常原因")
    head_hash: str = strawberry.field(
        description="最后一条无误记录的哈希 (链头). 仅靠哈希链无法发现末尾记录被删除: "
        "请在系统外记录链头, 之后用 relief-gateway audit verify --anchor 核对"
    )


async def audit_log(
    info: Ctx, filter: AuditFilter | None = None, first: int = 50, after: str | None = None
) -> AuditConnection:
    principal = require_audit_admin(info, "查询审计日志")
    context = info.context
    if first < 0 or first > context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {context.max_page_size} 之间")
    before_id = _decode_cursor(after) if after else None
    wanted = filter or AuditFilter()
    if wanted.from_ and wanted.to and wanted.from_ > wanted.to:
        raise BadUserInput("起始日期 from 不能晚于截止日期 to")
    reader = AuditLogReader(context.engine)
    person_id = None
    if wanted.id_number is not None:
        normalized = validate_id_number(wanted.id_number, today=context.today)
        person_id = await reader.person_id(context.vault.id_number_index(normalized))
    own = canonical_subject(principal.subject)
    if wanted.subject is not None and canonical_subject(wanted.subject) == own:
        raise Forbidden("不能查询本人的审计记录 (三权分立: 由其他审计管理员查看)")
    criteria = AuditCriteria(
        region=principal.region,
        excluded_subject=principal.subject,
        person_id=person_id,
        no_person=wanted.id_number is not None and person_id is None,
        department=str(wanted.department.value) if wanted.department else None,
        subject=wanted.subject,
        occurred_from=wanted.from_,
        occurred_to=wanted.to,
    )
    # This query is audited like a read of the person it names (gateway.http.graphql), under
    # the field's name whatever the client called its operation.
    context.guard.note_read(AUDIT_ENTRIES, [person_id] if person_id else [])
    _name_operation(info)  # "auditLog"
    rows, has_next = await reader.page(criteria, first=first, before_id=before_id)
    edges = [AuditEdge(cursor=_encode_cursor(row.id), node=_entry(row)) for row in rows]
    return AuditConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        criteria=criteria,
        reader=reader,
    )


async def audit_chain(info: Ctx) -> AuditChainStatus:
    require_audit_admin(info, "校验审计日志")
    note_admin_action(info, AUDIT_CHAIN)
    report = await AuditLogReader(info.context.engine).verify(info.context.audit_macs)
    return AuditChainStatus(
        entries=report.entries,
        ok=report.ok,
        first_bad_id=strawberry.ID(str(report.first_bad_id)) if report.first_bad_id else None,
        reason=report.reason,
        head_hash=report.head_hash,
    )
