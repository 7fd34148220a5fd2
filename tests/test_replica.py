"""Reads from a streaming replica (issue 17 item 4), on a real primary and a real hot standby.

One primary and one standby per module (``tests.pgcluster.StreamingReplica``: ``pg_basebackup
-R``, streaming on its own port). Which server ran a request's statements is asked of the
server: a spy around ``GraphQLReads.connect`` runs ``SELECT pg_is_in_recovery()`` on the very
connection the request gets (``t`` only on the standby), and statement recorders on both engines
show what each executed (never a write, a policy read or the audit on the standby).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain import clock
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal
from gateway.domain.settings import load_settings
from gateway.domain.synthetic import generate_population
from gateway.http import metrics
from gateway.http.app import create_app
from gateway.runtime.parts import Runtime
from gateway.runtime.reads import classify
from gateway.storage.migrate import upgrade_to_head
from gateway.storage.writer import write_bundles
from tests._pg_fixture import postgres_required
from tests.pgcluster import (
    EXTERNAL_URL_ENV,
    StreamingReplica,
    ThrowawayCluster,
    find_postgres_bindir,
)

PERSONS = 60
PAGE = "{ persons(first: 5) { totalCount edges { node { regionCode phone } } } }"
ME = "{ me { subject } }"
PROPOSE = """
mutation Propose($title: String!, $add: [PolicyLineInput!]!) {
  proposePolicyChange(title: $title, add: $add, remove: []) { id status }
}
"""
APPROVE = """
mutation Approve($id: ID!) {
  approvePolicyChange(id: $id, note: "同意") { status resultingVersion }
}
"""


# ------------------------------------------------------------------ which documents may go


@pytest.mark.parametrize(
    ("document", "lag_tolerant", "writes"),
    [
        ("{ persons(first: 1) { totalCount } }", True, False),
        ('{ person(idNumber: "x") { name } me { subject } }', True, False),
        ("query A { statistics { __typename } } query B { policies { version } }", True, False),
        ('{ ...F } fragment F on Query { reliefChain(idNumber: "x") { __typename } }', True, False),
        (
            '{ ... on Query { coverage(regionPrefix: "37", year: 2026) { __typename } } }',
            True,
            False,
        ),
        # one primary-only root field pins the whole request to the primary
        ("{ persons { totalCount } policies { version } }", False, False),
        ("{ auditLog { __typename } }", False, False),
        ("{ auditChain { __typename } }", False, False),
        ("{ policyProposals { __typename } }", False, False),
        ("{ tasks { __typename } }", False, False),
        ("{ batches { __typename } }", False, False),
        ("{ ...Missing }", False, False),
        ('mutation { answerTask(id: "1") { __typename } }', False, True),
        ("{ persons(", False, False),
    ],
)
def test_which_documents_read_from_the_replica(
    document: str, lag_tolerant: bool, writes: bool
) -> None:
    # The first document has two operations: the one named "A" is asked for below.
    operation = "A" if "query A" in document else None
    assert classify(document, operation) == (lag_tolerant, writes)


def test_an_oversized_document_is_not_parsed_whole_to_route_it() -> None:
    """Routing reads the document before the schema's limits do: with the token limit it
    stops where they would refuse it (RELIEF_MAX_QUERY_TOKENS) and sends it to the primary,
    which refuses it; a self-spreading fragment names no lag-tolerant field either."""
    oversized = "{ persons { totalCount } " + "me { subject } " * 2_000 + "}"
    assert classify(oversized, None) == (True, False)  # no limit: parsed whole
    assert classify(oversized, None, 50) == (False, False)
    looping = "{ ...F } fragment F on Query { ...F persons { totalCount } }"
    assert classify(looping, None) == (False, False)


def test_a_replica_is_postgresql_beside_a_postgresql_primary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RELIEF_DATABASE_REPLICA_URL"):
        load_settings(data_dir=tmp_path, database_replica_url="sqlite+aiosqlite:///x.db")
    settings = load_settings(
        data_dir=tmp_path, database_replica_url="postgresql+asyncpg://u:secret@h/db"
    )
    with pytest.raises(ConfigurationError, match="PostgreSQL 主库"):
        Runtime.create(settings, create_keys=True)


def test_the_refusal_never_shows_a_password(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="RELIEF_DATABASE_REPLICA_URL") as refused:
        load_settings(data_dir=tmp_path, database_replica_url="mysql://u:hunter2@h/db")
    # What the CLI prints (gateway.cli.app: each error's message, never the input)
    messages = [error["msg"] for error in refused.value.errors()]
    assert any("mysql://" in message for message in messages)
    assert not any("hunter2" in message for message in messages)


# ------------------------------------------------------------------ a primary and its standby


@dataclass
class Pair:
    primary: ThrowawayCluster
    replica: StreamingReplica
    runtime: Runtime
    client: httpx.AsyncClient
    id_number: str
    # (server said it is in recovery, subject) for every request's connection, in order
    connections: list[tuple[bool, str]] = field(default_factory=list)
    statements: dict[str, list[str]] = field(default_factory=lambda: {"primary": [], "replica": []})

    def token(
        self,
        subject: str,
        *,
        dept: str = "medical_insurance",
        roles: list[str] | None = None,
        level: str = "province",
        region: str = "37",
    ) -> str:
        return self.runtime.tokens.mint(
            subject=subject, dept=dept, level=level, region=region, roles=roles, ttl_seconds=600
        )

    async def post(
        self, token: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body

    async def on_replica(self, token: str, query: str = PAGE) -> bool:
        """Run ``query``; whether the server that answered it is the standby."""
        before = len(self.connections)
        await self.post(token, query)
        assert len(self.connections) > before
        return self.connections[-1][0]

    async def until(self, token: str, on_replica: bool, *, within: float = 15.0) -> float:
        started = time.monotonic()
        while await self.on_replica(token) != on_replica:
            assert time.monotonic() - started < within, self.runtime.reads.router.health
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    def fallbacks(self, reason: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "relief_replica_fallbacks_total", {"reason": reason}
        )
        return value or 0.0


def _skip_without_postgres() -> None:
    if os.environ.get(EXTERNAL_URL_ENV) or find_postgres_bindir() is None:
        message = "a streaming replica needs local PostgreSQL server binaries (pg_basebackup)"
        if postgres_required() and not os.environ.get(EXTERNAL_URL_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[ThrowawayCluster, StreamingReplica]]:
    _skip_without_postgres()
    with ThrowawayCluster(dbname="relief_replica") as primary:
        replica = StreamingReplica(primary)
        with replica:
            replica.wait_streaming()
            yield primary, replica


@pytest.fixture(scope="module")
async def pair(
    clusters: tuple[ThrowawayCluster, StreamingReplica],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    primary, replica = clusters
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("replica-data"),
        database_url=primary.dsn_asyncpg,
        database_replica_url=replica.dsn_asyncpg,
    )
    runtime = Runtime.create(settings, create_keys=True)
    router = runtime.reads.router
    # Fast for a test: probe every 0.1 s, retry a failed replica after 0.2 s (at most 1 s).
    router.probe_seconds = 0.1
    router.backoff_seconds = (0.2, 1.0)
    await upgrade_to_head(runtime.engine)
    today = clock.today()
    bundles = list(generate_population(PERSONS, seed=17, today=today, provinces=["shandong"]))
    async with runtime.sessions() as session:
        await write_bundles(session, runtime.vault, bundles)
    await runtime.start()
    app = create_app(runtime)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")
    built = Pair(primary, replica, runtime, client, bundles[0].members[0].id_number)
    assert router.replica is not None
    for name, engine in (("primary", runtime.engine), ("replica", router.replica)):
        event.listen(engine.sync_engine, "before_cursor_execute", _recorder(built, name))
    original = runtime.reads.connect

    def spying(
        principal: Principal, query: str | None, operation_name: str | None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        @asynccontextmanager
        async def spy() -> AsyncIterator[AsyncConnection]:
            async with original(principal, query, operation_name) as connection:
                in_recovery = await connection.scalar(text("SELECT pg_is_in_recovery()"))
                await connection.rollback()  # as fresh as the gateway got it (no transaction)
                built.connections.append((bool(in_recovery), principal.subject))
                yield connection

        return spy()

    runtime.reads.connect = spying  # type: ignore[method-assign]
    replica.wait_replayed()
    yield built
    await client.aclose()
    await runtime.close()


def _recorder(pair: Pair, name: str) -> Callable[..., None]:
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        pair.statements[name].append(statement)

    return record


def _writes(statements: list[str]) -> list[str]:
    verbs = ("INSERT INTO", "UPDATE ", "DELETE FROM", "pg_notify", "LISTEN")
    return [s for s in statements if any(verb in s for verb in verbs)]


# ------------------------------------------------------------- the routing, proved by the server


@pytest.mark.postgres
async def test_a_page_of_people_reads_on_the_replica_and_its_audit_goes_to_the_primary(
    pair: Pair,
) -> None:
    token = pair.token("replica-reader")
    primary_before = len(pair.statements["primary"])
    replica_before = len(pair.statements["replica"])
    assert await pair.until(token, on_replica=True) < 5
    body = await pair.post(token, PAGE)
    assert body["data"]["persons"]["totalCount"] > 0
    assert pair.connections[-1] == (True, "replica-reader")
    on_replica = pair.statements["replica"][replica_before:]
    on_primary = pair.statements["primary"][primary_before:]
    assert any("FROM person" in s for s in on_replica)
    assert not any("FROM person " in s or "FROM person\n" in s for s in on_primary)
    assert any("audit_log" in s for s in on_primary)  # the audit append: on the primary
    assert not _writes(pair.statements["replica"])
    assert not any("audit_log" in s or "casbin_rule" in s for s in pair.statements["replica"])
    ready = (await pair.client.get("/readyz")).json()
    assert ready["ready"] is True
    assert ready["replica"]["state"] == "streaming"


# Every lag-tolerant root field, as a department reads it: the standby answers all of them
# (a statement that wrote would fail there: "cannot execute … in a read-only transaction").
LAG_TOLERANT_DOCUMENTS = {
    "me": "{ me { subject policyVersion } }",
    "person": "query($id: String!) { person(idNumber: $id) { regionCode gender } }",
    "persons": PAGE,
    "reliefChain": "query($id: String!) { reliefChain(idNumber: $id) { events { kind } } }",
    "coverage": '{ coverage(regionPrefix: "37", year: 2026) { population enrolled } }',
    "statistics": "{ statistics { reliefPeople { regionCode count suppressed } } }",
    "warnings": "{ warnings { totalCount } }",
}


@pytest.mark.postgres
@pytest.mark.parametrize("field", sorted(LAG_TOLERANT_DOCUMENTS))
async def test_every_lag_tolerant_field_is_answered_by_the_standby(pair: Pair, field: str) -> None:
    token = pair.token("replica-fields")
    await pair.until(token, on_replica=True)
    response = await pair.client.post(
        "/graphql",
        json={"query": LAG_TOLERANT_DOCUMENTS[field], "variables": {"id": pair.id_number}},
        headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    codes = {error["extensions"]["code"] for error in body.get("errors", [])}
    assert codes <= {"FORBIDDEN"}, body  # a policy's answer, never a failure
    assert body["data"] is not None
    assert pair.connections[-1] == (True, "replica-fields")


@pytest.mark.postgres
async def test_administrators_and_mutations_read_the_primary(pair: Pair) -> None:
    officer = pair.token("replica-officer", dept="big_data", roles=["security_admin"])
    assert await pair.on_replica(officer, "{ policies { version } }") is False
    auditor = pair.token("replica-auditor", dept="big_data", roles=["audit_admin"])
    assert await pair.on_replica(auditor, "{ auditChain { __typename } }") is False


@pytest.mark.postgres
async def test_an_approved_policy_applies_at_once_while_the_replica_is_paused(pair: Pair) -> None:
    county = (await pair.post(pair.token("replica-hub"), PAGE))["data"]["persons"]["edges"][0][
        "node"
    ]["regionCode"][:6]
    clerk = pair.token("replica-clerk", dept="civil_affairs", level="county", region=county)
    await pair.until(clerk, on_replica=True)
    phones = [
        e["node"]["phone"] for e in (await pair.post(clerk, PAGE))["data"]["persons"]["edges"]
    ]
    assert phones
    assert all(p is None or "*" in p for p in phones)  # masked by default

    pair.replica.pause_replay()
    try:
        proposer = pair.token(
            f"officer-{county}", dept="big_data", level="county", region=county,
            roles=["security_admin"],
        )  # fmt: skip
        approver = pair.token(
            f"officer-{county[:4]}", dept="big_data", level="city", region=county[:4],
            roles=["security_admin"],
        )  # fmt: skip
        grant = {
            "subject": f"civil_affairs@{county}:county",
            "object": "Person.phone",
            "action": "READ",
            "purpose": "*",
        }
        proposed = await pair.post(proposer, PROPOSE, {"title": "县民政读取电话", "add": [grant]})
        proposal = proposed["data"]["proposePolicyChange"]["id"]
        approved = await pair.post(approver, APPROVE, {"id": proposal})
        version = int(approved["data"]["approvePolicyChange"]["resultingVersion"])
        # The standby has not replayed the approval: it still holds the older version.
        on_standby = pair.replica.query("SELECT max(id) FROM policy_version")
        assert int(on_standby) < version
        pair.runtime.authorizer.invalidate()  # as a NOTIFY would: the next request re-checks
        body = await pair.post(clerk, PAGE)
        assert pair.connections[-1] == (True, "replica-clerk")  # the data came from the standby
        phones = [e["node"]["phone"] for e in body["data"]["persons"]["edges"]]
        assert any(p and "*" not in p for p in phones), phones  # the new policy, at once
        assert pair.runtime.authorizer.version == version
        assert not any("policy_version" in s for s in pair.statements["replica"])
    finally:
        pair.replica.resume_replay()


@pytest.mark.postgres
async def test_a_caller_reads_its_own_writes_then_returns_to_the_replica(pair: Pair) -> None:
    writer = pair.token("replica-writer", dept="big_data", roles=["security_admin"])
    bystander = pair.token("replica-bystander")
    await pair.until(writer, on_replica=True)
    pair.replica.pause_replay()
    try:
        await pair.post(
            writer,
            PROPOSE,
            {"title": "读自己的写", "add": [{"subject": "health:province", "object": "Person.name",
                                          "action": "MASK", "purpose": "*"}]},
        )  # fmt: skip
        assert pair.connections[-1] == (False, "replica-writer")  # a mutation: the primary
        for _ in range(3):
            assert await pair.on_replica(writer, ME) is False  # its own write is not replayed
            await asyncio.sleep(0.15)  # probes run meanwhile: the replica is still behind
        assert await pair.on_replica(bystander, ME) is True  # everyone else: the replica
    finally:
        pair.replica.resume_replay()
    assert await pair.until(writer, on_replica=True) < 5  # replayed past it: back


@pytest.mark.postgres
async def test_a_lagging_replica_is_left_until_it_catches_up(pair: Pair) -> None:
    router = pair.runtime.reads.router
    token = pair.token("replica-lag")
    await pair.until(token, on_replica=True)
    before = pair.fallbacks("lagging")
    router.max_lag_seconds = 0.5
    pair.replica.pause_replay()
    try:
        # Every audited read writes WAL on the primary: the paused standby falls behind.
        await pair.until(token, on_replica=False, within=10)
        assert router.health.state == "lagging"
        assert pair.fallbacks("lagging") > before
        assert (await pair.client.get("/readyz")).status_code == 200
    finally:
        pair.replica.resume_replay()
        router.max_lag_seconds = 30.0
    await pair.until(token, on_replica=True)


@pytest.mark.postgres
async def test_a_connection_dropped_mid_request_is_retried_on_the_primary(pair: Pair) -> None:
    token = pair.token("replica-dropped")
    await pair.until(token, on_replica=True)
    before = pair.fallbacks("error")
    # Kill the standby's side of every pooled connection: the next request's first statement
    # on its (pooled, dead) replica connection fails.
    pair.replica.query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    body = await pair.post(token, PAGE)
    assert body["data"]["persons"]["totalCount"] > 0
    assert pair.connections[-1] == (False, "replica-dropped")
    assert pair.fallbacks("error") == before + 1
    assert await pair.until(token, on_replica=True) < 5  # the standby itself is fine: back


@pytest.mark.postgres
async def test_the_replica_stopped_mid_run_then_back(pair: Pair) -> None:
    token = pair.token("replica-outage")
    await pair.until(token, on_replica=True)
    before = pair.fallbacks("unreachable") + pair.fallbacks("error")
    pair.replica.stop("fast")
    try:
        for _ in range(5):
            body = await pair.post(token, PAGE)  # every request succeeds, on the primary
            assert body["data"]["persons"]["totalCount"] > 0
            assert pair.connections[-1][0] is False
        assert pair.fallbacks("unreachable") + pair.fallbacks("error") >= before + 5
        assert pair.runtime.reads.router.health.state == "unreachable"
        ready = await pair.client.get("/readyz")
        assert ready.status_code == 200  # the replica is reported, never a reason for 503
        assert ready.json()["replica"]["state"] == "unreachable"
        lag = metrics.REGISTRY.get_sample_value("relief_replica_lag_seconds")
        assert lag == -1.0
    finally:
        pair.replica.start()
    pair.replica.wait_streaming()
    # Back within the back-off (at most 1 s here) and one probe.
    assert await pair.until(token, on_replica=True, within=10) < 5
