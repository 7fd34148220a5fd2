"""The ingest pipeline: a file or a push → a batch of validated, de-duplicated, traceable facts.

    read (adapters.readers) → parse and validate (adapters.rows) → apply (adapters.apply)

Rows stream through in chunks: one chunk is one transaction, so memory stays bounded whatever
the file's size and a failure loses nothing that was committed. A rejected row never stops the
batch; it goes to the rejection report (行号, 列, 值, 原因). The batch row records who sent what
and what it changed (新增, 退出, 身份变更 …), and every stored fact points back to it and its line.

A resumed import equals an uninterrupted one. A run that stops part-way (a killed process, a
database that went away, read-only or full) leaves whole chunks, counted in its batch, and the
batch not COMPLETED. Running the same command again continues *that batch*:

    1. replay   the rows the batch committed are read and applied again in a transaction that
                is rolled back: nothing is written, the rejection report and the batch's region
                are rebuilt, and the rows and rejections must come out as the batch counted them
                (else this run would not store what that one did: another ``--region``, other
                mappings; the file is then loaded afresh as a new batch, the old one closed);
    2. continue the rest of the file is applied into the same batch, chunk after chunk, each
                classified against what the chunks before it stored, exactly as in one run;
    3. complete the batch is COMPLETED and ``on_completed`` runs once for all of its rows.

So the people, statuses, households, provenance (one batch, its lines, its time received),
anomalies, the batch's counts (sharing statistics count batches and rows, rule 11) and the
verification tasks opened on completion are those of a clean load. Every chunk moves the batch on
only from where this run left it (``rows_total``): two runs of the same file at once cannot both
count a chunk; the one that finds the batch moved stops and writes nothing more.

Only a COMPLETED batch that stored rows, in a region holding this run's ``--region``, makes the
same file a duplicate: a file refused whole (every row outside ``--region``, a wrong
``--region``) loads again with the right one, and a file sent to two counties loads in each.

On PostgreSQL chunks of all ingests take one transaction-level advisory lock, so two ingests (a
county's file and another department's push) never classify the same person at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import itertools
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
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.apply import BatchContext, ChunkApplier, ChunkResult, Outcome
from adapters.failures import DATABASE_ERRORS, database_problem
from adapters.mapping import Feed
from adapters.parallel import (
    PARALLEL_MIN_BYTES,
    ChunkPreparer,
    CryptoMemo,
    PreparedChunk,
    PreparedVault,
    WorkerSetup,
    default_workers,
    worker_keyring,
)
from adapters.readers import SourceRow, open_source, read_records
from adapters.rows import CanonicalRow, Rejection, RowParser
from gateway.domain import observers
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.errors import GatewayError
from gateway.domain.regions import narrowest_jurisdiction
from gateway.storage import outbox
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


def _independent(touched: tuple[set[str], set[str]], chunk: list[CanonicalRow]) -> bool:
    """Whether ``chunk`` names none of the people (ID numbers) and households of ``touched``."""
    id_numbers, households = touched
    for row in chunk:
        if row.id_number in id_numbers:
            return False
        household = getattr(row, "household_number", None)
        if household and household in households:
            return False
    return True


async def _together(writing: Awaitable[Any], classify: Callable[[], None]) -> None:
    """Write (this thread, the event loop) while ``classify`` runs in another thread; both are
    waited for, and the writer's error, if any, is the one raised."""
    outcomes = await asyncio.gather(writing, asyncio.to_thread(classify), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def public_name(name: str) -> str:
    """``rows_total`` → ``rowsTotal``: keys leave the process camelCase, like GraphQL's."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


class IngestFailed(GatewayError):
    """The batch stopped part-way (the database failed); committed chunks are kept."""

    code = "SERVICE_UNAVAILABLE"

    @classmethod
    def not_started(cls, exc: BaseException) -> IngestFailed:
        """The database failed (``exc``) before the run wrote anything."""
        cause, advice = database_problem(exc)
        return cls(f"导入未开始（{cause}）：未写入任何数据；{advice}恢复后重新执行同一命令即可")


class _DatabaseFailed(Exception):
    """A block that talks only to the database failed (``error``, see :func:`_database`);
    raised in place of the error so that only the database's, not the file's or the report's,
    are told as database errors."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


@contextlib.contextmanager
def _database() -> Iterator[None]:
    """Errors of the block are the database's: it touches nothing else (not the department's
    file, not the report), so an OSError in it is a dropped or refused connection."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        raise _DatabaseFailed(exc) from exc


class _NotResumable(Exception):
    """The rows an unfinished batch committed are not what this run would store (replay)."""


class _Overtaken(Exception):
    """Another run of the same file moved the batch on (continued, completed or closed it)."""


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

    def as_public_dict(self) -> dict[str, int]:
        """The counts as the public surface names them (``rowsTotal`` …: GraphQL's
        ``IngestCounts``, ``ingest --json``, the upload endpoint)."""
        return {public_name(name): getattr(self, name) for name in COUNT_FIELDS}

    def add(self, other: IngestCounts) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class IngestResult:
    feed: Feed
    status: str  # COMPLETED / DUPLICATE / DRY_RUN / FAILED
    counts: IngestCounts  # the batch's: a resumed batch counts the rows its earlier run stored
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
    # Earlier runs of the same file that never completed and that this run completed: the batch
    # it continued (its own, see resumed_rows) and any other it closed (_close_unfinished).
    resumed: tuple[uuid.UUID, ...] = ()
    # Rows of this batch an earlier, interrupted run had committed (0 for a new batch).
    resumed_rows: int = 0


@dataclass(frozen=True, slots=True)
class _Unfinished:
    """An earlier run of the same file that never completed, as this run found it."""

    id: uuid.UUID
    received_at: datetime
    status: str  # RUNNING (killed, or its end could not be written) / FAILED
    counts: IngestCounts  # what its committed chunks stored


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

    def restart(self) -> None:
        """Empty the report again (the file is being read afresh)."""
        self._file.close()
        self.__init__(self.path)  # type: ignore[misc]

    def close(self) -> None:
        self._file.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Told, inside the transaction that completes a file, which batches now hold the file's rows:
# ``(connection, feed, batch ids)``, the completing batch last, after any earlier run of the
# same file that never completed and that it closed (normally none: a re-run continues the
# interrupted batch itself). Ingest knows nothing of what follows; the closed loop, say, opens
# the verification tasks medical insurance owes for an identities list (gateway.loop.tasks).
BatchCompleted = Callable[[AsyncConnection, Feed, Sequence[uuid.UUID]], Awaitable[None]]


class Ingestor:
    """Runs one feed's batches for one submitter.

    ``on_completed`` is called in the transaction that completes a file, so what it writes
    commits with the batch or not at all; without it (tools, tests of the pipeline alone)
    nothing follows a batch. ``chunk_rows`` defaults to :data:`CHUNK_ROWS` as it is when the
    ingestor is made."""

    def __init__(
        self,
        engine: AsyncEngine,
        vault: PersonVault,
        feed: Feed,
        *,
        submitted_by: str,
        today: date,
        scope: str | None = None,
        chunk_rows: int | None = None,
        on_completed: BatchCompleted | None = None,
        workers: int | None = None,
        parallel_min_bytes: int | None = None,
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.feed = feed
        self.submitted_by = submitted_by
        self.today = today
        self.scope = scope or None
        self.chunk_rows = chunk_rows or CHUNK_ROWS
        self.on_completed = on_completed
        # Worker processes for a file of at least ``parallel_min_bytes`` (adapters.parallel);
        # 0 workers: everything in this process.
        self.workers = default_workers() if workers is None else workers
        self.parallel_min_bytes = (
            PARALLEL_MIN_BYTES if parallel_min_bytes is None else parallel_min_bytes
        )
        self._preparer: ChunkPreparer | None = None
        self._prepared_vault: PreparedVault | None = None
        # The largest number of chunks in flight to the workers in the last file (tests).
        self.peak_chunks_in_flight = 0

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
        unfinished: _Unfinished | None = None
        if not dry_run:
            try:
                earlier = await self._completed_batch_with(sha)
                if earlier is None:
                    unfinished = await self._unfinished_batch_with(sha)
            except DATABASE_ERRORS as exc:
                raise IngestFailed.not_started(exc) from None
            if earlier is not None:
                return IngestResult(
                    self.feed,
                    "DUPLICATE",
                    IngestCounts(),
                    duplicate_of=earlier,
                    file_name=path.name,
                    seconds=time.perf_counter() - started,
                )
        result: IngestResult | None = None
        if unfinished is not None:
            with contextlib.suppress(_NotResumable):
                result = await self._read_file(path, sha, dry_run, report, progress, unfinished)
        if result is None:
            if report is not None and unfinished is not None:
                report.restart()  # the replay's rejections: the file is read again below
            result = await self._read_file(path, sha, dry_run, report, progress, None)
        result.seconds = time.perf_counter() - started
        return result

    async def _read_file(
        self,
        path: Path,
        sha: str,
        dry_run: bool,
        report: RejectionReport | None,
        progress: Callable[[int], None] | None,
        resume: _Unfinished | None,
    ) -> IngestResult:
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
            with self._workers_for(path, parser, reader.columns):
                await self._run(
                    iter(reader),
                    parser,
                    result,
                    channel="FILE",
                    sha=sha,
                    dry_run=dry_run,
                    report=report,
                    progress=progress,
                    resume=resume,
                )
            result.ignored_headers = tuple(reader.ignored_headers)
        return result

    @contextlib.contextmanager
    def _workers_for(
        self, path: Path, parser: RowParser, header_names: dict[str, str]
    ) -> Iterator[None]:
        """Worker processes prepare the chunks of a large file (adapters.parallel) while this
        process applies them; a small file, or keys that cannot be handed over, run here."""
        keyring = worker_keyring(self.vault.cipher) if self.workers > 0 else None
        if keyring is None or path.stat().st_size < self.parallel_min_bytes:
            yield
            return
        setup = WorkerSetup(self.feed, self.today, dict(header_names), keyring)

        def prepare_here(rows: list[SourceRow]) -> PreparedChunk:
            accepted: list[CanonicalRow] = []
            rejected: list[Rejection] = []
            for row in rows:
                parsed = parser.parse(row)
                if isinstance(parsed, list):
                    rejected.extend(parsed)
                else:
                    accepted.append(parsed)
            return PreparedChunk(accepted, rejected, len(rows), CryptoMemo())

        preparer = ChunkPreparer(
            setup, workers=self.workers, chunk_rows=self.chunk_rows, prepare_here=prepare_here
        )
        self._preparer = preparer
        try:
            with preparer:
                yield
        finally:
            self._preparer = self._prepared_vault = None
            self.peak_chunks_in_flight = preparer.peak_in_flight

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
        resume: _Unfinished | None = None,
    ) -> None:
        batch_id = resume.id if resume is not None else uuid.uuid4()
        # A continued batch keeps the time it was received: its facts' provenance is one time.
        received_at = resume.received_at if resume is not None else now_utc()
        vault = self.vault
        if self._preparer is not None:
            vault = PreparedVault(self.vault.cipher)  # answers from the workers' memo first
            self._prepared_vault = vault
        context = BatchContext(batch_id, self.feed, vault, received_at, self.today, self.scope)
        counties: set[str] = set()

        def keep(rejections: list[Rejection]) -> None:
            if report is not None:
                report.write(rejections)
            room = KEPT_REJECTIONS - len(result.rejections)
            if room > 0:
                result.rejections.extend(rejections[:room])

        batch = self._batch_values(context, channel, result.file_name, sha)
        if dry_run:
            await self._dry_run(rows, parser, result, batch, context, counties, keep, progress)
            return

        position = 0  # the rows of the file the batch holds: where this run carries on from
        if resume is None:
            await self._open_batch(batch)
        else:
            committed = resume.counts
            prefix = itertools.islice(rows, committed.rows_total)
            try:
                await self._replay(prefix, parser, context, counties, keep, progress, committed)
            except _DatabaseFailed as failed:
                raise IngestFailed.not_started(failed.error) from None
            await self._take_over(resume)
            result.counts.add(committed)
            result.resumed_rows = position = committed.rows_total
        result.batch_id = batch_id
        feed_label = f"{self.feed.department.value}/{self.feed.name}"
        try:
            chunks = self._parsed_ahead(rows, parser, progress)
            if self._preparer is not None and self.engine.dialect.name == "postgresql":
                written = self._overlapped(chunks, context, counties, batch_id, position)
            else:
                written = self._one_by_one(chunks, context, counties, batch_id, position)
            async with contextlib.aclosing(chunks), contextlib.aclosing(written):
                async for counts, rejected in written:
                    position += counts.rows_total
                    keep(rejected)
                    result.counts.add(counts)
                    observers.ingest_rows(  # committed rows only
                        feed_label,
                        accepted=counts.rows_accepted,
                        rejected=counts.rows_rejected,
                        unchanged=counts.rows_unchanged,
                    )
        except _Overtaken:
            result.status = "FAILED"
            raise self._overtaken(batch_id) from None
        except _DatabaseFailed as failed:
            # A database that refuses writes (read-only, disk full) or is gone refuses this too:
            # the batch then stays RUNNING, and the next run of the file continues it.
            with contextlib.suppress(*DATABASE_ERRORS):
                error = type(failed.error).__name__
                await self._finish(batch_id, "FAILED", counties, position=position, error=error)
            result.status = "FAILED"
            cause, advice = database_problem(failed.error)
            raise IngestFailed(
                f"导入中断（{cause}）："
                f"已提交的 {position} 行已保存，其余未写入，没有写了一半的数据；"
                f"{advice}恢复后重新执行同一命令即从中断处继续，已保存的行不会重复"
            ) from None
        except BaseException:
            with contextlib.suppress(*DATABASE_ERRORS):
                await self._finish(
                    batch_id, "FAILED", counties, position=position, error="interrupted"
                )
            raise
        try:
            result.region, closed = await self._finish(
                batch_id, "COMPLETED", counties, position=position, sha=sha
            )
        except _Overtaken:
            result.status = "FAILED"
            raise self._overtaken(batch_id) from None
        except DATABASE_ERRORS as exc:
            result.status = "FAILED"
            cause, advice = database_problem(exc)
            raise IngestFailed(
                f"导入未能完成（{cause}）："
                f"全部 {position} 行已保存，但批次未能标记为完成；"
                f"{advice}恢复后重新执行同一命令即可"
            ) from None
        result.resumed = ((batch_id,) if resume is not None else ()) + closed
        result.status = "COMPLETED"

    @staticmethod
    def _overtaken(batch_id: uuid.UUID) -> IngestFailed:
        return IngestFailed(
            f"导入已停止：批次 {batch_id} 已由同一文件的另一次导入继续或完成，"
            "本次未重复写入任何行；请查看该批次的结果"
        )

    async def _dry_run(
        self,
        rows: Iterator[SourceRow],
        parser: RowParser,
        result: IngestResult,
        batch: dict[str, Any],
        context: BatchContext,
        counties: set[str],
        keep: Callable[[list[Rejection]], None],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Classify without storing: one transaction for the whole run, rolled back, so later
        chunks see what earlier ones would have stored."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                with _database():
                    connection = await stack.enter_async_context(self.engine.connect())
                    transaction = await connection.begin()
                    stack.push_async_callback(transaction.rollback)
                    await connection.execute(insert(IngestBatch).values(**batch))
                chunks = self._parsed_ahead(rows, parser, progress)
                await stack.enter_async_context(contextlib.aclosing(chunks))
                async for chunk, rejected in chunks:
                    with _database():
                        counts = await self._apply(connection, context, chunk, rejected, counties)
                    keep(rejected)
                    result.counts.add(counts)
        except _DatabaseFailed as failed:
            cause, advice = database_problem(failed.error)
            raise IngestFailed(
                f"校验中断（{cause}）：未写入任何数据；{advice}恢复后重新执行同一命令即可"
            ) from None
        result.status = "DRY_RUN"
        result.region = narrowest_jurisdiction(counties) or self.scope or ""

    def _batch_values(
        self, context: BatchContext, channel: str, file_name: str | None, sha: str | None
    ) -> dict[str, Any]:
        return {
            "id": context.batch_id,
            "department": self.feed.department.value,
            "feed": self.feed.name,
            "channel": channel,
            "file_name": file_name,
            "content_sha256": sha,
            "region": self.scope or "",
            "submitted_by": self.submitted_by,
            "received_at": context.received_at,
            "status": "RUNNING",
            **IngestCounts().as_dict(),
        }

    async def _open_batch(self, batch: dict[str, Any]) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(IngestBatch).values(**batch))
        except DATABASE_ERRORS as exc:
            raise IngestFailed.not_started(exc) from None

    # ------------------------------------------------------------------ resuming a batch
    async def _replay(
        self,
        rows: Iterator[SourceRow],
        parser: RowParser,
        context: BatchContext,
        counties: set[str],
        keep: Callable[[list[Rejection]], None],
        progress: Callable[[int], None] | None,
        committed: IngestCounts,
    ) -> None:
        """The rows an interrupted run of this batch committed, applied again in transactions
        that are rolled back: their rejections go to the report and their counties to the
        batch's region as in one uninterrupted run, and they must come out as that run counted
        them (rows and rejections), else :class:`_NotResumable`."""
        replayed = IngestCounts()
        async with contextlib.AsyncExitStack() as stack:
            with _database():
                connection = await stack.enter_async_context(self.engine.connect())
            chunks = self._parsed_ahead(rows, parser, progress)
            await stack.enter_async_context(contextlib.aclosing(chunks))
            async for chunk, rejected in chunks:
                with _database():
                    transaction = await connection.begin()
                    try:
                        counts = await self._apply(connection, context, chunk, rejected, counties)
                    finally:
                        await transaction.rollback()
                keep(rejected)
                replayed.add(counts)
        if (replayed.rows_total, replayed.rows_rejected) != (
            committed.rows_total,
            committed.rows_rejected,
        ):
            raise _NotResumable

    async def _take_over(self, resume: _Unfinished) -> None:
        """Make the unfinished batch this run's: RUNNING, its end not recorded. Only as it was
        found (same status, same rows): a run of the same file that moved it on has it."""
        try:
            async with self.engine.begin() as connection:
                taken = await connection.execute(
                    update(IngestBatch)
                    .where(
                        IngestBatch.id == resume.id,
                        IngestBatch.status == resume.status,
                        IngestBatch.rows_total == resume.counts.rows_total,
                    )
                    .values(status="RUNNING", finished_at=None, error=None)
                )
        except DATABASE_ERRORS as exc:
            raise IngestFailed.not_started(exc) from None
        if taken.rowcount != 1:
            raise self._overtaken(resume.id)

    @staticmethod
    async def _count(
        connection: AsyncConnection, batch_id: uuid.UUID, position: int, counts: IngestCounts
    ) -> None:
        """Add a chunk's counts to its batch in the chunk's transaction: the counts commit with
        the rows they count, so a batch interrupted part-way says exactly what it stored (and
        where a re-run carries on). Only from where this run left the batch, else the chunk is
        rolled back: another run of the file moved it on (:class:`_Overtaken`)."""
        increments = {
            name: getattr(IngestBatch, name) + value
            for name, value in counts.as_dict().items()
            if value
        }
        counted = await connection.execute(
            update(IngestBatch)
            .where(
                IngestBatch.id == batch_id,
                IngestBatch.status == "RUNNING",
                IngestBatch.rows_total == position,
            )
            .values(**increments)
        )
        if counted.rowcount != 1:
            raise _Overtaken

    # ------------------------------------------------------------------ chunks
    async def _one_by_one(
        self,
        chunks: AsyncGenerator[_Chunk, None],
        context: BatchContext,
        counties: set[str],
        batch_id: uuid.UUID,
        position: int,
    ) -> AsyncGenerator[tuple[IngestCounts, list[Rejection]], None]:
        """Each chunk applied and committed in its own transaction, one after the other."""
        async for chunk, rejected in chunks:
            with _database():
                async with self._chunk_transaction() as connection:
                    counts = await self._apply(connection, context, chunk, rejected, counties)
                    await self._count(connection, batch_id, position, counts)
            position += counts.rows_total
            yield counts, rejected

    async def _overlapped(
        self,
        chunks: AsyncGenerator[_Chunk, None],
        context: BatchContext,
        counties: set[str],
        batch_id: uuid.UUID,
        position: int,
    ) -> AsyncGenerator[tuple[IngestCounts, list[Rejection]], None]:
        """As :meth:`_one_by_one`, but the next chunk is classified while this one is written.

        Chunk k's transaction reads what chunk k+1 needs *before* writing chunk k, which gives
        the same answers as reading it after when k+1 names none of k's people and households
        (else k+1 waits and is read in its own transaction, as without overlap). Then chunk k
        is written (PostgreSQL busy) while k+1 is classified in a thread (this process busy):
        classification touches no database. So that no other ingest changes k+1's people
        between its read and its own transaction, the ingest lock is also taken at session
        level in k's transaction and released only once k+1's transaction holds it. Chunks
        still commit one at a time, in file order, each with its counts.
        """
        connection: AsyncConnection | None = None
        bridged = False
        try:
            with _database():
                connection = await self.engine.connect()
            chunk_iter = aiter(chunks)
            upcoming = await anext(chunk_iter, None)
            ahead: tuple[ChunkApplier, list[CanonicalRow], list[Rejection]] | None = None
            while ahead is not None or upcoming is not None:
                with _database():
                    transaction = await connection.begin()
                    try:
                        await connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY}
                        )
                        if bridged:
                            await connection.execute(
                                text("SELECT pg_advisory_unlock(:key)"), {"key": INGEST_LOCK_KEY}
                            )
                            bridged = False
                        if ahead is None:
                            assert upcoming is not None
                            chunk, rejected = upcoming
                            upcoming = None
                            applier = ChunkApplier(connection, context)
                            await applier.load(chunk)
                            applier.classify()
                        else:
                            applier, chunk, rejected = ahead
                            ahead = None
                        # Classified: the vault may now hold the next chunk's memo.
                        if upcoming is None:
                            upcoming = await anext(chunk_iter, None)
                        if upcoming is not None and applier.classifies_apart:
                            next_chunk, next_rejected = upcoming
                            if _independent(applier.touched, next_chunk):
                                upcoming = None
                                following = ChunkApplier(connection, context)
                                await following.load(next_chunk)
                                await connection.execute(
                                    text("SELECT pg_advisory_lock(:key)"),
                                    {"key": INGEST_LOCK_KEY},
                                )
                                bridged = True
                                await _together(applier.flush(), following.classify)
                                ahead = (following, next_chunk, next_rejected)
                        if ahead is None:
                            await applier.flush()
                        counts = self._counts(chunk, rejected, applier.result, counties)
                        await self._count(connection, batch_id, position, counts)
                    except BaseException:
                        with contextlib.suppress(*DATABASE_ERRORS):
                            await transaction.rollback()
                        raise
                    await transaction.commit()
                position += counts.rows_total
                yield counts, rejected
        finally:
            if connection is not None:
                with contextlib.suppress(*DATABASE_ERRORS):
                    if bridged:
                        await connection.execute(
                            text("SELECT pg_advisory_unlock(:key)"), {"key": INGEST_LOCK_KEY}
                        )
                    await connection.close()

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
        if self._preparer is not None:
            async for prepared in self._prepared(self._preparer, rows, progress):
                yield prepared
            return
        chunks = self._chunks(rows, parser, progress)
        ahead = asyncio.ensure_future(anext(chunks, None))
        try:
            while (chunk := await ahead) is not None:
                ahead = asyncio.ensure_future(anext(chunks, None))
                yield chunk
        finally:
            if ahead.cancel():  # the caller stopped early: stop parsing
                await asyncio.wait([ahead])
            if ahead.done() and not ahead.cancelled():
                ahead.exception()  # retrieved: the caller's own error is the one it sees
            await chunks.aclose()

    async def _prepared(
        self,
        preparer: ChunkPreparer,
        rows: Iterator[SourceRow],
        progress: Callable[[int], None] | None,
    ) -> AsyncGenerator[_Chunk, None]:
        """The chunks of ``rows`` as worker processes prepared them (adapters.parallel): the
        chunk is applied with their memo in the batch's vault, which is this generator's to
        set, since chunks are applied one at a time in file order."""
        chunks = preparer.chunks(rows)
        async with contextlib.aclosing(chunks):
            async for prepared in chunks:
                if progress is not None:
                    progress(prepared.seen)
                vault = self._prepared_vault
                created = 0 if vault is None else vault.created
                if vault is not None:
                    vault.memo = prepared.memo
                yield prepared.accepted, prepared.rejected
                if vault is not None:
                    preparer.note_applied(prepared.seen, vault.created - created)
                    vault.memo = CryptoMemo()

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
        applied = await ChunkApplier(connection, context).apply(chunk)
        return self._counts(chunk, rejected, applied, counties)

    @staticmethod
    def _counts(
        chunk: list[CanonicalRow],
        rejected: list[Rejection],
        applied: ChunkResult,
        counties: set[str],
    ) -> IngestCounts:
        parse_lines = {r.line for r in rejected}
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
                try:
                    self._context = engine.begin()
                    connection = await self._context.__aenter__()
                    self._connection = connection
                    if postgres:
                        await connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY}
                        )
                except BaseException:
                    if not postgres:
                        _SQLITE_LOCK.release()
                    raise
                return connection

            async def __aexit__(self, *exc: Any) -> None:
                try:
                    if exc[1] is None:
                        await self._context.__aexit__(*exc)
                        return
                    # The chunk failed and is rolled back. When the database went away the
                    # rollback fails as well ("the underlying connection is closed"): the server
                    # has dropped the transaction already, and the chunk's own error, not the
                    # rollback's, says what happened.
                    with contextlib.suppress(*DATABASE_ERRORS):
                        await self._context.__aexit__(*exc)
                finally:
                    if not postgres:
                        _SQLITE_LOCK.release()

        return _Chunk()

    # ------------------------------------------------------------------ the end of a batch
    async def _finish(
        self,
        batch_id: uuid.UUID,
        status: str,
        counties: set[str],
        *,
        position: int,
        error: str | None = None,
        sha: str | None = None,
    ) -> tuple[str, tuple[uuid.UUID, ...]]:
        """Record how the batch ended, if it is still where this run left it. A completed file
        also closes the earlier runs of the same file that never completed and that this one did
        not continue: returns the region and those runs."""
        region = narrowest_jurisdiction(counties) or self.scope or ""
        async with self.engine.begin() as connection:
            ended = await connection.execute(
                update(IngestBatch)
                .where(
                    IngestBatch.id == batch_id,
                    IngestBatch.status == "RUNNING",
                    IngestBatch.rows_total == position,
                )
                .values(status=status, finished_at=now_utc(), region=region, error=error)
            )
            if ended.rowcount != 1:
                if status == "COMPLETED":
                    raise _Overtaken
                return region, ()  # another run of the file has the batch: it says how it ends
            if status != "COMPLETED":
                return region, ()
            closed = await self._close_unfinished(connection, batch_id, sha)
            await outbox.emit_rows(connection, [self._accepted(batch_id, region)])
            if self.on_completed is not None:
                await self.on_completed(connection, self.feed, (*closed, batch_id))
        return region, closed

    def _accepted(self, batch_id: uuid.UUID, region: str) -> outbox.Event:
        """批次已接收: the sending department's system hears its batch completed (issue 18)."""
        return outbox.Event(
            kind=outbox.EventKind.BATCH_ACCEPTED,
            audience=self.feed.department.value,
            county_code=region[:6],
            subject_type="batch",
            subject_id=str(batch_id),
            dedupe_key=f"{outbox.EventKind.BATCH_ACCEPTED.value}:{batch_id}",
            facts={"feed": self.feed.name},
        )

    async def _close_unfinished(
        self, connection: AsyncConnection, batch_id: uuid.UUID, sha: str | None
    ) -> tuple[uuid.UUID, ...]:
        """Mark other earlier runs of the same file that never completed (left by a version
        that did not continue batches, or by a run this one could not continue: another
        ``--region``, other mappings) as FAILED, naming the batch that completed the file; their
        committed chunks stay, and this run counted them as unchanged."""
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

    # ------------------------------------------------------------------ earlier runs
    def _same_file(self, sha: str) -> Any:
        return (
            IngestBatch.department == self.feed.department.value,
            IngestBatch.feed == self.feed.name,
            IngestBatch.channel == "FILE",
            IngestBatch.content_sha256 == sha,
        )

    async def _completed_batch_with(self, sha: str) -> uuid.UUID | None:
        """The batch that loaded this file for this run's jurisdiction, if one did.

        - A completed batch that accepted no row stored nothing (every row refused: outside the
          run's ``--region``, say): loading the file again is no repetition, and may well store
          what that run refused.
        - A batch's region is the narrowest jurisdiction holding the rows it stored: a run
          scoped inside it (a county after its city, or after an unscoped run) would store
          nothing new, while a run scoped elsewhere (the neighbouring county, sent the same
          file) would store its own rows, which that batch refused. An unscoped run (the
          operator's ``ingest`` without ``--region``) takes any earlier load as the file's.
        """
        stmt = (
            select(IngestBatch.id, IngestBatch.region)
            .where(
                *self._same_file(sha),
                IngestBatch.status == "COMPLETED",
                IngestBatch.rows_accepted > 0,
            )
            .order_by(IngestBatch.received_at)
        )
        async with self.engine.connect() as connection:
            loaded = (await connection.execute(stmt)).all()
        for batch in loaded:
            if self.scope is None or self.scope.startswith(batch.region or ""):
                found: uuid.UUID = batch.id
                return found
        return None

    async def _unfinished_batch_with(self, sha: str) -> _Unfinished | None:
        """The earlier run of the same file that got furthest without completing, if any."""
        stmt = (
            select(*IngestBatch.__table__.c)
            .where(*self._same_file(sha), IngestBatch.status.in_(("RUNNING", "FAILED")))
            .order_by(IngestBatch.rows_total.desc(), IngestBatch.received_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as connection:
            batch = (await connection.execute(stmt)).first()
        if batch is None:
            return None
        counts = IngestCounts(**{name: getattr(batch, name) or 0 for name in COUNT_FIELDS})
        return _Unfinished(batch.id, as_utc(batch.received_at), batch.status, counts)
