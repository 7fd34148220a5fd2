"""Hot reload across processes: PostgreSQL ``LISTEN relief_policy``.

Every new ``policy_version`` row sends ``NOTIFY relief_policy, '<version>'`` in the inserting
transaction (a trigger, migration 0006; :func:`announce_policy_version` sends the same by hand);
PostgreSQL delivers it at commit, to every gateway process listening, and each one reloads its
enforcer at once instead of at its next poll. The listener holds one dedicated connection (not
from the pool: a pooled connection would be returned and reused mid-LISTEN).

Failure modes, and what covers them:

- the listening connection is lost (database restart, ``pg_terminate_backend``, network): the
  listener reconnects with back-off and forces a version check, because a notification sent
  while it was away is gone;
- a half-open TCP connection that never reports its loss: a ``SELECT 1`` every
  ``ping_seconds`` finds it;
- the listener is down for longer: ``Authorizer.refresh`` still polls the version every
  ``RELIEF_POLICY_REFRESH_SECONDS`` (2 s), so a change is never missed, only later.

SQLite has no notifications and one process (``serve --workers`` refuses SQLite): polling only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

log = logging.getLogger(__name__)

CHANNEL = "relief_policy"
# Shown in pg_stat_activity, so an operator can tell the listening connections apart.
APPLICATION_NAME = "relief-gateway policy listener"


async def announce_policy_version(db: AsyncSession | AsyncConnection, version: int) -> None:
    """Tell every gateway process that ``version`` is in force, when this transaction commits.

    Call it inside the transaction that writes the ``policy_version`` row; on SQLite it does
    nothing (one process, which polls)."""
    dialect = db.get_bind().dialect if isinstance(db, AsyncSession) else db.dialect
    if dialect.name == "postgresql":
        await db.execute(
            text("SELECT pg_notify(:channel, :version)"),
            {"channel": CHANNEL, "version": str(version)},
        )


def listener_dsn(database_url: str) -> str | None:
    """The libpq DSN for the listening connection; ``None`` when the database is not PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ChannelListener:
    """Keeps ``LISTEN <channel>`` open on a dedicated connection and calls ``on_change`` for
    every notification, and once after each (re)connection (a notification may have been missed
    in between). One mechanism for every channel: policy versions (``PolicyListener``), new
    webhook deliveries (``gateway.runtime.delivery``), new outbox events
    (``gateway.runtime.events``)."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_change: Callable[[], Awaitable[None]],
        *,
        name: str,
        application_name: str,
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 10.0,
        ping_seconds: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_change = on_change
        self._name = name
        self._application_name = application_name
        self._retry_seconds = retry_seconds
        self._max_retry_seconds = max_retry_seconds
        self._ping_seconds = ping_seconds
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0  # successful (re)connections, for tests and the log

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start listening in the background; wait briefly for the first connection so a
        change approved right after start-up is not left to polling. Never raises: without the
        listener the gateway still polls."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait_seconds)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = self._retry_seconds
        while True:
            try:
                await self._listen_until_lost()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is unreachable: back off
                log.warning("%s: %s; retrying in %.1f s", self._name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_seconds)
                continue
            log.warning("%s: connection lost; reconnecting", self._name)
            delay = self._retry_seconds
            await asyncio.sleep(delay)

    async def _listen_until_lost(self) -> None:
        # An empty payload is the listener's own wake-up call: the connection was lost.
        changes: asyncio.Queue[str] = asyncio.Queue()
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": self._application_name}
        )
        try:
            connection.add_termination_listener(lambda _connection: changes.put_nowait(""))
            await connection.add_listener(
                self._channel,
                # a NOTIFY without payload still means "look": never the lost-connection mark
                lambda _c, _pid, _channel, payload: changes.put_nowait(str(payload) or "-"),
            )
            self.connections += 1
            self._listening.set()
            log.info("%s: LISTEN %s (connection %s)", self._name, self._channel, self.connections)
            await self._changed()  # anything approved while nobody was listening
            while True:
                try:
                    version = await asyncio.wait_for(changes.get(), self._ping_seconds)
                except TimeoutError:
                    # A half-open connection reports nothing: a failing ping ends it.
                    try:
                        await asyncio.wait_for(connection.execute("SELECT 1"), self._ping_seconds)
                    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        return
                    continue
                if not version or connection.is_closed():
                    return
                log.debug("%s: %s announced %s", self._name, self._channel, version)
                await self._changed()
        finally:
            self._listening.clear()
            if not connection.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)

    async def _changed(self) -> None:
        try:
            await self._on_change()
        except Exception:  # the next notification or the owner's own poll tries again
            log.exception("%s: handling a notification failed", self._name)


class PolicyListener(ChannelListener):
    """``LISTEN relief_policy``: ``on_change`` reloads the enforcer (a failed reload is retried
    by the next request's version check)."""

    def __init__(self, dsn: str, on_change: Callable[[], Awaitable[None]], **timing: float) -> None:
        super().__init__(
            dsn,
            CHANNEL,
            on_change,
            name="policy listener",
            application_name=APPLICATION_NAME,
            **timing,
        )
