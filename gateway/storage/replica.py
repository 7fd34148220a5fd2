"""Reads from a streaming replica (issue 17 item 4): which database one request reads from.

    ReplicaRouter.connect(lag_tolerant=…, writes=…, subject=…)
        lag-tolerant read, replica healthy, caller has no write the replica lacks → replica
        anything else (writes, audit, policy, LISTEN, administrators' reads)      → primary

The replica is a PostgreSQL hot standby fed by streaming replication
(``RELIEF_DATABASE_REPLICA_URL``). Which GraphQL documents count as lag-tolerant is decided by
``gateway.runtime.reads`` (this room knows no GraphQL); the rules here are about databases:

- **Health without a round trip per request.** A probe (the primary's WAL insert position, then
  the replica's ``pg_is_in_recovery()`` and ``pg_last_wal_replay_lsn()``) runs in the
  background at most every ``probe_seconds``, started by a request that finds the last one old.
  Requests read the cached result: no request ever waits on the replica's health.
- **Lag in seconds.** Each probe samples the primary's position; the replica has replayed
  everything the primary had written at the latest sample its replay position has passed, so
  ``now - that sample's time`` bounds how old its data may be. Beyond ``max_lag_seconds`` (a
  paused or stuck replay, a broken stream) reads go to the primary.
- **Read your writes.** After a caller's mutation the primary's insert position is remembered
  for that subject (one ``SELECT`` after the mutation, never on a read); the caller's reads stay
  on the primary until a probe has seen the replica replay past it. This holds within one
  gateway process (``serve --workers N``: another worker does not know the write; the replica
  is normally milliseconds behind, see docs/replica.md).
- **Failures fall back.** A replica that refuses connections, times out or drops a connection
  mid-request is marked down: reads go to the primary (``relief_replica_fallbacks_total``, a
  log line when it goes down and when it comes back), and the replica is probed again after a
  back-off (1 s doubling to 30 s), in the background; the first good probe brings it back.
- **Policy never from the replica.** A lagging replica could hold an older policy version;
  ``refresh_policy`` gives the authorizer a primary connection, checked out only when it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.domain import observers

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 3.0  # a replica that does not answer a connect in this is down
PROBE_TIMEOUT_SECONDS = 3.0
PROBE_SECONDS = 1.0  # how old the cached replay position may get while reads use it
BACKOFF_SECONDS = (1.0, 30.0)  # first retry after a failure, and the longest wait
MAX_REMEMBERED_WRITERS = 100_000

# Whether the current request's connection is the replica's (read by ``failed_on_replica``
# after the request's statements raised, to retry a query once on the primary).
_ON_REPLICA: ContextVar[bool] = ContextVar("relief_read_on_replica", default=False)

_PROBE_PRIMARY = text("SELECT pg_current_wal_insert_lsn()")
_PROBE_REPLICA = text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()")
_WRITE_POSITION = text("SELECT pg_current_wal_insert_lsn()")


def lsn_value(lsn: object) -> int | None:
    """A WAL position as an integer that orders like the WAL: asyncpg decodes ``pg_lsn`` to
    one already; psycopg gives the text form ``'16/B374D848'``."""
    if lsn is None:
        return None
    if isinstance(lsn, int):
        return lsn
    high, _, low = str(lsn).partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def make_replica_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """The replica's own pool. Like the primary's (``gateway.storage.engine``: no pre-ping,
    parameters hidden from exception texts), plus a connect timeout: a replica host that
    swallows packets must not hold a request for the driver's default minute."""
    driver_timeout = (
        {"connect_timeout": int(CONNECT_TIMEOUT_SECONDS)}
        if url.startswith("postgresql+psycopg")
        else {"timeout": CONNECT_TIMEOUT_SECONDS}
    )
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        hide_parameters=True,
        connect_args=driver_timeout,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,  # then the primary serves (``busy``)
    )


class _Refreshes(Protocol):
    async def refresh(self, db: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    """The last probe's finding (``/readyz`` shows it)."""

    state: str  # streaming | lagging | not_in_recovery | unreachable | unknown
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    probed_at: float = 0.0  # time.monotonic()

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"state": self.state}
        if self.lag_seconds is not None:
            body["lagSeconds"] = round(self.lag_seconds, 3)
        return body


class _PrimaryOnDemand:
    """Stands in for a connection in ``Authorizer.refresh``: it reads (every
    RELIEF_POLICY_REFRESH_SECONDS, or after a NOTIFY) on a primary connection checked out
    then; a refresh with nothing to check costs nothing."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            self._connection = await self._engine.connect()
        return await self._connection.execute(statement, *args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class ReplicaRouter:
    """Chooses the primary or the replica for each request; the primary alone without a
    replica URL (``replica=None``: every call is the plain ``primary.connect()``)."""

    def __init__(
        self,
        primary: AsyncEngine,
        replica: AsyncEngine | None = None,
        *,
        max_lag_seconds: float = 30.0,
        probe_seconds: float = PROBE_SECONDS,
        backoff_seconds: tuple[float, float] = BACKOFF_SECONDS,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_seconds = max_lag_seconds
        self.probe_seconds = probe_seconds
        self.backoff_seconds = backoff_seconds
        self.health = ReplicaHealth("unknown")
        self._down_until = 0.0
        self._backoff = 0.0
        self._samples: deque[tuple[float, int]] = deque(maxlen=512)
        self._writers: OrderedDict[str, int] = OrderedDict()  # subject → primary position
        self._probe: asyncio.Task[None] | None = None
        if replica is not None:
            # A connection that breaks under a statement (the replica stopped, a network cut)
            # marks the replica down at once, whichever code ran the statement.
            event.listen(replica.sync_engine, "handle_error", self._on_replica_error)

    @property
    def configured(self) -> bool:
        return self.replica is not None

    def current_health(self) -> ReplicaHealth:
        """The last probe's finding (``/readyz``); an old one starts a probe in the background,
        so the report follows the replica without traffic, and never waits on it."""
        if self.replica is not None and (
            time.monotonic() - self.health.probed_at >= self.probe_seconds
            and time.monotonic() >= self._down_until
        ):
            self._probe_in_background()
        return self.health

    # ----------------------------------------------------------------- connections

    @asynccontextmanager
    async def connect(
        self, *, lag_tolerant: bool, writes: bool, subject: str
    ) -> AsyncIterator[AsyncConnection]:
        """The request's connection. ``lag_tolerant``: a read that may see the replica's
        slightly older data; ``writes``: a mutation (its subject is remembered as a writer)."""
        _ON_REPLICA.set(False)
        if lag_tolerant and not writes and self._replica_serves(subject):
            assert self.replica is not None
            connection = self.replica.connect()
            try:
                await connection.start()
            except PoolTimeout:
                # Every replica connection busy for CONNECT_TIMEOUT_SECONDS: the primary's
                # pool answers this one; the replica itself is fine.
                observers.replica_fallback("busy")
            except (DBAPIError, OSError, TimeoutError) as exc:
                self._mark_down("unreachable", exc)
                observers.replica_fallback("unreachable")
            else:
                _ON_REPLICA.set(True)
                observers.replica_read("replica")
                try:
                    yield connection
                finally:
                    with contextlib.suppress(DBAPIError, OSError, TimeoutError):
                        await connection.close()
                return
        if self.replica is not None:
            observers.replica_read("primary")
        async with self.primary.connect() as connection:
            yield connection
            if writes and self.replica is not None:
                await self._remember_write(connection, subject)

    async def refresh_policy(self, authorizer: _Refreshes, connection: AsyncConnection) -> None:
        """``authorizer.refresh`` on the primary, whichever database serves the request: a
        lagging replica would hand an older policy version back (and it would be loaded)."""
        if not _ON_REPLICA.get():
            await authorizer.refresh(connection)
            return
        primary = _PrimaryOnDemand(self.primary)
        try:
            await authorizer.refresh(cast(AsyncConnection, primary))
        finally:
            await primary.close()

    def failed_on_replica(self, exc: BaseException) -> bool:
        """The request's statements failed on the replica (a connection dropped mid-request,
        a recovery conflict): mark it down and say the query may run again on the primary."""
        if not (_ON_REPLICA.get() and isinstance(exc, DBAPIError | OSError | TimeoutError)):
            return False
        _ON_REPLICA.set(False)
        self._mark_down("unreachable", exc)
        observers.replica_fallback("error")
        return True

    # ----------------------------------------------------------------- routing

    def _replica_serves(self, subject: str) -> bool:
        if self.replica is None:
            return False
        now = time.monotonic()
        if now < self._down_until:
            observers.replica_fallback("unreachable")
            return False
        if now - self.health.probed_at >= self.probe_seconds:
            self._probe_in_background()
        state = self.health.state
        if state != "streaming":
            observers.replica_fallback(state)
            return False
        written = self._writers.get(subject)
        if written is not None:
            replayed = self.health.replay_lsn
            if replayed is None or replayed < written:
                return False  # read your writes: not a fallback, the rule
            del self._writers[subject]
        return True

    async def _remember_write(self, connection: AsyncConnection, subject: str) -> None:
        """The primary's position after the caller's mutation committed: everything it wrote
        lies before it (its own sessions committed before the operation returned)."""
        with contextlib.suppress(DBAPIError, OSError):
            position = lsn_value(await connection.scalar(_WRITE_POSITION))
            if position is None:
                return
            self._writers[subject] = position
            self._writers.move_to_end(subject)
            while len(self._writers) > MAX_REMEMBERED_WRITERS:
                self._writers.popitem(last=False)

    # ----------------------------------------------------------------- health

    async def start(self) -> None:
        """First probe at start-up (never raises: an unreachable replica is only logged)."""
        if self.replica is not None:
            await self._probe_now()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self.replica is not None:
            await self.replica.dispose()

    def _probe_in_background(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_now())

    async def _probe_now(self) -> None:
        assert self.replica is not None
        sampled_at = time.monotonic()
        try:
            async with self.primary.connect() as primary:
                position = lsn_value(await primary.scalar(_PROBE_PRIMARY))
        except (DBAPIError, OSError, TimeoutError):
            position = None  # the primary's own trouble shows elsewhere; lag stays unknown
        if position is not None:
            self._samples.append((sampled_at, position))
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                async with self.replica.connect() as replica:
                    row = (await replica.execute(_PROBE_REPLICA)).one()
        except (DBAPIError, OSError, TimeoutError) as exc:
            self._mark_down("unreachable", exc)
            return
        in_recovery, replayed = bool(row[0]), lsn_value(row[1])
        now = time.monotonic()
        if not in_recovery:
            # Promoted, or the URL names a primary: its data may have left this primary's
            # history. Reads stay here until it is a standby again.
            self._set_health(ReplicaHealth("not_in_recovery", None, None, now))
            return
        lag = self._lag_seconds(replayed, now)
        state = "streaming" if lag is not None and lag <= self.max_lag_seconds else "lagging"
        self._set_health(ReplicaHealth(state, replayed, lag, now))
        self._backoff = 0.0
        self._down_until = 0.0
        if replayed is not None:
            for subject in [s for s, lsn in self._writers.items() if lsn <= replayed]:
                del self._writers[subject]

    def _lag_seconds(self, replayed: int | None, now: float) -> float | None:
        """How old the replica's data may be: ``now`` minus the time of the latest sample of
        the primary's position it has replayed; unknown before the first sample."""
        if replayed is None or not self._samples:
            return None
        passed = [at for at, position in self._samples if position <= replayed]
        if passed:
            return max(0.0, now - max(passed))
        return now - self._samples[0][0]  # behind every sample: at least this old

    def _set_health(self, health: ReplicaHealth) -> None:
        before = self.health.state
        self.health = health
        observers.replica_lag(health.lag_seconds)
        if health.state != before:
            if health.state == "streaming":
                log.info("replica: reads served by the replica again (%s before)", before)
            else:
                log.warning(
                    "replica: %s (lag %s s): reads go to the primary",
                    health.state,
                    "?" if health.lag_seconds is None else f"{health.lag_seconds:.1f}",
                )

    def _mark_down(self, reason: str, exc: BaseException) -> None:
        first, longest = self.backoff_seconds
        self._backoff = min(longest, self._backoff * 2) if self._backoff else first
        self._down_until = time.monotonic() + self._backoff
        if self.health.state != reason:
            # The type only: a driver's text may carry a host name and, on some paths, SQL.
            log.warning(
                "replica: %s (%s): reads go to the primary, next try in %.0f s",
                reason,
                type(exc).__name__,
                self._backoff,
            )
        self.health = ReplicaHealth(reason, None, None, time.monotonic())
        observers.replica_lag(None)

    def _on_replica_error(self, context: Any) -> None:
        if context.is_disconnect or isinstance(context.original_exception, OSError):
            self._down_until = max(self._down_until, time.monotonic() + self.backoff_seconds[0])
