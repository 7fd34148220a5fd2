"""The pages' browser sign-in at the identity platform (gateway.http.signin) over HTTP:
``GET /auth/config`` with and without a platform, nothing secret in it, the platform's
discovery checked before a browser is sent anywhere, and the pages' Content-Security-Policy
widened to the token endpoint's origin only, only when configured. (The sign-in driven in a
browser: tests/test_signin_browser.py.)

The platform is a real OpenID Connect issuer on loopback (tests/issuer_support.py); a variant
of it serves discovery documents shaped for the refusals.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.crypto import Keyring
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.console import CONTENT_SECURITY_POLICY
from gateway.http.signin import ORIGIN, SignInUnfit, endpoints, origin_of
from gateway.runtime.issuers import Issuer, IssuerConfig
from gateway.runtime.parts import Runtime
from gateway.runtime.tokens import TokenService
from tests.issuer_support import TestIssuer

ROOT = Path(__file__).resolve().parents[1]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
PAGES = ("/workbench", "/console", "/dashboard")
AUDIENCE = "relief-gateway"  # the access token's aud: the gateway
CLIENT_ID = "relief-console"  # the pages' client: never an accepted audience
READY_KEYS = {
    "enabled", "ready", "name", "issuer", "clientId", "scopes", "authorizationEndpoint",
    "tokenEndpoint", "tokenForm",
}  # fmt: skip


class ShapedIssuer(TestIssuer):
    """The test platform with its discovery document changed: ``changes`` overrides fields
    (None removes one)."""

    __test__ = False

    def __init__(self, changes: dict[str, Any], **kwargs: Any) -> None:
        self.changes = changes
        super().__init__(**kwargs)

    async def _discovery(self, request: Request) -> Response:
        response = await super()._discovery(request)
        if request.method != "GET":
            return response
        document = json.loads(bytes(response.body))
        document.update(self.changes)
        return JSONResponse({k: v for k, v in document.items() if v is not None})


@pytest.fixture
def platform() -> Iterator[TestIssuer]:
    with TestIssuer(audience=AUDIENCE, cors_origin="http://gateway.test") as running:
        yield running


@asynccontextmanager
async def gateway(
    tmp_path: Path,
    platform: TestIssuer | None,
    *,
    env: str = "development",
    start: bool = True,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as ``relief-gateway serve`` runs it, trusting ``platform`` (none: no issuer)
    for browser sign-in; no database is needed for the pages and /auth/config."""
    data_dir = tmp_path / env
    data_dir.mkdir(exist_ok=True)
    Keyring.generate("aes-256-gcm+hmac-sha256").save(data_dir / "keyring.json")
    TokenService.from_file(data_dir / "token.key", "relief-gateway", create=True)
    if platform is not None:
        settings = {
            "oidc_issuer": platform.url,
            "oidc_name": "test-iam",
            "oidc_discovery_url": platform.discovery_url,
            "oidc_audience": AUDIENCE,
            "oidc_client_id": CLIENT_ID,
            **settings,
        }
    today = os.environ.pop("RELIEF_TODAY", None)  # production refuses a pinned clock
    try:
        runtime = Runtime.create(
            load_settings(
                env=env,
                province="shandong",
                data_dir=data_dir,
                database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
                **settings,
            )
        )
    finally:
        if today is not None:
            os.environ["RELIEF_TODAY"] = today
    if start:
        await runtime.tokens.start()  # the platforms' discovery and keys, as at serve
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http
    finally:
        await runtime.close()


def _connect_src(response: httpx.Response) -> list[str]:
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    return directives["connect-src"].split()


# --------------------------------------------------------------------------- no platform


@pytest.mark.parametrize("env", ["development", "production"])
async def test_without_a_platform_the_pages_keep_the_token_form(tmp_path: Path, env: str) -> None:
    async with gateway(tmp_path, None, env=env) as http:
        response = await http.get("/auth/config")
        assert response.status_code == 200
        assert response.json() == {"enabled": False}
        assert response.headers["cache-control"] == "no-store"
        for page in PAGES:
            served = await http.get(page)
            assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, page


async def test_a_platform_without_a_client_id_offers_no_browser_sign_in(
    tmp_path: Path, platform: TestIssuer
) -> None:
    """Department systems' tokens only: the pages have nowhere to send a person."""
    async with gateway(tmp_path, platform, oidc_client_id=None) as http:
        assert (await http.get("/auth/config")).json() == {"enabled": False}
        served = await http.get("/workbench")
        assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


# --------------------------------------------------------------------------- a platform


async def test_the_config_names_the_platforms_endpoints_and_nothing_secret(
    tmp_path: Path, platform: TestIssuer
) -> None:
    async with gateway(tmp_path, platform) as http:
        response = await http.get("/auth/config")
    assert response.status_code == 200
    config = response.json()
    assert set(config) == READY_KEYS
    assert config == {
        "enabled": True,
        "ready": True,
        "name": "test-iam",
        "issuer": platform.url,
        "clientId": CLIENT_ID,
        "scopes": "openid profile",
        "authorizationEndpoint": f"{platform.url}/authorize",
        "tokenEndpoint": f"{platform.url}/token",
        "tokenForm": True,  # development: the gateway still takes its own tokens
    }
    assert response.headers["cache-control"] == "no-store"
    # Nothing of the gateway's keys, nor of the platform's, is in the answer.
    text = response.text
    token_key = (tmp_path / "development" / "token.key").read_text().strip()
    assert token_key not in text
    assert not re.search(r"secret|password|private|\"d\"|\"k\"|jwks", text, re.I)


@pytest.mark.parametrize(
    ("allow_local", "token_form"), [(False, False), (True, True)], ids=["platform-only", "local"]
)
async def test_production_hides_the_token_form_unless_local_tokens_are_allowed(
    tmp_path: Path, platform: TestIssuer, allow_local: bool, token_form: bool
) -> None:
    """In production people sign in at the platform; the gateway's own tokens (and so the
    form to paste one) only with RELIEF_OIDC_ALLOW_LOCAL_TOKENS."""
    async with gateway(
        tmp_path, platform, env="production", oidc_allow_local_tokens=allow_local
    ) as http:
        config = (await http.get("/auth/config")).json()
    assert config["ready"] is True
    assert config["tokenForm"] is token_form


async def test_the_pages_may_connect_to_the_token_endpoint_only(
    tmp_path: Path, platform: TestIssuer
) -> None:
    async with gateway(tmp_path, platform) as http:
        for page in PAGES:
            served = await http.get(page)
            assert served.status_code == 200
            assert _connect_src(served) == ["'self'", platform.url], page
            policy = served.headers["content-security-policy"]
            # Every other directive as before: no script, style or frame from the platform.
            assert policy == CONTENT_SECURITY_POLICY.replace(
                "connect-src 'self'", f"connect-src 'self' {platform.url}"
            )
            assert "form-action 'none'" in policy
        # The pages' other files keep the fixed headers; the shared script is served once.
        script = await http.get("/auth/signin.js")
        assert script.status_code == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.headers["x-content-type-options"] == "nosniff"
        assert "code_challenge_method" in script.text
        head = await http.head("/auth/signin.js")
        assert head.status_code == 200
        style = await http.get("/auth/signin.css")
        assert style.status_code == 200
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        missing = await http.get("/auth/other.js")
        assert missing.status_code == 404


async def test_a_token_endpoint_elsewhere_is_the_origin_allowed(
    tmp_path: Path,
) -> None:
    """The token endpoint on another host than the authorization endpoint: connect-src names
    the token endpoint's origin (where the page's script goes), not the authorization one
    (a navigation, which the page's policy does not govern)."""
    token_endpoint = "http://127.0.0.2:9/oauth2/token?realm=gov"
    with ShapedIssuer({"token_endpoint": token_endpoint}, audience=AUDIENCE) as shaped:
        async with gateway(tmp_path, shaped) as http:
            config = (await http.get("/auth/config")).json()
            served = await http.get("/workbench")
    assert config["tokenEndpoint"] == token_endpoint
    assert _connect_src(served) == ["'self'", "http://127.0.0.2:9"]


def test_the_shared_script_builds_no_markup_and_names_no_address() -> None:
    """signin.js: every address comes from /auth/config; text becomes text nodes only; the
    verifier and state come from the platform's CSPRNG and stay in sessionStorage."""
    source = (ROOT / "gateway/http/static/signin/signin.js").read_text(encoding="utf-8")
    assert not re.search(r"""["'`](?:https?:)?//""", source)
    assert not re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", source)
    assert "eval(" not in source
    assert "localStorage" not in source  # this tab only
    assert "Math.random" not in source
    assert "crypto.getRandomValues" in source
    assert 'crypto.subtle.digest("SHA-256"' in source
    assert 'credentials: "omit"' in source  # no cookie of the gateway's goes to the platform


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("changes", "env"),
    [
        ({"code_challenge_methods_supported": ["plain"]}, "development"),
        ({"response_types_supported": ["token"]}, "development"),
        ({"authorization_endpoint": None}, "development"),
        ({"token_endpoint": "ftp://127.0.0.1/token"}, "development"),
        ({"token_endpoint": "https://user:pw@iam.example/token"}, "development"),
        ({"authorization_endpoint": "https://iam.example/authorize#x"}, "development"),
        ({"token_endpoint": "https://iam.example;script-src */token"}, "development"),
        ({"token_endpoint": "https://iam.example *.evil/token"}, "development"),
        ({"token_endpoint": "http://iam.example/token"}, "production"),
        ({"authorization_endpoint": "http://iam.example/authorize"}, "production"),
    ],
    ids=[
        "no-S256",
        "no-code-flow",
        "no-authorization-endpoint",
        "not-http",
        "credentials",
        "fragment",
        "directive-injection",
        "wildcard-injection",
        "clear-text-token-endpoint",
        "clear-text-authorization-endpoint",
    ],
)
async def test_a_discovery_unfit_for_the_browser_offers_no_sign_in(
    tmp_path: Path, changes: dict[str, Any], env: str
) -> None:
    """Not ready, in Chinese, and the pages' policy stays as it was: nothing from an unfit
    document reaches a browser."""
    with ShapedIssuer(changes, audience=AUDIENCE) as shaped:
        async with gateway(tmp_path, shaped, env=env) as http:
            config = (await http.get("/auth/config")).json()
            served = await http.get("/workbench")
    assert config["enabled"] is True
    assert config["ready"] is False
    assert CHINESE.search(config["message"])
    assert set(config) == {"enabled", "ready", "message", "tokenForm"}
    assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_an_unreachable_platform_is_asked_again_when_a_page_asks(tmp_path: Path) -> None:
    """Down when the gateway starts: not ready (Chinese); once it answers, the next
    /auth/config (after the refresh interval) reads its discovery and the pages follow."""
    later = TestIssuer(audience=AUDIENCE)  # bound, not yet listening: connection refused
    try:
        async with gateway(tmp_path, later, oidc_refresh_seconds=0.01) as http:
            down = (await http.get("/auth/config")).json()
            assert down == {
                "enabled": True,
                "ready": False,
                "message": "统一身份认证平台暂时无法访问, 请稍后刷新页面重试",
                "tokenForm": True,
            }
            page = await http.get("/console")
            assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            later.start()
            up = (await http.get("/auth/config")).json()
            assert up["ready"] is True
            assert up["tokenEndpoint"] == f"{later.url}/token"
            page = await http.get("/console")
            assert _connect_src(page) == ["'self'", later.url]
    finally:
        later.close()


async def test_a_platform_known_by_its_key_set_alone_cannot_sign_in_a_browser(
    tmp_path: Path, platform: TestIssuer
) -> None:
    """A client id with a JWKS URL but no discovery: nowhere to send the browser (said so)."""
    async with gateway(
        tmp_path, platform, oidc_discovery_url=None, oidc_jwks_url=platform.jwks_url
    ) as http:
        config = (await http.get("/auth/config")).json()
    assert config["ready"] is False
    assert "配置" in config["message"]


async def test_a_discovery_naming_another_issuer_is_not_used(tmp_path: Path) -> None:
    """OIDC Discovery §4.3: the document must name the configured issuer; otherwise its
    endpoints could send people to whoever served it."""
    with TestIssuer(audience=AUDIENCE, issuer_override="https://other.example") as other:
        async with gateway(tmp_path, other) as http:
            config = (await http.get("/auth/config")).json()
            served = await http.get("/workbench")
    assert config["ready"] is False
    assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


# --------------------------------------------------------------------------- the origin rule


@given(st.text(max_size=80), st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript"]))
def test_only_a_plain_origin_ever_joins_the_policy(host_and_rest: str, scheme: str) -> None:
    """Whatever a discovery document names, the token endpoint either yields an origin made of
    scheme, host and port only (no ``;``, ``,``, space, ``*``, quote or path), or no sign-in."""
    url = f"{scheme}://{host_and_rest}"
    platform = Issuer(
        IssuerConfig(
            name="p", issuer="https://p.example", audience=("a",), discovery_url="https://p/d"
        )
    )
    platform.keys.discovered = {
        "issuer": "https://p.example",
        "authorization_endpoint": "https://p.example/authorize",
        "token_endpoint": url,
    }
    try:
        found = endpoints(platform, production=False)
    except SignInUnfit:
        return
    assert found["token_endpoint"] == url
    origin = origin_of(url)
    assert origin is not None
    assert ORIGIN.fullmatch(origin)
    assert not set(origin) & set(";, \t\n\r*'\"")
