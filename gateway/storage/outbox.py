"""发件箱 (outbox): events that concern another department, written in the transaction of the
change they describe (issue 18 item 1), and their deliveries fanned out in the same statement
family, so there is no event without its change and no change without its event.

Every writer that changes something another department must hear about calls one of:

    await emit_select(connection, rows)   # set-wise: tasks a warning run or a list opened
    await emit_rows(connection, events)   # a handful known in Python: an answer, anomalies

on the connection of its own transaction. Both write ``outbox_event`` rows (one per audience
department), marked with one ``emit_id``, and then one ``INSERT … SELECT`` creates a
``webhook_delivery`` for every enabled endpoint of the audience department whose
jurisdiction holds the event's county and which subscribes to its kind. A re-run that changes
nothing emits nothing: ``dedupe_key`` is unique and both writes skip what exists.

Events carry no name and no ID number; a webhook's payload is rendered when it is delivered,
through the receiving department's policy (``gateway.runtime.delivery``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Integer,
    Select,
    String,
    Uuid,
    and_,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.clock import now_utc
from gateway.storage.models import (
    OutboxEvent,
    Task,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from gateway.storage.setwise import dialect_insert, new_uuid, uuid_text

# PostgreSQL channels announced by migration 0013's triggers at commit.
DELIVERY_CHANNEL = "relief_delivery"
EVENT_CHANNEL = "relief_outbox"


class EventKind(StrEnum):
    TASK_PUSHED = "task.pushed"  # 任务推送: a task opened for the audience department
    TASK_ANSWERED = "task.answered"  # 任务答复: the department that pushed hears the answer
    WARNING_RAISED = "warning.raised"  # 高额费用预警
    ANOMALY_OPENED = "anomaly.opened"  # 异常回传
    ANOMALY_CLOSED = "anomaly.closed"  # 异常已核实/已更正
    BATCH_ACCEPTED = "batch.accepted"  # 批次已接收: the sending department's receipt
    IDENTITY_RECOGNISED = "identity.recognised"  # 新认定身份, to medical insurance (004 §1)


EVENT_KIND_NAMES_ZH: Mapping[EventKind, str] = {
    EventKind.TASK_PUSHED: "任务推送",
    EventKind.TASK_ANSWERED: "任务答复",
    EventKind.WARNING_RAISED: "高额费用预警",
    EventKind.ANOMALY_OPENED: "异常回传",
    EventKind.ANOMALY_CLOSED: "异常已处理",
    EventKind.BATCH_ACCEPTED: "批次已接收",
    EventKind.IDENTITY_RECOGNISED: "身份认定",
}

# The columns an ``emit_select`` statement names, in this order.
SELECTED = (
    "kind",
    "audience",
    "county_code",
    "person_id",
    "subject_type",
    "subject_id",
    "dedupe_key",
    "facts",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event known in Python (``emit_rows``)."""

    kind: EventKind
    audience: str
    county_code: str
    subject_type: str
    subject_id: str
    dedupe_key: str
    person_id: uuid.UUID | None = None
    facts: Mapping[str, Any] | None = None


async def emit_select(connection: AsyncConnection, rows: Select[Any]) -> uuid.UUID:
    """Write the events ``rows`` selects (columns as ``SELECTED``) and fan out their
    deliveries, in the caller's transaction. Returns the write's ``emit_id``."""
    dialect = connection.dialect.name
    emit_id = uuid.uuid4()
    now = now_utc()
    source = rows.subquery()
    stamped = select(
        new_uuid(dialect),
        *(source.c[name] for name in SELECTED),
        literal(now, DateTime(timezone=True)),
        literal(emit_id, Uuid()),
    ).where(literal(1, Integer()) == 1)  # SQLite's upsert-after-SELECT needs a WHERE
    statement = (
        dialect_insert(dialect, OutboxEvent)
        .from_select(["event_id", *SELECTED, "occurred_at", "emit_id"], stamped)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    await connection.execute(statement)
    await fan_out(connection, emit_id)
    return emit_id


async def emit_rows(connection: AsyncConnection, events: Sequence[Event]) -> uuid.UUID | None:
    """Write ``events`` and fan out their deliveries, in the caller's transaction."""
    if not events:
        return None
    emit_id = uuid.uuid4()
    now = now_utc()
    values = [
        {
            "event_id": uuid.uuid4(),
            "kind": event.kind.value,
            "audience": event.audience,
            "county_code": event.county_code,
            "person_id": event.person_id,
            "subject_type": event.subject_type,
            "subject_id": event.subject_id,
            "dedupe_key": event.dedupe_key,
            "facts": None if event.facts is None else json.dumps(event.facts, ensure_ascii=False),
            "occurred_at": now,
            "emit_id": emit_id,
        }
        for event in events
    ]
    statement = dialect_insert(connection.dialect.name, OutboxEvent).on_conflict_do_nothing(
        index_elements=["dedupe_key"]
    )
    await connection.execute(statement, values)
    await fan_out(connection, emit_id)
    return emit_id


async def fan_out(connection: AsyncConnection, emit_id: uuid.UUID) -> None:
    """One delivery per (event of this write, matching endpoint): the endpoint's department is
    the event's audience, its region holds the event's county, it subscribes to the kind and
    is enabled. One statement, whatever the number of events."""
    dialect = connection.dialect.name
    now = now_utc()
    event = OutboxEvent.__table__
    ordering = func.coalesce(uuid_text(dialect, event.c.person_id), event.c.subject_id)
    rows = (
        select(
            event.c.id,
            WebhookEndpoint.id,
            ordering,
            literal("PENDING", String()),
            literal(0, Integer()),
            literal(now, DateTime(timezone=True)),
            literal(now, DateTime(timezone=True)),
        )
        .select_from(event)
        .join(WebhookSubscription, WebhookSubscription.kind == event.c.kind)
        .join(
            WebhookEndpoint,
            and_(
                WebhookEndpoint.id == WebhookSubscription.endpoint_id,
                WebhookEndpoint.department == event.c.audience,
                WebhookEndpoint.disabled_at.is_(None),
                event.c.county_code.like(WebhookEndpoint.region + "%"),
            ),
        )
        .where(event.c.emit_id == emit_id)
    )
    columns = [
        "event_id", "endpoint_id", "ordering_key", "status", "attempts", "next_attempt_at",
        "created_at",
    ]  # fmt: skip
    await connection.execute(
        dialect_insert(dialect, WebhookDelivery)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["event_id", "endpoint_id"])
    )


# ---------------------------------------------------------------------------- the sources
def tasks_pushed(dialect: str, *where: Any) -> Select[Any]:
    """``task.pushed`` for the tasks ``where`` selects, to each task's department."""
    task_id = uuid_text(dialect, Task.id.expression)
    rows: Any = select(
        literal(EventKind.TASK_PUSHED.value, String()).label("kind"),
        Task.department.label("audience"),
        Task.county_code.label("county_code"),
        Task.person_id.label("person_id"),
        literal("task", String()).label("subject_type"),
        task_id.label("subject_id"),
        (literal(EventKind.TASK_PUSHED.value + ":", String()) + task_id).label("dedupe_key"),
        literal(None, String()).label("facts"),
    ).where(*where)
    return cast("Select[Any]", rows)


async def emit_tasks_pushed(connection: AsyncConnection, *where: Any) -> uuid.UUID:
    return await emit_select(connection, tasks_pushed(connection.dialect.name, *where))


def task_answered(task: Any, *, audience: str, occurred_at: datetime) -> Event:
    """The department that pushed a task hears its answer (each answer: a NEEDS_MORE_INFORMATION
    and the final one are two events)."""
    return Event(
        kind=EventKind.TASK_ANSWERED,
        audience=audience,
        county_code=task.county_code,
        person_id=task.person_id,
        subject_type="task",
        subject_id=str(task.id),
        dedupe_key=f"{EventKind.TASK_ANSWERED.value}:{task.id}:{uuid.uuid4().hex[:12]}",
        facts={"answeredAt": occurred_at.isoformat()},
    )


def anomaly_event(kind: EventKind, anomaly: Mapping[str, Any] | Any) -> Event:
    get = anomaly.get if isinstance(anomaly, Mapping) else lambda key: getattr(anomaly, key)
    suffix = "" if kind is EventKind.ANOMALY_OPENED else f":{uuid.uuid4().hex[:12]}"
    return Event(
        kind=kind,
        audience=str(get("department")),
        county_code=str(get("county_code")),
        person_id=get("person_id"),
        subject_type="anomaly",
        subject_id=str(get("id")),
        dedupe_key=f"{kind.value}:{get('id')}{suffix}",
    )


def decode_facts(text: str | None) -> dict[str, Any]:
    return {} if not text else dict(json.loads(text))


def kinds_of(values: Iterable[str]) -> list[EventKind]:
    """Event kinds from their names; an unknown name raises ``ValueError``."""
    return [EventKind(value) for value in values]


__all__ = [
    "DELIVERY_CHANNEL",
    "EVENT_CHANNEL",
    "EVENT_KIND_NAMES_ZH",
    "Event",
    "EventKind",
    "anomaly_event",
    "decode_facts",
    "emit_rows",
    "emit_select",
    "emit_tasks_pushed",
    "fan_out",
    "kinds_of",
    "task_answered",
    "tasks_pushed",
]
