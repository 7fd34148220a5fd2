"""The administrators' own trail for the server commands (三权分立, issue 16): each command that
changes keys, partitions or the schema appends one entry to the audit chain once it has done
its work (``gateway.storage.admin_audit.record_admin_action``), so the audit administrator
reads it in ``auditLog`` beside the policy changes.

A command whose entry cannot be written reports it and exits 2 (an error from the database or
the keyring propagates to ``gateway.cli.app.main``): its action is done but says loudly that it
is not in the trail, never silently unaudited.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping

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
    import sys

    from gateway.storage.admin_audit import record_admin_action

    if not settings.keyring_path.exists():
        print(
            f"提示: 尚无密钥环 ({settings.keyring_path}), relief-gateway {operation} "
            "未写入审计日志",
            file=sys.stderr,
        )
        return

    asyncio.run(
        record_admin_action(
            settings,
            role=role,
            operation=operation,
            operator=getattr(args, "operator", None),
            details=details,
        )
    )
