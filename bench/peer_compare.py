#!/usr/bin/env python3
# ruff: noqa: E501, S108  (long Markdown/command pieces read better unbroken; the peer rig lives in /tmp)
"""relief-gateway against the peer (PostGraphile 4 over PostgreSQL with row-level security) and
against hand-written SQL: same PostgreSQL, same 100,000 people, same load generator.

    bash ../shared/bench-peer/setup.sh                     # once: the peer's cluster and data
    .venv/bin/python bench/peer_compare.py --workers 2 --reps 3 --duration 15

What it does (all on loopback):

1. uses the peer rig's PostgreSQL (``/tmp/peerpg``, port 55432) and creates a second database,
   ``relief_peer``, next to the peer's own; migrates it and loads the peer's people into it
   through the gateway's writer (``bench/peer_import.py``: sealed fields, blind indexes) —
   unless it already holds them (``--reload`` forces a new import);
2. starts ``relief-gateway serve --workers W`` on it and PostGraphile with ``PEER_WORKERS=W``
   (``run_peer.sh --restart``): the same number of processes on both sides;
3. the caller: on the peer, its ``county_civil`` user of county 370102; on the gateway, a
   medical-insurance county token for 370102 (``X-Purpose: benefit_settlement``), which may
   read every field the peer's scenarios select. Authorization, audit (a durable hash-chained
   entry per read) and decryption are on; the peer has row-level security and column grants;
4. scenarios, each with the peer's field set (``bench/scenarios/*_peershape.json``):
   (a) ``person_detail``: one person by ID number (the peer's pool of 370102 ID numbers) with
   relief statuses, enrollments and cost burdens; (b') ``county_page_first``: the first page
   of 50 people with their relief statuses; (b) ``county_page``: a random page (the peer: a
   random OFFSET; the gateway: a random keyset cursor);
5. per repetition and scenario, the peer, the gateway and the hand-written SQL (asyncpg, in
   this process, decrypting the same fields; ``bench/run_bench.py``'s baseline) run one after
   the other, the order alternating between repetitions so that noise from other tenants of
   the machine hits all sides alike; c=8 (``--concurrency``), the peer's ``load.py`` (raw
   client) with ``--watch-pid`` on each server's process tree and on PostgreSQL;
6. prints a Markdown table of medians and writes it with the raw JSON to ``bench/results/``.

With ``--interpreted`` a second gateway runs with ``RELIEF_COMPILED_READS=false`` (every query
through the GraphQL executor) as a fourth side, alternated with the others: the compiled
path's gain measured in the same session (issue 17).

Server CPU per request (server process tree + PostgreSQL) is the figure to compare first; the
peer rig's README explains why (the machine is shared and req/s swings ±20–30%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import run_bench as rb  # noqa: E402  (bench/ is a folder of scripts, not a package)

PEER = (REPO.parent / "shared" / "bench-peer").resolve()
PEER_PG_HOST = "/tmp/peerpg"
PEER_PG_PORT = 55432
PEER_POSTMASTER = Path("/tmp/peerpg/data/postmaster.pid")
PEER_PIDFILE = Path("/tmp/peerrun/postgraphile.pid")
PEER_HEADERS = Path("/tmp/peerrun/headers/county.json")
PEER_URL = "http://127.0.0.1:5050/graphql"
COUNTY = "370102"
DATABASE = "relief_peer"
WORK = Path("/tmp/relief-peer")  # data dir (keyring of the imported rows), pools, raw JSON

# (label, peer scenario, gateway scenario, baseline scenario)
SCENARIOS = [
    ("(a) person_detail", "person_detail", "person_detail_peershape", "person_detail"),
    (
        "(b') county_page_first",
        "county_page_first",
        "county_page_first_peershape",
        "county_page_first",
    ),
    ("(b) county_page (random page)", "county_page", "county_page_peershape", "county_page"),
]


def log(message: str) -> None:
    print(f"[peer-compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def psql(database: str, sql: str) -> str:
    return subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-h",
            PEER_PG_HOST,
            "-p",
            str(PEER_PG_PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATABASE_URL=f"postgresql+asyncpg://postgres@/{DATABASE}?host={PEER_PG_HOST}&port={PEER_PG_PORT}",
        RELIEF_DATA_DIR=str(WORK / "data"),
        RELIEF_TODAY=rb.TODAY,
        RELIEF_ENV="development",
        PYTHONPATH=str(REPO),
    )
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*rb.gateway_cmd(), *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise rb.BenchError(f"relief-gateway {' '.join(args)} failed: {done.stderr[-800:]}")
    return done.stdout


def prepare_database(env: dict[str, str], reload: bool) -> dict[str, Any]:
    exists = psql("peer", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") == "1"
    if exists and not reload and (WORK / "data" / "keyring.json").exists():
        persons = psql(DATABASE, "SELECT count(*) FROM person")
        if persons == psql("peer", "SELECT count(*) FROM peer.person"):
            log(f"{DATABASE} already holds the peer's {persons} people")
            return {"reused": True, "persons": int(persons)}
    log(f"creating {DATABASE}, migrating, importing the peer's people …")
    psql("peer", f"DROP DATABASE IF EXISTS {DATABASE}")
    psql("peer", f"CREATE DATABASE {DATABASE}")
    (WORK / "data").mkdir(parents=True, exist_ok=True)
    cli(env, "migrate")
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peer_import.py"),
            "--peer-dsn",
            f"postgresql://postgres@/peer?host={PEER_PG_HOST}&port={PEER_PG_PORT}",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise rb.BenchError(f"import failed: {out.stderr[-800:]}")
    psql(DATABASE, "ANALYZE")
    return {
        "reused": False,
        "import": out.stdout.strip(),
        "import_s": round(time.monotonic() - started, 1),
    }


def start_gateway(
    env: dict[str, str], workers: int, port: int, log_name: str = "gateway.log"
) -> subprocess.Popen[bytes]:
    out = open(WORK / log_name, "wb")  # noqa: SIM115  (kept open for the server's life)
    proc = subprocess.Popen(
        [
            *rb.gateway_cmd(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rb.wait_ready(f"http://127.0.0.1:{port}", proc, 120, WORK / log_name)
    return proc


def start_peer(workers: int) -> None:
    env = {**os.environ, "PEER_WORKERS": str(workers)}
    done = subprocess.run(
        ["bash", str(PEER / "run_peer.sh"), "--restart"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise rb.BenchError(f"run_peer.sh failed: {done.stderr[-800:]}")


def load(
    url: str,
    headers: Path,
    scenario: Path,
    watch: dict[str, str],
    duration: float,
    warmup: float,
    concurrency: int,
    out: Path,
    seed: int,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(PEER / "load.py"),
        "--url",
        url,
        "--headers-file",
        str(headers),
        "--scenario",
        str(scenario),
        "-c",
        str(concurrency),
        "-n",
        "2000000",
        "-d",
        str(duration),
        "--warmup",
        str(warmup),
        "--seed",
        str(seed),
        "--json-out",
        str(out),
    ]
    for name, pid in watch.items():
        argv += ["--watch-pid", f"{name}={pid}"]
    env = {**os.environ, "RELIEF_BENCH_POOLS": str(WORK / "pools")}
    done = subprocess.run(argv, env=env, cwd=PEER, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not out.exists():
        raise rb.BenchError(f"load.py failed for {scenario.name}: {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(out.read_text())["results"][0]
    return result


def cpu_split(result: dict[str, Any]) -> str:
    done = result["requests"] or 1
    parts = result.get("server_cpu_s") or {}
    return " + ".join(f"{1000.0 * v / done:.2f}" for v in parts.values())


def median(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def latency(results: list[dict[str, Any]], pct: str) -> float | None:
    values = [r["latency_ms"][pct] for r in results if r.get("latency_ms")]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", type=int, default=2, help="processes on each side (default 2)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--reload", action="store_true", help="import the peer's people again")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--only", action="append", help="scenario label prefix, e.g. '(a)'")
    ap.add_argument(
        "--interpreted",
        action="store_true",
        help="also run a second gateway with RELIEF_COMPILED_READS=false (the GraphQL executor) "
        "as a fourth side, alternated with the others",
    )
    args = ap.parse_args(argv)

    if not PEER_POSTMASTER.exists():
        raise SystemExit(f"the peer rig is not set up: run `bash {PEER}/setup.sh` first")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "pools").mkdir(exist_ok=True)
    env = gateway_env()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git": rb.git_describe(),
        "python": platform.python_version(),
        "args": vars(args),
    }
    meta["database"] = prepare_database(env, args.reload)

    token = cli(
        env,
        "token",
        "--dept",
        "medical_insurance",
        "--level",
        "county",
        "--region",
        COUNTY,
        "--subject",
        "bench-mib-370102",
        "--ttl",
        "86400",
    ).split()[-1]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "benefit_settlement"}
    headers_file = WORK / "headers.json"
    headers_file.write_text(json.dumps(headers))
    os.chmod(headers_file, 0o600)
    ids = (Path("/tmp/peerdata/pools") / f"ids_{COUNTY}.txt").read_text().split()
    (WORK / "pools" / "ids.txt").write_text("\n".join(ids) + "\n")

    port = rb.free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    gateway = start_gateway(env, args.workers, port)
    interpreted = None
    interpreted_url = ""
    if args.interpreted:
        interpreted_port = rb.free_port()
        interpreted_url = f"http://127.0.0.1:{interpreted_port}/graphql"
        interpreted = start_gateway(
            {**env, "RELIEF_COMPILED_READS": "false"},
            args.workers,
            interpreted_port,
            log_name="gateway-interpreted.log",
        )
    try:
        start_peer(args.workers)
        cursors, seen = rb.collect_cursors(url, headers, len(ids))
        (WORK / "pools" / "cursors.txt").write_text("\n".join(cursors) + "\n")
        log(
            f"gateway pid {gateway.pid} on {url}, PostGraphile x{args.workers}; {seen} people in {COUNTY}, {len(cursors)} cursors"
        )
        meta["county_people"] = seen

        from gateway.crypto import FieldCipher, Keyring

        peer_module = rb.load_peer_module(PEER / "load.py")
        ctx = rb.BaselineContext(
            cipher=FieldCipher(Keyring.load(WORK / "data" / "keyring.json")), county=COUNTY
        )
        dsn = f"postgresql://postgres@/{DATABASE}?host={PEER_PG_HOST}&port={PEER_PG_PORT}"
        pg_pid = PEER_POSTMASTER.read_text().split()[0]
        pools: dict[str, list[Any]] = {
            "person_detail": ids,
            "county_page": [rb.decode_cursor(c) for c in cursors],
            "county_page_first": [None],
        }
        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        scenarios = [
            s for s in SCENARIOS if not args.only or any(s[0].startswith(o) for o in args.only)
        ]
        for rep in range(args.reps):
            for label, peer_scn, gw_scn, base_scn in scenarios:
                slot = results.setdefault(
                    label, {"peer": [], "gateway": [], "interpreted": [], "sql": []}
                )
                sides = ["peer", "gateway", "sql"] if rep % 2 == 0 else ["gateway", "peer", "sql"]
                if interpreted is not None:
                    sides.insert(2 if rep % 2 == 0 else 0, "interpreted")
                for side in sides:
                    out = WORK / f"{stamp}-{gw_scn}-{side}-r{rep + 1}.json"
                    if side == "peer":
                        r = load(
                            PEER_URL,
                            PEER_HEADERS,
                            PEER / "scenarios" / f"{peer_scn}.json",
                            {"postgraphile": str(PEER_PIDFILE), "postgres": str(PEER_POSTMASTER)},
                            args.duration,
                            args.warmup,
                            args.concurrency,
                            out,
                            42 + rep,
                        )
                    elif side in ("gateway", "interpreted"):
                        server = gateway if side == "gateway" else interpreted
                        assert server is not None
                        r = load(
                            url if side == "gateway" else interpreted_url,
                            headers_file,
                            BENCH / "scenarios" / f"{gw_scn}.json",
                            {"gateway": str(server.pid), "postgres": str(PEER_POSTMASTER)},
                            args.duration,
                            args.warmup,
                            args.concurrency,
                            out,
                            42 + rep,
                        )
                    else:
                        if args.skip_baseline:
                            continue
                        r = asyncio.run(
                            rb.run_baseline(
                                peer_module,
                                dsn=dsn,
                                scenario=base_scn,
                                variant="1q",
                                ctx=ctx,
                                pool=pools[base_scn],
                                concurrency=args.concurrency,
                                duration=args.duration,
                                warmup=args.warmup,
                                max_requests=2_000_000,
                                seed=42 + rep,
                                watch={"postgres": int(pg_pid)},
                            )
                        )
                    slot[side].append(r)
                    log(
                        f"{label} rep {rep + 1} {side}: {r['rps']} req/s, p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms, CPU {r['server_cpu_ms_per_req']} ms/req ({cpu_split(r)}), errors {r['errors']}"
                    )
                if gateway.poll() is not None:
                    raise rb.BenchError("the gateway died; see " + str(WORK / "gateway.log"))
    finally:
        for server in (gateway, interpreted):
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)

    lines = [
        f"# relief-gateway vs PostGraphile vs hand-written SQL — {meta['started']}",
        "",
        f"`{meta['command']}` at {meta['git']}; same PostgreSQL (peer rig, 127.0.0.1:{PEER_PG_PORT}), same {meta['database'].get('persons', 100000)} people,",
        f"county {COUNTY} ({meta['county_people']} people), c={args.concurrency}, {args.workers} process(es) per server, {args.reps} x {args.duration:g} s per cell, medians;",
        "CPU = server process tree + PostgreSQL per request (hand-written SQL: this process + PostgreSQL).",
        "",
        "| scenario | system | req/s | p50 ms | p99 ms | CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, sides in results.items():
        for side in ("peer", "gateway", "interpreted", "sql"):
            rs = sides[side]
            if not rs:
                continue
            name = {
                "peer": "PostGraphile 4.14 (RLS)",
                "gateway": "**relief-gateway**",
                "interpreted": "relief-gateway, executor (RELIEF_COMPILED_READS=false)",
                "sql": "hand-written SQL (asyncpg)",
            }[side]
            lines.append(
                f"| {label} | {name} | {median(rs, 'rps'):.0f} | {latency(rs, 'p50'):.1f} | {latency(rs, 'p99'):.1f} | "
                f"{median(rs, 'server_cpu_ms_per_req'):.2f} | {sum(r['errors'] for r in rs)} |"
            )
        gw, peer, sql = (sides[k] for k in ("gateway", "peer", "sql"))
        if gw and peer:
            ratio = f"| {label} | ratios | gateway/peer req/s {median(gw, 'rps') / median(peer, 'rps'):.2f}; CPU {median(gw, 'server_cpu_ms_per_req') / median(peer, 'server_cpu_ms_per_req'):.2f}; p99 {latency(gw, 'p99') / latency(peer, 'p99'):.2f}"
            if sql:
                ratio += f"; gateway/SQL req/s {median(gw, 'rps') / median(sql, 'rps'):.2f}"
            lines.append(ratio + " | | | | | |")
    text = "\n".join(lines) + "\n"
    rb.RESULTS_DIR.mkdir(exist_ok=True)
    (rb.RESULTS_DIR / f"peer_compare_{stamp}.md").write_text(text)
    (rb.RESULTS_DIR / f"peer_compare_{stamp}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1, default=str, ensure_ascii=False)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
