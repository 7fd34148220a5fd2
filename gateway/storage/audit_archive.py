"""Archiving old audit months to signed files, and verifying those files (issue 16 item 6).

网络安全法第二十一条: network logs are kept at least six months. Entries stay online for
``RELIEF_AUDIT_RETENTION_MONTHS`` (6 or more); ``relief-gateway audit archive --before YYYY-MM``
then moves the entries before that month (Beijing time) out of the database:

1. the whole online log is verified first (chain and MACs): a tampered log is never sealed;
2. the archived part is the longest prefix of the chain (id order) dated before the month. An
   entry committed just after the month turned, by a slower process, stays online with the
   next month: the online log always starts where the archives end;
3. each month goes to ``audit-YYYY-MM-<first id>-<last id>.jsonl.gz`` (JSON Lines, streamed,
   gzip with a fixed header, so the same entries give the same bytes): a header line, then one
   line per entry with every column, MACs included. Beside it ``….jsonl.gz.sig``: the file's
   SHA-256, its first and last hashes, and an HMAC of all that with the audit key (domain
   ``archive``);
4. in one transaction: an ``archive`` anchor per file (last entry id and hash, the file's
   digest; MAC'd), the entries removed (on PostgreSQL a month partition whose rows are all
   archived is detached and dropped, the rest deleted), and an audit entry of the action. The
   chain's head row (``audit_head``) is held meanwhile and moved only by that entry: removing
   entries never moves the head.

Why an HMAC and not a public-key signature: the keyring holds symmetric keys only, and the
audit key is the one the assessor already checks (generated, stored, wrapped by the cipher
machine with the others). The cost is that only a holder of the audit key can verify a file;
the digest printed and stored in the anchor lets anyone check a file against what the
operator recorded outside the system.

``verify_archives`` checks files: the signature, the digest, the chain inside (links, hashes,
MACs), that consecutive files link, and that each matches its anchor in the database.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.crypto import AuditMac
from gateway.domain.clock import CHINA_TZ, as_utc, beijing_day_start, now_utc
from gateway.domain.errors import BadUserInput, GatewayError
from gateway.domain.settings import MIN_AUDIT_RETENTION_MONTHS
from gateway.storage import audit_chain as chain
from gateway.storage.admin_audit import admin_entry
from gateway.storage.models import AuditAnchor, AuditEntry, AuditHead
from gateway.storage.partitions import AUDIT_LOG, drop_partition, existing_partitions

FORMAT = "relief-gateway audit archive"
VERSION = 1
SIGNATURE_SUFFIX = ".sig"
COLUMNS = [column.key for column in AuditEntry.__table__.columns]
_BATCH = 5000


class ArchiveRefused(BadUserInput):
    """An archive the rules do not allow (inside the retention window, no audit key)."""


class LogNotIntact(GatewayError):
    """The online log fails verification: it is reported, never sealed into an archive."""

    def __init__(self, report: chain.ChainReport) -> None:
        super().__init__(report.reason or "审计日志校验失败")
        self.report = report


def parse_month(value: str) -> date:
    """``YYYY-MM`` → the month's first day; BadUserInput otherwise."""
    try:
        year, month = value.strip().split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError(value)
        return date(int(year), int(month), 1)
    except ValueError:
        raise BadUserInput(f"月份应为 YYYY-MM 格式, 收到 {value!r}") from None


def months_back(day: date, months: int) -> date:
    """The same day ``months`` earlier (the month's last day when it is shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month + 1, candidate)
        except ValueError:
            continue
    raise AssertionError(day)  # unreachable: every month has a 28th


def latest_archivable(today: date, retention_months: int) -> date:
    """The latest ``--before`` month allowed: every entry it removes is at least
    ``retention_months`` old today."""
    limit = months_back(today, retention_months)
    return date(limit.year, limit.month, 1)


def check_retention(before: date, today: date, retention_months: int) -> None:
    if retention_months < MIN_AUDIT_RETENTION_MONTHS:  # Settings refuses it too
        raise ArchiveRefused(
            f"审计日志留存期不能少于 {MIN_AUDIT_RETENTION_MONTHS} 个月 (《网络安全法》第二十一条)"
        )
    latest = latest_archivable(today, retention_months)
    if before > latest:
        raise ArchiveRefused(
            f"拒绝归档: {before:%Y-%m} 之前的记录中有留存不满 {retention_months} 个月的 "
            f"(今天 {today}, 最多可归档到 --before {latest:%Y-%m}); 审计日志须在线留存至少 "
            f"{retention_months} 个月 (RELIEF_AUDIT_RETENTION_MONTHS; 《网络安全法》第二十一条 "
            "要求网络日志留存不少于六个月)"
        )


# --------------------------------------------------------------------------- file format
def _entry_record(entry: AuditEntry) -> dict[str, Any]:
    record = {key: getattr(entry, key) for key in COLUMNS}
    record["occurred_at"] = chain._naive_utc_text(entry.occurred_at)
    return record


def _entry_of(record: dict[str, Any]) -> AuditEntry:
    values = {key: record.get(key) for key in COLUMNS}
    values["occurred_at"] = datetime.fromisoformat(str(record["occurred_at"]))
    return AuditEntry(**values)


def _signature_message(signature: dict[str, Any]) -> bytes:
    # The key id is inside the MAC already (its prefix); every other field is signed.
    unsigned = ("mac", "mac_key_id")
    body = {key: value for key, value in signature.items() if key not in unsigned}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- archiving
@dataclass(frozen=True, slots=True)
class ArchivedFile:
    month: str
    entries: int
    first_id: int
    last_id: int
    first_prev_hash: str
    last_entry_hash: str
    path: Path
    signature_path: Path
    digest: str
    mac_key_id: str
    anchor_id: int = 0


@dataclass
class ArchiveResult:
    before: str
    files: list[ArchivedFile] = field(default_factory=list)
    removed: int = 0
    dropped_partitions: list[str] = field(default_factory=list)
    entry_id: int | None = None  # the audit entry recording the archive


def _month_of(entry: AuditEntry) -> str:
    return as_utc(entry.occurred_at).astimezone(CHINA_TZ).strftime("%Y-%m")


async def _prefix(session: AsyncSession, cutoff: datetime) -> AsyncIterator[list[AuditEntry]]:
    """The entries before the first one dated at or after ``cutoff``, in id order, in
    batches. Read in id order and stopped there: only the prefix is read, never the months
    that stay online."""
    last_id = 0
    while True:
        stmt = select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id)
        rows = list((await session.execute(stmt.limit(_BATCH))).scalars())
        session.expunge_all()
        kept: list[AuditEntry] = []
        for row in rows:
            if as_utc(row.occurred_at) >= cutoff:
                if kept:
                    yield kept
                return
            kept.append(row)
        if not kept:
            return
        last_id = kept[-1].id
        yield kept


async def archive(
    engine: AsyncEngine,
    macs: AuditMac,
    *,
    before: date,
    out_dir: Path,
    today: date,
    retention_months: int,
    operator: str,
    region: str,
    policy_version: int,
) -> ArchiveResult:
    """Archive the entries before ``before`` (see the module docstring); ``policy_version``:
    the version in force, for the archive's own audit entry. Raises
    ``ArchiveRefused`` inside the retention window or without an audit key, ``LogNotIntact``
    when the online log fails verification, ``BadUserInput`` when a file already exists."""
    check_retention(before, today, retention_months)
    key_id = macs.key_id
    if key_id is None:
        raise ArchiveRefused(
            "密钥环中没有审计密钥, 无法签名归档文件; 请先 relief-gateway audit rotate-key"
        )
    async with AsyncSession(engine, expire_on_commit=False) as session:
        report = await chain.verify_chain(session, macs=macs)
    if not report.ok:
        raise LogNotIntact(report)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    result = ArchiveResult(before=f"{before:%Y-%m}")
    cutoff = beijing_day_start(before)
    current: _MonthFile | None = None
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            previous = report.start_hash
            async for rows in _prefix(session, cutoff):
                chunk: list[dict[str, Any]] = []
                for entry in rows:
                    month = _month_of(entry)
                    # A new file when the month moves on; an entry of an earlier month committed
                    # late stays with its neighbours (a file is a contiguous run of the chain).
                    if current is None or month > current.month:
                        if current is not None:
                            await asyncio.to_thread(current.add, chunk)
                            result.files.append(await asyncio.to_thread(current.seal, macs))
                            previous, chunk = current.last_entry_hash, []
                        current = await asyncio.to_thread(_MonthFile, out_dir, month, previous)
                    chunk.append(_entry_record(entry))
                if current is not None:
                    await asyncio.to_thread(current.add, chunk)
            if current is not None:
                result.files.append(await asyncio.to_thread(current.seal, macs))
                current = None
            await session.commit()
        return await _record(engine, macs, result, operator, region, before, policy_version)
    except BaseException:
        # Nothing was removed from the database: no file of this run may outlive it.
        if current is not None:
            current.discard()
        for item in result.files:
            item.path.unlink(missing_ok=True)
            item.signature_path.unlink(missing_ok=True)
        raise


class _MonthFile:
    """One archive file being written: entries streamed into gzip under a temporary name
    (a month of a province's entries does not fit in memory), then renamed to
    ``audit-YYYY-MM-<first id>-<last id>.jsonl.gz`` and signed."""

    def __init__(self, out_dir: Path, month: str, first_prev: str) -> None:
        self.out_dir, self.month, self.first_prev = out_dir, month, first_prev
        self.entries = 0
        self.first_id = self.last_id = 0
        self.last_entry_hash = first_prev
        self._tmp = out_dir / f".audit-{month}-{os.getpid()}.jsonl.gz.tmp"
        self._raw = self._tmp.open("wb")
        # mtime 0 and no file name in the gzip header: equal entries give equal bytes.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        self._write(
            {"format": FORMAT, "version": VERSION, "month": month, "first_prev_hash": first_prev}
        )

    def _write(self, line: dict[str, Any]) -> None:
        self._gzip.write(json.dumps(line, ensure_ascii=False, sort_keys=True).encode())
        self._gzip.write(b"\n")

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._write(record)
            if not self.entries:
                self.first_id = record["id"]
            self.entries += 1
            self.last_id, self.last_entry_hash = record["id"], record["entry_hash"]

    def _close(self) -> None:
        if not self._raw.closed:
            self._gzip.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()

    def discard(self) -> None:
        self._close()
        self._tmp.unlink(missing_ok=True)

    def seal(self, macs: AuditMac) -> ArchivedFile:
        self._close()
        path = self.out_dir / f"audit-{self.month}-{self.first_id}-{self.last_id}.jsonl.gz"
        signature_path = path.with_name(path.name + SIGNATURE_SUFFIX)
        if path.exists() or signature_path.exists():
            self._tmp.unlink(missing_ok=True)
            raise BadUserInput(f"归档文件 {path} 已存在, 不覆盖; 请换一个 --out 目录")
        os.replace(self._tmp, path)
        digest = _file_digest(path)
        signature: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "file": path.name,
            "sha256": digest,
            "month": self.month,
            "entries": self.entries,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "first_prev_hash": self.first_prev,
            "last_entry_hash": self.last_entry_hash,
        }
        key_id = macs.key_id
        if key_id is None:
            raise ArchiveRefused("密钥环中没有审计密钥")
        signature["algorithm"] = macs.algorithm_of(key_id)
        _, mac = macs.sign("archive", _signature_message(signature), key_id=key_id)
        signature["mac_key_id"], signature["mac"] = key_id, mac
        _write_json(signature_path, signature)
        return ArchivedFile(
            month=self.month,
            entries=self.entries,
            first_id=self.first_id,
            last_id=self.last_id,
            first_prev_hash=self.first_prev,
            last_entry_hash=self.last_entry_hash,
            path=path,
            signature_path=signature_path,
            digest=digest,
            mac_key_id=key_id,
        )


async def _record(
    engine: AsyncEngine,
    macs: AuditMac,
    result: ArchiveResult,
    operator: str,
    region: str,
    before: date,
    version: int,
) -> ArchiveResult:
    """Anchors, removal and the audit entry of the action: one transaction."""
    cutoff = beijing_day_start(before)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        anchors = []
        if result.files:
            last = result.files[-1]
            if engine.dialect.name == "postgresql":
                # Appends wait until the archive commits. The locks in the order every append
                # takes them (``audit_chain``): audit_log first (EXCLUSIVE: readers go on), then
                # the head row; no deadlock with a writer or with the partition detach below.
                await session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            await session.execute(
                select(AuditHead.entry_hash).where(AuditHead.id == 1).with_for_update()
            )
            current = (
                await session.execute(
                    select(AuditEntry.entry_hash).where(AuditEntry.id == last.last_id)
                )
            ).scalar()
            if current != last.last_entry_hash:
                raise BadUserInput(
                    "归档期间审计日志发生了变化 (最后一条归档记录的哈希不同), 已中止"
                )
            for item in result.files:
                anchor = AuditAnchor(
                    kind="archive",
                    created_at=now_utc(),
                    operator=operator,
                    month=item.month,
                    entries=item.entries,
                    first_prev_hash=item.first_prev_hash,
                    last_entry_id=item.last_id,
                    last_entry_hash=item.last_entry_hash,
                    file_name=item.path.name,
                    file_digest=item.digest,
                )
                anchors.append(chain.seal_anchor(anchor, macs))
            session.add_all(anchors)
            await session.flush()
            result.dropped_partitions = await _drop_whole_months(session, last.last_id, before)
            await session.execute(
                delete(AuditEntry).where(
                    AuditEntry.id <= last.last_id, AuditEntry.occurred_at < cutoff
                )
            )
            result.removed = sum(item.entries for item in result.files)
        details: dict[str, object] = {"before": result.before, "files": len(result.files)}
        if result.files:
            details["entries"] = result.removed
            details["last_entry_id"] = result.files[-1].last_id
            details["last_entry_hash"] = result.files[-1].last_entry_hash
        entry = admin_entry(
            subject=operator,
            role="audit_admin",
            operation="audit archive",
            region=region,
            policy_version=version,
            details=details,
        )
        # In this transaction, from the head row it holds; commits it all.
        await chain.append_entries(session, [entry], macs=macs)
        result.entry_id = entry.id
    result.files = [
        _with_anchor(item, anchor.id) for item, anchor in zip(result.files, anchors, strict=True)
    ]
    return result


def _with_anchor(item: ArchivedFile, anchor_id: int) -> ArchivedFile:
    return replace(item, anchor_id=anchor_id)


async def _drop_whole_months(session: AsyncSession, last_id: int, before: date) -> list[str]:
    """PostgreSQL: detach and drop each month partition before ``before`` whose rows are all
    archived (instant, no dead rows); the DELETE that follows takes what is left."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    connection = await session.connection()
    names = await connection.run_sync(lambda sync: existing_partitions(sync, AUDIT_LOG.table))
    dropped = []
    for name in sorted(names):
        if not name.startswith(f"{AUDIT_LOG.table}_m"):
            continue
        start = date(int(name[-6:-2]), int(name[-2:]), 1)
        if _next_month(start) > before:  # the month is not wholly before the cutoff
            continue
        newer = await session.execute(
            text(
                f"SELECT EXISTS (SELECT 1 FROM {AUDIT_LOG.table} WHERE id > :last"  # noqa: S608
                f" AND {AUDIT_LOG.in_unit(start)})"
            ),
            {"last": last_id},
        )
        if newer.scalar():
            continue
        if await connection.run_sync(_dropper(start)):
            dropped.append(name)
    return dropped


def _dropper(start: date) -> Callable[[Connection], bool]:
    return lambda sync: drop_partition(sync, AUDIT_LOG, start)


def _next_month(start: date) -> date:
    return date(start.year + (start.month == 12), start.month % 12 + 1, 1)


# --------------------------------------------------------------------------- verifying files
@dataclass(frozen=True, slots=True)
class FileReport:
    path: Path
    ok: bool
    entries: int = 0
    reason: str | None = None
    first_bad_id: int | None = None
    failure: str | None = None  # chain.LINK/HASH/MAC/MAC_MISSING/MAC_KEY, or "signature", "anchor"
    month: str | None = None
    first_id: int | None = None
    last_id: int | None = None
    first_prev_hash: str | None = None
    last_entry_hash: str | None = None
    digest: str | None = None
    anchor_id: int | None = None
    hashes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ArchivesReport:
    files: list[FileReport]
    problem: str | None = None  # files that do not follow each other

    @property
    def ok(self) -> bool:
        return self.problem is None and all(item.ok for item in self.files)

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset().union(*(item.hashes for item in self.files))


def _data_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(SIGNATURE_SUFFIX))


async def verify_archives(
    session: AsyncSession, paths: Sequence[Path], macs: AuditMac
) -> ArchivesReport:
    """Verify archive files (see the module docstring); in the order of the chain."""
    anchors = list(
        (
            await session.execute(
                select(AuditAnchor).where(AuditAnchor.kind == "archive").order_by(AuditAnchor.id)
            )
        ).scalars()
    )
    starts = (
        await session.execute(
            select(func.min(AuditAnchor.last_entry_id)).where(AuditAnchor.kind == "mac_start")
        )
    ).scalar()
    by_digest = {anchor.file_digest: anchor for anchor in anchors}
    since = as_utc(datetime.fromisoformat(macs.since)) if macs.since else None
    unique = list(dict.fromkeys(_data_path(path) for path in paths))
    reports = [_verify_file(path, macs, by_digest, starts, since) for path in unique]
    reports.sort(key=lambda item: item.first_id if item.first_id is not None else -1)
    problem = None
    intact = [item for item in reports if item.ok]
    for earlier, later in itertools.pairwise(intact):
        if later.first_prev_hash != earlier.last_entry_hash:
            problem = (
                f"归档文件 {later.path.name} 不接续 {earlier.path.name} "
                "(中间缺少归档文件, 或文件被替换)"
            )
            break
    return ArchivesReport(reports, problem)


def _check_signature(
    path: Path, macs: AuditMac
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(signature, file digest, None) when the signature and the digest hold, else
    (None, None, why)."""
    signature_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    for needed in (path, signature_path):
        if not needed.is_file():
            return None, None, f"找不到文件 {needed}"
    try:
        signature = json.loads(signature_path.read_text(encoding="utf-8"))
        if not isinstance(signature, dict) or signature.get("format") != FORMAT:
            raise ValueError("format")
        key_id = str(signature["mac_key_id"])
        holds = macs.check(key_id, "archive", _signature_message(signature), str(signature["mac"]))
        int(signature["first_id"]), int(signature["last_id"]), int(signature["entries"])
    except (ValueError, KeyError, TypeError, OSError):
        return None, None, "签名文件格式错误"
    if holds is None:
        return None, None, f"签名使用了密钥环中没有的审计密钥 {key_id[:32]!r}"
    if not holds:
        return None, None, "签名不符 (签名文件被修改或伪造)"
    digest = _file_digest(path)
    if digest != signature.get("sha256"):
        return None, None, "文件的 SHA-256 与签名不符 (文件被修改)"
    return signature, digest, None


def _verify_file(
    path: Path,
    macs: AuditMac,
    anchors: dict[str | None, AuditAnchor],
    required_from: int | None,
    since: datetime | None,
) -> FileReport:
    signature, digest, problem = _check_signature(path, macs)
    if signature is None or digest is None:
        return FileReport(path, False, reason=problem, failure="signature")
    anchor = anchors.get(digest)
    walk = chain._Walk(macs, required_from, since)
    hashes: set[str] = set()
    count = 0
    expected = str(signature["first_prev_hash"])
    base = FileReport(
        path,
        False,
        month=str(signature["month"]),
        first_id=int(signature["first_id"]),
        last_id=int(signature["last_id"]),
        first_prev_hash=expected,
        last_entry_hash=str(signature["last_entry_hash"]),
        digest=digest,
        anchor_id=None if anchor is None else anchor.id,
    )
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            header = json.loads(next(handle))
            if header.get("first_prev_hash") != expected or header.get("format") != FORMAT:
                return replace(base, reason="文件头与签名不符", failure="signature")
            for line in handle:
                entry = _entry_of(json.loads(line))
                if entry.prev_hash != expected:
                    return replace(
                        base,
                        entries=count,
                        first_bad_id=entry.id,
                        reason=chain.REASONS[chain.LINK],
                        failure=chain.LINK,
                    )
                if (
                    chain._entry_digest(entry.prev_hash, chain._hashed_fields(entry))
                    != entry.entry_hash
                ):
                    return replace(
                        base,
                        entries=count,
                        first_bad_id=entry.id,
                        reason=chain.REASONS[chain.HASH],
                        failure=chain.HASH,
                    )
                mac_problem = walk.mac_problem(entry)
                if mac_problem is not None:
                    return replace(
                        base,
                        entries=count,
                        first_bad_id=entry.id,
                        reason=mac_problem[1],
                        failure=mac_problem[0],
                    )
                expected = entry.entry_hash
                hashes.add(expected)
                count += 1
    except (OSError, EOFError, ValueError, KeyError, TypeError, StopIteration):
        return replace(
            base,
            entries=count,
            reason="文件无法读取 (不是完整的 gzip JSON Lines)",
            failure="signature",
        )
    if count != signature["entries"] or expected != signature["last_entry_hash"]:
        return replace(
            base,
            entries=count,
            reason="文件中的记录与签名不符 (记录被删除或截断)",
            failure="signature",
        )
    if anchor is None:
        return replace(
            base,
            entries=count,
            reason="数据库中没有该文件的归档锚点 (锚点被删除, 或文件不是本系统归档的)",
            failure="anchor",
        )
    if (anchor.last_entry_hash, anchor.first_prev_hash) != (expected, signature["first_prev_hash"]):
        return replace(
            base, entries=count, reason=f"文件与归档锚点 {anchor.id} 不符", failure="anchor"
        )
    return replace(base, ok=True, entries=count, hashes=frozenset(hashes))
