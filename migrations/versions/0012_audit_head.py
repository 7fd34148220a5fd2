"""the audit chain's head row: one round trip per append

Revision ID: 0012
Revises: 0011

Issue 17 item 3 (``gateway.storage.audit_chain``): appends no longer serialise on an advisory
lock held across lock/select/insert/commit round trips. ``audit_head`` holds the hash of the
chain's last entry, one row; an append moves it with a compare-and-swap in the statement that
inserts the entries.

Upgrade seeds the row from where the chain ends today: the last online entry (id order), or,
with an empty online log, the last ``archive`` anchor's ``last_entry_hash``, or the genesis
hash. Downgrade drops the table; the entries are untouched (the chain's head is again the
last entry, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64  # gateway.storage.audit_chain.GENESIS, as of this revision


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_head_singleton"),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    head = bind.execute(sa.text("SELECT entry_hash FROM audit_log ORDER BY id DESC LIMIT 1"))
    last = head.scalar()
    if last is None:  # an empty online log goes on from the last archived entry
        archived = bind.execute(
            sa.text(
                "SELECT last_entry_hash FROM audit_anchor WHERE kind = 'archive'"
                " ORDER BY id DESC LIMIT 1"
            )
        )
        last = archived.scalar()
    bind.execute(
        sa.text("INSERT INTO audit_head (id, entry_hash) VALUES (1, :hash)"),
        {"hash": last or GENESIS},
    )


def downgrade() -> None:
    op.drop_table("audit_head")
