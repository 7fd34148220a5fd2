#!/usr/bin/env python3
# ruff: noqa: E501  (long Markdown/SQL string pieces read better unbroken)
"""One-command benchmark: relief-gateway (GraphQL) against a hand-written asyncpg baseline.

    .venv/bin/python bench/run_bench.py --persons 100000 --concurrency 8 --duration 20

What it does, all on loopback, everything torn down at the end (also on failure or Ctrl-C):

1. starts a throw-away PostgreSQL (``tests.pgcluster.ThrowawayCluster``, never an external
   server), sets ``random_page_cost = 1.1`` (ALTER SYSTEM + reload, as the peer rig does),
   runs ``relief-gateway migrate`` and ``relief-gateway seed --persons N --seed 42`` with
   ``RELIEF_TODAY=2026-11-23``, then ``ANALYZE``;
2. regenerates the same population in-process (``gateway.domain.synthetic.generate_population`` is
   deterministic) and writes the pool of plaintext ID numbers of the benchmark county (the
   county with most people unless ``--county``); checks every one is in the database;
3. starts ``relief-gateway serve`` (one worker), mints a medical_insurance county token for
   that county (``X-Purpose: benefit_settlement``), waits for ``/readyz``, pages through the
   county once to collect the cursor pool;
4. for each scenario (``bench/scenarios/*.json``): runs the peer's ``load.py`` (raw client)
   against the gateway, then the same read as hand-written SQL through asyncpg in this process
   (same concurrency and duration, same decryption work), interleaved so that noise from
   other tenants of the machine hits both sides alike;
   (``--peer-shape`` adds the same reads with exactly the peer rig's field sets, gateway only);
5. optionally (``--profile``) profiles the gateway with py-spy and PostgreSQL with
   pg_stat_statements in an extra, unmeasured pass, and the seed command with py-spy;
6. prints a Markdown table, writes raw JSON to ``bench/results/<stamp>-*.json`` and the
   summary to ``bench/results/latest.md``.

See bench/README.md for what the numbers mean and how to compare with the peer rig.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH = REPO / "bench"
SCENARIO_DIR = BENCH / "scenarios"
RESULTS_DIR = BENCH / "results"
DEFAULT_LOAD_PY = REPO.parent / "shared" / "bench-peer" / "load.py"
TODAY = "2026-11-23"
SCENARIOS = ("person_detail", "county_page", "county_page_first")
# Same reads with exactly the peer rig's field sets (no baseline): like-for-like query shape.
PEER_SHAPE = ("person_detail_peershape", "county_page_peershape", "county_page_first_peershape")
SEALED = ("id_number", "name", "phone", "address")
PEER_PG_PORT = 55432  # the peer rig's PostgreSQL: never touched
PAGE_SIZE = 50
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# Set by SIGINT/SIGTERM/SIGHUP. The handler also raises KeyboardInterrupt, but an exception
# raised inside an event-loop callback can be swallowed by a library; every loop and wait in
# this script also checks the flag, so a stop request always ends the run within moments.
STOP = threading.Event()


def check_stop() -> None:
    if STOP.is_set():
        raise KeyboardInterrupt("stop requested")


# ------------------------------------------------------------------------ processes


def _arm_parent_death_signal() -> Callable[[], None] | None:
    """Children get SIGTERM if this process dies without cleaning up (kill -9, OOM)."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return arm


class Processes:
    """Every child this script starts, each in its own session (process group), so that a
    stop signals exactly that child's group, by its id, and nothing else."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(argv),
            start_new_session=True,
            preexec_fn=_arm_parent_death_signal(),
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        self.children.append((name, proc))
        return proc

    def wait(
        self, proc: subprocess.Popen[bytes], timeout: float
    ) -> tuple[int, resource.struct_rusage | None]:
        """Wait for a child and return (exit code, its own rusage); kill it on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                return proc.wait(), None
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage
            check_stop()
            if time.monotonic() > deadline:
                self.stop(proc)
                raise BenchError(f"{proc.args[:3]} took longer than {timeout:.0f} s; stopped")
            time.sleep(0.05)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name, proc in reversed(self.children):
            try:
                self.stop(proc)
            except Exception as exc:  # keep cleaning up the others
                log(f"could not stop {name} (pid {proc.pid}): {exc}")


WORKDIR_PREFIX = "relief-bench-"


def remove_stale_workdirs() -> None:
    """Delete work dirs of runs that were killed (kill -9) before cleaning up: only dirs with
    our owner.pid marker whose owner is gone (kept dirs, --keep-workdir, have no marker)."""
    import shutil

    for path in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        marker = path / "owner.pid"
        try:
            owner = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue


def free_port() -> int:
    for _ in range(20):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != PEER_PG_PORT:
            return port
    raise BenchError("no free port")


def load_peer_module(path: Path) -> Any:
    """The peer's load.py as a module: its CPU accounting and percentile code are reused for
    the baseline so both sides are measured the same way."""
    spec = importlib.util.spec_from_file_location("peer_load", path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_load"] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ HTTP (setup only)


def http_json(
    url: str, payload: dict[str, Any] | None, headers: dict[str, str], timeout: float = 30
) -> Any:
    if not url.startswith("http://127.0.0.1:"):
        raise BenchError(f"setup requests go to the local gateway only, not {url!r}")
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only, checked above
        url, data=data, headers={**headers, "Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_ready(
    base_url: str, proc: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> float:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise BenchError(f"gateway exited with {proc.returncode}; log:\n{tail(log_path)}")
        try:
            doc = http_json(base_url + "/readyz", None, {}, timeout=2)
            if doc.get("ready"):
                return time.monotonic() - started
            last = str(doc)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"gateway not ready after {timeout:.0f} s ({last}); log:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------------------ baseline (asyncpg)

PERSON_COLS = "id, id_number_ct, name_ct, phone_ct, address_ct, gender, birth_date, region_code"
RELIEF_COLS = "category, source_department, recognized_on, valid_from, valid_to"
ENROLL_COLS = "year, insurance_type, status, region_code, subsidy_category, subsidy_amount"
COST_COLS = (
    "year, total_cost, basic_insurance_paid, critical_illness_paid, medical_assistance_paid, "
    "personal_burden, inpatient_count"
)
# Children in the order the gateway's loaders use (person, then date/year, then id).
CHILDREN = (
    ("reliefStatuses", "relief_status", RELIEF_COLS, "valid_from, id"),
    ("enrollments", "enrollment", ENROLL_COLS, "year, id"),
    ("costBurdens", "cost_burden", COST_COLS, "year, id"),
)

SQL = {
    "person": f"SELECT {PERSON_COLS} FROM person WHERE id_number_bidx = $1 AND county_code = $2",
    "page_after": (
        f"SELECT {PERSON_COLS} FROM person WHERE county_code = $1 AND id > $2 ORDER BY id LIMIT 51"
    ),
    "page_first": f"SELECT {PERSON_COLS} FROM person WHERE county_code = $1 ORDER BY id LIMIT 51",
    "count": "SELECT count(*) FROM person WHERE county_code = $1",
}
for _key, _table, _cols, _order in CHILDREN:
    SQL[f"{_key}_one"] = f"SELECT {_cols} FROM {_table} WHERE person_id = $1 ORDER BY {_order}"
    SQL[f"{_key}_many"] = (
        f"SELECT person_id, {_cols} FROM {_table} WHERE person_id = ANY($1::uuid[]) "
        f"ORDER BY person_id, {_order}"
    )


def _children_arrays(alias: str) -> str:
    """Correlated ARRAY(SELECT ROW(...)) per relation: asyncpg decodes record[] natively
    (dates, numerics), so there is no JSON round trip."""
    parts = []
    for key, table, cols, order in CHILDREN:
        row = ", ".join(f"c.{c.strip()}" for c in cols.split(","))
        parts.append(
            f"ARRAY(SELECT ROW({row}) FROM {table} c WHERE c.person_id = {alias}.id "
            f'ORDER BY {", ".join("c." + o.strip() for o in order.split(","))}) AS "{key}"'
        )
    return ",\n  ".join(parts)


SQL["person_single"] = (
    f"SELECT p.{PERSON_COLS.replace(', ', ', p.')},\n  {_children_arrays('p')}\n"
    "FROM person p WHERE p.id_number_bidx = $1 AND p.county_code = $2"
)
_PAGE_SINGLE = (
    "WITH page AS ({page})\n"
    "SELECT p.*, (SELECT count(*) FROM person WHERE county_code = $1) AS total,\n  "
    + _children_arrays("p")
    + "\nFROM page p ORDER BY p.id"
)
SQL["page_after_single"] = _PAGE_SINGLE.format(page=SQL["page_after"])
SQL["page_first_single"] = _PAGE_SINGLE.format(page=SQL["page_first"])

CHILD_FIELDS = {
    "reliefStatuses": [c.strip() for c in RELIEF_COLS.split(",")],
    "enrollments": [c.strip() for c in ENROLL_COLS.split(",")],
    "costBurdens": [c.strip() for c in COST_COLS.split(",")],
}


@dataclass
class BaselineContext:
    cipher: Any
    county: str

    def open_person(self, row: Any) -> dict[str, Any]:
        """Decrypt the four sealed columns exactly as the gateway's vault does."""
        pid = str(row["id"])
        person: dict[str, Any] = {
            "gender": row["gender"],
            "birthDate": row["birth_date"],
            "regionCode": row["region_code"],
        }
        for column in SEALED:
            sealed = row[f"{column}_ct"]
            person[column] = (
                None
                if sealed is None
                else self.cipher.open(sealed, table="person", column=column, row_id=pid)
            )
        return person

    def blind_index(self, id_number: str) -> bytes:
        return self.cipher.blind_index(id_number, table="person", column="id_number")


def _records(values: Sequence[Any], key: str) -> list[dict[str, Any]]:
    names = CHILD_FIELDS[key]
    return [dict(zip(names, tuple(v), strict=True)) for v in values]


async def person_multi(conn: Any, ctx: BaselineContext, id_number: str) -> Any:
    row = await conn.fetchrow(SQL["person"], ctx.blind_index(id_number), ctx.county)
    if row is None:
        return None
    person = ctx.open_person(row)
    for key, *_ in CHILDREN:
        person[key] = [dict(r) for r in await conn.fetch(SQL[f"{key}_one"], row["id"])]
    return person


async def person_single(conn: Any, ctx: BaselineContext, id_number: str) -> Any:
    row = await conn.fetchrow(SQL["person_single"], ctx.blind_index(id_number), ctx.county)
    if row is None:
        return None
    person = ctx.open_person(row)
    for key, *_ in CHILDREN:
        person[key] = _records(row[key], key)
    return person


async def page_multi(conn: Any, ctx: BaselineContext, after: Any) -> Any:
    if after is None:
        rows = await conn.fetch(SQL["page_first"], ctx.county)
    else:
        rows = await conn.fetch(SQL["page_after"], ctx.county, after)
    has_next, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    total = await conn.fetchval(SQL["count"], ctx.county)
    people = {row["id"]: ctx.open_person(row) for row in rows}
    ids = list(people)
    for key, *_ in CHILDREN:
        for person in people.values():
            person[key] = []
        if ids:
            for r in await conn.fetch(SQL[f"{key}_many"], ids):
                people[r["person_id"]][key].append(dict(r))
    return {"totalCount": total, "hasNextPage": has_next, "nodes": list(people.values())}


async def page_single(conn: Any, ctx: BaselineContext, after: Any) -> Any:
    if after is None:
        rows = await conn.fetch(SQL["page_first_single"], ctx.county)
    else:
        rows = await conn.fetch(SQL["page_after_single"], ctx.county, after)
    has_next, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    nodes = []
    for row in rows:
        person = ctx.open_person(row)
        for key, *_ in CHILDREN:
            person[key] = _records(row[key], key)
        nodes.append(person)
    total = rows[0]["total"] if rows else 0
    return {"totalCount": total, "hasNextPage": has_next, "nodes": nodes}


# variant name -> (function, description)
BASELINE_VARIANTS: dict[str, dict[str, tuple[Callable[..., Awaitable[Any]], str]]] = {
    "person_detail": {
        "4q": (person_multi, "person by blind index + county, then 3 child queries by person_id"),
        "1q": (person_single, "one statement: person + ARRAY(SELECT ROW(...)) per relation"),
    },
    "county_page": {
        "5q": (page_multi, "keyset page LIMIT 51, count, 3 child queries with = ANY($1)"),
        "1q": (page_single, "one statement: page CTE + count + ARRAY(SELECT ROW(...)) per row"),
    },
}
BASELINE_VARIANTS["county_page_first"] = BASELINE_VARIANTS["county_page"]


def decode_cursor(cursor: str) -> Any:
    from schema.query import decode_cursor as gateway_decode

    return gateway_decode(cursor)


async def run_baseline(
    peer: Any,
    *,
    dsn: str,
    scenario: str,
    variant: str,
    ctx: BaselineContext,
    pool: list[Any],
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
    seed: int,
    watch: dict[str, int],
) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]

    fn, description = BASELINE_VARIANTS[scenario][variant]
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    try:

        async def phase(seconds: float, budget: int, stats: Any, run_seed: int) -> float:
            issued = 0
            started = time.perf_counter()
            deadline = started + seconds

            async def worker(wid: int) -> None:
                nonlocal issued
                rnd = random.Random(run_seed * 1000003 + wid)
                conn = conns[wid]
                while issued < budget and time.perf_counter() < deadline and not STOP.is_set():
                    issued += 1
                    arg = rnd.choice(pool) if pool else None
                    t0 = time.perf_counter()
                    try:
                        result = await fn(conn, ctx, arg)
                    except Exception as exc:  # counted, like load.py's transport errors
                        stats.err(
                            "exception", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
                        )
                        continue
                    dt = time.perf_counter() - t0
                    if not result or (isinstance(result, dict) and result.get("nodes") == []):
                        stats.err("check", dt, "empty result")
                        continue
                    stats.ok(dt, 0)

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            return time.perf_counter() - started

        if warmup > 0:
            await phase(warmup, peer.MAX_REQUESTS, peer.Stats("warmup"), seed + 7)
        stats = peer.Stats(f"{scenario}/baseline-{variant}")
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        sc0 = peer.sys_cpu_times()
        tc0 = peer.tree_cpu(watch)
        wall = await phase(duration, max_requests, stats, seed)
        tc1 = peer.tree_cpu(watch)
        sc1 = peer.sys_cpu_times()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
    summary = stats.summary(wall)
    done = summary["requests"]
    app_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server_cpu = {"baseline_app": round(app_cpu, 2)}
    server_cpu.update({k: round(tc1[k] - tc0[k], 2) for k in watch})
    busy = None
    if sc0 and sc1 and sc1[1] > sc0[1]:
        busy = round(100.0 * (sc1[0] - sc0[0]) / (sc1[1] - sc0[1]), 1)
    summary.update(
        concurrency=concurrency,
        variant=variant,
        variant_description=description,
        machine_busy_pct=busy,
        server_cpu_s=server_cpu,
        server_cpu_ms_per_req=round(1000.0 * sum(server_cpu.values()) / done, 3) if done else None,
        client_cpu_pct=0.0,  # the load loop runs inside the baseline app; counted there
    )
    summary["others_pct"] = others_pct(summary)
    return summary


def others_pct(summary: dict[str, Any]) -> float | None:
    """CPU used by other tenants during the run, in % of one core (as the peer's README):
    machine busy x cores, minus the rig's own CPU (server tree(s) + load client)."""
    busy, wall = summary.get("machine_busy_pct"), summary.get("duration_s")
    if busy is None or not wall:
        return None
    rig = sum((summary.get("server_cpu_s") or {}).values()) / wall * 100 + (
        summary.get("client_cpu_pct") or 0
    )
    return round(busy * (os.cpu_count() or 1) - rig, 1)


# ------------------------------------------------------------------------ py-spy summaries

_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_parts(frame: str) -> tuple[str, str]:
    match = _FRAME_RE.match(frame)
    if not match:
        return frame, ""
    return match.group("func"), match.group("file")


def _package_of(path: str) -> str:
    """Bucket a frame's file: a repo package (``gateway/storage``), a third-party
    distribution (``sqlalchemy``), or ``stdlib:<module>``. py-spy prints paths relative to
    their sys.path entry (``sqlalchemy/orm/session.py``), sometimes absolute."""
    if not path:
        return "?"
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith("/"):
        with contextlib.suppress(ValueError, OSError):
            path = str(Path(path).resolve().relative_to(REPO))
    parts = Path(path).parts
    if not parts:
        return "?"
    top = parts[0].removesuffix(".py")
    if top in ("gateway", "schema", "authz") and len(parts) > 2:
        return f"{top}/{parts[1]}"
    if top in sys.stdlib_module_names:
        return f"stdlib:{top}"
    if path.startswith("/") and "/lib/python3" in path:
        return "stdlib:" + Path(path).stem
    return top


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares per function and self share per package, from py-spy's raw
    (collapsed stack) output."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # drop a leading "process ..."/"thread ..." frame if present
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        labels = []
        for frame in frames:
            func, path = _frame_parts(frame)
            labels.append((f"{func} ({_short(path)})", _package_of(path)))
        self_fn[labels[-1][0]] += count
        self_pkg[labels[-1][1]] += count
        for label in {lab for lab, _ in labels}:
            incl_fn[label] += count
        for pkg in {p for _, p in labels}:
            incl_pkg[pkg] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return (
            [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)]
            if total
            else []
        )

    return {
        "samples": total,
        "self_by_function_pct": shares(self_fn),
        "inclusive_by_function_pct": shares(incl_fn),
        "self_by_package_pct": shares(self_pkg),
        "inclusive_by_package_pct": shares(incl_pkg),
    }


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    with contextlib.suppress(ValueError, OSError):
        return str(Path(path).resolve().relative_to(REPO))
    return path


# ------------------------------------------------------------------------ the run


@dataclass
class Run:
    args: argparse.Namespace
    stamp: str
    work: Path
    procs: Processes = field(default_factory=Processes)
    meta: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def result_path(self, name: str) -> Path:
        path = RESULTS_DIR / f"{self.stamp}-{name}.json"
        self.files.append(str(path.relative_to(REPO)))
        return path


def gateway_env(data_dir: Path, database_url: str, cipher_suite: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATABASE_URL=database_url,
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_TODAY=TODAY,
        RELIEF_ENV="development",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    if cipher_suite:
        env["RELIEF_CIPHER_SUITE"] = cipher_suite
    return env


def gateway_cmd() -> list[str]:
    script = Path(sys.executable).parent / "relief-gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def run_cli(
    run: Run,
    name: str,
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    log_path = run.work / f"{name}.log"
    started = time.monotonic()
    with open(log_path, "wb") as out:
        proc = run.procs.start(
            name, argv, env=env, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT
        )
    spy = None
    if profile_to is not None:
        spy = start_py_spy(run, proc.pid, profile_to, duration=None, rate=50)
    code, usage = run.procs.wait(proc, timeout)
    wall = time.monotonic() - started
    if spy is not None:
        with contextlib.suppress(BenchError):
            run.procs.wait(spy, 60)
    if code != 0:
        raise BenchError(f"{' '.join(argv[-6:])} exited with {code}; log:\n{tail(log_path)}")
    info: dict[str, Any] = {"wall_s": round(wall, 2), "output": tail(log_path, 5)}
    if usage is not None:
        info["cpu_user_s"] = round(usage.ru_utime, 2)
        info["cpu_sys_s"] = round(usage.ru_stime, 2)
        info["max_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return info


def py_spy_bin() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    import shutil

    return shutil.which("py-spy")


def start_py_spy(
    run: Run, pid: int, out: Path, duration: float | None, rate: int = 100
) -> subprocess.Popen[bytes] | None:
    spy = py_spy_bin()
    if spy is None:
        log("py-spy not found (pip install py-spy into the venv): no Python profile")
        return None
    argv = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if duration is not None:
        argv += ["--duration", str(int(duration))]
    log_path = out.with_suffix(".log")
    with open(log_path, "wb") as fh:
        return run.procs.start("py-spy", argv, stdout=fh, stderr=subprocess.STDOUT)


async def sql_exec(dsn: str, *statements: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        out = []
        for statement in statements:
            out.append(await conn.fetch(statement))
        return out
    finally:
        await conn.close()


def set_random_page_cost(dsn: str) -> str:
    asyncio.run(sql_exec(dsn, "ALTER SYSTEM SET random_page_cost = 1.1", "SELECT pg_reload_conf()"))
    deadline = time.monotonic() + 10
    value = ""
    while time.monotonic() < deadline:  # the reload is asynchronous; new sessions see it soon
        value = asyncio.run(sql_exec(dsn, "SHOW random_page_cost"))[0][0][0]
        if value == "1.1":
            break
        time.sleep(0.1)
    return value


def build_pools(
    persons: int, seed: int, county_arg: str
) -> tuple[str, list[str], dict[str, int], float]:
    from gateway.domain.synthetic import generate_population

    started = time.monotonic()
    by_county: dict[str, list[str]] = defaultdict(list)
    for bundle in generate_population(persons, seed=seed, today=date.fromisoformat(TODAY)):
        for member in bundle.members:
            by_county[member.region_code[:6]].append(member.id_number)
    elapsed = time.monotonic() - started
    sizes = {county: len(ids) for county, ids in by_county.items()}
    if county_arg == "auto":
        county = max(sizes, key=lambda c: (sizes[c], c))
    else:
        county = county_arg
        if county not in by_county:
            raise BenchError(f"county {county} has nobody at N={persons}")
    return county, by_county[county], sizes, elapsed


async def check_pool(dsn: str, cipher: Any, county: str, ids: list[str]) -> dict[str, int]:
    import asyncpg

    indexes = [cipher.blind_index(i, table="person", column="id_number") for i in ids]
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM person WHERE county_code = $1 AND id_number_bidx = ANY($2::bytea[])",
            county,
            indexes,
        )
        in_county = await conn.fetchval(
            "SELECT count(*) FROM person WHERE county_code = $1", county
        )
        counts = {}
        for table in (
            "person",
            "household",
            "relief_status",
            "enrollment",
            "cost_burden",
            "audit_log",
        ):
            counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {
        "pool": len(ids),
        "found": int(found),
        "in_county": int(in_county),
        "db_size_mb": round(size / 2**20, 1),
        **{f"rows_{k}": int(v) for k, v in counts.items()},
    }


def collect_cursors(url: str, headers: dict[str, str], expected: int) -> tuple[list[str], int]:
    """Page through the county once; the pool is every endCursor that leads to a non-empty
    page (i.e. all pages but the first)."""
    query = (
        "query Walk($cursor: String) { persons(first: 50, after: $cursor) "
        "{ totalCount pageInfo { hasNextPage endCursor } edges { node { idNumber } } } }"
    )
    cursors: list[str] = []
    cursor = None
    seen = 0
    total = -1
    for _ in range(expected // PAGE_SIZE + 5):  # bounded
        doc = http_json(url, {"query": query, "variables": {"cursor": cursor}}, headers)
        if doc.get("errors"):
            raise BenchError(f"paging failed: {doc['errors'][:2]}")
        conn = doc["data"]["persons"]
        total = conn["totalCount"]
        seen += len(conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        cursor = conn["pageInfo"]["endCursor"]
        cursors.append(cursor)
    if seen != expected or total != expected:
        raise BenchError(f"paging saw {seen} persons (totalCount {total}), expected {expected}")
    return cursors, seen


def smoke(url: str, headers: dict[str, str], ids: list[str], county_size: int) -> dict[str, Any]:
    scenario = json.loads((SCENARIO_DIR / "person_detail.json").read_text())
    doc = http_json(url, {"query": scenario["query"], "variables": {"id": ids[0]}}, headers)
    if doc.get("errors") or not doc.get("data", {}).get("person"):
        raise BenchError(
            f"person_detail smoke request failed: {json.dumps(doc, ensure_ascii=False)[:600]}"
        )
    if doc["data"]["person"]["idNumber"] != ids[0]:
        raise BenchError("person_detail smoke request returned another person")
    page = json.loads((SCENARIO_DIR / "county_page_first.json").read_text())
    doc2 = http_json(url, {"query": page["query"], "variables": {"cursor": None}}, headers)
    if doc2.get("errors") or doc2["data"]["persons"]["totalCount"] != county_size:
        raise BenchError(
            f"county_page smoke request failed: {json.dumps(doc2, ensure_ascii=False)[:600]}"
        )
    person = doc["data"]["person"]
    return {
        "person_response_bytes": len(json.dumps(doc, ensure_ascii=False).encode()),
        "page_response_bytes": len(json.dumps(doc2, ensure_ascii=False).encode()),
        "sample_person_children": {
            k: len(person[k] or []) for k in ("reliefStatuses", "enrollments", "costBurdens")
        },
    }


def run_load(
    run: Run,
    *,
    load_py: Path,
    scenario: str,
    url: str,
    headers_file: Path,
    watch: dict[str, int],
    pools_dir: Path,
    duration: float,
    warmup: float,
    out: Path,
    label: str,
    seed: int,
) -> dict[str, Any]:
    args = run.args
    argv = [
        sys.executable,
        str(load_py),
        "--url",
        url,
        "--headers-file",
        str(headers_file),
        "--scenario",
        str(SCENARIO_DIR / f"{scenario}.json"),
        "-c",
        str(args.concurrency),
        "-n",
        str(args.max_requests),
        "-d",
        str(duration),
        "--warmup",
        str(warmup),
        "--pause",
        "0",
        "--seed",
        str(seed),
        "--label",
        label,
        "--json-out",
        str(out),
    ]
    for name, pid in watch.items():
        argv += ["--watch-pid", f"{name}={pid}"]
    env = {**os.environ, "RELIEF_BENCH_POOLS": str(pools_dir)}
    proc = run.procs.start(f"load.py {scenario}", argv, env=env, cwd=str(BENCH))
    code, _ = run.procs.wait(proc, warmup + duration + 180)
    if code not in (0, 1) or not out.exists():
        raise BenchError(f"load.py exited with {code} for {scenario}")
    report = json.loads(out.read_text())
    result: dict[str, Any] = report["results"][0]
    result["others_pct"] = others_pct(result)
    return result


def pg_stat_top(dsn: str, limit: int = 12) -> dict[str, Any]:
    """Statements of the bench database since the last reset: the top ones by total time, and
    the totals (calls and execution time) to divide by the requests of the pass."""
    where = (
        "dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT ILIKE '%pg_stat_statements%'"
    )
    top, totals, kinds = asyncio.run(
        sql_exec(
            dsn,
            "SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, "
            "round(mean_exec_time::numeric, 3) AS mean_ms, rows, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 300) AS query "
            f"FROM pg_stat_statements WHERE {where} ORDER BY total_exec_time DESC LIMIT {int(limit)}",
            f"SELECT sum(calls) AS calls, round(sum(total_exec_time)::numeric, 1) AS total_ms "
            f"FROM pg_stat_statements WHERE {where}",
            f"SELECT upper(split_part(btrim(query), ' ', 1)) AS kind, sum(calls) AS calls "
            f"FROM pg_stat_statements WHERE {where} GROUP BY 1 ORDER BY 2 DESC",
        )
    )

    def plain(record: Any) -> dict[str, Any]:
        return {
            k: (float(v) if v is not None and not isinstance(v, (int, str)) else v)
            for k, v in dict(record).items()
        }

    return {
        "top": [plain(r) for r in top],
        "total_calls": int(totals[0]["calls"] or 0),
        "total_exec_ms": float(totals[0]["total_ms"] or 0),
        "calls_by_kind": {r["kind"]: int(r["calls"]) for r in kinds},
    }


# Where gateway CPU goes, by stack frames present in a sample (inclusive, overlapping).
PHASES = {
    "GraphQL validation": r"validate_document|ValidationCache\.on_validate",
    "GraphQL parse": r"ParserCache\.on_parse|graphql/language/parser",
    "GraphQL execution (resolvers, incl. their SQL)": r"graphql/execution/",
    "SQLAlchemy (all)": r"sqlalchemy/",
    "asyncpg (all)": r"asyncpg/",
    "pool checkout + pre-ping": r"_async_ping|do_ping|_checkout \(",
    "audit.append_entries": r"append_entries \(gateway/audit",
    "socket writes (kernel send)": r"_SelectorSocketTransport\.write \(",
    "field guard (authz/guard)": r"authz/guard",
    "decryption (gateway/crypto)": r"gateway/crypto",
    "JSON response encoding": r"JSONResponse|json/encoder",
    "HTTP protocol (h11, response send)": r"h11/_|RequestResponseCycle\.send|H11Protocol\.data_received",
    "ORM object loading (InstanceState, loading.py)": r"sqlalchemy/orm/loading\.py|InstanceState\.__init__",
    "strawberry argument conversion": r"convert_argument|convert_arguments",
    "logging": r"logging/",
}


def phase_shares(text: str) -> dict[str, float]:
    rows = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            rows.append((stack, int(count)))
    total = sum(n for _, n in rows)
    if not total:
        return {}
    return {
        name: round(100.0 * sum(n for s, n in rows if re.search(pattern, s)) / total, 1)
        for name, pattern in PHASES.items()
    }


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def lat(result: dict[str, Any], pct: str) -> float | None:
    return (result.get("latency_ms") or {}).get(pct)


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pick_median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition with the median req/s (the lower middle one for an even count), so that
    the req/s, latencies and CPU shown all come from one run."""
    ordered = sorted(results, key=lambda r: r.get("rps") or 0)
    return ordered[(len(ordered) - 1) // 2]


def markdown(
    run: Run,
    gw: dict[str, list[dict[str, Any]]],
    base: dict[str, dict[str, list[dict[str, Any]]]],
    profile: dict[str, Any],
) -> str:
    a, m = run.args, run.meta
    lines = [
        f"# relief-gateway benchmark: {m['started_at']}",
        "",
        f"`{m['command']}`",
        "",
        f"N = {a.persons} persons (seed {a.seed}, RELIEF_TODAY {TODAY}), benchmark county **{m['county']}** "
        f"({m['county_size']} persons, {m['cursor_pool']} random-page cursors), caller: medical_insurance "
        f"county token, X-Purpose benefit_settlement. Concurrency {a.concurrency}, {a.duration:g} s per run "
        f"after {a.warmup:g} s warm-up, {a.reps} repetition(s), gateway and baseline interleaved per scenario. "
        f"Gateway: `relief-gateway serve --workers {a.workers}` (uvicorn; CPU counted over the process tree). "
        "Load: peer `load.py --client raw`.",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['postgres']}; git {m['git']}. "
        f"Data: {m['pool_check']['rows_person']} persons, {m['pool_check']['rows_relief_status']} relief statuses, "
        f"{m['pool_check']['rows_enrollment']} enrollments, {m['pool_check']['rows_cost_burden']} cost burdens "
        f"({m['pool_check']['db_size_mb']} MB).",
        "",
        "| scenario | gateway req/s | p50 ms | p99 ms | server CPU ms/req (gw + pg) | errors | "
        "baseline req/s | p50 ms | p99 ms | CPU ms/req (app + pg) | gw/base req/s | gw/base CPU | others % (gw / base) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for scenario in a.scenarios:
        g = pick_median(gw[scenario])
        variants = base.get(scenario, {})
        best_name, b = None, None
        if variants:
            best_name = max(variants, key=lambda v: median_of(variants[v], "rps") or 0)
            b = pick_median(variants[best_name])
        gs = g.get("server_cpu_s") or {}
        g_cpu = g.get("server_cpu_ms_per_req")
        g_split = ""
        if g.get("requests"):
            g_split = (
                " (" + " + ".join(f"{1000 * v / g['requests']:.2f}" for v in gs.values()) + ")"
            )
        errors = sum(r["errors"] for r in gw[scenario])
        row = [
            scenario,
            fmt(g.get("rps")),
            fmt(lat(g, "p50")),
            fmt(lat(g, "p99")),
            f"{fmt(g_cpu, 2)}{g_split}",
            str(errors),
        ]
        if b is not None:
            bs = b.get("server_cpu_s") or {}
            b_split = (
                " (" + " + ".join(f"{1000 * v / b['requests']:.2f}" for v in bs.values()) + ")"
                if b.get("requests")
                else ""
            )
            ratio = (g.get("rps") or 0) / b["rps"] if b.get("rps") else None
            cpu_ratio = (
                g_cpu / b["server_cpu_ms_per_req"]
                if g_cpu and b.get("server_cpu_ms_per_req")
                else None
            )
            row += [
                f"{fmt(b.get('rps'))} ({best_name})",
                fmt(lat(b, "p50")),
                fmt(lat(b, "p99")),
                f"{fmt(b.get('server_cpu_ms_per_req'), 2)}{b_split}",
                fmt(ratio, 2),
                f"{fmt(cpu_ratio, 1)}x",
                f"{fmt(g.get('others_pct'), 0)} / {fmt(b.get('others_pct'), 0)}",
            ]
        else:
            row += ["–"] * 7
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Gateway: peer `load.py` closed loop over HTTP; server CPU = gateway process + PostgreSQL cluster "
        "(postmaster tree, incl. exited backends). Baseline: the same read as hand-written SQL on asyncpg "
        "inside the bench process (no HTTP, GraphQL, authorization or audit), decrypting the same four "
        "sealed columns with the gateway's FieldCipher; CPU = bench process + PostgreSQL. Baseline variant "
        "shown is the faster one; all variants:",
        "",
        "| scenario | baseline variant | req/s | p50 ms | p99 ms | CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in a.scenarios:
        for variant, results in base.get(scenario, {}).items():
            b = pick_median(results)
            lines.append(
                f"| {scenario} | {variant}: {b['variant_description']} | {fmt(b.get('rps'))} | "
                f"{fmt(lat(b, 'p50'))} | {fmt(lat(b, 'p99'))} | {fmt(b.get('server_cpu_ms_per_req'), 2)} | "
                f"{sum(r['errors'] for r in results)} |"
            )
    if a.reps > 1:
        lines += [
            "",
            "Per repetition (gateway req/s): "
            + "; ".join(
                f"{s}: " + ", ".join(fmt(r.get("rps")) for r in gw[s]) for s in a.scenarios
            ),
        ]
    t = run.timings
    seed_info = m.get("seed", {})
    lines += [
        "",
        "## Setup timings",
        "",
        f"cluster start {fmt(t.get('cluster_start'))} s, migrate {fmt(t.get('migrate'))} s, "
        f"**seed {fmt(t.get('seed'))} s** (seed process CPU {fmt(seed_info.get('cpu_user_s'))} s user + "
        f"{fmt(seed_info.get('cpu_sys_s'))} s sys, PostgreSQL CPU {fmt(seed_info.get('postgres_cpu_s'))} s, "
        f"max RSS {fmt(seed_info.get('max_rss_mb'))} MB; generating the same population alone takes "
        f"{fmt(t.get('generate_population'))} s in-process), ANALYZE {fmt(t.get('analyze'))} s, "
        f"gateway ready {fmt(t.get('gateway_ready'))} s, cursor walk {fmt(t.get('cursor_walk'))} s.",
    ]
    if profile:
        lines += [
            "",
            "## Profile (extra unmeasured pass, py-spy on the gateway, pg_stat_statements)",
            "",
        ]
        if "seed" in profile:
            lines += [_profile_md("seed", profile["seed"])]
        for scenario in a.scenarios:
            if scenario in profile:
                lines += [_profile_md(scenario, profile[scenario])]
    lines += ["", "Raw JSON: " + ", ".join(f"`{f}`" for f in run.files), ""]
    return "\n".join(lines)


def _profile_md(name: str, prof: dict[str, Any]) -> str:
    out = [f"### {name}", ""]
    spy = prof.get("py_spy") or {}
    if spy.get("samples"):
        out.append(
            f"py-spy: {spy['samples']} samples. Self time by package: "
            + ", ".join(f"{n} {p}%" for n, p in spy["self_by_package_pct"][:10])
            + "."
        )
        out.append("")
        out.append(
            "Inclusive by package: "
            + ", ".join(f"{n} {p}%" for n, p in spy["inclusive_by_package_pct"][:12])
            + "."
        )
        out.append("")
        out.append(
            "Top self functions: "
            + "; ".join(f"`{n}` {p}%" for n, p in spy["self_by_function_pct"][:12])
            + "."
        )
        out.append("")
    phases = spy.get("phases_pct") if spy else None
    if phases:
        out.append(
            "Share of gateway samples whose stack includes (overlapping): "
            + ", ".join(f"{n} {p}%" for n, p in phases.items() if p >= 0.5)
            + "."
        )
        out.append("")
    stmts = prof.get("pg_stat_statements")
    requests = prof.get("requests")
    if stmts and requests:
        kinds = ", ".join(f"{k} {v / requests:.2f}" for k, v in stmts["calls_by_kind"].items())
        out.append(
            f"pg_stat_statements ({requests} requests): {stmts['total_calls'] / requests:.2f} statements "
            f"and {stmts['total_exec_ms'] / requests:.3f} ms of execution per request ({kinds}); top by time:"
        )
        out.append("")
        out.append("| calls/req | mean ms | total ms | statement |")
        out.append("|---:|---:|---:|---|")
        for s in stmts["top"][:8]:
            query = s["query"].replace("|", "\\|")[:140]
            out.append(
                f"| {s['calls'] / requests:.2f} | {s['mean_ms']} | {s['total_ms']} | `{query}` |"
            )
        out.append("")
    return "\n".join(out)


def git_describe() -> str:
    """HEAD, whether product code has uncommitted changes, and a digest of the product source
    actually benchmarked (others may be editing the tree while a run goes on)."""
    import hashlib

    digest = hashlib.sha256()
    for top in ("gateway", "schema", "authz", "migrations"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".json", ".csv", ".conf", ".toml"):
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "--",
                "gateway",
                "schema",
                "authz",
                "migrations",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
        changed = [line[3:] for line in status if line.strip()]
    except (OSError, subprocess.SubprocessError):
        head, changed = "?", []
    dirty = f" + uncommitted changes in {', '.join(changed)}" if changed else ""
    return f"{head}{dirty}; source digest {digest.hexdigest()[:12]}"


def main_run(run: Run) -> int:
    from tests.pgcluster import ThrowawayCluster

    args = run.args
    peer = load_peer_module(args.load_py)
    run.meta.update(
        started_at=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        cpus=os.cpu_count(),
        python=platform.python_version(),
        git=git_describe(),
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )

    # 1. cluster, schema, data ------------------------------------------------------------
    settings = {"shared_preload_libraries": "pg_stat_statements"} if args.profile else {}
    t = time.monotonic()
    cluster = ThrowawayCluster(dbname="relief_bench", settings=settings, honour_env=False)
    run.cleanup_cluster = cluster  # type: ignore[attr-defined]
    cluster.start()
    run.timings["cluster_start"] = time.monotonic() - t
    if cluster.port == PEER_PG_PORT:
        raise BenchError("throw-away cluster landed on the peer's port; refusing")
    postmaster = cluster.pid
    assert postmaster is not None
    dsn = cluster.dsn
    run.meta["postgres"] = asyncio.run(sql_exec(dsn, "SELECT version()"))[0][0][0].split(" on ")[0]
    run.meta["random_page_cost"] = set_random_page_cost(dsn)
    if args.profile:
        asyncio.run(sql_exec(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    log(
        f"cluster {cluster.host}:{cluster.port} pid {postmaster} ({run.meta['postgres']}), "
        f"random_page_cost={run.meta['random_page_cost']}"
    )

    data_dir = run.work / "data"
    data_dir.mkdir()
    env = gateway_env(data_dir, cluster.dsn_asyncpg, args.cipher_suite)
    cmd = gateway_cmd()
    t = time.monotonic()
    run.meta["migrate"] = run_cli(run, "migrate", [*cmd, "migrate"], env, 300)
    run.timings["migrate"] = time.monotonic() - t
    log(f"migrate {run.timings['migrate']:.1f} s; seeding {args.persons} persons …")
    pg0 = peer.tree_cpu({"pg": postmaster})["pg"]
    t = time.monotonic()
    seed_profile = run.work / "seed.pyspy.txt" if args.profile else None
    run.meta["seed"] = run_cli(
        run,
        "seed",
        [*cmd, "seed", "--persons", str(args.persons), "--seed", str(args.seed)],
        env,
        args.seed_timeout,
        profile_to=seed_profile,
    )
    run.timings["seed"] = time.monotonic() - t
    run.meta["seed"]["postgres_cpu_s"] = round(peer.tree_cpu({"pg": postmaster})["pg"] - pg0, 2)
    log(f"seed {run.timings['seed']:.1f} s: {run.meta['seed']['output'].strip().splitlines()[-1]}")
    t = time.monotonic()
    asyncio.run(sql_exec(dsn, "ANALYZE"))
    run.timings["analyze"] = time.monotonic() - t

    # 2. pools ----------------------------------------------------------------------------
    county, ids, sizes, gen_s = build_pools(args.persons, args.seed, args.county)
    run.timings["generate_population"] = gen_s
    from gateway.crypto import FieldCipher, Keyring

    cipher = FieldCipher(Keyring.load(data_dir / "keyring.json"))
    check = asyncio.run(check_pool(dsn, cipher, county, ids))
    run.meta["pool_check"] = check
    if check["found"] != len(ids) or check["in_county"] != len(ids):
        raise BenchError(
            f"pool does not match the database: {check} (was synthetic.py changed "
            "between the seed and the pool generation?)"
        )
    pools_dir = run.work / "pools"
    pools_dir.mkdir()
    (pools_dir / "ids.txt").write_text("\n".join(ids) + "\n")
    run.meta.update(
        county=county,
        county_size=len(ids),
        counties=len(sizes),
        county_sizes_top5=Counter(sizes).most_common(5),
        peer_county_370102=sizes.get("370102"),
    )
    log(
        f"county {county}: {len(ids)} persons (of {len(sizes)} counties; generated in {gen_s:.1f} s); "
        f"all found by blind index"
    )

    # 3. gateway --------------------------------------------------------------------------
    token_info = run_cli(
        run,
        "token",
        [
            *cmd,
            "token",
            "--dept",
            "medical_insurance",
            "--level",
            "county",
            "--region",
            county,
            "--subject",
            "bench-mib-county",
            "--ttl",
            "86400",
        ],
        env,
        60,
    )
    token = (run.work / "token.log").read_text().split()[-1]
    del token_info
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "benefit_settlement"}
    headers_file = run.work / "headers.json"
    headers_file.write_text(json.dumps(headers))
    os.chmod(headers_file, 0o600)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    url = base_url + "/graphql"
    gw_log = run.work / "gateway.log"
    t = time.monotonic()
    with open(gw_log, "wb") as out:
        gateway = run.procs.start(
            "gateway",
            [
                *cmd,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            env=env,
            cwd=str(REPO),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run.timings["gateway_ready"] = wait_ready(base_url, gateway, 120, gw_log)
    log(f"gateway pid {gateway.pid} ready on {url} in {run.timings['gateway_ready']:.1f} s")
    run.meta["gateway_pid"] = gateway.pid
    run.meta["smoke"] = smoke(url, headers, ids, len(ids))
    t = time.monotonic()
    cursors, _ = collect_cursors(url, headers, len(ids))
    run.timings["cursor_walk"] = time.monotonic() - t
    if not cursors:
        raise BenchError(
            f"county {county} has a single page; county_page needs at least two (use more --persons)"
        )
    (pools_dir / "cursors.txt").write_text("\n".join(cursors) + "\n")
    run.meta["cursor_pool"] = len(cursors)
    log(f"{len(cursors)} cursors collected; smoke: {run.meta['smoke']}")

    # 4. measured runs, interleaved ----------------------------------------------------------
    watch = {"gateway": gateway.pid, "postgres": postmaster}
    base_watch = {"postgres": postmaster}
    pools: dict[str, list[Any]] = {
        "person_detail": ids,
        "county_page": [decode_cursor(c) for c in cursors],
        "county_page_first": [None],
    }
    ctx = BaselineContext(cipher=cipher, county=county)
    gw_results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    base_results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rep in range(args.reps):
        for scenario in args.scenarios:
            check_stop()
            out = run.result_path(f"gateway-{scenario}-r{rep + 1}")
            log(
                f"gateway {scenario} (rep {rep + 1}/{args.reps}): c={args.concurrency}, {args.duration:g} s"
            )
            result = run_load(
                run,
                load_py=args.load_py,
                scenario=scenario,
                url=url,
                headers_file=headers_file,
                watch=watch,
                pools_dir=pools_dir,
                duration=args.duration,
                warmup=args.warmup,
                out=out,
                label=f"relief-gateway {scenario} N={args.persons}",
                seed=args.seed + rep,
            )
            gw_results[scenario].append(result)
            if gateway.poll() is not None:
                raise BenchError(f"gateway died during {scenario}; log:\n{tail(gw_log)}")
            if args.skip_baseline or scenario not in BASELINE_VARIANTS:
                continue
            for variant in BASELINE_VARIANTS[scenario]:
                check_stop()
                log(f"baseline {scenario}/{variant}")
                summary = asyncio.run(
                    run_baseline(
                        peer,
                        dsn=dsn,
                        scenario=scenario,
                        variant=variant,
                        ctx=ctx,
                        pool=pools[scenario],
                        concurrency=args.concurrency,
                        duration=args.duration,
                        warmup=args.warmup,
                        max_requests=args.max_requests,
                        seed=args.seed + rep,
                        watch=base_watch,
                    )
                )
                base_results[scenario][variant].append(summary)
                check_stop()
                log(
                    f"  {summary['rps']} req/s, p50 {lat(summary, 'p50')} ms, p99 {lat(summary, 'p99')} ms, "
                    f"{summary['server_cpu_ms_per_req']} CPU ms/req, errors {summary['errors']}"
                )
    if base_results:
        path = run.result_path("baseline")
        path.write_text(
            json.dumps({k: dict(v) for k, v in base_results.items()}, indent=2, default=str)
        )

    # 5. profile pass (not measured) ------------------------------------------------------
    profile: dict[str, Any] = {}
    if seed_profile is not None and seed_profile.exists():
        profile["seed"] = {"py_spy": summarize_collapsed(seed_profile.read_text(errors="replace"))}
    if args.profile:
        for scenario in args.scenarios:
            check_stop()
            log(
                f"profile pass {scenario}: py-spy on pid {gateway.pid}, {args.profile_duration:g} s"
            )
            asyncio.run(sql_exec(dsn, "SELECT pg_stat_statements_reset()"))
            raw = run.work / f"{scenario}.pyspy.txt"
            spy = start_py_spy(run, gateway.pid, raw, duration=args.profile_duration + 1, rate=100)
            time.sleep(0.5)
            result = run_load(
                run,
                load_py=args.load_py,
                scenario=scenario,
                url=url,
                headers_file=headers_file,
                watch=watch,
                pools_dir=pools_dir,
                duration=args.profile_duration,
                warmup=0,
                out=run.work / f"profile-{scenario}.json",
                label="profile",
                seed=args.seed + 99,
            )
            if spy is not None:
                with contextlib.suppress(BenchError):
                    run.procs.wait(spy, args.profile_duration + 60)
            prof: dict[str, Any] = {
                "requests": result["requests"],
                "rps_under_profiler": result["rps"],
            }
            if raw.exists():
                stacks = raw.read_text(errors="replace")
                prof["py_spy"] = summarize_collapsed(stacks)
                prof["py_spy"]["phases_pct"] = phase_shares(stacks)
                prof["py_spy"]["raw_file"] = str(raw)
            prof["pg_stat_statements"] = pg_stat_top(dsn)
            profile[scenario] = prof
        path = run.result_path("profile")
        path.write_text(json.dumps(profile, indent=2, ensure_ascii=False, default=str))
        if args.keep_workdir:
            log(f"py-spy raw stacks kept in {run.work}")

    # 6. report ---------------------------------------------------------------------------
    run.meta["timings_s"] = {k: round(v, 2) for k, v in run.timings.items()}
    run.meta["gateway_log_tail"] = tail(gw_log, 5)
    summary_path = run.result_path("summary")
    summary_path.write_text(
        json.dumps(
            {
                "meta": run.meta,
                "gateway": gw_results,
                "baseline": {k: dict(v) for k, v in base_results.items()},
                "profile": profile,
            },
            indent=2,
            ensure_ascii=False,
            default=str,
        )
    )
    text = markdown(run, gw_results, base_results, profile)
    if not args.no_latest:
        (RESULTS_DIR / "latest.md").write_text(text)
    print(text)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--persons", type=int, default=100_000, help="synthetic persons to seed (default 100000)"
    )
    ap.add_argument("--seed", type=int, default=42, help="synthetic data seed (default 42)")
    ap.add_argument(
        "--county", default="auto", help="benchmark county (default auto: the one with most people)"
    )
    ap.add_argument(
        "-c", "--concurrency", type=int, default=8, help="requests in flight (default 8)"
    )
    ap.add_argument(
        "-d", "--duration", type=float, default=20.0, help="seconds per measured run (default 20)"
    )
    ap.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured warm-up seconds per run (default 3)"
    )
    ap.add_argument(
        "-n",
        "--max-requests",
        type=int,
        default=200_000,
        help="request cap per measured run (default 200000)",
    )
    ap.add_argument(
        "--reps",
        type=int,
        default=1,
        help="repetitions of each (gateway, baseline) pair (default 1)",
    )
    ap.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS + PEER_SHAPE,
        dest="scenarios",
        help="run only these scenarios (repeatable; default the three main ones)",
    )
    ap.add_argument(
        "--peer-shape",
        action="store_true",
        help="also run the *_peershape scenarios (the peer rig's exact field sets, no baseline)",
    )
    ap.add_argument("--skip-baseline", action="store_true", help="gateway runs only")
    ap.add_argument(
        "--workers", type=int, default=1, help="gateway processes (serve --workers, default 1)"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile: py-spy on the seed and (extra pass) on the gateway, pg_stat_statements",
    )
    ap.add_argument(
        "--profile-duration", type=float, default=15.0, help="seconds per profiled scenario"
    )
    ap.add_argument(
        "--cipher-suite",
        choices=["aes-256-gcm+hmac-sha256", "sm4-gcm+hmac-sm3"],
        help="RELIEF_CIPHER_SUITE for the keys the seed creates (default: the gateway's)",
    )
    ap.add_argument(
        "--load-py",
        type=Path,
        default=Path(os.environ.get("RELIEF_BENCH_LOAD_PY", DEFAULT_LOAD_PY)),
        help=f"the peer's load generator (default {DEFAULT_LOAD_PY})",
    )
    ap.add_argument(
        "--seed-timeout", type=float, default=3600.0, help="give up seeding after this many seconds"
    )
    ap.add_argument(
        "--keep-workdir", action="store_true", help="keep the temp dir (logs, pools, py-spy stacks)"
    )
    ap.add_argument(
        "--no-latest", action="store_true", help="do not overwrite bench/results/latest.md"
    )
    args = ap.parse_args(argv)
    args.scenarios = list(
        dict.fromkeys(
            (args.scenarios or list(SCENARIOS)) + (list(PEER_SHAPE) if args.peer_shape else [])
        )
    )
    if args.persons <= 0 or args.concurrency <= 0 or args.reps <= 0:
        ap.error("--persons, --concurrency and --reps must be positive")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        ap.error("--duration must be in (0, 600] and --warmup in [0, 60] (load.py's caps)")
    if not args.load_py.exists():
        ap.error(f"load.py not found at {args.load_py} (give --load-py)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-n{args.persons}-c{args.concurrency}"
    remove_stale_workdirs()
    work = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    os.chmod(work, 0o700)
    (work / "owner.pid").write_text(f"{os.getpid()}\n")
    run = Run(args=args, stamp=stamp, work=work)

    def on_signal(signum: int, _frame: Any) -> None:
        STOP.set()
        if asyncio._get_running_loop() is None:  # inside the baseline's loop: its workers stop
            raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT explicitly too: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 1
    try:
        code = main_run(run)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        code = 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
        code = 2
    finally:
        # Ignore further Ctrl-C while tearing down, so nothing is left behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run.procs.stop_all()
        cluster = getattr(run, "cleanup_cluster", None)
        if cluster is not None:
            cluster.close()
        if args.keep_workdir:
            (work / "owner.pid").unlink(missing_ok=True)
            log(f"work dir kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        log(f"done (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
