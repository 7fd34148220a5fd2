"""The event hub (实时事件中枢): one per process, it reads new ``outbox_event`` rows and hands
each to the live subscriptions (``gateway.http.sse``) of its audience department whose
jurisdiction holds the event's county (issue 18 item 3).

    hub = EventHub(engine, dsn=listener_dsn(url))   # dsn None on SQLite: polling only
    await hub.start()
    inbox = hub.subscribe("civil_affairs", "140105")
    event = await inbox.get()                        # an OutboxRow, pre-filtered
    hub.unsubscribe(inbox)
    await hub.close()

Wake-up: on PostgreSQL the hub LISTENs ``relief_outbox`` (migration 0013's statement trigger
notifies at commit) through ``gateway.storage.policy_listener.ChannelListener`` (a dedicated
connection, reconnecting with back-off, pinging a half-open one), and also reads every
``poll_seconds`` in case a notification was lost; on SQLite (one process, other processes
such as ``warn run`` write the same file) it reads every second. Each read is a short pooled
connection, never held.

Commit order is not id order on PostgreSQL: a transaction that took id 10 may commit after one
that took id 11. Reading ``id > highest seen`` would skip 10 for good. So the hub remembers the
*gaps* (ids below the highest seen that it has not read yet) as ranges and asks for them again
on each read, together with ``id > highest``; a gap is given up ``gap_seconds`` (2 minutes)
after it was first noticed: by then its transaction rolled back (a sequence value is never
reused) or, if it is still open, its events reach subscribers only through ``Last-Event-ID``
replay. A range costs one ``BETWEEN`` in the query, whatever its size, so a 50,000-row warning
run still in flight is one range. SQLite has one writer at a time, so it has no gaps to wait for.

Subscriptions are pre-filtered here by audience department and county prefix only; what a
subscriber may see of an event (row scope, field guard, kinds) is decided per event when it is
rendered, by the same scoped storage a query uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.errors import RateLimited
from gateway.storage.models import OutboxEvent
from gateway.storage.outbox import EVENT_CHANNEL
from gateway.storage.policy_listener import ChannelListener

log = logging.getLogger(__name__)

APPLICATION_NAME = "relief-gateway event hub"
MAX_STREAMS_PER_SUBJECT = 5  # live streams one subject may hold open in one process
INBOX_SIZE = 1000  # events waiting for one slow subscriber before its stream is ended
REPLAY_LIMIT = 500  # events replayed after Last-Event-ID at most


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event as subscribers receive it: no names, no ID numbers (the outbox has none)."""

    id: int
    kind: str
    audience: str
    county_code: str
    subject_type: str
    subject_id: str
    occurred_at: datetime


_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.kind,
    OutboxEvent.audience,
    OutboxEvent.county_code,
    OutboxEvent.subject_type,
    OutboxEvent.subject_id,
    OutboxEvent.occurred_at,
)


def _row(found: Any) -> OutboxRow:
    return OutboxRow(
        found.id,
        found.kind,
        found.audience,
        found.county_code,
        found.subject_type,
        found.subject_id,
        found.occurred_at,
    )


class Inbox:
    """One subscriber's queue of pre-filtered events. ``overflowed`` once it fell
    ``INBOX_SIZE`` events behind: its stream ends and the client resumes by Last-Event-ID."""

    def __init__(self, department: str, region: str) -> None:
        self.department = department
        self.region = region
        self.overflowed = False
        self._queue: asyncio.Queue[OutboxRow] = asyncio.Queue(INBOX_SIZE)

    def wants(self, event: OutboxRow) -> bool:
        return event.audience == self.department and event.county_code.startswith(self.region)

    def put(self, event: OutboxRow) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> OutboxRow:
        return await self._queue.get()


@dataclass
class _Gaps:
    """Ids below the highest read that were not read yet: ``[low, high]`` ranges, each with
    the monotonic time it was first noticed."""

    ranges: list[tuple[int, int, float]] = field(default_factory=list)

    def add(self, low: int, high: int, now: float) -> None:
        if low <= high:
            self.ranges.append((low, high, now))

    def remove(self, ids: Sequence[int]) -> None:
        """Split the ranges around ``ids`` (sorted) that were read."""
        if not ids or not self.ranges:
            return
        kept: list[tuple[int, int, float]] = []
        for low, high, since in self.ranges:
            start = low
            for found in ids:
                if found < start or found > high:
                    continue
                if found > start:
                    kept.append((start, found - 1, since))
                start = found + 1
            if start <= high:
                kept.append((start, high, since))
        self.ranges = kept

    def expire(self, now: float, after: float) -> None:
        self.ranges = [
            (low, high, since) for low, high, since in self.ranges if now - since < after
        ]


class EventHub:
    """Reads new outbox events and hands them to the subscribers they concern."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        dsn: str | None,
        poll_seconds: float | None = None,
        batch: int = 500,
        gap_seconds: float = 120.0,
        ping_seconds: float = 30.0,
        max_retry_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._dsn = dsn
        # PostgreSQL wakes on NOTIFY; its poll only covers a lost notification.
        self._poll_seconds = poll_seconds or (5.0 if dsn else 1.0)
        self._batch = batch
        self._gap_seconds = gap_seconds
        self._ping_seconds = ping_seconds
        self._max_retry_seconds = max_retry_seconds
        self._inboxes: set[Inbox] = set()
        self._streams: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._highest: int | None = None
        self._gaps = _Gaps()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._listener: ChannelListener | None = None
        self.reads = 0  # completed reads, for tests and the log

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start reading (and, on PostgreSQL, listening); idempotent, called by the first
        subscription. Never raises: a database that is not reachable yet is retried."""
        if self._started:
            return
        self._started = True
        with contextlib.suppress(Exception):  # unreachable: the reader loop retries
            await self.read_once()  # the present: a subscriber hears what commits from now
        self._tasks.append(asyncio.create_task(self._read_loop(), name="event-hub-reader"))
        if self._dsn is not None:
            # every notification, and every reconnection (one may have been missed), wakes us
            self._listener = ChannelListener(
                self._dsn,
                EVENT_CHANNEL,
                self._notified,
                name="event hub listener",
                application_name=APPLICATION_NAME,
                ping_seconds=self._ping_seconds,
                max_retry_seconds=self._max_retry_seconds,
            )
            await self._listener.start(wait_seconds=wait_seconds)

    @property
    def listening(self) -> bool:
        """PostgreSQL: LISTEN is in place."""
        return self._listener is not None and self._listener.listening

    async def _notified(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._started = False
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Read now (a writer in this process committed an event)."""
        self._wake.set()

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, department: str, region: str) -> Inbox:
        """An inbox for the events of ``department`` in ``region`` (a jurisdiction prefix)."""
        inbox = Inbox(department, region)
        self._inboxes.add(inbox)
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        self._inboxes.discard(inbox)

    def open_stream(self, subject: str) -> None:
        """Count one more live stream of ``subject``; refused over the cap (HTTP 429)."""
        held = self._streams.get(subject, 0)
        if held >= MAX_STREAMS_PER_SUBJECT:
            raise RateLimited(
                f"同一账号同时打开的实时订阅已达上限 ({MAX_STREAMS_PER_SUBJECT} 个),"
                " 请先关闭其他页面或窗口中的实时更新",
                retry_after=15,
            )
        self._streams[subject] = held + 1

    def close_stream(self, subject: str) -> None:
        held = self._streams.get(subject, 0) - 1
        if held > 0:
            self._streams[subject] = held
        else:
            self._streams.pop(subject, None)

    @property
    def subscribers(self) -> int:
        return len(self._inboxes)

    async def replay(
        self, department: str, region: str, after_id: int, kinds: Sequence[str]
    ) -> tuple[list[OutboxRow], bool]:
        """Events of ``department`` in ``region`` after ``after_id`` (Last-Event-ID), at most
        ``REPLAY_LIMIT``; the flag says more were left out."""
        statement = (
            select(*_COLUMNS)
            .where(
                OutboxEvent.audience == department,
                OutboxEvent.county_code.like(region + "%"),
                OutboxEvent.id > after_id,
                OutboxEvent.kind.in_(list(kinds)),
            )
            .order_by(OutboxEvent.id)
            .limit(REPLAY_LIMIT + 1)
        )
        async with self._engine.connect() as connection:
            rows = [_row(found) for found in await connection.execute(statement)]
        return rows[:REPLAY_LIMIT], len(rows) > REPLAY_LIMIT

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.read_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is unreachable: back off, keep the gaps
                log.warning("event hub: read failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_seconds)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            self._wake.clear()

    async def read_once(self) -> list[OutboxRow]:
        """One read: the gaps and what follows the highest id seen; dispatch what was found."""
        async with self._engine.connect() as connection:
            if self._highest is None:
                # Start at the present: what came before is replayed only on request.
                top = (await connection.execute(select(func.max(OutboxEvent.id)))).scalar()
                self._highest = int(top or 0)
                self.reads += 1
                return []
            self._gaps.expire(time.monotonic(), self._gap_seconds)
            wanted = [OutboxEvent.id > self._highest]
            wanted += [OutboxEvent.id.between(low, high) for low, high, _ in self._gaps.ranges]
            statement = (
                select(*_COLUMNS).where(or_(*wanted)).order_by(OutboxEvent.id).limit(self._batch)
            )
            found = [_row(row) for row in await connection.execute(statement)]
        self.reads += 1
        if not found:
            return found
        ids = [event.id for event in found]
        self._gaps.remove(ids)
        now = time.monotonic()
        previous = self._highest
        for event_id in ids:
            if event_id > previous + 1:
                self._gaps.add(previous + 1, event_id - 1, now)
            previous = max(previous, event_id)
        if len(found) == self._batch:
            # A full batch: more may follow at once; what is between is not a gap yet.
            self._wake.set()
        self._highest = max(self._highest, ids[-1])
        self._dispatch(found)
        return found

    def _dispatch(self, events: Sequence[OutboxRow]) -> None:
        for inbox in list(self._inboxes):
            for event in events:
                if inbox.wants(event):
                    inbox.put(event)


__all__ = [
    "APPLICATION_NAME",
    "INBOX_SIZE",
    "MAX_STREAMS_PER_SUBJECT",
    "REPLAY_LIMIT",
    "EventHub",
    "Inbox",
    "OutboxRow",
]
