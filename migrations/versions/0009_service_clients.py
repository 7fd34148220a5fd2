"""service clients: department systems that obtain tokens by client credentials

Revision ID: 0009
Revises: 0008

Issue 16. (Skeleton: filled in by the work on its item.)
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
