"""Policies in the database: the casbin enforcer, the default policy file and versions.

The casbin lines live in ``casbin_rule`` (``v0``…``v3``: subject, object, action, purpose;
``v4``: the line's validity end, 期限, or null); every change adds a row to ``policy_version``,
and a process reloads the enforcer when it sees a newer version (polled at most every
``refresh_seconds``), so a change reaches every process without a restart. Decisions are cached
per (subject, purpose) for the policy in force.

A line with a validity end (:class:`TimedLine`) stops granting at that instant on every process
without a new version: the :class:`Authorizer` knows the next end among its lines and rebuilds
its enforcer and decisions when the clock (``gateway.domain.clock.now_utc``) passes it. casbin
only ever sees the four fields of ``model.conf``, of the lines valid at that moment.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, cast

import casbin
from sqlalchemy import Select, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from authz.conditions import is_row_object, parse_row_object
from authz.decision import AccessDecision, decide
from authz.resources import GUARDED_FIELDS, OPERATIONS
from gateway.domain.clock import CHINA_TZ, now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal
from gateway.storage.models import CasbinRule, PolicyVersion

log = logging.getLogger(__name__)

ACTIONS = frozenset({"read", "mask", "rows", "call"})
PolicyLine = tuple[str, str, str, str]  # subject, object, action, purpose


class TimedLine(tuple[str, str, str, str]):
    """A policy line with a validity end (期限): it grants until ``valid_to`` (exclusive).

    A tuple of the same four fields, so everything that reads lines reads it as before; it is
    a different line from the same four fields without an end (or with another end): a change
    of the end is the removal of one line and the addition of another.

        TimedLine(("health:*", "Person.phone", "read", "*"), datetime(2027, 4, 1, tzinfo=UTC))
    """

    valid_to: datetime

    def __new__(cls, line: Sequence[str], valid_to: datetime) -> TimedLine:
        if valid_to.tzinfo is None:
            raise ValueError("a line's validity end needs a timezone")
        made = super().__new__(cls, (line[0], line[1], line[2], line[3]))
        made.valid_to = valid_to.astimezone(UTC)
        return made

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, tuple):
            return NotImplemented
        return tuple.__eq__(self, other) and self.valid_to == valid_to_of(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((tuple(self), self.valid_to))

    def __repr__(self) -> str:
        return f"TimedLine({tuple(self)!r}, {self.valid_to.isoformat()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TimedLine, (tuple(self), self.valid_to))


def valid_to_of(line: Sequence[str]) -> datetime | None:
    """The line's validity end, or None for a line without one."""
    return line.valid_to if isinstance(line, TimedLine) else None


def with_valid_to(line: Sequence[str], valid_to: datetime | None) -> PolicyLine:
    """The four fields of ``line`` with ``valid_to`` as its end (None: no end)."""
    fields: PolicyLine = (line[0], line[1], line[2], line[3])
    return fields if valid_to is None else TimedLine(fields, valid_to)


def grants_at(line: Sequence[str], moment: datetime) -> bool:
    """Whether the line still grants at ``moment``: it stops at its end (期限), exclusive."""
    end = valid_to_of(line)
    return end is None or moment < end


def in_force_at(lines: Iterable[PolicyLine], moment: datetime) -> tuple[PolicyLine, ...]:
    """The lines that grant at ``moment`` (in their order)."""
    return tuple(line for line in lines if grants_at(line, moment))


def next_end(lines: Iterable[PolicyLine], moment: datetime) -> datetime | None:
    """The first validity end after ``moment``: when the effective policy changes next."""
    ends = [end for line in lines if (end := valid_to_of(line)) is not None and end > moment]
    return min(ends) if ends else None


def stored_end(valid_to: datetime | None) -> str | None:
    """A validity end as ``casbin_rule.v4`` and the JSON snapshots keep it (UTC, ISO 8601)."""
    return None if valid_to is None else valid_to.astimezone(UTC).isoformat()


def line_from_cells(cells: Sequence[Any]) -> PolicyLine:
    """A line from stored cells: four fields and an optional ISO end (``casbin_rule``, JSON)."""
    fields: PolicyLine = (str(cells[0]), str(cells[1]), str(cells[2]), str(cells[3]))
    end = cells[4] if len(cells) > 4 else None
    if end in (None, ""):
        return fields
    try:
        return TimedLine(fields, datetime.fromisoformat(str(end)))
    except ValueError:
        raise ConfigurationError(f"策略行的期限无效: {end!r} ({', '.join(fields)})") from None


def line_cells(line: PolicyLine) -> list[str]:
    """A line as stored in JSON: four fields, and the end when there is one."""
    end = stored_end(valid_to_of(line))
    return [*line] if end is None else [*line, end]


def parse_valid_to(text: str) -> datetime:
    """A validity end as an officer writes it. A bare date ``2027-03-31`` means through the
    end of that day in Beijing time (the line stops at 2027-04-01 00:00 +08:00); a moment
    needs its timezone (``2027-03-31T23:59:59+08:00``). Refused: anything else."""
    return _parse_when(text, bare_date="end")


def parse_moment(text: str) -> datetime:
    """A moment to look at the policy (``policy test --at``). A bare date ``2027-04-01`` means
    the START of that day in Beijing time (2027-04-01 00:00 +08:00: the first moment a line
    ending "2027-03-31" no longer grants); a moment needs its timezone. The errors say so,
    and name neither a policy line nor its end."""
    return _parse_when(text, bare_date="start")


def _parse_when(text: str, *, bare_date: str) -> datetime:
    what = "期限" if bare_date == "end" else "时刻"
    day_means = "北京时间当日结束" if bare_date == "end" else "北京时间当日零时 (当日开始)"
    example = "2027-03-31T23:59:59+08:00" if bare_date == "end" else "2027-04-01T08:30:00+08:00"
    text = text.strip()
    if len(text) == 10 and text[4:5] == "-" and text[7:8] == "-":
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(f"{what}日期无效: {text!r} (应为 YYYY-MM-DD)") from None
        midnight = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
        if bare_date == "end":
            midnight += timedelta(days=1)
        return midnight.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"{what}无效: {text!r} (应为日期 {example[:10]} 或带时区的时刻 {example})"
        ) from None
    if moment.tzinfo is None:
        raise ConfigurationError(
            f"{what}缺少时区: {text!r} (请写明时区, 如 {example}; 或只写日期, 表示{day_means})"
        )
    return moment.astimezone(UTC)


def format_valid_to(valid_to: datetime) -> str:
    """A validity end as the policy file writes it: a bare date when it is the end of a day in
    Beijing time (``2027-03-31``), else the moment in Beijing time with its offset."""
    local = valid_to.astimezone(CHINA_TZ)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        return (local.date() - timedelta(days=1)).isoformat()
    return local.isoformat()


def valid_to_words(valid_to: datetime) -> str:
    """``2027-03-31 23:59:59 (北京时间)`` for messages and explanations."""
    return f"{valid_to.astimezone(CHINA_TZ):%Y-%m-%d %H:%M:%S} (北京时间)"


def model_path() -> str:
    return str(resources.files("authz").joinpath("model.conf"))


def parse_policy_text(text: str, *, source: str = "策略文件") -> list[PolicyLine]:
    """Parse ``p, subject, object, action, purpose[, valid_to]`` lines; ``#`` starts a comment
    line. Lines starting with ``e`` are policy expectations (:mod:`authz.expectations`), read
    separately by :func:`authz.expectations.parse_expectations` and skipped here.

    The optional sixth column is the line's validity end (期限, :func:`parse_valid_to`).
    Objects may contain commas inside parentheses only if quoted; the shipped file uses ``|``.
    Every line is validated: a typo refuses the whole file rather than granting by accident.
    """
    lines: list[PolicyLine] = []
    for number, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if cells[0] == "e":
            continue
        if cells[0] != "p" or len(cells) not in (5, 6) or (len(cells) == 6 and not cells[5]):
            raise ConfigurationError(
                f"{source} 第 {number} 行: 应为 'p, 主体, 对象, 动作, 用途[, 期限]' 五列或六列"
            )
        try:
            end = parse_valid_to(cells[5]) if len(cells) == 6 else None
            line = with_valid_to(cells[1:5], end)
            validate_line(line)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source} 第 {number} 行: {exc.message}") from None
        lines.append(line)
    return lines


def subject_region(subject: str) -> str:
    """The region a line's subject is limited to (``civil_affairs@3701:county`` → ``3701``);
    ``""`` for a province-wide line or a role."""
    head = subject.partition(":")[0]
    return head.partition("@")[2]


def validate_line(line: Sequence[str]) -> None:
    subject, obj, action, purpose = line[0], line[1], line[2], line[3]
    head, _, level = subject.partition(":")
    department, at, region = head.partition("@")
    if department == "role":
        if not level or at:
            raise ConfigurationError(f"角色主体格式错误: {subject!r} (应为 role:<角色>)")
    else:
        if at and not (region.isascii() and region.isdigit() and len(region) in (2, 4, 6)):
            raise ConfigurationError(
                f"主体的区域应为 2、4 或 6 位区划代码: {subject!r} (如 civil_affairs@3701:county)"
            )
        if department not in {d.value for d in Department}:
            raise ConfigurationError(f"未知部门: {department!r}")
        if level != "*" and level not in {lv.value for lv in Level}:
            raise ConfigurationError(f"未知层级: {level!r} (应为 province/city/county 或 *)")
    if action not in ACTIONS:
        raise ConfigurationError(f"未知动作: {action!r} (应为 read/mask/rows/call)")
    if action == "rows":
        parse_row_object(obj)
    elif action == "call":
        if obj not in OPERATIONS:
            raise ConfigurationError(f"未知操作: {obj!r} (应为 {', '.join(OPERATIONS)} 之一)")
    elif obj.endswith("*"):
        prefix = obj[:-1]
        if not any(field.startswith(prefix) for field in GUARDED_FIELDS):
            raise ConfigurationError(f"通配对象 {obj!r} 不匹配任何字段")
    elif obj not in GUARDED_FIELDS:
        raise ConfigurationError(f"未知字段: {obj!r}")
    if not purpose:
        raise ConfigurationError("用途不能为空 (任何用途请写 *)")


def lines_json(lines: Sequence[PolicyLine]) -> str:
    """A version's snapshot (``policy_version.lines``): its lines in order, as JSON; a line
    with a validity end carries it as a fifth cell (UTC, ISO 8601)."""
    return json.dumps([line_cells(line) for line in lines], ensure_ascii=False)


def lines_from_json(raw: str) -> tuple[PolicyLine, ...]:
    """The lines of a snapshot written by :func:`lines_json` (four or five cells each)."""
    return tuple(line_from_cells(cells) for cells in json.loads(raw))


def rule_values(line: PolicyLine) -> dict[str, str | None]:
    """A line as a ``casbin_rule`` row: the four fields and the validity end in ``v4``."""
    return {
        "ptype": "p",
        "v0": line[0],
        "v1": line[1],
        "v2": line[2],
        "v3": line[3],
        "v4": stored_end(valid_to_of(line)),
    }


def stored_lines_query() -> Select[Any]:
    """``casbin_rule``'s lines in their order: the four fields and the validity end."""
    stmt = (
        select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3, CasbinRule.v4)
        .where(CasbinRule.ptype == "p")
        .order_by(CasbinRule.id)
    )
    return cast("Select[Any]", stmt)


async def stored_lines(db: AsyncSession | AsyncConnection) -> tuple[PolicyLine, ...]:
    """The lines in ``casbin_rule`` (all of them, past their end or not), in their order."""
    return tuple(line_from_cells(tuple(row)) for row in await db.execute(stored_lines_query()))


def build_enforcer(lines: Iterable[PolicyLine]) -> casbin.Enforcer:
    """A casbin enforcer of ``lines``: only their four fields (``model.conf``), each once."""
    enforcer = casbin.Enforcer(model_path())
    fields = list(dict.fromkeys((line[0], line[1], line[2], line[3]) for line in lines))
    if fields:
        enforcer.add_policies([list(line) for line in fields])
    return enforcer


def default_policy_lines() -> list[PolicyLine]:
    text = resources.files("authz").joinpath("default_policy.csv").read_text(encoding="utf-8")
    return parse_policy_text(text, source="默认策略")


def read_policy_file(path: Path) -> list[PolicyLine]:
    return parse_policy_text(path.read_text(encoding="utf-8"), source=str(path))


async def current_version(db: AsyncSession | AsyncConnection) -> int:
    return int((await db.execute(select(func.max(PolicyVersion.id)))).scalar() or 0)


async def install_default_policies(session: AsyncSession) -> bool:
    """On first start: load the shipped default policies as version 1. Idempotent."""
    if await current_version(session):
        return False
    lines = default_policy_lines()
    await session.execute(insert(CasbinRule), [rule_values(line) for line in lines])
    session.add(
        PolicyVersion(
            created_at=now_utc(),
            created_by="system",
            note="默认数据共享清单",
            lines=lines_json(lines),
        )
    )
    await session.commit()
    return True


class Authorizer:
    """Holds the enforcer of the policy in force and the per-subject decision cache.

    The policy in force is the version's lines that grant now: when the clock passes the next
    validity end among them (:func:`next_end`), the enforcer and every cached decision are
    rebuilt from the lines held in memory, on the next decision, without a new version and
    without the database. Row scopes compiled from decisions (``authz.compiler``) are cached by
    the decision's conditions, so a rebuilt decision compiles afresh."""

    def __init__(self, engine: AsyncEngine, *, refresh_seconds: float = 2.0) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._lines: tuple[PolicyLine, ...] = ()  # the version's lines, expired ones included
        self._enforcer: casbin.Enforcer | None = None
        self._row_objects: tuple[str, ...] = ()
        self._purposes: tuple[str, ...] = ()
        self._version = 0
        self._next_end: datetime | None = None  # when a line in force stops granting
        self._checked_at = 0.0
        self._lock = asyncio.Lock()
        self._cache: dict[tuple[tuple[str, ...], str], AccessDecision] = {}

    @property
    def version(self) -> int:
        return self._version

    @property
    def purposes(self) -> tuple[str, ...]:
        """The purposes lines in force are limited to (not ``*``): the candidates a purpose
        refusal names (``authz.purpose``)."""
        self._follow_clock()
        return self._purposes

    @property
    def loaded(self) -> bool:
        return self._enforcer is not None

    @property
    def next_end(self) -> datetime | None:
        """The next validity end among the lines in force (None: none ends)."""
        return self._next_end

    async def load(self, db: AsyncSession | AsyncConnection) -> None:
        """Load (or reload) the policy in force. Refuses an invalid policy (fails closed)."""
        version = await current_version(db)
        lines = await stored_lines(db)
        for line in lines:
            validate_line(line)
        self._lines = lines
        self._version = version
        self._build(now_utc())
        log.info("policy version %s loaded (%s lines)", version, len(lines))

    def _build(self, moment: datetime) -> None:
        granting = in_force_at(self._lines, moment)
        self._enforcer = build_enforcer(granting)
        self._row_objects = tuple(sorted({o for _, o, _, _ in granting if is_row_object(o)}))
        self._purposes = tuple(sorted({purpose for *_, purpose in granting if purpose != "*"}))
        self._next_end = next_end(self._lines, moment)
        self._cache = {}

    def _follow_clock(self) -> None:
        """A line reached its validity end: the policy in force changed without a version."""
        if self._next_end is not None and now_utc() >= self._next_end:
            moment = now_utc()
            self._build(moment)
            log.info("policy version %s: a line reached its validity end (期限)", self._version)

    def invalidate(self) -> None:
        """Check the version at the next ``refresh`` instead of waiting for the poll interval
        (a ``NOTIFY relief_policy`` arrived: see ``gateway.storage.policy_listener``)."""
        self._checked_at = float("-inf")  # not 0: monotonic() may be small after a boot

    async def refresh(self, db: AsyncSession | AsyncConnection) -> None:
        """Reload if another process (or an officer) installed a newer version."""
        self._follow_clock()
        if (
            self._enforcer is not None
            and time.monotonic() - self._checked_at < self._refresh_seconds
        ):
            return
        async with self._lock:
            if self._enforcer is not None and (
                time.monotonic() - self._checked_at < self._refresh_seconds
            ):
                return
            latest = await current_version(db)
            if self._enforcer is None or latest != self._version:
                try:
                    await self.load(db)
                except ConfigurationError:
                    if self._enforcer is None:
                        raise
                    log.exception("policy version %s refused; keeping %s", latest, self._version)
            self._checked_at = time.monotonic()

    def decision_for(self, principal: Principal, purpose: str) -> AccessDecision:
        self._follow_clock()
        if self._enforcer is None:
            raise ConfigurationError("策略尚未加载")
        key = (principal.subject_keys, purpose)
        cached = self._cache.get(key)
        if cached is None:
            cached = decide(
                self._enforcer,
                subject_keys=principal.subject_keys,
                purpose=purpose,
                row_objects=self._row_objects,
                policy_version=self._version,
            )
            self._cache[key] = cached
        return cached
