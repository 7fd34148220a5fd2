"""The administrators' own trail for the server commands (三权分立, issue 16): each command that
changes keys, partitions or the schema appends one entry to the audit chain once it has done
its work (``gateway.storage.admin_audit.record_admin_action``), so the audit administrator
reads it in ``auditLog`` beside the policy changes.

A command whose entry cannot be written because the database is away or not migrated says so
loudly on stderr (its action is done; never silently unaudited); any other failure (the
keyring, a bad operator) propagates to ``gateway.cli.app.main`` (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping

from sqlalchemy.exc import SQLAlchemyError

from gateway.domain.settings import Settings


def add_operator_argument(parser: argparse.ArgumentParser, role_label: str) -> None:
    parser.add_argument(
        "--operator",
        default=None,
        help=f"操作人 ({role_label}的主体标识, 写入审计日志; 默认为当前操作系统用户)",
    )


def check_operator(args: argparse.Namespace) -> None:
    """Refuse a bad ``--operator`` BEFORE the command acts (BadUserInput): an action done and
    then not recordable would be an unaudited change."""
    from gateway.storage.admin_audit import operator_subject

    operator_subject(getattr(args, "operator", None))


def record(
    settings: Settings,
    args: argparse.Namespace,
    *,
    role: str,
    operation: str,
    details: Mapping[str, object] | None = None,
) -> None:
    """Append the entry of ``operation`` (e.g. ``keys rotate``) done by ``--operator`` (or the
    operating-system user) in ``role``; details are identifiers only, never secrets.

    Before the deployment's first keys exist (it migrates, then creates its keys) there is no
    audit key to seal an entry with: said on stderr, not skipped silently. Production refuses
    to serve without keys, so a serving deployment always records."""
    from gateway.storage.admin_audit import record_admin_action

    if not settings.keyring_path.exists():
        print(
            f"提示: 尚无密钥环 ({settings.keyring_path}), relief-gateway {operation} "
            "未写入审计日志",
            file=sys.stderr,
        )
        return

    try:
        asyncio.run(
            record_admin_action(
                settings,
                role=role,
                operation=operation,
                operator=getattr(args, "operator", None),
                details=details,
            )
        )
    except SQLAlchemyError as exc:
        # The database away or not migrated (key maintenance may run before it exists): the
        # action is done and said loudly to be missing from the trail, for the operator to
        # record (keyring.json itself keeps each key's creation time).
        print(
            f"警告: relief-gateway {operation} 已完成, 但未能写入审计日志 (数据库不可用或未迁移: "
            f"{type(exc).__name__}); 请在数据库可用后由审计管理员补记",
            file=sys.stderr,
        )
