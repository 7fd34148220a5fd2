"""The ingest pipeline: a file or a push → a batch of validated, de-duplicated, traceable facts.

    read (adapters.readers) → parse and validate (adapters.rows) → apply (adapters.apply)

Rows stream through in chunks: one chunk is one transaction, so memory stays bounded whatever
the file's size and a failure loses nothing that was committed: re-running the same file
classifies the stored rows as unchanged and carries on. Only a COMPLETED batch makes the same
file a duplicate; the run that completes it closes the earlier unfinished runs (a killed
process, a database that went read-only or full) and opens the verification tasks of the rows
they stored. A rejected row never stops the batch;
it goes to the rejection report (行号, 列, 值, 原因). The batch row records who sent what and
what it changed (新增, 退出, 身份变更 …), and every stored fact points back to it and its line.

On PostgreSQL chunks of all ingests take one transaction-level advisory lock, so two ingests
(a county's file and another department's push) never classify the same person at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.apply import BatchContext, ChunkApplier, Outcome
from adapters.mapping import Feed
from adapters.readers import SourceRow, open_source, read_records
from adapters.rows import CanonicalRow, Rejection, RowParser
from gateway.domain import observers
from gateway.domain.clock import now_utc
from gateway.domain.errors import GatewayError
from gateway.domain.regions import narrowest_jurisdiction
from gateway.storage.models import IngestBatch
from gateway.storage.vault import PersonVault

# Rows per chunk transaction. At 300,000 rows 10,000 loaded 15-25% faster than 2,000 (fewer
# statements and round trips per row; bench/ingest_bench.py), for about 30 MB more memory.
CHUNK_ROWS = 10_000
# Rows parsed between two turns of the event loop while the chunk before is being written (see
# Ingestor._parsed_ahead): about 2 ms, the most its database round trips wait for the parser.
PARSE_SLICE_ROWS = 100
# Rejections kept in memory for the summary and the GraphQL result; the report file has all.
KEPT_REJECTIONS = 1000
# pg_advisory_xact_lock key shared by every ingest chunk ("relief-ingest").
INGEST_LOCK_KEY = 0x52454C494E47
_SQLITE_LOCK = asyncio.Lock()

REPORT_HEADER = ("行号", "列", "值", "原因")

COUNT_FIELDS = (
    "rows_total",
    "rows_accepted",
    "rows_rejected",
    "rows_unchanged",
    "added",
    "exited",
    "identity_changed",
    "updated",
    "unmatched",
    "anomalies_opened",
)


_Chunk = tuple[list[CanonicalRow], list[Rejection]]  # accepted rows, rejections


class IngestFailed(GatewayError):
    """The batch stopped part-way (the database failed); committed chunks are kept."""

    code = "SERVICE_UNAVAILABLE"


# SQLSTATE classes (PostgreSQL) and result codes (SQLite) of a database that cannot take writes.
_READ_ONLY_STATES = ("25006",)  # read_only_sql_transaction
_FULL_STATES = ("53100",)  # disk_full
_SQLITE_READ_ONLY = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")
_SQLITE_FULL = ("SQLITE_FULL",)  # also what PRAGMA max_page_count gives


def _driver_errors() -> tuple[type[BaseException], ...]:
    """The database errors of one chunk: SQLAlchemy's, and those of the PostgreSQL driver
    itself, since chunks are COPYed through the raw asyncpg connection (adapters.apply), past
    SQLAlchemy's translation; a dropped socket can also surface as a ConnectionError."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - SQLite-only installations
        return (SQLAlchemyError, ConnectionError)
    return (SQLAlchemyError, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError)


DATABASE_ERRORS = _driver_errors()


def database_problem(exc: BaseException) -> tuple[str, str]:
    """What went wrong with the database and what to check, in an operator's words (never SQL
    or parameters): ``("数据库为只读 ReadOnlySQLTransactionError", "请检查…，")``."""
    orig = getattr(exc, "orig", None) or exc
    state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    sqlite = str(getattr(orig, "sqlite_errorname", None) or "")
    kind = type(exc).__name__
    if state in _READ_ONLY_STATES or sqlite.startswith(_SQLITE_READ_ONLY):
        return f"数据库为只读 {kind}", "请检查数据库或其所在磁盘的只读设置，"
    if state in _FULL_STATES or sqlite.startswith(_SQLITE_FULL):
        return f"数据库磁盘空间不足 {kind}", "请清理或扩容数据库所在磁盘，"
    if (
        state.startswith(("08", "57P"))
        or getattr(exc, "connection_invalidated", False)
        or isinstance(orig, ConnectionError)
        or type(orig).__name__ == "ConnectionDoesNotExistError"
    ):
        return f"数据库连接中断 {kind}", "请检查数据库是否运行、RELIEF_DATABASE_URL 是否可达，"
    return f"数据库错误 {kind}", ""


@dataclass(slots=True)
class IngestCounts:
    rows_total: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_unchanged: int = 0
    added: int = 0  # 新增
    exited: int = 0  # 退出
    identity_changed: int = 0  # 身份变更
    updated: int = 0  # 信息更新
    unmatched: int = 0  # 未匹配 (不涉及本系统人员)
    anomalies_opened: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    def add(self, other: IngestCounts) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class IngestResult:
    feed: Feed
    status: str  # COMPLETED / DUPLICATE / DRY_RUN / FAILED
    counts: IngestCounts
    batch_id: uuid.UUID | None = None
    duplicate_of: uuid.UUID | None = None
    file_name: str | None = None
    file_format: str | None = None
    encoding: str | None = None
    ignored_headers: tuple[str, ...] = ()
    rejections: list[Rejection] = field(default_factory=list)
    report_path: Path | None = None
    region: str = ""
    seconds: float = 0.0
    # Earlier runs of the same file that never completed, closed by this one (_finish).
    resumed: tuple[uuid.UUID, ...] = ()


class RejectionReport:
    """The rejection report as CSV with Chinese headers, UTF-8 with BOM so that Excel on a
    county clerk's desktop shows the Chinese correctly. Written as rows are rejected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(REPORT_HEADER)
        self.written = 0

    def write(self, rejections: Iterable[Rejection]) -> None:
        for r in rejections:
            self._writer.writerow((r.line, r.column, r.value, r.reason))
            self.written += 1

    def close(self) -> None:
        self._file.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Told, inside the transaction that completes a file, which batches now hold the file's rows
# (the completing run and earlier runs of the same file that never completed): ``(connection,
# feed, batch ids)``. Ingest knows nothing of what follows; the closed loop, say, opens the
# verification tasks medical insurance owes for an identities list (gateway.loop.tasks).
BatchCompleted = Callable[[AsyncConnection, Feed, Sequence[uuid.UUID]], Awaitable[None]]


class Ingestor:
    """Runs one feed's batches for one submitter.

    ``on_completed`` is called in the transaction that completes a file, so what it writes
    commits with the batch or not at all; without it (tools, tests of the pipeline alone)
    nothing follows a batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        vault: PersonVault,
        feed: Feed,
        *,
        submitted_by: str,
        today: date,
        scope: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
        on_completed: BatchCompleted | None = None,
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.feed = feed
        self.submitted_by = submitted_by
        self.today = today
        self.scope = scope or None
        self.chunk_rows = chunk_rows
        self.on_completed = on_completed

    # ------------------------------------------------------------------ entry points
    async def ingest_file(
        self,
        path: Path,
        *,
        dry_run: bool = False,
        report: RejectionReport | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> IngestResult:
        started = time.perf_counter()
        sha = file_sha256(path)
        if not dry_run:
            earlier = await self._completed_batch_with(sha)
            if earlier is not None:
                return IngestResult(
                    self.feed,
                    "DUPLICATE",
                    IngestCounts(),
                    duplicate_of=earlier,
                    file_name=path.name,
                    seconds=time.perf_counter() - started,
                )
        with open_source(path, self.feed.columns) as reader:
            result = IngestResult(
                self.feed,
                "RUNNING",
                IngestCounts(),
                file_name=path.name,
                file_format=reader.format,
                encoding=reader.encoding,
            )
            parser = RowParser(self.feed, today=self.today, header_names=reader.columns)
            await self._run(
                iter(reader),
                parser,
                result,
                channel="FILE",
                sha=sha,
                dry_run=dry_run,
                report=report,
                progress=progress,
            )
            result.ignored_headers = tuple(reader.ignored_headers)
        result.seconds = time.perf_counter() - started
        return result

    async def ingest_records(
        self, records: Sequence[Mapping[str, object]], *, dry_run: bool = False
    ) -> IngestResult:
        """A real-time push (submitRecords): same validation, same result as a file."""
        started = time.perf_counter()
        result = IngestResult(self.feed, "RUNNING", IngestCounts())
        parser = RowParser(self.feed, today=self.today, header_names={})
        rows = read_records(records, self.feed.columns)
        await self._run(rows, parser, result, channel="PUSH", sha=None, dry_run=dry_run)
        result.seconds = time.perf_counter() - started
        return result

    # ------------------------------------------------------------------ the run
    async def _run(
        self,
        rows: Iterator[SourceRow],
        parser: RowParser,
        result: IngestResult,
        *,
        channel: str,
        sha: str | None,
        dry_run: bool,
        report: RejectionReport | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        batch_id = uuid.uuid4()
        received_at = now_utc()
        context = BatchContext(batch_id, self.feed, self.vault, received_at, self.today, self.scope)
        counties: set[str] = set()
        batch_values = {
            "id": batch_id,
            "department": self.feed.department.value,
            "feed": self.feed.name,
            "channel": channel,
            "file_name": result.file_name,
            "content_sha256": sha,
            "region": self.scope or "",
            "submitted_by": self.submitted_by,
            "received_at": received_at,
            "status": "RUNNING",
            **IngestCounts().as_dict(),
        }

        def keep(rejections: list[Rejection]) -> None:
            if report is not None:
                report.write(rejections)
            room = KEPT_REJECTIONS - len(result.rejections)
            if room > 0:
                result.rejections.extend(rejections[:room])

        if dry_run:
            # One transaction for the whole run, rolled back: later chunks see earlier ones.
            async with self.engine.connect() as connection:
                transaction = await connection.begin()
                try:
                    await connection.execute(insert(IngestBatch).values(**batch_values))
                    chunks = self._parsed_ahead(rows, parser, progress)
                    async with contextlib.aclosing(chunks):
                        async for chunk, rejected in chunks:
                            counts = await self._apply(
                                connection, context, chunk, rejected, counties
                            )
                            keep(rejected)
                            result.counts.add(counts)
                finally:
                    await transaction.rollback()
            result.status = "DRY_RUN"
            result.region = narrowest_jurisdiction(counties) or self.scope or ""
            return

        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(IngestBatch).values(**batch_values))
        except DATABASE_ERRORS as exc:
            cause, advice = database_problem(exc)
            raise IngestFailed(
                f"导入未开始（{cause}）：未写入任何数据；{advice}恢复后重新执行同一命令即可"
            ) from None
        result.batch_id = batch_id
        feed_label = f"{self.feed.department.value}/{self.feed.name}"
        try:
            chunks = self._parsed_ahead(rows, parser, progress)
            async with contextlib.aclosing(chunks):
                async for chunk, rejected in chunks:
                    async with self._chunk_transaction() as connection:
                        counts = await self._apply(connection, context, chunk, rejected, counties)
                        # The counts commit with the rows they count: a batch interrupted
                        # part-way still says exactly what it stored.
                        increments = {
                            name: getattr(IngestBatch, name) + value
                            for name, value in counts.as_dict().items()
                            if value
                        }
                        if increments:
                            await connection.execute(
                                update(IngestBatch)
                                .where(IngestBatch.id == batch_id)
                                .values(**increments)
                            )
                    keep(rejected)
                    result.counts.add(counts)
                    observers.ingest_rows(  # committed rows only
                        feed_label,
                        accepted=counts.rows_accepted,
                        rejected=counts.rows_rejected,
                        unchanged=counts.rows_unchanged,
                    )
        except DATABASE_ERRORS as exc:
            # A database that refuses writes (read-only, disk full) refuses this too: the batch
            # then stays RUNNING, and the run that completes the file closes it (_finish).
            with contextlib.suppress(*DATABASE_ERRORS):
                await self._finish(batch_id, "FAILED", counties, error=type(exc).__name__)
            result.status = "FAILED"
            cause, advice = database_problem(exc)
            raise IngestFailed(
                f"导入中断（{cause}）："
                f"已提交的 {result.counts.rows_total} 行已保存，其余未写入；"
                f"{advice}恢复后重新执行同一命令即可继续，已导入的行不会重复"
            ) from None
        except BaseException:
            with contextlib.suppress(*DATABASE_ERRORS):
                await self._finish(batch_id, "FAILED", counties, error="interrupted")
            raise
        try:
            result.region, result.resumed = await self._finish(
                batch_id, "COMPLETED", counties, sha=sha
            )
        except DATABASE_ERRORS as exc:
            result.status = "FAILED"
            cause, advice = database_problem(exc)
            raise IngestFailed(
                f"导入未能完成（{cause}）："
                f"全部 {result.counts.rows_total} 行已保存，但批次未能标记为完成；"
                f"{advice}恢复后重新执行同一命令即可"
            ) from None
        result.status = "COMPLETED"

    async def _parsed_ahead(
        self,
        rows: Iterator[SourceRow],
        parser: RowParser,
        progress: Callable[[int], None] | None,
    ) -> AsyncGenerator[_Chunk, None]:
        """The chunks of ``rows``, each parsed while the one before it is being written.

        Reading and validating a row costs a fifth of its ingest time, and writing a chunk is
        largely waiting for the database, so the next chunk is parsed (in a task that yields
        every ``PARSE_SLICE_ROWS`` rows) meanwhile. Chunks are still applied one at a time
        and in file order, each classified against what the ones before it stored; at most
        two are held in memory.
        """
        chunks = self._chunks(rows, parser, progress)
        ahead = asyncio.ensure_future(anext(chunks, None))
        try:
            while (chunk := await ahead) is not None:
                ahead = asyncio.ensure_future(anext(chunks, None))
                yield chunk
        finally:
            if ahead.cancel():  # the caller stopped early: stop parsing
                await asyncio.wait([ahead])
            elif not ahead.cancelled():
                ahead.exception()  # retrieved: the caller's own error is the one it sees
            await chunks.aclose()

    async def _chunks(
        self,
        rows: Iterator[SourceRow],
        parser: RowParser,
        progress: Callable[[int], None] | None,
    ) -> AsyncGenerator[_Chunk, None]:
        chunk: list[CanonicalRow] = []
        rejected: list[Rejection] = []
        seen = 0
        for number, row in enumerate(rows, start=1):
            if number % PARSE_SLICE_ROWS == 0:
                await asyncio.sleep(0)  # let the chunk being written go on (_parsed_ahead)
            parsed = parser.parse(row)
            if isinstance(parsed, list):
                rejected.extend(parsed)
                seen += 1
            else:
                chunk.append(parsed)
            if len(chunk) + seen >= self.chunk_rows:
                if progress is not None:
                    progress(len(chunk) + seen)
                yield chunk, rejected
                chunk, rejected, seen = [], [], 0
        if chunk or rejected:
            if progress is not None:
                progress(len(chunk) + seen)
            yield chunk, rejected

    async def _apply(
        self,
        connection: AsyncConnection,
        context: BatchContext,
        chunk: list[CanonicalRow],
        rejected: list[Rejection],
        counties: set[str],
    ) -> IngestCounts:
        """Apply a parsed chunk; ``rejected`` (the parse-stage rejections) gains the rows the
        apply stage refused. Returns the chunk's counts."""
        parse_lines = {r.line for r in rejected}
        applied = await ChunkApplier(connection, context).apply(chunk)
        rejected.extend(applied.rejections)
        counties.update(applied.counties)
        counts = IngestCounts(
            rows_total=len(chunk) + len(parse_lines),
            rows_rejected=len(parse_lines | {r.line for r in applied.rejections}),
            anomalies_opened=applied.anomalies_opened,
        )
        counts.rows_accepted = counts.rows_total - counts.rows_rejected
        for outcome, number in applied.outcomes.items():
            # each outcome is named after the count it adds to (Outcome.CHANGED → identity_changed)
            setattr(counts, outcome.value, getattr(counts, Outcome(outcome).value) + number)
        return counts

    def _chunk_transaction(self) -> Any:
        engine = self.engine
        postgres = engine.dialect.name == "postgresql"

        class _Chunk:
            async def __aenter__(self) -> AsyncConnection:
                if not postgres:
                    await _SQLITE_LOCK.acquire()
                self._context = engine.begin()
                connection = await self._context.__aenter__()
                if postgres:
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY}
                    )
                return connection

            async def __aexit__(self, *exc: Any) -> None:
                try:
                    await self._context.__aexit__(*exc)
                finally:
                    if not postgres:
                        _SQLITE_LOCK.release()

        return _Chunk()

    async def _finish(
        self,
        batch_id: uuid.UUID,
        status: str,
        counties: set[str],
        *,
        error: str | None = None,
        sha: str | None = None,
    ) -> tuple[str, tuple[uuid.UUID, ...]]:
        """Record how the batch ended. A completed file also closes the earlier runs of the same
        file that never completed (killed, or stopped by the database): returns the region and
        those runs."""
        region = narrowest_jurisdiction(counties) or self.scope or ""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(IngestBatch)
                .where(IngestBatch.id == batch_id)
                .values(status=status, finished_at=now_utc(), region=region, error=error)
            )
            if status != "COMPLETED":
                return region, ()
            resumed = await self._close_unfinished(connection, batch_id, sha)
            if self.on_completed is not None:
                # The rows an unfinished run of this file stored are unchanged for this run:
                # they belong to that run's batch, so it is named too.
                await self.on_completed(connection, self.feed, (*resumed, batch_id))
        return region, resumed

    async def _close_unfinished(
        self, connection: AsyncConnection, batch_id: uuid.UUID, sha: str | None
    ) -> tuple[uuid.UUID, ...]:
        """Mark earlier runs of the same file that never completed (RUNNING after the process
        was killed, FAILED after a database error) as FAILED, naming the batch that completed
        the file; their committed chunks stay, and this run counted them as unchanged."""
        if sha is None:
            return ()
        earlier = (
            await connection.execute(
                select(IngestBatch.id, IngestBatch.error)
                .where(
                    IngestBatch.department == self.feed.department.value,
                    IngestBatch.feed == self.feed.name,
                    IngestBatch.content_sha256 == sha,
                    IngestBatch.status != "COMPLETED",
                    IngestBatch.id != batch_id,
                )
                .order_by(IngestBatch.received_at)
            )
        ).all()
        for row in earlier:
            cause = row.error or "进程中断"
            await connection.execute(
                update(IngestBatch)
                .where(IngestBatch.id == row.id)
                .values(
                    status="FAILED",
                    finished_at=func.coalesce(IngestBatch.finished_at, now_utc()),
                    error=f"{cause}；已由批次 {batch_id} 重新导入完成",
                )
            )
        return tuple(row.id for row in earlier)

    async def _completed_batch_with(self, sha: str) -> uuid.UUID | None:
        stmt = (
            select(IngestBatch.id)
            .where(
                IngestBatch.department == self.feed.department.value,
                IngestBatch.feed == self.feed.name,
                IngestBatch.content_sha256 == sha,
                IngestBatch.status == "COMPLETED",
            )
            .order_by(IngestBatch.received_at)
            .limit(1)
        )
        async with self.engine.connect() as connection:
            found: uuid.UUID | None = (await connection.execute(stmt)).scalar_one_or_none()
        return found
