"""Helpers for the webhook delivery tests (``tests/test_delivery.py``) and the bench.

``Receiver`` is a department system's webhook receiver on loopback: a real HTTP server
(``http.server`` in a thread of its own), which verifies every request with
:func:`gateway.crypto.verify_webhook` as an integrator would, processes each ``webhook-id``
once (exactly one effective delivery), and can be scripted request by request::

    receiver = Receiver(secret)          # started; receiver.url is http://127.0.0.1:<port>/hook
    receiver.script("close", "timeout", 500)   # the next three requests; then 200s
    receiver.down()                      # connections refused until receiver.up()

Steps: an int is the status answered (after processing, when 2xx); ``"close"`` closes the
connection without an answer; ``"timeout"`` holds the request beyond the sender's time limit
without processing it; ``"late"`` processes it and then answers too late (the sender retries a
delivery that did arrive: the receiver must dedup).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import InvalidWebhook, verify_webhook
from gateway.domain import clock
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

BACKENDS = ("sqlite", "postgres")
SEND_TIMEOUT = 1.0  # RELIEF_DELIVERY_TIMEOUT_SECONDS of the tests' gateways
HOLD_SECONDS = 2.5  # "timeout" and "late" hold a request this long: beyond SEND_TIMEOUT


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 (see the module docstring)."""

    secret: str = ""
    algorithm: str = "HMAC-SHA256"
    port: int = 0
    requests: list[Received] = field(default_factory=list)  # every request that arrived
    processed: dict[str, Received] = field(default_factory=dict)  # by webhook-id, first one
    refused: list[str] = field(default_factory=list)  # verification failures
    duplicates: int = 0
    _steps: list[int | str] = field(default_factory=list)
    _by_id: dict[str, list[int | str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *steps: int | str) -> None:
        with self._lock:
            self._steps.extend(steps)

    def fail(self, webhook_id: str, *steps: int | str) -> None:
        """Answer the next requests of ``webhook_id`` with ``steps`` (others: the script)."""
        with self._lock:
            self._by_id.setdefault(webhook_id, []).extend(steps)

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._handle(self, body)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()

    def _next_step(self, webhook_id: str) -> int | str:
        with self._lock:
            own = self._by_id.get(webhook_id)
            if own:
                return own.pop(0)
            return self._steps.pop(0) if self._steps else 200

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        step = self._next_step(headers.get("webhook-id", ""))
        received = Received(
            headers.get("webhook-id", ""), int(headers.get("webhook-timestamp") or 0), headers, body
        )
        with self._lock:
            self.requests.append(received)
        if step == "close":
            handler.close_connection = True
            with_socket(handler, lambda s: s.shutdown(socket.SHUT_RDWR))
            return
        if step == "timeout":
            time.sleep(HOLD_SECONDS)
            handler.close_connection = True
            return
        status = 200 if step == "late" else int(step)
        if 200 <= status < 300:
            try:
                webhook_id = verify_webhook(
                    body,
                    headers,
                    self.secret,
                    algorithm=self.algorithm,
                    now=clock.now_utc().timestamp(),  # the tests' clock travels
                )
            except InvalidWebhook as refused:
                with self._lock:
                    self.refused.append(str(refused))
                self._answer(handler, 401)
                return
            with self._lock:
                if webhook_id in self.processed:
                    self.duplicates += 1  # a retry of what was processed: acknowledged again
                else:
                    self.processed[webhook_id] = received
        if step == "late":
            time.sleep(HOLD_SECONDS)
            handler.close_connection = True
            return
        self._answer(handler, status)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int) -> None:
        # One write (http.server's header-by-header writes meet delayed ACKs on loopback).
        reason = handler.responses.get(status, ("",))[0]
        handler.wfile.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())

    async def processed_count(self, count: int, *, within: float = 10.0) -> int:
        """Wait (up to ``within`` seconds) until ``count`` webhook-ids were processed; how many
        were (the caller asserts)."""
        for _ in range(int(within / 0.1)):
            if len(self.processed) >= count:
                break
            await asyncio.sleep(0.1)
        return len(self.processed)

    def ids_in_order(self) -> list[str]:
        """Processed webhook-ids in the order they were first processed."""
        with self._lock:
            return list(self.processed)


def with_socket(handler: BaseHTTPRequestHandler, action: Any) -> None:
    with suppress(OSError):
        action(handler.connection)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def delivery_gateway_for(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
    *,
    label: str = "delivery",
) -> AsyncIterator[Harness]:
    """A gateway of one test module alone, on a new database, with no worker of its own
    (tests drive workers themselves) and a short send timeout."""
    data_dir: Path = tmp_path_factory.mktemp(f"{label}-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_{label}_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    with environment(
        RELIEF_DELIVERY_WORKER="false", RELIEF_DELIVERY_TIMEOUT_SECONDS=str(SEND_TIMEOUT)
    ):
        gateway = await build_harness(data_dir, url, backend=backend, persons=30)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)
