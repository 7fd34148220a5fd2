"""person places: where the shared data tie a person (identity, insured, addressed)

Revision ID: 0007
Revises: 0006

Issue 14: one person can be tied to several counties — insured in one, recognised in another
(004 §3, DOMAIN.md rule 9) — and each place brings the person into the jurisdiction of the
departments whose duty it is there. ``person_place`` holds the places other than the residence
(``gateway.domain.places``); ``relief_status.county_code`` records the county of the department
that recognised an identity.

Existing data: an identity's county is taken as its person's county (the lists recorded no
other), an enrollment's insured county is its ``region_code``, a task's addressed county is its
``county_code``; the rows are derived as ``gateway.storage.places`` derives them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_place",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("city_code", sa.String(length=4), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("person_place", schema=None) as batch_op:
        batch_op.create_index(
            "ux_person_place", ["person_id", "kind", "department", "county_code"], unique=True
        )
        batch_op.create_index("ix_person_place_county", ["county_code", "kind", "person_id"])
        batch_op.create_index("ix_person_place_city", ["city_code", "kind", "person_id"])
        batch_op.create_index("ix_person_place_province", ["province_code", "kind", "person_id"])
    with op.batch_alter_table("relief_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("county_code", sa.String(length=6), nullable=True))

    op.execute(
        "UPDATE relief_status SET county_code ="
        " (SELECT person.county_code FROM person WHERE person.id = relief_status.person_id)"
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    first_day = (
        "make_date(min(e.year), 1, 1)" if postgres else "date(printf('%04d-01-01', min(e.year)))"
    )
    op.execute(_IDENTITY)
    op.execute(_INSURED.format(first_day=first_day, last_day=_last_day(postgres)))
    op.execute(_ADDRESSED)
    _place_aware_row_scopes()


# The shipped row scopes this revision makes place-aware (authz/default_policy.csv has the new
# ones for a fresh gateway). A gateway whose officers changed a line keeps its own: only lines
# exactly as shipped are replaced, as one new policy version. Frozen here.
_RURAL = (
    "Person(category: RETURNED_TO_POVERTY|MONITORED_UNSTABLE|MONITORED_MARGINAL"
    "|MONITORED_SUDDEN_HARDSHIP|LIFTED_FROM_POVERTY"
)
_REPLACED = {
    ("medical_insurance:*", "Person(all)", "rows", "*"): (
        ("medical_insurance:*", "Person(all; places: residence|insured)", "rows", "*"),
    ),
    ("civil_affairs:*", "Person(all)", "rows", "*"): (
        ("civil_affairs:*", "Person(all; places: residence|identity)", "rows", "*"),
        ("civil_affairs:*", "Person(pushed; places: addressed)", "rows", "*"),
    ),
    ("rural_revitalization:*", _RURAL + ")", "rows", "*"): (
        ("rural_revitalization:*", _RURAL + "; places: residence|identity)", "rows", "*"),
    ),
    ("rural_revitalization:*", "Person(pushed)", "rows", "*"): (
        ("rural_revitalization:*", "Person(pushed; places: addressed)", "rows", "*"),
    ),
}


def _place_aware_row_scopes() -> None:
    _replace_lines(
        _REPLACED,
        created_by="migration 0007",
        note="行范围按地点: 医保含参保地, 民政和乡村振兴含身份认定地和推送地",
    )


Line = tuple[str, str, str, str]


def _replace_lines(
    replacements: dict[Line, tuple[Line, ...]],
    *,
    created_by: str | None,
    note: str,
    keep: Callable[[Line], bool] = lambda _line: True,
) -> None:
    """Replace lines exactly as listed, as one new policy version with its snapshot (none when
    ``created_by`` is None: a downgrade gives back the lines of the version it returns to)."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM policy_version")).scalar_one() == 0:
        return  # not yet initialised: the default file will be installed whole
    rule = sa.table(
        "casbin_rule",
        sa.column("id"),
        sa.column("ptype"),
        sa.column("v0"),
        sa.column("v1"),
        sa.column("v2"),
        sa.column("v3"),
    )
    rows = bind.execute(
        sa.select(rule.c.v0, rule.c.v1, rule.c.v2, rule.c.v3)
        .where(rule.c.ptype == "p")
        .order_by(rule.c.id)
    ).all()
    lines: list[Line] = [(row.v0, row.v1, row.v2, row.v3) for row in rows]
    if not any(line in replacements or not keep(line) for line in lines):
        return
    wanted: list[Line] = []
    for line in lines:
        for new in replacements.get(line, (line,) if keep(line) else ()):
            if new not in wanted:
                wanted.append(new)
    bind.execute(sa.delete(rule).where(rule.c.ptype == "p"))
    op.bulk_insert(
        rule, [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p} for s, o, a, p in wanted]
    )
    if created_by is None:
        return
    version = sa.table(
        "policy_version",
        sa.column("created_at"),
        sa.column("created_by"),
        sa.column("note"),
        sa.column("lines"),
    )
    op.bulk_insert(
        version,
        [
            {
                "created_at": datetime.now(UTC),
                "created_by": created_by,
                "note": note,
                "lines": json.dumps([list(line) for line in wanted], ensure_ascii=False),
            }
        ],
    )


_COLUMNS = (
    "INSERT INTO person_place"
    " (person_id, kind, department, county_code, city_code, province_code, since, until) "
)
_IDENTITY = (
    _COLUMNS
    + "SELECT person_id, 'identity', source_department, county_code, substr(county_code, 1, 4),"
    " substr(county_code, 1, 2), min(valid_from),"
    " CASE WHEN count(valid_to) = count(*) THEN max(valid_to) END"
    " FROM relief_status GROUP BY person_id, source_department, county_code"
)
# Holds while the person's latest enrollment year has a live enrollment there; else ends on
# 31 December of the last live year there (the day before the first day when none was live).
_INSURED = (
    _COLUMNS
    + "SELECT e.person_id, 'insured', 'medical_insurance', substr(e.region_code, 1, 6),"
    " substr(e.region_code, 1, 4), substr(e.region_code, 1, 2), {first_day},"
    " CASE WHEN max(CASE WHEN e.status <> 'TERMINATED' THEN e.year END) >= latest.year THEN NULL"
    " ELSE {last_day} END"
    " FROM enrollment e JOIN (SELECT person_id, max(year) AS year FROM enrollment"
    " GROUP BY person_id) latest ON latest.person_id = e.person_id"
    " GROUP BY e.person_id, substr(e.region_code, 1, 6), substr(e.region_code, 1, 4),"
    " substr(e.region_code, 1, 2), latest.year"
)
_ADDRESSED = (
    _COLUMNS
    + "SELECT person_id, 'addressed', department, county_code, substr(county_code, 1, 4),"
    " substr(county_code, 1, 2), min(opened_on), NULL"
    " FROM task GROUP BY person_id, department, county_code"
)


def _last_day(postgres: bool) -> str:
    live = "max(CASE WHEN e.status <> 'TERMINATED' THEN e.year END)"
    if postgres:
        return f"COALESCE(make_date({live}, 12, 31), make_date(min(e.year), 1, 1) - 1)"
    # SQLite's printf turns NULL into 0: test for "no live year" first.
    return (
        f"CASE WHEN {live} IS NULL THEN date(printf('%04d-01-01', min(e.year)), '-1 day')"
        f" ELSE date(printf('%04d-12-31', {live})) END"
    )


def downgrade() -> None:
    # The revision before this one cannot read place-aware row scopes: give back the shipped
    # lines where this revision put its own (lines officers wrote with places are dropped).
    _replace_lines(
        {
            new: (old,)
            for old, replacements in _REPLACED.items()
            for new in replacements
        },
        created_by=None,
        note="",
        keep=lambda line: "; places:" not in line[1],
    )
    # as migration 0003 does: the version this revision wrote goes with it
    op.execute("DELETE FROM policy_version WHERE created_by = 'migration 0007'")
    with op.batch_alter_table("relief_status", schema=None) as batch_op:
        batch_op.drop_column("county_code")
    with op.batch_alter_table("person_place", schema=None) as batch_op:
        batch_op.drop_index("ix_person_place_province")
        batch_op.drop_index("ix_person_place_city")
        batch_op.drop_index("ix_person_place_county")
        batch_op.drop_index("ux_person_place")
    op.drop_table("person_place")
