"""Ingest survives its faults (issue 6 §4, issue 13 §7), each shown against a clean run.

Every fault ends the same way: the same command run again completes the file, and the database
then equals one a clean, uninterrupted run of that file made in a fresh database — compared
table by table and row for row, people, households, relief statuses, provenance, anomalies,
batches and their counts (what the sharing statistics add up, rule 11) and the verification
tasks medical insurance gets (``tests.ingest_support.dump_tables``), with the rejection report,
the counts the clerk reads and the sharing statistics themselves.

    killed       ``relief-gateway ingest`` SIGKILLed in the middle of a chunk: on PostgreSQL
                 while its writes wait, uncommitted, on a lock this test holds on the batch row;
                 on SQLite while it waits for the write lock. Whole chunks remain, the batch
                 RUNNING and no task; the re-run says it continues that batch from where it
                 stopped.
    stopped      the PostgreSQL server stopped (fast: backends told; immediate: connections
                 cut) while a chunk is being written, then started again: exit 2 with one
                 Chinese line on stderr and nothing else (no traceback, no "Future exception
                 was never retrieved", no asyncio socket warnings).
    refused COPY the server's FATAL arriving between two statements of a chunk, where asyncpg
                 leaves the waiter of the next ``COPY`` unretrieved (``tests.ingest_process``):
                 the same one line.
    read-only    PostgreSQL turned read-only part-way through a file (``default_transaction_
                 read_only`` set and reloaded, as a failover to a standby or an operator's switch
                 does), and SQLite opened read-only (``?mode=ro``: a read-only mount or file):
                 exit 2 with one Chinese line naming the cause, only whole chunks stored.
    disk full    SQLite whose file cannot grow (``PRAGMA max_page_count``: SQLite answers
                 SQLITE_FULL, exactly what a full disk gives): the same.
    unreachable  no database at the address: one line, before anything else is tried.

A full disk on PostgreSQL would need a tablespace on a tiny filesystem (a mount, so root and a
loop device or tmpfs); the read-only case drives the same path in the pipeline (a write refused
mid-file, SQLSTATE 25006 instead of 53100) and the message for 53100 is covered by
``database_problem``'s table here.

The file is a Shandong civil affairs roster of 6,000 rows from the synthetic population
(``adapters.samples``), loaded in chunks of 500 rows (``tests.ingest_process``): at every chunk
boundary sits a person with two held identities (one task, for the higher), a name differs from
one chunk to the next (one anomaly), and rows are rejected before and after any interruption.
PostgreSQL runs in a private throw-away cluster: the read-only switch and the stops are
cluster-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.failures import DATABASE_ERRORS, database_problem
from adapters.samples import IDENTITY_HEADERS, identity_rows, write_csv
from gateway.cli import main
from gateway.crypto import FieldCipher, Keyring
from gateway.domain import clock
from gateway.domain.synthetic import generate_population
from gateway.loop.statistics import SharingStatistics
from gateway.storage.engine import make_engine
from gateway.storage.migrate import upgrade_to_head
from gateway.storage.models import IngestBatch, Person, ReliefStatus, Task
from gateway.storage.vault import PersonVault
from tests._pg_fixture import postgres_required
from tests.ingest_support import (
    TableDump,
    assert_same_tables,
    dump_tables,
    read_report,
    sharing_statistics,
)
from tests.pgcluster import ThrowawayCluster, find_postgres_bindir

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
CHUNK = 500
ROSTER_ROWS = 12 * CHUNK
SMALL_ROWS = 3 * CHUNK
INGEST = ("ingest", "--source", "civil_affairs", "--feed", "identities")

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- the files


def straddling_roster(rows: list[dict[str, str]], total: int) -> list[dict[str, str]]:
    """``total`` rows of a roster in which, at every chunk boundary, the rows of one person
    with two held identities sit one on each side; one person's name differs between the two
    sides of a boundary (a NAME_MISMATCH to send back); and three rows are refused, two before
    any interruption this module makes and one after."""
    people = [list(g) for _, g in itertools.groupby(rows, key=lambda r: r["身份证号码"])]
    twice = [g for g in people if len(g) == 2 and not g[0]["退出日期"] and not g[1]["退出日期"]]
    once = iter(g[0] for g in people if len(g) == 1)
    boundaries = iter(twice)
    roster: list[dict[str, str]] = []
    while len(roster) < total:
        if (len(roster) + 1) % CHUNK == 0 and len(roster) + 2 <= total:
            roster += next(boundaries)  # rows CHUNK·k and CHUNK·k + 1 (1-based)
        else:
            roster.append(next(once))
    # The first row of chunk 5 is the second identity of the person ending chunk 4, under
    # another name.
    renamed = roster[4 * CHUNK]
    roster[4 * CHUNK] = {**renamed, "姓名": renamed["姓名"][0] + "某某"}
    for index in (10, CHUNK + 10, total - 10):  # a wrong check digit
        number = roster[index]["身份证号码"]
        wrong = "1" if number.endswith("0") else "0"
        roster[index] = {**roster[index], "身份证号码": number[:-1] + wrong}
    return roster


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The roster (6,000 rows) and its first 1,500 rows, as a province's civil affairs exports
    them."""
    folder = tmp_path_factory.mktemp("rosters")
    population = generate_population(
        40_000, seed=20261206, today=clock.today(), provinces=["shandong"]
    )
    rows = straddling_roster(list(identity_rows(population)), ROSTER_ROWS)
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


@pytest.fixture(scope="module")
def vault(data_dir: Path) -> PersonVault:
    keyring = Keyring.load_or_create(data_dir / "keyring.json", "aes-256-gcm+hmac-sha256")
    return PersonVault(FieldCipher(keyring))


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


def _command(path: Path) -> list[str]:
    return [*INGEST, str(path), "--json", "--report-dir", str(path.parent / "reports")]


def _argv(path: Path, *faults: str) -> list[str]:
    """``relief-gateway ingest`` in chunks of ``CHUNK`` rows (``tests.ingest_process``)."""
    process = [str(PYTHON), "-m", "tests.ingest_process", "--chunk-rows", str(CHUNK), *faults]
    return [*process, "--", *_command(path)]


def _start(data_dir: Path, url: str, path: Path, *faults: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(path, *faults),
        cwd=ROOT,
        env=_env(data_dir, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def ingest(data_dir: Path, url: str, path: Path, *faults: str) -> Ran:
    """The command as a process of its own, to its end."""
    process = _start(data_dir, url, path, *faults)
    out, err = await asyncio.to_thread(process.communicate, timeout=300)
    ran = Ran(process.returncode, out, err)
    assert "Traceback" not in ran.out + ran.err, ran.err
    return ran


async def ingest_in_process(
    data_dir: Path,
    url: str,
    path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    as_json: bool = True,
) -> Ran:
    """The same command through ``gateway.cli.main`` (in a thread: it runs its own loop)."""
    import adapters.pipeline

    argv = [*_command(path), "--data-dir", str(data_dir), "--database-url", url]
    if not as_json:
        argv.remove("--json")
    monkeypatch.setattr(adapters.pipeline, "CHUNK_ROWS", CHUNK)
    capsys.readouterr()
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    ran = Ran(code, captured.out, captured.err)
    assert "Traceback" not in ran.out + ran.err, ran.err
    return ran


def _refused_clearly(ran: Ran, stage: str, cause: str) -> str:
    """Exit 2, one Chinese line on stderr naming the cause, nothing on stdout, no SQL; the
    line."""
    assert ran.code == 2, (ran.code, ran.out, ran.err)
    assert ran.out == ""
    [line] = ran.err.splitlines()
    assert line.startswith(f"错误: 导入{stage}（{cause} "), line
    assert "重新执行同一命令" in line, line
    for leak in ("INSERT", "UPDATE", "SELECT", "ingest_batch", "relief_status"):
        assert leak not in line, line
    return line


def _interrupted_clearly(ran: Ran, saved: int) -> None:
    """What the clerk reads when the database fails mid-file: what happened, that nothing
    half-written remains, that the same command continues. One line, nothing else."""
    line = _refused_clearly(ran, "中断", "数据库连接中断")
    assert f"已提交的 {saved} 行已保存，其余未写入，没有写了一半的数据" in line, line
    assert "恢复后重新执行同一命令即从中断处继续" in line, line


# --------------------------------------------------------------------------- what is stored


@dataclass
class Loaded:
    """A database after ingest, as a reader compares it."""

    tables: TableDump
    sharing: SharingStatistics


async def loaded(url: str, vault: PersonVault) -> Loaded:
    engine = make_engine(url)
    try:
        return Loaded(await dump_tables(engine, vault), await sharing_statistics(engine, "37"))
    finally:
        await engine.dispose()


async def batches(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(IngestBatch).order_by(IngestBatch.received_at)
            return list(await connection.execute(query))
    finally:
        await engine.dispose()


async def counted(url: str, model: Any) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(func.count()).select_from(model)
            return int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def lines_stored_by(url: str, batch_id: Any) -> list[int]:
    """The file lines whose relief statuses a batch stored."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = select(ReliefStatus.source_line).where(ReliefStatus.batch_id == batch_id)
            return sorted(line for (line,) in await connection.execute(query) if line is not None)
    finally:
        await engine.dispose()


async def migrated(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@dataclass
class Clean:
    result: dict[str, Any]
    report: list[tuple[str, ...]]
    loaded: Loaded


async def clean_load(
    url: str, data_dir: Path, path: Path, vault: PersonVault, *, rejected: int, anomalies: int
) -> Clean:
    """The file loaded once, uninterrupted, into a fresh database: what every fault must end
    in."""
    await migrated(url)
    ran = await ingest(data_dir, url, path)
    assert ran.code == 0, ran.err
    result = ran.result()
    assert (result["status"], result["resumedBatches"]) == ("COMPLETED", [])
    assert result["counts"]["rowsRejected"] == rejected
    clean = Clean(result, _report(result), await loaded(url, vault))
    tables = clean.loaded.tables
    assert sum(tables["task"].values()) > 500, "the roster opens verification tasks"
    assert sum(tables["anomaly"].values()) == anomalies
    assert [row.batches for row in clean.loaded.sharing.provided] == [1]
    return clean


def _report(result: dict[str, Any]) -> list[tuple[str, ...]]:
    path = result["rejectionReport"]
    return read_report(Path(path)) if path else []


async def assert_resumed_equals_clean(
    url: str, data_dir: Path, path: Path, vault: PersonVault, clean: Clean, stopped: Any
) -> None:
    """The same command again: it continues the stopped batch and ends with what the clean
    load left, table by table."""
    rerun = await ingest(data_dir, url, path)

    assert rerun.code == 0, rerun.err
    result = rerun.result()
    # Not a duplicate (only a COMPLETED batch is one), and not a second batch: the stopped one.
    assert (result["status"], result["duplicateOf"]) == ("COMPLETED", None)
    assert result["batchId"] == str(stopped.id)
    assert result["resumedBatches"] == [str(stopped.id)]
    assert result["resumedRows"] == stopped.rows_total
    assert result["counts"] == clean.result["counts"]  # the whole file's
    assert result["region"] == clean.result["region"]
    assert _report(result) == clean.report
    after = await loaded(url, vault)
    assert_same_tables(after.tables, clean.loaded.tables)
    assert after.sharing == clean.loaded.sharing


async def assert_stopped_mid_file(url: str, status: str) -> Any:
    """Whole chunks only, the batch not complete, no task yet: the batch row."""
    [stopped] = await batches(url)
    assert stopped.status == status
    assert 0 < stopped.rows_total < ROSTER_ROWS, "the fault came after the file was done"
    assert stopped.rows_total % CHUNK == 0
    lines = await lines_stored_by(url, stopped.id)
    assert lines
    assert max(lines) <= stopped.rows_total + 1  # line 1 is the header
    assert await counted(url, Task) == 0  # tasks open when the file is complete
    return stopped


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    """A private cluster: the read-only switch and the stops below are cluster-wide. Commits
    are synchronous, as in production: an immediate stop must not lose a chunk the ingest was
    told is committed (the throw-away default trades that for speed)."""
    if os.environ.get("RELIEF_TEST_POSTGRES_URL") or find_postgres_bindir() is None:
        if postgres_required():
            pytest.fail("this test needs local PostgreSQL server binaries", pytrace=False)
        pytest.skip("needs local PostgreSQL server binaries for a private cluster")
    with ThrowawayCluster(settings={"synchronous_commit": "on"}) as pg:
        yield pg


@pytest.fixture(scope="module")
async def clean_pg(
    cluster: ThrowawayCluster, files: tuple[Path, Path], data_dir: Path, vault: PersonVault
) -> Clean:
    url = cluster.create_database("clean")
    return await clean_load(url, data_dir, files[0], vault, rejected=3, anomalies=1)


async def _when_chunks_committed(url: str, process: subprocess.Popen[str], chunks: int) -> None:
    """Poll the batch row until ``chunks`` chunks are committed."""
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            async with engine.connect() as connection:
                batch = (await connection.execute(select(IngestBatch))).one_or_none()
            if batch is not None and batch.rows_total >= chunks * CHUNK:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the ingest did not commit its first chunks in time")
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _mid_chunk(url: str, process: subprocess.Popen[str]) -> AsyncIterator[None]:
    """Once two chunks are committed, the ingest stopped in the middle of the next one: its
    writes done, uncommitted, it waits for the lock this test holds on the batch row (the
    chunk's counts go there) for as long as the block lasts. Errors of this test's own
    connections on the way out (the server stopped under them) are not the test's subject."""
    await _when_chunks_committed(url, process, 2)
    engine = make_engine(url)
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_exit(_quietly)
            holder = await stack.enter_async_context(engine.connect())
            await holder.execute(select(IngestBatch.id).with_for_update())
            probe = await stack.enter_async_context(engine.connect())
            deadline = time.monotonic() + 60
            while not (await probe.execute(waiting)).scalar():
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the ingest never reached the lock"
                await asyncio.sleep(0.01)
            yield
    finally:
        with contextlib.suppress(*DATABASE_ERRORS):
            await engine.dispose()


async def _quietly(exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


async def test_postgres_ingest_killed_mid_chunk_then_resumed_equals_a_clean_load(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
) -> None:
    roster = files[0]
    url = cluster.create_database("killed")
    await migrated(url)

    process = _start(data_dir, url, roster)
    try:
        async with _mid_chunk(url, process):
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -signal.SIGKILL

    # Killed with a chunk written but not committed: PostgreSQL rolled it back.
    stopped = await assert_stopped_mid_file(url, "RUNNING")
    assert stopped.finished_at is None

    await assert_resumed_equals_clean(url, data_dir, roster, vault, clean_pg, stopped)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_stopped_mid_chunk_says_one_line_and_a_rerun_equals_a_clean_load(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
    mode: str,
) -> None:
    roster = files[0]
    url = cluster.create_database(f"stopped_{mode}")
    await migrated(url)

    process = _start(data_dir, url, roster)
    try:
        async with _mid_chunk(url, process):
            cluster.stop(mode)  # the lock goes with the server
        out, err = await asyncio.to_thread(process.communicate, timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if not cluster.running:
            cluster.start()

    stopped = await assert_stopped_mid_file(url, "RUNNING")  # its end could not be written
    _interrupted_clearly(Ran(process.returncode, out, err), stopped.rows_total)

    await assert_resumed_equals_clean(url, data_dir, roster, vault, clean_pg, stopped)


async def test_a_copy_refused_as_the_server_hangs_up_says_one_line(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
) -> None:
    """The FATAL of a server going away arrives between two statements of a chunk: asyncpg
    refuses the next ``COPY`` and leaves its waiter unretrieved (``tests.ingest_process``).
    The clerk reads the one line, not asyncio's report of that waiter."""
    roster = files[0]
    url = cluster.create_database("refused_copy")
    await migrated(url)

    ran = await ingest(data_dir, url, roster, "--refused-copy", "10")  # chunk 3 or so

    assert "never retrieved" not in ran.err
    stopped = await assert_stopped_mid_file(url, "FAILED")  # the server was still up
    assert stopped.error == "InternalClientError"
    _interrupted_clearly(ran, stopped.rows_total)

    await assert_resumed_equals_clean(url, data_dir, roster, vault, clean_pg, stopped)


async def test_postgres_turned_read_only_mid_file(
    cluster: ThrowawayCluster,
    clean_pg: Clean,
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
) -> None:
    roster = files[0]
    url = cluster.create_database("read_only")
    await migrated(url)

    process = _start(data_dir, url, roster)
    try:
        await _when_chunks_committed(url, process, 2)
        cluster._exec_sql("ALTER SYSTEM SET default_transaction_read_only = on")
        cluster._exec_sql("SELECT pg_reload_conf()")
        out, err = await asyncio.to_thread(process.communicate, timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        cluster._exec_sql("ALTER SYSTEM RESET default_transaction_read_only")
        cluster._exec_sql("SELECT pg_reload_conf()")

    ran = Ran(process.returncode, out, err)
    assert "Traceback" not in err, err
    # Marking the batch FAILED was refused too: it stays RUNNING, and the re-run continues it.
    stopped = await assert_stopped_mid_file(url, "RUNNING")
    line = _refused_clearly(ran, "中断", "数据库为只读")
    assert f"已提交的 {stopped.rows_total} 行已保存，其余未写入" in line

    await assert_resumed_equals_clean(url, data_dir, roster, vault, clean_pg, stopped)


async def test_postgres_unreachable_is_one_line_before_anything_is_tried(
    files: tuple[Path, Path], data_dir: Path
) -> None:
    ran = await ingest(data_dir, "postgresql+asyncpg://postgres@127.0.0.1:1/relief", files[1])

    line = _refused_clearly(ran, "未开始", "数据库连接中断")
    assert "未写入任何数据" in line
    assert "请检查数据库是否运行、RELIEF_DATABASE_URL 是否可达" in line


# --------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="module")
async def clean_sqlite(
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Clean]:
    """Both files, each loaded once into a fresh database."""
    folder = tmp_path_factory.mktemp("clean")
    return {
        path.name: await clean_load(
            f"sqlite+aiosqlite:///{folder / f'{n}.db'}",
            data_dir,
            path,
            vault,
            rejected=rejected,
            anomalies=anomalies,
        )
        # the sample stops before the renamed row and the last rejected one
        for n, (path, rejected, anomalies) in enumerate(zip(files, (3, 2), (1, 0), strict=True))
    }


async def _sqlite_fresh(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "relief.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrated(url)
    return path, url


async def test_sqlite_ingest_killed_mid_file_then_resumed_equals_a_clean_load(
    clean_sqlite: dict[str, Clean],
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
    tmp_path: Path,
) -> None:
    roster = files[0]
    path, url = await _sqlite_fresh(tmp_path)

    process = _start(data_dir, url, roster)
    try:
        await _when_chunks_committed(url, process, 2)
        # Hold the write lock: the ingest waits at its next write (for up to 30 s), then dies.
        blocker = sqlite3.connect(path, timeout=30)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.communicate, timeout=30)
        finally:
            blocker.rollback()
            blocker.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -signal.SIGKILL

    stopped = await assert_stopped_mid_file(url, "RUNNING")
    await assert_resumed_equals_clean(
        url, data_dir, roster, vault, clean_sqlite[roster.name], stopped
    )


async def test_sqlite_read_only_refuses_clearly_and_a_rerun_completes(
    clean_sqlite: dict[str, Clean],
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
    tmp_path: Path,
) -> None:
    small = files[1]
    path, url = await _sqlite_fresh(tmp_path)

    refused = await ingest(data_dir, f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true", small)

    line = _refused_clearly(refused, "未开始", "数据库为只读")
    assert "未写入任何数据" in line
    assert await batches(url) == []
    assert await counted(url, Person) == 0

    rerun = await ingest(data_dir, url, small)
    assert rerun.code == 0, rerun.err
    assert rerun.result()["status"] == "COMPLETED"
    assert_same_tables((await loaded(url, vault)).tables, clean_sqlite[small.name].loaded.tables)


async def test_sqlite_disk_full_keeps_nothing_half_written(
    clean_sqlite: dict[str, Clean],
    files: tuple[Path, Path],
    data_dir: Path,
    vault: PersonVault,
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

    with monkeypatch.context() as patched:
        patched.setattr(gateway.runtime.parts, "make_engine", full_disk_engine)
        refused = await ingest_in_process(data_dir, url, small, capsys, monkeypatch)

    line = _refused_clearly(refused, "中断", "数据库磁盘空间不足")
    assert "已提交的 0 行已保存" in line
    [batch] = await batches(url)
    assert (batch.status, batch.rows_total, batch.error) == ("FAILED", 0, "OperationalError")
    assert await lines_stored_by(url, batch.id) == []  # the chunk was rolled back whole
    assert await counted(url, Person) == 0

    rerun = await ingest_in_process(data_dir, url, small, capsys, monkeypatch, as_json=False)
    assert rerun.code == 0, rerun.err
    # The clerk reads that this run continued the one that was refused, and the whole counts.
    assert f"{small.name} (CSV, utf-8 编码) → 批次 {batch.id}" in rerun.out
    assert f"  接续此前中断的导入: 此前未保存任何行, 本次导入全部 {SMALL_ROWS} 行" in rerun.out
    [completed] = await batches(url)
    assert (completed.id, completed.status, completed.error) == (batch.id, "COMPLETED", None)
    assert_same_tables((await loaded(url, vault)).tables, clean_sqlite[small.name].loaded.tables)


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
        (ConnectionRefusedError(111, "Connect call failed"), "数据库连接中断"),
        (OSError("Multiple exceptions: [Errno 111] …, [Errno 99] …"), "数据库连接中断"),
        (_Orig(sqlite_errorname="SQLITE_READONLY"), "数据库为只读"),
        (_Orig(sqlite_errorname="SQLITE_FULL"), "数据库磁盘空间不足"),
        (_Orig(sqlite_errorname="SQLITE_CANTOPEN"), "无法打开数据库文件"),
        (_Orig(sqlstate="42P01"), "数据库结构不是当前版本"),
        (_Orig(sqlstate="23505"), "数据库错误"),
    ],
)
def test_database_problems_are_named_for_the_operator(orig: Exception, words: str) -> None:
    cause, advice = database_problem(OperationalError("INSERT INTO person …", {}, orig))
    assert cause == f"{words} OperationalError"
    assert "INSERT" not in cause + advice
    assert "person" not in cause + advice


def test_what_a_failed_rollback_was_handling_is_read_too() -> None:
    """A rollback that fails while the error of a chunk is handled: that error (here a
    connection closed in the middle of a COPY) says what happened."""
    import asyncpg  # type: ignore[import-untyped]

    rollback = InterfaceError("ROLLBACK", {}, _Orig())
    assert database_problem(rollback)[0] == "数据库错误 InterfaceError"
    rollback.__context__ = asyncpg.ConnectionDoesNotExistError("connection was closed")
    assert database_problem(rollback)[0] == "数据库连接中断 InterfaceError"
