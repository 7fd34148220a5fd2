"""``relief-gateway audit``: the audit evidence (issue 16 item 6, docs/security.md "审计证据").

- ``verify``: the online log's hash chain and the MAC of every entry (keyed with the audit
  key, which the database never holds), from the latest archive anchor; ``--anchor HASH``
  checks a head recorded earlier is still there (deleted LAST entries leave an intact, shorter
  chain); ``--archive FILE…`` verifies archive files too (signature, chain inside, continuity
  with each other, with their anchors and with the online log).
- ``archive --before YYYY-MM``: months before that one (Beijing time) to signed archive files,
  refused inside the retention window (``RELIEF_AUDIT_RETENTION_MONTHS``, at least 6:
  网络安全法第二十一条). The action is itself an audit entry.
- ``rotate-key``: a new audit key for new entries (old entries keep verifying with theirs).

Exit codes: 0 intact / done; 1 tampered (the first bad entry or file, or the anchor missing;
``archive`` refuses to seal a log that fails verification); 2 refused (bad input, inside the
retention window, no keyring, the database unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.domain.settings import Settings

if TYPE_CHECKING:
    from gateway.crypto import AuditMac
    from gateway.storage.audit_archive import ArchivesReport
    from gateway.storage.audit_chain import ChainReport

ACTIONS = ("verify", "archive", "rotate-key")
FAILURES = {
    "link": "哈希链断开",
    "hash": "哈希不符",
    "mac": "MAC 不符",
    "mac_missing": "MAC 缺失",
    "mac_key": "审计密钥未知",
    "anchor": "锚点异常",
    "signature": "签名或文件异常",
}


def add_audit_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    audit = command(
        "audit",
        "审计证据: verify 校验哈希链与 MAC; archive --before YYYY-MM 归档留存期外的月份; "
        "rotate-key 轮换审计密钥",
    )
    audit.add_argument("action", choices=ACTIONS)
    audit.add_argument(
        "--anchor",
        metavar="HASH",
        help="verify: 之前记录的链头哈希, 校验它仍在链中 (仅靠哈希链无法发现末尾记录被删除)",
    )
    audit.add_argument(
        "--archive",
        metavar="FILE",
        nargs="+",
        type=Path,
        help="verify: 同时校验这些归档文件 (签名、文件内的哈希链与 MAC、与锚点和在线日志的衔接)",
    )
    audit.add_argument(
        "--before",
        metavar="YYYY-MM",
        help="archive: 归档该月 (北京时间) 之前的记录; 须在留存期 "
        "(RELIEF_AUDIT_RETENTION_MONTHS, 至少 6 个月) 之外",
    )
    audit.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="archive: 归档文件目录 (默认 数据目录/audit-archive)",
    )
    audit.add_argument(
        "--operator",
        metavar="NAME",
        default=None,
        help="archive, rotate-key: 操作人 (默认为当前操作系统用户)",
    )
    audit.add_argument(
        "--algorithm",
        choices=("HMAC-SHA-256", "HMAC-SM3"),
        default=None,
        help="rotate-key: 新审计密钥的算法; 默认沿用当前审计密钥的 (国密套件为 HMAC-SM3)",
    )
    audit.set_defaults(handler=_audit)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    misplaced = {
        "verify": ("before", "out", "operator", "algorithm"),
        "archive": ("anchor", "archive", "algorithm"),
        "rotate-key": ("anchor", "archive", "before", "out"),
    }[args.action]
    for name in misplaced:
        if getattr(args, name) is not None:
            print(f"错误: audit {args.action} 不接受 --{name} 参数", file=sys.stderr)
            return 2
    if args.action == "verify":
        return _verify(settings, args.anchor, args.archive or [])
    if args.action == "archive":
        if not args.before:
            print("错误: 用法 relief-gateway audit archive --before YYYY-MM", file=sys.stderr)
            return 2
        return _archive(settings, args.before, args.out, args.operator)
    return _rotate_key(settings, args.algorithm, args.operator)


def _verify(settings: Settings, anchor_text: str | None, archives: list[Path]) -> int:
    from gateway.crypto import AuditMac, open_keyring
    from gateway.storage.audit_archive import verify_archives
    from gateway.storage.audit_chain import verify_chain
    from gateway.storage.engine import make_engine, make_sessionmaker

    anchor = (anchor_text or "").strip().lower() or None
    if anchor is not None and not re.fullmatch(r"[0-9a-f]{64}", anchor):
        print("错误: --anchor 应为 64 位十六进制的链头哈希", file=sys.stderr)
        return 2
    # The MACs need the audit key. Without a keyring file the chain alone is checked, and the
    # report says so; a keyring that exists but cannot be opened is an error (exit 2).
    macs = AuditMac(open_keyring(settings)) if settings.keyring_path.exists() else None
    if macs is None:
        print(
            f"警告: 找不到密钥环文件 {settings.keyring_path}: 只校验哈希链, 未校验 MAC "
            "(没有审计密钥, 重新计算了全部哈希的改写无法发现)",
            file=sys.stderr,
        )

    async def verify() -> int:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                files = None
                if archives and macs is not None:
                    files = await verify_archives(session, archives, macs)
                elif archives:
                    print("错误: 校验归档文件需要密钥环中的审计密钥", file=sys.stderr)
                    return 2
                hashes = files.hashes if files is not None else frozenset()
                report = await verify_chain(
                    session, anchor=anchor, macs=macs, archived_hashes=hashes
                )
        finally:
            await engine.dispose()
        files_ok = _print_archives(files, report) if files is not None else True
        code = _print_chain(report, keyed=macs is not None and macs.key_id is not None)
        return code if files_ok else 1

    return asyncio.run(verify())


def _print_archives(files: ArchivesReport, report: ChainReport) -> bool:
    """One line per file; False when any file (or their continuity) fails."""
    ok = files.ok
    for item in files.files:
        if item.ok:
            print(
                f"归档文件 {item.path.name}: 完整, {item.entries} 条记录 "
                f"(编号 {item.first_id}–{item.last_id}), 签名与 MAC 无误, 与归档锚点 "
                f"{item.anchor_id} 一致"
            )
            continue
        where = f"第一条异常记录编号 {item.first_bad_id}, " if item.first_bad_id else ""
        label = FAILURES.get(item.failure or "", "异常")
        print(
            f"归档文件 {item.path} 被篡改或不可用 ({label}): {where}{item.reason}", file=sys.stderr
        )
    if files.problem is not None:
        print(f"归档文件不衔接: {files.problem}", file=sys.stderr)
    intact = [item for item in files.files if item.ok]
    if ok and intact and intact[-1].last_entry_hash != report.start_hash:
        print(
            f"最后一个归档文件 {intact[-1].path.name} 的末条哈希不是在线日志的起点 "
            f"{report.start_hash} (其后还有归档文件未给出, 或被删除)",
            file=sys.stderr,
        )
        ok = False
    return ok


def _print_chain(report: ChainReport, keyed: bool) -> int:
    start = (
        f"自归档锚点起 (起点哈希 {report.start_hash}, 共 {report.archive_anchors} 次归档)"
        if report.archive_anchors
        else "自第一条记录起"
    )
    if report.ok:
        if keyed:
            macs = f"MAC 无误 ({report.mac_entries} 条有 MAC"
            macs += f", {report.pre_mac_entries} 条早于启用 MAC)" if report.pre_mac_entries else ")"
        else:
            macs = "密钥环中没有审计密钥, 未校验 MAC (请 relief-gateway audit rotate-key)"
        print(f"审计日志完整: {report.entries} 条记录在线, {start}, 哈希链无误, {macs}")
        # The chain cannot reveal deleted LAST entries: the head, kept elsewhere, can.
        print(f"链头哈希: {report.head_hash} (请在系统外记录, 下次用 --anchor 核对)")
        return 0
    if report.anchor_missing:
        print(
            f"审计日志被篡改: {report.reason}; 当前 {report.entries} 条记录在线, "
            f"链头哈希 {report.head_hash} (如该哈希已归档, 请用 --archive 给出归档文件)",
            file=sys.stderr,
        )
        return 1
    label = FAILURES.get(report.failure or "", "异常")
    if report.first_bad_id is None:
        print(f"审计日志被篡改 ({label}): {report.reason}", file=sys.stderr)
        return 1
    message = (
        f"审计日志被篡改: 第一条异常记录编号 {report.first_bad_id} ({label}: {report.reason}); "
        f"{start}此前 {report.entries} 条记录无误"
    )
    if report.chain_bad_id is not None:
        message += f"; 哈希链在编号 {report.chain_bad_id} 处断开 ({report.chain_reason})"
    elif report.failure in ("mac", "mac_missing"):
        message += "; 哈希链本身完整: 记录被改写后重新计算了哈希, 只有 MAC 能发现"
    print(message, file=sys.stderr)
    return 1


def _archive(settings: Settings, before_text: str, out: Path | None, operator: str | None) -> int:
    from gateway.crypto import AuditMac, open_keyring
    from gateway.domain.clock import today
    from gateway.storage.admin_audit import operator_subject, province_code
    from gateway.storage.audit_archive import LogNotIntact, archive, parse_month
    from gateway.storage.engine import make_engine

    before = parse_month(before_text)
    subject = operator_subject(operator)
    macs = AuditMac(open_keyring(settings))
    out_dir = out if out is not None else settings.data_dir / "audit-archive"

    async def run() -> int:
        from authz.store import current_version
        from gateway.storage.engine import make_sessionmaker

        engine = make_engine(settings.resolved_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                version = await current_version(session)
            result = await archive(
                engine,
                macs,
                before=before,
                out_dir=out_dir,
                today=today(),
                retention_months=settings.audit_retention_months,
                operator=subject,
                region=province_code(settings),
                policy_version=version,
            )
        except LogNotIntact as exc:
            print("拒绝归档: 在线审计日志未通过校验, 不能把被篡改的日志签名归档", file=sys.stderr)
            _print_chain(exc.report, keyed=True)
            return 1
        finally:
            await engine.dispose()
        if not result.files:
            print(f"{result.before} 之前没有在线记录可归档 (本次操作已记入审计日志)")
            return 0
        for item in result.files:
            print(
                f"已归档 {item.month}: {item.entries} 条记录 (编号 {item.first_id}–{item.last_id})"
                f" → {item.path}"
            )
            print(f"  文件 SHA-256: {item.digest}")
            print(f"  签名: {item.signature_path} (审计密钥 {item.mac_key_id})")
            print(
                f"  锚点 {item.anchor_id}: 最后一条记录编号 {item.last_id}, "
                f"哈希 {item.last_entry_hash}"
            )
        dropped = (
            f", 删除分区 {', '.join(result.dropped_partitions)}"
            if result.dropped_partitions
            else ""
        )
        print(
            f"已从在线日志移除 {result.removed} 条记录{dropped}; "
            f"本次归档记为审计记录 {result.entry_id}"
        )
        print(
            "请在系统外记录每个锚点的哈希和文件 SHA-256, 并把归档文件与 .sig 签名文件一起异地保存; "
            "校验: relief-gateway audit verify --archive 文件…"
        )
        return 0

    return asyncio.run(run())


def _rotate_key(settings: Settings, algorithm: str | None, operator: str | None) -> int:
    from gateway.crypto import AuditMac, Keyring, protector_from_settings
    from gateway.storage.admin_audit import operator_subject

    subject = operator_subject(operator)
    with Keyring.editing(settings.keyring_path, protector_from_settings(settings)) as keyring:
        previous = keyring.audit_primary_id
        key = keyring.rotate_audit_key(algorithm)
    print(
        f"新审计密钥 {key.key_id} ({key.algorithm}) 已启用"
        + (f" (原审计密钥 {previous} 保留, 用于校验旧记录)" if previous else " (首个审计密钥)")
    )
    print(
        f"运行中的网关将在 {settings.keyring_reload_seconds:g} 秒内自动载入; 审计密钥不可删除: "
        "在线和已归档的记录都要用它校验"
    )
    details = {"key": key.key_id, "algorithm": key.algorithm}
    asyncio.run(_record(settings, AuditMac(keyring), subject, "audit rotate-key", details))
    return 0


async def _record(
    settings: Settings, macs: AuditMac, subject: str, operation: str, details: Mapping[str, str]
) -> None:
    """The administrator's action as an audit entry, MAC'd like every other."""
    from authz.store import current_version
    from gateway.storage.admin_audit import admin_entry, province_code
    from gateway.storage.audit_chain import append_entries
    from gateway.storage.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            version = await current_version(session)
            await session.commit()
            entry = admin_entry(
                subject=subject,
                role="system_admin",
                operation=operation,
                region=province_code(settings),
                policy_version=version,
                details=details,
            )
            await append_entries(session, [entry], macs=macs)
    finally:
        await engine.dispose()
