"""Cross-source checks (DOMAIN.md rule 4, 回传): data that disagree open an anomaly for the
department that must verify it, due in 10 Chinese working days (rule 3, 003 §2), and a later row
that corrects the data closes it. Anomalies never carry a name or an ID number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from adapters.apply import ANOMALY_DUE_WORKING_DAYS, AnomalyKind
from gateway.domain.workdays import add_working_days
from gateway.storage.models import Anomaly
from tests.ingest_support import (
    COUNTY,
    NEIGHBOUR_COUNTY,
    TODAY,
    IngestDB,
    Someone,
    db_fixture,  # noqa: F401 - fixture
    enrollment_row,
    identity_row,
    ingest_database_fixture,  # noqa: F401 - fixture
    settlement_row,
    someone,
    vital_event_row,
)

CIVIL = ("civil_affairs", "identities")
RURAL = ("rural_revitalization", "identities")
ENROLLMENTS = ("medical_insurance", "enrollments")
SETTLEMENTS = ("medical_insurance", "settlements")
VITAL_EVENTS = ("health", "vital_events")
HOUSEHOLDS = ("public_security", "household_registration")
A = someone(1, NEIGHBOUR_COUNTY)
DUE = add_working_days(TODAY, ANOMALY_DUE_WORKING_DAYS)


def _household_registration(person: Someone, born: str = "", name: str = "") -> dict[str, str]:
    return {
        "姓名": name or person.name,
        "公民身份号码": person.id_number,
        "户籍地行政区划代码": person.county,
        "出生日期": born,
    }


def _summary(anomalies: Sequence[Any]) -> list[tuple[str, str, str, str | None]]:
    """(kind, department that must verify, status, department whose data disagreed)."""
    return [(a.kind, a.department, a.status, a.related_department) for a in anomalies]


# --------------------------------------------------------------------------- names


def _renamed(person: Someone) -> Someone:
    return Someone("测试别名", person.id_number, person.county)


@dataclass(frozen=True)
class Sender:
    department: str
    load: Callable[[IngestDB, Someone], Awaitable[object]]


SENDERS = [
    Sender("medical_insurance", lambda db, p: db.load(*ENROLLMENTS, [enrollment_row(p)])),
    Sender("medical_insurance", lambda db, p: db.load(*SETTLEMENTS, [settlement_row(p, "JS1")])),
    Sender(
        "health", lambda db, p: db.load(*VITAL_EVENTS, [vital_event_row(p, "出生", "1950-03-03")])
    ),
    Sender(
        "rural_revitalization",
        lambda db, p: db.load(*RURAL, [identity_row(p, "脱贫人口", "2021-01-01")]),
    ),
    Sender("public_security", lambda db, p: db.load(*HOUSEHOLDS, [_household_registration(p)])),
]


@pytest.mark.parametrize(
    "sender", SENDERS, ids=["enrollments", "settlements", "vital-events", "rural", "households"]
)
async def test_another_name_for_the_same_id_number_is_sent_back_to_the_sender(
    db: IngestDB, sender: Sender
) -> None:
    await db.load(*CIVIL, [identity_row(A)])

    result = await sender.load(db, _renamed(A))

    assert result.counts.anomalies_opened == 1  # type: ignore[attr-defined]
    assert result.counts.rows_accepted == 1  # type: ignore[attr-defined]
    [anomaly] = await db.anomalies(A)
    assert (anomaly.kind, anomaly.department, anomaly.county_code) == (
        AnomalyKind.NAME_MISMATCH,
        sender.department,
        NEIGHBOUR_COUNTY,  # the person's county, whoever sent the row
    )
    assert (anomaly.opened_on, anomaly.due_on, anomaly.status) == (TODAY, DUE, "OPEN")
    assert anomaly.batch_id == result.batch_id  # type: ignore[attr-defined]
    person = await db.person(A)
    assert person is not None
    assert db.open(person, "name") == A.name  # the record is not overwritten by the other name


async def test_name_mismatch_is_opened_once_however_often_the_file_comes(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A)])
    rows = [enrollment_row(_renamed(A))]
    first = await db.load(*ENROLLMENTS, rows)

    again = await db.load(*ENROLLMENTS, rows, encoding="gbk")  # not the same bytes
    pushed = await db.push(*ENROLLMENTS, rows)

    assert first.counts.anomalies_opened == 1
    assert (again.counts.anomalies_opened, again.counts.rows_unchanged) == (0, 1)
    assert pushed.counts.anomalies_opened == 0
    assert await db.count(Anomaly) == 1
    assert date(2026, 12, 7) == DUE  # 10 working days after Monday 2026-11-23


async def test_same_name_opens_nothing(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A)])
    for sender in SENDERS:
        result = await sender.load(db, A)
        assert result.counts.anomalies_opened == 0  # type: ignore[attr-defined]
    assert await db.count(Anomaly) == 0


async def test_rejected_row_opens_no_anomaly(db: IngestDB) -> None:
    """A settlement refused (its number belongs to someone else) says nothing about the name."""
    other = someone(2)
    await db.load(*CIVIL, [identity_row(A), identity_row(other)])
    await db.load(*SETTLEMENTS, [settlement_row(other, "JS9")])
    result = await db.load(*SETTLEMENTS, [settlement_row(_renamed(A), "JS9")])
    assert (result.counts.rows_rejected, result.counts.anomalies_opened) == (1, 0)
    assert await db.count(Anomaly) == 0


# --------------------------------------------------------------------------- birth dates


@pytest.mark.parametrize(
    ("stated", "opened"),
    [("1950-03-03", 0), ("1950年3月3日", 0), ("", 0), ("1950-03-04", 1), ("1905-03-03", 1)],
)
async def test_stated_birth_date_must_match_the_id_number(
    db: IngestDB, stated: str, opened: int
) -> None:
    assert A.id_number[6:14] == "19500303"
    result = await db.load(*HOUSEHOLDS, [_household_registration(A, born=stated)])
    assert result.counts.anomalies_opened == opened
    anomalies = await db.anomalies(A)
    assert (
        _summary(anomalies)
        == [(AnomalyKind.BIRTH_DATE_MISMATCH, "public_security", "OPEN", None)] * opened
    )
    person = await db.person(A)
    assert person is not None
    assert person.birth_date == date(1950, 3, 3)  # the ID number is what is stored


# --------------------------------------------------------------------------- deaths


async def test_death_of_an_identity_holder_is_sent_to_the_department_holding_it(
    db: IngestDB,
) -> None:
    await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01")])
    await db.load(*RURAL, [identity_row(A, "脱贫人口", "2021-01-01")])

    result = await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])

    assert result.counts.anomalies_opened == 2
    anomalies = await db.anomalies(A)
    assert _summary(anomalies) == [
        (AnomalyKind.DECEASED_WITH_ACTIVE_STATUS, "civil_affairs", "OPEN", "health"),
        (AnomalyKind.DECEASED_WITH_ACTIVE_STATUS, "rural_revitalization", "OPEN", "health"),
    ]
    assert all("2026-10-01" in a.detail for a in anomalies)
    assert all((a.county_code, a.due_on) == (NEIGHBOUR_COUNTY, DUE) for a in anomalies)


@pytest.mark.parametrize(
    ("exit_on", "status"),
    [("2026-10-01", "RESOLVED"), ("2026-09-15", "RESOLVED"), ("2026-10-31", "OPEN")],
    ids=["exit-on-the-day-of-death", "exit-before-death", "exit-after-death-still-held"],
)
async def test_exiting_the_identity_of_a_deceased_person_closes_the_anomaly(
    db: IngestDB, exit_on: str, status: str
) -> None:
    await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01")])
    await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])

    exited = await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01", exit_on)])

    assert exited.counts.exited == 1
    [anomaly] = await db.anomalies(A)
    assert (anomaly.kind, anomaly.status) == (AnomalyKind.DECEASED_WITH_ACTIVE_STATUS, status)
    if status == "RESOLVED":
        assert (anomaly.resolution, anomaly.resolved_on, anomaly.resolved_by) == (
            "CORRECTED_BY_DATA",
            TODAY,
            f"batch:{exited.batch_id}",
        )
    else:
        assert anomaly.resolution is None


async def test_death_reported_before_the_roster_lists_the_person(db: IngestDB) -> None:
    await db.load(*HOUSEHOLDS, [_household_registration(A)])
    await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])

    result = await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01")])

    assert result.counts.anomalies_opened == 1
    assert _summary(await db.anomalies(A)) == [
        (AnomalyKind.DECEASED_WITH_ACTIVE_STATUS, "civil_affairs", "OPEN", "health")
    ]


async def test_death_after_the_identity_ended_opens_nothing(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01", "2026-06-30")])
    result = await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])
    assert result.counts.anomalies_opened == 0
    assert await db.anomalies(A) == []


@pytest.mark.parametrize(
    ("year", "opened"), [(2026, 0), (2027, 1)], ids=["year-of-death", "later-year"]
)
@pytest.mark.parametrize("order", ["death-first", "enrollment-first"])
async def test_active_enrollment_after_the_year_of_death_is_sent_to_medical_insurance(
    db: IngestDB, year: int, opened: int, order: str
) -> None:
    files = [
        (VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")]),
        (ENROLLMENTS, [enrollment_row(A, year)]),
    ]
    await db.load(*HOUSEHOLDS, [_household_registration(A)])
    if order == "enrollment-first":
        files.reverse()
    for feed, rows in files:
        await db.load(*feed, rows)

    assert (
        _summary(await db.anomalies(A))
        == [(AnomalyKind.DECEASED_STILL_ENROLLED, "medical_insurance", "OPEN", "health")] * opened
    )


async def test_terminating_the_enrollment_of_a_deceased_person_closes_the_anomaly(
    db: IngestDB,
) -> None:
    await db.load(*HOUSEHOLDS, [_household_registration(A)])
    await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])
    await db.load(*ENROLLMENTS, [enrollment_row(A, 2027)])

    terminated = await db.load(*ENROLLMENTS, [enrollment_row(A, 2027, "终止参保")])

    assert terminated.counts.exited == 1
    [anomaly] = await db.anomalies(A)
    assert (anomaly.kind, anomaly.status, anomaly.resolution) == (
        AnomalyKind.DECEASED_STILL_ENROLLED,
        "RESOLVED",
        "CORRECTED_BY_DATA",
    )


# --------------------------------------------------------------------------- exited identities


@pytest.mark.parametrize(
    ("civil_row", "year", "opened"),
    [
        (identity_row(A, "低保对象", "2024-01-01", "2025-06-30"), 2026, 1),
        (identity_row(A, "低保对象", "2024-01-01", "2025-06-30"), 2025, 0),  # 001 §2: year lock
        (identity_row(A, "低保对象", "2024-01-01", "2025-12-31"), 2026, 1),  # ended with the year
        (identity_row(A, "低保对象", "2024-01-01", "2026-01-01"), 2026, 0),  # exited in the year
        (identity_row(A, "低保对象", "2024-01-01"), 2026, 0),
        (identity_row(A, "低保边缘家庭成员", "2024-01-01", "2025-06-30"), 2026, 0),
    ],
    ids=[
        "subsidised-after-exit",
        "year-of-exit",
        "exit-on-new-years-eve",
        "exit-on-new-years-day",
        "held",
        "other-category",
    ],
)
async def test_subsidy_by_an_identity_exited_before_the_year_is_sent_to_medical_insurance(
    db: IngestDB, civil_row: dict[str, str], year: int, opened: int
) -> None:
    await db.load(*CIVIL, [civil_row])

    result = await db.load(
        *ENROLLMENTS, [enrollment_row(A, year, subsidy_category="低保对象", subsidy_amount="280")]
    )

    assert result.counts.anomalies_opened == opened
    assert (
        _summary(await db.anomalies(A))
        == [
            (
                AnomalyKind.EXITED_IDENTITY_ACTIVE_ELSEWHERE,
                "medical_insurance",
                "OPEN",
                "civil_affairs",
            )
        ]
        * opened
    )


# --------------------------------------------------------------------------- privacy


async def test_anomaly_details_never_carry_the_name_or_id_number(db: IngestDB) -> None:
    """Anomalies travel to clerks of other departments: the record is referenced by id, and the
    detail says what disagrees, never whose data it is."""
    other = someone(2)
    await db.load(*CIVIL, [identity_row(A, "低保对象", "2024-01-01", "2025-06-30")])
    await db.load(*CIVIL, [identity_row(other, "低保对象", "2025-03-01")])
    await db.load(*HOUSEHOLDS, [_household_registration(A, born="1950-01-01", name="测试别名")])
    await db.load(*ENROLLMENTS, [enrollment_row(A, 2027, subsidy_category="低保对象")])
    await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])
    await db.load(*VITAL_EVENTS, [vital_event_row(other, "死亡", "2026-10-01")])
    # another county's civil affairs reports the person (a move, or a double recognition)
    await db.load(
        *CIVIL,
        [identity_row(A, "特困人员", "2025-05-01", region=COUNTY)],
        scope=COUNTY,
    )

    anomalies = await db.anomalies()
    assert {a.kind for a in anomalies} == set(AnomalyKind)  # one of every kind
    for anomaly in anomalies:
        for secret in (A.name, other.name, "测试别名", A.id_number, other.id_number):
            assert secret not in anomaly.detail
        assert A.id_number[6:14] not in anomaly.detail  # not even the birth-date digits
        assert any("\u4e00" <= char <= "\u9fff" for char in anomaly.detail)  # a clerk's sentence
    assert {a.county_code for a in anomalies} == {NEIGHBOUR_COUNTY, COUNTY}
