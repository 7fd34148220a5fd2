"""Live worklists over Server-Sent Events (issue 18 item 3): ``subscription { worklistEvents }``
over real HTTP (uvicorn on loopback, httpx streaming), on SQLite and PostgreSQL.

Rules under test:

* a task pushed by the monthly warning run (``gateway.loop.warnings.run_warnings``) reaches the
  subscribed civil-affairs clerk of the person's county, rendered as the ``tasks`` query renders
  it for that clerk: masked stays masked (phone), a field the policy denies is refused there too;
  its read is in the audit log before the event left;
* a clerk of another county receives nothing (not the task, not its id); another department
  of the same county receives nothing; ``kinds`` filters;
* ``Last-Event-ID`` replays what was missed (same ids), and nothing already seen;
* at most 5 streams per subject (429, Chinese); a token that expires ends the stream with an
  UNAUTHENTICATED error and ``complete``;
* aliases and fragments on the subscription read no more than plain fields;
* an invalid subscription document is one ``next`` with the house's error shape, then
  ``complete``; a subscription asked for as JSON is refused (406).

People are synthetic (测试…, ID numbers from ``make_id_number``), written with the seed writer
as ``tests/test_warning_run.py`` does; each test adds its own people over Shanxi's 20,000-yuan
line, so a run pushes only theirs (a re-run adds nothing for people already warned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import delete, func, insert, select

from gateway.domain.clock import now_utc
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import (
    CostBurdenRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
)
from gateway.domain.settings import Province
from gateway.http import sse
from gateway.http.app import create_app
from gateway.loop.config import load_rules
from gateway.loop.warnings import Month, run_warnings
from gateway.runtime import events
from gateway.runtime.events import EventHub, _Gaps
from gateway.storage import outbox
from gateway.storage.models import AuditEntry, CasbinRule, OutboxEvent, PolicyVersion, Task
from gateway.storage.writer import write_bundles
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

BACKENDS = ("sqlite", "postgres")
COUNTY_A = "140105"  # 太原市小店区
COUNTY_B = "140106"  # 太原市迎泽区
OCTOBER = Month(2026, 10)
RULES = load_rules(Province("shanxi"))  # plain amounts: 20,000 yuan for ordinary residents
QUIET_SECONDS = 2.5  # longer than the SQLite hub's poll (1 s) and a NOTIFY round trip

EVENTS = """
subscription Live($kinds: [WorklistEventKind!]) {
  worklistEvents(kinds: $kinds) {
    id kind occurredAt
    task { id kind department regionCode dueOn state person { id name idNumber phone } }
    warning { id rule regionCode person { id phone } }
  }
}
"""

TASKS = """
query Tasks {
  tasks(first: 200) { edges { node {
    id kind department regionCode dueOn state person { id name idNumber phone }
  } } }
}
"""


# ---------------------------------------------------------------------------- the server
@dataclass
class Live:
    gateway: Harness
    base: str
    people: int = 0  # people added so far (their ID numbers' sequence numbers)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module", params=BACKENDS)
async def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    """A gateway of this module alone served by uvicorn on loopback, in the test's loop."""
    backend = str(request.param)
    data_dir: Path = tmp_path_factory.mktemp(f"subscriptions-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_live_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    gateway = await build_harness(data_dir, url, backend=backend, persons=0)
    sock = _free_socket()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway.runtime), lifespan="off", log_level="warning", access_log=False
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield Live(gateway, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)
        sock.close()
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


def token(live: Live, dept: str, county: str, *, subject: str | None = None, ttl: int = 600) -> str:
    return live.gateway.token(dept, "county", county, subject=subject, ttl_seconds=ttl)


# ---------------------------------------------------------------------------- people
async def over_the_line(live: Live, county: str, *, phone: str = "13812345678") -> uuid.UUID:
    """A new ordinary resident of ``county`` whose 2026 personal burden is over 20,000 yuan."""
    live.people += 1
    n = live.people
    person_id = uuid.uuid4()
    household_id = uuid.uuid4()
    burden = Decimal("25000")
    person = PersonRecord(
        person_id=person_id,
        id_number=make_id_number(county, date(1961, 3, 1), n),
        name=f"测试订阅{n}",
        gender="MALE",
        birth_date=date(1961, 3, 1),
        region_code=county,
        phone=phone,
        household_id=household_id,
        relation="户主",
    )
    bundle = HouseholdBundle(
        household=HouseholdRecord(household_id=household_id, region_code=county),
        members=[person],
        relief_statuses=[],
        cost_burdens=[
            CostBurdenRecord(
                person_id=person_id,
                year=2026,
                total_cost=burden * 3,
                basic_insurance_paid=burden,
                critical_illness_paid=burden,
                medical_assistance_paid=Decimal("0"),
                personal_burden=burden,
                inpatient_count=1,
            )
        ],
    )
    async with live.gateway.runtime.sessions() as session:
        await write_bundles(session, live.gateway.runtime.vault, [bundle])
    return person_id


async def warning_run(live: Live) -> None:
    await run_warnings(
        live.gateway.runtime.engine, RULES, OCTOBER, today=live.gateway.today, triggered_by="test"
    )


async def task_of(live: Live, person_id: uuid.UUID, department: str) -> uuid.UUID:
    async with live.gateway.runtime.engine.connect() as connection:
        found = await connection.execute(
            select(Task.id).where(Task.person_id == person_id, Task.department == department)
        )
        return uuid.UUID(str(found.scalar_one()))


async def outbox_id(live: Live, subject_id: uuid.UUID, kind: str = "task.pushed") -> int:
    async with live.gateway.runtime.engine.connect() as connection:
        found = await connection.execute(
            select(OutboxEvent.id).where(
                OutboxEvent.subject_id == str(subject_id), OutboxEvent.kind == kind
            )
        )
        return int(found.scalar_one())


# ---------------------------------------------------------------------------- the client
@dataclass
class Message:
    event: str
    data: Any
    id: str | None


@dataclass
class Stream:
    """One subscription read in the background: its messages as they arrive."""

    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    pings: int = 0
    body: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def next(self, seconds: float = 20) -> Message:
        return await asyncio.wait_for(self.messages.get(), seconds)

    async def quiet(self, seconds: float = QUIET_SECONDS) -> list[Message]:
        """What arrives within ``seconds`` (nothing, for a stream that must hear nothing)."""
        await asyncio.sleep(seconds)
        found = []
        while not self.messages.empty():
            found.append(self.messages.get_nowait())
        return found

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def _read(
    stream: Stream, base: str, bearer: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    sent = {
        "Authorization": f"Bearer {bearer}",
        "Accept": "text/event-stream",
        "X-Purpose": "relief_recognition",
        **headers,
    }
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
            client.stream("POST", f"{base}/graphql", json=body, headers=sent) as response,
        ):
            stream.status = response.status_code
            stream.headers = response.headers
            stream.opened.set()
            if response.status_code != 200:
                stream.body = (await response.aread()).decode()
                return
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in fields:
                        data = fields.get("data", "")
                        stream.messages.put_nowait(
                            Message(
                                fields["event"],
                                json.loads(data) if data else None,
                                fields.get("id"),
                            )
                        )
                    fields = {}
                elif line.startswith(":"):
                    stream.pings += 1
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
    finally:
        stream.opened.set()
        stream.ended.set()


async def subscribe(
    live: Live,
    bearer: str,
    query: str = EVENTS,
    variables: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> Stream:
    """Open a subscription and wait until the gateway has answered (status and first ping)."""
    stream = Stream()
    body = {"query": query, "variables": variables or {}}
    stream.task = asyncio.create_task(_read(stream, live.base, bearer, body, headers or {}))
    await asyncio.wait_for(stream.opened.wait(), 20)
    if stream.status == 200:
        for _ in range(200):  # the first ping: the subscriber is registered with the hub
            if stream.pings or stream.ended.is_set():
                break
            await asyncio.sleep(0.02)
    return stream


async def query(live: Live, bearer: str, document: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{live.base}/graphql",
            json={"query": document},
            headers={"Authorization": f"Bearer {bearer}", "X-Purpose": "relief_recognition"},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------------------- tests
async def test_a_task_pushed_by_the_warning_run_arrives_as_the_query_shows_it(live: Live) -> None:
    civil_a = token(live, "civil_affairs", COUNTY_A, subject="民政-小店-经办")
    stream = await subscribe(live, civil_a)
    neighbour = await subscribe(live, token(live, "civil_affairs", COUNTY_B))
    other_department = await subscribe(live, token(live, "medical_insurance", COUNTY_A))
    try:
        assert stream.status == 200, stream.body
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"].startswith("no-cache")
        assert stream.headers["x-accel-buffering"] == "no"
        for opened in (neighbour, other_department):
            assert opened.status == 200, opened.body

        person_id = await over_the_line(live, COUNTY_A)
        await warning_run(live)
        task_id = await task_of(live, person_id, "civil_affairs")

        message = await stream.next()
        assert message.event == "next"
        event = message.data["data"]["worklistEvents"]
        assert event["kind"] in {"TASK_PUSHED", "WARNING_RAISED"}
        # The warning and the task of one run: both kinds arrive, task first or not.
        seen = {event["kind"]: (message, event)}
        second = await stream.next()
        seen[second.data["data"]["worklistEvents"]["kind"]] = (
            second,
            second.data["data"]["worklistEvents"],
        )
        assert set(seen) == {"TASK_PUSHED", "WARNING_RAISED"}
        pushed_message, pushed = seen["TASK_PUSHED"]
        assert pushed["task"]["id"] == str(task_id)
        assert pushed["task"]["regionCode"] == COUNTY_A
        assert pushed["warning"] is None
        # id: the outbox event, for Last-Event-ID
        assert pushed_message.id == str(await outbox_id(live, task_id)) == pushed["id"]
        # Rendered as the tasks query renders it for the same clerk: phone masked.
        listed = await query(live, civil_a, TASKS)
        node = next(
            edge["node"]
            for edge in listed["data"]["tasks"]["edges"]
            if edge["node"]["id"] == str(task_id)
        )
        assert {k: pushed["task"][k] for k in node} == node
        assert pushed["task"]["person"]["phone"] == "138****5678"
        assert pushed["task"]["person"]["phone"] != "13812345678"
        assert pushed["task"]["person"]["name"].startswith("测试订阅")
        # Its read is in the audit log, under the stream's request id.
        request_id = stream.headers["x-request-id"]
        async with live.gateway.runtime.engine.connect() as connection:
            entries = list(
                await connection.execute(
                    select(AuditEntry.person_ids, AuditEntry.fields, AuditEntry.subject).where(
                        AuditEntry.request_id == request_id
                    )
                )
            )
        assert entries
        assert all(entry.subject == "民政-小店-经办" for entry in entries)
        assert any(str(person_id) in json.loads(entry.person_ids) for entry in entries)
        assert any(json.loads(entry.fields).get("Person.phone") == "mask" for entry in entries)

        # Another county, another department: nothing at all (no id, no event).
        assert await neighbour.quiet() == []
        assert await other_department.quiet(0.1) == []
        assert not neighbour.ended.is_set()
        assert not other_department.ended.is_set()
    finally:
        for opened in (stream, neighbour, other_department):
            await opened.close()


async def test_kinds_filter_and_another_countys_person(live: Live) -> None:
    civil_b = token(live, "civil_affairs", COUNTY_B, subject="民政-迎泽-经办")
    warnings_only = await subscribe(live, civil_b, variables={"kinds": ["WARNING_RAISED"]})
    tasks_only = await subscribe(live, civil_b, variables={"kinds": ["TASK_PUSHED"]})
    try:
        in_a = await over_the_line(live, COUNTY_A)
        await warning_run(live)
        # County A's person: county B hears nothing of it.
        assert await warnings_only.quiet() == []
        assert await tasks_only.quiet(0.1) == []
        in_b = await over_the_line(live, COUNTY_B)
        await warning_run(live)
        warned = (await warnings_only.next()).data["data"]["worklistEvents"]
        assert warned["kind"] == "WARNING_RAISED"
        assert warned["task"] is None
        assert warned["warning"]["regionCode"] == COUNTY_B
        assert warned["warning"]["person"]["id"] == str(in_b)
        pushed = (await tasks_only.next()).data["data"]["worklistEvents"]
        assert pushed["kind"] == "TASK_PUSHED"
        assert pushed["task"]["id"] == str(await task_of(live, in_b, "civil_affairs"))
        assert await warnings_only.quiet(1.5) == []
        assert await tasks_only.quiet(0.1) == []
        assert in_a != in_b
    finally:
        await warnings_only.close()
        await tasks_only.close()


async def test_last_event_id_replays_what_was_missed(live: Live) -> None:
    civil_a = token(live, "civil_affairs", COUNTY_A, subject="民政-小店-断线")
    person_id = await over_the_line(live, COUNTY_A)
    await warning_run(live)  # nobody is listening
    task_id = await task_of(live, person_id, "civil_affairs")
    missed = await outbox_id(live, task_id)
    resumed = await subscribe(
        live,
        civil_a,
        variables={"kinds": ["TASK_PUSHED"]},
        headers={"Last-Event-ID": str(missed - 1)},
    )
    try:
        message = await resumed.next()
        assert message.id == str(missed)
        assert message.data["data"]["worklistEvents"]["task"]["id"] == str(task_id)
        assert await resumed.quiet(1.0) == []  # once, not again from the live feed
    finally:
        await resumed.close()
    # Resuming after the last one seen: nothing replayed.
    current = await subscribe(live, civil_a, headers={"Last-Event-ID": str(missed)})
    try:
        assert await current.quiet(1.5) == []
    finally:
        await current.close()
    # County B resuming from 0 never gets county A's task, nor its id.
    neighbour = await subscribe(
        live, token(live, "civil_affairs", COUNTY_B), headers={"Last-Event-ID": "0"}
    )
    try:
        replayed = await neighbour.quiet(1.5)
        assert all(m.id != str(missed) for m in replayed)
        for m in replayed:
            event = m.data["data"]["worklistEvents"]
            found = event["task"] or event["warning"]
            assert found["regionCode"] == COUNTY_B
    finally:
        await neighbour.close()


async def test_at_most_five_streams_per_subject(live: Live) -> None:
    bearer = token(live, "civil_affairs", COUNTY_A, subject="民政-小店-多窗口")
    streams = [await subscribe(live, bearer) for _ in range(5)]
    try:
        assert [s.status for s in streams] == [200] * 5
        sixth = await subscribe(live, bearer)
        assert sixth.status == 429
        error = json.loads(sixth.body)["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert "上限" in error["message"]
        # Another subject is not counted against this one.
        other = await subscribe(live, token(live, "civil_affairs", COUNTY_A, subject="另一人"))
        assert other.status == 200
        await other.close()
        # A closed stream frees its slot.
        await streams.pop().close()
        for _ in range(100):
            again = await subscribe(live, bearer)
            if again.status == 200:
                streams.append(again)
                break
            await asyncio.sleep(0.05)
        assert streams[-1].status == 200
        assert len(streams) == 5
    finally:
        for stream in streams:
            await stream.close()


async def test_an_expired_token_ends_the_stream(live: Live) -> None:
    stream = await subscribe(live, token(live, "civil_affairs", COUNTY_A, ttl=2))
    try:
        assert stream.status == 200
        message = await stream.next(seconds=10)
        assert message.event == "next"
        error = message.data["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert "过期" in error["message"]
        assert (await stream.next(seconds=5)).event == "complete"
        await asyncio.wait_for(stream.ended.wait(), 5)
    finally:
        await stream.close()


ALIASED = """
subscription Sneaky {
  a: worklistEvents(kinds: [TASK_PUSHED]) {
    ...Parts
    b: task { c: person { d: phone e: costBurdens { f: basicInsurancePaid } } }
  }
}
fragment Parts on WorklistEvent {
  task { person { ... on Person { phone costBurdens { basicInsurancePaid personalBurden } } } }
}
"""

PLAIN = """
query Plain {
  tasks(first: 200) { edges { node { id person { phone costBurdens {
    basicInsurancePaid personalBurden } } } } }
}
"""


async def test_aliases_and_fragments_read_no_more_than_the_query(live: Live) -> None:
    civil_a = token(live, "civil_affairs", COUNTY_A, subject="民政-小店-别名")
    stream = await subscribe(live, civil_a, ALIASED)
    try:
        person_id = await over_the_line(live, COUNTY_A, phone="13900001111")
        await warning_run(live)
        message = await stream.next()
        event = message.data["data"]["a"]
        person = event["task"]["person"]
        assert person["phone"] == event["b"]["c"]["d"] == "139****1111"
        # The query's own answer for the same person: the denied figure is withheld the same.
        listed = await query(live, civil_a, PLAIN)
        task_id = str(await task_of(live, person_id, "civil_affairs"))
        node = next(
            e["node"] for e in listed["data"]["tasks"]["edges"] if e["node"]["id"] == task_id
        )
        assert person["costBurdens"] == node["person"]["costBurdens"]
        assert [b["basicInsurancePaid"] for b in person["costBurdens"]] == [None]
        assert [b["f"] for b in event["b"]["c"]["e"]] == [None]
        codes = {e["extensions"]["code"] for e in message.data.get("errors", [])}
        query_codes = {e["extensions"]["code"] for e in listed.get("errors", [])}
        assert codes == query_codes
        assert "13900001111" not in json.dumps(message.data)
    finally:
        await stream.close()


async def test_invalid_documents_and_wrong_media_types(live: Live) -> None:
    civil_a = token(live, "civil_affairs", COUNTY_A)
    invalid = await subscribe(live, civil_a, "subscription { worklistEvents { nosuchField } }")
    try:
        assert invalid.status == 200
        message = await invalid.next()
        assert message.event == "next"
        error = message.data["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "nosuchField" in error["message"]
        assert any("\u4e00" <= c <= "\u9fff" for c in error["message"])
        assert (await invalid.next()).event == "complete"
    finally:
        await invalid.close()
    # A syntax error, and two root fields (one stream, one field): the same shape, in Chinese.
    for document, expected in (
        ("subscription { worklistEvents { id } } extra {", "语法错误"),
        (
            "subscription { worklistEvents { id } b: worklistEvents { kind } }",
            "只能选择一个顶层字段",
        ),
    ):
        refused = await subscribe(live, civil_a, document)
        try:
            message = await refused.next()
            error = message.data["errors"][0]
            assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            assert expected in error["message"]
            assert (await refused.next()).event == "complete"
        finally:
            await refused.close()
    # A query asked for as a stream: 406, in Chinese (the stream is for subscriptions).
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{live.base}/graphql",
            json={"query": "{ me { subject } }"},
            headers={"Authorization": f"Bearer {civil_a}", "Accept": "text/event-stream"},
        )
    assert response.status_code == 406
    assert "只用于订阅" in response.json()["errors"][0]["message"]
    # A subscription asked for as JSON: refused, in Chinese, nothing executed.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{live.base}/graphql",
            json={"query": EVENTS},
            headers={"Authorization": f"Bearer {civil_a}", "Accept": "application/json"},
        )
    assert response.status_code == 200  # as the executor answers what it cannot run
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "text/event-stream" in error["message"]
    assert "本接口不支持订阅" in error["message"]
    # No token: 401 before any stream.
    anonymous = Stream()
    anonymous.task = asyncio.create_task(
        _read(anonymous, live.base, "", {"query": EVENTS}, {"Authorization": ""})
    )
    await asyncio.wait_for(anonymous.ended.wait(), 20)
    assert anonymous.status == 401
    # A kind the policy does not grant (health reads no tasks): refused as a GraphQL error,
    # then complete.
    health = await subscribe(
        live, token(live, "health", COUNTY_A), variables={"kinds": ["TASK_PUSHED"]}
    )
    try:
        message = await health.next()
        assert message.data["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "任务推送" in message.data["errors"][0]["message"]
        assert (await health.next()).event == "complete"
    finally:
        await health.close()


# ---------------------------------------------------------------------------- the hub
def test_gaps_are_split_by_what_was_read_and_given_up_after_their_time() -> None:
    gaps = _Gaps()
    gaps.add(10, 20, now=0.0)
    gaps.remove([9, 10, 14, 15, 20, 21])
    assert [(low, high) for low, high, _ in gaps.ranges] == [(11, 13), (16, 19)]
    gaps.add(30, 30, now=50.0)
    gaps.expire(now=119.0, after=120.0)
    assert len(gaps.ranges) == 3
    gaps.expire(now=121.0, after=120.0)  # the first two: noticed at 0 s, given up at 120 s
    assert [(low, high) for low, high, _ in gaps.ranges] == [(30, 30)]
    gaps.add(5, 4, now=0.0)  # an empty range is none
    assert len(gaps.ranges) == 1


def _event(key: str) -> outbox.Event:
    return outbox.Event(
        kind=outbox.EventKind.TASK_PUSHED,
        audience="civil_affairs",
        county_code=COUNTY_A,
        subject_type="task",
        subject_id=str(uuid.uuid4()),
        dedupe_key=f"test.hub:{key}:{uuid.uuid4().hex}",
    )


async def test_an_event_committed_after_a_later_one_is_not_lost(live: Live) -> None:
    """Commit order is not id order (PostgreSQL): the hub reads the later id first, remembers
    the gap below it and reads the earlier one once it commits. SQLite has one writer at a
    time: the events are read in order."""
    engine = live.gateway.runtime.engine
    hub = EventHub(engine, dsn=None)  # not started: it reads only when the test says
    assert await hub.read_once() == []  # the present
    try:
        inbox = hub.subscribe("civil_affairs", COUNTY_A)
        if live.gateway.backend == "postgres":
            async with engine.connect() as slow:
                transaction = await slow.begin()
                await outbox.emit_rows(slow, [_event("slow")])  # takes the lower id
                async with engine.begin() as fast:
                    await outbox.emit_rows(fast, [_event("fast")])
                first = await hub.read_once()
                assert len(first) == 1
                assert hub._gaps.ranges  # the slow one's id, remembered
                await transaction.commit()
            second = await hub.read_once()
            assert len(second) == 1
            assert second[0].id < first[0].id  # the earlier id, read later
            assert not hub._gaps.ranges
        else:
            for key in ("one", "two"):
                async with engine.begin() as connection:
                    await outbox.emit_rows(connection, [_event(key)])
            first = await hub.read_once()
            assert len(first) == 2
            second = []
        got = [inbox._queue.get_nowait() for _ in range(inbox._queue.qsize())]
        assert sorted(event.id for event in got) == sorted(e.id for e in first + second)
        assert await hub.read_once() == []  # nothing twice
    finally:
        await hub.close()


async def test_heartbeats_and_no_pooled_connection_held_between_events(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.2)
    streams = [await subscribe(live, token(live, "civil_affairs", COUNTY_A)) for _ in range(3)]
    try:
        await asyncio.sleep(1.2)
        assert all(stream.pings >= 4 for stream in streams), [s.pings for s in streams]
        assert all(not stream.ended.is_set() for stream in streams)
        # Three open streams, idle: no connection of the pool is checked out for them.
        pool: Any = live.gateway.runtime.engine.pool
        assert pool.checkedout() == 0
    finally:
        for stream in streams:
            await stream.close()


@contextlib.asynccontextmanager
async def withdrawn(gateway: Harness, subject: str, operation: str) -> AsyncIterator[None]:
    """Take a policy line back as a new policy version for the block, then restore it."""

    async def install(note: str) -> None:
        async with gateway.runtime.sessions() as session:
            session.add(PolicyVersion(created_at=now_utc(), created_by="test", note=note))
            await session.commit()
            await gateway.runtime.authorizer.load(session)

    line = {"ptype": "p", "v0": subject, "v1": operation, "v2": "call", "v3": "*"}
    async with gateway.runtime.sessions() as session:
        await session.execute(
            delete(CasbinRule).where(CasbinRule.v0 == subject, CasbinRule.v1 == operation)
        )
        await session.commit()
    await install("test: a grant withdrawn")
    try:
        yield
    finally:
        async with gateway.runtime.sessions() as session:
            await session.execute(insert(CasbinRule), [line])
            await session.commit()
        await install("test: the grant restored")


async def test_a_grant_withdrawn_mid_stream_ends_it_before_the_next_event(live: Live) -> None:
    stream = await subscribe(
        live, token(live, "civil_affairs", COUNTY_A), variables={"kinds": ["TASK_PUSHED"]}
    )
    try:
        async with withdrawn(live.gateway, "civil_affairs:*", "Loop.tasks"):
            person_id = await over_the_line(live, COUNTY_A)
            await warning_run(live)
            message = await stream.next()
            assert message.event == "next"
            assert message.id is None
            assert message.data["data"] is None
            error = message.data["errors"][0]
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert "访问策略已变更" in error["message"]
            assert str(person_id) not in json.dumps(message.data)
            assert (await stream.next()).event == "complete"
    finally:
        await stream.close()


async def test_a_replay_over_its_bound_says_so_first(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More missed than Last-Event-ID replays (bounded): a RESUME_TRUNCATED notice, then the
    earliest ones, then live events; the workbench reads its lists again on the notice."""
    monkeypatch.setattr(events, "REPLAY_LIMIT", 1)
    civil_b = token(live, "civil_affairs", COUNTY_B, subject="民政-迎泽-补发")
    async with live.gateway.runtime.engine.connect() as connection:
        before = (await connection.execute(select(func.max(OutboxEvent.id)))).scalar() or 0
    people = [await over_the_line(live, COUNTY_B) for _ in range(2)]
    await warning_run(live)
    tasks = [str(await task_of(live, person, "civil_affairs")) for person in people]
    stream = await subscribe(live, civil_b, headers={"Last-Event-ID": str(before)})
    try:
        notice = await stream.next()
        assert notice.id is None
        assert notice.data["errors"][0]["extensions"]["code"] == "RESUME_TRUNCATED"
        assert "请刷新列表" in notice.data["errors"][0]["message"]
        first = (await stream.next()).data["data"]["worklistEvents"]
        if first["kind"] == "TASK_PUSHED":
            assert first["task"]["id"] in tasks
        else:
            assert first["warning"]["person"]["id"] in [str(person) for person in people]
        assert not stream.ended.is_set()  # still live after the notice
    finally:
        await stream.close()


async def test_a_subscriber_too_far_behind_is_told_to_resume(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow client never makes the hub hold events without bound: its inbox overflows, its
    stream ends with SERVICE_UNAVAILABLE, and it resumes by Last-Event-ID."""
    monkeypatch.setattr(events, "INBOX_SIZE", 1)
    stream = await subscribe(live, token(live, "civil_affairs", COUNTY_B, subject="慢客户端"))
    try:
        for _ in range(2):
            await over_the_line(live, COUNTY_B)
        await warning_run(live)  # four events at once for an inbox of one
        message = await stream.next()
        if "errors" not in message.data:  # the one event its inbox held, then the refusal
            assert message.data["data"]["worklistEvents"]["id"] == message.id
            message = await stream.next()
        error = message.data["errors"][0]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert "Last-Event-ID" in error["message"]
        assert (await stream.next()).event == "complete"
    finally:
        await stream.close()


SCRIPT = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "relief-gateway"


async def test_serve_stops_on_sigterm_with_streams_open(tmp_path: Path) -> None:
    """uvicorn waits for open responses before it stops, and an event stream never ends by
    itself: SIGTERM ends every stream with ``complete`` and the process exits (uvicorn then
    re-raises the signal it handled: killed by SIGTERM, after a graceful shutdown)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env |= {"RELIEF_DATA_DIR": str(tmp_path / "data"), "RELIEF_PROVINCE": "shanxi"}
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")

    async def cli(*args: str) -> str:
        done = await asyncio.create_subprocess_exec(
            str(SCRIPT), *args, env=env, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(done.communicate(), 120)
        assert done.returncode == 0, err.decode()
        return out.decode()

    await cli("seed", "--persons", "5", "--province", "shanxi")
    minted = await cli(
        "token", "--dept", "civil_affairs", "--level", "county", "--region", COUNTY_A
    )
    bearer = minted.strip().splitlines()[-1]
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), "serve", "--port", str(port), env=env, stdout=DEVNULL, stderr=DEVNULL
    )
    try:
        server = Live(gateway=None, base=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                async with httpx.AsyncClient(timeout=2) as client:
                    if (await client.get(f"{server.base}/readyz")).status_code == 200:
                        break
            await asyncio.sleep(0.2)
        streams = [await subscribe(server, bearer) for _ in range(2)]
        assert [s.status for s in streams] == [200, 200]
        proc.send_signal(signal.SIGTERM)
        for stream in streams:
            assert (await stream.next(10)).event == "complete"
            await asyncio.wait_for(stream.ended.wait(), 10)
        assert await asyncio.wait_for(proc.wait(), 15) in (0, -signal.SIGTERM)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
