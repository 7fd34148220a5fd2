"""Policies in the database: the casbin enforcer, the default policy file and versions.

The casbin lines live in ``casbin_rule`` (read by casbin's async SQLAlchemy adapter); every
change adds a row to ``policy_version``, and a process reloads the enforcer when it sees a newer
version (polled at most every ``refresh_seconds``), so a change reaches every process without a
restart. Decisions are cached per (subject, purpose, version).
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import casbin
from casbin_async_sqlalchemy_adapter import Adapter
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from authz.conditions import is_row_object, parse_row_object
from authz.decision import AccessDecision, decide
from authz.resources import GUARDED_FIELDS, OPERATIONS
from gateway.domain.clock import now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal
from gateway.storage.models import CasbinRule, PolicyVersion

log = logging.getLogger(__name__)

ACTIONS = frozenset({"read", "mask", "rows", "call"})
PolicyLine = tuple[str, str, str, str]  # subject, object, action, purpose


def model_path() -> str:
    return str(resources.files("authz").joinpath("model.conf"))


def parse_policy_text(text: str, *, source: str = "策略文件") -> list[PolicyLine]:
    """Parse ``p, subject, object, action, purpose`` lines; ``#`` starts a comment line.

    Objects may contain commas inside parentheses only if quoted; the shipped file uses ``|``.
    Every line is validated: a typo refuses the whole file rather than granting by accident.
    """
    lines: list[PolicyLine] = []
    for number, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if cells[0] != "p" or len(cells) != 5:
            raise ConfigurationError(
                f"{source} 第 {number} 行: 应为 'p, 主体, 对象, 动作, 用途' 五列"
            )
        line: PolicyLine = (cells[1], cells[2], cells[3], cells[4])
        try:
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
    subject, obj, action, purpose = line
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
    """A version's snapshot (``policy_version.lines``): its lines in order, as JSON."""
    return json.dumps([list(line) for line in lines], ensure_ascii=False)


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
    await session.execute(
        insert(CasbinRule),
        [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p} for s, o, a, p in lines],
    )
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
    """Holds the enforcer of the policy version in force and the per-subject decision cache."""

    def __init__(self, engine: AsyncEngine, *, refresh_seconds: float = 2.0) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._enforcer: casbin.AsyncEnforcer | None = None
        self._row_objects: tuple[str, ...] = ()
        self._purposes: tuple[str, ...] = ()
        self._version = 0
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
        return self._purposes

    @property
    def loaded(self) -> bool:
        return self._enforcer is not None

    async def load(self, db: AsyncSession | AsyncConnection) -> None:
        """Load (or reload) the policy in force. Refuses an invalid policy (fails closed)."""
        version = await current_version(db)
        enforcer = casbin.AsyncEnforcer(model_path(), Adapter(self._engine, db_class=CasbinRule))
        await enforcer.load_policy()
        lines = [tuple(rule[:4]) for rule in enforcer.get_policy()]
        for line in lines:
            validate_line(line)
        self._enforcer = enforcer
        self._row_objects = tuple(sorted({obj for _, obj, act, _ in lines if is_row_object(obj)}))
        self._purposes = tuple(sorted({purpose for *_, purpose in lines if purpose != "*"}))
        self._version = version
        self._cache = {}
        log.info("policy version %s loaded (%s lines)", version, len(lines))

    def invalidate(self) -> None:
        """Check the version at the next ``refresh`` instead of waiting for the poll interval
        (a ``NOTIFY relief_policy`` arrived: see ``gateway.storage.policy_listener``)."""
        self._checked_at = float("-inf")  # not 0: monotonic() may be small after a boot

    async def refresh(self, db: AsyncSession | AsyncConnection) -> None:
        """Reload if another process (or an officer) installed a newer version."""
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
