"""Identity rosters (civil affairs, rural revitalisation, and the person-only feeds) through the
ingest pipeline: what a row means against what is stored (DOMAIN.md rule 2: 新增, 退出,
身份变更), de-duplication of people (rule 4), validation with a clerk's reason for every refused
row, one transaction per chunk, and "loading the same file twice changes nothing" (CONTRACT.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import sqlalchemy.exc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.apply import ChunkApplier
from adapters.pipeline import IngestFailed, Ingestor, RejectionReport
from adapters.readers import SourceFileError
from gateway.storage.models import Household, IngestBatch, Person, ReliefStatus
from tests.ingest_support import (
    COUNTY,
    IDENTITY_HEADERS,
    NEIGHBOUR_COUNTY,
    OTHER_CITY_COUNTY,
    TODAY,
    IngestDatabase,
    IngestDB,
    Someone,
    db_fixture,  # noqa: F401 - fixture
    first_data_line,
    identity_row,
    ingest_database_fixture,  # noqa: F401 - fixture
    nonzero,
    report_rows,
    someone,
    someone_with_x_check_digit,
)

CIVIL = ("civil_affairs", "identities")
RURAL = ("rural_revitalization", "identities")
A, B, C, D = someone(1), someone(2), someone(3), someone(4)


def _unchanged(total: int) -> dict[str, int]:
    return {"rows_total": total, "rows_accepted": total, "rows_unchanged": total}


# --------------------------------------------------------------------------- a new person


@pytest.mark.parametrize(
    ("file_format", "encoding"),
    [("csv", "utf-8"), ("csv", "utf-8-sig"), ("csv", "gbk"), ("xlsx", "utf-8"), ("jsonl", "utf-8")],
    ids=["csv-utf8", "csv-utf8-bom", "csv-gbk", "xlsx", "jsonl"],
)
async def test_new_person_with_an_identity_is_added(
    db: IngestDB, file_format: str, encoding: str
) -> None:
    row = identity_row(
        A, "低保对象", "2025-03-01", extra={"联系电话": "13800000001", "家庭住址": "测试路1号"}
    )
    result = await db.load(*CIVIL, [row], file_format=file_format, encoding=encoding)

    assert result.status == "COMPLETED"
    assert nonzero(result) == {"rows_total": 1, "rows_accepted": 1, "added": 1}
    assert result.region == COUNTY
    person = await db.person(A)
    assert person is not None
    assert db.open(person, "name") == A.name
    assert db.open(person, "id_number") == A.id_number
    assert db.open(person, "phone") == "13800000001"
    assert db.open(person, "address") == "测试路1号"
    assert (person.region_code, person.county_code, person.city_code, person.province_code) == (
        COUNTY,
        COUNTY,
        COUNTY[:4],
        COUNTY[:2],
    )
    assert person.birth_date == date(1950, 3, 3)  # from the ID number
    assert person.deceased_on is None
    [status] = await db.statuses(A)
    assert (status.category, status.source_department) == ("MINIMUM_LIVING", "civil_affairs")
    assert (status.recognized_on, status.valid_from, status.valid_to) == (
        date(2025, 3, 1),
        date(2025, 3, 1),
        None,
    )
    # provenance: the batch, and the line the clerk finds the row on
    assert status.batch_id == result.batch_id
    assert status.source_line == first_data_line(file_format)
    batch = await db.batch(result.batch_id)
    assert (batch.department, batch.feed, batch.channel, batch.status) == (
        "civil_affairs",
        "identities",
        "FILE",
        "COMPLETED",
    )
    assert (batch.rows_total, batch.added, batch.region) == (1, 1, COUNTY)
    assert batch.finished_at is not None
    [source] = await db.sources(A)
    assert (source.department, source.batch_id) == ("civil_affairs", result.batch_id)


async def test_batch_region_is_the_narrowest_jurisdiction_holding_its_rows(db: IngestDB) -> None:
    result = await db.load(*CIVIL, [identity_row(A), identity_row(someone(5, NEIGHBOUR_COUNTY))])
    assert result.region == COUNTY[:4]  # two counties of 济南 → the city
    assert (await db.batch(result.batch_id)).region == COUNTY[:4]


# --------------------------------------------------------------------------- loading twice

ROSTER = [
    identity_row(
        A,
        "低保对象",
        "2025-03-01",
        extra={
            "联系电话": "13800000001",
            "家庭住址": "测试路1号",
            "户编号": "H0001",
            "与户主关系": "户主",
        },
    ),
    identity_row(
        B, "低保边缘家庭成员", "2024-01-01", extra={"户编号": "H0001", "与户主关系": "配偶"}
    ),
    identity_row(B, "低保对象", "2026-05-01", extra={"户编号": "H0001", "与户主关系": "配偶"}),
    identity_row(C, "孤儿", "2020-06-01"),
    identity_row(C, "低保对象", "2021-01-01", "2025-12-31"),
    identity_row(D, "特困人员", "2019-09-09", region=f"{COUNTY}001"),  # township precision
    identity_row(D, "特困人员", "2019-09-09", region=f"{COUNTY}001"),  # listed twice
]


@pytest.mark.parametrize(
    ("file_format", "encoding"),
    [
        pytest.param("csv", "gbk", id="re-encoded-gbk"),
        pytest.param("csv", "utf-8-sig", id="with-bom"),
        pytest.param("xlsx", "utf-8", id="as-workbook"),
        pytest.param("jsonl", "utf-8", id="as-json-lines"),
        pytest.param("push", "", id="pushed"),
    ],
)
async def test_reloading_the_same_roster_changes_nothing(
    db: IngestDB, file_format: str, encoding: str
) -> None:
    """CONTRACT.md: loading the same file twice changes nothing the second time; a byte-different
    copy (re-encoded, re-saved) escapes the content-hash shortcut, so every row is re-classified
    and must come out 无变化, with not a table row count nor a column value changed."""
    first = await db.load(*CIVIL, ROSTER)
    assert first.counts.rows_accepted == len(ROSTER)
    before = await db.snapshot()
    batches = await db.count(IngestBatch)

    if file_format == "push":
        second = await db.push(*CIVIL, ROSTER)
    else:
        second = await db.load(*CIVIL, ROSTER, file_format=file_format, encoding=encoding)

    assert second.status == "COMPLETED"
    assert nonzero(second) == _unchanged(len(ROSTER))
    assert await db.snapshot() == before
    assert await db.count(IngestBatch) == batches + 1  # the second batch is recorded …
    recorded = await db.batch(second.batch_id)
    assert (recorded.status, recorded.rows_unchanged, recorded.added) == ("COMPLETED", 7, 0)


async def test_exact_same_file_is_recognised_and_changes_nothing(db: IngestDB) -> None:
    path = db.file(ROSTER)
    first = await db.load_file(*CIVIL, path)
    before = await db.snapshot(without=())

    again = await db.load_file(*CIVIL, path)

    assert again.status == "DUPLICATE"
    assert again.duplicate_of == first.batch_id
    assert again.batch_id is None
    assert nonzero(again) == {}
    assert await db.snapshot(without=()) == before  # not even a batch row


async def test_same_file_from_another_department_is_not_a_duplicate(db: IngestDB) -> None:
    rows = [identity_row(A, "低保对象")]
    path = db.file(rows)
    await db.load_file(*CIVIL, path)
    other = await db.load_file(
        *RURAL, db.file([identity_row(A, "脱贫人口", "2021-01-01")], stem=path.stem + "b")
    )
    assert other.status == "COMPLETED"
    assert nonzero(other) == {"rows_total": 1, "rows_accepted": 1, "added": 1}
    assert {(s.category, s.source_department) for s in await db.statuses(A)} == {
        ("MINIMUM_LIVING", "civil_affairs"),
        ("LIFTED_FROM_POVERTY", "rural_revitalization"),
    }
    assert await db.count(Person) == 1  # one person, two departments' identities


# --------------------------------------------------------------------------- what a row means

MIN, EDGE, ORPHAN = "MINIMUM_LIVING", "MINIMUM_LIVING_EDGE", "ORPHAN"
CA = "civil_affairs"


@dataclass(frozen=True)
class Change:
    rule: str
    before: list[dict[str, str]]  # loaded first (may be empty)
    row: list[dict[str, str]]  # the file under test
    outcome: dict[str, int]  # its non-zero counts beyond rows_total/rows_accepted
    periods: list[tuple[str, str, date, date | None]]  # (category, dept, valid_from, valid_to)
    feed: tuple[str, str] = CIVIL


CHANGES = [
    Change(
        "exit ends the held identity on the exit date",
        [identity_row(A, "低保对象", "2025-03-01")],
        [identity_row(A, "低保对象", "2025-03-01", "2026-06-30")],
        {"exited": 1},
        [(MIN, CA, date(2025, 3, 1), date(2026, 6, 30))],
    ),
    Change(
        "exit of someone never listed stores the closed identity",
        [],
        [identity_row(A, "低保对象", "2025-03-01", "2026-06-30")],
        {"exited": 1},
        [(MIN, CA, date(2025, 3, 1), date(2026, 6, 30))],
    ),
    Change(
        "exit date corrected",
        [identity_row(A, "低保对象", "2025-03-01", "2026-06-30")],
        [identity_row(A, "低保对象", "2025-03-01", "2026-07-31")],
        {"exited": 1},
        [(MIN, CA, date(2025, 3, 1), date(2026, 7, 31))],
    ),
    Change(
        "re-listing after exit is added again",
        [identity_row(A, "低保对象", "2025-03-01", "2026-06-30")],
        [identity_row(A, "低保对象", "2025-03-01")],
        {"added": 1},
        [(MIN, CA, date(2025, 3, 1), None)],
    ),
    Change(
        "recognised again after exit is added, the old period kept",
        [identity_row(A, "低保对象", "2024-01-01", "2024-12-31")],
        [identity_row(A, "低保对象", "2026-02-01")],
        {"added": 1},
        [(MIN, CA, date(2024, 1, 1), date(2024, 12, 31)), (MIN, CA, date(2026, 2, 1), None)],
    ),
    Change(
        "identity change 低保边缘 → 低保 closes the old tier the day before",
        [identity_row(A, "低保边缘家庭成员", "2024-01-01")],
        [identity_row(A, "低保对象", "2026-05-01")],
        {"identity_changed": 1},
        [(EDGE, CA, date(2024, 1, 1), date(2026, 4, 30)), (MIN, CA, date(2026, 5, 1), None)],
    ),
    Change(
        "identity change 低保 → 特困",
        [identity_row(A, "低保对象", "2024-01-01")],
        [identity_row(A, "特困人员", "2026-05-01")],
        {"identity_changed": 1},
        [
            (MIN, CA, date(2024, 1, 1), date(2026, 4, 30)),
            ("EXTREME_POVERTY", CA, date(2026, 5, 1), None),
        ],
    ),
    Change(
        "rural revitalisation 脱贫人口 → 返贫致贫人口 is an identity change",
        [identity_row(A, "脱贫人口", "2021-01-01")],
        [identity_row(A, "返贫致贫人口", "2026-03-01")],
        {"identity_changed": 1},
        [
            ("LIFTED_FROM_POVERTY", "rural_revitalization", date(2021, 1, 1), date(2026, 2, 28)),
            ("RETURNED_TO_POVERTY", "rural_revitalization", date(2026, 3, 1), None),
        ],
        RURAL,
    ),
    Change(
        "re-recognised in the same category: the new recognition takes over",
        [identity_row(A, "低保对象", "2024-01-01")],
        [identity_row(A, "低保对象", "2026-05-01")],
        {"updated": 1},
        [(MIN, CA, date(2024, 1, 1), date(2026, 4, 30)), (MIN, CA, date(2026, 5, 1), None)],
    ),
    Change(
        "an older recognition listed after a newer one is history, not a takeover",
        [identity_row(A, "低保对象", "2026-05-01")],
        [identity_row(A, "低保对象", "2024-01-01")],
        {"updated": 1},
        [(MIN, CA, date(2024, 1, 1), date(2026, 4, 30)), (MIN, CA, date(2026, 5, 1), None)],
    ),
    Change(
        "孤儿 outside the tier group is held alongside 低保",
        [identity_row(A, "低保对象", "2025-03-01")],
        [identity_row(A, "孤儿", "2025-05-01")],
        {"added": 1},
        [(MIN, CA, date(2025, 3, 1), None), (ORPHAN, CA, date(2025, 5, 1), None)],
    ),
    Change(
        "exiting 孤儿 leaves 低保 held",
        [identity_row(A, "低保对象", "2025-03-01"), identity_row(A, "孤儿", "2025-05-01")],
        [identity_row(A, "孤儿", "2025-05-01", "2026-08-31")],
        {"exited": 1},
        [(MIN, CA, date(2025, 3, 1), None), (ORPHAN, CA, date(2025, 5, 1), date(2026, 8, 31))],
    ),
    Change(
        "a tier first reported with its exit still ends the tier it replaced",
        [identity_row(A, "低保边缘家庭成员", "2022-05-01")],
        [identity_row(A, "低保对象", "2023-01-01", "2024-12-31")],
        {"exited": 1},
        [
            (EDGE, CA, date(2022, 5, 1), date(2022, 12, 31)),
            (MIN, CA, date(2023, 1, 1), date(2024, 12, 31)),
        ],
    ),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c.rule for c in CHANGES])
async def test_row_outcome_against_what_is_stored(db: IngestDB, change: Change) -> None:
    if change.before:
        await db.load(*change.feed, change.before)

    result = await db.load(*change.feed, change.row)

    total = len(change.row)
    assert nonzero(result) == {"rows_total": total, "rows_accepted": total, **change.outcome}
    assert await db.status_periods(A) == change.periods
    batch = await db.batch(result.batch_id)
    assert {k: getattr(batch, k) for k in change.outcome} == change.outcome
    # … and the same rows once more are no news
    assert nonzero(await db.push(*change.feed, change.row)) == _unchanged(total)
    assert await db.status_periods(A) == change.periods


@pytest.mark.parametrize("order", ["older first", "newer first"])
@pytest.mark.parametrize(
    ("older", "newer"),
    [("低保边缘家庭成员", "低保对象"), ("低保对象", "低保对象")],
    ids=["two-tiers", "same-category-re-recognised"],
)
async def test_two_recognitions_in_one_roster_give_the_same_history_in_either_order(
    db: IngestDB, older: str, newer: str, order: str
) -> None:
    """The earlier recognition ends the day before the later one, whichever row comes first,
    and loading the roster again is no news (it used to re-open the earlier one)."""
    rows = [identity_row(A, older, "2024-01-01"), identity_row(A, newer, "2026-05-01")]
    if order == "newer first":
        rows.reverse()
    labels = db.feeds[CIVIL].labels["category"]

    result = await db.load(*CIVIL, rows)

    assert result.counts.rows_accepted == 2
    assert await db.status_periods(A) == [
        (labels[older], CA, date(2024, 1, 1), date(2026, 4, 30)),
        (labels[newer], CA, date(2026, 5, 1), None),
    ]
    assert nonzero(await db.load(*CIVIL, rows, encoding="gbk")) == _unchanged(2)
    assert await db.status_periods(A) == [
        (labels[older], CA, date(2024, 1, 1), date(2026, 4, 30)),
        (labels[newer], CA, date(2026, 5, 1), None),
    ]


TIERS = [
    identity_row(A, "特困人员", "2021-07-01"),
    identity_row(A, "低保对象", "2023-01-01"),
    identity_row(A, "低保边缘家庭成员", "2024-06-01"),
]


@pytest.mark.parametrize(
    "order", list(itertools.permutations(range(3))), ids=lambda o: "".join(map(str, o))
)
async def test_a_chain_of_three_tiers_does_not_depend_on_row_order(
    db: IngestDB, order: tuple[int, ...]
) -> None:
    rows = [TIERS[i] for i in order]
    await db.load(*CIVIL, rows)
    assert await db.status_periods(A) == [
        ("EXTREME_POVERTY", CA, date(2021, 7, 1), date(2022, 12, 31)),
        (MIN, CA, date(2023, 1, 1), date(2024, 5, 31)),
        (EDGE, CA, date(2024, 6, 1), None),
    ]
    assert nonzero(await db.push(*CIVIL, rows)) == _unchanged(3)


# --------------------------------------------------------------------------- person-only feeds


async def test_household_registration_creates_people_without_identities(db: IngestDB) -> None:
    rows = [
        {
            "姓名": A.name,
            "公民身份号码": A.id_number,
            "户籍地行政区划代码": COUNTY,
            "户籍地址": "测试路9号",
            "户号": "G0001",
            "与户主关系": "户主",
        }
    ]
    result = await db.load("public_security", "household_registration", rows)

    assert nonzero(result) == {"rows_total": 1, "rows_accepted": 1, "added": 1}
    person = await db.person(A)
    assert person is not None
    assert db.open(person, "address") == "测试路9号"
    assert person.relation == "户主"
    assert await db.count(ReliefStatus) == 0
    [household] = await db.households()
    assert (household.source_department, household.source_number) == ("public_security", "G0001")
    assert person.household_id == household.id


@pytest.mark.parametrize(
    ("grade", "statuses"),
    [("三级", []), ("四级", []), ("一级", ["SEVERE_DISABILITY"]), ("二级", ["SEVERE_DISABILITY"])],
)
async def test_disability_grade_decides_whether_it_is_an_identity(
    db: IngestDB, grade: str, statuses: list[str]
) -> None:
    """残联: grades 一级/二级 are 重度残疾 (003); 三级/四级 people are recorded, no identity."""
    rows = [
        {
            "姓名": A.name,
            "身份证号码": A.id_number,
            "行政区划代码": COUNTY,
            "残疾等级": grade,
            "发证日期": "2022-08-08",
        }
    ]
    result = await db.load("disabled_federation", "certificates", rows)

    assert nonzero(result) == {"rows_total": 1, "rows_accepted": 1, "added": 1}
    assert await db.person(A) is not None
    assert [s.category for s in await db.statuses(A)] == statuses
    assert all(s.source_department == "disabled_federation" for s in await db.statuses(A))


# --------------------------------------------------------------------------- person facts


async def test_household_number_links_members_to_one_household(db: IngestDB) -> None:
    rows = [
        identity_row(A, extra={"户编号": "H0001", "与户主关系": "户主"}),
        identity_row(B, extra={"户编号": "H0001", "与户主关系": "配偶"}),
        identity_row(C, extra={"户编号": "H0002", "与户主关系": "户主"}),
    ]
    await db.load(*CIVIL, rows)

    households = await db.households()
    assert [(h.source_department, h.source_number, h.county_code) for h in households] == [
        ("civil_affairs", "H0001", COUNTY),
        ("civil_affairs", "H0002", COUNTY),
    ]
    a, b, c = [await db.person(p) for p in (A, B, C)]
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.household_id == b.household_id == households[0].id
    assert c.household_id == households[1].id
    assert (a.relation, b.relation) == ("户主", "配偶")

    # a later roster adds a member to the same household: no second household row
    await db.load(*CIVIL, [identity_row(D, extra={"户编号": "H0001", "与户主关系": "子女"})])
    d = await db.person(D)
    assert d is not None
    assert d.household_id == households[0].id
    assert await db.count(Household) == 2


async def test_changed_contact_details_are_updated_and_sealed(db: IngestDB) -> None:
    await db.load(
        *CIVIL, [identity_row(A, extra={"联系电话": "13800000001", "家庭住址": "测试路1号"})]
    )

    result = await db.load(
        *CIVIL, [identity_row(A, extra={"联系电话": "0531-88886666", "家庭住址": "测试路2号"})]
    )

    assert nonzero(result) == {"rows_total": 1, "rows_accepted": 1, "updated": 1}
    person = await db.person(A)
    assert person is not None
    assert db.open(person, "phone") == "0531-88886666"
    assert db.open(person, "address") == "测试路2号"
    assert person.phone_bidx == db.vault.phone_index("0531-88886666")
    assert b"88886666" not in person.phone_ct  # sealed, not stored in clear
    [source] = await db.sources(A)
    assert source.batch_id == result.batch_id  # the department's latest report

    # a row that leaves the phone empty keeps the one on record
    await db.load(*CIVIL, [identity_row(A, extra={"家庭住址": "测试路2号"})])
    person = await db.person(A)
    assert person is not None
    assert db.open(person, "phone") == "0531-88886666"


async def test_move_to_another_county_updates_the_jurisdiction_columns(db: IngestDB) -> None:
    await db.load(*CIVIL, [identity_row(A)])
    result = await db.load(*CIVIL, [identity_row(A, region=f"{OTHER_CITY_COUNTY}002")])
    assert nonzero(result) == {"rows_total": 1, "rows_accepted": 1, "updated": 1}
    person = await db.person(A)
    assert person is not None
    assert (person.region_code, person.county_code, person.city_code) == (
        f"{OTHER_CITY_COUNTY}002",
        OTHER_CITY_COUNTY,
        OTHER_CITY_COUNTY[:4],
    )


async def test_rows_outside_the_submitters_jurisdiction_are_rejected(db: IngestDB) -> None:
    outsider = someone(7, OTHER_CITY_COUNTY)
    rows = [identity_row(A), identity_row(outsider), identity_row(someone(8, NEIGHBOUR_COUNTY))]

    result = await db.load(*CIVIL, rows, scope=COUNTY[:4])

    assert nonzero(result) == {"rows_total": 3, "rows_accepted": 2, "rows_rejected": 1, "added": 2}
    assert report_rows(result) == [
        ("3", "行政区划代码", OTHER_CITY_COUNTY, "行政区划代码不在本部门辖区内")
    ]
    assert await db.person(outsider) is None
    assert result.region == COUNTY[:4]


# --------------------------------------------------------------------------- validation


def _fullwidth(text: str) -> str:
    return text.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"})


def _wrong_check_digit(id_number: str) -> str:
    return id_number[:17] + ("0" if id_number[17] != "0" else "1")


@dataclass(frozen=True)
class Bad:
    rule: str
    row: Callable[[Someone], dict[str, str]]
    column: str
    value: Callable[[Someone], str]
    reason: str


BAD_ROWS = [
    Bad(
        "ID number with a wrong check digit",
        lambda p: {**identity_row(p), "身份证号码": _wrong_check_digit(p.id_number)},
        "身份证号码",
        lambda p: _wrong_check_digit(p.id_number),
        "身份证号码无效：校验位错误",
    ),
    Bad(
        "ID number of 17 digits",
        lambda p: {**identity_row(p), "身份证号码": p.id_number[:17]},
        "身份证号码",
        lambda p: p.id_number[:17],
        "身份证号码无效：长度应为18位",
    ),
    Bad(
        "missing name",
        lambda p: {**identity_row(p), "姓名": ""},
        "姓名",
        lambda p: "",
        "姓名不能为空",
    ),
    Bad(
        "unknown category label",
        lambda p: identity_row(p, "低保户"),
        "人员类别",
        lambda p: "低保户",
        "未知的人员类别：低保户",
    ),
    Bad(
        "recognition date in the future",
        lambda p: identity_row(p, recognized="2026-12-01"),
        "认定日期",
        lambda p: "2026-12-01",
        "认定日期不能晚于今天",
    ),
    Bad(
        "exit before recognition",
        lambda p: identity_row(p, recognized="2025-03-01", exited="2025-02-28"),
        "退出日期",
        lambda p: "2025-02-28",
        "退出日期早于认定日期",
    ),
    Bad(
        "date that does not exist",
        lambda p: identity_row(p, recognized="2025-02-30"),
        "认定日期",
        lambda p: "2025-02-30",
        "日期无效：2025年2月只有28天，没有30日",
    ),
    Bad(
        "region code of a city, not a county",
        lambda p: identity_row(p, region="370100"),
        "行政区划代码",
        lambda p: "370100",
        "行政区划代码应精确到县级",
    ),
    Bad(
        "malformed phone number",
        lambda p: identity_row(p, extra={"联系电话": "12345"}),
        "联系电话",
        lambda p: "12345",
        "联系电话格式不正确",
    ),
]


@pytest.mark.parametrize("bad", BAD_ROWS, ids=[b.rule for b in BAD_ROWS])
async def test_bad_row_is_rejected_with_line_column_value_and_reason(
    db: IngestDB, bad: Bad
) -> None:
    good, refused, after = someone(11), someone(12), someone(13)
    rows = [identity_row(good), bad.row(refused), identity_row(after)]

    result = await db.load(*CIVIL, rows, headers=IDENTITY_HEADERS)

    assert nonzero(result) == {"rows_total": 3, "rows_accepted": 2, "rows_rejected": 1, "added": 2}
    expected = (3, bad.column, bad.value(refused), bad.reason)
    assert [(r.line, r.column, r.value, r.reason) for r in result.rejections] == [expected]
    assert report_rows(result) == [tuple(map(str, expected))]
    # the batch went on past the refused row, and nothing of that row was stored
    assert await db.person(after) is not None
    assert await db.person(refused) is None
    assert await db.count(Person) == 2
    assert await db.count(ReliefStatus) == 2
    assert (await db.batch(result.batch_id)).rows_rejected == 1


async def test_report_names_the_column_as_the_file_heads_it(db: IngestDB) -> None:
    rows = [
        {"姓名": A.name, "公民身份号码": _wrong_check_digit(A.id_number), "区划代码": COUNTY,
         "救助类别": "低保对象", "批准日期": "2025-03-01"},
    ]  # fmt: skip
    result = await db.load(*CIVIL, rows)
    assert report_rows(result) == [
        ("2", "公民身份号码", _wrong_check_digit(A.id_number), "身份证号码无效：校验位错误")
    ]


async def test_every_problem_of_a_row_is_reported_and_the_row_counted_once(db: IngestDB) -> None:
    rows = [
        identity_row(A),
        {**identity_row(B, "低保户", "2025/13/01"), "姓名": ""},
        identity_row(C, exited="2024-01-01"),
    ]
    result = await db.load(*CIVIL, rows, headers=IDENTITY_HEADERS)

    assert nonzero(result) == {"rows_total": 3, "rows_accepted": 1, "rows_rejected": 2, "added": 1}
    assert sorted((r.line, r.column) for r in result.rejections) == [
        (3, "人员类别"),
        (3, "姓名"),
        (3, "认定日期"),
        (4, "退出日期"),
    ]
    assert report_rows(result) == [
        (str(r.line), r.column, r.value, r.reason) for r in result.rejections
    ]
    assert await db.count(Person) == 1


@pytest.mark.parametrize(
    "spelling",
    [str.lower, _fullwidth, lambda n: f" {n[:6]} {n[6:14]} {n[14:]} "],
    ids=["lowercase-x", "full-width-digits", "spaces"],
)
async def test_id_number_spellings_are_one_person(
    db: IngestDB, spelling: Callable[[str], str]
) -> None:
    person = someone_with_x_check_digit()
    await db.load(*CIVIL, [identity_row(person)])

    again = await db.load(
        *CIVIL, [{**identity_row(person), "身份证号码": spelling(person.id_number)}]
    )

    assert nonzero(again) == _unchanged(1)
    assert await db.count(Person) == 1
    stored = await db.person(person)
    assert stored is not None
    assert db.open(stored, "id_number") == person.id_number  # canonical: upper-case X


@pytest.mark.parametrize(
    "written",
    ["2025-03-01", "2025/3/1", "20250301", "2025年3月1日", "2025.03.01", "２０２５－０３－０１"],
)
async def test_recognition_dates_in_the_forms_departments_write(db: IngestDB, written: str) -> None:
    result = await db.load(*CIVIL, [identity_row(A, recognized=written)])
    assert result.counts.rows_accepted == 1, result.rejections
    [status] = await db.statuses(A)
    assert status.recognized_on == date(2025, 3, 1)


async def test_missing_required_column_refuses_the_file_and_stores_nothing(db: IngestDB) -> None:
    rows = [{k: v for k, v in identity_row(A).items() if k != "身份证号码"}]
    path = db.file(rows)
    with pytest.raises(SourceFileError) as raised:
        await db.load_file(*CIVIL, path)
    assert raised.value.message == "缺少必需列：身份证号码"
    assert set((await db.counts()).values()) == {0}  # not even a batch


@pytest.mark.parametrize("missing", ["姓名", "行政区划代码", "认定日期"])
async def test_each_required_column_is_named_when_missing(db: IngestDB, missing: str) -> None:
    """认定日期 is required because the feed maps 人员类别: a category needs its date."""
    rows = [{k: v for k, v in identity_row(A).items() if k != missing}]
    with pytest.raises(SourceFileError) as raised:
        await db.load(*CIVIL, rows)
    assert raised.value.message == f"缺少必需列：{missing}"


# --------------------------------------------------------------------------- atomicity


async def test_failed_chunk_leaves_nothing_and_rerun_completes(
    db: IngestDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One chunk is one transaction: when the database fails during a chunk, the chunks before
    it stay, nothing of the failing one does, the batch says FAILED, and running the same file
    again continues that batch where it stopped, without duplicating what was kept: the batch
    ends as one uninterrupted run would have left it (tests/test_ingest_resume.py)."""
    people = [someone(20 + i) for i in range(5)]
    path = db.file([identity_row(p) for p in people])
    original = ChunkApplier._flush
    calls = 0

    async def flush_then_fail(self: ChunkApplier) -> None:
        nonlocal calls
        calls += 1
        await original(self)  # the chunk's rows are written inside its transaction …
        if calls == 2:  # … and the second chunk's transaction then fails
            raise sqlalchemy.exc.OperationalError("INSERT …", {}, Exception("connection lost"))

    monkeypatch.setattr(ChunkApplier, "_flush", flush_then_fail)
    with pytest.raises(IngestFailed) as raised:
        await db.load_file(*CIVIL, path, chunk_rows=2)

    assert "导入中断" in raised.value.message
    assert "已提交的 2 行已保存" in raised.value.message
    assert raised.value.code == "SERVICE_UNAVAILABLE"
    assert [await db.person(p) is not None for p in people] == [True, True, False, False, False]
    assert await db.count(ReliefStatus) == 2
    [failed] = await db.batches()
    assert (failed.status, failed.error, failed.rows_total, failed.added) == (
        "FAILED",
        "OperationalError",
        2,  # the counts committed with the chunk they count
        2,
    )
    kept = await db.statuses(people[0])

    monkeypatch.setattr(ChunkApplier, "_flush", original)
    rerun = await db.load_file(*CIVIL, path, chunk_rows=2)

    assert rerun.status == "COMPLETED"  # a failed batch is not a duplicate
    assert (rerun.batch_id, rerun.resumed, rerun.resumed_rows) == (failed.id, (failed.id,), 2)
    assert nonzero(rerun) == {"rows_total": 5, "rows_accepted": 5, "added": 5}  # the file's
    [completed] = await db.batches()
    assert (completed.status, completed.error, completed.rows_total, completed.added) == (
        "COMPLETED",
        None,
        5,
        5,
    )
    assert await db.count(Person) == 5
    assert await db.count(ReliefStatus) == 5
    assert await db.statuses(people[0]) == kept  # the earlier rows are untouched
    statuses = await db.all(select(ReliefStatus.batch_id).order_by(ReliefStatus.source_line))
    assert [s.batch_id for s in statuses] == [failed.id] * 5


async def test_chunks_see_the_rows_of_earlier_chunks(db: IngestDB) -> None:
    """A person listed in two chunks of one file is one person with both identities."""
    rows = [identity_row(A, "低保边缘家庭成员", "2024-01-01"), identity_row(B), identity_row(C)]
    rows += [identity_row(A, "低保对象", "2026-05-01"), identity_row(A, "孤儿", "2020-01-01")]
    result = await db.load(*CIVIL, rows, chunk_rows=2)
    assert nonzero(result) == {
        "rows_total": 5,
        "rows_accepted": 5,
        "added": 4,
        "identity_changed": 1,
    }
    assert await db.count(Person) == 3
    assert await db.status_periods(A) == [
        (ORPHAN, CA, date(2020, 1, 1), None),
        (EDGE, CA, date(2024, 1, 1), date(2026, 4, 30)),
        (MIN, CA, date(2026, 5, 1), None),
    ]


# --------------------------------------------------------------------------- property

PEOPLE = [someone(31), someone(32)]
# (label, recognition dates it may have): distinct dates per tier, so a roster never says one
# person entered two tiers of the group on the same day.
CATEGORIES = [
    ("低保对象", ["2023-01-01", "2025-03-01"]),
    ("低保边缘家庭成员", ["2022-05-01", "2024-06-01"]),
    ("特困人员", ["2021-07-01", "2026-01-15"]),
    ("孤儿", ["2020-02-02", "2024-06-01"]),
]
EXITS = ["", "", "2024-12-31", "2025-12-31", "2026-06-30"]


@st.composite
def rosters(draw: st.DrawFn) -> list[dict[str, str]]:
    """Identity rows about two people: at most one recognition per person and category, each
    row possibly listed several times, in any order."""
    facts = draw(
        st.dictionaries(
            st.tuples(st.integers(0, len(PEOPLE) - 1), st.integers(0, len(CATEGORIES) - 1)),
            st.tuples(st.integers(0, 1), st.sampled_from(EXITS)),
            min_size=1,
            max_size=5,
        )
    )
    keys = sorted(facts)
    repeats = draw(st.lists(st.sampled_from(keys), max_size=3))
    order = draw(st.permutations(keys + repeats))
    rows = []
    for person, category in order:
        date_index, exited = facts[(person, category)]
        label, dates = CATEGORIES[category]
        rows.append(identity_row(PEOPLE[person], label, dates[date_index], exited))
    return rows


async def _state(db: IngestDB) -> dict[str, Any]:
    return {p.name: await db.status_periods(p) for p in PEOPLE if await db.person(p) is not None}


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=rosters(), data=st.data())
async def test_loading_a_roster_twice_is_loading_it_once(
    ingest_database: IngestDatabase,
    tmp_path: Any,
    rows: list[dict[str, str]],
    data: st.DataObject,
) -> None:
    db = await ingest_database.fresh(tmp_path)
    first = await db.push(*CIVIL, rows)  # an exit before its recognition is refused, twice
    once = await db.snapshot()
    state = await _state(db)

    second = await db.push(*CIVIL, rows)

    counts = second.counts
    assert (counts.rows_total, counts.rows_rejected) == (len(rows), first.counts.rows_rejected)
    assert counts.rows_unchanged == counts.rows_accepted == first.counts.rows_accepted
    assert set(nonzero(second)) <= {
        "rows_total",
        "rows_accepted",
        "rows_rejected",
        "rows_unchanged",
    }
    assert await db.snapshot() == once
    # … and the history a roster describes does not depend on the order of its rows
    shuffled = data.draw(st.permutations(rows), label="shuffled")
    db = await ingest_database.fresh(tmp_path)
    await db.push(*CIVIL, shuffled)
    assert await _state(db) == state


async def test_the_days_a_list_and_its_exit_reached_the_exchange_are_kept(db: IngestDB) -> None:
    """000 §2 (Shanxi): benefits run from the day the list is provided to the day the exit list
    is; the exchange records both days (its clock's today), whatever the dates on the rows."""
    listed = await db.load(*CIVIL, [identity_row(A, "低保对象", "2025-03-01")])
    assert listed.status == "COMPLETED"
    [status] = await db.statuses(A)
    assert (status.listed_on, status.exit_listed_on) == (TODAY, None)

    later = date.fromordinal(TODAY.toordinal() + 20)
    exit_file = db.file([identity_row(A, "低保对象", "2025-03-01", exited="2025-09-30")])
    exiting = Ingestor(
        db.engine, db.vault, db.feeds[CIVIL], submitted_by="test", today=later, scope=None
    )
    report = RejectionReport(exit_file.with_suffix(".report.csv"))
    try:
        result = await exiting.ingest_file(exit_file, report=report)
    finally:
        report.close()
    assert nonzero(result)["exited"] == 1
    [status] = await db.statuses(A)
    assert (status.listed_on, status.valid_to, status.exit_listed_on) == (
        TODAY,  # the first list's day is not moved by the exit
        date(2025, 9, 30),
        later,
    )

    # Listed again after the exit (a new roster, not the first file again): held again, no
    # exit list in force.
    again = db.file([identity_row(A, "低保对象", "2025-03-01"), identity_row(B, "低保对象")])
    relisting = Ingestor(
        db.engine, db.vault, db.feeds[CIVIL], submitted_by="test", today=later, scope=None
    )
    report = RejectionReport(again.with_suffix(".report.csv"))
    try:
        await relisting.ingest_file(again, report=report)
    finally:
        report.close()
    [status] = await db.statuses(A)
    assert (status.valid_to, status.exit_listed_on) == (None, None)
