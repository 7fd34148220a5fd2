"""The one clock: everything that depends on today's date reads :func:`today`.

``RELIEF_TODAY`` (development only) pins the date so rules and deadlines can be tested on any
day; production refuses it (see ``gateway.runtime.production``).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone

# Chinese administrative days run on Beijing time, whatever the server's timezone.
CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")


def today() -> date:
    pinned = os.environ.get("RELIEF_TODAY", "").strip()
    if pinned:
        return date.fromisoformat(pinned)
    return datetime.now(CHINA_TZ).date()


def now_utc() -> datetime:
    return datetime.now(UTC)


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
