"""Policy expectations (策略期望, issue 16 item 5): what a policy must keep granting or denying,
written as data and checked against every proposal before it can be approved.

One expectation a line, CSV like the policy file, starting with ``e``::

    # e, 调用方, 用途, 对象, 期望
    e, civil_affairs:county@370102, relief_recognition, Person.phone, mask
    e, health:city@3701, *, Person.phone, deny
    e, medical_insurance:county@370102, *, Loop.tasks, call
    e, big_data:province@37, *, rows, none
    e, health:county@370102, -, rows, Person(all) + Person(pushed)

- **调用方** (caller): a concrete caller, ``department:level@region`` with a region code of the
  level's length (2/4/6 digits): the caller the token of such an officer of that place names.
  The policy's spelling of a subject, ``department@region:level``, is accepted for the same
  caller (written back as ``department:level@region``).
- **用途** (purpose): the ``X-Purpose`` declared; ``-`` none declared; ``*`` every case (none
  declared and each purpose the policy names): the expectation must hold in all of them.
- **对象** and **期望**: a guarded field (``Person.phone``) and ``read`` / ``mask`` / ``deny`` (the
  field's effect, exactly); an operation (``Loop.tasks``) and ``call`` / ``deny``; or ``rows``
  and the row scopes the caller is granted, exactly: ``none`` (sees no one) or the scopes
  joined by ``+`` (order, and the order of categories and places inside one, do not matter).

Expectations are checked with the same decisions as the gateway (:class:`OfflinePolicy`, the
lines that grant at the moment of the check). They live in the database with each version
(``policy_version.expectations``); a proposal may carry a new complete set
(``policy_proposal.expectations``), reviewed and approved with its lines (four eyes).

    expectations = parse_expectations(text)
    for failure in check_expectations(expectations, lines):
        print(failure.message)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from authz.conditions import parse_row_object
from authz.decision import AccessDecision
from authz.offline import OfflinePolicy
from authz.purpose import named_purposes
from authz.resources import GUARDED_FIELDS, MASKABLE_FIELDS, OPERATIONS
from authz.store import PolicyLine
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, LEVEL_NAMES_ZH, Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal

ROWS = "rows"
NO_ROWS = "none"
ANY_PURPOSE = "*"
NO_PURPOSE = "-"
_FIELD_WORDS = {"read": "明文读取", "mask": "脱敏读取", "deny": "拒绝"}
_CALL_WORDS = {"call": "可调用", "deny": "不可调用"}
HEADER = "# 列: e, 调用方 (部门:层级@区划), 用途 (- 未声明, * 任何情形), 对象, 期望"


@dataclass(frozen=True, slots=True)
class Expectation:
    """One expectation: ``caller`` declaring ``purpose`` gets ``expected`` for ``target``."""

    caller: str  # department:level@region
    purpose: str  # a purpose, "-" none declared, "*" every case
    target: str  # a guarded field, an operation, or "rows"
    expected: str  # read/mask/deny, call/deny, or the row scopes ("none", "A + B")
    number: int = 0  # its line in the text it was read from (0: built in code)

    @property
    def text(self) -> str:
        return f"e, {self.caller}, {self.purpose}, {self.target}, {self.expected}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.caller, self.purpose, self.target)

    @property
    def region(self) -> str:
        return self.caller.partition("@")[2]

    def principal(self) -> Principal:
        head, _, region = self.caller.partition("@")
        department, _, level = head.partition(":")
        return Principal("policy-expectation", Department(department), Level(level), region)

    def caller_words(self) -> str:
        principal = self.principal()
        return (
            f"{principal.region} {LEVEL_NAMES_ZH[principal.level]}"
            f"{DEPARTMENT_NAMES_ZH[principal.department]}"
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """An expectation that does not hold: under which purpose, and what the policy gives."""

    expectation: Expectation
    purpose: str  # the purpose it failed under ("" none declared)
    actual: str  # in the expectation's own terms (read/mask/deny, call/deny, scopes)

    @property
    def message(self) -> str:
        expectation = self.expectation
        purpose = f"声明用途 {self.purpose} 时" if self.purpose else "未声明用途时"
        where = f"第 {expectation.number} 行" if expectation.number else ""
        return (
            f"策略期望{where}「{expectation.text}」不成立: {expectation.caller_words()}"
            f"{purpose} {expectation.target} 为 {_words(expectation.target, self.actual)}, "
            f"期望 {_words(expectation.target, expectation.expected)}"
        )


def _words(target: str, value: str) -> str:
    if target == ROWS:
        return "不可见任何人员 (none)" if value == NO_ROWS else f"可见 {value}"
    words = _CALL_WORDS if target in OPERATIONS else _FIELD_WORDS
    return f"{words.get(value, value)} ({value})"


# ---------------------------------------------------------------- reading and writing
def _row_scopes(text: str) -> str:
    """Row scopes in one canonical form: each parsed, sorted, joined by `` + ``."""
    if text.strip() == NO_ROWS:
        return NO_ROWS
    parts = [part.strip() for part in text.split("+")]
    if not all(parts):
        raise ConfigurationError(f"行范围为空: {text!r} (写 none 或 Person(…) + Person(…))")
    scopes = sorted({f"Person({parse_row_object(part)})" for part in parts})
    if len(scopes) != len(parts):
        raise ConfigurationError(f"行范围重复: {text!r}")
    return " + ".join(scopes)


def _caller(text: str) -> str:
    """The caller in its one spelling, ``department:level@region``. The policy's own spelling of
    a subject, ``department@region:level`` (``civil_affairs@370102:county``), names the same
    caller and is accepted too; both are stored, compared and shown as the first."""
    head, at, rest = text.partition("@")
    if at and ":" not in head and ":" in rest:  # department@region:level, as in a policy line
        region, _, level = rest.partition(":")
        department = head
    else:
        department, colon, level = head.partition(":")
        region = rest
        if not at or not colon:
            raise ConfigurationError(
                f"调用方格式错误: {text!r} (应为 部门:层级@区划, 如 civil_affairs:county@370102;"
                " 或按策略主体的写法 部门@区划:层级, 如 civil_affairs@370102:county)"
            )
    if department not in {d.value for d in Department}:
        raise ConfigurationError(f"未知部门: {department!r}")
    if level not in {lv.value for lv in Level}:
        raise ConfigurationError(f"未知层级: {level!r} (应为 province/city/county)")
    digits = Level(level).region_digits
    if not (region.isascii() and region.isdigit() and len(region) == digits):
        raise ConfigurationError(f"{level} 调用方的区划应为 {digits} 位代码: {region!r}")
    return f"{department}:{level}@{region}"


def expectation_of(cells: Sequence[str], number: int = 0) -> Expectation:
    """One expectation from its four cells (caller, purpose, target, expected), validated."""
    caller, purpose, target, expected = (cell.strip() for cell in cells)
    caller = _caller(caller)
    if not purpose:
        raise ConfigurationError("用途不能为空 (未声明用途写 -, 任何情形写 *)")
    if target == ROWS:
        expected = _row_scopes(expected)
    elif target in OPERATIONS:
        if expected not in _CALL_WORDS:
            raise ConfigurationError(f"操作 {target} 的期望应为 call 或 deny: {expected!r}")
    elif target in GUARDED_FIELDS:
        if expected not in _FIELD_WORDS:
            raise ConfigurationError(f"字段 {target} 的期望应为 read、mask 或 deny: {expected!r}")
        if expected == "mask" and target not in MASKABLE_FIELDS:
            raise ConfigurationError(f"字段 {target} 没有脱敏形式, 期望不能为 mask")
    else:
        raise ConfigurationError(f"未知对象: {target!r} (应为受控字段、操作或 rows)")
    return Expectation(caller, purpose, target, expected, number)


def parse_expectations(text: str, *, source: str = "策略期望") -> list[Expectation]:
    """The ``e`` lines of ``text`` (policy lines ``p`` are skipped: one file may hold both).
    A bad line refuses the whole text, naming the line."""
    found: list[Expectation] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if cells[0] == "p":
            continue
        if cells[0] != "e" or len(cells) != 5:
            raise ConfigurationError(
                f"{source} 第 {number} 行: 应为 'e, 调用方, 用途, 对象, 期望' 五列"
            )
        try:
            expectation = expectation_of(cells[1:], number)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source} 第 {number} 行: {exc.message}") from None
        if expectation.key in seen:
            raise ConfigurationError(
                f"{source} 第 {number} 行: 与第 {seen[expectation.key]} 行重复 "
                "(同一调用方、用途和对象只能有一条期望)"
            )
        seen[expectation.key] = number
        found.append(expectation)
    return found


def has_expectations(text: str) -> bool:
    """Whether ``text`` holds any ``e`` line (a policy file without them leaves the
    expectations as they are)."""
    return any(
        row and row[0].strip() == "e"
        for row in csv.reader(text.splitlines(), skipinitialspace=True)
    )


def expectations_text(expectations: Iterable[Expectation]) -> str:
    """The canonical text (``policy_version.expectations``): one ``e`` line each, in order."""
    return "".join(f"{expectation.text}\n" for expectation in expectations)


def canonical(text: str | None, *, source: str = "策略期望") -> str:
    """``text`` parsed and written back (comments and spacing dropped); "" for none."""
    return expectations_text(parse_expectations(text or "", source=source))


# ---------------------------------------------------------------- checking
def _actual(decision: AccessDecision, target: str) -> str:
    if target == ROWS:
        scopes = sorted(f"Person({condition})" for condition in decision.row_conditions)
        return " + ".join(scopes) if scopes else NO_ROWS
    if target in OPERATIONS:
        return "call" if target in decision.operations else "deny"
    return decision.effect(target).value


def check_expectations(
    expectations: Iterable[Expectation],
    lines: Iterable[PolicyLine] | OfflinePolicy,
    *,
    at: datetime | None = None,
) -> list[Failure]:
    """The expectations that do not hold under ``lines`` (the lines that grant at ``at``,
    default now); an expectation for every purpose (``*``) fails once per purpose it fails in."""
    policy = lines if isinstance(lines, OfflinePolicy) else OfflinePolicy(lines, at=at)
    every = ("", *named_purposes(policy.lines))
    failures: list[Failure] = []
    for expectation in expectations:
        if expectation.purpose == ANY_PURPOSE:
            purposes: Sequence[str] = every
        elif expectation.purpose == NO_PURPOSE:
            purposes = ("",)
        else:
            purposes = (expectation.purpose,)
        principal = expectation.principal()
        for purpose in purposes:
            actual = _actual(policy.decision(principal, purpose), expectation.target)
            if actual != expectation.expected:
                failures.append(Failure(expectation, purpose, actual))
    return failures


def changed_expectations(before: str | None, after: str | None) -> list[Expectation]:
    """The expectations a new set adds, removes or changes (both sides), for jurisdiction
    checks: an officer changes only expectations of callers in its own region."""
    old = {e.text for e in parse_expectations(before or "")}
    new = {e.text for e in parse_expectations(after or "")}
    return [
        e
        for e in (*parse_expectations(before or ""), *parse_expectations(after or ""))
        if (e.text in old) != (e.text in new)
    ]
