"""policy expectations: what a policy must keep granting or denying, checked on every proposal

Revision ID: 0010
Revises: 0009

Issue 16 item 5. Policy expectations (``authz.expectations``) live as data with each version
(``policy_version.expectations``: canonical text, one ``e`` line each) and a proposal may carry
a new complete set (``policy_proposal.expectations``; null: unchanged). Existing versions and
proposals get null: no expectations, nothing changed. A line's validity end (期限) needs no
column: ``casbin_rule.v4`` exists, and the JSON snapshots take a fifth cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expectations", sa.Text(), nullable=True))
    with op.batch_alter_table("policy_proposal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expectations", sa.Text(), nullable=True))


def downgrade() -> None:
    # Expectations are dropped with their columns; lines with a validity end stay in
    # casbin_rule.v4 and in the snapshots (an older gateway would ignore the end: remove such
    # lines through a proposal before downgrading).
    with op.batch_alter_table("policy_proposal", schema=None) as batch_op:
        batch_op.drop_column("expectations")
    with op.batch_alter_table("policy_version", schema=None) as batch_op:
        batch_op.drop_column("expectations")
