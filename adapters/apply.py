"""Validated rows → stored facts: what each row means against what is already stored.

One chunk of rows is applied inside one transaction (``adapters.pipeline`` owns it): the chunk's
people, their statuses, enrollments, settlements and open anomalies are read in a handful of
set-based queries, every row is classified in memory, and the changes are written in bulk
(``COPY`` on PostgreSQL). An accepted row is therefore stored with all its parts or not at all,
and nothing here runs a query per row.

Classification (DOMAIN.md rule 2): a row is 新增 (ADDED), 退出 (EXITED), 身份变更 (CHANGED),
信息更新 (UPDATED), 无变化 (UNCHANGED), or, for a vital event about someone the gateway does not
hold, 未匹配 (UNMATCHED). Re-sending a row yields UNCHANGED and writes nothing, which is what
makes loading the same file twice change nothing.

Cross-source checks open anomalies for the department that must verify (rule 4, 回传), due in
10 Chinese working days (rule 3): a name that differs from the one on record, a stated birth
date that contradicts the ID number, a person reported dead who still holds an identity or an
active enrollment, and an identity exited by one department that another still treats as held.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, any_, bindparam, case, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.mapping import Feed
from adapters.rows import (
    CanonicalRow,
    EnrollmentRow,
    IdentityRow,
    Rejection,
    SettlementRow,
    VitalEventRow,
)
from gateway.domain.departments import CATEGORY_NAMES_ZH, DEPARTMENT_NAMES_ZH, Department
from gateway.domain.records import PersonRecord
from gateway.domain.workdays import add_working_days
from gateway.storage.models import (
    Anomaly,
    CostBurden,
    Enrollment,
    Household,
    Person,
    PersonSource,
    ReliefStatus,
    Settlement,
    VitalEvent,
)
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

    @property
    def department(self) -> str:
        return self.feed.department.value


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


class ChunkApplier:
    """Applies one chunk of one feed's rows inside the caller's transaction.

    Scope. A submitter with a jurisdiction (every push; ``ingest --region``) may name an ID
    number the gateway holds for a person *outside* that jurisdiction. Such a person is never
    moved, renamed or re-linked by the row, their stored data is never compared with it, and
    the row is classified exactly as if the person were unknown (新增 the first time, 无变化
    when re-sent), so counts, anomalies and dry runs reveal nothing about who exists elsewhere
    (CONTRACT.md: out of scope behaves like absent). The department's own facts (its status,
    its enrollment) are stored against the person, and the same department of the person's
    county is asked to verify (REPORTED_BY_ANOTHER_REGION: a move, or a double recognition).
    """

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
        self._open_anomalies: set[tuple[uuid.UUID, str, str]] = set()
        self._new_anomalies: list[dict[str, Any]] = []
        self._closed_anomalies: set[tuple[uuid.UUID, str, str]] = set()
        self._new_households: list[dict[str, Any]] = []
        # Facts are written after the people they refer to (foreign keys are checked per
        # statement on PostgreSQL): inserts per table, then updates, in classification order.
        self._fact_inserts: list[tuple[Table, list[dict[str, Any]]]] = []
        self._fact_updates: list[Any] = []
        self._cost_pairs: set[tuple[uuid.UUID, int]] = set()
        self._due_on = add_working_days(context.today, ANOMALY_DUE_WORKING_DAYS)

    # ------------------------------------------------------------------ entry point
    async def apply(self, rows: Sequence[CanonicalRow]) -> ChunkResult:
        if not rows:
            return self.result
        kind = self.context.feed.kind
        plan_cache_mode = await self._plan_cache_mode("force_custom_plan")
        await self._load_people(rows)
        if kind == "identities":
            await self._identities([r for r in rows if isinstance(r, IdentityRow)])
        elif kind == "enrollments":
            await self._enrollments([r for r in rows if isinstance(r, EnrollmentRow)])
        elif kind == "settlements":
            await self._settlements([r for r in rows if isinstance(r, SettlementRow)])
        else:
            await self._vital_events([r for r in rows if isinstance(r, VitalEventRow)])
        await self._plan_cache_mode(plan_cache_mode)
        await self._flush()
        return self.result

    async def _plan_cache_mode(self, mode: str | None) -> str | None:
        """Set PostgreSQL's ``plan_cache_mode`` for the rest of the transaction; the old value.

        The chunk's lookups (:meth:`_among`) are planned for the tables as they are now: they
        are statements the driver prepares once, and after five runs PostgreSQL may switch to
        a generic plan costed while the tables were nearly empty, a sequential scan for the
        rest of the file (6× slower at 100,000 rows). The writes then go back to the old mode:
        the foreign-key checks of ``COPY`` are cached plans too, and planning them for every
        row doubled the cost of the writes.
        """
        if mode is None or self.connection.dialect.name != "postgresql":
            return None
        previous = func.current_setting("plan_cache_mode")
        change = func.set_config("plan_cache_mode", mode, True)
        old: str | None = (await self.connection.execute(select(previous, change))).scalar()
        return old

    async def _flush(self) -> None:
        await insert_rows(self.connection, _table(Household), self._new_households)
        await self._flush_people()
        for table, rows in self._fact_inserts:
            await insert_rows(self.connection, table, rows)
        for statement in self._fact_updates:
            await self.connection.execute(statement)
        await self._recompute_cost_burdens(self._cost_pairs)
        await self._flush_anomalies()

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

    # ------------------------------------------------------------------ people
    async def _load_people(self, rows: Sequence[CanonicalRow]) -> None:
        vault = self.context.vault
        self._index = {row.id_number: vault.id_number_index(row.id_number) for row in rows}
        stmt = select(
            Person.id,
            Person.id_number_bidx,
            Person.name_bidx,
            Person.region_code,
            Person.household_id,
            Person.deceased_on,
        ).where(self._among(Person.id_number_bidx, set(self._index.values())))
        for row in await self.connection.execute(stmt):
            self._persons[row.id_number_bidx] = _PersonState(
                row.id,
                row.name_bidx,
                row.region_code,
                row.household_id,
                row.deceased_on,
                foreign=not self._in_scope(row.region_code),
            )
        ids = [p.id for p in self._persons.values()]
        if not ids:
            return
        keys = {self.context.department}
        if self.context.scope is not None:
            keys.add(self._foreign_key)
        sources = select(
            PersonSource.person_id, PersonSource.department, PersonSource.digest
        ).where(self._among(PersonSource.person_id, ids), PersonSource.department.in_(keys))
        self._sources = {
            (row.person_id, row.department): row.digest
            for row in await self.connection.execute(sources)
        }
        anomalies = select(Anomaly.person_id, Anomaly.department, Anomaly.kind).where(
            self._among(Anomaly.person_id, ids), Anomaly.status == "OPEN"
        )
        self._open_anomalies = {
            (row.person_id, row.department, row.kind)
            for row in await self.connection.execute(anomalies)
        }

    def _person(self, row: CanonicalRow) -> _PersonState | None:
        return self._persons.get(self._index[row.id_number])

    def _create_person(self, row: CanonicalRow, region_code: str) -> _PersonState:
        vault = self.context.vault
        record = PersonRecord(
            person_id=uuid.uuid4(),
            id_number=row.id_number,
            name=row.name,
            gender=row.gender,
            birth_date=row.birth_date,
            region_code=region_code,
        )
        values = vault.person_values(record)
        values["created_at"] = self.context.received_at
        values["deceased_on"] = None
        self._new_persons[record.person_id] = values
        state = _PersonState(
            record.person_id, values["name_bidx"], region_code, None, None, is_new=True
        )
        self._persons[self._index[row.id_number]] = state
        return state

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

    @property
    def _foreign_key(self) -> str:
        return f"{self.context.department}@{self.context.scope}"

    def _source_key(self, person: _PersonState) -> tuple[uuid.UUID, str]:
        """What a department said about a person is kept per department; what a submitter
        said about someone held outside its jurisdiction is kept per department *and*
        submitter jurisdiction (``civil_affairs@370102``), so its re-sent row is recognised
        without comparing it with what the person's own county reported."""
        if person.foreign:
            return (person.id, self._foreign_key)
        return (person.id, self.context.department)

    def _first_report(self, person: _PersonState) -> bool:
        return self._source_key(person) not in self._sources

    def _note_source(
        self, person: _PersonState, row: CanonicalRow, facts: tuple[str | None, ...]
    ) -> bool:
        """Record that this department reported ``person`` on this row; True if what it says
        about the person differs from its previous report (or it never reported them)."""
        context = self.context
        key = self._source_key(person)
        digest = context.vault.source_digest(context.department, facts)
        previous = self._sources.get(key)
        if previous == digest:
            return False
        values = {
            "person_id": person.id,
            "department": key[1],
            "digest": digest,
            "batch_id": context.batch_id,
            "source_line": row.line,
            "received_at": context.received_at,
        }
        pending = self._source_writes.get(key)
        is_new = previous is None if pending is None else pending[0]
        self._source_writes[key] = (is_new, values)
        self._sources[key] = digest
        return previous is not None or not person.is_new

    def _check_name(self, person: _PersonState, row: CanonicalRow) -> None:
        name_bidx = self.context.vault.name_index(row.name)
        if person.name_bidx is not None and person.name_bidx != name_bidx:
            self._open(
                person,
                self.context.department,
                AnomalyKind.NAME_MISMATCH,
                "报送的姓名与已登记的姓名不一致，请核实身份证号码与姓名是否对应",
            )

    def _change_person(self, person: _PersonState, **changes: Any) -> None:
        if person.is_new:
            self._new_persons[person.id].update(changes)
        else:
            self._person_changes[person.id].update(changes)

    async def _flush_people(self) -> None:
        await insert_rows(self.connection, _table(Person), list(self._new_persons.values()))
        for person_id, changes in self._person_changes.items():
            if changes:
                await self.connection.execute(
                    update(Person).where(Person.id == person_id).values(**changes)
                )
        new_sources = [values for is_new, values in self._source_writes.values() if is_new]
        await insert_rows(self.connection, _table(PersonSource), new_sources)
        for is_new, values in self._source_writes.values():
            if not is_new:
                await self.connection.execute(
                    update(PersonSource)
                    .where(
                        PersonSource.person_id == values["person_id"],
                        PersonSource.department == values["department"],
                    )
                    .values(
                        digest=values["digest"],
                        batch_id=values["batch_id"],
                        source_line=values["source_line"],
                        received_at=values["received_at"],
                    )
                )

    # ------------------------------------------------------------------ anomalies
    def _open(
        self,
        person: _PersonState,
        department: str,
        kind: AnomalyKind,
        detail: str,
        related: str | None = None,
    ) -> None:
        key = (person.id, department, kind.value)
        self._closed_anomalies.discard(key)
        if key in self._open_anomalies:
            return
        self._open_anomalies.add(key)
        self._new_anomalies.append(
            {
                "id": uuid.uuid4(),
                "person_id": person.id,
                "department": department,
                "county_code": person.county_code,
                "kind": kind.value,
                "detail": detail,
                "related_department": related,
                "batch_id": self.context.batch_id,
                "opened_on": self.context.today,
                "due_on": self._due_on,
                "status": "OPEN",
                "resolution": None,
                "resolved_on": None,
                "resolved_by": None,
                "note": None,
            }
        )

    def _close(self, person: _PersonState, department: str, kind: AnomalyKind) -> None:
        """The data that raised an anomaly has been corrected by a later row."""
        key = (person.id, department, kind.value)
        if key in self._open_anomalies:
            self._closed_anomalies.add(key)

    async def _flush_anomalies(self) -> None:
        # An anomaly opened and corrected within the same chunk never needs a clerk.
        fresh = [
            a
            for a in self._new_anomalies
            if (a["person_id"], a["department"], a["kind"]) not in self._closed_anomalies
        ]
        await insert_rows(self.connection, _table(Anomaly), fresh)
        # A submitter with a jurisdiction is told about the anomalies sent back to it there;
        # others (another county's, another department's) are theirs to see.
        scope, department = self.context.scope, self.context.department
        self.result.anomalies_opened += sum(
            1
            for a in fresh
            if scope is None
            or (a["department"] == department and a["county_code"].startswith(scope))
        )
        opened_now = {(a["person_id"], a["department"], a["kind"]) for a in self._new_anomalies}
        for person_id, department, kind in self._closed_anomalies - opened_now:
            await self.connection.execute(
                update(Anomaly)
                .where(
                    Anomaly.person_id == person_id,
                    Anomaly.department == department,
                    Anomaly.kind == kind,
                    Anomaly.status == "OPEN",
                )
                .values(
                    status="RESOLVED",
                    resolution="CORRECTED_BY_DATA",
                    resolved_on=self.context.today,
                    resolved_by=f"batch:{self.context.batch_id}",
                )
            )

    def _check_deceased_statuses(
        self, person: _PersonState, statuses: Iterable[_StatusState]
    ) -> None:
        """A person reported dead must not keep an identity: open (or close) one anomaly per
        department whose status is still held after the date of death."""
        if person.deceased_on is None:
            return
        holders = {s.department for s in statuses if s.held_after(person.deceased_on)}
        departments = {s.department for s in statuses}
        for department in sorted(departments):
            if department in holders:
                self._open(
                    person,
                    department,
                    AnomalyKind.DECEASED_WITH_ACTIVE_STATUS,
                    f"卫生健康部门报告该人员已于 {person.deceased_on.isoformat()} 死亡，"
                    f"但{_dept_zh(department)}认定的救助身份仍在有效期内，请核实并办理退出",
                    related=Department.HEALTH.value,
                )
            else:
                self._close(person, department, AnomalyKind.DECEASED_WITH_ACTIVE_STATUS)

    # ------------------------------------------------------------------ identities
    async def _load_statuses(
        self, person_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, list[_StatusState]]:
        ids = list(person_ids)
        statuses: dict[uuid.UUID, list[_StatusState]] = defaultdict(list)
        if not ids:
            return statuses
        stmt = select(
            ReliefStatus.id,
            ReliefStatus.person_id,
            ReliefStatus.source_department,
            ReliefStatus.category,
            ReliefStatus.recognized_on,
            ReliefStatus.valid_from,
            ReliefStatus.valid_to,
        ).where(self._among(ReliefStatus.person_id, ids))
        for r in await self.connection.execute(stmt):
            statuses[r.person_id].append(
                _StatusState(
                    r.id,
                    r.person_id,
                    r.source_department,
                    r.category,
                    r.recognized_on,
                    r.valid_from,
                    r.valid_to,
                )
            )
        return statuses

    async def _identities(self, rows: list[IdentityRow]) -> None:
        context = self.context
        department = context.department
        accepted: list[IdentityRow] = []
        for row in rows:
            if not self._in_scope(row.region_code):
                self._reject(row, "行政区划代码", row.region_code, "行政区划代码不在本部门辖区内")
            else:
                accepted.append(row)
        statuses = await self._load_statuses(p.id for p in self._persons.values())
        households = await self._load_households(accepted)
        for row in accepted:
            person = self._person(row)
            if person is None:
                person = self._create_person(row, row.region_code)
            elif person.foreign:
                self._foreign_identity(person, row, statuses[person.id])
                continue
            else:
                self._check_name(person, row)
            if row.stated_birth_date is not None and row.stated_birth_date != row.birth_date:
                self._open(
                    person,
                    department,
                    AnomalyKind.BIRTH_DATE_MISMATCH,
                    "报送的出生日期与身份证号码中的出生日期不一致，请核实",
                )
            facts = (
                row.name,
                row.region_code,
                row.phone,
                row.address,
                row.household_number,
                row.relation,
            )
            person_changed = self._note_source(person, row, facts)
            if person_changed or person.is_new:
                self._update_person_facts(person, row, households)
            outcome = Outcome.ADDED if person.is_new and not person_changed else None
            if row.category is not None:
                outcome = self._status(person, row, statuses[person.id])
            elif outcome is None:
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            if outcome is Outcome.UNCHANGED and person_changed:
                outcome = Outcome.UPDATED
            self._check_deceased_statuses(person, statuses[person.id])
            self.result.outcomes[outcome] += 1
            self.result.counties.add(row.region_code[:6])
        self._flush_statuses(statuses)

    def _foreign_identity(
        self, person: _PersonState, row: IdentityRow, statuses: list[_StatusState]
    ) -> None:
        """A row about a person held in another jurisdiction (see the class note on scope)."""
        department = self.context.department
        first_report = self._first_report(person)
        facts = (row.name, row.region_code, row.phone, row.address, row.household_number)
        person_changed = self._note_source(person, row, (*facts, row.relation))
        if row.category is not None:
            # Only this submitter's own records count: the same department's records kept by
            # the person's county are not shown to it (nor changed by it).
            recorded = any(
                s.department == department
                and s.category == row.category
                and s.recognized_on == row.recognized_on
                and s.id is not None
                for s in statuses
            )
            if recorded:  # already held there, as stated: nothing to store
                outcome = Outcome.ADDED if first_report else Outcome.UNCHANGED
            else:
                own = [s for s in statuses if s.department != department or s.id is None]
                outcome = self._status(person, row, own)
                statuses.extend(s for s in own if s.id is None and s not in statuses)
            if outcome is Outcome.UNCHANGED and person_changed:
                outcome = Outcome.UPDATED
        elif first_report:
            outcome = Outcome.ADDED
        else:
            outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
        self._open(
            person,
            department,
            AnomalyKind.REPORTED_BY_ANOTHER_REGION,
            f"辖区 {row.region_code[:6]} 的{_dept_zh(department)}也报送了该人员，"
            "请核实其户籍或居住地是否变动、是否重复认定",
        )
        self._check_deceased_statuses(person, statuses)
        self.result.outcomes[outcome] += 1
        self.result.counties.add(row.region_code[:6])

    async def _load_households(self, rows: list[IdentityRow]) -> dict[str, uuid.UUID]:
        numbers = {r.household_number for r in rows if r.household_number}
        if not numbers:
            return {}
        stmt = select(Household.id, Household.source_number).where(
            Household.source_department == self.context.department,
            self._among(Household.source_number, numbers),
        )
        return {r.source_number: r.id for r in await self.connection.execute(stmt)}

    def _update_person_facts(
        self, person: _PersonState, row: IdentityRow, households: dict[str, uuid.UUID]
    ) -> None:
        """Identity departments keep a person's place and contacts current: the latest row
        wins for what it states; what it leaves empty is kept."""
        vault = self.context.vault
        changes: dict[str, Any] = {}
        if row.region_code != person.region_code:
            changes.update(
                region_code=row.region_code,
                province_code=row.region_code[:2],
                city_code=row.region_code[:4],
                county_code=row.region_code[:6],
            )
            person.region_code = row.region_code
        if row.phone is not None:
            changes.update(
                phone_ct=vault.seal(person.id, "phone", row.phone),
                phone_bidx=vault.phone_index(row.phone),
            )
        if row.address is not None:
            changes["address_ct"] = vault.seal(person.id, "address", row.address)
        if row.relation is not None:
            changes["relation"] = row.relation
        if row.household_number:
            household = households.get(row.household_number)
            if household is None:
                household = uuid.uuid4()
                households[row.household_number] = household
                self._new_households.append(
                    {
                        "id": household,
                        "region_code": row.region_code,
                        "county_code": row.region_code[:6],
                        "source_department": self.context.department,
                        "source_number": row.household_number,
                    }
                )
            changes["household_id"] = household
            person.household_id = household
        if changes:
            self._change_person(person, **changes)

    def _status(
        self, person: _PersonState, row: IdentityRow, statuses: list[_StatusState]
    ) -> Outcome:
        department = self.context.department
        category, recognized = row.category, row.recognized_on
        assert category is not None
        assert recognized is not None
        mine = [s for s in statuses if s.department == department]
        same = next(
            (s for s in mine if s.category == category and s.recognized_on == recognized), None
        )
        if row.exited_on is not None:
            exited = row.exited_on
            target = same or next(
                (s for s in mine if s.category == category and s.valid_to is None), None
            )
            if target is not None and target.valid_to == exited:
                return Outcome.UNCHANGED
            if target is None:
                statuses.append(self._new_status(person, row, valid_to=exited))
                # A recognition first reported together with its exit still replaced the
                # earlier tier of its group (身份变更, then 退出), as it does when the roster
                # lists the older tier after it: the result must not depend on row order.
                self._end_earlier_tiers(mine, row)
            else:
                self._touch(target, row, valid_to=exited)
            self._check_exit_elsewhere(person, category, exited, statuses)
            return Outcome.EXITED
        feed = self.context.feed

        # A later recognition ends an earlier one of the same category (re-recognised) as well
        # as one of another tier in its group: without the same-category case, re-loading a
        # roster that lists both recognitions re-opened the earlier one (not idempotent), and
        # listing the older one second ended the newer one on its first day.
        def superseded_by(h: _StatusState) -> bool:
            return h.recognized_on > recognized and (
                h.category == category or feed.replaces(category, h.category)
            )

        if same is not None:
            if same.valid_to is None or any(superseded_by(h) for h in mine):
                # held, or ended by a later recognition in its group: re-listing it is no news
                return Outcome.UNCHANGED
            self._touch(same, row, valid_to=None)  # listed again after an exit
            return Outcome.ADDED
        # Every later recognition counts, held or not: with three tiers (特困 2021, 低保 2023,
        # 边缘 2024) 特困 ends the day before 低保 even when 低保 has already been ended by 边缘.
        newer = [h.recognized_on for h in mine if superseded_by(h)]
        if newer:
            # An older tier listed next to a newer one (the roster lists both): history, ended
            # by the newer recognition, whatever order the rows come in.
            ended = max(recognized, min(newer) - timedelta(days=1))
            self._end_earlier_tiers(mine, row)
            statuses.append(self._new_status(person, row, valid_to=ended))
            return Outcome.UPDATED
        outcome = Outcome.ADDED
        for held in mine:
            if held.valid_to is not None:
                continue
            if feed.replaces(category, held.category):
                outcome = Outcome.CHANGED
            elif held.category == category:
                outcome = Outcome.UPDATED  # re-recognised: the new recognition takes over
            else:
                continue
            self._touch(held, row, valid_to=max(held.valid_from, recognized - timedelta(days=1)))
        statuses.append(self._new_status(person, row, valid_to=None))
        return outcome

    def _end_earlier_tiers(self, mine: list[_StatusState], row: IdentityRow) -> None:
        """A recognition stored below the top of its chain (listed with its exit, or older
        than one already held) ends the earlier recognitions of its group that were still held
        when it began, or that the next recognition after it had ended: it sits between them.
        E.g. 特困 2021 and 边缘 2024 stored, then 低保 2023: 特困 now ends on 2022-12-31, as
        it does in every other row order."""
        feed = self.context.feed
        category, recognized = row.category, row.recognized_on
        assert category is not None
        assert recognized is not None

        def in_group(s: _StatusState) -> bool:
            return s.category == category or feed.replaces(category, s.category)

        later = [s.recognized_on for s in mine if s.recognized_on > recognized and in_group(s)]
        ended_by_next = min(later) - timedelta(days=1) if later else None
        for earlier in mine:
            if (
                earlier.recognized_on < recognized
                and in_group(earlier)
                and (earlier.valid_to is None or earlier.valid_to == ended_by_next)
            ):
                ended = max(earlier.valid_from, recognized - timedelta(days=1))
                self._touch(earlier, row, valid_to=ended)

    def _new_status(
        self, person: _PersonState, row: IdentityRow, valid_to: date | None
    ) -> _StatusState:
        assert row.category is not None
        assert row.recognized_on is not None
        return _StatusState(
            None,
            person.id,
            self.context.department,
            row.category,
            row.recognized_on,
            row.recognized_on,
            valid_to,
            line=row.line,
            dirty=True,
        )

    @staticmethod
    def _touch(status: _StatusState, row: IdentityRow, valid_to: date | None) -> None:
        status.valid_to = valid_to
        status.line = row.line
        status.dirty = True

    def _check_exit_elsewhere(
        self, person: _PersonState, category: str, exited: date, statuses: list[_StatusState]
    ) -> None:
        """An identity exited here but still held in another department's data (rule 4)."""
        for other in statuses:
            if (
                other.department != self.context.department
                and other.category == category
                and other.held_after(exited)
            ):
                self._open(
                    person,
                    other.department,
                    AnomalyKind.EXITED_IDENTITY_ACTIVE_ELSEWHERE,
                    f"{_dept_zh(self.context.department)}已于 {exited.isoformat()} 退出该人员的"
                    f"“{CATEGORY_NAMES_ZH.get(category, category)}”身份，"
                    "但本部门数据中该身份仍有效，请核实",
                    related=self.context.department,
                )

    def _flush_statuses(self, statuses: dict[uuid.UUID, list[_StatusState]]) -> None:
        new_rows: list[dict[str, Any]] = []
        for person_statuses in statuses.values():
            for s in person_statuses:
                if not s.dirty:
                    continue
                provenance = self._provenance(s.line)
                if s.id is None:
                    new_rows.append(
                        {
                            "person_id": s.person_id,
                            "category": s.category,
                            "source_department": s.department,
                            "recognized_on": s.recognized_on,
                            "valid_from": s.valid_from,
                            "valid_to": s.valid_to,
                            # The days the list and the exit reached the exchange (000 §2).
                            "listed_on": self.context.today,
                            "exit_listed_on": self.context.today if s.valid_to else None,
                            **provenance,
                        }
                    )
                else:
                    self._fact_updates.append(
                        update(ReliefStatus)
                        .where(ReliefStatus.id == s.id)
                        .values(
                            valid_to=s.valid_to,
                            exit_listed_on=self.context.today if s.valid_to else None,
                            **provenance,
                        )
                    )
        self._fact_inserts.append((_table(ReliefStatus), new_rows))

    # ------------------------------------------------------------------ enrollments
    async def _enrollments(self, rows: list[EnrollmentRow]) -> None:
        context = self.context
        accepted = []
        for row in rows:
            if not self._in_scope(row.region_code):
                self._reject(row, "参保地行政区划代码", row.region_code, "参保地不在本部门辖区内")
            else:
                accepted.append(row)
        ids = [p.id for p in self._persons.values()]
        existing: dict[tuple[uuid.UUID, int, str], dict[str, Any]] = {}
        if ids:
            stmt = select(
                Enrollment.id,
                Enrollment.person_id,
                Enrollment.year,
                Enrollment.insurance_type,
                Enrollment.status,
                Enrollment.region_code,
                Enrollment.subsidy_category,
                Enrollment.subsidy_amount,
            ).where(self._among(Enrollment.person_id, ids))
            for r in await self.connection.execute(stmt):
                existing[(r.person_id, r.year, r.insurance_type)] = dict(r._mapping)
        statuses = (
            await self._load_statuses(ids) if any(r.subsidy_category for r in accepted) else {}
        )
        new_rows: list[dict[str, Any]] = []
        for row in accepted:
            person = self._person(row)
            if person is None:
                person = self._create_person(row, row.region_code)
            elif not person.foreign:
                self._check_name(person, row)
            first_report = self._first_report(person)
            person_changed = self._note_source(person, row, (row.name,))
            key = (person.id, row.year, row.insurance_type)
            if person.foreign:
                # Insured here, held elsewhere (rule 9: legitimate). Classified as if unknown
                # (see the class note on scope); the same year insured in another county is
                # a double enrollment for that county to verify, never overwritten from here.
                person_changed = person_changed and not first_report
                held = existing.get(key)
                if held is not None and not self._in_scope(held["region_code"]):
                    self._open(
                        person,
                        context.department,
                        AnomalyKind.REPORTED_BY_ANOTHER_REGION,
                        f"参保地 {row.region_code[:6]} 的医保部门也报送了该人员"
                        f" {row.year} 年度参保，请核实是否重复参保",
                    )
                    outcome = Outcome.ADDED if first_report else Outcome.UNCHANGED
                    self.result.outcomes[outcome] += 1
                    self.result.counties.add(row.region_code[:6])
                    continue
            state = {
                "status": row.status,
                "region_code": row.region_code,
                "subsidy_category": row.subsidy_category,
                "subsidy_amount": row.subsidy_amount,
            }
            provenance = self._provenance(row.line)
            before = existing.get(key)
            if before is None:
                record = {
                    "person_id": person.id,
                    "year": row.year,
                    "insurance_type": row.insurance_type,
                    **state,
                    **provenance,
                }
                new_rows.append(record)
                existing[key] = {"id": None, **record}
                outcome = Outcome.ADDED if row.status == "ACTIVE" else Outcome.EXITED
            elif all(_same(before[k], v) for k, v in state.items()):
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                if before["status"] == "ACTIVE" and row.status != "ACTIVE":
                    outcome = Outcome.EXITED
                elif before["status"] != "ACTIVE" and row.status == "ACTIVE":
                    outcome = Outcome.ADDED
                elif before["subsidy_category"] != row.subsidy_category:
                    outcome = Outcome.CHANGED
                else:
                    outcome = Outcome.UPDATED
                before.update(state)
                if before["id"] is None:  # inserted earlier in this chunk
                    before.update(provenance)
                    for pending in new_rows:
                        if (
                            pending["person_id"],
                            pending["year"],
                            pending["insurance_type"],
                        ) == key:
                            pending.update(state, **provenance)
                else:
                    self._fact_updates.append(
                        update(Enrollment)
                        .where(Enrollment.id == before["id"])
                        .values(**state, **provenance)
                    )
            self._check_deceased_enrollment(person, row.year, row.status)
            if row.subsidy_category:
                self._check_subsidy(person, row, statuses.get(person.id, []))
            self.result.outcomes[outcome] += 1
            self.result.counties.add(row.region_code[:6])
        self._fact_inserts.append((_table(Enrollment), new_rows))

    def _check_deceased_enrollment(self, person: _PersonState, year: int, status: str) -> None:
        if person.deceased_on is None:
            return
        if status == "ACTIVE" and year > person.deceased_on.year:
            self._open(
                person,
                Department.MEDICAL_INSURANCE.value,
                AnomalyKind.DECEASED_STILL_ENROLLED,
                f"卫生健康部门报告该人员已于 {person.deceased_on.isoformat()} 死亡，"
                f"但其 {year} 年度仍为正常参保，请核实并办理终止参保",
                related=Department.HEALTH.value,
            )
        elif status != "ACTIVE":
            self._close(
                person, Department.MEDICAL_INSURANCE.value, AnomalyKind.DECEASED_STILL_ENROLLED
            )

    def _check_subsidy(
        self, person: _PersonState, row: EnrollmentRow, statuses: list[_StatusState]
    ) -> None:
        """Subsidised enrollment in a year after the identity was exited everywhere (the year
        of exit keeps its subsidy: 001 §2 / 004 §3 lock the category for the natural year)."""
        category = row.subsidy_category
        same = [s for s in statuses if s.category == category]
        if not same:
            return  # recognised by a department whose data the gateway does not hold
        year_start = date(row.year, 1, 1)
        if any(s.held_after(year_start - timedelta(days=1)) for s in same):
            return
        exited_by = max(same, key=lambda s: s.valid_to or date.max)
        self._open(
            person,
            Department.MEDICAL_INSURANCE.value,
            AnomalyKind.EXITED_IDENTITY_ACTIVE_ELSEWHERE,
            f"{_dept_zh(exited_by.department)}已退出该人员的"
            f"“{CATEGORY_NAMES_ZH.get(category or '', category)}”身份，"
            f"但其 {row.year} 年度仍按该类别资助参保，请核实",
            related=exited_by.department,
        )

    # ------------------------------------------------------------------ settlements
    async def _settlements(self, rows: list[SettlementRow]) -> None:
        numbers = [row.settlement_number for row in rows]
        existing: dict[str, dict[str, Any]] = {}
        stmt = select(*_table(Settlement).c).where(
            self._among(Settlement.settlement_number, numbers)
        )
        for r in await self.connection.execute(stmt):
            existing[r.settlement_number] = dict(r._mapping)
        new_rows: list[dict[str, Any]] = []
        touched: set[tuple[uuid.UUID, int]] = set()
        for row in rows:
            person = self._person(row)
            if person is None or not self._in_scope(person.region_code):
                self._reject(row, "身份证号码", _masked(row.id_number), NOT_IN_SCOPE)
                continue
            before = existing.get(row.settlement_number)
            if before is not None and before["person_id"] != person.id:
                # Refused before anything is noted about the person: a rejected row must leave
                # nothing behind (no person_source pointing at its line, no name anomaly).
                self._reject(
                    row, "结算流水号", row.settlement_number, "结算流水号已用于另一人员的结算记录"
                )
                continue
            self._check_name(person, row)
            person_changed = self._note_source(person, row, (row.name,))
            state = {
                "person_id": person.id,
                "settled_on": row.settled_on,
                "year": row.settled_on.year,
                "visit_type": row.visit_type,
                "total_cost": row.total_cost,
                "basic_insurance_paid": row.basic_paid,
                "critical_illness_paid": row.critical_paid,
                "medical_assistance_paid": row.assistance_paid,
                "personal_burden": row.personal_burden,
            }
            provenance = self._provenance(row.line)
            if before is None:
                record = {"settlement_number": row.settlement_number, **state, **provenance}
                new_rows.append(record)
                existing[row.settlement_number] = {"id": None, **record}
                outcome = Outcome.ADDED
            elif all(_same(before[k], v) for k, v in state.items()):
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                touched.add((person.id, before["year"]))
                before.update(state)
                if before["id"] is None:
                    for pending in new_rows:
                        if pending["settlement_number"] == row.settlement_number:
                            pending.update(state, **provenance)
                else:
                    self._fact_updates.append(
                        update(Settlement)
                        .where(Settlement.id == before["id"])
                        .values(**state, **provenance)
                    )
                outcome = Outcome.UPDATED  # a corrected settlement
            if outcome is not Outcome.UNCHANGED:
                touched.add((person.id, row.settled_on.year))
            self.result.outcomes[outcome] += 1
            self.result.counties.add(person.county_code)
        self._fact_inserts.append((_table(Settlement), new_rows))
        self._cost_pairs |= touched

    async def _recompute_cost_burdens(self, pairs: set[tuple[uuid.UUID, int]]) -> None:
        """Cost burden = the year's settlements summed (personal burden is cumulative, 001 §4)."""
        if not pairs:
            return
        keys = sorted(pairs)
        await self.connection.execute(
            delete(CostBurden).where(tuple_(CostBurden.person_id, CostBurden.year).in_(keys))
        )
        inpatient = func.sum(case((Settlement.visit_type == "INPATIENT", 1), else_=0))
        totals = (
            select(
                Settlement.person_id,
                Settlement.year,
                func.sum(Settlement.total_cost),
                func.sum(Settlement.basic_insurance_paid),
                func.sum(Settlement.critical_illness_paid),
                func.sum(Settlement.medical_assistance_paid),
                func.sum(Settlement.personal_burden),
                inpatient,
            )
            .where(tuple_(Settlement.person_id, Settlement.year).in_(keys))
            .group_by(Settlement.person_id, Settlement.year)
        )
        rows = [
            {
                "person_id": r[0],
                "year": r[1],
                "total_cost": Decimal(r[2]),
                "basic_insurance_paid": Decimal(r[3]),
                "critical_illness_paid": Decimal(r[4]),
                "medical_assistance_paid": Decimal(r[5]),
                "personal_burden": Decimal(r[6]),
                "inpatient_count": int(r[7]),
                "batch_id": self.context.batch_id,
                "source_line": None,
                "received_at": self.context.received_at,
            }
            for r in await self.connection.execute(totals)
        ]
        await insert_rows(self.connection, _table(CostBurden), rows)

    # ------------------------------------------------------------------ vital events
    async def _vital_events(self, rows: list[VitalEventRow]) -> None:
        ids = [p.id for p in self._persons.values()]
        existing: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        if ids:
            stmt = select(
                VitalEvent.id, VitalEvent.person_id, VitalEvent.event, VitalEvent.event_date
            ).where(self._among(VitalEvent.person_id, ids))
            for r in await self.connection.execute(stmt):
                existing[(r.person_id, r.event)] = dict(r._mapping)
        deaths = [row for row in rows if row.event == "DEATH"]
        statuses = await self._load_statuses(ids) if deaths else {}
        enrollments = await self._active_enrollment_years(ids) if deaths else {}
        new_rows: list[dict[str, Any]] = []
        for row in rows:
            person = self._person(row)
            if person is None or not self._in_scope(person.region_code):
                # Health reports everyone's births and deaths; most are not in the gateway.
                self.result.outcomes[Outcome.UNMATCHED] += 1
                continue
            self._check_name(person, row)
            person_changed = self._note_source(person, row, (row.name,))
            key = (person.id, row.event)
            provenance = self._provenance(row.line)
            before = existing.get(key)
            if before is None:
                record = {
                    "person_id": person.id,
                    "event": row.event,
                    "event_date": row.event_date,
                    **provenance,
                }
                new_rows.append(record)
                existing[key] = {"id": None, **record}
                outcome = Outcome.ADDED
            elif before["event_date"] == row.event_date:
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                before["event_date"] = row.event_date
                if before["id"] is None:
                    for pending in new_rows:
                        if (pending["person_id"], pending["event"]) == key:
                            pending.update(event_date=row.event_date, **provenance)
                else:
                    self._fact_updates.append(
                        update(VitalEvent)
                        .where(VitalEvent.id == before["id"])
                        .values(event_date=row.event_date, **provenance)
                    )
                outcome = Outcome.UPDATED
            if row.event == "DEATH" and person.deceased_on != row.event_date:
                person.deceased_on = row.event_date
                self._change_person(person, deceased_on=row.event_date)
                self._check_deceased_statuses(person, statuses.get(person.id, []))
                for year in enrollments.get(person.id, ()):
                    self._check_deceased_enrollment(person, year, "ACTIVE")
            self.result.outcomes[outcome] += 1
            self.result.counties.add(person.county_code)
        self._fact_inserts.append((_table(VitalEvent), new_rows))

    async def _active_enrollment_years(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, set[int]]:
        years: dict[uuid.UUID, set[int]] = defaultdict(set)
        if not ids:
            return years
        stmt = select(Enrollment.person_id, Enrollment.year).where(
            self._among(Enrollment.person_id, ids), Enrollment.status == "ACTIVE"
        )
        for r in await self.connection.execute(stmt):
            years[r.person_id].add(r.year)
        return years


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


__all__ = [
    "ANOMALY_DUE_WORKING_DAYS",
    "AnomalyKind",
    "BatchContext",
    "ChunkApplier",
    "ChunkResult",
    "Outcome",
]
