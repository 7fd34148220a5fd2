"""The one clock: everything that depends on today's date reads :func:`today`.

``RELIEF_TODAY`` (development only) pins the date so rules and deadlines can be tested on any
day; production refuses it (see ``gateway.runtime.production``). Tests move the instant with
:func:`travel` (a policy line's validity end, issue 16) instead of sleeping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone

# Chinese administrative days run on Beijing time, whatever the server's timezone.
CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")


def today() -> date:
    pinned = os.environ.get("RELIEF_TODAY", "").strip()
    if pinned:
        return date.fromisoformat(pinned)
    return datetime.now(CHINA_TZ).date()


# Tests only (``travel``): added to the wall clock by ``now_utc``. Never set by the gateway.
_shift = timedelta(0)


def now_utc() -> datetime:
    return datetime.now(UTC) + _shift


@contextmanager
def travel(to: datetime) -> Iterator[None]:
    """Tests only: ``now_utc()`` reads ``to`` (then runs on from there) inside the block, in
    every part of this process. ``today()`` is left to ``RELIEF_TODAY``."""
    global _shift
    if to.tzinfo is None:
        raise ValueError("travel() needs an aware datetime")
    saved = _shift
    _shift = to - datetime.now(UTC)
    try:
        yield
    finally:
        _shift = saved


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime. SQLite keeps ``DateTime(timezone=True)``
    values as naive text (the UTC the gateway wrote); PostgreSQL returns them aware."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def beijing_day_start(day: date) -> datetime:
    """00:00 Beijing time of ``day``, as UTC (comparable with stored timestamps on both
    databases: SQLite compares the naive UTC text)."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).astimezone(UTC)
