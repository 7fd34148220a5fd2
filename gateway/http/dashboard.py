"""The oversight dashboard (运行监测) at ``/dashboard``, served by the gateway itself.

For province and city oversight and the big-data bureau (issue 15): coverage against the 99%
target (002 §1), high-cost warnings, open and overdue pushes, sharing counts (共享次数/人次,
000 §5). The page reads only aggregates: ``me`` and ``statistics`` (cells of 1-4 people come
back suppressed and are shown as such), never a query that returns a person.

No build step, like the console: ``static/dashboard/`` holds ``index.html``, ``dashboard.css``
and ES modules as checked in. The two third-party scripts (Apache ECharts for the charts,
write-excel-file for the XLSX export) are byte-identical npm releases in
``static/dashboard/vendor/`` (``LICENSES.md``; ``scripts/vendor_dashboard.py`` refreshes them),
loaded with ``<script src integrity>`` so the browser checks them, and the page works on a
network without internet. Region names come from the package's ``data/regions.json``.

Headers are the console's (``gateway.http.console.SECURITY_HEADERS``): a CSP with only this
origin's files, no inline script or style, ``connect-src 'self'``; no framing; ``no-store`` for
the page (figures stay off a shared workstation). The vendored scripts are public code, so
they may be revalidated from cache (``no-cache`` with an ``ETag``) instead of 800 kB per load.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.domain.errors import NotFound
from gateway.http.console import SECURITY_HEADERS
from gateway.http.refusals import error_body, new_request_id

DASHBOARD_PATH = "/dashboard"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def dashboard_directory() -> Path:
    return Path(str(resources.files("gateway.http").joinpath("static/dashboard")))


def _listing(directory: Path) -> frozenset[str]:
    return frozenset(
        path.name for path in directory.iterdir() if path.is_file() and path.suffix in _MEDIA_TYPES
    )


@cache
def _page_files() -> frozenset[str]:
    """The page's own files, fixed at first use: no path from the URL reaches the file system."""
    return _listing(dashboard_directory())


@cache
def _vendor_files() -> frozenset[str]:
    return _listing(dashboard_directory() / "vendor")


@cache
def _vendor_etag(name: str) -> str:
    data = (dashboard_directory() / "vendor" / name).read_bytes()
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def _not_found() -> Response:
    request_id = new_request_id()
    headers = {**SECURITY_HEADERS, "X-Request-Id": request_id}
    return JSONResponse(error_body(NotFound("未找到该文件"), request_id), 404, headers=headers)


def _serve(name: str) -> Response:
    if name not in _page_files():
        return _not_found()
    path = dashboard_directory() / name
    return Response(
        path.read_bytes(), media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS
    )


async def dashboard_page(_request: Request) -> Response:
    return _serve("index.html")


async def dashboard_asset(request: Request) -> Response:
    return _serve(str(request.path_params["name"]))


async def vendor_asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    if name not in _vendor_files():
        return _not_found()
    etag = _vendor_etag(name)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    path = dashboard_directory() / "vendor" / name
    return Response(path.read_bytes(), media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@cache
def _regions() -> bytes:
    # GB/T 2260 codes and names: public reference data, the same file the gateway validates
    # region codes with.
    return resources.files("gateway").joinpath("data/regions.json").read_bytes()


async def regions(_request: Request) -> Response:
    return Response(
        _regions(), media_type="application/json; charset=utf-8", headers=SECURITY_HEADERS
    )


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route(DASHBOARD_PATH, dashboard_page, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/", dashboard_page, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/regions.json", regions, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/vendor/{{name}}", vendor_asset, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/{{name}}", dashboard_asset, methods=["GET", "HEAD"]),
    ]
