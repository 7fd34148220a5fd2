"""Webhook endpoints and their deliveries (issue 18 item 2): registration, secret rotation,
disabling, the console's lists, replay of dead letters, and the work queue the delivery
workers claim (``gateway.runtime.delivery``).

A delivery (``webhook_delivery``, fanned out by ``gateway.storage.outbox``) moves

    PENDING ──claim──▶ IN_FLIGHT ──2xx──▶ DELIVERED
       ▲                  │
       └──── failure ─────┤ (back-off with full jitter; the lease ends a crashed worker's claim)
                          ├── failing longer than dead_after ──▶ DEAD (死信) ──replay──▶ PENDING
                          └── 410 Gone / endpoint disabled / person out of scope ──▶ CANCELLED

Claims are ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes never hold one
delivery at once; every result write is fenced on (claimed_by, attempts), so a worker whose
lease ran out cannot overwrite the claim of the worker that took over. SQLite runs one
in-process worker (``serve --workers`` refuses SQLite), so the same statements without the
row locks are enough.

Every instant compared here is passed in from :func:`gateway.domain.clock.now_utc`, never the
database's ``now()``: tests move time with ``clock.travel`` and both databases compare the
same UTC values.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from sqlalchemy import Row, and_, case, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.crypto import FieldCipher
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.errors import BadUserInput
from gateway.domain.principal import check_claims
from gateway.storage.models import (
    OutboxEvent,
    Task,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from gateway.storage.outbox import EventKind

ALGORITHMS = ("HMAC-SHA256", "HMAC-SM3")
SECRET_PREFIX = "whsec_"  # noqa: S105 - the secrets' prefix, not a secret
SECRET_BYTES = 32
MAX_NAME = 128
MAX_URL = 2000
MAX_IN_FLIGHT = 64
# A dead-letter time shorter than a minute would bury every delivery at its first failure;
# longer than 90 days outlives the attempts' history.
DEAD_AFTER_RANGE = (60, 90 * 86400)
LOOPBACK_HOSTS = ("localhost",)
# A row of any width (an endpoint with its kinds; a delivery with its event).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# Statuses (webhook_delivery.status).
PENDING = "PENDING"
IN_FLIGHT = "IN_FLIGHT"
DELIVERED = "DELIVERED"
DEAD = "DEAD"
CANCELLED = "CANCELLED"
STATUSES = (PENDING, IN_FLIGHT, DELIVERED, DEAD, CANCELLED)
# cancel_reason values.
ENDPOINT_DISABLED = "endpoint_disabled"
OUT_OF_SCOPE = "out_of_scope"
GONE = "gone"  # the receiver answered 410 Gone: the endpoint was disabled


@dataclass(frozen=True)
class NewEndpoint:
    """An endpoint to register: a department system at ``level`` for ``region`` (its
    jurisdiction: events of counties inside it), receiving ``kinds``."""

    name: str
    department: str
    level: str
    region: str
    url: str
    algorithm: str  # "HMAC-SHA256" | "HMAC-SM3" (国密)
    kinds: tuple[EventKind, ...]
    dead_after_seconds: int | None = None  # None: RELIEF_DELIVERY_DEAD_AFTER_SECONDS
    max_in_flight: int = 8


# ---------------------------------------------------------------------------- validation
def check_url(url: str, *, production: bool) -> str:
    """The endpoint address, or BadUserInput. HTTPS only: a payload carries personal data and
    its signature does not hide it. Plain HTTP to this machine's loopback is allowed outside
    production (a department's integrator testing a receiver)."""
    cleaned = url.strip()
    if not cleaned or len(cleaned) > MAX_URL:
        raise BadUserInput(f"推送地址不能为空, 最多 {MAX_URL} 个字符")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in cleaned):
        raise BadUserInput("推送地址不得含空白或控制字符")
    try:
        parts = urlsplit(cleaned)
        port = parts.port
    except ValueError:
        raise BadUserInput("推送地址格式不正确 (应为 https://主机[:端口]/路径)") from None
    del port  # parsed only to refuse a malformed port
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # A secret in the address would be stored and shown in clear in the console.
        raise BadUserInput("推送地址不得包含用户名或密码; 接收方以签名验证推送来源")
    if parts.fragment or cleaned.endswith("#"):
        raise BadUserInput("推送地址不得包含片段 (#…)")
    host = parts.hostname or ""
    if not host:
        raise BadUserInput("推送地址缺少主机名")
    scheme = parts.scheme.lower()
    if scheme == "https":
        return cleaned
    if scheme == "http" and _is_loopback(host):
        if production:
            raise BadUserInput("生产环境的推送地址必须使用 https")
        return cleaned
    raise BadUserInput("推送地址必须使用 https (开发环境可用 http://127.0.0.1 或 localhost)")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def check_endpoint(new: NewEndpoint, *, production: bool) -> NewEndpoint:
    """``new`` cleaned (name trimmed, kinds unique and sorted, URL checked), or BadUserInput."""
    check_claims(new.department, new.level, new.region, [])
    name = new.name.strip()
    if not name or len(name) > MAX_NAME:
        raise BadUserInput(f"推送端点名称不能为空, 最多 {MAX_NAME} 个字符")
    if new.algorithm not in ALGORITHMS:
        raise BadUserInput(f"未知签名算法 {new.algorithm!r}, 可选: {'、'.join(ALGORITHMS)}")
    try:
        kinds = tuple(sorted({EventKind(kind) for kind in new.kinds}))
    except ValueError:
        choices = "、".join(kind.value for kind in EventKind)
        raise BadUserInput(f"未知事件类型, 可选: {choices}") from None
    if not kinds:
        raise BadUserInput("至少须订阅一种事件类型")
    if new.dead_after_seconds is not None:
        low, high = DEAD_AFTER_RANGE
        if not low <= new.dead_after_seconds <= high:
            raise BadUserInput(f"死信时限应在 {low} 秒到 {high // 86400} 天之间")
    if not 1 <= new.max_in_flight <= MAX_IN_FLIGHT:
        raise BadUserInput(f"同时在途的推送数应在 1 到 {MAX_IN_FLIGHT} 之间")
    return NewEndpoint(
        name=name,
        department=new.department,
        level=new.level,
        region=new.region,
        url=check_url(new.url, production=production),
        algorithm=new.algorithm,
        kinds=kinds,
        dead_after_seconds=new.dead_after_seconds,
        max_in_flight=new.max_in_flight,
    )


def new_secret() -> tuple[str, str]:
    """(secret id, secret): 32 random bytes as ``whsec_<base64>`` (Standard Webhooks' form)."""
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    return "whk_" + secrets.token_hex(8), secret


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def _seal(cipher: FieldCipher, secret: str, endpoint_id: uuid.UUID) -> bytes:
    return cipher.seal(secret, table="webhook_endpoint", column="secret", row_id=str(endpoint_id))


def open_secret(cipher: FieldCipher, sealed: bytes, endpoint_id: uuid.UUID) -> str:
    """A sealed secret of the endpoint (current or previous: the previous one is the current
    one's ciphertext moved, bound to the same row and column)."""
    return cipher.open(sealed, table="webhook_endpoint", column="secret", row_id=str(endpoint_id))


# ---------------------------------------------------------------------------- endpoints
_E = WebhookEndpoint.__table__.c
# Every column but the sealed secrets; ``kinds`` is the subscribed kinds, comma-separated.
_LISTED = [column for column in WebhookEndpoint.__table__.c if not column.name.endswith("_ct")]


def _with_kinds() -> Any:
    kinds = (
        select(func.aggregate_strings(WebhookSubscription.kind, ","))
        .where(WebhookSubscription.endpoint_id == _E.id)
        .scalar_subquery()
        .label("kinds")
    )
    return select(*_LISTED, kinds)


def kinds_of(row: AnyRow) -> tuple[EventKind, ...]:
    """The event kinds of an endpoint row from :func:`endpoints` (sorted)."""
    return tuple(sorted(EventKind(kind) for kind in (row.kinds or "").split(",") if kind))


async def _endpoint(connection: AsyncConnection, endpoint_id: uuid.UUID) -> AnyRow | None:
    return (await connection.execute(_with_kinds().where(_E.id == endpoint_id))).first()


async def create_endpoint(
    engine: AsyncEngine,
    cipher: FieldCipher,
    new: NewEndpoint,
    *,
    created_by: str,
    production: bool = True,
) -> tuple[AnyRow, str]:
    """Register an endpoint; returns its row and its secret, shown this once (stored sealed).
    ``production`` refuses plain-HTTP loopback addresses (pass ``settings.is_production``).
    Events already in the outbox are not delivered to it: it receives what happens next."""
    cleaned = check_endpoint(new, production=production)
    endpoint_id = uuid.uuid4()
    secret_id, secret = new_secret()
    async with engine.begin() as connection:
        await connection.execute(
            insert(WebhookEndpoint).values(
                id=endpoint_id,
                name=cleaned.name,
                department=cleaned.department,
                level=cleaned.level,
                region=cleaned.region,
                url=cleaned.url,
                algorithm=cleaned.algorithm,
                secret_id=secret_id,
                secret_ct=_seal(cipher, secret, endpoint_id),
                dead_after_seconds=cleaned.dead_after_seconds,
                max_in_flight=cleaned.max_in_flight,
                consecutive_failures=0,
                created_at=now_utc(),
                created_by=created_by,
            )
        )
        await connection.execute(
            insert(WebhookSubscription),
            [{"endpoint_id": endpoint_id, "kind": kind.value} for kind in cleaned.kinds],
        )
        row = await _endpoint(connection, endpoint_id)
    assert row is not None
    return row, secret


async def rotate_secret(
    engine: AsyncEngine,
    cipher: FieldCipher,
    endpoint_id: uuid.UUID,
    *,
    keep_previous_for: timedelta,
    by: str,
) -> tuple[AnyRow, str] | None:
    """A new secret for the endpoint (shown once); the current one keeps signing beside it for
    ``keep_previous_for`` (zero after a leak: the old secret stops at once). None when there is
    no such enabled endpoint. ``by`` is for the caller's admin trail."""
    del by
    if keep_previous_for < timedelta(0):
        raise BadUserInput("旧密钥保留时长不能为负")
    secret_id, secret = new_secret()
    now = now_utc()
    async with engine.begin() as connection:
        current = (
            await connection.execute(
                select(_E.secret_id, _E.secret_ct)
                .where(_E.id == endpoint_id, _E.disabled_at.is_(None))
                .with_for_update()
            )
        ).first()
        if current is None:
            return None
        keep = keep_previous_for > timedelta(0)
        await connection.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(
                secret_id=secret_id,
                secret_ct=_seal(cipher, secret, endpoint_id),
                previous_secret_id=current.secret_id if keep else None,
                previous_secret_ct=current.secret_ct if keep else None,
                previous_secret_expires_at=now + keep_previous_for if keep else None,
            )
        )
        row = await _endpoint(connection, endpoint_id)
    assert row is not None
    return row, secret


async def disable_endpoint(
    engine: AsyncEngine, endpoint_id: uuid.UUID, *, by: str, reason: str = ENDPOINT_DISABLED
) -> AnyRow | None:
    """Disable the endpoint (never deleted: its deliveries stay as evidence); its pending and
    in-flight deliveries are CANCELLED (``reason``), and an in-flight attempt's result is then
    not written (the fence fails). None when there is no such endpoint; an endpoint already
    disabled is returned as it is."""
    now = now_utc()
    async with engine.begin() as connection:
        changed = await connection.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.disabled_at.is_(None))
            .values(disabled_at=now, disabled_by=by)
        )
        if changed.rowcount:
            await connection.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.status.in_((PENDING, IN_FLIGHT)),
                )
                .values(status=CANCELLED, cancel_reason=reason, lease_until=None)
            )
        return await _endpoint(connection, endpoint_id)


def _scope(department: str | None, region_prefix: str) -> list[Any]:
    """Endpoints of ``department`` (None: every department) whose jurisdiction lies inside
    ``region_prefix`` (the caller's region; "" for the whole province)."""
    clauses: list[Any] = [_E.region.startswith(region_prefix, autoescape=True)]
    if department is not None:
        clauses.append(_E.department == department)
    return clauses


async def endpoints(
    connection: AsyncConnection, *, department: str | None, region_prefix: str
) -> list[AnyRow]:
    """The endpoints in scope, disabled ones included, newest first; each row has the
    endpoint's columns (never its secrets) and ``kinds`` (read with :func:`kinds_of`)."""
    rows = await connection.execute(
        _with_kinds()
        .where(*_scope(department, region_prefix))
        .order_by(_E.created_at.desc(), _E.id)
    )
    return list(rows)


async def deliveries(
    connection: AsyncConnection,
    *,
    department: str | None,
    region_prefix: str,
    status: str | None,
    endpoint_id: uuid.UUID | None = None,
    first: int,
    after: int | None,
) -> tuple[list[AnyRow], bool]:
    """A page of deliveries in scope, newest first (``after``: the last id of the previous
    page), and whether another page follows. Each row: the delivery's columns, ``endpoint_name``,
    and its event's ``event_uuid``, ``kind``, ``occurred_at``, ``subject_type``, ``subject_id``."""
    if status is not None and status not in STATUSES:
        raise BadUserInput(f"未知推送状态 {status!r}, 可选: {'、'.join(STATUSES)}")
    if first < 1:
        raise BadUserInput("每页条数应为正数")
    d = WebhookDelivery.__table__.c
    e = OutboxEvent.__table__.c
    statement = (
        select(
            *WebhookDelivery.__table__.c,
            _E.name.label("endpoint_name"),
            e.event_id.label("event_uuid"),
            e.kind,
            e.occurred_at,
            e.subject_type,
            e.subject_id,
        )
        .select_from(
            WebhookDelivery.__table__.join(WebhookEndpoint.__table__, _E.id == d.endpoint_id).join(
                OutboxEvent.__table__, e.id == d.event_id
            )
        )
        .where(*_scope(department, region_prefix))
        .order_by(d.id.desc())
        .limit(first + 1)
    )
    if status is not None:
        statement = statement.where(d.status == status)
    if endpoint_id is not None:
        statement = statement.where(d.endpoint_id == endpoint_id)
    if after is not None:
        statement = statement.where(d.id < after)
    rows = list(await connection.execute(statement))
    return rows[:first], len(rows) > first


async def replay(
    engine: AsyncEngine,
    *,
    delivery_ids: Sequence[int] = (),
    endpoint_id: uuid.UUID | None = None,
    since: datetime | None = None,
    department: str | None,
    region_prefix: str,
    by: str,
) -> int:
    """Dead letters back to PENDING, due now, as if new (attempts 0, no first attempt: the
    dead-letter time counts afresh): the ones named by ``delivery_ids``, or an endpoint's dead
    since ``since`` (its dead time). Only DEAD deliveries of enabled endpoints in scope; returns
    how many. ``by`` is for the caller's admin trail."""
    del by
    if not delivery_ids and endpoint_id is None:
        raise BadUserInput("请指定要重放的推送, 或一个推送端点")
    d = WebhookDelivery.__table__.c
    in_scope = (
        select(_E.id).where(*_scope(department, region_prefix), _E.disabled_at.is_(None))
    ).scalar_subquery()
    clauses: list[Any] = [d.status == DEAD, d.endpoint_id.in_(in_scope)]
    if delivery_ids:
        clauses.append(d.id.in_(list(delivery_ids)))
    if endpoint_id is not None:
        clauses.append(d.endpoint_id == endpoint_id)
    if since is not None:
        clauses.append(d.dead_at >= since)
    async with engine.begin() as connection:
        result = await connection.execute(
            update(WebhookDelivery)
            .where(*clauses)
            .values(
                status=PENDING,
                attempts=0,
                first_attempt_at=None,
                next_attempt_at=now_utc(),
                dead_at=None,
                claimed_by=None,
                lease_until=None,
            )
        )
    return int(result.rowcount or 0)


# ---------------------------------------------------------------------------- the work queue
# Circuit breaker: after this many failures in a row an endpoint is paused, then probed with one
# delivery at a time until one succeeds (10,000 deliveries waiting out an outage cost one request
# per pause, not 10,000).
BREAKER_THRESHOLD = 5
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 3600.0  # after an outage, every delivery is tried again within the hour
_jitter = random.Random()


def backoff(attempts: int) -> timedelta:
    """Full jitter (aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter): a delay
    drawn uniformly from [0, min(cap, base·2^attempts)], so receivers recovering from an outage
    are not hit by every sender's retries at the same instant."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts, 30))
    return timedelta(seconds=_jitter.uniform(0, ceiling))


def breaker_pause(failures: int) -> timedelta:
    """How long an endpoint rests after ``failures`` in a row (from BREAKER_THRESHOLD on):
    doubling from the base up to the cap, with "equal jitter" (never much shorter than half)."""
    ceiling = min(
        BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(failures - BREAKER_THRESHOLD, 30)
    )
    return timedelta(seconds=ceiling / 2 + _jitter.uniform(0, ceiling / 2))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds (IN_FLIGHT, leased), with its event and endpoint."""

    id: int
    attempts: int  # this attempt's number (the fence of every result write)
    first_attempt_at: datetime
    endpoint_id: uuid.UUID
    url: str
    algorithm: str
    department: str
    level: str
    region: str
    secret_id: str
    secret_ct: bytes
    previous_secret_id: str | None
    previous_secret_ct: bytes | None
    previous_secret_expires_at: datetime | None
    dead_after_seconds: int | None
    event_uuid: uuid.UUID
    kind: str
    occurred_at: datetime
    county_code: str
    person_id: uuid.UUID | None
    subject_type: str
    subject_id: str
    facts: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP attempt did (a ``webhook_attempt`` row)."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    body_sha256: str | None = None
    secret_ids: str | None = None


_D = WebhookDelivery.__table__.c
_V = OutboxEvent.__table__.c


def _due(now: datetime) -> Any:
    return or_(
        and_(_D.status == PENDING, _D.next_attempt_at <= now),
        and_(_D.status == IN_FLIGHT, _D.lease_until < now),  # a worker died holding it
    )


async def claim(engine: AsyncEngine, *, worker: str, limit: int, lease: timedelta) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for ``worker`` (IN_FLIGHT until ``now + lease``).

    What is due: PENDING at or after its time, or IN_FLIGHT with its lease run out. What waits:
    a delivery while an earlier one of the same person (``ordering_key``) to the same endpoint
    is PENDING or IN_FLIGHT (per-person order), deliveries of a paused or disabled endpoint, and
    beyond each endpoint's ``max_in_flight`` (one at a time while its breaker is open).
    PostgreSQL: candidates ``FOR UPDATE SKIP LOCKED`` and their endpoints locked for the claim,
    so concurrent workers take disjoint sets and never exceed an endpoint's limit together."""
    now = now_utc()
    earlier = WebhookDelivery.__table__.alias("earlier")
    open_endpoints = select(_E.id).where(
        _E.disabled_at.is_(None), or_(_E.paused_until.is_(None), _E.paused_until <= now)
    )
    async with engine.begin() as connection:
        postgresql = connection.dialect.name == "postgresql"
        candidates = (
            select(_D.id, _D.endpoint_id)
            .where(
                _due(now),
                _D.endpoint_id.in_(open_endpoints.scalar_subquery()),
                ~exists().where(
                    earlier.c.endpoint_id == _D.endpoint_id,
                    earlier.c.ordering_key == _D.ordering_key,
                    earlier.c.id < _D.id,
                    earlier.c.status.in_((PENDING, IN_FLIGHT)),
                ),
            )
            .order_by(_D.next_attempt_at, _D.id)
            .limit(limit * 4)
        )
        if postgresql:
            candidates = candidates.with_for_update(of=WebhookDelivery.__table__, skip_locked=True)
        found = list(await connection.execute(candidates))
        if not found:
            return []
        endpoint_ids = sorted({row.endpoint_id for row in found})
        limits = select(_E.id, _E.max_in_flight, _E.consecutive_failures).where(
            _E.id.in_(endpoint_ids)
        )
        if postgresql:
            # Another worker claiming for an endpoint holds it: skip it this round.
            limits = limits.order_by(_E.id).with_for_update(skip_locked=True)
        capacity = {
            row.id: (1 if row.consecutive_failures >= BREAKER_THRESHOLD else row.max_in_flight)
            for row in await connection.execute(limits)
        }
        held = await connection.execute(
            select(_D.endpoint_id, func.count())
            .where(
                _D.endpoint_id.in_(list(capacity)),
                _D.status == IN_FLIGHT,
                _D.lease_until >= now,
            )
            .group_by(_D.endpoint_id)
        )
        for endpoint_id, count in held:
            capacity[endpoint_id] -= count
        picked: list[int] = []
        for row in found:
            if capacity.get(row.endpoint_id, 0) > 0 and len(picked) < limit:
                capacity[row.endpoint_id] -= 1
                picked.append(row.id)
        if not picked:
            return []
        # Still due (SQLite: another process may have claimed between the read and this write,
        # which SQLite serialises; the condition is then false for it).
        await connection.execute(
            update(WebhookDelivery)
            .where(_D.id.in_(picked), _due(now))
            .values(
                status=IN_FLIGHT,
                attempts=_D.attempts + 1,
                claimed_by=worker,
                lease_until=now + lease,
                first_attempt_at=func.coalesce(_D.first_attempt_at, now),
                last_attempt_at=now,
            )
        )
        rows = await connection.execute(
            select(
                _D.id,
                _D.attempts,
                _D.first_attempt_at,
                _D.endpoint_id,
                _E.url,
                _E.algorithm,
                _E.department,
                _E.level,
                _E.region,
                _E.secret_id,
                WebhookEndpoint.__table__.c.secret_ct,
                _E.previous_secret_id,
                WebhookEndpoint.__table__.c.previous_secret_ct,
                _E.previous_secret_expires_at,
                _E.dead_after_seconds,
                _V.event_id.label("event_uuid"),
                _V.kind,
                _V.occurred_at,
                _V.county_code,
                _V.person_id,
                _V.subject_type,
                _V.subject_id,
                _V.facts,
            )
            .select_from(
                WebhookDelivery.__table__.join(
                    WebhookEndpoint.__table__, _E.id == _D.endpoint_id
                ).join(OutboxEvent.__table__, _V.id == _D.event_id)
            )
            .where(
                _D.id.in_(picked),
                _D.claimed_by == worker,
                _D.status == IN_FLIGHT,
                _D.last_attempt_at == now,
            )
            .order_by(_D.id)
        )
        claimed = [Claimed(**row._asdict()) for row in rows]
    return [
        replace(
            item,
            first_attempt_at=as_utc(item.first_attempt_at),
            occurred_at=as_utc(item.occurred_at),
            previous_secret_expires_at=(
                None
                if item.previous_secret_expires_at is None
                else as_utc(item.previous_secret_expires_at)
            ),
        )
        for item in claimed
    ]


def _fence(claimed: Claimed, worker: str) -> Any:
    """This worker still holds this attempt (not cancelled, not taken over after its lease)."""
    return and_(
        _D.id == claimed.id,
        _D.status == IN_FLIGHT,
        _D.claimed_by == worker,
        _D.attempts == claimed.attempts,
    )


async def _attempt_row(
    connection: AsyncConnection, claimed: Claimed, attempt: Attempt, worker: str
) -> None:
    await connection.execute(
        insert(WebhookAttempt).values(
            delivery_id=claimed.id,
            attempt=claimed.attempts,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=None if attempt.error is None else attempt.error[:500],
            body_sha256=attempt.body_sha256,
            secret_ids=attempt.secret_ids,
            worker=worker,
        )
    )


async def delivered(
    engine: AsyncEngine, claimed: Claimed, attempt: Attempt, *, worker: str
) -> bool:
    """Record a 2xx: DELIVERED, the attempt, the endpoint's breaker closed and, for the first
    delivery of a ``task.pushed`` to the task's own department, the task's delivery receipt,
    all in one transaction. False when the fence failed (the result is not this worker's to
    write: the delivery was cancelled or taken over)."""
    now = now_utc()
    async with engine.begin() as connection:
        changed = await connection.execute(
            update(WebhookDelivery)
            .where(_fence(claimed, worker))
            .values(
                status=DELIVERED,
                delivered_at=now,
                last_status=attempt.status_code,
                last_error=None,
                claimed_by=None,
                lease_until=None,
            )
        )
        if not changed.rowcount:
            return False
        await _attempt_row(connection, claimed, attempt, worker)
        await connection.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == claimed.endpoint_id,
                or_(
                    WebhookEndpoint.consecutive_failures > 0,
                    WebhookEndpoint.paused_until.is_not(None),
                ),
            )
            .values(consecutive_failures=0, paused_until=None)
        )
        if claimed.kind == EventKind.TASK_PUSHED.value and claimed.subject_type == "task":
            await connection.execute(
                update(Task)
                .where(
                    Task.id == uuid.UUID(claimed.subject_id),
                    Task.department == claimed.department,
                    Task.delivered_at.is_(None),
                )
                .values(delivered_at=now)
            )
    return True


async def failed(
    engine: AsyncEngine,
    claimed: Claimed,
    attempt: Attempt,
    *,
    worker: str,
    dead_after: timedelta,
) -> str | None:
    """Record a failed attempt: PENDING again after a back-off, or DEAD once the delivery has
    been failing for longer than ``dead_after`` (the endpoint's own, else the setting) since its
    first attempt. The endpoint's failures in a row count up; from BREAKER_THRESHOLD on it is
    paused, and deliveries that waited out ``dead_after`` without an attempt die with it.
    Returns the new status, None when the fence failed."""
    now = now_utc()
    dead = now - claimed.first_attempt_at >= dead_after
    async with engine.begin() as connection:
        changed = await connection.execute(
            update(WebhookDelivery)
            .where(_fence(claimed, worker))
            .values(
                status=DEAD if dead else PENDING,
                next_attempt_at=now if dead else now + backoff(claimed.attempts),
                dead_at=now if dead else None,
                last_status=attempt.status_code,
                last_error=None if attempt.error is None else attempt.error[:500],
                claimed_by=None,
                lease_until=None,
            )
        )
        if not changed.rowcount:
            return None
        await _attempt_row(connection, claimed, attempt, worker)
        failures = (
            await connection.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == claimed.endpoint_id)
                .values(consecutive_failures=WebhookEndpoint.consecutive_failures + 1)
                .returning(WebhookEndpoint.consecutive_failures)
            )
        ).scalar_one()
        if failures >= BREAKER_THRESHOLD:
            await connection.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == claimed.endpoint_id)
                .values(paused_until=now + breaker_pause(failures))
            )
            # Deliveries never attempted (the breaker held them back) die when they have
            # waited longer than the dead-letter time, rather than one by one behind the probe.
            await connection.execute(
                update(WebhookDelivery)
                .where(
                    _D.endpoint_id == claimed.endpoint_id,
                    _D.status == PENDING,
                    _D.attempts == 0,
                    _D.created_at <= now - dead_after,
                )
                .values(status=DEAD, dead_at=now, last_error="端点持续不可用, 超过死信时限")
            )
    return DEAD if dead else PENDING


async def cancelled(
    engine: AsyncEngine, claimed: Claimed, attempt: Attempt | None, *, worker: str, reason: str
) -> bool:
    """CANCELLED (``reason``): the person is outside the endpoint's scope (nothing sent), or
    the receiver answered 410 Gone (then the endpoint is disabled too, and its other pending
    deliveries cancelled)."""
    async with engine.begin() as connection:
        changed = await connection.execute(
            update(WebhookDelivery)
            .where(_fence(claimed, worker))
            .values(
                status=CANCELLED,
                cancel_reason=reason,
                last_status=None if attempt is None else attempt.status_code,
                claimed_by=None,
                lease_until=None,
            )
        )
        if not changed.rowcount:
            return False
        if attempt is not None:
            await _attempt_row(connection, claimed, attempt, worker)
    if reason == GONE:
        await disable_endpoint(engine, claimed.endpoint_id, by="receiver:410", reason=GONE)
    return True


async def next_due(connection: AsyncConnection) -> datetime | None:
    """The earliest instant something may become claimable, for a worker's timer: a head of
    its person's line at its retry time (or when its endpoint's pause ends), or a lease running
    out; None when nothing waits. Deliveries waiting behind their person's head are not
    counted: they become due when the head is settled, by the worker that settles it."""
    earlier = WebhookDelivery.__table__.alias("earlier")
    effective = case(
        (
            and_(_E.paused_until.is_not(None), _E.paused_until > _D.next_attempt_at),
            _E.paused_until,
        ),
        else_=_D.next_attempt_at,
    )
    heads = (
        select(func.min(effective))
        .select_from(
            WebhookDelivery.__table__.join(WebhookEndpoint.__table__, _E.id == _D.endpoint_id)
        )
        .where(
            _D.status == PENDING,
            _E.disabled_at.is_(None),
            ~exists().where(
                earlier.c.endpoint_id == _D.endpoint_id,
                earlier.c.ordering_key == _D.ordering_key,
                earlier.c.id < _D.id,
                earlier.c.status.in_((PENDING, IN_FLIGHT)),
            ),
        )
    )
    leased = select(func.min(_D.lease_until)).where(_D.status == IN_FLIGHT)
    moments = [(await connection.execute(statement)).scalar_one() for statement in (heads, leased)]
    known = [as_utc(moment) for moment in moments if moment is not None]
    return min(known) if known else None


__all__ = [
    "ALGORITHMS",
    "BREAKER_THRESHOLD",
    "CANCELLED",
    "DEAD",
    "DELIVERED",
    "ENDPOINT_DISABLED",
    "GONE",
    "IN_FLIGHT",
    "OUT_OF_SCOPE",
    "PENDING",
    "STATUSES",
    "Attempt",
    "Claimed",
    "NewEndpoint",
    "backoff",
    "breaker_pause",
    "cancelled",
    "check_endpoint",
    "check_url",
    "claim",
    "create_endpoint",
    "delivered",
    "deliveries",
    "disable_endpoint",
    "endpoints",
    "failed",
    "kinds_of",
    "new_secret",
    "next_due",
    "open_secret",
    "replay",
    "rotate_secret",
    "secret_bytes",
]
