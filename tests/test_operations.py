"""Operations (issue 6 §2): readiness, the request log, exceptions in the log, /metrics.

readiness   a real ``serve`` started while PostgreSQL is down answers /healthz, says 503 on
            /readyz, becomes ready by itself once the server is up AND migrated (policies
            loaded), without a restart
workers     ``serve --workers 2``: /metrics in any worker reports the requests of both
request log one line per GraphQL request: request id, subject, department, level,
            operation, outcome, status, duration, people touched; never the query text,
            variables or a returned value
exceptions  a database error in the log keeps type and location, not the SQL parameters
metrics     requests and latency by operation (bounded), denials by department, ingest
            rows by feed, warning runs, task backlog; loopback/allow-list only
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from gateway.crypto import Keyring
from gateway.http import metrics
from gateway.http.app import create_app
from gateway.http.logs import JsonFormatter
from gateway.loop.warnings import Month, run_warnings
from gateway.runtime.tokens import TokenService
from gateway.storage.engine import make_engine
from tests._pg_fixture import postgres_required
from tests.harness import Harness
from tests.pgcluster import ThrowawayCluster, find_postgres_bindir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ME = "query WhoAmI { me { department level } }"
LOOKUP = "query Lookup($id: String!) { person(idNumber: $id) { name phone address idNumber } }"


def _samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def _value(body: str, name: str, **labels: str) -> float:
    return _samples(body).get((name, frozenset(labels.items())), 0.0)


# --------------------------------------------------------------------------- subprocesses


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    if os.environ.get("RELIEF_TEST_POSTGRES_URL") or find_postgres_bindir() is None:
        if postgres_required():
            pytest.fail("this test needs local PostgreSQL server binaries", pytrace=False)
        pytest.skip("needs local PostgreSQL server binaries to stop and start a server")
    with ThrowawayCluster() as private:
        yield private


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_DATABASE_URL=url,
        RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
        RELIEF_LOG_FORMAT="json",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _wait(predicate: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _status(client: httpx.Client, path: str) -> int:
    try:
        return client.get(path).status_code
    except httpx.TransportError:
        return 0


@pytest.mark.slow
def test_ready_only_once_the_database_is_reachable_and_policies_loaded(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("readiness")
    cluster.stop()
    env = _env(tmp_path / "data", url)
    # Keys exist (serve never creates them); the database is what is missing.
    TokenService.from_file(tmp_path / "data" / "token.key", "relief-gateway", create=True)
    Keyring.load_or_create(tmp_path / "data" / "keyring.json", "aes-256-gcm+hmac-sha256")
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            # 1. Database down: alive, not ready, and it stays up.
            _wait(lambda: _status(client, "/healthz") == 200)
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["ready"] is False
            # 2. Database up but not migrated: reachable, yet no policies: still not ready.
            cluster.start()
            time.sleep(1.5)
            assert client.get("/readyz").status_code == 503
            assert process.poll() is None
            # 3. Migrated (default policies installed): ready, without a restart.
            migrated = _cli(env, "migrate")
            assert migrated.returncode == 0, migrated.stderr
            _wait(lambda: client.get("/readyz").status_code == 200, seconds=30)
            assert client.get("/readyz").json()["policyVersion"] >= 1
            assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
    lines = [
        json.loads(line)
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    assert any("not ready" in line["message"] for line in lines), lines[:5]
    assert any(line["message"].startswith("ready:") for line in lines)


@pytest.mark.slow
def test_workers_metrics_add_up_across_processes(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    if not cluster.running:
        cluster.start()
    url = cluster.create_database("workers")
    data_dir = tmp_path / "data"
    env = _env(data_dir, url)
    assert _cli(env, "migrate").returncode == 0
    Keyring.load_or_create(data_dir / "keyring.json", "aes-256-gcm+hmac-sha256")
    token = _cli(env, "token", "--dept", "health", "--level", "city", "--region", "3701")
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    port = _free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as probe:
            _wait(lambda: _status(probe, "/readyz") == 200)
        requests = 24

        def one(_: int) -> int:
            # A connection each: the kernel spreads them over both workers.
            with httpx.Client(base_url=base, timeout=10) as client:
                response = client.post("/graphql", json={"query": ME}, headers=headers)
                return response.status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(requests))) == [200] * requests
        for _ in range(4):  # whichever worker answers the scrape, the sum is the same
            with httpx.Client(base_url=base, timeout=10) as client:
                body = client.get("/metrics").text
            total = _value(body, "relief_graphql_requests_total", operation="WhoAmI", outcome="ok")
            assert total == requests, body[:2000]
    finally:
        process.terminate()
        process.wait(timeout=30)


# --------------------------------------------------------------------------- in process


async def test_request_log_line(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    person = harness.persons[0]
    token = harness.token("medical_insurance", "province", person.region_code[:2])
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        response = await harness.post(token, LOOKUP, {"id": person.id_number})
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "gateway.requests"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["subject"].startswith("test-medical_insurance")
    assert (line["department"], line["caller_level"]) == ("medical_insurance", "province")
    assert line["level"] == "INFO"
    assert (line["operation"], line["outcome"], line["status"]) == ("Lookup", "ok", 200)
    assert line["people"] == 1
    assert isinstance(line["duration_ms"], float)
    raw = json.dumps(line, ensure_ascii=False)
    for secret in (person.id_number, person.name, "idNumber", "$id"):
        assert secret not in raw


async def test_unexpected_database_error_is_logged_without_parameters(
    harness: Harness, tmp_path: Path
) -> None:
    """A statement that fails with a bound value: the log line keeps the exception type and
    where it happened, never the value (hide_parameters, and the formatter's cut)."""
    secret = harness.persons[0].id_number
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    record = None
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT :v FROM no_such_table"), {"v": secret})
    except Exception:
        record = logging.LogRecord(
            "gateway.http.graphql", logging.ERROR, __file__, 1, "unexpected", None, sys.exc_info()
        )
    finally:
        await engine.dispose()
    assert record is not None
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "sqlalchemy.exc.OperationalError"
    assert line["exc_message"] == "OperationalError"
    assert line["exc_where"].startswith("test_operations.py:")  # the last frame of ours
    assert line["exc_frames"][-1].startswith("aiosqlite/")  # and the frames below it
    assert secret not in json.dumps(line, ensure_ascii=False)


async def test_metrics_by_operation_department_feed_run_and_backlog(harness: Harness) -> None:
    person = harness.persons[0]
    province = person.region_code[:2]
    mib = harness.token("medical_insurance", "province", province)
    health = harness.token("health", "city", person.region_code[:4])
    before = (await harness.client.get("/metrics")).text
    await harness.post(mib, LOOKUP, {"id": person.id_number})
    await harness.post(mib, "query Q370102199001011234 { me { level } }")  # digits: bucketed
    await harness.post(health, "query Fields { persons(first: 1) { edges { node { phone } } } }")
    ran = await run_warnings(
        harness.runtime.engine,
        harness.runtime.rules,
        Month(2024, 12),  # the shipped rules carry the income figures up to 2023
        today=date(2026, 11, 23),
        triggered_by="test",
    )
    after = (await harness.client.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("relief_graphql_requests_total", operation="Lookup", outcome="ok") == 1
    assert grew("relief_graphql_request_seconds_count", operation="Lookup") == 1
    assert grew("relief_graphql_requests_total", operation="other", outcome="ok") == 1
    assert "Q370102199001011234" not in after
    assert grew("relief_authz_denials_total", department="health", kind="field") >= 1
    province_key = harness.runtime.rules.province.value
    assert grew("relief_warning_runs_total", province=province_key, outcome="completed") == 1
    assert grew("relief_warning_run_warnings_total", province=province_key) == (
        ran.warnings_created
    )
    assert "relief_task_backlog" in after
    for phrase in (person.id_number, person.name):
        assert phrase not in after


async def test_ingest_rows_are_counted_by_feed(harness: Harness) -> None:
    before = _value(
        metrics.exposition().decode(),
        "relief_ingest_rows_total",
        feed="civil_affairs/identities",
        outcome="rejected",
    )
    token = harness.token("civil_affairs", "county", harness.busiest_county())
    mutation = """
    mutation Push($records: [JSON!]!) {
      submitRecords(feed: "identities", records: $records) { counts { rowsRejected } }
    }"""
    pushed = await harness.query(
        token, mutation, {"records": [{"姓名": "测试", "身份证号码": "1"}]}
    )
    assert pushed["data"]["submitRecords"]["counts"]["rowsRejected"] == 1, pushed
    after = _value(
        metrics.exposition().decode(),
        "relief_ingest_rows_total",
        feed="civil_affairs/identities",
        outcome="rejected",
    )
    assert after - before == 1


def test_operation_labels_are_bounded() -> None:
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("Fine_Name") == "Fine_Name"
    assert metrics.operation_label("Name370102199001") == "other"
    assert metrics.operation_label("bad name") == "other"
    for n in range(metrics.MAX_OPERATIONS + 5):
        metrics.operation_label(f"Generated{n}")
    assert metrics.operation_label("OneMoreNewName") == "other"


async def test_metrics_served_to_loopback_and_allowed_networks_only(harness: Harness) -> None:
    app = create_app(harness.runtime)
    outside = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=outside, base_url="http://gateway.test") as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 403
        assert "RELIEF_METRICS_ALLOW" in refused.json()["error"]
        settings = harness.runtime.settings
        previous = settings.metrics_allow
        settings.metrics_allow = "203.0.113.0/24"
        try:
            assert (await client.get("/metrics")).status_code == 200
        finally:
            settings.metrics_allow = previous
    assert re.search(r"relief_graphql_requests", (await harness.client.get("/metrics")).text)
