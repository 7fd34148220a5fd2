"""The exchange in GraphQL: batches, real-time pushes (``submitRecords``), anomalies sent back
to departments (``anomalies``, ``resolveAnomaly``) and where each fact came from (``Provenance``).

Every operation here is granted by policy (``Ingest.<operation>``, action ``call``) and then
narrowed to the caller's own department and jurisdiction by ``gateway.storage.exchange``; a
push is accepted only for the caller's own feeds, and only rows inside its jurisdiction.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from adapters.pipeline import IngestCounts as StoredCounts
from adapters.pipeline import Ingestor, IngestResult
from gateway.domain.clock import as_utc
from gateway.domain.errors import BadUserInput
from gateway.loop.tasks import verification_opener
from gateway.storage.exchange import AnomalyCriteria, BatchCriteria
from schema.enums import Department
from schema.paging import PageInfo
from schema.provenance import IngestChannel
from schema.types import Ctx, Person, as_person

MAX_PUSH_RECORDS = 1000


@strawberry.enum(description="批次状态")
class BatchStatus(Enum):
    RUNNING = strawberry.enum_value("RUNNING", description="导入中")
    COMPLETED = strawberry.enum_value("COMPLETED", description="已完成")
    FAILED = strawberry.enum_value("FAILED", description="中断 (已提交部分保留, 可重新导入)")


@strawberry.enum(description="异常类型 (多源比对发现, 回传来源部门核实)")
class AnomalyKind(Enum):
    NAME_MISMATCH = strawberry.enum_value(
        "NAME_MISMATCH", description="同一身份证号码的姓名与已登记的不一致"
    )
    BIRTH_DATE_MISMATCH = strawberry.enum_value(
        "BIRTH_DATE_MISMATCH", description="出生日期与身份证号码不一致"
    )
    DECEASED_WITH_ACTIVE_STATUS = strawberry.enum_value(
        "DECEASED_WITH_ACTIVE_STATUS", description="已报告死亡但救助身份仍有效"
    )
    DECEASED_STILL_ENROLLED = strawberry.enum_value(
        "DECEASED_STILL_ENROLLED", description="已报告死亡但仍正常参保"
    )
    EXITED_IDENTITY_ACTIVE_ELSEWHERE = strawberry.enum_value(
        "EXITED_IDENTITY_ACTIVE_ELSEWHERE", description="身份已被一个部门退出, 另一部门数据中仍有效"
    )
    REPORTED_BY_ANOTHER_REGION = strawberry.enum_value(
        "REPORTED_BY_ANOTHER_REGION",
        description="另一辖区的同一部门也报送了该人员 (户籍或居住地变动、重复认定或重复参保)",
    )


@strawberry.enum(description="异常状态")
class AnomalyStatus(Enum):
    OPEN = strawberry.enum_value("OPEN", description="待核实 (期间相关待遇暂停)")
    RESOLVED = strawberry.enum_value("RESOLVED", description="已处理")


@strawberry.enum(description="异常处理结果")
class AnomalyResolution(Enum):
    CORRECTED = strawberry.enum_value("CORRECTED", description="已更正 (更正后的数据另行报送)")
    CONFIRMED_CORRECT = strawberry.enum_value(
        "CONFIRMED_CORRECT", description="经核实本部门数据无误"
    )
    NOT_APPLICABLE = strawberry.enum_value("NOT_APPLICABLE", description="不属于异常")
    CORRECTED_BY_DATA = strawberry.enum_value(
        "CORRECTED_BY_DATA", description="后续报送的数据已消除差异 (系统自动关闭)"
    )


@strawberry.type(description="批次计数")
class IngestCounts:
    rows_total: int = strawberry.field(description="总行数")
    rows_accepted: int = strawberry.field(description="接收")
    rows_rejected: int = strawberry.field(description="拒收")
    rows_unchanged: int = strawberry.field(description="无变化")
    added: int = strawberry.field(description="新增")
    exited: int = strawberry.field(description="退出")
    identity_changed: int = strawberry.field(description="身份变更")
    updated: int = strawberry.field(description="信息更新")
    unmatched: int = strawberry.field(description="未匹配到本系统人员 (如非救助对象的死亡信息)")
    anomalies_opened: int = strawberry.field(description="新开异常")


def _counts(source: Any) -> IngestCounts:
    return IngestCounts(**{name: getattr(source, name) for name in StoredCounts().as_dict()})


@strawberry.type(description="数据报送批次: 一个文件或一次推送")
class IngestBatch:
    id: strawberry.ID
    department: Department = strawberry.field(description="报送部门")
    feed: str = strawberry.field(description="数据类别, 如 identities")
    channel: IngestChannel
    file_name: str | None = strawberry.field(description="文件名")
    region: str = strawberry.field(description="批次涉及的最小辖区")
    submitted_by: str = strawberry.field(description="报送人")
    received_at: datetime = strawberry.field(description="接收时间")
    finished_at: datetime | None = strawberry.field(description="完成时间")
    status: BatchStatus
    counts: IngestCounts


def _batch(row: Any) -> IngestBatch:
    return IngestBatch(
        id=strawberry.ID(str(row.id)),
        department=Department(row.department),
        feed=row.feed,
        channel=IngestChannel(row.channel),
        file_name=row.file_name,
        region=row.region,
        submitted_by=row.submitted_by,
        received_at=as_utc(row.received_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        status=BatchStatus(row.status),
        counts=_counts(row),
    )


@strawberry.type(description="拒收的行: 行号 (推送时为序号)、列、值、原因")
class Rejection:
    line: int
    column: str
    value: str
    reason: str


@strawberry.type(description="推送结果, 与文件导入的结果相同")
class SubmitRecordsResult:
    batch: IngestBatch | None = strawberry.field(description="本次推送的批次 (dryRun 时为空)")
    dry_run: bool
    counts: IngestCounts
    rejections: list[Rejection]


@strawberry.type(description="回传的异常: 需本部门在期限内核实")
class Anomaly:
    id: strawberry.ID
    kind: AnomalyKind
    description: str = strawberry.field(description="说明")
    department: Department = strawberry.field(description="负责核实的部门")
    related_department: Department | None = strawberry.field(description="数据不一致的另一方")
    opened_on: date = strawberry.field(description="发现日期")
    due_on: date = strawberry.field(description="核实期限 (10 个工作日)")
    overdue: bool = strawberry.field(description="已超期未处理")
    status: AnomalyStatus
    resolution: AnomalyResolution | None
    resolved_on: date | None
    resolved_by: str | None
    note: str | None
    batch_id: strawberry.ID | None = strawberry.field(description="发现异常的批次")
    person_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="涉及的人员 (按调用方的访问策略返回; 不可见时为空)")
    async def person(self, info: Ctx) -> Person | None:
        context = info.context
        context.guard.touched_person_data = True
        rows = await context.loader(("person_by_id",), context.people.by_ids).load(self.person_id)
        return as_person(rows[0]) if rows else None


def _anomaly(row: Any, today: date) -> Anomaly:
    return Anomaly(
        id=strawberry.ID(str(row.id)),
        kind=AnomalyKind(row.kind),
        description=row.detail,
        department=Department(row.department),
        related_department=Department(row.related_department) if row.related_department else None,
        opened_on=row.opened_on,
        due_on=row.due_on,
        overdue=row.status == "OPEN" and row.due_on < today,
        status=AnomalyStatus(row.status),
        resolution=AnomalyResolution(row.resolution) if row.resolution else None,
        resolved_on=row.resolved_on,
        resolved_by=row.resolved_by,
        note=row.note,
        batch_id=strawberry.ID(str(row.batch_id)) if row.batch_id else None,
        person_id=row.person_id,
    )


# ---------------------------------------------------------------- connections and filters
@strawberry.type
class IngestBatchEdge:
    cursor: str
    node: IngestBatch


@strawberry.type(description="批次分页结果 (最新的在前)")
class IngestBatchConnection:
    edges: list[IngestBatchEdge]
    page_info: PageInfo
    criteria: strawberry.Private[BatchCriteria]

    @strawberry.field(description="符合条件的批次总数")
    async def total_count(self, info: Ctx) -> int:
        return await info.context.exchange.count_batches(self.criteria)


@strawberry.type
class AnomalyEdge:
    cursor: str
    node: Anomaly


@strawberry.type(description="异常分页结果 (按核实期限)")
class AnomalyConnection:
    edges: list[AnomalyEdge]
    page_info: PageInfo
    criteria: strawberry.Private[AnomalyCriteria]

    @strawberry.field(description="符合条件的异常总数")
    async def total_count(self, info: Ctx) -> int:
        return await info.context.exchange.count_anomalies(self.criteria)


@strawberry.input(description="批次筛选条件")
class BatchFilter:
    feed: str | None = None
    status: BatchStatus | None = None
    received_from: date | None = strawberry.field(default=None, description="接收日期起 (含)")
    received_to: date | None = strawberry.field(default=None, description="接收日期止 (含)")


@strawberry.input(description="异常筛选条件")
class AnomalyFilter:
    status: AnomalyStatus | None = None
    kind: AnomalyKind | None = None
    overdue: bool | None = strawberry.field(default=None, description="只看已超期 (或未超期)")


def _cursor(prefix: str, key: str, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{prefix}:{key}|{row_id.hex}".encode()).decode()


def _decode(prefix: str, cursor: str) -> tuple[str, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        head, _, rest = raw.partition(":")
        key, _, hex_id = rest.rpartition("|")
        if head != prefix or not key:
            raise ValueError(raw)
        return key, uuid.UUID(hex=hex_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


def _page_size(info: Ctx, first: int) -> int:
    if first < 0 or first > info.context.max_page_size:
        raise BadUserInput(f"first 应在 0 到 {info.context.max_page_size} 之间")
    return first


async def batches(
    info: Ctx, filter: BatchFilter | None = None, first: int = 50, after: str | None = None
) -> IngestBatchConnection:
    context = info.context
    context.guard.require_operation("Ingest.batches")
    first = _page_size(info, first)
    criteria = BatchCriteria(
        feed=filter.feed if filter else None,
        status=filter.status.name if filter and filter.status else None,
        received_from=filter.received_from if filter else None,
        received_to=filter.received_to if filter else None,
    )
    position = None
    if after:
        key, batch_id = _decode("batch", after)
        try:
            position = (datetime.fromisoformat(key), batch_id)
        except ValueError:
            raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None
    rows, has_next = await context.exchange.batches(criteria, first=first, after=position)
    edges = [
        IngestBatchEdge(
            cursor=_cursor("batch", as_utc(row.received_at).isoformat(), row.id), node=_batch(row)
        )
        for row in rows
    ]
    return IngestBatchConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        criteria=criteria,
    )


async def anomalies(
    info: Ctx, filter: AnomalyFilter | None = None, first: int = 50, after: str | None = None
) -> AnomalyConnection:
    context = info.context
    context.guard.require_operation("Ingest.anomalies")
    first = _page_size(info, first)
    criteria = AnomalyCriteria(
        status=filter.status.name if filter and filter.status else None,
        kind=filter.kind.name if filter and filter.kind else None,
        overdue=filter.overdue if filter else None,
    )
    position = None
    if after:
        key, anomaly_id = _decode("anomaly", after)
        try:
            position = (date.fromisoformat(key), anomaly_id)
        except ValueError:
            raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None
    rows, has_next = await context.exchange.anomalies(criteria, first=first, after=position)
    edges = [
        AnomalyEdge(
            cursor=_cursor("anomaly", row.due_on.isoformat(), row.id),
            node=_anomaly(row, context.today),
        )
        for row in rows
    ]
    return AnomalyConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        criteria=criteria,
    )


async def submit_records(
    info: Ctx, feed: str, records: list[JSON], dry_run: bool = False
) -> SubmitRecordsResult:
    """A department system's real-time push: rows of one of its own feeds, validated like a
    file; rows outside the caller's jurisdiction are rejected."""
    context = info.context
    context.guard.require_operation("Ingest.submitRecords")
    principal = context.principal
    department = principal.department.value
    chosen = context.feeds.get((department, feed))
    if chosen is None:
        own = sorted(name for dept, name in context.feeds if dept == department)
        raise BadUserInput(
            f"本部门没有数据类别 {feed!r}; 可推送: {', '.join(own) if own else '无'}"
        )
    if not records:
        raise BadUserInput("records 不能为空")
    if len(records) > MAX_PUSH_RECORDS:
        raise BadUserInput(f"一次最多推送 {MAX_PUSH_RECORDS} 条; 更多请分批或使用文件导入")
    ingestor = Ingestor(
        context.engine,
        context.vault,
        chosen,
        submitted_by=principal.subject,
        today=context.today,
        scope=principal.region,
        # identities lists open medical insurance's verification tasks (004 §1)
        on_completed=verification_opener(context.rules, context.today),
    )
    result: IngestResult = await ingestor.ingest_records(
        cast(list[dict[str, object]], records), dry_run=dry_run
    )
    batch = None
    if result.batch_id is not None:
        row = await context.exchange.batch(result.batch_id)
        batch = _batch(row) if row is not None else None
    return SubmitRecordsResult(
        batch=batch,
        dry_run=dry_run,
        counts=_counts(result.counts),
        rejections=[
            Rejection(line=r.line, column=r.column, value=r.value, reason=r.reason)
            for r in result.rejections
        ],
    )


async def resolve_anomaly(
    info: Ctx, id: strawberry.ID, resolution: AnomalyResolution, note: str | None = None
) -> Anomaly:
    context = info.context
    context.guard.require_operation("Ingest.resolveAnomaly")
    if resolution is AnomalyResolution.CORRECTED_BY_DATA:
        raise BadUserInput("CORRECTED_BY_DATA 由系统在数据更正后自动设置, 请选择其他处理结果")
    if note is not None and len(note) > 500:
        raise BadUserInput("note 最多 500 字")
    try:
        anomaly_id = uuid.UUID(str(id))
    except ValueError:
        raise BadUserInput("异常编号 id 无效") from None
    found = await context.exchange.resolve_anomaly(
        anomaly_id, resolution=resolution.name, note=note, resolved_by=context.principal.subject
    )
    if found is None:
        raise BadUserInput("未找到该异常 (不存在或不属于本部门、本辖区)")
    row, closed_now = found
    if not closed_now:
        raise BadUserInput(f"该异常已于 {row.resolved_on} 处理, 无需重复处理")
    return _anomaly(row, context.today)
