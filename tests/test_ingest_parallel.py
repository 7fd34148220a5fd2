"""Ingest with worker processes equals ingest without them (issue 17 item 5).

A large file's chunks are parsed, validated, indexed and sealed in worker processes while the
chunk before is written, and on PostgreSQL the next chunk is classified while this one is
written (``adapters.parallel``, ``Ingestor._overlapped``). None of that may change what is
stored or told: the same file loaded with and without workers leaves the same tables row for
row (``tests.ingest_support.dump_tables``), the same counts, the same rejection report; an
import stopped part-way (the database failed in a chunk) and run again equals a clean one; a
worker that dies loses nothing; and no more than ``workers + 1`` chunks are ever in flight.

The rosters are small and their chunks smaller, so that what the rules care about straddles
chunk boundaries (``tests/test_ingest_resume.py``'s roster), and files are sent to the workers
whatever their size (``parallel_min_bytes=0``). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import adapters.pipeline as pipeline
from adapters.parallel import CryptoMemo, PreparedVault, worker_keyring
from adapters.pipeline import Ingestor, IngestResult, RejectionReport
from adapters.samples import IDENTITY_HEADERS as SAMPLE_HEADERS
from adapters.samples import identity_rows
from gateway.domain.records import PersonRecord
from gateway.domain.settings import Province
from gateway.domain.synthetic import generate_population
from gateway.loop.config import load_rules
from gateway.loop.tasks import verification_opener
from gateway.storage.vault import PersonVault
from tests.ingest_support import (
    IDENTITY_HEADERS,
    TODAY,
    IngestDB,
    assert_same_tables,
    db_fixture,  # noqa: F401
    dump_tables,
    ingest_database_fixture,  # noqa: F401
    read_report,
    write_rows,
)
from tests.test_ingest_resume import interrupted, roster

RULES = load_rules(Province.SHANDONG)
CHUNK = 5
WORKERS = 2


def ingestor(db: IngestDB, *, workers: int, chunk_rows: int = CHUNK) -> Ingestor:
    return Ingestor(
        db.engine,
        db.vault,
        db.feeds[("civil_affairs", "identities")],
        submitted_by="test:civil_affairs",
        today=TODAY,
        chunk_rows=chunk_rows,
        on_completed=verification_opener(RULES, TODAY),
        workers=workers,
        parallel_min_bytes=0,
    )


async def load(
    db: IngestDB, path: Path, *, workers: int, chunk_rows: int = CHUNK, **kwargs: Any
) -> IngestResult:
    report = RejectionReport(path.with_name(f"{path.stem}.{workers}.拒收报告.csv"))
    try:
        loader = ingestor(db, workers=workers, chunk_rows=chunk_rows)
        result = await loader.ingest_file(path, report=report, **kwargs)
    finally:
        report.close()
    result.report_path = report.path
    return result


class Loaded:
    """What a load leaves: the tables, the counts and the report."""

    def __init__(self, result: IngestResult, tables: Any) -> None:
        assert result.report_path is not None
        self.result = result
        self.tables = tables
        self.report = read_report(result.report_path)

    def assert_same(self, other: Loaded) -> None:
        assert other.result.status == self.result.status == "COMPLETED"
        assert other.result.counts == self.result.counts
        assert other.result.rejections == self.result.rejections
        assert other.result.region == self.result.region
        assert other.report == self.report
        assert_same_tables(other.tables, self.tables)


async def loaded(db: IngestDB, path: Path, *, workers: int, **kwargs: Any) -> Loaded:
    result = await load(db, path, workers=workers, **kwargs)
    return Loaded(result, await dump_tables(db.engine, db.vault))


@pytest.fixture
def roster_file(db: IngestDB) -> Path:
    return write_rows(db.tmp / "民政月报.csv", roster(), headers=[*IDENTITY_HEADERS])


@pytest.fixture
def synthetic_file(db: IngestDB) -> Path:
    """600 rows of a synthetic roster (households, exits, two identities), as the bench's."""
    from adapters.samples import write_csv

    rows = itertools.islice(identity_rows(generate_population(6000, seed=7, today=TODAY)), 600)
    path = db.tmp / "民政名单.csv"
    write_csv(path, SAMPLE_HEADERS, rows, encoding="gbk")
    return path


# --------------------------------------------------------------------------- equal results


async def test_workers_store_what_one_process_stores(db: IngestDB, roster_file: Path) -> None:
    serial = await loaded(db, roster_file, workers=0)
    await db.database.empty()

    parallel = await loaded(db, roster_file, workers=WORKERS)

    serial.assert_same(parallel)
    assert parallel.result.counts.rows_rejected == 3


async def test_a_synthetic_roster_and_its_monthly_reload(
    db: IngestDB, synthetic_file: Path
) -> None:
    reload_file = synthetic_file.with_name("民政名单.utf8.csv")
    content = synthetic_file.read_text(encoding="gbk")  # noqa: ASYNC240 - a test's small file
    reload_file.write_text(content, encoding="utf-8-sig")
    serial = await loaded(db, synthetic_file, workers=0, chunk_rows=50)
    serial_reload = await loaded(db, reload_file, workers=0, chunk_rows=50)
    await db.database.empty()

    parallel = await loaded(db, synthetic_file, workers=WORKERS, chunk_rows=50)
    parallel_reload = await loaded(db, reload_file, workers=WORKERS, chunk_rows=50)

    serial.assert_same(parallel)
    serial_reload.assert_same(parallel_reload)
    assert parallel.result.counts.rows_total == 600
    assert parallel.result.counts.added > 300
    counts = parallel_reload.result.counts
    assert counts.rows_unchanged + counts.added == counts.rows_total == 600


async def test_the_next_chunk_is_classified_while_this_one_is_written(
    db: IngestDB, synthetic_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlapped = 0
    together = pipeline._together

    async def counted(*args: Any) -> None:
        nonlocal overlapped
        overlapped += 1
        await together(*args)

    monkeypatch.setattr(pipeline, "_together", counted)
    result = await load(db, synthetic_file, workers=WORKERS, chunk_rows=50)

    assert result.status == "COMPLETED"
    if db.backend == "postgres":
        # about 12 chunks, each ending with its person and household (adapters.parallel)
        assert overlapped >= 8
    else:
        assert overlapped == 0  # SQLite writes one chunk at a time


async def test_chunks_in_flight_are_bounded(db: IngestDB, synthetic_file: Path) -> None:
    loader = ingestor(db, workers=WORKERS, chunk_rows=20)  # 30 chunks
    result = await loader.ingest_file(synthetic_file)

    assert result.status == "COMPLETED"
    assert 1 < loader.peak_chunks_in_flight <= WORKERS + 1


async def test_a_small_file_stays_in_this_process(db: IngestDB, roster_file: Path) -> None:
    loader = Ingestor(
        db.engine,
        db.vault,
        db.feeds[("civil_affairs", "identities")],
        submitted_by="test:civil_affairs",
        today=TODAY,
        chunk_rows=CHUNK,
        workers=WORKERS,
    )
    result = await loader.ingest_file(roster_file)

    assert result.status == "COMPLETED"
    assert loader.peak_chunks_in_flight == 0  # below PARALLEL_MIN_BYTES: no worker started


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("chunk", [2, 5], ids=["early", "mid-file"])
async def test_a_database_failure_then_a_rerun_equals_a_clean_load(
    db: IngestDB, roster_file: Path, chunk: int
) -> None:
    clean = await loaded(db, roster_file, workers=0)
    await db.database.empty()

    with interrupted(chunk):
        await load(db, roster_file, workers=WORKERS)
    [stopped] = await db.batches()
    # whole chunks only; a chunk ends with its person and household (adapters.parallel)
    assert CHUNK * (chunk - 1) <= stopped.rows_total < len(roster())

    rerun = await loaded(db, roster_file, workers=WORKERS)

    assert rerun.result.batch_id == stopped.id
    assert rerun.result.resumed_rows == stopped.rows_total
    clean.assert_same(rerun)


async def test_a_worker_killed_mid_load_loses_nothing(db: IngestDB, synthetic_file: Path) -> None:
    clean = await loaded(db, synthetic_file, workers=0, chunk_rows=50)
    await db.database.empty()
    loader = ingestor(db, workers=WORKERS, chunk_rows=50)
    killed: list[int] = []

    def kill_a_worker(rows: int) -> None:
        preparer = loader._preparer
        if not killed and preparer is not None and preparer.pids:
            killed.append(preparer.pids[0])
            os.kill(killed[0], signal.SIGKILL)

    report = RejectionReport(synthetic_file.with_name("killed.拒收报告.csv"))
    try:
        result = await loader.ingest_file(synthetic_file, report=report, progress=kill_a_worker)
    finally:
        report.close()
    result.report_path = report.path

    assert killed
    clean.assert_same(Loaded(result, await dump_tables(db.engine, db.vault)))


# --------------------------------------------------------------------------- the vault


def test_the_prepared_vault_gives_the_columns_the_vault_gives(db: IngestDB) -> None:
    vault = PersonVault(db.vault.cipher)
    prepared = PreparedVault(db.vault.cipher)
    prepared.memo = CryptoMemo()
    record = PersonRecord(
        person_id=prepared.new_person_id("370102199001011234"),
        id_number="370102199001011234",
        name="测试甲",
        gender="MALE",
        birth_date=TODAY.replace(year=1990),
        region_code="370102001001",
        phone="13800000000",
        address="历下区某街道",
        household_id=None,
        relation="户主",
    )
    expected, actual = vault.person_values(record), prepared.person_values(record)

    assert list(actual) == list(expected)
    for column in ("id_number", "name", "phone", "address"):
        assert vault.open(_Row(record.person_id, actual), column) == getattr(record, column)
    for column, value in expected.items():
        if not column.endswith("_ct"):
            assert actual[column] == value, column


def test_workers_get_the_primary_data_key_and_the_index_key_only(db: IngestDB) -> None:
    keyring = worker_keyring(db.vault.cipher)

    assert keyring is not None
    assert list(keyring.data_keys) == [db.keyring.primary_id]
    assert keyring.index_key == db.keyring.index_key
    assert keyring.audit_keys == {}
    assert keyring.path is None
    assert keyring.kek is None


class _Row:
    def __init__(self, person_id: Any, values: dict[str, Any]) -> None:
        self.id = person_id
        self.__dict__.update(values)


@pytest.mark.parametrize(("configured", "workers"), [("0", 0), ("1", 1), (None, None)])
def test_workers_are_configurable(
    monkeypatch: pytest.MonkeyPatch, configured: str | None, workers: int | None
) -> None:
    """``RELIEF_INGEST_WORKERS`` (a setting, for ``relief-gateway ingest``); unset: one process
    (workers measured no faster on two cores: adapters.parallel.default_workers)."""
    from adapters.parallel import default_workers
    from gateway.domain.settings import load_settings

    if configured is None:
        monkeypatch.delenv("RELIEF_INGEST_WORKERS", raising=False)
    else:
        monkeypatch.setenv("RELIEF_INGEST_WORKERS", configured)
    assert load_settings().ingest_workers == workers
    assert default_workers() == 0
