"""Keyed, retained audit evidence (issue 16 item 6): a MAC per entry with the keyring's audit
key, so a chain rewritten with every hash recomputed is caught; retention of at least six
months (网络安全法第二十一条); signed archives with anchors; ``audit verify`` from the anchor,
over archive files, and with ``--anchor`` for deleted newest entries. On SQLite and
PostgreSQL, through the library and the ``relief-gateway`` command (in process and as a real
subprocess)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, text, update

from gateway import cli
from gateway.crypto import AuditMac, Keyring
from gateway.domain.clock import CHINA_TZ, as_utc
from gateway.domain.departments import Department, Level
from gateway.domain.principal import Principal
from gateway.domain.settings import Settings
from gateway.storage import audit_archive as archive_module
from gateway.storage import audit_chain as audit
from gateway.storage.audit_archive import latest_archivable, months_back
from gateway.storage.models import AuditAnchor, AuditEntry
from gateway.storage.partitions import SCHEMA, ensure_partitions
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

TODAY = date(2026, 11, 23)  # RELIEF_TODAY of the test run (tests/conftest.py)
# Entries of five old months (Beijing time), 3 a month; archiving --before 2026-05 takes four.
OLD_MONTHS = ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05")
PER_MONTH = 3
SM_SUITE = "sm4-gcm+hmac-sm3"


@dataclass
class Gateway:
    harness: Harness
    url: str
    data_dir: Path
    backend: str

    @property
    def macs(self) -> AuditMac:
        macs = self.harness.runtime.audit.macs
        assert macs is not None
        return macs

    def cli_args(self, *args: str) -> list[str]:
        return [*args, "--database-url", self.url, "--data-dir", str(self.data_dir)]


async def _gateway(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, suite: str
) -> AsyncIterator[Gateway]:
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'evidence.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_evidence_{uuid.uuid4().hex[:10]}"
        url = cluster.create_database(name)
    data_dir = tmp_path / "data"
    h = await build_harness(data_dir, url, backend=backend, persons=12, cipher_suite=suite)
    try:
        gateway = Gateway(h, url, data_dir, backend)
        await _old_entries(gateway)
        province = h.persons[0].region_code[:2]
        for index in range(4):  # today's requests, through the gateway
            token = h.token("medical_insurance", "province", province, subject=f"clerk-{index}")
            body = await h.query(
                token, "{ persons(first: 2) { edges { node { name } } } }", purpose="supervision"
            )
            assert "errors" not in body, body
        yield gateway
    finally:
        await h.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with entries of five old months (written through its audit writer, dated
    back) and four of today's requests."""
    async for built in _gateway(request, tmp_path, str(request.param), "aes-256-gcm+hmac-sha256"):
        yield built


@pytest.fixture
async def sqlite_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    async for built in _gateway(request, tmp_path, "sqlite", "aes-256-gcm+hmac-sha256"):
        yield built


async def _old_entries(g: Gateway, months: tuple[str, ...] = OLD_MONTHS) -> None:
    reader = Principal(
        subject="history.reader",
        department=Department.CIVIL_AFFAIRS,
        level=Level.COUNTY,
        region=g.harness.busiest_county(),
    )
    person = g.harness.persons[0]
    for month in months:
        year, number = (int(part) for part in month.split("-"))
        for day in range(PER_MONTH):
            entry = audit.read_entry(
                principal=reader,
                purpose="relief_recognition",
                request_id=str(uuid.uuid4()),
                operation="HistoryPage",
                policy_version=1,
                person_ids=[person.person_id],
                fields={"Person.name": "read"},
            )
            entry.occurred_at = datetime(year, number, 10 + day, 9, 0, tzinfo=CHINA_TZ).astimezone(
                UTC
            )
            await g.harness.runtime.audit.append(entry)
    # PostgreSQL: the old months get their partitions (the rows move out of DEFAULT), as
    # partition maintenance does for rows that arrive for a month without one.
    await ensure_partitions(g.harness.runtime.engine, TODAY)


async def _entries(g: Gateway) -> list[AuditEntry]:
    async with g.harness.runtime.sessions() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def _verify(g: Gateway, **kwargs: Any) -> audit.ChainReport:
    async with g.harness.runtime.sessions() as session:
        return await audit.verify_chain(session, **kwargs)


async def _run_cli(
    capsys: pytest.CaptureFixture[str], args: list[str], env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    capsys.readouterr()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        code = await asyncio.to_thread(cli.main, args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _subprocess(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


async def _rewrite_from(
    g: Gateway, first_id: int, *, strip_macs: bool = False, **changes: Any
) -> None:
    """A forger with write access to the database but not the keyring: change entry
    ``first_id`` and recompute every hash from it to the head (MACs left as they were, or
    removed)."""
    async with g.harness.runtime.sessions() as session:
        rows = list(
            (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.id >= first_id).order_by(AuditEntry.id)
                )
            ).scalars()
        )
        previous = rows[0].prev_hash
        for row in rows:
            if row.id == first_id:
                for key, value in changes.items():
                    setattr(row, key, value)
            row.prev_hash = previous
            row.entry_hash = previous = audit._entry_digest(previous, audit._hashed_fields(row))
            if strip_macs:
                row.entry_mac = row.mac_key_id = None
        await session.commit()


# --------------------------------------------------------------------------- the MAC
async def test_every_entry_carries_a_mac_from_the_first(gateway: Gateway) -> None:
    entries = await _entries(gateway)
    assert len(entries) == len(OLD_MONTHS) * PER_MONTH + 4
    key_id = gateway.macs.key_id
    assert key_id is not None
    assert key_id.startswith("ak-")
    for entry in entries:
        assert entry.mac_key_id == key_id
        assert entry.entry_mac is not None
        assert re.fullmatch(r"[0-9a-f]{64}", entry.entry_mac)
        assert gateway.macs.check(key_id, "entry", entry.entry_hash.encode(), entry.entry_mac)
    async with gateway.harness.runtime.sessions() as session:
        starts = list(
            (
                await session.execute(select(AuditAnchor).where(AuditAnchor.kind == "mac_start"))
            ).scalars()
        )
    assert [(a.last_entry_id, a.last_entry_hash) for a in starts] == [
        (entries[0].id, entries[0].entry_hash)
    ]
    report = await _verify(gateway, macs=gateway.macs)
    assert report.ok, report
    assert report.mac_entries == len(entries)
    assert report.pre_mac_entries == 0


async def test_chain_rewritten_with_recomputed_hashes_is_caught_by_the_mac(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """The threat the MAC answers: the unkeyed chain, rewritten consistently, verifies."""
    entries = await _entries(gateway)
    target = entries[5]
    await _rewrite_from(gateway, target.id, subject="someone.else")

    chain_only = await _verify(gateway)
    assert chain_only.ok  # every link and digest holds: the chain alone cannot tell

    report = await _verify(gateway, macs=gateway.macs)
    assert not report.ok
    assert report.first_bad_id == target.id
    assert report.failure == audit.MAC
    assert report.chain_bad_id is None
    assert report.entries == 5

    code, _out, err = await _run_cli(capsys, gateway.cli_args("audit", "verify"))
    assert code == 1
    assert f"第一条异常记录编号 {target.id}" in err
    assert "MAC 不符" in err
    assert "只有 MAC 能发现" in err

    # The audit administrator's check through the API checks the MACs too.
    h = gateway.harness
    auditor = h.token(
        "medical_insurance",
        "province",
        h.persons[0].region_code[:2],
        subject="auditor.z",
        roles=["audit_admin"],
    )
    body = await h.query(auditor, "{ auditChain { ok firstBadId } }")
    assert body["data"]["auditChain"] == {"ok": False, "firstBadId": str(target.id)}


async def test_a_forger_who_does_not_recompute_everything_is_named_twice(gateway: Gateway) -> None:
    """An entry edited and its own hash recomputed: its MAC fails first, the next link breaks;
    the report names both, and whether the hash or the MAC failed."""
    entries = await _entries(gateway)
    target = entries[3]
    async with gateway.harness.runtime.sessions() as session:
        row = (
            await session.execute(select(AuditEntry).where(AuditEntry.id == target.id))
        ).scalar_one()
        row.purpose = "benefit_settlement"
        row.entry_hash = audit._entry_digest(row.prev_hash, audit._hashed_fields(row))
        await session.commit()
    report = await _verify(gateway, macs=gateway.macs)
    assert (report.first_bad_id, report.failure) == (target.id, audit.MAC)
    assert (report.chain_bad_id, report.chain_reason) == (entries[4].id, audit.REASONS[audit.LINK])


@pytest.mark.parametrize("how", ["one-entry", "rewrite-and-strip", "strip-all-and-anchor"])
async def test_stripped_macs_are_caught(gateway: Gateway, how: str) -> None:
    """Removing MACs to pass rewritten entries off as written before MACs existed."""
    entries = await _entries(gateway)
    if how == "one-entry":
        target = entries[7]
        async with gateway.harness.runtime.sessions() as session:
            await session.execute(
                update(AuditEntry)
                .where(AuditEntry.id == target.id)
                .values(entry_mac=None, mac_key_id=None)
            )
            await session.commit()
        expected = target.id
    elif how == "rewrite-and-strip":
        await _rewrite_from(gateway, entries[7].id, strip_macs=True, subject="ghost")
        expected = entries[7].id
    else:
        # The whole chain rewritten as if "pre-MAC", and the anchor saying when MACs began
        # removed: the keyring still knows when its audit key was made, and today's entries
        # are later than that.
        await _rewrite_from(gateway, entries[0].id, strip_macs=True, subject="ghost")
        async with gateway.harness.runtime.sessions() as session:
            await session.execute(delete(AuditAnchor))
            await session.commit()
        since = datetime.fromisoformat(gateway.macs.since or "")
        expected = next(e.id for e in entries if as_utc(e.occurred_at) >= since)
    report = await _verify(gateway, macs=gateway.macs)
    assert not report.ok
    assert report.first_bad_id == expected
    assert report.failure == audit.MAC_MISSING
    assert (await _verify(gateway)).ok  # the chain alone is consistent


async def test_a_forged_or_deleted_mac_start_anchor_is_caught(gateway: Gateway) -> None:
    async with gateway.harness.runtime.sessions() as session:
        await session.execute(
            update(AuditAnchor).where(AuditAnchor.kind == "mac_start").values(last_entry_id=10**9)
        )
        await session.commit()
    report = await _verify(gateway, macs=gateway.macs)
    assert (report.failure, report.first_bad_id) == (audit.ANCHOR, None)
    assert "MAC 不符" in (report.reason or "")
    async with gateway.harness.runtime.sessions() as session:
        await session.execute(delete(AuditAnchor).where(AuditAnchor.kind == "mac_start"))
        await session.commit()
    report = await _verify(gateway, macs=gateway.macs)
    assert report.failure == audit.ANCHOR
    assert "MAC 起点锚点缺失" in (report.reason or "")


def _hmac_sm3(key: bytes, message: bytes) -> str:
    """RFC 2104 by hand over hashlib's SM3 (the system OpenSSL): a second implementation."""
    block = 64
    key = key.ljust(block, b"\0")
    inner = hashlib.new("sm3", bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.new("sm3", bytes(b ^ 0x5C for b in key) + inner).hexdigest()


async def test_entries_macd_under_the_sm_suite_verify(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async for g in _gateway(request, tmp_path, "sqlite", SM_SUITE):
        keyring = Keyring.load(g.harness.runtime.settings.keyring_path)
        key = keyring.audit_key
        assert key is not None
        assert key.algorithm == "HMAC-SM3"
        entries = await _entries(g)
        for entry in entries:
            prefix = f"relief-gateway audit entry\x00{key.key_id}\x00".encode()
            assert entry.entry_mac == _hmac_sm3(key.material, prefix + entry.entry_hash.encode())
        assert (await _verify(g, macs=g.macs)).ok
        await _rewrite_from(g, entries[2].id, fields=json.dumps({}))
        report = await _verify(g, macs=g.macs)
        assert (report.first_bad_id, report.failure) == (entries[2].id, audit.MAC)


async def test_audit_key_rotation(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new audit key for new entries; older entries keep verifying with theirs; a keyring
    that lost the old key names it."""
    g = sqlite_gateway
    old_key = g.macs.key_id
    code, out, err = await _run_cli(
        capsys, g.cli_args("audit", "rotate-key", "--operator", "sys.admin")
    )
    assert code == 0, err
    new_key = Keyring.load(g.harness.runtime.settings.keyring_path).audit_key
    assert new_key is not None
    assert new_key.key_id != old_key
    assert new_key.key_id in out
    assert "key" not in out.lower().replace(new_key.key_id, "").replace("rotate-key", "")
    # The serving gateway picks the rotated keyring up (as after `keys rotate`).
    assert g.harness.runtime.vault is not None
    await asyncio.sleep(g.harness.runtime.settings.keyring_reload_seconds + 0.1)
    province = g.harness.persons[0].region_code[:2]
    token = g.harness.token("medical_insurance", "province", province, subject="after.rotation")
    await g.harness.query(
        token, "{ persons(first: 1) { edges { node { name } } } }", purpose="supervision"
    )
    entries = await _entries(g)
    assert entries[-1].subject == "after.rotation"
    assert entries[-1].mac_key_id == new_key.key_id
    rotation = next(e for e in entries if e.operation == "relief-gateway audit rotate-key")
    assert rotation.subject == "sys.admin"
    assert json.loads(rotation.fields)["Admin.key"] == new_key.key_id
    assert {e.mac_key_id for e in entries} == {old_key, new_key.key_id}

    code, out, err = await _run_cli(capsys, g.cli_args("audit", "verify"))
    assert code == 0, err
    assert "MAC 无误" in out

    # A keyring without the old audit key cannot vouch for the entries it MAC'd.
    path = g.harness.runtime.settings.keyring_path
    document = json.loads(path.read_text())
    del document["audit_keys"][old_key]
    path.write_text(json.dumps(document))
    code, _out, err = await _run_cli(capsys, g.cli_args("audit", "verify"))
    assert code == 1
    assert old_key is not None
    assert old_key in err
    assert "审计密钥未知" in err


# --------------------------------------------------------------------------- retention
def test_retention_below_six_months_is_refused() -> None:
    with pytest.raises(ValueError, match="网络安全法》第二十一条"):
        Settings(audit_retention_months=5)
    assert Settings(audit_retention_months=6).audit_retention_months == 6
    assert Settings(audit_retention_months=24).audit_retention_months == 24
    result = _subprocess(["audit", "verify"], env={"RELIEF_AUDIT_RETENTION_MONTHS": "3"})
    assert result.returncode == 2
    assert "RELIEF_AUDIT_RETENTION_MONTHS 不能少于 6 个月" in result.stderr
    assert "第二十一条" in result.stderr


@pytest.mark.parametrize(
    ("today", "months", "latest"),
    [
        (date(2026, 11, 23), 6, date(2026, 5, 1)),
        (date(2026, 11, 1), 6, date(2026, 5, 1)),
        (date(2026, 8, 31), 6, date(2026, 2, 1)),  # 6 months back is 28 February
        (date(2026, 3, 31), 6, date(2025, 9, 1)),
        (date(2026, 11, 23), 12, date(2025, 11, 1)),
    ],
)
def test_latest_archivable_month(today: date, months: int, latest: date) -> None:
    assert latest_archivable(today, months) == latest
    assert months_back(today, months) >= latest


async def test_archive_inside_the_retention_window_is_refused(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    g = sqlite_gateway
    before = await _entries(g)
    code, _out, err = await _run_cli(capsys, g.cli_args("audit", "archive", "--before", "2026-06"))
    assert code == 2
    assert "拒绝归档" in err
    assert "第二十一条" in err
    assert "--before 2026-05" in err
    # Configured upward: twelve months keep even 2026-05 online.
    code, _out, err = await _run_cli(
        capsys,
        g.cli_args("audit", "archive", "--before", "2026-05"),
        env={"RELIEF_AUDIT_RETENTION_MONTHS": "12"},
    )
    assert code == 2
    assert "12 个月" in err
    assert "--before 2025-11" in err
    for bad in ("2026-5", "May 2026", "2026-13"):
        code, _out, err = await _run_cli(capsys, g.cli_args("audit", "archive", "--before", bad))
        assert code == 2
        assert "YYYY-MM" in err
    assert len(await _entries(g)) == len(before)  # nothing moved, nothing recorded
    assert not (g.data_dir / "audit-archive").exists()


# --------------------------------------------------------------------------- archives
async def _partitions(g: Gateway) -> set[str]:
    async with g.harness.runtime.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": SCHEMA}
        )
        return {row[0] for row in rows}


async def test_archive_then_verify_from_the_anchor(gateway: Gateway, tmp_path: Path) -> None:
    """Through the real command in its own process: archive four months, verify the online
    log from the anchor and the files themselves."""
    g = gateway
    entries = await _entries(g)
    old = [e for e in entries if e.operation == "HistoryPage"]
    archived = old[: 4 * PER_MONTH]  # January to April
    if g.backend == "postgres":
        assert {f"audit_log_m2026{m:02d}" for m in range(1, 6)} <= await _partitions(g)
    out_dir = tmp_path / "archive"

    result = _subprocess(
        g.cli_args(
            "audit",
            "archive",
            "--before",
            "2026-05",
            "--out",
            str(out_dir),
            "--operator",
            "Audit.Admin",
        )
    )
    assert result.returncode == 0, result.stderr
    files = _archive_files(out_dir)
    assert [f.name.split("-")[1:3] for f in files] == [["2026", f"{m:02d}"] for m in range(1, 5)]
    assert all(f.with_name(f.name + ".sig").is_file() for f in files)
    for file in files:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert digest in result.stdout
    assert archived[-1].entry_hash in result.stdout

    online = await _entries(g)
    assert [e.id for e in online[: len(online) - 1]] == [e.id for e in entries if e not in archived]
    assert online[0].prev_hash == archived[-1].entry_hash
    record = online[-1]
    assert record.operation == "relief-gateway audit archive"
    assert record.subject == "audit.admin"  # canonical form
    assert json.loads(record.fields)["Admin.last_entry_hash"] == archived[-1].entry_hash
    async with g.harness.runtime.sessions() as session:
        anchors = list(
            (
                await session.execute(
                    select(AuditAnchor)
                    .where(AuditAnchor.kind == "archive")
                    .order_by(AuditAnchor.id)
                )
            ).scalars()
        )
        early = await session.execute(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.occurred_at < datetime(2026, 4, 30, 16, tzinfo=UTC))
        )
        assert early.scalar_one() == 0
    assert [a.month for a in anchors] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert anchors[-1].last_entry_id == archived[-1].id
    if g.backend == "postgres":  # whole months went as partitions: none left behind
        left = await _partitions(g)
        assert not {f"audit_log_m2026{m:02d}" for m in range(1, 5)} & left
        assert "audit_log_m202605" in left

    verified = _subprocess(g.cli_args("audit", "verify", "--archive", *map(str, files)))
    assert verified.returncode == 0, verified.stderr
    assert "自归档锚点起" in verified.stdout
    assert verified.stdout.count("签名与 MAC 无误") == 4
    report = await _verify(g, macs=g.macs)
    assert report.ok
    assert report.start_hash == archived[-1].entry_hash
    assert report.archive_anchors == 4

    # Again: nothing older is online any more; the run is still recorded.
    again = _subprocess(
        g.cli_args("audit", "archive", "--before", "2026-05", "--out", str(out_dir))
    )
    assert again.returncode == 0, again.stderr
    assert "没有在线记录可归档" in again.stdout
    assert (await _verify(g, macs=g.macs)).ok


async def _archive(g: Gateway, capsys: pytest.CaptureFixture[str], out_dir: Path) -> list[Path]:
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "archive", "--before", "2026-05", "--out", str(out_dir))
    )
    assert code == 0, err
    return _archive_files(out_dir)


def _archive_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("*.jsonl.gz"))


def _rewrite_file(path: Path, change: Any) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    change(lines)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")


def _recompute(lines: list[dict[str, Any]]) -> None:
    previous = lines[0]["first_prev_hash"]
    for record in lines[1:]:
        entry = AuditEntry(
            **{**record, "occurred_at": datetime.fromisoformat(record["occurred_at"])}
        )
        record["prev_hash"] = previous
        record["entry_hash"] = previous = audit._entry_digest(previous, audit._hashed_fields(entry))


def _resign_digest(path: Path) -> None:
    """The forger updates the digest in the signature file (but cannot redo its MAC)."""
    signature_path = path.with_name(path.name + ".sig")
    signature = json.loads(signature_path.read_text())
    signature["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    signature_path.write_text(json.dumps(signature))


def _edit_entry(lines: list[dict[str, Any]]) -> None:
    lines[2]["subject"] = "nobody"


def _edit_and_rehash(lines: list[dict[str, Any]]) -> None:
    lines[2]["subject"] = "nobody"
    _recompute(lines)


def _drop_entry(lines: list[dict[str, Any]]) -> None:
    del lines[2]


TAMPERED_FILES = {
    "edit-entry": (_edit_entry, False, "签名或文件异常"),
    "edit-entry-fix-digest": (_edit_entry, True, "签名或文件异常"),
    "rehash-fix-digest": (_edit_and_rehash, True, "签名或文件异常"),
    "drop-entry-fix-digest": (_drop_entry, True, "签名或文件异常"),
}


@pytest.mark.parametrize("how", list(TAMPERED_FILES))
async def test_a_tampered_archive_file_is_caught(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path, how: str
) -> None:
    g = sqlite_gateway
    files = await _archive(g, capsys, tmp_path / "archive")
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--archive", *map(str, files))
    )
    assert code == 0, err
    change, fix_digest, label = TAMPERED_FILES[how]
    _rewrite_file(files[1], change)
    if fix_digest:
        _resign_digest(files[1])
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--archive", *map(str, files))
    )
    assert code == 1
    assert files[1].name in err
    assert label in err


async def test_archive_files_missing_or_out_of_place_are_caught(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    g = sqlite_gateway
    files = await _archive(g, capsys, tmp_path / "archive")
    # A month left out: the files no longer follow each other.
    code, _out, err = await _run_cli(
        capsys,
        g.cli_args("audit", "verify", "--archive", str(files[0]), str(files[2]), str(files[3])),
    )
    assert code == 1
    assert "不接续" in err
    # The newest file left out: the last one given does not reach the online log.
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--archive", *map(str, files[:3]))
    )
    assert code == 1
    assert "不是在线日志的起点" in err
    # A signature file removed.
    files[0].with_name(files[0].name + ".sig").unlink()
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--archive", *map(str, files))
    )
    assert code == 1
    assert "找不到文件" in err


async def test_anchors_deleted_or_forged_are_caught(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    g = gateway
    await _archive(g, capsys, tmp_path / "archive")
    assert (await _verify(g, macs=g.macs)).ok
    async with g.harness.runtime.sessions() as session:
        latest = (
            await session.execute(
                select(AuditAnchor)
                .where(AuditAnchor.kind == "archive")
                .order_by(AuditAnchor.id.desc())
                .limit(1)
            )
        ).scalar_one()
        saved = {c.key: getattr(latest, c.key) for c in AuditAnchor.__table__.columns}
        await session.execute(delete(AuditAnchor).where(AuditAnchor.id == latest.id))
        await session.commit()
    # The online log no longer starts where the (remaining) archives end.
    report = await _verify(g, macs=g.macs)
    assert (report.failure, report.first_bad_id) == (audit.LINK, (await _entries(g))[0].id)
    # A forged anchor (another hash) put back in its place: its MAC does not hold.
    async with g.harness.runtime.sessions() as session:
        await session.execute(insert(AuditAnchor).values(**{**saved, "last_entry_hash": "a" * 64}))
        await session.commit()
    report = await _verify(g, macs=g.macs)
    assert report.failure == audit.ANCHOR
    assert "MAC 不符" in (report.reason or "")
    code, _out, err = await _run_cli(capsys, g.cli_args("audit", "verify"))
    assert code == 1
    assert "锚点异常" in err


async def test_deleting_the_newest_entries_is_caught_with_the_recorded_head(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    g = gateway
    head_before_archive = (await _entries(g))[1].entry_hash  # a head recorded in January
    files = await _archive(g, capsys, tmp_path / "archive")
    code, out, _err = await _run_cli(capsys, g.cli_args("audit", "verify"))
    assert code == 0
    head = re.search(r"链头哈希: ([0-9a-f]{64})", out)
    assert head is not None
    async with g.harness.runtime.sessions() as session:
        newest = (await session.execute(select(func.max(AuditEntry.id)))).scalar_one()
        await session.execute(delete(AuditEntry).where(AuditEntry.id >= newest - 1))
        await session.commit()
    assert (await _verify(g, macs=g.macs)).ok  # a shorter chain is intact...
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--anchor", head.group(1))
    )
    assert code == 1
    assert "链头哈希不在日志中" in err
    # A head recorded long ago, since archived: found in the archive files given.
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "verify", "--anchor", head_before_archive)
    )
    assert code == 1
    assert "--archive" in err
    code, _out, err = await _run_cli(
        capsys,
        g.cli_args(
            "audit", "verify", "--anchor", head_before_archive, "--archive", *map(str, files)
        ),
    )
    assert code == 0, err


async def test_archive_refuses_a_tampered_log(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    g = sqlite_gateway
    entries = await _entries(g)
    await _rewrite_from(g, entries[1].id, subject="forged")
    out_dir = tmp_path / "archive"
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "archive", "--before", "2026-05", "--out", str(out_dir))
    )
    assert code == 1
    assert "拒绝归档" in err
    assert f"第一条异常记录编号 {entries[1].id}" in err
    assert not _archive_files(out_dir)
    assert len(await _entries(g)) == len(entries)


async def test_appends_continue_the_chain_after_an_archive_emptied_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When every online entry is archived, the next entry (the archive's own record) links
    to the last archived one."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    h = await build_harness(tmp_path / "data", url, backend="sqlite", persons=5)
    try:
        g = Gateway(h, url, tmp_path / "data", "sqlite")
        await _old_entries(g, OLD_MONTHS[:4])
        files = await _archive(g, capsys, tmp_path / "archive")
        assert len(files) == 4
        online = await _entries(g)
        assert [e.operation for e in online] == ["relief-gateway audit archive"]
        signature = json.loads(files[-1].with_name(files[-1].name + ".sig").read_text())
        assert online[0].prev_hash == signature["last_entry_hash"]
        assert (await _verify(g, macs=g.macs)).ok
    finally:
        await h.close()


async def test_any_byte_changed_in_an_archive_or_its_signature_is_caught(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Property: flip any bit of any byte of the archive file or of its signature file; the
    file no longer verifies (and the original still does)."""
    g = sqlite_gateway
    files = await _archive(g, capsys, tmp_path / "archive")
    original = files[1]
    async with g.harness.runtime.sessions() as session:
        anchors = {
            a.file_digest: a
            for a in (
                await session.execute(select(AuditAnchor).where(AuditAnchor.kind == "archive"))
            ).scalars()
        }
        start = (
            await session.execute(
                select(func.min(AuditAnchor.last_entry_id)).where(AuditAnchor.kind == "mac_start")
            )
        ).scalar()
    since = datetime.fromisoformat(g.macs.since or "")

    def verifies(path: Path) -> bool:
        return archive_module._verify_file(path, g.macs, anchors, start, since).ok

    assert verifies(original)
    data = original.read_bytes()
    signature = original.with_name(original.name + ".sig").read_bytes()
    work = tmp_path / "work"
    work.mkdir()

    @settings(max_examples=80, deadline=None)
    @example(in_signature=True, position=0.03125, bit=0)  # "algorithm" was once unsigned
    @given(
        in_signature=st.booleans(),
        position=st.floats(min_value=0, max_value=1, exclude_max=True),
        bit=st.integers(min_value=0, max_value=7),
    )
    def flipped(in_signature: bool, position: float, bit: int) -> None:
        target = bytearray(signature if in_signature else data)
        index = int(position * len(target))
        target[index] ^= 1 << bit
        copy = work / original.name
        copy.write_bytes(bytes(target) if not in_signature else data)
        copy.with_name(copy.name + ".sig").write_bytes(bytes(target) if in_signature else signature)
        assert not verifies(copy)

    flipped()


async def test_an_archive_that_cannot_finish_leaves_nothing_behind(
    sqlite_gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file of the run already exists (another run's): refused, no file of this run stays,
    nothing left the database, no anchor recorded."""
    g = sqlite_gateway
    entries = await _entries(g)
    january = [e for e in entries if e.operation == "HistoryPage"][:PER_MONTH]
    out_dir = tmp_path / "archive"
    out_dir.mkdir()
    taken = out_dir / f"audit-2026-01-{january[0].id}-{january[-1].id}.jsonl.gz"
    taken.write_bytes(b"someone else's")
    code, _out, err = await _run_cli(
        capsys, g.cli_args("audit", "archive", "--before", "2026-05", "--out", str(out_dir))
    )
    assert code == 2
    assert "已存在" in err
    assert sorted(p.name for p in out_dir.iterdir()) == [taken.name]
    assert taken.read_bytes() == b"someone else's"
    assert [e.id for e in await _entries(g)] == [e.id for e in entries]
    async with g.harness.runtime.sessions() as session:
        kinds = (await session.execute(select(AuditAnchor.kind))).scalars().all()
    assert kinds == ["mac_start"]
    assert (await _verify(g, macs=g.macs)).ok


async def test_an_entry_committed_late_stays_with_its_neighbours(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The archive is a prefix of the chain: an April entry committed after May's (a slower
    process) stays online, and on PostgreSQL its partition stays with it."""
    g = gateway
    late = audit.read_entry(
        principal=Principal(
            subject="slow.process",
            department=Department.HEALTH,
            level=Level.COUNTY,
            region=g.harness.busiest_county(),
        ),
        purpose="relief_recognition",
        request_id=str(uuid.uuid4()),
        operation="LatePage",
        policy_version=1,
        person_ids=[],
        fields={"Person.name": "read"},
    )
    late.occurred_at = datetime(2026, 4, 30, 15, 59, tzinfo=UTC)  # 23:59 Beijing, 30 April
    await g.harness.runtime.audit.append(late)
    await _archive(g, capsys, tmp_path / "archive")
    online = await _entries(g)
    assert [e.operation for e in online if e.id == late.id] == ["LatePage"]
    assert online[0].operation == "HistoryPage"  # May's first entry starts the online log
    if g.backend == "postgres":
        left = await _partitions(g)
        assert "audit_log_m202604" in left  # still holds the late entry
        assert not {"audit_log_m202601", "audit_log_m202602", "audit_log_m202603"} & left
    assert (await _verify(g, macs=g.macs)).ok
