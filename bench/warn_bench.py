#!/usr/bin/env python3
"""The monthly high-cost warning run on PostgreSQL: wall time, CPU and peak memory for N people.

    .venv/bin/python bench/warn_bench.py                      # 1,000,000 people, Shanxi rules
    .venv/bin/python bench/warn_bench.py --persons 20000 --province anhui

The question it answers (issue 4): how long ``relief-gateway warn run --month 2026-10`` takes,
and how much memory it needs, for a province of 1,000,000 people with cost burdens, compared
with the database's floor for the same selection.

What one run does:

1. **Database.** A throw-away PostgreSQL cluster (``tests.pgcluster.ThrowawayCluster``, never an
   external server), migrated with the gateway's migrations.
2. **Data, set-based.** N people, their relief identities and two years of cost burdens are
   generated inside PostgreSQL with ``INSERT … SELECT … FROM generate_series`` (a minute for
   1 M, instead of an hour through the seed writer). The ciphertext columns (ID number, name)
   hold random bytes: the warning run never decrypts anything, it reads region codes,
   identities, deaths and cost figures. The shape follows ``gateway.domain.synthetic``: real county
   codes of the province, about 30% holding an identity (some exited around the month's last
   day, a few holding two), a few deaths before and within the month, about 40% with a cost
   burden per year (lognormal total, median about 1,500 yuan, a long tail), hospital stays
   growing with the cost. Then ``ANALYZE``.
3. **Baseline.** For each rule of the province, the same selection (population on the month's
   last day, deaths, threshold) as one hand-written ``SELECT count(*)``: what PostgreSQL needs
   just to find the people, without writing anything. Run once to warm up, then timed.
4. **The run.** ``relief-gateway warn run --month M --json``, the product's own command, in a
   fresh interpreter (multiprocessing ``spawn``) so its peak RSS (``ru_maxrss``) is its own:
   wall time, the process's CPU, PostgreSQL's CPU (the postmaster's process tree from
   ``/proc``), warnings and tasks created. Its counts must equal the baseline's.
5. **The re-run** of the same month: must create nothing (idempotent), timed the same way.
6. **Report**: Markdown on stdout and in ``bench/results/warn_latest.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gateway.domain import regions  # noqa: E402
from gateway.domain.settings import Province  # noqa: E402
from gateway.loop.config import Measure, Population, ProvinceRules, load_rules  # noqa: E402
from gateway.loop.warnings import Month, parse_month  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
PROVINCE_CODES = {"shandong": "37", "shanxi": "14", "anhui": "34"}
# Shandong's 2025 per-capita income is not in the shipped rules yet (a 2026 run needs it).
SHANDONG_INCOME_2025 = "41000"
CATEGORIES = (
    "MINIMUM_LIVING", "LIFTED_FROM_POVERTY", "MINIMUM_LIVING_EDGE", "MONITORED_UNSTABLE",
    "MONITORED_MARGINAL", "EXTREME_POVERTY", "SEVERE_DISABILITY", "RETURNED_TO_POVERTY",
    "SERIOUS_ILLNESS", "MONITORED_SUDDEN_HARDSHIP",
)  # fmt: skip


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- measuring -------------------------------------------------------------------------------
@dataclass
class Measurement:
    name: str
    wall_s: float
    cpu_s: float | None = None
    rss_peak_mb: float | None = None
    postgres_cpu_s: float | None = None
    warnings: int | None = None
    tasks: int | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def run_command(env: dict[str, str], argv: list[str]) -> dict[str, Any]:
    """``relief-gateway <argv>`` in this (fresh) process: exit code, output, wall, CPU, RSS."""
    os.environ.update(env)
    from gateway.cli import main

    out = io.StringIO()
    started_wall, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.redirect_stdout(out):
        code = main(argv)
    wall = time.perf_counter() - started_wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return {
        "code": code,
        "out": out.getvalue(),
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_peak_mb": after.ru_maxrss / 1024,  # kilobytes on Linux
    }


def isolated_command(env: dict[str, str], argv: list[str]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_command, env, argv).result()


# --- data ------------------------------------------------------------------------------------
def counties_of(province: str) -> list[str]:
    prefix = PROVINCE_CODES[province]
    return sorted(c.code for c in regions.all_counties() if c.code.startswith(prefix))


def _array(values: list[str] | tuple[str, ...]) -> str:
    # Digits and category codes only: safe to inline.
    assert all(v.replace("_", "").isalnum() for v in values)
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"


def generation_sql(persons: int, counties: list[str], month: Month) -> list[tuple[str, str]]:
    last, first = month.last_day.isoformat(), month.first_day.isoformat()
    year = month.year
    county = f"({_array(counties)})[1 + g % {len(counties)}]"
    person_id = "md5('person' || g)::uuid"
    # A lognormal total in yuan (median ~1,500, sigma 1.25), via Box-Muller.
    lognormal = (
        "least(1e8, round(exp(7.3 + 1.25 * sqrt(-2 * ln(1 - random()))"
        " * cos(2 * pi() * random()))::numeric, 2))"
    )

    def costs(year_: int, keep: str) -> str:
        return f"""
        INSERT INTO cost_burden (person_id, year, total_cost, basic_insurance_paid,
            critical_illness_paid, medical_assistance_paid, personal_burden, inpatient_count)
        SELECT pid, {year_}, total, round(total * 0.55, 2), 0, round(total * 0.05, 2),
               total - round(total * 0.55, 2) - round(total * 0.05, 2),
               CASE WHEN total > 4000 THEN least(8, 1 + floor(ln(total / 4000) / 0.5)::int)
                    ELSE (random() < 0.05)::int END
        FROM (SELECT {person_id} AS pid, {lognormal} AS total
              FROM generate_series(1, {persons}) g WHERE {keep}) s
        """

    return [
        (
            "person",
            f"""
            INSERT INTO person (id, id_number_bidx, id_number_ct, name_ct, gender, birth_date,
                region_code, province_code, city_code, county_code, deceased_on, created_at)
            SELECT {person_id},
                   decode(md5('bidx' || g) || md5('bidx2' || g), 'hex'),
                   decode(md5(random()::text) || md5(random()::text), 'hex'),
                   decode(md5(random()::text), 'hex'),
                   CASE WHEN g % 2 = 0 THEN 'MALE' ELSE 'FEMALE' END,
                   date '1935-01-01' + (g::bigint * 7919 % 32000)::int,
                   c.code, substr(c.code, 1, 2), substr(c.code, 1, 4), c.code,
                   CASE WHEN g % 211 = 0 THEN date '{first}' - 20
                        WHEN g % 223 = 0 THEN date '{first}' + 10 END,
                   now()
            FROM generate_series(1, {persons}) g, LATERAL (SELECT {county} AS code) c
            """,
        ),
        (
            "relief_status (~30%, some exited on, and the day before, the month's last day)",
            f"""
            INSERT INTO relief_status (person_id, category, source_department, recognized_on,
                valid_from, valid_to)
            SELECT {person_id}, ({_array(CATEGORIES)})[1 + (g / 10) % {len(CATEGORIES)}],
                   'civil_affairs', date '2018-01-01' + (g % 2500), date '2018-01-01' + (g % 2500),
                   CASE WHEN g % 7 = 0 THEN date '{last}'
                        WHEN g % 7 = 1 THEN date '{last}' - 1
                        WHEN g % 7 = 2 THEN date '{year - 1}-06-30' END
            FROM generate_series(1, {persons}) g WHERE g % 10 < 3
            """,
        ),
        (
            "relief_status (a second identity for some)",
            f"""
            INSERT INTO relief_status (person_id, category, source_department, recognized_on,
                valid_from, valid_to)
            SELECT {person_id}, 'MONITORED_MARGINAL', 'rural_revitalization',
                   date '2021-03-01', date '2021-03-01', NULL
            FROM generate_series(1, {persons}) g WHERE g % 40 = 0
            """,
        ),
        (f"cost_burden {year} (~40%)", costs(year, "g % 5 < 2")),
        (f"cost_burden {year - 1} (~40%)", costs(year - 1, "g % 5 BETWEEN 1 AND 2")),
        ("analyze", "ANALYZE"),
    ]


def baseline_sql(rules: ProvinceRules, month: Month) -> list[tuple[str, str]]:
    """Each rule's selection, hand-written: what the run computes, counted and not written."""
    income = rules.income_for_warning_year(month.year) if rules.needs_income() else None
    last, first = month.last_day.isoformat(), month.first_day.isoformat()
    statements = []
    for rule in rules.warnings:
        column = "personal_burden" if rule.measure is Measure.PERSONAL_BURDEN else "inpatient_count"
        operator = ">" if rule.strict else ">="
        held = (
            "EXISTS (SELECT 1 FROM relief_status rs WHERE rs.person_id = p.id"
            f" AND rs.category = ANY({_array(sorted(rule.categories))})"
            f" AND rs.valid_from <= '{last}' AND (rs.valid_to IS NULL OR rs.valid_to >= '{last}'))"
        )
        if rule.population is Population.NONE_OF:
            held = "NOT " + held
        statements.append(
            (
                rule.rule,
                f"""
                SELECT count(*) FROM cost_burden cb JOIN person p ON p.id = cb.person_id
                WHERE cb.year = {month.year} AND p.province_code = '{rules.code}'
                  AND cb.{column} {operator} {rule.threshold(income)}
                  AND (p.deceased_on IS NULL OR p.deceased_on >= '{first}') AND {held}
                """,
            )
        )
    return statements


async def execute_all(dsn: str, statements: list[tuple[str, str]]) -> list[tuple[str, float, Any]]:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(dsn)
    timings = []
    try:
        for name, sql in statements:
            started = time.perf_counter()
            query = sql.lstrip().upper().startswith("SELECT")
            value = await (connection.fetchval(sql) if query else connection.execute(sql))
            timings.append((name, time.perf_counter() - started, value))
    finally:
        await connection.close()
    return timings


async def migrate(url: str) -> None:
    from gateway.storage.engine import make_engine
    from gateway.storage.migrate import upgrade_to_head

    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()


# --- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> tuple[list[Measurement], dict[str, Any]]:
    from tests.pgcluster import ThrowawayCluster

    month = parse_month(args.month, date.fromisoformat(args.today))
    rules = load_rules(Province(args.province))
    results: list[Measurement] = []
    facts: dict[str, Any] = {"month": month.label}
    with tempfile.TemporaryDirectory(prefix="relief-warn-bench-") as work:
        rules_file = None
        if args.province == "shandong":
            rules_file = Path(work) / "rules.toml"
            rules_file.write_text(
                "[provinces.shandong.per_capita_disposable_income]\n"
                f'2025 = "{SHANDONG_INCOME_2025}"\n',
                encoding="utf-8",
            )
            rules = load_rules(Province.SHANDONG, rules_file)
        with ThrowawayCluster(dbname="relief_warn", honour_env=False) as cluster:
            postmaster = cluster.pid
            assert postmaster is not None
            log(f"PostgreSQL on port {cluster.port}; migrating")
            asyncio.run(migrate(cluster.dsn_asyncpg))
            counties = counties_of(args.province)
            log(f"generating {args.persons:,} people in {len(counties)} counties of {rules.name}")
            started = time.perf_counter()
            for name, seconds, _ in asyncio.run(
                execute_all(cluster.dsn, generation_sql(args.persons, counties, month))
            ):
                log(f"  {name}: {seconds:.1f} s")
            facts["generation_s"] = time.perf_counter() - started
            facts["rows"] = {
                name: value
                for name, _, value in asyncio.run(
                    execute_all(
                        cluster.dsn,
                        [
                            (t, f"SELECT count(*) FROM {t}")
                            for t in ("person", "relief_status", "cost_burden")
                        ],
                    )
                )
            }
            facts["table_mb"] = (
                asyncio.run(
                    execute_all(
                        cluster.dsn,
                        [
                            (
                                "size",
                                "SELECT pg_total_relation_size('person')"
                                " + pg_total_relation_size('relief_status')"
                                " + pg_total_relation_size('cost_burden')",
                            )
                        ],
                    )
                )[0][2]
                / 2**20
            )

            log("baseline: hand-written SELECT count(*) per rule")
            statements = baseline_sql(rules, month)
            asyncio.run(execute_all(cluster.dsn, statements))  # warm-up
            before = postgres_cpu_s(postmaster)
            timed = asyncio.run(execute_all(cluster.dsn, statements))
            time.sleep(1)
            baseline = Measurement(
                "baseline: SELECT count(*) per rule",
                wall_s=sum(seconds for _, seconds, _ in timed),
                postgres_cpu_s=postgres_cpu_s(postmaster) - before,
                warnings=sum(int(value) for _, _, value in timed),
                detail={name: int(value) for name, _, value in timed},
            )
            results.append(baseline)

            env = {
                "RELIEF_DATABASE_URL": cluster.dsn_asyncpg,
                "RELIEF_DATA_DIR": str(Path(work) / "data"),
                "RELIEF_PROVINCE": args.province,
                "RELIEF_TODAY": args.today,
                "RELIEF_ENV": "development",
            }
            if rules_file is not None:
                env["RELIEF_RULES_FILE"] = str(rules_file)
            argv = ["warn", "run", "--month", month.label, "--json", "--triggered-by", "bench"]
            for name in ("warn run", "warn run again (idempotent)"):
                log(f"{name}: relief-gateway {' '.join(argv)}")
                before = postgres_cpu_s(postmaster)
                ran = isolated_command(env, argv)
                time.sleep(1)  # until the postmaster has reaped the run's backend
                if ran["code"] != 0:
                    raise SystemExit(f"{name} failed with exit code {ran['code']}")
                summary = json.loads(ran["out"])
                results.append(
                    Measurement(
                        name,
                        wall_s=ran["wall_s"],
                        cpu_s=ran["cpu_s"],
                        rss_peak_mb=ran["rss_peak_mb"],
                        postgres_cpu_s=postgres_cpu_s(postmaster) - before,
                        warnings=summary["warningsCreated"],
                        tasks=summary["tasksOpened"],
                        detail={r["rule"]: r["newWarnings"] for r in summary["rules"]},
                    )
                )
                log(
                    f"  {ran['wall_s']:.2f} s, {summary['warningsCreated']:,} warnings, "
                    f"{summary['tasksOpened']:,} tasks, peak RSS {ran['rss_peak_mb']:.0f} MB"
                )
    first, again = results[1], results[2]
    if first.detail != baseline.detail:
        raise SystemExit(f"the run found {first.detail}, the baseline {baseline.detail}")
    if again.warnings or again.tasks:
        raise SystemExit("the re-run created warnings or tasks: not idempotent")
    return results, facts


# --- the report ------------------------------------------------------------------------------
def _git() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return done.stdout.strip()

    paths = ("gateway/rules", "gateway/cli_warn.py", "bench/warn_bench.py")
    dirty = git("status", "--porcelain", "--", *paths)
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(args: argparse.Namespace, results: list[Measurement], facts: dict[str, Any]) -> str:
    baseline, first, again = results
    rows = facts["rows"]
    lines = [
        "# Monthly high-cost warning run (`relief-gateway warn run`) on PostgreSQL",
        "",
        f"- When: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; code: {_git()}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; throw-away PostgreSQL (`tests.pgcluster`, fsync off)",
        f"- Province rules: {args.province}; month {facts['month']}; RELIEF_TODAY {args.today}",
        f"- Data: {rows['person']:,} people, {rows['relief_status']:,} relief statuses, "
        f"{rows['cost_burden']:,} cost burdens (two years), {facts['table_mb']:,.0f} MB with "
        f"indexes; generated set-based in {facts['generation_s']:.0f} s. Ciphertext columns "
        "hold random bytes: the run never decrypts.",
        "",
        "| measurement | wall s | process CPU s | PostgreSQL CPU s | peak RSS MB "
        "| warnings | tasks |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        lines.append(
            f"| {m.name} | {_num(m.wall_s)} | {_num(m.cpu_s)} | {_num(m.postgres_cpu_s)} "
            f"| {_num(m.rss_peak_mb, 0)} | {m.warnings if m.warnings is not None else '–'} "
            f"| {m.tasks if m.tasks is not None else '–'} |"
        )
    ratio = first.wall_s / baseline.wall_s if baseline.wall_s else float("nan")
    lines += [
        "",
        f"- Run vs. baseline wall time: **{ratio:.1f}×** (the run also writes the warnings, "
        "one task per warning and department, and the run row, and sets itself up: settings, "
        "rules, engine, first connection; the baseline only counts on an open connection).",
        f"- Re-run of the same month: {again.warnings} warnings, {again.tasks} tasks "
        f"(idempotent), {again.wall_s:.2f} s.",
        "- Per rule (run = baseline): "
        + ", ".join(f"{rule} {count:,}" for rule, count in first.detail.items()),
        "- Peak RSS is `ru_maxrss` of the process that ran the command (spawned fresh). "
        "PostgreSQL CPU is the postmaster's process tree, from /proc.",
        "",
        f"Reproduce: `.venv/bin/python bench/warn_bench.py --persons {args.persons} "
        f"--province {args.province}`",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=1_000_000, help="people (1000000)")
    parser.add_argument(
        "--province", choices=sorted(PROVINCE_CODES), default="shanxi", help="rules (shanxi)"
    )
    parser.add_argument("--month", default="2026-10", help="month to run (2026-10)")
    parser.add_argument("--today", default="2026-11-02", help="RELIEF_TODAY (2026-11-02)")
    parser.add_argument(
        "--no-latest", action="store_true", help="do not write bench/results/warn_latest.md"
    )
    args = parser.parse_args(argv)
    if args.persons <= 0:
        parser.error("--persons must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results, facts = run(args)
    text = markdown(args, results, facts)
    if not args.no_latest:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / "warn_latest.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
