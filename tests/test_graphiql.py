"""GraphiQL works without internet: every script and stylesheet comes from the gateway."""

from __future__ import annotations

import base64
import hashlib
import re

from graphql import get_introspection_query

from tests.harness import Harness


async def test_graphiql_page_loads_nothing_from_outside(harness: Harness) -> None:
    page = await harness.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    addresses = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    external = [a for a in addresses if a.startswith(("http:", "https:", "//"))]
    assert external == [], f"GraphiQL would need internet for {external}"


async def test_vendored_assets_are_served_and_match_their_integrity_hashes(
    harness: Harness,
) -> None:
    page = (await harness.client.get("/graphql", headers={"Accept": "text/html"})).text
    pairs = re.findall(
        r'(?:src|href)="(/graphiql-assets/[^"]+)"\s+integrity="sha384-([^"]+)"', page
    )
    assert len(pairs) == 7
    for path, expected in pairs:
        asset = await harness.client.get(path)
        assert asset.status_code == 200, path
        digest = base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
        assert digest == expected, path


async def test_graphiql_schema_query_is_not_refused_by_the_depth_limit(harness: Harness) -> None:
    """GraphiQL asks for the schema as soon as it opens; that must work in development."""
    token = harness.token("civil_affairs", "county", harness.busiest_county())
    body = await harness.query(token, get_introspection_query(descriptions=True))
    assert "errors" not in body, body.get("errors")
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
