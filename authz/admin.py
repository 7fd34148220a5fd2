"""Policy administration (策略管理, issue 5): security officers propose changes to the policy in
force, a second officer approves them, every version is kept and a rollback is a new version.

    admin = PolicyAdmin(execute, engine, on_change=authorizer.invalidate)
    proposal = await admin.propose(officer, "历下区民政读取电话", None, add=[line], remove=[])
    await admin.approve(colleague, proposal.id, "同意")   # → a new PolicyVersion in force

Rules (DOMAIN.md rule 10: a department pair's data-sharing list is exactly a policy):

- only officers (``role:security_officer``) act, each within its jurisdiction: a province
  officer any line; a city or county officer only lines whose subject is limited to a region
  inside its own (``civil_affairs@3701:county`` for 3701), never province-wide or role lines;
- four-eyes: the approver is not the proposer, and its jurisdiction covers every line;
- a proposal is a diff against the version in force when it was made (``base_version``); once
  another version is in force it can no longer be approved (STALE), because its diff was
  reviewed against lines that no longer hold;
- a line may carry a validity end (期限): it stops granting then, without a new version
  (``authz.store.Authorizer``); adding a line whose end has passed is refused;
- policy expectations (``authz.expectations``) travel with each version; a proposal may carry a
  new complete set. A proposal whose lines break an expectation in force cannot be approved,
  unless the same proposal changes that expectation: then the new set is what must hold, and
  the approver (four eyes) approves the expectation change with the lines;
- an approval writes ``casbin_rule``, a new ``policy_version`` with the complete lines, and the
  proposal's outcome in ONE transaction (PostgreSQL: under an advisory lock), so the two never
  disagree and two approvals never both build on the same base. The new version row announces
  itself to every gateway process at commit (a trigger, migration 0006); this module knows
  nothing of that wiring.

Reads run on the request's connection (``execute``); writes in their own transactions on
``engine`` (the request's connection only reads).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Result, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authz.expectations import (
    Failure,
    canonical,
    changed_expectations,
    check_expectations,
    parse_expectations,
)
from authz.store import (
    PolicyLine,
    current_version,
    format_valid_to,
    grants_at,
    line_from_cells,
    lines_from_json,
    lines_json,
    rule_values,
    stored_end,
    stored_lines_query,
    subject_region,
    valid_to_of,
    valid_to_words,
    validate_line,
    with_valid_to,
)
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.departments import LEVEL_NAMES_ZH, Level
from gateway.domain.errors import BadUserInput, ConfigurationError, Forbidden
from gateway.domain.principal import Principal, canonical_subject
from gateway.storage.models import CasbinRule, PolicyProposal, PolicyVersion

Execute = Callable[[Any], Awaitable[Result[Any]]]

PENDING, APPROVED, REJECTED, STALE = "PENDING", "APPROVED", "REJECTED", "STALE"
STATUS_NAMES_ZH = {PENDING: "待审批", APPROVED: "已批准", REJECTED: "已驳回", STALE: "已过期"}
MAX_TITLE = 200
MAX_NOTE = 2000
MAX_CELL = 255  # casbin_rule.v0 … v3
# pg_advisory_xact_lock key serialising policy installs across processes ("relief" + 5).
POLICY_LOCK_KEY = 0x72656C6965_05


def format_line(line: Sequence[str]) -> str:
    """A line as the policy file writes it, without the leading ``p`` (its validity end, when
    it has one, as the sixth column)."""
    end = valid_to_of(line)
    text = ", ".join((line[0], line[1], line[2], line[3]))
    return text if end is None else f"{text}, {format_valid_to(end)}"


@dataclass(frozen=True, slots=True)
class Officer:
    """A security officer and its jurisdiction (the token's level and region)."""

    subject: str
    level: Level
    region: str

    @classmethod
    def of(cls, principal: Principal) -> Officer:
        if not principal.is_security_admin:  # security_officer: its deprecated alias
            raise Forbidden(
                "仅安全管理员 (security_admin) 可以查看和管理访问策略 (三权分立: 审计管理员和"
                "系统管理员不能提出、审批或模拟策略变更)"
            )
        return cls(principal.subject, principal.level, principal.region)

    @property
    def title(self) -> str:
        return f"{LEVEL_NAMES_ZH[self.level]}安全管理员 ({self.region})"

    def is_subject(self, recorded: str) -> bool:
        """Whether ``recorded`` (a proposer stored by any release, however spelled) is this
        officer: one person, one subject (issue 16), whatever the case, width or spacing."""
        return canonical_subject(recorded) == canonical_subject(self.subject)

    def covers(self, line: Sequence[str]) -> bool:
        """Whether this officer may add or remove ``line``: a province officer any line; below
        the province only lines limited to a region inside its own (a city officer cannot
        change what binds the whole province, nor what a role grants everywhere)."""
        if self.level is Level.PROVINCE:
            return True
        region = subject_region(line[0])
        return bool(region) and region.startswith(self.region)

    def covers_expectation(self, region: str) -> bool:
        """Whether this officer may change an expectation about a caller in ``region``."""
        return self.level is Level.PROVINCE or region.startswith(self.region)

    def require_cover_expectations(self, before: str | None, after: str | None, verb: str) -> None:
        for expectation in changed_expectations(before, after):
            if not self.covers_expectation(expectation.region):
                raise Forbidden(
                    f"超出辖区: {self.title}不能{verb}策略期望「{expectation.text}」"
                    f"(调用方区域 {expectation.region} 不在本辖区 {self.region} 内)"
                )

    def require_cover(self, lines: Iterable[Sequence[str]], verb: str) -> None:
        for line in lines:
            if self.covers(line):
                continue
            region = subject_region(line[0])
            if line[0].startswith("role:"):
                what = "角色行, 只有省级安全管理员可以变更"
            elif not region:
                what = "全省通用的行, 只有省级安全管理员可以变更"
            else:
                what = f"限于区域 {region} 的行, 不在本辖区 {self.region} 内"
            raise Forbidden(f"超出辖区: {self.title}不能{verb}「{format_line(line)}」({what})")


@dataclass(frozen=True, slots=True)
class VersionRecord:
    version: int
    created_at: datetime
    created_by: str
    note: str
    approved_by: str | None
    proposal_id: uuid.UUID | None
    lines: tuple[PolicyLine, ...] | None  # None: older than migration 0004, no snapshot kept
    expectations: str | None = None  # the version's policy expectations (canonical text)


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    id: uuid.UUID
    base_version: int
    title: str
    note: str | None
    added: tuple[PolicyLine, ...]
    removed: tuple[PolicyLine, ...]
    proposed_by: str
    proposer_level: str
    proposer_region: str
    proposed_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    resulting_version: int | None
    expectations: str | None = None  # the proposed complete set; None: unchanged

    @property
    def lines(self) -> tuple[PolicyLine, ...]:
        return self.removed + self.added


def apply_change(
    lines: Sequence[PolicyLine], added: Sequence[PolicyLine], removed: Sequence[PolicyLine]
) -> tuple[PolicyLine, ...]:
    """The lines after a change: removed ones taken out, added ones appended."""
    gone = set(removed)
    return tuple(line for line in lines if line not in gone) + tuple(added)


def _parse_lines(raw: str | None) -> tuple[PolicyLine, ...] | None:
    if raw is None:
        return None
    return lines_from_json(raw)


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        version=row.id,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        note=row.note,
        approved_by=row.approved_by,
        proposal_id=row.proposal_id,
        lines=_parse_lines(row.lines),
        expectations=row.expectations,
    )


def _proposal(row: Any) -> ProposalRecord:
    return ProposalRecord(
        id=row.id,
        base_version=row.base_version,
        title=row.title,
        note=row.note,
        added=_parse_lines(row.added) or (),
        removed=_parse_lines(row.removed) or (),
        proposed_by=row.proposed_by,
        proposer_level=row.proposer_level,
        proposer_region=row.proposer_region,
        proposed_at=as_utc(row.proposed_at),
        status=row.status,
        decided_by=row.decided_by,
        decided_at=as_utc(row.decided_at) if row.decided_at else None,
        decision_note=row.decision_note,
        resulting_version=row.resulting_version,
        expectations=row.expectations,
    )


def _checked_note(note: str | None, *, required: bool = False) -> str | None:
    cleaned = (note or "").strip()
    if required and not cleaned:
        raise BadUserInput("请填写驳回理由 (note)")
    if len(cleaned) > MAX_NOTE:
        raise BadUserInput(f"说明最多 {MAX_NOTE} 字")
    return cleaned or None


def _checked_lines(lines: Iterable[Sequence[str]], what: str) -> tuple[PolicyLine, ...]:
    checked: list[PolicyLine] = []
    for number, raw in enumerate(lines, start=1):
        cells = (raw[0].strip(), raw[1].strip(), raw[2].strip(), raw[3].strip())
        line = with_valid_to(cells, valid_to_of(raw))
        try:
            if any(len(cell) > MAX_CELL for cell in line):
                raise ConfigurationError(f"每一列最多 {MAX_CELL} 个字符")
            validate_line(line)
        except ConfigurationError as exc:
            raise BadUserInput(
                f"{what}第 {number} 行「{format_line(line)}」: {exc.message}"
            ) from None
        if line in checked:
            raise BadUserInput(f"{what}第 {number} 行「{format_line(line)}」重复")
        checked.append(line)
    return tuple(checked)


async def _lines_in_force(db: AsyncConnection | Execute) -> tuple[PolicyLine, ...]:
    """The version's lines as enforced (``casbin_rule``), those past their end included."""
    # Typed loosely: mypy 2.4 crashes expanding the statement's row type in the conditional.
    stmt: Any = stored_lines_query()
    result = await (db.execute(stmt) if isinstance(db, AsyncConnection) else db(stmt))
    return tuple(line_from_cells(tuple(row)) for row in result)


async def _expectations_of(db: AsyncConnection | Execute, version: int) -> str | None:
    stmt = select(PolicyVersion.expectations).where(PolicyVersion.id == version)
    result = await (db.execute(stmt) if isinstance(db, AsyncConnection) else db(stmt))
    return result.scalar()


_PROPOSAL_COLUMNS = tuple(PolicyProposal.__table__.c)
_VERSION_COLUMNS = tuple(PolicyVersion.__table__.c)


class PolicyAdmin:
    """The policy's governance: reads for the console and the four-eyes workflow."""

    def __init__(
        self,
        execute: Execute,
        engine: AsyncEngine,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._execute = execute
        self._engine = engine
        self._on_change = on_change

    # ---------------------------------------------------------------- reads
    async def current_version(self) -> int:
        return int((await self._execute(select(func.max(PolicyVersion.id)))).scalar() or 0)

    async def in_force(self) -> VersionRecord:
        """The version in force with its lines as enforced (``casbin_rule``)."""
        lines = await _lines_in_force(self._execute)
        stmt = select(*_VERSION_COLUMNS).order_by(PolicyVersion.id.desc()).limit(1)
        row = (await self._execute(stmt)).first()
        if row is None:
            return VersionRecord(0, now_utc(), "system", "尚未载入策略", None, None, lines)
        record = _version(row)
        return VersionRecord(
            record.version,
            record.created_at,
            record.created_by,
            record.note,
            record.approved_by,
            record.proposal_id,
            lines,
            record.expectations,
        )

    async def version(self, number: int) -> VersionRecord | None:
        stmt = select(*_VERSION_COLUMNS).where(PolicyVersion.id == number)
        row = (await self._execute(stmt)).first()
        return _version(row) if row is not None else None

    async def versions(
        self, *, first: int, before: int | None = None
    ) -> tuple[list[VersionRecord], bool]:
        """Newest first; ``before``: the page after the version of that number."""
        stmt = select(*_VERSION_COLUMNS).order_by(PolicyVersion.id.desc()).limit(first + 1)
        if before is not None:
            stmt = stmt.where(PolicyVersion.id < before)
        rows = list((await self._execute(stmt)).all())
        return [_version(row) for row in rows[:first]], len(rows) > first

    async def count_versions(self) -> int:
        stmt = select(func.count()).select_from(PolicyVersion)
        return int((await self._execute(stmt)).scalar_one())

    async def proposal(self, proposal_id: uuid.UUID) -> ProposalRecord | None:
        stmt = select(*_PROPOSAL_COLUMNS).where(PolicyProposal.id == proposal_id)
        row = (await self._execute(stmt)).first()
        return _proposal(row) if row is not None else None

    async def proposals(
        self,
        *,
        status: str | None,
        first: int,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> tuple[list[ProposalRecord], bool]:
        """Newest first; ``after``: (proposed_at, id) of the last proposal of the previous page."""
        stmt = (
            select(*_PROPOSAL_COLUMNS)
            .order_by(PolicyProposal.proposed_at.desc(), PolicyProposal.id.desc())
            .limit(first + 1)
        )
        if status is not None:
            stmt = stmt.where(PolicyProposal.status == status)
        if after is not None:
            at, last = after
            stmt = stmt.where(
                or_(
                    PolicyProposal.proposed_at < at,
                    and_(PolicyProposal.proposed_at == at, PolicyProposal.id < last),
                )
            )
        rows = list((await self._execute(stmt)).all())
        return [_proposal(row) for row in rows[:first]], len(rows) > first

    async def count_proposals(self, *, status: str | None) -> int:
        stmt = select(func.count()).select_from(PolicyProposal)
        if status is not None:
            stmt = stmt.where(PolicyProposal.status == status)
        return int((await self._execute(stmt)).scalar_one())

    async def lines_before(self, proposal: ProposalRecord) -> tuple[PolicyLine, ...]:
        """The lines the proposal was made against: its base version's snapshot (the lines in
        force when the base is in force, or has no snapshot)."""
        base = await self.version(proposal.base_version)
        if base is not None and base.lines is not None:
            return base.lines
        return await _lines_in_force(self._execute)

    @staticmethod
    def can_approve(officer: Officer, proposal: ProposalRecord, version_in_force: int) -> bool:
        return (
            proposal.status == PENDING
            and not officer.is_subject(proposal.proposed_by)
            and proposal.base_version == version_in_force
            and all(officer.covers(line) for line in proposal.lines)
        )

    async def expectations_before(self, proposal: ProposalRecord) -> str:
        """The expectations of the proposal's base version ("" for none)."""
        return await _expectations_of(self._execute, proposal.base_version) or ""

    async def expectation_failures(self, proposal: ProposalRecord) -> list[Failure]:
        """The expectations the proposal's lines break (now): those of its new set when it
        changes them, else those of its base version. An approval is refused while any."""
        before = await self.lines_before(proposal)
        after = apply_change(before, proposal.added, proposal.removed)
        expectations = proposal.expectations
        if expectations is None:
            expectations = await self.expectations_before(proposal)
        return check_expectations(parse_expectations(expectations), after)

    async def in_force_failures(self) -> list[Failure]:
        """The expectations the policy in force breaks now (a line reached its end)."""
        record = await self.in_force()
        return check_expectations(parse_expectations(record.expectations or ""), record.lines or ())

    # ---------------------------------------------------------------- proposals
    async def propose(
        self,
        officer: Officer,
        title: str,
        note: str | None,
        *,
        add: Iterable[Sequence[str]],
        remove: Iterable[Sequence[str]],
        expectations: str | None = None,
    ) -> ProposalRecord:
        """File a change against the version in force. Refused: an invalid line (named), a
        line outside the officer's jurisdiction, removing a line not in force, adding one in
        force or past its end, an invalid expectation (named), an empty change.
        ``expectations``: the proposed complete set of policy expectations (None: unchanged)."""
        title = title.strip()
        if not title:
            raise BadUserInput("请填写申请标题 (title)")
        if len(title) > MAX_TITLE:
            raise BadUserInput(f"申请标题最多 {MAX_TITLE} 字")
        checked_note = _checked_note(note)
        added = _checked_lines(add, "新增")
        removed = _checked_lines(remove, "删除")
        wanted = _checked_expectations(expectations)
        both = set(added) & set(removed)
        if both:
            raise BadUserInput(f"同一行不能既新增又删除:「{format_line(min(both))}」")
        moment = now_utc()
        for line in added:
            end = valid_to_of(line)
            if end is not None and not grants_at(line, moment):
                raise BadUserInput(
                    f"要新增的行期限已过 ({valid_to_words(end)}):「{format_line(line)}」"
                )
        officer.require_cover(removed + added, "变更")
        async with self._engine.begin() as connection:
            base = await current_version(connection)
            current_expectations = await _expectations_of(connection, base) or ""
            if wanted is not None and wanted == current_expectations:
                wanted = None  # the same set: no change of expectations
            if not added and not removed and wanted is None:
                raise BadUserInput("没有变化: 请至少新增或删除一行策略, 或修改策略期望")
            if wanted is not None:
                officer.require_cover_expectations(current_expectations, wanted, "变更")
            in_force = set(await _lines_in_force(connection))
            for line in removed:
                if line not in in_force:
                    raise BadUserInput(
                        f"要删除的行不在当前策略 (版本 {base}) 中:「{format_line(line)}」"
                    )
            for line in added:
                if line in in_force:
                    raise BadUserInput(
                        f"要新增的行已在当前策略 (版本 {base}) 中:「{format_line(line)}」"
                    )
            proposal_id = uuid.uuid4()
            values = {
                "id": proposal_id,
                "base_version": base,
                "title": title,
                "note": checked_note,
                "added": lines_json(added),
                "removed": lines_json(removed),
                "proposed_by": officer.subject,
                "proposer_level": officer.level.value,
                "proposer_region": officer.region,
                "proposed_at": now_utc(),
                "status": PENDING,
                "expectations": wanted,
            }
            await connection.execute(insert(PolicyProposal).values(**values))
            row = await self._proposal_row(connection, proposal_id)
        assert row is not None
        return _proposal(row)

    async def propose_rollback(
        self, officer: Officer, version: int, note: str | None
    ) -> ProposalRecord:
        """A proposal whose diff restores version ``version``'s lines; approving it makes a new
        version (history is never rewritten)."""
        target = await self.version(version)
        if target is None:
            raise BadUserInput(f"没有版本 {version}")
        in_force = await self.in_force()
        if version == in_force.version:
            raise BadUserInput(f"版本 {version} 就是当前生效的版本, 无需回滚")
        if target.lines is None:
            raise BadUserInput(f"版本 {version} 没有保存完整的策略行 (早于迁移 0004), 无法回滚")
        add, remove = text_change(in_force.lines or (), target.lines)
        # The target's expectations come back with its lines; a version older than migration
        # 0010 recorded none (null): the expectations in force stay.
        expectations = target.expectations
        if expectations is not None and expectations == (in_force.expectations or ""):
            expectations = None
        if not add and not remove and expectations is None:
            raise BadUserInput(f"没有变化: 版本 {version} 的策略行和策略期望与当前版本相同")
        return await self.propose(
            officer,
            f"回滚到版本 {version}",
            note,
            add=add,
            remove=remove,
            expectations=expectations,
        )

    # ---------------------------------------------------------------- decisions
    async def approve(
        self, officer: Officer, proposal_id: uuid.UUID, note: str | None
    ) -> ProposalRecord:
        """Install the proposal as a new version (four-eyes, jurisdiction, base in force)."""
        checked_note = _checked_note(note)
        stale: str | None = None
        async with self._engine.begin() as connection:
            await self._serialise(connection, proposal_id)
            row = await self._proposal_row(connection, proposal_id, for_update=True)
            proposal = self._pending(row)
            if officer.is_subject(proposal.proposed_by):
                raise Forbidden("不能批准自己提出的变更 (四眼原则)")
            officer.require_cover(proposal.lines, "批准")
            in_force = await current_version(connection)
            if proposal.base_version != in_force:
                stale = f"该申请基于版本 {proposal.base_version}, 当前为版本 {in_force}; 请重新提出"
                await self._mark_stale(connection, [(proposal.id, stale)])
            else:
                before = await _expectations_of(connection, in_force) or ""
                if proposal.expectations is not None:
                    officer.require_cover_expectations(before, proposal.expectations, "批准")
                await self._install(connection, proposal, officer, checked_note, before)
            row = await self._proposal_row(connection, proposal_id)
        if stale is not None:
            raise BadUserInput(stale)
        if self._on_change is not None:
            self._on_change()  # this process enforces the new version on its next request
        assert row is not None
        return _proposal(row)

    async def reject(
        self, officer: Officer, proposal_id: uuid.UUID, note: str | None
    ) -> ProposalRecord:
        """Reject a pending proposal with a reason. The proposer may withdraw its own (recorded
        as a rejection by the proposer); anyone else needs every line in its jurisdiction."""
        checked_note = _checked_note(note, required=True)
        async with self._engine.begin() as connection:
            row = await self._proposal_row(connection, proposal_id, for_update=True)
            proposal = self._pending(row)
            withdrawn = officer.is_subject(proposal.proposed_by)
            if not withdrawn:
                officer.require_cover(proposal.lines, "驳回")
                if proposal.expectations is not None:
                    before = await _expectations_of(connection, proposal.base_version)
                    officer.require_cover_expectations(before, proposal.expectations, "驳回")
            await connection.execute(
                update(PolicyProposal)
                .where(PolicyProposal.id == proposal_id)
                .values(
                    status=REJECTED,
                    decided_by=officer.subject,
                    decided_at=now_utc(),
                    decision_note=f"(申请人撤回) {checked_note}" if withdrawn else checked_note,
                )
            )
            row = await self._proposal_row(connection, proposal_id)
        assert row is not None
        return _proposal(row)

    # ---------------------------------------------------------------- internals
    @staticmethod
    async def _proposal_row(
        connection: AsyncConnection, proposal_id: uuid.UUID, *, for_update: bool = False
    ) -> Any | None:
        stmt = select(*_PROPOSAL_COLUMNS).where(PolicyProposal.id == proposal_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await connection.execute(stmt)).first()

    @staticmethod
    def _pending(row: Any | None) -> ProposalRecord:
        if row is None:
            raise BadUserInput("未找到该策略变更申请")
        proposal = _proposal(row)
        if proposal.status == STALE and proposal.decision_note:
            raise BadUserInput(f"该申请已过期: {proposal.decision_note}")
        if proposal.status != PENDING:
            raise BadUserInput(
                f"该申请{STATUS_NAMES_ZH[proposal.status]}, 只能审批待审批 (PENDING) 的申请"
            )
        return proposal

    @staticmethod
    async def _serialise(connection: AsyncConnection, proposal_id: uuid.UUID) -> None:
        """One policy install at a time: PostgreSQL's transaction-level advisory lock across
        processes; on SQLite (one process) the first statement writes, which takes the
        database's write lock for the whole transaction before anything is read."""
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": POLICY_LOCK_KEY}
            )
        else:
            await connection.execute(
                update(PolicyProposal)
                .where(PolicyProposal.id == proposal_id)
                .values(status=PolicyProposal.status)
            )

    @staticmethod
    async def _mark_stale(
        connection: AsyncConnection, stale: Sequence[tuple[uuid.UUID, str]]
    ) -> None:
        for proposal_id, message in stale:
            await connection.execute(
                update(PolicyProposal)
                .where(PolicyProposal.id == proposal_id, PolicyProposal.status == PENDING)
                .values(status=STALE, decided_at=now_utc(), decision_note=message)
            )

    async def _install(
        self,
        connection: AsyncConnection,
        proposal: ProposalRecord,
        approver: Officer,
        note: str | None,
        expectations_before: str,
    ) -> None:
        lines = await _lines_in_force(connection)
        present = set(lines)
        if any(line not in present for line in proposal.removed) or any(
            line in present for line in proposal.added
        ):
            # casbin_rule was changed without a new version: refuse rather than guess.
            raise BadUserInput("当前生效的策略行与申请的基础版本不一致, 请重新提出申请")
        new_lines = apply_change(lines, proposal.added, proposal.removed)
        expectations = (
            expectations_before if proposal.expectations is None else proposal.expectations
        )
        # Policy tests gate the approval: what the change breaks cannot take effect unless the
        # same proposal changes the expectation (then the approver approves that too).
        failures = check_expectations(parse_expectations(expectations), new_lines)
        if failures:
            shown = "; ".join(failure.message for failure in failures[:5])
            more = f" (另有 {len(failures) - 5} 条)" if len(failures) > 5 else ""
            raise BadUserInput(
                f"不能批准: 该申请违反 {len(failures)} 条策略期望: {shown}{more}。"
                "如确需变更, 请在同一申请中修改相应的策略期望 (仍须另一名安全管理员批准)"
            )
        for line in proposal.removed:
            end = stored_end(valid_to_of(line))
            await connection.execute(
                delete(CasbinRule).where(
                    CasbinRule.ptype == "p",
                    CasbinRule.v0 == line[0],
                    CasbinRule.v1 == line[1],
                    CasbinRule.v2 == line[2],
                    CasbinRule.v3 == line[3],
                    or_(CasbinRule.v4.is_(None), CasbinRule.v4 == "")
                    if end is None
                    else CasbinRule.v4 == end,
                )
            )
        if proposal.added:
            await connection.execute(
                insert(CasbinRule), [rule_values(line) for line in proposal.added]
            )
        decided_at = now_utc()
        version = (
            await connection.execute(
                insert(PolicyVersion)
                .values(
                    created_at=decided_at,
                    created_by=proposal.proposed_by,
                    note=proposal.title,
                    lines=lines_json(new_lines),
                    expectations=expectations,
                    proposal_id=proposal.id,
                    approved_by=approver.subject,
                )
                .returning(PolicyVersion.id)
            )
        ).scalar_one()
        await connection.execute(
            update(PolicyProposal)
            .where(PolicyProposal.id == proposal.id)
            .values(
                status=APPROVED,
                decided_by=approver.subject,
                decided_at=decided_at,
                decision_note=note,
                resulting_version=version,
            )
        )
        # Every other pending proposal was reviewed against lines that no longer hold.
        others = await connection.execute(
            select(PolicyProposal.id, PolicyProposal.base_version).where(
                PolicyProposal.status == PENDING, PolicyProposal.id != proposal.id
            )
        )
        await self._mark_stale(
            connection,
            [
                (other, f"该申请基于版本 {base}, 当前为版本 {version}; 请重新提出")
                for other, base in others.all()
            ],
        )


def _checked_expectations(text: str | None) -> str | None:
    """A proposed set of expectations in its canonical text (None: unchanged)."""
    if text is None:
        return None
    try:
        return canonical(text, source="策略期望")
    except ConfigurationError as exc:
        raise BadUserInput(exc.message) from None


def text_change(
    in_force: Sequence[PolicyLine], wanted: Sequence[PolicyLine]
) -> tuple[list[PolicyLine], list[PolicyLine]]:
    """(added, removed) turning the lines in force into ``wanted`` (order does not matter)."""
    current, target = set(in_force), set(wanted)
    added = [line for line in dict.fromkeys(wanted) if line not in current]
    removed = [line for line in dict.fromkeys(in_force) if line not in target]
    return added, removed
