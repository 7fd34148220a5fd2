"""Migration 0003 (the closed loop) on a gateway that already runs: the loop's policy lines
arrive as a new policy version completing the default data-sharing lists; a fresh database gets
them from the default file (no extra version); downgrading takes lines, tables and the list-date
columns back and keeps the data.

On SQLite and PostgreSQL, through alembic the way ``gateway.storage.migrate`` runs it.
"""

from __future__ import annotations

import importlib
from collections import Counter
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.store import Authorizer, PolicyLine, default_policy_lines, install_default_policies
from gateway.domain.clock import now_utc
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import Base, CasbinRule, PolicyVersion
from tests.migration_support import (  # noqa: F401
    default_lines_before_places,
    engine,
    migrate,
    policy_lines,
    revision_of,
    schema_of,
    versions,
)

MIGRATION = importlib.import_module("migrations.versions.0003_closed_loop")
NEW_LINES: list[PolicyLine] = list(MIGRATION._NEW_LINES)
DEFAULT_LINES = Counter(default_policy_lines())
# The default file as it was before migration 0007 made its row scopes place-aware.
DEFAULT_LINES_AT_0006 = default_lines_before_places()
LINES_AT_0002 = DEFAULT_LINES_AT_0006 - Counter(NEW_LINES)
NEW_TABLES = {"warning_run", "cost_warning", "task"}
LIST_DATES = {"listed_on", "exit_listed_on"}


def test_the_migrations_lines_are_all_in_the_default_file() -> None:
    assert Counter(NEW_LINES) - DEFAULT_LINES_AT_0006 == Counter()
    assert len(NEW_LINES) == len(set(NEW_LINES))


async def initialised_at_0002(engine: AsyncEngine) -> None:  # noqa: F811
    """A gateway at 0002 running the then-default policies as version 1."""
    await migrate(engine, "upgrade", "0002")
    async with engine.begin() as connection:
        await connection.execute(
            insert(CasbinRule),
            [
                {"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p}
                for s, o, a, p in LINES_AT_0002.elements()
            ],
        )
        await connection.execute(
            insert(PolicyVersion).values(
                created_at=now_utc(), created_by="system", note="默认数据共享清单"
            )
        )


async def test_an_initialised_gateway_gets_the_loop_grants_as_a_new_version(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await initialised_at_0002(engine)

    await migrate(engine, "upgrade", "0003")

    assert await revision_of(engine) == "0003"
    assert await policy_lines(engine) == DEFAULT_LINES_AT_0006
    assert await versions(engine) == [(1, "system"), (2, "migration 0003")]
    authorizer = Authorizer(engine)
    async with engine.connect() as connection:
        await authorizer.load(connection)
    assert authorizer.version == 2


async def test_a_fresh_database_gets_the_default_file_and_no_extra_version(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "head")
    assert await versions(engine) == []
    assert await policy_lines(engine) == Counter()

    async with make_sessionmaker(engine)() as session:
        assert await install_default_policies(session) is True

    assert await policy_lines(engine) == DEFAULT_LINES
    assert await versions(engine) == [(1, "system")]


async def test_downgrade_to_0002_takes_the_loop_back(engine: AsyncEngine) -> None:  # noqa: F811
    await initialised_at_0002(engine)
    await migrate(engine, "upgrade", "head")
    tables, columns = await schema_of(engine)
    assert tables >= NEW_TABLES
    assert columns["relief_status"] >= LIST_DATES

    await migrate(engine, "downgrade", "0002")

    assert await revision_of(engine) == "0002"
    assert await policy_lines(engine) == LINES_AT_0002
    assert [who for _, who in await versions(engine)] == ["system"]
    tables, columns = await schema_of(engine)
    assert tables & NEW_TABLES == set()
    assert columns["relief_status"] & LIST_DATES == set()
    async with engine.connect() as connection:
        assert (
            await connection.execute(select(func.count()).select_from(PolicyVersion))
        ).scalar_one() == 1

    await migrate(engine, "upgrade", "head")
    assert await policy_lines(engine) == DEFAULT_LINES


async def test_the_migrations_build_exactly_the_models(engine: AsyncEngine) -> None:  # noqa: F811
    """What alembic creates at head is what the models declare (no drift in tables, columns,
    types or indexes): the models are what the code queries, the migrations what runs."""
    await migrate(engine, "upgrade", "head")

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
