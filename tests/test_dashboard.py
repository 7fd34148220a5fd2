"""The oversight dashboard (运行监测) over HTTP: the page and its files, the console's security
headers, nothing loaded from outside, no inline script, the vendored scripts matching the
hashes recorded in index.html and LICENSES.md, and every GraphQL document valid against the
schema and free of person fields. (The page in a browser: tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from graphql import DocumentNode, FieldNode, parse, validate
from graphql.language import Visitor, visit

from gateway.crypto import Keyring
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.console import SECURITY_HEADERS
from gateway.http.dashboard import dashboard_directory
from gateway.runtime.parts import Runtime
from gateway.runtime.tokens import TokenService
from schema import build_schema

MODULE_IMPORT = re.compile(r"""^\s*import\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["'];""", re.M)
PERSON_FIELDS = {"persons", "person", "notEnrolled", "idNumber", "name", "phone", "address"}
VENDORED = ("echarts.common.min.js", "write-excel-file.min.js")


@pytest.fixture(scope="module", params=["development", "production"])
async def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a gateway serves it (the page needs no database); production too."""
    data_dir = tmp_path_factory.mktemp(f"dashboard-{request.param}")
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


def _modules() -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(dashboard_directory().glob("*.js"))
    }


def _index() -> str:
    return (dashboard_directory() / "index.html").read_text(encoding="utf-8")


def _sha384(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
async def test_page_is_served_in_chinese(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="zh-CN">' in page.text
    for label in ("运行监测", "访问令牌", "参保覆盖", "高额费用预警", "推送任务", "共享统计"):
        assert label in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/dashboard.js",
        "/dashboard/dashboard.css",
        "/dashboard/regions.json",
        "/dashboard/vendor/echarts.common.min.js",
        "/dashboard/nothing.js",
    ],
)
async def test_security_headers_are_the_consoles(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    for name, value in SECURITY_HEADERS.items():
        if name == "Cache-Control" and "/vendor/" in path:
            continue  # public code: revalidated, not re-downloaded (below)
        assert response.headers[name] == value, (path, name)
    assert "connect-src 'self'" in response.headers["content-security-policy"]


async def test_vendored_scripts_are_revalidated_from_cache(client: httpx.AsyncClient) -> None:
    first = await client.get("/dashboard/vendor/write-excel-file.min.js")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    again = await client.get(
        "/dashboard/vendor/write-excel-file.min.js",
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_regions_are_served(client: httpx.AsyncClient) -> None:
    regions = (await client.get("/dashboard/regions.json")).json()
    codes = {p["code"] for p in regions["provinces"]}
    assert {"37", "14", "34"} <= codes


def test_no_inline_script_or_style_and_nothing_from_outside() -> None:
    page = _index()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert len(scripts) == 3
    for attributes, body in scripts:
        assert body.strip() == ""
        assert 'src="/dashboard/' in attributes
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers are inline script"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert [a for a in assets if not a.startswith(("/dashboard/", "data:"))] == []
    for name, source in _modules().items():
        assert not re.search(r"""["'`](?:https?:)?//""", source), f"{name} names an outside URL"
        assert not re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML", source), name
        assert "eval(" not in source
        assert "fetch(" not in source or name in {"api.js", "regions.js"}, name


def test_vendored_scripts_match_their_recorded_hashes() -> None:
    """index.html's integrity attributes (checked by the browser) and LICENSES.md record the
    same SHA-384 as the files: a changed file or a stale record fails here."""
    page = _index()
    licences = (dashboard_directory() / "LICENSES.md").read_text(encoding="utf-8")
    for name in VENDORED:
        digest = _sha384(dashboard_directory() / "vendor" / name)
        tag = re.search(rf'<script defer src="/dashboard/vendor/{re.escape(name)}"[^>]*>', page)
        assert tag, name
        assert f'integrity="{digest}"' in tag.group(0), name
        assert f"`{digest}`" in licences, name
    assert "Apache License" in licences  # ECharts' licence text travels with it
    assert licences.count("MIT License") >= 2  # write-excel-file and the fflate it bundles
    assert not re.search(r"new Function|\beval\(", _vendored_text("echarts.common.min.js"))


def _vendored_text(name: str) -> str:
    return (dashboard_directory() / "vendor" / name).read_text(encoding="utf-8")


async def test_every_module_import_resolves(client: httpx.AsyncClient) -> None:
    modules = _modules()
    seen: set[str] = set()
    pending = ["dashboard.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await client.get(f"/dashboard/{name}")
        assert response.status_code == 200, f"{name} is imported but not served"
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        for target in MODULE_IMPORT.findall(response.text):
            assert target.startswith("./"), f"{name} imports {target}"
            pending.append(target.removeprefix("./"))
    assert seen == set(modules), f"modules nobody imports: {set(modules) - seen}"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/missing.js",
        "/dashboard/..%2Fdashboard.py",
        "/dashboard/LICENSES.md",
        "/dashboard/vendor/..%2F..%2Fdashboard.py",
        "/dashboard/vendor/echarts.common.min.js.map",
    ],
)
async def test_only_the_dashboard_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "def " not in response.text


def test_dashboard_is_packaged() -> None:
    """The page and its vendored scripts ship with the wheel (pyproject package-data)."""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8")
    assert '"http/static/dashboard/*"' in pyproject
    assert '"http/static/dashboard/vendor/*"' in pyproject


# --------------------------------------------------------------------------- the page's queries


def _documents() -> dict[str, str]:
    source = _modules()["queries.js"]
    documents: dict[str, str] = {}
    for name, body in re.findall(r"^(?:export )?const (\w+) = `([^`]*)`;", source, re.M):
        documents[name] = re.sub(r"\$\{(\w+)\}", lambda m: documents[m.group(1)], body)
    return {name: doc for name, doc in documents.items() if re.match(r"\s*query\b", doc)}


def _field_names(document: DocumentNode) -> set[str]:
    names: set[str] = set()

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: object) -> None:
            names.add(node.name.value)

    visit(document, Fields())
    return names


def test_queries_are_valid_aggregates_only() -> None:
    documents = _documents()
    assert set(documents) == {"ME", "COVERAGE", "WARNINGS", "TASKS", "SHARING"}
    graphql_schema = build_schema()._schema
    for name, document in documents.items():
        parsed = parse(document)
        assert validate(graphql_schema, parsed) == [], name
        fields = _field_names(parsed)
        assert not fields & PERSON_FIELDS, (name, fields & PERSON_FIELDS)
        assert "mutation" not in document
