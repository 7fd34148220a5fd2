"""``relief-gateway policy export`` / ``policy import``: the policy as a readable file for review
in version control (issue 5 §6).

``export`` prints the version in force (header: version, date, proposer, approver; then the
lines grouped by department in a fixed order, see :func:`authz.policy_text.policy_text`).
``import FILE --proposed-by SUBJECT`` reads such a file, compares it with the version in force
and files a PENDING proposal with exactly the difference: nothing takes effect until another
security officer approves it through the API (four-eyes; the approver must differ from
``--proposed-by``). The command runs on the server with the operator's authority, so it
proposes as a province-level officer.

Exit codes: 0 done; 2 refused (no change, an invalid line, the file or database missing).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.domain.settings import Settings


def add_policy_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    policy = command(
        "policy",
        "策略: export 导出当前策略为文本; import 文件 将修改后的文本提交为变更申请",
    )
    policy.add_argument("action", choices=["export", "import"])
    policy.add_argument("file", nargs="?", type=Path, help="import: 策略文件 (export 的格式)")
    policy.add_argument(
        "--proposed-by",
        metavar="SUBJECT",
        help="import: 提出人 (安全管理员的主体标识); 须由另一名安全管理员通过 API 批准后生效",
    )
    policy.add_argument("--title", default=None, help="import: 申请标题 (默认: 导入策略文件 …)")
    policy.add_argument("--note", default=None, help="import: 申请说明")
    policy.set_defaults(handler=_policy)


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "export":
        if args.file is not None or args.proposed_by or args.title or args.note:
            print("错误: export 不接受文件或 --proposed-by/--title/--note", file=sys.stderr)
            return 2
        print(asyncio.run(_export(settings)), end="")
        return 0
    if args.file is None or not (args.proposed_by or "").strip():
        print("错误: 用法 relief-gateway policy import 文件 --proposed-by 提出人", file=sys.stderr)
        return 2
    proposed_by = args.proposed_by.strip()
    if len(proposed_by) > 128:
        print("错误: --proposed-by 最多 128 个字符", file=sys.stderr)
        return 2
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        print(f"错误: 找不到文件 {path}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"错误: 无法读取 {path} ({type(exc).__name__}); 文件应为 UTF-8 文本", file=sys.stderr)
        return 2
    title = args.title or f"导入策略文件 {path.name}"
    print(asyncio.run(_import(settings, text, str(path), proposed_by, title, args.note)))
    return 0


async def _export(settings: Settings) -> str:
    from authz.admin import PolicyAdmin
    from authz.policy_text import policy_text
    from gateway.storage.engine import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            admin = PolicyAdmin(connection.execute, engine)
            return policy_text(await admin.in_force())
    finally:
        await engine.dispose()


async def _import(
    settings: Settings, text: str, source: str, proposed_by: str, title: str, note: str | None
) -> str:
    from authz.admin import Officer, PolicyAdmin, format_line, text_change
    from authz.store import parse_policy_text
    from gateway.domain.departments import Level
    from gateway.domain.regions import provinces
    from gateway.storage.engine import make_engine

    wanted = parse_policy_text(text, source=source)  # a bad line refuses the whole file
    province = next(p.code for p in provinces() if p.key == settings.province.value)
    officer = Officer(proposed_by, Level.PROVINCE, province)
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            admin = PolicyAdmin(connection.execute, engine)
            in_force = await admin.in_force()
            added, removed = text_change(in_force.lines or (), wanted)
            if not added and not removed:
                from gateway.domain.errors import BadUserInput

                raise BadUserInput(f"没有变化: 文件与当前生效的版本 {in_force.version} 相同")
            proposal = await admin.propose(officer, title, note, add=added, remove=removed)
    finally:
        await engine.dispose()
    out = [
        f"已提交策略变更申请 {proposal.id} (基于版本 {proposal.base_version}, 提出人 "
        f"{proposal.proposed_by}): 新增 {len(added)} 行, 删除 {len(removed)} 行",
        *(f"- p, {format_line(line)}" for line in removed),
        *(f"+ p, {format_line(line)}" for line in added),
        "须由另一名安全管理员在控制台或通过 API (approvePolicyChange) 批准后生效",
    ]
    return "\n".join(out)
