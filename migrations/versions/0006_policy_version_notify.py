"""policy versions announce themselves (PostgreSQL NOTIFY relief_policy)

Revision ID: 0006
Revises: 0005

Every row inserted into ``policy_version`` sends ``NOTIFY relief_policy, '<version>'`` from a
trigger, in the inserting transaction, so PostgreSQL delivers it at commit to every gateway
process listening (``gateway.storage.policy_listener``). Policy administration (``authz``)
commits a version and knows nothing of the notification wiring; whatever writes a version —
an approval, a rollback, ``policy import``, the first start's defaults — is announced alike.

SQLite has no notifications (one process, which polls): nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

# The channel is gateway.storage.policy_listener.CHANNEL; a migration states it as it was.
_FUNCTION = """
CREATE FUNCTION relief_announce_policy_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('relief_policy', NEW.id::text);
    RETURN NULL;
END
$$
"""
_TRIGGER = """
CREATE TRIGGER policy_version_announced
AFTER INSERT ON policy_version
FOR EACH ROW EXECUTE FUNCTION relief_announce_policy_version()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS policy_version_announced ON policy_version")
    op.execute("DROP FUNCTION IF EXISTS relief_announce_policy_version()")
