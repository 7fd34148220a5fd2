"""Subscriptions over Server-Sent Events: the GraphQL over SSE protocol, distinct connections
mode (github.com/enisdenjo/graphql-sse PROTOCOL.md), for ``worklistEvents`` (issue 18 item 3).

    POST /graphql   Accept: text/event-stream   Authorization: Bearer …   [Last-Event-ID: 41]
    {"query": "subscription { worklistEvents { kind task { id dueOn } } }"}

    200 text/event-stream
    id: 42
    event: next
    data: {"data":{"worklistEvents":{…}}}

    : ping                      (every 15 s, so proxies keep the connection)
    event: complete             (the server ends the stream: an error, token expiry)

``gateway.http.graphql`` routes a subscription here after the steps every request takes
(token → rate limit → purpose → document → purpose-bound refusal); this module answers the
rest: one stream slot of the subject (``EventHub.open_stream``: at most 5 per subject and
process, else 429), the subscriber registered with the hub by department and region, and then
per event (``_Feed.scope``): the token verified again (expired → an error ``next`` and
``complete``), the policy in force reloaded, a short connection opened, a fresh guard and
scoped storage in the context, the event rendered by the schema and its read appended to the
audit log before the event leaves (as a query's response leaves only once audited). No pooled
connection is held between events.

Errors are the house's GraphQL error shape (Chinese messages, ``requestId``): validation
errors of the document come as one ``next`` then ``complete`` on an accepted stream, as the
protocol says. ``id:`` lines carry the outbox event id: a client that reconnects with
``Last-Event-ID`` gets the events it missed (at most ``REPLAY_LIMIT``; more → a notice to
reload the list) before live ones. The client ends a subscription by closing the connection.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import signal
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from strawberry.types import ExecutionResult

from authz.decision import AccessDecision
from gateway.domain import clock
from gateway.domain.errors import AuditUnavailable, GatewayError, ServiceUnavailable
from gateway.domain.principal import Principal
from gateway.runtime.events import REPLAY_LIMIT, Inbox, OutboxRow
from gateway.runtime.parts import Runtime
from gateway.storage import audit_chain as audit
from schema.context import RequestContext
from schema.scope import scoped_context
from schema.subscriptions import OUTBOX_KINDS, LiveContext, LiveEvent

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
HEARTBEAT_SECONDS = 15.0
HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}
PING = b": ping\n\n"
COMPLETE = b"event: complete\ndata: \n\n"

FormatResult = Callable[[Any, str], dict[str, Any]]


class ResumeTruncated(GatewayError):
    """More events were missed than ``Last-Event-ID`` replays: the client reloads its list."""

    code = "RESUME_TRUNCATED"


def wants_event_stream(accept: str | None) -> bool:
    return EVENT_STREAM in (accept or "").lower()


def encode(event: str, data: bytes, event_id: int | None = None) -> bytes:
    """One SSE message; ``data`` is one line of JSON (orjson never writes a raw newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


def last_event_id(value: str | None) -> int | None:
    """``Last-Event-ID`` as an outbox id; anything else is ignored (a fresh start)."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _error_body(error: GatewayError, request_id: str) -> bytes:
    return orjson.dumps(
        {
            "data": None,
            "errors": [
                {
                    "message": error.message,
                    "extensions": {"code": error.code, "requestId": request_id},
                }
            ],
        }
    )


def _expires_at(token: str) -> float | None:
    """The token's ``exp``, read without verifying (only to wake at that moment: the token is
    verified again then, and that decides)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires = claims.get("exp") if isinstance(claims, dict) else None
        return float(expires) if isinstance(expires, int | float) else None
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None


class _Closing:
    """The process is stopping: every open stream ends with ``complete``.

    uvicorn stops on SIGTERM/SIGINT by waiting for every response in progress to finish, and an
    event stream never finishes by itself: without this, ``serve`` would not stop while one
    workbench is open. The first stream of a process chains a handler in front of the one in
    place (uvicorn's, which still runs and still decides); clients reconnect with
    Last-Event-ID to the next process."""

    def __init__(self) -> None:
        self._events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )

    def event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        event = self._events.get(loop)
        if event is None:
            event = self._events[loop] = asyncio.Event()
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for signum in (signal.SIGINT, signal.SIGTERM):
                if not getattr(signal.getsignal(signum), "ends_event_streams", False):
                    signal.signal(signum, self._handler(signal.getsignal(signum)))
        return event

    def _handler(self, previous: Any) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            for loop, event in list(self._events.items()):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(event.set)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        handler.ends_event_streams = True  # type: ignore[attr-defined]
        return handler


_CLOSING = _Closing()


class _EventStream(StreamingResponse):
    """A streaming response that notices a closed connection at once, whatever ASGI version
    the server speaks (Starlette listens for ``http.disconnect`` only below 2.4, and otherwise
    learns of it at the next write: up to a heartbeat later, with the subject's slot held),
    and calls ``on_close`` however it ends, even when its body never started."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(body, media_type=EVENT_STREAM)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def wrap(func: Callable[[], Any]) -> None:
                    await func()
                    group.cancel_scope.cancel()

                group.start_soon(wrap, partial(self.stream_response, send))
                await wrap(partial(self.listen_for_disconnect, receive))
        finally:
            self._on_close()


class _Feed:
    """One stream's events and per-event scope (``schema.subscriptions.LiveFeed``)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        principal: Principal,
        token: str,
        purpose: str,
        request_id: str,
        inbox: Inbox,
        replay: list[OutboxRow],
    ) -> None:
        self._closed = False
        self._runtime = runtime
        self.principal = principal
        self._token = token
        self._purpose = purpose
        self._request_id = request_id
        self._inbox = inbox
        self._replay = deque(replay)
        self._replayed = {row.id for row in replay}
        self.context: LiveContext | None = None
        self.decision: AccessDecision | None = None
        self.current_id: int | None = None

    def close(self) -> None:
        """The subscriber leaves the hub and frees its subject's slot (once)."""
        if self._closed:
            return
        self._closed = True
        hub = self._runtime.events
        if hub is not None:
            hub.unsubscribe(self._inbox)
            hub.close_stream(self.principal.subject)

    async def next_event(self, kinds: frozenset[str]) -> LiveEvent:
        self.current_id = None
        while self._replay:
            row = self._replay.popleft()
            if row.kind in kinds:
                return self._taken(row)
        while True:
            if self._inbox.overflowed:
                raise ServiceUnavailable(
                    "事件积压过多, 实时更新已中断; 请带 Last-Event-ID 重新连接以补发错过的事件"
                )
            row = await self._inbox.get()
            if row.id in self._replayed or row.kind not in kinds:
                continue
            return self._taken(row)

    def _taken(self, row: OutboxRow) -> LiveEvent:
        self.current_id = row.id
        return LiveEvent(row.id, row.kind, row.subject_id, row.occurred_at)

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        runtime = self._runtime
        # The token again: expired, revoked (a disabled client) → Unauthenticated ends it.
        principal = await runtime.tokens.verify(self._token)
        async with runtime.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await runtime.reads.refresh_policy(runtime.authorizer, connection)
            decision = runtime.authorizer.decision_for(principal, self._purpose)
            fresh = _context(
                runtime, connection, principal, self._purpose, decision, self._request_id
            )
            assert self.context is not None
            for item in dataclasses.fields(RequestContext):
                setattr(self.context, item.name, getattr(fresh, item.name))
            self.decision = decision
            yield


def _context(
    runtime: Runtime,
    connection: Any,
    principal: Principal,
    purpose: str,
    decision: AccessDecision,
    request_id: str,
) -> RequestContext:
    return scoped_context(
        connection,
        principal=principal,
        purpose=purpose,
        decision=decision,
        request_id=request_id,
        today=clock.today(),
        vault=runtime.vault,
        max_page_size=runtime.settings.max_page_size,
        feeds=runtime.feeds,
        engine=runtime.engine,
        rules=runtime.rules,
        policy_changed=runtime.authorizer.invalidate,
        audit_macs=runtime.audit.macs,
    )


async def subscription_response(
    runtime: Runtime,
    request: Request,
    *,
    request_id: str,
    principal: Principal,
    token: str,
    purpose: str,
    decision: AccessDecision,
    query: str | None,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    audit_operation: str,
    format_result: FormatResult,
) -> StreamingResponse:
    """The stream of one subscription; raises ``RateLimited`` over the subject's cap."""
    hub = runtime.events
    assert hub is not None  # started with the runtime
    hub.open_stream(principal.subject)
    inbox = hub.subscribe(principal.department.value, principal.region)
    try:
        await hub.start()  # the first subscription of this process starts the hub
        resume = last_event_id(request.headers.get("last-event-id"))
        replay: list[OutboxRow] = []
        truncated = False
        if resume is not None:
            # Registered first, then replayed: an event committed in between is in both and is
            # sent once (the feed skips replayed ids).
            replay, truncated = await hub.replay(
                principal.department.value, principal.region, resume, OUTBOX_KINDS
            )
    except BaseException:
        hub.unsubscribe(inbox)
        hub.close_stream(principal.subject)
        raise
    feed = _Feed(
        runtime,
        principal=principal,
        token=token,
        purpose=purpose,
        request_id=request_id,
        inbox=inbox,
        replay=replay,
    )
    # The context's first storage is on a connection closed at once: every event renews it
    # on a connection of its own (``_Feed.scope``); nothing reads before the first event.
    async with runtime.engine.connect() as connection:
        first = _context(runtime, connection, principal, purpose, decision, request_id)
    context = LiveContext(
        **{item.name: getattr(first, item.name) for item in dataclasses.fields(RequestContext)},
        live=feed,
    )
    feed.context = context
    feed.decision = decision

    body = _stream(
        runtime,
        feed,
        context,
        request_id=request_id,
        token=token,
        query=query,
        variables=variables,
        operation_name=operation_name,
        audit_operation=audit_operation,
        format_result=format_result,
        truncated=truncated,
    )
    response = _EventStream(body, on_close=feed.close)
    response.headers.update({**HEADERS, "X-Request-Id": request_id})
    return response


async def _stream(
    runtime: Runtime,
    feed: _Feed,
    context: LiveContext,
    *,
    request_id: str,
    token: str,
    query: str | None,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    audit_operation: str,
    format_result: FormatResult,
    truncated: bool,
) -> AsyncIterator[bytes]:
    pending: asyncio.Future[Any] | None = None
    closing = asyncio.ensure_future(_CLOSING.event().wait())
    try:
        yield PING  # the headers and a first byte at once: the client knows it is subscribed
        if truncated:
            notice = ResumeTruncated(
                f"断线期间的事件超过 {REPLAY_LIMIT} 条, 只补发了最早的 {REPLAY_LIMIT} 条;"
                " 请刷新列表查看全部"
            )
            yield encode("next", _error_body(notice, request_id))
        results = await runtime.schema.subscribe(
            query, variable_values=variables, context_value=context, operation_name=operation_name
        )
        iterator = results.__aiter__()
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait(
                {pending, closing},
                timeout=_wait_seconds(token),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if closing in done:
                break  # the process is stopping: complete, the client resumes elsewhere
            if not done:
                expired = await _token_refusal(runtime, token)
                if expired is not None:
                    yield encode("next", _error_body(expired, request_id))
                    break
                yield PING
                continue
            try:
                result = pending.result()
            except StopAsyncIteration:
                break
            except GraphQLError as exc:
                # A document that does not parse, raised past strawberry's stream: the house's
                # error shape, as the executor's result would carry it.
                result = ExecutionResult(data=None, errors=[exc])
            except Exception as exc:
                # A limit's refusal (QueryTooComplex: its code and message), or anything
                # unexpected (masked by the formatter, logged with the request id).
                message = exc.message if isinstance(exc, GatewayError) else "internal"
                result = ExecutionResult(
                    data=None, errors=[GraphQLError(message, original_error=exc)]
                )
            finally:
                pending = None
            event_id = feed.current_id if result.data else None
            if event_id is not None:
                refused = await _audited(runtime, feed, context, request_id, audit_operation)
                if refused is not None:
                    yield encode("next", _error_body(refused, request_id))
                    break
            body = format_result(result, request_id)
            yield encode("next", orjson.dumps(body), event_id)
            if result.errors and not result.data:
                break  # a refusal or an invalid document: the stream is over
        yield COMPLETE
    finally:
        feed.close()
        closing.cancel()
        if pending is not None:
            # The client went away: the resolver's await is cancelled, which closes its
            # connection if it had one open.
            pending.cancel()


def _wait_seconds(token: str) -> float:
    expires = _expires_at(token)
    if expires is None:
        return HEARTBEAT_SECONDS
    left = expires - clock.now_utc().timestamp()
    return max(0.05, min(HEARTBEAT_SECONDS, left + 0.05))


async def _token_refusal(runtime: Runtime, token: str) -> GatewayError | None:
    try:
        await runtime.tokens.verify(token)
    except GatewayError as exc:
        return exc
    return None


async def _audited(
    runtime: Runtime,
    feed: _Feed,
    context: LiveContext,
    request_id: str,
    operation: str,
) -> GatewayError | None:
    """The event's read appended to the audit log, as a query's is; None when done."""
    guard = context.guard
    if not (guard.touched_person_data or guard.people):
        return None
    assert feed.decision is not None
    entry = audit.read_entry(
        principal=feed.principal,
        purpose=context.purpose,
        request_id=request_id,
        operation=operation,
        policy_version=feed.decision.policy_version,
        person_ids=guard.people,
        fields={name: effect.value for name, effect in guard.released.items()},
    )
    try:
        await runtime.audit.append(entry)
    except Exception:
        log.exception("request %s: audit entry of a live event could not be written", request_id)
        return AuditUnavailable(
            "审计日志暂时无法写入, 为保证可追溯, 实时更新已中断; 请稍后重新连接"
        )
    return None


__all__ = [
    "EVENT_STREAM",
    "HEARTBEAT_SECONDS",
    "encode",
    "last_event_id",
    "subscription_response",
    "wants_event_stream",
]
