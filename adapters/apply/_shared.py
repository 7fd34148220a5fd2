"""What every record kind's applier shares: the batch, the outcomes, the chunk's state.

:class:`BatchContext` is the batch a chunk belongs to (feed, vault, clock, the submitter's
jurisdiction); :class:`Outcome` is the classification of a row (DOMAIN.md rule 2) and
:class:`AnomalyKind` the anomalies sent back for verification (rule 4), due in
``ANOMALY_DUE_WORKING_DAYS`` (003 §2, rule 3). ``_ChunkState`` holds what a chunk has read and
will write, with the provenance helper (batch, line, time of every stored fact) and the scope
check (the submitter's jurisdiction); :func:`insert_rows` writes in bulk (``COPY`` on
PostgreSQL). Nothing here writes a record kind of its own.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, any_, bindparam, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.mapping import Feed
from adapters.rows import CanonicalRow, Rejection
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, Department
from gateway.domain.workdays import add_working_days
from gateway.storage.vault import PersonVault

# 003 §2: data that disagree are sent back to the source, which confirms within 10 working days.
ANOMALY_DUE_WORKING_DAYS = 10

NOT_IN_SCOPE = "未找到本辖区内的该人员（请先报送其身份或参保信息）"


class Outcome(StrEnum):
    ADDED = "added"  # 新增
    EXITED = "exited"  # 退出
    CHANGED = "identity_changed"  # 身份变更
    UPDATED = "updated"  # 信息更新
    UNCHANGED = "rows_unchanged"  # 无变化
    UNMATCHED = "unmatched"  # 未匹配到人员


class AnomalyKind(StrEnum):
    NAME_MISMATCH = "NAME_MISMATCH"
    BIRTH_DATE_MISMATCH = "BIRTH_DATE_MISMATCH"
    DECEASED_WITH_ACTIVE_STATUS = "DECEASED_WITH_ACTIVE_STATUS"
    DECEASED_STILL_ENROLLED = "DECEASED_STILL_ENROLLED"
    EXITED_IDENTITY_ACTIVE_ELSEWHERE = "EXITED_IDENTITY_ACTIVE_ELSEWHERE"
    REPORTED_BY_ANOTHER_REGION = "REPORTED_BY_ANOTHER_REGION"


@dataclass(frozen=True, slots=True)
class BatchContext:
    batch_id: uuid.UUID
    feed: Feed
    vault: PersonVault
    received_at: datetime
    today: date
    scope: str | None  # region prefix rows must lie in (the submitter's jurisdiction)

    department: str = field(init=False)  # the feed's, as stored: read for every row

    def __post_init__(self) -> None:
        object.__setattr__(self, "department", self.feed.department.value)


@dataclass(slots=True)
class ChunkResult:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    anomalies_opened: int = 0
    counties: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _PersonState:
    id: uuid.UUID
    name_bidx: bytes | None
    region_code: str
    household_id: uuid.UUID | None
    deceased_on: date | None
    is_new: bool = False
    # Held outside the submitter's jurisdiction: see ChunkApplier's note on scope.
    foreign: bool = False

    @property
    def county_code(self) -> str:
        return self.region_code[:6]


@dataclass(slots=True)
class _StatusState:
    id: int | None
    person_id: uuid.UUID
    department: str
    category: str
    recognized_on: date
    valid_from: date
    valid_to: date | None
    line: int | None = None
    dirty: bool = False
    # 认定地 (issue 14): the county of the row that reported it. For a person held outside the
    # submitter's jurisdiction it gives no place until the person's county verifies the report
    # (``gateway.storage.places``).
    county: str | None = None

    def held_after(self, day: date) -> bool:
        return self.valid_to is None or self.valid_to > day


async def insert_rows(
    connection: AsyncConnection, table: Table, rows: list[dict[str, Any]]
) -> None:
    """Bulk insert; PostgreSQL's COPY is several times faster than multi-row INSERT."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        columns = list(rows[0])
        if len(columns) > 1:
            records = list(map(itemgetter(*columns), rows))  # tuples, built at C speed
        else:
            records = [(row[columns[0]],) for row in rows]
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(table.name, columns=columns, records=records)
    else:
        await connection.execute(insert(table), rows)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class _ChunkState:
    """One chunk's state: what was read for it and what it will write (see ChunkApplier)."""

    def __init__(self, connection: AsyncConnection, context: BatchContext) -> None:
        self.connection = connection
        self.context = context
        self.result = ChunkResult()
        self._persons: dict[bytes, _PersonState] = {}
        self._new_persons: dict[uuid.UUID, dict[str, Any]] = {}
        self._person_changes: dict[uuid.UUID, dict[str, Any]] = defaultdict(dict)
        # (person, source key) → digest; see _source_key
        self._sources: dict[tuple[uuid.UUID, str], bytes] = {}
        self._source_writes: dict[tuple[uuid.UUID, str], tuple[bool, dict[str, Any]]] = {}
        # (person, department, kind, related county): see _Anomalies._open
        self._open_anomalies: set[tuple[uuid.UUID, str, str, str | None]] = set()
        self._new_anomalies: list[dict[str, Any]] = []
        self._closed_anomalies: set[tuple[uuid.UUID, str, str, str | None]] = set()
        # What this department sent about people held outside its jurisdiction: (person,
        # sender county) → the report's values; the reports the person's county verified.
        self._reports: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        self._verified_reports: set[tuple[uuid.UUID, str]] = set()
        self._new_households: list[dict[str, Any]] = []
        # Facts are written after the people they refer to (foreign keys are checked per
        # statement on PostgreSQL): inserts per table, then updates, in classification order.
        self._fact_inserts: list[tuple[Table, list[dict[str, Any]]]] = []
        self._fact_updates: list[Any] = []
        self._cost_pairs: set[tuple[uuid.UUID, int]] = set()
        self._due_on = add_working_days(context.today, ANOMALY_DUE_WORKING_DAYS)
        # What ChunkApplier.load read, for classify and flush (identities: adapters.apply)
        self._loaded = False
        self._loaded_rows: Sequence[CanonicalRow] = ()
        self._identity_rows: list[Any] = []
        self._identity_statuses: dict[uuid.UUID, list[_StatusState]] = {}
        self._identity_households: dict[str, uuid.UUID] = {}

    def _among(self, column: Any, values: Iterable[Any]) -> Any:
        """``column IN values``; on PostgreSQL ``column = ANY($1)`` with one array parameter.

        A chunk's IN list is thousands of values: as one bind parameter each, SQLAlchemy
        renders them and PostgreSQL parses and plans a new statement for every chunk, which
        took a sixth of the ingest's time.
        """
        if self.connection.dialect.name != "postgresql":
            return column.in_(values)
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == any_(array)

    def _provenance(self, line: int | None) -> dict[str, Any]:
        """Where a fact came from: this batch, the row's line (or push position), when."""
        return {
            "batch_id": self.context.batch_id,
            "source_line": line,
            "received_at": self.context.received_at,
        }

    def _in_scope(self, region_code: str) -> bool:
        scope = self.context.scope
        return scope is None or region_code.startswith(scope)

    def _reject(self, row: CanonicalRow, column: str, value: str, reason: str) -> None:
        self.result.rejections.append(Rejection(row.line, column, value, reason))


def _same(stored: Any, new: Any) -> bool:
    if isinstance(stored, Decimal) or isinstance(new, Decimal):
        return (stored is None and new is None) or (
            stored is not None and new is not None and Decimal(stored) == Decimal(new)
        )
    return bool(stored == new)


def _masked(id_number: str) -> str:
    """Rejections for unknown people name the row, not the full number (no existence oracle
    in reports that leave the department)."""
    return id_number[:6] + "********" + id_number[-4:]


def _dept_zh(department: str) -> str:
    try:
        return DEPARTMENT_NAMES_ZH[Department(department)]
    except ValueError:
        return department
