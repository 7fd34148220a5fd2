"""policy expectations: what a policy must keep granting or denying, checked on every proposal

Revision ID: 0010
Revises: 0009

Issue 16. (Skeleton: filled in by the work on its item.)
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
