"""Two provinces' gateways for the exchange tests (issue 18 item 5): two PostgreSQL databases
in the throw-away cluster, two data dirs (keyring, token key, exchange key), two
``relief-gateway serve`` processes on loopback, each configured with the other as its peer.

Shandong (37) holds its seeded population; Anhui (34) holds a small one of its own plus the
people the test ties to both (same ID number, an Anhui residence, 34's own keys: the blind
indexes differ). In 37 a tie is a place in 34 (``person_place``), as an identity recognised in
Anhui would leave it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, insert, select

from gateway.crypto import AnyPeerKey, AnyProvinceKey, peer_key_from_entry
from gateway.domain.records import HouseholdBundle, HouseholdRecord, PersonRecord
from gateway.runtime.peer_exchange import load_or_create_key
from gateway.storage.models import ExchangeMessage, OutboxEvent, Person, PersonPlace, Task
from gateway.storage.outbox import emit_tasks_pushed
from gateway.storage.writer import write_bundles
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ANHUI_COUNTY = "340102"  # 瑶海区

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Gateway:
    """One province: its harness (database, keys, token minting), its server process."""

    code: str
    province: str  # RELIEF_PROVINCE
    harness: Harness
    data_dir: Path
    database_url: str
    port: int
    key: AnyProvinceKey
    cipher_suite: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def peers_file(self) -> Path:
        return self.data_dir / "peers.toml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"serve-{self.starts}.log"

    def peer_key(self) -> AnyPeerKey:
        """This side's public key as the other side configures it."""
        return peer_key_from_entry(self.code, self.key.public_entry())

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
        env.update(
            RELIEF_DATA_DIR=str(self.data_dir),
            RELIEF_DATABASE_URL=self.database_url,
            RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
            RELIEF_PROVINCE=self.province,
            RELIEF_CIPHER_SUITE=self.cipher_suite,
            RELIEF_EXCHANGE_PEERS_FILE=str(self.peers_file),
            RELIEF_EXCHANGE_RETRY_BASE_SECONDS="0.2",
            RELIEF_EXCHANGE_RETRY_MAX_SECONDS="0.5",
            RELIEF_EXCHANGE_POLL_SECONDS="0.1",
        )
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(SCRIPT), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                assert self.process.poll() is None, self.log_path.read_text(errors="replace")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"gateway {self.code} did not become ready")

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    # ------------------------------------------------------------------ database reads
    async def scalar(self, statement: Any) -> Any:
        async with self.harness.runtime.engine.connect() as connection:
            return (await connection.execute(statement)).scalar()

    async def rows(self, statement: Any) -> list[Any]:
        async with self.harness.runtime.engine.connect() as connection:
            return list(await connection.execute(statement))

    async def log_rows(self, direction: str, message_id: uuid.UUID | None = None) -> list[Any]:
        statement = select(ExchangeMessage.__table__).where(ExchangeMessage.direction == direction)
        if message_id is not None:
            statement = statement.where(ExchangeMessage.message_id == message_id)
        return await self.rows(statement.order_by(ExchangeMessage.id))

    async def events_from(self, origin: str, person_id: uuid.UUID) -> list[Any]:
        return await self.rows(
            select(OutboxEvent.__table__).where(
                OutboxEvent.origin == origin, OutboxEvent.person_id == person_id
            )
        )


def write_peers_file(side: Gateway, other: Gateway) -> None:
    """``side``'s peers file naming ``other``, with the key ``other`` shows for it."""
    entry = other.key.public_entry()
    if "pem" in entry:
        public = f'pem = """{entry["pem"]}"""\n'
    else:
        jwk = entry["jwk"]
        public = f'jwk = {{ kty = "EC", crv = "SM2", x = "{jwk["x"]}", y = "{jwk["y"]}" }}\n'
    side.peers_file.write_text(
        "[[peers]]\n"
        f'code = "{other.code}"\n'
        f'name = "{other.province}"\n'
        f'url = "{other.url}"\n'
        "[[peers.keys]]\n"
        f'id = "{entry["id"]}"\n'
        f'alg = "{entry["alg"]}"\n' + public,
        encoding="utf-8",
    )


@dataclass
class Pair:
    shandong: Gateway  # 37: the sender in these tests
    anhui: Gateway  # 34: the receiver
    shared: PersonRecord  # a person in both databases
    anhui_person_id: uuid.UUID  # the same person's id in 34

    def close(self) -> None:
        self.shandong.stop()
        self.anhui.stop()


async def build_pair(cluster: ThrowawayCluster, root: Path) -> Pair:
    suffix = uuid.uuid4().hex[:8]
    gateways = []
    # Each province its own suite: 37 signs with ES256, 34 under the 国密 suite with SM2 (its
    # keyring SM4 + HMAC-SM3): each verifies the other's algorithm.
    for code, province, seed, persons, suite, algorithm in (
        ("37", "shandong", 20261123, 20, "aes-256-gcm+hmac-sha256", "ES256"),
        ("34", "anhui", 7, 5, "sm4-gcm+hmac-sm3", "SM2"),
    ):
        url = cluster.create_database(f"exchange_{code}_{suffix}")
        data_dir = root / f"province-{code}"
        harness = await build_harness(
            data_dir, url, backend="postgres", persons=persons, seed=seed, cipher_suite=suite
        )
        key_path = harness.runtime.settings.exchange_key_path
        key = load_or_create_key(key_path, code, algorithm)
        gateways.append(Gateway(code, province, harness, data_dir, url, free_port(), key, suite))
    shandong, anhui = gateways
    shared = shandong.harness.persons[0]
    anhui_person_id = await add_to_anhui(anhui, shared)
    await tie_to_anhui(shandong, shared.person_id)
    write_peers_file(shandong, anhui)
    write_peers_file(anhui, shandong)
    for gateway in (anhui, shandong):
        gateway.start()
    await asyncio.gather(anhui.ready(), shandong.ready())
    return Pair(shandong, anhui, shared, anhui_person_id)


async def add_to_anhui(anhui: Gateway, person: PersonRecord) -> uuid.UUID:
    """The same person (ID number, name) living in Anhui, in 34's database under 34's keys."""
    household = HouseholdRecord(household_id=uuid.uuid4(), region_code=ANHUI_COUNTY + "001001")
    member = replace(
        person,
        person_id=uuid.uuid4(),
        region_code=household.region_code,
        household_id=household.household_id,
        relation="户主",
    )
    async with anhui.harness.runtime.sessions() as session:
        await write_bundles(
            session, anhui.harness.runtime.vault, [HouseholdBundle(household, [member])]
        )
    return member.person_id


async def tie_to_anhui(shandong: Gateway, person_id: uuid.UUID) -> None:
    """In 37: an identity recognised in Anhui (a place in 34)."""
    async with shandong.harness.runtime.engine.begin() as connection:
        await connection.execute(
            insert(PersonPlace).values(
                person_id=person_id,
                kind="identity",
                department="civil_affairs",
                county_code=ANHUI_COUNTY,
                city_code=ANHUI_COUNTY[:4],
                province_code="34",
                since=shandong.harness.today,
            )
        )


async def push_task(shandong: Gateway, person_id: uuid.UUID, *, department: str) -> uuid.UUID:
    """A task opened in 37 with its ``task.pushed`` event, in one transaction (the outbox's
    own path); returns the event id."""
    task_id = uuid.uuid4()
    today = shandong.harness.today
    async with shandong.harness.runtime.engine.begin() as connection:
        county = (
            await connection.execute(select(Person.county_code).where(Person.id == person_id))
        ).scalar_one()
        await connection.execute(
            insert(Task).values(
                id=task_id,
                kind="IDENTITY_VERIFICATION",
                department=department,
                county_code=county,
                person_id=person_id,
                source_key=f"exchange-test:{task_id}",
                opened_on=today,
                due_on=today + timedelta(days=7),
                status="OPEN",
            )
        )
        await emit_tasks_pushed(connection, Task.id == task_id)
        event_id: uuid.UUID = (
            await connection.execute(
                select(OutboxEvent.event_id).where(OutboxEvent.subject_id == str(task_id))
            )
        ).scalar_one()
    return event_id


async def outbound_for(shandong: Gateway, event_id: uuid.UUID) -> Any:
    """37's OUT row for the event (None until the sender enqueued it)."""
    rows = await shandong.rows(
        select(ExchangeMessage.__table__)
        .join(OutboxEvent, OutboxEvent.id == ExchangeMessage.event_id)
        .where(ExchangeMessage.direction == "OUT", OutboxEvent.event_id == event_id)
    )
    assert len(rows) <= 1
    return rows[0] if rows else None


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0) -> T:
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def count(gateway: Gateway, statement: Any) -> int:
    return int(await gateway.scalar(select(func.count()).select_from(statement.subquery())))


def receipt_of(row: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(row.receipt)
    return parsed
