"""Webhook delivery (issue 18 item 2): events of real sources (a warning run, an answer) reach a
department system's receiver on loopback, signed, once, in order per person, shaped by the
receiving department's policy, audited; failures are retried with back-off, dead-lettered after
the dead-letter time (the clock travels) and replayed.

Every test runs on SQLite and PostgreSQL, on a gateway of this module alone; workers are driven
by the tests (``drain``), except where the in-``serve`` worker itself is under test. Several
workers claiming at once on PostgreSQL deliver each delivery exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from authz.masking import mask_id_number, mask_phone
from gateway.crypto import InvalidWebhook, verify_webhook
from gateway.domain import clock
from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.parts import Runtime
from gateway.storage import deliveries as store
from gateway.storage.models import (
    AuditEntry,
    CasbinRule,
    OutboxEvent,
    PolicyVersion,
    Task,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from gateway.storage.outbox import EventKind, emit_rows, emit_tasks_pushed, task_answered
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


async def warned_person(gw: Harness, burden: str = "61500.01") -> uuid.UUID:
    """A Jinan (370102) resident whose 2026 burden crosses Shandong's 150% rule (a burden of
    "0": one the next warning run leaves alone, for tests that emit their events by hand)."""
    global _numbered
    _numbered += 1
    made = bundle(Subject(f"delivery-{_numbered}", "shandong", (), burden), 700 + _numbered)
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


# ============================================================================ order
async def test_one_persons_events_arrive_in_order_and_do_not_block_another_person(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    first_person = await warned_person(gw)
    other_person = await warned_person(gw)
    await run(gw, "shandong")
    found = await rows(gw, hook)
    by_person: dict[str, list[Any]] = {}
    for row in found:
        by_person.setdefault(row.ordering_key, []).append(row)
    mine, theirs = by_person[str(first_person)], by_person[str(other_person)]
    assert len(mine) == len(theirs) == 2
    head = f"evt_{mine[0].event_uuid}"
    receiver.fail(head, 500, 500, 503)  # the first person's first event fails three times

    w = worker(gw)
    try:
        await w.drain()
        # The other person's events arrived; the first person's second waits behind its head.
        assert {f"evt_{r.event_uuid}" for r in theirs} <= set(receiver.processed)
        assert f"evt_{mine[1].event_uuid}" not in receiver.processed
        assert not any(r.webhook_id == f"evt_{mine[1].event_uuid}" for r in receiver.requests)
        # The worker's timer waits for the head's retry, not for the one queued behind it.
        async with gw.runtime.engine.connect() as connection:
            due = await store.next_due(connection)
        (retried,) = [r for r in await rows(gw, hook) if r.id == mine[0].id]
        assert due == clock.as_utc(retried.next_attempt_at)
        assert due > clock.as_utc(mine[1].next_attempt_at)
        await deliver_until_settled(gw, w)
    finally:
        await w.close()
    order = receiver.ids_in_order()
    assert order.index(head) < order.index(f"evt_{mine[1].event_uuid}")
    assert [r.status for r in await rows(gw, hook)] == ["DELIVERED"] * 4


# ============================================================================ dead letter
async def test_dead_after_the_dead_letter_time_then_replayed_and_delivered(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, dead_after_seconds=3600)
    await warned_person(gw)
    await run(gw, "shandong")
    receiver.down()  # the department's system is off: connections refused
    w = worker(gw)
    start = now_utc()
    try:
        await w.drain()
        for hours in range(1, 5):  # the clock passes the hour of the dead-letter time
            with clock.travel(start + timedelta(hours=hours * 1.5)):
                await make_due(gw)
                await w.drain()
        found = await rows(gw, hook)
        assert [r.status for r in found] == ["DEAD", "DEAD"]
        assert all(r.dead_at is not None and r.last_error for r in found)
        # The console's dead-letter view (scoped: another department sees none of them).
        async with gw.runtime.engine.connect() as connection:
            dead, more = await store.deliveries(
                connection,
                department="civil_affairs",
                region_prefix="37",
                status="DEAD",
                endpoint_id=hook,
                first=10,
                after=None,
            )
            assert {r.id for r in dead} == {r.id for r in found}
            assert not more
            assert {r.kind for r in dead} == {"warning.raised", "task.pushed"}
            elsewhere, _ = await store.deliveries(
                connection, department="health", region_prefix="37", status="DEAD",
                first=10, after=None,
            )  # fmt: skip
            assert elsewhere == []
        refused = await store.replay(
            gw.runtime.engine, endpoint_id=hook, department="health", region_prefix="", by="x"
        )
        assert refused == 0
        receiver.up()
        replayed = await store.replay(
            gw.runtime.engine,
            endpoint_id=hook,
            department="civil_affairs",
            region_prefix="3701",
            by="ops",
        )
        assert replayed == 2
        await deliver_until_settled(gw, w)
    finally:
        await w.close()
    assert [r.status for r in await rows(gw, hook)] == ["DELIVERED", "DELIVERED"]
    assert len(receiver.processed) == 2


# ============================================================================ policy
@asynccontextmanager
async def policy_change(
    gw: Harness, remove: list[tuple[str, str, str]], add: list[tuple[str, str, str]]
) -> AsyncIterator[None]:
    """Lines taken out of (and put into) the policy in force for the block, as new versions."""

    async def install(note: str) -> None:
        async with gw.runtime.sessions() as session:
            session.add(PolicyVersion(created_at=now_utc(), created_by="test", note=note))
            await session.commit()
            await gw.runtime.authorizer.load(session)

    async def lines(
        delete_: list[tuple[str, str, str]], insert_: list[tuple[str, str, str]]
    ) -> None:
        async with gw.runtime.sessions() as session:
            for s, o, a in delete_:
                await session.execute(
                    delete(CasbinRule).where(
                        CasbinRule.v0 == s, CasbinRule.v1 == o, CasbinRule.v2 == a
                    )
                )
            if insert_:
                await session.execute(
                    insert(CasbinRule),
                    [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": "*"} for s, o, a in insert_],
                )
            await session.commit()

    await lines(remove, add)
    await install("test: delivery policy")
    try:
        yield
    finally:
        await lines(add, remove)
        await install("test: delivery policy restored")


async def person_with_phone(gw: Harness, burden: str = "61500.01") -> tuple[uuid.UUID, str, str]:
    global _numbered
    _numbered += 1
    made = bundle(Subject(f"delivery-{_numbered}", "shandong", (), burden), 700 + _numbered)
    member = dataclasses.replace(made.members[0], phone="13812345678")
    made = dataclasses.replace(made, members=[member])
    async with gw.runtime.sessions() as session:
        await write_bundles(session, gw.runtime.vault, [made])
    return member.person_id, member.id_number, member.phone or ""


ID_READ = ("civil_affairs:*", "Person.idNumber", "read")
ID_MASK = ("civil_affairs:*", "Person.idNumber", "mask")


async def test_a_department_reading_masked_receives_masked_and_the_push_is_audited(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.TASK_PUSHED,))
    person, id_number, phone = await person_with_phone(gw)
    async with gw.runtime.engine.connect() as connection:
        audited_before = (await connection.execute(select(func.max(AuditEntry.id)))).scalar() or 0
    async with policy_change(gw, remove=[ID_READ], add=[ID_MASK]):
        await run(gw, "shandong")
        w = worker(gw)
        try:
            await deliver_until_settled(gw, w)
        finally:
            await w.close()
    (received,) = receiver.processed.values()
    task = received.payload["data"]["task"]
    assert task["person"]["idNumber"] == mask_id_number(id_number)
    assert task["person"]["phone"] == mask_phone(phone)  # masked by the default policy
    assert id_number.encode() not in received.body
    assert phone.encode() not in received.body
    assert task["department"] == "CIVIL_AFFAIRS"
    # Who read what includes the push: the endpoint as subject, the person, the masked fields.
    async with gw.runtime.engine.connect() as connection:
        entries = list(
            await connection.execute(
                select(AuditEntry.__table__).where(AuditEntry.id > audited_before)
            )
        )
    pushes = [e for e in entries if e.subject == f"webhook:{hook}"]
    assert len(pushes) == 1
    assert str(person) in pushes[0].person_ids
    assert pushes[0].department == "civil_affairs"
    assert '"Person.idNumber": "mask"' in pushes[0].fields
    assert [r.status for r in await rows(gw, hook)] == ["DELIVERED"]


ROWS = [
    ("civil_affairs:*", "Person(all; places: residence|identity)", "rows"),
    ("civil_affairs:*", "Person(pushed; places: addressed)", "rows"),
]


async def test_a_person_outside_the_endpoints_scope_is_cancelled_and_nothing_sent(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    await warned_person(gw)
    async with policy_change(gw, remove=ROWS, add=[]):
        await run(gw, "shandong")
        w = worker(gw)
        try:
            await w.drain()
        finally:
            await w.close()
    found = await rows(gw, hook)
    assert [(r.status, r.cancel_reason) for r in found] == [("CANCELLED", "out_of_scope")] * 2
    assert receiver.requests == []


# ============================================================================ answers
async def test_410_gone_disables_the_endpoint_and_cancels_what_waits(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    await warned_person(gw)
    await run(gw, "shandong")
    receiver.script(410)
    w = worker(gw)
    try:
        await w.drain()
    finally:
        await w.close()
    assert [(r.status, r.cancel_reason) for r in await rows(gw, hook)] == [
        ("CANCELLED", "gone"),
        ("CANCELLED", "gone"),
    ]
    assert len(receiver.requests) == 1
    async with gw.runtime.engine.connect() as connection:
        listed = await store.endpoints(connection, department="civil_affairs", region_prefix="37")
    assert [r.disabled_at is not None for r in listed if r.id == hook] == [True]


async def test_the_breaker_probes_a_failing_endpoint_with_one_request(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    for _ in range(6):
        await warned_person(gw)
    await run(gw, "shandong")
    receiver.down()
    w = worker(gw)
    start = now_utc()
    try:
        await w.drain()  # six heads, six failures: the breaker opens at the fifth
        sent = w.counts.requests
        assert sent == 6
        with clock.travel(start + timedelta(seconds=30)):  # retries due, the pause over
            async with gw.runtime.engine.begin() as connection:
                await connection.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.status == "PENDING")
                    .values(next_attempt_at=start)
                )
            await w.drain()
        assert w.counts.requests == sent + 1  # one probe, not six
        receiver.up()
        with clock.travel(start + timedelta(hours=2)):
            await make_due(gw)
            await deliver_until_settled(gw, w)
    finally:
        await w.close()
    assert {r.status for r in await rows(gw, hook)} == {"DELIVERED"}
    assert len(receiver.processed) == 12


# ============================================================================ outbox atomicity
async def test_an_event_rolled_back_with_its_change_is_never_delivered(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    person = await warned_person(gw, burden="0")
    task_id = uuid.uuid4()

    class Undone(Exception):
        pass

    async def change_then_fail() -> None:
        async with gw.runtime.engine.begin() as connection:
            await connection.execute(
                insert(Task).values(
                    id=task_id, kind="WARNING_REVIEW", department="civil_affairs",
                    county_code=COUNTY, person_id=person, source_key=f"test:{task_id}",
                    opened_on=clock.today(), due_on=clock.today(), status="OPEN",
                )
            )  # fmt: skip
            await emit_tasks_pushed(connection, Task.id == task_id)
            assert await rows_in(connection, hook) == 1  # written, in the transaction
            raise Undone

    with pytest.raises(Undone):
        await change_then_fail()
    w = worker(gw)
    try:
        await w.drain()
    finally:
        await w.close()
    assert await rows(gw, hook) == []
    assert receiver.requests == []


async def rows_in(connection: Any, hook: uuid.UUID) -> int:
    return int(
        (
            await connection.execute(
                select(func.count()).where(WebhookDelivery.endpoint_id == hook)
            )
        ).scalar_one()
    )


# ============================================================================ workers
async def test_the_serve_worker_delivers_without_being_asked(
    gw: Harness, receivers: list[Receiver]
) -> None:
    """The in-process worker (as `serve` starts it): PostgreSQL wakes it by NOTIFY, SQLite's
    one-second poll finds the work."""
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, algorithm="HMAC-SM3")
    w = worker(gw, "serve")
    w.start()
    try:
        await asyncio.sleep(0.3)
        await warned_person(gw)
        await run(gw, "shandong")
        expected = len(await rows(gw, hook))
        assert expected >= 2
        await receiver.processed_count(expected)
    finally:
        await w.close()
    assert len(receiver.processed) == expected
    assert all(
        r.headers["webhook-signature"].startswith("v1sm3,") for r in receiver.processed.values()
    )


async def test_two_processes_claiming_at_once_deliver_each_delivery_exactly_once(
    gw: Harness, receivers: list[Receiver]
) -> None:
    if gw.backend != "postgres":
        pytest.skip("several delivery processes need PostgreSQL (SQLite runs one in-process)")
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, max_in_flight=16)
    for _ in range(15):
        await warned_person(gw)
    await run(gw, "shandong")
    expected = len(await rows(gw, hook))
    assert expected == 30
    settings = gw.runtime.settings
    env = {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
        "RELIEF_DELIVERY_TIMEOUT_SECONDS": "5",
    }
    # Another process (`relief-gateway deliver --once`) and two workers of this one, together.
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "deliver", "--once", "--name", "other",
        "--concurrency", "4",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    here = [DeliveryWorker(gw.runtime, name=f"here-{i}", concurrency=4) for i in range(2)]
    try:
        for _ in range(20):
            await asyncio.gather(*(w.drain() for w in here))
            if len(receiver.processed) == expected:
                break
            await asyncio.sleep(0.2)
        out, err = await asyncio.wait_for(other.communicate(), 120)
    finally:
        for w in here:
            await w.close()
    assert other.returncode == 0, err.decode()
    assert "投递完成" in out.decode()
    assert len(receiver.processed) == expected
    assert receiver.duplicates == 0
    assert len(receiver.requests) == expected  # no delivery was sent twice
    found = await rows(gw, hook)
    assert {r.status for r in found} == {"DELIVERED"}
    async with gw.runtime.engine.connect() as connection:
        workers = list(
            await connection.execute(
                select(WebhookAttempt.worker, func.count()).group_by(WebhookAttempt.worker)
            )
        )
        per_delivery = (
            await connection.execute(
                select(func.max(WebhookDelivery.attempts)).where(
                    WebhookDelivery.endpoint_id == hook
                )
            )
        ).scalar_one()
    assert per_delivery == 1
    assert sum(count for _, count in workers) == expected


# ============================================================================ registration
@pytest.mark.parametrize(
    ("url", "production", "refusal"),
    [
        ("http://example.cn/hook", False, "必须使用 https"),
        ("http://127.0.0.1:8080/hook", True, "生产环境"),
        ("http://localhost/hook", True, "生产环境"),
        ("http://[::1]:9/hook", True, "生产环境"),
        ("http://10.1.2.3/hook", False, "必须使用 https"),
        ("http://127.0.0.1.example.cn/hook", False, "必须使用 https"),
        ("https://user:pass@mz.example.cn/hook", False, "用户名或密码"),
        ("https://token@mz.example.cn/hook", False, "用户名或密码"),
        ("https://mz.example.cn/hook#frag", False, "片段"),
        ("https://mz.example.cn:99999/hook", False, "格式不正确"),
        ("ftp://mz.example.cn/hook", False, "必须使用 https"),
        ("https:///hook", False, "缺少主机名"),
        ("https://mz.example.cn/a b", False, "空白"),
    ],
)
def test_an_endpoint_address_is_https_without_credentials(
    url: str, production: bool, refusal: str
) -> None:
    with pytest.raises(BadUserInput, match=refusal):
        store.check_url(url, production=production)


@pytest.mark.parametrize(
    "url", ["https://mz.example.cn/hook", "http://127.0.0.1:8080/hook", "http://[::1]:9/h"]
)
def test_accepted_addresses(url: str) -> None:
    assert store.check_url(url, production=False) == url


async def test_the_secret_is_shown_once_and_stored_sealed(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    async with gw.runtime.engine.connect() as connection:
        stored = (
            await connection.execute(
                select(WebhookEndpoint.secret_ct).where(WebhookEndpoint.id == hook)
            )
        ).scalar_one()
        listed = await store.endpoints(connection, department="civil_affairs", region_prefix="")
    key = receiver.secret.removeprefix("whsec_").encode()
    assert key not in stored
    assert receiver.secret.encode() not in stored
    assert all("secret_ct" not in row._mapping for row in listed)
    with pytest.raises(BadUserInput):
        await store.create_endpoint(
            gw.runtime.engine,
            gw.runtime.vault.cipher,
            store.NewEndpoint(
                "x", "civil_affairs", "county", "3701", receiver.url, "HMAC-SHA256", ALL
            ),
            created_by="t",
            production=False,
        )  # a county's region has six digits


async def test_during_a_rotation_both_secrets_sign_then_only_the_new_one(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    old = receiver.secret
    rotated = await store.rotate_secret(
        gw.runtime.engine, gw.runtime.vault.cipher, hook, keep_previous_for=timedelta(hours=24),
        by="admin",
    )  # fmt: skip
    assert rotated is not None
    new = rotated[1]
    assert new != old
    await warned_person(gw)
    await run(gw, "shandong")
    w = worker(gw)
    try:
        receiver.secret = old  # a receiver not yet switched still verifies
        await deliver_until_settled(gw, w)
        first = list(receiver.processed.values())
        assert all(len(r.headers["webhook-signature"].split(" ")) == 2 for r in first)
        receiver.secret = new
        for r in first:
            verify_webhook(r.body, r.headers, new, now=r.timestamp)
        # A day later the old secret no longer signs.
        with clock.travel(now_utc() + timedelta(hours=25)):
            await warned_person(gw)
            await run(gw, "shandong")
            await deliver_until_settled(gw, w)
            later = [r for r in receiver.processed.values() if r not in first]
            assert later
            assert all(len(r.headers["webhook-signature"].split(" ")) == 1 for r in later)
            with pytest.raises(InvalidWebhook):
                verify_webhook(later[0].body, later[0].headers, old, now=later[0].timestamp)
    finally:
        await w.close()


async def test_a_worker_whose_lease_ran_out_cannot_overwrite_its_successor(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.WARNING_RAISED,))
    await warned_person(gw)
    await run(gw, "shandong")
    slow = await store.claim(gw.runtime.engine, worker="slow", limit=1, lease=timedelta(seconds=60))
    assert len(slow) == 1
    # Nobody else may take it while the lease holds.
    assert (
        await store.claim(gw.runtime.engine, worker="b", limit=5, lease=timedelta(seconds=60)) == []
    )
    w = worker(gw, "successor")
    try:
        with clock.travel(now_utc() + timedelta(seconds=61)):
            await w.drain()  # the lease ran out: the successor delivers it
            late = store.Attempt(now_utc(), 1, status_code=500, error="late")
            assert (
                await store.failed(
                    gw.runtime.engine, slow[0], late, worker="slow", dead_after=timedelta(days=8)
                )
                is None
            )
            assert not await store.delivered(gw.runtime.engine, slow[0], late, worker="slow")
    finally:
        await w.close()
    (row,) = await rows(gw, hook)
    assert (row.status, row.attempts) == ("DELIVERED", 2)
    assert len(receiver.processed) == 1


async def test_a_push_delivered_is_not_a_task_read(gw: Harness, receivers: list[Receiver]) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    await endpoint(gw, receiver, kinds=(EventKind.TASK_PUSHED,))
    person = await warned_person(gw)
    await run(gw, "shandong")
    w = worker(gw)
    try:
        await deliver_until_settled(gw, w)
    finally:
        await w.close()
    async with gw.runtime.engine.connect() as connection:
        (task,) = list(
            await connection.execute(
                select(Task.delivered_at, Task.read_at).where(
                    Task.person_id == person, Task.department == "civil_affairs"
                )
            )
        )
    assert task.delivered_at is not None
    assert task.read_at is None  # delivered, not yet opened by anyone of the department


async def test_a_secret_that_cannot_be_opened_sends_nothing_and_reads_nothing(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver)
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == hook)
            .values(secret_ct=b"sealed under a key this keyring lacks")
        )
    await warned_person(gw)
    await run(gw, "shandong")
    async with gw.runtime.engine.connect() as connection:
        audited_before = (await connection.execute(select(func.max(AuditEntry.id)))).scalar()
    w = worker(gw)
    try:
        await w.drain()
    finally:
        await w.close()
    assert receiver.requests == []
    found = await rows(gw, hook)
    # The head failed (its person's next event waits behind it), recorded with its reason.
    assert [(r.status, r.attempts) for r in found] == [("PENDING", 1), ("PENDING", 0)]
    assert "签名密钥无法解开" in found[0].last_error
    async with gw.runtime.engine.connect() as connection:
        assert (
            await connection.execute(select(func.max(AuditEntry.id)))
        ).scalar() == audited_before


async def test_a_redirect_is_a_failure_and_is_not_followed(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.WARNING_RAISED,))
    await warned_person(gw)
    await run(gw, "shandong")
    receiver.script(302)
    w = worker(gw)
    try:
        await w.drain()
    finally:
        await w.close()
    (row,) = await rows(gw, hook)
    assert (row.status, row.last_status) == ("PENDING", 302)
    assert "不跟随重定向" in row.last_error
    assert len(receiver.requests) == 1


async def test_relief_gateway_deliver_runs_until_sigterm(
    gw: Harness, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.WARNING_RAISED,))
    await warned_person(gw)
    await run(gw, "shandong")
    settings = gw.runtime.settings
    env = {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "deliver", "--name", "cli",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await receiver.processed_count(1, within=30)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "已启动" in text
    assert "成功 1" in text
    assert [r.status for r in await rows(gw, hook)] == ["DELIVERED"]


async def test_an_answer_to_another_departments_task_carries_the_person_as_readable(
    gw: Harness, receivers: list[Receiver]
) -> None:
    """The sender of a list hears the answer to a task of medical insurance's it may not open:
    the payload is the person as the sender reads them, with the answer's facts."""
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.TASK_ANSWERED,))
    person, id_number, phone = await person_with_phone(gw, burden="0")
    task_id = uuid.uuid4()
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(
            insert(Task).values(
                id=task_id, kind="IDENTITY_VERIFICATION", department="medical_insurance",
                county_code=COUNTY, person_id=person, source_key=f"test:{task_id}",
                opened_on=clock.today(), due_on=clock.today(), status="ANSWERED",
            )
        )  # fmt: skip
        row = (await connection.execute(select(Task).where(Task.id == task_id))).one()
        await emit_rows(
            connection, [task_answered(row, audience="civil_affairs", occurred_at=now_utc())]
        )
    w = worker(gw)
    try:
        await deliver_until_settled(gw, w)
    finally:
        await w.close()
    assert [r.status for r in await rows(gw, hook)] == ["DELIVERED"]
    (received,) = receiver.processed.values()
    data = received.payload["data"]
    assert "task" not in data
    assert data["subject"] == {"type": "task", "id": str(task_id)}
    assert "answeredAt" in data["facts"]
    assert data["person"]["idNumber"] == id_number  # civil affairs reads ID numbers in clear
    assert data["person"]["phone"] == mask_phone(phone)


async def test_serve_starts_the_worker_with_the_runtime_and_stops_it(
    gw: Harness, receivers: list[Receiver]
) -> None:
    """RELIEF_DELIVERY_WORKER (default on): the runtime that `serve` starts delivers by itself;
    closing it stops the worker."""
    receiver = Receiver()
    receivers.append(receiver)
    hook = await endpoint(gw, receiver, kinds=(EventKind.WARNING_RAISED,))
    serving = Runtime.create(gw.runtime.settings.model_copy(update={"delivery_worker": True}))
    await serving.start()
    try:
        assert serving.delivery is not None
        await warned_person(gw)
        await run(gw, "shandong")
        expected = len(await rows(gw, hook))
        assert expected >= 1
        await receiver.processed_count(expected)
    finally:
        await serving.close()
    assert serving.delivery is None
    assert {r.status for r in await rows(gw, hook)} == {"DELIVERED"}
