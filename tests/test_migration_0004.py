"""Migration 0004 (policy governance) on a gateway that already runs: the version in force gets
its complete lines as a snapshot (older versions cannot be reconstructed and stay without);
a fresh database gets its snapshot from the default policies; downgrading removes the proposal
table and the version columns and keeps versions and lines.

On SQLite and PostgreSQL, through alembic the way ``gateway.storage.migrate`` runs it.
"""

from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.store import PolicyLine, default_policy_lines, install_default_policies
from gateway.domain.clock import now_utc
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.migration_support import (  # noqa: F401
    engine,
    migrate,
    policy_lines,
    revision_of,
    schema_of,
    versions,
)

VERSION_COLUMNS = {"lines", "proposal_id", "approved_by"}
EXTRA: PolicyLine = ("civil_affairs@3701:county", "Person.phone", "read", "*")


async def initialised_at_0003(engine: AsyncEngine) -> list[PolicyLine]:  # noqa: F811
    """A gateway at 0003 that ran the default policies as version 1 and then a version 2 with
    one more line; the lines in force, in ``casbin_rule`` order."""
    await migrate(engine, "upgrade", "0003")
    lines = [*default_policy_lines(), EXTRA]
    async with engine.begin() as connection:
        await connection.execute(
            insert(CasbinRule),
            [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p} for s, o, a, p in lines],
        )
        for who in ("system", "test"):
            await connection.execute(
                insert(PolicyVersion).values(created_at=now_utc(), created_by=who, note=who)
            )
    return lines


async def snapshots(engine: AsyncEngine) -> dict[int, list[PolicyLine] | None]:  # noqa: F811
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(PolicyVersion.id, PolicyVersion.lines).order_by(PolicyVersion.id)
        )
        return {
            number: [(s, o, a, p) for s, o, a, p in json.loads(raw)] if raw else None
            for number, raw in rows
        }


async def test_upgrade_snapshots_the_version_in_force(engine: AsyncEngine) -> None:  # noqa: F811
    lines = await initialised_at_0003(engine)

    await migrate(engine, "upgrade", "0004")

    assert await revision_of(engine) == "0004"
    found = await snapshots(engine)
    assert found[2] == lines  # the version in force, in casbin_rule order
    assert found[1] is None  # no longer in force: its lines are gone
    assert await policy_lines(engine) == Counter(lines)  # the enforced lines are untouched
    assert await versions(engine) == [(1, "system"), (2, "test")]  # no version added
    tables, columns = await schema_of(engine)
    assert "policy_proposal" in tables
    assert columns["policy_version"] >= VERSION_COLUMNS


async def test_a_fresh_database_gets_the_snapshot_with_the_defaults(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "head")
    assert await snapshots(engine) == {}  # nothing to snapshot yet

    async with make_sessionmaker(engine)() as session:
        assert await install_default_policies(session) is True

    assert await snapshots(engine) == {1: default_policy_lines()}


async def test_downgrade_removes_the_table_and_columns(engine: AsyncEngine) -> None:  # noqa: F811
    lines = await initialised_at_0003(engine)
    await migrate(engine, "upgrade", "0004")

    await migrate(engine, "downgrade", "0003")

    assert await revision_of(engine) == "0003"
    tables, columns = await schema_of(engine)
    assert "policy_proposal" not in tables
    assert columns["policy_version"] & VERSION_COLUMNS == set()
    assert await versions(engine) == [(1, "system"), (2, "test")]
    assert await policy_lines(engine) == Counter(lines)

    await migrate(engine, "upgrade", "0004")  # and up again
    assert (await snapshots(engine))[2] == lines
