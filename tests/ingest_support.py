"""Fixtures and builders for the ingest tests (``tests/test_ingest_*.py``, ``test_mapping.py``).

Every test gets an empty, migrated database on each backend (SQLite and a throw-away PostgreSQL) and
a vault with a fresh keyring. The database is migrated once per test module and emptied before each
test, which is what a new database is, at a fraction of the cost.

People are synthetic: names such as 测试甲, ID numbers from
:func:`gateway.domain.id_numbers.make_id_number` with real county codes from
``gateway/data/regions.json``. Department files are written the way departments send them (CSV in
any encoding, XLSX with a title row, JSON Lines) by the writers in :mod:`adapters.samples`, and
loaded through :class:`adapters.pipeline.Ingestor`, the public entry point the CLI and the GraphQL
push use.

Test modules import the fixtures they use::

from tests.ingest_support import db_fixture, ingest_database_fixture # noqa: F401"""

from __future__ import annotations

import csv
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from sqlalchemy import DateTime, LargeBinary, Table, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.mapping import Feed, load_feeds
from adapters.pipeline import CHUNK_ROWS, REPORT_HEADER, Ingestor, IngestResult, RejectionReport
from adapters.samples import write_csv, write_jsonl, write_xlsx
from gateway.crypto import FieldCipher, Keyring
from gateway.domain import clock, regions
from gateway.domain.id_numbers import make_id_number
from gateway.loop.statistics import SharingStatistics
from gateway.storage.engine import make_engine
from gateway.storage.migrate import upgrade_to_head
from gateway.storage.models import (
    Anomaly,
    Base,
    CostBurden,
    Enrollment,
    Household,
    IngestBatch,
    Person,
    PersonSource,
    ReliefStatus,
    Settlement,
    VitalEvent,
)
from gateway.storage.vault import PersonVault
from tests.pgcluster import ThrowawayCluster

# conftest pins the one clock (RELIEF_TODAY=2026-11-23); the tests' dates are relative to it.
TODAY = clock.today()
CIPHER_SUITE = "aes-256-gcm+hmac-sha256"

COUNTY = "370102"  # 济南市历下区
NEIGHBOUR_COUNTY = "370103"  # 济南市市中区: same city
OTHER_CITY_COUNTY = "370202"  # 青岛市市南区: same province, other city
OTHER_PROVINCE_COUNTY = "140105"  # 太原市小店区
for _code in (COUNTY, NEIGHBOUR_COUNTY, OTHER_CITY_COUNTY, OTHER_PROVINCE_COUNTY):
    assert regions.county(_code) is not None, _code

IDENTITY_HEADERS = (
    "姓名",
    "身份证号码",
    "行政区划代码",
    "人员类别",
    "认定日期",
    "退出日期",
    "联系电话",
    "家庭住址",
    "户编号",
    "与户主关系",
)
ENROLLMENT_HEADERS = (
    "姓名",
    "身份证号码",
    "参保年度",
    "险种类型",
    "参保状态",
    "参保地行政区划代码",
    "资助类别",
    "资助金额",
)
SETTLEMENT_HEADERS = (
    "姓名",
    "身份证号码",
    "结算日期",
    "就诊类型",
    "医疗总费用",
    "基本医保支付",
    "大病保险支付",
    "医疗救助支付",
    "个人负担",
    "结算流水号",
)
VITAL_EVENT_HEADERS = ("姓名", "身份证号码", "事件类型", "事件日期")

# Tables holding what ingest stores, in an order that respects the foreign keys when emptied
# backwards (metadata.sorted_tables is parents first).
DATA_TABLES = tuple(table.name for table in Base.metadata.sorted_tables)


# --------------------------------------------------------------------------- synthetic people

_STEMS = "甲乙丙丁戊己庚辛壬癸"
_BRANCHES = "子丑寅卯辰巳午未申酉戌亥"


@dataclass(frozen=True, slots=True)
class Someone:
    """A synthetic person as departments know them: a name and a resident ID number."""

    name: str
    id_number: str
    county: str

    @property
    def masked_id(self) -> str:
        """How a rejection report names someone the gateway must not confirm it knows."""
        return self.id_number[:6] + "********" + self.id_number[-4:]


def someone(n: int, county: str = COUNTY, *, born: date | None = None) -> Someone:
    """The ``n``-th synthetic person (0 ≤ n < 1000): 测试甲, 测试乙 … with a valid ID number."""
    assert 0 <= n < 1000
    name = "测试" + _STEMS[n % 10] + ("" if n < 10 else _BRANCHES[(n // 10) % 12])
    birth = born or date(1950, 1, 1) + timedelta(days=61 * n)
    return Someone(name, make_id_number(county, birth, n), county)


def someone_with_x_check_digit(county: str = COUNTY) -> Someone:
    """A person whose ID number ends in the check character X."""
    for n in range(1000):
        person = someone(n, county, born=date(1980, 5, 17))
        if person.id_number.endswith("X"):
            return Someone("测试叉", person.id_number, county)
    raise AssertionError("no sequence gives the check character X")  # pragma: no cover


# --------------------------------------------------------------------------- rows, by feed


def identity_row(
    person: Someone,
    category: str = "低保对象",
    recognized: str = "2025-03-01",
    exited: str = "",
    *,
    region: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A row of a civil affairs (or rural revitalisation) roster, keyed by its headers."""
    return {
        "姓名": person.name,
        "身份证号码": person.id_number,
        "行政区划代码": region or person.county,
        "人员类别": category,
        "认定日期": recognized,
        "退出日期": exited,
        **(extra or {}),
    }


def enrollment_row(
    person: Someone,
    year: int = 2026,
    status: str = "正常参保",
    *,
    insurance_type: str = "城乡居民",
    region: str | None = None,
    subsidy_category: str = "",
    subsidy_amount: str = "",
) -> dict[str, str]:
    return {
        "姓名": person.name,
        "身份证号码": person.id_number,
        "参保年度": str(year),
        "险种类型": insurance_type,
        "参保状态": status,
        "参保地行政区划代码": region or person.county,
        "资助类别": subsidy_category,
        "资助金额": subsidy_amount,
    }


def settlement_row(
    person: Someone,
    number: str,
    settled_on: str = "2026-03-01",
    visit_type: str = "住院",
    *,
    total: str = "1000.00",
    basic: str = "600.00",
    critical: str = "100.00",
    assistance: str = "100.00",
    burden: str = "200.00",
) -> dict[str, str]:
    return {
        "姓名": person.name,
        "身份证号码": person.id_number,
        "结算日期": settled_on,
        "就诊类型": visit_type,
        "医疗总费用": total,
        "基本医保支付": basic,
        "大病保险支付": critical,
        "医疗救助支付": assistance,
        "个人负担": burden,
        "结算流水号": number,
    }


def vital_event_row(person: Someone, event: str = "死亡", on: str = "2026-10-01") -> dict[str, str]:
    return {"姓名": person.name, "身份证号码": person.id_number, "事件类型": event, "事件日期": on}


# --------------------------------------------------------------------------- files

FORMAT_SUFFIX = {"csv": ".csv", "xlsx": ".xlsx", "jsonl": ".jsonl"}


def headers_of(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """Every key of the rows, in first-seen order: the header of the file they are written to."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_rows(
    path: Path,
    rows: Sequence[Mapping[str, str]],
    *,
    headers: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> Path:
    """Write ``rows`` in the format the suffix names: CSV (in ``encoding``), XLSX with a
    merged title row above the header, or JSON Lines (only the non-empty cells)."""
    columns = list(headers) if headers is not None else headers_of(rows)
    plain = [dict(row) for row in rows]
    if path.suffix == ".csv":
        write_csv(path, columns, plain, encoding=encoding)
    elif path.suffix == ".xlsx":
        write_xlsx(path, columns, plain, title="测试用部门数据")
    elif path.suffix == ".jsonl":
        write_jsonl(path, [{k: v for k, v in row.items() if v and k in columns} for row in plain])
    else:  # pragma: no cover - a test's own mistake
        raise ValueError(path.suffix)
    return path


def first_data_line(file_format: str) -> int:
    """The line (or worksheet row) the first record is on, as the rejection report counts."""
    return {"csv": 2, "xlsx": 3, "jsonl": 1}[file_format]


def read_report(path: Path) -> list[tuple[str, ...]]:
    """A rejection report's rows, header included, checking it is UTF-8 with a BOM."""
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "the report must open in Excel: UTF-8 with BOM"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [tuple(row) for row in csv.reader(handle)]


def nonzero(result: IngestResult) -> dict[str, int]:
    """The counts of a result that are not zero: what the batch did, at a glance."""
    return {name: value for name, value in result.counts.as_dict().items() if value}


# --------------------------------------------------------------------------- the database


@cache
def shipped_feeds() -> Mapping[tuple[str, str], Feed]:
    """The shipped mappings, parsed once for the session (feeds are immutable)."""
    return MappingProxyType(load_feeds())


@dataclass
class IngestDatabase:
    """One migrated database for a test module: emptied by :meth:`fresh` before each test."""

    backend: str
    url: str
    engine: AsyncEngine
    tmp: Path

    async def empty(self) -> None:
        async with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                await connection.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE"))
            else:
                for name in reversed(DATA_TABLES):
                    await connection.execute(Base.metadata.tables[name].delete())

    async def fresh(self, tmp: Path) -> IngestDB:
        await self.empty()
        keyring = Keyring.generate(CIPHER_SUITE)
        return IngestDB(self, keyring, PersonVault(FieldCipher(keyring)), tmp)


@dataclass
class IngestDB:
    """An empty database and a vault: load department files and look at what was stored."""

    database: IngestDatabase
    keyring: Keyring
    vault: PersonVault
    tmp: Path
    feeds: dict[tuple[str, str], Feed] = field(default_factory=lambda: dict(shipped_feeds()))
    _files: int = 0

    @property
    def engine(self) -> AsyncEngine:
        return self.database.engine

    @property
    def backend(self) -> str:
        return self.database.backend

    @property
    def url(self) -> str:
        return self.database.url

    # ------------------------------------------------------------------ loading
    def ingestor(
        self,
        source: str,
        feed: str,
        *,
        scope: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
        feeds: Mapping[tuple[str, str], Feed] | None = None,
    ) -> Ingestor:
        return Ingestor(
            self.engine,
            self.vault,
            (feeds or self.feeds)[(source, feed)],
            submitted_by=f"test:{source}",
            today=TODAY,
            scope=scope,
            chunk_rows=chunk_rows,
        )

    def file(
        self,
        rows: Sequence[Mapping[str, str]],
        *,
        file_format: str = "csv",
        encoding: str = "utf-8",
        headers: Sequence[str] | None = None,
        stem: str | None = None,
    ) -> Path:
        """Write ``rows`` to a new file in this test's directory."""
        self._files += 1
        name = f"{stem or f'file{self._files}'}{FORMAT_SUFFIX[file_format]}"
        return write_rows(self.tmp / name, rows, headers=headers, encoding=encoding)

    async def load_file(
        self,
        source: str,
        feed: str,
        path: Path,
        *,
        dry_run: bool = False,
        scope: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
        feeds: Mapping[tuple[str, str], Feed] | None = None,
    ) -> IngestResult:
        """``Ingestor.ingest_file`` with a rejection report next to the file; the result's
        ``report_path`` names it (the CLI does the same)."""
        ingestor = self.ingestor(source, feed, scope=scope, chunk_rows=chunk_rows, feeds=feeds)
        report_path = path.with_name(f"{path.stem}.拒收报告.csv")
        report = RejectionReport(report_path)
        try:
            result = await ingestor.ingest_file(path, dry_run=dry_run, report=report)
        finally:
            report.close()
        result.report_path = report_path
        return result

    async def load(
        self,
        source: str,
        feed: str,
        rows: Sequence[Mapping[str, str]],
        *,
        file_format: str = "csv",
        encoding: str = "utf-8",
        headers: Sequence[str] | None = None,
        dry_run: bool = False,
        scope: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> IngestResult:
        """Write ``rows`` as a department file and ingest it."""
        path = self.file(rows, file_format=file_format, encoding=encoding, headers=headers)
        return await self.load_file(
            source, feed, path, dry_run=dry_run, scope=scope, chunk_rows=chunk_rows
        )

    async def push(
        self, source: str, feed: str, records: Sequence[Mapping[str, object]]
    ) -> IngestResult:
        """A real-time push of ``records`` (``Ingestor.ingest_records``)."""
        return await self.ingestor(source, feed).ingest_records(records)

    # ------------------------------------------------------------------ looking
    async def all(self, statement: Any) -> list[Row[Any]]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(statement)).all())

    async def one(self, statement: Any) -> Row[Any]:
        async with self.engine.connect() as connection:
            return (await connection.execute(statement)).one()

    async def count(self, model: Any, *where: Any) -> int:
        statement = select(func.count()).select_from(model)
        if where:
            statement = statement.where(*where)
        async with self.engine.connect() as connection:
            return int((await connection.execute(statement)).scalar_one())

    async def counts(self) -> dict[str, int]:
        """Rows per table (every table ingest writes to, batches included)."""
        result: dict[str, int] = {}
        async with self.engine.connect() as connection:
            for name in DATA_TABLES:
                table = Base.metadata.tables[name]
                statement = select(func.count()).select_from(table)
                result[name] = int((await connection.execute(statement)).scalar_one())
        return result

    async def snapshot(self, *, without: Iterable[str] = ("ingest_batch",)) -> dict[str, list[str]]:
        """Every row of every table, as sorted text: equal snapshots mean nothing changed,
        not a row count and not a column value. Batches are left out by default (each load
        writes its own batch row, and its ``batch.accepted`` event)."""
        skipped = set(without)
        result: dict[str, list[str]] = {}
        async with self.engine.connect() as connection:
            for name in DATA_TABLES:
                if name in skipped:
                    continue
                table = Base.metadata.tables[name]
                statement = select(table)
                if name == "outbox_event" and "ingest_batch" in skipped:
                    # each completed load tells its sender it was accepted, as it writes its
                    # own batch row: every other event is a change
                    statement = statement.where(table.c.kind != "batch.accepted")
                rows = (await connection.execute(statement)).all()
                result[name] = sorted(repr(tuple(row)) for row in rows)
        return result

    def bidx(self, person: Someone | str) -> bytes:
        id_number = person if isinstance(person, str) else person.id_number
        return self.vault.id_number_index(id_number)

    async def person(self, person: Someone | str) -> Row[Any] | None:
        rows = await self.all(select(Person).where(Person.id_number_bidx == self.bidx(person)))
        return rows[0] if rows else None

    async def person_id(self, person: Someone) -> uuid.UUID:
        row = await self.person(person)
        assert row is not None, f"{person.name} is not stored"
        found: uuid.UUID = row.id
        return found

    def open(self, row: Any, column: str) -> str | None:
        """Decrypt one sealed column of a person row (``PersonVault.open``)."""
        return self.vault.open(row, column)

    async def statuses(self, person: Someone) -> list[Row[Any]]:
        person_id = await self.person_id(person)
        return await self.all(
            select(ReliefStatus)
            .where(ReliefStatus.person_id == person_id)
            .order_by(ReliefStatus.recognized_on, ReliefStatus.category)
        )

    async def status_periods(self, person: Someone) -> list[tuple[str, str, date, date | None]]:
        """(category, department, valid_from, valid_to) of each of the person's statuses."""
        return [
            (s.category, s.source_department, s.valid_from, s.valid_to)
            for s in await self.statuses(person)
        ]

    async def enrollments(self, person: Someone) -> list[Row[Any]]:
        person_id = await self.person_id(person)
        return await self.all(
            select(Enrollment)
            .where(Enrollment.person_id == person_id)
            .order_by(Enrollment.year, Enrollment.insurance_type)
        )

    async def settlements(self, person: Someone) -> list[Row[Any]]:
        person_id = await self.person_id(person)
        return await self.all(
            select(Settlement)
            .where(Settlement.person_id == person_id)
            .order_by(Settlement.settlement_number)
        )

    async def cost_burdens(self, person: Someone) -> dict[int, Row[Any]]:
        person_id = await self.person_id(person)
        rows = await self.all(select(CostBurden).where(CostBurden.person_id == person_id))
        return {row.year: row for row in rows}

    async def vital_events(self, person: Someone) -> list[Row[Any]]:
        person_id = await self.person_id(person)
        return await self.all(select(VitalEvent).where(VitalEvent.person_id == person_id))

    async def anomalies(self, person: Someone | None = None) -> list[Row[Any]]:
        statement = select(Anomaly).order_by(Anomaly.kind, Anomaly.department)
        if person is not None:
            statement = statement.where(Anomaly.person_id == await self.person_id(person))
        return await self.all(statement)

    async def households(self) -> list[Row[Any]]:
        return await self.all(select(Household).order_by(Household.source_number))

    async def sources(self, person: Someone) -> list[Row[Any]]:
        person_id = await self.person_id(person)
        return await self.all(
            select(PersonSource)
            .where(PersonSource.person_id == person_id)
            .order_by(PersonSource.department)
        )

    async def batch(self, batch_id: uuid.UUID | None) -> Row[Any]:
        assert batch_id is not None
        return await self.one(select(IngestBatch).where(IngestBatch.id == batch_id))

    async def batches(self) -> list[Row[Any]]:
        return await self.all(select(IngestBatch).order_by(IngestBatch.received_at))


# --------------------------------------------------------------------------- whole databases

# What identifies a row of a table other rows point to, in any database loaded from the same
# files: the natural keys (a person is the blind index of their ID number, which compares across
# databases sharing a keyring). The referenced table's own columns, already normalised, are
# passed in; a new table that others point to must be added here (the dump says so).
_NATURAL_KEYS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "person": lambda r: r["id_number_bidx"],
    "household": lambda r: (r["source_department"], r["source_number"], r["region_code"]),
    "relief_status": lambda r: (
        r["person_id"],
        r["source_department"],
        r["category"],
        r["recognized_on"],
    ),
    "warning_run": lambda r: (r["month"], r["province"], r["triggered_by"]),
    "cost_warning": lambda r: (r["person_id"], r["year"], r["rule"]),
    "policy_proposal": lambda r: (r["title"], r["proposed_by"], r["base_version"]),
    # what the outbox's events name (issue 18): a task by what caused it, an anomaly by what it
    # says about whom and which batch opened it
    "task": lambda r: (r["department"], r["source_key"], r["person_id"]),
    "anomaly": lambda r: (
        r["person_id"],
        r["department"],
        r["kind"],
        r["related_county"],
        r["batch_id"],
    ),
    "outbox_event": lambda r: (r["kind"], r["audience"], r["dedupe_key"]),
}
# Written after the rows they name (tasks, anomalies): dumped last.
_EVENT_TABLES = ("outbox_event", "webhook_delivery", "webhook_attempt")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SAME_AS_BATCH = "<batch's time>"

TableDump = dict[str, Counter[tuple[tuple[str, Any], ...]]]


async def dump_tables(engine: AsyncEngine, vault: PersonVault) -> TableDump:
    """Every row of every table, as a reader would compare two databases loaded from the same
    files: surrogate ids dropped; a reference to another row replaced by what identifies that
    row (:data:`_NATURAL_KEYS`); a batch named by department, feed, channel, content and its
    place among the batches of that content (``civil_affairs/identities/FILE/3f2a…#0``), also
    where a text names it (``batch:<id>``, "已由批次 <id> …"); sealed values opened with the
    vault and compared as plaintext; timestamps dropped, except that a fact's ``received_at``
    must be its batch's (:data:`SAME_AS_BATCH`). Two dumps are equal when the databases hold
    the same content, row for row."""
    async with engine.connect() as connection:
        rows = {
            table.name: [dict(row._mapping) for row in await connection.execute(select(table))]
            for table in Base.metadata.sorted_tables
        }
    batches = sorted(
        rows["ingest_batch"],
        key=lambda b: (b["department"], b["feed"], b["channel"], b["content_sha256"] or "",
                       _utc(b["received_at"])),
    )  # fmt: skip
    labels: dict[Any, str] = {}
    places: Counter[tuple[Any, ...]] = Counter()
    for batch in batches:
        what = (batch["department"], batch["feed"], batch["channel"], batch["content_sha256"])
        sha = (batch["content_sha256"] or "-")[:12]
        labels[batch["id"]] = "/".join(what[:3]) + f"/{sha}#{places[what]}"
        places[what] += 1
    batch_times = {b["id"]: _utc(b["received_at"]) for b in batches}
    keys: dict[str, dict[Any, Any]] = {"ingest_batch": labels}
    dump: TableDump = {}
    tables = Base.metadata.sorted_tables  # parents first: their keys are known
    tables = [t for t in tables if t.name not in _EVENT_TABLES] + [
        t for t in tables if t.name in _EVENT_TABLES
    ]
    for table in tables:
        normalised = [
            _normalised(table, row, keys, labels, batch_times, vault) for row in rows[table.name]
        ]
        if table.name == "outbox_event":
            normalised = [_event(values, keys) for values in normalised]
        if table.name in _NATURAL_KEYS:
            key = _NATURAL_KEYS[table.name]
            pairs = zip(rows[table.name], normalised, strict=True)
            keys[table.name] = {row["id"]: key(values) for row, values in pairs}
        dump[table.name] = Counter(tuple(sorted(values.items())) for values in normalised)
    return dump


def _event(values: dict[str, Any], keys: Mapping[str, Mapping[Any, Any]]) -> dict[str, Any]:
    """An outbox event by what it says: its random ids dropped (event, write), the task or
    anomaly it names (also inside its dedupe key) by that row's natural key."""
    values = {k: v for k, v in values.items() if k not in ("event_id", "emit_id")}
    named = {
        str(row_id): repr(key)
        for table in ("task", "anomaly")
        for row_id, key in keys.get(table, {}).items()
    }
    for column in ("subject_id", "dedupe_key"):
        text = values[column]
        values[column] = _UUID.sub(lambda m: named.get(m[0], m[0]), text)
    return values


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else clock.as_utc(moment)


def _normalised(
    table: Table,
    row: Mapping[str, Any],
    keys: Mapping[str, Mapping[Any, Any]],
    labels: Mapping[Any, str],
    batch_times: Mapping[Any, datetime | None],
    vault: PersonVault,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in table.columns:
        name, value = column.name, row[column.name]
        if column.foreign_keys:
            [foreign_key] = column.foreign_keys
            target = foreign_key.column.table.name
            assert target in keys, f"{table.name}.{name} points to {target}: add its natural key"
            values[name] = None if value is None else keys[target][value]
        elif column.primary_key and name == "id":
            # surrogate (a person is their blind index, a row its natural key); a batch its label
            values[name] = labels[value] if table.name == "ingest_batch" else None
        elif isinstance(column.type, DateTime):
            if name == "received_at" and "batch_id" in table.columns and row["batch_id"]:
                same = _utc(value) == batch_times[row["batch_id"]]
                values[name] = SAME_AS_BATCH if same else _utc(value)
            else:
                values[name] = None  # when it happened, not what happened
        elif isinstance(column.type, LargeBinary):
            if table.name == "person" and name.endswith("_ct"):
                values[name] = vault.open(_PersonRow(row), name.removesuffix("_ct"))
            else:
                values[name] = None if value is None else bytes(value).hex()
        elif isinstance(value, str):
            values[name] = _UUID.sub(lambda m: labels.get(uuid.UUID(m[0]), m[0]), value)
        else:
            values[name] = value
    return values


class _PersonRow:
    """A person row as :meth:`PersonVault.open` reads it."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.__dict__.update(row)


async def sharing_statistics(engine: AsyncEngine, region: str) -> SharingStatistics:
    """Rule 11 (000 §5) as the big-data bureau reads it for ``region``: shares and person-times,
    and the batches and rows each department provided, per month. Batches are received now,
    whatever day the clock is pinned to: the window is wide."""
    from gateway.domain.departments import Level
    from gateway.domain.settings import Province
    from gateway.loop.config import load_rules
    from gateway.loop.statistics import Statistics, statistics_scope

    level = {2: Level.PROVINCE, 4: Level.CITY, 6: Level.COUNTY}[len(region)]
    async with engine.connect() as connection:
        statistics = Statistics(
            connection.execute,
            dialect=engine.dialect.name,
            scope=statistics_scope(region, None, level),
            rules=load_rules(Province.SHANDONG),
            today=TODAY,
        )
        return await statistics.sharing(date(2020, 1, 1), date(2099, 12, 31))


def assert_same_tables(actual: TableDump, expected: TableDump, *, shown: int = 5) -> None:
    """Table by table, row for row; a difference names the table and shows a few of the rows
    only one side has (both sides are whole multisets: not a count, not a sample)."""
    assert actual.keys() == expected.keys()
    problems: list[str] = []
    for table in expected:
        missing = expected[table] - actual[table]
        extra = actual[table] - expected[table]
        if missing or extra:
            problems.append(
                f"{table}: {sum(missing.values())} rows missing, {sum(extra.values())} extra\n"
                f"  missing e.g. {list(missing)[:shown]}\n  extra e.g. {list(extra)[:shown]}"
            )
    assert not problems, "\n".join(problems)


def report_rows(result: IngestResult) -> list[tuple[str, ...]]:
    """The data rows of a load's rejection report, after checking its header."""
    assert result.report_path is not None
    rows = read_report(result.report_path)
    assert rows[0] == REPORT_HEADER
    return rows[1:]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", name="ingest_database")
async def ingest_database_fixture(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[IngestDatabase]:
    """A migrated database of this module's own, on ``backend`` (conftest's sqlite/postgres)."""
    module = request.module.__name__.rpartition(".")[2]
    tmp = tmp_path_factory.mktemp(f"{module}-{backend}")
    cluster: ThrowawayCluster | None = None
    name = f"ingest_{module}".lower()
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'relief.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database(name)
    engine = make_engine(url, pool_size=3)
    try:
        await upgrade_to_head(engine)
        yield IngestDatabase(backend, url, engine, tmp)
    finally:
        await engine.dispose()
        if cluster is not None:
            cluster.drop_database(name)


@pytest.fixture(name="db")
async def db_fixture(ingest_database: IngestDatabase, tmp_path: Path) -> IngestDB:
    """An empty database (this module's, emptied) and a vault with a fresh keyring."""
    return await ingest_database.fresh(tmp_path)


__all__ = [
    "COUNTY",
    "ENROLLMENT_HEADERS",
    "IDENTITY_HEADERS",
    "NEIGHBOUR_COUNTY",
    "OTHER_CITY_COUNTY",
    "OTHER_PROVINCE_COUNTY",
    "SETTLEMENT_HEADERS",
    "TODAY",
    "VITAL_EVENT_HEADERS",
    "IngestDB",
    "IngestDatabase",
    "Someone",
    "TableDump",
    "assert_same_tables",
    "db_fixture",
    "dump_tables",
    "enrollment_row",
    "first_data_line",
    "identity_row",
    "ingest_database_fixture",
    "nonzero",
    "read_report",
    "report_rows",
    "settlement_row",
    "sharing_statistics",
    "someone",
    "someone_with_x_check_digit",
    "vital_event_row",
    "write_rows",
]
