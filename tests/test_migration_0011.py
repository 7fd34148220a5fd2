"""Migration 0011 (keyed audit evidence, issue 16 item 6) on a gateway whose audit log already
holds entries:

* ``audit_log.mac_key_id`` / ``entry_mac`` are added, null for the entries already written
  (no MAC is invented for them), on PostgreSQL in every month partition as well;
* ``audit_anchor`` is created empty; the old entries verify as written before MACs, and the
  first MAC'd entry after the upgrade anchors where MACs began;
* downgrading removes both, and is refused once an archive anchor exists.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import column, insert, select, table, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.crypto import AuditMac, Keyring
from gateway.storage import audit_chain as audit
from gateway.storage.models import AuditAnchor, AuditEntry
from gateway.storage.partitions import SCHEMA
from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401

# the audit table before this migration (without the MAC columns)
AUDIT_AT_0010 = table(
    "audit_log",
    *(
        column(c.name, c.type)
        for c in AuditEntry.__table__.c
        if c.name not in ("mac_key_id", "entry_mac")
    ),
)


def _old_entries(count: int) -> list[dict[str, object]]:
    """A chain written before 0011, in February 2026."""
    rows: list[dict[str, object]] = []
    previous = audit.GENESIS
    for index in range(count):
        entry = AuditEntry(
            occurred_at=datetime(2026, 2, 3, 4, index, tzinfo=UTC).replace(tzinfo=None),
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
            {c.name: getattr(entry, c.name) for c in AUDIT_AT_0010.c if c.name != "id"}
            | {"occurred_at": datetime(2026, 2, 3, 4, index, tzinfo=UTC)}
        )
    return rows


async def _at_0010_with_entries(engine: AsyncEngine) -> None:  # noqa: F811
    await migrate(engine, "upgrade", "0010")
    async with engine.begin() as connection:
        await connection.execute(insert(AUDIT_AT_0010), _old_entries(5))


async def test_upgrade_adds_nullable_macs_and_an_empty_anchor_table(
    engine: AsyncEngine,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _at_0010_with_entries(engine)
    await migrate(engine, "upgrade", "0011")

    assert await revision_of(engine) == "0011"
    tables, columns = await schema_of(engine)
    assert "audit_anchor" in tables
    assert {"mac_key_id", "entry_mac"} <= columns["audit_log"]
    if engine.dialect.name == "postgresql":  # the partitions have them too
        async with engine.connect() as connection:
            found = await connection.execute(
                text(
                    "SELECT DISTINCT table_name FROM information_schema.columns"
                    " WHERE table_schema = :s AND column_name = 'entry_mac'"
                ),
                {"s": SCHEMA},
            )
            partitions = {row[0] for row in found}
            found = await connection.execute(
                text(
                    "SELECT child.relname FROM pg_inherits i"
                    " JOIN pg_class child ON child.oid = i.inhrelid"
                    " JOIN pg_class parent ON parent.oid = i.inhparent"
                    " WHERE parent.relname = 'audit_log'"
                )
            )
            every = {row[0] for row in found}
        assert "audit_log_default" in every
        assert len(every) > 1
        assert partitions == every

    macs = AuditMac(Keyring.load_or_create(tmp_path / "keyring.json", "sm4-gcm+hmac-sm3"))
    async with AsyncSession(engine, expire_on_commit=False) as session:
        old = list((await session.execute(select(AuditEntry))).scalars())
        assert [(e.mac_key_id, e.entry_mac) for e in old] == [(None, None)] * 5
        assert (await session.execute(select(AuditAnchor))).first() is None
        report = await audit.verify_chain(session, macs=macs)
        assert report.ok, report
        assert (report.pre_mac_entries, report.mac_entries) == (5, 0)

        # The gateway after the upgrade (which runs at head: appends move 0012's chain head):
        # MAC'd entries, the first one anchored.
        await migrate(engine, "upgrade", "0012")
        new = AuditEntry(**{**{c.name: getattr(old[-1], c.name) for c in AuditEntry.__table__.c}})
        new.id = None  # type: ignore[assignment]
        new.occurred_at = datetime.now(UTC)
        new.request_id = str(uuid.uuid4())
        session.expunge_all()
        await audit.append_entries(session, [new], macs=macs)
        report = await audit.verify_chain(session, macs=macs)
        assert report.ok, report
        assert (report.pre_mac_entries, report.mac_entries) == (5, 1)
        start = (await session.execute(select(AuditAnchor))).scalar_one()
        assert (start.kind, start.last_entry_id) == ("mac_start", new.id)

        # From the anchor on, a MAC is required: stripping it is tampering, not history.
        await session.execute(
            update(AuditEntry).where(AuditEntry.id == new.id).values(entry_mac=None)
        )
        await session.commit()
        report = await audit.verify_chain(session, macs=macs)
        assert (report.first_bad_id, report.failure) == (new.id, audit.MAC_MISSING)


async def test_downgrade_removes_the_columns_and_the_table(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await _at_0010_with_entries(engine)
    await migrate(engine, "upgrade", "0011")
    await migrate(engine, "downgrade", "0010")
    tables, columns = await schema_of(engine)
    assert "audit_anchor" not in tables
    assert not {"mac_key_id", "entry_mac"} & columns["audit_log"]
    async with engine.connect() as connection:  # the old entries stay
        count = (await connection.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
    assert count == 5
    await migrate(engine, "upgrade", "0011")
    assert await revision_of(engine) == "0011"


async def test_downgrade_is_refused_once_months_are_archived(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await _at_0010_with_entries(engine)
    await migrate(engine, "upgrade", "0011")
    async with engine.begin() as connection:
        await connection.execute(
            insert(AuditAnchor).values(
                kind="archive",
                created_at=datetime.now(UTC),
                operator="audit.admin",
                month="2026-01",
                entries=1,
                first_prev_hash=audit.GENESIS,
                last_entry_id=1,
                last_entry_hash="b" * 64,
                file_name="audit-2026-01-1-1.jsonl.gz",
                file_digest="c" * 64,
                mac_key_id="ak-x",
                anchor_mac="d" * 64,
            )
        )
    with pytest.raises(RuntimeError, match="拒绝降级"):
        await migrate(engine, "downgrade", "0010")
    assert await revision_of(engine) == "0011"
