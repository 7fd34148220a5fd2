"""Builders for the place-access tests (``tests/test_places_access.py``, issue 14): a gateway of
the test module's own per backend, people tied to several counties, and the ``World`` of
``tests.expectations`` that states what each caller must see of them.

People are written through the paths real data takes where those paths exist today:

* the seed writer (``gateway.storage.writer.write_bundles``), which stores people, households,
  relief statuses (recognised where the person lives at the time), enrollments and cost
  burdens, and derives their places (``refresh_places``);
* a department's identities file loaded with ``adapters.pipeline.Ingestor`` (and the loop's
  ``verification_opener``, as the CLI loads it): a row naming a new region moves the person,
  so a person recognised in one county comes to live in another (``move``);
* the monthly warning run (``gateway.loop.warnings.run_warnings``): a high cost burden is
  pushed to civil affairs and rural revitalisation of the person's county.

Ingest does not derive places yet (another change in flight): a moved person's places are the
ones the seed writer derived, which a move does not change (a re-derivation gives the same).
The random property (``tests/test_places_properties.py``) writes the two facts it draws that
no public path can state in one step, a relief status recognised in a county other than the
residence (``relief_status.county_code``, the column ingest is to fill from the row's county)
and a task pushed to a given county, directly (``write``), then re-derives the places with
``refresh_places``, as every writer of those facts does.

Nothing here is a real person: names 测试…, ID numbers from ``make_id_number``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from adapters.pipeline import Ingestor
from gateway.domain import clock
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import (
    CostBurdenRecord,
    EnrollmentRecord,
    HouseholdBundle,
    HouseholdRecord,
    PersonRecord,
    ReliefStatusRecord,
)
from gateway.loop.tasks import verification_opener
from gateway.storage.models import ReliefStatus, Task
from gateway.storage.places import refresh_places
from gateway.storage.writer import write_bundles
from tests.conftest import BACKENDS
from tests.expectations import Push, World
from tests.harness import Harness, build_harness
from tests.ingest_support import write_rows
from tests.pgcluster import ThrowawayCluster

TODAY = clock.today()  # conftest pins RELIEF_TODAY=2026-11-23

# Hefei's districts, a county of another Anhui city, a county of another province.
YAOHAI = "340102"  # 合肥市瑶海区
LUYANG = "340103"  # 合肥市庐阳区
SHUSHAN = "340104"  # 合肥市蜀山区
BAOHE = "340111"  # 合肥市包河区
HEFEI = "3401"
JIN_AN = "341502"  # 六安市金安区 (another city of the province)
LUAN = "3415"
ANHUI = "34"
LIXIA = "370102"  # 济南市历下区 (another province)
SHANDONG = "37"

MIB = "medical_insurance"
CIVIL = "civil_affairs"
RURAL = "rural_revitalization"
HEALTH = "health"

_STEMS = "甲乙丙丁戊己庚辛壬癸"


@dataclass
class Population:
    """Everything written to one gateway, as plaintext: what the ``World`` is built from."""

    today: date
    bundles: list[HouseholdBundle] = field(default_factory=list)
    # The county of the list row that reported a status, where it is not the residence.
    recognised_in: dict[ReliefStatusRecord, str] = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)
    _people: int = 0

    def world(self) -> World:
        return World(self.bundles, self.today, recognised_in=self.recognised_in, pushes=self.pushes)

    def record(self, pid: uuid.UUID) -> PersonRecord:
        return next(m for b in self.bundles for m in b.members if m.person_id == pid)

    # ---------------------------------------------------------------- plaintext builders
    def person(self, region: str, household: uuid.UUID, *, name: str | None = None) -> PersonRecord:
        """A new synthetic person living in ``region`` (12 digits), with phone and address."""
        n = self._people
        self._people += 1
        born = date(1950 + n % 50, 1 + n % 12, 1 + n % 28)
        id_number = make_id_number(region[:6], born, n % 1000)
        return PersonRecord(
            person_id=uuid.uuid4(),
            id_number=id_number,
            name=name or f"测试{_STEMS[n % 10]}{n}",
            gender="MALE" if int(id_number[16]) % 2 else "FEMALE",
            birth_date=born,
            region_code=region,
            phone=f"139{n:08d}",
            address=f"测试省测试市测试路{n}号",
            household_id=household,
        )

    def costs_of(self, record: PersonRecord) -> list[CostBurdenRecord]:
        return [c for b in self.bundles for c in b.cost_burdens if c.person_id == record.person_id]

    def statuses_of(self, record: PersonRecord) -> list[ReliefStatusRecord]:
        return [
            s for b in self.bundles for s in b.relief_statuses if s.person_id == record.person_id
        ]

    def moved(self, record: PersonRecord, region: str) -> None:
        """Note that ``record`` now lives in ``region`` (its statuses stay where recognised)."""
        for index, bundle in enumerate(self.bundles):
            if record in bundle.members:
                for status in bundle.relief_statuses:
                    if status.person_id == record.person_id:
                        self.recognised_in.setdefault(status, record.region_code[:6])
                members = [
                    dataclasses.replace(m, region_code=region) if m == record else m
                    for m in bundle.members
                ]
                self.bundles[index] = dataclasses.replace(bundle, members=members)
                return
        raise AssertionError(f"{record.name} was never written")  # pragma: no cover


def status(
    person: PersonRecord,
    category: str,
    department: str,
    valid_from: date = date(2025, 3, 1),
    valid_to: date | None = None,
) -> ReliefStatusRecord:
    return ReliefStatusRecord(person.person_id, category, department, valid_from, valid_from,
                              valid_to)  # fmt: skip


def enrolled(
    person: PersonRecord,
    year: int,
    region: str,
    status: str = "ACTIVE",
    insurance_type: str = "RESIDENT",
) -> EnrollmentRecord:
    county = region if len(region) == 12 else region + "001001"
    subsidy = (Decimal("400.00"), "MINIMUM_LIVING") if insurance_type == "RESIDENT" else (None,) * 2
    return EnrollmentRecord(
        person.person_id, year, insurance_type, status, county, subsidy[1], subsidy[0]
    )


def burden(
    person: PersonRecord, year: int = 2026, personal: str = "3000.00", stays: int = 1
) -> CostBurdenRecord:
    own = Decimal(personal)
    return CostBurdenRecord(person.person_id, year, own * 4, own * 2, own / 2, own / 2, own, stays)


# ---------------------------------------------------------------- writing
async def write(
    harness: Harness,
    population: Population,
    bundles: Sequence[HouseholdBundle],
    *,
    recognised_in: Mapping[ReliefStatusRecord, str] | None = None,
    pushes: Iterable[Push] = (),
) -> None:
    """Store ``bundles`` with the seed writer; then the facts no public path states today (a
    status recognised in another county, a task pushed to a county) and their places."""
    async with harness.runtime.sessions() as session:
        await write_bundles(session, harness.runtime.vault, list(bundles))
    population.bundles.extend(bundles)
    recognised = dict(recognised_in or {})
    pushed = list(pushes)
    if not recognised and not pushed:
        return
    async with harness.runtime.engine.begin() as connection:
        for record, county in recognised.items():
            await connection.execute(
                update(ReliefStatus)
                .where(
                    ReliefStatus.person_id == record.person_id,
                    ReliefStatus.category == record.category,
                    ReliefStatus.source_department == record.source_department,
                    ReliefStatus.valid_from == record.valid_from,
                )
                .values(county_code=county)
            )
        for number, push in enumerate(pushed):
            await connection.execute(
                insert(Task).values(
                    id=uuid.uuid4(),
                    kind="WARNING_REVIEW",
                    department=push.department,
                    county_code=push.county,
                    person_id=push.person_id,
                    source_key=f"test:places:{uuid.uuid4().hex}:{number}",
                    opened_on=push.opened_on,
                    due_on=push.opened_on,
                    status="OPEN",
                )
            )
        people = {r.person_id for r in recognised} | {p.person_id for p in pushed}
        await refresh_places(connection, sorted(people))
    population.recognised_in.update(recognised)
    population.pushes.extend(pushed)


async def move(
    harness: Harness,
    population: Population,
    department: str,
    moves: Sequence[tuple[PersonRecord, str, str]],
    tmp: Path,
) -> None:
    """A department's identities file listing each person's identity again, as held, with a
    new region (``(record, category label, region)``): the person now lives there, the
    identity stays where it was recognised. Loaded as ``relief-gateway ingest`` loads it."""
    rows = []
    for record, label, region in moves:
        [held] = [s for s in population.statuses_of(record) if s.source_department == department]
        rows.append(
            {
                "姓名": record.name,
                "身份证号码": record.id_number,
                "行政区划代码": region,
                "人员类别": label,
                "认定日期": held.recognized_on.isoformat(),
                "退出日期": held.valid_to.isoformat() if held.valid_to else "",
            }
        )
    path = write_rows(tmp / f"{department}-moves-{uuid.uuid4().hex[:8]}.csv", rows)
    runtime = harness.runtime
    ingestor = Ingestor(
        runtime.engine,
        runtime.vault,
        runtime.feeds[(department, "identities")],
        submitted_by=f"test:{department}",
        today=TODAY,
        on_completed=verification_opener(runtime.rules, TODAY),
    )
    result = await ingestor.ingest_file(path)
    counts = result.counts.as_dict()
    assert counts["rows_rejected"] == 0, result.rejections
    assert counts["updated"] == len(moves), counts
    for record, _, region in moves:
        population.moved(record, region)


async def read_pushes(harness: Harness) -> list[Push]:
    """Every task in the database, as the pushes they are (the warning run's among them)."""
    async with harness.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(Task.person_id, Task.department, Task.county_code, Task.opened_on)
        )
        return [Push(uuid.UUID(str(r[0])), r[1], r[2], r[3]) for r in rows]


# ---------------------------------------------------------------- the module's gateway
@pytest.fixture(scope="module", params=BACKENDS)
async def places_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway of this test module alone, on a new database of each backend, seeded with
    ``request.module.SEED_PERSONS`` synthetic people (noise the model must account for)."""
    backend = str(request.param)
    data_dir: Path = tmp_path_factory.mktemp(f"places-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_places_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    persons = int(getattr(request.module, "SEED_PERSONS", 0))
    gateway = await build_harness(data_dir, url, backend=backend, persons=persons)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


def ids_of(body: Any) -> set[str]:
    """Every ``id`` value anywhere in a response's data."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "id" and isinstance(item, str):
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body.get("data"))
    return found


__all__ = [
    "ANHUI",
    "BAOHE",
    "CIVIL",
    "HEALTH",
    "HEFEI",
    "JIN_AN",
    "LIXIA",
    "LUAN",
    "LUYANG",
    "MIB",
    "RURAL",
    "SHANDONG",
    "SHUSHAN",
    "TODAY",
    "YAOHAI",
    "HouseholdBundle",
    "HouseholdRecord",
    "Population",
    "burden",
    "enrolled",
    "ids_of",
    "move",
    "places_gateway",
    "read_pushes",
    "status",
    "write",
]
