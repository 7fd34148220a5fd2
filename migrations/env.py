"""Alembic environment. Run through ``gateway.storage.migrate`` (``relief-gateway migrate``),
which hands over an open connection, or with the ``alembic`` command and ``-x url=…``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from gateway.storage.engine import make_engine
from gateway.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = make_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=… or use `relief-gateway migrate`")
    asyncio.run(_run_with_url(url))
