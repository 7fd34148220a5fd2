"""keyed audit evidence: a MAC per entry and anchored archives

Revision ID: 0011
Revises: 0010

Issue 16. (Skeleton: filled in by the work on its item.)
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
