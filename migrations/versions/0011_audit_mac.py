"""keyed audit evidence: a MAC per entry and anchored archives

Revision ID: 0011
Revises: 0010

Issue 16 item 6 (``gateway.storage.audit_chain``, ``gateway.storage.audit_archive``):

- ``audit_log.mac_key_id`` and ``audit_log.entry_mac``: the HMAC of each entry's hash with an
  audit key of the keyring. Nullable: entries written before keep none, and no MAC is invented
  for them (the migration has no key, and a MAC made now would vouch for rows nobody checked
  when they were written). On PostgreSQL ``audit_log`` is partitioned by month (0005): a column
  added to the parent is added to every partition, the DEFAULT one included.
- ``audit_anchor``: where the online chain starts after an archive, and where MACs began.

Downgrade removes both; it refuses while archive anchors exist, since the entries before them
are no longer online and the chain without its anchors would read as tampered.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("mac_key_id", sa.String(length=32), nullable=True))
    op.add_column("audit_log", sa.Column("entry_mac", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_anchor",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operator", sa.String(length=128), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("first_prev_hash", sa.String(length=64), nullable=False),
        sa.Column("last_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("last_entry_hash", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("file_digest", sa.String(length=64), nullable=True),
        sa.Column("mac_key_id", sa.String(length=32), nullable=False),
        sa.Column("anchor_mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    archived = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM audit_anchor WHERE kind = 'archive'"))
        .scalar()
    )
    if archived:
        raise RuntimeError(
            f"审计日志已有 {archived} 个归档锚点: 降级会丢失锚点, 在线日志将无法校验, 拒绝降级"
        )
    op.drop_table("audit_anchor")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("entry_mac")
        batch_op.drop_column("mac_key_id")
