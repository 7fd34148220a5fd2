"""The seeded gateway under other hardening settings, for tests/test_hardening.py and friends.

``variant(harness, max_query_cost=100)`` serves the harness's database, keys and policies with
those ``RELIEF_*`` settings changed, wired the way ``Runtime.create`` wires them (schema limits,
rate limiter, trusted documents, CORS), so one seeded database serves every configuration.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.http.app import create_app
from gateway.runtime.rate_limit import RateLimiter
from gateway.runtime.trusted_documents import TrustedDocuments
from schema import build_schema
from schema.limits import QueryLimits
from tests.harness import Harness

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ME = "{ me { department level region } }"


@asynccontextmanager
async def variant(harness: Harness, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = harness.runtime.settings.model_copy(update=overrides)
    runtime = dataclasses.replace(
        harness.runtime,
        settings=settings,
        schema=build_schema(
            production=settings.is_production, limits=QueryLimits.from_settings(settings)
        ),
        rate_limiter=RateLimiter.from_settings(settings),
        trusted_documents=TrustedDocuments.load(settings.trusted_documents_dir),
    )
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Purpose": "supervision", **extra}


async def post(
    client: httpx.AsyncClient,
    token: str,
    query: str | None,
    variables: dict[str, Any] | None = None,
    **extra: Any,
) -> httpx.Response:
    payload: dict[str, Any] = {"variables": variables, **extra}
    if query is not None:
        payload["query"] = query
    return await client.post("/graphql", json=payload, headers=headers(token))


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def refused(response: httpx.Response, code: str, status: int = 200) -> str:
    """The single error's message, after checking status, code, Chinese text and no data."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("data") is None, body
    assert codes(body) == [code], body
    message: str = body["errors"][0]["message"]
    assert CHINESE.search(message), message
    assert "Traceback" not in response.text
    return message


def served(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data
