"""``relief-gateway`` commands. Messages for department staff are in Chinese.

Each command reads the same settings as the server (``RELIEF_*``), with the options below
taking precedence. Expected failures print one clear line and exit 2; never a traceback.

This module holds what the commands share: the top-level parser, the ``command()`` factory
(every command takes ``--data-dir`` and ``--database-url``), loading the settings and the
error handling in :func:`main`. Each command group lives in its own module and adds itself
through ``add_<command>_command(command)``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from gateway.cli.audit import add_audit_command
from gateway.cli.database import add_migrate_command, add_seed_command
from gateway.cli.ingest import add_ingest_command
from gateway.cli.keys import add_keys_command
from gateway.cli.partitions import add_partitions_command
from gateway.cli.policy import add_policy_command
from gateway.cli.serving import add_demo_command, add_serve_command, serve
from gateway.cli.tokens import add_token_command
from gateway.cli.warn import add_warn_command
from gateway.domain.errors import GatewayError
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
    return parser
