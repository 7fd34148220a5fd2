"""Signing in to the workbench and the console at the identity platform, in a real headless
Chromium (authorization code + PKCE S256; gateway.http.signin, static/signin/signin.js).

The platform is a real OpenID Connect issuer on loopback (tests/issuer_support.py: its own
keys, discovery, JWKS, a login form, a token endpoint answering the gateway's origin with
CORS); the gateway is ``relief-gateway serve`` trusting it (RELIEF_OIDC_*), seeded by
``relief-gateway seed``; Debian's chromium is driven through Playwright with its executable
path (scripts/test installs it; without it these tests FAIL, they do not skip).

What a clerk and an assessor would try:

- the button, the platform's login form, back on the page signed in as the platform's person
  (department, level, region shown), the address bar clean, a request that works, a reload
  that keeps the session, sign-out back to the button;
- a code planted in the page's address by someone else (login CSRF: another state), a forged
  code with the right state, a replayed answer, the person cancelling at the platform: each
  refused in Chinese, nobody signed in;
- the platform's token running out: back to the button, saying why;
- production: no token form at all, only the platform.

Screenshots of every step are kept in ``$RELIEF_TEST_ARTIFACTS/signin`` (default
``tests/artifacts/signin/``, gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.issuer_support import TestIssuer, pkce_pair

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ARTIFACTS = Path(os.environ.get("RELIEF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts") / "signin"
TIMEOUT_MS = 20_000
# expect() waits as long as an action may (its own default is 5 s): the suite's two workers,
# the served gateway and the browser share the machine's cores
expect.set_options(timeout=TIMEOUT_MS)
AUDIENCE = "relief-gateway"  # the access token's aud: the gateway
CLIENT_ID = "relief-console"  # the pages' client: never an accepted audience
PLATFORM_NAME = "test-iam"
SIGN_IN = "统一身份认证登录"
USERS: dict[str, dict[str, Any]] = {
    "clerk.a": {"dept": "civil_affairs", "level": "county", "region": "370102", "roles": []},
    "officer.b": {
        "dept": "big_data",
        "level": "province",
        "region": "37",
        "roles": ["security_admin"],
    },
    "intruder.c": {"dept": "health", "level": "county", "region": "370103", "roles": []},
    # 三权分立: the platform lists two administrator roles for one person.
    "two.hats": {
        "dept": "big_data",
        "level": "province",
        "region": "37",
        "roles": ["security_admin", "audit_admin"],
    },
}
ME = "{ me { subject department level region } }"


@dataclass
class Served:
    base: str
    platform: TestIssuer


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, and the sign-in's browser tests need it: "
            "run scripts/test (it installs it) or apt-get install chromium"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded SQLite data dir, served by both gateways (development and production)."""
    _chromium()  # fail first, and clearly, without a browser
    directory = tmp_path_factory.mktemp("signin-browser") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(directory)
    seeded = subprocess.run(
        [str(SCRIPT), "seed", "--persons", "40", "--province", "shandong"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    return directory


@contextmanager
def _serve(data_dir: Path, environment: str) -> Iterator[Served]:
    """A platform on loopback and ``relief-gateway serve`` trusting it for browser sign-in."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env |= {
        "RELIEF_DATA_DIR": str(data_dir),
        "RELIEF_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
        "RELIEF_PROVINCE": "shandong",
        "RELIEF_ENV": environment,
    }
    with TestIssuer(audience=AUDIENCE, cors_origin=base, users=USERS) as platform:
        env |= {
            "RELIEF_OIDC_ISSUER": platform.url,
            "RELIEF_OIDC_NAME": PLATFORM_NAME,
            "RELIEF_OIDC_DISCOVERY_URL": platform.discovery_url,
            "RELIEF_OIDC_AUDIENCE": AUDIENCE,
            "RELIEF_OIDC_CLIENT_ID": CLIENT_ID,
        }
        log = data_dir.parent / f"serve-{environment}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(SCRIPT), "serve", "--port", str(port)],
                env=env,
                cwd=data_dir.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            ready = False
            while time.monotonic() < deadline and not ready:
                assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
                try:
                    ready = httpx.get(f"{base}/readyz", timeout=2).json().get("ready") is True
                except (httpx.TransportError, ValueError):
                    time.sleep(0.3)
            assert ready, log.read_text(encoding="utf-8", errors="replace")
            yield Served(base, platform)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def development(data_dir: Path) -> Iterator[Served]:
    with _serve(data_dir, "development") as served:
        yield served


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
    try:
        yield launched
    finally:
        launched.close()


# --------------------------------------------------------------------------- browser helpers


class Session:
    """One person's browser session (its own context: its own sessionStorage)."""

    def __init__(self, browser: Browser, served: Served, path: str, *, clock: bool = False):
        self.served = served
        self.path = path
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        if clock:
            self.context.clock.install()
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"页面脚本错误: {error}"))
        self.page.on("console", self._console)
        self.page.goto(self.address)

    def _console(self, message: Any) -> None:
        # The gateway's own refusals (a 401 while signing in) are logged by Chromium as failed
        # resource loads; a CSP violation or a script error is not one of them.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)

    @property
    def address(self) -> str:
        return f"{self.served.base}{self.path}"

    @property
    def button(self) -> Any:
        return self.page.get_by_role("button", name=SIGN_IN)

    def to_platform(self) -> dict[str, str]:
        """Click the button; on the platform's login form, return the authorization request."""
        self.button.click()
        self.page.wait_for_url(f"{self.served.platform.url}/authorize?**")
        return {k: v[0] for k, v in parse_qs(urlsplit(self.page.url).query).items()}

    def log_in(self, username: str) -> None:
        """At the platform: the username, 登录; back at the page."""
        self.page.get_by_label("用户名").fill(username)
        self.page.get_by_role("button", name="登录").click()
        self.page.wait_for_url(f"{self.served.base}{self.path}**")

    def storage(self) -> dict[str, str]:
        stored: dict[str, str] = self.page.evaluate("() => ({ ...sessionStorage })")
        return stored

    def graphql(self, token: str, purpose: str) -> dict[str, Any]:
        """A request from the page, as the page makes them (bearer token, X-Purpose)."""
        answer: dict[str, Any] = self.page.evaluate(
            """async ([query, token, purpose]) => {
                 const response = await fetch("/graphql", {
                   method: "POST",
                   headers: { "Content-Type": "application/json",
                              Authorization: `Bearer ${token}`, "X-Purpose": purpose },
                   body: JSON.stringify({ query }),
                 });
                 return { status: response.status, body: await response.json() };
               }""",
            [ME, token, purpose],
        )
        return answer

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def _planted_code(served: Served, username: str, page: str = "/workbench") -> tuple[str, str, str]:
    """Someone else's sign-in, done outside the victim's browser: (code, state, verifier)."""
    verifier, challenge = pkce_pair()
    state = "attacker-state-0123456789"
    answer = httpx.post(
        f"{served.platform.url}/authorize",
        data={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": f"{served.base}{page}",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "username": username,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    return code, state, verifier


# --------------------------------------------------------------------------- the workbench


def test_workbench_signs_in_at_the_platform(development: Served, browser: Browser) -> None:
    clerk = Session(browser, development, "/workbench")
    page = clerk.page
    expect(clerk.button).to_be_visible()
    expect(clerk.button).to_be_enabled()
    # Development: the token form stays, under the button, saying what it is for.
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#signin")).to_contain_text("开发与演示环境")
    expect(page.locator("#signin")).to_contain_text(urlsplit(development.platform.url).netloc)
    clerk.shot("workbench-01-sign-in")

    request = clerk.to_platform()
    assert request["response_type"] == "code"
    assert request["client_id"] == CLIENT_ID
    assert request["redirect_uri"] == f"{development.base}/workbench"
    assert request["code_challenge_method"] == "S256"
    assert len(request["code_challenge"]) == 43  # BASE64URL(SHA-256), no padding
    assert len(request["state"]) >= 22  # 16 random bytes
    assert "openid" in request["scope"].split()
    assert "code_verifier" not in request  # the verifier never leaves the tab
    clerk.shot("workbench-02-platform-login")

    clerk.log_in("clerk.a")
    who = page.locator("#whoami-text")
    expect(who).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    expect(who).to_contain_text("民政 县级")
    expect(who).to_contain_text("辖区 370102")
    expect(page.locator("#app")).to_be_visible()
    assert page.url == f"{development.base}/workbench", "the code and state left in the address"
    stored = clerk.storage()
    assert "relief-signin-pending" not in stored  # used once
    token = stored["relief-workbench-token"]
    # A request that works, with the platform's token, as the page makes them.
    answer = clerk.graphql(token, "relief_recognition")
    assert answer["status"] == 200, answer
    assert answer["body"]["data"]["me"] == {
        "subject": f"{PLATFORM_NAME}|clerk.a",
        "department": "CIVIL_AFFAIRS",
        "level": "COUNTY",
        "region": "370102",
    }
    expect(page.locator("#tasks-message.message-error")).to_have_count(0)
    clerk.shot("workbench-03-signed-in")

    # A reload keeps the session; nothing is exchanged again.
    page.reload()
    expect(who).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    # Sign-out clears the token: back to the button.
    page.get_by_role("button", name="退出").click()
    expect(clerk.button).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert "relief-workbench-token" not in clerk.storage()
    clerk.shot("workbench-04-signed-out")
    assert clerk.problems == []
    clerk.close()


def test_a_planted_code_signs_nobody_in(development: Served, browser: Browser) -> None:
    """Login CSRF: a code obtained by someone else put into the victim's address. Its state is
    not the tab's: refused, and the page never spent the code."""
    code, state, verifier = _planted_code(development, "intruder.c")
    victim = Session(browser, development, "/workbench")
    expect(victim.button).to_be_visible()
    victim.page.goto(f"{victim.address}?{urlencode({'code': code, 'state': state})}")
    message = victim.page.locator("#login-message")
    expect(message).to_contain_text("登录响应不是本页发起的 (state 不符), 已拒绝")
    expect(victim.page.locator("#app")).to_be_hidden()
    expect(victim.button).to_be_visible()
    assert victim.page.url == victim.address
    assert "relief-workbench-token" not in victim.storage()
    victim.shot("workbench-05-planted-code-refused")

    # The same with a sign-in of the victim's own under way: still refused.
    victim.to_platform()
    victim.page.goto(f"{victim.address}?{urlencode({'code': code, 'state': state})}")
    expect(message).to_contain_text("state 不符")
    assert "relief-workbench-token" not in victim.storage()
    assert victim.problems == []
    victim.close()

    # Opened in a tab where someone is signed in: ignored, the person stays who they were.
    clerk = Session(browser, development, "/workbench")
    clerk.to_platform()
    clerk.log_in("clerk.a")
    who = clerk.page.locator("#whoami-text")
    expect(who).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    clerk.page.goto(f"{clerk.address}?{urlencode({'code': code, 'state': state})}")
    expect(who).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    expect(who).not_to_contain_text("intruder.c")
    assert clerk.page.url == clerk.address
    assert clerk.problems == []
    clerk.close()

    # The code was never exchanged by the page: its owner can still trade it (once).
    traded = httpx.post(
        f"{development.platform.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": f"{development.base}/workbench",
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert traded.status_code == 200, traded.text


def test_a_forged_code_a_replay_and_a_cancel_are_refused(
    development: Served, browser: Browser
) -> None:
    clerk = Session(browser, development, "/workbench")
    page = clerk.page
    message = page.locator("#login-message")

    # The right state with a code the platform never issued: the exchange fails.
    request = clerk.to_platform()
    page.goto(f"{clerk.address}?{urlencode({'code': 'forged', 'state': request['state']})}")
    expect(message).to_contain_text("统一身份认证平台未能签发令牌 (授权码无效、已使用或已过期)")
    expect(page.locator("#app")).to_be_hidden()
    assert page.url == clerk.address
    clerk.shot("workbench-06-forged-code-refused")

    # The person cancels at the platform (error=access_denied, RFC 6749 §4.1.2.1).
    request = clerk.to_platform()
    page.goto(f"{clerk.address}?{urlencode({'error': 'access_denied', 'state': request['state']})}")
    expect(message).to_contain_text("您在统一身份认证平台取消了登录或未授权本系统, 未登录")
    expect(clerk.button).to_be_visible()
    clerk.shot("workbench-07-cancelled")

    # A genuine answer, replayed after sign-out: its state was used once.
    answers: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: answers.append(frame.url) if "code=" in frame.url else None,
    )
    clerk.to_platform()
    clerk.log_in("clerk.a")
    expect(page.locator("#whoami-text")).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    assert answers, "the platform's redirect was not seen"
    page.get_by_role("button", name="退出").click()
    expect(clerk.button).to_be_visible()
    page.goto(answers[0])
    expect(message).to_contain_text("state 不符")
    expect(page.locator("#app")).to_be_hidden()
    assert "relief-workbench-token" not in clerk.storage()
    clerk.shot("workbench-08-replay-refused")
    assert clerk.problems == []
    clerk.close()


def test_a_platform_account_the_gateway_refuses_stays_signed_out(
    development: Served, browser: Browser
) -> None:
    """The platform signs the person in, the gateway does not take them (two administrator
    roles): its Chinese reason on the page, no token kept."""
    person = Session(browser, development, "/workbench")
    person.to_platform()
    person.log_in("two.hats")
    expect(person.page.locator("#login-message")).to_contain_text("拒绝登录")
    expect(person.page.locator("#app")).to_be_hidden()
    expect(person.button).to_be_visible()
    assert "relief-workbench-token" not in person.storage()
    person.shot("workbench-12-refused-by-the-gateway")
    assert person.problems == []
    person.close()


def test_the_platforms_token_running_out_signs_the_page_out(
    development: Served, browser: Browser
) -> None:
    """expires_in (600 s at the test platform) passes: back to the button, saying why."""
    clerk = Session(browser, development, "/workbench", clock=True)
    clerk.to_platform()
    clerk.log_in("clerk.a")
    expect(clerk.page.locator("#whoami-text")).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
    clerk.page.clock.fast_forward(601_000)
    expect(clerk.page.locator("#login-message")).to_contain_text(
        "统一身份认证登录已过期; 请重新登录"
    )
    expect(clerk.page.locator("#app")).to_be_hidden()
    expect(clerk.button).to_be_visible()
    assert "relief-workbench-token" not in clerk.storage()
    clerk.shot("workbench-09-expired")
    assert clerk.problems == []
    clerk.close()


def test_an_address_without_https_is_told_to_use_it(
    development: Served, playwright: Playwright
) -> None:
    """Opened by a plain-http host name (not loopback), the page is no secure context and the
    browser offers no crypto.subtle for PKCE: the page says to use https instead of failing."""
    port = urlsplit(development.base).port
    plain = playwright.chromium.launch(
        executable_path=_chromium(),
        headless=True,
        args=["--host-resolver-rules=MAP gateway.intranet 127.0.0.1"],
    )
    try:
        page = plain.new_page(locale="zh-CN")
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://gateway.intranet:{port}/workbench")
        assert page.evaluate("window.isSecureContext") is False
        expect(page.locator("#signin")).to_contain_text("请通过 https 地址打开本页")
        expect(page.get_by_role("button", name=SIGN_IN)).to_be_disabled()
        page.screenshot(path=str(ARTIFACTS / "workbench-13-not-https.png"), full_page=True)
    finally:
        plain.close()


def test_production_offers_the_platform_only(data_dir: Path, browser: Browser) -> None:
    """In production the gateway refuses its own tokens once a platform is trusted: no token
    form, and the platform's sign-in works there the same."""
    with _serve(data_dir, "production") as production:
        clerk = Session(browser, production, "/workbench")
        expect(clerk.button).to_be_visible()
        expect(clerk.page.locator("#login-form")).to_be_hidden()
        expect(clerk.page.locator("#signin")).not_to_contain_text("开发与演示环境")
        clerk.shot("workbench-10-production-sign-in")
        clerk.to_platform()
        clerk.log_in("clerk.a")
        expect(clerk.page.locator("#whoami-text")).to_contain_text(f"{PLATFORM_NAME}|clerk.a")
        clerk.shot("workbench-11-production-signed-in")
        assert clerk.problems == []
        clerk.close()


# --------------------------------------------------------------------------- the console


def test_console_signs_in_at_the_platform(development: Served, browser: Browser) -> None:
    """The same module on the officers' console: the security administrator of the platform
    lands on its own screens; a clerk without an administrator role is refused by the console;
    a planted code is refused there too."""
    officer = Session(browser, development, "/console")
    page = officer.page
    expect(officer.button).to_be_visible()
    expect(page.locator("#login-form")).to_be_visible()  # development
    officer.shot("console-01-sign-in")
    request = officer.to_platform()
    assert request["redirect_uri"] == f"{development.base}/console"
    assert request["code_challenge_method"] == "S256"
    officer.log_in("officer.b")
    who = page.locator("#whoami-text")
    expect(who).to_contain_text(f"{PLATFORM_NAME}|officer.b")
    expect(who).to_contain_text("大数据局 省级")
    expect(who).to_contain_text("辖区 37")
    expect(who).to_contain_text("安全管理员")
    expect(page.locator("#tab-policy")).to_be_visible()
    # The security administrator's own screen, loaded with the platform's token.
    expect(page.locator("#current-version")).to_have_text(re.compile(r"^\d+$"))
    assert page.url == f"{development.base}/console"
    token = officer.storage()["relief-console-token"]
    answer = officer.graphql(token, "supervision")
    assert answer["status"] == 200, answer
    assert answer["body"]["data"]["me"]["subject"] == f"{PLATFORM_NAME}|officer.b"
    officer.shot("console-02-signed-in")

    page.get_by_role("button", name="退出").click()
    expect(officer.button).to_be_visible()
    code, state, _ = _planted_code(development, "officer.b", "/console")
    page.goto(f"{officer.address}?{urlencode({'code': code, 'state': state})}")
    expect(page.locator("#login-message")).to_contain_text("state 不符")
    expect(page.locator("#app")).to_be_hidden()
    assert "relief-console-token" not in officer.storage()
    officer.shot("console-03-planted-code-refused")

    # A clerk signs in at the platform, but the console is for administrators only.
    officer.to_platform()
    officer.log_in("clerk.a")
    expect(page.locator("#login-message")).to_contain_text("没有管理员角色")
    expect(page.locator("#app")).to_be_hidden()
    expect(officer.button).to_be_visible()
    officer.shot("console-04-clerk-refused")
    assert officer.problems == []
    officer.close()
