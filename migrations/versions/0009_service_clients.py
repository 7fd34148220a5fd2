"""service clients: department systems that obtain tokens by client credentials

Revision ID: 0009
Revises: 0008

Issue 16 item 2: ``relief-gateway clients add`` registers a department system (department,
level, region, the purposes it may declare) in ``service_client``; it obtains short-lived tokens
at ``POST /oauth/token`` (OAuth2 client credentials). The secret is stored only as a slow hash
that records its own parameters (``scrypt$ln=…,r=…,p=…$salt$hash``), so the cost can be raised
later without invalidating stored hashes; a client authenticated by certificate (mutual TLS
ended at the province's proxy) keeps the certificate's SHA-256 fingerprint instead. A client
is disabled, never deleted: every process refuses its tokens within seconds.

Existing data: none; the table starts empty.

Downgrade: the table goes, and with it every registered client: their tokens stop verifying
(no process knows the clients any more) and they must be registered again after an upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_client",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=True),
        sa.Column("cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("client_id"),
    )


def downgrade() -> None:
    op.drop_table("service_client")
