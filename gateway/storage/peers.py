"""省际交换消息日志 (issue 18 item 5): the SQL of the message log kept with other provinces'
gateways (``exchange_message``, migration 0014). ``gateway.runtime.peer_exchange`` signs,
sends and receives; this module stores.

    rows = await untold_events(connection, "34", limit=100)    # local events tied to 34
    await enqueue(connection, messages)                       # OUT rows, PENDING
    queued = await pending_messages(connection, "34", limit=20)
    await complete_outbound(connection, macs, row_id, ...)    # receipt stored, entry chained
    await insert_inbound(connection, macs, values)            # IN row with its receipt, chained
    check = await verify_log(connection, macs)                # the chain and its MACs

Chain: ``entry_hash = SHA-256(prev_hash ‖ canonical entry)`` over what each side can prove
(envelope digest and signature, receipt digest and signature, status), in ``seq`` order; the
entry's MAC with the keyring's audit key (``gateway.crypto.log_mac``) stops a rewrite by whoever
can write the database. ``exchange_head`` moves with every entry in the entry's transaction;
updating it first takes its row lock (PostgreSQL) or the write lock (SQLite), so two
transactions never chain from the same head.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Row, exists, func, insert, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.crypto import AuditMac, check_log_mac, log_mac
from gateway.storage.models import ExchangeHead, ExchangeMessage, OutboxEvent, Person, PersonPlace
from gateway.storage.setwise import dialect_insert

GENESIS = "0" * 64
OUT = "OUT"
IN = "IN"
PENDING = "PENDING"
DONE = "DONE"


def _hashed_fields(values: Mapping[str, Any], seq: int) -> dict[str, Any]:
    receipt = values.get("receipt")
    return {
        "seq": seq,
        "direction": values["direction"],
        "peer": values["peer"],
        "message_id": str(values["message_id"]),
        "ref": None if values.get("ref") is None else str(values["ref"]),
        "kind": values["kind"],
        "envelope_sha256": values["envelope_sha256"],
        "signed_at": values.get("signed_at"),
        "signature": values.get("signature"),
        "signer_key_id": values.get("signer_key_id"),
        "receipt_sha256": None if receipt is None else hashlib.sha256(receipt).hexdigest(),
        "receipt_signature": values.get("receipt_signature"),
        "receipt_key_id": values.get("receipt_key_id"),
        "receipt_status": values.get("receipt_status"),
    }


def entry_digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


async def _chain(
    connection: AsyncConnection, macs: AuditMac | None, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The chain columns for an entry with ``values``; moves the head (caller's transaction)."""
    head = ExchangeHead
    # Lock first (row lock on PostgreSQL, the write lock on SQLite), then read.
    await connection.execute(update(head).where(head.id == 1).values(seq=head.seq))
    seq, prev_hash = (
        await connection.execute(select(head.seq, head.entry_hash).where(head.id == 1))
    ).one()
    seq += 1
    entry_hash = entry_digest(prev_hash, _hashed_fields(values, seq))
    mac_key_id = entry_mac = None
    if macs is not None and macs.key_id is not None:
        mac_key_id, entry_mac = log_mac(macs, entry_hash)
    await connection.execute(
        update(head).where(head.id == 1).values(seq=seq, entry_hash=entry_hash)
    )
    return {
        "seq": seq,
        "prev_hash": prev_hash,
        "entry_hash": entry_hash,
        "mac_key_id": mac_key_id,
        "entry_mac": entry_mac,
    }


# ---------------------------------------------------------------------------- sender
async def untold_events(
    connection: AsyncConnection,
    peer: str,
    *,
    kinds: Collection[str] | None,
    after: int = 0,
    limit: int,
) -> list[Row[Any]]:
    """This province's own events (not received from a peer) about people tied to ``peer``
    — a place there (``person_place.province_code``) or residence there — that have no OUT
    message to ``peer`` yet, oldest first, with the person's sealed ID number. ``kinds``: the
    event kinds agreed with the peer (None: all); ``after``: only events with a greater id
    (the sender's cursor)."""
    event = OutboxEvent.__table__
    tied = or_(
        Person.province_code == peer,
        exists().where(
            PersonPlace.person_id == Person.id,
            PersonPlace.province_code == peer,
            PersonPlace.until.is_(None),
        ),
    )
    told = exists().where(
        ExchangeMessage.peer == peer,
        ExchangeMessage.direction == OUT,
        ExchangeMessage.event_id == event.c.id,
    )
    statement = (
        select(
            event.c.id,
            event.c.event_id,
            event.c.kind,
            event.c.audience,
            event.c.county_code,
            event.c.person_id,
            event.c.subject_type,
            event.c.subject_id,
            event.c.facts,
            event.c.occurred_at,
            Person.id_number_ct,
        )
        .join(Person, Person.id == event.c.person_id)
        .where(event.c.id > after, event.c.origin.is_(None), tied, ~told)
        .where(true() if kinds is None else event.c.kind.in_(sorted(kinds)))
        .order_by(event.c.id)
        .limit(limit)
    )
    return list(await connection.execute(statement))


async def newest_event_id(connection: AsyncConnection) -> int:
    """The greatest outbox event id (0 when empty)."""
    newest = (await connection.execute(select(func.max(OutboxEvent.id)))).scalar()
    return int(newest or 0)


async def enqueue(connection: AsyncConnection, messages: Sequence[Mapping[str, Any]]) -> None:
    """OUT rows, PENDING; a message already logged (same peer and message id) is skipped."""
    if not messages:
        return
    statement = dialect_insert(connection.dialect.name, ExchangeMessage).on_conflict_do_nothing(
        index_elements=["peer", "direction", "message_id"]
    )
    await connection.execute(statement, [dict(message) for message in messages])


async def pending_messages(connection: AsyncConnection, peer: str, *, limit: int) -> list[Row[Any]]:
    """OUT messages to ``peer`` without a receipt, in the order they were queued (the sender
    sends them in this order and stops at the first that is not due: one person's events
    never overtake each other)."""
    statement = (
        select(ExchangeMessage.__table__)
        .where(
            ExchangeMessage.direction == OUT,
            ExchangeMessage.peer == peer,
            ExchangeMessage.status == PENDING,
        )
        .order_by(ExchangeMessage.id)
        .limit(limit)
    )
    return list(await connection.execute(statement))


async def record_failure(
    connection: AsyncConnection,
    row_id: int,
    *,
    attempts: int,
    next_attempt_at: datetime,
    error: str,
    sent_at: datetime,
) -> None:
    table = ExchangeMessage
    await connection.execute(
        update(table)
        .where(table.id == row_id, table.status == PENDING)
        .values(
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_error=error[:500],
            sent_at=_first(table.sent_at, sent_at),
        )
    )


def _first(column: Any, value: datetime) -> Any:
    """The column's value, else ``value`` (the first attempt's time stays)."""
    return func.coalesce(column, literal(value, DateTime(timezone=True)))


async def complete_outbound(
    connection: AsyncConnection,
    macs: AuditMac | None,
    row_id: int,
    *,
    signed_at: str,
    signature: str,
    signer_key_id: str,
    receipt: bytes,
    receipt_signature: str,
    receipt_key_id: str,
    receipt_status: str,
    attempts: int,
    sent_at: datetime,
    now: datetime,
) -> bool:
    """Store the peer's verified receipt and chain the entry (in the caller's transaction).
    False when the row is no longer PENDING (another process completed it)."""
    table = ExchangeMessage.__table__
    row = (
        await connection.execute(
            select(table).where(table.c.id == row_id, table.c.status == PENDING)
        )
    ).first()
    if row is None:
        return False
    values = {
        **row._mapping,
        "signed_at": signed_at,
        "signature": signature,
        "signer_key_id": signer_key_id,
        "receipt": receipt,
        "receipt_signature": receipt_signature,
        "receipt_key_id": receipt_key_id,
        "receipt_status": receipt_status,
    }
    chained = await _chain(connection, macs, values)
    result = await connection.execute(
        update(ExchangeMessage)
        .where(ExchangeMessage.id == row_id, ExchangeMessage.status == PENDING)
        .values(
            signed_at=signed_at,
            signature=signature,
            signer_key_id=signer_key_id,
            receipt=receipt,
            receipt_signature=receipt_signature,
            receipt_key_id=receipt_key_id,
            receipt_status=receipt_status,
            status=DONE,
            attempts=attempts,
            next_attempt_at=None,
            last_error=None,
            sent_at=_first(ExchangeMessage.sent_at, sent_at),
            receipted_at=now,
            **chained,
        )
    )
    return bool(result.rowcount)


# ---------------------------------------------------------------------------- receiver
async def stored_inbound(
    connection: AsyncConnection, peer: str, message_id: uuid.UUID
) -> Row[Any] | None:
    table = ExchangeMessage.__table__
    statement = select(table).where(
        table.c.peer == peer, table.c.direction == IN, table.c.message_id == message_id
    )
    return (await connection.execute(statement)).first()


async def insert_inbound(
    connection: AsyncConnection, macs: AuditMac | None, values: Mapping[str, Any]
) -> None:
    """An IN message with the receipt this side signed, chained (caller's transaction; a
    duplicate raises the unique violation, and the caller returns the stored receipt)."""
    row = {**values, "direction": IN, "status": DONE, "attempts": 1}
    row.update(await _chain(connection, macs, row))
    await connection.execute(insert(ExchangeMessage).values(**row))


# ---------------------------------------------------------------------------- proof
@dataclass(frozen=True, slots=True)
class LogCheck:
    """What ``verify_log`` found: ``ok`` with ``entries`` chained up to ``head``, else the
    first broken position and why (Chinese)."""

    entries: int
    head: str
    ok: bool
    broken_at: int | None = None
    problem: str | None = None


async def verify_log(connection: AsyncConnection, macs: AuditMac | None) -> LogCheck:
    table = ExchangeMessage.__table__
    rows = await connection.execute(
        select(table).where(table.c.seq.is_not(None)).order_by(table.c.seq)
    )
    previous, count, expected_seq = GENESIS, 0, 1
    for row in rows:
        values = dict(row._mapping)
        if row.seq != expected_seq:
            return LogCheck(count, previous, False, row.seq, "序号不连续 (条目被删除或插入)")
        if row.prev_hash != previous:
            return LogCheck(count, previous, False, row.seq, "与前一条目的哈希不衔接")
        if entry_digest(previous, _hashed_fields(values, row.seq)) != row.entry_hash:
            return LogCheck(count, previous, False, row.seq, "条目内容与其哈希不符 (被修改)")
        if macs is not None and row.mac_key_id is not None and row.entry_mac is not None:
            if check_log_mac(macs, row.mac_key_id, row.entry_hash, row.entry_mac) is False:
                return LogCheck(count, previous, False, row.seq, "条目 MAC 校验失败")
        elif macs is not None and macs.key_id is not None:
            return LogCheck(count, previous, False, row.seq, "条目缺少 MAC")
        previous, count, expected_seq = row.entry_hash, count + 1, expected_seq + 1
    head = (
        await connection.execute(
            select(ExchangeHead.seq, ExchangeHead.entry_hash).where(ExchangeHead.id == 1)
        )
    ).one()
    if head.entry_hash != previous or head.seq != count:
        return LogCheck(
            count, previous, False, count + 1, "链头与最后一个条目不符 (末尾条目被删除)"
        )
    return LogCheck(count, previous, True)


__all__ = [
    "DONE",
    "GENESIS",
    "IN",
    "OUT",
    "PENDING",
    "LogCheck",
    "complete_outbound",
    "enqueue",
    "entry_digest",
    "insert_inbound",
    "newest_event_id",
    "pending_messages",
    "record_failure",
    "stored_inbound",
    "untold_events",
    "verify_log",
]
