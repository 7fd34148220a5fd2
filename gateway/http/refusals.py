"""Every refusal in one shape: the code a client sees and the request id the server log carries.

    HTTP 4xx/5xx, X-Request-Id: 6f1c…
    {"errors": [{"message": "请求体不是合法的 JSON",
                 "extensions": {"code": "BAD_USER_INPUT", "requestId": "6f1c…"}}]}

Whoever refuses: ``/graphql`` itself (``gateway.http.graphql``), the router (404 for an address
that does not exist, 405 for a method an address does not serve), the URL limit
(``gateway.http.url_limit``), CORS preflights (``gateway.http.cors``), an unexpected exception
(500, masked), and the server's own HTTP parser before any of these runs
(``gateway.http.protocol``: 400, 408, 414, 431). The media type follows GraphQL over HTTP:
``application/graphql-response+json`` when the client's ``Accept`` prefers it, else
``application/json`` (also when ``Accept`` names neither: a refusal is never 406 itself).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.domain.errors import (
    BadUserInput,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
)
from gateway.http.graphql_over_http import GRAPHQL_RESPONSE_JSON, response_media_type

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return str(uuid.uuid4())


def error_body(error: GatewayError, request_id: str) -> dict[str, Any]:
    extensions = {"code": error.code, "requestId": request_id}
    return {"errors": [{"message": error.message, "extensions": extensions}]}


def refusal(
    error: GatewayError,
    request_id: str,
    *,
    status: int | None = None,
    accept: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The response refusing a request with ``error`` (its ``http_status`` unless ``status``).

    ``Allow`` (405) and ``Retry-After`` (429) come from the error itself."""
    sent = {"X-Request-Id": request_id, **(headers or {})}
    if isinstance(error, MethodNotAllowed):
        sent["Allow"] = error.allow
    if isinstance(error, RateLimited):
        sent["Retry-After"] = str(error.retry_after)
    response = JSONResponse(
        error_body(error, request_id), status_code=status or error.http_status, headers=sent
    )
    if response_media_type(accept) == GRAPHQL_RESPONSE_JSON:
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
    return response


def internal_error_message(request_id: str) -> str:
    return f"服务器内部错误, 请联系管理员并提供请求编号 {request_id}"


# ------------------------------------------------------------------ Starlette's own refusals


async def http_exception(request: Request, exc: Exception) -> Response:
    """404 and 405 from the router (and from the GraphiQL assets), in the error shape."""
    assert isinstance(exc, HTTPException)
    request_id = new_request_id()
    error: GatewayError
    if exc.status_code == 404:
        error = NotFound("未找到该地址")
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed(f"该地址不支持 {request.method} 方法; 可用: {allow}", allow)
    else:
        error = BadUserInput("请求无法处理")
    log.info(
        "refused %s %d",
        request.method,
        exc.status_code,
        extra={"request_id": request_id, "status": exc.status_code},
    )
    return refusal(error, request_id, status=exc.status_code, accept=request.headers.get("accept"))


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected outside ``/graphql`` (which masks its own): no detail to the client,
    the request id to match the log line (the exception's type and frames, never locals)."""
    request_id = new_request_id()
    log.error("request %s: unexpected %s", request_id, type(exc).__name__, exc_info=exc)
    error = GatewayError(internal_error_message(request_id))
    return refusal(error, request_id, status=500, accept=request.headers.get("accept"))


EXCEPTION_HANDLERS = {HTTPException: http_exception, Exception: internal_error}


def accept_of(scope: Mapping[str, Any]) -> str | None:
    """The ``Accept`` header of an ASGI scope (for middleware that has no Request)."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return str(value.decode("latin-1"))
    return None
