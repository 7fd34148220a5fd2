"""Medical insurance and health feeds through the ingest pipeline: enrollments (参保), settlements
(结算) and the cost burden summed from them (医疗费用负担, DOMAIN.md rule 7), births and deaths.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.apply import NOT_IN_SCOPE
from gateway.storage.models import CostBurden, Enrollment, Person, Settlement, VitalEvent
from tests.ingest_support import (
    COUNTY,
    ENROLLMENT_HEADERS,
    NEIGHBOUR_COUNTY,
    OTHER_CITY_COUNTY,
    SETTLEMENT_HEADERS,
    IngestDB,
    Someone,
    db_fixture,  # noqa: F401 - fixture
    enrollment_row,
    identity_row,
    ingest_database_fixture,  # noqa: F401 - fixture
    nonzero,
    report_rows,
    settlement_row,
    someone,
    vital_event_row,
)

CIVIL = ("civil_affairs", "identities")
ENROLLMENTS = ("medical_insurance", "enrollments")
SETTLEMENTS = ("medical_insurance", "settlements")
VITAL_EVENTS = ("health", "vital_events")
A, B = someone(1), someone(2)


def _unchanged(total: int) -> dict[str, int]:
    return {"rows_total": total, "rows_accepted": total, "rows_unchanged": total}


def _one_row(outcome: str) -> dict[str, int]:
    return {"rows_total": 1, "rows_accepted": 1, outcome: 1}


# --------------------------------------------------------------------------- enrollments


async def _enrollment_state(db: IngestDB) -> list[tuple[object, ...]]:
    return [
        (e.year, e.insurance_type, e.status, e.region_code, e.subsidy_category, e.subsidy_amount)
        for e in await db.enrollments(A)
    ]


@dataclass(frozen=True)
class EnrollmentChange:
    rule: str
    before: list[dict[str, str]]
    rows: list[dict[str, str]]
    outcome: str
    stored: list[tuple[object, ...]]


RES, LOW, EDGE = "RESIDENT", "MINIMUM_LIVING", "MINIMUM_LIVING_EDGE"
ENROLLMENT_CHANGES = [
    EnrollmentChange(
        "a new active enrollment is added",
        [],
        [enrollment_row(A, 2026, subsidy_category="低保对象", subsidy_amount="280")],
        "added",
        [(2026, RES, "ACTIVE", COUNTY, LOW, Decimal("280.00"))],
    ),
    EnrollmentChange(
        "a new enrollment already terminated is an exit",
        [],
        [enrollment_row(A, 2026, "终止参保")],
        "exited",
        [(2026, RES, "TERMINATED", COUNTY, None, None)],
    ),
    EnrollmentChange(
        "active → terminated is an exit",
        [enrollment_row(A, 2026)],
        [enrollment_row(A, 2026, "终止参保")],
        "exited",
        [(2026, RES, "TERMINATED", COUNTY, None, None)],
    ),
    EnrollmentChange(
        "suspended → active is added",
        [enrollment_row(A, 2026, "暂停参保")],
        [enrollment_row(A, 2026, "正常参保")],
        "added",
        [(2026, RES, "ACTIVE", COUNTY, None, None)],
    ),
    EnrollmentChange(
        "a changed subsidy category is an identity change",
        [enrollment_row(A, 2026, subsidy_category="低保边缘家庭成员", subsidy_amount="100")],
        [enrollment_row(A, 2026, subsidy_category="低保对象", subsidy_amount="280")],
        "identity_changed",
        [(2026, RES, "ACTIVE", COUNTY, LOW, Decimal("280.00"))],
    ),
    EnrollmentChange(
        "a corrected subsidy amount is an update",
        [enrollment_row(A, 2026, subsidy_category="低保对象", subsidy_amount="100")],
        [enrollment_row(A, 2026, subsidy_category="低保对象", subsidy_amount="￥1,280.5")],
        "updated",
        [(2026, RES, "ACTIVE", COUNTY, LOW, Decimal("1280.50"))],
    ),
    EnrollmentChange(
        "a move of the insured place is an update",
        [enrollment_row(A, 2026)],
        [enrollment_row(A, 2026, region=NEIGHBOUR_COUNTY)],
        "updated",
        [(2026, RES, "ACTIVE", NEIGHBOUR_COUNTY, None, None)],
    ),
    EnrollmentChange(
        "next year's enrollment is a new one",
        [enrollment_row(A, 2025)],
        [enrollment_row(A, 2026)],
        "added",
        [(2025, RES, "ACTIVE", COUNTY, None, None), (2026, RES, "ACTIVE", COUNTY, None, None)],
    ),
    EnrollmentChange(
        "employee insurance is an enrollment of its own",
        [enrollment_row(A, 2026)],
        [enrollment_row(A, 2026, insurance_type="职工医保")],
        "added",
        [
            (2026, "EMPLOYEE", "ACTIVE", COUNTY, None, None),
            (2026, RES, "ACTIVE", COUNTY, None, None),
        ],
    ),
]


@pytest.mark.parametrize("change", ENROLLMENT_CHANGES, ids=[c.rule for c in ENROLLMENT_CHANGES])
async def test_enrollment_outcome_against_what_is_stored(
    db: IngestDB, change: EnrollmentChange
) -> None:
    if change.before:
        await db.load(*ENROLLMENTS, change.before)

    result = await db.load(*ENROLLMENTS, change.rows)

    assert nonzero(result) == _one_row(change.outcome)
    assert await _enrollment_state(db) == change.stored
    [enrollment] = [e for e in await db.enrollments(A) if e.batch_id == result.batch_id]
    assert enrollment.source_line == 2
    assert nonzero(await db.push(*ENROLLMENTS, change.rows)) == _unchanged(1)
    assert await _enrollment_state(db) == change.stored


async def test_reloading_an_enrollment_file_changes_nothing(db: IngestDB) -> None:
    rows = [
        enrollment_row(A, 2026, subsidy_category="低保对象", subsidy_amount="280"),
        enrollment_row(B, 2026, "暂停参保"),
        enrollment_row(B, 2025),
    ]
    await db.load(*ENROLLMENTS, rows)
    before = await db.snapshot()
    again = await db.load(*ENROLLMENTS, rows, encoding="gbk")
    assert nonzero(again) == _unchanged(3)
    assert await db.snapshot() == before


async def test_enrollment_of_an_unknown_person_creates_them_at_the_insured_place(
    db: IngestDB,
) -> None:
    newcomer = someone(9, COUNTY)  # born in 历下区, insured in 市中区
    result = await db.load(*ENROLLMENTS, [enrollment_row(newcomer, 2026, region=NEIGHBOUR_COUNTY)])
    assert nonzero(result) == _one_row("added")
    person = await db.person(newcomer)
    assert person is not None
    assert (person.region_code, person.county_code) == (NEIGHBOUR_COUNTY, NEIGHBOUR_COUNTY)
    assert db.open(person, "name") == newcomer.name
    assert result.region == NEIGHBOUR_COUNTY


async def test_enrollment_outside_the_jurisdiction_is_rejected(db: IngestDB) -> None:
    rows = [enrollment_row(A, 2026), enrollment_row(B, 2026, region=OTHER_CITY_COUNTY)]
    result = await db.load(*ENROLLMENTS, rows, scope=COUNTY)
    assert nonzero(result) == {"rows_total": 2, "rows_accepted": 1, "rows_rejected": 1, "added": 1}
    assert report_rows(result) == [
        ("3", "参保地行政区划代码", OTHER_CITY_COUNTY, "参保地不在本部门辖区内")
    ]
    assert await db.person(B) is None


ENROLLMENT_REJECTIONS = [
    ("negative subsidy", {"资助类别": "低保对象", "资助金额": "-280"}, "资助金额", "-280",
     "金额不能为负数"),
    ("subsidy with 3 decimals", {"资助类别": "低保对象", "资助金额": "280.125"}, "资助金额",
     "280.125", "金额最多保留两位小数"),
    ("subsidy amount without category", {"资助金额": "280"}, "资助类别", "",
     "填写了资助金额但未填写资助类别"),
    ("unknown subsidy category", {"资助类别": "低保户"}, "资助类别", "低保户",
     "未知的资助类别：低保户"),
    ("unknown enrollment status", {"参保状态": "退保"}, "参保状态", "退保",
     "未知的参保状态：退保"),
    ("two-digit year", {"参保年度": "26"}, "参保年度", "26", "年度应为四位年份"),
    ("year out of range", {"参保年度": "1999"}, "参保年度", "1999", "年度应在2000至2100年之间"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cells", "column", "value", "reason"),
    [case[1:] for case in ENROLLMENT_REJECTIONS],
    ids=[case[0] for case in ENROLLMENT_REJECTIONS],
)
async def test_bad_enrollment_row_is_rejected(
    db: IngestDB, cells: dict[str, str], column: str, value: str, reason: str
) -> None:
    rows = [{**enrollment_row(B), **cells}, enrollment_row(A)]
    result = await db.load(*ENROLLMENTS, rows, headers=ENROLLMENT_HEADERS)
    assert nonzero(result) == {"rows_total": 2, "rows_accepted": 1, "rows_rejected": 1, "added": 1}
    assert report_rows(result) == [("2", column, value, reason)]
    assert await db.person(B) is None
    assert await db.count(Enrollment) == 1


# --------------------------------------------------------------------------- settlements


def _settled(person: Someone, number: str, on: str, visit: str, amounts: str) -> dict[str, str]:
    """A settlement row; ``amounts`` is "total basic critical assistance burden" in yuan."""
    total, basic, critical, assistance, burden = amounts.split()
    return settlement_row(
        person, number, on, visit,
        total=total, basic=basic, critical=critical, assistance=assistance, burden=burden,
    )  # fmt: skip


S1 = _settled(A, "JS0001", "2026-01-10", "住院", "1000 600 100 100 200")
S2 = _settled(A, "JS0002", "2026-03-05", "门诊", "300.50 150 0 0 150.50")
S3 = _settled(A, "JS0003", "2026-06-01", "普通住院", "5000 3000 800 400 800")
S4 = _settled(A, "JS0004", "2025-12-30", "住院", "2000 1200 0 300 500")
SB = _settled(B, "JS0005", "2026-02-02", "门诊慢特病", "80 50 0 0 30")


async def _known(db: IngestDB, *people: Someone) -> None:
    """Civil affairs has recognised the people the settlements are about."""
    await db.load(*CIVIL, [identity_row(p) for p in people])


def _burden(row: Any) -> str:
    """A cost burden as "total basic critical assistance burden ×inpatient stays"."""
    paid = (
        row.total_cost,
        row.basic_insurance_paid,
        row.critical_illness_paid,
        row.medical_assistance_paid,
        row.personal_burden,
    )
    return " ".join(f"{amount:.2f}" for amount in paid) + f" ×{row.inpatient_count}"


def yuan(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.01"))


async def test_cost_burden_is_the_sum_of_the_years_settlements(db: IngestDB) -> None:
    await _known(db, A, B)

    result = await db.load(*SETTLEMENTS, [S1, S2, S3, S4, SB])

    assert nonzero(result) == {"rows_total": 5, "rows_accepted": 5, "added": 5}
    burdens = await db.cost_burdens(A)
    assert set(burdens) == {2025, 2026}
    assert _burden(burdens[2026]) == "6300.50 3750.00 900.00 500.00 1150.50 ×2"  # 2 住院 stays
    assert _burden(burdens[2025]) == "2000.00 1200.00 0.00 300.00 500.00 ×1"
    assert burdens[2026].batch_id == result.batch_id
    assert _burden((await db.cost_burdens(B))[2026]) == "80.00 50.00 0.00 0.00 30.00 ×0"
    stored = {s.settlement_number: s for s in await db.settlements(A)}
    assert (stored["JS0003"].visit_type, stored["JS0003"].year) == ("INPATIENT", 2026)
    assert (stored["JS0002"].visit_type, stored["JS0002"].personal_burden) == (
        "OUTPATIENT",
        yuan("150.50"),
    )


async def test_reloading_settlements_changes_nothing(db: IngestDB) -> None:
    await _known(db, A, B)
    await db.load(*SETTLEMENTS, [S1, S2, S3, S4, SB])
    before = await db.snapshot()

    again = await db.load(*SETTLEMENTS, [SB, S4, S3, S2, S1], file_format="xlsx")

    assert nonzero(again) == _unchanged(5)
    assert await db.snapshot() == before


async def test_corrected_settlement_updates_it_and_recomputes_the_burden(db: IngestDB) -> None:
    await _known(db, A)
    await db.load(*SETTLEMENTS, [S1, S2, S3])
    corrected = {**S3, "医疗总费用": "6000", "个人负担": "1800"}

    result = await db.load(*SETTLEMENTS, [corrected])

    assert nonzero(result) == _one_row("updated")
    assert await db.count(Settlement) == 3  # corrected, not added
    [s3] = [s for s in await db.settlements(A) if s.settlement_number == "JS0003"]
    assert (s3.total_cost, s3.personal_burden, s3.batch_id) == (
        yuan("6000"),
        yuan("1800"),
        result.batch_id,
    )
    burden = (await db.cost_burdens(A))[2026]
    assert (burden.total_cost, burden.personal_burden, burden.inpatient_count) == (
        yuan("7300.50"),
        yuan("2150.50"),
        2,
    )
    assert await db.count(CostBurden) == 1


async def test_settlement_moved_to_another_year_recomputes_both_years(db: IngestDB) -> None:
    await _known(db, A)
    await db.load(*SETTLEMENTS, [S1, S4])
    assert set(await db.cost_burdens(A)) == {2025, 2026}

    result = await db.load(*SETTLEMENTS, [{**S4, "结算日期": "2026-01-02"}])

    assert nonzero(result) == _one_row("updated")
    burdens = await db.cost_burdens(A)
    assert set(burdens) == {2026}  # 2025 has no settlement left
    assert (burdens[2026].total_cost, burdens[2026].inpatient_count) == (yuan("3000"), 2)


@dataclass(frozen=True)
class BadSettlement:
    rule: str
    row: dict[str, str]
    column: str
    value: str
    reason: str


UNKNOWN = someone(40)
BAD_SETTLEMENTS = [
    BadSettlement(
        "settlement of someone the gateway does not hold",
        settlement_row(UNKNOWN, "JS0100"),
        "身份证号码",
        UNKNOWN.masked_id,
        NOT_IN_SCOPE,
    ),
    BadSettlement(
        "fund payments above the total cost",
        settlement_row(A, "JS0101", total="700", basic="600", critical="100", assistance="0.01",
                       burden="0"),
        "医疗总费用",
        "700",
        "基本医保、大病保险与医疗救助支付合计超过医疗总费用",
    ),
    BadSettlement(
        "personal burden above the total cost",
        settlement_row(A, "JS0102", total="100", basic="0", critical="0", assistance="0",
                       burden="100.01"),
        "个人负担",
        "100.01",
        "个人负担超过医疗总费用",
    ),
    BadSettlement(
        "negative amount",
        settlement_row(A, "JS0103", assistance="-100"),
        "医疗救助支付",
        "-100",
        "金额不能为负数",
    ),
    BadSettlement(
        "amount with three decimals",
        settlement_row(A, "JS0104", total="1000.001"),
        "医疗总费用",
        "1000.001",
        "金额最多保留两位小数",
    ),
    BadSettlement(
        "settlement in the future",
        settlement_row(A, "JS0105", "2026-11-24"),
        "结算日期",
        "2026-11-24",
        "结算日期不能晚于今天",
    ),
    BadSettlement(
        "settlement number of another person's settlement",
        settlement_row(A, "JS0005"),
        "结算流水号",
        "JS0005",
        "结算流水号已用于另一人员的结算记录",
    ),
    BadSettlement(
        "settlement without a number",
        settlement_row(A, ""),
        "结算流水号",
        "",
        "结算流水号不能为空",
    ),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_SETTLEMENTS, ids=[b.rule for b in BAD_SETTLEMENTS])
async def test_bad_settlement_is_rejected_and_nothing_of_it_stored(
    db: IngestDB, bad: BadSettlement
) -> None:
    await _known(db, A, B)
    await db.load(*SETTLEMENTS, [SB])
    before = await db.snapshot()

    result = await db.load(*SETTLEMENTS, [bad.row], headers=SETTLEMENT_HEADERS)

    assert nonzero(result) == {"rows_total": 1, "rows_rejected": 1}
    assert report_rows(result) == [("2", bad.column, bad.value, bad.reason)]
    assert await db.snapshot() == before
    assert await db.person(UNKNOWN) is None  # no person is made up from a settlement


async def test_settlement_outside_the_jurisdiction_is_refused_like_an_unknown_person(
    db: IngestDB,
) -> None:
    """A county bureau cannot learn from the report whether a person of another county exists."""
    elsewhere = someone(41, OTHER_CITY_COUNTY)
    await _known(db, A, elsewhere)
    rows = [settlement_row(A, "JS0200"), settlement_row(elsewhere, "JS0201")]

    result = await db.load(*SETTLEMENTS, rows, scope=COUNTY)

    assert report_rows(result) == [("3", "身份证号码", elsewhere.masked_id, NOT_IN_SCOPE)]
    assert await db.count(Settlement) == 1


# --------------------------------------------------------------------------- vital events


async def test_death_of_a_known_person_is_recorded(db: IngestDB) -> None:
    await _known(db, A)

    result = await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])

    assert nonzero(result)["added"] == 1
    person = await db.person(A)
    assert person is not None
    assert person.deceased_on == date(2026, 10, 1)
    [event] = await db.vital_events(A)
    assert (event.event, event.event_date, event.batch_id, event.source_line) == (
        "DEATH",
        date(2026, 10, 1),
        result.batch_id,
        2,
    )
    assert nonzero(await db.push(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])) == (
        _unchanged(1)
    )


async def test_corrected_date_of_death_updates_the_person(db: IngestDB) -> None:
    await _known(db, A)
    await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-10-01")])

    result = await db.load(*VITAL_EVENTS, [vital_event_row(A, "死亡", "2026-09-30")])

    assert nonzero(result) == _one_row("updated")
    person = await db.person(A)
    assert person is not None
    assert person.deceased_on == date(2026, 9, 30)
    assert [e.event_date for e in await db.vital_events(A)] == [date(2026, 9, 30)]


async def test_birth_is_recorded_without_touching_the_person(db: IngestDB) -> None:
    baby = someone(42, born=date(2026, 8, 8))
    await _known(db, baby)
    result = await db.load(*VITAL_EVENTS, [vital_event_row(baby, "出生", "2026-08-08")])
    assert nonzero(result) == _one_row("added")
    person = await db.person(baby)
    assert person is not None
    assert person.deceased_on is None
    assert [(e.event, e.event_date) for e in await db.vital_events(baby)] == [
        ("BIRTH", date(2026, 8, 8))
    ]


@pytest.mark.parametrize("scope", [None, NEIGHBOUR_COUNTY], ids=["unknown", "other-county"])
async def test_event_about_someone_not_held_is_unmatched_and_stores_nothing(
    db: IngestDB, scope: str | None
) -> None:
    await _known(db, A)
    before = await db.snapshot()
    stranger = someone(43)
    rows = [vital_event_row(stranger)] if scope is None else [vital_event_row(A)]

    result = await db.load(*VITAL_EVENTS, rows, scope=scope)

    assert nonzero(result) == _one_row("unmatched")
    assert result.rejections == []  # health reports everyone; most are simply not ours
    assert await db.snapshot() == before
    assert await db.count(Person) == 1
    assert await db.count(VitalEvent) == 0


@pytest.mark.parametrize(
    ("row", "column", "value", "reason"),
    [
        (vital_event_row(A, "死亡", "1949-12-31"), "事件日期", "1949-12-31",
         "事件日期早于身份证号码中的出生日期"),
        (vital_event_row(A, "死亡", "2026-11-24"), "事件日期", "2026-11-24",
         "事件日期不能晚于今天"),
        (vital_event_row(A, "失踪", "2026-10-01"), "事件类型", "失踪", "未知的事件类型：失踪"),
    ],
    ids=["before-birth", "in-the-future", "unknown-event"],
)  # fmt: skip
async def test_bad_vital_event_is_rejected(
    db: IngestDB, row: dict[str, str], column: str, value: str, reason: str
) -> None:
    await _known(db, A)
    result = await db.load(*VITAL_EVENTS, [row])
    assert report_rows(result) == [("2", column, value, reason)]
    person = await db.person(A)
    assert person is not None
    assert person.deceased_on is None
