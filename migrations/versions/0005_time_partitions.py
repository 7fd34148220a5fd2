"""time partitions: settlement by year, audit_log by month (PostgreSQL)

Revision ID: 0005
Revises: 0004

Issue 6 item 5: a year of a province's settlements and audit entries stays fast. On
PostgreSQL both tables become range-partitioned (units and reasons in
``gateway.storage.partitions``); the rows are copied into a new partitioned table that takes
the old one's name, and the old one is dropped. Downgrade copies them back.

PostgreSQL wants the partition key in every unique key, so:

- ``settlement``: primary key ``(id, year)``, ``UNIQUE (settlement_number, year)``. Ids still
  come from one sequence and stay unique. The settlement number was unique across years. Ingest
  keeps it so: it looks every number up before inserting, under the lock that serialises all
  ingest chunks (``adapters.pipeline``). A correction that changes the date moves the row to
  its new year.
- ``audit_log``: primary key ``(id, occurred_at)``, ``UNIQUE (entry_hash, occurred_at)``; a
  repeated hash would break the chain's links anyway, which ``audit verify`` reports.

SQLite is not partitioned. It gets the same unique keys, so the models describe both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.domain.clock import today
from gateway.storage.partitions import (
    AUDIT_LOG,
    SCHEMA,
    SETTLEMENT,
    Scheme,
    create_partition,
    units_in,
    wanted_units,
)

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = "numeric(14, 2) NOT NULL"

SETTLEMENT_COLUMNS = (
    ("settlement_number", "varchar(64) NOT NULL"),
    ("person_id", "uuid NOT NULL REFERENCES person (id) ON DELETE CASCADE"),
    ("settled_on", "date NOT NULL"),
    ("year", "integer NOT NULL"),
    ("visit_type", "varchar(12) NOT NULL"),
    ("total_cost", MONEY),
    ("basic_insurance_paid", MONEY),
    ("critical_illness_paid", MONEY),
    ("medical_assistance_paid", MONEY),
    ("personal_burden", MONEY),
    ("batch_id", "uuid REFERENCES ingest_batch (id) ON DELETE SET NULL"),
    ("source_line", "integer"),
    ("received_at", "timestamp with time zone"),
)
AUDIT_COLUMNS = (
    ("occurred_at", "timestamp with time zone NOT NULL"),
    ("request_id", "varchar(36) NOT NULL"),
    ("subject", "varchar(128) NOT NULL"),
    ("department", "varchar(32) NOT NULL"),
    ("level", "varchar(16) NOT NULL"),
    ("region", "varchar(12) NOT NULL"),
    ("purpose", "varchar(64) NOT NULL"),
    ("operation", "varchar(128) NOT NULL"),
    ("policy_version", "integer NOT NULL"),
    ("person_ids", "text NOT NULL"),
    ("fields", "text NOT NULL"),
    ("prev_hash", "varchar(64) NOT NULL"),
    ("entry_hash", "varchar(64) NOT NULL"),
)

PARTITIONED_KEYS = {
    "settlement": "PRIMARY KEY (id, year),"
    " CONSTRAINT ux_settlement_number_year UNIQUE (settlement_number, year)",
    "audit_log": "PRIMARY KEY (id, occurred_at),"
    " CONSTRAINT ux_audit_log_entry_hash UNIQUE (entry_hash, occurred_at)",
}
PLAIN_KEYS = {
    "settlement": "PRIMARY KEY (id), UNIQUE (settlement_number)",
    "audit_log": "PRIMARY KEY (id), UNIQUE (entry_hash)",
}
INDEXES = {
    "settlement": "CREATE INDEX ix_settlement_person_year ON settlement (person_id, year)",
    "audit_log": "CREATE INDEX ix_audit_log_occurred ON audit_log (occurred_at)",
}
COLUMNS = {"settlement": SETTLEMENT_COLUMNS, "audit_log": AUDIT_COLUMNS}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_keys(partitioned=True)
        return
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for scheme in (SETTLEMENT, AUDIT_LOG):
        _rebuild(scheme, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_keys(partitioned=False)
        return
    for scheme in (SETTLEMENT, AUDIT_LOG):
        _rebuild(scheme, partitioned=False)
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}")  # empty now; refuses if someone put more there


def _rebuild(scheme: Scheme, *, partitioned: bool) -> None:
    """Copy ``scheme.table`` into a new table of the other kind that takes its name."""
    bind = op.get_bind()
    table = scheme.table
    old = f"{table}_before_0005" if partitioned else f"{table}_partitioned"
    sequence = bind.execute(sa.text(f"SELECT pg_get_serial_sequence('{table}', 'id')")).scalar()
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    # Index (and constraint) names are per schema: the old ones step aside for the new table.
    for (index,) in bind.execute(
        sa.text(
            "SELECT indexname FROM pg_indexes"
            " WHERE tablename = :t AND schemaname = current_schema()"
        ),
        {"t": old},
    ).all():
        op.execute(f"ALTER INDEX {index} RENAME TO {(index + '_old')[-63:]}")
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS[table])
    keys = PARTITIONED_KEYS[table] if partitioned else PLAIN_KEYS[table]
    tail = f" PARTITION BY RANGE ({scheme.key})" if partitioned else ""
    op.execute(
        f"CREATE TABLE {table} (id bigint NOT NULL DEFAULT nextval('{sequence}'),"
        f" {columns}, {keys}){tail}"
    )
    op.execute(INDEXES[table])
    if partitioned:
        op.execute(f"CREATE TABLE {SCHEMA}.{table}_default PARTITION OF {table} DEFAULT")
        # Partitions for the periods present and the coming ones, before the copy: every row
        # goes straight to its partition, none through DEFAULT.
        units = set(units_in(bind, scheme, old))
        units |= set(wanted_units(scheme, today(), ahead_years=1, ahead_months=3))
        for start in sorted(units):
            create_partition(bind, scheme, start)
    names = ", ".join(["id", *(name for name, _ in COLUMNS[table])])
    op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {old}")  # noqa: S608
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    op.execute(f"DROP TABLE {old}")  # with its partitions, on downgrade
    op.execute(f"ANALYZE {table}")


def _sqlite_keys(*, partitioned: bool) -> None:
    """SQLite: the same unique keys as PostgreSQL's (its tables are not partitioned)."""
    convention = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
    changes = (
        ("settlement", "ux_settlement_number_year", ["settlement_number", "year"]),
        ("audit_log", "ux_audit_log_entry_hash", ["entry_hash", "occurred_at"]),
    )
    for table, name, columns in changes:
        with op.batch_alter_table(table, naming_convention=convention) as batch_op:
            if partitioned:
                batch_op.drop_constraint(f"uq_{table}_{columns[0]}", type_="unique")
                batch_op.create_unique_constraint(name, columns)
            else:
                batch_op.drop_constraint(name, type_="unique")
                batch_op.create_unique_constraint(f"uq_{table}_{columns[0]}", columns[:1])
