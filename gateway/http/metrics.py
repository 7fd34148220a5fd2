"""Prometheus metrics (``GET /metrics``): what the province's operations team watches.

    relief_graphql_requests_total{operation, outcome}        requests
    relief_graphql_request_seconds{operation}                 latency histogram
    relief_authz_denials_total{department, kind}              FORBIDDEN fields/arguments, 403s
    relief_ingest_rows_total{feed, outcome}                   rows accepted/rejected/unchanged …
    relief_warning_runs_total{province, outcome}              monthly warning runs
    relief_warning_run_warnings_total{province}               warnings those runs produced
    relief_warning_run_seconds{province}                      their duration
    relief_task_backlog{department, state}                    open / overdue tasks (scrape time)
    relief_replica_reads_total{database}                      requests' reads: replica / primary
    relief_replica_fallbacks_total{reason}                    reads the replica should have
                                                              served, on the primary instead
    relief_replica_lag_seconds                                the replica's lag at its last probe

Labels are bounded: operation names are GraphQL names the gateway has seen, at most
``MAX_OPERATIONS`` per process (then ``other``; unnamed: ``anonymous``); departments and feeds
come from fixed lists. No label ever carries a subject, a region below the department, or a
value from a record.

Several worker processes (``serve --workers N``): each keeps its own counters; with
``PROMETHEUS_MULTIPROC_DIR`` set (``serve`` sets it for N > 1) they are written to files there
and ``/metrics`` in any worker adds them up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.domain import observers

REGISTRY = CollectorRegistry()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "relief_graphql_requests",
    "GraphQL requests by operation name and outcome",
    ["operation", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "relief_graphql_request_seconds",
    "GraphQL request latency by operation name (authentication to response, audit included)",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DENIALS = Counter(
    "relief_authz_denials",
    "Authorization denials by the caller's department: fields or arguments refused "
    "(kind=field) and whole requests refused for their purpose (kind=purpose)",
    ["department", "kind"],
    registry=REGISTRY,
)
INGEST_ROWS = Counter(
    "relief_ingest_rows",
    "Ingested rows by feed (source/feed) and outcome",
    ["feed", "outcome"],
    registry=REGISTRY,
)
WARNING_RUNS = Counter(
    "relief_warning_runs",
    "Monthly high-cost warning runs by province and outcome (completed/failed)",
    ["province", "outcome"],
    registry=REGISTRY,
)
WARNINGS_PRODUCED = Counter(
    "relief_warning_run_warnings",
    "New warnings produced by warning runs",
    ["province"],
    registry=REGISTRY,
)
WARNING_RUN_SECONDS = Histogram(
    "relief_warning_run_seconds",
    "Duration of warning runs",
    ["province"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
# Which path answered a GraphQL request (issue 17): "compiled" (one SQL statement per root
# field, schema.compiled) or "executor" (strawberry/graphql-core, the reference).
GRAPHQL_PATHS = Counter(
    "relief_graphql_path",
    "GraphQL requests by the path that answered them (compiled/executor)",
    ["path"],
    registry=REGISTRY,
)
# Reads from a streaming replica (RELIEF_DATABASE_REPLICA_URL, gateway.storage.replica); counted
# only when a replica is configured.
REPLICA_READS = Counter(
    "relief_replica_reads",
    "GraphQL requests by the database their reads ran on (replica/primary)",
    ["database"],
    registry=REGISTRY,
)
REPLICA_FALLBACKS = Counter(
    "relief_replica_fallbacks",
    "Lag-tolerant reads served by the primary because the replica was unreachable, failed "
    "mid-request (error), lagged beyond RELIEF_DATABASE_REPLICA_MAX_LAG_SECONDS, was not in "
    "recovery, not yet probed (unknown), or had no free connection (busy)",
    ["reason"],
    registry=REGISTRY,
)
REPLICA_LAG = Gauge(
    "relief_replica_lag_seconds",
    "How old the replica's data may be, at its last probe (-1: unknown or unreachable)",
    registry=REGISTRY,
    multiprocess_mode="max",
)

MAX_OPERATIONS = 200
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DIGITS = re.compile(r"\d{6,}")
_seen_operations: set[str] = set()


def operation_label(name: str | None) -> str:
    """A bounded label for a client-chosen operation name."""
    if not name or name == "anonymous":
        return "anonymous"
    if name in _seen_operations:
        return name
    # A name is the client's text: a run of digits could be an ID number typed into it.
    if not _NAME.fullmatch(name) or _DIGITS.search(name):
        return "other"
    if len(_seen_operations) >= MAX_OPERATIONS:
        return "other"
    _seen_operations.add(name)
    return name


def observe_request(operation: str | None, outcome: str, seconds: float) -> str:
    """Count one GraphQL request; returns the operation label used (the request log uses it)."""
    label = operation_label(operation)
    REQUESTS.labels(operation=label, outcome=outcome).inc()
    LATENCY.labels(operation=label).observe(seconds)
    return label


class PrometheusObserver:
    """What the services report (``gateway.domain.observers``), as Prometheus counters."""

    def ingest_rows(self, feed: str, *, accepted: int, rejected: int, unchanged: int) -> None:
        for outcome, value in (
            ("accepted", accepted),
            ("rejected", rejected),
            ("unchanged", unchanged),
        ):
            if value:
                INGEST_ROWS.labels(feed=feed, outcome=outcome).inc(value)

    def warning_run(self, province: str, *, warnings: int, seconds: float, failed: bool) -> None:
        WARNING_RUNS.labels(province=province, outcome="failed" if failed else "completed").inc()
        if not failed:
            WARNINGS_PRODUCED.labels(province=province).inc(warnings)
        WARNING_RUN_SECONDS.labels(province=province).observe(seconds)

    def replica_read(self, database: str) -> None:
        REPLICA_READS.labels(database=database).inc()

    def replica_fallback(self, reason: str) -> None:
        REPLICA_FALLBACKS.labels(reason=reason).inc()

    def replica_lag(self, seconds: float | None) -> None:
        REPLICA_LAG.set(-1.0 if seconds is None else seconds)


OBSERVER = PrometheusObserver()


def observe_services() -> None:
    """Count what ingest and the warning run report, in this process (the shell calls it)."""
    observers.register(OBSERVER)


# ------------------------------------------------------------------- task backlog


class TaskBacklog(Collector):
    """Open and overdue tasks per department that must answer them, as computed at scrape
    time (``gateway.loop.tasks.backlog_by_department``: one grouped query)."""

    def __init__(self, rows: Iterable[tuple[str, int, int]]) -> None:
        self._rows = list(rows)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "relief_task_backlog",
            "Tasks not yet answered (state=open) and those past their due date (state=overdue), "
            "by the department that must answer",
            labels=["department", "state"],
        )
        for department, open_tasks, overdue in self._rows:
            family.add_metric([department, "open"], open_tasks)
            family.add_metric([department, "overdue"], overdue)
        yield family


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text ``/metrics`` serves: this process's registry, or every worker's files in
    multiprocess mode, plus collectors computed at scrape time."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    scrape_time = CollectorRegistry()
    for collector in extra:
        scrape_time.register(collector)
    return body + generate_latest(scrape_time)
