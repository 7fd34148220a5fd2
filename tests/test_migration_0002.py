"""Migration 0002 (ingest) on a gateway that already runs: the exchange's policy lines arrive as
a new policy version, exactly completing the default data-sharing lists; a fresh database gets
them from the default file instead (no extra version); downgrading takes lines and tables back.

Run on SQLite and PostgreSQL through alembic with an open connection, the way
``gateway.storage.migrate`` runs it.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.store import Authorizer, PolicyLine
from gateway.crypto import FieldCipher, Keyring
from gateway.domain import clock
from gateway.domain.clock import now_utc
from gateway.domain.synthetic import generate_population
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import CasbinRule, Person, PolicyVersion
from gateway.storage.vault import PersonVault
from gateway.storage.writer import write_bundles
from tests.migration_support import (  # noqa: F401
    default_lines_before_places,
    engine,
    migrate,
    policy_lines,
    revision_of,
    schema_of,
    versions,
)

MIGRATION = importlib.import_module("migrations.versions.0002_ingest")
NEW_LINES: list[PolicyLine] = list(MIGRATION._NEW_LINES)
LATER_LINES: list[PolicyLine] = list(
    importlib.import_module("migrations.versions.0003_closed_loop")._NEW_LINES
)
# What the default file held when 0002 was the head, and when 0001 was: today's file with the
# lines 0007 made place-aware as they were before, and without the lines 0003 added.
DEFAULT_LINES = default_lines_before_places() - Counter(LATER_LINES)
LINES_AT_0001 = DEFAULT_LINES - Counter(NEW_LINES)
NEW_TABLES = {"ingest_batch", "anomaly", "person_source", "settlement", "vital_event"}
PROVENANCE_COLUMNS = {"batch_id", "source_line", "received_at"}


def test_the_migrations_lines_are_all_in_the_default_file() -> None:
    """Otherwise an upgraded gateway and a fresh one would hold different policies."""
    assert Counter(NEW_LINES) - DEFAULT_LINES == Counter()
    assert sum(LINES_AT_0001.values()) == sum(DEFAULT_LINES.values()) - len(NEW_LINES)


async def initialised_at_0001(engine: AsyncEngine) -> None:  # noqa: F811
    """A gateway that ran 0001 and installed the then-default policies as version 1."""
    await migrate(engine, "upgrade", "0001")
    async with engine.begin() as connection:
        await connection.execute(
            insert(CasbinRule),
            [
                {"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p}
                for s, o, a, p in LINES_AT_0001.elements()
            ],
        )
        await connection.execute(
            insert(PolicyVersion).values(
                created_at=now_utc(), created_by="system", note="默认数据共享清单"
            )
        )


async def test_an_initialised_gateway_gets_the_exchange_grants_as_a_new_version(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await initialised_at_0001(engine)
    assert await policy_lines(engine) == LINES_AT_0001

    await migrate(engine, "upgrade", "0002")

    assert await revision_of(engine) == "0002"
    assert await policy_lines(engine) == DEFAULT_LINES
    assert await versions(engine) == [(1, "system"), (2, "migration 0002")]
    # The result is a policy the gateway loads (every line valid) at the new version.
    authorizer = Authorizer(engine)
    async with engine.connect() as connection:
        await authorizer.load(connection)
    assert authorizer.version == 2


async def test_downgrade_to_0001_takes_the_grants_and_tables_back(
    engine: AsyncEngine,  # noqa: F811
    tmp_path: Path,
) -> None:
    await initialised_at_0001(engine)
    # Up to head, so that data can be written with today's models, and down through 0002.
    await migrate(engine, "upgrade", "head")
    tables, columns = await schema_of(engine)
    assert tables >= NEW_TABLES
    assert columns["relief_status"] >= PROVENANCE_COLUMNS
    # Data written at head (with SEED batches and provenance) survives the way down.
    keyring = Keyring.load_or_create(tmp_path / "keyring.json", "aes-256-gcm+hmac-sha256")
    async with make_sessionmaker(engine)() as session:
        bundles = list(generate_population(12, seed=7, today=clock.today()))
        await write_bundles(session, PersonVault(FieldCipher(keyring)), bundles)
    persons = sum(len(bundle.members) for bundle in bundles)

    await migrate(engine, "downgrade", "0001")

    assert await revision_of(engine) == "0001"
    assert await policy_lines(engine) == LINES_AT_0001
    tables, columns = await schema_of(engine)
    assert tables & NEW_TABLES == set()
    for table in ("relief_status", "enrollment", "cost_burden"):
        assert columns[table] & PROVENANCE_COLUMNS == set(), table
    assert {"name_bidx", "deceased_on"} & columns["person"] == set()
    assert {"source_department", "source_number"} & columns["household"] == set()
    async with engine.connect() as connection:
        kept = (await connection.execute(select(func.count()).select_from(Person))).scalar_one()
    assert kept == persons

    # The downgrade took the version that granted the lines with them; up again gives the
    # same lines and history as a first upgrade.
    assert [created_by for _, created_by in await versions(engine)] == ["system"]
    await migrate(engine, "upgrade", "0002")
    assert await policy_lines(engine) == DEFAULT_LINES
    assert [created_by for _, created_by in await versions(engine)] == [
        "system",
        "migration 0002",
    ]
