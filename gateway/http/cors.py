"""CORS: which web pages (origins) may call the gateway from a browser.

Only the origins in ``RELIEF_CORS_ORIGINS`` (none by default), methods GET and POST, the headers
a client needs, no credentials mode (bearer tokens, not cookies, so nothing rides along).

A preflight the gateway refuses (an origin not listed, another method or request header) is
answered **403** ``CORS_NOT_ALLOWED`` in the JSON error shape, without any
``Access-Control-Allow-*`` header, whether origins are configured or not; the browser then
does not send the page's request. 403 rather than 400: the preflight is well formed, what it
asks for is not permitted. Without this module's answer it was 400 (Starlette's plain text) with
origins configured and 405 without (no middleware, so OPTIONS reached the route).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from gateway.domain.errors import CorsNotAllowed
from gateway.http.refusals import new_request_id, refusal

ALLOW_METHODS = ("GET", "POST")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Purpose")
EXPOSE_HEADERS = ("X-Request-Id", "Retry-After")


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOW_METHODS,
            allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        allowed = super().preflight_response(request_headers)
        if allowed.status_code < 400:
            return allowed
        reasons = self._reasons(request_headers)
        error = CorsNotAllowed(f"跨域请求被拒绝: {'; '.join(reasons)}")
        response = refusal(error, new_request_id(), accept=request_headers.get("accept"))
        response.headers["Vary"] = allowed.headers["Vary"]
        return response

    def _reasons(self, request_headers: Headers) -> list[str]:
        reasons = []
        if not self.is_allowed_origin(request_headers["origin"]):
            configured = "RELIEF_CORS_ORIGINS 未配置任何来源" if not self.allow_origins else ""
            reasons.append(f"该网页来源未获准 {configured}".strip())
        if request_headers["access-control-request-method"] not in self.allow_methods:
            reasons.append(f"只允许 {', '.join(ALLOW_METHODS)} 方法")
        requested = request_headers.get("access-control-request-headers") or ""
        if any(h.strip().lower() not in self.allow_headers for h in requested.split(",") if h):
            reasons.append(f"只允许请求头 {', '.join(ALLOW_HEADERS)}")
        if "access-control-request-private-network" in request_headers:
            reasons.append("不允许公网网页访问私有网络")
        return reasons or ["不符合跨域规则"]
