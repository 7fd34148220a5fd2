"""The audit log: who read which people's which fields, when, why, under which policy.

Entries form a hash chain: ``entry_hash = SHA-256(prev_hash ‖ canonical entry)``. The
application only appends; ``verify_chain`` finds the first entry that was changed, deleted or
re-ordered. Appends are serialised (an advisory lock on PostgreSQL, a process lock on SQLite,
which has a single writer anyway) so the chain has no forks.

What a chain cannot show: deleting the LAST entries (or rolling the whole table back to an
earlier state) leaves a shorter chain that is intact. Only a copy of the head kept outside the
database reveals it: ``relief-gateway audit verify`` prints the head hash for an operator to
record elsewhere (a ticket, a signed log, another system), and ``--anchor HASH`` later checks
that the recorded head is still in the chain.

``AuditWriter`` group-commits: a request hands over its entry and waits until the entry is
committed (no response leaves before its audit entry is durable), while entries that arrive
during a write go into the next one, so under load one lock/head/insert/commit round serves
many requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.domain.clock import now_utc
from gateway.domain.principal import Principal
from gateway.storage.models import AuditEntry

GENESIS = "0" * 64
_AUDIT_LOCK_KEY = 0x52454C494546  # "RELIEF": pg_advisory_xact_lock key for the chain head
_process_lock = asyncio.Lock()


def _entry_digest(prev_hash: str, fields: Mapping[str, object]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _hashed_fields(entry: AuditEntry) -> dict[str, object]:
    occurred: datetime = entry.occurred_at
    if occurred.tzinfo is not None:  # PostgreSQL returns aware UTC, SQLite naive UTC
        occurred = occurred.astimezone(UTC).replace(tzinfo=None)
    return {
        "occurred_at": occurred.isoformat(timespec="microseconds"),
        "request_id": entry.request_id,
        "subject": entry.subject,
        "department": entry.department,
        "level": entry.level,
        "region": entry.region,
        "purpose": entry.purpose,
        "operation": entry.operation,
        "policy_version": entry.policy_version,
        "person_ids": entry.person_ids,
        "fields": entry.fields,
    }


def read_entry(
    *,
    principal: Principal,
    purpose: str,
    request_id: str,
    operation: str,
    policy_version: int,
    person_ids: Iterable[uuid.UUID],
    fields: Mapping[str, str],
) -> AuditEntry:
    """An entry for one request that read person data (not yet chained or stored)."""
    return AuditEntry(
        occurred_at=now_utc(),
        request_id=request_id,
        subject=principal.subject,
        department=principal.department.value,
        level=principal.level.value,
        region=principal.region,
        purpose=purpose,
        operation=operation[:128],
        policy_version=policy_version,
        person_ids=json.dumps(sorted(str(pid) for pid in person_ids)),
        fields=json.dumps(dict(sorted(fields.items())), ensure_ascii=False),
    )


async def append_entries(session: AsyncSession, entries: Sequence[AuditEntry]) -> None:
    """Chain and commit entries in order, in one transaction (the session must be idle)."""
    async with _process_lock:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
        head = (
            await session.execute(
                select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
            )
        ).scalar()
        previous = head or GENESIS
        for entry in entries:
            entry.prev_hash = previous
            entry.entry_hash = previous = _entry_digest(previous, _hashed_fields(entry))
        session.add_all(entries)
        await session.commit()


class AuditWriter:
    """Group commit of audit entries for one process (see the module docstring)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._pending: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, entry: AuditEntry) -> None:
        """Return once ``entry`` is committed; raise if it could not be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # shield: a caller that goes away does not cancel the write others wait for.
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._sessions() as session:
                    await append_entries(session, [entry for entry, _ in batch])
            except Exception as exc:  # every waiter learns its entry was not written
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


ANCHOR_MISSING = "记录过的链头哈希不在日志中 (其后的记录被删除, 或日志被整体回退)"


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int  # intact entries (before the first bad one)
    first_bad_id: int | None
    reason: str | None
    # entry_hash of the last intact entry (GENESIS for an empty log): the head of an intact
    # chain, to be recorded outside the database (see the module docstring).
    head_hash: str = GENESIS
    anchor_missing: bool = False  # an ``anchor`` was given and is not in the intact chain

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None and not self.anchor_missing


async def verify_chain(
    session: AsyncSession, *, batch: int = 5000, anchor: str | None = None
) -> ChainReport:
    """Walk the chain in id order; report the first entry whose links or digest do not hold.

    ``anchor``: a head hash recorded earlier; the chain must still contain it, else the entries
    after it were deleted (which the links alone cannot show)."""
    expected_prev = GENESIS
    count = 0
    last_id = 0
    anchor_seen = anchor is None or anchor == GENESIS
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.id > last_id)
                    .order_by(AuditEntry.id)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            if anchor_seen:
                return ChainReport(count, None, None, expected_prev)
            return ChainReport(count, None, ANCHOR_MISSING, expected_prev, anchor_missing=True)
        for entry in rows:
            if entry.prev_hash != expected_prev:
                reason = "前一条记录的哈希不符(记录被删除或重排)"
                return ChainReport(count, entry.id, reason, expected_prev)
            if _entry_digest(entry.prev_hash, _hashed_fields(entry)) != entry.entry_hash:
                reason = "记录内容与其哈希不符(记录被修改)"
                return ChainReport(count, entry.id, reason, expected_prev)
            expected_prev = entry.entry_hash
            anchor_seen = anchor_seen or entry.entry_hash == anchor
            count += 1
            last_id = entry.id
        session.expunge_all()
