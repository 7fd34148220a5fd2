"""person reports: a row about a person held elsewhere shows its sender only what it sent

Revision ID: 0008
Revises: 0007

Issue 14 item 4: a push or file row about a person held outside the sender's jurisdiction must
answer exactly like one about a person nobody held. ``person_report`` keeps what such a row
stated (sealed like the person's own fields) per department and sender county, until the
person's own county verifies the tie; ``anomaly.related_county`` names the county whose report
a REPORTED_BY_ANOTHER_REGION anomaly asks to verify. The key of ``relief_status`` takes the
recognising county in: two counties of one department may report the same recognition (a
double recognition, which the person's county verifies), and each keeps its own record.

Existing data: earlier foreign rows kept no identification, so no report is derived for them;
their statuses keep no county (``relief_status.county_code`` null) and give no place to their
sender, as before. Open REPORTED_BY_ANOTHER_REGION anomalies keep a null ``related_county``:
resolving them verifies nothing new.

Downgrade: the places derived from reports, the reports and the column go; of two records of
the same recognition from two counties, the later one goes too (0007's key holds one).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_report",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("name_ct", sa.LargeBinary(), nullable=False),
        sa.Column("phone_ct", sa.LargeBinary(), nullable=True),
        sa.Column("address_ct", sa.LargeBinary(), nullable=True),
        sa.Column("household_id", sa.Uuid(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("reported_on", sa.Date(), nullable=False),
        sa.Column("verified_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["household_id"], ["household.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["batch_id"], ["ingest_batch.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("person_id", "department", "county_code"),
    )
    with op.batch_alter_table("person_report", schema=None) as batch_op:
        batch_op.create_index("ix_person_report_household", ["household_id"])
    with op.batch_alter_table("anomaly", schema=None) as batch_op:
        batch_op.add_column(sa.Column("related_county", sa.String(length=6), nullable=True))
    with op.batch_alter_table("relief_status", schema=None) as batch_op:
        batch_op.drop_index("ux_relief_status_source")
        batch_op.create_index("ux_relief_status_source", [*_RECOGNITION, "county_code"], unique=True)


_RECOGNITION = ["person_id", "source_department", "category", "recognized_on"]


def downgrade() -> None:
    # The places derived from reports go with them; 0007's derivation never wrote any.
    op.execute("DELETE FROM person_place WHERE kind = 'reported'")
    columns = ", ".join(_RECOGNITION)
    op.execute(
        "DELETE FROM relief_status WHERE id NOT IN"
        f" (SELECT min(id) FROM relief_status GROUP BY {columns})"
    )
    with op.batch_alter_table("relief_status", schema=None) as batch_op:
        batch_op.drop_index("ux_relief_status_source")
        batch_op.create_index("ux_relief_status_source", _RECOGNITION, unique=True)
    with op.batch_alter_table("anomaly", schema=None) as batch_op:
        batch_op.drop_column("related_county")
    with op.batch_alter_table("person_report", schema=None) as batch_op:
        batch_op.drop_index("ix_person_report_household")
    op.drop_table("person_report")
