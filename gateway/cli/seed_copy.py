"""``relief-gateway seed --copy``: the synthetic population through PostgreSQL COPY.

Same data as ``seed`` (see ``gateway.storage.copy_seed``), for benchmark databases of millions
of people: 10,000,000 in minutes rather than hours.
"""

from __future__ import annotations

import asyncio
import sys
import time

from gateway.domain import clock
from gateway.domain.settings import Settings
from gateway.storage.copy_seed import CopySeedError, CopySeedStats, copy_seed
from gateway.storage.writer import WriteCounts

_PHASES = {
    "prepare": "准备",
    "copy": "COPY 写入",
    "indexes": "重建索引和约束",
    "places": "人员地点",
    "analyze": "统计",
}


def seed_copy(settings: Settings, persons: int, seed: int, provinces: list[str] | None) -> int:
    started = time.monotonic()
    try:
        stats = asyncio.run(_run(settings, persons, seed, provinces))
    except CopySeedError as exc:
        print(f"错误: {exc}", file=sys.stderr)
        return 2
    counts = stats.counts
    wall = time.monotonic() - started
    rows = (
        counts.households
        + counts.persons
        + counts.relief_statuses
        + counts.enrollments
        + counts.cost_burdens
        + stats.person_sources
    )
    print(
        f"已生成 {counts.persons} 人、{counts.households} 户、{counts.relief_statuses} 条救助身份、"
        f"{counts.enrollments} 条参保记录、{counts.cost_burdens} 条费用负担记录"
    )
    phases = ", ".join(
        f"{_PHASES.get(name, name)} {seconds:.1f} 秒" for name, seconds in stats.seconds.items()
    )
    print(
        f"COPY 批量生成用时 {wall:.1f} 秒 ({phases}); "
        f"共 {rows:,} 行 (含 {stats.person_sources:,} 条人员来源记录), "
        f"每秒 {counts.persons / wall:,.0f} 人、{rows / wall:,.0f} 行"
    )
    return 0


async def _run(
    settings: Settings, persons: int, seed: int, provinces: list[str] | None
) -> CopySeedStats:
    from gateway.runtime.parts import Runtime

    runtime = Runtime.create(settings, create_keys=not settings.is_production)
    last = [time.monotonic()]

    def progress(counts: WriteCounts) -> None:
        now = time.monotonic()
        if now - last[0] >= 30:
            last[0] = now
            print(f"  … 已写入 {counts.persons:,} 人", file=sys.stderr, flush=True)

    try:
        return await copy_seed(
            runtime.engine,
            runtime.vault,
            persons=persons,
            seed=seed,
            today=clock.today(),
            provinces=provinces,
            progress=progress,
        )
    finally:
        await runtime.close()
