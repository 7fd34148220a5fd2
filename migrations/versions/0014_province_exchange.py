"""province to province: the exchange message log and its chain head

Revision ID: 0014
Revises: 0013

Issue 18 item 5. ``exchange_message`` is the message log of the exchange between this
province's gateway and its peers (X-Road style): every message sent (OUT) and received (IN),
the sealed envelope with its SHA-256 and the sender's signature, and the signed receipt. An
entry joins the log's hash chain (``seq``, ``prev_hash``, ``entry_hash``, MAC'd with the audit
key like ``audit_log``) once it is complete: an IN message when it is stored with the receipt
this side signed, an OUT message when the peer's receipt is verified and stored. Until then an
OUT row is the sender's work queue (``status`` PENDING, ``attempts``, ``next_attempt_at``).
``exchange_head`` holds the chain's last position and hash (one row).

Existing data: none (the log starts empty, the head at the genesis hash). Downgrade drops both
tables, and with them the evidence of what was exchanged: export it first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "exchange_message",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("ref", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("envelope_ct", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_sha256", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.String(length=40), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("signer_key_id", sa.String(length=64), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.Column("receipt_signature", sa.Text(), nullable=True),
        sa.Column("receipt_key_id", sa.String(length=64), nullable=True),
        sa.Column("receipt_status", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", tz, nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("sent_at", tz, nullable=True),
        sa.Column("received_at", tz, nullable=True),
        sa.Column("receipted_at", tz, nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("entry_hash", sa.String(length=64), nullable=True),
        sa.Column("mac_key_id", sa.String(length=32), nullable=True),
        sa.Column("entry_mac", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_exchange_message",
        "exchange_message",
        ["peer", "direction", "message_id"],
        unique=True,
    )
    op.create_index("ux_exchange_message_seq", "exchange_message", ["seq"], unique=True)
    op.create_index(
        "ix_exchange_message_due", "exchange_message", ["direction", "status", "next_attempt_at"]
    )
    op.create_index(
        "ix_exchange_message_event", "exchange_message", ["peer", "direction", "event_id"]
    )
    op.create_index("ix_exchange_message_person", "exchange_message", ["person_id"])
    head = op.create_table(
        "exchange_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_exchange_head_singleton"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "entry_hash": GENESIS}])


def downgrade() -> None:
    op.drop_table("exchange_head")
    op.drop_table("exchange_message")
