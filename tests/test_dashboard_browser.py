"""The oversight dashboard (运行监测) in a real headless Chromium, on SQLite and PostgreSQL.

A real gateway (``relief-gateway seed`` + ``warn run`` for three months + ``serve``, Shanxi rules
so the fixed 6,000/20,000 yuan lines produce warnings and tasks) and Debian's chromium through
Playwright (never a downloaded browser; without chromium this FAILS). A province oversight user
signs in by pasting a token, sees coverage against the 99% line, drills province → city (a
click on a bar) → county (the region selector), and exports every view to XLSX, read back with
openpyxl. Every /graphql request and response the page makes is recorded: none may name or
return a person field, and no request may leave 127.0.0.1. Screenshots of every view are kept
in ``$RELIEF_TEST_ARTIFACTS`` (default ``tests/artifacts/dashboard/``, gitignored), with the
page's weight and time to interactive in ``metrics-<backend>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from graphql import FieldNode, OperationDefinitionNode, parse
from graphql.language import Visitor, visit
from playwright.sync_api import Browser, Page, Request, Response, expect, sync_playwright

from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ARTIFACTS = Path(
    os.environ.get("RELIEF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts" / "dashboard"
)
TIMEOUT_MS = 20_000
# expect() waits as long as an action may (its own default is 5 s): the suite's two workers,
# the served gateway and the browser share the machine's cores
expect.set_options(timeout=TIMEOUT_MS)
PROVINCE = "14"  # 山西省
SUPPRESSED = "—（已隐藏）"
# Fields that carry or list people: the dashboard must never ask for or receive one.
PERSON_FIELDS = {"persons", "person", "notEnrolled", "idNumber", "name", "phone", "address"}
VIEWS = {
    "coverage": "参保覆盖",
    "warnings": "高额费用预警",
    "tasks": "推送任务",
    "sharing": "共享统计",
    "anomalies": "异常与报送",
}


@dataclass
class Gateway:
    backend: str
    base: str
    tokens: TokenService

    def token(self, dept: str, level: str = "province", region: str = PROVINCE) -> str:
        return self.tokens.mint(subject=f"{dept}-{level}", dept=dept, level=level, region=region)

    def post(self, token: str, query: str, purpose: str = "supervision") -> dict[str, Any]:
        response = httpx.post(
            f"{self.base}/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": purpose},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, and the dashboard's browser test needs it: "
            "run scripts/test (it installs it) or apt-get install chromium"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """`relief-gateway serve` on a seeded database with three months of warning runs (enough
    for the per-month chart)."""
    _chromium()
    backend = str(request.param)
    data_dir = tmp_path_factory.mktemp(f"dashboard-{backend}") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env |= {
        "RELIEF_DATA_DIR": str(data_dir),
        "RELIEF_TODAY": os.environ.get("RELIEF_TODAY", "2026-11-23"),
        "RELIEF_PROVINCE": "shanxi",
    }
    database = None
    if backend == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
        database = f"relief_dashboard_{uuid.uuid4().hex[:12]}"
        env["RELIEF_DATABASE_URL"] = cluster.create_database(database)
    _run(["seed", "--persons", "1500", "--province", "shanxi"], env)
    for month in range(8, 11):
        _run(["warn", "run", "--month", f"2026-{month:02d}"], env)
    port = _free_port()
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port)],
            env=env,
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).json().get("ready") is True
            except (httpx.TransportError, ValueError):
                time.sleep(0.3)
        assert ready, log.read_text(encoding="utf-8", errors="replace")
        settings = load_settings(data_dir=data_dir)
        tokens = TokenService.from_file(
            settings.token_key_path, settings.token_issuer, create=False
        )
        found = Gateway(backend=backend, base=base, tokens=tokens)
        # Some sharing for the 共享统计 view: departments read people (written to the audit log).
        for dept, purpose in [
            ("medical_insurance", "benefit_settlement"),
            ("civil_affairs", "relief_recognition"),
        ]:
            for _ in range(2):
                found.post(
                    found.token(dept),
                    "{ persons(first: 20) { edges { node { regionCode } } } }",
                    purpose,
                )
        yield found
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if database is not None:
            request.getfixturevalue("postgres_cluster").drop_database(database)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        yield launched
        launched.close()


# --------------------------------------------------------------------------- the page


def _field_names(query: str) -> set[str]:
    names: set[str] = set()

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            names.add(node.name.value)

    visit(parse(query), Fields())
    return names


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


@dataclass
class Dashboard:
    """One signed-in browser tab, recording every request it makes."""

    page: Page
    gateway: Gateway
    urls: list[str] = field(default_factory=list)
    graphql: list[tuple[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(300)  # charts finish drawing
        path = ARTIFACTS / f"{self.gateway.backend}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def tab(self, view: str) -> None:
        self.page.get_by_role("tab", name=VIEWS[view]).click()
        expect(self.page.locator(f"#panel-{view} .panel-head h2")).to_be_visible()
        expect(self.page.locator(f"#panel-{view}")).not_to_have_attribute("aria-busy", "true")

    def panel(self, view: str) -> Any:
        return self.page.locator(f"#panel-{view}")


def _open(browser: Browser, gateway: Gateway, token: str) -> Dashboard:
    context = browser.new_context(
        viewport={"width": 1400, "height": 900},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        accept_downloads=True,
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    board = Dashboard(page=page, gateway=gateway)
    page.on("request", lambda request: board.urls.append(request.url))

    def on_response(response: Response) -> None:
        request: Request = response.request
        if request.url.endswith("/graphql"):
            body = json.loads(request.post_data or "{}")
            board.graphql.append((body.get("query", ""), response.json()))

    page.on("response", on_response)
    page.on("pageerror", lambda error: board.problems.append(f"页面脚本错误: {error}"))
    page.on("console", lambda msg: board.problems.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{gateway.base}/dashboard")
    page.get_by_label("访问令牌", exact=True).fill(token)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#panel-coverage canvas").first).to_be_visible()
    # The seeded year (the page starts at the browser's current year).
    if page.get_by_label("统计年度", exact=True).input_value() != "2026":
        page.get_by_label("统计年度", exact=True).select_option("2026")
    expect(page.locator("#panel-coverage .panel-head h2")).to_contain_text("2026年")
    expect(page.locator("#panel-coverage canvas").first).to_be_visible()
    return board


def _assert_no_person_data(board: Dashboard) -> None:
    assert board.graphql, "the dashboard made no GraphQL request"
    for query, response in board.graphql:
        asked = _field_names(query) & PERSON_FIELDS
        assert not asked, f"the dashboard asked for {asked}: {query}"
        returned = _keys(response) & PERSON_FIELDS
        assert not returned, f"a response carried {returned}"
        assert "errors" not in response, response
    roots: set[str] = set()
    for query, _ in board.graphql:
        operation = parse(query).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        roots |= {
            s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)
        }
    # Aggregates only: no persons, person, root coverage (it audits as person data), tasks …
    assert roots == {"me", "statistics"}, roots


def _assert_local_only(board: Dashboard) -> None:
    outside = [u for u in board.urls if not u.startswith(("http://127.0.0.1:", "blob:", "data:"))]
    assert outside == [], f"requests leaving 127.0.0.1: {outside}"
    assert board.problems == [], board.problems


def _coverage_cities(gateway: Gateway, token: str) -> list[dict[str, Any]]:
    data = gateway.post(
        token,
        "{ statistics(groupBy: CITY) { coverage(year: 2026) { regions { regionCode population"
        " populationSuppressed enrolled enrolledSuppressed rate } } } }",
    )
    return data["statistics"]["coverage"]["regions"]  # type: ignore[no-any-return]


def _click_bar(page: Page, chart_index: int, bar_index: int) -> None:
    """A real mouse click on bar `bar_index` of the coverage panel's chart `chart_index`."""
    box = page.locator("#panel-coverage .chart").nth(chart_index)
    point = box.evaluate(
        """(el, i) => {
          const chart = window.echarts.getInstanceByDom(el);
          const value = chart.getOption().series[0].data[i].value;
          return chart.convertToPixel({seriesIndex: 0}, [i, value - 1]);  // inside the bar
        }""",
        bar_index,
    )
    bounds = box.bounding_box()
    assert bounds is not None
    page.mouse.click(bounds["x"] + point[0], bounds["y"] + point[1])


def _read_xlsx(path: Path) -> dict[str, list[list[Any]]]:
    with warnings.catch_warnings():
        # write-excel-file writes cell styles but no named "Normal" style; Excel, WPS and
        # LibreOffice do not need one, openpyxl only says it falls back to its own.
        warnings.filterwarnings("ignore", "Workbook contains no default style", UserWarning)
        book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {
            sheet.title: [list(row) for row in sheet.iter_rows(values_only=True)]
            for sheet in book.worksheets
        }
    finally:
        book.close()


def _export(board: Dashboard, view: str) -> dict[str, list[list[Any]]]:
    with board.page.expect_download() as download_info:
        board.panel(view).get_by_role("button", name="导出 XLSX").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    target = ARTIFACTS / f"{board.gateway.backend}-{download.suggested_filename}"
    download.save_as(target)
    assert target.read_bytes()[:2] == b"PK"  # a ZIP container, as XLSX is
    return _read_xlsx(target)


def _header_row(rows: list[list[Any]], first: str) -> int:
    return next(i for i, row in enumerate(rows) if row and row[0] == first)


@pytest.fixture(scope="module", autouse=True)
def _artifacts() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dept", ["medical_insurance", "big_data"])
def test_province_drills_down_without_person_data(
    gateway: Gateway, browser: Browser, dept: str
) -> None:
    token = gateway.token(dept)
    board = _open(browser, gateway, token)
    page = board.page
    try:
        expect(page.locator("#whoami-text")).to_contain_text("山西省")
        coverage = board.panel("coverage")
        expect(coverage.locator("h3").first).to_have_text("各市参保率")
        expect(coverage.locator(".chart")).to_have_count(2)  # by city, by county
        # Counties below the 99% target are highlighted.
        expect(coverage.locator("tr.below-target").first).to_be_visible()
        board.shot(f"{dept}-01-coverage-province")

        # Province → city: a click on the city's bar.
        cities = _coverage_cities(gateway, token)
        index = next(i for i, c in enumerate(cities) if c["rate"] is not None)
        city = cities[index]["regionCode"]
        _click_bar(page, 0, index)
        expect(page.locator("#crumbs [aria-current]")).not_to_have_text("山西省")
        expect(page.get_by_label("市", exact=True)).to_have_value(city)
        expect(coverage.locator("h3").first).to_have_text("各县 (市、区)参保率")
        board.shot(f"{dept}-02-coverage-city")

        # City → county: the region selector.
        county_select = page.get_by_label("县 (市、区)", exact=True)
        county = county_select.locator("option").nth(1).get_attribute("value")
        assert county
        assert county.startswith(city)
        county_select.select_option(county)
        expect(page.locator("#crumbs [aria-current]")).to_have_text(
            county_select.locator("option:checked").inner_text()
        )
        expect(coverage.locator(".panel-head h2")).to_contain_text(
            county_select.locator("option:checked").inner_text()
        )
        board.shot(f"{dept}-03-coverage-county")

        # Back up to the province through the breadcrumb, then every other view.
        page.locator("#crumbs").get_by_role("button", name="山西省").click()
        expect(page.locator("#crumbs [aria-current]")).to_have_text("山西省")
        for number, view in enumerate(["warnings", "tasks", "sharing", "anomalies"], start=4):
            board.tab(view)
            board.shot(f"{dept}-{number:02d}-{view}")
        _assert_no_person_data(board)
        _assert_local_only(board)
    finally:
        page.context.close()


def test_small_cells_are_shown_as_suppressed(gateway: Gateway, browser: Browser) -> None:
    token = gateway.token("big_data")
    cities = _coverage_cities(gateway, token)
    hidden = [c for c in cities if c["enrolledSuppressed"] or c["populationSuppressed"]]
    assert hidden, "the seed must leave some suppressed coverage cells"
    board = _open(browser, gateway, token)
    try:
        table = board.panel("coverage").locator("table").first
        rows = table.locator("tbody tr")
        texts = [rows.nth(i).locator("th, td").all_inner_texts() for i in range(rows.count())]
        by_position = dict(zip([c["regionCode"] for c in cities], texts, strict=True))
        for city in hidden:
            cells = by_position[city["regionCode"]]
            if city["enrolledSuppressed"]:
                assert cells[2] == SUPPRESSED, cells
            assert cells[4] == SUPPRESSED, cells  # no rate from a hidden count
            assert not any(ch.isdigit() for ch in cells[2] + cells[4]), cells
        # Warnings: every cell the API suppresses reads as suppressed, never as a number.
        board.tab("warnings")
        suppressed = board.panel("warnings").locator("td.suppressed")
        assert suppressed.count() > 0
        for text in suppressed.all_inner_texts():
            assert text == SUPPRESSED
        expect(board.page.locator("#min-cell")).to_have_text("5")
        board.shot("suppressed-warnings")
    finally:
        board.page.context.close()


def test_every_view_exports_xlsx(gateway: Gateway, browser: Browser) -> None:
    token = gateway.token("medical_insurance")
    total = gateway.post(
        token,
        "{ statistics(groupBy: PROVINCE) { coverage(year: 2026) { regions { population } } } }",
    )["statistics"]["coverage"]["regions"][0]["population"]
    cities = _coverage_cities(gateway, token)
    board = _open(browser, gateway, token)
    try:
        sheets = _export(board, "coverage")
        rows = sheets["合计"]
        header = _header_row(rows, "地区")
        assert rows[header][:3] == ["地区", "应参保人数", "已参保人数"]
        assert rows[header + 1][0] == "山西省"
        assert rows[header + 1][1] == total  # the figure, as a number
        by_city = next(rows for name, rows in sheets.items() if name.startswith("各市"))
        first = _header_row(by_city, "地区") + 1
        exported = {row[0]: row for row in by_city[first:]}
        assert len(exported) == len(cities)
        for row in exported.values():
            # A hidden figure is exported as the suppression text, never as a number.
            assert row[4] == SUPPRESSED or isinstance(row[4], float), row

        for view in ["warnings", "tasks", "sharing", "anomalies"]:
            board.tab(view)
            sheets = _export(board, view)
            assert sheets, view
            for rows in sheets.values():
                assert rows[0][0], f"{view}: a title row"
                assert any(
                    row and row[0] in {"地区", "月份", "承办部门", "读取部门", "报送部门"}
                    for row in rows
                )
        sharing = _read_xlsx(next(ARTIFACTS.glob(f"{gateway.backend}-运行监测-共享统计-*.xlsx")))
        rows = next(iter(sharing.values()))
        header = _header_row(rows, "读取部门")
        assert rows[header] == ["读取部门", "月份", "共享次数", "共享人次"]
        departments = {row[0] for row in rows[header + 1 :]}
        assert {"医保局", "民政局"} <= departments
        assert all(isinstance(row[2], int | float) and row[2] >= 2 for row in rows[header + 1 :])
        _assert_no_person_data(board)
        _assert_local_only(board)
    finally:
        board.page.context.close()


def test_vendored_scripts_are_checked_and_nothing_leaves_loopback(
    gateway: Gateway, browser: Browser
) -> None:
    """The page loads only from the gateway; a vendored file that does not match its recorded
    hash is refused by the browser (and the page says so)."""
    context = browser.new_context(locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    try:
        started = time.monotonic()
        page.goto(f"{gateway.base}/dashboard", wait_until="load")
        expect(page.get_by_label("访问令牌", exact=True)).to_be_editable()
        interactive = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return {domInteractive: n.domInteractive,"
            " domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }"
        )
        resources = page.evaluate(
            "() => performance.getEntriesByType('resource').map(r => ({name: r.name,"
            " bytes: r.encodedBodySize})).concat([{name: location.href, bytes:"
            " performance.getEntriesByType('navigation')[0].encodedBodySize}])"
        )
        assert page.evaluate("() => typeof window.echarts.init === 'function'")
        assert page.evaluate("() => typeof window.writeXlsxFile === 'function'")
        assert all(u.startswith(gateway.base) for u in urls), urls
        weight = sum(int(r["bytes"]) for r in resources)
        (ARTIFACTS / f"metrics-{gateway.backend}.json").write_text(
            json.dumps(
                {
                    "page_weight_bytes": weight,
                    "resources": resources,
                    "navigation_ms": interactive,
                    "goto_to_editable_ms": round((time.monotonic() - started) * 1000),
                },
                indent=2,
            ),
            encoding="utf-8",
        )

        # Tampered ECharts: the integrity check refuses it.
        tampered = context.new_page()
        errors: list[str] = []
        tampered.on("console", lambda msg: errors.append(msg.text))
        tampered.route(
            "**/dashboard/vendor/echarts.common.min.js",
            lambda route: route.fulfill(
                status=200, content_type="text/javascript", body="window.echarts = {};"
            ),
        )
        tampered.goto(f"{gateway.base}/dashboard", wait_until="load")
        assert tampered.evaluate("() => window.echarts === undefined")
        assert any("integrity" in e for e in errors), errors
        expect(tampered.locator("#login-message")).to_contain_text("完整性校验失败")
    finally:
        context.close()


def test_controls_are_labelled_and_keyboard_reachable(gateway: Gateway, browser: Browser) -> None:
    board = _open(browser, gateway, gateway.token("big_data"))
    page = board.page
    try:
        for label in ["统计年度", "市", "县 (市、区)"]:
            expect(page.get_by_label(label, exact=True)).to_be_visible()
        page.locator("body").focus()
        reached: list[str] = []
        for _ in range(40):
            page.keyboard.press("Tab")
            reached.append(
                page.evaluate(
                    "() => { const e = document.activeElement;"
                    " return e.id || e.textContent.trim().slice(0, 12); }"
                )
            )
        for target in ["logout", "year", "city", "tab-coverage", "导出 XLSX"]:
            assert target in reached, (target, reached)
        # Tabs: arrow keys move between views (one tab stop for the tab list).
        page.locator("#tab-coverage").focus()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#tab-warnings")).to_be_focused()
        expect(page.locator("#tab-warnings")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#panel-warnings")).to_be_visible()
        # The year selector from the keyboard reloads the view.
        page.get_by_label("统计年度", exact=True).focus()
        page.keyboard.press("ArrowDown")
        expect(page.locator("#panel-warnings .panel-head h2")).to_contain_text("2025年")
        # A chart's data is also a table, with region names as buttons (drill from the keyboard).
        page.keyboard.press("ArrowUp")
        board.tab("coverage")
        first_city = board.panel("coverage").locator("table button.link").first
        first_city.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_label("市", exact=True)).not_to_have_value("")
        board.shot("keyboard-drilled")
        _assert_local_only(board)
    finally:
        page.context.close()
