#!/usr/bin/env python3
"""Upload throughput: one roster through ``POST /ingest/upload`` vs ``relief-gateway ingest``.

    .venv/bin/python bench/upload_bench.py                # 100,000 rows, SQLite
    .venv/bin/python bench/upload_bench.py --rows 20000

The question (issue 15): what does loading a department file through the HTTP endpoint cost
next to the command a county's operator runs? Same file (the GBK 民政 roster of
``bench/ingest_bench.py``, cached in ``bench/.cache/``), same pipeline, each into a freshly
migrated SQLite data directory of its own with the province's jurisdiction (``--region 37`` /
a province token), so every row is in scope:

* ``cli``: ``relief-gateway ingest --source civil_affairs --feed identities FILE --region 37
  --json``, wall time of the process (start-up included) and the pipeline's own ``seconds``;
* ``upload``: ``relief-gateway serve`` started and ready first (not timed), then the file
  streamed from disk in 1 MiB pieces to ``/ingest/upload`` with ``httpx``; wall time from the
  first byte sent to the NDJSON result line, and the time to the first progress line.

The machine's load (``/proc/loadavg``) is printed before and after: on a shared machine the
figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from ingest_bench import roster_files  # noqa: E402

SCRIPT = Path(sys.executable).with_name("relief-gateway")
TODAY = "2026-11-23"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(RELIEF_DATA_DIR=str(data_dir), RELIEF_TODAY=TODAY)
    return env


def prepared(data_dir: Path) -> dict[str, str]:
    """A migrated SQLite data directory with its keys (as ``demo`` would leave it)."""
    env = environment(data_dir)
    subprocess.run([str(SCRIPT), "migrate"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [
            str(SCRIPT),
            "token",
            "--dept",
            "civil_affairs",
            "--level",
            "province",
            "--region",
            "37",
            "--subject",
            "bench-upload",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from gateway.crypto import Keyring; from gateway.domain.settings "
            "import load_settings as s; x = s(); Keyring.load_or_create(x.keyring_path, "
            "x.cipher_suite.value)",
        ],
        env=env,
        check=True,
        cwd=REPO,
    )
    env["BENCH_TOKEN"] = token.stdout.strip()
    return env


def run_cli(path: Path, work: Path) -> dict[str, object]:
    env = prepared(work / "cli")
    started = time.perf_counter()
    ran = subprocess.run(
        [
            str(SCRIPT),
            "ingest",
            "--source",
            "civil_affairs",
            "--feed",
            "identities",
            str(path),
            "--region",
            "37",
            "--json",
            "--report-dir",
            str(work / "cli-reports"),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    [result] = json.loads(ran.stdout)
    return {"wall": wall, "pipeline": result["seconds"], "counts": result["counts"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            yield block


def run_upload(path: Path, work: Path) -> dict[str, object]:
    env = prepared(work / "upload")
    port = free_port()
    server = subprocess.Popen(
        [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            for _ in range(200):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit("the server did not become ready")
            headers = {
                "Authorization": f"Bearer {env['BENCH_TOKEN']}",
                "Content-Type": "application/octet-stream",
                "X-Relief-Filename": quote(path.name),
                "Content-Length": str(path.stat().st_size),
            }
            started = time.perf_counter()
            first_progress = None
            result: dict[str, object] = {}
            with client.stream(
                "POST",
                "/ingest/upload",
                params={"feed": "identities"},
                content=pieces(path),
                headers=headers,
            ) as response:
                if response.status_code != 200:
                    raise SystemExit(f"upload refused: {response.status_code} {response.read()!r}")
                for line in response.iter_lines():
                    event = json.loads(line)
                    if event["type"] == "progress" and first_progress is None:
                        first_progress = time.perf_counter() - started
                    if event["type"] != "progress":
                        result = event
            wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    if result.get("type") != "result":
        raise SystemExit(f"upload failed: {result}")
    return {"wall": wall, "first_progress": first_progress, "counts": result["counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--upload-first", action="store_true", help="measure the upload before the command"
    )
    args = parser.parse_args()
    gbk, _ = roster_files(args.rows)
    size = gbk.stat().st_size
    print(f"file: {gbk.name}, {size / 1e6:.1f} MB, {args.rows:,} rows (GBK CSV); SQLite")
    print(f"load before: {loadavg()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=BENCH / ".cache") as tmp:
        work = Path(tmp)
        if args.upload_first:
            up = run_upload(gbk, work)
            print(f"load between: {loadavg()}")
            cli = run_cli(gbk, work)
        else:
            cli = run_cli(gbk, work)
            print(f"load between: {loadavg()}")
            up = run_upload(gbk, work)
    print(f"load after: {loadavg()}")
    assert cli["counts"] == up["counts"], (cli["counts"], up["counts"])
    cli_wall, up_wall = float(cli["wall"]), float(up["wall"])  # type: ignore[arg-type]
    print()
    print("| path | wall s | rows/s | notes |")
    print("|---|---:|---:|---|")
    print(
        f"| `relief-gateway ingest` | {cli_wall:.1f} | {args.rows / cli_wall:,.0f} | "
        f"pipeline {cli['pipeline']:.1f} s (process start-up excluded) |"
    )
    print(
        f"| `POST /ingest/upload` | {up_wall:.1f} | {args.rows / up_wall:,.0f} | "
        f"first progress line after {up['first_progress']:.2f} s |"
    )
    print(f"\ncounts (both): {cli['counts']}")
    print("(the roster spans three provinces: rows outside 37 are rejected, by both, as outside")
    print(" the jurisdiction; rows/s are rows of the file)")


if __name__ == "__main__":
    main()
