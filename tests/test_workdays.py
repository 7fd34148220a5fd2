"""Deadlines in Chinese working days (DOMAIN.md rule 3: 5 working days for MIB and civil
affairs, 10 for a source confirming disputed data).

The 2026 schedule as chinesecalendar 1.11.0 carries it (国办发明电〔2025〕7号):
New Year Jan 1-3 off, Sun Jan 4 worked; Spring Festival Feb 15-23 off, Sat Feb 14 and Sat
Feb 28 worked; Labour Day May 1-5 off, Sat May 9 worked; Mid-autumn Sep 25-27 off; National Day
Oct 1-7 off, Sun Sep 20 and Sat Oct 10 worked.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain import workdays
from gateway.domain.workdays import add_working_days, calendar_covers, is_working_day

LOGGER = "gateway.domain.workdays"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-year warning as if the process had just started."""
    monkeypatch.setattr(workdays, "_warned_years", set())


@pytest.mark.parametrize(
    ("day", "working"),
    [
        pytest.param(date(2026, 11, 23), True, id="ordinary-monday"),
        pytest.param(date(2026, 11, 21), False, id="ordinary-saturday"),
        pytest.param(date(2026, 1, 1), False, id="new-year-thursday"),
        pytest.param(date(2026, 1, 4), True, id="new-year-make-up-sunday"),
        pytest.param(date(2026, 2, 14), True, id="spring-festival-make-up-saturday-before"),
        pytest.param(date(2026, 2, 16), False, id="spring-festival-monday"),
        pytest.param(date(2026, 2, 23), False, id="spring-festival-last-day-monday"),
        pytest.param(date(2026, 2, 28), True, id="spring-festival-make-up-saturday-after"),
        pytest.param(date(2026, 5, 9), True, id="labour-day-make-up-saturday"),
        pytest.param(date(2026, 9, 20), True, id="national-day-make-up-sunday"),
        pytest.param(date(2026, 9, 25), False, id="mid-autumn-friday"),
        pytest.param(date(2026, 10, 1), False, id="national-day"),
        pytest.param(date(2026, 10, 7), False, id="national-day-last-day-wednesday"),
        pytest.param(date(2026, 10, 10), True, id="national-day-make-up-saturday"),
        pytest.param(datetime(2026, 10, 10, 9, 0), True, id="datetime-counts-as-its-day"),
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert is_working_day(day) is working


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        pytest.param(date(2026, 11, 20), 1, date(2026, 11, 23), id="friday-plus-1-is-monday"),
        pytest.param(date(2026, 11, 23), 1, date(2026, 11, 24), id="start-never-counts"),
        pytest.param(date(2026, 11, 23), 5, date(2026, 11, 30), id="5-days-mib-004-s1"),
        pytest.param(date(2026, 11, 23), 10, date(2026, 12, 7), id="10-days-003-s2"),
        pytest.param(date(2026, 11, 21), 1, date(2026, 11, 23), id="start-on-saturday"),
        pytest.param(date(2026, 11, 22), 5, date(2026, 11, 27), id="start-on-sunday"),
        # National Day 2026: Oct 1-7 off, Sat Oct 10 worked.
        pytest.param(date(2026, 9, 30), 1, date(2026, 10, 8), id="national-day-spanned"),
        pytest.param(date(2026, 10, 3), 1, date(2026, 10, 8), id="start-on-national-day"),
        pytest.param(date(2026, 9, 30), 3, date(2026, 10, 10), id="make-up-saturday-oct-10"),
        pytest.param(date(2026, 9, 28), 5, date(2026, 10, 10), id="5-days-across-october"),
        pytest.param(date(2026, 9, 24), 10, date(2026, 10, 15), id="10-days-mid-autumn-too"),
        pytest.param(date(2026, 9, 18), 1, date(2026, 9, 20), id="make-up-sunday-sep-20"),
        # Spring Festival 2026: Feb 15-23 off, Sat Feb 14 and Sat Feb 28 worked.
        pytest.param(date(2026, 2, 13), 1, date(2026, 2, 14), id="make-up-saturday-feb-14"),
        pytest.param(date(2026, 2, 14), 1, date(2026, 2, 24), id="spring-festival-spanned"),
        pytest.param(date(2026, 2, 12), 5, date(2026, 2, 26), id="5-days-across-festival"),
        pytest.param(date(2026, 2, 18), 1, date(2026, 2, 24), id="start-in-spring-festival"),
        pytest.param(date(2026, 2, 27), 1, date(2026, 2, 28), id="make-up-saturday-feb-28"),
        pytest.param(date(2026, 2, 12), 10, date(2026, 3, 4), id="10-days-across-festival"),
        # Labour Day and New Year.
        pytest.param(date(2026, 4, 30), 4, date(2026, 5, 9), id="labour-day-make-up-may-9"),
        pytest.param(date(2025, 12, 31), 1, date(2026, 1, 4), id="new-year-make-up-sunday"),
    ],
)
def test_add_working_days(start: date, days: int, due: date) -> None:
    assert add_working_days(start, days) == due


def test_add_working_days_takes_a_datetime_as_its_day() -> None:
    assert add_working_days(datetime(2026, 9, 30, 23, 59), 1) == date(2026, 10, 8)


@pytest.mark.parametrize("days", [0, -1])
def test_a_deadline_is_at_least_one_working_day_away(days: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        add_working_days(date(2026, 11, 23), days)


@pytest.mark.parametrize(
    ("day", "covered"),
    [
        pytest.param(date(2003, 12, 31), False, id="before-the-data"),
        pytest.param(date(2004, 1, 1), True, id="first-year"),
        pytest.param(date(2026, 12, 31), True, id="last-year"),
        pytest.param(date(2027, 1, 1), False, id="not-yet-published"),
    ],
)
def test_calendar_covers(day: date, covered: bool) -> None:
    assert calendar_covers(day) is covered


def test_the_library_still_refuses_2027() -> None:
    # The premise of the fallback; when a release with 2027 is installed, this fails and the
    # year-end cases below need a new uncovered year.
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))


# -- years the installed schedule does not cover: Monday-Friday, one warning per year --------


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        # Dec 29-31 from the 2026 schedule, then 2027 by weekday: New Year's Day 2027 (a Friday)
        # counts, because its holiday is not yet known.
        pytest.param(date(2026, 12, 28), 5, date(2027, 1, 4), id="year-end-into-2027"),
        pytest.param(date(2026, 12, 31), 1, date(2027, 1, 1), id="new-year-2027-approximate"),
        pytest.param(date(2027, 1, 1), 1, date(2027, 1, 4), id="weekend-skipped"),
        pytest.param(date(2026, 12, 24), 10, date(2027, 1, 7), id="10-days-into-2027"),
    ],
)
def test_uncovered_year_falls_back_to_monday_to_friday(
    start: date, days: int, due: date, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert add_working_days(start, days) == due
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


def test_uncovered_year_warns_once_per_year(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert add_working_days(date(2026, 12, 28), 5) == date(2027, 1, 4)
        assert add_working_days(date(2027, 3, 1), 5) == date(2027, 3, 8)
        assert is_working_day(date(2027, 1, 2)) is False
        assert add_working_days(date(2028, 1, 3), 1) == date(2028, 1, 4)
    records = [record for record in caplog.records if record.name == LOGGER]
    assert [record.levelno for record in records] == [logging.WARNING, logging.WARNING]
    first, second = (record.getMessage() for record in records)
    assert "2027" in first
    assert "approximate" in first
    assert "2028" in second


def test_covered_years_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        add_working_days(date(2026, 9, 30), 10)
        calendar_covers(date(2027, 1, 1))  # asking is not using
    assert caplog.records == []


# -- properties ------------------------------------------------------------------------------


@given(
    start=st.dates(min_value=date(2004, 1, 1), max_value=date(2028, 12, 31)),
    days=st.integers(min_value=1, max_value=60),
)
def test_deadline_is_the_days_th_working_day_after_start(start: date, days: int) -> None:
    due = add_working_days(start, days)
    assert due > start
    assert is_working_day(due)
    between = [start + timedelta(days=n) for n in range(1, (due - start).days + 1)]
    assert sum(is_working_day(day) for day in between) == days


@given(
    start=st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 9, 30)),
    days=st.integers(min_value=1, max_value=60),
)
def test_deadline_agrees_with_the_librarys_own_count(start: date, days: int) -> None:
    due = add_working_days(start, days)
    counted = chinese_calendar.get_workdays(start + timedelta(days=1), due)
    assert len(counted) == days
    assert counted[-1] == due
