"""``relief-gateway partitions ensure``: time partitions ahead of need (issue 6 item 5).

On PostgreSQL ``settlement`` is partitioned by year and ``audit_log`` by month (migration
0005, ``gateway.storage.partitions``). ``serve`` and ``ingest`` run the same step at start; a
daily timer running this command keeps the partitions ahead of a gateway that runs for months.
Idempotent and safe with several processes (an advisory lock). On SQLite it does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from gateway.cli.admin_trail import add_operator_argument, check_operator, record
from gateway.domain import clock
from gateway.domain.principal import SYSTEM_ADMIN
from gateway.domain.settings import Settings
from gateway.storage.partitions import AHEAD_MONTHS, AHEAD_YEARS

START_TIMEOUT = 15.0  # seconds


def add_partitions_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    partitions = command(
        "partitions",
        "时间分区 (PostgreSQL): ensure 提前创建结算 (按年) 和审计日志 (按月) 的分区, "
        "并把落入默认分区的记录移入新分区",
    )
    partitions.add_argument("action", choices=["ensure"])
    partitions.add_argument(
        "--ahead-years", type=int, default=AHEAD_YEARS, help=f"结算提前几年 (默认 {AHEAD_YEARS})"
    )
    partitions.add_argument(
        "--ahead-months",
        type=int,
        default=AHEAD_MONTHS,
        help=f"审计日志提前几个月 (默认 {AHEAD_MONTHS})",
    )
    add_operator_argument(partitions, "系统管理员")
    partitions.set_defaults(handler=_partitions)


def ensure_at_start(database_url: str) -> list[str]:
    """What ``serve`` and ``ingest`` run first (a no-op on SQLite and when nothing is missing).

    Best effort: a database that is down or read-only must not keep the gateway from starting
    (``/readyz`` reports the database) nor change how ingest fails; rows without their
    partition go to DEFAULT and are moved by the next successful run."""
    if not database_url.startswith("postgresql"):
        return []
    try:
        # Bounded: an unreachable host must not hold up the start for the driver's timeout.
        return asyncio.run(
            asyncio.wait_for(_ensure(database_url, AHEAD_YEARS, AHEAD_MONTHS), START_TIMEOUT)
        )
    except (SQLAlchemyError, OSError) as exc:  # OSError: refused, unreachable, TimeoutError
        print(
            f"警告: 未能检查时间分区 ({type(exc).__name__}); 新数据暂存默认分区, "
            "请稍后运行 relief-gateway partitions ensure",
            file=sys.stderr,
        )
        return []


async def _ensure(database_url: str, ahead_years: int, ahead_months: int) -> list[str]:
    from gateway.storage.engine import make_engine
    from gateway.storage.partitions import ensure_partitions

    engine = make_engine(database_url)
    try:
        return await ensure_partitions(
            engine, clock.today(), ahead_years=ahead_years, ahead_months=ahead_months
        )
    finally:
        await engine.dispose()


def _partitions(settings: Settings, args: argparse.Namespace) -> int:
    check_operator(args)
    url = settings.resolved_database_url
    if not url.startswith("postgresql"):
        print("SQLite 不分区, 无需维护")
        return 0
    created = asyncio.run(_ensure(url, args.ahead_years, args.ahead_months))
    if created:  # only a change enters the administrators' trail (a daily timer runs this)
        record(
            settings,
            args,
            role=SYSTEM_ADMIN,
            operation="partitions ensure",
            details={"created": ", ".join(created)},
        )
        print(f"已创建 {len(created)} 个分区: {', '.join(created)}")
    else:
        print("分区已齐备, 无需创建")
    return 0
