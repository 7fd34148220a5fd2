#!/usr/bin/env python3
# ruff: noqa: E501  (long Markdown/SQL string pieces read better unbroken)
"""Person lookup latency at 10,000,000 people against 100,000 (issue 6 item 6).

    nice -n 10 .venv/bin/python bench/lookup_scale.py                 # 100k vs 10M, ~25 min
    .venv/bin/python bench/lookup_scale.py --large 1000000 --reps 2   # quicker check

One throw-away PostgreSQL cluster holds both databases, seeded with ``relief-gateway seed
--copy`` (same generator seed, one data dir, so one keyring and one token key). One gateway
``serve --workers 2`` per database runs for the whole measurement; the peer's ``load.py``
(raw client, c=8) reads ``person(idNumber)`` with every relation (scenario
``person_detail``, medical_insurance county token, ``X-Purpose: benefit_settlement``) from
one and then the other, alternating the order each repetition, so that other tenants' noise
hits both alike. The pool is built the same way at both sizes: every person of the benchmark
county (the one with most people at the small size, as ``run_bench.py`` picks it), their ID
numbers decrypted from the database (at the small size also checked against the generator).

Reported: req/s, p50/p99, server CPU per request (gateway tree + PostgreSQL cluster, from
``--watch-pid``) for each run, medians per size, the ratio large/small, then the evidence for
why: pg_stat_statements per database (mean time, buffer hits and reads per call of each
statement the lookup runs), ``EXPLAIN (ANALYZE, BUFFERS)`` of the lookup's statements at both
sizes, index sizes and b-tree depths. Markdown goes to ``bench/results/lookup_scale_<stamp>.md``
(and ``lookup_scale_latest.md``), raw JSON next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run_bench as rb  # the sibling script's process and HTTP helpers

REPO = rb.REPO
RESULTS_DIR = rb.RESULTS_DIR
SCENARIO = rb.SCENARIO_DIR / "person_detail.json"
WORKDIR_PREFIX = "relief-lookup-scale-"
# Both databases live in this cluster. WAL is minimal (the COPY seed truncates and loads in one
# transaction, so its tables skip WAL) and checkpoints are rare during the load.
CLUSTER_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "32GB",
    "checkpoint_timeout": "1h",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
}
TABLES = ("person", "household", "person_source", "relief_status", "enrollment", "cost_burden")
# The lookup as hand-written statements, for EXPLAIN: the person by blind index inside the
# caller's county, then each relation by person id (the gateway's own statements are in the
# pg_stat_statements table; these have the same predicates and indexes).
EXPLAIN_SQL = {
    "person": rb.SQL["person"],
    **{
        table: f"SELECT {cols} FROM {table} WHERE person_id = $1 ORDER BY {order}"
        for _key, table, cols, order in rb.CHILDREN
    },
}


def log(message: str) -> None:
    rb.log(message)


# ------------------------------------------------------------------------------ database


async def fetch(dsn: str, sql: str, *params: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *params))
    finally:
        await conn.close()


def q(dsn: str, sql: str, *params: Any) -> list[Any]:
    return asyncio.run(fetch(dsn, sql, *params))


async def county_pool(dsn: str, cipher: Any, county: str) -> list[str]:
    """Every ID number of the county, decrypted from the database (ordered by person id)."""
    rows = await fetch(
        dsn, "SELECT id, id_number_ct FROM person WHERE county_code = $1 ORDER BY id", county
    )
    return [
        cipher.open(
            bytes(r["id_number_ct"]), table="person", column="id_number", row_id=str(r["id"])
        )
        for r in rows
    ]


def largest_county(dsn: str) -> tuple[str, int]:
    rows = q(
        dsn,
        "SELECT county_code, count(*) AS n FROM person GROUP BY county_code ORDER BY n DESC, county_code DESC LIMIT 1",
    )
    return str(rows[0]["county_code"]), int(rows[0]["n"])


def table_facts(dsn: str) -> dict[str, Any]:
    """Row counts, sizes, all-visible share (COPY FREEZE) of the seeded tables, and every
    index with its size (and b-tree depth where pageinspect is available)."""
    out: dict[str, Any] = {"tables": {}, "indexes": []}
    for table in TABLES:
        row = q(
            dsn,
            "SELECT c.reltuples::bigint AS rows, pg_relation_size(c.oid) AS heap, "
            "pg_indexes_size(c.oid) AS idx, c.relpages, c.relallvisible FROM pg_class c WHERE c.oid = $1::regclass",
            table,
        )[0]
        out["tables"][table] = dict(row)
    try:
        q(dsn, "CREATE EXTENSION IF NOT EXISTS pageinspect")
        depth_sql = "(SELECT level FROM bt_metap(i.indexrelid::regclass::text))"
    except Exception:  # contrib not installed: sizes only
        depth_sql = "NULL::int"
    rows = q(
        dsn,
        f"SELECT i.indrelid::regclass::text AS tbl, i.indexrelid::regclass::text AS idx, "
        f"pg_relation_size(i.indexrelid) AS bytes, {depth_sql} AS level "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE i.indrelid::regclass::text = ANY($1) AND a.amname = 'btree' ORDER BY 1, 2",
        list(TABLES),
    )
    out["indexes"] = [dict(r) for r in rows]
    out["db_bytes"] = int(q(dsn, "SELECT pg_database_size(current_database()) AS b")[0]["b"])
    return out


def explain_lookups(
    dsn: str, cipher: Any, county: str, ids: list[str], samples: int = 5
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of each lookup statement for a few pool people (the first
    run per person is the one a cold row pays); the plans of the last person in full."""
    import random

    picked = random.Random(7).sample(ids, min(samples, len(ids)))

    async def run() -> dict[str, Any]:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        out: dict[str, Any] = {
            "timings_ms": {k: [] for k in EXPLAIN_SQL},
            "buffers": {k: [] for k in EXPLAIN_SQL},
            "plans": {},
        }
        try:
            for id_number in picked:
                bidx = cipher.blind_index(id_number, table="person", column="id_number")
                person_id = await conn.fetchval(
                    "SELECT id FROM person WHERE id_number_bidx = $1 AND county_code = $2",
                    bidx,
                    county,
                )
                for name, sql in EXPLAIN_SQL.items():
                    params = (bidx, county) if name == "person" else (person_id,)
                    plan = await conn.fetchval(
                        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params
                    )
                    doc = json.loads(plan)[0] if isinstance(plan, str) else plan[0]
                    top = doc["Plan"]
                    out["timings_ms"][name].append(round(doc["Execution Time"], 3))
                    out["buffers"][name].append(
                        {
                            "hit": top.get("Shared Hit Blocks", 0),
                            "read": top.get("Shared Read Blocks", 0),
                        }
                    )
                    text_plan = await conn.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}",
                        *params,
                    )
                    out["plans"][name] = "\n".join(r[0] for r in text_plan)
        finally:
            await conn.close()
        return out

    return asyncio.run(run())


def stat_statements(dsn: str, dbname: str) -> list[dict[str, Any]]:
    rows = q(
        dsn,
        "SELECT s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.shared_blks_hit, s.shared_blks_read "
        "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 "
        "ORDER BY s.total_exec_time DESC LIMIT 15",
        dbname,
    )
    return [dict(r) for r in rows]


# ------------------------------------------------------------------------------ load


def run_load(
    procs: rb.Processes,
    args: argparse.Namespace,
    *,
    url: str,
    headers_file: Path,
    pools_dir: Path,
    watch: dict[str, int],
    out: Path,
    label: str,
    seed: int,
) -> dict[str, Any]:
    argv = [
        sys.executable, str(args.load_py), "--url", url, "--headers-file", str(headers_file),
        "--scenario", str(SCENARIO), "-c", str(args.concurrency), "-n", str(args.max_requests),
        "-d", str(args.duration), "--warmup", str(args.warmup), "--pause", "0",
        "--seed", str(seed), "--label", label, "--json-out", str(out),
    ]  # fmt: skip
    for name, pid in watch.items():
        argv += ["--watch-pid", f"{name}={pid}"]
    env = {**os.environ, "RELIEF_BENCH_POOLS": str(pools_dir)}
    proc = procs.start(
        f"load.py {label}", argv, env=env, cwd=str(rb.BENCH), stdout=subprocess.DEVNULL
    )
    code, _ = procs.wait(proc, args.warmup + args.duration + 180)
    if code not in (0, 1) or not out.exists():
        raise rb.BenchError(f"load.py exited with {code} for {label}")
    result: dict[str, Any] = json.loads(out.read_text())["results"][0]
    result["others_pct"] = rb.others_pct(result)
    return result


def cpu_split(result: dict[str, Any]) -> dict[str, float]:
    """Server CPU ms per request by watched tree (``gateway``, ``postgres``)."""
    requests = result.get("requests") or 0
    seconds = result.get("server_cpu_s") or {}
    return {k: v * 1000 / requests for k, v in seconds.items()} if requests else {}


def cpu_ms(result: dict[str, Any]) -> float | None:
    per = cpu_split(result)
    return sum(per.values()) if per else None


# ------------------------------------------------------------------------------ report


def human(people: int) -> str:
    """10000000 → 10M, 100000 → 100k."""
    if people >= 10**6 and people % 10**6 == 0:
        return f"{people // 10**6}M"
    if people >= 10**3 and people % 10**3 == 0:
        return f"{people // 10**3}k"
    return str(people)


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def summarize(results: list[dict[str, Any]]) -> dict[str, float | None]:
    return {
        "rps": median([r.get("rps") for r in results]),
        "p50": median([(r.get("latency_ms") or {}).get("p50") for r in results]),
        "p99": median([(r.get("latency_ms") or {}).get("p99") for r in results]),
        "cpu": median([cpu_ms(r) for r in results]),
        "gw_cpu": median([cpu_split(r).get("gateway") for r in results]),
        "pg_cpu": median([cpu_split(r).get("postgres") for r in results]),
        "errors": sum(int(r.get("errors") or 0) for r in results),
        "requests": sum(int(r.get("requests") or 0) for r in results),
    }


def markdown(meta: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> str:
    small, large = meta["sizes"]
    s, lg = summarize(runs["small"]), summarize(runs["large"])

    def ratio(key: str) -> str:
        a, b = s[key], lg[key]
        return "–" if a is None or b is None or a == 0 else f"{b / a:.2f}"

    lines = [
        f"# Person lookup at {large:,} vs {small:,} people",
        "",
        f"Measured {meta['started_at']} on `{meta['git']}`, {meta['postgres']}, {os.cpu_count()} cores (shared VM).",
        f"Command: `{meta['command']}`.",
        "",
        f"Lookup: `person(idNumber)` with every relation (`bench/scenarios/person_detail.json`), county {meta['county']} "
        f"({meta['pool_small']:,} people at {small:,}, {meta['pool_large']:,} at {large:,}; pool = all of them), "
        f"medical_insurance county token, `X-Purpose: benefit_settlement`, authorization, audit and decryption on; "
        f"`relief-gateway serve --workers {meta['workers']}` per database, load.py raw client, c={meta['concurrency']}, "
        f"{meta['duration']:g} s after {meta['warmup']:g} s warm-up, {meta['reps']} alternated repetitions. "
        f"Cluster: shared_buffers {meta['shared_buffers']}, random_page_cost {meta['random_page_cost']}.",
        "",
        "| people | req/s | p50 ms | p99 ms | server CPU ms/req (gw + pg) | requests | errors |",
        "|---:|---:|---:|---:|---|---:|---:|",
        f"| {small:,} | {fmt(s['rps'])} | {fmt(s['p50'])} | {fmt(s['p99'])} | {fmt(s['cpu'], 2)} ({fmt(s['gw_cpu'], 2)} + {fmt(s['pg_cpu'], 2)}) | {s['requests']} | {s['errors']} |",
        f"| {large:,} | {fmt(lg['rps'])} | {fmt(lg['p50'])} | {fmt(lg['p99'])} | {fmt(lg['cpu'], 2)} ({fmt(lg['gw_cpu'], 2)} + {fmt(lg['pg_cpu'], 2)}) | {lg['requests']} | {lg['errors']} |",
        f"| **ratio {human(large)}/{human(small)}** | {ratio('rps')} | **{ratio('p50')}** | **{ratio('p99')}** | {ratio('cpu')} ({ratio('gw_cpu')} + {ratio('pg_cpu')}) | | |",
        "",
        "Medians over the repetitions. Target (issue 6): lookup latency at 10M within 1.2× of 100k.",
        "",
        "## Every run, in the order run",
        "",
        "| # | people | req/s | p50 ms | p99 ms | CPU ms/req (gw + pg) | others % |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for index, (size_key, result) in enumerate(meta["order"], start=1):
        r = runs[size_key][result]
        per = cpu_split(r)
        lat = r.get("latency_ms") or {}
        lines.append(
            f"| {index} | {meta['sizes'][0 if size_key == 'small' else 1]:,} | {fmt(r.get('rps'))} | {fmt(lat.get('p50'))} | "
            f"{fmt(lat.get('p99'))} | {fmt(cpu_ms(r), 2)} ({fmt(per.get('gateway'), 2)} + {fmt(per.get('postgres'), 2)}) | {fmt(r.get('others_pct'), 0)} |"
        )
    lines += ["", "## Seed (`relief-gateway seed --copy`, under `nice -n 10`)", ""]
    lines += [
        "| people | wall s | rows | rows/s | people/s | seed process CPU s (user + sys) | PostgreSQL CPU s | phases (s) | database size |",
        "|---:|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for key, size in zip(("small", "large"), meta["sizes"], strict=True):
        seed = meta["seed"][key]
        rows = seed["rows"]
        lines.append(
            f"| {size:,} | {seed['wall_s']:.1f} | {rows:,} | {rows / seed['wall_s']:,.0f} | {size / seed['wall_s']:,.0f} | "
            f"{seed.get('cpu_user_s', 0):.0f} + {seed.get('cpu_sys_s', 0):.0f} | {seed['postgres_cpu_s']:.0f} | {seed.get('phases', '')} | "
            f"{meta['facts'][key]['db_bytes'] / 2**30:.1f} GiB |"
        )
    lines += [
        "",
        "Rows = households + persons + person_source + relief statuses + enrollments + cost burdens.",
        "",
        "## Why (or why not) the lookup costs more at the large size",
        "",
        "### pg_stat_statements during the measured runs (per database, top statements by total time)",
        "",
    ]
    for key, size in zip(("small", "large"), meta["sizes"], strict=True):
        lines += [
            f"**{size:,} people**",
            "",
            "| calls | mean ms | shared hit / call | read / call | statement |",
            "|---:|---:|---:|---:|---|",
        ]
        for st in meta["statements"][key][:10]:
            calls = max(1, int(st["calls"]))
            query = " ".join(str(st["query"]).split())[:150].replace("|", "\\|")
            lines.append(
                f"| {calls} | {st['mean_exec_time']:.3f} | {st['shared_blks_hit'] / calls:.1f} | "
                f"{st['shared_blks_read'] / calls:.2f} | `{query}` |"
            )
        lines.append("")
    lines += [
        "### EXPLAIN (ANALYZE, BUFFERS) of the lookup's statements, 5 pool people each, after the runs",
        "",
        "| statement | execution ms at small (each person) | at large | buffers hit/read at large |",
        "|---|---|---|---|",
    ]
    for name in EXPLAIN_SQL:
        a = meta["explain"]["small"]["timings_ms"][name]
        b = meta["explain"]["large"]["timings_ms"][name]
        bufs = ", ".join(
            f"{x['hit']}/{x['read']}" for x in meta["explain"]["large"]["buffers"][name]
        )
        lines.append(f"| {name} | {', '.join(map(str, a))} | {', '.join(map(str, b))} | {bufs} |")
    lines += ["", "Plans at the large size (last sampled person):", "", "```"]
    for name, plan in meta["explain"]["large"]["plans"].items():
        lines += [f"-- {name}", plan]
    lines += ["```", "", "### Index sizes and b-tree levels (root level; depth = level + 1)", ""]
    lines += ["| index | size small | level | size large | level |", "|---|---:|---:|---:|---:|"]
    large_idx = {i["idx"]: i for i in meta["facts"]["large"]["indexes"]}
    for idx in meta["facts"]["small"]["indexes"]:
        other = large_idx.get(idx["idx"], {})
        lines.append(
            f"| {idx['idx']} | {idx['bytes'] / 2**20:,.1f} MiB | {idx['level'] if idx['level'] is not None else '–'} | "
            f"{other.get('bytes', 0) / 2**20:,.1f} MiB | {other.get('level') if other.get('level') is not None else '–'} |"
        )
    lines += [
        "",
        "Tables (all-visible pages after `seed --copy`, which loads with COPY FREEZE):",
        "",
    ]
    lines += [
        "| table | rows small | rows large | heap large | all-visible large |",
        "|---|---:|---:|---:|---:|",
    ]
    for table in TABLES:
        a, b = meta["facts"]["small"]["tables"][table], meta["facts"]["large"]["tables"][table]
        share = b["relallvisible"] / b["relpages"] * 100 if b["relpages"] else 0
        lines.append(
            f"| {table} | {a['rows']:,} | {b['rows']:,} | {b['heap'] / 2**30:.2f} GiB | {share:.0f}% |"
        )
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def main_run(
    args: argparse.Namespace, work: Path, procs: rb.Processes, holder: dict[str, Any]
) -> int:
    from gateway.crypto import FieldCipher, Keyring
    from tests.pgcluster import ThrowawayCluster

    peer = rb.load_peer_module(args.load_py)
    sizes = (args.small, args.large)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git": rb.git_describe(),
        "sizes": sizes,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
        "reps": args.reps,
        "shared_buffers": args.shared_buffers,
        "seed": {},
        "facts": {},
        "statements": {},
        "explain": {},
        "order": [],
    }
    cluster = ThrowawayCluster(
        dbname="relief_lookup_small",
        settings={**CLUSTER_SETTINGS, "shared_buffers": args.shared_buffers},
        honour_env=False,
    )
    holder["cluster"] = cluster
    cluster.start()
    if cluster.port == rb.PEER_PG_PORT:
        raise rb.BenchError("throw-away cluster landed on the peer's port; refusing")
    postmaster = cluster.pid
    assert postmaster is not None
    meta["postgres"] = q(cluster.dsn, "SELECT version()")[0][0].split(" on ")[0]
    meta["random_page_cost"] = rb.set_random_page_cost(cluster.dsn)
    cluster.create_database("relief_lookup_large")
    names = {"small": "relief_lookup_small", "large": "relief_lookup_large"}
    dsns = {k: cluster.url(v, driver=None) for k, v in names.items()}
    log(
        f"cluster {cluster.host}:{cluster.port} pid {postmaster} ({meta['postgres']}); work dir {work}"
    )

    data_dir = work / "data"  # one keyring and token key for both databases
    cmd = rb.gateway_cmd()
    envs = {k: rb.gateway_env(data_dir, cluster.url(v), None) for k, v in names.items()}
    for key, size in (("small", args.small), ("large", args.large)):
        env = envs[key]
        log(f"seeding {size:,} people into {names[key]} with seed --copy …")
        pg0 = peer.tree_cpu({"pg": postmaster})["pg"]
        run = rb.Run(args=args, stamp=stamp, work=work)
        run.procs = procs
        info = rb.run_cli(
            run, f"seed-{key}",
            ["nice", "-n", "10", *cmd, "seed", "--copy", "--persons", str(size), "--seed", str(args.seed)],
            env, args.seed_timeout,
        )  # fmt: skip
        info["postgres_cpu_s"] = round(peer.tree_cpu({"pg": postmaster})["pg"] - pg0, 1)
        output = (work / f"seed-{key}.log").read_text()
        counts = q(
            dsns[key],
            "SELECT (SELECT count(*) FROM household) + (SELECT count(*) FROM person) + (SELECT count(*) FROM person_source)"
            " + (SELECT count(*) FROM relief_status) + (SELECT count(*) FROM enrollment) + (SELECT count(*) FROM cost_burden) AS n",
        )[0]["n"]
        info["rows"] = int(counts)
        phases = [line for line in output.splitlines() if "COPY 批量生成用时" in line]
        info["phases"] = phases[-1].split("(", 1)[1].split(")", 1)[0] if phases else ""
        meta["seed"][key] = info
        log(
            f"seed {size:,}: {info['wall_s']:.0f} s, {counts:,} rows ({counts / info['wall_s']:,.0f} rows/s); {info['phases']}"
        )
        meta["facts"][key] = table_facts(dsns[key])

    cipher = FieldCipher(Keyring.load(data_dir / "keyring.json"))
    county, _ = largest_county(dsns["small"]) if args.county == "auto" else (args.county, 0)
    large_county, _ = largest_county(dsns["large"])
    meta["county"] = county
    meta["largest_county_large"] = large_county
    pools: dict[str, Path] = {}
    ids_by: dict[str, list[str]] = {}
    for key in ("small", "large"):
        ids = asyncio.run(county_pool(dsns[key], cipher, county))
        ids_by[key] = ids
        pool_dir = work / f"pools-{key}"
        pool_dir.mkdir()
        (pool_dir / "ids.txt").write_text("\n".join(ids) + "\n")
        pools[key] = pool_dir
        meta[f"pool_{key}"] = len(ids)
    _, generated, _, _ = rb.build_pools(args.small, args.seed, county)
    if sorted(generated) != sorted(ids_by["small"]):
        raise rb.BenchError(
            "the small pool decrypted from the database differs from the generator's"
        )
    log(
        f"county {county}: {len(ids_by['small']):,} / {len(ids_by['large']):,} people (largest at large size: {large_county})"
    )

    token_run = rb.Run(args=args, stamp=stamp, work=work)
    token_run.procs = procs
    rb.run_cli(
        token_run, "token",
        [*cmd, "token", "--dept", "medical_insurance", "--level", "county", "--region", county,
         "--subject", "bench-lookup-scale", "--ttl", "86400"],
        envs["small"], 60,
    )  # fmt: skip
    token = (work / "token.log").read_text().split()[-1]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "benefit_settlement"}
    headers_file = work / "headers.json"
    headers_file.write_text(json.dumps(headers))
    os.chmod(headers_file, 0o600)

    urls: dict[str, str] = {}
    gateways: dict[str, subprocess.Popen[bytes]] = {}
    for key in ("small", "large"):
        port = rb.free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = work / f"gateway-{key}.log"
        with open(log_path, "wb") as gateway_log:
            gateways[key] = procs.start(
                f"gateway-{key}",
                [*cmd, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
                env=envs[key], cwd=str(REPO), stdout=gateway_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        rb.wait_ready(base, gateways[key], 120, log_path)
        urls[key] = base + "/graphql"
        scenario = json.loads(SCENARIO.read_text())
        doc = rb.http_json(
            urls[key], {"query": scenario["query"], "variables": {"id": ids_by[key][0]}}, headers
        )
        if (
            doc.get("errors")
            or (doc.get("data") or {}).get("person", {}).get("idNumber") != ids_by[key][0]
        ):
            raise rb.BenchError(
                f"smoke lookup failed at {key}: {json.dumps(doc, ensure_ascii=False)[:400]}"
            )
        log(f"gateway {key} pid {gateways[key].pid} ready on {urls[key]}")

    runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    q(cluster.dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    q(cluster.dsn, "SELECT pg_stat_statements_reset()")
    for rep in range(args.reps):
        order = ("small", "large") if rep % 2 == 0 else ("large", "small")
        for key in order:
            rb.check_stop()
            size = sizes[0 if key == "small" else 1]
            out = RESULTS_DIR / f"lookup_scale_{stamp}-n{size}-r{rep + 1}.json"
            log(
                f"rep {rep + 1}/{args.reps}: {size:,} people, c={args.concurrency}, {args.duration:g} s"
            )
            result = run_load(
                procs, args, url=urls[key], headers_file=headers_file, pools_dir=pools[key],
                watch={"gateway": gateways[key].pid, "postgres": postmaster}, out=out,
                label=f"lookup N={size}", seed=args.seed + rep,
            )  # fmt: skip
            runs[key].append(result)
            meta["order"].append((key, len(runs[key]) - 1))
            lat = result.get("latency_ms") or {}
            log(
                f"  {result.get('rps', 0):.1f} req/s, p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
                f"{fmt(cpu_ms(result), 2)} CPU ms/req, errors {result.get('errors')}, others {result.get('others_pct')}%"
            )
            for name, proc in gateways.items():
                if proc.poll() is not None:
                    raise rb.BenchError(f"gateway {name} died")
    for key in ("small", "large"):
        meta["statements"][key] = stat_statements(cluster.dsn, names[key])
        meta["explain"][key] = explain_lookups(dsns[key], cipher, county, ids_by[key])

    report = markdown(meta, runs)
    md = RESULTS_DIR / f"lookup_scale_{stamp}.md"
    md.write_text(report)
    if not args.no_latest:
        (RESULTS_DIR / "lookup_scale_latest.md").write_text(report)
    (RESULTS_DIR / f"lookup_scale_{stamp}-meta.json").write_text(
        json.dumps({"meta": meta, "runs": runs}, default=str, indent=1, ensure_ascii=False)
    )
    print(report)
    log(f"wrote {md.relative_to(REPO)}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=100_000, help="people in the small database")
    parser.add_argument(
        "--large", type=int, default=10_000_000, help="people in the large database"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--county", default="auto", help="benchmark county (default: largest at --small)"
    )
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-d", "--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("-n", "--max-requests", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=4, help="alternated repetitions per size")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers per database")
    parser.add_argument("--shared-buffers", default="2GB", help="PostgreSQL shared_buffers")
    parser.add_argument("--seed-timeout", type=float, default=3600.0)
    parser.add_argument("--load-py", type=Path, default=rb.DEFAULT_LOAD_PY)
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument(
        "--no-latest", action="store_true", help="do not write lookup_scale_latest.md"
    )
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    os.chmod(work, 0o700)
    procs = rb.Processes()
    holder: dict[str, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        rb.STOP.set()
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 1
    try:
        code = main_run(args, work, procs, holder)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        code = 130
    except rb.BenchError as exc:
        log(f"FAILED: {exc}")
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        cluster = holder.get("cluster")
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        if args.keep_workdir:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"done (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
