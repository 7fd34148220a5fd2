"""The operations team's endpoints and start-up: ``/metrics``, readiness, the request log line.

GET /metrics   Prometheus text; loopback and RELIEF_METRICS_ALLOW networks only (403
               FORBIDDEN otherwise, in the error shape). Counters (gateway.http.metrics) plus
               the task backlog, one grouped query at most every BACKLOG_SECONDS.
start-up       the lifespan tries ``Runtime.start`` once; if the database is not there
               yet (stopped, not migrated) the gateway still serves ``/healthz``, answers
               ``/readyz`` with 503 and keeps trying in the background, so a load balancer
               sends it traffic only once the database is reachable and policies loaded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.domain import clock
from gateway.domain.errors import Forbidden
from gateway.domain.principal import Principal
from gateway.http import metrics
from gateway.http.logs import safe_exception_message
from gateway.http.refusals import error_body, new_request_id
from gateway.runtime.parts import Runtime

log = logging.getLogger(__name__)
request_log = logging.getLogger("gateway.requests")

BACKLOG_SECONDS = 15.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0

# ------------------------------------------------------------------------ /metrics


class _BacklogCache:
    def __init__(self) -> None:
        self.at = -BACKLOG_SECONDS
        self.rows: list[tuple[str, int, int]] = []
        self.lock = asyncio.Lock()


async def _backlog(runtime: Runtime, today: date) -> list[tuple[str, int, int]]:
    from gateway.loop.tasks import backlog_by_department

    cache: _BacklogCache = runtime.__dict__.setdefault("_backlog_cache", _BacklogCache())
    async with cache.lock:
        if time.monotonic() - cache.at >= BACKLOG_SECONDS:
            try:
                async with runtime.engine.connect() as connection:
                    cache.rows = await backlog_by_department(connection, today)
                cache.at = time.monotonic()
            except Exception as exc:  # database down: the counters are still served
                log.warning("metrics: task backlog unavailable (%s)", safe_exception_message(exc))
        return cache.rows


async def metrics_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    allowed = runtime.settings.metrics_networks
    if allowed is not None:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or not any(address in network for network in allowed):
            request_id = new_request_id()
            refused = Forbidden("指标接口仅对运维网络开放 (RELIEF_METRICS_ALLOW)")
            # The error shape, and the one-line "error" it had before (checks that read it).
            refused_body = {**error_body(refused, request_id), "error": refused.message}
            return JSONResponse(refused_body, status_code=403, headers={"X-Request-Id": request_id})
    rows = await _backlog(runtime, clock.today())
    body = metrics.exposition([metrics.TaskBacklog(rows)])
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------------ /readyz


def identity_readiness(runtime: Runtime) -> tuple[dict[str, bool], bool]:
    """For ``/readyz``: whether each identity platform's keys are loaded (by its short name),
    and whether people can be signed in at all. Not ready only when platforms are configured,
    none of them has keys and the gateway's own tokens are refused (production): then no
    person's token can verify here, and the load balancer should send traffic elsewhere. One
    platform down while another (or the local key) works keeps the gateway ready; its keys are
    retried in the background, at most once per its ``min_refresh_seconds``, as /readyz asks."""
    loaded: dict[str, bool] = {}
    for platform in runtime.tokens.platforms:
        loaded[platform.config.name] = platform.keys.loaded
        platform.keys.refresh_soon()
    signs_in = not loaded or any(loaded.values()) or runtime.tokens.accepts_local
    return loaded, signs_in


# ------------------------------------------------------------------------ start-up


def replica_readiness(runtime: Runtime) -> dict[str, object] | None:
    """For ``/readyz``: the streaming replica's state and lag at its last probe (None without
    RELIEF_DATABASE_REPLICA_URL). Never a reason for 503: its reads fall back to the primary."""
    router = runtime.reads.router
    return router.current_health().as_dict() if router.configured else None


async def start_when_possible(runtime: Runtime) -> asyncio.Task[None] | None:
    """Start the runtime now, or (database not ready) keep trying in a background task."""
    try:
        await runtime.start()
        return None
    except Exception as exc:
        log.warning(
            "not ready: start-up failed (%s: %s); retrying in the background",
            type(exc).__name__,
            safe_exception_message(exc),
        )
    return asyncio.create_task(_retry_start(runtime), name="relief-start")


async def _retry_start(runtime: Runtime) -> None:
    delay = RETRY_FIRST_SECONDS
    while True:
        await asyncio.sleep(delay)
        try:
            await runtime.start()
        except Exception as exc:
            log.warning(
                "not ready: start-up failed again (%s: %s)",
                type(exc).__name__,
                safe_exception_message(exc),
            )
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            continue
        log.info("ready: database reachable, policy version %s", runtime.authorizer.version)
        return


# ------------------------------------------------------------------------ request log

# HTTP status → outcome, where the request path did not name one.
_OUTCOMES = {
    200: "ok",
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    406: "bad_request",
    413: "bad_request",
    415: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


def set_outcome(request: Request, outcome: str) -> None:
    request.state.outcome = outcome


async def observed(request: Request, serve: Callable[[Request], Awaitable[Response]]) -> Response:
    """Run one /graphql request, then count it and write its log line.

    The line names the request, the caller, the operation and what happened; never the query
    text, its variables or any value of the response.
    """
    started = time.perf_counter()
    status = 500
    try:
        response = await serve(request)
        status = response.status_code
        return response
    finally:
        seconds = time.perf_counter() - started
        state = request.state
        outcome = getattr(state, "outcome", None) or _OUTCOMES.get(status, "error")
        operation = metrics.observe_request(getattr(state, "operation", None), outcome, seconds)
        principal: Principal | None = getattr(state, "principal", None)
        fields: dict[str, object] = {
            "request_id": getattr(state, "request_id", None),
            "method": request.method,
            "operation": operation,
            "outcome": outcome,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "people": getattr(state, "people", 0),
        }
        if principal is not None:
            fields.update(
                subject=principal.subject,
                department=principal.department.value,
                # "level" is the log level's key: the caller's level and region are named so.
                caller_level=principal.level.value,
                caller_region=principal.region,
            )
        request_log.info(
            "%s %s %s %d %.1f ms",
            request.method,
            operation,
            outcome,
            status,
            seconds * 1000,
            extra=fields,
        )
