"""The gateway's own pages (the officers' console, the departments' workbench, the oversight
dashboard): each a folder of ``static/`` served as checked in, with the console's strict
headers (``gateway.http.console.SECURITY_HEADERS``).

Only files of the listed kinds in the page's folder are served, and the list is fixed at first
use: a request names one of them or gets 404 in the one error shape — no path from the URL ever
reaches the file system.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.domain.errors import NotFound
from gateway.http.refusals import error_body, new_request_id
from gateway.http.signin import page_headers

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def static_directory(folder: str) -> Path:
    return Path(str(resources.files("gateway.http").joinpath(f"static/{folder}")))


def listing(directory: Path) -> frozenset[str]:
    """The servable files of a folder (by kind)."""
    return frozenset(
        path.name for path in directory.iterdir() if path.is_file() and path.suffix in MEDIA_TYPES
    )


def not_found(headers: dict[str, str]) -> Response:
    request_id = new_request_id()
    body = error_body(NotFound("未找到该文件"), request_id)
    return JSONResponse(body, 404, headers={**headers, "X-Request-Id": request_id})


class StaticPage:
    """One page at ``path``: ``index.html`` there, its other files at ``path/<name>``."""

    def __init__(self, path: str, folder: str, headers: dict[str, str]) -> None:
        self.path = path
        self.folder = folder
        self.headers = headers

    @property
    def directory(self) -> Path:
        return static_directory(self.folder)

    @cached_property
    def names(self) -> frozenset[str]:
        return listing(self.directory)

    def serve(self, name: str, headers: dict[str, str] | None = None) -> Response:
        if name not in self.names:
            return not_found(self.headers)
        path = self.directory / name
        return Response(
            path.read_bytes(),
            media_type=MEDIA_TYPES[path.suffix],
            headers=self.headers if headers is None else headers,
        )

    async def page(self, request: Request) -> Response:
        # With a browser sign-in configured, the page may also connect to the identity
        # platform's token endpoint (gateway.http.signin), and to nothing else.
        return self.serve("index.html", page_headers(request, self.headers))

    async def asset(self, request: Request) -> Response:
        return self.serve(str(request.path_params["name"]))

    def routes(self) -> list[BaseRoute]:
        return [
            Route(self.path, self.page, methods=["GET", "HEAD"]),
            Route(f"{self.path}/", self.page, methods=["GET", "HEAD"]),
            Route(f"{self.path}/{{name}}", self.asset, methods=["GET", "HEAD"]),
        ]
