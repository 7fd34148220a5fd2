"""Department files uploaded from a browser or a system: the same pipeline as ``ingest``.

    POST /ingest/upload?feed=identities&dryRun=0     the file's bytes as the body
         Authorization: Bearer <token>               the tokens of /graphql
         X-Relief-Filename: %E4%BD%8E%E4%BF%9D.csv   percent-encoded UTF-8 name: the batch's file
                                                     name; its extension picks the reader
         Content-Type: application/octet-stream      (X-Purpose: optional, as on /graphql)
    → 200 application/x-ndjson, one JSON object a line:
         {"type": "progress", "rows": 10000}         rows read so far, after each chunk
         {"type": "result", "status": …, "batch": {…}, "counts": {…}, "rejections": […],
          "reportUrl": "/ingest/batches/<id>/report" | null, …}
      or, when the import fails once the answer has begun,
         {"type": "error", "error": {"message": …, "extensions": {"code": …, "requestId": …}}}

    GET /ingest/batches/<id>/report                  the rejection report (CSV, UTF-8 with BOM)

A refusal before the answer begins (token, grant, feed, size, a file that cannot be read) is
in the one error shape with its status (``gateway.http.refusals``).

Who may upload what: the caller's department must be granted ``Ingest.submitRecords`` (asked
of the decision exactly as the GraphQL push asks it), the feed must be one of its own
department's, and rows are loaded with the caller's jurisdiction as the scope (``ingest
--region``): a row outside it is rejected with its line, like any bad row. The batch records
who sent it (``submitted_by`` = the token's subject), as a push's does.

Why the refusals that have nothing to do with the file:

- CSRF. A browser sends the bearer header only from a script, and cross-site only after a CORS
  preflight; still, a request from another page (its ``Origin`` not this host) and any body an
  HTML form can send (``multipart/form-data``, ``application/x-www-form-urlencoded``,
  ``text/plain``) are refused (403) before anything is read.
- Size. The body goes to a file in the data directory as it arrives, never whole into memory,
  and is refused (413) as soon as it passes :data:`MAX_UPLOAD_BYTES`.

The rejection report is written to ``<data dir>/reports/<batch id>.csv`` (the content of the
CLI's report) and served to the same department in a jurisdiction containing the batch's
region; to anyone else it does not exist (404).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from adapters.mapping import Feed
from adapters.pipeline import Ingestor, IngestResult, RejectionReport
from adapters.readers import file_format
from gateway.domain import clock
from gateway.domain.clock import as_utc
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, Department
from gateway.domain.errors import (
    BadUserInput,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    Unauthenticated,
)
from gateway.domain.principal import Principal
from gateway.http.refusals import internal_error_message, new_request_id, refusal
from gateway.loop.tasks import verification_opener
from gateway.runtime.client_tokens import purpose_refusal as client_purpose_refusal
from gateway.runtime.parts import Runtime
from gateway.storage import audit_chain as audit
from gateway.storage.exchange import DepartmentExchange

log = logging.getLogger(__name__)

UPLOAD_PATH = "/ingest/upload"
REPORT_PATH = "/ingest/batches/{batch_id}/report"

# The largest body taken (a province's roster of a million rows is about 120 MB as CSV).
# Proposed as the setting RELIEF_MAX_UPLOAD_BYTES (gateway.domain.settings); read at each request,
# so a deployment (or a test) can change it here meanwhile.
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# Rejections in the answer; the report has them all.
ANSWERED_REJECTIONS = 200
# A file name longer than this (UTF-8 bytes) is shortened, its extension kept: file systems
# allow 255 bytes, and the report's name adds to it.
MAX_NAME_BYTES = 180

NDJSON = "application/x-ndjson"
# Bodies an HTML form can send without a script (and without a CORS preflight).
FORM_MEDIA_TYPES = frozenset(
    {"multipart/form-data", "application/x-www-form-urlencoded", "text/plain"}
)
# Sent with every answer: nothing of a department's file stays in a shared workstation's cache,
# and a proxy (nginx) passes each progress line on as it comes.
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
OPERATION = "Ingest.submitRecords"  # the grant an upload needs, as the GraphQL push
REPORT_OPERATION = "Ingest.batches"  # the grant reading a batch (and its report) needs
# What the audit chain records (CONTRACT.md audit: operation and fields of each request).
UPLOAD_AUDIT = "uploadFile"
REPORT_AUDIT = "downloadRejectionReport"
REPORT_FIELD = "IngestBatch.rejectionReport"

STOPPED = "导入已中止: 服务正在停止; 请稍后重新上传同一文件, 将从中断处继续"

# The status of a refusal, by code, where the error's own is the generic 400.
_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "SERVICE_UNAVAILABLE": 503}

# Imports that go on after their client went away (the body was taken whole: the file is
# loaded whole, and its batch says how it went). Held here so that they are not collected.
_RUNNING: set[asyncio.Task[None]] = set()


def upload_routes() -> list[BaseRoute]:
    return [
        Route(UPLOAD_PATH, upload_endpoint, methods=["POST"]),
        Route(REPORT_PATH, report_endpoint, methods=["GET", "HEAD"]),
    ]


def _refused(error: GatewayError, request_id: str, request: Request) -> Response:
    status = _STATUS.get(error.code, error.http_status)
    headers = dict(NO_STORE)
    if isinstance(error, PayloadTooLarge | RequestTimeout):
        headers["Connection"] = "close"  # the rest of that body is not waited for
    log.info(
        "upload refused %d %s",
        status,
        error.code,
        extra={"request_id": request_id, "status": status, "path": request.url.path},
    )
    return refusal(error, request_id, status=status, headers=headers)


# ------------------------------------------------------------------ POST /ingest/upload
async def upload_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id = new_request_id()
    workdir: Path | None = None
    try:
        _same_origin(request)
        _not_a_form(request)
        principal = await _authenticate(runtime, request)
        runtime.rate_limiter.check(principal)
        purpose = _purpose(runtime, request)
        _registered_purpose(principal, purpose, reads_person_data=False)
        dry_run = _dry_run(request)
        feed = await _feed(runtime, request, principal, purpose)
        name = _file_name(request)
        file_format(name)  # an extension no reader takes is refused before the body
        limit = MAX_UPLOAD_BYTES
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        workdir = runtime.settings.data_dir / "uploads" / request_id
        workdir.mkdir(parents=True)
        path = workdir / name
        await _receive(request, path, limit, runtime.settings.client_timeout_seconds)
    except GatewayError as exc:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        return _refused(exc, request_id, request)
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise

    run = _Import(runtime, principal, purpose, feed, path, workdir, dry_run, request_id)
    task = asyncio.create_task(run.main())
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    first = await run.events.get()
    if first["type"] == "error":
        # Nothing answered yet: the file could not be read at all, or the database failed
        # before a row was loaded — said in the one error shape, with its status.
        assert run.failure is not None
        return _refused(run.failure, request_id, request)
    headers = {**NO_STORE, "X-Request-Id": request_id, "X-Accel-Buffering": "no"}
    return StreamingResponse(run.lines(first), media_type=NDJSON, headers=headers)


def _same_origin(request: Request) -> None:
    """CSRF: a browser names the page that sent a POST in ``Origin``; only this host's own
    pages may upload. The scheme is not compared: behind a proxy that ends TLS the gateway
    sees ``http`` where the page says ``https``."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser (curl, a department's system): the bearer token decides
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    if parts.scheme not in ("http", "https") or not host or parts.netloc.lower() != host.lower():
        raise Forbidden("不接受来自其他网站页面的上传请求: 请在本系统的部门工作台中上传文件")


def _not_a_form(request: Request) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type in FORM_MEDIA_TYPES:
        raise Forbidden(
            "不接受表单提交的上传: 请以 application/octet-stream 发送文件内容 (部门工作台即如此)"
        )


async def _authenticate(runtime: Runtime, request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("缺少令牌: 请在 Authorization 头中提供 Bearer 令牌")
    return await runtime.tokens.verify(token.strip())


def _purpose(runtime: Runtime, request: Request) -> str:
    purpose = request.headers.get("x-purpose", "").strip()
    if purpose and purpose not in runtime.purposes:
        known = ", ".join(runtime.purposes)
        raise BadUserInput(f"未知的用途 X-Purpose: {purpose!r}; 可选: {known}")
    return purpose


def _registered_purpose(principal: Principal, purpose: str, *, reads_person_data: bool) -> None:
    """A service account declares only the purposes it was registered for (issue 16)."""
    refused = client_purpose_refusal(principal, purpose, reads_person_data=reads_person_data)
    if refused is not None:
        raise refused


def _dry_run(request: Request) -> bool:
    value = request.query_params.get("dryRun", "0")
    if value not in ("0", "1"):
        raise BadUserInput("参数 dryRun 应为 0 (导入) 或 1 (只校验, 不写入)")
    return value == "1"


async def _granted(runtime: Runtime, principal: Principal, purpose: str, operation: str) -> bool:
    """Whether the policy in force grants ``operation`` (asked as ``schema.exchange`` asks it:
    the one decision for the caller and purpose, ``AccessDecision.operations``)."""
    async with runtime.engine.connect() as connection:
        await runtime.authorizer.refresh(connection)
    return operation in runtime.authorizer.decision_for(principal, purpose).operations


async def _feed(runtime: Runtime, request: Request, principal: Principal, purpose: str) -> Feed:
    if not await _granted(runtime, principal, purpose, OPERATION):
        raise Forbidden(f"无权使用 {OPERATION}: 本部门未获准导入数据")
    name = request.query_params.get("feed", "").strip()
    if not name:
        raise BadUserInput("缺少参数 feed (数据类别, 如 identities)")
    department = principal.department.value
    chosen = runtime.feeds.get((department, name))
    if chosen is not None:
        return chosen
    owners = sorted(dept for dept, feed in runtime.feeds if feed == name)
    if owners:
        theirs = "、".join(DEPARTMENT_NAMES_ZH[Department(owner)] for owner in owners)
        raise Forbidden(f"数据类别 {name!r} 属于{theirs}, 本部门不能导入其他部门的数据")
    own = sorted(feed for dept, feed in runtime.feeds if dept == department)
    raise BadUserInput(f"本部门没有数据类别 {name!r}; 可导入: {'、'.join(own) if own else '无'}")


def _file_name(request: Request) -> str:
    """The original file name, as the batch records it and the clerk knows it: the last part
    of a path (a browser may send ``C:\\fakepath\\…``), printable characters only, shortened to
    :data:`MAX_NAME_BYTES` with its extension kept. Never a path on this server."""
    raw = request.headers.get("x-relief-filename", "").strip()
    if not raw:
        raise BadUserInput("缺少 X-Relief-Filename 头: 请提供百分号编码的原始文件名")
    try:
        if not raw.isascii():
            raise UnicodeDecodeError("ascii", b"", 0, 1, "not percent-encoded")
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadUserInput("X-Relief-Filename 应为百分号编码的 UTF-8 文件名") from None
    name = decoded.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(character for character in name if character.isprintable()).strip()
    if name in ("", ".", ".."):
        raise BadUserInput("X-Relief-Filename 不是有效的文件名")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        tail = f"{dot}{suffix}" if dot and len(suffix) <= 8 else ""
        head = (stem if tail else name).encode("utf-8")[: MAX_NAME_BYTES - len(tail.encode())]
        name = head.decode("utf-8", errors="ignore") + tail
    return name


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"文件过大: 上限 {limit / (1 << 20):g} MB; 请按乡镇或月份拆分后分别上传")


async def _receive(request: Request, path: Path, limit: int, idle_seconds: float) -> None:
    """The body into ``path`` as it arrives, refused as soon as it passes ``limit``, or when its
    next piece takes longer than ``idle_seconds`` (a client holding the request open)."""
    size = 0
    with path.open("wb") as out:
        while True:
            try:
                message = await asyncio.wait_for(request.receive(), idle_seconds)
            except TimeoutError:
                raise RequestTimeout(
                    f"文件内容未在 {idle_seconds:g} 秒内继续发送, 上传已中止"
                ) from None
            if message["type"] == "http.disconnect":
                raise BadUserInput("文件未上传完整: 客户端已断开连接")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            out.write(chunk)
            if not message.get("more_body", False):
                return


# ------------------------------------------------------------------ the import
@dataclass
class _Import:
    """One uploaded file through the pipeline, its events (progress, result or error) queued
    for the answer. It runs to its end even when the client goes away."""

    runtime: Runtime
    principal: Principal
    purpose: str
    feed: Feed
    path: Path
    workdir: Path
    dry_run: bool
    request_id: str
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    failure: GatewayError | None = None
    ended: bool = False  # the result or the error is queued
    rows: int = 0

    def _progress(self, rows: int) -> None:
        self.rows += rows
        self.events.put_nowait({"type": "progress", "rows": self.rows})

    async def main(self) -> None:
        reports = self.runtime.settings.data_dir / "reports"
        partial = reports / f".{self.request_id}.partial.csv"
        started = time.perf_counter()
        try:
            reports.mkdir(parents=True, exist_ok=True)
            today = clock.today()
            ingestor = Ingestor(
                self.runtime.engine,
                self.runtime.vault,
                self.feed,
                submitted_by=self.principal.subject,
                today=today,
                scope=self.principal.region,
                # identities lists open medical insurance's verification tasks (004 §1)
                on_completed=verification_opener(self.runtime.rules, today),
                # In this process: a serving gateway does not start key-holding worker
                # processes (and their ~100 MB each) per upload; `relief-gateway ingest` does.
                workers=0,
            )
            report = RejectionReport(partial)
            try:
                result = await ingestor.ingest_file(
                    self.path, dry_run=self.dry_run, report=report, progress=self._progress
                )
            finally:
                report.close()
            if result.batch_id is not None and result.counts.rows_rejected:
                os.replace(partial, report_file(self.runtime, result.batch_id))
            # who sent which file into which batch, in the audit chain like every read
            await _audited(
                self.runtime,
                self.principal,
                self.purpose,
                self.request_id,
                UPLOAD_AUDIT,
                {"Ingest.submitRecords": "dry_run" if self.dry_run else "write"},
            )
            self.events.put_nowait(await self._result(result))
            self.ended = True
            log.info(
                "upload %s: %s, %d rows in %.1f s",
                self.request_id,
                result.status,
                result.counts.rows_total,
                time.perf_counter() - started,
                extra={
                    "request_id": self.request_id,
                    "subject": self.principal.subject,
                    "department": self.principal.department.value,
                    "caller_region": self.principal.region,
                    "batch": str(result.batch_id or result.duplicate_of or ""),
                },
            )
        except GatewayError as exc:  # the file cannot be read, the database failed: said
            self._fail(exc)
        except Exception as exc:  # anything else: masked, the detail to the log only
            log.error("upload %s: unexpected %s", self.request_id, type(exc).__name__, exc_info=exc)
            self._fail(GatewayError(internal_error_message(self.request_id)))
        finally:
            if not self.ended:  # cancelled (the server stopping): the answer still ends
                self._fail(ServiceUnavailable(STOPPED))
            partial.unlink(missing_ok=True)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _fail(self, error: GatewayError) -> None:
        self.failure, self.ended = error, True
        extensions = {"code": error.code, "requestId": self.request_id}
        self.events.put_nowait(
            {"type": "error", "error": {"message": error.message, "extensions": extensions}}
        )

    async def _result(self, result: IngestResult) -> dict[str, Any]:
        batch_id = result.batch_id or result.duplicate_of  # a duplicate: the batch that loaded it
        batch = await _visible_batch(self.runtime, self.principal, batch_id)
        report_url = None
        if batch is not None and report_file(self.runtime, batch.id).is_file():
            report_url = REPORT_PATH.format(batch_id=batch.id)
        return {
            "type": "result",
            "status": result.status,  # COMPLETED, DUPLICATE (nothing changed) or DRY_RUN
            "duplicateOf": str(result.duplicate_of) if result.duplicate_of else None,
            "batch": _batch(batch) if batch is not None else None,
            "counts": result.counts.as_public_dict(),
            "rejections": [
                {"line": r.line, "column": r.column, "value": r.value, "reason": r.reason}
                for r in result.rejections[:ANSWERED_REJECTIONS]
            ],
            "reportUrl": report_url,
            "format": result.file_format,
            "encoding": result.encoding,
            "ignoredColumns": list(result.ignored_headers),
        }

    async def lines(self, first: dict[str, Any]) -> AsyncIterator[bytes]:
        event = first
        while True:
            yield json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n"
            if event["type"] != "progress":
                return
            event = await self.events.get()


def _batch(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "department": row.department,
        "feed": row.feed,
        "channel": row.channel,
        "fileName": row.file_name,
        "region": row.region,
        "status": row.status,
        "receivedAt": as_utc(row.received_at).isoformat(),
        "finishedAt": as_utc(row.finished_at).isoformat() if row.finished_at else None,
    }


async def _visible_batch(
    runtime: Runtime, principal: Principal, batch_id: uuid.UUID | None
) -> Any | None:
    """The batch as its department sees it: of the caller's department, its region within the
    caller's jurisdiction (``DepartmentExchange``, the scope of GraphQL's ``batches``)."""
    if batch_id is None:
        return None
    async with runtime.engine.connect() as connection:
        exchange = DepartmentExchange(
            connection.execute,
            runtime.engine,
            department=principal.department.value,
            region=principal.region,
            today=clock.today(),
        )
        return await exchange.batch(batch_id)


async def _audited(
    runtime: Runtime,
    principal: Principal,
    purpose: str,
    request_id: str,
    operation: str,
    fields: dict[str, str],
) -> None:
    """Append the audit entry of an upload or a report download before it is answered; an
    entry that cannot be written withholds the answer, as on /graphql."""
    decision = runtime.authorizer.decision_for(principal, purpose)
    entry = audit.read_entry(
        principal=principal,
        purpose=purpose,
        request_id=request_id,
        operation=operation,
        policy_version=decision.policy_version,
        person_ids=(),
        fields=fields,
    )
    try:
        await runtime.audit.append(entry)
    except Exception as exc:
        log.exception("request %s: audit entry could not be written", request_id)
        raise ServiceUnavailable("审计日志暂时无法写入, 本次操作的结果未返回, 请稍后重试") from exc


def report_file(runtime: Runtime, batch_id: uuid.UUID) -> Path:
    return runtime.settings.data_dir / "reports" / f"{batch_id}.csv"


# ------------------------------------------------------------------ GET the report
async def report_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id = new_request_id()
    absent = NotFound("未找到该批次的拒收报告")
    try:
        principal = await _authenticate(runtime, request)
        runtime.rate_limiter.check(principal)
        purpose = _purpose(runtime, request)
        _registered_purpose(principal, purpose, reads_person_data=True)  # rows as sent
        if not await _granted(runtime, principal, purpose, REPORT_OPERATION):
            raise Forbidden(f"无权使用 {REPORT_OPERATION}")
        try:
            batch_id = uuid.UUID(str(request.path_params["batch_id"]))
        except ValueError:
            raise absent from None
        batch = await _visible_batch(runtime, principal, batch_id)
        path = report_file(runtime, batch_id)
        if batch is None or not path.is_file():
            raise absent  # another department's or county's batch is as one that is not there
        # the report holds rejected rows as sent (names, ID numbers): read like person data
        await _audited(
            runtime, principal, purpose, request_id, REPORT_AUDIT, {REPORT_FIELD: "read"}
        )
    except GatewayError as exc:
        return _refused(exc, request_id, request)
    stem = Path(batch.file_name or "批次").stem or "批次"
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"{stem}.拒收报告.csv",
        headers={**NO_STORE, "X-Request-Id": request_id},
    )
