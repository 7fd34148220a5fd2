"""Builders for the place tests (``tests/test_places.py``, ``tests/test_migration_0007.py``).

Synthetic people in Anhui (Hefei's districts and one Wuhu district) and one Shandong county,
written with SQLAlchemy into a migrated database: a person row sealed by the vault (ID numbers
from :func:`gateway.domain.id_numbers.make_id_number`, names 测试…), relief statuses, enrollments
and tasks, exactly the facts ``gateway.storage.places`` derives places from. Nothing here is a
real person.

``held`` is the compiler's reading of a place on a day (``authz.compiler.in_jurisdiction``):
``since <= today`` and (``until`` is null or ``until >= today``), ``until`` being the last day.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, NamedTuple

from sqlalchemy import String, cast, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain import clock
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import PersonRecord
from gateway.storage.models import Enrollment, Person, PersonPlace, ReliefStatus, Task
from gateway.storage.places import refresh_places
from gateway.storage.vault import PersonVault

# conftest pins the one clock (RELIEF_TODAY=2026-11-23): every date is relative to it.
TODAY = clock.today()
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)

YAOHAI = "340102"  # 合肥市瑶海区
LUYANG = "340103"  # 合肥市庐阳区
SHUSHAN = "340104"  # 合肥市蜀山区
HEFEI = "3401"
JINGHU = "340202"  # 芜湖市镜湖区 (same province, other city)
WUHU = "3402"
ANHUI = "34"
LIXIA = "370102"  # 济南市历下区 (other province)

CIVIL = "civil_affairs"
RURAL = "rural_revitalization"
MIB = "medical_insurance"

_STEMS = "甲乙丙丁戊己庚辛壬癸"


class Place(NamedTuple):
    """A stored place as the tests compare it: its key and its period."""

    kind: str
    department: str
    county: str
    since: date
    until: date | None


def held(since: date, until: date | None, today: date = TODAY) -> bool:
    """The compiler's reading: held from ``since`` through ``until`` inclusive."""
    return since <= today and (until is None or until >= today)


@dataclass
class Facts:
    """Facts about synthetic people, buffered and written in one transaction by ``write``."""

    vault: PersonVault
    persons: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    # Without relief_status.county_code (a database before migration 0007).
    before_0007: bool = False
    _people: int = 0

    def person(self, residence: str) -> uuid.UUID:
        """A new synthetic person living in ``residence`` (6 or 12 digits)."""
        n = self._people
        self._people += 1
        born = date(1950, 1, 1) + timedelta(days=97 * n)
        record = PersonRecord(
            person_id=uuid.uuid4(),
            id_number=make_id_number(residence[:6], born, n),
            name="测试" + _STEMS[n % 10] + str(n),
            gender="FEMALE" if n % 2 == 0 else "MALE",
            birth_date=born,
            region_code=residence,
        )
        self.persons.append({**self.vault.person_values(record), "created_at": clock.now_utc()})
        return record.person_id

    def identity(
        self,
        person: uuid.UUID,
        county: str | None,
        *,
        department: str = CIVIL,
        category: str = "MINIMUM_LIVING",
        valid_from: date = date(2025, 3, 1),
        valid_to: date | None = None,
        recognized_on: date | None = None,
    ) -> None:
        """A relief status recognised by ``department`` in ``county`` (None: not recorded)."""
        row: dict[str, Any] = {
            "person_id": person,
            "category": category,
            "source_department": department,
            "recognized_on": recognized_on or valid_from,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }
        if not self.before_0007:
            row["county_code"] = county
        self.statuses.append(row)

    def enrollment(
        self,
        person: uuid.UUID,
        year: int,
        region: str,
        status: str = "ACTIVE",
        *,
        insurance_type: str = "RESIDENT",
    ) -> None:
        self.enrollments.append(
            {
                "person_id": person,
                "year": year,
                "insurance_type": insurance_type,
                "status": status,
                "region_code": region,
            }
        )

    def task(self, person: uuid.UUID, department: str, county: str, opened_on: date) -> None:
        """A push to ``department`` in ``county`` (a warning to review), opened that day."""
        self.tasks.append(
            {
                "id": uuid.uuid4(),
                "kind": "WARNING_REVIEW",
                "department": department,
                "county_code": county,
                "person_id": person,
                "source_key": f"test:{len(self.tasks)}",
                "opened_on": opened_on,
                "due_on": opened_on + timedelta(days=7),
                "status": "OPEN",
            }
        )

    async def write(self, engine: AsyncEngine) -> None:
        """Insert what was buffered (and forget it, so the builder can be used again)."""
        async with engine.begin() as connection:
            await self.write_on(connection)

    async def write_on(self, connection: AsyncConnection) -> None:
        for model, rows in (
            (Person, self.persons),
            (ReliefStatus, self.statuses),
            (Enrollment, self.enrollments),
            (Task, self.tasks),
        ):
            if rows:
                await connection.execute(insert(model), rows)
            rows.clear()


async def refresh(engine: AsyncEngine, people: Any) -> None:
    """``refresh_places`` in a transaction of its own, as a caller that changed facts runs it."""
    async with engine.begin() as connection:
        await refresh_places(connection, people)


async def stored_places(engine: AsyncEngine, person: uuid.UUID | None = None) -> set[Place]:
    statement = select(
        PersonPlace.kind,
        PersonPlace.department,
        PersonPlace.county_code,
        PersonPlace.since,
        PersonPlace.until,
    )
    if person is not None:
        statement = statement.where(PersonPlace.person_id == person)
    async with engine.connect() as connection:
        return {Place(*row) for row in await connection.execute(statement)}


async def place_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every column of every stored place, dates as ISO text (read as text, so a date Python
    cannot hold shows as what it is instead of failing the read), sorted."""
    columns = [
        cast(column, String()) if column.name in ("since", "until") else column
        for column in PersonPlace.__table__.c
    ]
    async with engine.connect() as connection:
        rows = (await connection.execute(select(*columns))).all()
    return sorted((tuple(str(value) for value in row) for row in rows), key=repr)
