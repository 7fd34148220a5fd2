"""Verification tasks and deadlines (DOMAIN.md rule 3; ``gateway.loop.tasks``).

004 §1: medical insurance checks enrollment and marks the identities of a list within 5
working days of receiving it. So a completed identities batch of civil affairs or rural
revitalisation opens, for medical insurance, one task per person whose identity the batch added
or changed (and who holds it now), due 5 Chinese working days later; exits, unchanged rows and a
file loaded again open nothing. Deadlines count Chinese working days (National Day off, make-up
Saturdays on), and a task's state is read against them: due today is not overdue.

Files go through the public ingest path (``adapters.pipeline.Ingestor`` with the province's
rules, as the CLI builds it) into a gateway of this module alone, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.mapping import load_feeds
from adapters.pipeline import Ingestor, IngestResult
from gateway.domain import clock
from gateway.domain.settings import Province
from gateway.domain.workdays import add_working_days, is_working_day
from gateway.loop.config import load_rules
from gateway.loop.tasks import (
    TaskKind,
    TaskState,
    due_soon_until,
    opens_verification,
    recognisable_categories,
    task_state,
    verification_opener,
    working_days_left,
)
from gateway.storage.models import Task
from tests.exchange_support import (
    Someone,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    person_id,
    someone,
)
from tests.harness import Harness
from tests.ingest_support import write_rows

CIVIL_COUNTY = "370104"  # 济南市槐荫区
RURAL_COUNTY = "370112"  # 济南市历城区
RULES = load_rules(Province.SHANDONG)
FEEDS = load_feeds()  # the shipped mappings (adapters/mappings)


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


async def load(
    gateway: Harness,
    source: str,
    rows: list[dict[str, str]],
    path: Path,
    *,
    with_rules: bool = True,
) -> IngestResult:
    """Load a file as ``relief-gateway ingest`` does (the CLI passes the province's rules)."""
    write_rows(path, rows)
    ingestor = Ingestor(
        gateway.runtime.engine,
        gateway.runtime.vault,
        gateway.runtime.feeds[(source, "identities")],
        submitted_by=f"test:{source}",
        today=clock.today(),
        on_completed=verification_opener(gateway.runtime.rules, clock.today())
        if with_rules
        else None,
    )
    return await ingestor.ingest_file(path)


async def opened_by(gateway: Harness, batch_id: uuid.UUID | None) -> dict[uuid.UUID, Any]:
    """The tasks a batch opened, by person."""
    assert batch_id is not None
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(select(*Task.__table__.c).where(Task.batch_id == batch_id))
        return {uuid.UUID(str(row.person_id)): row for row in rows}


async def ids(gateway: Harness, *people: Someone) -> list[uuid.UUID]:
    return [await person_id(gateway, p.id_number) for p in people]


# ============================================================================ opening
async def test_civil_affairs_list_opens_verification_for_adds_and_tier_changes_not_exits(
    gw: Harness, tmp_path: Path
) -> None:
    a, b, c, d = (someone(n, CIVIL_COUNTY) for n in range(100, 104))
    first = await load(
        gw,
        "civil_affairs",
        [
            identity(a, "低保对象"),  # 新增
            identity(b, "低保边缘家庭成员"),  # 新增
            identity(c, "低保对象", exited_on="2026-10-01"),  # recognised and exited: not held
            identity(d, "低保对象"),
            identity(d, "孤儿"),  # two identities in one list: one task, the highest-ranked
        ],
        tmp_path / "民政2026-10.csv",
    )
    assert first.status == "COMPLETED"
    tasks = await opened_by(gw, first.batch_id)
    pa, pb, _exited, pd = await ids(gw, a, b, c, d)
    assert set(tasks) == {pa, pb, pd}
    assert {p: tasks[p].category for p in tasks} == {
        pa: "MINIMUM_LIVING",
        pb: "MINIMUM_LIVING_EDGE",
        pd: "ORPHAN",  # 特困/孤儿 rank above 低保 (rules.toml)
    }
    today = clock.today()
    for task in tasks.values():
        assert task.kind == TaskKind.IDENTITY_VERIFICATION
        assert task.department == "medical_insurance"
        assert task.county_code == CIVIL_COUNTY
        assert task.source_key == f"batch:{first.batch_id}"
        assert (task.status, task.opened_on) == ("OPEN", today)
        assert task.due_on == add_working_days(today, 5)  # 004 §1

    # The next month: b moves up a tier (身份变更), a exits, d is listed unchanged.
    second = await load(
        gw,
        "civil_affairs",
        [
            identity(a, "低保对象", exited_on="2026-11-01"),
            identity(b, "低保对象", recognized_on="2026-06-01"),
            identity(d, "孤儿"),
        ],
        tmp_path / "民政2026-11.csv",
    )
    assert (second.counts.identity_changed, second.counts.exited) == (1, 1)
    assert {p: t.category for p, t in (await opened_by(gw, second.batch_id)).items()} == {
        pb: "MINIMUM_LIVING"
    }


async def test_a_list_loaded_again_opens_nothing(gw: Harness, tmp_path: Path) -> None:
    person = someone(110, CIVIL_COUNTY)
    rows = [identity(person, "特困人员")]
    first = await load(gw, "civil_affairs", rows, tmp_path / "a.csv")
    assert len(await opened_by(gw, first.batch_id)) == 1
    same_file = await load(gw, "civil_affairs", rows, tmp_path / "a.csv")
    assert same_file.status == "DUPLICATE"
    assert same_file.batch_id is None
    # The same rows in another file (English headers): a new batch, every row unchanged.
    english = [identity(person, "特困人员", english=True)]
    other_file = await load(gw, "civil_affairs", english, tmp_path / "b.csv")
    assert other_file.counts.rows_unchanged == 1
    assert await opened_by(gw, other_file.batch_id) == {}
    async with gw.runtime.engine.connect() as connection:
        found = await connection.execute(
            select(Task.id).where(Task.person_id == await person_id(gw, person.id_number))
        )
        assert len(found.all()) == 1


async def test_rural_revitalisation_list_opens_verification(gw: Harness, tmp_path: Path) -> None:
    monitored, lifted = someone(120, RURAL_COUNTY), someone(121, RURAL_COUNTY)
    result = await load(
        gw,
        "rural_revitalization",
        [identity(monitored, "脱贫不稳定人口"), identity(lifted, "脱贫人口")],
        tmp_path / "乡村振兴.csv",
    )
    tasks = await opened_by(gw, result.batch_id)
    pm, pl = await ids(gw, monitored, lifted)
    assert {p: t.category for p, t in tasks.items()} == {
        pm: "MONITORED_UNSTABLE",
        pl: "LIFTED_FROM_POVERTY",
    }
    assert {t.county_code for t in tasks.values()} == {RURAL_COUNTY}


async def test_without_the_province_rules_the_pipeline_opens_no_task(
    gw: Harness, tmp_path: Path
) -> None:
    """Tools and the pipeline's own tests run it without rules: nothing is pushed."""
    result = await load(
        gw,
        "civil_affairs",
        [identity(someone(130, CIVIL_COUNTY), "低保对象")],
        tmp_path / "x.csv",
        with_rules=False,
    )
    assert result.counts.added == 1
    assert await opened_by(gw, result.batch_id) == {}


@pytest.mark.parametrize(
    ("department", "feed", "verified"),
    [
        ("civil_affairs", "identities", True),
        ("rural_revitalization", "identities", True),
        ("disabled_federation", "certificates", False),  # not a list medical insurance marks
        ("medical_insurance", "enrollments", False),
        ("medical_insurance", "settlements", False),
        ("health", "vital_events", False),
    ],
)
def test_which_lists_medical_insurance_verifies(department: str, feed: str, verified: bool) -> None:
    assert opens_verification(FEEDS[(department, feed)]) is verified


# ============================================================================ deadlines
async def test_deadline_spans_national_day_and_ends_on_a_make_up_saturday(
    gw: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Received Monday 2026-09-28: Sep 29, 30, (Oct 1-7 off), Oct 8, 9 and the make-up
    working Saturday Oct 10 are the 5 working days."""
    monkeypatch.setenv("RELIEF_TODAY", "2026-09-28")
    person = someone(140, CIVIL_COUNTY)
    result = await load(
        gw,
        "civil_affairs",
        [identity(person, "低保对象", recognized_on="2026-09-01")],
        tmp_path / "国庆前.csv",
    )
    (task,) = (await opened_by(gw, result.batch_id)).values()
    assert (task.opened_on, task.due_on) == (date(2026, 9, 28), date(2026, 10, 10))
    assert task.due_on.weekday() == 5  # a Saturday,
    assert is_working_day(task.due_on)  # and a working day (调休)


@pytest.mark.parametrize(
    ("opened_on", "due_on"),
    [
        (date(2026, 9, 28), date(2026, 10, 10)),  # ends on the make-up Saturday
        (date(2026, 9, 30), date(2026, 10, 13)),  # Oct 8, 9, 10 (Sat), 12, 13
        (date(2026, 10, 3), date(2026, 10, 13)),  # received in the holiday: Oct 8 is day 1
        (date(2026, 11, 20), date(2026, 11, 27)),  # Friday: the day received never counts
        (date(2026, 11, 23), date(2026, 11, 30)),
    ],
)
def test_task_deadline_is_five_chinese_working_days(opened_on: date, due_on: date) -> None:
    assert add_working_days(opened_on, RULES.task_working_days) == due_on


# ============================================================================ states
TODAY = date(2026, 11, 23)  # a Monday; due soon = due by Wednesday 2026-11-25


@pytest.mark.parametrize(
    ("status", "due_on", "state", "left"),
    [
        ("OPEN", date(2026, 11, 20), TaskState.OVERDUE, -1),  # Friday's deadline, now Monday
        ("OPEN", date(2026, 11, 16), TaskState.OVERDUE, -5),  # a week late: 5 working days
        ("OPEN", date(2026, 11, 23), TaskState.DUE_SOON, 0),  # due today is not overdue
        ("OPEN", date(2026, 11, 24), TaskState.DUE_SOON, 1),
        ("OPEN", date(2026, 11, 25), TaskState.DUE_SOON, 2),  # the last due-soon day
        ("OPEN", date(2026, 11, 26), TaskState.OPEN, 3),
        ("WAITING", date(2026, 11, 30), TaskState.WAITING, 5),
        ("WAITING", date(2026, 11, 24), TaskState.DUE_SOON, 1),  # deadline first
        ("WAITING", date(2026, 11, 22), TaskState.OVERDUE, -1),
        ("ANSWERED", date(2026, 11, 20), TaskState.ANSWERED, None),  # answered late: answered
        ("ANSWERED", date(2026, 11, 30), TaskState.ANSWERED, None),
    ],
)
def test_task_state_at_its_boundaries(
    status: str, due_on: date, state: TaskState, left: int | None
) -> None:
    assert task_state(status, due_on, TODAY, due_soon_until(TODAY, RULES)) is state
    if left is not None:
        assert working_days_left(due_on, TODAY) == left


@pytest.mark.parametrize(
    ("today", "due_on", "state", "left"),
    [
        # On the eve of National Day "2 working days" reach past the holiday to Oct 9.
        (date(2026, 9, 30), date(2026, 10, 8), TaskState.DUE_SOON, 1),
        (date(2026, 9, 30), date(2026, 10, 9), TaskState.DUE_SOON, 2),
        (date(2026, 9, 30), date(2026, 10, 10), TaskState.OPEN, 3),  # make-up Saturday
        # A deadline missed on Sep 30 is overdue through the holiday, at least by one.
        (date(2026, 10, 3), date(2026, 9, 30), TaskState.OVERDUE, -1),
        (date(2026, 10, 8), date(2026, 9, 30), TaskState.OVERDUE, -1),
    ],
)
def test_task_state_across_national_day(
    today: date, due_on: date, state: TaskState, left: int
) -> None:
    assert task_state("OPEN", due_on, today, due_soon_until(today, RULES)) is state
    assert working_days_left(due_on, today) == left


@given(
    today=st.dates(date(2025, 1, 1), date(2026, 12, 31)),
    offset=st.integers(-40, 40),
    status=st.sampled_from(["OPEN", "WAITING", "ANSWERED"]),
)
def test_overdue_is_exactly_an_unanswered_task_past_its_due_date(
    today: date, offset: int, status: str
) -> None:
    due_on = today + timedelta(days=offset)
    state = task_state(status, due_on, today, due_soon_until(today, RULES))
    assert (state is TaskState.OVERDUE) == (status != "ANSWERED" and due_on < today)
    assert (working_days_left(due_on, today) < 0) == (due_on < today)


# ============================================================================ categories
@pytest.mark.parametrize(
    ("department", "categories"),
    [
        (
            "civil_affairs",
            {
                "EXTREME_POVERTY",
                "MINIMUM_LIVING",
                "MINIMUM_LIVING_EDGE",
                "RIGID_EXPENDITURE",
                "SERIOUS_ILLNESS",
                "ORPHAN",
                "UNSUPPORTED_CHILD",
            },
        ),
        (
            "rural_revitalization",
            {
                "RETURNED_TO_POVERTY",
                "MONITORED_UNSTABLE",
                "MONITORED_MARGINAL",
                "MONITORED_SUDDEN_HARDSHIP",
                "LIFTED_FROM_POVERTY",
            },
        ),
        ("medical_insurance", set()),
        ("health", set()),
    ],
)
def test_a_department_recognises_the_categories_of_its_own_lists(
    department: str, categories: set[str]
) -> None:
    assert recognisable_categories(FEEDS, department) == categories
