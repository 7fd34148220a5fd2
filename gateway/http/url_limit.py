"""The application's limit on the request target: path and query string over
``RELIEF_MAX_URL_BYTES`` are refused with HTTP 414 in the JSON error shape, on every address.

The server's HTTP parser has a limit of its own (``SERVER_URL_LIMIT``, 65,535 bytes, refused by
``gateway.http.protocol``); the setting is bounded below it, so a long URL meets this limit
first and its refusal is counted like any other. Lengths are of the bytes as sent
(percent-encoded), which is what a load balancer's own limit measures.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.domain.errors import UriTooLong
from gateway.http.refusals import accept_of, new_request_id, refusal

log = logging.getLogger(__name__)


class UrlLimit:
    def __init__(self, app: ASGIApp, max_url_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope["path"].encode("utf-8")
            query = scope.get("query_string", b"")
            size = len(path) + (len(query) + 1 if query else 0)
            if size > self.max_url_bytes:
                refused = UriTooLong(
                    f"请求地址过长: {size} 字节, 上限 {self.max_url_bytes} 字节; "
                    "查询文本和变量请用 POST 请求体发送"
                )
                request_id = new_request_id()
                # The length only: the URL itself may carry what a log must not.
                log.info(
                    "refused %s 414: request target of %d bytes",
                    scope["method"],
                    size,
                    extra={"request_id": request_id, "status": 414},
                )
                response = refusal(refused, request_id, accept=accept_of(scope))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
