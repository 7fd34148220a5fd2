"""``relief-gateway`` commands. Messages for department staff are in Chinese.

Each command reads the same settings as the server (``RELIEF_*``), with the options below
taking precedence. Expected failures print one clear line and exit 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.domain import clock
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, LEVEL_NAMES_ZH, Department, Level
from gateway.domain.errors import GatewayError
from gateway.domain.settings import Settings, load_settings
from gateway.storage.writer import WriteCounts

DEMO_QUERY = """# 示例查询: 按 Ctrl-Enter (或上方 ▶) 运行; 右侧为本部门在辖区内可见的人员
query CountyPage {
  persons(first: 5) {
    totalCount
    edges {
      node {
        idNumber name gender birthDate regionCode phone
        reliefStatuses { category sourceDepartment validFrom validTo }
        enrollments { year insuranceType status subsidyCategory subsidyAmount }
        costBurdens { year totalCost personalBurden inpatientCount }
        household { members { name } }
      }
    }
  }
  me { department level region rowScope }
}
"""

# (subject, department, level, purpose) of the tokens `demo` prints; the region is chosen from
# the seeded data so that every token sees people.
DEMO_SUBJECTS = (
    ("demo-mib-province", "medical_insurance", "province", "benefit_settlement"),
    ("demo-mib-county", "medical_insurance", "county", "enrollment_verification"),
    ("demo-civil-county", "civil_affairs", "county", "relief_recognition"),
    ("demo-rural-county", "rural_revitalization", "county", "relief_recognition"),
    ("demo-health-city", "health", "city", "enrollment_verification"),
)


def main(argv: Sequence[str] | None = None) -> int:
    threading.excepthook = _quiet_aiosqlite_race
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(
            data_dir=getattr(args, "data_dir", None),
            database_url=getattr(args, "database_url", None),
        )
        if settings.log_file is not None and args.handler is not _serve:
            # RELIEF_LOG_FILE: every command's log records go there too (the console is
            # unchanged); serve configures its own, see gateway.http.logs.
            from gateway.http.logs import configure_from_settings

            configure_from_settings(settings, stderr=False)
        result: int = args.handler(settings, args)
    except GatewayError as exc:
        print(f"错误: {exc.message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # Never echo SQL or parameters; name the kind of failure and what to check.
        print(
            f"数据库错误 ({type(exc).__name__}): 请检查 RELIEF_DATABASE_URL 是否可达、"
            "是否已执行 relief-gateway migrate",
            file=sys.stderr,
        )
        return 2
    except ValidationError as exc:  # a RELIEF_* variable with a bad value: named, in Chinese
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if "RELIEF_" not in message:
                name = "_".join(str(part) for part in error["loc"]).upper()
                message = f"RELIEF_{name}: {message}"
            print(f"配置错误: {message}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic: a RELIEF_* variable with a bad value
        print(f"配置错误: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


def _quiet_aiosqlite_race(args: threading.ExceptHookArgs) -> None:
    """aiosqlite does not await the worker thread's stop after a failed connect (a missing
    SQLite directory): when the command has already printed its error and closed its event
    loop, the thread's "Event loop is closed" would follow as a traceback. Only that one."""
    thread = args.thread.name if args.thread is not None else ""
    if (
        args.exc_type is RuntimeError
        and "_connection_worker_thread" in thread
        and str(args.exc_value) == "Event loop is closed"
    ):
        return
    threading.__excepthook__(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relief-gateway", description="医疗救助对象信息共享网关 (relief-gateway)"
    )
    commands = parser.add_subparsers(title="命令")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--data-dir", type=Path, help="数据目录 (RELIEF_DATA_DIR, 默认 ./.relief)")
        sub.add_argument("--database-url", help="数据库地址 (RELIEF_DATABASE_URL)")
        return sub

    demo = command(
        "demo", "一键演示: 生成密钥、迁移 SQLite、生成合成数据和默认策略、打印令牌并启动服务"
    )
    demo.add_argument("--persons", type=int, default=2000, help="合成人数 (默认 2000)")
    demo.add_argument("--port", type=int, default=8000, help="端口 (默认 8000)")
    demo.add_argument("--seed", type=int, default=42, help="随机种子 (默认 42)")
    demo.set_defaults(handler=_demo)

    serve = command("serve", "启动服务 (使用已配置的数据库和密钥)")
    serve.add_argument("--host", default=None, help="监听地址 (默认 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="端口 (默认 8000)")
    serve.add_argument("--workers", type=int, default=1, help="工作进程数 (默认 1)")
    serve.set_defaults(handler=_serve)

    migrate = command("migrate", "将数据库结构升级到最新版本 (alembic upgrade head)")
    migrate.set_defaults(handler=_migrate)

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

    token = command("token", "签发一个访问令牌 (打印到标准输出)")
    token.add_argument("--dept", required=True, help="部门代码, 如 civil_affairs")
    token.add_argument("--level", required=True, choices=["province", "city", "county"])
    token.add_argument("--region", required=True, help="辖区代码: 省 2 位, 市 4 位, 县 6 位")
    token.add_argument("--subject", default=None, help="主体标识 (默认由部门、层级、区划组成)")
    token.add_argument("--role", action="append", default=[], help="角色, 如 security_officer")
    token.add_argument("--ttl", type=int, default=None, help="有效期秒数 (默认 8 小时)")
    token.set_defaults(handler=_token)

    from gateway.cli.policy import add_policy_command

    add_policy_command(command)

    from gateway.cli.ingest import add_ingest_command

    add_ingest_command(command)

    from gateway.cli.warn import add_warn_command

    add_warn_command(command)

    from gateway.cli.keys import add_keys_command

    add_keys_command(command)

    from gateway.cli.partitions import add_partitions_command

    add_partitions_command(command)

    audit = command("audit", "审计: verify 校验审计日志的哈希链")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument(
        "--anchor",
        metavar="HASH",
        help="之前记录的链头哈希: 校验它仍在链中 (仅靠哈希链无法发现末尾记录被删除)",
    )
    audit.set_defaults(handler=_audit)
    return parser


# ------------------------------------------------------------------------- commands


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
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
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    if args.persons <= 0:
        print("错误: --persons 必须为正整数", file=sys.stderr)
        return 2
    _migrate(settings, args)
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


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.runtime.tokens import TokenService

    tokens = TokenService.from_file(
        settings.token_key_path, settings.token_issuer, create=not settings.is_production
    )
    subject = args.subject or f"{args.dept}-{args.level}-{args.region}"
    print(
        tokens.mint(
            subject=subject,
            dept=args.dept,
            level=args.level,
            region=args.region,
            roles=args.role,
            ttl_seconds=settings.token_ttl_seconds if args.ttl is None else args.ttl,
        )
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.http.app import create_app
    from gateway.http.logs import configure_from_settings, uvicorn_log_config
    from gateway.runtime.parts import Runtime

    host = args.host or settings.host
    port = args.port or settings.port
    if args.workers > 1 and settings.resolved_database_url.startswith("sqlite"):
        # One chain of audit entries needs one writer: several processes share it only
        # through PostgreSQL's advisory lock.
        print("错误: 多进程 (--workers > 1) 需要 PostgreSQL; SQLite 只支持单进程", file=sys.stderr)
        return 2
    # Refusals (production checks, keys, rules, mappings) before anything is served or forked.
    runtime = Runtime.create(settings)
    configure_from_settings(settings)
    from gateway.cli.partitions import ensure_at_start

    # Once, before the workers start: this and the coming periods' partitions (PostgreSQL).
    ensure_at_start(settings.resolved_database_url)
    if args.workers > 1:
        from gateway.http.serving import serve_workers

        serve_workers("gateway.http.asgi:app", settings, host=host, port=port, workers=args.workers)
        return 0
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=port,
        log_config=uvicorn_log_config(),
        access_log=False,  # the gateway's request log instead (no query strings in it)
    )
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.http.app import create_app
    from gateway.runtime.parts import Runtime

    if settings.is_production:
        print("错误: demo 只用于开发环境 (RELIEF_ENV=development)", file=sys.stderr)
        return 2
    started = time.monotonic()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _demo_rules(settings)
    runtime = Runtime.create(settings, create_keys=True)
    _migrate(settings, args)
    regions = asyncio.run(_demo_data(runtime, args.persons, args.seed))
    warned = asyncio.run(_demo_warnings(runtime))
    url = f"http://127.0.0.1:{args.port}/graphql"
    print(f"\n演示数据已就绪 ({time.monotonic() - started:.1f} 秒), 数据目录 {settings.data_dir}\n")
    for subject, dept, level, purpose in DEMO_SUBJECTS:
        region = regions[level]
        token = runtime.tokens.mint(
            subject=subject, dept=dept, level=level, region=region, ttl_seconds=24 * 3600
        )
        headers = {"Authorization": f"Bearer {token}", "X-Purpose": purpose}
        names = f"{DEPARTMENT_NAMES_ZH[Department(dept)]} {LEVEL_NAMES_ZH[Level(level)]}"
        print(f"■ {names} ({dept} / {level} / {region}, 用途 {purpose})")
        print(f"  令牌: {token}")
        print(f"  GraphiQL: {url}?headers={quote(json.dumps(headers))}&q={quote(DEMO_QUERY)}\n")
    _demo_sample_file(settings, args, regions["county"])
    print(
        f"■ 高额费用预警: 已按{runtime.rules.name}规则计算 {warned.month.label}, "
        f"新预警 {warned.warnings_created} 人次, 推送任务 {warned.tasks_opened} 条"
        f" (截止 {warned.due_on.isoformat()}); 每月可执行 relief-gateway warn run"
    )
    print(
        "  待办任务 (民政局县级查预警核实, 导入上面的名单后医保局县级查新增身份核验):"
        " { tasks { totalCount edges { node { id kind dueOn workingDaysLeft state "
        "warning { ruleDescription } person { name } } } } }\n"
    )
    _demo_console(runtime, args, regions["province"])
    print(f"GraphiQL 地址: {url}  (在浏览器中打开上面带令牌的链接, 按 Ctrl-Enter 运行查询)")
    print(
        f"命令行示例: curl -s {url} -H 'Authorization: Bearer <令牌>' -H 'X-Purpose: supervision' "
        "-H 'Content-Type: application/json' -d '{\"query\":\"{ me { department level } }\"}'\n"
    )
    uvicorn.run(create_app(runtime), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def _demo_console(runtime: object, args: argparse.Namespace, province: str) -> None:
    """Two province security officers: one proposes, the other approves (four eyes)."""
    from gateway.runtime.parts import Runtime

    assert isinstance(runtime, Runtime)
    print(f"■ 安全管理员控制台: http://127.0.0.1:{args.port}/console (粘贴下面任一登录凭据)")
    for name in ("甲", "乙"):
        credential = runtime.tokens.mint(
            subject=f"demo-officer-{'ab'['甲乙'.index(name)]}",
            dept="medical_insurance",
            level="province",
            region=province,
            roles=["security_officer"],
            ttl_seconds=24 * 3600,
        )
        print(f"  安全管理员{name} (省级): {credential}")
    print("  甲在“策略表”中提出变更, 乙在“审批”中模拟并批准; “审计”中可校验哈希链\n")


# Written once into the demo's data directory (picked up as <data dir>/rules.toml): the
# shipped rules carry only the per-capita income figures published so far, and Shandong's
# warning of year Y needs Y-1's. Labelled in the file as demonstration values.
_DEMO_RULES = """# relief-gateway demo 生成的演示规则: 以下收入数字仅供演示, 非官方统计。
# 生产部署请按山东省统计公报填写上年全省居民人均可支配收入 (见 gateway/data/rules.toml)。
[provinces.shandong.per_capita_disposable_income]
{years}
"""


def _demo_rules(settings: Settings) -> None:
    path = settings.data_dir / "rules.toml"
    if settings.rules_file is not None or path.exists():
        return
    year = clock.today().year
    years = "\n".join(f'{y} = "{41000 + 1500 * (y - 2024)}"' for y in range(2024, year + 1))
    path.write_text(_DEMO_RULES.format(years=years), encoding="utf-8")


async def _demo_warnings(runtime: object) -> Any:
    """Last month's warning run (idempotent: a second demo adds nothing)."""
    from gateway.loop.warnings import previous_month, run_warnings
    from gateway.runtime.parts import Runtime

    assert isinstance(runtime, Runtime)
    today = clock.today()
    return await run_warnings(
        runtime.engine, runtime.rules, previous_month(today), today=today, triggered_by="demo"
    )


def _demo_sample_file(settings: Settings, args: argparse.Namespace, county: str) -> None:
    """This month's civil affairs roster for the demo county, as a clerk would load it."""
    from adapters.samples import IDENTITY_HEADERS, monthly_civil_affairs, write_csv
    from gateway.domain.synthetic import generate_population

    today = clock.today()
    bundles = generate_population(args.persons, seed=args.seed, today=today)
    directory = settings.data_dir / "samples"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"民政救助对象名单_{county}_{today:%Y%m}.csv"
    rows = monthly_civil_affairs(bundles, county, today)
    write_csv(path, IDENTITY_HEADERS, rows, encoding="gbk")
    print(f"■ 试一试数据报送: 民政局县级本月名单 ({len(rows)} 行, GBK 编码) 已放在 {path}")
    print(
        "  另开终端导入: relief-gateway ingest --source civil_affairs --feed identities "
        f"--region {county} --data-dir {settings.data_dir} '{path}'"
    )
    print(
        "  再用上面民政局县级的令牌查询: { batches { edges { node { fileName counts "
        "{ added exited identityChanged rowsRejected anomaliesOpened } } } } "
        "anomalies { edges { node { kind description dueOn person { name } } } } }\n"
    )


async def _demo_data(runtime: object, persons: int, seed: int) -> dict[str, str]:
    """Seed once (a second `demo` reuses the data) and pick regions that hold people: the
    county with most people under rural revitalisation's categories, and its city/province."""
    from gateway.domain.synthetic import generate_population
    from gateway.runtime.parts import Runtime
    from gateway.storage.models import Person, ReliefStatus
    from gateway.storage.writer import write_bundles

    assert isinstance(runtime, Runtime)
    async with runtime.sessions() as session:
        existing = (await session.execute(select(func.count()).select_from(Person))).scalar_one()
        if not existing:
            print(f"正在生成 {persons} 名合成人员 …")
            bundles = generate_population(persons, seed=seed, today=clock.today())
            await write_bundles(session, runtime.vault, bundles)
        today = clock.today()
        # Preferably a county of the configured province: its rules (warnings, tasks) apply to
        # that province's people only.
        in_province = case((Person.province_code == runtime.rules.code, 1), else_=0)
        stmt = (
            select(Person.county_code, func.count())
            .join(ReliefStatus, ReliefStatus.person_id == Person.id)
            .where(
                ReliefStatus.source_department == "rural_revitalization",
                ReliefStatus.valid_from <= today,
                or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= today),
            )
            .group_by(Person.county_code, Person.province_code)
            .order_by(in_province.desc(), func.count().desc(), Person.county_code)
            .limit(1)
        )
        county = (await session.execute(stmt)).first()
        anyone = select(Person.county_code).order_by(in_province.desc(), Person.county_code)
        county_code = county[0] if county else (await session.execute(anyone.limit(1))).scalar_one()
    await runtime.start()
    return {"county": county_code, "city": county_code[:4], "province": county_code[:2]}


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.storage.audit_chain import verify_chain
    from gateway.storage.engine import make_engine, make_sessionmaker

    anchor = (args.anchor or "").strip().lower() or None
    if anchor is not None and not re.fullmatch(r"[0-9a-f]{64}", anchor):
        print("错误: --anchor 应为 64 位十六进制的链头哈希", file=sys.stderr)
        return 2

    async def verify() -> int:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                report = await verify_chain(session, anchor=anchor)
        finally:
            await engine.dispose()
        if report.ok:
            print(f"审计日志完整: {report.entries} 条记录, 哈希链无误")
            # The chain cannot reveal deleted LAST entries: the head, kept elsewhere, can.
            print(f"链头哈希: {report.head_hash} (请在系统外记录, 下次用 --anchor 核对)")
            return 0
        if report.anchor_missing:
            print(
                f"审计日志被篡改: {report.reason}; 当前 {report.entries} 条记录, "
                f"链头哈希 {report.head_hash}",
                file=sys.stderr,
            )
            return 1
        print(
            f"审计日志被篡改: 第一条异常记录编号 {report.first_bad_id} ({report.reason}); "
            f"此前 {report.entries} 条记录无误",
            file=sys.stderr,
        )
        return 1

    return asyncio.run(verify())


if __name__ == "__main__":
    raise SystemExit(main())
