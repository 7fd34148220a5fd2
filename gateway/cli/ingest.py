"""``relief-gateway ingest``: load department files (CONTRACT.md "Department files").

What a county clerk sees: per file, how many rows were taken and refused, what changed
(新增 / 退出 / 身份变更 …), how many anomalies were sent back, and where the rejection report is.
A file loaded before (same department, feed and content) is recognised and changes nothing.
An import stopped part-way (killed, the database gone) is continued by running the same command
again, and ends as if it had run once (adapters.pipeline). When the database fails the clerk
reads one line saying what happened and what was kept, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.domain import clock
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, Department
from gateway.domain.errors import BadUserInput
from gateway.domain.settings import Settings
from gateway.loop.tasks import verification_opener

# The keys of ``--json``'s "counts" (camelCase like the rest of the public surface).
COUNT_LABELS = (
    ("rowsTotal", "总行数"),
    ("rowsAccepted", "接收"),
    ("rowsRejected", "拒收"),
    ("rowsUnchanged", "无变化"),
    ("added", "新增"),
    ("exited", "退出"),
    ("identityChanged", "身份变更"),
    ("updated", "信息更新"),
    ("unmatched", "未匹配"),
    ("anomaliesOpened", "新开异常"),
)


def add_ingest_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    ingest = command("ingest", "导入部门数据文件 (CSV / XLSX / JSON Lines), 生成拒收报告")
    ingest.add_argument("--source", required=True, help="报送部门代码, 如 civil_affairs")
    ingest.add_argument("--feed", required=True, help="数据类别, 如 identities")
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE", help="数据文件")
    ingest.add_argument("--dry-run", action="store_true", help="只校验和比对, 不写入")
    ingest.add_argument("--json", action="store_true", help="以 JSON 输出结果")
    ingest.add_argument(
        "--region", default=None, help="报送单位辖区代码 (2/4/6 位); 辖区外的行将被拒收"
    )
    ingest.add_argument(
        "--report-dir", type=Path, default=None, help="拒收报告目录 (默认与数据文件同目录)"
    )
    ingest.add_argument("--submitted-by", default=None, help="报送人标识 (默认当前系统用户)")
    ingest.set_defaults(handler=_ingest)


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.mapping import load_feeds

    feeds = load_feeds([settings.mappings_dir] if settings.mappings_dir else [])
    try:
        department = Department(args.source)
    except ValueError:
        known = "、".join(d.value for d in Department)
        raise BadUserInput(f"未知部门 {args.source!r}; 可用: {known}") from None
    feed = feeds.get((department.value, args.feed))
    if feed is None:
        available = sorted(name for dept, name in feeds if dept == department.value)
        listing = "、".join(available) if available else "无"
        raise BadUserInput(
            f"{DEPARTMENT_NAMES_ZH[department]}没有数据类别 {args.feed!r}; 可用: {listing}"
        )
    region = args.region  # an existing region code: checked by its argument type (cli.app)
    for path in args.files:
        if not path.is_file():
            raise BadUserInput(f"找不到文件 {path}")
    # A database that cannot be reached is told once, before anything else tries it.
    asyncio.run(_reachable(settings.resolved_database_url))
    if not args.dry_run:
        from gateway.cli.partitions import ensure_at_start

        # Settlements of a new year get their partition before the batch (PostgreSQL).
        ensure_at_start(settings.resolved_database_url)
    results = asyncio.run(_run(settings, args, feed, region))
    try:
        if args.json:
            print(json.dumps(results, ensure_ascii=False, indent=2))
        else:
            for result in results:
                _print_summary(result)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
    except BrokenPipeError:
        _stdout_gone()
    return 0


def _stdout_gone() -> None:
    """The reader of our output went away (``ingest --json … | head -1``): the files are loaded
    and their batches say so, so nothing is wrong; what was left to print goes nowhere, quietly
    (Python's advice: point stdout at devnull, else its flush at exit raises again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def _reachable(database_url: str) -> None:
    from sqlalchemy import text

    from adapters.failures import DATABASE_ERRORS
    from adapters.pipeline import IngestFailed
    from gateway.storage.engine import make_engine

    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except DATABASE_ERRORS as exc:
        raise IngestFailed.not_started(exc) from None
    finally:
        await engine.dispose()


async def _run(
    settings: Settings, args: argparse.Namespace, feed: Any, region: str | None
) -> list[dict[str, Any]]:
    from adapters.pipeline import Ingestor, RejectionReport
    from gateway.runtime.parts import Runtime

    _quiet_about_a_dead_connection()

    # As `seed` does: development creates the keyring on first use; production requires it.
    runtime = Runtime.create(settings, create_keys=not settings.is_production)
    submitted_by = args.submitted_by or f"cli:{getpass.getuser()}"
    ingestor = Ingestor(
        runtime.engine,
        runtime.vault,
        feed,
        submitted_by=submitted_by,
        today=clock.today(),
        scope=region,
        # identities lists open medical insurance's verification tasks (004 §1)
        on_completed=verification_opener(runtime.rules, clock.today()),
        workers=settings.ingest_workers,  # RELIEF_INGEST_WORKERS; unset: one process
    )
    results: list[dict[str, Any]] = []
    try:
        for path in args.files:
            report_path = _report_path(path, args.report_dir)
            report = RejectionReport(report_path)
            progress = _progress(path, quiet=args.json)
            try:
                result = await ingestor.ingest_file(
                    path, dry_run=args.dry_run, report=report, progress=progress
                )
            except BaseException:
                report.close()
                if not report.written:  # refused whole (e.g. a missing column): no report
                    report_path.unlink(missing_ok=True)
                raise
            finally:
                report.close()
                if progress is not None:
                    progress.close()
            if result.counts.rows_rejected:
                result.report_path = report_path
            else:
                report_path.unlink(missing_ok=True)
            results.append(_as_dict(result))
    finally:
        await runtime.close()
    return results


def _quiet_about_a_dead_connection() -> None:
    """When the database goes away mid-file the pipeline says so in one line (IngestFailed);
    two leftovers of the driver would print around it and are dropped here, nothing else:

    - asyncpg's ``copy_in`` creates the waiter of a ``COPY`` before it sends the statement, and
      when the protocol refuses the statement (the server has just sent its FATAL, e.g. a
      shutdown or ``pg_terminate_backend``) the error is raised without that waiter ever being
      awaited; the lost connection then fails it, and asyncio reports "Future exception was
      never retrieved" when it is collected;
    - asyncio's transport warns "socket.send() raised exception." when a COPY still writes to a
      socket whose peer is gone.
    """
    from adapters.failures import connection_lost

    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if "future" in context and isinstance(error, BaseException) and connection_lost(error):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    if not any(isinstance(f, _DeadSocketWrites) for f in _ASYNCIO_LOG.filters):
        _ASYNCIO_LOG.addFilter(_DeadSocketWrites())


_ASYNCIO_LOG = logging.getLogger("asyncio")


class _DeadSocketWrites(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


def _report_path(path: Path, report_dir: Path | None) -> Path:
    directory = report_dir or path.parent
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{path.stem}.拒收报告.csv"


def _progress(path: Path, *, quiet: bool) -> Any:
    """A progress bar on an interactive terminal (a county's file can take a minute)."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(desc=path.name, unit="行", file=sys.stderr, leave=False)

    class Progress:
        def __call__(self, rows: int) -> None:
            bar.update(rows)

        def close(self) -> None:
            bar.close()

    return Progress()


def _as_dict(result: Any) -> dict[str, Any]:
    return {
        "file": result.file_name,
        "department": result.feed.department.value,
        "feed": result.feed.name,
        "status": result.status,
        "batchId": str(result.batch_id) if result.batch_id else None,
        "duplicateOf": str(result.duplicate_of) if result.duplicate_of else None,
        "format": result.file_format,
        "encoding": result.encoding,
        "region": result.region,
        "counts": result.counts.as_public_dict(),
        "ignoredColumns": list(result.ignored_headers),
        "rejectionReport": str(result.report_path) if result.report_path else None,
        "resumedBatches": [str(batch) for batch in result.resumed],
        "resumedRows": result.resumed_rows,
        "rejections": [
            {"line": r.line, "column": r.column, "value": r.value, "reason": r.reason}
            for r in result.rejections[:20]
        ],
        "seconds": round(result.seconds, 3),
    }


def _print_summary(result: dict[str, Any]) -> None:
    if result["status"] == "DUPLICATE":
        print(
            f"{result['file']}: 与已导入的批次 {result['duplicateOf']} 内容相同, 本次未做任何更改"
        )
        return
    where = f"{(result['format'] or '').upper()}"
    if result["encoding"]:
        where += f", {result['encoding']} 编码"
    head = "校验 (未写入)" if result["status"] == "DRY_RUN" else f"批次 {result['batchId']}"
    print(f"{result['file']} ({where}) → {head}")
    counts = result["counts"]
    print("  " + ", ".join(f"{label} {counts[key]}" for key, label in COUNT_LABELS[:4]))
    print("  " + ", ".join(f"{label} {counts[key]}" for key, label in COUNT_LABELS[4:]))
    if result["resumedRows"] or result["batchId"] in result["resumedBatches"]:
        # This batch was begun by a run that stopped part-way (killed, database error); the
        # counts above are the whole file's, as if it had been loaded in one run.
        saved, rest = result["resumedRows"], counts["rowsTotal"] - result["resumedRows"]
        if saved:
            print(f"  接续此前中断的导入: 前 {saved} 行此前已保存, 本次导入其余 {rest} 行")
        else:
            print(f"  接续此前中断的导入: 此前未保存任何行, 本次导入全部 {rest} 行")
    closed = [batch for batch in result["resumedBatches"] if batch != result["batchId"]]
    if closed:
        # Another earlier run of this file that this one could not continue (another --region,
        # other mappings): its committed rows counted as 无变化 here, and it is closed as FAILED.
        print(f"  接续此前未完成的导入 (批次 {'、'.join(closed)}): 其已保存的行计为无变化")
    if result["ignoredColumns"]:
        print(f"  未识别而忽略的列: {'、'.join(result['ignoredColumns'])}")
    if result["rejectionReport"]:
        print(f"  拒收明细: {result['rejectionReport']}")
        for r in result["rejections"][:5]:
            print(f"    第 {r['line']} 行 {r['column']} {r['value']!r}: {r['reason']}")
    print(f"  用时 {result['seconds']:.1f} 秒")
