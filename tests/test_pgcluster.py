"""The test tooling's own PostgreSQL: a real server, reachable with asyncpg."""

from __future__ import annotations

import os
import secrets

import asyncpg  # type: ignore[import-untyped]
import pytest

from tests.pgcluster import ThrowawayCluster

pytestmark = pytest.mark.postgres


async def _fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_server_answers(postgres_cluster: ThrowawayCluster) -> None:
    assert postgres_cluster.dsn_asyncpg.startswith("postgresql+asyncpg://")
    version = await _fetchval(postgres_cluster.dsn_asyncpg, "select version()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL ")
    db = await _fetchval(postgres_cluster.dsn_asyncpg, "select current_database()")
    assert db == postgres_cluster.dbname
    if not postgres_cluster.external:
        assert await _fetchval(postgres_cluster.dsn, "show fsync") == "off"
        assert await _fetchval(postgres_cluster.dsn, "show server_encoding") == "UTF8"


async def test_second_database_and_pg_dump(postgres_cluster: ThrowawayCluster) -> None:
    name = f"relief_probe_{secrets.token_hex(4)}"
    canary = f"plaintext-canary-{secrets.token_hex(8)}"
    url = postgres_cluster.create_database(name)
    assert url.endswith(f"/{name}")

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await conn.fetchval("select current_database()") == name
        await conn.execute("create table probe_marker (id int primary key, note text)")
        await conn.execute("insert into probe_marker values (1, $1)", canary)
    finally:
        await conn.close()

    dump = postgres_cluster.pg_dump(name)
    assert isinstance(dump, bytes)
    assert b"CREATE TABLE public.probe_marker" in dump
    assert canary.encode() in dump
    # the main database is untouched
    assert b"probe_marker" not in postgres_cluster.pg_dump()
    postgres_cluster.drop_database(name)


@pytest.mark.slow
async def test_private_cluster_restart_and_cleanup(postgres_cluster: ThrowawayCluster) -> None:
    """restart() keeps data and port; leaving the block kills the server, deletes the dir."""
    if postgres_cluster.external:
        pytest.skip("needs local server binaries, not an external server")
    with ThrowawayCluster(dbname="lifecycle", honour_env=False) as pg:
        assert pg.tmpdir is not None
        tmpdir, pid, port = pg.tmpdir, pg.pid, pg.port
        assert pid is not None
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute("create table t (x int); insert into t values (42)")
        finally:
            await conn.close()

        pg.restart()  # fast (clean) shutdown: data and port survive
        assert pg.port == port
        assert pg.pid != pid
        assert await _fetchval(pg.dsn, "select count(*) from t where x = 42") == 1

        # crash + recovery (with synchronous_commit=off the last few ms may be lost)
        pg.restart(mode="immediate")
        assert await _fetchval(pg.dsn, "select 1") == 1
        new_pid = pg.pid
        assert new_pid is not None

    assert not tmpdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(new_pid, 0)
