"""Webhook delivery workers (issue 18 item 2): claim due deliveries, render each payload
through the receiving department's policy, sign it, POST it, record what happened.

    worker = DeliveryWorker(runtime)
    await worker.drain()            # deliver what is due now (relief-gateway deliver --once)
    await worker.run(stop)          # until ``stop`` is set: `serve` and `relief-gateway deliver`

One delivery, one attempt:

1. claimed (``gateway.storage.deliveries.claim``: SKIP LOCKED on PostgreSQL, per-person order,
   per-endpoint limit and circuit breaker);
2. rendered **as the endpoint**: a principal of the endpoint's department, level and region
   executes a fixed GraphQL document per event kind on the same path a request takes
   (``schema.scope``: decision → row predicate → field guard), so masked fields stay masked;
   a person outside the endpoint's scope cancels the delivery (``out_of_scope``) and nothing
   is sent;
3. audited (subject ``webhook:<endpoint id>``) before a byte leaves: who read what includes
   pushes;
4. signed (``gateway.crypto``, Standard Webhooks; both secrets during a rotation) and POSTed,
   redirects not followed;
5. recorded in one fenced transaction: DELIVERED (with the task's delivery receipt), PENDING
   after a back-off, DEAD, or CANCELLED (410 Gone disables the endpoint).

Wake-ups: PostgreSQL ``LISTEN relief_delivery`` on a connection of its own (the outbox's
trigger notifies at commit) plus a timer for the next retry; SQLite polls every second (one
process, one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from authz.decision import AccessDecision, Effect
from gateway.crypto import webhook_headers
from gateway.domain import clock
from gateway.domain.departments import Department, Level
from gateway.domain.errors import DecryptionError
from gateway.domain.principal import Principal
from gateway.storage import audit_chain as audit
from gateway.storage import deliveries as queue
from gateway.storage.models import Person
from gateway.storage.outbox import DELIVERY_CHANNEL, EventKind, decode_facts
from gateway.storage.policy_listener import ChannelListener, listener_dsn
from schema.scope import scoped_context

if TYPE_CHECKING:
    from gateway.runtime.parts import Runtime

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "webhook:"
USER_AGENT = "relief-gateway-webhook/1"
SQLITE_POLL_SECONDS = 1.0
# PostgreSQL wakes on NOTIFY; this bounds the wait when a notification was missed.
LISTEN_FALLBACK_SECONDS = 30.0
BUSY_RETRY_SECONDS = 1.0
APPLICATION_NAME = "relief-gateway delivery listener"

# The purpose each push is read for (gateway/data/purposes.json): the one the pushing rule
# serves. Medical insurance verifies the lists pushed to it (004 §1).
_PURPOSES = {
    EventKind.TASK_PUSHED: "relief_recognition",
    EventKind.TASK_ANSWERED: "relief_recognition",
    EventKind.WARNING_RAISED: "high_cost_monitoring",
    EventKind.ANOMALY_OPENED: "data_correction",
    EventKind.ANOMALY_CLOSED: "data_correction",
    EventKind.BATCH_ACCEPTED: "data_correction",
    EventKind.IDENTITY_RECOGNISED: "enrollment_verification",
}

# A person's leaves, each selected only where the endpoint's policy lets it read or mask it.
_PERSON_LEAVES = (
    "idNumber",
    "name",
    "gender",
    "birthDate",
    "regionCode",
    "phone",
    "address",
    "underVerification",
)
_TASK_LEAVES = (
    "id kind department regionCode category openedOn dueOn state overdue "
    "answer answerCategory answeredOn note warning { id rule month }"
)


def purpose_of(kind: str, department: str) -> str:
    if department == Department.MEDICAL_INSURANCE.value and kind == EventKind.TASK_PUSHED.value:
        return "enrollment_verification"
    return _PURPOSES.get(EventKind(kind), "supervision")


def person_selection(decision: AccessDecision) -> str:
    leaves = [
        leaf for leaf in _PERSON_LEAVES if decision.effect(f"Person.{leaf}") is not Effect.DENY
    ]
    return "{ id " + " ".join(leaves) + " }"


def task_document(decision: AccessDecision) -> str:
    return (
        "query WebhookTask($id: ID!) { task(id: $id) { "
        + _TASK_LEAVES
        + " person "
        + person_selection(decision)
        + " } }"
    )


def person_document(decision: AccessDecision) -> str:
    return (
        "query WebhookPerson($idNumber: String!) { person(idNumber: $idNumber) "
        + person_selection(decision)
        + " }"
    )


def endpoint_principal(claimed: queue.Claimed) -> Principal:
    """The endpoint as a caller: its department, level and region, no role."""
    return Principal(
        f"{SUBJECT_PREFIX}{claimed.endpoint_id}",
        Department(claimed.department),
        Level(claimed.level),
        claimed.region,
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """A payload's ``data`` and what the audit records of it."""

    data: dict[str, Any]
    person_ids: frozenset[uuid.UUID] = frozenset()
    fields: dict[str, str] = field(default_factory=dict)
    policy_version: int | None = None
    purpose: str = "supervision"


class OutOfScope(Exception):
    """The endpoint may not read the event's person: nothing is sent."""


def _body(claimed: queue.Claimed, data: dict[str, Any]) -> bytes:
    occurred = claimed.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "type": claimed.kind,
        "id": webhook_id(claimed.event_uuid),
        "timestamp": occurred,
        "data": data,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def webhook_id(event_uuid: uuid.UUID) -> str:
    """``evt_<event uuid>``: the same on every attempt, the receiver's idempotency key."""
    return f"evt_{event_uuid}"


async def render(runtime: Runtime, claimed: queue.Claimed) -> Rendered:
    """The ``data`` of ``claimed``'s payload as its endpoint may read it (raises OutOfScope)."""
    data: dict[str, Any] = {"subject": {"type": claimed.subject_type, "id": claimed.subject_id}}
    facts = decode_facts(claimed.facts)
    if facts:
        data["facts"] = facts
    purpose = purpose_of(claimed.kind, claimed.department)
    if claimed.person_id is None:
        return Rendered(data, purpose=purpose)  # a batch's receipt: no person, nothing to audit
    principal = endpoint_principal(claimed)
    query_type = runtime.schema._schema.query_type
    has_task = query_type is not None and "task" in query_type.fields
    async with runtime.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await runtime.authorizer.refresh(connection)
        decision = runtime.authorizer.decision_for(principal, purpose)
        found: tuple[str, dict[str, Any], Any] | None = None
        if claimed.subject_type == "task" and has_task:
            variables: dict[str, Any] = {"id": claimed.subject_id}
            found = await _execute(
                runtime, connection, claimed, principal, purpose, decision,
                "task", task_document(decision), variables,
            )  # fmt: skip
            # Another department's task it may not open (the sender of a list hears the
            # answer to it): the person, as the endpoint reads them, with the event's facts.
        if found is None:
            sealed = (
                await connection.execute(
                    select(Person.id_number_ct).where(Person.id == claimed.person_id)
                )
            ).scalar_one_or_none()
            if sealed is None:
                raise OutOfScope
            id_number = runtime.vault.open_sealed(sealed, "id_number", claimed.person_id)
            found = await _execute(
                runtime, connection, claimed, principal, purpose, decision,
                "person", person_document(decision), {"idNumber": id_number},
            )  # fmt: skip
    if found is None:
        raise OutOfScope
    root, rendered, context = found
    data[root] = rendered
    guard = context.guard
    return Rendered(
        data,
        person_ids=frozenset(guard.people) | {claimed.person_id},
        fields={name: effect.value for name, effect in guard.released.items()},
        policy_version=decision.policy_version,
        purpose=purpose,
    )


async def _execute(
    runtime: Runtime,
    connection: AsyncConnection,
    claimed: queue.Claimed,
    principal: Principal,
    purpose: str,
    decision: AccessDecision,
    root: str,
    document: str,
    variables: dict[str, Any],
) -> tuple[str, dict[str, Any], Any] | None:
    """Run ``document`` as ``principal`` on the path of a request (``schema.scope``); the root
    object and the context (its guard knows what was released), or None when the root is
    null: not in the endpoint's scope."""
    context = scoped_context(
        connection,
        principal=principal,
        purpose=purpose,
        decision=decision,
        request_id=f"webhook-{claimed.id}-{claimed.attempts}",
        today=clock.today(),
        vault=runtime.vault,
        max_page_size=runtime.settings.max_page_size,
        feeds=runtime.feeds,
        engine=runtime.engine,
        rules=runtime.rules,
        audit_macs=runtime.audit.macs,
    )
    context.leaves_receipts = False  # rendering a push is not the department reading the task
    result = await runtime.schema.execute(
        document, variable_values=variables, context_value=context
    )
    for error in result.errors or []:
        if isinstance(error.original_error, DBAPIError | OSError):
            raise error.original_error  # an outage: retried
    rendered = (result.data or {}).get(root)
    if rendered is None or (root == "task" and rendered.get("person") is None):
        return None
    # Anything but a refused field is a fault of ours: retried, never a partial payload.
    unexpected = [
        e
        for e in result.errors or []
        if getattr(e.original_error, "code", None) != "FORBIDDEN" or len(e.path or ()) < 2
    ]
    if unexpected:
        raise RuntimeError(f"渲染推送内容失败: {unexpected[0].message}")
    return root, rendered, context


# ---------------------------------------------------------------------------- the worker
@dataclass
class WorkerCounts:
    claimed: int = 0
    requests: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0


class DeliveryWorker:
    """Delivers webhooks for one process. Several (processes, or workers in one) may run on
    PostgreSQL: claims never overlap and every result write is fenced."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.name = name or f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.concurrency = concurrency or settings.delivery_concurrency
        self.timeout = settings.delivery_timeout_seconds
        # Long enough for a render, an attempt at its time limit and the result's write.
        self.lease = timedelta(seconds=max(60.0, 3 * self.timeout))
        self.dead_after = timedelta(seconds=settings.delivery_dead_after_seconds)
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,  # a redirect is a failure: the address is what was registered
            headers={"User-Agent": USER_AGENT},
        )
        self.counts = WorkerCounts()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # ---------------------------------------------------------------- running
    def wake(self) -> None:
        """Look for work now (a NOTIFY arrived; on SQLite, the process itself wrote)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and deliver it; how many were claimed."""
        claimed = await self._claim(self.concurrency)
        if claimed:
            await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def drain(self) -> int:
        """Deliver until nothing is due now; how many attempts were made. Up to
        ``concurrency`` at once, claiming again as each one ends (a settled head lets its
        person's next event go at once; one slow receiver does not hold the others)."""
        total = 0
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self.concurrency - len(running)
                claimed = await self._claim(free) if free > 0 else []
                total += len(claimed)
                running.update(asyncio.create_task(self._deliver(item)) for item in claimed)
                if not running:
                    return total
                _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if running:  # cancelled (the process stops): let what was sent be recorded
                await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self, limit: int) -> list[queue.Claimed]:
        claimed = await queue.claim(
            self.runtime.engine, worker=self.name, limit=limit, lease=self.lease
        )
        self.counts.claimed += len(claimed)
        return claimed

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Until ``stop`` is set: deliver what is due, then sleep until the next retry is due,
        a notification arrives, or the poll interval ends."""
        stop = stop or self._stop
        dsn = listener_dsn(self.runtime.settings.resolved_database_url)
        listener = None
        if dsn is not None:  # every notification, and every reconnection, wakes the worker
            listener = ChannelListener(
                dsn,
                DELIVERY_CHANNEL,
                self._notified,
                name="delivery listener",
                application_name=APPLICATION_NAME,
                ping_seconds=LISTEN_FALLBACK_SECONDS,
            )
            await listener.start()
        poll = SQLITE_POLL_SECONDS if dsn is None else LISTEN_FALLBACK_SECONDS
        failures = 0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    if await self.drain():
                        failures = 0
                        continue
                    async with self.runtime.engine.connect() as connection:
                        due = await queue.next_due(connection)
                    failures = 0
                except (DBAPIError, OSError) as exc:
                    failures += 1
                    log.warning("delivery worker %s: database unavailable (%s)", self.name, exc)
                    due = None
                    poll_now = min(30.0, 0.5 * 2**failures)
                    await _wait(self._wake, stop, poll_now)
                    continue
                wait = poll
                if due is not None:
                    ahead = (due - clock.now_utc()).total_seconds()
                    # Due but not claimed: held by another worker or beyond its endpoint's
                    # in-flight limit; look again in a second rather than spin.
                    wait = min(wait, ahead if ahead > 0 else BUSY_RETRY_SECONDS)
                await _wait(self._wake, stop, wait)
        finally:
            if listener is not None:
                await listener.close()

    def start(self) -> None:
        """Run in the background of this process (``serve``)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(self._stop), name="delivery-worker")

    async def close(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_client:
            await self.client.aclose()

    # ---------------------------------------------------------------- one delivery
    async def _deliver(self, claimed: queue.Claimed) -> None:
        try:
            await self._attempt(claimed)
        except (DBAPIError, OSError):
            # The result could not be written: the lease runs out and a worker tries again.
            log.exception("delivery %s: database unavailable, left to its lease", claimed.id)
        except Exception:
            log.exception("delivery %s: unexpected failure", claimed.id)

    async def _attempt(self, claimed: queue.Claimed) -> None:
        runtime = self.runtime
        engine = runtime.engine
        dead_after = (
            timedelta(seconds=claimed.dead_after_seconds)
            if claimed.dead_after_seconds
            else self.dead_after
        )
        started = clock.now_utc()
        began = time.perf_counter()
        # The secrets first: an endpoint whose secret cannot be opened (a key missing from the
        # keyring) is not rendered, audited or sent to.
        try:
            keys, ids = self._secrets(claimed, started)
        except DecryptionError:
            log.error("endpoint %s: its signing secret cannot be opened", claimed.endpoint_id)
            attempt = queue.Attempt(
                started, _ms(began), error="签名密钥无法解开 (密钥环缺少其密钥)"
            )
            await self._failed(claimed, attempt, dead_after)
            return
        try:
            rendered = await render(runtime, claimed)
        except OutOfScope:
            await queue.cancelled(
                engine, claimed, None, worker=self.name, reason=queue.OUT_OF_SCOPE
            )
            self.counts.cancelled += 1
            return
        except (DBAPIError, OSError):
            raise
        except Exception as exc:
            log.exception("delivery %s: payload could not be rendered", claimed.id)
            attempt = queue.Attempt(started, _ms(began), error=_message(exc, "生成推送内容失败"))
            await self._failed(claimed, attempt, dead_after)
            return
        body = _body(claimed, rendered.data)
        if rendered.person_ids:
            # No person's data leaves without its audit entry (as for a request).
            entry = audit.read_entry(
                principal=endpoint_principal(claimed),
                purpose=rendered.purpose,
                request_id=f"webhook-{claimed.id}-{claimed.attempts}",
                operation=f"webhook:{claimed.kind}",
                policy_version=rendered.policy_version or 0,
                person_ids=rendered.person_ids,
                fields=rendered.fields,
            )
            try:
                await runtime.audit.append(entry)
            except Exception:
                log.exception("delivery %s: audit entry could not be written", claimed.id)
                attempt = queue.Attempt(started, _ms(began), error="审计日志暂时无法写入, 未发送")
                await self._failed(claimed, attempt, dead_after)
                return
        timestamp = int(clock.now_utc().timestamp())
        headers = webhook_headers(
            webhook_id(claimed.event_uuid), timestamp, body, keys, algorithm=claimed.algorithm
        )
        headers.update(
            {
                "Content-Type": "application/json; charset=utf-8",
                "webhook-event": claimed.kind,
                "x-relief-attempt": str(claimed.attempts),
            }
        )
        digest = hashlib.sha256(body).hexdigest()
        status: int | None = None
        error: str | None = None
        self.counts.requests += 1
        try:
            async with self.client.stream(
                "POST", claimed.url, content=body, headers=headers
            ) as response:
                status = response.status_code  # the body is never read: nothing of it is kept
        except httpx.TimeoutException:
            error = f"超时 ({self.timeout:g} 秒内未收到响应)"
        except httpx.HTTPError as exc:
            error = f"连接失败 ({type(exc).__name__})"
        attempt = queue.Attempt(
            started,
            _ms(began),
            status_code=status,
            error=error,
            body_sha256=digest,
            secret_ids=" ".join(ids)[:80],
        )
        if status is not None and 200 <= status < 300:
            if await queue.delivered(engine, claimed, attempt, worker=self.name):
                self.counts.delivered += 1
            return
        if status == 410:
            # The receiver says the address is gone for good: stop sending there.
            gone = replace(attempt, error="接收方答复 410 Gone, 端点已停用")
            await queue.cancelled(engine, claimed, gone, worker=self.name, reason=queue.GONE)
            self.counts.cancelled += 1
            return
        if status is not None:
            error = (
                f"接收方答复 {status} (不跟随重定向)"
                if 300 <= status < 400
                else f"接收方答复 {status}"
            )
            attempt = replace(attempt, error=error)
        await self._failed(claimed, attempt, dead_after)

    def _secrets(self, claimed: queue.Claimed, now: datetime) -> tuple[list[str], list[str]]:
        """The secrets that sign (the current one; the previous one until it expires) and
        their ids, for the attempt's record."""
        cipher = self.runtime.vault.cipher
        keys = [queue.open_secret(cipher, claimed.secret_ct, claimed.endpoint_id)]
        ids = [claimed.secret_id]
        expires = claimed.previous_secret_expires_at
        if claimed.previous_secret_ct is not None and expires is not None and expires > now:
            keys.append(queue.open_secret(cipher, claimed.previous_secret_ct, claimed.endpoint_id))
            ids.append(claimed.previous_secret_id or "")
        return keys, ids

    async def _failed(
        self, claimed: queue.Claimed, attempt: queue.Attempt, dead_after: timedelta
    ) -> None:
        outcome = await queue.failed(
            self.runtime.engine, claimed, attempt, worker=self.name, dead_after=dead_after
        )
        if outcome == queue.DEAD:
            self.counts.dead += 1
            log.warning("delivery %s to endpoint %s is dead", claimed.id, claimed.endpoint_id)
        elif outcome == queue.PENDING:
            self.counts.failed += 1

    async def _notified(self) -> None:
        self.wake()


async def _wait(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _ms(began: float) -> int:
    return int((time.perf_counter() - began) * 1000)


def _message(exc: Exception, fallback: str) -> str:
    text = str(exc)
    return text if text.startswith("渲染推送内容失败") else fallback


__all__ = [
    "DeliveryWorker",
    "OutOfScope",
    "Rendered",
    "purpose_of",
    "render",
    "webhook_id",
]
