"""The audit log: who read which people's which fields, when, why, under which policy.

Entries form a hash chain: ``entry_hash = SHA-256(prev_hash ‖ canonical entry)``. The
application only appends; ``verify_chain`` finds the first entry that was changed, deleted or
re-ordered. Appends are serialised (an advisory lock on PostgreSQL, a process lock on SQLite,
which has a single writer anyway) so the chain has no forks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.clock import now_utc
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


async def record_read(
    session: AsyncSession,
    *,
    principal: Principal,
    purpose: str,
    request_id: str,
    operation: str,
    policy_version: int,
    person_ids: Iterable[uuid.UUID],
    fields: Mapping[str, str],
) -> AuditEntry:
    """Append one entry and commit it (the caller's session must have no other pending work)."""
    entry = AuditEntry(
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
    async with _process_lock:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
        head = (
            await session.execute(
                select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
            )
        ).scalar()
        entry.prev_hash = head or GENESIS
        entry.entry_hash = _entry_digest(entry.prev_hash, _hashed_fields(entry))
        session.add(entry)
        await session.commit()
    return entry


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int
    first_bad_id: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


async def verify_chain(session: AsyncSession, *, batch: int = 5000) -> ChainReport:
    """Walk the chain in id order; report the first entry whose links or digest do not hold."""
    expected_prev = GENESIS
    count = 0
    last_id = 0
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
            return ChainReport(count, None, None)
        for entry in rows:
            if entry.prev_hash != expected_prev:
                return ChainReport(count, entry.id, "前一条记录的哈希不符(记录被删除或重排)")
            if _entry_digest(entry.prev_hash, _hashed_fields(entry)) != entry.entry_hash:
                return ChainReport(count, entry.id, "记录内容与其哈希不符(记录被修改)")
            expected_prev = entry.entry_hash
            count += 1
            last_id = entry.id
        session.expunge_all()
