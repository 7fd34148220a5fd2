"""Online key rotation (issue 6 §3): ``keys rotate`` / ``reencrypt`` / ``status`` / ``retire``.

The operator's path is the CLI; the gateway under test is the harness (same runtime a served
gateway has). SQLite covers the single-process behaviour; PostgreSQL runs the whole sequence
in separate processes while the gateway serves a loop of lookups and pages that must all
return the right plaintext.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.cli import main
from gateway.crypto import FieldCipher, Keyring
from gateway.domain.records import PersonRecord
from gateway.storage.models import Person
from gateway.storage.reencrypt import (
    Progress,
    key_usage,
    plan_batch,
    read_batch,
    reencrypt,
    write_batch,
)
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

RELOAD_SECONDS = "0.2"
LOOKUP = """
query One($id: String!) { person(idNumber: $id) { id idNumber name phone address } }
"""
PAGE = """
query Page($prefix: String, $after: String) {
  persons(first: 50, after: $after, filter: {regionPrefix: $prefix}) {
    edges { node { id idNumber name phone address } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _run(harness: Harness, *argv: str) -> Ran:
    """``relief-gateway keys …`` against the harness's data dir and database (in a thread:
    the command runs its own event loop, like the real console script)."""
    settings = harness.runtime.settings
    args = [
        "keys",
        *argv,
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.resolved_database_url,
    ]
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return Ran(code, out.getvalue(), err.getvalue())


async def keys(harness: Harness, *argv: str) -> Ran:
    return await asyncio.to_thread(_run, harness, *argv)


def _keyring(harness: Harness) -> Keyring:
    return Keyring.load(harness.runtime.settings.keyring_path)


async def _usage(harness: Harness) -> dict[str, int]:
    cipher = FieldCipher(_keyring(harness))
    async with harness.runtime.engine.connect() as connection:
        usage = await key_usage(connection, cipher)
    return {key_id: usage.count(key_id) for key_id in cipher.data_key_ids}


async def _sealed_under(harness: Harness) -> set[str]:
    """The key ids named by every ciphertext in the person table (read raw)."""
    cipher = harness.runtime.vault.cipher
    columns = (Person.id_number_ct, Person.name_ct, Person.phone_ct, Person.address_ct)
    async with harness.runtime.engine.connect() as connection:
        rows = (await connection.execute(select(*columns))).all()
    return {cipher.key_id_of(value) for row in rows for value in row if value is not None}


def _expected(person: PersonRecord) -> dict[str, Any]:
    return {
        "idNumber": person.id_number,
        "name": person.name,
        "phone": person.phone,
        "address": person.address,
    }


async def _check_reads(harness: Harness, persons: list[PersonRecord]) -> None:
    """Every lookup returns the seeded plaintext."""
    for person in persons:
        token = harness.token("medical_insurance", "province", person.region_code[:2])
        body = await harness.query(token, LOOKUP, {"id": person.id_number})
        assert "errors" not in body, body
        node = body["data"]["person"]
        assert {k: node[k] for k in ("idNumber", "name", "phone", "address")} == _expected(person)


async def _wait_until_sealing_with(harness: Harness, key_id: str) -> None:
    vault = harness.runtime.vault
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe = vault.seal(uuid.uuid4(), "name", "探针")
        assert probe is not None
        if vault.cipher.key_id_of(probe) == key_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway did not pick up {key_id}")


@pytest.fixture
async def sqlite_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("RELIEF_KEYRING_RELOAD_SECONDS", RELOAD_SECONDS)
    url = f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}"
    built = await build_harness(tmp_path / "data", url, backend="sqlite", persons=40)
    yield built
    await built.close()


# --------------------------------------------------------------------------- keyring only


def test_reload_on_unknown_key_id_and_refusal_of_another_index_key(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.generate("aes-256-gcm+hmac-sha256").save(path)
    # A process that checks the file only hourly still opens what another one sealed with a
    # key created after it loaded: an unknown key id triggers the reload at once.
    stale = FieldCipher(Keyring.load(path), reload_seconds=3600)
    with Keyring.editing(path) as keyring:
        new_key = keyring.rotate()
    fresh = FieldCipher(Keyring.load(path))
    where = {"table": "person", "column": "name", "row_id": "r1"}
    sealed = fresh.seal("王小明", **where)
    assert stale.open(sealed, **where) == "王小明"
    assert stale.primary_key_id == new_key.key_id
    assert stale.key_id_of(stale.seal("李四", **where)) == new_key.key_id

    # A keyring file with another blind-index key is not taken: every index would break.
    other = Keyring.generate("aes-256-gcm+hmac-sha256")
    other.save(path)
    assert not stale._keyring.reload_if_changed()
    assert stale.open(sealed, **where) == "王小明"


# --------------------------------------------------------------------------- SQLite


@pytest.mark.parametrize("action", [["rotate"], ["status"], ["reencrypt"], ["retire", "dk-x"]])
def test_without_a_keyring_each_command_is_one_clear_refusal(
    tmp_path: Path, action: list[str]
) -> None:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["keys", *action, "--data-dir", str(tmp_path / "absent")])
    assert code == 2
    assert "找不到密钥环文件" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not (tmp_path / "absent").exists()


async def test_rotate_prints_the_new_key_id_only_and_the_gateway_follows(
    sqlite_harness: Harness,
) -> None:
    harness = sqlite_harness
    path = harness.runtime.settings.keyring_path
    old = _keyring(harness).primary_id

    ran = await keys(harness, "rotate")

    assert ran.code == 0, ran.err
    keyring = _keyring(harness)
    assert keyring.primary_id != old
    assert set(keyring.data_keys) == {old, keyring.primary_id}
    assert keyring.primary_id in ran.out
    materials = [key.material for key in keyring.data_keys.values()]
    for material in [*materials, keyring.index_key.material]:
        for form in (material.hex(), base64.b64encode(material).decode()):
            assert form not in ran.out + ran.err
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []

    # The running gateway: new values under the new key without a restart, old ones readable.
    await _wait_until_sealing_with(harness, keyring.primary_id)
    await _check_reads(harness, harness.persons[:10])


async def test_reencrypt_in_batches_is_resumable_and_reads_keep_working(
    sqlite_harness: Harness,
) -> None:
    harness = sqlite_harness
    old = _keyring(harness).primary_id
    assert (await keys(harness, "rotate")).code == 0
    new = _keyring(harness).primary_id
    total = (await _usage(harness))[old]

    dry = await keys(harness, "reencrypt", "--dry-run", "--batch", "7")
    assert dry.code == 0
    assert f"需要重新加密 {total} 个字段" in dry.out
    assert (await _usage(harness))[old] == total  # nothing written

    class Interrupted(Exception):
        pass

    async def stop_after_two(progress: Progress) -> None:
        if progress.batches == 2:
            raise Interrupted

    cipher = FieldCipher(_keyring(harness))
    with pytest.raises(Interrupted):
        await reencrypt(harness.runtime.engine, cipher, batch_size=7, on_batch=stop_after_two)
    halfway = await _usage(harness)
    assert 0 < halfway[old] < total
    assert halfway[old] + halfway[new] == total
    await _check_reads(harness, harness.persons)  # half old, half new: all readable

    ran = await keys(harness, "reencrypt", "--batch", "7")
    assert ran.code == 0, ran.err
    assert "第 1 批" in ran.out
    assert "所有密文均已使用主密钥" in ran.out
    assert await _usage(harness) == {old: 0, new: total}
    assert await _sealed_under(harness) == {new}
    await _check_reads(harness, harness.persons)

    again = await keys(harness, "reencrypt")
    assert again.code == 0
    assert "重新加密 0 个字段" in again.out


async def test_compare_and_set_never_overwrites_a_concurrent_write(
    sqlite_harness: Harness,
) -> None:
    harness = sqlite_harness
    assert (await keys(harness, "rotate")).code == 0
    new = _keyring(harness).primary_id
    await _wait_until_sealing_with(harness, new)
    cipher = FieldCipher(_keyring(harness))
    engine = harness.runtime.engine

    async with engine.connect() as connection:
        rows = await read_batch(connection, cipher, after=None, size=5)
    reseals, unreadable = plan_batch(rows, cipher)
    assert not unreadable
    assert len(reseals) >= 5
    # Between the read and the write, the gateway stores a new name for the first person.
    changed = rows[0].id
    async with engine.begin() as connection:
        await connection.execute(
            update(Person)
            .where(Person.id == changed)
            .values(name_ct=harness.runtime.vault.seal(changed, "name", "新名字"))
        )
    async with engine.begin() as connection:
        written = await write_batch(connection, reseals)

    assert written == len(reseals) - 1
    async with engine.connect() as connection:
        row = (await connection.execute(select(Person).where(Person.id == changed))).one()
    assert harness.runtime.vault.open(row, "name") == "新名字"
    person = harness.person_by_id()[changed]
    assert harness.runtime.vault.open(row, "id_number") == person.id_number


async def test_status_counts_and_retire_is_refused_while_a_key_protects_data(
    sqlite_harness: Harness,
) -> None:
    harness = sqlite_harness
    old = _keyring(harness).primary_id
    total = (await _usage(harness))[old]

    refused = await keys(harness, "retire", old)
    assert refused.code == 2
    assert "主密钥" in refused.err
    assert (await keys(harness, "retire", "dk-nonexistent")).code == 2

    assert (await keys(harness, "rotate")).code == 0
    new = _keyring(harness).primary_id
    status = await keys(harness, "status")
    assert status.code == 0
    line = next(row for row in status.out.splitlines() if old in row)
    assert f"密文 {total} 个" in line
    assert "主密钥" in next(row for row in status.out.splitlines() if new in row)
    assert "盲索引密钥" in status.out
    assert "不随 keys rotate 轮换" in status.out

    refused = await keys(harness, "retire", old)
    assert refused.code == 2
    assert f"仍有 {total} 个密文" in refused.err
    assert "keys reencrypt" in refused.err
    assert old in _keyring(harness).data_keys

    assert (await keys(harness, "reencrypt", "--batch", "16")).code == 0
    retired = await keys(harness, "retire", old)
    assert retired.code == 0, retired.err
    assert set(_keyring(harness).data_keys) == {new}
    # The gateway drops the retired key on its next reload and keeps serving.
    await asyncio.sleep(float(RELOAD_SECONDS) * 2)
    await _check_reads(harness, harness.persons[:10])
    assert set(harness.runtime.vault.cipher.data_key_ids) == {new}


async def test_a_value_that_cannot_be_opened_is_reported_and_left(
    sqlite_harness: Harness,
) -> None:
    harness = sqlite_harness
    old = _keyring(harness).primary_id
    victim = harness.persons[3]
    async with harness.runtime.engine.begin() as connection:
        sealed = (
            await connection.execute(select(Person.name_ct).where(Person.id == victim.person_id))
        ).scalar_one()
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        await connection.execute(
            update(Person).where(Person.id == victim.person_id).values(name_ct=tampered)
        )
    assert (await keys(harness, "rotate")).code == 0

    ran = await keys(harness, "reencrypt")
    assert ran.code == 1
    assert f"{victim.person_id}.name" in ran.err
    assert "无法解密" in ran.err
    assert victim.name not in ran.out + ran.err
    assert (await _usage(harness))[old] == 1  # only the damaged value stays
    refused = await keys(harness, "retire", old)
    assert refused.code == 2
    assert "仍有 1 个密文" in refused.err


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class Readers:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)


async def _read_loop(
    harness: Harness, persons: list[PersonRecord], stop: asyncio.Event, readers: Readers
) -> None:
    """Lookups by ID number and county pages, each checked against the seeded plaintext."""
    by_id = {str(p.person_id): p for p in persons}
    province = persons[0].region_code[:2]
    county = harness.busiest_county()
    token = harness.token("medical_insurance", "province", province)
    rng = random.Random(7)
    while not stop.is_set():
        try:
            if rng.random() < 0.7:
                person = rng.choice(persons)
                body = await harness.query(token, LOOKUP, {"id": person.id_number})
                nodes = [body["data"]["person"]] if not body.get("errors") else []
                if body.get("errors"):
                    readers.failures.append(str(body["errors"]))
            else:
                body = await harness.query(token, PAGE, {"prefix": county})
                if body.get("errors"):
                    readers.failures.append(str(body["errors"]))
                nodes = [edge["node"] for edge in body["data"]["persons"]["edges"]]
                if not nodes:
                    readers.failures.append("empty page")
            for node in nodes:
                want = _expected(by_id[node["id"]])
                got = {k: node[k] for k in want}
                if got != want:
                    readers.failures.append(f"wrong plaintext for {node['id']}")
            readers.ok += 1
            readers.stamps.append(time.monotonic())
        except Exception as exc:
            readers.failures.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(0)


async def _subprocess(harness: Harness, *argv: str) -> Ran:
    """``python -m gateway.cli keys …`` in its own process, as an operator would run it."""
    settings = harness.runtime.settings
    env = {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
        "RELIEF_KEYRING_RELOAD_SECONDS": RELOAD_SECONDS,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "keys",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@pytest.mark.postgres
@pytest.mark.slow
async def test_rotation_and_reencryption_under_concurrent_reads_on_postgres(
    postgres_cluster: ThrowawayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELIEF_KEYRING_RELOAD_SECONDS", RELOAD_SECONDS)
    url = postgres_cluster.create_database(f"rotation_{uuid.uuid4().hex[:8]}")
    harness = await build_harness(tmp_path, url, backend="postgres", persons=300)
    try:
        province = harness.busiest_county()[:2]
        persons = [p for p in harness.persons if p.region_code.startswith(province)]
        writer_target, persons = persons[0], persons[1:]
        old = _keyring(harness).primary_id
        total = (await _usage(harness))[old]

        stop = asyncio.Event()
        readers = Readers()
        tasks = [asyncio.create_task(_read_loop(harness, persons, stop, readers)) for _ in range(3)]
        try:
            rotated = await _subprocess(harness, "rotate")
            assert rotated.code == 0, rotated.err
            new = _keyring(harness).primary_id
            assert new in rotated.out
            assert new != old

            refused = await _subprocess(harness, "retire", old)
            assert refused.code == 2, refused.out
            assert f"仍有 {total} 个密文" in refused.err

            # A write by the serving process after the rotation uses the new key.
            await _wait_until_sealing_with(harness, new)
            vault = harness.runtime.vault
            async with harness.runtime.engine.begin() as connection:
                await connection.execute(
                    update(Person)
                    .where(Person.id == writer_target.person_id)
                    .values(phone_ct=vault.seal(writer_target.person_id, "phone", "13900000000"))
                )

            started = time.monotonic()
            ran = await _subprocess(harness, "reencrypt", "--batch", "25", "--pause", "0.05")
            finished = time.monotonic()
            assert ran.code == 0, ran.err
            assert "第 1 批" in ran.out
            assert "所有密文均已使用主密钥" in ran.out

            status = await _subprocess(harness, "status")
            assert status.code == 0
            assert "密文 0 个" in next(row for row in status.out.splitlines() if old in row)

            retired = await _subprocess(harness, "retire", old)
            assert retired.code == 0, retired.err
            # Keep reading while the gateway reloads a keyring without the old key.
            await asyncio.sleep(float(RELOAD_SECONDS) * 5)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

        assert readers.failures == []
        assert readers.ok > 50
        during = [t for t in readers.stamps if started <= t <= finished]
        assert len(during) >= 10, "reads must run while re-encryption runs"
        assert await _sealed_under(harness) == {new}
        assert set(harness.runtime.vault.cipher.data_key_ids) == {new}
        await _check_reads(harness, persons[:20])
        token = harness.token("medical_insurance", "province", province)
        body = await harness.query(token, LOOKUP, {"id": writer_target.id_number})
        assert body["data"]["person"]["phone"] == "13900000000"
    finally:
        await harness.close()
