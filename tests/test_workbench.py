"""The departments' workbench over HTTP: the page and its files, the console's security headers,
nothing loaded from outside, no inline script, every GraphQL document valid against the schema,
and the page's tables (feeds, answers, categories, enum names) the same as the gateway's.
(The page driven in a browser: tests/test_workbench_browser.py.)"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from graphql import GraphQLEnumType, parse, validate

from adapters.mapping import load_feeds
from gateway.crypto import Keyring
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.console import SECURITY_HEADERS
from gateway.http.workbench import workbench_directory
from gateway.loop.tasks import ANSWERS_BY_KIND, recognisable_categories
from gateway.runtime.parts import Runtime
from gateway.runtime.tokens import TokenService
from schema import build_schema

CHINESE = re.compile(r"[\u4e00-\u9fff]")
MODULE_IMPORT = re.compile(
    r"""^\s*(?:import|export)\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["'];""", re.M
)


@pytest.fixture(scope="module", params=["development", "production"])
async def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a gateway serves it; the page needs no database, so none is started.
    Production too: departments work there."""
    data_dir = tmp_path_factory.mktemp(f"workbench-{request.param}")
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
        for path in sorted(workbench_directory().glob("*.js"))
    }


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize("path", ["/workbench", "/workbench/"])
async def test_workbench_page_is_served_in_chinese(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="zh-CN">' in page.text
    title = re.search(r"<title>(.*?)</title>", page.text)
    assert title
    assert "部门工作台" in title.group(1)
    for label in ("登录", "访问令牌", "待办", "预警", "异常回传", "数据报送", "救助链"):
        assert label in page.text


async def test_workbench_has_the_consoles_security_headers(client: httpx.AsyncClient) -> None:
    for path in ["/workbench", "/workbench/workbench.js", "/workbench/workbench.css"]:
        response = await client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name.lower()] == value, (path, name)
        csp = dict(
            d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";")
        )
        assert csp["script-src"] == "'self'"
        assert csp["style-src"] == "'self'"
        assert csp["connect-src"] == "'self'"
        assert "unsafe" not in response.headers["content-security-policy"]
    missing = await client.get("/workbench/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["x-frame-options"] == "DENY"


async def test_workbench_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    page = (await client.get("/workbench")).text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, "the page loads its module"
    for attributes, body in scripts:
        assert 'type="module"' in attributes
        assert 'src="/workbench/' in attributes
        assert body.strip() == ""
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers are inline script"
    assert "javascript:" not in page


async def test_workbench_loads_nothing_from_outside(client: httpx.AsyncClient) -> None:
    page = (await client.get("/workbench")).text
    own = ("/workbench/", "/console/", "/auth/", "data:")  # /auth/: the shared sign-in
    external = [a for a in _assets(page) if not a.startswith(own)]
    assert external == [], f"the workbench would need internet for {external}"
    for name, source in _modules().items():
        assert not re.search(r"""["'`](?:https?:)?//""", source), f"{name} names an outside URL"
        markup = re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", source)
        assert not markup, f"{name}: text from the API must never become markup"
        assert "eval(" not in source
        # The page talks to the gateway only, through one place.
        if name != "api.js":
            assert "fetch(" not in source, name
            assert "XMLHttpRequest" not in source, name
    api = _modules()["api.js"]
    assert 'fetch("/graphql"' in api
    assert "/ingest/upload?" in api


async def test_every_module_import_resolves(client: httpx.AsyncClient) -> None:
    """Plain ES modules, no bundler: each import is a file the gateway serves (the workbench's
    own, the console's shared helpers or the shared sign-in), and every workbench module is
    used."""
    seen: set[str] = set()
    pending = ["/workbench/workbench.js"]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        response = await client.get(path)
        assert response.status_code == 200, f"{path} is imported but not served"
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
        base = path.rsplit("/", 1)[0]
        for target in MODULE_IMPORT.findall(response.text):
            # the workbench's own, the console's helpers, the shared sign-in (/auth/signin.js)
            assert target.startswith(("./", "/console/", "/auth/")), f"{path} imports {target}"
            pending.append(f"{base}/{target[2:]}" if target.startswith("./") else target)
    own = {f"/workbench/{name}" for name in _modules()}
    assert own <= seen, f"modules nobody imports: {own - seen}"


@pytest.mark.parametrize(
    "path",
    ["/workbench/missing.js", "/workbench/..%2Fapp.py", "/workbench/index.html%00.js"],
)
async def test_only_the_workbench_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert CHINESE.search(response.text)
    assert "import" not in response.text


# --------------------------------------------------------------------------- the page's queries


def _documents() -> dict[str, str]:
    """queries.js's constants, with its `${NAME}` interpolations of earlier constants applied."""
    source = _modules()["queries.js"]
    documents: dict[str, str] = {}
    for name, body in re.findall(r"^(?:export )?const (\w+) = `([^`]*)`;", source, re.M):
        documents[name] = re.sub(r"\$\{(\w+)\}", lambda m: documents[m.group(1)], body)
    return documents


def test_workbench_queries_are_valid_against_the_schema() -> None:
    documents = _documents()
    operations = {n: d for n, d in documents.items() if re.match(r"\s*(query|mutation)\b", d)}
    expected = {"ME", "ME_PURPOSE", "TASKS", "OPEN_TASKS", "ANSWER_TASK", "WARNINGS"}
    expected |= {"ANOMALIES", "RESOLVE_ANOMALY", "BATCHES", "RELIEF_CHAIN"}
    assert expected <= set(operations)
    graphql_schema = build_schema()._schema
    problems = {}
    for name, document in operations.items():
        errors = validate(graphql_schema, parse(document))
        if errors:
            problems[name] = [error.message for error in errors]
    assert problems == {}


# --------------------------------------------------------------------------- the page's tables


def _js_object(module: str, name: str) -> str:
    match = re.search(rf"export const {name} = (\{{.*?\n\}});", _modules()[module], re.S)
    assert match, f"{module} has no {name}"
    return match.group(1)


def _keys(body: str) -> set[str]:
    return set(re.findall(r"^\s*([A-Z_]+):", body, re.M))


@pytest.mark.parametrize(
    ("table", "enum"),
    [
        ("CATEGORIES", "ReliefCategory"),
        ("TASK_STATES", "TaskState"),
        ("TASK_KINDS", "TaskKind"),
        ("ANSWERS", "TaskAnswer"),
        ("ANOMALY_KINDS", "AnomalyKind"),
        ("ANOMALY_STATUSES", "AnomalyStatus"),
        ("RESOLUTIONS", "AnomalyResolution"),
        ("BATCH_STATUSES", "BatchStatus"),
        ("CHANNELS", "IngestChannel"),
        ("CHAIN_EVENTS", "ChainEventKind"),
        ("MEASURES", "WarningMeasure"),
        ("GENDERS", "Gender"),
    ],
)
def test_every_enum_value_has_a_chinese_name(table: str, enum: str) -> None:
    enum_type = build_schema()._schema.type_map[enum]
    assert isinstance(enum_type, GraphQLEnumType)
    body = _js_object("words.js", table)
    assert _keys(body) == set(enum_type.values), table
    for line in body.splitlines()[1:-1]:
        assert CHINESE.search(line), f"{table}: {line.strip()} is not in Chinese"


def test_answers_by_kind_are_the_gateways() -> None:
    body = _js_object("words.js", "ANSWERS_BY_KIND")
    for kind, answers in ANSWERS_BY_KIND.items():
        match = re.search(rf"{kind.value}: \[([^\]]*)\]", body)
        assert match, kind
        assert set(re.findall(r'"([A-Z_]+)"', match.group(1))) == {a.value for a in answers}


def test_recognised_categories_are_the_gateways() -> None:
    feeds = load_feeds([])
    body = _js_object("words.js", "RECOGNISES")
    departments = {owner for owner, _ in feeds}
    for department in departments:
        expected = recognisable_categories(feeds, department)
        match = re.search(rf"{department}: \[([^\]]*)\]", body)
        found = set(re.findall(r'"([A-Z_]+)"', match.group(1))) if match else set()
        assert found == expected, department


def test_the_feeds_table_is_the_shipped_mappings() -> None:
    """feeds.js hardcodes the feeds (the API lists none): the same as adapters/mappings."""
    body = _js_object("feeds.js", "FEEDS")
    table = {
        (department, feed): title
        for department, feeds in re.findall(r"^\s*(\w+): \{(.*?)\},?$", body, re.M)
        for feed, title in re.findall(r'(\w+): "([^"]+)"', feeds)
    }
    shipped = {key: feed.title for key, feed in load_feeds([]).items()}
    assert table == shipped
