"""Migration 0008 (person reports, issue 14 item 4) on a gateway that already runs:

* ``person_report`` is created empty: earlier rows about people held elsewhere kept no
  identification, so no report is invented for them, and the places stay exactly as 0007
  derived them (a status without a county keeps giving its department the person's county);
* ``anomaly.related_county`` is added, null for the anomalies already open;
* downgrading removes the table, the column and the reported places; the facts stay, and
  upgrading again gives the same places.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from sqlalchemy import column, func, insert, select, table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto import FieldCipher, Keyring
from gateway.storage.models import Anomaly, PersonReport
from gateway.storage.vault import PersonVault
from tests.ingest_support import CIPHER_SUITE
from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401
from tests.places_support import CIVIL, LUYANG, SHUSHAN, Facts, place_rows, refresh

TODAY = date(2026, 11, 23)


async def _at_0007(engine: AsyncEngine) -> uuid.UUID:  # noqa: F811
    """A person of 庐阳 with a civil status stored at 0006 (no county recorded), insured in
    蜀山, and an open REPORTED_BY_ANOTHER_REGION anomaly; then 0007 derives their places."""
    await migrate(engine, "upgrade", "0006")
    facts = Facts(PersonVault(FieldCipher(Keyring.generate(CIPHER_SUITE))), before_0007=True)
    person = facts.person(LUYANG + "001001")
    facts.identity(person, None)
    facts.identity(person, None, category="EXTREME_POVERTY", valid_from=date(2026, 2, 1))
    facts.enrollment(person, 2026, SHUSHAN)
    await facts.write(engine)
    async with engine.begin() as connection:
        await connection.execute(
            insert(ANOMALY_AT_0006).values(
                id=uuid.uuid4(),
                person_id=person,
                department=CIVIL,
                county_code=LUYANG,
                kind="REPORTED_BY_ANOTHER_REGION",
                detail=f"辖区 {SHUSHAN} 的民政部门也报送了该人员",
                opened_on=TODAY,
                due_on=TODAY + timedelta(days=14),
                status="OPEN",
            )
        )
    await migrate(engine, "upgrade", "0007")
    return person


# the anomaly table before this migration (without related_county)
ANOMALY_AT_0006 = table(
    "anomaly",
    *(column(c.name, c.type) for c in Anomaly.__table__.c if c.name != "related_county"),
)


async def test_upgrade_adds_an_empty_report_table_and_keeps_the_places(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    person = await _at_0007(engine)
    before = await place_rows(engine)

    await migrate(engine, "upgrade", "0008")

    assert await revision_of(engine) == "0008"
    tables, columns = await schema_of(engine)
    assert "person_report" in tables
    assert "related_county" in columns["anomaly"]
    async with engine.connect() as connection:
        assert (
            await connection.execute(select(func.count()).select_from(PersonReport))
        ).scalar() == 0
        related = (await connection.execute(select(Anomaly.related_county))).scalars().all()
    assert related == [None]
    assert await place_rows(engine) == before
    await refresh(engine, [person])  # at head: derives what 0007 derived
    assert await place_rows(engine) == before


async def test_downgrade_removes_reports_and_their_places_and_keeps_the_facts(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    person = await _at_0007(engine)
    await migrate(engine, "upgrade", "head")
    await refresh(engine, [person])
    without_reports = await place_rows(engine)
    async with engine.begin() as connection:
        await connection.execute(
            insert(PersonReport.__table__).values(
                person_id=person,
                department=CIVIL,
                county_code=SHUSHAN,
                region_code=SHUSHAN,
                name_ct=b"sealed",
                reported_on=TODAY,
                verified_on=None,
            )
        )
    await refresh(engine, [person])
    kinds = {row[2] for row in await place_rows(engine)}
    assert "reported" in kinds

    await migrate(engine, "downgrade", "0007")

    assert await revision_of(engine) == "0007"
    tables, columns = await schema_of(engine)
    assert "person_report" not in tables
    assert "related_county" not in columns["anomaly"]
    assert "reported" not in {row[2] for row in await place_rows(engine)}
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM relief_status"))).scalar() == 2

    await migrate(engine, "upgrade", "head")
    await refresh(engine, [person])
    assert await place_rows(engine) == without_reports
