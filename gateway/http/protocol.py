"""The server's own HTTP/1.1 connection handling: uvicorn's httptools protocol with the limits it
lacks, and its refusals in the gateway's JSON error shape.

uvicorn (with httptools) holds a connection for as long as a client takes to send its headers:
it has a keep-alive timeout between requests, and nothing while a request is being received. A
client that opens connections and sends a few bytes of a request line now and then (slowloris)
holds them forever. It also reads header fields without a size limit, and answers what its
parser rejects (a request target over 65,535 bytes, a byte that is not HTTP) with its own
``400 text/plain``, before the application could say anything. Here, per connection:

    limit                                         refused with                     then
    headers complete within ``client_timeout``    408 REQUEST_TIMEOUT (silence if  connection closed
    of the connection opening, or of the first    no byte was sent)
    byte of the next request
    no more than ``client_timeout`` between two   connection closed (the application answers 408
    pieces of a body                              itself while it is reading: ``graphql``)
    request target up to SERVER_URL_LIMIT bytes   414 BAD_USER_INPUT               connection closed
    header fields up to MAX_HEADER_BYTES          431 BAD_USER_INPUT               connection closed
    anything else the parser rejects              400 BAD_USER_INPUT               connection closed

Every refusal carries a request id (``X-Request-Id`` and ``extensions.requestId``), logged with
the reason by ``gateway.http.protocol``. ``RELIEF_MAX_URL_BYTES`` is below SERVER_URL_LIMIT, so
the application refuses a long URL first (``gateway.http.url_limit``); these are the backstops.
The load balancer in front should enforce the same (docs/operations.md, 部署).

``serve`` and ``demo`` run every worker with ``edge_protocol(settings)``; plain uvicorn can too,
the limits then read from the ``RELIEF_*`` environment::

    uvicorn --http gateway.http.protocol:GatewayHttpProtocol gateway.http.asgi:app
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.domain.errors import (
    BadUserInput,
    GatewayError,
    HeadersTooLarge,
    RequestTimeout,
    UriTooLong,
)
from gateway.domain.settings import SERVER_URL_LIMIT, Settings, load_settings
from gateway.http.refusals import error_body, new_request_id

log = logging.getLogger(__name__)

# Header fields (names and values) of one request. Tokens are ~1 KB; a browser sends ~2 KB.
MAX_HEADER_BYTES = 65_536
# After a refusal, how long what the client still sends is read and dropped before the socket
# closes (nginx's lingering close): closing on unread bytes sends a reset, which can destroy
# the refusal before the client has read it.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class EdgeLimits:
    client_timeout: float = 10.0
    max_header_bytes: int = MAX_HEADER_BYTES
    max_url_bytes: int = SERVER_URL_LIMIT

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(client_timeout=settings.client_timeout_seconds)


@functools.cache
def _environment_limits() -> EdgeLimits:
    return EdgeLimits.from_settings(load_settings())


def edge_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """What to give uvicorn as ``http``: this protocol with the settings' limits. A partial,
    which uvicorn calls like a class, and which pickles into ``--workers`` processes."""
    protocol = functools.partial(GatewayHttpProtocol, limits=EdgeLimits.from_settings(settings))
    return cast("type[asyncio.Protocol]", protocol)


class _Refused(Exception):
    """Raised inside a parser callback: httptools turns it into a parser error, which
    ``data_received`` answers with ``send_400_response`` (here: this refusal)."""


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: EdgeLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or _environment_limits()
        self._refusal: tuple[int, GatewayError, str] | None = None  # from a parser callback
        self._reading_head = False  # the next request's headers are awaited
        self._message_began = False  # … and its first byte has come
        self._head_pieces = 0  # bytes of pieces that left the head incomplete
        self._head_fields = 0  # bytes of its header fields parsed so far
        self._heads_done = 0
        self._reading_body = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    @property
    def _max_head_bytes(self) -> int:
        return self.limits.max_url_bytes + self.limits.max_header_bytes

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # refused and closing: dropped
        if not self._reading_head and not self._reading_body:
            self._await_head()  # bytes between requests: the next request has begun
        heads_before = self._heads_done
        super().data_received(data)
        if self._reading_head and self._heads_done == heads_before:
            # All of ``data`` went into a head still incomplete, which httptools keeps in
            # memory (a header value is handed over only once complete).
            self._head_pieces += len(data)
            if self._head_pieces > self._max_head_bytes:
                self._refuse(431, HeadersTooLarge("请求头过大"), "header fields too large")

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_head:
            self._await_head()
        self._message_began = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            limit = self.limits.max_url_bytes
            self._refusal = (414, UriTooLong(f"请求地址过长: 上限 {limit} 字节"), "URL too long")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_fields += len(name) + len(value) + 4
        if self._head_fields > self.limits.max_header_bytes:
            self._refusal = (431, HeadersTooLarge("请求头过大"), "header fields too large")
            raise _Refused

    def on_headers_complete(self) -> None:
        self._reading_head = self._message_began = False
        self._heads_done += 1
        self._cancel(self._head_timer)
        self._head_timer = None
        self._reading_body = True
        self._arm_body_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.cycle is None or not self.cycle.response_complete:
            # Once answered, the rest of a body gets no more time however it trickles.
            self._arm_body_timer()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to whatever its parser rejects, in the error shape."""
        refused = self._refusal or (400, BadUserInput("无法解析的 HTTP 请求"), "not HTTP")
        self._refusal = None
        self._refuse(*refused)

    # ------------------------------------------------------------------ slow clients

    def _await_head(self) -> None:
        self._reading_head = True
        self._message_began = False
        self._head_pieces = self._head_fields = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.client_timeout, self._head_timed_out
            )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self.flow.read_paused or (self.cycle is not None and not self.cycle.response_complete):
            # Waiting for the application (a pipelined request queued behind one still being
            # answered), not for the client.
            self._head_timer = self.loop.call_later(
                self.limits.client_timeout, self._head_timed_out
            )
            return
        if not self._message_began:
            self.transport.close()  # not one byte of a request: nothing to answer
            return
        timeout = self.limits.client_timeout
        self._refuse(
            408,
            RequestTimeout(f"请求头未在 {timeout:g} 秒内发送完整, 连接已关闭"),
            "request headers not complete in time",
        )

    def _arm_body_timer(self) -> None:
        self._cancel(self._body_timer)
        self._body_timer = self.loop.call_later(self.limits.client_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._body_timer = None
        if not self._reading_body or self.transport.is_closing():
            return
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and not cycle.response_complete):
            # Not the client's turn (the application has not read what came), or the
            # application is reading the body and answers a stall itself (408): once it has
            # answered, a body that stalls is cut here.
            self._arm_body_timer()
            return
        log.info("closed a connection: its request body stalled after the response")
        self.transport.close()

    # ------------------------------------------------------------------ refusals

    def _refuse(self, status: int, error: GatewayError, reason: str) -> None:
        """Answer ``status`` in the error shape and close the connection."""
        transport = self.transport
        if transport.is_closing() or self._linger_timer is not None:
            return
        self._cancel_timers()
        request_id = new_request_id()
        # Timeouts are what slow and idle clients cause every day; the rest is worth a look.
        log.log(
            logging.INFO if status == 408 else logging.WARNING,
            "refused a request before the application: %d %s",
            status,
            reason,
            extra={"request_id": request_id, "status": status},
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                transport.close()  # half a response is out: nothing valid can follow it
                return
            cycle.disconnected = True  # the application's answer, if any, is dropped
            cycle.message_event.set()
        body = json.dumps(
            error_body(error, request_id), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: %s\r\n" % request_id.encode("ascii"),
            b"connection: close\r\n\r\n",
        ]
        transport.write(b"".join(head) + body)
        if transport.can_write_eof():
            transport.write_eof()  # the refusal, then FIN; the client's last bytes are dropped
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            self._cancel(timer)
        self._head_timer = self._body_timer = self._linger_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
