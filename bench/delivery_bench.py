#!/usr/bin/env python3
"""Webhook delivery figures (issue 18 "Figures for the closing note"), on PostgreSQL.

    .venv/bin/python bench/delivery_bench.py                 # defaults below
    .venv/bin/python bench/delivery_bench.py --persons 1000 --throughput 2000 --backlog 10000

1. **Throughput**: deliveries per second of ONE worker process (this one, one
   ``DeliveryWorker`` at RELIEF_DELIVERY_CONCURRENCY) to a receiver on loopback: ``--throughput``
   ``warning.raised`` events (one per person, so the per-person order never serialises them),
   each rendered through civil affairs' policy (``person(idNumber)``), audited, signed with
   HMAC-SHA-256, POSTed and recorded. Timed from the first claim to the last DELIVERED. Twice:
   on the freshly filled table (never analysed: PostgreSQL plans the order gate's anti-join
   on the wrong index) and again after ``ANALYZE`` (what autovacuum does within a minute).
2. **Latency**: the worker running as in ``serve`` (LISTEN relief_delivery); ``--latency``
   single events committed one after another; from the moment the committing transaction
   returned to the receiver's receipt of the request; p50 / p99.
3. **Outage**: ``--backlog`` pending deliveries (five events per person) while the receiver is
   down for one hour of simulated time (``clock.travel``: the worker is stepped from one due
   moment to the next, so the hour costs seconds); how many HTTP requests the breaker let
   through during the hour, when the first request after recovery went out (simulated), and
   the real time to drain the backlog after that.

The receiver is ``tests.delivery_support.Receiver`` (``http.server`` threads, verifying every
signature), in this process; it shares the two cores with the worker and PostgreSQL, so the
figures are a floor for a real deployment. The load average before and after is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("RELIEF_TODAY", "2026-11-23")
os.environ["RELIEF_DELIVERY_WORKER"] = "false"


sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: its sibling module by path
from ingest_bench import postgres_cpu_s


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def bench(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    from sqlalchemy import func, select, text

    from gateway.domain import clock
    from gateway.runtime.delivery import DeliveryWorker
    from gateway.storage import deliveries as store
    from gateway.storage.models import OutboxEvent, Person, WebhookDelivery, WebhookEndpoint
    from gateway.storage.outbox import Event, EventKind, emit_rows
    from tests.delivery_support import Receiver
    from tests.harness import build_harness

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relief-delivery-bench-") as work:
        log(f"seeding {args.persons:,} people")
        gw = await build_harness(Path(work), dsn, backend="postgres", persons=args.persons)
        engine = gw.runtime.engine
        async with engine.connect() as connection:
            people = [
                (row.id, row.region_code[:6])
                for row in await connection.execute(
                    select(Person.id, Person.region_code).where(Person.region_code.like("37%"))
                )
            ]
        log(f"{len(people):,} people in Shandong")
        receiver = Receiver()

        async def new_endpoint(name: str) -> uuid.UUID:
            row, secret = await store.create_endpoint(
                engine,
                gw.runtime.vault.cipher,
                store.NewEndpoint(
                    name, "civil_affairs", "province", "37", receiver.url, "HMAC-SHA256",
                    (EventKind.WARNING_RAISED,),
                ),
                created_by="bench",
                production=False,
            )  # fmt: skip
            receiver.secret = secret
            return uuid.UUID(str(row.id))

        async def emit(count: int, tag: str) -> None:
            batch: list[Event] = []
            for n in range(count):
                person, county = people[n % len(people)]
                batch.append(
                    Event(
                        kind=EventKind.WARNING_RAISED,
                        audience="civil_affairs",
                        county_code=county,
                        person_id=person,
                        subject_type="warning",
                        subject_id=str(uuid.uuid4()),
                        dedupe_key=f"bench:{tag}:{n}",
                    )
                )
                if len(batch) == 1000:
                    async with engine.begin() as connection:
                        await emit_rows(connection, batch)
                    batch = []
            if batch:
                async with engine.begin() as connection:
                    await emit_rows(connection, batch)

        async def disable(endpoint_id: uuid.UUID) -> None:
            await store.disable_endpoint(engine, endpoint_id, by="bench")

        # ---- 1. throughput
        hook = await new_endpoint("throughput")
        count = min(args.throughput, len(people))
        await emit(count, "throughput")
        worker = DeliveryWorker(gw.runtime, name="bench")
        before = load()
        started = time.perf_counter()
        await worker.drain()
        seconds = time.perf_counter() - started
        results["throughput"] = {
            "deliveries": worker.counts.delivered,
            "seconds": seconds,
            "per_second": worker.counts.delivered / seconds,
            "concurrency": worker.concurrency,
            "load": f"{before} → {load()}",
        }
        log(f"throughput: {results['throughput']}")
        await worker.close()
        await disable(hook)

        # ---- 1b. the same with the planner's statistics current (autovacuum analyses a table
        # within a minute of such a burst; the first run above met a table never analysed,
        # where the order gate's anti-join is planned on the wrong index)
        hook = await new_endpoint("throughput-analysed")
        await emit(count, "throughput-analysed")
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE webhook_delivery"))
        worker = DeliveryWorker(gw.runtime, name="bench-analysed")
        before = load()
        cpu_before, pg_before = time.process_time(), postgres_cpu_s(args.postmaster)
        started = time.perf_counter()
        await worker.drain()
        seconds = time.perf_counter() - started
        await asyncio.sleep(1)  # the postmaster reaps nothing here, but let the counters settle
        done = max(worker.counts.delivered, 1)
        results["throughput_analysed"] = {
            "deliveries": worker.counts.delivered,
            "seconds": seconds,
            "per_second": worker.counts.delivered / seconds,
            # this process holds the worker AND the loopback receiver: a ceiling on the worker's
            "process_cpu_ms_per_delivery": 1000 * (time.process_time() - cpu_before) / done,
            "postgres_cpu_ms_per_delivery": 1000
            * (postgres_cpu_s(args.postmaster) - pg_before)
            / done,
            "load": f"{before} → {load()}",
        }
        log(f"throughput (analysed): {results['throughput_analysed']}")
        await worker.close()
        await disable(hook)

        # ---- 2. latency (the serve worker, woken by NOTIFY)
        hook = await new_endpoint("latency")
        arrivals: dict[str, float] = {}
        original = receiver._handle

        def timed(handler: Any, body: bytes) -> None:
            arrivals[handler.headers.get("webhook-id", "")] = time.perf_counter()
            original(handler, body)

        receiver._handle = timed  # type: ignore[method-assign]
        worker = DeliveryWorker(gw.runtime, name="bench-serve")
        worker.start()
        await asyncio.sleep(1.0)
        latencies: list[float] = []
        before = load()
        for n in range(args.latency):
            person, county = people[n % len(people)]
            async with engine.begin() as connection:
                emitted = await emit_rows(
                    connection,
                    [
                        Event(
                            kind=EventKind.WARNING_RAISED,
                            audience="civil_affairs",
                            county_code=county,
                            person_id=person,
                            subject_type="warning",
                            subject_id=str(uuid.uuid4()),
                            dedupe_key=f"bench:latency:{n}",
                        )
                    ],
                )
                event_id = (
                    await connection.execute(
                        select(OutboxEvent.event_id).where(OutboxEvent.emit_id == emitted)
                    )
                ).scalar_one()
            committed = time.perf_counter()
            key = f"evt_{event_id}"
            for _ in range(2000):
                if key in arrivals:
                    break
                await asyncio.sleep(0.001)
            latencies.append((arrivals[key] - committed) * 1000)
        await worker.close()
        receiver._handle = original  # type: ignore[method-assign]
        ordered = sorted(latencies)
        results["latency_ms"] = {
            "events": len(ordered),
            "p50": statistics.median(ordered),
            "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
            "max": ordered[-1],
            "load": f"{before} → {load()}",
        }
        log(f"latency: {results['latency_ms']}")
        await disable(hook)

        # ---- 3. 10,000 pending after a one-hour outage (simulated clock)
        hook = await new_endpoint("outage")
        receiver.down()
        await emit(args.backlog, "outage")
        async with engine.connect() as connection:
            pending = (
                await connection.execute(
                    select(func.count()).where(
                        WebhookDelivery.endpoint_id == hook, WebhookDelivery.status == "PENDING"
                    )
                )
            ).scalar_one()
        worker = DeliveryWorker(gw.runtime, name="bench-outage")
        start = clock.now_utc()
        now = start
        steps = 0
        while now < start + timedelta(hours=1):
            with clock.travel(now):
                await worker.drain()
                async with engine.connect() as connection:
                    due = await store.next_due(connection)
            steps += 1
            now = max(now + timedelta(milliseconds=100), due or now + timedelta(seconds=1))
        during = worker.counts.requests
        receiver.up()
        recovered = start + timedelta(hours=1)
        async with engine.connect() as connection:
            paused_until = (
                await connection.execute(
                    select(WebhookEndpoint.paused_until).where(WebhookEndpoint.id == hook)
                )
            ).scalar_one()
        first_probe = max(recovered, clock.as_utc(paused_until) if paused_until else recovered)
        began = time.perf_counter()
        moment = first_probe
        rounds = 0
        while True:
            with clock.travel(moment):
                await worker.drain()
                async with engine.connect() as connection:
                    left = (
                        await connection.execute(
                            select(func.count()).where(
                                WebhookDelivery.endpoint_id == hook,
                                WebhookDelivery.status.in_(("PENDING", "IN_FLIGHT")),
                            )
                        )
                    ).scalar_one()
                    due = await store.next_due(connection)
            rounds += 1
            if not left or rounds > 10_000:
                break
            moment = max(moment + timedelta(milliseconds=100), due or moment)
        drain_seconds = time.perf_counter() - began
        async with engine.connect() as connection:
            statuses = dict(
                list(
                    await connection.execute(
                        select(WebhookDelivery.status, func.count())
                        .where(WebhookDelivery.endpoint_id == hook)
                        .group_by(WebhookDelivery.status)
                    )
                )
            )
        results["outage"] = {
            "pending": pending,
            "requests_during_outage": during,
            "worker_steps_during_outage": steps,
            "first_request_after_recovery_s": (first_probe - recovered).total_seconds(),
            "drain_real_seconds": drain_seconds,
            "drain_per_second": pending / drain_seconds,
            "statuses": statuses,
            "duplicates": receiver.duplicates,
            "refused": len(receiver.refused),
        }
        log(f"outage: {results['outage']}")
        await worker.close()
        receiver.close()
        await gw.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--throughput", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    args = parser.parse_args()
    from tests.pgcluster import ThrowawayCluster

    with ThrowawayCluster(dbname="relief_delivery_bench", honour_env=False) as cluster:
        args.postmaster = cluster.pid
        results = asyncio.run(bench(args, cluster.dsn_asyncpg))
    print(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
