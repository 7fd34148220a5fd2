"""Migration 0012 (the audit chain's head row, issue 17 item 3) on a gateway whose audit log
already holds entries:

* ``audit_head`` is created with one row: the hash of the last online entry (id order); with an
  empty online log, the last archive anchor's ``last_entry_hash``; else the genesis hash;
* appends after the upgrade go on from it, and the chain verifies;
* downgrading drops the table and leaves the entries; upgrading again seeds it again.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.crypto import AuditMac, Keyring
from gateway.storage import audit_chain as audit
from gateway.storage.models import AuditAnchor, AuditEntry
from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401


def _old_entries(count: int, previous: str = audit.GENESIS) -> list[dict[str, object]]:
    """A chain as the gateway wrote it at 0011 (the process lock, no head row), in March 2026."""
    rows: list[dict[str, object]] = []
    for index in range(count):
        entry = AuditEntry(
            occurred_at=datetime(2026, 3, 3, 4, index, tzinfo=UTC).replace(tzinfo=None),
            request_id=str(uuid.uuid4()),
            subject=f"reader-{index}",
            department="civil_affairs",
            level="county",
            region="370102",
            purpose="relief_recognition",
            operation="OldPage",
            policy_version=1,
            person_ids="[]",
            fields="{}",
        )
        entry.prev_hash = previous
        entry.entry_hash = previous = audit._entry_digest(previous, audit._hashed_fields(entry))
        rows.append(
            {
                c.name: getattr(entry, c.name)
                for c in AuditEntry.__table__.c
                if c.name not in ("id", "mac_key_id", "entry_mac")
            }
            | {"occurred_at": datetime(2026, 3, 3, 4, index, tzinfo=UTC)}
        )
    return rows


async def _head(database: AsyncEngine) -> list[tuple[int, str]]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT id, entry_hash FROM audit_head"))
        return [(row[0], row[1]) for row in rows]


async def _at_0011(engine: AsyncEngine, entries: int) -> list[dict[str, object]]:  # noqa: F811
    await migrate(engine, "upgrade", "0011")
    rows = _old_entries(entries)
    if rows:
        async with engine.begin() as connection:
            await connection.execute(insert(AuditEntry), rows)
    return rows


async def test_upgrade_seeds_the_head_from_the_last_entry(
    engine: AsyncEngine,  # noqa: F811
    tmp_path: Path,
) -> None:
    rows = await _at_0011(engine, 5)
    await migrate(engine, "upgrade", "0012")
    assert await revision_of(engine) == "0012"
    assert await _head(engine) == [(1, rows[-1]["entry_hash"])]

    macs = AuditMac(Keyring.load_or_create(tmp_path / "keyring.json", "sm4-gcm+hmac-sm3"))
    audit._mac_start_known.discard(engine.url)
    new = [_new_entry("after-upgrade"), _new_entry("after-upgrade-2")]
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await audit.append_entries(session, new[:1], macs=macs)
        await audit.append_entries(session, new[1:], macs=macs)  # PostgreSQL: the statement
        report = await audit.verify_chain(session, macs=macs)
    assert report.ok, report
    assert (report.entries, report.pre_mac_entries, report.mac_entries) == (7, 5, 2)
    assert new[0].prev_hash == rows[-1]["entry_hash"]
    assert await _head(engine) == [(1, new[-1].entry_hash)]


async def test_an_empty_online_log_after_an_archive_seeds_the_archived_head(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    rows = await _at_0011(engine, 3)
    archived_head = str(rows[-1]["entry_hash"])
    async with engine.begin() as connection:  # what an archive at 0011 left behind
        await connection.execute(
            insert(AuditAnchor).values(
                kind="archive",
                created_at=datetime.now(UTC),
                operator="audit.admin",
                month="2026-03",
                entries=3,
                first_prev_hash=audit.GENESIS,
                last_entry_id=3,
                last_entry_hash=archived_head,
                file_name="audit-2026-03-1-3.jsonl.gz",
                file_digest="c" * 64,
                mac_key_id="ak-x",
                anchor_mac="d" * 64,
            )
        )
        await connection.execute(delete(AuditEntry))
    await migrate(engine, "upgrade", "0012")
    assert await _head(engine) == [(1, archived_head)]

    entry = _new_entry("after-archive")
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await audit.append_entries(session, [entry])
        report = await audit.verify_chain(session)
    assert entry.prev_hash == archived_head
    assert report.ok, report
    assert (report.start_hash, report.entries) == (archived_head, 1)


async def test_a_new_database_starts_at_genesis(engine: AsyncEngine) -> None:  # noqa: F811
    await _at_0011(engine, 0)
    await migrate(engine, "upgrade", "0012")
    assert await _head(engine) == [(1, audit.GENESIS)]


async def test_downgrade_drops_the_head_and_keeps_the_entries(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    rows = await _at_0011(engine, 4)
    await migrate(engine, "upgrade", "0012")
    entry = _new_entry("at-0012")
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await audit.append_entries(session, [entry])
    await migrate(engine, "downgrade", "0011")
    tables, _columns = await schema_of(engine)
    assert "audit_head" not in tables
    async with engine.connect() as connection:
        hashes = list((await connection.execute(select(AuditEntry.entry_hash))).scalars())
    assert sorted(hashes) == sorted([*(str(row["entry_hash"]) for row in rows), entry.entry_hash])

    await migrate(engine, "upgrade", "0012")
    assert await _head(engine) == [(1, entry.entry_hash)]


def _new_entry(subject: str) -> AuditEntry:
    return AuditEntry(
        occurred_at=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        subject=subject,
        department="civil_affairs",
        level="county",
        region="370102",
        purpose="relief_recognition",
        operation="NewPage",
        policy_version=1,
        person_ids="[]",
        fields="{}",
    )
