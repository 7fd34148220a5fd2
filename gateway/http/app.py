"""The Starlette application: routes, middleware and lifespan.

    request → Cors (preflights: gateway.http.cors) → UrlLimit (414: gateway.http.url_limit)
            → router → /graphql, /healthz, /readyz, /metrics, /console, GraphiQL assets

Refusals anywhere on the way (404, 405, a masked 500 …) are in the JSON error shape with a
request id (``gateway.http.refusals``); below all of this the server's own connection handling
(``gateway.http.protocol``) refuses what never becomes a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.http import metrics
from gateway.http.console import console_routes
from gateway.http.cors import Cors
from gateway.http.dashboard import dashboard_routes
from gateway.http.graphiql import ASSETS_PATH, assets_directory
from gateway.http.graphql import graphql_endpoint
from gateway.http.oauth import oauth_routes
from gateway.http.ops import (
    identity_readiness,
    metrics_endpoint,
    replica_readiness,
    start_when_possible,
)
from gateway.http.peers import exchange_routes
from gateway.http.refusals import EXCEPTION_HANDLERS
from gateway.http.signin import sign_in_routes
from gateway.http.upload import upload_routes
from gateway.http.url_limit import UrlLimit
from gateway.http.workbench import workbench_routes
from gateway.runtime.parts import Runtime


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        async with runtime.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception:  # any database failure means not ready; the detail stays in the log
        return JSONResponse({"ready": False, "reason": "数据库不可用"}, status_code=503)
    if not runtime.authorizer.loaded:
        return JSONResponse({"ready": False, "reason": "策略未加载"}, status_code=503)
    issuers, signs_in = identity_readiness(runtime)  # {} without identity platforms
    if not signs_in:
        reason = "身份平台的签名密钥均未加载, 且本网关签发的令牌已停用: 无法验证任何人员令牌"
        return JSONResponse({"ready": False, "reason": reason, "issuers": issuers}, 503)
    body: dict[str, object] = {"ready": True, "policyVersion": runtime.authorizer.version}
    if issuers:
        body["issuers"] = issuers
    replica = replica_readiness(runtime)  # reported, never failing: reads fall back
    if replica is not None:
        body["replica"] = replica
    return JSONResponse(body)


def _middleware(runtime: Runtime) -> list[Middleware]:
    settings = runtime.settings
    return [
        # Browsers may call /graphql only from the frontends named in RELIEF_CORS_ORIGINS (none
        # by default); every other preflight is refused alike (403), configured or not.
        Middleware(Cors, origins=settings.cors_origin_list),
        Middleware(UrlLimit, max_url_bytes=settings.max_url_bytes),
    ]


def create_app(runtime: Runtime) -> Starlette:
    metrics.observe_services()  # ingest and warning runs reported by this process are counted

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Database not there yet: serve /healthz, 503 on /readyz, keep trying (ops_http).
        starting = await start_when_possible(runtime)
        yield
        if starting is not None:
            starting.cancel()
            with suppress(asyncio.CancelledError):
                await starting
        await runtime.close()

    routes: list[BaseRoute] = [
        Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *console_routes(),  # security officers' console, in production too
        *workbench_routes(),  # departments' workbench (部门工作台)
        *dashboard_routes(),  # province and city oversight (运行监测)
        *upload_routes(),  # department files uploaded from the browser
        *sign_in_routes(),  # the pages' sign-in at the identity platform (PKCE)
        *oauth_routes(),  # service accounts: client-credentials tokens and their JWKS
        *exchange_routes(),  # other provinces' gateways: signed messages, signed receipts
    ]
    if not runtime.settings.is_production:
        routes.append(Mount(ASSETS_PATH, StaticFiles(directory=assets_directory())))
    app = Starlette(
        routes=routes,
        middleware=_middleware(runtime),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
