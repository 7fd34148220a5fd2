"""Why a request got what it got (``explainAccess``, issue 5): for one audited request, every
guarded field and every row scope, the effect under the policy version the request ran under,
the lines that granted it and a reason a security officer reads without knowing casbin.

    explanation = explain_access(lines, principal, purpose, released={"Person.name": "read"})

The subject is rebuilt from the audit entry (department, level, region). The entry does not
record the token's roles: what a ``role:`` line grants is not counted, and a reason says so
where such a line would have mattered. Lines are taken as they granted at the moment of the
request (``at``): a line past its validity end (期限) granted nothing.

A denied field or row scope names the line that came closest (issue 16 item 8): a line of the
caller's department for that object that missed on one or two counts, and which ones: limited
to another region, to another purpose, for another level, or expired (at …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from casbin.util import key_match

from authz.admin import format_line
from authz.conditions import (
    PLACE_ORDER,
    RESIDENCE_ONLY,
    AllRows,
    PushedToDepartment,
    is_row_object,
    parse_row_object,
)
from authz.decision import AccessDecision, Effect
from authz.offline import OfflinePolicy
from authz.purpose import named_purposes
from authz.resources import DERIVED_FROM, GUARDED_FIELDS, MASKABLE_FIELDS, PARENT_RELATION
from authz.store import PolicyLine, grants_at, subject_region, valid_to_of, valid_to_words
from gateway.domain.clock import now_utc
from gateway.domain.departments import LEVEL_NAMES_ZH, Level
from gateway.domain.places import PLACE_NAMES_ZH
from gateway.domain.principal import Principal

_ACT_NAMES = {"read": "明文读取", "mask": "脱敏读取", "rows": "行范围"}


@dataclass(frozen=True, slots=True)
class NumberedLine:
    number: int  # 1-based position in the version's lines (as ``policy export`` lists them)
    line: PolicyLine


@dataclass(frozen=True, slots=True)
class FieldReason:
    field: str
    effect: Effect
    released: str | None  # what the audit entry says was released: "read", "mask" or None
    lines: tuple[NumberedLine, ...]  # the lines that granted the effect (empty when denied)
    reason: str


@dataclass(frozen=True, slots=True)
class RowReason:
    condition: str  # Person(all), Person(category: …), Person(pushed)
    granted: bool
    lines: tuple[NumberedLine, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    subject_keys: tuple[str, ...]
    fields: tuple[FieldReason, ...]
    rows: tuple[RowReason, ...]


@dataclass(frozen=True, slots=True)
class NearMiss:
    """A line that would have granted but for ``misses`` (in Chinese, one per count)."""

    line: NumberedLine
    misses: tuple[str, ...]


class _Explainer:
    def __init__(
        self,
        lines: Sequence[PolicyLine],
        principal: Principal,
        purpose: str,
        version: int,
        at: datetime,
    ) -> None:
        self.all_lines = tuple(lines)
        self.numbers: dict[PolicyLine, int] = {}
        for number, line in enumerate(self.all_lines, start=1):
            self.numbers.setdefault(line, number)
        self.at = at
        self.policy = OfflinePolicy(self.all_lines, version=version, at=at)
        self.lines = self.policy.granting  # the lines that granted at the request's moment
        self.principal = principal
        self.keys = principal.subject_keys
        self.purpose = purpose
        self.decision: AccessDecision = self.policy.decision(principal, purpose)
        self.other_purposes = [p for p in named_purposes(self.lines) if p != purpose]

    def numbered(self, found: Sequence[PolicyLine]) -> tuple[NumberedLine, ...]:
        return tuple(NumberedLine(self.numbers[line], line) for line in found)

    def granting(self, obj: str, act: str, purpose: str | None = None) -> tuple[NumberedLine, ...]:
        wanted = self.purpose if purpose is None else purpose
        return self.numbered(self.policy.matching_lines(self.keys, obj, act, wanted))

    def for_other_purposes(self, obj: str, act: str) -> list[tuple[str, tuple[NumberedLine, ...]]]:
        found = []
        for purpose in self.other_purposes:
            lines = tuple(n for n in self.granting(obj, act, purpose) if n.line[3] == purpose)
            if lines:
                found.append((purpose, lines))
        return found

    def role_lines(self, obj: str, act: str) -> tuple[NumberedLine, ...]:
        """Lines of any role that would grant ``obj`` (roles are not in the audit entry)."""
        return tuple(
            NumberedLine(self.numbers[line], line)
            for line in self.lines
            if line[0].startswith("role:")
            and line[2] == act
            and key_match(obj, line[1])
            and line[3] in ("*", self.purpose)
        )

    # ---------------------------------------------------------------- fields
    def field(self, name: str, released: str | None) -> FieldReason:
        effect = self.decision.effect(name)
        if effect is not Effect.DENY:
            act = "read" if effect is Effect.READ else "mask"
            lines = self.granting(name, act)
            reason = f"由{_cite(lines)}授予{_ACT_NAMES[act]}"
            if effect is Effect.MASK:
                reason += _other_purpose_note(self.for_other_purposes(name, "read"), "明文读取")
            return FieldReason(name, effect, released, lines, reason)
        return FieldReason(name, effect, released, (), self.denied_reason(name))

    def denied_reason(self, name: str) -> str:
        own = self.granting(name, "read")
        masked = self.granting(name, "mask")
        if own or (masked and name in MASKABLE_FIELDS):
            # A grant of its own exists: a rule of reachability or derivation withdrew it.
            parent = PARENT_RELATION.get(name.split(".", 1)[0])
            if parent is not None and self.decision.effect(parent) is Effect.DENY:
                return (
                    f"关系 {parent} 被拒绝, 其下字段不可达 (本字段虽由{_cite(own or masked)}授予, "
                    "但不经该关系无法读取)"
                )
            sources = [
                source
                for source in DERIVED_FROM.get(name, ())
                if self.decision.effect(source) is not Effect.READ
            ]
            if sources:
                return (
                    f"派生字段: 其来源 {', '.join(sources)} 不可明文读取, 因此本字段被拒绝 "
                    f"(本字段虽由{_cite(own)}授予)"
                )
        if masked and name not in MASKABLE_FIELDS:
            return f"{_cite(masked)}授予脱敏读取, 但该字段没有脱敏形式, 脱敏授予不释放任何内容"
        elsewhere = self.for_other_purposes(name, "read") + self.for_other_purposes(name, "mask")
        if elsewhere:
            return _purpose_reason(self.purpose, elsewhere) + self.role_note(name)
        return (
            "没有任何策略行授予 (默认拒绝)"
            + self.near_note(name, ("read", "mask"))
            + (self.role_note(name))
        )

    # ---------------------------------------------------------------- near misses
    def misses(self, line: PolicyLine) -> tuple[str, ...] | None:
        """Why ``line`` does not apply to this caller, purpose and moment (one reason per
        count), or None when it is not a line of the caller's department at all."""
        head, _, level = line[0].partition(":")
        department, _, region = head.partition("@")
        if department != self.principal.department.value:
            return None
        misses: list[str] = []
        if region and not self.principal.region.startswith(region):
            misses.append(
                f"限于区域 {region} 内的调用方, 而调用方辖区为 {self.principal.region or '未知'}"
            )
        if level != "*" and level != self.principal.level.value:
            known = {lv.value: LEVEL_NAMES_ZH[lv] for lv in Level}
            wanted = known.get(level, level)
            misses.append(f"只授予{wanted}调用方, 而调用方为{LEVEL_NAMES_ZH[self.principal.level]}")
        if line[3] != "*" and line[3] != self.purpose:
            misses.append(f"限于用途 {line[3]}, 而本次请求声明的用途为 {self.purpose or '未声明'}")
        end = valid_to_of(line)
        if end is not None and not grants_at(line, self.at):
            misses.append(f"已于 {valid_to_words(end)} 到期")
        return tuple(misses)

    def near_misses(self, obj: str, acts: Sequence[str]) -> list[NearMiss]:
        """The lines for ``obj`` (and these actions) of the caller's department that missed on
        the fewest counts (one or two), closest first; none when nothing came close."""
        found: list[NearMiss] = []
        for line in self.all_lines:
            if line[2] not in acts or not key_match(obj, line[1]):
                continue
            misses = self.misses(line)
            if misses and len(misses) <= 2:
                found.append(NearMiss(NumberedLine(self.numbers[line], line), misses))
        if not found:
            return []
        fewest = min(len(near.misses) for near in found)
        return [near for near in found if len(near.misses) == fewest][:3]

    def near_note(self, obj: str, acts: Sequence[str]) -> str:
        nearest = self.near_misses(obj, acts)
        if not nearest:
            return ""
        parts = [f"{_cite([near.line])}{'; 且'.join(near.misses)}" for near in nearest]
        return "; 最接近的是" + "; ".join(parts)

    def role_note(self, obj: str, act: str = "read") -> str:
        found = self.role_lines(obj, act) or (self.role_lines(obj, "mask") if act == "read" else ())
        if not found:
            return ""
        return (
            f"; 注意: 审计记录不含令牌的角色, {_cite(found)} (角色行) 可能授予了调用方此权限, "
            "未计入本解释"
        )

    # ---------------------------------------------------------------- rows
    def row(self, obj: str) -> RowReason:
        condition = f"Person({parse_row_object(obj)})"
        lines = self.granting(obj, "rows")
        if lines:
            reason = f"由{_cite(lines)}授予: 辖区内{_row_words(obj)}可见"
            return RowReason(condition, True, lines, reason)
        elsewhere = self.for_other_purposes(obj, "rows")
        if elsewhere:
            reason = _purpose_reason(self.purpose, elsewhere)
        else:
            reason = "没有任何策略行授予此行范围 (默认拒绝)" + self.near_note(obj, ("rows",))
        return RowReason(condition, False, (), reason + self.role_note(obj, "rows"))


def explain_access(
    lines: Sequence[PolicyLine],
    principal: Principal,
    purpose: str,
    *,
    released: Mapping[str, str],
    version: int = 0,
    at: datetime | None = None,
) -> Explanation:
    """Every guarded field and row scope for ``principal`` and ``purpose`` under ``lines`` as
    they granted at ``at`` (the request's moment; default now). Released names that are not
    policy fields (what an officer's own request notes, such as ``AuditLog.entries``) are
    listed after the guarded fields."""
    explainer = _Explainer(lines, principal, purpose, version, at if at is not None else now_utc())
    fields = [explainer.field(name, released.get(name)) for name in GUARDED_FIELDS]
    for name in sorted(set(released) - set(GUARDED_FIELDS)):
        fields.append(
            FieldReason(
                name,
                Effect.READ,
                released[name],
                (),
                "不受数据共享策略约束: 安全管理员角色的查询 (如审计日志、访问模拟), 本身已记入审计",
            )
        )
    row_objects = sorted({obj for _, obj, act, _ in explainer.all_lines if act == "rows"})
    rows = [explainer.row(obj) for obj in row_objects if is_row_object(obj)]
    return Explanation(principal.subject_keys, tuple(fields), tuple(rows))


def _cite(lines: Sequence[NumberedLine]) -> str:
    """``第 3 行「health:*, Person.name, read, *」(仅限区域 3701)``"""
    parts = []
    for numbered in lines:
        text = f"第 {numbered.number} 行「{format_line(numbered.line)}」"
        region = subject_region(numbered.line[0])
        if region:
            text += f"(仅限区域 {region} 内的调用方)"
        parts.append(text)
    return "、".join(parts) if parts else "(无)"


def _purpose_reason(
    declared: str, elsewhere: Sequence[tuple[str, tuple[NumberedLine, ...]]]
) -> str:
    named = "; ".join(f"用途 {purpose}: {_cite(lines)}" for purpose, lines in elsewhere)
    stated = declared or "未声明"
    return f"用途不符: 仅在其他用途下授予 ({named}); 本次请求声明的用途为 {stated}"


def _other_purpose_note(
    elsewhere: Sequence[tuple[str, tuple[NumberedLine, ...]]], what: str
) -> str:
    if not elsewhere:
        return ""
    purposes = "、".join(purpose for purpose, _ in elsewhere)
    return f"; 声明用途 {purposes} 时可{what}"


def _row_words(obj: str) -> str:
    condition = parse_row_object(obj)
    if isinstance(condition, AllRows):
        who = "所有人员"
    elif isinstance(condition, PushedToDepartment):
        who = "推送给本部门的人员"
    else:
        who = f"持有以下救助类别的人员 ({'|'.join(sorted(condition.categories))})"
    if condition.places == RESIDENCE_ONLY:
        return who
    # issue 14: which places bring a person into the jurisdiction ("参保地在本辖区即可见")
    places = "或".join(PLACE_NAMES_ZH[kind] for kind in PLACE_ORDER if kind in condition.places)
    return f"{who} ({places}在本辖区即可见)"
