"""pushes that arrive: the outbox, webhook endpoints and deliveries, task receipts

Revision ID: 0013
Revises: 0012

Issue 18. ``outbox_event``: every event that concerns another department, written in the
transaction of its change (``gateway.storage.outbox``). ``webhook_endpoint`` (with the event
kinds it takes, ``webhook_subscription``), ``webhook_delivery`` (one per event and endpoint,
the work queue the delivery workers claim) and ``webhook_attempt`` (each HTTP attempt).
``task`` gains its receipts: ``delivered_at``, ``read_at``, ``read_by``.

On PostgreSQL a statement-level trigger announces new deliveries (``NOTIFY relief_delivery``)
and new events (``NOTIFY relief_outbox``) at commit, so workers and live subscriptions wake at
once; SQLite has one process, which wakes itself.

Existing data: no event is made up for the past; tasks' receipts stay null (not delivered,
not read: nothing recorded them). Downgrade drops the tables and the columns, and with them
every registered endpoint and the delivery history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The channels are gateway.storage.outbox.DELIVERY_CHANNEL / EVENT_CHANNEL, as of this revision.
_FUNCTIONS = (
    """
CREATE FUNCTION relief_announce_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('relief_delivery', '');
    RETURN NULL;
END
$$
""",
    """
CREATE FUNCTION relief_announce_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('relief_outbox', '');
    RETURN NULL;
END
$$
""",
)
_TRIGGERS = (
    "CREATE TRIGGER webhook_delivery_announced AFTER INSERT ON webhook_delivery"
    " FOR EACH STATEMENT EXECUTE FUNCTION relief_announce_deliveries()",
    "CREATE TRIGGER outbox_event_announced AFTER INSERT ON outbox_event"
    " FOR EACH STATEMENT EXECUTE FUNCTION relief_announce_events()",
)


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.add_column("task", sa.Column("delivered_at", tz, nullable=True))
    op.add_column("task", sa.Column("read_at", tz, nullable=True))
    op.add_column("task", sa.Column("read_by", sa.String(length=128), nullable=True))
    op.create_table(
        "outbox_event",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=32), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("dedupe_key", sa.String(length=120), nullable=False),
        sa.Column("facts", sa.Text(), nullable=True),
        sa.Column("occurred_at", tz, nullable=False),
        sa.Column("emit_id", sa.Uuid(), nullable=False),
        sa.Column("origin", sa.String(length=2), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_outbox_event_audience", "outbox_event", ["audience", "county_code", "id"])
    op.create_index("ix_outbox_event_person", "outbox_event", ["person_id", "id"])
    op.create_index("ix_outbox_event_emit", "outbox_event", ["emit_id"])
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("secret_id", sa.String(length=32), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_id", sa.String(length=32), nullable=True),
        sa.Column("previous_secret_ct", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", tz, nullable=True),
        sa.Column("dead_after_seconds", sa.Integer(), nullable=True),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("paused_until", tz, nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("disabled_at", tz, nullable=True),
        sa.Column("disabled_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_webhook_endpoint_department", "webhook_endpoint", ["department", "region"]
    )
    op.create_table(
        "webhook_subscription",
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoint.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("endpoint_id", "kind"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("event_id", AutoId, nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", tz, nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", tz, nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("first_attempt_at", tz, nullable=True),
        sa.Column("last_attempt_at", tz, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", tz, nullable=True),
        sa.Column("dead_at", tz, nullable=True),
        sa.Column("cancel_reason", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["outbox_event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoint.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_webhook_delivery_event_endpoint",
        "webhook_delivery",
        ["event_id", "endpoint_id"],
        unique=True,
    )
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.create_index(
        "ix_webhook_delivery_order", "webhook_delivery", ["endpoint_id", "ordering_key", "id"]
    )
    op.create_index(
        "ix_webhook_delivery_endpoint_status", "webhook_delivery", ["endpoint_id", "status"]
    )
    op.create_table(
        "webhook_attempt",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("delivery_id", AutoId, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", tz, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=True),
        sa.Column("secret_ids", sa.String(length=80), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_delivery.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_attempt_delivery", "webhook_attempt", ["delivery_id", "attempt"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_FUNCTIONS, *_TRIGGERS):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_event_announced ON outbox_event")
        op.execute("DROP TRIGGER IF EXISTS webhook_delivery_announced ON webhook_delivery")
        op.execute("DROP FUNCTION IF EXISTS relief_announce_events()")
        op.execute("DROP FUNCTION IF EXISTS relief_announce_deliveries()")
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_subscription")
    op.drop_table("webhook_endpoint")
    op.drop_table("outbox_event")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("read_by")
        batch.drop_column("read_at")
        batch.drop_column("delivered_at")
