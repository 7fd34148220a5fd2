"""The departments' workbench (部门工作台) at ``/workbench``, served by the gateway itself.

A county, city or province clerk of a department (civil affairs, rural revitalisation, medical
insurance …) answers the loop here: 待办 (tasks and their answers), 预警 (high-cost warnings),
异常回传 (anomalies sent back to the department), 数据报送 (batches, rejection reports, file
upload) and 救助链 (one person's timeline). Like the console (``gateway.http.console``) it has
no build step: ``static/workbench/`` holds ``index.html``, ``workbench.css`` and vanilla
JavaScript ES modules as checked in. The page holds no secret of its own: the clerk pastes a
token, kept in the tab's ``sessionStorage``, and the page uses only what a department's own
frontend would — ``POST /graphql`` with ``X-Purpose``, the upload endpoint and the batches'
rejection reports — so every read is authorised and audited like any other request.

The page is served with the console's headers (``SECURITY_HEADERS``): a strict
``Content-Security-Policy`` (this origin's files only, no inline script or style,
``connect-src 'self'``), no framing, ``no-store``, no referrer. Person data is on screen here,
so the same reasons hold: text from the API is inserted as text only and never becomes markup,
and nothing stays behind on a shared workstation.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.domain.errors import NotFound
from gateway.http.console import SECURITY_HEADERS
from gateway.http.refusals import error_body, new_request_id

WORKBENCH_PATH = "/workbench"

# Only these kinds of file are served; anything else in the directory stays private.
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def workbench_directory() -> Path:
    return Path(str(resources.files("gateway.http").joinpath("static/workbench")))


@cache
def _asset_names() -> frozenset[str]:
    """The files the workbench may serve, fixed at first use: a request names one of these or
    gets 404 (no path from the URL ever reaches the file system)."""
    return frozenset(
        path.name
        for path in workbench_directory().iterdir()
        if path.is_file() and path.suffix in _MEDIA_TYPES
    )


def _serve(name: str) -> Response:
    if name not in _asset_names():
        request_id = new_request_id()
        headers = {**SECURITY_HEADERS, "X-Request-Id": request_id}
        return JSONResponse(error_body(NotFound("未找到该文件"), request_id), 404, headers=headers)
    path = workbench_directory() / name
    return Response(
        path.read_bytes(), media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS
    )


async def workbench_page(_request: Request) -> Response:
    return _serve("index.html")


async def workbench_asset(request: Request) -> Response:
    return _serve(str(request.path_params["name"]))


def workbench_routes() -> list[BaseRoute]:
    return [
        Route(WORKBENCH_PATH, workbench_page, methods=["GET", "HEAD"]),
        Route(f"{WORKBENCH_PATH}/", workbench_page, methods=["GET", "HEAD"]),
        Route(f"{WORKBENCH_PATH}/{{name}}", workbench_asset, methods=["GET", "HEAD"]),
    ]
