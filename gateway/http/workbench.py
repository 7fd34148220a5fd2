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

from pathlib import Path

from starlette.routing import BaseRoute

from gateway.http.console import SECURITY_HEADERS
from gateway.http.pages import StaticPage

WORKBENCH_PATH = "/workbench"

_PAGE = StaticPage(WORKBENCH_PATH, "workbench", SECURITY_HEADERS)


def workbench_directory() -> Path:
    return _PAGE.directory


def workbench_routes() -> list[BaseRoute]:
    return _PAGE.routes()
