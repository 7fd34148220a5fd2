"""Helpers for the tests of the exchange's GraphQL side (``tests/test_exchange_*.py``).

Each test module gets its own gateway per backend (``exchange_gateway``): a new SQLite file or a
new PostgreSQL database, migrated, seeded with a small synthetic population and the default
policies, exactly as ``tests.harness.build_harness`` builds the shared one. Pushes, anomalies
and policy edits made here therefore never reach what other test modules see.

Test modules import the fixture they use::

    from tests.exchange_support import exchange_gateway  # noqa: F401

People are synthetic: invented names (测试甲 …), ID numbers from
:func:`gateway.domain.id_numbers.make_id_number` with real county codes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select

from gateway.domain import clock
from gateway.domain.clock import now_utc
from gateway.domain.id_numbers import make_id_number
from gateway.storage.models import (
    Anomaly,
    AuditEntry,
    CasbinRule,
    IngestBatch,
    Person,
    PersonSource,
    PolicyVersion,
    ReliefStatus,
)
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

BACKENDS = ("sqlite", "postgres")
TODAY = clock.today()  # conftest pins RELIEF_TODAY=2026-11-23
SEED_PERSONS = 30

# Real county codes (gateway/data/regions.json).
COUNTY = "370102"  # 济南市历下区
NEIGHBOUR = "370103"  # 济南市市中区: same city
CITY = COUNTY[:4]  # 济南市

# ---------------------------------------------------------------------------- documents
SUBMIT = """
mutation Push($feed: String!, $records: [JSON!]!, $dryRun: Boolean! = false) {
  submitRecords(feed: $feed, records: $records, dryRun: $dryRun) {
    dryRun
    batch {
      id department feed channel fileName region submittedBy receivedAt finishedAt status
      counts { rowsTotal rowsAccepted rowsRejected rowsUnchanged added exited
               identityChanged updated unmatched anomaliesOpened }
    }
    counts { rowsTotal rowsAccepted rowsRejected rowsUnchanged added exited
             identityChanged updated unmatched anomaliesOpened }
    rejections { line column value reason }
  }
}
"""

BATCHES = """
query Batches($filter: BatchFilter, $first: Int = 50, $after: String) {
  batches(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id department feed channel region status receivedAt
                          counts { rowsTotal added } } }
  }
}
"""

ANOMALIES = """
query Anomalies($filter: AnomalyFilter, $first: Int = 50, $after: String) {
  anomalies(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id kind description department relatedDepartment openedOn dueOn overdue status
      resolution resolvedOn resolvedBy note batchId
    } }
  }
}
"""

RESOLVE = """
mutation Resolve($id: ID!, $resolution: AnomalyResolution!, $note: String) {
  resolveAnomaly(id: $id, resolution: $resolution, note: $note) {
    id kind status resolution resolvedOn resolvedBy note overdue
    person { underVerification }
  }
}
"""

PERSON = """
query Person($id: String!) {
  person(idNumber: $id) {
    id name regionCode underVerification
    reliefStatuses { category sourceDepartment validFrom validTo
                     provenance { department channel batchId fileName line receivedAt } }
  }
}
"""


# ---------------------------------------------------------------------------- people
_STEMS = "甲乙丙丁戊己庚辛壬癸"
_BRANCHES = "子丑寅卯辰巳午未申酉戌亥"


@dataclass(frozen=True, slots=True)
class Someone:
    """A synthetic person as a department knows them: a name and an ID number."""

    name: str
    id_number: str
    region: str  # the region code a department states (6 or 12 digits)

    @property
    def county(self) -> str:
        return self.region[:6]


def someone(n: int, county: str = COUNTY, *, name: str | None = None) -> Someone:
    """The ``n``-th synthetic person of a county (0 ≤ n < 1000): 测试甲, 测试乙 …"""
    assert 0 <= n < 1000
    invented = "测试" + _STEMS[n % 10] + ("" if n < 10 else _BRANCHES[(n // 10) % 12])
    birth = date(1950, 1, 1) + timedelta(days=53 * n)
    return Someone(name or invented, make_id_number(county, birth, n), county)


def identity(
    person: Someone,
    category: str = "低保对象",
    recognized_on: str = "2026-03-01",
    *,
    exited_on: str | None = None,
    name: str | None = None,
    region: str | None = None,
    english: bool = False,
) -> dict[str, str]:
    """One row of an ``identities`` feed as a department system pushes it."""
    values = {
        "name": name or person.name,
        "id_number": person.id_number,
        "region_code": region or person.region,
        "category": category,
        "recognized_on": recognized_on,
    }
    if exited_on is not None:
        values["exited_on"] = exited_on
    if english:
        return values
    chinese = {
        "name": "姓名",
        "id_number": "身份证号码",
        "region_code": "行政区划代码",
        "category": "人员类别",
        "recognized_on": "认定日期",
        "exited_on": "退出日期",
    }
    return {chinese[key]: value for key, value in values.items()}


def enrollment(person: Someone, *, year: int = 2026, name: str | None = None) -> dict[str, str]:
    """One row of medical insurance's ``enrollments`` feed."""
    return {
        "姓名": name or person.name,
        "身份证号码": person.id_number,
        "参保年度": str(year),
        "险种类型": "城乡居民",
        "参保状态": "正常参保",
        "参保地行政区划代码": person.county,
    }


# ---------------------------------------------------------------------------- requests
def county_token(gateway: Harness, dept: str, county: str, subject: str | None = None) -> str:
    return gateway.token(dept, "county", county, subject=subject)


async def submit(
    gateway: Harness,
    caller: str,
    records: list[Any],
    *,
    feed: str = "identities",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Push records; the body of the answer (HTTP 200 expected)."""
    variables = {"feed": feed, "records": records, "dryRun": dry_run}
    return await gateway.query(caller, SUBMIT, variables)


async def pushed(
    gateway: Harness, caller: str, records: list[Any], *, feed: str = "identities"
) -> dict[str, Any]:
    """Push records that must be accepted without a GraphQL error; the ``submitRecords``."""
    body = await submit(gateway, caller, records, feed=feed)
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["submitRecords"]
    return result


def errors(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str]]:
    """(path, code, message) of every error in a body."""
    return [
        (tuple(e.get("path") or ()), e["extensions"]["code"], e["message"])
        for e in body.get("errors") or []
    ]


def codes(body: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    return {path: code for path, code, _ in errors(body)}


def only_error(body: dict[str, Any]) -> tuple[tuple[Any, ...], str, str]:
    found = errors(body)
    assert len(found) == 1, body
    return found[0]


def nodes(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in connection["edges"]]


# ---------------------------------------------------------------------------- the database
async def row_counts(gateway: Harness) -> dict[str, int]:
    """Rows of the tables a push writes to: a push that stores nothing leaves these as they are."""
    counted = {}
    async with gateway.runtime.engine.connect() as connection:
        for model in (IngestBatch, Person, PersonSource, ReliefStatus, Anomaly):
            table = model.__table__
            counted[table.name] = int(
                (await connection.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return counted


async def person_id(gateway: Harness, id_number: str) -> uuid.UUID:
    index = gateway.runtime.vault.id_number_index(id_number)
    async with gateway.runtime.engine.connect() as connection:
        found = (
            await connection.execute(select(Person.id).where(Person.id_number_bidx == index))
        ).scalar_one()
    return uuid.UUID(str(found))


async def insert_anomaly(
    gateway: Harness,
    person: uuid.UUID,
    *,
    department: str,
    county: str,
    kind: str = "NAME_MISMATCH",
    due_on: date,
    opened_on: date | None = None,
    status: str = "OPEN",
    detail: str = "报送的姓名与已登记的姓名不一致，请核实身份证号码与姓名是否对应",
) -> uuid.UUID:
    """An anomaly as ``adapters.apply`` writes it, with dates a test chooses (a fake clock)."""
    anomaly_id = uuid.uuid4()
    resolved = status == "RESOLVED"
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(Anomaly).values(
                id=anomaly_id,
                person_id=person,
                department=department,
                county_code=county,
                kind=kind,
                detail=detail,
                related_department=None,
                batch_id=None,
                opened_on=opened_on or due_on - timedelta(days=14),
                due_on=due_on,
                status=status,
                resolution="CONFIRMED_CORRECT" if resolved else None,
                resolved_on=due_on if resolved else None,
                resolved_by="test-clerk" if resolved else None,
                note=None,
            )
        )
    return anomaly_id


async def audit_entries(gateway: Harness, after_id: int = 0) -> list[AuditEntry]:
    async with gateway.runtime.sessions() as session:
        found = await session.execute(
            select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id)
        )
        return list(found.scalars())


async def last_audit_id(gateway: Harness) -> int:
    async with gateway.runtime.engine.connect() as connection:
        return int((await connection.execute(select(func.max(AuditEntry.id)))).scalar() or 0)


@asynccontextmanager
async def extra_policy(
    gateway: Harness, lines: Iterable[tuple[str, str, str]]
) -> AsyncIterator[None]:
    """Grant ``(subject, object, action)`` lines (purpose ``*``) as a new policy version for the
    duration of the block, then take them back as another version."""
    granted = list(lines)

    async def install(note: str) -> None:
        async with gateway.runtime.sessions() as session:
            session.add(PolicyVersion(created_at=now_utc(), created_by="test", note=note))
            await session.commit()
            await gateway.runtime.authorizer.load(session)

    async with gateway.runtime.sessions() as session:
        await session.execute(
            insert(CasbinRule),
            [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": "*"} for s, o, a in granted],
        )
        await session.commit()
    await install("test: extra lines")
    try:
        yield
    finally:
        async with gateway.runtime.sessions() as session:
            for s, o, a in granted:
                await session.execute(
                    delete(CasbinRule).where(
                        CasbinRule.v0 == s, CasbinRule.v1 == o, CasbinRule.v2 == a
                    )
                )
            await session.commit()
        await install("test: extra lines withdrawn")


def leaks(body: dict[str, Any], *secrets: str) -> list[str]:
    """The secrets that appear anywhere in a response body (data or errors)."""
    text = json.dumps(body, ensure_ascii=False)
    return [secret for secret in secrets if secret in text]


# ---------------------------------------------------------------------------- the fixture
@pytest.fixture(scope="module", params=BACKENDS)
async def exchange_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway of this test module alone, on a new database of each backend."""
    backend = str(request.param)
    data_dir: Path = tmp_path_factory.mktemp(f"exchange-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_exchange_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    gateway = await build_harness(data_dir, url, backend=backend, persons=SEED_PERSONS)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)
