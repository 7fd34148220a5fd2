"""Chinese working days (工作日), the unit of every closed-loop deadline.

DOMAIN.md rule 3: MIB marks identities within 5 working days of receiving a list (004 §1),
civil affairs answers a push within 5 (000 §1), a source confirms disputed data within 10
(003 §2). Working days follow the State Council's yearly holiday schedule (国务院办公厅关于
节假日安排的通知): public holidays are off, and the make-up working days (调休) around them —
often a Saturday or Sunday — are working days.

The schedule comes from the ``chinese_calendar`` package (pip name ``chinesecalendar``), which
ships one year at a time as the State Council publishes it, usually in November for the next
year. For a year it does not cover (1.11.0 covers 2004-2026), a deadline is still needed: a
clerk receiving a list on 2026-12-28 must be told when to answer. So such a year falls back to
Monday-Friday and logs one warning per year on the ``gateway.domain.workdays`` logger, saying that
deadlines are approximate until a ``chinesecalendar`` release with that year is installed. The
approximation errs both ways (New Year's Day 2027 counts as a working day; a make-up Saturday
does not), so it is a reason to upgrade the package, never a reason to refuse the record.

    >>> add_working_days(date(2026, 9, 30), 1)  # National Day 2026: Oct 1-7 off
    datetime.date(2026, 10, 8)
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta

import chinese_calendar

__all__ = ["add_working_days", "calendar_covers", "is_working_day"]

log = logging.getLogger(__name__)

_ONE_DAY = timedelta(days=1)
_warned_years: set[int] = set()
_warned_lock = threading.Lock()


def calendar_covers(day: date) -> bool:
    """Whether the installed holiday schedule covers ``day``'s year (else Monday-Friday)."""
    try:
        chinese_calendar.is_workday(_as_date(day))
    except NotImplementedError:
        return False
    return True


def is_working_day(day: date) -> bool:
    """Whether ``day`` is a Chinese working day: holidays off, make-up days (调休) on.

    Outside the installed schedule: Monday to Friday, with a warning once per year.
    """
    day = _as_date(day)
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_once(day.year)
        return day.weekday() < 5


def add_working_days(start: date, days: int) -> date:
    """The ``days``-th working day after ``start``: the deadline of "within N working days".

    ``start`` (the day a list or push is received) never counts, even when it is a working
    day, so a list received on a Friday with a 1-day deadline is due the next working day.

    Raises:
        ValueError: if ``days`` is less than 1 (a deadline is at least one working day away).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    day = _as_date(start)
    remaining = days
    while remaining:
        day += _ONE_DAY
        if is_working_day(day):
            remaining -= 1
    return day


def _as_date(day: date) -> date:
    # A datetime is a date to the type checker; deadlines are whole days.
    return day.date() if isinstance(day, datetime) else day


def _warn_once(year: int) -> None:
    with _warned_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    log.warning(
        "The State Council holiday schedule for %d is not in the installed chinesecalendar "
        "package (not yet published, or the package is out of date): %d counts Monday to "
        "Friday as working days, so deadlines in it are approximate. Install a chinesecalendar "
        "release that covers %d.",
        year,
        year,
        year,
    )
