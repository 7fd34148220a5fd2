"""How uvicorn serves the gateway: one process or several worker processes on one port.

``server_options``: what every ``serve`` (and ``demo``) process runs with: the gateway's HTTP
protocol (``gateway.http.protocol``: slow clients cut, header limits, the server's own refusals
in the JSON error shape), uvicorn's access log off (it prints query strings).

uvicorn's own ``--workers`` path binds the listening socket with ``proto=0``; asyncio enables
``TCP_NODELAY`` on accepted connections only when the socket says ``IPPROTO_TCP``, so every
keep-alive request after the first waited ~40 ms for the client's delayed ACK (uvicorn issue
#3149; measured here: 160 instead of 790 requests/s with two workers). This binds the socket
with the protocol set and hands it to uvicorn's supervisor unchanged otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from gateway.domain.settings import Settings
from gateway.http.logs import uvicorn_log_config
from gateway.http.protocol import edge_protocol

# Between two requests on one connection (uvicorn's own timer); load balancers keep their
# upstream connections open for longer than their clients' (nginx: keepalive_timeout 60 s),
# so this is the gateway's: it only costs a reconnect.
KEEP_ALIVE_SECONDS = 5


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options for a gateway process (``uvicorn.run`` or ``uvicorn.Config``)."""
    return {
        "http": edge_protocol(settings),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "log_config": uvicorn_log_config(),
        "access_log": False,  # the gateway's request log instead (no query strings in it)
    }


def tcp_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_workers(app: str, settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes of ``app``; each builds its runtime from the environment, so
    the options given to ``serve`` (data dir, database) are handed over through it.

    Metrics: each worker counts on its own; PROMETHEUS_MULTIPROC_DIR (a fresh directory
    unless the operator set one) lets ``/metrics`` in any worker report the sum.
    """
    os.environ["RELIEF_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["RELIEF_DATABASE_URL"] = settings.resolved_database_url
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="relief-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    config = uvicorn.Config(app, host=host, port=port, workers=workers, **server_options(settings))
    try:
        Multiprocess(config, sockets=[tcp_listener(host, port)]).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
