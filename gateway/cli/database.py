"""``relief-gateway migrate`` and ``seed``: the database schema and synthetic people.

``migrate`` upgrades to the newest revision and installs the shipped policies on a new
database; ``seed`` migrates first, then writes a reproducible synthetic population (``--copy``:
PostgreSQL COPY, see ``gateway.cli.seed_copy``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from gateway.cli.admin_trail import add_operator_argument, check_operator, record
from gateway.domain import clock
from gateway.domain.principal import SYSTEM_ADMIN
from gateway.domain.settings import Settings
from gateway.storage.writer import WriteCounts


def add_migrate_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    migrate = command("migrate", "将数据库结构升级到最新版本 (alembic upgrade head)")
    add_operator_argument(migrate, "系统管理员")
    migrate.set_defaults(handler=_migrate)


def add_seed_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    seed = command("seed", "生成合成测试数据 (合法身份证号、真实区划代码、中文姓名)")
    seed.add_argument("--persons", type=int, required=True, help="人数")
    seed.add_argument("--seed", type=int, default=42, help="随机种子 (相同种子生成相同数据)")
    seed.add_argument(
        "--province", action="append", choices=["shandong", "shanxi", "anhui"], help="只生成某省"
    )
    seed.add_argument(
        "--copy",
        action="store_true",
        help="PostgreSQL 快速批量生成 (COPY, 适合百万级以上; 仅限没有人员数据的数据库)",
    )
    seed.set_defaults(handler=_seed)


def migrate_database(settings: Settings) -> None:
    """Upgrade to the newest revision (a new database also gets the default policies) and say
    so: ``migrate`` itself, and first thing in ``seed`` and ``demo``."""

    async def run() -> bool:
        from authz.store import install_default_policies
        from gateway.storage.engine import make_engine, make_sessionmaker
        from gateway.storage.migrate import upgrade_to_head

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        try:
            await upgrade_to_head(engine)
            # A new database gets the shipped data-sharing lists as policy version 1.
            async with make_sessionmaker(engine)() as session:
                return await install_default_policies(session)
        finally:
            await engine.dispose()

    installed = asyncio.run(run())
    print("数据库已升级到最新版本" + ("; 已载入默认数据共享策略 (版本 1)" if installed else ""))


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    check_operator(args)
    migrate_database(settings)
    # A schema change is the system administrator's action (三权分立).
    record(settings, args, role=SYSTEM_ADMIN, operation="migrate")
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    if args.persons <= 0:
        print("错误: --persons 必须为正整数", file=sys.stderr)
        return 2
    migrate_database(settings)
    if args.copy:
        from gateway.cli.seed_copy import seed_copy

        return seed_copy(settings, args.persons, args.seed, args.province)
    counts = asyncio.run(_seed_async(settings, args.persons, args.seed, args.province))
    print(
        f"已生成 {counts.persons} 人、{counts.households} 户、{counts.relief_statuses} 条救助身份、"
        f"{counts.enrollments} 条参保记录、{counts.cost_burdens} 条费用负担记录"
    )
    return 0


async def _seed_async(
    settings: Settings, persons: int, seed: int, provinces: list[str] | None
) -> WriteCounts:
    from gateway.domain.synthetic import generate_population
    from gateway.runtime.parts import Runtime
    from gateway.storage.writer import write_bundles

    runtime = Runtime.create(settings, create_keys=not settings.is_production)
    try:
        async with runtime.sessions() as session:
            bundles = generate_population(
                persons, seed=seed, today=clock.today(), provinces=provinces
            )
            return await write_bundles(session, runtime.vault, bundles)
    finally:
        await runtime.close()
