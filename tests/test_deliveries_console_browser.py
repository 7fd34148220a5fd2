"""The console's 推送投递 screen in a real headless Chromium (issue 18 item 2).

A real gateway (``relief-gateway serve`` on SQLite, seeded by ``relief-gateway seed``) and
Debian's chromium driven through Playwright with its executable path (never downloaded; without
it this test FAILS, as the console's other browser test does).

The story the operations team on call would expect: a county's civil affairs system
administrator registers its department system's endpoint in the console (the secret is shown
once, then gone from the page); its receiver goes down, and three deliveries fail past the
dead-letter time (written into the database as the delivery worker leaves them: DEAD, the
endpoint paused by the circuit breaker). The administrator sees the three dead letters (死信),
replays one with its row's 重新投递 button and the two others as a selection; each row shows
its new status (待推送) and the database agrees. The neighbouring county's administrator sees
none of it; the platform's operations team (大数据局) sees it. Every screen is Chinese: the
page's text is scanned for English words at every screenshot. Screenshots are kept in
``$RELIEF_TEST_ARTIFACTS`` (default ``tests/artifacts/console/``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.domain.clock import now_utc
from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService
from gateway.storage.models import WebhookDelivery, WebhookEndpoint
from gateway.storage.outbox import Event, EventKind, emit_rows
from tests.serve_support import SCRIPT, serve_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(
    os.environ.get("RELIEF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts" / "console"
)
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)
SHOT_PREFIX = "deliveries-"
RECEIVER = "https://civil-affairs.example.gov.cn/relief/webhook"

# The page's text outside <code>, <pre>, form fields: English words left untranslated.
# Identifiers carry "_", "-" or digits (HMAC-SHA256, whk_…); HTTP(S) and localhost are names.
ENGLISH_SCAN = r"""
() => {
  const allowed = new Set(["HTTP", "http", "https", "localhost"]);
  const skipped = new Set(["CODE", "PRE", "TEXTAREA", "INPUT", "SELECT", "SCRIPT", "STYLE",
                           "NOSCRIPT"]);
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let skip = false;
    for (let inside = node.parentElement; inside; inside = inside.parentElement) {
      if (skipped.has(inside.tagName)) { skip = true; break; }
    }
    if (skip) continue;
    const words = node.textContent.match(
      /(?<![A-Za-z0-9_])[A-Za-z][A-Za-z0-9_]*(?:[.:@-][A-Za-z0-9_*]+)*/g) || [];
    for (const word of words) {
      if (allowed.has(word) || /[_\d-]/.test(word)) continue;
      found.push(`${word} ← "${node.textContent.trim().slice(0, 60)}"`);
    }
  }
  return found;
}
"""


@dataclass
class Gateway:
    base: str
    database_url: str
    county: str
    admin: str  # civil_affairs county system_admin
    neighbour: str  # the sibling county's civil_affairs system_admin
    operations: str  # big_data province system_admin


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, and the console's browser test needs it: "
            "run scripts/test (it installs it) or apt-get install chromium"
        )
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`relief-gateway serve` on a seeded SQLite data dir, healthy, with the tokens minted."""
    _chromium()
    data_dir = tmp_path_factory.mktemp("deliveries-browser") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    seeded = subprocess.run(
        [str(SCRIPT), "seed", "--persons", "60", "--province", "shandong"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    with serve_process(env, data_dir) as base:
        settings = load_settings(data_dir=data_dir)
        tokens = TokenService.from_file(
            settings.token_key_path, settings.token_issuer, create=False
        )
        county = "370102"

        def admin(subject: str, dept: str, level: str, region: str) -> str:
            return tokens.mint(
                subject=subject, dept=dept, level=level, region=region, roles=["system_admin"]
            )

        yield Gateway(
            base=base,
            database_url=settings.resolved_database_url,
            county=county,
            admin=admin("civil-ops-lixia", "civil_affairs", "county", county),
            neighbour=admin("civil-ops-shizhong", "civil_affairs", "county", "370103"),
            operations=admin("platform-ops", "big_data", "province", "37"),
        )


# --------------------------------------------------------------------------- the database
T = TypeVar("T")


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run database work beside Playwright's own event loop (in another thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _receiver_down(database_url: str, endpoint_id: str, county: str, count: int) -> None:
    """What the delivery worker leaves after the endpoint's receiver stayed down past the
    dead-letter time: ``count`` task.pushed events fanned out through the outbox, DEAD, and the
    endpoint paused by the circuit breaker (so no worker touches them while the test looks)."""
    engine = create_async_engine(database_url)
    key = uuid.UUID(endpoint_id)
    now = now_utc()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == key)
                .values(paused_until=now + timedelta(hours=1), consecutive_failures=12)
            )
            await emit_rows(
                connection,
                [
                    Event(
                        kind=EventKind.TASK_PUSHED,
                        audience="civil_affairs",
                        county_code=county,
                        subject_type="task",
                        subject_id=str(uuid.uuid4()),
                        dedupe_key=f"browser-test:{uuid.uuid4()}",
                    )
                    for _ in range(count)
                ],
            )
            await connection.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == key)
                .values(
                    status="DEAD",
                    attempts=14,
                    first_attempt_at=now - timedelta(days=8, minutes=10),
                    last_attempt_at=now - timedelta(minutes=10),
                    last_status=503,
                    last_error="接收方返回 HTTP 503 (服务不可用)",
                    dead_at=now - timedelta(minutes=10),
                )
            )
    finally:
        await engine.dispose()


async def _statuses(database_url: str, endpoint_id: str) -> dict[str, str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(WebhookDelivery.id, WebhookDelivery.status).where(
                    WebhookDelivery.endpoint_id == uuid.UUID(endpoint_id)
                )
            )
            return {str(row.id): row.status for row in rows}
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- browser helpers
class Session:
    """One administrator's browser session (its own context: its own sessionStorage)."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.context = browser.new_context(
            viewport={"width": 1500, "height": 1000}, locale="zh-CN", timezone_id="Asia/Shanghai"
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"页面脚本错误: {error}"))
        self.page.on(
            "console",
            lambda msg: self.problems.append(msg.text) if msg.type == "error" else None,
        )
        self.page.goto(f"{base}/console")

    def sign_in(self, token: str) -> None:
        self.page.get_by_label("访问令牌").fill(token)
        self.page.get_by_role("button", name="登录").click()
        self.page.get_by_role("tab", name="推送投递").click()
        expect(self.page.locator("#panel-deliveries")).to_be_visible()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{SHOT_PREFIX}{name}.png"), full_page=True)
        english = self.page.evaluate(ENGLISH_SCAN)
        assert english == [], f"{name}: untranslated text {english}"

    def close(self) -> None:
        assert self.problems == [], self.problems
        self.context.close()


def _rows(page: Page) -> dict[str, str]:
    """Delivery id → status shown, for the rows on the page."""
    rows = page.locator("#delivery-rows tr[data-delivery-id]")
    return {
        rows.nth(i).get_attribute("data-delivery-id") or "": rows.nth(i)
        .locator("td.status")
        .inner_text()
        .split("\n")[0]
        for i in range(rows.count())
    }


# --------------------------------------------------------------------------- the story
def test_dead_letters_are_listed_and_replayed(gateway: Gateway) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{SHOT_PREFIX}*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            endpoint_id = _register_and_replay(browser, gateway)
            _others(browser, gateway, endpoint_id)
        finally:
            browser.close()


def _register_and_replay(browser: Browser, gateway: Gateway) -> str:
    admin = Session(browser, gateway.base)
    page = admin.page
    admin.sign_in(gateway.admin)
    expect(page.locator("#whoami-text")).to_contain_text("系统管理员")
    expect(page.locator("#tab-system")).to_have_count(1)
    expect(page.locator("#panel-policy")).to_have_count(0)
    expect(page.locator("#endpoint-rows")).to_contain_text("尚未登记推送端点")
    admin.shot("00-empty")

    # ---- registration: a bad address is refused in Chinese, then the real one
    page.locator("details.register summary").click()
    page.get_by_label("名称").fill("民政救助系统 (历下区)")
    page.get_by_label("推送地址 (https)").fill("http://civil-affairs.example.gov.cn/hook")
    page.get_by_role("checkbox", name="高额费用预警").check()
    page.get_by_role("button", name="登记", exact=True).click()
    expect(page.locator("#webhook-form-message")).to_contain_text("https")
    expect(page.locator("#webhook-form-message")).to_have_attribute("role", "alert")
    admin.shot("01-bad-address-refused")
    page.get_by_label("推送地址 (https)").fill(RECEIVER)
    page.get_by_role("button", name="登记", exact=True).click()
    expect(page.locator("#webhook-form-message")).to_contain_text("已登记推送端点")
    secret = page.locator("#issued-secret").inner_text().strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret
    expect(page.locator("#secret-panel")).to_contain_text("只显示这一次")
    row = page.locator("#endpoint-rows tr[data-endpoint-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("民政 / 县级 / 370102")
    expect(row).to_contain_text("任务推送、高额费用预警")
    endpoint_id = row.get_attribute("data-endpoint-id") or ""
    admin.shot("02-registered-secret-shown-once")
    page.get_by_role("button", name="我已保存, 关闭").click()
    expect(page.locator("#secret-panel")).to_be_hidden()
    assert secret not in page.content()

    # ---- the receiver goes down: three dead letters
    _run(_receiver_down(gateway.database_url, endpoint_id, gateway.county, 3))
    page.locator("#deliveries-refresh").click()
    expect(page.locator("#endpoint-rows")).to_contain_text("暂停至")
    expect(page.locator("#delivery-rows tr[data-status=DEAD]")).to_have_count(3)
    shown = _rows(page)
    assert set(shown.values()) == {"死信"}, shown
    expect(page.locator("#delivery-rows")).to_contain_text("接收方返回 HTTP 503")
    admin.shot("03-dead-letters")
    ids = sorted(shown, key=int)

    # ---- one replayed from its row
    page.get_by_role("button", name=f"重新投递推送 {ids[0]}").click()
    expect(page.locator("#deliveries-message")).to_contain_text("已重新投递 1 条")
    # The circuit breaker still holds the endpoint: the page says when they will be sent.
    expect(page.locator("#deliveries-message")).to_contain_text("暂停至")
    expect(page.locator(f'#delivery-rows tr[data-delivery-id="{ids[0]}"] td.status')).to_have_text(
        "待推送"
    )
    statuses = _run(_statuses(gateway.database_url, endpoint_id))
    assert statuses == {ids[0]: "PENDING", ids[1]: "DEAD", ids[2]: "DEAD"}
    admin.shot("04-one-replayed")

    # ---- the two others as a selection
    for delivery_id in ids[1:]:
        page.get_by_role("checkbox", name=f"选择推送 {delivery_id}").check()
    selection = page.locator("#replay-selected")
    expect(selection).to_have_text("重新投递所选 (2 条)")
    admin.shot("05-selection")
    selection.click()
    expect(page.locator("#deliveries-message")).to_contain_text("已重新投递 2 条")
    expect(page.locator("#delivery-rows tr[data-status=PENDING]")).to_have_count(3)
    assert set(_run(_statuses(gateway.database_url, endpoint_id)).values()) == {"PENDING"}

    # ---- the listing from the gateway agrees: no dead letter left, three pending
    page.locator("#deliveries-search").click()
    expect(page.locator("#delivery-rows")).to_contain_text("没有符合条件的推送记录")
    page.get_by_label("状态").select_option(label="全部状态")
    page.locator("#deliveries-search").click()
    expect(page.locator("#delivery-rows tr[data-status=PENDING]")).to_have_count(3)
    assert set(_rows(page).values()) == {"待推送"}
    admin.shot("06-all-pending")
    assert secret not in page.content()

    # ---- the secret leaked: rotated with no overlap, the new one shown once
    page.get_by_role("button", name="轮换密钥: 民政救助系统 (历下区)").click()
    page.get_by_label("旧密钥继续签名的小时数").fill("0")
    page.get_by_role("button", name="确认轮换").click()
    expect(page.locator("#secret-panel")).to_contain_text("已轮换密钥")
    rotated = page.locator("#issued-secret").inner_text().strip()
    assert rotated.startswith("whsec_")
    assert rotated != secret
    admin.shot("07-rotated")
    page.get_by_role("button", name="我已保存, 关闭").click()
    assert rotated not in page.content()
    admin.close()
    return endpoint_id


def _others(browser: Browser, gateway: Gateway, endpoint_id: str) -> None:
    # The neighbouring county's administrator: nothing of Lixia's, not even a row.
    neighbour = Session(browser, gateway.base)
    neighbour.sign_in(gateway.neighbour)
    page = neighbour.page
    expect(page.locator("#endpoint-rows")).to_contain_text("尚未登记推送端点")
    page.get_by_label("状态").select_option(label="全部状态")
    page.locator("#deliveries-search").click()
    expect(page.locator("#delivery-rows")).to_contain_text("没有符合条件的推送记录")
    assert endpoint_id not in page.content()
    neighbour.shot("08-neighbour-sees-nothing")
    neighbour.close()

    # The platform's operations team sees every department's endpoints and deliveries.
    operations = Session(browser, gateway.base)
    operations.sign_in(gateway.operations)
    page = operations.page
    row = page.locator(f'#endpoint-rows tr[data-endpoint-id="{endpoint_id}"]')
    expect(row).to_contain_text("民政")
    page.get_by_label("状态").select_option(label="全部状态")
    page.locator("#deliveries-search").click()
    expect(page.locator("#delivery-rows tr[data-status=PENDING]")).to_have_count(3)
    operations.shot("09-operations-team")

    # The system is decommissioned: disabled in two steps, its pending deliveries cancelled.
    disable = page.get_by_role("button", name="停用: 民政救助系统 (历下区)")
    disable.click()
    expect(disable).to_have_text("确认停用")
    disable.click()
    expect(page.locator("#webhook-message")).to_contain_text("已停用推送端点")
    expect(row).to_contain_text("已停用")
    expect(page.locator("#delivery-rows tr[data-status=CANCELLED]")).to_have_count(3)
    assert set(_rows(page).values()) == {"已取消"}
    assert set(_run(_statuses(gateway.database_url, endpoint_id)).values()) == {"CANCELLED"}
    operations.shot("10-operations-disabled")
    operations.close()
