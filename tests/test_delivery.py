"""Webhook delivery (issue 18 item 2): events of real sources (a warning run, an answer) reach a
department system's receiver on loopback, signed, once, in order per person, shaped by the
receiving department's policy, audited; failures are retried with back-off, dead-lettered after
the dead-letter time (the clock travels) and replayed.

Every test runs on SQLite and PostgreSQL, on a gateway of this module alone; workers are driven
by the tests (``drain``), except where the in-``serve`` worker itself is under test. Several
workers claiming at once on PostgreSQL deliver each delivery exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from gateway.domain import clock
from gateway.domain.clock import now_utc
from gateway.runtime.delivery import DeliveryWorker
from gateway.storage import deliveries as store
from gateway.storage.models import (
    OutboxEvent,
    Task,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from gateway.storage.outbox import EventKind
from gateway.storage.writer import write_bundles
from tests.delivery_support import BACKENDS, Receiver, delivery_gateway_for
from tests.harness import Harness
from tests.test_warning_run import Subject, bundle, run

COUNTY = "370102"
ALL = tuple(EventKind)


@pytest.fixture(scope="module", params=BACKENDS)
async def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    async for gateway in delivery_gateway_for(request, tmp_path_factory, str(request.param)):
        yield gateway


@pytest.fixture(autouse=True)
async def clean(gw: Harness) -> AsyncIterator[None]:
    """Each test starts with no endpoint (and so no delivery) of an earlier one."""
    yield
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(delete(WebhookEndpoint))


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


_numbered = 0


async def warned_person(gw: Harness) -> uuid.UUID:
    """A Jinan (370102) resident whose 2026 burden crosses Shandong's 150% rule."""
    global _numbered
    _numbered += 1
    made = bundle(Subject(f"delivery-{_numbered}", "shandong", (), "61500.01"), 700 + _numbered)
    async with gw.runtime.sessions() as session:
        await write_bundles(session, gw.runtime.vault, [made])
    return made.members[0].person_id


async def endpoint(
    gw: Harness,
    receiver: Receiver,
    *,
    department: str = "civil_affairs",
    region: str = COUNTY,
    kinds: tuple[EventKind, ...] = ALL,
    algorithm: str = "HMAC-SHA256",
    max_in_flight: int = 8,
    dead_after_seconds: int | None = None,
) -> uuid.UUID:
    level = {2: "province", 4: "city", 6: "county"}[len(region)]
    row, secret = await store.create_endpoint(
        gw.runtime.engine,
        gw.runtime.vault.cipher,
        store.NewEndpoint(
            name=f"{department} 系统",
            department=department,
            level=level,
            region=region,
            url=receiver.url,
            algorithm=algorithm,
            kinds=kinds,
            dead_after_seconds=dead_after_seconds,
            max_in_flight=max_in_flight,
        ),
        created_by="test-admin",
        production=False,
    )
    receiver.secret = secret
    receiver.algorithm = algorithm
    return uuid.UUID(str(row.id))


def worker(gw: Harness, name: str = "w1") -> DeliveryWorker:
    return DeliveryWorker(gw.runtime, name=name)


async def rows(gw: Harness, endpoint_id: uuid.UUID) -> list[Any]:
    async with gw.runtime.engine.connect() as connection:
        return list(
            await connection.execute(
                select(
                    WebhookDelivery.__table__,
                    OutboxEvent.kind,
                    OutboxEvent.event_id.label("event_uuid"),
                )
                .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.id)
            )
        )


async def attempts(gw: Harness, delivery_id: int) -> list[Any]:
    async with gw.runtime.engine.connect() as connection:
        return list(
            await connection.execute(
                select(WebhookAttempt.__table__)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.attempt)
            )
        )


async def make_due(gw: Harness) -> None:
    """Every retry due now and every breaker closed (instead of waiting out the back-off)."""
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "PENDING")
            .values(next_attempt_at=now_utc() - timedelta(seconds=1))
        )
        await connection.execute(update(WebhookEndpoint).values(paused_until=None))


async def deliver_until_settled(gw: Harness, worker_: DeliveryWorker, rounds: int = 12) -> None:
    for _ in range(rounds):
        await worker_.drain()
        async with gw.runtime.engine.connect() as connection:
            open_ = (
                await connection.execute(
                    select(func.count()).where(WebhookDelivery.status.in_(("PENDING", "IN_FLIGHT")))
                )
            ).scalar_one()
        if not open_:
            return
        await make_due(gw)
    raise AssertionError("deliveries did not settle")


# ============================================================================ exactly once
async def test_a_warning_run_is_delivered_once_signed_through_failures(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    person = await warned_person(gw)
    await run(gw, "shandong")
    found = await rows(gw, hook)
    assert {row.kind for row in found} == {"warning.raised", "task.pushed"}
    # The first delivery meets a closed connection, a time-out, a 500, and a receiver that
    # processes it but answers too late; then 200.
    receiver.script("close", "timeout", 500, "late")
    w = worker(gw)
    try:
        await deliver_until_settled(gw, w)
    finally:
        await w.close()

    found = await rows(gw, hook)
    assert [row.status for row in found] == ["DELIVERED"] * len(found)
    # Exactly one effective delivery per event: the receiver processed each webhook-id once
    # and acknowledged the retry of the one it had processed ("late") as a duplicate.
    expected = {f"evt_{row.event_uuid}" for row in found}
    assert set(receiver.processed) == expected
    assert receiver.duplicates == 1
    assert not receiver.refused
    first = found[0]
    tried = await attempts(gw, first.id)
    assert [a.status_code for a in tried] == [None, None, 500, None, 200]
    assert tried[0].error.startswith("连接失败")
    assert tried[1].error.startswith("超时")
    # Every attempt to the same event carried the same webhook-id, each with its own signature.
    same = [r for r in receiver.requests if r.webhook_id == f"evt_{found[0].event_uuid}"]
    assert len(same) == 5
    assert len({r.headers["webhook-signature"] for r in same}) >= 2
    body = receiver.processed[f"evt_{found[0].event_uuid}"].payload
    assert set(body) == {"type", "id", "timestamp", "data"}
    # The task's receipt: delivered to its department.
    async with gw.runtime.engine.connect() as connection:
        delivered = list(
            await connection.execute(
                select(Task.delivered_at).where(
                    Task.person_id == person, Task.department == "civil_affairs"
                )
            )
        )
    assert delivered
    assert all(row.delivered_at is not None for row in delivered)


async def test_a_replayed_or_forged_request_is_refused_by_the_receivers_verifier(
    gw: Harness, receivers: list[Receiver]
) -> None:
    import httpx

    receiver = Receiver()
    receivers.append(receiver)
    await endpoint(gw, receiver)
    await warned_person(gw)
    await run(gw, "shandong")
    w = worker(gw)
    try:
        await deliver_until_settled(gw, w)
    finally:
        await w.close()
    captured = next(iter(receiver.processed.values()))
    sent = {k: v for k, v in captured.headers.items() if k.startswith("webhook-")}
    before = len(receiver.processed)
    async with httpx.AsyncClient() as client:
        # The captured request sent again ten minutes later: its timestamp is too old.
        with clock.travel(now_utc() + timedelta(minutes=10)):
            await client.post(receiver.url, content=captured.body, headers=sent)
        # A forged body under the captured signature.
        forged = captured.body.replace(b'"data"', b'"data2"')
        await client.post(receiver.url, content=forged, headers=sent)
    assert len(receiver.refused) == 2
    assert "防重放" in receiver.refused[0]
    assert "签名不符" in receiver.refused[1]
    assert len(receiver.processed) == before
