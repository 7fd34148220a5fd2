"""``relief-gateway warn run``: the monthly high-cost warning run (DOMAIN.md rule 7).

Run by an operator or a timer on the 1st of each month (without ``--month``: the month before
today). It prints what a county clerk's supervisor wants to know: how many people newly crossed
each rule, how many tasks went to civil affairs and rural revitalisation, and by when they must
be answered (5 working days, 000 §1). Re-running a month is harmless: it adds nothing.

Exit codes: 0 done (also when nothing new was found), 2 refused (bad month, missing income
figure, database not reachable or not migrated).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import Callable
from typing import Any

from gateway.domain import clock
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, LEVEL_NAMES_ZH, Department
from gateway.domain.settings import Settings
from gateway.loop.config import Measure
from gateway.runtime import production

_ATTENTION_ZH = {level.value: name for level, name in LEVEL_NAMES_ZH.items()}


def add_warn_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    warn = command("warn", "高额医疗费用负担监测预警: run 执行月度预警并推送民政、乡村振兴部门")
    actions = warn.add_subparsers(title="操作", dest="warn_action")
    run = actions.add_parser(
        "run",
        help="执行一个月的预警 (可重复执行, 不会重复推送)",
        description="按本省规则计算当月新增达到监测标准的人员, 生成预警并推送任务",
    )
    # Also accepted after `run` (`warn run --data-dir D`); SUPPRESS keeps a value given
    # before `run` from being overwritten by the sub-command's default.
    run.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run.add_argument("--database-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run.add_argument(
        "--month", default=None, help="预警月份 YYYY-MM (默认上个月, 便于每月 1 日定时执行)"
    )
    run.add_argument("--json", action="store_true", help="以 JSON 输出结果")
    run.add_argument("--triggered-by", default=None, help="执行人标识 (默认当前系统用户)")
    run.set_defaults(handler=_run)
    warn.set_defaults(handler=_usage(warn))


def _usage(parser: argparse.ArgumentParser) -> Callable[[Settings, argparse.Namespace], int]:
    def handler(_settings: Settings, _args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.loop.config import load_rules
    from gateway.loop.warnings import parse_month, run_warnings
    from gateway.storage.engine import make_engine

    production.check(settings)  # e.g. RELIEF_TODAY is refused in production
    today = clock.today()
    month = parse_month(args.month, today)
    rules = load_rules(settings.province, settings.resolved_rules_file)
    triggered_by = args.triggered_by or f"cli:{getpass.getuser()}"

    async def run() -> Any:
        engine = make_engine(settings.resolved_database_url)
        try:
            return await run_warnings(engine, rules, month, today=today, triggered_by=triggered_by)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    summary = as_dict(result)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print_summary(summary)
    return 0


def as_dict(result: Any) -> dict[str, Any]:
    return {
        "runId": str(result.run_id),
        "province": result.province,
        "month": result.month.label,
        "year": result.year,
        "openedOn": result.opened_on.isoformat(),
        "dueOn": result.due_on.isoformat(),
        "workingDays": result.working_days,
        "warningsCreated": result.warnings_created,
        "tasksOpened": result.tasks_opened,
        "rules": [
            {
                "rule": o.rule,
                "description": o.description,
                "measure": o.measure.name,
                "comparison": ">" if o.strict else ">=",
                "threshold": str(o.threshold),
                "attention": o.attention,
                "pushTo": list(o.push_to),
                "newWarnings": o.new_warnings,
                "tasksOpened": o.tasks_opened,
            }
            for o in result.outcomes
        ],
        "seconds": round(result.seconds, 3),
        "provinceName": result.province_name,
    }


def print_summary(summary: dict[str, Any]) -> None:
    head = f"{summary['provinceName']} {summary['month']} 高额医疗费用负担监测预警"
    print(f"{head} (按 {summary['year']} 年累计)")
    for rule in summary["rules"]:
        unit = "次" if rule["measure"] == Measure.INPATIENT_COUNT.name else "元"
        comparison = "超过" if rule["comparison"] == ">" else "达到"
        departments = "、".join(DEPARTMENT_NAMES_ZH[Department(d)] for d in rule["pushTo"])
        attention = _ATTENTION_ZH.get(rule["attention"], rule["attention"])
        print(f"  {rule['rule']}: {rule['description']}")
        print(
            f"    标准: {comparison} {rule['threshold']} {unit}; 关注层级: {attention}; "
            f"新预警人数 {rule['newWarnings']}, 推送任务 {rule['tasksOpened']} 条 ({departments})"
        )
    print(f"新预警人数合计 {summary['warningsCreated']}, 推送任务数 {summary['tasksOpened']}")
    if summary["tasksOpened"]:
        print(
            f"推送日期 {summary['openedOn']}, 截止日期 {summary['dueOn']} "
            f"({summary['workingDays']} 个工作日内反馈认定结果)"
        )
    else:
        print("本次没有新增达到监测标准的人员 (已预警过的人员不重复推送)")
    print(f"用时 {summary['seconds']:.1f} 秒")
