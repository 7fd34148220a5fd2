"""Browser sign-in through the identity platform (统一身份认证, issue 16): what the console and
the workbench need to sign in with authorization code + PKCE, and the script that does it.

    GET /auth/config     {"enabled": false}                        no platform with a client id:
                                                                   the pages keep the token form
                         {"enabled": true, "ready": true,          discovery read: where to send
                          "issuer", "name", "clientId", "scopes",  the browser, where it trades
                          "authorizationEndpoint",                 the code for tokens
                          "tokenEndpoint", "tokenForm"}
                         {"enabled": true, "ready": false,         the platform's discovery not
                          "message", "tokenForm"}                  (yet) readable or unfit
    GET /auth/signin.js  the shared ES module (``static/signin/signin.js``)
    GET /auth/signin.css its look (``static/signin/signin.css``)

The browser sign-in uses the first configured platform with a ``client_id``
(``gateway.runtime.issuers``); its endpoints come from the platform's discovery document, read
by the server with the platform's keys and cached there (``gateway.runtime.jwks.KeySource``).
The answer carries nothing secret: the client is public (PKCE, RFC 7636), and the gateway
verifies the resulting access token like any other bearer token.

``tokenForm`` says whether the pages offer the token form under the button: only where the
gateway still accepts its own HS256 tokens (development, the demo, or production with
RELIEF_OIDC_ALLOW_LOCAL_TOKENS), never in production where people sign in at the platform.

The pages' ``Content-Security-Policy`` allows ``connect-src`` to the token endpoint's origin
(and only that origin, only when configured): see :func:`page_headers`. Going to the
authorization endpoint is a top-level navigation by script, which CSP does not govern, and the
pages submit no form, so ``form-action 'none'`` stays.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from gateway.runtime.issuers import Issuer
    from gateway.runtime.parts import Runtime

log = logging.getLogger("gateway.identity")

CONFIG_PATH = "/auth/config"
SCRIPT_PATH = "/auth/signin.js"
STYLE_PATH = "/auth/signin.css"
# OpenID Connect's own scope; "profile" for the name the platform shows at its consent page.
SCOPES = "openid profile"
UNAVAILABLE = "统一身份认证平台暂时无法访问, 请稍后刷新页面重试"
UNFIT = "统一身份认证平台的配置不支持本系统的登录方式, 请联系系统管理员"

ORIGIN = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?"
)
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The script and its style sheet, as the pages' own files are served: same origin only.
_SCRIPT_HEADERS = {**_NO_STORE, "Cross-Origin-Resource-Policy": "same-origin"}


class SignInUnfit(Exception):
    """The platform's discovery document cannot serve a browser sign-in (server log only)."""


def browser_platform(runtime: Runtime) -> Issuer | None:
    """The platform the pages sign in through: the first one with a client id."""
    for platform in runtime.tokens.platforms:
        if platform.config.client_id:
            return platform
    return None


def accepts_local_tokens(runtime: Runtime) -> bool:
    """Whether the gateway takes its own HS256 tokens (the rule of ``Runtime.create``)."""
    settings = runtime.settings
    return not settings.is_production or settings.oidc_allow_local_tokens


def endpoints(platform: Issuer, *, production: bool) -> dict[str, str]:
    """The authorization and token endpoints from the platform's discovery document, checked:
    the document is the configured issuer's; the endpoints are absolute http(s) addresses
    (https in production, except on loopback) with no credentials or fragment (RFC 6749
    §3.1); PKCE S256 and the code flow are not ruled out."""
    document = platform.keys.discovered
    if document.get("issuer") != platform.config.issuer:
        # OIDC Discovery §4.3: a document naming another issuer is not this platform's; its
        # endpoints could send people to whoever served it.
        raise SignInUnfit("discovery document names another issuer")
    found: dict[str, str] = {}
    for key in ("authorization_endpoint", "token_endpoint"):
        value = document.get(key)
        if not isinstance(value, str) or not value:
            raise SignInUnfit(f"discovery document has no {key}")
        if origin_of(value) is None:  # before urlsplit: it raises on "http://[" and alike
            raise SignInUnfit(f"{key} is not an http(s) address")
        parts = urlsplit(value)
        if parts.username or parts.password or parts.fragment:
            raise SignInUnfit(f"{key} carries credentials or a fragment")
        if production and parts.scheme != "https" and not _loopback(parts.hostname or ""):
            # A code or token sent in clear text can be read on the way.
            raise SignInUnfit(f"{key} is not https")
        found[key] = value
    methods = document.get("code_challenge_methods_supported")
    if methods is not None and (not isinstance(methods, list) or "S256" not in methods):
        raise SignInUnfit("the platform does not announce PKCE S256")
    responses = document.get("response_types_supported")
    if responses is not None and (not isinstance(responses, list) or "code" not in responses):
        raise SignInUnfit("the platform does not announce the authorization code flow")
    return found


async def sign_in_config(runtime: Runtime) -> dict[str, Any]:
    """The answer of ``GET /auth/config`` (nothing secret in it)."""
    platform = browser_platform(runtime)
    if platform is None:
        return {"enabled": False}
    token_form = accepts_local_tokens(runtime)
    if platform.config.discovery_url is None:
        # A key set alone names no authorization endpoint: the browser has nowhere to go.
        _log_unfit(platform, SignInUnfit("client_id set without a discovery_url"))
        return {"enabled": True, "ready": False, "message": UNFIT, "tokenForm": token_form}
    if not platform.keys.discovered:
        # Not read at start (platform unreachable): try again, at most once per refresh interval.
        await platform.keys.refresh()
    try:
        found = endpoints(platform, production=runtime.settings.is_production)
    except SignInUnfit as unfit:
        message = UNAVAILABLE if not platform.keys.discovered else UNFIT
        if platform.keys.discovered:
            _log_unfit(platform, unfit)
        return {"enabled": True, "ready": False, "message": message, "tokenForm": token_form}
    return {
        "enabled": True,
        "ready": True,
        "name": platform.config.name,
        "issuer": platform.config.issuer,
        "clientId": platform.config.client_id,
        "scopes": SCOPES,
        "authorizationEndpoint": found["authorization_endpoint"],
        "tokenEndpoint": found["token_endpoint"],
        "tokenForm": token_form,
    }


def connect_sources(runtime: Runtime) -> list[str]:
    """Origins the pages' scripts may connect to besides their own: the token endpoint's, when
    a browser sign-in is configured and its discovery has been read."""
    platform = browser_platform(runtime)
    if platform is None:
        return []
    try:
        found = endpoints(platform, production=runtime.settings.is_production)
    except SignInUnfit:
        return []
    origin = origin_of(found["token_endpoint"])
    return [] if origin is None else [origin]


def page_headers(request: Request, headers: dict[str, str]) -> dict[str, str]:
    """A page's headers with its ``connect-src`` widened to the sign-in's token endpoint."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    sources = connect_sources(runtime) if runtime is not None else []
    policy = headers.get("Content-Security-Policy")
    if not sources or policy is None:
        return headers
    directives = []
    for directive in policy.split(";"):
        name, _, value = directive.strip().partition(" ")
        if name == "connect-src":
            directive = f"{name} {' '.join([*value.split(), *sources])}"
        directives.append(directive.strip())
    return {**headers, "Content-Security-Policy": "; ".join(directives)}


async def auth_config(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse(await sign_in_config(runtime), headers=_NO_STORE)


def _static(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    """A fixed file of ``static/signin/`` (no name from the URL reaches the file system)."""

    async def serve(_request: Request) -> Response:
        body = resources.files("gateway.http").joinpath(f"static/signin/{name}").read_bytes()
        return Response(body, media_type=media_type, headers=_SCRIPT_HEADERS)

    return serve


def sign_in_routes() -> list[BaseRoute]:
    return [
        Route(CONFIG_PATH, auth_config, methods=["GET", "HEAD"]),
        Route(
            SCRIPT_PATH,
            _static("signin.js", "text/javascript; charset=utf-8"),
            methods=["GET", "HEAD"],
        ),
        Route(
            STYLE_PATH, _static("signin.css", "text/css; charset=utf-8"), methods=["GET", "HEAD"]
        ),
    ]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) address, lower-cased; None for anything
    else. Only such an origin goes into a policy: nothing in it can end the directive (``;``,
    ``,``, white space) or widen it (``*``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return None
    return origin if ORIGIN.fullmatch(origin) else None


_logged: set[tuple[str, str]] = set()


def _log_unfit(platform: Issuer, unfit: SignInUnfit) -> None:
    # Once per platform and reason: /auth/config is asked by every page load.
    reason = (platform.config.issuer, str(unfit))
    if reason not in _logged:
        _logged.add(reason)
        log.warning(
            "identity platform %s: browser sign-in not offered: %s", platform.config.issuer, unfit
        )
