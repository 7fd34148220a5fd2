"""The security officers' console (安全管理员控制台) at ``/console``, served by the gateway itself.

No build step: ``static/console/`` holds the page as checked in (``index.html``,
``console.css`` and vanilla JavaScript ES modules), so a fresh machine, or a provincial network
without internet, serves it as is. The page holds no secret of its own: the officer pastes a
token, kept in the tab's ``sessionStorage``, and the page talks only to ``POST /graphql``, where
every officer field is authorised like any other request. It is served in production too:
officers govern the policy there.

Every response carries strict headers, because the page is where a token that can change who
sees what is used:

- ``Content-Security-Policy`` allows only this origin's own files and no inline script or
  style, so a proposal's title or note can never run as code (the page also inserts such text
  with ``textContent`` only), and ``frame-ancestors 'none'`` with ``X-Frame-Options: DENY``
  stop another site from framing the page and tricking a click on 批准 (clickjacking);
- ``Cache-Control: no-store`` leaves nothing of the page or its data on a shared workstation;
- ``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.domain.errors import NotFound
from gateway.http.refusals import error_body, new_request_id

CONSOLE_PATH = "/console"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # every form is handled by the page's script, never submitted
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# Only these kinds of file are served; anything else in the directory stays private.
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def console_directory() -> Path:
    return Path(str(resources.files("gateway.http").joinpath("static/console")))


@cache
def _asset_names() -> frozenset[str]:
    """The files the console may serve, fixed at first use: a request names one of these or
    gets 404 (no path from the URL ever reaches the file system)."""
    return frozenset(
        path.name
        for path in console_directory().iterdir()
        if path.is_file() and path.suffix in _MEDIA_TYPES
    )


def _serve(name: str) -> Response:
    if name not in _asset_names():
        request_id = new_request_id()
        headers = {**SECURITY_HEADERS, "X-Request-Id": request_id}
        return JSONResponse(error_body(NotFound("未找到该文件"), request_id), 404, headers=headers)
    path = console_directory() / name
    return Response(
        path.read_bytes(), media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS
    )


async def console_page(_request: Request) -> Response:
    return _serve("index.html")


async def console_asset(request: Request) -> Response:
    return _serve(str(request.path_params["name"]))


def console_routes() -> list[BaseRoute]:
    return [
        Route(CONSOLE_PATH, console_page, methods=["GET", "HEAD"]),
        Route(f"{CONSOLE_PATH}/", console_page, methods=["GET", "HEAD"]),
        Route(f"{CONSOLE_PATH}/{{name}}", console_asset, methods=["GET", "HEAD"]),
    ]
