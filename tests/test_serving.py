"""How ``serve`` runs uvicorn: several workers on one port keep TCP_NODELAY (uvicorn's own
--workers listener loses it, adding ~40 ms to every keep-alive request on Linux: uvicorn issue
#3149), and every process runs the gateway's HTTP protocol (gateway.http.protocol; its
behaviour against real servers is in tests/test_http_edge.py)."""

from __future__ import annotations

import asyncio
import pickle
import socket

import pytest
from pydantic import ValidationError

from gateway.domain.settings import SERVER_URL_LIMIT, load_settings
from gateway.http.protocol import EdgeLimits, GatewayHttpProtocol
from gateway.http.serving import server_options, tcp_listener


async def _accepted_nodelay(listener: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listener.listen()
    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    port = listener.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(accepted, 5)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_worker_listener_gives_accepted_connections_tcp_nodelay() -> None:
    assert await _accepted_nodelay(tcp_listener("127.0.0.1", 0)) != 0


async def test_a_protocol_less_listener_would_not() -> None:
    """The difference the listener exists for, pinned: without IPPROTO_TCP, no TCP_NODELAY."""
    bare = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bare.bind(("127.0.0.1", 0))
    assert await _accepted_nodelay(bare) == 0


# ------------------------------------------------------------------ the gateway's protocol


def test_every_serve_process_runs_the_gateways_protocol() -> None:
    """``serve`` (one process or ``--workers``) and ``demo`` hand uvicorn the protocol with the
    settings' timeout; the workers receive it pickled (spawned processes)."""
    settings = load_settings(client_timeout_seconds=2.5)
    options = server_options(settings)
    assert options["access_log"] is False  # uvicorn's access log prints query strings
    protocol = pickle.loads(pickle.dumps(options["http"]))  # noqa: S301 - our own bytes
    assert protocol.func is GatewayHttpProtocol
    assert protocol.keywords["limits"] == EdgeLimits(client_timeout=2.5)


def test_the_applications_url_limit_is_below_the_servers() -> None:
    """A long URL meets the application's limit first (414, counted and logged), never the
    parser's own refusal; a setting that would reverse that does not start."""
    assert load_settings().max_url_bytes < SERVER_URL_LIMIT == EdgeLimits().max_url_bytes
    with pytest.raises(ValidationError, match="RELIEF_MAX_URL_BYTES"):
        load_settings(max_url_bytes=SERVER_URL_LIMIT)
    with pytest.raises(ValidationError, match="RELIEF_CLIENT_TIMEOUT_SECONDS"):
        load_settings(client_timeout_seconds=0)
