"""GraphQL over HTTP: request validation, GET vs POST, error codes, paging arguments, the
operational endpoints, masking of unexpected exceptions and request ids."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.http.app import create_app
from gateway.http.graphql import MAX_BODY_BYTES
from schema.purposes import purpose_labels
from tests.harness import Harness, build_harness

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ME = "{ me { department level region } }"
PAGE = "query Page($first: Int, $after: String) { persons(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }"  # noqa: E501


def _auth(harness: Harness, dept: str = "medical_insurance", level: str = "province") -> str:
    region = {"province": "37", "city": "3701", "county": "370102"}[level]
    return harness.token(dept, level, region)


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Purpose": "supervision", **extra}


def _bad_request(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert CHINESE.search(body["errors"][0]["message"])
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# --------------------------------------------------------------------------- request shape


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", '{"query": "{ me { department } }"}'),
        ("application/x-www-form-urlencoded", "query=%7B+me+%7B+department+%7D+%7D"),
        ("multipart/form-data; boundary=x", "--x--"),
        ("application/graphql", "{ me { department } }"),
        ("", '{"query": "{ me { department } }"}'),
    ],
)
async def test_post_needs_json_content_type(
    harness: Harness, content_type: str, content: str
) -> None:
    """415 Unsupported Media Type: also what stops CSRF through form posts."""
    headers = _headers(_auth(harness))
    if content_type:
        headers["Content-Type"] = content_type
    response = await harness.client.post("/graphql", content=content, headers=headers)
    _bad_request(response, 415)


async def test_json_content_type_with_charset_is_accepted(harness: Harness) -> None:
    headers = _headers(_auth(harness), **{"Content-Type": "application/json; charset=utf-8"})
    response = await harness.client.post(
        "/graphql", content=json.dumps({"query": ME}), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"]["department"] == "MEDICAL_INSURANCE"


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b"", b'{"query": "{ me { department } }"', b"\xff\xfe{}"],
    ids=["open-brace", "words", "empty", "unterminated", "not-utf8"],
)
async def test_malformed_json(harness: Harness, content: bytes) -> None:
    headers = _headers(_auth(harness), **{"Content-Type": "application/json"})
    response = await harness.client.post("/graphql", content=content, headers=headers)
    _bad_request(response)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"query": None},
        {"query": ""},
        {"query": "   "},
        {"query": 42},
        {"variables": {}},
        [{"query": ME}],
        "query",
        {"query": ME, "variables": [1]},
        {"query": ME, "variables": "{}"},
        {"query": ME, "operationName": 3},
    ],
    ids=[
        "empty-object",
        "null-query",
        "empty-query",
        "blank-query",
        "number-query",
        "no-query",
        "batch-array",
        "string-body",
        "variables-list",
        "variables-string",
        "operation-name-number",
    ],
)
async def test_missing_or_bad_query(harness: Harness, payload: object) -> None:
    headers = _headers(_auth(harness), **{"Content-Type": "application/json"})
    response = await harness.client.post("/graphql", content=json.dumps(payload), headers=headers)
    _bad_request(response)


async def test_oversized_body_is_refused(harness: Harness) -> None:
    query = "{ me { department } }" + " " * (MAX_BODY_BYTES + 1)
    response = await harness.post(_auth(harness), query)
    _bad_request(response, 413)


async def test_unknown_purpose_lists_known_purposes(harness: Harness) -> None:
    response = await harness.post(_auth(harness), ME, purpose="curiosity")
    body = _bad_request(response)
    message = body["errors"][0]["message"]
    assert "curiosity" in message
    for code in purpose_labels():
        assert code in message
    for code in (
        "relief_recognition",
        "enrollment_verification",
        "high_cost_monitoring",
        "benefit_settlement",
        "supervision",
    ):
        assert code in message


@pytest.mark.parametrize("purpose", sorted(purpose_labels()))
async def test_known_purposes_are_accepted(harness: Harness, purpose: str) -> None:
    body = await harness.query(_auth(harness), "{ me { purpose } }", purpose=purpose)
    assert body["data"]["me"]["purpose"] == purpose


async def test_no_purpose_is_allowed_for_me(harness: Harness) -> None:
    body = await harness.query(_auth(harness), "{ me { purpose } }", purpose=None)
    assert body["data"]["me"]["purpose"] == ""


async def test_unauthenticated_is_checked_before_body(harness: Harness) -> None:
    """No token and a broken body: the caller learns only that it must authenticate."""
    response = await harness.client.post(
        "/graphql", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert _codes(response.json()) == ["UNAUTHENTICATED"]


# --------------------------------------------------------------------------- GET


async def test_get_runs_queries(harness: Harness) -> None:
    response = await harness.client.get(
        "/graphql", params={"query": ME}, headers=_headers(_auth(harness))
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {"me": {"department": "MEDICAL_INSURANCE", "level": "PROVINCE", "region": "37"}}
    }


async def test_get_with_variables(harness: Harness) -> None:
    response = await harness.client.get(
        "/graphql",
        params={"query": PAGE, "variables": json.dumps({"first": 2})},
        headers=_headers(_auth(harness)),
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["persons"]["edges"]) == 2


async def test_get_with_bad_variables_json(harness: Harness) -> None:
    response = await harness.client.get(
        "/graphql", params={"query": PAGE, "variables": "{"}, headers=_headers(_auth(harness))
    )
    _bad_request(response)


async def test_get_without_query_for_api_client(harness: Harness) -> None:
    response = await harness.client.get(
        "/graphql", headers=_headers(_auth(harness), Accept="application/json")
    )
    _bad_request(response)


async def test_get_serves_graphiql_to_a_browser(harness: Harness) -> None:
    response = await harness.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize(
    "query",
    [
        "mutation { __typename }",
        "mutation M { __typename }",
        "query Q { me { department } } mutation M { __typename }",
    ],
)
async def test_get_refuses_mutations(harness: Harness, query: str) -> None:
    """GET never runs a mutation: the refusal is a GraphQL error response (400/405), not an
    unhandled exception (a client library would see an HTML/plain-text 500)."""
    params = {"query": query}
    if "query Q" in query:
        params["operationName"] = "M"
    transport = httpx.ASGITransport(app=create_app(harness.runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        response = await client.get("/graphql", params=params, headers=_headers(_auth(harness)))
    assert response.status_code == 405, (response.status_code, response.text)
    assert response.headers["allow"] == "POST"
    body = response.json()
    assert body.get("data") is None
    assert _codes(body) == ["METHOD_NOT_ALLOWED"]
    assert body["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]


async def test_head_is_get_without_the_body(harness: Harness) -> None:
    """HEAD, which Starlette adds to every GET route, follows GET's rules (it used to fall
    through to the POST path and answer 415)."""
    response = await harness.client.head(
        "/graphql", params={"query": ME}, headers=_headers(_auth(harness))
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-request-id"]


async def test_post_runs_mutations(harness: Harness) -> None:
    """Mutations (submitRecords, resolveAnomaly) run over POST only; GET refuses them above."""
    response = await harness.post(_auth(harness), "mutation { __typename }")
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Mutation"}}


# --------------------------------------------------------------------------- GraphQL errors


@pytest.mark.parametrize(
    "query",
    ["{ me { department ", "{ me { nope } }", '{ persons(first: "x") { totalCount } }', "}{"],
    ids=["syntax", "unknown-field", "literal-type", "garbage"],
)
async def test_invalid_document(harness: Harness, query: str) -> None:
    response = await harness.post(_auth(harness), query)
    body = response.json()
    assert body.get("data") is None
    assert _codes(body)
    assert set(_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "requestId" in body["errors"][0]["extensions"]


async def test_syntax_error_code(harness: Harness) -> None:
    response = await harness.post(_auth(harness), "{ me { department ")
    body = response.json()
    assert _codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert body["errors"][0]["locations"]


@pytest.mark.parametrize(
    "variables",
    [{"first": "ten"}, {"first": 1.5}, {"first": [1]}, {"after": 5}],
    ids=["string-for-int", "float-for-int", "list-for-int", "int-for-string"],
)
async def test_wrong_variable_type(harness: Harness, variables: dict[str, Any]) -> None:
    response = await harness.post(_auth(harness), PAGE, variables)
    body = response.json()
    assert body.get("data") is None
    assert body["errors"]
    # The caller's mistake, not the server's: a client error code and a message naming the
    # variable (not the masked "internal error" text).
    assert set(_codes(body)) <= {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
    assert "$" + next(iter(variables)) in body["errors"][0]["message"]


@pytest.mark.parametrize("first", [201, -1, 10_000, -(2**31)])
async def test_page_size_limits(harness: Harness, first: int) -> None:
    body = await harness.query(_auth(harness), PAGE, {"first": first})
    assert body["data"] is None or body["data"].get("persons") is None
    assert _codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["persons"]
    assert CHINESE.search(body["errors"][0]["message"])


@pytest.mark.parametrize("first", [0, 1, 200])
async def test_page_size_bounds_are_inclusive(harness: Harness, first: int) -> None:
    body = await harness.query(_auth(harness), PAGE, {"first": first})
    assert "errors" not in body, body
    edges = body["data"]["persons"]["edges"]
    total = body["data"]["persons"]["totalCount"]
    assert len(edges) == min(first, total)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "!!!",
        "€",
        _b64("person:not-hex"),
        _b64("other:" + uuid.uuid4().hex),
        _b64("person:"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["garbage", "punct", "non-ascii", "not-hex", "wrong-prefix", "empty-id", "not-utf8"],
)
async def test_invalid_after_cursor(harness: Harness, after: str) -> None:
    body = await harness.query(_auth(harness), PAGE, {"first": 5, "after": after})
    assert _codes(body) == ["BAD_USER_INPUT"]
    assert "游标" in body["errors"][0]["message"]


async def test_cursor_paging_walks_everything_once(harness: Harness) -> None:
    token = harness.token("civil_affairs", "city", harness.busiest_county()[:4])
    seen: list[str] = []
    after: str | None = None
    total = None
    while True:
        body = await harness.query(token, PAGE, {"first": 7, "after": after})
        assert "errors" not in body, body
        connection = body["data"]["persons"]
        total = connection["totalCount"]
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            cursors = [edge["cursor"] for edge in connection["edges"]]
            assert connection["pageInfo"]["endCursor"] == (cursors[-1] if cursors else None)
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == total
    expected = {
        str(p.person_id)
        for p in harness.persons
        if p.region_code.startswith(harness.busiest_county()[:4])
    }
    assert set(seen) == expected


# --------------------------------------------------------------------------- operations


async def test_healthz(harness: Harness) -> None:
    response = await harness.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz(harness: Harness) -> None:
    response = await harness.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["policyVersion"] >= 1


async def test_metrics(harness: Harness) -> None:
    await harness.post(_auth(harness), ME)
    await harness.post(None, ME)
    response = await harness.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE relief_graphql_requests" in text
    # By operation (ME is unnamed: "anonymous") and outcome; tests/test_operations.py has more.
    ok = r'^relief_graphql_requests_total\{operation="anonymous",outcome="ok"\} [0-9.e+]+$'
    assert re.search(ok, text, re.M)
    unauthenticated = (
        r'^relief_graphql_requests_total\{operation="anonymous",outcome="unauthenticated"\} '
    )
    assert re.search(unauthenticated, text, re.M)
    assert "relief_graphql_request_seconds_bucket" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$", line)


# --------------------------------------------------------------------------- request ids


async def test_responses_carry_request_id(harness: Harness) -> None:
    first = await harness.post(_auth(harness), ME)
    second = await harness.post(_auth(harness), ME)
    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(ids)
    assert ids[0] != ids[1]
    for value in ids:
        uuid.UUID(str(value))


async def test_error_responses_carry_request_id(harness: Harness) -> None:
    """Every /graphql response carries X-Request-Id, including 400 and 401 refusals, so a
    clerk's complaint can be matched to the server log."""
    responses = {
        "graphql-error": await harness.post(_auth(harness), "{ nope }"),
        "bad-request": await harness.post(_auth(harness), ME, purpose="curiosity"),
        "unauthenticated": await harness.post(None, ME),
    }
    missing = [name for name, r in responses.items() if not r.headers.get("x-request-id")]
    assert not missing, f"responses without X-Request-Id: {missing}"


async def test_request_id_in_graphql_errors_matches_header(harness: Harness) -> None:
    response = await harness.post(_auth(harness), "{ nope }")
    body = response.json()
    assert body["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]


# --------------------------------------------------------------------------- internal errors


async def test_unexpected_exception_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await build_harness(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path / 'masked.db'}",
        backend="sqlite",
        persons=20,
    )
    try:
        secret = "SELECT secret FROM person"

        def explode(*_args: object, **_kwargs: object) -> str:
            raise RuntimeError(secret)

        monkeypatch.setattr(h.runtime.vault, "open", explode)
        person = h.persons[0]
        token = h.token("medical_insurance", "province", person.region_code[:2])
        response = await h.post(
            token, "{ persons(first: 3) { totalCount edges { node { id gender name } } } }"
        )
        assert response.status_code == 200
        assert secret not in response.text
        assert "RuntimeError" not in response.text
        assert "Traceback" not in response.text
        body = response.json()
        request_id = response.headers["x-request-id"]
        errors = body["errors"]
        assert errors
        for error in errors:
            assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
            assert error["extensions"]["requestId"] == request_id
            assert request_id in error["message"]
            assert CHINESE.search(error["message"])
            assert error["path"][-1] == "name"
        # The rest of the response is still served.
        edges = body["data"]["persons"]["edges"]
        assert edges
        assert all(edge["node"]["name"] is None for edge in edges)
        assert all(edge["node"]["gender"] in ("MALE", "FEMALE") for edge in edges)
    finally:
        await h.close()


async def test_unexpected_exception_in_storage_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await build_harness(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path / 'masked2.db'}",
        backend="sqlite",
        persons=10,
    )
    try:
        from gateway.storage import people

        async def explode(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("connection to 10.0.0.7 failed: password=hunter2")

        monkeypatch.setattr(people.ScopedPeople, "count", explode)
        token = h.token("medical_insurance", "province", h.persons[0].region_code[:2])
        response = await h.post(token, "{ persons(first: 1) { totalCount } }")
        assert "hunter2" not in response.text
        assert "10.0.0.7" not in response.text
        body = response.json()
        assert _codes(body) == ["INTERNAL_SERVER_ERROR"]
        assert response.headers["x-request-id"] in body["errors"][0]["message"]
    finally:
        await h.close()
