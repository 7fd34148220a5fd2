"""Time partitions on PostgreSQL (issue 6 item 5, migration 0005, ``gateway.storage.partitions``).

Settlements are partitioned by year, audit entries by month of Beijing time. These tests run
on a real throw-away PostgreSQL (the SQLite schema is covered by the migration tests'
``compare_metadata`` check):

- upgrading a 0004 database with data puts every row in its partition, keeps the counts and
  the audit chain (``relief-gateway audit verify``), and downgrade/upgrade round-trip;
- a row of a period without a partition lands in DEFAULT, and ``ensure`` moves it into the
  partition it creates; a second ``ensure`` does nothing;
- re-loading a settlement file is still idempotent, and a correction to another year moves
  the row to that year's partition;
- a period-bounded audit query and a year's settlement roll-up read one partition (EXPLAIN);
- two ``relief-gateway partitions ensure`` processes at once both succeed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.domain.clock import today
from gateway.storage.audit_chain import append_entries, verify_chain
from gateway.storage.engine import make_engine
from gateway.storage.models import AuditEntry, Person, Settlement
from gateway.storage.partitions import SCHEMA, ensure_partitions
from tests.ingest_support import (  # noqa: F401
    IngestDatabase,
    IngestDB,
    db_fixture,
    identity_row,
    ingest_database_fixture,
    nonzero,
    settlement_row,
    someone,
)
from tests.migration_support import migrate
from tests.pgcluster import ThrowawayCluster

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
CIVIL = ("civil_affairs", "identities")
SETTLEMENTS = ("medical_insurance", "settlements")
A, B = someone(1), someone(2)

# Settlements of three years, and audit entries either side of a Beijing month boundary:
# 2025-12-31 16:30 UTC is 2026-01-01 00:30 in Beijing, so it belongs to January.
ROWS = [
    settlement_row(A, "JS2024", "2024-07-01"),
    settlement_row(A, "JS2025", "2025-05-05"),
    settlement_row(B, "JS2026A", "2026-02-01"),
    settlement_row(B, "JS2026B", "2026-03-01", "门诊"),
]
AUDIT_TIMES = [
    datetime(2025, 12, 31, 15, 30, tzinfo=UTC),  # 23:30 Beijing: December
    datetime(2025, 12, 31, 16, 30, tzinfo=UTC),  # 00:30 Beijing: January
    datetime(2026, 3, 15, 8, 0, tzinfo=UTC),
    datetime(2026, 3, 20, 8, 0, tzinfo=UTC),
]


@pytest.fixture(scope="module")
def backend() -> str:
    """This module is about PostgreSQL only (the ingest fixtures read ``backend``)."""
    return "postgres"


@pytest.fixture
async def database(
    postgres_cluster: ThrowawayCluster, tmp_path: Path
) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A new, empty PostgreSQL database (not migrated)."""
    name = f"relief_partitions_{uuid.uuid4().hex[:10]}"
    url = postgres_cluster.create_database(name)
    engine = make_engine(url)
    try:
        yield url, engine
    finally:
        await engine.dispose()
        postgres_cluster.drop_database(name)


def _audit_entry(at: datetime, n: int) -> AuditEntry:
    return AuditEntry(
        occurred_at=at,
        request_id=str(uuid.UUID(int=n)),
        subject="test-officer",
        department="civil_affairs",
        level="county",
        region="370102",
        purpose="relief_recognition",
        operation=f"Op{n}",
        policy_version=1,
        person_ids="[]",
        fields="{}",
    )


async def _append(engine: AsyncEngine, times: list[datetime]) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await append_entries(session, [_audit_entry(at, n) for n, at in enumerate(times)])


async def _placement(engine: AsyncEngine, table: str) -> dict[str, int]:
    """Rows per physical table (partition) of ``table``."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")  # noqa: S608
        )
        return {str(name): int(count) for name, count in rows}


async def _is_partitioned(engine: AsyncEngine, table: str) -> bool:
    async with engine.connect() as connection:
        kind = await connection.execute(
            text("SELECT relkind::text FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": table},
        )
        return bool(kind.scalar() == "p")


async def _verify(engine: AsyncEngine) -> tuple[bool, int, str]:
    async with AsyncSession(engine) as session:
        report = await verify_chain(session)
    return report.ok, report.entries, report.head_hash


def _cli(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    # the one clock: the subprocess must take the same day as the migration in this process
    env.update(
        RELIEF_DATABASE_URL=url, RELIEF_DATA_DIR=str(data_dir), RELIEF_TODAY=today().isoformat()
    )
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _at_once(url: str, data_dir: Path, count: int, *args: str) -> list[tuple[int, str, str]]:
    """``count`` CLI processes started together; (exit code, stdout, stderr) of each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    # the one clock: the subprocess must take the same day as the migration in this process
    env.update(
        RELIEF_DATABASE_URL=url, RELIEF_DATA_DIR=str(data_dir), RELIEF_TODAY=today().isoformat()
    )
    runs = [
        subprocess.Popen(
            [str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    return [
        (run.returncode, out.decode(), err.decode())
        for run, (out, err) in zip(runs, outputs, strict=True)
    ]


def _p(name: str) -> str:
    return f"{SCHEMA}.{name}"


async def test_upgrade_partitions_the_rows_and_downgrade_restores_them(
    database: tuple[str, AsyncEngine], tmp_path: Path
) -> None:
    url, engine = database
    # Rows as a gateway at 0004 holds them: written with today's ingest (at head), then taken
    # down to 0004, before time partitions (0005).
    await migrate(engine, "upgrade", "head")
    db = await IngestDatabase("postgres", url, engine, tmp_path).fresh(tmp_path)
    await db.load(*CIVIL, [identity_row(A), identity_row(B)])
    assert nonzero(await db.load(*SETTLEMENTS, ROWS))["added"] == 4
    await _append(engine, AUDIT_TIMES)
    chain_before = await _verify(engine)
    assert chain_before[:2] == (True, 4)
    await migrate(engine, "downgrade", "0004")
    assert not await _is_partitioned(engine, "settlement")
    assert not await _is_partitioned(engine, "audit_log")

    await migrate(engine, "upgrade", "head")

    assert await _is_partitioned(engine, "settlement")
    assert await _is_partitioned(engine, "audit_log")
    assert await _placement(engine, "settlement") == {
        _p("settlement_y2024"): 1,
        _p("settlement_y2025"): 1,
        _p("settlement_y2026"): 2,
    }
    assert await _placement(engine, "audit_log") == {
        _p("audit_log_m202512"): 1,
        _p("audit_log_m202601"): 1,  # Beijing's January, though still December in UTC
        _p("audit_log_m202603"): 2,
    }
    assert await _verify(engine) == chain_before  # same entries, same head
    verified = _cli(url, tmp_path / "data", "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "4 条记录" in verified.stdout
    # New rows keep numbering after the copied ones (the sequence moved with the table).
    await _append(engine, [datetime(2026, 3, 21, tzinfo=UTC)])
    assert (await _verify(engine))[:2] == (True, 5)

    await migrate(engine, "downgrade", "0004")

    assert not await _is_partitioned(engine, "settlement")
    assert not await _is_partitioned(engine, "audit_log")
    assert await _placement(engine, "settlement") == {"settlement": 4}
    assert await _placement(engine, "audit_log") == {"audit_log": 5}
    assert (await _verify(engine))[:2] == (True, 5)
    async with engine.connect() as connection:
        leftover = await connection.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}
        )
        assert leftover.scalar() == 0

    await migrate(engine, "upgrade", "head")

    assert sum((await _placement(engine, "settlement")).values()) == 4
    assert _p("settlement_default") not in await _placement(engine, "settlement")
    assert (await _verify(engine))[:2] == (True, 5)


async def test_a_period_without_partition_uses_default_until_ensure(
    database: tuple[str, AsyncEngine], tmp_path: Path
) -> None:
    url, engine = database
    await migrate(engine, "upgrade", "head")
    db = await IngestDatabase("postgres", url, engine, tmp_path).fresh(tmp_path)
    await db.load(*CIVIL, [identity_row(A)])
    far = today().year + 5
    async with engine.begin() as connection:
        person = (await connection.execute(select(Person.id))).scalar_one()
        await connection.execute(insert(Settlement), [_settlement(person, "JS-FAR", far)])
    await _append(engine, [datetime(far, 7, 10, tzinfo=UTC)])

    assert await _placement(engine, "settlement") == {_p("settlement_default"): 1}
    assert await _placement(engine, "audit_log") == {_p("audit_log_default"): 1}

    created = await ensure_partitions(engine, date(far, 6, 1), ahead_months=1)

    assert _p(f"settlement_y{far}") in created
    assert _p(f"audit_log_m{far}07") in created
    assert await _placement(engine, "settlement") == {_p(f"settlement_y{far}"): 1}
    assert await _placement(engine, "audit_log") == {_p(f"audit_log_m{far}07"): 1}
    assert (await _verify(engine))[:2] == (True, 1)
    # Idempotent: nothing missing, nothing created, nothing locked.
    assert await ensure_partitions(engine, date(far, 6, 1), ahead_months=1) == []
    # After ensure, the next rows of that period go straight to its partition.
    async with engine.begin() as connection:
        await connection.execute(insert(Settlement), [_settlement(person, "JS-FAR-2", far)])
    assert await _placement(engine, "settlement") == {_p(f"settlement_y{far}"): 2}


def _settlement(person: uuid.UUID, number: str, year: int) -> dict[str, Any]:
    return {
        "settlement_number": number,
        "person_id": person,
        "settled_on": date(year, 7, 1),
        "year": year,
        "visit_type": "INPATIENT",
        "total_cost": 100,
        "basic_insurance_paid": 50,
        "critical_illness_paid": 0,
        "medical_assistance_paid": 20,
        "personal_burden": 30,
    }


async def test_reloading_settlements_stays_idempotent_across_partitions(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A), identity_row(B)])
    await db.load(*SETTLEMENTS, ROWS)

    again = await db.load(*SETTLEMENTS, list(reversed(ROWS)))

    assert nonzero(again) == {"rows_total": 4, "rows_accepted": 4, "rows_unchanged": 4}
    assert await db.count(Settlement) == 4
    # A correction that moves a settlement to another year moves it to that year's partition.
    moved = {**ROWS[1], "结算日期": "2026-01-15"}
    assert nonzero(await db.load(*SETTLEMENTS, [moved]))["updated"] == 1
    placement = await _placement(db.engine, "settlement")
    assert placement[_p("settlement_y2026")] == 3
    assert _p("settlement_y2025") not in placement
    assert await db.count(Settlement) == 4
    burdens = await db.cost_burdens(A)
    assert set(burdens) == {2024, 2026}  # 2025's burden went with its only settlement


def _plan(rows: Any) -> str:
    return "\n".join(str(row[0]) for row in rows)


async def test_period_and_year_queries_read_one_partition(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A), identity_row(B)])
    await db.load(*SETTLEMENTS, ROWS)
    await _append(db.engine, AUDIT_TIMES)
    await ensure_partitions(db.engine, today())  # past periods' rows leave DEFAULT
    async with db.engine.connect() as connection:
        # The audit API's period query (Beijing days as UTC bounds, newest first, one page).
        audit = _plan(
            await connection.execute(
                text(
                    "EXPLAIN SELECT * FROM audit_log"
                    " WHERE region LIKE '37%' AND department = 'civil_affairs'"
                    " AND occurred_at >= '2026-02-28 16:00:00+00'"
                    " AND occurred_at < '2026-03-31 16:00:00+00'"
                    " ORDER BY id DESC LIMIT 51"
                )
            )
        )
        # A year's settlements rolled up per person (what cost burdens are).
        year = _plan(
            await connection.execute(
                text(
                    "EXPLAIN SELECT person_id, sum(personal_burden) FROM settlement"
                    " WHERE year = 2026 GROUP BY person_id"
                )
            )
        )
    assert "audit_log_m202603" in audit, audit
    assert "audit_log_m2026" not in audit.replace("audit_log_m202603", "")
    assert "audit_log_default" not in audit
    assert "settlement_y2026" in year
    assert "settlement_y2025" not in year
    assert "settlement_default" not in year


async def test_two_processes_ensuring_at_once_both_succeed(
    database: tuple[str, AsyncEngine], tmp_path: Path
) -> None:
    url, engine = database
    await migrate(engine, "upgrade", "head")
    results = _at_once(url, tmp_path / "data", 2, "partitions", "ensure", "--ahead-months", "36")

    assert [code for code, _, _ in results] == [0, 0], results
    stdout = [out for _, out, _ in results]
    assert sum("已创建" in out for out in stdout) >= 1  # one created them ...
    async with engine.connect() as connection:
        months = await connection.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = CAST('audit_log' AS regclass)")
        )
        # DEFAULT + this month + 36 ahead, each once (the other process found them made)
        assert months.scalar() == 1 + 37
    again = _cli(url, tmp_path / "data", "partitions", "ensure")
    assert again.returncode == 0, again.stderr
    assert "无需创建" in again.stdout


async def test_settlement_numbers_stay_unique_within_a_year(db: IngestDB) -> None:
    """The database's own guard: one number once per year (across years: ingest's look-up)."""
    await db.load(*CIVIL, [identity_row(A)])
    async with db.engine.begin() as connection:
        person = (await connection.execute(select(Person.id))).scalar_one()
        await connection.execute(insert(Settlement), [_settlement(person, "JS-DUP", 2026)])
    with pytest.raises(IntegrityError, match="settlement_number_year"):
        async with db.engine.begin() as connection:
            await connection.execute(insert(Settlement), [_settlement(person, "JS-DUP", 2026)])
    async with db.engine.connect() as connection:
        count = await connection.execute(select(func.count()).select_from(Settlement))
        assert count.scalar_one() == 1
