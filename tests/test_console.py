"""The administrators' console over HTTP: the page and its files, their security headers,
nothing loaded from outside, no inline script, every GraphQL document the page sends valid
against the gateway's schema, and each administrator role's screens kept out of the document
until that role signs in (三权分立). (The page driven in a browser:
tests/test_console_browser.py.)"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from graphql import parse, validate

from gateway.crypto import Keyring
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.console import console_directory
from gateway.runtime.parts import Runtime
from gateway.runtime.tokens import TokenService
from schema import build_schema

CHINESE = re.compile(r"[\u4e00-\u9fff]")
MODULE_IMPORT = re.compile(r"""^\s*import\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["'];""", re.M)


@pytest.fixture(scope="module", params=["development", "production"])
async def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a gateway serves it; the console needs no database, so none is started.
    Production too: officers govern the policy there."""
    data_dir = tmp_path_factory.mktemp(f"console-{request.param}")
    Keyring.generate("aes-256-gcm+hmac-sha256").save(data_dir / "keyring.json")
    TokenService.from_file(data_dir / "token.key", "relief-gateway", create=True)
    today = os.environ.pop("RELIEF_TODAY", None)  # production refuses a pinned clock
    try:
        settings = load_settings(
            env=request.param,
            province="shandong",
            data_dir=data_dir,
            database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
        )
        runtime = Runtime.create(settings)
    finally:
        if today is not None:
            os.environ["RELIEF_TODAY"] = today
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http
    await runtime.close()


def _assets(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def _modules() -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(console_directory().glob("*.js"))
    }


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize("path", ["/console", "/console/"])
async def test_console_page_is_served_in_chinese(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="zh-CN">' in page.text
    title = re.search(r"<title>(.*?)</title>", page.text)
    assert title
    assert CHINESE.search(title.group(1))
    for label in ("登录", "访问令牌", "策略表", "审批", "审计", "校验哈希链", "系统管理"):
        assert label in page.text


ROLE_SCREENS = {
    "security_admin": ["policy", "review"],
    "audit_admin": ["audit"],
    "system_admin": ["system", "deliveries"],
}


async def test_screens_are_templates_until_a_role_signs_in(client: httpx.AsyncClient) -> None:
    """No screen is part of the document as served: each is an inert <template> that
    console.js copies in for the signed-in role only (not hidden by CSS: absent)."""
    page = (await client.get("/console")).text
    outside = re.sub(r"<template\b.*?</template>", "", page, flags=re.S)
    assert 'role="tabpanel"' not in outside
    assert 'role="tab"' not in outside
    assert re.search(r'<nav [^>]*id="tabs"[^>]*></nav>', outside)
    assert '<div id="screens"></div>' in outside
    templates = dict(re.findall(r'<template id="([\w-]+)">(.*?)</template>', page, re.S))
    for role, screens in ROLE_SCREENS.items():
        tabs = templates[f"tabs-{role}"]
        assert re.findall(r'id="tab-(\w+)"', tabs) == screens, role
        for screen in screens:
            assert f'<section id="panel-{screen}" role="tabpanel"' in templates[f"screen-{screen}"]
    # console.js maps exactly these roles to exactly these screens, in this order.
    source = _modules()["console.js"]
    block = re.search(r"export const ROLE_SCREENS = \{(.*?)\n\};", source, re.S)
    assert block
    mapped = dict(re.findall(r"(\w+): \{ ([\w, ]+) \}", block.group(1)))
    assert {role: names.split(", ") for role, names in mapped.items()} == ROLE_SCREENS


async def test_console_security_headers(client: httpx.AsyncClient) -> None:
    for path in ["/console", "/console/console.js", "/console/console.css", "/console/nothing.js"]:
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'", path
        assert directives["script-src"] == "'self'", path  # no 'unsafe-inline', no 'unsafe-eval'
        assert directives["style-src"] == "'self'", path
        assert directives["frame-ancestors"] == "'none'", path
        assert "unsafe" not in csp
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path


async def test_console_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    """The CSP forbids inline code; the page must not need any (it would silently break)."""
    page = (await client.get("/console")).text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, "the page loads its module"
    for attributes, body in scripts:
        assert 'type="module"' in attributes
        assert 'src="/console/' in attributes
        assert body.strip() == ""
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers are inline script"
    assert "javascript:" not in page


async def test_console_loads_nothing_from_outside(client: httpx.AsyncClient) -> None:
    page = (await client.get("/console")).text
    # /auth/: the sign-in shared with the workbench (gateway.http.signin)
    external = [a for a in _assets(page) if not a.startswith(("/console/", "/auth/", "data:"))]
    assert external == [], f"the console would need internet for {external}"
    for name, source in _modules().items():
        assert not re.search(r"""["'`](?:https?:)?//""", source), f"{name} names an outside URL"
        markup = re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", source)
        assert not markup, f"{name}: text from the API must never become markup"
        assert "eval(" not in source
        # The page talks to the gateway only, through one place.
        if name != "api.js":
            assert "fetch(" not in source, name
    assert 'fetch("/graphql"' in _modules()["api.js"]


async def test_console_files_are_served_with_their_types(client: httpx.AsyncClient) -> None:
    page = (await client.get("/console")).text
    css = [a for a in _assets(page) if a.endswith(".css")]
    assert css == ["/console/console.css", "/auth/signin.css"]
    stylesheet = await client.get(css[0])
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"] == "text/css; charset=utf-8"
    for name in _modules():
        script = await client.get(f"/console/{name}")
        assert script.status_code == 200, name
        # ES modules are only run when served as JavaScript.
        assert script.headers["content-type"] == "text/javascript; charset=utf-8", name


async def test_every_module_import_resolves(client: httpx.AsyncClient) -> None:
    """Plain ES modules, no bundler: each relative import must be a file the gateway serves."""
    modules = _modules()
    seen: set[str] = set()
    pending = ["console.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await client.get(f"/console/{name}")
        assert response.status_code == 200, f"{name} is imported but not served"
        for target in MODULE_IMPORT.findall(response.text):
            if target == "/auth/signin.js":  # the sign-in shared with the workbench
                continue
            assert target.startswith("./"), f"{name} imports {target}: only the console's own files"
            pending.append(target.removeprefix("./"))
    assert seen == set(modules), f"modules nobody imports: {set(modules) - seen}"


@pytest.mark.parametrize(
    "path",
    [
        "/console/missing.js",
        "/console/..%2Fapp.py",
        "/console/%2E%2E%2Fconsole.py",
        "/console/index.html%00.js",
        "/console/console.js.map",
    ],
)
async def test_only_the_console_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text
    assert "def " not in response.text


async def test_missing_file_is_refused_in_chinese(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/missing.js")
    assert response.status_code == 404
    assert CHINESE.search(response.text)


async def test_head_requests(client: httpx.AsyncClient) -> None:
    response = await client.head("/console")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"


def test_console_is_packaged() -> None:
    """The files ship with the package (pyproject package-data), not only in the checkout."""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8")
    assert '"http/static/console/*"' in pyproject


# --------------------------------------------------------------------------- the page's queries


def _documents() -> dict[str, str]:
    """queries.js's constants, with its `${NAME}` interpolations of earlier constants applied."""
    source = _modules()["queries.js"]
    documents: dict[str, str] = {}
    for name, body in re.findall(r"^(?:export )?const (\w+) = `([^`]*)`;", source, re.M):
        documents[name] = re.sub(r"\$\{(\w+)\}", lambda m: documents[m.group(1)], body)
    return documents


def test_console_queries_are_valid_against_the_schema() -> None:
    documents = _documents()
    operations = {name: doc for name, doc in documents.items() if name.isupper() and "{" in doc}
    expected = {"ME", "MATRIX", "POLICIES", "PROPOSE", "PROPOSALS", "APPROVE", "REJECT"}
    expected |= {"VERSIONS", "ROLLBACK", "SIMULATE", "AUDIT_LOG", "AUDIT_CHAIN", "EXPLAIN"}
    assert expected <= set(operations)
    graphql_schema = build_schema()._schema
    problems = {}
    for name, document in operations.items():
        if not re.match(r"\s*(query|mutation)\b", document):
            continue  # a shared selection, checked inside the documents that use it
        errors = validate(graphql_schema, parse(document))
        if errors:
            problems[name] = [error.message for error in errors]
    assert problems == {}
