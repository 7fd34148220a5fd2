"""Re-encryption after a key rotation, and how many ciphertexts each data key protects.

The SQL side of ``relief-gateway keys reencrypt`` / ``keys status`` / ``keys retire``: which
person rows still hold values sealed with an older key, and writing their re-sealed values
back. Keys themselves stay in ``gateway.crypto`` (``FieldCipher.reseal``, ``key_prefix``): this
module sees ciphertexts and key ids, never key material.

Safe while the gateway serves (issue 6 §3):

- each batch is read, re-sealed in memory, and written in its own short transaction;
- every write is a compare-and-set, ``UPDATE person SET c = new WHERE id = ? AND c = old``, so
  a value a concurrent writer stored meanwhile (sealed with the new primary) is never
  overwritten with the re-sealed old one;
- readers need nothing: both keys are in the keyring until ``keys retire``;
- resumable: a run selects only values not under the primary key, so re-running after an
  interruption continues where the last committed batch ended.

Blind indexes are not touched: they use the separate index key, which does not rotate here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.crypto import FieldCipher
from gateway.domain.errors import DecryptionError
from gateway.storage.models import Person
from gateway.storage.vault import TABLE

# The sealed person columns (``<name>_ct``), with the words an operator reads.
SEALED_COLUMNS = {"id_number": "身份证号", "name": "姓名", "phone": "电话", "address": "地址"}

_person: Table = Person.__table__  # type: ignore[assignment]


def _sealed(column: str) -> Any:
    return _person.c[f"{column}_ct"]


def _sealed_with(column: str, prefix: bytes) -> ColumnElement[bool]:
    # substr works on bytea (PostgreSQL) and on BLOB (SQLite) alike, and reads only the header.
    head = func.substr(_sealed(column), 1, len(prefix), type_=LargeBinary)
    return head == prefix


def _not_under(prefix: bytes) -> ColumnElement[bool]:
    """Rows with at least one value sealed with another key than ``prefix``'s."""
    return or_(
        *(
            and_(_sealed(column).is_not(None), ~_sealed_with(column, prefix))
            for column in SEALED_COLUMNS
        )
    )


# ------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """Ciphertexts per data key and column; ``unknown``: under no key of the keyring."""

    by_key: dict[str, dict[str, int]]
    unknown: dict[str, int]

    def count(self, key_id: str) -> int:
        return sum(self.by_key.get(key_id, {}).values())

    @property
    def unknown_total(self) -> int:
        return sum(self.unknown.values())


async def key_usage(connection: AsyncConnection, cipher: FieldCipher) -> KeyUsage:
    """One scan of ``person`` counting, per key of the keyring, the values whose header names
    it (SQL over the prefix bytes: nothing is decrypted)."""
    keys = cipher.data_key_ids
    counted: list[Any] = []
    for key_id in keys:
        prefix = cipher.key_prefix(key_id)
        counted += [
            func.sum(case((_sealed_with(column, prefix), 1), else_=0)) for column in SEALED_COLUMNS
        ]
    counted += [func.count(_sealed(column)) for column in SEALED_COLUMNS]
    row = (await connection.execute(select(*counted))).one()
    values = [int(value or 0) for value in row]
    width = len(SEALED_COLUMNS)
    by_key = {
        key_id: dict(zip(SEALED_COLUMNS, values[i * width : (i + 1) * width], strict=True))
        for i, key_id in enumerate(keys)
    }
    totals = dict(zip(SEALED_COLUMNS, values[len(keys) * width :], strict=True))
    unknown = {
        column: totals[column] - sum(per_column[column] for per_column in by_key.values())
        for column in SEALED_COLUMNS
    }
    return KeyUsage(by_key=by_key, unknown=unknown)


async def stale_counts(connection: AsyncConnection, cipher: FieldCipher) -> tuple[int, int]:
    """(rows, values) not under the primary key: what ``reencrypt`` has left to do."""
    prefix = cipher.key_prefix(cipher.primary_key_id)
    per_column = [
        func.sum(case((and_(_sealed(c).is_not(None), ~_sealed_with(c, prefix)), 1), else_=0))
        for c in SEALED_COLUMNS
    ]
    stmt = select(func.count(), *per_column).select_from(_person).where(_not_under(prefix))
    rows, *values = (await connection.execute(stmt)).one()
    return int(rows or 0), sum(int(value or 0) for value in values)


# ------------------------------------------------------------------------- re-encryption


@dataclass(frozen=True, slots=True)
class Reseal:
    """One value to write back: ``new`` replaces ``old`` only if the row still holds ``old``."""

    person_id: uuid.UUID
    column: str
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A value that could not be opened (corrupted, or under a key no longer in the keyring):
    left as it is and reported by row id and column, never by content."""

    person_id: uuid.UUID
    column: str


@dataclass(slots=True)
class Progress:
    rows_total: int  # rows with an old value when the run started
    batches: int = 0
    rows_seen: int = 0
    resealed: int = 0  # values written under the primary key
    superseded: int = 0  # values changed by another writer meanwhile (left to that writer)
    unreadable: list[Unreadable] = field(default_factory=list)


async def read_batch(
    connection: AsyncConnection, cipher: FieldCipher, *, after: uuid.UUID | None, size: int
) -> list[Any]:
    """The next ``size`` rows (by id, after ``after``) holding a value not under the primary."""
    prefix = cipher.key_prefix(cipher.primary_key_id)
    stmt = (
        select(_person.c.id, *(_sealed(column) for column in SEALED_COLUMNS))
        .where(_not_under(prefix))
        .order_by(_person.c.id)
        .limit(size)
    )
    if after is not None:
        stmt = stmt.where(_person.c.id > after)
    return list((await connection.execute(stmt)).all())


def plan_batch(rows: list[Any], cipher: FieldCipher) -> tuple[list[Reseal], list[Unreadable]]:
    """Re-seal each old value of ``rows`` under the primary key (in memory; no I/O)."""
    reseals: list[Reseal] = []
    unreadable: list[Unreadable] = []
    for row in rows:
        row_id = str(row.id)
        for column in SEALED_COLUMNS:
            old: bytes | None = getattr(row, f"{column}_ct")
            if old is None:
                continue
            try:
                new = cipher.reseal(old, table=TABLE, column=column, row_id=row_id)
            except DecryptionError:
                unreadable.append(Unreadable(row.id, column))
                continue
            if new is not None:
                reseals.append(Reseal(row.id, column, old, new))
    return reseals, unreadable


def _compare_and_set(column: str) -> Any:
    sealed = _sealed(column)
    return (
        update(_person)
        .where(_person.c.id == bindparam("b_id"), sealed == bindparam("b_old"))
        .values({sealed.key: bindparam("b_new")})
    )


async def write_batch(connection: AsyncConnection, reseals: list[Reseal]) -> int:
    """Write ``reseals`` with compare-and-set; returns how many took effect (the others were
    changed by another writer after the batch was read, and keep that writer's value)."""
    written = 0
    for column in SEALED_COLUMNS:
        params = [
            {"b_id": r.person_id, "b_old": r.old, "b_new": r.new}
            for r in reseals
            if r.column == column
        ]
        if not params:
            continue
        ids = [p["b_id"] for p in params]
        await connection.execute(_compare_and_set(column), params)
        # Count in the same transaction: what now holds exactly the value we wrote. (Driver
        # row counts for executemany differ between asyncpg and sqlite3.)
        mine = {(p["b_id"], p["b_new"]) for p in params}
        stored = await connection.execute(
            select(_person.c.id, _sealed(column)).where(_person.c.id.in_(ids))
        )
        written += sum(1 for person_id, value in stored if (person_id, value) in mine)
    return written


async def reencrypt(
    engine: AsyncEngine,
    cipher: FieldCipher,
    *,
    batch_size: int,
    on_batch: Callable[[Progress], Awaitable[None]] | None = None,
) -> Progress:
    """Re-seal every value not under the primary key, ``batch_size`` rows per transaction.

    The primary is read again for every batch (the cipher reloads the keyring), so a rotation
    during a run is followed. Keyset order by row id: every row is visited once per run, even
    one whose value cannot be opened and so stays old.
    """
    async with engine.connect() as connection:
        rows_total, _ = await stale_counts(connection, cipher)
    progress = Progress(rows_total=rows_total)
    after: uuid.UUID | None = None
    while True:
        async with engine.connect() as connection:
            rows = await read_batch(connection, cipher, after=after, size=batch_size)
        if not rows:
            return progress
        reseals, unreadable = plan_batch(rows, cipher)
        async with engine.begin() as connection:  # one short transaction per batch
            written = await write_batch(connection, reseals)
        after = rows[-1].id
        progress.batches += 1
        progress.rows_seen += len(rows)
        progress.resealed += written
        progress.superseded += len(reseals) - written
        progress.unreadable += unreadable
        if on_batch is not None:
            await on_batch(progress)
