"""Where a stored fact came from (issue: provenance on record types): the department, the batch
(file or push), the line or position in it, and when it was received."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from gateway.domain.clock import as_utc
from schema.enums import Department


@strawberry.enum(description="数据报送渠道")
class IngestChannel(Enum):
    FILE = strawberry.enum_value("FILE", description="文件导入")
    PUSH = strawberry.enum_value("PUSH", description="实时推送 (submitRecords)")
    SEED = strawberry.enum_value("SEED", description="合成演示数据")
    ANSWER = strawberry.enum_value(
        "ANSWER", description="推送任务的答复 (answerTask 认定为救助对象时生成的救助身份)"
    )


@strawberry.type(description="数据来源: 报送部门、批次、文件行号或推送序号、接收时间")
class Provenance:
    department: Department = strawberry.field(description="报送部门")
    channel: IngestChannel | None = strawberry.field(description="报送渠道")
    batch_id: strawberry.ID | None = strawberry.field(description="批次编号")
    file_name: str | None = strawberry.field(description="文件名 (文件导入时)")
    line: int | None = strawberry.field(description="文件行号, 或推送中的序号 (从 1 起)")
    received_at: datetime | None = strawberry.field(description="接收时间")


def provenance(department: str, batch: Any | None, line: int | None, received: Any) -> Provenance:
    return Provenance(
        department=Department(department),
        channel=IngestChannel(batch.channel) if batch is not None else None,
        batch_id=strawberry.ID(str(batch.id)) if batch is not None else None,
        file_name=batch.file_name if batch is not None else None,
        line=line,
        received_at=as_utc(received) if received is not None else None,
    )
