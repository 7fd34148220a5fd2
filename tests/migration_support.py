"""Shared by the migration tests: a new empty database per backend, alembic run the way
``gateway.storage.migrate`` runs it, and readers of what a migration changed."""

from __future__ import annotations

import importlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.store import PolicyLine, default_policy_lines
from gateway.storage.engine import make_engine
from gateway.storage.migrate import alembic_config
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.pgcluster import ThrowawayCluster


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A new, empty database."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_migration_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    created = make_engine(url)
    try:
        yield created
    finally:
        await created.dispose()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


async def migrate(engine: AsyncEngine, direction: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def policy_lines(engine: AsyncEngine) -> Counter[PolicyLine]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3).where(
                CasbinRule.ptype == "p"
            )
        )
        return Counter((r[0], r[1], r[2], r[3]) for r in rows)


async def versions(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(PolicyVersion.id, PolicyVersion.created_by).order_by(PolicyVersion.id)
        )
        return [(r[0], r[1]) for r in rows]


async def schema_of(engine: AsyncEngine) -> tuple[set[str], dict[str, set[str]]]:
    """The tables, and the columns of every table."""

    def read(connection: Connection) -> tuple[set[str], dict[str, set[str]]]:
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        columns = {table: {c["name"] for c in inspector.get_columns(table)} for table in tables}
        return tables, columns

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def revision_of(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        return str(
            (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        )


def default_lines_before_places() -> Counter[PolicyLine]:
    """The default file as it was before migration 0007 made its row scopes place-aware:
    today's file with 0007's replacements taken back."""
    places = importlib.import_module("migrations.versions.0007_person_places")
    before = {new: old for old, news in places._REPLACED.items() for new in news}
    return Counter(list(dict.fromkeys(before.get(line, line) for line in default_policy_lines())))
