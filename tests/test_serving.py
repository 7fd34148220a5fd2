"""Several workers on one port keep TCP_NODELAY (uvicorn's own --workers listener loses it,
adding ~40 ms to every keep-alive request on Linux: uvicorn issue #3149)."""

from __future__ import annotations

import asyncio
import socket

from gateway.http.serving import tcp_listener


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
