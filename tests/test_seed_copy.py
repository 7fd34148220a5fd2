"""``seed --copy`` stores exactly what ``seed`` stores: same people (decrypted), same blind
indexes and source digests, same facts with the same ids, same SEED batches, and the same
indexes and constraints afterwards (they are dropped and rebuilt around the COPY)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.crypto import FieldCipher, Keyring
from tests.pgcluster import ThrowawayCluster

PERSONS = 3000
SCRIPT = Path(sys.executable).parent / "relief-gateway"
SEALED = ("id_number", "name", "phone", "address")


def _seed(data_dir: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(RELIEF_DATA_DIR=str(data_dir), RELIEF_DATABASE_URL=url, RELIEF_TODAY="2026-11-23")
    return subprocess.run(
        [str(SCRIPT), "seed", "--persons", str(PERSONS), "--seed", "7", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def _snapshot(dsn: str, cipher: FieldCipher) -> dict[str, Any]:
    """Every seeded row in a comparable form: plaintext instead of ciphertext (nonces are
    random), the batch's department instead of its random id, no wall-clock timestamps."""
    conn = await asyncpg.connect(dsn)
    try:
        batches = {
            row["id"]: row["department"]
            for row in await conn.fetch("SELECT id, department FROM ingest_batch")
        }
        out: dict[str, Any] = {}
        people = []
        for row in await conn.fetch("SELECT * FROM person ORDER BY id"):
            values = dict(row)
            for column in SEALED:
                sealed = values.pop(f"{column}_ct")
                values[column] = (
                    None
                    if sealed is None
                    else cipher.open(sealed, table="person", column=column, row_id=str(row["id"]))
                )
            values.pop("created_at")
            people.append(values)
        out["person"] = people
        out["household"] = [
            dict(r) for r in await conn.fetch("SELECT * FROM household ORDER BY id")
        ]
        for table, order in (
            ("person_source", "person_id, department"),
            ("relief_status", "id"),
            ("enrollment", "id"),
            ("cost_burden", "id"),
        ):
            rows = []
            statement = f"SELECT * FROM {table} ORDER BY {order}"  # noqa: S608 - constants
            for row in await conn.fetch(statement):
                values = dict(row)
                values["batch_id"] = batches[values["batch_id"]]
                values.pop("received_at")
                rows.append(values)
            out[table] = rows
        out["ingest_batch"] = [
            {k: v for k, v in dict(r).items() if k not in ("id", "received_at", "finished_at")}
            for r in await conn.fetch("SELECT * FROM ingest_batch ORDER BY department")
        ]
        out["indexes"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"
            )
        ]
        out["constraints"] = [
            tuple(r)
            for r in await conn.fetch(
                # Every user schema: partitions (settlement's, migration 0005) carry copies of
                # the parent's foreign key to person, recreated with it.
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid),"
                " convalidated, conparentid <> 0 FROM pg_constraint"
                " WHERE connamespace NOT IN ('pg_catalog'::regnamespace,"
                " 'information_schema'::regnamespace) ORDER BY 1, 2"
            )
        ]
        return out
    finally:
        await conn.close()


@pytest.mark.usefixtures("postgres_cluster")
async def test_copy_seed_stores_what_seed_stores(
    postgres_cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    ordinary_url = postgres_cluster.create_database("seed_ordinary")
    copied_url = postgres_cluster.create_database("seed_copy")
    data_dir = tmp_path / "data"  # one keyring for both: same blind indexes and digests

    plain = await asyncio.to_thread(_seed, data_dir, ordinary_url)
    assert plain.returncode == 0, plain.stderr
    copied = await asyncio.to_thread(_seed, data_dir, copied_url, "--copy")
    assert copied.returncode == 0, copied.stderr
    assert "Traceback" not in copied.stderr
    # The summary line is the ordinary seed's, word for word; the speed line follows it.
    assert plain.stdout.strip().splitlines()[-1] in copied.stdout
    assert "COPY 批量生成用时" in copied.stdout

    cipher = FieldCipher(Keyring.load(data_dir / "keyring.json"))
    expected = await _snapshot(postgres_cluster.url("seed_ordinary", driver=None), cipher)
    actual = await _snapshot(postgres_cluster.url("seed_copy", driver=None), cipher)
    assert len(expected["person"]) == PERSONS
    for table in ("relief_status", "enrollment", "cost_burden"):
        assert expected[table], table
    for key in expected:
        assert actual[key] == expected[key], key


@pytest.mark.usefixtures("postgres_cluster")
async def test_copy_seed_refuses_a_populated_database(
    postgres_cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.create_database("seed_copy_twice")
    data_dir = tmp_path / "data"
    first = await asyncio.to_thread(_seed, data_dir, url, "--copy")
    assert first.returncode == 0, first.stderr
    cipher = FieldCipher(Keyring.load(data_dir / "keyring.json"))
    dsn = postgres_cluster.url("seed_copy_twice", driver=None)
    before = await _snapshot(dsn, cipher)

    again = await asyncio.to_thread(_seed, data_dir, url, "--copy")
    assert again.returncode == 2
    assert "--copy 只能向没有人员和家庭数据的数据库" in again.stderr
    assert "Traceback" not in again.stderr
    # Refused before anything was dropped or written: rows, indexes and constraints as before.
    after = await _snapshot(dsn, cipher)
    assert len(after["person"]) == PERSONS
    assert after == before


def test_copy_seed_refuses_sqlite(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "seed", "--persons", "10", "--copy"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")},
            "RELIEF_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--copy 仅支持 PostgreSQL" in done.stderr


@pytest.mark.usefixtures("postgres_cluster")
async def test_a_failed_copy_seed_leaves_the_database_as_it_was(
    postgres_cluster: ThrowawayCluster,
) -> None:
    """The producer fails after the indexes and constraints were dropped and the tables
    truncated: the one transaction rolls all of it back."""
    from gateway.storage.copy_seed import CopySeedError, copy_seed
    from gateway.storage.engine import make_engine
    from gateway.storage.migrate import upgrade_to_head
    from gateway.storage.vault import PersonVault

    url = postgres_cluster.create_database("seed_copy_fails")
    cipher = FieldCipher(Keyring.generate("aes-256-gcm+hmac-sha256"))
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
        dsn = postgres_cluster.url("seed_copy_fails", driver=None)
        before = await _snapshot(dsn, cipher)
        with pytest.raises(CopySeedError, match="数据生成失败"):
            await copy_seed(
                engine,
                PersonVault(cipher),
                persons=100,
                seed=1,
                today=date(2026, 11, 23),
                provinces=["atlantis"],  # the generator refuses it, in the producer process
            )
        after = await _snapshot(dsn, cipher)
    finally:
        await engine.dispose()
    assert after == before
    assert after["indexes"]
    assert after["ingest_batch"] == []
