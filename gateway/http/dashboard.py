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
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.http.console import SECURITY_HEADERS
from gateway.http.pages import MEDIA_TYPES, StaticPage, listing, not_found

DASHBOARD_PATH = "/dashboard"

_PAGE = StaticPage(DASHBOARD_PATH, "dashboard", SECURITY_HEADERS)


def dashboard_directory() -> Path:
    return _PAGE.directory


@cache
def _vendor_files() -> frozenset[str]:
    return listing(dashboard_directory() / "vendor")


@cache
def _vendor_etag(name: str) -> str:
    data = (dashboard_directory() / "vendor" / name).read_bytes()
    return f'"{hashlib.sha256(data).hexdigest()[:32]}"'


async def vendor_asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    if name not in _vendor_files():
        return not_found(SECURITY_HEADERS)
    etag = _vendor_etag(name)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    path = dashboard_directory() / "vendor" / name
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix], headers=headers)


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
        Route(DASHBOARD_PATH, _PAGE.page, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/", _PAGE.page, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/regions.json", regions, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/vendor/{{name}}", vendor_asset, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/{{name}}", _PAGE.asset, methods=["GET", "HEAD"]),
    ]
