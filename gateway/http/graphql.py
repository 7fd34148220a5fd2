"""``/graphql``: GraphQL over HTTP, authenticated, one access decision per request, audited.

    POST application/json      queries and mutations
    GET  ?query=…              development: queries only, never mutations (405)
    GET  ?documentId=sha256:…  queries by the hash of a trusted document; in production the only
                               GET there is: no document text and no variables in a URL (405)
    GET  (browser, dev)        GraphiQL
    HEAD                       as GET, without the body

Every refusal is in the error shape of ``gateway.http.refusals`` with the request id, and so is
anything unexpected (500, masked). Client JSON is parsed by ``gateway.http.request_json``
(nesting, numbers, duplicate keys, encodings bounded).

Every data request walks: token → purpose → decision (cached) → purpose check → row predicate
and scoped storage (``schema.scope``) → execute → errors formatted → audit entry appended.
A request refused for its purpose (``authz.purpose``) is answered 403 before it executes and is
not audited: it read nothing (the refusal is counted in the denial metric).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import orjson
from graphql import GraphQLError, get_operation_ast, parse
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from authz.decision import AccessDecision
from authz.purpose import purpose_refusal
from gateway.domain import clock
from gateway.domain.errors import (
    AuditUnavailable,
    BadUserInput,
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    PersistedQueryNotAllowed,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from gateway.domain.principal import Principal
from gateway.domain.settings import (
    MAX_BODY_BYTES as MAX_BODY_BYTES,  # RELIEF_MAX_BODY_BYTES default
)
from gateway.http import metrics
from gateway.http.graphiql import graphiql_html
from gateway.http.graphql_over_http import (
    GRAPHQL_RESPONSE_JSON,
    REQUEST_MEDIA_TYPE,
    is_request_error,
    response_media_type,
)
from gateway.http.ops import observed, set_outcome
from gateway.http.refusals import internal_error_message, new_request_id, refusal
from gateway.http.request_json import loads
from gateway.http.sse import subscription_response, wants_event_stream
from gateway.runtime.client_tokens import purpose_refusal as client_purpose_refusal
from gateway.runtime.parts import Runtime
from gateway.runtime.trusted_documents import requested_hash
from gateway.storage import audit_chain as audit
from schema.messages import chinese
from schema.purposes import reads_person_data
from schema.scope import scoped_context

log = logging.getLogger(__name__)

NO_PURPOSE = ""


# The parameters of a GraphQL GET request; each may be given once.
GET_PARAMETERS = ("query", "variables", "operationName", "extensions", "documentId")

PRODUCTION_GET = (
    "生产环境中 GET 请求只能按哈希执行已登记的可信文档 (documentId 或 extensions.persistedQuery), "
    "且不带 variables: 地址中的查询文本和变量 (如身份证号码) 会被代理和负载均衡器记入访问日志。"
    "请改用 POST, 把查询和变量放在请求体中"
)


def _error_response(error: GatewayError, status: int, request_id: str) -> JSONResponse:
    return refusal(error, request_id, status=status)


@lru_cache(maxsize=1024)
def _operation_name(query: str, operation_name: str | None) -> str:
    """The name the audit records: the one given, else the executed operation's own name."""
    if operation_name:
        return operation_name
    try:
        operation = get_operation_ast(parse(query), None)
    except GraphQLError:
        return "anonymous"
    if operation is None or operation.name is None:
        return "anonymous"
    return operation.name.value


async def graphql_endpoint(request: Request) -> Response:
    response = await observed(request, _masked)  # counted and logged (gateway.http.ops)
    if isinstance(response, JSONResponse) and _negotiated(request) == GRAPHQL_RESPONSE_JSON:
        # The same JSON under the media type the client asked for (GraphQL over HTTP).
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
    return response


def _negotiated(request: Request) -> str | None:
    return response_media_type(request.headers.get("accept"))


async def _masked(request: Request) -> Response:
    """``_serve``, with anything unexpected answered 500 in the error shape: the request id to
    the client, the exception's type and frames (never its locals) to the log."""
    try:
        return await _serve(request)
    except Exception as exc:
        request_id = getattr(request.state, "request_id", None) or new_request_id()
        log.error("request %s: unexpected %s", request_id, type(exc).__name__, exc_info=exc)
        set_outcome(request, "error")
        return _error_response(GatewayError(internal_error_message(request_id)), 500, request_id)


def _method(request: Request) -> str:
    """HEAD is GET without the body (Starlette leaves the body out)."""
    return "GET" if request.method == "HEAD" else request.method


async def _serve(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id = new_request_id()
    request.state.request_id = request_id
    started = time.perf_counter()
    if _method(request) == "GET" and _wants_ide(request):
        if runtime.settings.is_production:
            return _error_response(NotFound("生产环境未开放 GraphiQL"), 404, request_id)
        return HTMLResponse(graphiql_html())
    streams = wants_event_stream(request.headers.get("accept"))  # a subscription (GraphQL over SSE)
    if _negotiated(request) is None and not streams:
        refusal = NotAcceptable(f"Accept 须包含 application/json 或 {GRAPHQL_RESPONSE_JSON}")
        return _error_response(refusal, refusal.http_status, request_id)
    try:
        principal = await _authenticate(runtime, request)
        request.state.principal = principal
        runtime.rate_limiter.check(principal)
        purpose = _purpose(runtime, request)
        query, variables, operation_name, document_hash = await _parse(request)
        # A department pinned to trusted documents runs only those (before parsing anything).
        query = runtime.trusted_documents.admit(principal.department.value, query, document_hash)
        request.state.operation = _operation_name(query, operation_name)
        # A service account declares only the purposes it was registered for (issue 16).
        # (Parsed for this only when it matters: a client's request that declares no purpose.)
        reads = (
            principal.allowed_purposes is not None
            and not purpose
            and reads_person_data(query, operation_name, runtime.settings.max_query_tokens)
        )
        outside = client_purpose_refusal(principal, purpose, reads_person_data=reads)
        if outside is not None:
            set_outcome(request, "forbidden")
            return _error_response(outside, 403, request_id)
        # (Parsed for this only when the text could be one, or a stream is asked for.)
        kind = (
            _operation_kind(query, operation_name, runtime.settings.max_query_tokens)
            if streams or (query is not None and "subscription" in query)
            else None
        )
        if kind == "subscription" or (streams and _negotiated(request) is None):
            # The same steps so far; then the stream (gateway.http.sse).
            return await _subscribe(
                runtime,
                request,
                request_id,
                principal,
                purpose,
                (query, variables, operation_name),
                kind,
            )
    except Unauthenticated as exc:
        set_outcome(request, "unauthenticated")
        return _error_response(exc, 401, request_id)
    except RateLimited as exc:
        set_outcome(request, "rate_limited")
        return _error_response(exc, exc.http_status, request_id)  # with Retry-After
    except PersistedQueryNotAllowed as exc:
        set_outcome(request, "forbidden")
        return _error_response(exc, exc.http_status, request_id)
    except BadUserInput as exc:
        set_outcome(request, "bad_request")
        return _error_response(exc, exc.http_status, request_id)
    except RequestTimeout as exc:
        set_outcome(request, "bad_request")
        response = _error_response(exc, exc.http_status, request_id)
        response.headers["Connection"] = "close"  # the rest of that body is not waited for
        return response

    for attempt in (1, 2):
        try:
            return await _execute(
                runtime,
                request,
                request_id,
                started,
                principal,
                purpose,
                query,
                variables,
                operation_name,
            )
        except (DBAPIError, OSError) as exc:
            retry = runtime.reads.failed_on_replica(exc) or _stale_connection(exc)
            if (
                attempt == 1
                and retry
                and _is_query(query, operation_name, runtime.settings.max_query_tokens)
            ):
                # A pooled connection that died with a database restart fails its first
                # statement, and SQLAlchemy then discards the whole pool: a query runs again,
                # once, on a fresh connection (a mutation may have committed part of its work).
                # A query that failed on the replica runs again on the primary.
                continue
            # The database is unreachable (restarting, network): say so. The log names the
            # kind of failure only: the exception's text carries SQL and its parameters.
            log.warning("request %s: database unavailable (%s)", request_id, type(exc).__name__)
            set_outcome(request, "unavailable")
            outage = ServiceUnavailable("数据库暂时不可用, 请稍后重试")
            return _error_response(outage, 503, request_id)
    raise AssertionError("unreachable")  # pragma: no cover


@lru_cache(maxsize=256)
def _operation_kind(query: str | None, operation_name: str | None, max_tokens: int) -> str | None:
    """query / mutation / subscription; None when the document does not parse or names no
    such operation (the executor then says why, in the error shape)."""
    if query is None:
        return None
    try:
        operation = get_operation_ast(parse(query, max_tokens=max_tokens), operation_name)
    except GraphQLError:
        return None
    return None if operation is None else operation.operation.value


async def _subscribe(
    runtime: Runtime,
    request: Request,
    request_id: str,
    principal: Principal,
    purpose: str,
    document: tuple[str | None, dict[str, Any] | None, str | None],
    kind: str | None,
) -> Response:
    """A subscription: over POST with ``Accept: text/event-stream`` only, past the same
    decision and purpose-bound refusal as a query, then streamed by ``gateway.http.sse``. A
    document that does not parse is streamed too: its errors come as one event (the protocol)."""
    query, variables, operation_name = document
    if _method(request) != "POST":
        refused: GatewayError = MethodNotAllowed(
            "GET 请求只能执行查询; 订阅 (subscription) 请使用 POST", allow="POST"
        )
        set_outcome(request, "bad_request")
        return _error_response(refused, 405, request_id)
    if not wants_event_stream(request.headers.get("accept")):
        # Answered as the executor answers a document it cannot run: nothing executed.
        set_outcome(request, "bad_request")
        body: dict[str, Any] = {"data": None, "errors": [_json_subscription(request_id)]}
        if _negotiated(request) == GRAPHQL_RESPONSE_JSON:
            del body["data"]
            return _ResultResponse(body, status_code=400, headers={"X-Request-Id": request_id})
        return _ResultResponse(body, headers={"X-Request-Id": request_id})
    if kind in ("query", "mutation"):
        refused = NotAcceptable(
            "Accept: text/event-stream 只用于订阅 (subscription); 查询和变更请接受 application/json"
        )
        set_outcome(request, "bad_request")
        return _error_response(refused, 406, request_id)
    try:
        async with runtime.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await runtime.reads.refresh_policy(runtime.authorizer, connection)
        decision = runtime.authorizer.decision_for(principal, purpose)
        if query is not None:
            denied = _purpose_refusal(runtime, principal, decision, query, operation_name)
            if denied is not None:
                metrics.DENIALS.labels(department=principal.department.value, kind="purpose").inc()
                set_outcome(request, "forbidden")
                return _error_response(denied, 403, request_id)
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        response = await subscription_response(
            runtime,
            request,
            request_id=request_id,
            principal=principal,
            token=token,
            purpose=purpose,
            decision=decision,
            query=query,
            variables=variables,
            operation_name=operation_name,
            audit_operation=_operation_name(query, operation_name) if query else "anonymous",
            format_result=_format_result,
        )
    except (DBAPIError, OSError) as exc:
        log.warning("request %s: database unavailable (%s)", request_id, type(exc).__name__)
        set_outcome(request, "unavailable")
        return _error_response(ServiceUnavailable("数据库暂时不可用, 请稍后重试"), 503, request_id)
    set_outcome(request, "ok")
    return response


def _json_subscription(request_id: str) -> dict[str, Any]:
    return {
        "message": "本接口不支持订阅 (subscription)操作的 JSON 应答; 订阅请以事件流请求"
        " (POST, Accept: text/event-stream; GraphQL over SSE)",
        "extensions": {"code": "GRAPHQL_VALIDATION_FAILED", "requestId": request_id},
    }


def _stale_connection(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@lru_cache(maxsize=256)
def _is_query(query: str, operation_name: str | None, max_tokens: int) -> bool:
    """Whether the request executes a query; an oversized document (RELIEF_MAX_QUERY_TOKENS)
    is not parsed whole before the schema's token limit refuses it."""
    try:
        operation = get_operation_ast(parse(query, max_tokens=max_tokens), operation_name)
    except GraphQLError:
        return False
    return operation is not None and operation.operation.value == "query"


async def _execute(
    runtime: Runtime,
    request: Request,
    request_id: str,
    started: float,
    principal: Principal,
    purpose: str,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> Response:
    allowed = {OperationType.QUERY} if _method(request) == "GET" else None
    # A Core connection, not an ORM session: reads return plain rows, nothing to track. On the
    # replica for a lag-tolerant query, else the primary (gateway.runtime.reads).
    async with runtime.reads.connect(principal, query, operation_name) as connection:
        if _is_query(query, operation_name, runtime.settings.max_query_tokens):
            # A query's statements run without BEGIN/ROLLBACK round trips: under READ
            # COMMITTED a transaction gives them no common snapshot anyway, and a read
            # writes nothing (the audit entry has its own connection).
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        await runtime.reads.refresh_policy(runtime.authorizer, connection)  # on the primary
        decision = runtime.authorizer.decision_for(principal, purpose)
        purpose_denied = _purpose_refusal(runtime, principal, decision, query, operation_name)
        if purpose_denied is not None:
            # Nothing executed, nothing read: not an audit entry (a read), only a denial.
            metrics.DENIALS.labels(department=principal.department.value, kind="purpose").inc()
            set_outcome(request, "forbidden")
            return _error_response(purpose_denied, 403, request_id)
        context = scoped_context(
            connection,
            principal=principal,
            purpose=purpose,
            decision=decision,
            request_id=request_id,
            today=clock.today(),
            vault=runtime.vault,
            max_page_size=runtime.settings.max_page_size,
            feeds=runtime.feeds,
            engine=runtime.engine,
            rules=runtime.rules,
            policy_changed=runtime.authorizer.invalidate,
            audit_macs=runtime.audit.macs,
        )
        guard = context.guard
        try:
            result: Any = None
            if runtime.compiled is not None:
                # One statement per root field where the query compiles (issue 17); the
                # executor below answers everything else, and stays the reference.
                result = await runtime.compiled.execute(query, variables, operation_name, context)
            metrics.GRAPHQL_PATHS.labels(path="executor" if result is None else "compiled").inc()
            if result is None:
                result = await runtime.schema.execute(
                    query,
                    variable_values=variables,
                    context_value=context,
                    operation_name=operation_name,
                    allowed_operation_types=allowed,
                )
        except InvalidOperationTypeError:
            # GraphQL over HTTP: a mutation over GET is 405, never executed.
            set_outcome(request, "bad_request")
            refused = MethodNotAllowed("GET 请求只能执行查询; 变更操作请使用 POST", allow="POST")
            return _error_response(refused, 405, request_id)
        except CannotGetOperationTypeError:
            # No operation by that operationName (or none at all): the caller's document.
            set_outcome(request, "bad_request")
            missing = BadUserInput(f"文档中没有可执行的操作 (operationName: {operation_name!r})")
            return _error_response(missing, 400, request_id)
    for error in result.errors or []:
        if isinstance(error.original_error, DBAPIError | OSError):
            # The database failed under a resolver: no partial answer, the whole request is
            # retried by the caller (handled as an outage by graphql_endpoint).
            raise error.original_error
    # The read transaction is over; the response leaves only once its audit entry is durable.
    request.state.people = len(guard.people)
    if guard.touched_person_data or guard.people:
        entry = audit.read_entry(
            principal=principal,
            purpose=purpose,
            request_id=request_id,
            operation=context.audit_operation or _operation_name(query, operation_name),
            policy_version=decision.policy_version,
            person_ids=guard.people,
            fields={name: effect.value for name, effect in guard.released.items()},
        )
        try:
            await runtime.audit.append(entry)
        except Exception:
            log.exception("request %s: audit entry could not be written", request_id)
            set_outcome(request, "audit_failed")
            withheld = AuditUnavailable(
                "审计日志暂时无法写入, 为保证可追溯, 本次查询结果未返回; 请稍后重试"
            )
            return _error_response(withheld, 503, request_id)
    body = _format_result(result, request_id)
    set_outcome(request, "ok" if not result.errors else "errors")
    _count_denials(principal, body)
    status = 200
    if _negotiated(request) == GRAPHQL_RESPONSE_JSON and is_request_error(body):
        # GraphQL over HTTP: nothing executed (parse, validation, variables, query limits):
        # 400 and no data under the new media type; application/json keeps 200.
        del body["data"]
        status = 400
    return _ResultResponse(body, status_code=status, headers={"X-Request-Id": request_id})


class _ResultResponse(JSONResponse):
    """A result's JSON as ``JSONResponse`` writes it (compact, UTF-8, keys in order), by
    orjson: a page of 50 people is ~12 kB, ten times faster to write than with ``json``
    (tests/test_compiled_reads.py compares the bytes on generated values)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _count_denials(principal: Principal, body: dict[str, Any]) -> None:
    denied = sum(1 for e in body.get("errors", ()) if e["extensions"]["code"] == "FORBIDDEN")
    if denied:
        metrics.DENIALS.labels(department=principal.department.value, kind="field").inc(denied)


def _wants_ide(request: Request) -> bool:
    return "query" not in request.query_params and "text/html" in request.headers.get("accept", "")


async def _authenticate(runtime: Runtime, request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("缺少令牌: 请在 Authorization 头中提供 Bearer 令牌")
    return await runtime.tokens.verify(token.strip())


def _purpose_refusal(
    runtime: Runtime,
    principal: Principal,
    decision: AccessDecision,
    query: str,
    operation_name: str | None,
) -> Forbidden | None:
    """Purpose-bound access (authz.purpose): a read of person data under a purpose that grants
    the caller none, while another purpose would, is refused before it executes (HTTP 403)."""
    max_tokens = runtime.settings.max_query_tokens
    if not runtime.authorizer.purposes or not reads_person_data(query, operation_name, max_tokens):
        return None
    message = purpose_refusal(
        decision,
        lambda other: runtime.authorizer.decision_for(principal, other),
        runtime.authorizer.purposes,
        runtime.purposes,
    )
    return Forbidden(message) if message is not None else None


def _purpose(runtime: Runtime, request: Request) -> str:
    purpose = request.headers.get("x-purpose", NO_PURPOSE).strip()
    if purpose and purpose not in runtime.purposes:
        known = ", ".join(runtime.purposes)
        raise BadUserInput(f"未知的用途 X-Purpose: {purpose!r}; 可选: {known}")
    return purpose


Parsed = tuple[str | None, dict[str, Any] | None, str | None, str | None]


async def _parse(request: Request) -> Parsed:
    """(query, variables, operationName, document hash); the query may be absent when a
    trusted document is named by its hash (gateway.runtime.trusted_documents)."""
    runtime: Runtime = request.app.state.runtime
    if _method(request) == "GET":
        params = _get_parameters(request)
        variables, extensions = _json_param(params, "variables"), _json_param(params, "extensions")
        if runtime.settings.is_production and (params.get("query") or variables):
            # Proxies and load balancers log URLs: no document text, no ID number in one.
            raise MethodNotAllowed(PRODUCTION_GET, allow="POST")
        return _checked(
            params.get("query"),
            variables,
            params.get("operationName"),
            extensions,
            params.get("documentId"),
        )
    content_type, _, parameters = request.headers.get("content-type", "").partition(";")
    charset = parameters.partition("charset=")[2].strip().strip('"').lower()
    if content_type.strip().lower() != REQUEST_MEDIA_TYPE or charset not in ("", "utf-8", "utf8"):
        # CSRF: an HTML form (urlencoded, multipart) or a "simple" text/plain request cannot
        # send application/json without a CORS preflight, so none of them reaches execution.
        raise UnsupportedMediaType("请求体必须是 application/json (UTF-8)")
    settings = runtime.settings
    body = await _read_body(request, settings.max_body_bytes, settings.client_timeout_seconds)
    payload = loads(body, "请求体")
    if not isinstance(payload, dict):
        # A JSON array would be a batch of operations: one operation per request.
        raise BadUserInput("请求体应为 JSON 对象 {query, variables, operationName}; 不支持批量")
    return _checked(
        payload.get("query"),
        payload.get("variables"),
        payload.get("operationName"),
        payload.get("extensions"),
        payload.get("documentId"),
    )


async def _read_body(request: Request, limit: int, idle_seconds: float) -> bytes:
    """The body, refused as soon as it exceeds ``limit`` (never buffered whole first), or when
    its next piece takes longer than ``idle_seconds`` to come (a client holding the request
    open: RELIEF_CLIENT_TIMEOUT_SECONDS, the same the server gives the headers)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"请求体过大: 上限 {limit} 字节")
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), idle_seconds)
        except TimeoutError:
            raise RequestTimeout(f"请求体未在 {idle_seconds:g} 秒内继续发送, 请求已中止") from None
        if message["type"] == "http.disconnect":
            raise BadUserInput("请求体未发送完整: 客户端已断开连接")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"请求体过大: 上限 {limit} 字节")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _get_parameters(request: Request) -> dict[str, str]:
    """GET's parameters, decoded strictly: percent-encoded UTF-8 only, each GraphQL parameter
    at most once (a proxy or filter in front may read the first of two, Starlette the last)."""
    try:
        raw = request.scope.get("query_string", b"").decode("ascii")
        pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadUserInput("查询参数应为百分号编码的 UTF-8 文本") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in GET_PARAMETERS:
            if name in params:
                raise BadUserInput(f"查询参数 {name} 出现了不止一次")
            params[name] = value
    return params


def _json_param(params: dict[str, str], name: str) -> object:
    raw = params.get(name)
    return loads(raw.encode("utf-8"), f"参数 {name} ") if raw else None


def _checked(
    query: object,
    variables: object,
    operation_name: object,
    extensions: object = None,
    document_id: object = None,
) -> Parsed:
    document_hash = requested_hash(extensions, document_id)
    text: str | None = None
    if isinstance(query, str) and query.strip():
        text = query
    elif query is not None or document_hash is None:
        raise BadUserInput("缺少 query")
    if variables is not None and not isinstance(variables, dict):
        raise BadUserInput("variables 应为 JSON 对象")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadUserInput("operationName 应为字符串")
    return text, variables, operation_name, document_hash


def _is_variable_error(error: GraphQLError) -> bool:
    return error.message.startswith("Variable '$")


def _format_result(result: ExecutionResult, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [_format_error(error, request_id) for error in result.errors]
    return body


def _format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    original = error.original_error
    formatted: dict[str, Any] = {}
    if isinstance(original, GatewayError):
        formatted["message"] = original.message
        code = original.code
    elif original is None or isinstance(original, GraphQLError):
        # Parse, validation and variable-coercion errors: the caller's query is at fault. The
        # code is decided on graphql-core's own text; the clerk reads it in Chinese (names kept).
        code = "BAD_USER_INPUT" if _is_variable_error(error) else "GRAPHQL_VALIDATION_FAILED"
        formatted["message"] = chinese(error.message)
    else:
        # Anything unexpected: no detail to the client (it could carry SQL or data).
        log.error(
            "request %s: unexpected %s at %s",
            request_id,
            type(original).__name__,
            error.path,
            exc_info=original,
        )
        formatted["message"] = f"服务器内部错误, 请联系管理员并提供请求编号 {request_id}"
        code = "INTERNAL_SERVER_ERROR"
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path:
        formatted["path"] = error.path
    formatted["extensions"] = {"code": code, "requestId": request_id}
    return formatted
