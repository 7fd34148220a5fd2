"""Simulation and explanation for security officers (issue 5): ``simulateAccess`` runs a query
as a subject under the version in force and under a proposal and shows the difference (shapes,
never values); ``explainAccess`` says, for one audited request, which policy lines granted or
denied each field and row scope. Officer-only (FORBIDDEN for anyone else), within the officer's
jurisdiction. Thin resolvers over ``schema.simulator`` and ``authz.explain``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from authz import simulate as outcomes
from authz.admin import Officer, PolicyAdmin, apply_change
from authz.decision import Effect
from authz.explain import Explanation, NumberedLine, explain_access
from authz.offline import OfflinePolicy
from authz.store import grants_at, subject_region, valid_to_of
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.departments import Department as DepartmentCode
from gateway.domain.departments import Level as LevelCode
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.domain.principal import Principal as Caller
from gateway.storage.audit_log import AuditLogReader
from schema.audit import audit_scope, auditor
from schema.enums import Department, FieldEffect, Level
from schema.policy import (
    ExpectationFailure,
    FieldEffectChange,
    PolicyAction,
    PolicyLine,
    failures_of,
)
from schema.purposes import purpose_labels
from schema.simulator import is_simulated, simulate, simulated_principal
from schema.types import Ctx, FieldAccess

# What an officer's own request releases, as its audit entry records it: the shapes of the
# simulated answers (no values), an explanation of another request.
SIMULATION_SHAPES = "Simulation.shapes"
AUDIT_EXPLANATION = "AuditLog.explanation"


@strawberry.input(description="模拟的调用方: 部门、层级、辖区、用途 (及角色)")
class SimulatedSubject:
    department: Department
    level: Level
    region: str = strawberry.field(description="辖区行政区划代码, 位数与层级一致 (2/4/6 位)")
    purpose: str | None = strawberry.field(
        default="", description="声明的用途 (X-Purpose), 空为未声明"
    )
    roles: list[str] | None = strawberry.field(default_factory=list, description="令牌角色")


@strawberry.type(description="模拟结果中的一个错误 (如 FORBIDDEN), 带其路径")
class SimulatedError:
    path: list[str] = strawberry.field(description="错误所在路径; 空表示整个请求被拒绝")
    code: str
    message: str


@strawberry.type(description="一次模拟运行的结果: 数据只保留形状, 不含任何人员的值")
class SimulatedOutcome:
    policy_version: int = strawberry.field(description="策略版本 (申请一侧为批准后将生成的版本号)")
    row_scope: list[str] = strawberry.field(description="辖区内可见的人员范围 (策略行条件)")
    field_access: list[FieldAccess] = strawberry.field(description="可读 (明文或脱敏) 的字段")
    people: int = strawberry.field(description="查询涉及的不同人数")
    data: JSON | None = strawberry.field(
        description="响应数据: 每个非空值替换为「已读取」或「已脱敏」, 空值保留"
    )
    errors: list[SimulatedError]


@strawberry.type(description="访问模拟: 同一查询在当前版本和申请版本下的结果对比")
class Simulation:
    current: SimulatedOutcome = strawberry.field(description="当前生效版本下")
    proposed: SimulatedOutcome = strawberry.field(description="按申请变更后")
    field_changes: list[FieldEffectChange] = strawberry.field(
        description="该调用方 (此用途下) 权限发生变化的字段、操作和行范围"
    )
    people_gained: int = strawberry.field(description="变更后新增可见的人数 (本查询内)")
    people_lost: int = strawberry.field(description="变更后不再可见的人数 (本查询内)")
    identical: bool = strawberry.field(description="两次结果的形状、错误和人员完全相同")
    expectation_failures: list[ExpectationFailure] = strawberry.field(
        default_factory=list,
        description="按申请变更后不成立的策略期望 (非空时不能批准, 除非同一申请修改相应期望)",
    )


@strawberry.type(description="一个字段为何被授予或拒绝")
class FieldExplanation:
    field: str
    effect: FieldEffect = strawberry.field(description="按该请求当时的策略版本和用途")
    released: str | None = strawberry.field(
        description="审计记录中实际释放的效果: read / mask; 未释放为空"
    )
    lines: list[PolicyLine] = strawberry.field(description="授予该效果的策略行 (空: 被拒绝)")
    reason: str = strawberry.field(description="原因")


@strawberry.type(description="一个行范围为何适用或不适用")
class RowExplanation:
    condition: str = strawberry.field(description="行范围, 如 Person(all)")
    granted: bool = strawberry.field(description="该请求的调用方在辖区内看得到这些人员")
    lines: list[PolicyLine]
    reason: str


@strawberry.type(description="审计日志中一次请求的访问解释")
class AccessExplanation:
    entry_id: strawberry.ID
    occurred_at: datetime
    subject: str = strawberry.field(description="发起请求的用户 (令牌 sub)")
    department: Department
    level: Level
    region: str
    purpose: str = strawberry.field(description="声明的用途; 空为未声明")
    policy_version: int
    subject_keys: list[str] = strawberry.field(
        description="策略匹配用的主体键 (由审计记录重建; 记录不含角色, 角色行未计入)"
    )
    fields: list[FieldExplanation]
    rows: list[RowExplanation]


# ---------------------------------------------------------------- helpers
def _officer(info: Ctx, what: str) -> Officer:
    principal = info.context.principal
    if not principal.is_security_admin:
        raise Forbidden(f"仅安全管理员可以{what}")
    if is_simulated(principal):
        raise Forbidden("模拟的请求中不能再发起模拟或解释")
    return Officer.of(principal)


def _policy_line(numbered: NumberedLine, officer: Officer) -> PolicyLine:
    line = numbered.line
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


def _outcome(run: outcomes.RunOutcome) -> SimulatedOutcome:
    decision = run.decision
    return SimulatedOutcome(
        policy_version=run.policy_version,
        row_scope=[str(condition) for condition in decision.row_conditions],
        field_access=[
            FieldAccess(field=name, effect=FieldEffect(effect.value))
            for name, effect in decision.fields.items()
            if effect is not Effect.DENY
        ],
        people=len(run.people),
        data=run.data,
        errors=[
            SimulatedError(path=list(error.path), code=error.code, message=error.message)
            for error in run.errors
        ],
    )


# ---------------------------------------------------------------- resolvers
async def simulate_access(
    info: Ctx,
    proposal_id: strawberry.ID,
    subject: SimulatedSubject,
    query: str,
    variables: JSON | None = None,
) -> Simulation:
    officer = _officer(info, "模拟访问")
    context = info.context
    labels = purpose_labels()
    purpose = subject.purpose or ""
    if purpose and purpose not in labels:
        raise BadUserInput(f"未知的用途: {purpose!r}; 可选: {', '.join(labels)}")
    if variables is not None and not isinstance(variables, dict):
        raise BadUserInput("variables 应为 JSON 对象")
    principal = simulated_principal(
        officer.subject,
        officer.region,
        str(subject.department.value),
        str(subject.level.value),
        subject.region,
        list(subject.roles or ()),
    )
    try:
        wanted = uuid.UUID(str(proposal_id))
    except ValueError:
        raise BadUserInput("申请编号 proposalId 无效") from None
    admin = PolicyAdmin(context.people.execute, context.engine)
    record = await admin.proposal(wanted)
    if record is None:
        raise BadUserInput("未找到该策略变更申请")
    in_force = await admin.in_force()
    after = apply_change(await admin.lines_before(record), record.added, record.removed)
    current = OfflinePolicy(in_force.lines or (), version=in_force.version)
    proposed = OfflinePolicy(after, version=record.resulting_version or in_force.version + 1)
    now, then = await simulate(
        info.schema,
        context,
        principal=principal,
        purpose=purpose,
        purpose_labels=labels,
        query=query,
        variables=variables,
        current=current,
        proposed=proposed,
    )
    # Audited as the officer's request: the people the simulated runs touched, no values.
    context.audit_operation = "simulateAccess"
    context.guard.note_read(SIMULATION_SHAPES, now.people | then.people)
    name = f"{principal.department.value}@{principal.region}:{principal.level.value}"
    comparison = outcomes.compare(name, now, then)
    return Simulation(
        current=_outcome(now),
        proposed=_outcome(then),
        field_changes=[
            FieldEffectChange(
                subject=change.subject,
                field=change.cell,
                before=FieldEffect(change.before.value),
                after=FieldEffect(change.after.value),
            )
            for change in comparison.field_changes
        ],
        people_gained=len(comparison.people_gained),
        people_lost=len(comparison.people_lost),
        identical=comparison.identical,
        expectation_failures=failures_of(await admin.expectation_failures(record)),
    )


async def explain_access_entry(
    info: Ctx, audit_entry_id: strawberry.ID
) -> AccessExplanation | None:
    officer = auditor(info, "查看访问解释")  # 三权分立: the audit administrator's duty
    context = info.context
    raw = str(audit_entry_id)
    if not (raw.isascii() and raw.isdigit()):
        raise BadUserInput("审计记录编号 auditEntryId 无效")
    entry_id = int(raw)
    # Entries of requests made inside the officer's jurisdiction only; others look absent.
    rows, _ = await AuditLogReader(context.engine).page(
        audit_scope(context.principal), first=1, before_id=entry_id + 1
    )
    if not rows or rows[0].id != entry_id:
        return None
    entry = rows[0]
    admin = PolicyAdmin(context.people.execute, context.engine)
    version = await admin.version(entry.policy_version)
    lines = version.lines if version is not None else None
    if lines is None:
        in_force = await admin.in_force()
        if in_force.version != entry.policy_version:
            raise BadUserInput(
                f"策略版本 {entry.policy_version} 没有保存完整的策略行 (早于迁移 0004), "
                "无法解释该请求"
            )
        lines = in_force.lines or ()
    caller = Caller(
        entry.subject, DepartmentCode(entry.department), LevelCode(entry.level), entry.region
    )
    released: dict[str, str] = json.loads(entry.fields)
    explanation: Explanation = explain_access(
        lines,
        caller,
        entry.purpose,
        released=released,
        version=entry.policy_version,
        at=as_utc(entry.occurred_at),  # a line past its end then granted nothing then
    )
    context.guard.note_read(AUDIT_EXPLANATION)
    return AccessExplanation(
        entry_id=strawberry.ID(str(entry.id)),
        occurred_at=as_utc(entry.occurred_at),
        subject=entry.subject,
        department=Department(entry.department),
        level=Level(entry.level),
        region=entry.region,
        purpose=entry.purpose,
        policy_version=entry.policy_version,
        subject_keys=list(explanation.subject_keys),
        fields=[
            FieldExplanation(
                field=reason.field,
                effect=FieldEffect(reason.effect.value),
                released=reason.released,
                lines=[_policy_line(n, officer) for n in reason.lines],
                reason=reason.reason,
            )
            for reason in explanation.fields
        ],
        rows=[
            RowExplanation(
                condition=row.condition,
                granted=row.granted,
                lines=[_policy_line(n, officer) for n in row.lines],
                reason=row.reason,
            )
            for row in explanation.rows
        ],
    )
