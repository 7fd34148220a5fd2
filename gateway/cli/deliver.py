"""``relief-gateway deliver``: webhook delivery workers outside ``serve`` (issue 18 item 2).

Runs until SIGTERM or SIGINT (an attempt under way finishes and is recorded first); ``--once``
delivers what is due now and exits, for a timer or a check after an outage. Several processes
may run against one PostgreSQL database: each delivery is claimed by one of them at a time.
On SQLite (one process) run it only where ``serve`` runs without its worker
(RELIEF_DELIVERY_WORKER=false).

Exit codes: 0 done, 2 refused (database not reachable or not migrated, keys missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from gateway.domain.settings import Settings


def add_deliver_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    deliver = command(
        "deliver", "投递推送 (webhook): 按重试与顺序规则把事件签名后推送到各部门系统的接收地址"
    )
    deliver.add_argument(
        "--once", action="store_true", help="只投递当前到期的推送, 完成后退出 (默认持续运行)"
    )
    deliver.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="本进程同时投递的推送数上限 (默认 RELIEF_DELIVERY_CONCURRENCY, 16)",
    )
    deliver.add_argument("--name", default=None, help="本进程的投递者标识 (默认 主机名:进程号)")
    deliver.set_defaults(handler=_deliver)


def _deliver(settings: Settings, args: argparse.Namespace) -> int:
    if args.concurrency is not None and not 1 <= args.concurrency <= 256:
        print("错误: --concurrency 应在 1 到 256 之间", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.runtime.delivery import DeliveryWorker
    from gateway.runtime.parts import Runtime

    # This process is the worker: no second one inside the runtime.
    runtime = Runtime.create(settings.model_copy(update={"delivery_worker": False}))
    try:
        async with runtime.sessions() as session:
            await runtime.authorizer.load(session)
        worker = DeliveryWorker(runtime, name=args.name, concurrency=args.concurrency)
        try:
            if args.once:
                await worker.drain()
            else:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(NotImplementedError):
                        loop.add_signal_handler(signum, stop.set)
                print(
                    f"推送投递进程 {worker.name} 已启动; 按 Ctrl+C 或发送 SIGTERM 停止", flush=True
                )
                await worker.run(stop)
        finally:
            await worker.close()
        counts = worker.counts
        print(
            f"投递完成: 发送 {counts.requests} 次, 成功 {counts.delivered}, "
            f"待重试 {counts.failed}, 转入死信 {counts.dead}, 取消 {counts.cancelled}"
        )
        return 0
    finally:
        await runtime.close()
