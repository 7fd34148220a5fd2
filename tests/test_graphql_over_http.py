"""Conformance with the GraphQL over HTTP specification (gateway.http.graphql_over_http): media-type
negotiation, ``application/graphql-response+json`` with its status codes, the legacy
``application/json`` behaviour, 406 for an unsupported Accept, 400 for a missing document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.http.graphql_over_http import GRAPHQL_RESPONSE_JSON, JSON, response_media_type
from tests.hardening_support import ME, codes, headers
from tests.harness import Harness

NEW = GRAPHQL_RESPONSE_JSON


def _token(harness: Harness) -> str:
    return harness.token("medical_insurance", "province", harness.persons[0].region_code[:2])


async def _post(
    harness: Harness,
    accept: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
) -> httpx.Response:
    sent = headers(_token(harness))
    if accept is not None:
        sent["Accept"] = accept
    return await harness.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=sent
    )


def _media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        (NEW, NEW),
        (f"{NEW}, application/json;q=0.9", NEW),
        (f"application/json, {NEW}", NEW),  # a tie: the specification's own type
        (f"application/json, {NEW};q=0.5", JSON),
        (f"{NEW};charset=utf-8", NEW),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),  # a browser
        ("text/html", None),
        ("application/xml", None),
        (f"{NEW};q=0", None),
        ("application/json; charset=latin-1", None),
    ],
)
def test_response_media_type(accept: str | None, chosen: str | None) -> None:
    assert response_media_type(accept) == chosen


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("accept", [NEW, "application/json", "*/*", None])
async def test_success_is_200_in_the_negotiated_type(harness: Harness, accept: str | None) -> None:
    response = await _post(harness, accept, ME)
    assert response.status_code == 200, response.text
    assert _media_type(response) == (NEW if accept == NEW else JSON)
    assert response.json()["data"]["me"]["department"] == "MEDICAL_INSURANCE"


# --------------------------------------------------------------------------- request errors


REQUEST_ERRORS = {
    "syntax": ("{ me { region ", None),
    "validation": ("{ me { nope } }", None),
    "variable-coercion": ("query($n: Int!) { persons(first: $n) { totalCount } }", {"n": "x"}),
    "missing-variable": ("query($n: Int!) { persons(first: $n) { totalCount } }", None),
}


@pytest.mark.parametrize("case", ["syntax", "validation", "variable-coercion", "missing-variable"])
async def test_request_error_is_400_without_data_in_the_new_type(
    harness: Harness, case: str
) -> None:
    query, variables = REQUEST_ERRORS[case]
    response = await _post(harness, NEW, query, variables)
    assert response.status_code == 400, response.text
    assert _media_type(response) == NEW
    body = response.json()
    assert "data" not in body
    assert body["errors"]
    assert response.headers["x-request-id"] == body["errors"][0]["extensions"]["requestId"]


@pytest.mark.parametrize("case", ["syntax", "validation", "variable-coercion", "missing-variable"])
async def test_request_error_is_200_under_application_json(harness: Harness, case: str) -> None:
    """Legacy clients: every well-formed request is 200, the errors in the body."""
    query, variables = REQUEST_ERRORS[case]
    response = await _post(harness, "application/json", query, variables)
    assert response.status_code == 200, response.text
    assert _media_type(response) == JSON
    assert response.json()["data"] is None
    assert response.json()["errors"]


async def test_query_limit_refusal_is_a_request_error(harness: Harness) -> None:
    aliases = "{ " + " ".join(f"a{i}: me {{ region }}" for i in range(51)) + " }"
    response = await _post(harness, NEW, aliases)
    assert response.status_code == 400
    assert codes(response.json()) == ["QUERY_TOO_COMPLEX"]
    legacy = await _post(harness, JSON, aliases)
    assert legacy.status_code == 200
    assert codes(legacy.json()) == ["QUERY_TOO_COMPLEX"]


async def test_field_error_is_200_with_data_in_the_new_type(harness: Harness) -> None:
    """A field error (here a page size out of range) is not a request error: it executed."""
    response = await _post(harness, NEW, "{ me { region } persons(first: 100000) { totalCount } }")
    assert response.status_code == 200, response.text
    assert _media_type(response) == NEW
    body = response.json()
    assert "data" in body
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["persons"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/plain"])
async def test_unsupported_accept_is_406(harness: Harness, accept: str) -> None:
    response = await _post(harness, accept, ME)
    assert response.status_code == 406
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    get = await harness.client.get(
        "/graphql", params={"query": ME}, headers=headers(_token(harness), Accept=accept)
    )
    assert get.status_code == 406
    served = await _post(harness, f"{accept}, application/json;q=0.1", ME)
    assert served.status_code == 200


@pytest.mark.parametrize("accept", [NEW, JSON])
async def test_missing_document_is_400(harness: Harness, accept: str) -> None:
    response = await harness.client.post(
        "/graphql", json={"variables": {}}, headers=headers(_token(harness), Accept=accept)
    )
    assert response.status_code == 400
    assert _media_type(response) == accept
    assert codes(response.json()) == ["BAD_USER_INPUT"]


async def test_http_refusals_use_the_negotiated_type(harness: Harness) -> None:
    unauthenticated = await harness.client.post(
        "/graphql", json={"query": ME}, headers={"Accept": NEW}
    )
    assert unauthenticated.status_code == 401
    assert _media_type(unauthenticated) == NEW
    mutation_over_get = await harness.client.get(
        "/graphql",
        params={"query": "mutation { __typename }"},
        headers=headers(_token(harness), Accept=NEW),
    )
    assert mutation_over_get.status_code == 405
    assert mutation_over_get.headers["allow"] == "POST"
    assert _media_type(mutation_over_get) == NEW
    assert codes(mutation_over_get.json()) == ["METHOD_NOT_ALLOWED"]


async def test_get_query_in_the_new_type(harness: Harness) -> None:
    response = await harness.client.get(
        "/graphql", params={"query": ME}, headers=headers(_token(harness), Accept=NEW)
    )
    assert response.status_code == 200
    assert _media_type(response) == NEW
    assert response.json()["data"]["me"]["region"]
