"""A seeded gateway for tests, built through the same paths users take: ``migrate``, the
synthetic ``seed`` writer, the default policies, signed tokens and HTTP requests.

``Harness.bundles`` holds the plaintext that was seeded (the generator is deterministic), so
tests compute what each caller should see independently of the gateway.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from gateway.domain import clock
from gateway.domain.records import HouseholdBundle, PersonRecord
from gateway.domain.settings import load_settings
from gateway.domain.synthetic import generate_population
from gateway.http.app import create_app
from gateway.runtime.parts import Runtime
from gateway.storage.migrate import upgrade_to_head
from gateway.storage.writer import write_bundles

SEED_PERSONS = 900
SEED = 20261123


@dataclass
class Harness:
    runtime: Runtime
    bundles: list[HouseholdBundle]
    backend: str
    today: date
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- seeded plaintext
    @property
    def persons(self) -> list[PersonRecord]:
        return [member for bundle in self.bundles for member in bundle.members]

    def person_by_id(self) -> dict[uuid.UUID, PersonRecord]:
        return {p.person_id: p for p in self.persons}

    def busiest_county(self) -> str:
        counts = Counter(p.region_code[:6] for p in self.persons)
        return max(sorted(counts), key=lambda code: counts[code])

    # ---------------------------------------------------------------- requests
    def token(
        self,
        dept: str,
        level: str,
        region: str,
        *,
        roles: list[str] | None = None,
        subject: str | None = None,
        ttl_seconds: int = 600,
    ) -> str:
        return self.runtime.tokens.mint(
            subject=subject or f"test-{dept}-{level}-{region}",
            dept=dept,
            level=level,
            region=region,
            roles=roles,
            ttl_seconds=ttl_seconds,
        )

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            app = create_app(self.runtime)
            self._client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
            )
        return self._client

    async def post(
        self,
        token: str | None,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        purpose: str | None = "supervision",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if purpose:
            sent["X-Purpose"] = purpose
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=sent
        )

    async def query(
        self, token: str, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """POST a query and return the JSON body (status must be 200)."""
        response = await self.post(token, query, variables, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        await self.runtime.close()


async def build_harness(
    data_dir: Path,
    database_url: str,
    *,
    backend: str,
    persons: int = SEED_PERSONS,
    seed: int = SEED,
    cipher_suite: str = "aes-256-gcm+hmac-sha256",
) -> Harness:
    settings = load_settings(
        data_dir=data_dir,
        database_url=database_url,
        cipher_suite=cipher_suite,
        # no webhook worker beside the requests: its polls would run among the statements tests
        # count; the delivery tests start workers of their own (tests/delivery_support.py)
        delivery_worker=False,
    )
    runtime = Runtime.create(settings, create_keys=True)
    await upgrade_to_head(runtime.engine)
    today = clock.today()
    bundles = list(generate_population(persons, seed=seed, today=today))
    async with runtime.sessions() as session:
        await write_bundles(session, runtime.vault, bundles)
    await runtime.start()
    return Harness(runtime=runtime, bundles=bundles, backend=backend, today=today)
