"""The audit append in one round trip (issue 17 item 3): the chain head row moved by a
compare-and-swap together with the insert.

* two engines appending at once (as two gateway processes do) leave one unbroken chain with
  every entry once: no fork, no loss; a group that finds the head moved is re-chained and
  sent again, a bounded number of times, then waits for the head row's lock;
* on PostgreSQL a group costs one autocommitted statement;
* fail-closed: when the database refuses, nobody's entry is written and every waiter sees the
  error; the head stays where it was;
* MACs verify and ``mac_start`` is anchored once;
* an archive removes entries but not the head: the online log goes on from it;
* the entries of the one statement land in their month partitions (PostgreSQL).

On SQLite and PostgreSQL (``tests.migration_support.engine``: a new database per test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.crypto import AuditMac, Keyring
from gateway.storage import audit_archive
from gateway.storage import audit_chain as audit
from gateway.storage.admin_audit import admin_entry
from gateway.storage.engine import make_engine, make_sessionmaker
from gateway.storage.models import AuditAnchor, AuditEntry, AuditHead
from gateway.storage.partitions import AUDIT_LOG, SCHEMA, create_partition
from tests.migration_support import engine, migrate  # noqa: F401


@pytest.fixture
def macs(tmp_path: Path) -> AuditMac:
    return AuditMac(Keyring.load_or_create(tmp_path / "keyring.json", "sm4-gcm+hmac-sm3"))


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:  # noqa: F811
    """A database at head whose process (this test) has not appended yet."""
    await migrate(engine, "upgrade", "head")
    audit._mac_start_known.discard(engine.url)
    return engine


def _entry(subject: str, at: datetime | None = None) -> AuditEntry:
    entry = admin_entry(
        subject=subject, role="audit_admin", operation="test", region="37", policy_version=1
    )
    if at is not None:
        entry.occurred_at = at
    return entry


async def _append(database: AsyncEngine, entries: list[AuditEntry], macs: AuditMac | None) -> None:
    async with AsyncSession(database, expire_on_commit=False) as session:
        await audit.append_entries(session, entries, macs=macs)


async def _report(database: AsyncEngine, macs: AuditMac | None) -> audit.ChainReport:
    async with AsyncSession(database, expire_on_commit=False) as session:
        return await audit.verify_chain(session, macs=macs)


async def _rows(database: AsyncEngine) -> list[AuditEntry]:
    async with AsyncSession(database, expire_on_commit=False) as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def _head(database: AsyncEngine) -> str:
    async with database.connect() as connection:
        return str((await connection.execute(select(AuditHead.entry_hash))).scalar_one())


@contextmanager
def _statements(database: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The statements sent on ``database`` meanwhile, with the connection's isolation level."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((statement, conn.get_execution_options().get("isolation_level")))

    event.listen(database.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.sync_engine, "before_cursor_execute", record)


async def test_two_processes_appending_at_once_leave_one_chain(
    db: AsyncEngine, macs: AuditMac
) -> None:
    """Eight appenders, four on each of two engines (two processes' pools), each its own group
    commit writer: every entry once, one chain, every MAC holds."""
    other = make_engine(db.url.render_as_string(hide_password=False))
    try:
        writers = [audit.AuditWriter(make_sessionmaker(e), macs=macs) for e in (db, other)]
        before = audit.AppendCounts(**vars(audit.counts))
        per_appender = 25

        async def appender(number: int) -> list[str]:
            writer = writers[number % 2]
            written = []
            for index in range(per_appender):
                entry = _entry(f"reader-{number}-{index}")
                await writer.append(entry)
                written.append(entry.request_id)
            return written

        written = [rid for part in await asyncio.gather(*map(appender, range(8))) for rid in part]
    finally:
        await other.dispose()

    rows = await _rows(db)
    assert sorted(row.request_id for row in rows) == sorted(written)  # each once, none lost
    assert len(written) == 8 * per_appender
    assert [row.prev_hash for row in rows[1:]] == [row.entry_hash for row in rows[:-1]]  # no fork
    report = await _report(db, macs)
    assert report.ok, report
    assert (report.entries, report.mac_entries) == (len(rows), len(rows))
    assert await _head(db) == rows[-1].entry_hash
    async with db.connect() as connection:
        starts = await connection.execute(
            select(func.count()).select_from(AuditAnchor).where(AuditAnchor.kind == "mac_start")
        )
        assert starts.scalar_one() == 1
    if db.dialect.name == "postgresql":
        groups = audit.counts.groups - before.groups
        moved = audit.counts.head_moved - before.head_moved
        # The two engines took turns: some groups found the head moved and were re-chained.
        assert moved > 0
        assert audit.counts.statements - before.statements == groups + moved


async def test_a_group_is_one_autocommitted_statement_on_postgresql(
    db: AsyncEngine, macs: AuditMac
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite has no data-modifying CTE: one transaction under the process lock")
    await _append(db, [_entry("first")], macs)  # anchors mac_start, caches the head
    group = [_entry(f"reader-{n}") for n in range(5)]
    with _statements(db) as seen:
        await _append(db, group, macs)
    assert len(seen) == 1, seen
    statement, isolation = seen[0]
    assert statement.startswith("WITH head AS")
    assert isolation == "AUTOCOMMIT"  # no BEGIN, no COMMIT
    assert "pg_advisory" not in statement
    rows = await _rows(db)
    assert [row.id for row in rows[-5:]] == [entry.id for entry in group]
    assert [row.entry_hash for row in rows[-5:]] == [entry.entry_hash for entry in group]
    assert (await _report(db, macs)).ok


async def test_another_process_moving_the_head_costs_one_more_statement(
    db: AsyncEngine, macs: AuditMac
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("the compare-and-swap statement is PostgreSQL's")
    other = make_engine(db.url.render_as_string(hide_password=False))
    try:
        await _append(db, [_entry("one")], macs)
        await _append(other, [_entry("two")], macs)  # the head moved under db's cached one
        with _statements(db) as seen:
            await _append(db, [_entry("three")], macs)
        assert len(seen) == 2
        with _statements(db) as seen:
            await _append(db, [_entry("four")], macs)
        assert len(seen) == 1
    finally:
        await other.dispose()
    rows = await _rows(db)
    assert [row.subject for row in rows] == ["one", "two", "three", "four"]
    assert (await _report(db, macs)).ok


async def test_a_head_that_keeps_moving_is_taken_with_its_lock_after_bounded_retries(
    db: AsyncEngine, macs: AuditMac, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compare-and-swap alone can starve a process (the one that just wrote is always first):
    after ``MAX_ATTEMPTS`` misses the group waits for the head row's lock in a transaction,
    where it cannot miss."""
    if db.dialect.name != "postgresql":
        pytest.skip("the compare-and-swap statement is PostgreSQL's")
    await _append(db, [_entry("first")], macs)
    chained = audit._statement_parameters

    def always_stale(entries: Any, *, expected: str) -> dict[str, object]:
        return chained(entries, expected="e" * 64)  # as if another process always got ahead

    monkeypatch.setattr(audit, "_statement_parameters", always_stale)
    writer = audit.AuditWriter(make_sessionmaker(db), macs=macs)
    before = audit.AppendCounts(**vars(audit.counts))
    with _statements(db) as seen:
        await writer.append(_entry("kept-waiting"))
    sent = [statement.split()[0] for statement, _isolation in seen]
    assert sent[: audit.MAX_ATTEMPTS] == ["WITH"] * audit.MAX_ATTEMPTS
    assert sent[audit.MAX_ATTEMPTS :][:2] == ["LOCK", "SELECT"]  # table, then the head row
    assert len(sent) < audit.MAX_ATTEMPTS + 6
    assert audit.counts.locked - before.locked == 1
    assert audit.counts.head_moved - before.head_moved == audit.MAX_ATTEMPTS
    assert [row.subject for row in await _rows(db)] == ["first", "kept-waiting"]
    monkeypatch.undo()
    with _statements(db) as seen:
        await writer.append(_entry("later"))
    assert len(seen) == 1  # the head the locked path wrote is cached
    assert (await _report(db, macs)).ok


_REFUSE = {
    "postgresql": [
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
        " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    ],
}
_ALLOW = {
    "postgresql": ["DROP TRIGGER refuse_audit ON audit_log", "DROP FUNCTION refuse_audit()"],
    "sqlite": ["DROP TRIGGER refuse_audit"],
}


async def _run(database: AsyncEngine, statements: list[str]) -> None:
    async with database.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def test_refused_by_the_database_nobody_is_answered_and_the_head_stays(
    db: AsyncEngine, macs: AuditMac
) -> None:
    """The head moves in the statement (transaction) that inserts: when the insert is refused,
    the head has not moved either, and every waiter of the group gets the error."""
    writer = audit.AuditWriter(make_sessionmaker(db), macs=macs)
    await writer.append(_entry("first"))
    head = await _head(db)
    await _run(db, _REFUSE[db.dialect.name])
    results = await asyncio.gather(
        *(writer.append(_entry(f"refused-{n}")) for n in range(4)), return_exceptions=True
    )
    assert all(isinstance(result, Exception) for result in results), results
    assert all("disk full" in str(result) for result in results)
    assert await _head(db) == head
    assert [row.subject for row in await _rows(db)] == ["first"]

    await _run(db, _ALLOW[db.dialect.name])
    await writer.append(_entry("after"))
    rows = await _rows(db)
    assert [row.subject for row in rows] == ["first", "after"]
    assert rows[1].prev_hash == head
    assert (await _report(db, macs)).ok


async def test_mac_start_is_anchored_once_by_racing_processes(
    db: AsyncEngine, macs: AuditMac
) -> None:
    """Two processes whose first keyed appends race: one ``mac_start`` anchor, at the chain's
    first MAC'd entry."""
    other = make_engine(db.url.render_as_string(hide_password=False))
    try:

        async def first_append(engine: AsyncEngine, name: str) -> None:
            audit._mac_start_known.discard(engine.url)  # each its own process
            await _append(engine, [_entry(name)], macs)

        await asyncio.gather(first_append(db, "a"), first_append(other, "b"))
    finally:
        await other.dispose()
    rows = await _rows(db)
    async with AsyncSession(db) as session:
        anchors = list((await session.execute(select(AuditAnchor))).scalars())
    assert [(a.kind, a.last_entry_id) for a in anchors] == [("mac_start", rows[0].id)]
    report = await _report(db, macs)
    assert report.ok, report
    assert report.mac_entries == 2


async def test_an_archive_removes_entries_and_the_log_goes_on_from_the_head(
    db: AsyncEngine, macs: AuditMac, tmp_path: Path
) -> None:
    february = [_entry(f"old-{n}", datetime(2026, 2, 3, 4, n, tzinfo=UTC)) for n in range(3)]
    await _append(db, february, macs)
    result = await audit_archive.archive(
        db,
        macs,
        before=date(2026, 4, 1),
        out_dir=tmp_path / "archive",
        today=date(2026, 11, 23),
        retention_months=6,
        operator="audit.admin",
        region="37",
        policy_version=1,
    )
    assert result.removed == 3
    rows = await _rows(db)
    assert [row.id for row in rows] == [result.entry_id]  # only the archive's own entry
    assert rows[0].prev_hash == february[-1].entry_hash  # from the archived head
    assert await _head(db) == rows[0].entry_hash

    await _append(db, [_entry("after-archive")], macs)
    report = await _report(db, macs)
    assert report.ok, report
    assert report.start_hash == february[-1].entry_hash
    assert report.entries == 2


async def test_a_deleted_tail_shows_at_the_next_append(db: AsyncEngine, macs: AuditMac) -> None:
    """Cutting off the newest entries without also moving the head row: the next entry links
    to the deleted head, and ``verify`` reports the break there."""
    await _append(db, [_entry(f"reader-{n}") for n in range(4)], macs)
    async with db.begin() as connection:
        newest = (await connection.execute(select(func.max(AuditEntry.id)))).scalar_one()
        await connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": newest})
    assert (await _report(db, macs)).ok  # the chain alone cannot tell
    later = _entry("later")
    await _append(db, [later], macs)
    report = await _report(db, macs)
    assert (report.first_bad_id, report.failure) == (later.id, audit.LINK)


async def test_a_lost_head_row_is_restored_from_the_log(db: AsyncEngine, macs: AuditMac) -> None:
    """A database emptied table by table (test helpers do), or whose head row was deleted: the
    next append restores the row from the log's end, whichever path it takes, and the chain
    goes on intact."""
    await _append(db, [_entry("before")], macs)
    for keyring in (macs, None):  # the keyed first append, then the plain statement path
        await _run(db, ["DELETE FROM audit_head"])
        audit._cached_heads.clear()
        audit._mac_start_known.discard(db.url)
        await _append(db, [_entry(f"after-{keyring is not None}")], keyring)
    rows = await _rows(db)
    assert [row.subject for row in rows] == ["before", "after-True", "after-False"]
    assert await _head(db) == rows[-1].entry_hash
    report = await _report(db, None)  # the last entry has no MAC
    assert report.ok, report


async def test_the_statement_routes_entries_to_their_month_partitions(
    db: AsyncEngine, macs: AuditMac
) -> None:
    """``audit_log`` is partitioned by Beijing month (0005): entries of the one statement land
    in their month's partition, or in DEFAULT for a month without one."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite is not partitioned")
    await _append(db, [_entry("first")], macs)  # the keyed first append: a transaction
    month = date(2026, 12, 1)
    async with db.begin() as connection:
        await connection.run_sync(lambda sync: create_partition(sync, AUDIT_LOG, month))
    group = [
        _entry("december", datetime(2026, 12, 5, 8, tzinfo=UTC)),
        _entry("long-ago", datetime(2019, 6, 1, tzinfo=UTC)),
    ]
    await _append(db, group, macs)
    async with db.connect() as connection:
        found = await connection.execute(
            text("SELECT subject, tableoid::regclass::text FROM audit_log WHERE id = ANY(:ids)"),
            {"ids": [entry.id for entry in group]},
        )
        placed = dict(found.all())
    assert placed == {
        "december": f"{SCHEMA}.{AUDIT_LOG.name(month)}",
        "long-ago": f"{SCHEMA}.audit_log_default",
    }
    assert (await _report(db, macs)).ok
