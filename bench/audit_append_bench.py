"""The audit append before and after the chain head row (issue 17 item 3).

    .venv/bin/python bench/audit_append_bench.py       # → bench/results/audit_append_YYYYMMDD.md
    .venv/bin/python bench/audit_append_bench.py --duration 20 --reps 3

Two worker processes (as ``serve --workers 2``), each with its own engine and its own
group-commit ``AuditWriter`` (MAC'd entries, as the gateway writes them), and c=8 appenders in
all (four per process), each appending one entry after another for ``--duration`` seconds
(``--think-ms``: with a pause between, a request's own work; 0, the default, saturates), on
a throw-away PostgreSQL cluster from ``tests.pgcluster`` started with
``shared_preload_libraries=pg_stat_statements`` and ``pg_stat_statements.track=all``.

Modes, alternated (old, new, new, old, …), each run on a database of its own, freshly migrated:

* ``old``: the append as it was before (``append_entries`` at 1ed8db4, reproduced here):
  process lock, BEGIN, ``pg_advisory_xact_lock``, ``SELECT entry_hash … ORDER BY id DESC
  LIMIT 1``, INSERT, COMMIT;
* ``new``: ``gateway.storage.audit_chain.append_entries``: one autocommitted statement per
  group (compare-and-swap on ``audit_head`` with the insert), retried when the other process
  moved the head.

Per run: appends/s, the workers' CPU per append (``time.process_time``) and the server's
(user+system ticks of the cluster's backends from ``/proc``), entries and round trips per group
(old: BEGIN, lock, SELECT, INSERT, COMMIT; new: one statement, plus one per head moved),
the top statements by total time from ``pg_stat_statements``, and the wait events of active
backends sampled from ``pg_stat_activity`` every 10 ms. Each run ends with ``verify_chain``
(with the MACs): the chain must be whole, every entry once.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from gateway.crypto import AuditMac, Keyring  # noqa: E402
from gateway.storage import audit_chain  # noqa: E402
from gateway.storage.engine import make_engine, make_sessionmaker  # noqa: E402
from gateway.storage.migrate import upgrade_to_head  # noqa: E402
from gateway.storage.models import AuditEntry  # noqa: E402

PROCESSES = 2
SUITE = "sm4-gcm+hmac-sm3"
_OLD_LOCK_KEY = 0x52454C494546  # the advisory lock key of the old append
BARRIER_TIMEOUT = 300.0  # a worker that died does not leave the others waiting for ever


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


# ----------------------------------------------------------------------------- the old path
_old_lock: asyncio.Lock | None = None
_old_mac_start_done = False


async def old_append_entries(
    session: AsyncSession, entries: Any, *, macs: AuditMac | None = None
) -> None:
    """``append_entries`` before issue 17 (no archives in the bench: no archived head)."""
    global _old_lock, _old_mac_start_done
    if _old_lock is None:
        _old_lock = asyncio.Lock()
    async with _old_lock:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _OLD_LOCK_KEY})
        head = (
            await session.execute(
                select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
            )
        ).scalar()
        audit_chain._chain(entries, head or audit_chain.GENESIS, macs)
        session.add_all(entries)
        if macs is not None and not _old_mac_start_done:
            await audit_chain._record_mac_start(session, entries[0], macs)
        await session.commit()
        _old_mac_start_done = True
        # Counted like the new path's: BEGIN, lock, SELECT, INSERT, COMMIT.
        audit_chain.counts.groups += 1
        audit_chain.counts.statements += 5


# ----------------------------------------------------------------------------- a worker
def _entry(worker: int, appender: int, number: int) -> AuditEntry:
    return AuditEntry(
        occurred_at=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        subject=f"reader-{worker}-{appender}",
        department="civil_affairs",
        level="county",
        region="370102",
        purpose="relief_recognition",
        operation="PersonLookup",
        policy_version=1,
        person_ids=f'["{uuid.UUID(int=number)}"]',
        fields='{"Person.idNumber":"read","Person.name":"read"}',
    )


def worker_main(
    worker: int,
    url: str,
    mode: str,
    appenders: int,
    duration: float,
    think: float,
    keyring_path: str,
    barrier: Any,
    results: Any,
) -> None:
    work = _worker(worker, url, mode, appenders, duration, think, keyring_path, barrier)
    results.put(asyncio.run(work))


async def _worker(
    worker: int,
    url: str,
    mode: str,
    appenders: int,
    duration: float,
    think: float,
    keyring_path: str,
    barrier: Any,
) -> dict[str, float]:
    if mode == "old":  # AuditWriter looks append_entries up in its module at each flush
        audit_chain.append_entries = old_append_entries  # type: ignore[assignment]
    macs = AuditMac(Keyring.load(Path(keyring_path)))
    engine = make_engine(url)
    writer = audit_chain.AuditWriter(make_sessionmaker(engine), macs=macs)
    # Warm-up: the pool's connections, prepared statements, the mac_start anchor.
    await asyncio.gather(
        *(writer.append(_entry(worker, n, 0)) for n in range(appenders)),
    )
    before = vars(audit_chain.AppendCounts(**vars(audit_chain.counts)))
    await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
    cpu0, wall0 = time.process_time(), time.monotonic()
    deadline = wall0 + duration
    done = 0

    async def appender(number: int) -> None:
        nonlocal done
        count = 0
        while time.monotonic() < deadline:
            count += 1
            await writer.append(_entry(worker, number, count))
            done += 1
            if think:
                await asyncio.sleep(think)

    await asyncio.gather(*(appender(n) for n in range(appenders)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    after = vars(audit_chain.counts)
    await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)  # the parent reads the server's CPU
    await engine.dispose()
    return {
        "appends": done,
        "cpu": cpu,
        "wall": wall,
        **{f"d_{key}": after[key] - before[key] for key in before},
    }


# ----------------------------------------------------------------------------- the parent
def _server_ticks(postmaster: int) -> int:
    """user+system clock ticks of the cluster's processes (backends are its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster or int(entry) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total


@dataclass
class Run:
    mode: str
    appends: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    groups: int = 0
    statements: int = 0
    head_moved: int = 0
    locked: int = 0
    verified: str = ""
    top: list[tuple[str, int, float, float]] = field(default_factory=list)
    waits: Counter[str] = field(default_factory=Counter)
    samples: int = 0

    @property
    def rate(self) -> float:
        return self.appends / self.wall

    @property
    def client_us(self) -> float:
        return self.client_cpu / self.appends * 1e6

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.appends * 1e6


async def _sample_waits(admin_url: str, stop: asyncio.Event, run: Run) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url)
    try:
        while not stop.is_set():
            rows = await connection.fetch(
                "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait"
                " FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
            run.samples += 1
            run.waits.update(row["wait"] for row in rows)
            await asyncio.sleep(0.01)
    finally:
        await connection.close()


async def _prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    finally:
        await engine.dispose()


async def _statements(url: str, dbname: str, run: Run, macs: AuditMac) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT query, calls, total_exec_time, mean_exec_time"
                    " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                    " WHERE d.datname = :db ORDER BY total_exec_time DESC LIMIT 8"
                ),
                {"db": dbname},
            )
            run.top = [(str(r[0]), int(r[1]), float(r[2]), float(r[3])) for r in rows]
        async with AsyncSession(engine) as session:
            report = await audit_chain.verify_chain(session, macs=macs)
            count = (await session.execute(select(func.count(AuditEntry.id)))).scalar_one()
        run.verified = (
            f"{'intact' if report.ok else 'BROKEN: ' + str(report.reason)},"
            f" {report.entries} of {count} entries, {report.mac_entries} MACs hold"
        )
    finally:
        await engine.dispose()


def one_run(cluster: Any, mode: str, index: int, args: argparse.Namespace, keyring: Path) -> Run:
    dbname = f"audit_bench_{index}_{mode}"
    url = cluster.create_database(dbname)
    asyncio.run(_prepare(url))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=worker_main,
            args=(
                n,
                url,
                mode,
                args.concurrency // PROCESSES,
                args.duration,
                args.think_ms / 1000,
                str(keyring),
            ),
            kwargs={"barrier": barrier, "results": results},
        )
        for n in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    run = Run(mode)
    admin = cluster.url(dbname, driver=None)

    async def observe() -> None:
        await asyncpg_reset(admin)
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
        ticks0 = _server_ticks(cluster.pid)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_waits(admin, stop, run))
        await asyncio.sleep(args.duration)
        stop.set()
        await sampler
        run.server_cpu = (_server_ticks(cluster.pid) - ticks0) / os.sysconf("SC_CLK_TCK")
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)

    asyncio.run(observe())
    for _ in workers:
        got = results.get(timeout=120)
        run.appends += int(got["appends"])
        run.wall = max(run.wall, got["wall"])
        run.client_cpu += got["cpu"]
        run.groups += int(got["d_groups"])
        run.statements += int(got["d_statements"])
        run.head_moved += int(got["d_head_moved"])
        run.locked += int(got["d_locked"])
    for process in workers:
        process.join()
    asyncio.run(_statements(url, dbname, run, AuditMac(Keyring.load(keyring))))
    cluster.drop_database(dbname)
    return run


async def asyncpg_reset(admin_url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute("SELECT pg_stat_statements_reset()")
    finally:
        await connection.close()


def _short(query: str) -> str:
    query = " ".join(query.split())
    return query if len(query) <= 110 else query[:107] + "…"


def report(runs: list[Run], args: argparse.Namespace, load_before: str, load_after: str) -> str:
    lines = [
        f"# Audit append: advisory lock vs one statement ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "```",
        f".venv/bin/python bench/audit_append_bench.py --duration {args.duration:g}"
        f" --reps {args.reps} --concurrency {args.concurrency} --think-ms {args.think_ms:g}",
        "```",
        "",
        f"{PROCESSES} processes, c={args.concurrency} appenders in all, MAC'd entries"
        f" ({SUITE}), throw-away PostgreSQL cluster (fsync off) with pg_stat_statements;"
        f" {os.cpu_count()} CPUs. Load before: `{load_before}`; after: `{load_after}`.",
        "",
        "CPU per append: the two workers' process CPU, and the cluster's backends' CPU "
        "(user+system from /proc), over the run.",
        "",
        "| run | mode | appends/s | worker CPU µs/append | server CPU µs/append | "
        "entries/group | round trips/group | head moved | locked | chain |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for number, run in enumerate(runs, 1):
        # A locked group: BEGIN, LOCK TABLE, SELECT … FOR UPDATE, INSERT, UPDATE, COMMIT.
        groups = run.groups + run.locked
        per_group = run.appends / groups if groups else float("nan")
        statements = (run.statements + 6 * run.locked) / groups if groups else float("nan")
        lines.append(
            f"| {number} | {run.mode} | {run.rate:,.0f} | {run.client_us:,.0f} |"
            f" {run.server_us:,.0f} | {per_group:.2f} | {statements:.2f} |"
            f" {run.head_moved} | {run.locked} | {run.verified} |"
        )
    lines += ["", "Medians over the runs of each mode:", ""]
    lines += ["| mode | appends/s | worker CPU µs/append | server CPU µs/append |"]
    lines += ["|---|---:|---:|---:|"]
    medians = {}
    for mode in ("old", "new"):
        of_mode = [run for run in runs if run.mode == mode]
        medians[mode] = (
            statistics.median(run.rate for run in of_mode),
            statistics.median(run.client_us for run in of_mode),
            statistics.median(run.server_us for run in of_mode),
        )
        rate, client, server = medians[mode]
        lines.append(f"| {mode} | {rate:,.0f} | {client:,.0f} | {server:,.0f} |")
    old, new = medians["old"], medians["new"]
    lines += [
        "",
        f"new/old: appends/s ×{new[0] / old[0]:.2f}, worker CPU per append ×{new[1] / old[1]:.2f},"
        f" server CPU per append ×{new[2] / old[2]:.2f}.",
        "",
    ]
    for mode in ("old", "new"):
        run = next(run for run in reversed(runs) if run.mode == mode)
        lines += [
            f"## Top statements by total time, last `{mode}` run (pg_stat_statements)",
            "",
            "| calls | total ms | mean ms | statement |",
            "|---:|---:|---:|---|",
        ]
        for query, calls, total, mean in run.top:
            cell = _short(query).replace("|", "\\|")
            lines.append(f"| {calls:,} | {total:,.1f} | {mean:.3f} | `{cell}` |")
        advisory = any("pg_advisory" in query for query, *_ in run.top)
        lines += [
            "",
            f"Advisory lock among them: {'yes' if advisory else 'no'}.",
            "",
            f"Wait events of active client backends, {run.samples} samples every 10 ms"
            " (CPU: active, not waiting):",
            "",
            "| wait event | share of active samples |",
            "|---|---:|",
        ]
        total = sum(run.waits.values()) or 1
        for wait, count in run.waits.most_common(8):
            lines.append(f"| {wait} | {count / total:.0%} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--reps", type=int, default=2, help="runs per mode")
    parser.add_argument("--concurrency", type=int, default=8, help="appenders in all")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="pause of each appender between appends (a request's own work; 0: saturated)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from tests.pgcluster import ThrowawayCluster

    load_before = loadavg()
    settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "max_connections": "100",
    }
    runs = []
    with ThrowawayCluster(settings=settings) as cluster, _keyring() as keyring:
        order = ["old", "new"]
        for index in range(args.reps):
            for mode in order if index % 2 == 0 else order[::-1]:
                run = one_run(cluster, mode, index, args, keyring)
                print(
                    f"{mode}: {run.rate:,.0f} appends/s, worker {run.client_us:,.0f} µs,"
                    f" server {run.server_us:,.0f} µs per append; {run.verified}",
                    flush=True,
                )
                runs.append(run)
    text_out = report(runs, args, load_before, loadavg())
    out = args.out or ROOT / "bench" / "results" / f"audit_append_{datetime.now(UTC):%Y%m%d}.md"
    out.write_text(text_out + "\n", encoding="utf-8")
    print(text_out)
    print(f"→ {out}")


class _keyring:
    """A keyring with an audit key in a temporary directory, for the workers to load."""

    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "keyring.json"
        Keyring.load_or_create(path, SUITE)
        return path

    def __exit__(self, *_exc: object) -> None:
        self._dir.cleanup()


if __name__ == "__main__":
    main()
