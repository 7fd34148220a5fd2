"""GraphiQL's example query is the caller's own (issue 15 item 2): no FORBIDDEN on the first run.

A real gateway and Debian's chromium (as tests/test_console_browser.py). For each department
(and the demo's levels) the page is opened as the demo opens it — the token and purpose in the
``headers`` parameter, with the demo's generic example or with no query at all — and the query
the page prefills (derived from ``me.fieldAccess`` at load) is then run as that caller: it
answers without a single error, where the demo's generic example gave civil affairs FORBIDDEN
errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from gateway.cli.serving import DEMO_QUERY
from tests.test_console_browser import ARTIFACTS, TIMEOUT_MS, Gateway, _chromium
from tests.test_console_browser import gateway as gateway  # the served, seeded gateway

pytestmark = pytest.mark.slow

# (department, level, purpose): the eight departments at county level, and the demo's others.
CALLERS = [
    ("medical_insurance", "county", "benefit_settlement"),
    ("civil_affairs", "county", "relief_recognition"),
    ("rural_revitalization", "county", "relief_recognition"),
    ("health", "county", "enrollment_verification"),
    ("public_security", "county", "supervision"),
    ("disabled_federation", "county", "supervision"),
    ("human_resources", "county", "supervision"),
    ("big_data", "county", "supervision"),
    ("medical_insurance", "province", "benefit_settlement"),
    ("health", "city", "enrollment_verification"),
]


@dataclass
class Caller:
    token: str
    purpose: str


def _region(gateway: Gateway, level: str) -> str:
    return {"province": gateway.county[:2], "city": gateway.county[:4], "county": gateway.county}[
        level
    ]


def _caller(gateway: Gateway, dept: str, level: str, purpose: str) -> Caller:
    from gateway.domain.settings import load_settings
    from gateway.runtime.tokens import TokenService

    settings = load_settings(data_dir=gateway.data_dir)
    tokens = TokenService.from_file(settings.token_key_path, settings.token_issuer, create=False)
    token = tokens.mint(
        subject=f"graphiql-{dept}-{level}", dept=dept, level=level, region=_region(gateway, level)
    )
    return Caller(token, purpose)


def _run(gateway: Gateway, caller: Caller, query: str) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.base}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {caller.token}", "X-Purpose": caller.purpose},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        yield launched
        launched.close()


def _prefilled(
    browser: Browser, gateway: Gateway, caller: Caller, query: str | None, name: str
) -> str:
    """The query the page shows, opened as the demo's link opens it."""
    headers = {"Authorization": f"Bearer {caller.token}", "X-Purpose": caller.purpose}
    url = f"{gateway.base}/graphql?headers={quote(json.dumps(headers))}"
    if query is not None:
        url += f"&q={quote(query)}"
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_selector('#graphiql[data-prefilled="true"]')
        page.wait_for_selector(".graphiql-query-editor")
        shown = parse_qs(urlsplit(page.url).query)["q"][0]
        assert "MyDepartment" in page.locator(".graphiql-query-editor").inner_text()
        page.wait_for_timeout(300)  # the editor's highlighting, for the screenshot
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"graphiql-{name}.png"))
    finally:
        context.close()
    assert problems == [], problems
    return shown


@pytest.mark.parametrize(
    ("dept", "level", "purpose"), CALLERS, ids=[f"{d}-{lv}" for d, lv, _ in CALLERS]
)
def test_prefilled_query_has_no_forbidden_field(
    browser: Browser, gateway: Gateway, dept: str, level: str, purpose: str
) -> None:
    caller = _caller(gateway, dept, level, purpose)
    for opened_with, how in ((DEMO_QUERY, "demo-link"), (None, "no-query")):
        query = _prefilled(browser, gateway, caller, opened_with, f"{dept}-{level}-{how}")
        assert query.startswith("# 示例 (本部门)"), query
        body = _run(gateway, caller, query)
        assert body.get("errors") is None, (dept, level, query, body.get("errors"))
        me = body["data"]["me"]
        assert (me["department"], me["level"]) == (dept.upper(), level.upper())


def test_the_generic_demo_query_was_the_problem(gateway: Gateway) -> None:
    """Why the prefill exists: the demo's one example asks civil affairs for fields it may not
    read (FORBIDDEN at their paths)."""
    caller = _caller(gateway, "civil_affairs", "county", "relief_recognition")
    body = _run(gateway, caller, DEMO_QUERY)
    assert {e["extensions"]["code"] for e in body.get("errors", [])} == {"FORBIDDEN"}


def test_a_query_of_ones_own_is_kept(browser: Browser, gateway: Gateway) -> None:
    caller = _caller(gateway, "civil_affairs", "county", "relief_recognition")
    own = "query MyDepartment { me { region } }"
    assert _prefilled(browser, gateway, caller, own, "own-query") == own
