"""A resumed import equals a clean one (issue 13 §7), tasks included.

An import stopped part-way — the database failed in a chunk, the process was killed and left its
batch RUNNING, or everything was stored but the batch could not be marked complete — and then
run again with the same file must leave every table exactly as one uninterrupted run of that
file into an empty database does: people, households, relief statuses, provenance (one batch,
its lines and time), anomalies, the batch's counts (which the sharing statistics add up, rule
11) and the verification tasks medical insurance gets (004 §1), compared table by table and row
for row (``tests.ingest_support.dump_tables``), plus the rejection report and the counts the
clerk reads.

The roster is small and its chunks smaller (5 rows), so that what the rules care about sits on
both sides of a chunk boundary: a person with two held identities in two chunks (one task, for
the higher), a tier change (身份变更) and an exit of an identity listed a chunk earlier, the same
ID under another name (one anomaly), a household split across chunks, rejected rows before and
after the interruption. On SQLite and PostgreSQL; the process-level faults (SIGKILL, the server
stopped) are in ``test_faults_ingest.py``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import select, update

from adapters.apply import ChunkApplier
from adapters.pipeline import IngestFailed, Ingestor, IngestResult, RejectionReport
from gateway.domain.settings import Province
from gateway.loop.config import load_rules
from gateway.loop.statistics import SharingStatistics
from gateway.loop.tasks import verification_opener
from gateway.storage.models import IngestBatch, Task
from tests.ingest_support import (
    IDENTITY_HEADERS,
    NEIGHBOUR_COUNTY,
    TODAY,
    IngestDB,
    Someone,
    TableDump,
    assert_same_tables,
    db_fixture,  # noqa: F401
    dump_tables,
    identity_row,
    ingest_database_fixture,  # noqa: F401
    read_report,
    sharing_statistics,
    someone,
    write_rows,
)

RULES = load_rules(Province.SHANDONG)
CHUNK = 5
MIN, EDGE, ORPHAN = "低保对象", "低保边缘家庭成员", "孤儿"

P = [someone(300 + n) for n in range(20)]
TWO_IDENTITIES = P[3]  # 孤儿 in chunk 1, 低保 in chunk 2: one task, for the higher (孤儿)
TIER_CHANGE = P[0]  # 边缘 in chunk 1, 低保 in chunk 4: 身份变更
RENAMED = P[7]  # another name in the next chunk: one NAME_MISMATCH
EXITED = P[2]  # recognised in chunk 1, exited in chunk 3


def _wrong_check_digit(person: Someone) -> dict[str, str]:
    wrong = "1" if person.id_number.endswith("0") else "0"
    return identity_row(person) | {"身份证号码": person.id_number[:-1] + wrong}


def roster() -> list[dict[str, str]]:
    """36 rows, chunks of 5: what each rule needs straddles a boundary."""
    household = {"户编号": "HH-RESUME-1"}
    rows = [
        identity_row(TIER_CHANGE, EDGE, "2024-01-01"),  # 1
        identity_row(P[1], MIN),
        _wrong_check_digit(P[19]),  # rejected: check digit
        identity_row(EXITED, MIN, "2023-03-01"),
        identity_row(TWO_IDENTITIES, ORPHAN, "2020-01-01"),  # 5  | chunk boundary
        identity_row(TWO_IDENTITIES, MIN, "2025-03-01"),  # 6
        identity_row(P[4], MIN, extra=household),
        identity_row(P[5], EDGE, "2024-06-01"),
        identity_row(P[6], MIN),
        identity_row(RENAMED, MIN),  # 10 | chunk boundary
        identity_row(RENAMED, MIN) | {"姓名": "测试改名"},  # 11: NAME_MISMATCH
        identity_row(P[5], MIN, "2026-05-01"),  # 身份变更 of row 8, a chunk up
        identity_row(EXITED, MIN, "2023-03-01", "2026-09-30"),  # 退出
        identity_row(P[8], MIN, extra=household),  # the household of row 7
        identity_row(P[9], EDGE),  # 15 | chunk boundary
        identity_row(TIER_CHANGE, MIN, "2026-02-01"),  # 16: 身份变更 of row 1
        identity_row(P[10], "五保户"),  # rejected: unknown category
        identity_row(P[11], MIN),
        identity_row(P[12], ORPHAN, "2019-05-01"),
        identity_row(P[13], MIN),  # 20 | chunk boundary
        identity_row(P[12], MIN, "2025-01-01"),  # 21: a second held identity, next chunk
        identity_row(P[14], EDGE),
        identity_row(P[15], MIN, region=NEIGHBOUR_COUNTY),
        identity_row(P[16], MIN),
        identity_row(P[9], MIN, "2026-06-01"),  # 25: 身份变更 of row 15 | chunk boundary
        identity_row(P[17], MIN),
        _wrong_check_digit(P[18]),  # rejected after any interruption
        identity_row(P[18], MIN),
        identity_row(P[1], MIN),  # listed again: 无变化
        identity_row(P[14], EDGE, "2024-01-01", "2026-06-30"),  # 30: exit of another date
        identity_row(P[13], ORPHAN, "2021-01-01"),
        identity_row(P[16], EDGE, "2022-01-01"),  # an older tier listed after the newer one
        identity_row(P[17], MIN) | {"联系电话": "13800000000"},  # 信息更新
        identity_row(P[11], MIN, "2025-03-01", "2026-01-31"),
        identity_row(P[6], ORPHAN, "2018-01-01"),
        identity_row(P[4], EDGE, "2021-01-01", "2022-12-31"),  # 36
    ]
    assert len(rows) == 36
    return rows


# --------------------------------------------------------------------------- loading


def ingestor(db: IngestDB, *, scope: str | None = None) -> Ingestor:
    """As ``relief-gateway ingest`` builds it: identities lists open verification tasks."""
    return Ingestor(
        db.engine,
        db.vault,
        db.feeds[("civil_affairs", "identities")],
        submitted_by="test:civil_affairs",
        today=TODAY,
        scope=scope,
        chunk_rows=CHUNK,
        on_completed=verification_opener(RULES, TODAY),
    )


async def load(db: IngestDB, path: Path, *, scope: str | None = None) -> IngestResult:
    report = RejectionReport(path.with_name(f"{path.stem}.拒收报告.csv"))
    try:
        result = await ingestor(db, scope=scope).ingest_file(path, report=report)
    finally:
        report.close()
    result.report_path = report.path
    return result


@contextlib.contextmanager
def interrupted(chunk: int | None) -> Iterator[None]:
    """The next load stops part-way: the database goes away in chunk ``chunk`` (1-based), its
    rows written but not committed, or, with ``None``, once every chunk is stored, when the
    batch is to be marked complete."""
    flush, finish = ChunkApplier._flush, Ingestor._finish
    lost = sqlalchemy.exc.OperationalError("…", {}, ConnectionResetError("connection lost"))
    flushes = 0

    async def failing_flush(applier: ChunkApplier) -> None:
        nonlocal flushes
        flushes += 1
        await flush(applier)
        if flushes == chunk:
            raise lost

    async def failing_finish(ingestor: Ingestor, *args: Any, **kwargs: Any) -> Any:
        if args[1] == "COMPLETED":  # (batch_id, status, counties)
            raise lost
        return await finish(ingestor, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        if chunk is None:
            patch.setattr(Ingestor, "_finish", failing_finish)
        else:
            patch.setattr(ChunkApplier, "_flush", failing_flush)
        with pytest.raises(IngestFailed):
            yield


@pytest.fixture
def roster_file(db: IngestDB) -> Path:
    return write_rows(db.tmp / "民政月报.csv", roster(), headers=[*IDENTITY_HEADERS])


# --------------------------------------------------------------------------- what it leaves


async def sharing(db: IngestDB) -> SharingStatistics:
    return await sharing_statistics(db.engine, "37")


@dataclass
class Clean:
    """The roster loaded once, uninterrupted, into an empty database."""

    result: IngestResult
    tables: TableDump
    report: list[tuple[str, ...]]
    sharing: SharingStatistics


async def clean_load(db: IngestDB, path: Path) -> Clean:
    result = await load(db, path)
    assert result.status == "COMPLETED"
    assert result.counts.rows_rejected == 3
    assert result.report_path is not None
    tables = await dump_tables(db.engine, db.vault)
    assert sum(tables["task"].values()) > 10
    assert sum(tables["anomaly"].values()) == 1  # NAME_MISMATCH
    clean = Clean(result, tables, read_report(result.report_path), await sharing(db))
    assert [p.batches for p in clean.sharing.provided] == [1]
    await db.database.empty()
    return clean


async def assert_equals_clean(db: IngestDB, rerun: IngestResult, clean: Clean) -> None:
    assert rerun.status == "COMPLETED"
    assert rerun.counts == clean.result.counts  # the whole file's, as the clerk reads them
    assert rerun.report_path is not None
    assert read_report(rerun.report_path) == clean.report  # every rejection, in file order
    assert rerun.rejections == clean.result.rejections
    assert rerun.region == clean.result.region
    assert_same_tables(await dump_tables(db.engine, db.vault), clean.tables)
    assert await sharing(db) == clean.sharing


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(
    "chunk",
    [1, 2, 4, 8, None],
    ids=["in-first-chunk", "in-second-chunk", "mid-file", "in-last-chunk", "at-completion"],
)
@pytest.mark.parametrize("how", ["database-failed", "killed"])
async def test_resumed_import_equals_a_clean_one(
    db: IngestDB, roster_file: Path, chunk: int | None, how: str
) -> None:
    clean = await clean_load(db, roster_file)

    with interrupted(chunk):
        await load(db, roster_file)
    [stopped] = await db.batches()
    committed = CHUNK * (chunk - 1) if chunk is not None else len(roster())
    assert stopped.rows_total == committed  # whole chunks only
    if how == "killed":  # SIGKILL records nothing: the batch stays RUNNING
        async with db.engine.begin() as connection:
            await connection.execute(
                update(IngestBatch).values(status="RUNNING", finished_at=None, error=None)
            )
    assert await db.count(Task) == 0  # tasks open when the file is complete, not before

    rerun = await load(db, roster_file)

    # The same batch, continued: not a second one next to it.
    assert rerun.batch_id == stopped.id
    assert rerun.resumed == (stopped.id,)
    assert rerun.resumed_rows == committed
    [batch] = await db.batches()
    assert (batch.status, batch.error, batch.received_at) == (
        "COMPLETED",
        None,
        stopped.received_at,
    )
    await assert_equals_clean(db, rerun, clean)


async def test_identities_on_both_sides_of_the_interruption_open_one_task(
    db: IngestDB, roster_file: Path
) -> None:
    """The report of issue 13: a person whose identities sit in rows before and after the
    interruption got one task per run. One list, one task: for the highest identity, from the
    batch that holds the file."""
    with interrupted(2):
        await load(db, roster_file)  # 孤儿 (row 5) stored, 低保 (row 6) not
    rerun = await load(db, roster_file)

    person = await db.person_id(TWO_IDENTITIES)
    tasks = await db.all(select(Task).where(Task.person_id == person))
    assert [(t.category, t.source_key, t.batch_id) for t in tasks] == [
        ("ORPHAN", f"batch:{rerun.batch_id}", rerun.batch_id)
    ]
    everyone = await db.all(select(Task.person_id))
    assert len(everyone) == len({t.person_id for t in everyone})  # nobody twice


async def test_a_run_that_cannot_continue_the_batch_loads_the_file_afresh(
    db: IngestDB, roster_file: Path
) -> None:
    """Another ``--region`` would not have stored what the interrupted run stored (its rows
    outside the region were rejected): the replay shows it, the file is loaded as a new batch,
    the interrupted one is closed, and medical insurance still gets one task per person, ranked
    over the whole file, from the batch that completed it."""
    clean = await clean_load(db, roster_file)
    with interrupted(6):
        await load(db, roster_file, scope="370102")  # row 23 (another county) is rejected
    [earlier] = await db.batches()

    rerun = await load(db, roster_file)  # the whole province

    assert rerun.status == "COMPLETED"
    assert rerun.counts.rows_total == len(roster())
    assert rerun.batch_id != earlier.id
    assert (rerun.resumed, rerun.resumed_rows) == ((earlier.id,), 0)
    closed = await db.batch(earlier.id)
    assert closed.status == "FAILED"
    assert closed.error.endswith(f"已由批次 {rerun.batch_id} 重新导入完成")
    assert rerun.report_path is not None
    assert read_report(rerun.report_path) == clean.report  # the file read afresh, once
    tasks = await db.all(select(Task.source_key, Task.batch_id))
    assert set(tasks) == {(f"batch:{rerun.batch_id}", rerun.batch_id)}
    assert _pushed(await dump_tables(db.engine, db.vault)) == _pushed(clean.tables)


def _pushed(tables: TableDump) -> Counter[tuple[Any, ...]]:
    """Who medical insurance is asked to verify, for which identity, where."""
    return Counter(
        tuple(value for name, value in row if name in ("person_id", "category", "county_code"))
        for row in tables["task"].elements()
    )


async def test_two_runs_of_one_file_never_count_a_chunk_twice(
    db: IngestDB, roster_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs continuing the same batch at once: the one that finds the batch moved on by the
    other stops, its chunk rolled back, and says so; the batch counts each row once."""
    with interrupted(3):
        await load(db, roster_file)
    [batch] = await db.batches()
    take_over = Ingestor._take_over

    async def taken_then_overtaken(self: Ingestor, resume: Any) -> None:
        await take_over(self, resume)
        # meanwhile the other run commits the next chunk
        async with db.engine.begin() as connection:
            await connection.execute(
                update(IngestBatch).values(rows_total=IngestBatch.rows_total + CHUNK)
            )

    monkeypatch.setattr(Ingestor, "_take_over", taken_then_overtaken)
    with pytest.raises(IngestFailed) as raised:
        await load(db, roster_file)
    assert raised.value.message.startswith(f"导入已停止：批次 {batch.id} 已由同一文件的另一次导入")
    after = await db.batch(batch.id)
    assert after.rows_total == 2 * CHUNK + CHUNK  # only the other run's chunk was counted
    assert await db.person(P[8]) is None  # row 14: this run's chunk was rolled back
    assert [b.id for b in await db.batches()] == [batch.id]
