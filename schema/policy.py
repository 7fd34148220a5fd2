"""Policy administration in GraphQL (security officers only, issue 5): the policy in force, its
versions, proposals with their diff and field effects, the console's grid, and the four-eyes
mutations. Thin resolvers over :class:`authz.admin.PolicyAdmin`; every refusal comes from there
(FORBIDDEN outside the officer's jurisdiction or for its own approval, BAD_USER_INPUT for an
invalid or stale change, or one that breaks a policy expectation).

Issue 16: a line may carry a validity end (``validTo``, 期限); ``policies(expiringWithinDays: 30)``
lists the lines that stop granting within that many days. Policy expectations (策略期望,
``authz.expectations``) come with the policy in force, its versions and a proposal (its new
set, and the expectations its lines break: ``expectationFailures``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from datetime import datetime, timedelta
from enum import Enum

import strawberry

from authz.admin import (
    Officer,
    PolicyAdmin,
    ProposalRecord,
    VersionRecord,
    apply_change,
)
from authz.decision import Effect
from authz.effects import cells_of, effect_changes, grid_cells, grid_rows
from authz.expectations import Failure
from authz.store import PolicyLine as StoredLine
from authz.store import grants_at, in_force_at, subject_region, valid_to_of, with_valid_to
from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput
from schema.audit import note_policy_change
from schema.enums import FieldEffect
from schema.paging import PageInfo
from schema.types import Ctx


@strawberry.enum(description="策略动作 (策略文件中为小写)")
class PolicyAction(Enum):
    READ = strawberry.enum_value("read", description="明文读取字段")
    MASK = strawberry.enum_value("mask", description="读取脱敏后的字段")
    ROWS = strawberry.enum_value("rows", description="可见的人员范围 (行条件)")
    CALL = strawberry.enum_value("call", description="可使用的操作 (如数据报送、统计)")


@strawberry.enum(description="策略变更申请状态")
class ProposalStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="待审批")
    APPROVED = strawberry.enum_value("APPROVED", description="已批准 (已生成新版本)")
    REJECTED = strawberry.enum_value("REJECTED", description="已驳回 (或申请人撤回)")
    STALE = strawberry.enum_value("STALE", description="已过期: 所基于的版本已不再生效, 需重新提出")


@strawberry.type(description="一行策略: 主体对对象的动作, 限于用途")
class PolicyLine:
    subject: str = strawberry.field(
        description="主体: 部门:层级 (全省), 部门@区划:层级 (限该区域), 或 role:角色"
    )
    object_: str = strawberry.field(
        name="object", description="对象: 字段 (Person.phone)、行范围 (Person(all)) 或操作"
    )
    action: PolicyAction
    purpose: str = strawberry.field(description="用途 (X-Purpose), * 为任何用途")
    region: str | None = strawberry.field(description="主体限定的区域; 为空表示全省通用")
    editable: bool = strawberry.field(description="在调用的安全管理员辖区内 (可提出变更)")
    valid_to: datetime | None = strawberry.field(
        default=None, description="期限: 该行授予至此时刻 (不含); 为空表示长期有效"
    )
    expired: bool = strawberry.field(
        default=False, description="已到期: 期限已过, 该行不再授予任何权限 (仍在策略中, 可删除)"
    )


def _line(line: StoredLine, officer: Officer) -> PolicyLine:
    return PolicyLine(
        subject=line[0],
        object_=line[1],
        action=PolicyAction(line[2]),
        purpose=line[3],
        region=subject_region(line[0]) or None,
        editable=officer.covers(line),
        valid_to=valid_to_of(line),
        expired=not grants_at(line, now_utc()),
    )


@strawberry.input(description="一行策略 (提出变更时使用)")
class PolicyLineInput:
    subject: str = strawberry.field(description="如 civil_affairs@3701:county")
    object_: str = strawberry.field(name="object", description="如 Person.phone")
    action: PolicyAction
    purpose: str = strawberry.field(default="*", description="用途, * 为任何用途")
    valid_to: datetime | None = strawberry.field(
        default=None,
        description=(
            "期限 (可选): 该行授予至此时刻 (不含), 须带时区; 不接受只写日期: 授予至北京时间"
            " 2027-03-31 当日结束请写 2027-04-01T00:00:00+08:00"
        ),
    )


def _stored(line: PolicyLineInput) -> StoredLine:
    fields = (line.subject, line.object_, line.action.name.lower(), line.purpose)
    if line.valid_to is not None and line.valid_to.tzinfo is None:
        raise BadUserInput(_without_timezone(fields, line.valid_to))
    return with_valid_to(fields, line.valid_to)


def _without_timezone(fields: StoredLine, valid_to: datetime) -> str:
    """What to send instead of a validTo without a timezone. The DateTime scalar reads a bare
    date ``2027-01-01`` as that day's midnight without a zone, so the two are told together:
    unlike the policy file (where a bare date is the end of that day), validTo is a moment,
    and the message gives both readings of the date as moments to copy."""
    day = valid_to.date()
    after = day + timedelta(days=1)
    line = ", ".join(fields)
    if (valid_to.hour, valid_to.minute, valid_to.second, valid_to.microsecond) == (0, 0, 0, 0):
        return (
            f"期限缺少时区:「{line}」validTo 须为带时区的时刻 (不接受只写日期); "
            f"授予至北京时间 {day} 当日结束 (含当日) 请写 {after}T00:00:00+08:00, "
            f"至 {day} 零时 (不含当日) 请写 {day}T00:00:00+08:00"
        )
    return (
        f"期限缺少时区:「{line}」validTo 须为带时区的时刻, "
        f"如北京时间请写 {valid_to.replace(microsecond=0).isoformat()}+08:00"
    )


@strawberry.type(description="一条不成立的策略期望 (策略测试): 在该用途下实际的效果与期望不同")
class ExpectationFailure:
    line: int = strawberry.field(description="期望在其文本中的行号")
    expectation: str = strawberry.field(description="期望原文: e, 调用方, 用途, 对象, 期望")
    purpose: str = strawberry.field(description="不成立时声明的用途; 空为未声明")
    actual: str = strawberry.field(description="实际: read/mask/deny, call/deny 或行范围")
    expected: str = strawberry.field(description="期望: read/mask/deny, call/deny 或行范围")
    message: str = strawberry.field(description="说明 (中文)")


def failures_of(found: list[Failure]) -> list[ExpectationFailure]:
    return [
        ExpectationFailure(
            line=failure.expectation.number,
            expectation=failure.expectation.text,
            purpose=failure.purpose,
            actual=failure.actual,
            expected=failure.expectation.expected,
            message=failure.message,
        )
        for failure in found
    ]


@strawberry.type(description="当前生效的策略")
class PolicySet:
    version: int = strawberry.field(description="版本号")
    created_at: datetime = strawberry.field(description="生效时间")
    created_by: str = strawberry.field(description="提出人")
    note: str = strawberry.field(description="说明 (申请标题)")
    lines: list[PolicyLine]
    expectations: str = strawberry.field(
        default="", description="策略期望 (每行一条: e, 调用方, 用途, 对象, 期望); 空为没有"
    )

    @strawberry.field(
        description="当前策略 (此刻仍授予的行) 下不成立的策略期望: 如某行已到期 (空: 全部成立)"
    )
    async def expectation_failures(self, info: Ctx) -> list[ExpectationFailure]:
        return failures_of(await _admin(info).in_force_failures())


@strawberry.type(description="策略版本 (每个版本都保留完整的策略行)")
class PolicyVersion:
    version: int
    created_at: datetime = strawberry.field(description="生效时间")
    created_by: str = strawberry.field(description="提出人 (system: 默认策略或迁移)")
    approved_by: str | None = strawberry.field(description="批准人")
    note: str = strawberry.field(description="说明")
    proposal_id: strawberry.ID | None = strawberry.field(description="对应的变更申请")
    line_count: int | None = strawberry.field(description="策略行数 (未保存快照时为空)")
    lines: list[PolicyLine] | None = strawberry.field(
        description="该版本的完整策略行 (早于迁移 0004 且当时未生效的版本为空)"
    )
    expectations: str | None = strawberry.field(
        default=None, description="该版本的策略期望 (早于迁移 0010 的版本为空)"
    )


def _version(record: VersionRecord, officer: Officer) -> PolicyVersion:
    return PolicyVersion(
        version=record.version,
        created_at=record.created_at,
        created_by=record.created_by,
        approved_by=record.approved_by,
        note=record.note,
        proposal_id=strawberry.ID(str(record.proposal_id)) if record.proposal_id else None,
        line_count=len(record.lines) if record.lines is not None else None,
        lines=[_line(line, officer) for line in record.lines] if record.lines is not None else None,
        expectations=record.expectations,
    )


@strawberry.type
class PolicyVersionEdge:
    cursor: str
    node: PolicyVersion


@strawberry.type(description="策略版本分页结果 (最新的在前)")
class PolicyVersionConnection:
    edges: list[PolicyVersionEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="一个格子的效果变化: 某主体对某字段 (或操作、行范围) 变更前后的权限")
class FieldEffectChange:
    subject: str = strawberry.field(
        description="主体: 部门:层级, 部门@区划:层级 (该区域内的调用方) 或 role:角色"
    )
    field: str = strawberry.field(description="字段 (Person.phone)、操作 (Loop.tasks) 或行范围")
    before: FieldEffect
    after: FieldEffect


@strawberry.type(description="策略变更申请: 新增和删除的策略行, 由另一名安全管理员审批")
class PolicyProposal:
    id: strawberry.ID
    status: ProposalStatus
    title: str
    note: str | None
    proposed_by: str = strawberry.field(description="提出人")
    proposed_at: datetime
    base_version: int = strawberry.field(description="提出时生效的版本 (差异的基础)")
    decided_by: str | None = strawberry.field(description="审批人 (驳回或批准)")
    decided_at: datetime | None
    decision_note: str | None = strawberry.field(description="审批意见")
    resulting_version: int | None = strawberry.field(description="批准后生成的版本")
    added: list[PolicyLine]
    removed: list[PolicyLine]
    can_approve: bool = strawberry.field(
        description=(
            "调用方可以批准: 不是提出人、所有行在其辖区内、待审批且基础版本仍生效 "
            "(策略期望另见 expectationFailures: 有不成立的期望时批准被拒绝)"
        )
    )
    expectations: str | None = strawberry.field(
        default=None, description="申请的完整策略期望 (批准后生效); 为空表示不修改策略期望"
    )
    record: strawberry.Private[ProposalRecord]

    @strawberry.field(description="申请所基于版本的策略期望 (与 expectations 对照查看修改)")
    async def expectations_before(self, info: Ctx) -> str:
        return await _admin(info).expectations_before(self.record)

    @strawberry.field(
        description=(
            "按申请变更后 (此刻) 不成立的策略期望; 申请修改了期望时按新期望检查. "
            "非空时不能批准, 除非在同一申请中修改相应的期望"
        )
    )
    async def expectation_failures(self, info: Ctx) -> list[ExpectationFailure]:
        return failures_of(await _admin(info).expectation_failures(self.record))

    @strawberry.field(
        description=(
            "变更前后权限不同的格子 (主体 × 字段/操作/行范围). 主体为 8 个部门 × 3 个层级 "
            "(不在任何限定区域内的调用方), 以及策略行提到的每个区域 (部门@区划:层级) 和角色"
        )
    )
    async def field_changes(self, info: Ctx) -> list[FieldEffectChange]:
        admin = _admin(info)
        before = await admin.lines_before(self.record)
        after = apply_change(before, self.record.added, self.record.removed)
        moment = now_utc()  # the cells as they would be now: lines past their end grant nothing
        changes = await asyncio.to_thread(
            effect_changes, in_force_at(before, moment), in_force_at(after, moment)
        )
        return [
            FieldEffectChange(
                subject=change.subject,
                field=change.cell,
                before=FieldEffect(change.before.value),
                after=FieldEffect(change.after.value),
            )
            for change in changes
        ]


def _proposal(record: ProposalRecord, officer: Officer, in_force: int) -> PolicyProposal:
    return PolicyProposal(
        id=strawberry.ID(str(record.id)),
        status=ProposalStatus(record.status),
        title=record.title,
        note=record.note,
        proposed_by=record.proposed_by,
        proposed_at=record.proposed_at,
        base_version=record.base_version,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        decision_note=record.decision_note,
        resulting_version=record.resulting_version,
        added=[_line(line, officer) for line in record.added],
        removed=[_line(line, officer) for line in record.removed],
        can_approve=PolicyAdmin.can_approve(officer, record, in_force),
        expectations=record.expectations,
        record=record,
    )


@strawberry.type
class PolicyProposalEdge:
    cursor: str
    node: PolicyProposal


@strawberry.type(description="策略变更申请分页结果 (最新的在前)")
class PolicyProposalConnection:
    edges: list[PolicyProposalEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="策略表格的一格")
class PolicyMatrixCell:
    subject: str
    field: str
    effect: FieldEffect = strawberry.field(
        description="字段: 明文/脱敏/不可读; 操作和行范围: READ 为允许, DENY 为不允许"
    )
    changed: bool = strawberry.field(description="与当前生效版本不同 (仅在查看申请时)")


@strawberry.type(
    description=(
        "策略表格: 主体 (部门 × 层级, 以及策略行提到的区域和角色) × 字段、操作和行范围. "
        "用途受限的行按其用途计入: 格子显示任一用途下的最高权限"
    )
)
class PolicyMatrix:
    version: int = strawberry.field(description="当前版本 (查看申请时为申请的基础版本)")
    proposal_id: strawberry.ID | None
    subjects: list[str] = strawberry.field(
        description="行: civil_affairs:county … (8 部门 × 3 层级), 部门@区划:层级, role:角色"
    )
    fields: list[str] = strawberry.field(description="列: 受控字段、操作、行范围")
    cells: list[PolicyMatrixCell]


# ---------------------------------------------------------------- helpers
def _officer(info: Ctx) -> Officer:
    officer = Officer.of(info.context.principal)
    note_policy_change(info)  # a mutation enters the administrators' own trail (issue 16)
    return officer


def _admin(info: Ctx) -> PolicyAdmin:
    context = info.context
    return PolicyAdmin(context.people.execute, context.engine, on_change=context.policy_changed)


def _page_size(info: Ctx, first: int) -> int:
    if first < 0 or first > info.context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {info.context.max_page_size} 之间")
    return first


def _encode(prefix: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{prefix}:{key}".encode()).decode()


def _decode(prefix: str, cursor: str) -> str:
    try:
        head, _, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        head, key = "", ""
    if head != prefix or not key:
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor")
    return key


def _proposal_id(value: strawberry.ID) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadUserInput("申请编号 id 无效") from None


# ---------------------------------------------------------------- queries
async def policies(info: Ctx, expiring_within_days: int | None = None) -> PolicySet:
    """``expiringWithinDays``: only the lines whose validity end (期限) falls within that many
    days from now (soonest first): the grants officers must renew or let lapse."""
    officer = _officer(info)
    record = await _admin(info).in_force()
    lines = list(record.lines or ())
    if expiring_within_days is not None:
        if not 0 <= expiring_within_days <= 3660:
            raise BadUserInput("expiringWithinDays 应在 0 到 3660 之间")
        moment = now_utc()
        until = moment + timedelta(days=expiring_within_days)
        soon = [
            (end, line) for line in lines if (end := valid_to_of(line)) and moment < end <= until
        ]
        lines = [line for _, line in sorted(soon, key=lambda item: item[0])]
    return PolicySet(
        version=record.version,
        created_at=record.created_at,
        created_by=record.created_by,
        note=record.note,
        lines=[_line(line, officer) for line in lines],
        expectations=record.expectations or "",
    )


async def policy_versions(
    info: Ctx, first: int = 20, after: str | None = None
) -> PolicyVersionConnection:
    officer = _officer(info)
    first = _page_size(info, first)
    before = None
    if after:
        key = _decode("version", after)
        if not key.isdigit():
            raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor")
        before = int(key)
    admin = _admin(info)
    records, has_next = await admin.versions(first=first, before=before)
    edges = [
        PolicyVersionEdge(cursor=_encode("version", str(r.version)), node=_version(r, officer))
        for r in records
    ]
    return PolicyVersionConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        total_count=await admin.count_versions(),
    )


async def policy_proposals(
    info: Ctx, status: ProposalStatus | None = None, first: int = 20, after: str | None = None
) -> PolicyProposalConnection:
    officer = _officer(info)
    first = _page_size(info, first)
    position = None
    if after:
        at, _, hex_id = _decode("proposal", after).rpartition("|")
        try:
            position = (datetime.fromisoformat(at), uuid.UUID(hex=hex_id))
        except ValueError:
            raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None
    admin = _admin(info)
    wanted = status.name if status else None
    records, has_next = await admin.proposals(status=wanted, first=first, after=position)
    in_force = await admin.current_version()
    edges = [
        PolicyProposalEdge(
            cursor=_encode("proposal", f"{r.proposed_at.isoformat()}|{r.id.hex}"),
            node=_proposal(r, officer, in_force),
        )
        for r in records
    ]
    return PolicyProposalConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        total_count=await admin.count_proposals(status=wanted),
    )


async def policy_proposal(info: Ctx, id: strawberry.ID) -> PolicyProposal | None:
    officer = _officer(info)
    admin = _admin(info)
    record = await admin.proposal(_proposal_id(id))
    if record is None:
        return None
    return _proposal(record, officer, await admin.current_version())


async def policy_matrix(info: Ctx, proposal_id: strawberry.ID | None = None) -> PolicyMatrix:
    _officer(info)
    admin = _admin(info)
    in_force = await admin.in_force()
    before = in_force.lines or ()
    after, version = before, in_force.version
    if proposal_id is not None:
        record = await admin.proposal(_proposal_id(proposal_id))
        if record is None:
            raise BadUserInput("未找到该策略变更申请")
        before = await admin.lines_before(record)
        after = apply_change(before, record.added, record.removed)
        version = record.base_version
    moment = now_utc()  # the grid as it grants now: lines past their end grant nothing
    before, after = in_force_at(before, moment), in_force_at(after, moment)
    rows, columns = grid_rows(before, after), grid_cells(before, after)

    def grid() -> list[PolicyMatrixCell]:
        cells = []
        for row in rows:
            old, new = cells_of(row, before), cells_of(row, after)
            for column in columns:
                effect = new.get(column, Effect.DENY)
                cells.append(
                    PolicyMatrixCell(
                        subject=row.name,
                        field=column,
                        effect=FieldEffect(effect.value),
                        changed=effect is not old.get(column, Effect.DENY),
                    )
                )
        return cells

    return PolicyMatrix(
        version=version,
        proposal_id=proposal_id,
        subjects=[row.name for row in rows],
        fields=columns,
        cells=await asyncio.to_thread(grid),
    )


# ---------------------------------------------------------------- mutations
async def propose_policy_change(
    info: Ctx,
    title: str,
    note: str | None = None,
    add: list[PolicyLineInput] = [],  # noqa: B006 - GraphQL default, never mutated
    remove: list[PolicyLineInput] = [],  # noqa: B006
    expectations: str | None = None,
) -> PolicyProposal:
    """``expectations``: the complete new set of policy expectations (策略期望, one ``e`` line
    each; "" for none); omitted or null: unchanged."""
    officer = _officer(info)
    admin = _admin(info)
    record = await admin.propose(
        officer,
        title,
        note,
        add=[_stored(line) for line in add],
        remove=[_stored(line) for line in remove],
        expectations=expectations,
    )
    return _proposal(record, officer, record.base_version)


async def propose_policy_rollback(
    info: Ctx, version: int, note: str | None = None
) -> PolicyProposal:
    officer = _officer(info)
    record = await _admin(info).propose_rollback(officer, version, note)
    return _proposal(record, officer, record.base_version)


async def approve_policy_change(
    info: Ctx, id: strawberry.ID, note: str | None = None
) -> PolicyProposal:
    officer = _officer(info)
    record = await _admin(info).approve(officer, _proposal_id(id), note)
    return _proposal(record, officer, record.resulting_version or 0)


async def reject_policy_change(info: Ctx, id: strawberry.ID, note: str) -> PolicyProposal:
    officer = _officer(info)
    admin = _admin(info)
    record = await admin.reject(officer, _proposal_id(id), note)
    return _proposal(record, officer, record.base_version)
