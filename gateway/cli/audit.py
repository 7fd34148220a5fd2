"""``relief-gateway audit verify``: check the audit log's hash chain, optionally against a
head hash recorded earlier (``--anchor``: the chain alone cannot reveal deleted last entries).

Exit codes: 0 intact; 1 tampered (the first bad entry, or the anchor missing); 2 refused (a
malformed ``--anchor``, the database unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable

from gateway.domain.settings import Settings


def add_audit_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    audit = command("audit", "审计: verify 校验审计日志的哈希链")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument(
        "--anchor",
        metavar="HASH",
        help="之前记录的链头哈希: 校验它仍在链中 (仅靠哈希链无法发现末尾记录被删除)",
    )
    audit.set_defaults(handler=_audit)


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
