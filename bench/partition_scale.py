"""Time partitions (migration 0005) measured: the same rows before and after, same queries.

    .venv/bin/python bench/partition_scale.py [--years 5] [--settlements-per-year 400000]
        [--audit-per-month 100000] [--months 24]

Loads a throw-away PostgreSQL at revision 0004 with synthetic settlements (spread over
``--years`` years) and audit rows (``--months`` months; not a valid chain, only the row shape),
times the statements the gateway runs on these tables, upgrades to head (the copy into
partitions, timed), ANALYZEs and times them again. Each figure is the median of 5 runs of
``EXPLAIN (ANALYZE)``'s execution time, warm cache.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.storage.engine import make_engine
from tests.migration_support import migrate
from tests.pgcluster import ThrowawayCluster

LAST_YEAR = 2026
PERSONS = 50_000

QUERIES = {
    "settlement: a year's roll-up per person": (
        "SELECT person_id, sum(personal_burden) FROM settlement WHERE year = {year}"
        " GROUP BY person_id"
    ),
    # The ingest's recompute: (person_id, year) IN (literal pairs), as
    # adapters/apply/settlements.py sends.
    "settlement: cost burden of 500 (person, year)": (
        "SELECT person_id, year, sum(personal_burden) FROM settlement"
        " WHERE (person_id, year) IN ({pairs}) GROUP BY person_id, year"
    ),
    "audit: a month, one department, count": (
        "SELECT count(*) FROM audit_log WHERE department = 'civil_affairs'"
        " AND occurred_at >= '{month}-01 00:00:00+08'"
        " AND occurred_at < ('{month}-01 00:00:00+08'::timestamptz + interval '1 month')"
    ),
    "audit: a month, newest page of 50": (
        "SELECT * FROM audit_log WHERE region LIKE '37%'"
        " AND occurred_at >= '{month}-01 00:00:00+08'"
        " AND occurred_at < ('{month}-01 00:00:00+08'::timestamptz + interval '1 month')"
        " ORDER BY id DESC LIMIT 51"
    ),
    "audit: chain head (every append)": "SELECT entry_hash FROM audit_log ORDER BY id DESC LIMIT 1",
}


async def load(engine: AsyncEngine, years: int, per_year: int, months: int, per_month: int) -> None:
    async with engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO person (id, id_number_bidx, id_number_ct, name_ct, gender, birth_date,"
                " region_code, province_code, city_code, county_code, created_at)"
                " SELECT gen_random_uuid(), sha256(i::text::bytea), '\\x00', '\\x00', 'MALE',"
                " '1960-01-01', '370102', '37', '3701', '370102', now()"
                " FROM generate_series(1, :n) i"
            ),
            {"n": PERSONS},
        )
        await c.execute(
            text("CREATE TEMP TABLE p AS SELECT row_number() OVER () AS k, id FROM person")
        )
        for y in range(LAST_YEAR - years + 1, LAST_YEAR + 1):
            await c.execute(
                text(
                    "INSERT INTO settlement (settlement_number, person_id, settled_on, year,"
                    " visit_type, total_cost, basic_insurance_paid, critical_illness_paid,"
                    " medical_assistance_paid, personal_burden)"
                    " SELECT 'JS' || CAST(:y AS int) || '-' || i, p.id,"
                    " make_date(CAST(:y AS int), 1 + i % 12, 1 + i % 28),"
                    " CAST(:y AS int), 'INPATIENT', 1000, 600, 100, 100, 200"
                    " FROM generate_series(1, :n) i JOIN p ON p.k = 1 + i % :persons"
                ),
                {"y": y, "n": per_year, "persons": PERSONS},
            )
        await c.execute(
            text(
                "INSERT INTO audit_log (occurred_at, request_id, subject, department, level,"
                " region, purpose, operation, policy_version, person_ids, fields, prev_hash,"
                " entry_hash)"
                " SELECT timestamptz '2025-01-01 00:00:00+08'"
                "   + (i::float8 / CAST(:total AS int))"
                "   * (interval '1 month' * CAST(:months AS int)),"
                " 'r', 's', (ARRAY['civil_affairs','medical_insurance','health'])[1 + i % 3],"
                " 'county', '370102', 'relief_recognition', 'Op', 1, '[]', '{}', md5(i::text),"
                " md5(i::text) || md5((i+1)::text)"
                " FROM generate_series(1, :total) i"
            ),
            {"total": months * per_month, "months": months},
        )
    async with engine.connect() as c:
        await c.execute(text("COMMIT"))
        await c.execute(text("VACUUM ANALYZE"))


async def timings(engine: AsyncEngine, year: int, month: str) -> dict[str, float]:
    out: dict[str, float] = {}
    async with engine.connect() as c:
        ids = (await c.execute(text("SELECT id FROM person ORDER BY id LIMIT 500"))).scalars()
        pairs = ", ".join(f"('{i}'::uuid, {year})" for i in ids)
        for name, sql in QUERIES.items():
            statement = "EXPLAIN (ANALYZE, FORMAT JSON) " + sql.format(
                year=year, month=month, pairs=pairs
            )
            runs = []
            for _ in range(6):
                plan = (await c.execute(text(statement))).scalar_one()
                runs.append(float(plan[0]["Execution Time"]))
            out[name] = statistics.median(runs[1:])
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--settlements-per-year", type=int, default=400_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--audit-per-month", type=int, default=100_000)
    args = parser.parse_args()
    with ThrowawayCluster() as cluster:
        url = cluster.create_database(f"partitions_{uuid.uuid4().hex[:8]}")
        engine = make_engine(url)
        await migrate(engine, "upgrade", "0004")
        started = time.monotonic()
        await load(engine, args.years, args.settlements_per_year, args.months, args.audit_per_month)
        settlements = args.years * args.settlements_per_year
        audit = args.months * args.audit_per_month
        print(
            f"loaded {settlements:,} settlements, {audit:,} audit rows"
            f" in {time.monotonic() - started:.0f} s"
        )
        last = args.months - 2  # a full month inside the audit rows (they start 2025-01)
        year, month = LAST_YEAR - 1, f"{2025 + last // 12}-{1 + last % 12:02d}"
        before = await timings(engine, year, month)
        started = time.monotonic()
        await migrate(engine, "upgrade", "head")
        upgrade = time.monotonic() - started
        async with engine.connect() as c:
            await c.execute(text("COMMIT"))
            await c.execute(text("VACUUM ANALYZE"))
        after = await timings(engine, year, month)
        print(
            f"migration 0005 (copy into partitions): {upgrade:.1f} s,"
            f" {(settlements + audit) / upgrade:,.0f} rows/s"
        )
        print("\n| statement | unpartitioned ms | partitioned ms |\n|---|---|---|")
        for name in QUERIES:
            print(f"| {name} | {before[name]:.2f} | {after[name]:.2f} |")
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
