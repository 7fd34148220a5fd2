"""``relief-gateway policy export`` / ``policy import`` / ``policy test``: the policy as a
readable file for review in version control (issue 5 §6), and its expectations run offline
(issue 16 item 5).

``export`` prints the version in force (header: version, date, proposer, approver; then the
lines grouped by department in a fixed order, see :func:`authz.policy_text.policy_text`).
``import FILE --proposed-by SUBJECT`` reads such a file, compares it with the version in force
and files a PENDING proposal with exactly the difference: nothing takes effect until another
security officer approves it through the API (four-eyes; the approver must differ from
``--proposed-by``). The command runs on the server with the operator's authority, so it
proposes as a province-level officer. Lines may carry a validity end (期限, a sixth column);
``e`` lines are the policy expectations: when the file holds any, they are the proposed
complete set (none: the expectations stay as they are).

``test FILE [--expectations FILE] [--at MOMENT]`` checks the expectations (the ``e`` lines of
FILE, or of ``--expectations``) against the policy lines of FILE as they grant now (or at
``--at``: a date or a moment, to see what an expiry will break). No database is needed.

Exit codes: 0 done (test: every expectation holds); 1 test: some expectation fails (one line
per failure); 2 refused (no change, an invalid line, the file or database missing).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.admin_trail import record
from gateway.domain.clock import CHINA_TZ
from gateway.domain.principal import SECURITY_ADMIN, canonical_subject
from gateway.domain.settings import Settings
from gateway.storage.admin_audit import operator_subject

if TYPE_CHECKING:
    from authz.admin import Officer


def add_policy_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    policy = command(
        "policy",
        "策略: export 导出当前策略为文本; import 文件 将修改后的文本提交为变更申请; "
        "test 文件 离线检查策略期望",
    )
    policy.add_argument("action", choices=["export", "import", "test"])
    policy.add_argument("file", nargs="?", type=Path, help="import/test: 策略文件 (export 的格式)")
    policy.add_argument(
        "--expectations",
        metavar="FILE",
        type=Path,
        default=None,
        help="test: 策略期望文件 (e 行); 默认使用策略文件中的 e 行",
    )
    policy.add_argument(
        "--at",
        metavar="MOMENT",
        default=None,
        help="test: 按此时刻检查 (日期 2027-04-01 即北京时间当日开始, 或带时区的时刻); 默认现在",
    )
    policy.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        default=None,
        help="import: 提出人 (安全管理员) 本人的访问令牌所在文件 (- 为标准输入); 生产环境必需",
    )
    policy.add_argument(
        "--proposed-by",
        metavar="SUBJECT",
        help="import: 提出人 (安全管理员的主体标识; 仅开发环境, 生产环境须用 --token-file); "
        "须由另一名安全管理员通过 API 批准后生效",
    )
    policy.add_argument("--title", default=None, help="import: 申请标题 (默认: 导入策略文件 …)")
    policy.add_argument("--note", default=None, help="import: 申请说明")
    policy.set_defaults(handler=_policy)


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "test" and (args.expectations is not None or args.at is not None):
        print("错误: --expectations 和 --at 只用于 policy test", file=sys.stderr)
        return 2
    if args.action == "export":
        if args.file is not None or args.proposed_by or args.title or args.note:
            print("错误: export 不接受文件或 --proposed-by/--title/--note", file=sys.stderr)
            return 2
        print(asyncio.run(_export(settings)), end="")
        return 0
    if args.action == "test":
        return _test(args)
    if args.file is None or not ((args.proposed_by or "").strip() or args.token_file):
        print(
            "错误: 用法 relief-gateway policy import 文件 --token-file 令牌文件 "
            "(开发环境也可用 --proposed-by 提出人)",
            file=sys.stderr,
        )
        return 2
    if args.token_file is not None and args.proposed_by:
        print("错误: --token-file 与 --proposed-by 只能用一个", file=sys.stderr)
        return 2
    if args.token_file is None and settings.is_production:
        # A name typed on a shell proves nothing: four eyes needs the proposer's own sign-in.
        print(
            "错误: 生产环境中策略变更须以安全管理员本人的令牌提出 (--token-file), "
            "不接受 --proposed-by",
            file=sys.stderr,
        )
        return 2
    path: Path = args.file
    text = _read(path)
    if text is None:
        return 2
    officer = asyncio.run(_officer(settings, args))
    if officer is None:
        return 2
    title = args.title or f"导入策略文件 {path.name}"
    print(asyncio.run(_import(settings, text, str(path), officer, title, args.note)))
    # The security administrator's command on the server, in the administrators' trail (the
    # proposal itself is what another security administrator approves). The shell's user is
    # named beside the proposer.
    record(
        settings,
        argparse.Namespace(operator=officer.subject),
        role=SECURITY_ADMIN,
        operation="policy import",
        details={
            "file": path.name,
            "os_user": operator_subject(None),
            "signed_in": "token" if args.token_file is not None else "no (development)",
        },
    )
    return 0


async def _officer(settings: Settings, args: argparse.Namespace) -> Officer | None:
    """The proposer: verified from its own token (``--token-file``; a security administrator,
    with its jurisdiction), or in development the ``--proposed-by`` name at province level.
    None after a Chinese error on stderr."""
    from authz.admin import Officer
    from gateway.domain.departments import Level
    from gateway.domain.errors import GatewayError
    from gateway.domain.regions import provinces

    if args.token_file is None:
        # One person, one subject (issue 16): the proposer as the four-eyes check compares it.
        proposed_by = canonical_subject(args.proposed_by)
        if len(proposed_by) > 128:
            print("错误: --proposed-by 最多 128 个字符", file=sys.stderr)
            return None
        province = next(p.code for p in provinces() if p.key == settings.province.value)
        return Officer(proposed_by, Level.PROVINCE, province)
    raw = sys.stdin.read() if str(args.token_file) == "-" else _read(args.token_file)
    if raw is None:
        return None
    from gateway.runtime.parts import Runtime

    runtime = Runtime.create(settings)
    try:
        await runtime.tokens.start()
        try:
            principal = await runtime.tokens.verify(raw.strip().removeprefix("Bearer ").strip())
            return Officer.of(principal)
        except GatewayError as exc:
            print(f"错误: 令牌未通过验证: {exc.message}", file=sys.stderr)
            return None
    finally:
        await runtime.close()


def _read(path: Path) -> str | None:
    """A UTF-8 text file, or None after a Chinese error on stderr."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        print(f"错误: 找不到文件 {path}", file=sys.stderr)
    except IsADirectoryError:
        print(f"错误: {path} 是目录, 应为策略文件", file=sys.stderr)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"错误: 无法读取 {path} ({type(exc).__name__}); 文件应为 UTF-8 文本", file=sys.stderr)
    return None


def _test(args: argparse.Namespace) -> int:
    """Run the expectations against the policy file, offline: 0 all hold, 1 some fail."""
    from authz.expectations import check_expectations, parse_expectations
    from authz.offline import OfflinePolicy
    from authz.store import parse_moment, parse_policy_text
    from gateway.domain.clock import now_utc

    if args.file is None or args.proposed_by or args.title or args.note:
        print(
            "错误: 用法 relief-gateway policy test 策略文件 [--expectations 期望文件] [--at 时刻]",
            file=sys.stderr,
        )
        return 2
    policy_file: Path = args.file
    text = _read(policy_file)
    if text is None:
        return 2
    expectations_file: Path = args.expectations or policy_file
    expectations_text = text if args.expectations is None else _read(args.expectations)
    if expectations_text is None:
        return 2
    at = now_utc()
    if args.at is not None:
        # --at 2027-04-01: the start of that day (a bare date in a policy line is its end)
        at = parse_moment(args.at)
    lines = parse_policy_text(text, source=str(policy_file))
    expectations = parse_expectations(expectations_text, source=str(expectations_file))
    if not expectations:
        print(f"错误: {expectations_file} 中没有策略期望 (e 行)", file=sys.stderr)
        return 2
    failures = check_expectations(expectations, OfflinePolicy(lines, at=at))
    when = f"{at.astimezone(CHINA_TZ):%Y-%m-%d %H:%M:%S} (北京时间)"
    for failure in failures:
        print(f"不成立: {failure.message}")
    broken = len({failure.expectation.key for failure in failures})
    if failures:
        print(
            f"策略期望 {len(expectations)} 条, {broken} 条不成立 ({policy_file}, "
            f"{len(lines)} 行策略, 按 {when})"
        )
        return 1
    print(
        f"策略期望 {len(expectations)} 条全部成立 ({policy_file}, {len(lines)} 行策略, 按 {when})"
    )
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
    settings: Settings, text: str, source: str, officer: Officer, title: str, note: str | None
) -> str:
    from authz.admin import PolicyAdmin, format_line, text_change
    from authz.expectations import canonical, has_expectations
    from authz.store import parse_policy_text
    from gateway.storage.engine import make_engine

    wanted = parse_policy_text(text, source=source)  # a bad line refuses the whole file
    # e lines: the proposed complete set of expectations; none in the file: unchanged
    expectations = canonical(text, source=source) if has_expectations(text) else None
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            admin = PolicyAdmin(connection.execute, engine)
            in_force = await admin.in_force()
            added, removed = text_change(in_force.lines or (), wanted)
            if expectations == (in_force.expectations or ""):
                expectations = None
            if not added and not removed and expectations is None:
                from gateway.domain.errors import BadUserInput

                raise BadUserInput(f"没有变化: 文件与当前生效的版本 {in_force.version} 相同")
            proposal = await admin.propose(
                officer, title, note, add=added, remove=removed, expectations=expectations
            )
    finally:
        await engine.dispose()
    out = [
        f"已提交策略变更申请 {proposal.id} (基于版本 {proposal.base_version}, 提出人 "
        f"{proposal.proposed_by}): 新增 {len(added)} 行, 删除 {len(removed)} 行",
        *(f"- p, {format_line(line)}" for line in removed),
        *(f"+ p, {format_line(line)}" for line in added),
        *(
            [f"策略期望: 提出新的完整期望 {len(expectations.splitlines())} 条"]
            if expectations is not None
            else []
        ),
        "须由另一名安全管理员在控制台或通过 API (approvePolicyChange) 批准后生效",
    ]
    return "\n".join(out)
