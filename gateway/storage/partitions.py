"""Time partitions of ``settlement`` and ``audit_log`` on PostgreSQL (issue 6 item 5).

Why these units:

- ``settlement`` by **year** (``year``, the settlement year): every statement that reads it is
  per person and year (the cost-burden roll-up, 001 §4) or per year across a region, and a
  year's settlements are what a province keeps "hot". One partition holds a province-year.
- ``audit_log`` by **month** of ``occurred_at``, months of Beijing time: every request appends
  an entry (millions a day in a province), officers query a period (days to months, often
  with a department, subject or person), the retention rule drops whole months, and the chain
  verification walks ``id`` order, which follows time, so it reads the partitions one after
  another. A year would make partitions of a billion rows; a day would make thousands.

Partitions live in the schema :data:`SCHEMA`, not beside their parents: the application and
alembic see one logical table each (what SQLite has), reflection and ``compare_metadata`` are
not confused by dozens of physical tables. Each parent has a ``DEFAULT`` partition, so no
insert ever fails for want of a partition; :func:`ensure_partitions` creates the partitions of
the coming periods ahead of time and moves rows that landed in ``DEFAULT`` into the partition
made for them. It is idempotent and serialised across processes by an advisory lock; when
nothing is missing it takes no lock (a short read of the catalogue and the DEFAULT partitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA = "relief_partitions"

# pg_advisory_xact_lock key of partition maintenance ("RELPRT").
PARTITION_LOCK_KEY = 0x52454C505254

# How far ahead ``ensure`` creates partitions by default: the next settlement year (January's
# settlements arrive on the first days) and the next three audit months.
AHEAD_YEARS = 1
AHEAD_MONTHS = 3


@dataclass(frozen=True)
class Scheme:
    """How one table is partitioned."""

    table: str
    unit: Literal["year", "month"]
    key: str  # partition key column
    # SQL turning the key of a row into its unit's start as 'YYYY' / 'YYYY-MM' (for rows found
    # in the DEFAULT partition or in a table being partitioned).
    unit_of_row: str

    def name(self, start: date) -> str:
        if self.unit == "year":
            return f"{self.table}_y{start.year}"
        return f"{self.table}_m{start.year}{start.month:02d}"

    def bounds(self, start: date) -> tuple[str, str]:
        """FROM/TO literals of the unit starting at ``start``."""
        following = _next(self.unit, start)
        if self.unit == "year":
            return str(start.year), str(following.year)
        # Months of Beijing time: a period query bounded by Beijing days (how the audit API
        # bounds them) reads exactly its months.
        return f"'{start.isoformat()} 00:00:00+08'", f"'{following.isoformat()} 00:00:00+08'"

    def in_unit(self, start: date) -> str:
        low, high = self.bounds(start)
        return f"{self.key} >= {low} AND {self.key} < {high}"


SETTLEMENT = Scheme("settlement", "year", "year", "lpad(year::text, 4, '0')")
AUDIT_LOG = Scheme(
    "audit_log",
    "month",
    "occurred_at",
    "to_char(occurred_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')",
)
SCHEMES = (SETTLEMENT, AUDIT_LOG)


def _next(unit: str, start: date) -> date:
    if unit == "year":
        return date(start.year + 1, 1, 1)
    return date(start.year + (start.month == 12), start.month % 12 + 1, 1)


def _start(unit: str, day: date) -> date:
    return date(day.year, 1, 1) if unit == "year" else date(day.year, day.month, 1)


def _parse_unit(unit: str, value: str) -> date:
    if unit == "year":
        return date(int(value), 1, 1)
    year, month = value.split("-")
    return date(int(year), int(month), 1)


def wanted_units(scheme: Scheme, today: date, *, ahead_years: int, ahead_months: int) -> list[date]:
    """The current unit and those ahead (settlements: also last year, still being settled)."""
    if scheme.unit == "year":
        first = date(today.year - 1, 1, 1)
        count = ahead_years + 2
    else:
        first = _start("month", today)
        count = ahead_months + 1
    units = [first]
    for _ in range(count - 1):
        units.append(_next(scheme.unit, units[-1]))
    return units


def is_partitioned(connection: Connection, table: str) -> bool:
    found = connection.execute(
        text(
            "SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = :table AND n.nspname = current_schema()"
        ),
        {"table": table},
    ).scalar()
    return bool(found)


def existing_partitions(connection: Connection, table: str) -> set[str]:
    rows = connection.execute(
        text(
            "SELECT child.relname FROM pg_inherits i"
            " JOIN pg_class child ON child.oid = i.inhrelid"
            " JOIN pg_class parent ON parent.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = parent.relnamespace"
            " WHERE parent.relname = :table AND n.nspname = current_schema()"
        ),
        {"table": table},
    )
    return {row[0] for row in rows}


def units_in(connection: Connection, scheme: Scheme, relation: str) -> list[date]:
    """The units of the rows in ``relation`` (a DEFAULT partition or an old table)."""
    rows = connection.execute(
        text(f"SELECT DISTINCT {scheme.unit_of_row} FROM {relation}")  # noqa: S608 (constants)
    )
    return sorted(_parse_unit(scheme.unit, row[0]) for row in rows)


def create_partition(connection: Connection, scheme: Scheme, start: date) -> bool:
    """Create the partition of ``start``'s unit unless it exists; rows of that unit sitting in
    the DEFAULT partition move into it (PostgreSQL refuses the new partition otherwise)."""
    name = scheme.name(start)
    if name in existing_partitions(connection, scheme.table):
        return False
    low, high = scheme.bounds(start)
    default = f"{SCHEMA}.{scheme.table}_default"
    qualified = f"{SCHEMA}.{name}"
    stranded = connection.execute(
        text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {scheme.in_unit(start)})")  # noqa: S608
    ).scalar()
    if not stranded:
        connection.execute(
            text(
                f"CREATE TABLE {qualified} PARTITION OF {scheme.table}"
                f" FOR VALUES FROM ({low}) TO ({high})"
            )
        )
        return True
    # A standalone table gets the rows, then is attached: ATTACH builds the partition's
    # indexes and checks the DEFAULT partition no longer holds rows of the range.
    connection.execute(text(f"CREATE TABLE {qualified} (LIKE {scheme.table} INCLUDING DEFAULTS)"))
    move = (
        f"WITH moved AS (DELETE FROM {default} WHERE {scheme.in_unit(start)} RETURNING *)"  # noqa: S608
        f" INSERT INTO {qualified} SELECT * FROM moved"
    )
    connection.execute(text(move))  # names and bounds are constants of this module
    connection.execute(
        text(
            f"ALTER TABLE {scheme.table} ATTACH PARTITION {qualified}"
            f" FOR VALUES FROM ({low}) TO ({high})"
        )
    )
    return True


def drop_partition(connection: Connection, scheme: Scheme, start: date) -> bool:
    """Detach and drop the partition of ``start``'s unit, rows and all; False when there is
    none. For ``audit archive`` (``gateway.storage.audit_archive``), once the month's entries
    are in a verified archive file: dropping a partition is instant where deleting a month of
    rows would bloat the table. :func:`ensure_partitions` never recreates a past unit."""
    name = scheme.name(start)
    if name not in existing_partitions(connection, scheme.table):
        return False
    connection.execute(text(f"ALTER TABLE {scheme.table} DETACH PARTITION {SCHEMA}.{name}"))
    connection.execute(text(f"DROP TABLE {SCHEMA}.{name}"))
    return True


def missing_work(
    connection: Connection,
    today: date,
    *,
    ahead_years: int = AHEAD_YEARS,
    ahead_months: int = AHEAD_MONTHS,
) -> bool:
    """Whether a partition of the current or coming periods is missing or a DEFAULT partition
    holds rows. Run it in a transaction of its own: it share-locks the DEFAULT partitions,
    which ``ensure`` in another process must lock exclusively."""
    if connection.dialect.name != "postgresql":
        return False
    if not all(is_partitioned(connection, scheme.table) for scheme in SCHEMES):
        return False  # before migration 0005: nothing to maintain
    for scheme in SCHEMES:
        have = existing_partitions(connection, scheme.table)
        wanted = wanted_units(scheme, today, ahead_years=ahead_years, ahead_months=ahead_months)
        if any(scheme.name(unit) not in have for unit in wanted):
            return True
        default_has_rows = connection.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.{scheme.table}_default)")  # noqa: S608
        ).scalar()
        if default_has_rows:
            return True
    return False


def ensure_partitions_sync(
    connection: Connection,
    today: date,
    *,
    ahead_years: int = AHEAD_YEARS,
    ahead_months: int = AHEAD_MONTHS,
) -> list[str]:
    """Create the partitions of the current and coming periods, and of every period that has
    rows in a DEFAULT partition. Returns the names created.

    Takes the partition lock FIRST, before touching any table of the partitioned ones, so
    concurrent callers (several gateway processes starting, an ingest) queue on it rather
    than deadlock on each other's table locks; the one that comes second finds the work done.
    """
    if connection.dialect.name != "postgresql":
        return []
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
    if not all(is_partitioned(connection, scheme.table) for scheme in SCHEMES):
        return []
    created: list[str] = []
    for scheme in SCHEMES:
        units = set(wanted_units(scheme, today, ahead_years=ahead_years, ahead_months=ahead_months))
        units |= set(units_in(connection, scheme, f"{SCHEMA}.{scheme.table}_default"))
        for start in sorted(units):
            if create_partition(connection, scheme, start):
                created.append(f"{SCHEMA}.{scheme.name(start)}")
    return created


async def ensure_partitions(
    engine: AsyncEngine,
    today: date,
    *,
    ahead_years: int = AHEAD_YEARS,
    ahead_months: int = AHEAD_MONTHS,
) -> list[str]:
    """:func:`missing_work`, then if needed :func:`ensure_partitions_sync`, each in its own
    transaction (no-op on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    async with engine.connect() as connection:  # the usual case: nothing to do, no lock taken
        needed = await connection.run_sync(
            lambda sync: missing_work(
                sync, today, ahead_years=ahead_years, ahead_months=ahead_months
            )
        )
    if not needed:
        return []
    async with engine.begin() as connection:
        return await connection.run_sync(
            lambda sync: ensure_partitions_sync(
                sync, today, ahead_years=ahead_years, ahead_months=ahead_months
            )
        )
