"""Serving survives its faults (issue 6 §4).

    restart    PostgreSQL restarted under a real ``relief-gateway serve`` process: right after
               a quick restart the next query is answered (a pooled connection that died with
               the server is replaced and the query run again once); while the server is down
               every request gets HTTP 503 ``SERVICE_UNAVAILABLE`` with a Chinese message and
               no SQL, and ``/readyz`` says not ready; once it is back the very next request
               succeeds. The gateway process is never restarted, and its log names each failed
               request without personal data.
    corrupted  One byte of one person's sealed name flipped in the database: that field is
               null with ``DATA_INTEGRITY`` at its path, for that person only; their other
               fields and every other person on the page are served, and a warning names the
               person id, field and key id, never a value.
(A ciphertext moved to another row is ``tests/test_encryption_at_rest.py``; PostgreSQL stopped
under the in-process app is ``tests/test_database_outage.py``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from gateway.storage.models import Person
from tests._pg_fixture import postgres_required
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster, find_postgres_bindir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
LOOKUP = "query Lookup($id: String!) { person(idNumber: $id) { name regionCode } }"
ONE = """
query One($id: String!) {
  person(idNumber: $id) { id idNumber name gender birthDate regionCode phone address }
}
"""
PAGE = """
query Page($prefix: String) {
  persons(first: 200, filter: {regionPrefix: $prefix}) {
    totalCount
    edges { node { id idNumber name gender birthDate regionCode phone address } }
  }
}
"""


# --------------------------------------------------------------------------- restart


@pytest.fixture
def private_cluster() -> Iterator[ThrowawayCluster]:
    if os.environ.get("RELIEF_TEST_POSTGRES_URL") or find_postgres_bindir() is None:
        if postgres_required():
            pytest.fail("this test needs local PostgreSQL server binaries", pytrace=False)
        pytest.skip("needs local PostgreSQL server binaries to stop and start a server")
    with ThrowawayCluster() as cluster:
        yield cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """A ``relief-gateway serve`` subprocess on the loopback interface."""

    def __init__(self, data_dir: Path, database_url: str, log_path: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
        env.update(
            RELIEF_DATA_DIR=str(data_dir),
            RELIEF_DATABASE_URL=database_url,
            RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
        )
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(SCRIPT), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            try:
                if (await self.client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("the gateway did not become ready")

    async def close(self) -> None:
        await self.client.aclose()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def served(private_cluster: ThrowawayCluster, tmp_path: Path) -> AsyncIterator[Any]:
    url = private_cluster.create_database("restart")
    harness = await build_harness(tmp_path / "data", url, backend="postgres", persons=20)
    await harness.close()  # the data, keys and token key stay; the gateway is the subprocess
    server = Served(tmp_path / "data", url, tmp_path / "serve.log")
    try:
        await server.ready()
        yield harness, server
    finally:
        await server.close()


@pytest.mark.slow
async def test_postgres_restarted_while_serving(
    private_cluster: ThrowawayCluster, served: tuple[Harness, Served]
) -> None:
    harness, server = served
    person = harness.persons[0]
    token = harness.token("medical_insurance", "province", person.region_code[:2])
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "supervision"}
    pid = server.process.pid

    async def lookup() -> httpx.Response:
        body = {"query": LOOKUP, "variables": {"id": person.id_number}}
        return await server.client.post("/graphql", json=body, headers=headers)

    def served_the_person(response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.json() == {
            "data": {"person": {"name": person.name, "regionCode": person.region_code}}
        }

    served_the_person(await lookup())

    # 1. A quick restart nobody noticed: every pooled connection is dead, the next query works.
    private_cluster.restart()
    served_the_person(await lookup())

    # 2. An outage: a clear 503 for every request, not ready, nothing internal in the answer.
    private_cluster.stop()
    for _ in range(3):
        down = await lookup()
        assert down.status_code == 503
        [error] = down.json()["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert error["message"] == "数据库暂时不可用, 请稍后重试"
        assert uuid.UUID(error["extensions"]["requestId"])
        for internal in ("Traceback", "SELECT", "asyncpg", "sqlalchemy", "person.", "5432"):
            assert internal not in down.text
    assert (await server.client.get("/readyz")).status_code == 503

    # 3. Back: the very next request is served, by the same process.
    private_cluster.start()
    served_the_person(await lookup())
    assert (await server.client.get("/readyz")).status_code == 200
    assert server.process.poll() is None
    assert server.process.pid == pid

    # The log says what happened, with the request id the caller was given, and without the
    # person's data.
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert f"request {error['extensions']['requestId']}: database unavailable" in log
    for leaked in (person.id_number, person.name):
        assert leaked not in log


# --------------------------------------------------------------------------- corrupted ciphertext


@pytest.fixture
async def private(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A harness of its own (the test corrupts a row), on SQLite and on PostgreSQL."""
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'corrupt.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_corrupt_{uuid.uuid4().hex[:10]}"
        url = cluster.create_database(name)
    harness = await build_harness(tmp_path / "data", url, backend=backend, persons=40)
    try:
        yield harness
    finally:
        await harness.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


async def _flip_a_byte(h: Harness, person_id: uuid.UUID, column: str) -> bytes:
    """Flip one bit in the middle of a stored ciphertext (its body, past the key id)."""
    attribute = getattr(Person, f"{column}_ct")
    async with h.runtime.sessions() as session:
        sealed = bytearray(
            (await session.execute(select(attribute).where(Person.id == person_id))).scalar_one()
        )
        sealed[len(sealed) // 2 + 8] ^= 0x01
        await session.execute(
            update(Person).where(Person.id == person_id).values({attribute: bytes(sealed)})
        )
        await session.commit()
    return bytes(sealed)


def _values(record: Any) -> dict[str, Any]:
    return {
        "id": str(record.person_id),
        "idNumber": record.id_number,
        "name": record.name,
        "gender": record.gender,
        "birthDate": record.birth_date.isoformat(),
        "regionCode": record.region_code,
        "phone": record.phone,
        "address": record.address,
    }


async def test_corrupted_ciphertext_fails_one_field_of_one_person(
    private: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = private
    province = h.persons[0].region_code[:2]
    people = [p for p in h.persons if p.region_code.startswith(province)]
    victim = next(p for p in people if p.phone and p.address and len(people) > 2)
    corrupted = await _flip_a_byte(h, victim.person_id, "name")
    token = h.token("medical_insurance", "province", province)

    with caplog.at_level(logging.WARNING, logger="gateway.storage.vault"):
        # The person's own lookup: the name fails, the rest of the record is served.
        one = await h.query(token, ONE, {"id": victim.id_number})
        page = await h.query(token, PAGE, {"prefix": province})

    assert one["data"]["person"] == {**_values(victim), "name": None}
    [error] = one["errors"]
    assert error["path"] == ["person", "name"]
    assert error["extensions"]["code"] == "DATA_INTEGRITY"
    assert victim.name not in json.dumps(one, ensure_ascii=False)

    # A page: exactly one error, at the victim's name; everyone else is served in full.
    edges = page["data"]["persons"]["edges"]
    assert page["data"]["persons"]["totalCount"] == len(people) == len(edges)
    [error] = page["errors"]
    assert error["extensions"]["code"] == "DATA_INTEGRITY"
    position = next(i for i, e in enumerate(edges) if e["node"]["id"] == str(victim.person_id))
    assert error["path"] == ["persons", "edges", position, "node", "name"]
    records = h.person_by_id()
    for edge in edges:
        record = records[uuid.UUID(edge["node"]["id"])]
        expected = _values(record)
        if record.person_id == victim.person_id:
            expected["name"] = None
        assert edge["node"] == expected

    # Logged once per failed read: who, which field, which key; never a value.
    events = [r for r in caplog.records if r.name == "gateway.storage.vault"]
    assert len(events) == 2
    key_id = corrupted[2 : 2 + corrupted[1]].decode("ascii")
    for event in events:
        assert event.levelno == logging.WARNING
        assert (event.person_id, event.column, event.key_id) == (  # type: ignore[attr-defined]
            str(victim.person_id),
            "name",
            key_id,
        )
        text = event.getMessage()
        assert str(victim.person_id) in text
        assert key_id in text
        for value in (victim.name, victim.id_number, victim.phone, victim.address):
            assert value is not None
            assert value not in text
        assert corrupted.hex() not in text
