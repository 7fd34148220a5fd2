"""The HTTP edge (issue 13 items 2 and 5): every refusal a client can provoke, in one shape, and
slow clients cut by the server.

The shape (``gateway.http.refusals``): the status the case calls for, a JSON media type
(``application/graphql-response+json`` when the client prefers it), ``errors[0].extensions
.code``, a ``requestId`` equal to ``X-Request-Id``, a message in Chinese, no data and no trace.
One table of malformed requests (nesting, sizes, encodings, numbers, keys, content types,
methods, addresses, CORS) is sent through the in-process ASGI app and, as raw bytes, through a
real ``relief-gateway serve`` and a real ``serve --workers 2``; the servers get a few more that
only a socket can send (what the HTTP parser itself refuses). Before: a body nested 1,000 deep
was ``500 text/plain`` (a RecursionError), a 70 KB URL ``400 text/plain`` from the parser, 404
and 405 ``text/plain``, a preflight 405 or 400 in plain text.

Slow clients: with ``RELIEF_CLIENT_TIMEOUT_SECONDS=1`` a connection that sends part of a request
line or of its headers (or nothing, or a byte now and then) is cut within about a second, a
stalled body is answered 408, and ordinary requests, keep-alive included, are served.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.graphql_over_http import GRAPHQL_RESPONSE_JSON, JSON
from gateway.runtime.tokens import TokenService
from tests.hardening_support import CHINESE, ME
from tests.harness import Harness
from tests.pgcluster import ThrowawayCluster
from tests.test_policy_reload import SCRIPT, Gateway, _cli, _env, _free_port, _ready, _stop

TIMEOUT = 1.0  # RELIEF_CLIENT_TIMEOUT_SECONDS of the servers started here
SLACK = 3.0  # a loaded test machine: the cut comes within TIMEOUT + SLACK

DEEP = "[" * 1000 + "]" * 1000
NEW = GRAPHQL_RESPONSE_JSON


@dataclass(frozen=True)
class Case:
    """A request and the refusal it must get. ``headers`` override the defaults (a token, a
    purpose, ``Content-Type: application/json``); None removes one."""

    method: str
    target: str
    body: bytes = b""
    status: int = 400
    code: str = "BAD_USER_INPUT"
    headers: Mapping[str, str | None] = field(default_factory=dict)
    allow: str | None = None  # the Allow header a 405 must carry (None: any)

    def request_headers(self, token: str) -> dict[str, str]:
        sent: dict[str, str | None] = {
            "Authorization": f"Bearer {token}",
            "X-Purpose": "supervision",
            "Content-Type": "application/json",
            **self.headers,
        }
        return {name: value for name, value in sent.items() if value is not None}

    @property
    def media_type(self) -> str:
        return NEW if self.headers.get("Accept") == NEW else JSON


def _post(body: object, **kwargs: Any) -> Case:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Case("POST", "/graphql", raw, **kwargs)


def _get(**params: str) -> str:
    return "/graphql?" + "&".join(
        f"{name}={quote(value, safe='')}" for name, value in params.items()
    )


def _text(body: str) -> bytes:
    return body.encode()


def _variables(raw: str) -> Case:
    """A POST whose ``variables.v`` is ``raw``, exactly as written (not through json.dumps)."""
    return _post(_text('{"query": "{ me { region } }", "variables": {"v": ' + raw + "}}"))


NO_JSON = {"Content-Type": None}

CASES: dict[str, Case] = {
    # nesting: refused before parsing (was a RecursionError escaping as 500 text/plain)
    "body-nested-1000": _post(_text(DEEP)),
    "variables-nested-1000": _variables(DEEP),
    "get-variables-nested-1000": Case("GET", _get(query=ME, variables=DEEP)),
    "get-extensions-nested-1000": Case("GET", _get(query=ME, extensions=DEEP)),
    # encodings
    "body-not-utf8": _post(b'{"query": "{ me { region } }", "operationName": "\xff\xfe"}'),
    "body-utf16": _post(json.dumps({"query": ME}).encode("utf-16")),
    "get-not-utf8": Case("GET", "/graphql?query=%FF%FE"),
    "body-lone-surrogate": _post(
        _text('{"query": "{ me { region } }", "operationName": "\\ud800"}')
    ),
    "variables-lone-surrogate": _variables('"\\udc00"'),
    # numbers and keys
    "huge-integer": _variables("9" * 5000),
    "long-integer": _variables("9" * 100),
    "nan": _variables("NaN"),
    "infinity": _variables("-Infinity"),
    "float-overflow": _variables("1e999"),
    "duplicate-keys": _post(_text('{"query": "{ me { region } }", "query": "{ me { level } }"}')),
    "duplicate-get-parameter": Case("GET", _get(query=ME) + "&query=" + quote("{ me { level } }")),
    # the body's shape
    "empty-body": _post(b""),
    "body-array": _post([{"query": ME}]),
    "body-string": _post("query"),
    "body-number": _post(1),
    "body-null": _post(None),
    "body-true": _post(True),
    "no-query": _post({}),
    "variables-list": _post({"query": ME, "variables": [1]}),
    "variables-string": _post({"query": ME, "variables": "{}"}),
    "variables-number": _post({"query": ME, "variables": 3}),
    "get-variables-list": Case("GET", _get(query=ME, variables="[1]")),
    "extensions-string": _post({"query": ME, "extensions": "x"}),
    "extensions-list": _post({"query": ME, "extensions": [1]}),
    "persisted-query-string": _post({"query": ME, "extensions": {"persistedQuery": "x"}}),
    "get-extensions-string": Case("GET", _get(query=ME, extensions='"x"')),
    "operation-name-number": _post({"query": ME, "operationName": 3}),
    "document-id-wrong": _post({"documentId": "md5:abc"}),
    "unknown-purpose": _post({"query": ME}, headers={"X-Purpose": "curiosity"}),
    # content types (415)
    "no-content-type": _post({"query": ME}, status=415, headers=NO_JSON),
    "text-plain": _post({"query": ME}, status=415, headers={"Content-Type": "text/plain"}),
    "form": _post(
        b"query=x", status=415, headers={"Content-Type": "application/x-www-form-urlencoded"}
    ),
    "multipart": _post(
        b"--x--", status=415, headers={"Content-Type": "multipart/form-data; boundary=x"}
    ),
    "json-latin1": _post(
        {"query": ME}, status=415, headers={"Content-Type": "application/json; charset=latin-1"}
    ),
    "application-graphql": _post(
        _text(ME), status=415, headers={"Content-Type": "application/graphql"}
    ),
    # negotiation, authentication
    "accept-html-only": _post({"query": ME}, status=406, headers={"Accept": "text/html"}),
    "unauthenticated": _post(
        {"query": ME}, status=401, code="UNAUTHENTICATED", headers={"Authorization": None}
    ),
    # methods
    "mutation-over-get": Case(
        "GET",
        _get(query="mutation { __typename }"),
        status=405,
        code="METHOD_NOT_ALLOWED",
        allow="POST",
    ),
    "put-graphql": Case("PUT", "/graphql", b"{}", status=405, code="METHOD_NOT_ALLOWED"),
    "delete-graphql": Case("DELETE", "/graphql", status=405, code="METHOD_NOT_ALLOWED"),
    "patch-graphql": Case("PATCH", "/graphql", b"{}", status=405, code="METHOD_NOT_ALLOWED"),
    "trace-graphql": Case("TRACE", "/graphql", status=405, code="METHOD_NOT_ALLOWED"),
    "options-graphql": Case("OPTIONS", "/graphql", status=405, code="METHOD_NOT_ALLOWED"),
    "post-healthz": Case("POST", "/healthz", b"{}", status=405, code="METHOD_NOT_ALLOWED"),
    "delete-metrics": Case("DELETE", "/metrics", status=405, code="METHOD_NOT_ALLOWED"),
    "put-readyz": Case("PUT", "/readyz", b"{}", status=405, code="METHOD_NOT_ALLOWED"),
    # addresses
    "unknown-path": Case("GET", "/nope", status=404, code="NOT_FOUND"),
    "under-graphql": Case("GET", "/graphql/extra", status=404, code="NOT_FOUND"),
    "console-missing-file": Case("GET", "/console/missing.js", status=404, code="NOT_FOUND"),
    "graphiql-missing-asset": Case(
        "GET", "/graphiql-assets/missing.js", status=404, code="NOT_FOUND"
    ),
    "url-too-long": Case("GET", _get(query="{ me { region } }" + " " * 9000), status=414),
    # CORS
    "preflight-foreign-origin": Case(
        "OPTIONS",
        "/graphql",
        status=403,
        code="CORS_NOT_ALLOWED",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    ),
}
# The same refusals under the GraphQL-over-HTTP media type, when the client asks for it.
for name in (
    "body-nested-1000",
    "no-content-type",
    "put-graphql",
    "unknown-path",
    "url-too-long",
    "preflight-foreign-origin",
    "unauthenticated",
):
    case = CASES[name]
    CASES[f"{name}-new-type"] = Case(
        case.method,
        case.target,
        case.body,
        case.status,
        case.code,
        {**case.headers, "Accept": NEW},
        case.allow,
    )

# Only through the in-process app: a real client cannot stream 4 MB at a server that has
# already answered without the reset losing the answer.
ASGI_ONLY = {
    "body-too-large": _post({"query": ME + " " * 4_000_001}, status=413),
}

# Only through a socket: what the server's parser refuses, before the application runs.
SERVER_ONLY = {
    "declared-body-too-large": Case(
        "POST", "/graphql", status=413, headers={"Content-Length": "4000001"}
    ),
    "url-over-the-parser-limit": Case("GET", "/graphql?query=" + "a" * 70_000, status=414),
    "raw-byte-in-path": Case("GET", "/gr\xffaphql", status=400),
    "unknown-method": Case("FOO", "/graphql", status=400),
    "header-name-with-space": Case("GET", "/healthz", status=400, headers={"Bad Header": "x"}),
    "header-fields-too-large": Case(
        "GET", "/healthz", status=431, headers={"X-Padding": "a" * 100_000}
    ),
    "chunk-size-not-hex": Case(
        "POST", "/graphql", b"zz\r\n", headers={"Transfer-Encoding": "chunked"}
    ),
}


def check_refusal(case: Case, status: int, headers: Mapping[str, str], body: bytes) -> None:
    assert status == case.status, (status, body[:300])
    assert headers["content-type"].split(";")[0].strip() == case.media_type, headers
    payload = json.loads(body)
    assert payload.get("data") is None, payload
    error = payload["errors"][0]
    assert error["extensions"]["code"] == case.code, payload
    request_id = error["extensions"]["requestId"]
    assert request_id == headers["x-request-id"]
    uuid.UUID(request_id)
    assert CHINESE.search(error["message"]), error["message"]
    assert "Traceback" not in body.decode("utf-8")
    if status == 405:
        assert headers["allow"], headers
        if case.allow is not None:
            assert headers["allow"] == case.allow


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize("name", [*CASES, *ASGI_ONLY])
async def test_every_refusal_has_the_error_shape_in_process(harness: Harness, name: str) -> None:
    case = {**CASES, **ASGI_ONLY}[name]
    token = harness.token("medical_insurance", "province", "37")
    # raise_app_exceptions (the default): anything escaping the app fails here, loudly.
    response = await harness.client.request(
        case.method, case.target, content=case.body, headers=case.request_headers(token)
    )
    check_refusal(case, response.status_code, response.headers, response.content)


async def test_metrics_refusal_has_the_error_shape(harness: Harness) -> None:
    outside = httpx.ASGITransport(app=create_app(harness.runtime), client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=outside, base_url="http://gateway.test") as client:
        response = await client.get("/metrics")
    case = Case("GET", "/metrics", status=403, code="FORBIDDEN")
    check_refusal(case, response.status_code, response.headers, response.content)


async def test_an_unexpected_exception_is_500_in_the_error_shape(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside what a resolver masks: anything escaping the endpoint is answered, not raised."""
    from gateway.http import graphql

    def explode(*_args: object) -> None:
        raise RuntimeError("SELECT secret FROM person")

    monkeypatch.setattr(graphql, "_purpose", explode)
    token = harness.token("medical_insurance", "province", "37")
    response = await harness.post(token, ME)
    case = Case("POST", "/graphql", status=500, code="INTERNAL_SERVER_ERROR")
    check_refusal(case, response.status_code, response.headers, response.content)
    assert "secret" not in response.text
    assert response.headers["x-request-id"] in response.json()["errors"][0]["message"]


async def test_well_formed_requests_are_still_served(harness: Harness) -> None:
    """The bounds refuse nothing a client sends in earnest: a byte-order mark, escaped
    non-BMP characters, nesting and numbers within bounds."""
    token = harness.token("medical_insurance", "province", "37")
    query = "query Q($n: Int) { persons(first: $n) { totalCount } }"
    extensions = {"client": [[[[[[[[1, 1.5, -3e2, 12345678901234567890, "😀", "\\ud83d"]]]]]]]]}
    payload = {"query": query, "variables": {"n": 2}, "extensions": extensions}
    body = "\ufeff" + json.dumps(payload)
    response = await harness.client.post(
        "/graphql",
        content=body.encode("utf-8"),
        headers=Case("POST", "/graphql").request_headers(token),
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["persons"]["totalCount"] >= 0


# --------------------------------------------------------------------------- real servers


@dataclass
class Server:
    gateway: Gateway
    port: int
    token: str


def _start(root: Path, url: str, workers: int) -> Server:
    data_dir = root / "data"
    _cli(data_dir, url, "migrate")
    _cli(data_dir, url, "seed", "--persons", "20")
    env = _env(data_dir, url) | {"RELIEF_CLIENT_TIMEOUT_SECONDS": str(TIMEOUT)}
    port = _free_port()
    log = root / f"serve-{workers}.log"
    args = [str(SCRIPT), "serve", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    settings = load_settings(data_dir=data_dir, database_url=url)
    tokens = TokenService.from_file(settings.token_key_path, settings.token_issuer, create=False)
    token = tokens.mint(subject="edge", dept="medical_insurance", level="province", region="37")
    return Server(Gateway(f"workers-{workers}", proc, f"http://127.0.0.1:{port}", log), port, token)


@pytest.fixture(scope="module")
async def single(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    root = tmp_path_factory.mktemp("edge-serve")
    server = _start(root, f"sqlite+aiosqlite:///{root / 'data' / 'relief.db'}", workers=1)
    try:
        async with httpx.AsyncClient() as client:
            await _ready(server.gateway, client)
        yield server
    finally:
        _stop(server.gateway)


@pytest.fixture(scope="module")
def edge_database(postgres_cluster: ThrowawayCluster) -> Iterator[str]:
    name = f"relief_edge_{uuid.uuid4().hex[:10]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture(scope="module")
async def workers(
    edge_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    server = _start(tmp_path_factory.mktemp("edge-workers"), edge_database, workers=2)
    try:
        async with httpx.AsyncClient() as client:
            await _ready(server.gateway, client)
        yield server
    finally:
        _stop(server.gateway)


@pytest.fixture(params=["serve", "serve-workers-2"])
def server(request: pytest.FixtureRequest) -> Server:
    fixture = "single" if request.param == "serve" else "workers"
    found: Server = request.getfixturevalue(fixture)
    return found


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def _render(case: Case, token: str, *, close: bool = True) -> bytes:
    headers = case.request_headers(token)
    if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(len(case.body))
    lines = [f"{case.method} {case.target} HTTP/1.1", "Host: 127.0.0.1"]
    if close:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + case.body


def _parse(raw: bytes, seconds: float) -> Reply | None:
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body, seconds)


async def _read_to_end(reader: asyncio.StreamReader, limit: float) -> bytes:
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65_536), limit)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


async def _exchange(port: int, data: bytes, limit: float = 15) -> tuple[bytes, float]:
    """Send ``data``, then read until the server closes; (what came back, seconds taken)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    try:
        if data:
            writer.write(data)
            await writer.drain()
        received = await _read_to_end(reader, limit)
    finally:
        writer.close()
    return received, loop.time() - started


@pytest.mark.parametrize("name", [*CASES, *SERVER_ONLY])
async def test_every_refusal_has_the_error_shape_through_a_server(
    server: Server, name: str
) -> None:
    case = {**CASES, **SERVER_ONLY}[name]
    raw, seconds = await _exchange(server.port, _render(case, server.token))
    reply = _parse(raw, seconds)
    assert reply is not None, (raw[:300], server.gateway.output()[-2000:])
    check_refusal(case, reply.status, reply.headers, reply.body)


# --------------------------------------------------------------------------- slow clients


def _cut_in_time(seconds: float) -> None:
    assert TIMEOUT * 0.8 <= seconds <= TIMEOUT + SLACK, seconds


async def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    raw, seconds = await _exchange(server.port, b"")
    assert raw == b""  # nothing was asked, nothing is answered
    _cut_in_time(seconds)


@pytest.mark.parametrize(
    "partial",
    [b"GET /grap", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: app"],
    ids=["request-line", "headers"],
)
async def test_a_request_that_stops_midway_is_cut_with_408(server: Server, partial: bytes) -> None:
    raw, seconds = await _exchange(server.port, partial)
    reply = _parse(raw, seconds)
    assert reply is not None, raw
    check_refusal(
        Case("GET", "/", status=408, code="REQUEST_TIMEOUT"),
        reply.status,
        reply.headers,
        reply.body,
    )
    _cut_in_time(seconds)


async def test_a_byte_now_and_then_does_not_extend_the_deadline(server: Server) -> None:
    """Slowloris: the headers must be complete within the timeout, however the bytes trickle."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = loop.time()

    async def trickle() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    try:
        raw = await _read_to_end(reader, 15)
    finally:
        sender.cancel()
        writer.close()
    seconds = loop.time() - started
    reply = _parse(raw, seconds)
    assert reply is not None, raw
    assert reply.status == 408
    _cut_in_time(seconds)


async def test_a_stalled_body_is_answered_408(server: Server) -> None:
    case = Case("POST", "/graphql", headers={"Content-Length": "100"})
    data = _render(case, server.token, close=False) + b'{"query":'
    raw, seconds = await _exchange(server.port, data)
    reply = _parse(raw, seconds)
    assert reply is not None, raw
    check_refusal(
        Case("POST", "/graphql", status=408, code="REQUEST_TIMEOUT"),
        reply.status,
        reply.headers,
        reply.body,
    )
    _cut_in_time(seconds)


async def test_ordinary_requests_are_served_and_kept_alive(server: Server) -> None:
    """Two requests on one connection, a pause between them shorter than the keep-alive;
    then a third that stops midway is cut like any other."""
    body = json.dumps({"query": ME}).encode()
    request = _render(Case("POST", "/graphql", body), server.token, close=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(2):
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            reply = _parse(head, 0)
            assert reply is not None
            assert reply.status == 200, head
            answer = await reader.readexactly(int(reply.headers["content-length"]))
            assert json.loads(answer)["data"]["me"]["department"] == "MEDICAL_INSURANCE"
            await asyncio.sleep(TIMEOUT * 0.6)
        writer.write(b"GET /heal")
        await writer.drain()
        raw = await _read_to_end(reader, 15)
    finally:
        writer.close()
    reply = _parse(raw, 0)
    assert reply is not None, raw
    assert reply.status == 408
