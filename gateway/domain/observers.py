"""How services report what they did, without knowing who listens.

Ingest (``adapters.pipeline``), the warning run (``gateway.loop.warnings``) and the read
routing (``gateway.storage.replica``) call the functions here; the shell registers the
listeners it wants (``gateway.http.metrics`` counts them for Prometheus) when it starts. With
nobody registered — a tool, a test of a service alone — reporting costs a loop over an empty
list. A listener that raises is logged and skipped: a
broken counter never fails an ingest or a warning run.

    observers.register(PrometheusObserver())   # the shell, once per process
    observers.ingest_rows("civil_affairs/identities", accepted=24, rejected=3, unchanged=13)
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Observer(Protocol):
    def ingest_rows(self, feed: str, *, accepted: int, rejected: int, unchanged: int) -> None:
        """Rows of one committed ingest chunk, by outcome (``feed`` is ``department/feed``)."""

    def warning_run(self, province: str, *, warnings: int, seconds: float, failed: bool) -> None:
        """One monthly warning run, completed or failed, and how long it took."""

    def replica_read(self, database: str) -> None:
        """One request's reads ran on ``replica`` or ``primary`` (a replica is configured)."""

    def replica_fallback(self, reason: str) -> None:
        """A read the replica would have served went to the primary (``gateway.storage.replica``:
        ``unreachable``, ``error``, ``lagging``, ``not_in_recovery``, ``unknown``, ``busy``)."""

    def replica_lag(self, seconds: float | None) -> None:
        """The replica's lag found by its last probe (None: unknown or unreachable)."""


_observers: list[Observer] = []


def register(observer: Observer) -> None:
    """Add ``observer`` (once: registering the same object again changes nothing)."""
    if not any(existing is observer for existing in _observers):
        _observers.append(observer)


def unregister(observer: Observer) -> None:
    _observers[:] = [existing for existing in _observers if existing is not observer]


def ingest_rows(feed: str, *, accepted: int, rejected: int, unchanged: int) -> None:
    for observer in tuple(_observers):
        try:
            observer.ingest_rows(feed, accepted=accepted, rejected=rejected, unchanged=unchanged)
        except Exception:
            log.exception("observer %s failed on ingest_rows", type(observer).__name__)


def warning_run(province: str, *, warnings: int, seconds: float, failed: bool) -> None:
    for observer in tuple(_observers):
        try:
            observer.warning_run(province, warnings=warnings, seconds=seconds, failed=failed)
        except Exception:
            log.exception("observer %s failed on warning_run", type(observer).__name__)


def replica_read(database: str) -> None:
    _each("replica_read", database)


def replica_fallback(reason: str) -> None:
    _each("replica_fallback", reason)


def replica_lag(seconds: float | None) -> None:
    _each("replica_lag", seconds)


def _each(event: str, *args: object) -> None:
    for observer in tuple(_observers):
        report = getattr(observer, event, None)  # a listener may care for some events only
        if report is None:
            continue
        try:
            report(*args)
        except Exception:
            log.exception("observer %s failed on %s", type(observer).__name__, event)
