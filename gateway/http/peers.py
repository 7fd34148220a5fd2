"""``POST /exchange/v1/messages``: messages from other provinces' gateways (issue 18 item 5).

The body is the sender's envelope, byte for byte as signed; the headers name the signing key
(``X-Relief-Exchange-Key``), the signature and its time. The answer is the receipt this side
signed (200, its signature in the same headers), also when the message is a repeat (the
stored receipt) or names a person this province does not hold (status REJECTED with the
reason). A message that fails verification is refused in the JSON error shape — unknown key or
bad signature or stale signing time 401, wrong sender or recipient 403, malformed 400 — and
nothing is stored or applied. ``GET /exchange/v1/keys`` shows this province's public key
for the peers' configuration. Everything else is ``gateway.runtime.peer_exchange``.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.domain.errors import BadUserInput, Forbidden, GatewayError, NotFound, Unauthenticated
from gateway.http.refusals import new_request_id, refusal
from gateway.runtime.parts import Runtime
from gateway.runtime.peer_exchange import (
    KEY_HEADER,
    KEYS_PATH,
    MAX_MESSAGE_BYTES,
    PATH,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    ExchangeRefused,
)

log = logging.getLogger("gateway.exchange")


def _error(status: int, message: str) -> GatewayError:
    if status == 401:
        return Unauthenticated(message)
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return NotFound(message)
    return BadUserInput(message)


async def receive_message(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id = new_request_id()
    accept = request.headers.get("accept")
    exchange = runtime.peer_exchange
    if exchange is None:
        return refusal(NotFound("本网关未配置省际交换"), request_id, status=404, accept=accept)
    body = await request.body()
    if len(body) > MAX_MESSAGE_BYTES:
        return refusal(BadUserInput("消息过大"), request_id, status=413, accept=accept)
    try:
        receipt = await exchange.receive(
            body,
            request.headers.get(KEY_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(SIGNED_AT_HEADER, ""),
        )
    except ExchangeRefused as refused:
        log.warning(
            "exchange message refused: %s",
            refused.code,
            extra={"request_id": request_id, "code": refused.code, "status": refused.status},
        )
        response = refusal(
            _error(refused.status, refused.message), request_id, status=refused.status
        )
        response.headers["X-Relief-Exchange-Refusal"] = refused.code
        return response
    return Response(
        receipt.body,
        media_type="application/json",
        headers={
            KEY_HEADER: receipt.key_id,
            SIGNATURE_HEADER: receipt.signature,
            "X-Request-Id": request_id,
        },
    )


async def own_keys(request: Request) -> Response:
    """This province's public exchange key, for the peers' operators to configure (public,
    like a JWKS; the file they configure is what they trust, not this answer)."""
    runtime: Runtime = request.app.state.runtime
    exchange = runtime.peer_exchange
    if exchange is None:
        return refusal(NotFound("本网关未配置省际交换"), new_request_id(), status=404)
    return JSONResponse({"province": exchange.own, "keys": [exchange.key.public_entry()]})


def exchange_routes() -> list[BaseRoute]:
    return [
        Route(PATH, receive_message, methods=["POST"]),
        Route(KEYS_PATH, own_keys, methods=["GET"]),
    ]
