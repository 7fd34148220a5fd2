"""``relief-gateway demo`` and ``serve``: the gateway over HTTP.

``serve`` runs the configured database and keys (several workers need PostgreSQL); ``demo``
prepares a development data directory from nothing (keys, SQLite, synthetic people, default
policies, last month's warnings), prints tokens and links, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import case, func, select

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
# Who gets a workbench link (the county offices of the closed loop) and the dashboard link
# (province oversight), next to their tokens.
DEMO_WORKBENCH = {
    "demo-civil-county": "预警核实、回传异常、报送批次",
    "demo-mib-county": "新增身份参保核验、报送批次",
    "demo-rural-county": "预警核实、回传异常、防返贫监测",
}
DEMO_OVERSIGHT = "demo-mib-province"


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
    # Before anything is created or printed: tokens and links for a server that cannot start
    # would only mislead (issue 15).
    busy = port_in_use("127.0.0.1", args.port)
    if busy is not None:
        print(
            f"错误: 端口 {args.port} 已被占用 ({busy}), 演示服务无法启动; "
            f"请关闭占用该端口的程序, 或用 --port 指定其他端口 (1-65535)",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _demo_rules(settings)
    runtime = Runtime.create(settings, create_keys=True)
    migrate_database(settings)
    regions, story, bundles = asyncio.run(_demo_data(runtime, settings, args))
    base = f"http://127.0.0.1:{args.port}"
    url = f"{base}/graphql"
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
        if subject in DEMO_WORKBENCH:
            print(f"  工作台: {base}/workbench  (打开后粘贴上面的令牌; {DEMO_WORKBENCH[subject]})")
        if subject == DEMO_OVERSIGHT:
            print(f"  监测看板: {base}/dashboard  (全省监督: 打开后粘贴上面的令牌)")
        print(f"  GraphiQL: {url}?headers={quote(json.dumps(headers))}&q={quote(DEMO_QUERY)}\n")
    _demo_story(runtime, story)
    _demo_sample_file(settings, bundles, regions["county"])
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


def port_in_use(host: str, port: int) -> str | None:
    """Why ``port`` cannot be served on ``host`` (None when it can): bound like uvicorn binds
    (SO_REUSEADDR, so a port in TIME_WAIT is free), then released at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return _BIND_ERRORS_ZH.get(exc.errno or 0, f"系统错误 {exc.errno}")
    return None


_BIND_ERRORS_ZH = {
    errno.EADDRINUSE: "地址已在使用中",
    errno.EACCES: "没有权限使用该端口",
    errno.EADDRNOTAVAIL: "地址不可用",
}


def invocation() -> str:
    """How to run ``relief-gateway`` again, as this process was started: the name when it is
    on PATH, else the script's path (``.venv/bin/relief-gateway`` after ``scripts/install``,
    relative to the current directory when below it), else ``python -m gateway.cli``."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != "relief-gateway":
        return f"{shlex.quote(sys.executable)} -m gateway.cli"
    found = shutil.which("relief-gateway")
    if found is not None and Path(found).resolve() == script.resolve():
        return "relief-gateway"
    try:
        return shlex.quote(str(script.resolve().relative_to(Path.cwd().resolve())))
    except ValueError:
        return shlex.quote(str(script.resolve()))


def _demo_story(runtime: object, story: Any) -> None:
    """What the county's loop holds: one line per workbench screen (issue 15)."""
    from gateway.runtime.parts import Runtime

    assert isinstance(runtime, Runtime)
    run = story.run
    if run is not None:
        print(
            f"■ 高额费用预警: 已按{runtime.rules.name}规则计算 {run.month.label}, "
            f"新预警 {run.warnings_created} 人次, 推送任务 {run.tasks_opened} 条"
            f" (截止 {run.due_on.isoformat()}); 每月可执行 {invocation()} warn run"
        )
    else:
        print(
            f"■ 高额费用预警: 已按{runtime.rules.name}规则计算 {story.last_month.label} "
            f"(沿用已有演示数据); 每月可执行 {invocation()} warn run"
        )
    print(
        f"  演示县 {story.county} 现状: 上月预警 {story.warnings_last_month} 人次; "
        f"待办任务 {story.open_tasks} 条 (临期 {story.due_soon_tasks} 条, "
        f"逾期 {story.overdue_tasks} 条), 已答复 {story.answered_tasks} 条; "
        f"待核实的回传异常 {story.open_anomalies} 条"
    )
    months = story.audit_months
    if months:
        print(f"  共享统计: {months[0]} 至 {months[-1]} 各部门的共享次数和共享人次 (来自审计日志)")
    print(
        "  待办任务 (民政局县级查预警核实, 导入上面的名单后医保局县级查新增身份核验):"
        " { tasks { totalCount edges { node { id kind dueOn workingDaysLeft state "
        "warning { ruleDescription } person { name } } } } }\n"
    )


def _demo_console(runtime: object, args: argparse.Namespace, province: str) -> None:
    """Two province security administrators (one proposes, the other approves: four eyes) and
    an audit administrator (the log, the officers' own actions in it, the chain): 三权分立."""
    from gateway.runtime.parts import Runtime

    assert isinstance(runtime, Runtime)
    print(
        f"■ 管理员控制台: http://127.0.0.1:{args.port}/console "
        "(粘贴下面任一登录凭据; 三权分立, 每个角色只看到自己的功能)"
    )
    administrators = (
        ("安全管理员甲", "demo-officer-a", "security_admin"),
        ("安全管理员乙", "demo-officer-b", "security_admin"),
        ("审计管理员", "demo-auditor", "audit_admin"),
    )
    for title, subject, role in administrators:
        credential = runtime.tokens.mint(
            subject=subject,
            dept="medical_insurance",
            level="province",
            region=province,
            roles=[role],
            ttl_seconds=24 * 3600,
        )
        print(f"  {title} (省级): {credential}")
    print(
        "  甲在“策略表”中提出变更, 乙在“审批”中模拟并批准; "
        "审计管理员在“审计日志”中查看记录 (含甲乙的操作)、解释访问并校验哈希链\n"
    )


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


def _demo_sample_file(settings: Settings, bundles: Any, county: str) -> None:
    """This month's civil affairs roster for the demo county, as a clerk would load it."""
    from adapters.samples import IDENTITY_HEADERS, monthly_civil_affairs, write_csv

    today = clock.today()
    directory = settings.data_dir / "samples"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"民政救助对象名单_{county}_{today:%Y%m}.csv"
    rows = monthly_civil_affairs(bundles, county, today)
    write_csv(path, IDENTITY_HEADERS, rows, encoding="gbk")
    print(f"■ 试一试数据报送: 民政局县级本月名单 ({len(rows)} 行, GBK 编码) 已放在 {path}")
    print(
        f"  另开终端导入: {invocation()} ingest --source civil_affairs --feed identities "
        f"--region {county} --data-dir {shlex.quote(str(settings.data_dir))} "
        f"{shlex.quote(str(path))}"
    )
    print(
        "  再用上面民政局县级的令牌查询: { batches { edges { node { fileName counts "
        "{ added exited identityChanged rowsRejected anomaliesOpened } } } } "
        "anomalies { edges { node { kind description dueOn person { name } } } } }\n"
    )


def demo_county(province_code: str) -> str:
    """The demo's county: the first county (县, not a city district) of the configured province
    in the region table, so the demo, its tests and a second run agree on it."""
    from gateway.domain.regions import all_counties

    counties = [c for c in all_counties() if c.province_code == province_code]
    rural = [c for c in counties if c.name.endswith("县")]
    return (rural or counties)[0].code


async def _demo_data(
    runtime: object, settings: Settings, args: argparse.Namespace
) -> tuple[dict[str, str], Any, list[Any]]:
    """Seed once (a second `demo` reuses the data): the configured province's people, a quarter
    of the households in the demo county; then the county's loop (``gateway.loop.demo``).
    Returns the regions of the tokens, the loop's story and the seeded plaintext."""
    from gateway.domain.synthetic import generate_population
    from gateway.loop.demo import Reader, bring_loop_alive
    from gateway.runtime.parts import Runtime
    from gateway.storage.models import Person
    from gateway.storage.writer import write_bundles

    assert isinstance(runtime, Runtime)
    today = clock.today()
    focus = demo_county(runtime.rules.code)
    bundles = list(
        generate_population(
            args.persons,
            seed=args.seed,
            today=today,
            provinces=[runtime.rules.province.value],
            focus_county=focus,
        )
    )
    async with runtime.sessions() as session:
        existing = (await session.execute(select(func.count()).select_from(Person))).scalar_one()
        if not existing:
            print(f"正在生成 {args.persons} 名合成人员 ({runtime.rules.name}) …")
            await write_bundles(session, runtime.vault, iter(bundles))
        county_code = await _county_with_people(session, focus, runtime.rules.code)
    await runtime.start()
    regions = {"county": county_code, "city": county_code[:4], "province": county_code[:2]}
    readers = [
        Reader(subject, dept, level, regions[level], purpose)
        for subject, dept, level, purpose in DEMO_SUBJECTS
    ]
    story = await bring_loop_alive(
        runtime.engine,
        runtime.sessions,
        runtime.vault,
        runtime.rules,
        runtime.feeds,
        bundles,
        county=county_code,
        today=today,
        readers=readers,
        files=settings.data_dir / "samples",
        macs=runtime.audit.macs,
    )
    return regions, story, bundles


async def _county_with_people(session: Any, focus: str, province_code: str) -> str:
    """``focus`` when people live there (always, after the demo's own seed); otherwise (a
    database seeded another way) the county of the configured province with most people."""
    from gateway.storage.models import Person

    found = await session.execute(
        select(func.count()).select_from(Person).where(Person.county_code == focus)
    )
    if found.scalar_one():
        return focus
    in_province = case((Person.province_code == province_code, 1), else_=0)
    stmt = (
        select(Person.county_code)
        .group_by(Person.county_code, Person.province_code)
        .order_by(in_province.desc(), func.count().desc(), Person.county_code)
        .limit(1)
    )
    return str((await session.execute(stmt)).scalar_one())
