"""``relief-gateway`` commands. Messages for department staff are in Chinese.

Each command reads the same settings as the server (``RELIEF_*``), with the options below
taking precedence. Expected failures print one clear line and exit 2; never a traceback.

This module holds what the commands share: the top-level parser, the ``command()`` factory
(every command takes ``--data-dir`` and ``--database-url``), loading the settings and the
error handling in :func:`main`. Each command group lives in its own module and adds itself
through ``add_<command>_command(command)``.

argparse's own messages (usage, help headings, "the following arguments are required", "invalid
choice" …) are Chinese too: :class:`ChineseParser` reports errors in Chinese, and argparse's
``gettext`` calls are answered from :data:`_ARGPARSE_ZH` (installed for the argparse module
only). Options that mean the same in every command get one type here (:data:`SHARED_TYPES`):
every ``--region`` is checked against the region table (:func:`region_code`), every ``--port``
is 1-65535 and every ``--persons`` positive, before any handler runs or creates anything.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from gateway.cli.audit import add_audit_command
from gateway.cli.clients import add_clients_command
from gateway.cli.database import add_migrate_command, add_seed_command
from gateway.cli.deliver import add_deliver_command
from gateway.cli.ingest import add_ingest_command
from gateway.cli.keys import add_keys_command
from gateway.cli.partitions import add_partitions_command
from gateway.cli.policy import add_policy_command
from gateway.cli.serving import add_demo_command, add_serve_command, serve
from gateway.cli.tokens import add_token_command
from gateway.cli.warn import add_warn_command
from gateway.domain import regions
from gateway.domain.errors import ConfigurationError, GatewayError
from gateway.domain.settings import load_settings
from gateway.http import metrics


def main(argv: Sequence[str] | None = None) -> int:
    threading.excepthook = _quiet_aiosqlite_race
    metrics.observe_services()  # an ingest or warning run here counts where metrics are shared
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
        if settings.is_production and settings.today:
            # Not only serve: a CLI run with a pinned date could archive audit months inside
            # the retention, or run a warning month early (CONTRACT: development only).
            raise ConfigurationError("生产环境不允许设置 RELIEF_TODAY (测试用的日期), 请取消该变量")
        if settings.log_file is not None and args.handler is not serve:
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
            message = _in_chinese(error)
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


# pydantic's own checks, said in Chinese (our validators already speak it: "Value error, …").
_PYDANTIC_ZH = {
    "int_parsing": "应为整数",
    "float_parsing": "应为数字",
    "bool_parsing": "应为 true 或 false",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "不能小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "不能大于 {le}",
    "enum": "应为 {expected} 之一",
    "literal_error": "应为 {expected} 之一",
    "json_invalid": "不是合法的 JSON",
    "finite_number": "应为有限的数",
}


def _in_chinese(error: Any) -> str:
    """One pydantic error of a RELIEF_* variable as a Chinese phrase with the value received."""
    text = str(error["msg"])
    if text.startswith("Value error, "):
        return text.removeprefix("Value error, ")
    template = _PYDANTIC_ZH.get(str(error.get("type")))
    if template is None:
        return text
    try:
        phrase = template.format(**(error.get("ctx") or {}))
    except (KeyError, IndexError):
        phrase = template
    return f"{phrase}, 收到 {error.get('input')!r}"


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


# argparse's messages (Python 3.11-3.13 wording) → Chinese. Unknown strings pass unchanged.
_ARGPARSE_ZH = {
    "usage: ": "用法: ",
    "positional arguments": "位置参数",
    "options": "选项",
    "optional arguments": "选项",
    "show this help message and exit": "显示本帮助并退出",
    "show program's version number and exit": "显示版本号并退出",
    "%(prog)s: error: %(message)s\n": "%(prog)s: 错误: %(message)s\n",
    "the following arguments are required: %s": "缺少必需的参数: %s",
    "unrecognized arguments: %s": "无法识别的参数: %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "无效的取值 %(value)r (可选: %(choices)s)"
    ),
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s: %(message)s",
    "invalid %(type)s value: %(value)r": "%(value)r 不是有效的 %(type)s 值",
    "expected one argument": "需要一个取值",
    "expected at most one argument": "最多需要一个取值",
    "expected at least one argument": "至少需要一个取值",
    "ambiguous option: %(option)s could match %(matches)s": (
        "选项 %(option)s 有歧义, 可能是 %(matches)s"
    ),
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "ignored explicit argument %r": "选项不接受取值 %r",
    "one of the arguments %s is required": "参数 %s 必须给出其中之一",
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "未知命令 %(parser_name)r (可选: %(choices)s)"
    ),
    "unexpected option string: %s": "意外的选项: %s",
    "can't open '%(filename)s': %(error)s": "无法打开 '%(filename)s': %(error)s",
    "expected %s argument": "需要 %s 个取值",
    "expected %s arguments": "需要 %s 个取值",
}
_TYPE_NAMES_ZH = {"int": "整数", "float": "数字", "Path": "路径"}


def _argparse_gettext(message: str) -> str:
    return _ARGPARSE_ZH.get(message, message)


def _argparse_ngettext(singular: str, plural: str, count: int) -> str:
    return _argparse_gettext(singular if count == 1 else plural)


def _install_argparse_chinese() -> None:
    """argparse looks its strings up through its module-level ``_``/``ngettext`` (gettext) at
    the time it formats them: answering them here changes argparse's wording and nothing else."""
    argparse._ = _argparse_gettext  # type: ignore[attr-defined]
    argparse.ngettext = _argparse_ngettext  # type: ignore[attr-defined]


class ChineseParser(argparse.ArgumentParser):
    """An argument parser whose errors read ``错误: …`` after a Chinese usage line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        for english, chinese in _TYPE_NAMES_ZH.items():
            message = message.replace(f"有效的 {english} 值", f"有效的{chinese}")
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: 错误: {message}\n")

    def format_usage(self) -> str:
        _install_argparse_chinese()
        return super().format_usage()

    def format_help(self) -> str:
        _install_argparse_chinese()
        return super().format_help()


# ---------------------------------------------------------------------------- argument types
def port_number(value: str) -> int:
    """A TCP port, 1-65535 (argparse type)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"端口应为 1 到 65535 之间的整数, 收到 {value!r}"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"端口应为 1 到 65535 之间的整数, 收到 {value}")
    return port


def positive_int(value: str) -> int:
    """A count of at least 1 (argparse type)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"应为正整数, 收到 {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"应为正整数, 收到 {value}")
    return number


def region_code(value: str) -> str:
    """A province (2 digits), city (4) or county (6) code of the region table the gateway
    ships (``gateway/data/regions.json``): a jurisdiction that exists (argparse type)."""
    code = value.strip()
    if not (code.isascii() and code.isdigit() and len(code) in (2, 4, 6)):
        raise argparse.ArgumentTypeError(
            f"行政区划代码应为 2 位 (省)、4 位 (市) 或 6 位 (县) 数字, 收到 {value!r}"
        )
    if len(code) == 2:
        known = regions.is_known_province(code)
    elif len(code) == 4:
        known = any(county.city_code == code for county in regions.all_counties())
    else:
        known = regions.county(code) is not None
    if not known:
        served = "、".join(f"{p.name} {p.code}" for p in regions.provinces())
        raise argparse.ArgumentTypeError(
            f"行政区划代码 {code} 不存在 (不在本网关的区划表中; 支持的省份: {served})"
        )
    return code


# One meaning per option name, whichever command declares it: checked before any handler runs
# (nothing is created, bound or printed for a value that cannot be right).
SHARED_TYPES = {
    "--region": region_code,
    "--port": port_number,
    "--persons": positive_int,
    "--workers": positive_int,
}


def _shared_types(parser: argparse.ArgumentParser) -> None:
    """Give every option named in :data:`SHARED_TYPES` its type, in every (sub)command."""
    for action in parser._actions:
        for option in action.option_strings:
            if option in SHARED_TYPES:
                action.type = SHARED_TYPES[option]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _shared_types(sub)


def _parser() -> argparse.ArgumentParser:
    _install_argparse_chinese()
    parser = ChineseParser(
        prog="relief-gateway", description="医疗救助对象信息共享网关 (relief-gateway)"
    )
    commands = parser.add_subparsers(title="命令")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--data-dir", type=Path, help="数据目录 (RELIEF_DATA_DIR, 默认 ./.relief)")
        sub.add_argument("--database-url", help="数据库地址 (RELIEF_DATABASE_URL)")
        return sub

    add_demo_command(command)
    add_serve_command(command)
    add_migrate_command(command)
    add_seed_command(command)
    add_token_command(command)
    add_policy_command(command)
    add_ingest_command(command)
    add_warn_command(command)
    add_keys_command(command)
    add_partitions_command(command)
    add_audit_command(command)
    add_clients_command(command)
    add_deliver_command(command)
    _shared_types(parser)
    return parser
