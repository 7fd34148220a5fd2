"""Scale-out (issue 6 item 5): ``serve --workers 2`` on one PostgreSQL is one gateway.

Both worker processes answer (the kernel spreads connections over them; each writes its own
metrics file, named by its pid, in ``PROMETHEUS_MULTIPROC_DIR``), both hear a policy change
approved through either of them (each keeps its own LISTEN connection), and both append to one
audit chain that ``relief-gateway audit verify`` accepts. Two separate ``serve`` processes (what
separate hosts are) are covered by ``test_policy_reload``; this reuses its helpers.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService
from gateway.storage.engine import make_engine
from gateway.storage.models import AuditEntry
from tests.pgcluster import ThrowawayCluster
from tests.test_policy_reload import (
    PHONES,
    REGIONS,
    SCRIPT,
    Gateway,
    _approve,
    _cli,
    _env,
    _free_port,
    _listener_pids,
    _masked,
    _phones,
    _query,
    _ready,
    _stop,
)

REQUESTS = 40


@pytest.fixture(scope="module")
def scale_database(postgres_cluster: ThrowawayCluster) -> Iterator[str]:
    name = f"relief_scale_{uuid.uuid4().hex[:10]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture
async def two_workers(
    scale_database: str, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, Path, Path]]:
    data_dir = tmp_path / "data"
    url = scale_database
    _cli(data_dir, url, "migrate")
    _cli(data_dir, url, "seed", "--persons", "30")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    gateway = _serve_workers(data_dir, url, metrics_dir)
    try:
        async with httpx.AsyncClient() as client:
            await _ready(gateway, client)
        yield gateway, data_dir, metrics_dir
    finally:
        _stop(gateway)


def _serve_workers(data_dir: Path, url: str, metrics_dir: Path) -> Gateway:
    env = _env(data_dir, url) | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    port = _free_port()
    log = data_dir.parent / "serve-workers.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Gateway("workers", proc, f"http://127.0.0.1:{port}", log)


def _audit_verify(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "audit", "verify"],
        env=_env(data_dir, url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_two_workers_answer_share_policies_and_one_audit_chain(
    two_workers: tuple[Gateway, Path, Path], scale_database: str
) -> None:
    gateway, data_dir, metrics_dir = two_workers
    settings = load_settings(data_dir=data_dir, database_url=scale_database)
    tokens = TokenService.from_file(settings.token_key_path, settings.token_issuer, create=False)
    hub = tokens.mint(subject="scale-hub", dept="medical_insurance", level="province", region="37")
    county = (await _query(gateway, hub, REGIONS))["data"]["persons"]["edges"][0]["node"][
        "regionCode"
    ][:6]
    clerk = tokens.mint(subject="scale-clerk", dept="civil_affairs", level="county", region=county)

    # Each query on a new connection: the two workers accept from one socket.
    bodies = await asyncio.gather(*(_query(gateway, clerk, PHONES) for _ in range(REQUESTS)))
    assert all(_masked(_phones(body)) for body in bodies)
    # Each worker process writes its counters to a file named by its pid (the supervisor
    # serves nothing), so two pids there are two workers that answered.
    answered = {
        int(m.group(1))
        for path in metrics_dir.iterdir()
        if (m := re.fullmatch(r"counter_(\d+)\.db", path.name))
    }
    assert len(answered) == 2, (answered, gateway.output()[-3000:])

    engine = make_engine(scale_database)
    try:
        assert len(await _listener_pids(engine)) == 2  # one LISTEN connection per worker

        def officer(level: str, region: str) -> str:
            return tokens.mint(
                subject=f"officer-{region}",
                dept="big_data",
                level=level,
                region=region,
                roles=["security_officer"],
            )

        grant = {
            "subject": f"civil_affairs@{county}:county",
            "object": "Person.phone",
            "action": "READ",
            "purpose": "*",
        }
        await _approve(
            gateway,
            officer("county", county),
            officer("city", county[:4]),
            title="县民政读取电话",
            add=[grant],
        )
        await asyncio.sleep(1.5)  # NOTIFY reaches both workers well within this
        bodies = await asyncio.gather(*(_query(gateway, clerk, PHONES) for _ in range(REQUESTS)))
        assert not any(_masked(_phones(body)) for body in bodies)  # whichever worker answered

        async with engine.connect() as connection:
            entries = (
                await connection.execute(select(func.count()).select_from(AuditEntry))
            ).scalar_one()
        assert entries >= 2 * REQUESTS
    finally:
        await engine.dispose()
    verified = _audit_verify(data_dir, scale_database)
    assert verified.returncode == 0, verified.stderr
    assert f"{entries} 条记录" in verified.stdout
