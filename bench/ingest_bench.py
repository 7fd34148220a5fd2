#!/usr/bin/env python3
"""Ingest throughput: a civil-affairs identities CSV of N rows into PostgreSQL and SQLite.

    .venv/bin/python bench/ingest_bench.py                      # 1,000,000 rows, both targets
    .venv/bin/python bench/ingest_bench.py --rows 100000 --targets postgres --skip-reload

The question it answers (the issue): rows per second of a 1,000,000-row 民政 monthly roster,
validation, encryption and blind indexes included, and peak memory, into PostgreSQL and into
SQLite. Issue 17's targets, on the same run: the first load into PostgreSQL at ≥ 0.8× the
rows/s of the COPY floor (below), the monthly re-load ≥ 1.5× the re-load before issue 17, and
peak RSS ≤ 300 MB with the ingest's worker processes counted (the "with workers" column).
Machines are shared: the load average before → after each run is in the table, and ratios
against the floor of the same run say more than absolute figures.

What one run does:

1. **The file.** A 民政救助对象名单 as ``adapters.samples.identity_rows`` writes it from the
   synthetic population (``gateway.domain.synthetic``, seed 42, as of 2026-11-23): 姓名, 身份证号码,
   行政区划代码, 人员类别, 认定日期, 退出日期, 联系电话, 家庭住址, 户编号, 与户主关系; a person
   with two identities has two rows, about a third of the rows are exits. It is GBK-encoded,
   as Excel on Chinese Windows saves CSV. About 3.3 people are generated per roster row, which
   takes a few minutes for 1 M rows, so the file is cached under ``bench/.cache/``
   (git-ignored), together with a UTF-8 copy of the same content for the re-load.
2. **Baselines**, on the same file:
   * ``csv module``: decode and split the file with ``csv.reader`` and nothing else;
   * ``readers + RowParser``: the pipeline's own reading and validation, no crypto, no
     database;
   * ``asyncpg COPY``: hand-written ``copy_records_to_table`` of the rows the pipeline stores
     (household, person, person_source, relief_status) into a fresh, migrated database on the
     same cluster, in transactions of 10,000 rows. Parsing and sealing happen before each
     chunk and are not timed: this is the database's floor.
3. **Loads**, per target: ``adapters.pipeline.Ingestor.ingest_file`` into a freshly migrated
   database (PostgreSQL: a throw-away cluster from ``tests.pgcluster``; SQLite: a file in a
   temp dir), then the same content again from the UTF-8 copy, whose different bytes defeat
   the content-hash shortcut: the "monthly re-load, nothing changed" case, where every row
   must come out 无变化.
4. **Report**: a Markdown table on stdout and in ``bench/results/ingest_latest.md``.

Every measurement runs in a fresh process (multiprocessing ``spawn``), so its peak RSS
(``ru_maxrss``) is its own and not the high-water mark of an earlier run or of generating the
file. The keyring is generated in memory and reaches those processes through the
multiprocessing pipe; it is never written to disk. PostgreSQL CPU is the postmaster's process
tree (live backends plus reaped ones), read from ``/proc`` before and after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from adapters.mapping import Feed, load_feeds  # noqa: E402
from gateway.crypto import FieldCipher, Keyring  # noqa: E402

BENCH = REPO / "bench"
CACHE_DIR = BENCH / ".cache"
RESULTS_DIR = BENCH / "results"
TODAY = date(2026, 11, 23)  # as run_bench.py's RELIEF_TODAY
SEED = 42
SUITE = "aes-256-gcm+hmac-sha256"  # the gateway's default cipher suite
COPY_CHUNK_ROWS = 10_000
TARGETS = ("postgres", "sqlite")
# More people than any roster needs: the population is generated lazily and cut at N rows.
PEOPLE_PER_ROW_BOUND = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the file -------------------------------------------------------------------------------


def roster_files(rows: int) -> tuple[Path, Path]:
    """The cached GBK roster of ``rows`` rows and its UTF-8 copy, generated on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    gbk = CACHE_DIR / f"civil_affairs_identities_{rows}_seed{SEED}.gbk.csv"
    utf8 = gbk.with_name(gbk.name.replace(".gbk.", ".utf8."))
    if not gbk.exists():
        log(f"generating {rows:,} roster rows (cached in {gbk.relative_to(REPO)}) …")
        started = time.monotonic()
        _write_roster(gbk, rows)
        log(f"  {time.monotonic() - started:.0f} s")
    if not utf8.exists():
        _reencode(gbk, utf8)
    return gbk, utf8


def _write_roster(path: Path, rows: int) -> None:
    from adapters.samples import IDENTITY_HEADERS, identity_rows, write_csv
    from gateway.domain.synthetic import generate_population

    population = generate_population(rows * PEOPLE_PER_ROW_BOUND, seed=SEED, today=TODAY)
    roster = itertools.islice(identity_rows(population), rows)
    partial = path.with_suffix(".partial")  # an interrupted run leaves no truncated cache
    written = write_csv(partial, IDENTITY_HEADERS, roster, encoding="gbk")
    if written != rows:
        raise SystemExit(f"the synthetic population gave {written} rows, not {rows}")
    partial.replace(path)


def _reencode(source: Path, target: Path) -> None:
    """The same rows as Excel's "CSV UTF-8" (with BOM): equal content, different bytes."""
    partial = target.with_suffix(".partial")
    with (
        source.open(encoding="gbk", newline="") as reader,
        partial.open("w", encoding="utf-8-sig", newline="") as writer,
    ):
        shutil.copyfileobj(reader, writer, 1 << 20)
    partial.replace(target)


# --- measuring one run in its own process ----------------------------------------------------


@dataclass
class Measurement:
    name: str
    target: str
    rows: int
    wall_s: float
    cpu_s: float  # this process and any workers it started
    rss_start_mb: float  # after imports and set-up, before the measured work
    rss_peak_mb: float
    workers_rss_peak_mb: float = 0.0
    # The largest sum of the RSS of this process and all its descendants (the ingest's worker
    # processes), sampled every 0.1 s: RSS counts the pages the processes share (the
    # interpreter, the modules) once per process, so it overstates, never understates.
    tree_rss_peak_mb: float = 0.0
    load_average: str = ""  # /proc/loadavg's 1-minute figure before → after
    postgres_cpu_s: float | None = None
    outcome: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s else 0.0


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def _load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _tree_rss_mb(root: int) -> float:
    """RSS of ``root`` and its descendants (``/proc``), in MB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21])  # pages
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


class Stopwatch:
    """Wall and CPU time of the measured part only, and the peak RSS it reached (this process
    alone, and this process with its worker processes, sampled)."""

    def __init__(self) -> None:
        self.rss_start_mb = _maxrss_mb()
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.tree_rss_peak_mb = 0.0
        self.load_before = self.load_after = ""

    def __enter__(self) -> Stopwatch:
        import threading

        self.load_before = self.load_before or _load_average()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s += time.perf_counter() - self._wall
        self.cpu_s += _cpu_seconds() - self._cpu
        self._stop.set()
        self._sampler.join()
        self.load_after = _load_average()

    def _sample(self) -> None:
        me = os.getpid()
        while True:
            self.tree_rss_peak_mb = max(self.tree_rss_peak_mb, _tree_rss_mb(me))
            if self._stop.wait(0.1):
                return

    def measurement(self, name: str, target: str, rows: int, outcome: str = "") -> Measurement:
        return Measurement(
            name=name,
            target=target,
            rows=rows,
            wall_s=self.wall_s,
            cpu_s=self.cpu_s,
            rss_start_mb=self.rss_start_mb,
            rss_peak_mb=_maxrss_mb(),
            workers_rss_peak_mb=_maxrss_mb(resource.RUSAGE_CHILDREN),
            tree_rss_peak_mb=self.tree_rss_peak_mb,
            load_average=f"{self.load_before} → {self.load_after}",
            outcome=outcome,
        )


def isolated(function: Callable[..., Measurement], *args: Any) -> Measurement:
    """Run ``function(*args)`` in a fresh interpreter and return its measurement."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds of the postmaster and its live descendants, reaped backends included."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(value) for value in fields[11:15]) / ticks  # utime … cstime
    total, stack = 0.0, [postmaster]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


# --- baselines -------------------------------------------------------------------------------


def measure_csv_module(path: Path) -> Measurement:
    """Decode and split the file with the csv module: the floor for reading it at all."""
    rows = 0
    with Stopwatch() as watch, path.open(encoding="gb18030", newline="") as handle:
        for _ in csv.reader(handle):
            rows += 1
    return watch.measurement("csv module (read + decode)", "-", rows - 1)


def civil_affairs_feed() -> Feed:
    return load_feeds()[("civil_affairs", "identities")]


def measure_parse(path: Path) -> Measurement:
    """The pipeline's reader and validation (adapters.readers + adapters.rows), no database."""
    from adapters.readers import open_source
    from adapters.rows import RowParser

    feed = civil_affairs_feed()
    accepted = rejected = 0
    with Stopwatch() as watch, open_source(path, feed.columns) as reader:
        parser = RowParser(feed, today=TODAY, header_names=reader.columns)
        for row in reader:
            if isinstance(parser.parse(row), list):
                rejected += 1
            else:
                accepted += 1
    return watch.measurement(
        "readers + RowParser (no crypto, no database)",
        "-",
        accepted + rejected,
        f"{rejected} rejected",
    )


def measure_copy(dsn: str, keyring: Keyring, path: Path) -> Measurement:
    """Hand-written COPY of pre-sealed rows: what the pipeline writes, at the database's speed."""
    return asyncio.run(_copy_baseline(dsn, keyring, path))


async def _copy_baseline(dsn: str, keyring: Keyring, path: Path) -> Measurement:
    import asyncpg  # type: ignore[import-untyped]

    from gateway.domain.records import PersonRecord
    from gateway.storage.vault import PersonVault

    vault = PersonVault(FieldCipher(keyring))
    labels = civil_affairs_feed().labels["category"]
    batch_id, received_at = uuid.uuid4(), datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    await connection.execute(
        "INSERT INTO ingest_batch (id, department, feed, channel, region, submitted_by,"
        " received_at, status, rows_total, rows_accepted, rows_rejected, rows_unchanged, added,"
        " exited, identity_changed, updated, unmatched, anomalies_opened)"
        " VALUES ($1, 'civil_affairs', 'identities', 'FILE', '', 'bench', $2, 'RUNNING',"
        " 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
        batch_id,
        received_at,
    )
    person_ids: dict[str, uuid.UUID] = {}
    households: dict[str, uuid.UUID] = {}
    columns = dict(_COPY_COLUMNS)
    watch = Stopwatch()
    rows = 0
    with path.open(encoding="gb18030", newline="") as handle:
        records = csv.reader(handle)
        next(records)
        while chunk := list(itertools.islice(records, COPY_CHUNK_ROWS)):
            tables: dict[str, list[tuple[Any, ...]]] = {
                "household": [],
                "person": [],
                "person_source": [],
                "relief_status": [],
            }
            for line, cells in enumerate(chunk, start=rows + 2):
                name, id_number, region, label, recognized, exited = cells[:6]
                phone, address, number, relation = (cell or None for cell in cells[6:10])
                household = households.get(number or "")
                if number and household is None:
                    household = households[number] = uuid.uuid4()
                    tables["household"].append(
                        (household, region, region[:6], "civil_affairs", number)
                    )
                person_id = person_ids.get(id_number)
                if person_id is None:
                    person_id = person_ids[id_number] = uuid.uuid4()
                    birth = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
                    record = PersonRecord(
                        person_id=person_id,
                        id_number=id_number,
                        name=name,
                        gender="MALE" if int(id_number[16]) % 2 else "FEMALE",
                        birth_date=birth,
                        region_code=region,
                        phone=phone,
                        address=address,
                        household_id=household,
                        relation=relation,
                    )
                    values = vault.person_values(record)
                    values.update(created_at=received_at, deceased_on=None)
                    columns["person"] = list(values)
                    tables["person"].append(tuple(values.values()))
                    digest = vault.source_digest(
                        "civil_affairs", (name, region, phone, address, number, relation)
                    )
                    tables["person_source"].append(
                        (person_id, "civil_affairs", digest, batch_id, line, received_at)
                    )
                on = date.fromisoformat(recognized)
                tables["relief_status"].append(
                    (
                        person_id,
                        labels[label],
                        "civil_affairs",
                        on,
                        on,
                        date.fromisoformat(exited) if exited else None,
                        batch_id,
                        line,
                        received_at,
                    )
                )
            rows += len(chunk)
            with watch:
                async with connection.transaction():
                    for table, records_ in tables.items():
                        if records_:
                            await connection.copy_records_to_table(
                                table, columns=columns[table], records=records_
                            )
    await connection.close()
    return watch.measurement("asyncpg COPY of pre-sealed rows", "postgres", rows)


_COPY_COLUMNS = {
    "household": ["id", "region_code", "county_code", "source_department", "source_number"],
    "person": [],  # the keys of PersonVault.person_values, filled on first use
    "person_source": [
        "person_id",
        "department",
        "digest",
        "batch_id",
        "source_line",
        "received_at",
    ],
    "relief_status": [
        "person_id",
        "category",
        "source_department",
        "recognized_on",
        "valid_from",
        "valid_to",
        "batch_id",
        "source_line",
        "received_at",
    ],
}


# --- the pipeline ----------------------------------------------------------------------------


def measure_ingest(
    url: str, keyring: Keyring, path: Path, name: str, target: str, chunk_rows: int | None
) -> Measurement:
    return asyncio.run(_ingest(url, keyring, path, name, target, chunk_rows))


async def _ingest(
    url: str, keyring: Keyring, path: Path, name: str, target: str, chunk_rows: int | None
) -> Measurement:
    from adapters.pipeline import CHUNK_ROWS, Ingestor, RejectionReport
    from gateway.storage.engine import make_engine
    from gateway.storage.vault import PersonVault

    engine = make_engine(url)
    ingestor = Ingestor(
        engine,
        PersonVault(FieldCipher(keyring)),
        civil_affairs_feed(),
        submitted_by="bench",
        today=TODAY,
        chunk_rows=chunk_rows or CHUNK_ROWS,
        # as `relief-gateway ingest` reads it: RELIEF_INGEST_WORKERS=0 measures the serial path
        workers=int(os.environ["RELIEF_INGEST_WORKERS"])
        if os.environ.get("RELIEF_INGEST_WORKERS", "").isdigit()
        else None,
    )
    with tempfile.TemporaryDirectory(prefix="relief-ingest-report-") as reports:
        report = RejectionReport(Path(reports) / "拒收报告.csv")
        try:
            with Stopwatch() as watch:
                result = await ingestor.ingest_file(path, report=report)
        finally:
            report.close()
    await engine.dispose()
    counts = {key: value for key, value in result.counts.as_dict().items() if value}
    outcome = f"{result.status}: " + ", ".join(f"{key} {value:,}" for key, value in counts.items())
    return watch.measurement(name, target, result.counts.rows_total, outcome)


async def _migrate(url: str) -> None:
    from gateway.storage.engine import make_engine
    from gateway.storage.migrate import upgrade_to_head

    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Measurement]:
    gbk, utf8 = roster_files(args.rows)
    keyring = Keyring.generate(SUITE)  # in memory only
    results: list[Measurement] = []

    def record(measurement: Measurement) -> None:
        results.append(measurement)
        log(
            f"  {measurement.name} [{measurement.target}]: {measurement.rows:,} rows in"
            f" {measurement.wall_s:.1f} s = {measurement.rows_per_s:,.0f} rows/s,"
            f" peak RSS {measurement.rss_peak_mb:.0f} MB {measurement.outcome}"
        )

    log("baselines: csv module, readers + RowParser")
    record(isolated(measure_csv_module, gbk))
    record(isolated(measure_parse, gbk))
    loads = [("first load (GBK)", gbk)] + ([] if args.skip_reload else [("re-load (UTF-8)", utf8)])

    if "postgres" in args.targets:
        from tests.pgcluster import ThrowawayCluster

        with ThrowawayCluster(dbname="relief_ingest", honour_env=False) as cluster:
            postmaster = cluster.pid
            assert postmaster is not None
            log(f"PostgreSQL on port {cluster.port}")
            copy_db = "relief_copy_baseline"
            asyncio.run(_migrate(cluster.create_database(copy_db)))
            asyncio.run(_migrate(cluster.dsn_asyncpg))

            def on_postgres(function: Callable[..., Measurement], *call: Any) -> Measurement:
                before = postgres_cpu_s(postmaster)
                measurement = isolated(function, *call)
                time.sleep(1)  # until the postmaster has reaped the run's backends
                measurement.postgres_cpu_s = postgres_cpu_s(postmaster) - before
                return measurement

            log("baseline: asyncpg COPY")
            record(on_postgres(measure_copy, cluster.url(copy_db, driver=None), keyring, gbk))
            log("pipeline → PostgreSQL")
            for name, path in loads:
                call = (cluster.dsn_asyncpg, keyring, path, name, "postgres", args.chunk_rows)
                record(on_postgres(measure_ingest, *call))

    if "sqlite" in args.targets:
        with tempfile.TemporaryDirectory(prefix="relief-ingest-bench-") as work:
            url = f"sqlite+aiosqlite:///{work}/relief.db"
            asyncio.run(_migrate(url))
            log("pipeline → SQLite")
            for name, path in loads:
                record(
                    isolated(measure_ingest, url, keyring, path, name, "sqlite", args.chunk_rows)
                )
    return results


# --- the report ------------------------------------------------------------------------------


def _git() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "adapters", "gateway", "bench/ingest_bench.py")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def markdown(args: argparse.Namespace, results: list[Measurement]) -> str:
    from adapters.pipeline import CHUNK_ROWS

    command = " ".join([".venv/bin/python", "bench/ingest_bench.py", *sys.argv[1:]])
    lines = [
        f"# Ingest benchmark: {args.rows:,}-row civil-affairs identities CSV",
        "",
        f"`{command}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M %z')}, git {_git()}, Python {platform.python_version()},"
        f" {os.cpu_count()} CPUs. PostgreSQL: throw-away cluster (fsync, synchronous_commit and"
        " full_page_writes off). SQLite: WAL, synchronous=NORMAL. Pipeline: chunks of"
        f" {args.chunk_rows or CHUNK_ROWS:,} rows.",
        "",
        "| run | target | rows | wall s | rows/s | app CPU s | PostgreSQL CPU s"
        " | peak RSS MB (start → peak) | peak RSS MB, with workers | load average | result |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for m in results:
        pg = "" if m.postgres_cpu_s is None else f"{m.postgres_cpu_s:.1f}"
        workers = f", workers {m.workers_rss_peak_mb:.0f}" if m.workers_rss_peak_mb > 1 else ""
        lines.append(
            f"| {m.name} | {m.target} | {m.rows:,} | {m.wall_s:.1f} | {m.rows_per_s:,.0f}"
            f" | {m.cpu_s:.1f} | {pg} | {m.rss_start_mb:.0f} → {m.rss_peak_mb:.0f}{workers}"
            f" | {m.tree_rss_peak_mb:.0f} | {m.load_average} | {m.outcome} |"
        )
    by_key = {(m.name, m.target): m for m in results}
    first_pg = by_key.get(("first load (GBK)", "postgres"))
    floor = by_key.get(("asyncpg COPY of pre-sealed rows", "postgres"))
    lines += [
        "",
        "App CPU s counts the worker processes (RUSAGE_CHILDREN once they have exited).",
        "Peak RSS with workers: the largest sum of the RSS of the measured process and its",
        "descendants, sampled every 0.1 s (shared pages counted once per process: an upper",
        "bound). Load average: /proc/loadavg's 1-minute figure before → after the run.",
    ]
    if first_pg is not None and floor is not None and floor.rows_per_s:
        lines += [
            "",
            f"**First load ÷ COPY floor (same run): {first_pg.rows_per_s / floor.rows_per_s:.2f}×**"
            " (target ≥ 0.8×)",
        ]
    if first_pg is not None:
        lines += ["", "Ratios (rows/s of the PostgreSQL first load against):", ""]
        for m in results:
            if m is not first_pg:
                ratio = first_pg.rows_per_s / m.rows_per_s if m.rows_per_s else 0.0
                lines.append(f"* {m.name} [{m.target}]: {ratio:.2f}×")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="roster rows (1000000)")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated: postgres, sqlite (default both)",
    )
    parser.add_argument("--skip-reload", action="store_true", help="first loads only")
    parser.add_argument(
        "--chunk-rows", type=int, help="rows per chunk transaction (default: the pipeline's)"
    )
    parser.add_argument(
        "--no-latest", action="store_true", help="do not write bench/results/ingest_latest.md"
    )
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or args.rows <= 0:
        parser.error(f"--rows must be positive and --targets among {', '.join(TARGETS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    text = markdown(args, results)
    if not args.no_latest:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / "ingest_latest.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
