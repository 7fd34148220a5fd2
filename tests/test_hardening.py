"""A hardened GraphQL surface (docs/security.md "Hardening"): one test per switch, each showing
the attack refused and the ordinary query still served.

Elsewhere: rate limits (tests/test_rate_limit.py), trusted documents
(tests/test_trusted_documents.py), media types and status codes
(tests/test_graphql_over_http.py); masked unexpected exceptions, mutations refused over GET,
non-JSON POST bodies (CSRF) and the body-size default (tests/test_http.py); every malformed
request, URL, method and slow client, in-process and against real servers
(tests/test_http_edge.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.domain.settings import load_settings
from gateway.runtime.parts import Runtime
from gateway.runtime.trusted_documents import document_hash
from gateway.storage import people
from schema.limits import QueryLimits
from tests.hardening_support import (
    ME,
    codes,
    headers,
    post,
    refused,
    served,
    variant,
)
from tests.harness import Harness, build_harness


def _token(harness: Harness) -> str:
    return harness.token("medical_insurance", "province", harness.persons[0].region_code[:2])


def _nested(depth: int) -> str:
    """``person { household { members { … id } } }`` with ``depth`` levels of fields."""
    inner = "id"
    for level in range(depth - 2, 0, -1):
        inner = f"{'household' if level % 2 else 'members'} {{ {inner} }}"
    return inner


def _person(harness: Harness, selection: str) -> str:
    return f'{{ person(idNumber: "{harness.persons[0].id_number}") {{ {selection} }} }}'


# --------------------------------------------------------------------------- depth


async def test_depth_limit(harness: Harness) -> None:
    token = _token(harness)
    deepest_allowed = _person(harness, _nested(10))
    assert "members { household { members" in deepest_allowed
    body = await harness.query(token, deepest_allowed)
    assert "errors" not in body, body
    assert body["data"]["person"]["household"] is not None

    too_deep = _person(harness, _nested(11))
    message = refused(await harness.post(token, too_deep), "QUERY_TOO_COMPLEX")
    assert "11" in message
    assert "10" in message


async def test_depth_limit_is_configurable(harness: Harness) -> None:
    async with variant(harness, max_query_depth=2) as client:
        served(await post(client, _token(harness), ME))
        response = await post(client, _token(harness), "{ me { fieldAccess { field } } }")
        assert "上限 2 层" in refused(response, "QUERY_TOO_COMPLEX")


# --------------------------------------------------------------------------- aliases


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: me {{ region }}" for i in range(count)) + " }"


async def test_alias_limit(harness: Harness) -> None:
    token = _token(harness)
    data = served(await harness.post(token, _aliases(50)))
    assert len(data) == 50
    message = refused(await harness.post(token, _aliases(51)), "QUERY_TOO_COMPLEX")
    assert "51" in message


async def test_alias_limit_is_configurable(harness: Harness) -> None:
    async with variant(harness, max_query_aliases=3) as client:
        served(await post(client, _token(harness), _aliases(3)))
        refused(await post(client, _token(harness), _aliases(4)), "QUERY_TOO_COMPLEX")


# --------------------------------------------------------------------------- tokens


async def test_token_limit(harness: Harness) -> None:
    """A document past the token limit: the parser stops at the limit, nothing else runs."""
    token = _token(harness)
    served(await harness.post(token, ME))
    flood = "{ me { " + "region " * 5_001 + "} }"
    message = refused(await harness.post(token, flood), "QUERY_TOO_COMPLEX")
    assert "5000" in message


async def test_token_limit_is_configurable(harness: Harness) -> None:
    async with variant(harness, max_query_tokens=10) as client:
        served(await post(client, _token(harness), ME))  # 7 tokens
        longer = "{ me { department level region rowScope purpose policyVersion operations } }"
        assert "10" in refused(await post(client, _token(harness), longer), "QUERY_TOO_COMPLEX")


# --------------------------------------------------------------------------- directives


def _directives(count: int) -> str:
    return "{ me { region " + "__typename @include(if: true) " * count + "} }"


async def test_directive_limit(harness: Harness) -> None:
    token = _token(harness)
    data = served(await harness.post(token, _directives(50)))
    assert data["me"]["__typename"] == "Principal"
    message = refused(await harness.post(token, _directives(51)), "QUERY_TOO_COMPLEX")
    assert "指令" in message
    assert "51" in message


async def test_directive_limit_is_configurable(harness: Harness) -> None:
    async with variant(harness, max_query_directives=1) as client:
        served(await post(client, _token(harness), _directives(1)))
        refused(await post(client, _token(harness), _directives(2)), "QUERY_TOO_COMPLEX")


def _unknown_directives(count: int) -> str:
    return "{ me { region " + " ".join(f"@d{i}" for i in range(count)) + " } }"


async def test_directives_under_the_limit_are_validated_one_by_one(harness: Harness) -> None:
    """Under the limit, validation names each unknown directive (the caller's to fix)."""
    body = (await harness.post(_token(harness), _unknown_directives(10))).json()
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"] * 10


# The shape limits are counted before validation: a document over a limit is ONE refusal, not
# one validation error per unknown directive, field or alias (2,000 unknown directives were
# 100 errors, graphql-core's cap, after validating all of them). Each case is over its limit
# with parts validation would reject one by one.
OVER_A_SHAPE_LIMIT = {
    "directives": _unknown_directives(51),
    "2000-directives": _unknown_directives(2_000),
    "aliases": "{ " + " ".join(f"a{i}: nope{i}" for i in range(51)) + " }",
    "depth": "{ " + "x { " * 11 + "y" + " }" * 11 + " }",
    "operations": " ".join(f"query Q{i} {{ nope{i} }}" for i in range(6)),
    "all-at-once": "query A { "
    + " ".join(f"a{i}: n @d{i}" for i in range(60))
    + " x { " * 11
    + "y"
    + " }" * 11
    + " } "
    + " ".join(f"query Q{i} {{ n }}" for i in range(6)),
}


@pytest.mark.parametrize("case", list(OVER_A_SHAPE_LIMIT))
async def test_a_shape_limit_is_one_refusal_before_validation(harness: Harness, case: str) -> None:
    response = await harness.post(_token(harness), OVER_A_SHAPE_LIMIT[case])
    message = refused(response, "QUERY_TOO_COMPLEX")
    if case == "all-at-once":
        for what in ("操作过多", "嵌套过深", "别名过多", "指令过多"):
            assert what in message, message


async def test_depth_follows_each_fragment_once(harness: Harness) -> None:
    """40 fragments, each spreading the next twice: 2^40 paths, 40 fragments to measure (the
    depth walk took 10 s of CPU at 22 fragments before)."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    document = "{ ...F0 } " + chain + " fragment F40 on Query { __typename }"
    started = time.perf_counter()
    assert served(await harness.post(_token(harness), document)) == {"__typename": "Query"}
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------- operations


def _operations(count: int) -> str:
    return " ".join(f"query Q{i} {{ me {{ region }} }}" for i in range(count))


async def test_operation_limit(harness: Harness) -> None:
    token = _token(harness)
    async with variant(harness) as client:
        response = await post(client, token, _operations(5), operationName="Q4")
        assert served(response)["me"]["region"]
        response = await post(client, token, _operations(6), operationName="Q0")
        assert "6" in refused(response, "QUERY_TOO_COMPLEX")


async def test_operation_limit_is_configurable(harness: Harness) -> None:
    async with variant(harness, max_operations=1) as client:
        served(await post(client, _token(harness), _operations(1)))
        response = await post(client, _token(harness), _operations(2), operationName="Q1")
        refused(response, "QUERY_TOO_COMPLEX")


async def test_several_operations_need_an_operation_name(harness: Harness) -> None:
    """GraphQL spec: "Must provide operation name if query contains multiple operations";
    an unknown name is the caller's error (400), not a server error."""
    token = _token(harness)
    async with variant(harness) as client:
        refused(await post(client, token, _operations(2)), "BAD_USER_INPUT")
        response = await post(client, token, _operations(2), operationName="Q9")
        assert "Q9" in refused(response, "BAD_USER_INPUT", status=400)
        served(await post(client, token, _operations(2), operationName="Q1"))


async def test_batched_json_array_is_refused(harness: Harness) -> None:
    token = _token(harness)
    batch = [{"query": ME}] * 20
    response = await harness.client.post(
        "/graphql",
        content=json.dumps(batch),
        headers=headers(token, **{"Content-Type": "application/json"}),
    )
    assert "批量" in refused(response, "BAD_USER_INPUT", status=400)
    served(await harness.post(token, ME))


# --------------------------------------------------------------------------- cost

HOUSEHOLDS = """
query Households($first: Int) {
  persons(first: $first) { edges { node { id household { members {
    id household { members { id household { members { id } } } }
  } } } } }
}
"""


async def test_cost_limit_refuses_before_execution(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 people × households of (estimated) 8, three deep: ~100,000 objects. Refused with the
    estimate and the limit, before any row is read."""
    token = _token(harness)
    body = await harness.query(token, HOUSEHOLDS, {"first": 2})
    assert "errors" not in body, body
    assert len(body["data"]["persons"]["edges"]) == 2

    def no_rows(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the refused query reached storage")

    monkeypatch.setattr(people.ScopedPeople, "page", no_rows)
    message = refused(await harness.post(token, HOUSEHOLDS, {"first": 200}), "QUERY_TOO_COMPLEX")
    assert "131600" in message, message  # 200 × (1 + 8 × (1 + 8 × (1 + 8))) + 200 rows
    assert "50000" in message


async def test_cost_uses_variables_literals_and_defaults(harness: Harness) -> None:
    """The same document is cheap or too costly depending on its page-size variable; a literal
    counts as given, an absent variable by its default, else the argument's default (50)."""
    page = "query P($n: Int) { persons(first: $n) { edges { node { id } } } }"
    token = _token(harness)
    async with variant(harness, max_query_cost=60) as client:
        assert len(served(await post(client, token, page, {"n": 60}))["persons"]["edges"]) <= 60
        assert "61" in refused(await post(client, token, page, {"n": 61}), "QUERY_TOO_COMPLEX")
        served(await post(client, token, page, {"n": 3}))  # the cached answer is per value
        served(await post(client, token, page))  # absent: the argument's default, 50
        defaulted = "query P($n: Int = 61) { persons(first: $n) { edges { node { id } } } }"
        refused(await post(client, token, defaulted), "QUERY_TOO_COMPLEX")
        served(await post(client, token, defaulted, {"n": 1}))
        served(await post(client, token, "{ persons(first: 60) { totalCount } }"))
        literal = "{ persons(first: 61) { totalCount } }"
        refused(await post(client, token, literal), "QUERY_TOO_COMPLEX")


async def test_cost_counts_aliases_fragments_and_nesting(harness: Harness) -> None:
    token = _token(harness)
    async with variant(harness, max_query_cost=100) as client:
        # 10 people + 10 households + 10 × 8 members = 100: at the limit.
        at_limit = """
          fragment Members on Person { household { members { id } } }
          { persons(first: 10) { edges { node { ...Members } } } }
        """
        served(await post(client, token, at_limit))
        aliased = """
          fragment Members on Person { household { members { id } } }
          { a: persons(first: 10) { edges { node { ...Members } } }
            b: persons(first: 1) { totalCount } }
        """
        assert "101" in refused(await post(client, token, aliased), "QUERY_TOO_COMPLEX")


async def test_cost_estimates_are_configurable(harness: Harness) -> None:
    token = _token(harness)
    query = "{ persons(first: 10) { edges { node { household { members { id } } } } } }"
    async with variant(harness, max_query_cost=100) as client:
        served(await post(client, token, query))
    async with variant(
        harness, max_query_cost=100, query_cost_estimates={"Household.members": 20}
    ) as client:
        # 10 people + 10 households + 10 × 20 members
        assert "220" in refused(await post(client, token, query), "QUERY_TOO_COMPLEX")


# --------------------------------------------------------------------------- body size


async def test_body_size_limit_is_configurable(harness: Harness) -> None:
    token = _token(harness)
    async with variant(harness, max_body_bytes=2_000) as client:
        served(await post(client, token, ME))
        padded = ME + " " * 2_000
        refused(await post(client, token, padded), "BAD_USER_INPUT", status=413)


async def test_body_size_limit_holds_without_content_length(harness: Harness) -> None:
    """A chunked body (no Content-Length) is cut off as soon as it passes the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps({"query": ME})[:-1].encode()
        for _ in range(100):
            yield b" " * 1_000
        yield b"}"

    async with variant(harness, max_body_bytes=10_000) as client:
        response = await client.post(
            "/graphql",
            content=chunks(),
            headers=headers(_token(harness), **{"Content-Type": "application/json"}),
        )
        refused(response, "BAD_USER_INPUT", status=413)


# --------------------------------------------------------------------------- CSRF and CORS


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=latin-1", "application/x-www-form-urlencoded", "text/plain"],
)
async def test_post_body_must_be_utf8_json(harness: Harness, content_type: str) -> None:
    token = _token(harness)
    response = await harness.client.post(
        "/graphql",
        content=json.dumps({"query": "mutation { __typename }"}),
        headers=headers(token, **{"Content-Type": content_type}),
    )
    refused(response, "BAD_USER_INPUT", status=415)
    served(await harness.post(token, "mutation { __typename }"))


FRONTEND = "https://jiuzhu.example.gov.cn"


async def _preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-purpose",
        },
    )


def _preflight_refused(response: httpx.Response) -> str:
    """403 CORS_NOT_ALLOWED in the error shape, and nothing a browser would take as a yes."""
    message = refused(response, "CORS_NOT_ALLOWED", status=403)
    assert response.headers["content-type"].startswith("application/json")
    assert (
        response.json()["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]
    )
    assert not [name for name in response.headers if name.startswith("access-control-allow")]
    return message


@pytest.mark.parametrize("configured", ["", FRONTEND], ids=["none-configured", "configured"])
async def test_preflight_from_a_foreign_origin_is_403_either_way(
    harness: Harness, configured: str
) -> None:
    """Before: 405 (plain text) without RELIEF_CORS_ORIGINS, 400 (plain text) with it."""
    async with variant(harness, cors_origins=configured) as client:
        message = _preflight_refused(await _preflight(client, "https://evil.example"))
        assert "来源未获准" in message
        if not configured:
            assert "RELIEF_CORS_ORIGINS" in message


async def test_preflight_for_another_method_or_header_is_refused(harness: Harness) -> None:
    async with variant(harness, cors_origins=FRONTEND) as client:
        delete = await client.options(
            "/graphql",
            headers={"Origin": FRONTEND, "Access-Control-Request-Method": "DELETE"},
        )
        assert "GET, POST" in _preflight_refused(delete)
        header = await client.options(
            "/graphql",
            headers={
                "Origin": FRONTEND,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-forwarded-user",
            },
        )
        assert "X-Purpose" in _preflight_refused(header)


async def test_cors_is_closed_by_default(harness: Harness) -> None:
    response = await _preflight(harness.client, FRONTEND)
    _preflight_refused(response)
    post_response = await harness.client.post(
        "/graphql",
        json={"query": ME},
        headers=headers(_token(harness), Origin=FRONTEND),
    )
    assert "access-control-allow-origin" not in post_response.headers


async def test_cors_allows_only_the_configured_frontends(harness: Harness) -> None:
    async with variant(harness, cors_origins=f"{FRONTEND}, http://localhost:5173") as client:
        allowed = await _preflight(client, FRONTEND)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == FRONTEND
        assert "x-purpose" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed.headers

        _preflight_refused(await _preflight(client, "https://evil.example"))

        response = await client.post(
            "/graphql", json={"query": ME}, headers=headers(_token(harness), Origin=FRONTEND)
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == FRONTEND
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("origins", ["*", "https://a.example/path", "jiuzhu.example.gov.cn"])
def test_cors_origins_must_be_exact(origins: str) -> None:
    with pytest.raises(ValidationError, match="RELIEF_CORS_ORIGINS"):
        load_settings(cors_origins=origins)


# --------------------------------------------------------------------------- production


@pytest.fixture(scope="module")
async def production(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    """A small seeded database served by a gateway started with RELIEF_ENV=production."""
    root = tmp_path_factory.mktemp("production")
    database_url = f"sqlite+aiosqlite:///{root / 'relief.db'}"
    seeded = await build_harness(root / "data", database_url, backend="sqlite", persons=30)
    await seeded.close()
    today = os.environ.pop("RELIEF_TODAY")  # production refuses a pinned clock
    try:
        settings = load_settings(
            env="production",
            province="shandong",
            data_dir=root / "data",
            database_url=database_url,
        )
        runtime = Runtime.create(settings)
    finally:
        os.environ["RELIEF_TODAY"] = today
    await runtime.start()
    gateway = Harness(runtime=runtime, bundles=seeded.bundles, backend="sqlite", today=seeded.today)
    yield gateway
    await gateway.close()


async def test_production_turns_every_limit_on(production: Harness) -> None:
    settings = production.runtime.settings
    assert settings.is_production
    assert (
        QueryLimits.from_settings(settings) == QueryLimits()
    )  # depth, aliases, tokens, directives, cost
    limiter = production.runtime.rate_limiter
    assert limiter.subjects is not None
    assert limiter.departments is not None
    token = _token(production)
    served(await production.post(token, ME))
    refused(await production.post(token, _aliases(51)), "QUERY_TOO_COMPLEX")
    refused(await production.post(token, HOUSEHOLDS, {"first": 200}), "QUERY_TOO_COMPLEX")


async def test_production_hides_introspection(production: Harness) -> None:
    token = _token(production)
    response = await production.post(token, "{ __schema { types { name } } }")
    body = response.json()
    assert body.get("data") is None
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "__schema" in body["errors"][0]["message"]
    served(await production.post(token, "{ __typename me { region } }"))


async def test_production_gives_no_field_suggestions(production: Harness) -> None:
    token = _token(production)
    body = (await production.post(token, "{ persn { id } }")).json()
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "Did you mean" not in body["errors"][0]["message"]
    assert "person" not in body["errors"][0]["message"].replace("persn", "")


async def test_production_serves_no_graphiql(production: Harness) -> None:
    response = await production.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "<script" not in response.text
    assert refused(response, "NOT_FOUND", status=404)
    assert response.json()["errors"][0]["extensions"]["requestId"]
    assets = await production.client.get("/graphiql-assets/graphiql.min.js")
    assert refused(assets, "NOT_FOUND", status=404)


LOOKUP = "query Lookup($idNumber: String!) { person(idNumber: $idNumber) { regionCode } }"
REGION = "query Region { me { region } }"


@pytest.fixture
async def production_pinned(
    production: Harness, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The production gateway with medical insurance pinned to LOOKUP and REGION."""
    (tmp_path / "medical_insurance.json").write_text(
        json.dumps({document_hash(text): text for text in (LOOKUP, REGION)}), encoding="utf-8"
    )
    async with variant(production, trusted_documents_dir=tmp_path) as client:
        yield client


def _by_hash(text: str) -> dict[str, str]:
    return {"documentId": f"sha256:{document_hash(text)}"}


async def test_production_get_runs_only_trusted_documents_by_hash(
    production: Harness, production_pinned: httpx.AsyncClient
) -> None:
    """No ID number in a URL in production: proxies and load balancers log URLs. GET names a
    trusted document by its hash and carries nothing else; text and variables go by POST."""
    token = _token(production)
    client = production_pinned
    get = await client.get("/graphql", params=_by_hash(REGION), headers=headers(token))
    assert served(get)["me"]["region"]
    extension = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(REGION)}}
    get = await client.get(
        "/graphql", params={"extensions": json.dumps(extension)}, headers=headers(token)
    )
    assert served(get)["me"]["region"]

    id_number = production.persons[0].id_number
    refusals = {
        "text": {"query": REGION},
        "text-by-hash": {"query": REGION, **_by_hash(REGION)},
        "variables": {**_by_hash(LOOKUP), "variables": json.dumps({"idNumber": id_number})},
        "text-and-variables": {"query": LOOKUP, "variables": json.dumps({"idNumber": id_number})},
    }
    for case, params in refusals.items():
        response = await client.get("/graphql", params=params, headers=headers(token))
        message = refused(response, "METHOD_NOT_ALLOWED", status=405)
        assert response.headers["allow"] == "POST", case
        assert "POST" in message
        assert id_number not in response.text
    # The same over POST: served.
    response = await post(client, token, LOOKUP, {"idNumber": id_number})
    assert served(response)["person"]["regionCode"] == production.persons[0].region_code
    response = await post(client, token, None, {"idNumber": id_number}, **_by_hash(LOOKUP))
    assert served(response)["person"]["regionCode"] == production.persons[0].region_code


async def test_production_get_refusal_in_the_graphql_media_type(production: Harness) -> None:
    token = _token(production)
    response = await production.client.get(
        "/graphql",
        params={"query": ME},
        headers=headers(token, Accept="application/graphql-response+json"),
    )
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert codes(response.json()) == ["METHOD_NOT_ALLOWED"]


async def test_development_keeps_get(harness: Harness) -> None:
    """GraphiQL and curl on a laptop: GET with text and variables still runs queries."""
    token = _token(harness)
    page = "query P($n: Int) { persons(first: $n) { totalCount } }"
    response = await harness.client.get(
        "/graphql",
        params={"query": page, "variables": json.dumps({"n": 1})},
        headers=headers(token),
    )
    assert served(response)["persons"]["totalCount"] >= 1


async def test_development_keeps_suggestions(harness: Harness) -> None:
    body = (await harness.post(_token(harness), "{ persn { id } }")).json()
    assert "是否要找" in body["errors"][0]["message"]  # "Did you mean", in Chinese
