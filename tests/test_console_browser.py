"""The console in a real headless Chromium: the full propose → simulate → approve → effect cycle,
and each administrator's screens (三权分立, issue 16).

A real gateway (``relief-gateway serve`` on SQLite, seeded by ``relief-gateway seed``) and
Debian's chromium driven through Playwright with its executable path: Playwright never
downloads a browser (scripts/test installs Debian's ``chromium`` when it is missing; without it
this test FAILS, it does not skip).

The story a provincial officer would expect: civil affairs at county level asks for phone
numbers (today masked) to reach relief applicants. Officer A grants it in the grid and proposes;
A cannot approve its own proposal. Officer B, in a separate browser session, sees the diff,
simulates the change as a civil affairs county clerk (phone: 已脱敏 → 已读取), approves; the
civil affairs token then reads phone numbers in clear over HTTP. Then officer A drafts a second
change (the cell carries the draft's mark), proposes it (the mark says 待审批) and withdraws it
(撤回: its own proposal offers no 驳回). The audit administrator, signing in on its own, finds the
clerk's read and the officers' approval in the log, explains the read and verifies the chain; its
own queries it cannot look up. Each role's page holds its own screens only (the others' are not
in the document at all), the system administrator's says its work is on the command line. At
every step the page's text is scanned: no English word outside code and identifiers.
Screenshots of every step are kept in ``$RELIEF_TEST_ARTIFACTS`` (default
``tests/artifacts/console/``, gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ARTIFACTS = Path(
    os.environ.get("RELIEF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts" / "console"
)
TIMEOUT_MS = 20_000
# expect() waits as long as an action may (its own default is 5 s): the suite's two workers,
# the served gateway and the browser share the machine's cores
expect.set_options(timeout=TIMEOUT_MS)

TITLE = "民政县级核实救助对象需要联系电话"
WITHDRAWN_TITLE = "卫生健康委市级读取家庭住址 (误提, 将撤回)"

# The page's text outside <code>, form fields and identifiers: English words left untranslated.
# Identifiers (policy codes, purposes, roles, subjects) carry "_", "-" or digits; a short
# proposal id is hex.
ENGLISH_SCAN = r"""
() => {
  const allowed = new Set(["GraphQL", "JavaScript", "supervision"]);  // + purpose codes
  const skipped = new Set(["CODE", "TEXTAREA", "INPUT", "SCRIPT", "STYLE", "NOSCRIPT"]);
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let inside = node.parentElement;
    let skip = false;
    for (; inside; inside = inside.parentElement) {
      if (skipped.has(inside.tagName)) { skip = true; break; }
    }
    if (skip) continue;
    // a word starts after a non-word character: the "dc" of a proposal id "#529122dc" is not one
    const words = node.textContent.match(
      /(?<![A-Za-z0-9_])[A-Za-z][A-Za-z0-9_]*(?:[.:@-][A-Za-z0-9_*]+)*/g) || [];
    for (const word of words) {
      if (allowed.has(word) || /[_\d-]/.test(word) || /^[0-9a-f]{8}$/.test(word)) continue;
      found.push(`${word} ← "${node.textContent.trim().slice(0, 60)}"`);
    }
  }
  return found;
}
"""
ADDED_LINE = "civil_affairs:county, Person.phone, read, *"
PHONES = "{ persons(first: 50) { edges { node { phone } } } }"


@dataclass
class Gateway:
    base: str
    officer_a: str  # security_admin
    officer_b: str  # security_officer, the deprecated name of the same role
    auditor: str  # audit_admin
    operator: str  # system_admin
    civil_affairs: str  # a county clerk: Person.phone masked by the default policies
    county: str
    data_dir: Path  # its keys: tests mint tokens of their own


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, and the console's browser test needs it: "
            "run scripts/test (it installs it) or apt-get install chromium"
        )
    return path


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(base: str, token: str, query: str, purpose: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {token}", "X-Purpose": purpose},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


def _phones(gateway: Gateway) -> list[str]:
    body = _post(gateway.base, gateway.civil_affairs, PHONES, "relief_recognition")
    phones = [edge["node"]["phone"] for edge in body["data"]["persons"]["edges"]]
    return [phone for phone in phones if phone is not None]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`relief-gateway serve` on a seeded SQLite data dir, healthy, with the tokens minted."""
    _chromium()  # fail first, and clearly, without a browser
    data_dir = tmp_path_factory.mktemp("console-browser") / "data"
    env = _env(data_dir)
    seeded = subprocess.run(
        [str(SCRIPT), "seed", "--persons", "200", "--province", "shandong"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
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

        def admin(subject: str, role: str) -> str:
            return tokens.mint(
                subject=subject, dept="big_data", level="province", region="37", roles=[role]
            )

        # The county with most people who have a phone number, seen by the province hub.
        hub = tokens.mint(subject="hub", dept="medical_insurance", level="province", region="37")
        people = _post(
            base,
            hub,
            "{ persons(first: 200) { edges { node { regionCode phone } } } }",
            "benefit_settlement",
        )["data"]["persons"]["edges"]
        counties = Counter(p["node"]["regionCode"][:6] for p in people if p["node"]["phone"])
        county = max(sorted(counties), key=lambda code: counties[code])
        yield Gateway(
            base=base,
            officer_a=admin("officer-a", "security_admin"),
            officer_b=admin("officer-b", "security_officer"),
            auditor=admin("auditor-a", "audit_admin"),
            operator=admin("operator-a", "system_admin"),
            civil_affairs=tokens.mint(
                subject="civil-affairs-clerk", dept="civil_affairs", level="county", region=county
            ),
            county=county,
            data_dir=data_dir,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# --------------------------------------------------------------------------- browser helpers


class Session:
    """One officer's browser session (its own context: its own sessionStorage)."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.context = browser.new_context(
            viewport={"width": 1600, "height": 1000}, locale="zh-CN", timezone_id="Asia/Shanghai"
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

    def shot(self, name: str) -> None:
        """A screenshot, and the page's text scanned for English words (none may remain)."""
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        english = self.page.evaluate(ENGLISH_SCAN)
        assert english == [], f"{name}: untranslated text {english}"

    def close(self) -> None:
        self.context.close()


def test_propose_simulate_approve_effect(gateway: Gateway) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("[0-9][0-9]-*.png"):  # this test's previous run
        old.unlink()
    before = _phones(gateway)
    assert before, "the county must have people with phone numbers"
    assert all("*" in phone for phone in before), before  # masked today

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            _cycle(browser, gateway)
        finally:
            browser.close()

    # The effect: the civil affairs clerk now reads phone numbers in clear (the approving
    # gateway reloads at once; allow a poll interval all the same).
    deadline = time.monotonic() + 10
    after = _phones(gateway)
    while any("*" in phone for phone in after) and time.monotonic() < deadline:
        time.sleep(0.5)
        after = _phones(gateway)
    assert after
    assert all(re.fullmatch(r"\d{11}", phone) for phone in after), after


def _cycle(browser: Browser, gateway: Gateway) -> None:
    # ---- a token without an administrator role is refused, in Chinese
    clerk = Session(browser, gateway.base)
    clerk.shot("00-login")
    clerk.sign_in(gateway.civil_affairs)
    expect(clerk.page.locator("#login-message")).to_contain_text("没有管理员角色")
    expect(clerk.page.locator("#app")).to_be_hidden()
    _screens_are(clerk.page, set())
    clerk.shot("01-refused-without-admin-role")
    clerk.close()

    # ---- officer A: the grid, one cell, grant, propose
    a = Session(browser, gateway.base)
    a.sign_in(gateway.officer_a)
    page = a.page
    expect(page.locator("#whoami-text")).to_contain_text("officer-a")
    expect(page.locator("#whoami-text")).to_contain_text("安全管理员")
    expect(page.locator("#current-version")).to_have_text("1")
    _screens_are(page, {"policy", "review"})
    cell = page.locator(
        '#grid button[data-subject="civil_affairs:county"][data-field="Person.phone"]'
    )
    expect(cell).to_contain_text("脱敏")
    a.shot("02-officer-a-grid")
    # Row scopes name their places in the officers' words (issue 14), never the policy text.
    insured = page.locator("#grid").get_by_text("辖区内全部人员 (居住地或参保地在本辖区)")
    expect(insured).to_be_visible()
    expect(page.locator("#grid")).to_contain_text("推送给本部门的人员 (推送地在本辖区)")
    expect(page.locator("#grid")).not_to_contain_text("places:")
    insured.scroll_into_view_if_needed()
    a.shot("02b-officer-a-grid-row-scopes")
    cell.click()
    panel = page.locator("#cell-panel")
    expect(panel).to_contain_text("civil_affairs:*, Person.phone, mask, *")
    panel.get_by_role("button", name="授予 可读").click()
    expect(page.locator("#draft-list li.added")).to_contain_text(ADDED_LINE)
    page.get_by_label("申请标题").fill(TITLE)
    page.get_by_label("说明").fill("县级民政核实救助申请人时需电话联系本人 (县局来函)")
    a.shot("03-officer-a-draft")
    # The draft is marked in the grid (a word and a dashed frame, and read out), before it is sent.
    drafted = page.locator(
        '#grid td.pending-draft button[data-subject="civil_affairs:county"]'
        '[data-field="Person.phone"]'
    )
    expect(drafted).to_contain_text("草稿")
    expect(drafted).to_have_attribute("aria-label", re.compile("草稿中有改动"))
    page.get_by_role("button", name="提交申请").click()
    expect(page.locator("#draft-message")).to_contain_text("已提交申请 #")
    # Sent: now the mark of an open proposal.
    proposed = page.locator(
        '#grid td.pending-proposal button[data-subject="civil_affairs:county"]'
        '[data-field="Person.phone"]'
    )
    expect(proposed).to_contain_text("待审批")
    expect(proposed).to_have_attribute("aria-label", re.compile("有待审批的变更申请"))
    expect(page.locator("#grid td.pending-draft")).to_have_count(0)
    a.shot("04-officer-a-proposed")

    # ---- officer A cannot approve its own proposal: disabled, with the reason
    page.get_by_role("tab", name="审批").click()
    own = page.locator("article.proposal").filter(has_text=TITLE)
    expect(own.locator("button.approve")).to_be_disabled()
    expect(own.locator(".reason")).to_contain_text("不能批准自己提出的变更")
    # Its proposer may only withdraw it: 撤回, never 驳回.
    expect(own.get_by_role("button", name="撤回")).to_be_enabled()
    expect(own.get_by_role("button", name="驳回")).to_have_count(0)
    a.shot("05-officer-a-cannot-approve-own")

    # ---- officer B: the diff, the simulation, the approval
    b = Session(browser, gateway.base)
    b.sign_in(gateway.officer_b)
    page = b.page
    expect(page.locator("#whoami-text")).to_contain_text("officer-b")
    _screens_are(page, {"policy", "review"})  # security_officer: security_admin's old name
    page.get_by_role("tab", name="审批").click()
    proposal = page.locator("article.proposal").filter(has_text=TITLE)
    expect(proposal.locator("ul.diff li.added")).to_contain_text(ADDED_LINE)
    change = proposal.locator('tr[data-subject="civil_affairs:county"][data-field="Person.phone"]')
    expect(change).to_contain_text("脱敏")
    expect(change).to_contain_text("可读")
    # Another officer's proposal: 驳回, not 撤回.
    expect(proposal.get_by_role("button", name="驳回")).to_be_visible()
    expect(proposal.get_by_role("button", name="撤回")).to_have_count(0)
    b.shot("06-officer-b-review")

    proposal.get_by_label("部门", exact=True).select_option("civil_affairs")
    proposal.get_by_label("层级", exact=True).select_option("county")
    proposal.get_by_label(re.compile("^辖区代码")).fill(gateway.county)
    proposal.get_by_label("用途", exact=True).select_option("relief_recognition")
    proposal.get_by_role("button", name="运行模拟").click()
    current = proposal.locator('table[data-outcome="current"] td[data-column="phone"]')
    proposed = proposal.locator('table[data-outcome="proposed"] td[data-column="phone"]')
    expect(current.first).to_be_visible()
    assert "已脱敏" in current.all_inner_texts()
    assert set(current.all_inner_texts()) <= {"已脱敏", "空"}
    assert "已读取" in proposed.all_inner_texts()
    assert set(proposed.all_inner_texts()) <= {"已读取", "空"}
    proposal.locator(".simulation").scroll_into_view_if_needed()
    b.shot("07-officer-b-simulation")

    approve = proposal.locator("button.approve")
    expect(approve).to_be_enabled()
    proposal.get_by_label(re.compile("^审批意见")).fill("已核对来函, 同意")
    approve.click()
    expect(page.locator("#review-message")).to_contain_text("新策略版本 2 已生效")
    expect(page.locator("#current-version")).to_have_text("2")
    expect(page.locator("article.proposal").filter(has_text=TITLE)).to_have_count(0)
    expect(page.locator("#versions")).to_contain_text("officer-b")  # approved by
    b.shot("08-officer-b-approved")

    # ---- the audit administrator: the clerk's read before the change, explained; the officers'
    # own actions in the log; the chain verifies; its own queries it cannot look up
    auditor = Session(browser, gateway.base)
    auditor.sign_in(gateway.auditor)
    page = auditor.page
    expect(page.locator("#whoami-text")).to_contain_text("审计管理员")
    _screens_are(page, {"audit"})
    expect(page.get_by_role("tab")).to_have_count(1)
    rows = page.locator("#audit-rows tr[data-entry-id]")
    approval = rows.filter(has_text="批准策略变更")
    expect(approval.first).to_contain_text("officer-b")
    expect(rows.filter(has_text="提出策略变更").first).to_contain_text("officer-a")
    auditor.shot("09-auditor-administrators-trail")
    page.get_by_label("主体", exact=True).fill("civil-affairs-clerk")
    page.get_by_role("button", name="查询", exact=True).click()
    entries = page.locator("#audit-rows tr[data-entry-id]")
    expect(entries.first).to_contain_text("civil-affairs-clerk")
    expect(entries.filter(has_not_text="civil-affairs-clerk")).to_have_count(0)
    page.get_by_role("button", name="校验哈希链").click()
    expect(page.locator("#chain-result")).to_contain_text("哈希链完整")
    entries.first.get_by_role("button", name=re.compile("^解释")).click()
    explanation = page.locator("#explain-panel")
    expect(explanation).to_contain_text("联系电话")
    expect(explanation).to_contain_text("脱敏")
    auditor.shot("09b-auditor-explanation")
    page.get_by_label("主体", exact=True).fill(" AUDITOR-A ")  # itself, in another spelling
    page.get_by_role("button", name="查询", exact=True).click()
    expect(page.locator("#audit-message")).to_contain_text("不能查询本人的审计记录")
    auditor.shot("09c-auditor-own-trail-refused")
    page.get_by_role("button", name="清除条件").click()
    expect(rows.first).to_be_visible()
    expect(rows.filter(has_text="auditor-a")).to_have_count(0)
    auditor_problems = auditor.problems
    auditor.close()

    # ---- the system administrator: its work is on the command line
    operator = Session(browser, gateway.base)
    operator.sign_in(gateway.operator)
    page = operator.page
    expect(page.locator("#whoami-text")).to_contain_text("系统管理员")
    _screens_are(page, {"system", "deliveries"})
    expect(page.locator("#panel-system")).to_contain_text("命令行")
    expect(page.locator("#panel-system")).to_contain_text("relief-gateway keys init | rotate")
    expect(page.locator("#system-status")).to_contain_text("网关就绪")
    operator.shot("09d-system-admin")
    auditor_problems += operator.problems
    operator.close()

    # ---- officer A's grid now shows the new version
    a.page.reload()
    expect(a.page.locator("#current-version")).to_have_text("2")
    expect(
        a.page.locator(
            '#grid button[data-subject="civil_affairs:county"][data-field="Person.phone"]'
        )
    ).to_contain_text("可读")
    expect(a.page.locator("#grid td.pending-proposal")).to_have_count(0)  # approved: no mark
    a.shot("10-officer-a-grid-after")

    _withdraw(a)

    problems = a.problems + b.problems + auditor_problems
    assert problems == [], problems
    a.close()
    b.close()


SCREENS = ("policy", "review", "audit", "system", "deliveries")


def _screens_are(page: Page, screens: set[str]) -> None:
    """The role's screens are in the document, and no other: not hidden, absent."""
    for screen in SCREENS:
        count = 1 if screen in screens else 0
        expect(page.locator(f"#panel-{screen}")).to_have_count(count)
        expect(page.locator(f"#tab-{screen}")).to_have_count(count)
    if "policy" not in screens:
        expect(page.locator("#grid")).to_have_count(0)
    if "audit" not in screens:
        expect(page.locator("#audit-rows")).to_have_count(0)


def _withdraw(a: Session) -> None:
    """Officer A proposes by mistake and withdraws (撤回): the proposal leaves the queue, the
    policy stays, the grid's mark goes."""
    page = a.page
    page.get_by_role("tab", name="策略表").click()
    address = 'button[data-subject="health:city"][data-field="Person.address"]'
    cell = page.locator(f"#grid {address}")
    expect(cell).to_contain_text("拒绝")
    cell.click()
    page.locator("#cell-panel").get_by_role("button", name="授予 可读").click()
    expect(page.locator(f"#grid td.pending-draft {address}")).to_contain_text("草稿")
    page.get_by_label("申请标题").fill(WITHDRAWN_TITLE)
    page.get_by_role("button", name="提交申请").click()
    expect(page.locator("#draft-message")).to_contain_text("已提交申请 #")
    expect(page.locator(f"#grid td.pending-proposal {address}")).to_contain_text("待审批")
    a.shot("11-officer-a-second-proposal-marked")

    page.get_by_role("tab", name="审批").click()
    own = page.locator("article.proposal").filter(has_text=WITHDRAWN_TITLE)
    expect(own.get_by_role("button", name="驳回")).to_have_count(0)
    own.get_by_label(re.compile("^撤回说明")).fill("误提: 卫生健康委不需要住址")
    a.shot("12-officer-a-withdraw")
    own.get_by_role("button", name="撤回").click()
    expect(page.locator("#review-message")).to_contain_text("已撤回")
    expect(page.locator("article.proposal").filter(has_text=WITHDRAWN_TITLE)).to_have_count(0)
    expect(page.locator("#current-version")).to_have_text("2")  # the policy did not change
    a.shot("13-officer-a-withdrawn")

    page.get_by_role("tab", name="策略表").click()
    expect(page.locator("#grid td.pending-proposal")).to_have_count(0)
    expect(cell).to_contain_text("拒绝")
    a.shot("14-officer-a-grid-after-withdrawal")
