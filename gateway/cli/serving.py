"""``relief-gateway demo`` and ``serve``: the gateway over HTTP.

``serve`` runs the configured database and keys (several workers need PostgreSQL); ``demo``
prepares a development data directory from nothing (keys, SQLite, synthetic people, default
policies, last month's warnings), prints tokens and links, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sqlalchemy import case, func, or_, select

from gateway.cli.database import migrate_database
from gateway.domain import clock
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, LEVEL_NAMES_ZH, Department, Level
from gateway.domain.settings import Settings

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


def add_demo_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    demo = command(
        "demo", "一键演示: 生成密钥、迁移 SQLite、生成合成数据和默认策略、打印令牌并启动服务"
    )
    demo.add_argument("--persons", type=int, default=2000, help="合成人数 (默认 2000)")
    demo.add_argument("--port", type=int, default=8000, help="端口 (默认 8000)")
    demo.add_argument("--seed", type=int, default=42, help="随机种子 (默认 42)")
    demo.set_defaults(handler=_demo)


def add_serve_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    parser = command("serve", "启动服务 (使用已配置的数据库和密钥)")
    parser.add_argument("--host", default=None, help="监听地址 (默认 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="端口 (默认 8000)")
    parser.add_argument("--workers", type=int, default=1, help="工作进程数 (默认 1)")
    parser.set_defaults(handler=serve)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """The ``serve`` handler; public because ``main`` leaves the log set-up to it."""
    import uvicorn

    from gateway.http.app import create_app
    from gateway.http.logs import configure_from_settings
    from gateway.http.serving import server_options
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
    uvicorn.run(create_app(runtime), host=host, port=port, **server_options(settings))
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.http.app import create_app
    from gateway.http.protocol import edge_protocol
    from gateway.runtime.parts import Runtime

    if settings.is_production:
        print("错误: demo 只用于开发环境 (RELIEF_ENV=development)", file=sys.stderr)
        return 2
    started = time.monotonic()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _demo_rules(settings)
    runtime = Runtime.create(settings, create_keys=True)
    migrate_database(settings)
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
    uvicorn.run(
        create_app(runtime),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        http=edge_protocol(settings),  # the refusals and timeouts of serve (gateway.http.protocol)
    )
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
