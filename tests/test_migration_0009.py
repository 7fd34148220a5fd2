"""Migration 0009 (service clients, issue 16 item 2) on a gateway that already runs:

* ``service_client`` is created empty (no client exists before ``clients add``), with the
  columns ``gateway.storage.clients`` reads and writes;
* downgrading removes the table and with it every registered client; upgrading again gives an
  empty table, and a client can be registered and authenticated at once.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.clients import add_client, authenticate
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import ServiceClient
from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401

COLUMNS = {
    "client_id",
    "name",
    "department",
    "level",
    "region",
    "purposes",
    "secret_hash",
    "cert_sha256",
    "created_at",
    "created_by",
    "disabled_at",
    "disabled_by",
}
PURPOSES = ["enrollment_verification", "supervision"]


async def _register(engine: AsyncEngine) -> tuple[str, str]:  # noqa: F811
    async with make_sessionmaker(engine)() as session:
        created = await add_client(
            session,
            name="县医保结算系统",
            department="medical_insurance",
            level="county",
            region="370102",
            purposes=["supervision"],
            known_purposes=PURPOSES,
            created_by="operator",
        )
        await session.commit()
    assert created.secret is not None
    return created.client.client_id, created.secret


async def _count(engine: AsyncEngine) -> int:  # noqa: F811
    async with engine.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(ServiceClient))).scalar_one()
        )


async def test_upgrade_adds_an_empty_client_table(engine: AsyncEngine) -> None:  # noqa: F811
    await migrate(engine, "upgrade", "0008")
    tables, _ = await schema_of(engine)
    assert "service_client" not in tables

    await migrate(engine, "upgrade", "0009")

    assert await revision_of(engine) == "0009"
    tables, columns = await schema_of(engine)
    assert "service_client" in tables
    assert columns["service_client"] == COLUMNS
    assert await _count(engine) == 0
    client_id, secret = await _register(engine)
    async with make_sessionmaker(engine)() as session:
        found = await authenticate(session, client_id, secret=secret)
    assert found is not None
    assert found.purposes == ("supervision",)


async def test_downgrade_removes_the_clients_and_upgrade_starts_empty(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "0009")
    await _register(engine)
    assert await _count(engine) == 1

    await migrate(engine, "downgrade", "0008")

    assert await revision_of(engine) == "0008"
    tables, _ = await schema_of(engine)
    assert "service_client" not in tables

    await migrate(engine, "upgrade", "0009")
    assert await _count(engine) == 0
