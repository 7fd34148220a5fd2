"""The exchange's own records as one department sees them: its batches and the anomalies sent
back to it (回传), always narrowed to the caller's department and jurisdiction in SQL, and the
provenance of stored facts (which batch, which line).

Like ``ScopedPeople`` it runs on the request's connection, one statement at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Result, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.clock import beijing_day_start
from gateway.storage import outbox
from gateway.storage.models import Anomaly, IngestBatch, PersonReport, PersonSource
from gateway.storage.places import refresh_places

REPORTED_BY_ANOTHER_REGION = "REPORTED_BY_ANOTHER_REGION"
# The person's county's answers that confirm another county's report about the person: 不属于
# 异常 (the tie is real: insured there, moved there) and 已更正 (its own data corrected to it).
# 经核实本部门数据无误 keeps the report unverified: its sender goes on seeing only what it sent.
VERIFYING_RESOLUTIONS = frozenset({"NOT_APPLICABLE", "CORRECTED"})

Execute = Callable[[Any], Awaitable[Result[Any]]]


@dataclass(frozen=True, slots=True)
class BatchCriteria:
    feed: str | None = None
    status: str | None = None
    received_from: date | None = None  # Beijing dates, inclusive
    received_to: date | None = None


@dataclass(frozen=True, slots=True)
class AnomalyCriteria:
    status: str | None = None
    kind: str | None = None
    overdue: bool | None = None


class DepartmentExchange:
    def __init__(
        self,
        execute: Execute,
        engine: AsyncEngine,
        *,
        department: str,
        region: str,
        today: date,
    ) -> None:
        self._execute = execute
        self._engine = engine
        self._department = department
        self._region = region
        self._today = today

    # ---------------------------------------------------------------- batches
    def _batch_scope(self) -> ColumnElement[bool]:
        # A batch's region is the narrowest jurisdiction holding its rows: visible to the
        # sending department at that level and above.
        return and_(
            IngestBatch.department == self._department,
            IngestBatch.region.like(self._region + "%"),
            IngestBatch.region != "",
        )

    def _batches(self, stmt: Select[Any], criteria: BatchCriteria) -> Select[Any]:
        stmt = stmt.where(self._batch_scope())
        if criteria.feed is not None:
            stmt = stmt.where(IngestBatch.feed == criteria.feed)
        if criteria.status is not None:
            stmt = stmt.where(IngestBatch.status == criteria.status)
        # Dates are Beijing days; bounds are UTC like the stored timestamps (SQLite drops an
        # offset from bound values, so a Beijing-aware bound would shift the day by 8 hours).
        if criteria.received_from is not None:
            stmt = stmt.where(IngestBatch.received_at >= _bound(criteria.received_from))
        if criteria.received_to is not None:
            end = date.fromordinal(criteria.received_to.toordinal() + 1)
            stmt = stmt.where(IngestBatch.received_at < _bound(end))
        return stmt

    async def batches(
        self, criteria: BatchCriteria, *, first: int, after: tuple[datetime, uuid.UUID] | None
    ) -> tuple[list[Any], bool]:
        """Newest first (a clerk looks for the file they just loaded)."""
        stmt = self._batches(select(*IngestBatch.__table__.c), criteria)
        if after is not None:
            at, batch_id = after
            stmt = stmt.where(
                or_(
                    IngestBatch.received_at < at,
                    and_(IngestBatch.received_at == at, IngestBatch.id < batch_id),
                )
            )
        stmt = stmt.order_by(IngestBatch.received_at.desc(), IngestBatch.id.desc()).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count_batches(self, criteria: BatchCriteria) -> int:
        stmt = self._batches(select(func.count()).select_from(IngestBatch), criteria)
        return int((await self._execute(stmt)).scalar_one())

    async def batch(self, batch_id: uuid.UUID) -> Any | None:
        stmt = select(*IngestBatch.__table__.c).where(
            IngestBatch.id == batch_id, self._batch_scope()
        )
        return (await self._execute(stmt)).first()

    # ---------------------------------------------------------------- anomalies
    def _anomaly_scope(self) -> ColumnElement[bool]:
        return and_(
            Anomaly.department == self._department,
            Anomaly.county_code.like(self._region + "%"),
        )

    def _anomalies(self, stmt: Select[Any], criteria: AnomalyCriteria) -> Select[Any]:
        stmt = stmt.where(self._anomaly_scope())
        if criteria.status is not None:
            stmt = stmt.where(Anomaly.status == criteria.status)
        if criteria.kind is not None:
            stmt = stmt.where(Anomaly.kind == criteria.kind)
        if criteria.overdue is True:
            stmt = stmt.where(Anomaly.status == "OPEN", Anomaly.due_on < self._today)
        elif criteria.overdue is False:
            stmt = stmt.where(or_(Anomaly.status != "OPEN", Anomaly.due_on >= self._today))
        return stmt

    async def anomalies(
        self, criteria: AnomalyCriteria, *, first: int, after: tuple[date, uuid.UUID] | None
    ) -> tuple[list[Any], bool]:
        """Most urgent first: by due date."""
        stmt = self._anomalies(select(*Anomaly.__table__.c), criteria)
        if after is not None:
            due, anomaly_id = after
            stmt = stmt.where(
                or_(Anomaly.due_on > due, and_(Anomaly.due_on == due, Anomaly.id > anomaly_id))
            )
        stmt = stmt.order_by(Anomaly.due_on, Anomaly.id).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count_anomalies(self, criteria: AnomalyCriteria) -> int:
        stmt = self._anomalies(select(func.count()).select_from(Anomaly), criteria)
        return int((await self._execute(stmt)).scalar_one())

    async def resolve_anomaly(
        self, anomaly_id: uuid.UUID, *, resolution: str, note: str | None, resolved_by: str
    ) -> tuple[Any, bool] | None:
        """Close an open anomaly of this department: the row, and whether this call closed it
        (False: it was already resolved). None when there is no such anomaly in the caller's
        scope (absent and out of scope look the same). Written in its own transaction: the
        request's connection only reads."""
        async with self._engine.begin() as connection:
            changed = await connection.execute(
                update(Anomaly)
                .where(Anomaly.id == anomaly_id, self._anomaly_scope(), Anomaly.status == "OPEN")
                .values(
                    status="RESOLVED",
                    resolution=resolution,
                    resolved_on=self._today,
                    resolved_by=resolved_by,
                    note=note,
                )
            )
            stmt = select(*Anomaly.__table__.c).where(
                Anomaly.id == anomaly_id, self._anomaly_scope()
            )
            row = (await connection.execute(stmt)).first()
            if row is not None and changed.rowcount and resolution in VERIFYING_RESOLUTIONS:
                await self._verify_report(connection, row)
            if row is not None and changed.rowcount:
                event = outbox.anomaly_event(outbox.EventKind.ANOMALY_CLOSED, row)
                await outbox.emit_rows(connection, [event])
        if row is None:
            return None
        return row, bool(changed.rowcount)

    async def _verify_report(self, connection: AsyncConnection, anomaly: Any) -> None:
        """The person's county confirmed another county's report about them (issue 14): that
        report's facts now give their places, and its sender sees the person through them."""
        if anomaly.kind != REPORTED_BY_ANOTHER_REGION or anomaly.related_county is None:
            return
        await connection.execute(
            update(PersonReport)
            .where(
                PersonReport.person_id == anomaly.person_id,
                PersonReport.department == anomaly.department,
                PersonReport.county_code == anomaly.related_county,
                PersonReport.verified_on.is_(None),
            )
            .values(verified_on=self._today)
        )
        await refresh_places(connection, [anomaly.person_id])

    # ---------------------------------------------------------------- provenance
    async def batches_by_id(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
        """Batch metadata for provenance (department, channel, file name): what a reader of a
        fact may know about where it came from, whichever department sent it."""
        stmt = select(
            IngestBatch.id,
            IngestBatch.department,
            IngestBatch.channel,
            IngestBatch.file_name,
            IngestBatch.received_at,
        ).where(IngestBatch.id.in_(ids))
        return {row.id: [row] for row in await self._execute(stmt)}

    async def person_sources(self, person_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
        stmt = (
            select(
                PersonSource.person_id,
                PersonSource.department,
                PersonSource.batch_id,
                PersonSource.source_line,
                PersonSource.received_at,
            )
            .where(PersonSource.person_id.in_(person_ids))
            .order_by(PersonSource.person_id, PersonSource.received_at)
        )
        grouped: dict[uuid.UUID, list[Any]] = {}
        for row in await self._execute(stmt):
            grouped.setdefault(row.person_id, []).append(row)
        return grouped


def _bound(day: date) -> datetime:
    # In UTC: SQLite formats a bound value's wall time and compares text (the stored values
    # are UTC wall times); PostgreSQL compares aware values.
    return beijing_day_start(day)
