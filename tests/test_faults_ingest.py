"""Ingest survives its faults (issue 6 §4), each shown against a clean run of the same file.

    killed     ``relief-gateway ingest`` SIGKILLed after its first chunk committed, then the
               same command again: the stored people, households, relief statuses, anomalies
               and verification tasks equal a clean single run's in another database (nothing
               lost, nothing twice). The re-run is not refused as a duplicate (only a COMPLETED
               batch is one), says that it resumes the killed batch, and closes that batch as
               FAILED. The verification tasks of the rows the killed run committed are opened
               by the re-run, which itself sees those rows as unchanged.
    read-only  PostgreSQL turned read-only part-way through a file (``default_transaction_
               read_only`` set and reloaded, as a failover to a standby or an operator's switch
               does), and SQLite opened read-only (``?mode=ro``: a read-only mount or file):
               exit 2 with one Chinese line naming the cause, no traceback, only whole chunks
               stored (a chunk is one transaction); writable again, the same command completes
               and the result equals a clean run.
    disk full  SQLite whose file cannot grow (``PRAGMA max_page_count``: SQLite answers
               SQLITE_FULL, exactly what a full disk gives): the same.

A full disk on PostgreSQL would need a tablespace on a tiny filesystem (a mount, so root and a
loop device or tmpfs); the read-only case drives the same path in the pipeline (a write refused
mid-file, SQLSTATE 25006 instead of 53100) and the message for 53100 is covered by
``database_problem``'s table here.

The file is a civil affairs roster of 30,000 rows (three 10,000-row chunks) written from the
synthetic population by ``adapters.samples``. PostgreSQL runs in a private throw-away cluster:
the read-only switch is cluster-wide (``ALTER SYSTEM``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.pipeline import CHUNK_ROWS, database_problem
from adapters.samples import IDENTITY_HEADERS, identity_rows, write_csv
from gateway.cli import main
from gateway.crypto import Keyring
from gateway.domain import clock
from gateway.domain.synthetic import generate_population
from gateway.storage.engine import make_engine
from gateway.storage.migrate import upgrade_to_head
from gateway.storage.models import (
    Anomaly,
    Household,
    IngestBatch,
    Person,
    PersonSource,
    ReliefStatus,
    Task,
)
from tests._pg_fixture import postgres_required
from tests.pgcluster import ThrowawayCluster, find_postgres_bindir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ROSTER_ROWS = 3 * CHUNK_ROWS
SMALL_ROWS = 1_500
INGEST = ("ingest", "--source", "civil_affairs", "--feed", "identities")

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The roster (30,000 rows) and its first 1,500 rows, as civil affairs exports them."""
    folder = tmp_path_factory.mktemp("rosters")
    population = generate_population(190_000, seed=20261206, today=clock.today())
    rows = list(itertools.islice(identity_rows(population), ROSTER_ROWS))
    assert len(rows) == ROSTER_ROWS
    roster, small = folder / "民政月报.csv", folder / "民政月报-样本.csv"
    write_csv(roster, IDENTITY_HEADERS, rows)
    write_csv(small, IDENTITY_HEADERS, rows[:SMALL_ROWS])
    return roster, small


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory (one keyring) for every database here, so that blind indexes and
    source digests compare across databases."""
    folder = tmp_path_factory.mktemp("faults") / "data"
    folder.mkdir()
    Keyring.load_or_create(folder / "keyring.json", "aes-256-gcm+hmac-sha256")
    return folder


# --------------------------------------------------------------------------- the command


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def result(self) -> dict[str, Any]:
        [parsed] = json.loads(self.out)
        assert isinstance(parsed, dict)
        return parsed


def _env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_DATABASE_URL=url,
        RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
    )
    return env


def _argv(path: Path) -> list[str]:
    return [str(SCRIPT), *INGEST, str(path), "--json", "--report-dir", str(path.parent / "reports")]


async def ingest(data_dir: Path, url: str, path: Path) -> Ran:
    """``relief-gateway ingest … --json`` as a subprocess, to its end."""
    done = await asyncio.to_thread(
        subprocess.run,
        _argv(path),
        env=_env(data_dir, url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    ran = Ran(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in ran.out + ran.err, ran.err
    return ran


async def ingest_in_process(
    data_dir: Path,
    url: str,
    path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    as_json: bool = True,
) -> Ran:
    """The same command through ``gateway.cli.main`` (in a thread: it runs its own loop)."""
    argv = [*_argv(path)[1:], "--data-dir", str(data_dir), "--database-url", url]
    if not as_json:
        argv.remove("--json")
    capsys.readouterr()
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    ran = Ran(code, captured.out, captured.err)
    assert "Traceback" not in ran.out + ran.err, ran.err
    return ran


def _refused_clearly(ran: Ran, stage: str, cause: str) -> None:
    """Exit 2, one Chinese line on stderr naming the cause, nothing on stdout, no SQL."""
    assert ran.code == 2, (ran.code, ran.out, ran.err)
    assert ran.out == ""
    [line] = ran.err.strip().splitlines()
    assert line.startswith(f"错误: 导入{stage}（{cause} "), line
    assert "重新执行同一命令" in line, line
    for leak in ("INSERT", "UPDATE", "SELECT", "ingest_batch", "relief_status"):
        assert leak not in line, line


# --------------------------------------------------------------------------- what is stored


@dataclass
class Stored:
    """What a database holds after ingest, with every generated id replaced by what it stands
    for (a person by the blind index of their ID number, a household by its source number), so
    two databases loaded from the same file compare equal. Sealed values are compared through
    their keyed hashes: the blind indexes of name and phone, and the source digest, which
    covers everything the department said about the person (address included)."""

    people: Counter[tuple[Any, ...]]
    households: Counter[tuple[Any, ...]]
    statuses: Counter[tuple[Any, ...]]
    sources: Counter[tuple[Any, ...]]
    anomalies: Counter[tuple[Any, ...]]
    tasks: dict[str, set[tuple[Any, ...]]]

    def assert_same_records(self, other: Stored) -> None:
        assert self.people == other.people
        assert self.households == other.households
        assert self.statuses == other.statuses
        assert self.sources == other.sources
        assert self.anomalies == other.anomalies


async def stored(url: str) -> Stored:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            households = {
                row.id: (row.source_department, row.source_number, row.region_code)
                for row in await connection.execute(select(Household))
            }
            people: Counter[tuple[Any, ...]] = Counter()
            key: dict[uuid.UUID, str] = {}
            for row in await connection.execute(select(Person)):
                key[row.id] = row.id_number_bidx.hex()
                people[
                    (
                        key[row.id],
                        row.name_bidx.hex(),
                        row.phone_bidx.hex() if row.phone_bidx else None,
                        row.gender,
                        str(row.birth_date),
                        row.region_code,
                        row.relation,
                        households.get(row.household_id) if row.household_id else None,
                        row.deceased_on,
                    )
                ] += 1
            statuses = Counter(
                (
                    key[row.person_id],
                    row.category,
                    row.source_department,
                    str(row.recognized_on),
                    str(row.valid_from),
                    str(row.valid_to),
                    str(row.listed_on),
                    str(row.exit_listed_on),
                )
                for row in await connection.execute(select(ReliefStatus))
            )
            sources = Counter(
                (key[row.person_id], row.department, row.digest.hex())
                for row in await connection.execute(select(PersonSource))
            )
            anomalies = Counter(
                (key[row.person_id], row.department, row.county_code, row.kind, row.status)
                for row in await connection.execute(select(Anomaly))
            )
            tasks: dict[str, set[tuple[Any, ...]]] = {}
            for task in await connection.execute(select(Task)):
                tasks.setdefault(key[task.person_id], set()).add(
                    (task.kind, task.department, task.county_code, task.category, task.status)
                )
    finally:
        await engine.dispose()
    return Stored(people, Counter(households.values()), statuses, sources, anomalies, tasks)


async def batches(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(IngestBatch).order_by(IngestBatch.received_at)
            return list(await connection.execute(query))
    finally:
        await engine.dispose()


async def tasks_opened_for(url: str, batch_id: uuid.UUID) -> int:
    """Verification tasks whose source is a batch's rows."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(func.count()).select_from(Task).where(Task.batch_id == batch_id)
            return int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def lines_stored_by(url: str, batch_id: uuid.UUID) -> list[int]:
    """The file lines whose relief statuses a batch stored."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(ReliefStatus.source_line).where(ReliefStatus.batch_id == batch_id)
            return sorted(line for (line,) in await connection.execute(query) if line is not None)
    finally:
        await engine.dispose()


def assert_tasks_cover(resumed: Stored, clean: Stored) -> None:
    """Every person the clean run pushed to medical insurance is pushed after the re-run, for
    the same identity (a person whose held identities the two runs split between them may
    get one task per run, as two files listing them would)."""
    assert resumed.tasks.keys() == clean.tasks.keys()
    for person, tasks in clean.tasks.items():
        assert tasks <= resumed.tasks[person], person


async def migrated(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    """A private cluster: the read-only switch below is cluster-wide."""
    if os.environ.get("RELIEF_TEST_POSTGRES_URL") or find_postgres_bindir() is None:
        if postgres_required():
            pytest.fail("this test needs local PostgreSQL server binaries", pytrace=False)
        pytest.skip("needs local PostgreSQL server binaries for a private cluster")
    with ThrowawayCluster() as pg:
        yield pg


@dataclass
class Clean:
    result: dict[str, Any]
    stored: Stored


@pytest.fixture(scope="module")
async def clean_pg(cluster: ThrowawayCluster, files: tuple[Path, Path], data_dir: Path) -> Clean:
    """The roster loaded once, uninterrupted, into its own database: what every fault must
    end in."""
    url = cluster.create_database("clean")
    await migrated(url)
    ran = await ingest(data_dir, url, files[0])
    assert ran.code == 0, ran.err
    result = ran.result()
    assert result["status"] == "COMPLETED"
    assert result["counts"]["rows_total"] == ROSTER_ROWS
    assert result["counts"]["rows_rejected"] == 0
    assert result["resumedBatches"] == []
    clean = await stored(url)
    assert clean.tasks, "the roster opens verification tasks"
    assert sum(clean.statuses.values()) > 2 * CHUNK_ROWS
    return Clean(result, clean)


async def _when_chunks_committed(url: str, process: subprocess.Popen[str], chunks: int) -> Any:
    """Poll the batch row until ``chunks`` chunks are committed; the batch row then."""
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            async with engine.connect() as connection:
                batch = (await connection.execute(select(IngestBatch))).one_or_none()
            if batch is not None and batch.rows_total >= chunks * CHUNK_ROWS:
                return batch
            await asyncio.sleep(0.02)
        raise AssertionError("the ingest did not commit its first chunks in time")
    finally:
        await engine.dispose()


def _start(data_dir: Path, url: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(path),
        env=_env(data_dir, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_ingest_killed_mid_file_and_rerun_loses_and_doubles_nothing(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
) -> None:
    roster = files[0]
    url = cluster.create_database("killed")
    await migrated(url)

    process = _start(data_dir, url, roster)
    try:
        await _when_chunks_committed(url, process, 1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    [killed] = await batches(url)
    # Killed part-way: whole chunks only, nothing of the chunk being written.
    assert killed.status == "RUNNING"
    assert killed.finished_at is None
    assert 0 < killed.rows_total < ROSTER_ROWS, "SIGKILL came after the file was done"
    assert killed.rows_total % CHUNK_ROWS == 0
    lines = await lines_stored_by(url, killed.id)
    assert lines
    assert max(lines) <= killed.rows_total + 1  # line 1 is the header
    # Its committed rows are visible, its tasks not yet: it never completed.
    partial = await stored(url)
    assert 0 < sum(partial.statuses.values()) < sum(clean_pg.stored.statuses.values())
    assert partial.tasks == {}

    rerun = await ingest(data_dir, url, roster)

    assert rerun.code == 0, rerun.err
    result = rerun.result()
    # Not a duplicate: the content hash only matches COMPLETED batches.
    assert result["status"] == "COMPLETED"
    assert result["duplicateOf"] is None
    assert result["resumedBatches"] == [str(killed.id)]
    counts, clean_counts = result["counts"], clean_pg.result["counts"]
    assert counts["rows_total"] == ROSTER_ROWS
    # What the killed run stored is unchanged for the re-run; together they did the clean run.
    for name in ("added", "exited", "identity_changed", "updated", "anomalies_opened"):
        assert counts[name] + getattr(killed, name) == clean_counts[name], name
    assert counts["rows_unchanged"] >= killed.rows_accepted - killed.rows_unchanged

    after = {batch.id: batch for batch in await batches(url)}
    assert after[killed.id].status == "FAILED"
    assert after[killed.id].error == f"进程中断；已由批次 {result['batchId']} 重新导入完成"
    assert after[uuid.UUID(result["batchId"])].status == "COMPLETED"

    resumed = await stored(url)
    resumed.assert_same_records(clean_pg.stored)
    # Rule 3: the rows the killed run committed reach medical insurance too, opened from the
    # killed batch (the re-run saw those rows as unchanged).
    assert_tasks_cover(resumed, clean_pg.stored)
    assert await tasks_opened_for(url, killed.id) > 0


async def test_postgres_turned_read_only_mid_file(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
) -> None:
    roster = files[0]
    url = cluster.create_database("read_only")
    await migrated(url)

    process = _start(data_dir, url, roster)
    try:
        await _when_chunks_committed(url, process, 1)
        cluster._exec_sql("ALTER SYSTEM SET default_transaction_read_only = on")
        cluster._exec_sql("SELECT pg_reload_conf()")
        out, err = await asyncio.to_thread(process.communicate, timeout=120)
        stuck = await batches(url)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        cluster._exec_sql("ALTER SYSTEM RESET default_transaction_read_only")
        cluster._exec_sql("SELECT pg_reload_conf()")

    ran = Ran(process.returncode, out, err)
    assert "Traceback" not in err, err
    _refused_clearly(ran, "中断", "数据库为只读")
    [batch] = stuck
    saved = f"已提交的 {batch.rows_total} 行已保存，其余未写入"
    assert saved in err
    # Whole chunks only. Marking the batch FAILED was refused too: it stays RUNNING, and the
    # run that completes the file closes it.
    assert 0 < batch.rows_total < ROSTER_ROWS
    assert batch.rows_total % CHUNK_ROWS == 0
    assert batch.status == "RUNNING"
    lines = await lines_stored_by(url, batch.id)
    assert max(lines) <= batch.rows_total + 1

    rerun = await ingest(data_dir, url, roster)
    assert rerun.code == 0, rerun.err
    result = rerun.result()
    assert (result["status"], result["resumedBatches"]) == ("COMPLETED", [str(batch.id)])
    closed = {b.id: b for b in await batches(url)}[batch.id]
    assert closed.status == "FAILED"
    assert closed.error.endswith(f"已由批次 {result['batchId']} 重新导入完成")
    resumed = await stored(url)
    resumed.assert_same_records(clean_pg.stored)
    assert_tasks_cover(resumed, clean_pg.stored)


# --------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="module")
async def clean_sqlite(
    files: tuple[Path, Path],
    data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Clean:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('clean') / 'relief.db'}"
    await migrated(url)
    ran = await ingest(data_dir, url, files[1])
    assert ran.code == 0, ran.err
    result = ran.result()
    assert result["status"] == "COMPLETED"
    assert result["counts"]["rows_total"] == SMALL_ROWS
    return Clean(result, await stored(url))


async def _sqlite_fresh(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "relief.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrated(url)
    return path, url


async def _nothing_written(url: str) -> None:
    assert await batches(url) == []
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            for table in (Person, Household, ReliefStatus, PersonSource, Task):
                count = select(func.count()).select_from(table)
                assert (await connection.execute(count)).scalar() == 0, table
    finally:
        await engine.dispose()


async def test_sqlite_read_only_refuses_clearly_and_a_rerun_completes(
    clean_sqlite: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    small = files[1]
    path, url = await _sqlite_fresh(tmp_path)

    refused = await ingest(data_dir, f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true", small)

    _refused_clearly(refused, "未开始", "数据库为只读")
    assert "未写入任何数据" in refused.err
    await _nothing_written(url)

    rerun = await ingest(data_dir, url, small)
    assert rerun.code == 0, rerun.err
    assert rerun.result()["status"] == "COMPLETED"
    after = await stored(url)
    after.assert_same_records(clean_sqlite.stored)
    assert after.tasks == clean_sqlite.stored.tasks


async def test_sqlite_disk_full_keeps_nothing_half_written(
    clean_sqlite: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    small = files[1]
    _, url = await _sqlite_fresh(tmp_path)
    probe = make_engine(url)
    async with probe.connect() as connection:
        pages = int((await connection.execute(text("PRAGMA page_count"))).scalar() or 0)
    await probe.dispose()

    import gateway.runtime.parts

    def full_disk_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
        engine = make_engine(database_url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _no_room(dbapi_connection: Any, _record: Any) -> None:
            # The file may not grow past a few pages: the batch row fits, a chunk does not.
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {pages + 2}")
            cursor.close()

        return engine

    monkeypatch.setattr(gateway.runtime.parts, "make_engine", full_disk_engine)
    refused = await ingest_in_process(data_dir, url, small, capsys)
    monkeypatch.undo()

    _refused_clearly(refused, "中断", "数据库磁盘空间不足")
    assert "已提交的 0 行已保存" in refused.err
    [batch] = await batches(url)
    assert (batch.status, batch.rows_total, batch.error) == ("FAILED", 0, "OperationalError")
    assert await lines_stored_by(url, batch.id) == []  # the chunk was rolled back whole
    partial = await stored(url)
    assert sum(partial.people.values()) == sum(partial.statuses.values()) == 0

    rerun = await ingest_in_process(data_dir, url, small, capsys, as_json=False)
    assert rerun.code == 0, rerun.err
    # The clerk reads that this run finished what the refused one began.
    assert f"  接续此前未完成的导入 (批次 {batch.id}): 其已保存的行计为无变化" in rerun.out
    [_, completed] = await batches(url)
    assert completed.status == "COMPLETED"
    assert f"→ 批次 {completed.id}" in rerun.out
    closed = {b.id: b for b in await batches(url)}[batch.id]
    assert closed.status == "FAILED"
    assert closed.error == f"OperationalError；已由批次 {completed.id} 重新导入完成"
    after = await stored(url)
    after.assert_same_records(clean_sqlite.stored)
    assert after.tasks == clean_sqlite.stored.tasks


# --------------------------------------------------------------------------- the words


class _Orig(Exception):
    def __init__(self, sqlstate: str | None = None, sqlite_errorname: str | None = None) -> None:
        super().__init__("detail that must not be shown: INSERT INTO person …")
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize(
    ("orig", "words"),
    [
        (_Orig(sqlstate="25006"), "数据库为只读"),
        (_Orig(sqlstate="53100"), "数据库磁盘空间不足"),
        (_Orig(sqlstate="08006"), "数据库连接中断"),
        (_Orig(sqlstate="57P01"), "数据库连接中断"),
        (_Orig(sqlite_errorname="SQLITE_READONLY"), "数据库为只读"),
        (_Orig(sqlite_errorname="SQLITE_FULL"), "数据库磁盘空间不足"),
        (_Orig(sqlstate="23505"), "数据库错误"),
    ],
)
def test_database_problems_are_named_for_the_operator(orig: _Orig, words: str) -> None:
    cause, advice = database_problem(OperationalError("INSERT INTO person …", {}, orig))
    assert cause == f"{words} OperationalError"
    assert "INSERT" not in cause + advice
    assert "person" not in cause + advice
