"""Migration 0013 (issue 18: the outbox, webhook endpoints and deliveries, task receipts) on a
database at 0012 that already holds tasks:

* the tables and the task's receipt columns appear; existing tasks keep every value, with no
  receipt (nothing recorded one) and no event made up for the past;
* on PostgreSQL, inserting deliveries or events announces them at commit (``NOTIFY
  relief_delivery`` / ``relief_outbox``, one notification per statement), and a rolled-back
  insert announces nothing;
* downgrading removes all of it and leaves the tasks as they were; upgrading again works.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401

NEW_TABLES = {
    "outbox_event",
    "webhook_endpoint",
    "webhook_subscription",
    "webhook_delivery",
    "webhook_attempt",
}
RECEIPTS = {"delivered_at", "read_at", "read_by"}


async def _a_task_at_0012(database: AsyncEngine) -> uuid.UUID:
    """One person and one task as 0012 stores them (plain SQL: the models are at head)."""
    person, task = uuid.uuid4(), uuid.uuid4()
    postgres = database.dialect.name == "postgresql"
    ident = (lambda value: value) if postgres else (lambda value: value.hex)
    async with database.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO person (id, id_number_bidx, id_number_ct, name_ct, gender,"
                " birth_date, region_code, province_code, city_code, county_code, created_at)"
                " VALUES (:id, :bidx, :ct, :ct, 'MALE', :born, '370102', '37', '3701', '370102',"
                " :now)"
            ),
            {
                "id": ident(person),
                "bidx": b"b" * 32,
                "ct": b"sealed",
                "born": date(1960, 1, 1),
                "now": datetime(2026, 11, 1, tzinfo=UTC),
            },
        )
        await connection.execute(
            text(
                "INSERT INTO task (id, kind, department, county_code, person_id, source_key,"
                " opened_on, due_on, status) VALUES (:id, 'WARNING_REVIEW', 'civil_affairs',"
                " '370102', :person, 'warning:x', :opened, :due, 'OPEN')"
            ),
            {
                "id": ident(task),
                "person": ident(person),
                "opened": date(2026, 11, 2),
                "due": date(2026, 11, 9),
            },
        )
    return task


async def _task_row(database: AsyncEngine) -> dict[str, object]:
    async with database.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM task"))).mappings().one()
        return dict(row)


async def test_upgrade_adds_the_outbox_and_receipts_and_keeps_the_tasks(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "0012")
    await _a_task_at_0012(engine)
    before = await _task_row(engine)

    await migrate(engine, "upgrade", "0013")

    assert await revision_of(engine) == "0013"
    tables, columns = await schema_of(engine)
    assert tables >= NEW_TABLES
    assert columns["task"] >= RECEIPTS
    after = await _task_row(engine)
    assert {k: v for k, v in after.items() if k not in RECEIPTS} == before
    assert all(after[column] is None for column in RECEIPTS)
    async with engine.connect() as connection:
        events = (await connection.execute(text("SELECT count(*) FROM outbox_event"))).scalar()
    assert events == 0  # no event made up for the past


async def test_downgrade_removes_it_all_and_upgrade_again_works(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "0012")
    await _a_task_at_0012(engine)
    before = await _task_row(engine)
    await migrate(engine, "upgrade", "0013")

    await migrate(engine, "downgrade", "0012")

    tables, columns = await schema_of(engine)
    assert not NEW_TABLES & tables
    assert not RECEIPTS & columns["task"]
    assert await _task_row(engine) == before
    await migrate(engine, "upgrade", "0013")
    assert (await schema_of(engine))[0] >= NEW_TABLES


def _asyncpg_dsn(database: AsyncEngine) -> str:
    url = database.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def test_inserts_announce_themselves_at_commit_on_postgresql(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one process, which wakes itself")
    await migrate(engine, "upgrade", "0013")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(_asyncpg_dsn(engine))
    try:
        for channel in ("relief_outbox", "relief_delivery"):
            await listener.add_listener(
                channel, lambda _c, _p, name, _payload: heard.put_nowait(name)
            )
        event = (
            "INSERT INTO outbox_event (event_id, kind, audience, county_code, subject_type,"
            " subject_id, dedupe_key, occurred_at, emit_id) VALUES (:id, 'batch.accepted',"
            " 'civil_affairs', '370102', 'batch', 'b', :key, now(), :emit)"
        )
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(
                text(event), {"id": uuid.uuid4(), "key": "rolled-back", "emit": uuid.uuid4()}
            )
            await transaction.rollback()
        await asyncio.sleep(0.3)
        assert heard.empty()  # nothing announced for what never happened

        async with engine.begin() as connection:
            for n in range(3):  # three statements, three notifications
                await connection.execute(
                    text(event), {"id": uuid.uuid4(), "key": f"k{n}", "emit": uuid.uuid4()}
                )
        assert await asyncio.wait_for(heard.get(), 5) == "relief_outbox"
    finally:
        await listener.close()
