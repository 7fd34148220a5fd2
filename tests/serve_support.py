"""`relief-gateway serve` as a real process for the tests that need one (browser tests, SSE
through a server): on a free loopback port, its output in a log beside the data dir, waited for
until ``/readyz`` says ready, terminated (then killed) at the end.

    with serve_process(env, data_dir) as base:  # env: the RELIEF_* the process runs with
        httpx.get(f"{base}/healthz")
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(env: Mapping[str, str], data_dir: Path, *, within: float = 60.0) -> Iterator[str]:
    """The base URL of a ready ``serve`` process; its log (``serve.log`` beside ``data_dir``)
    is the assertion message when it dies or never becomes ready."""
    port = free_port()
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port)],
            env=dict(env),
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + within
        ready = False
        while time.monotonic() < deadline and not ready:
            assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).json().get("ready") is True
            except (httpx.TransportError, ValueError):
                time.sleep(0.3)
        assert ready, log.read_text(encoding="utf-8", errors="replace")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
