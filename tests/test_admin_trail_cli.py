"""The system administrator's server commands are in the administrators' trail (三权分立,
issue 16): run as an operator runs them (``python -m gateway.cli …`` in its own process), each
change appends one MAC'd entry naming the operator (``--operator`` in canonical form, else the
operating-system user) and the role; reading commands and dry runs append nothing; the chain
still verifies afterwards."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.domain.principal import canonical_subject
from gateway.domain.regions import provinces
from gateway.storage.audit_chain import verify_chain
from gateway.storage.models import AuditEntry, PolicyProposal
from tests.exchange_support import audit_entries, last_audit_id
from tests.harness import Harness, build_harness


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def _cli(
    harness: Harness, *argv: str, production: bool = False, stdin: bytes | None = None
) -> Ran:
    """``python -m gateway.cli …`` as an operator runs it; ``production``: RELIEF_ENV=production
    with the province set and no pinned date (the test tooling pins RELIEF_TODAY)."""
    settings = harness.runtime.settings
    env = {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
    }
    if production:
        env.pop("RELIEF_TODAY", None)
        env.update(RELIEF_ENV="production", RELIEF_PROVINCE=settings.province.value)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def _released(entry: AuditEntry) -> dict[str, str]:
    return dict(json.loads(entry.fields))


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await build_harness(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}", backend="sqlite", persons=60
    )
    yield harness
    await harness.close()


async def test_key_commands_enter_the_trail_with_the_operator(gateway: Harness) -> None:
    start = await last_audit_id(gateway)

    rotated = await _cli(gateway, "keys", "rotate", "--operator", " ＯＰＳ.Zhang ")
    assert rotated.code == 0, rotated.err
    counted = await _cli(gateway, "keys", "status")  # reads only
    assert counted.code == 0, counted.err
    dry = await _cli(gateway, "keys", "reencrypt", "--dry-run")  # counts only
    assert dry.code == 0, dry.err
    migrated = await _cli(gateway, "migrate")  # the operating-system user
    assert migrated.code == 0, migrated.err
    ensured = await _cli(gateway, "partitions", "ensure")  # SQLite: nothing to create
    assert ensured.code == 0, ensured.err

    trail = await audit_entries(gateway, start)
    assert [(e.subject, e.operation) for e in trail] == [
        ("ops.zhang", "relief-gateway keys rotate"),
        (canonical_subject(getpass.getuser()), "relief-gateway migrate"),
    ]
    assert all(_released(e)["Admin.role"] == "system_admin" for e in trail)
    assert all(e.entry_mac for e in trail)  # sealed like every request's entry
    async with gateway.runtime.sessions() as session:
        assert (await verify_chain(session)).ok


async def test_a_refused_command_enters_nothing(gateway: Harness) -> None:
    start = await last_audit_id(gateway)
    refused = await _cli(gateway, "keys", "retire", "dk-nonexistent", "--operator", "ops.li")
    assert refused.code == 2
    assert "dk-nonexistent" in refused.err
    primary = json.loads(gateway.runtime.settings.keyring_path.read_text())["primary"]
    blank = await _cli(gateway, "keys", "rotate", "--operator", " \u3000 ")
    assert blank.code == 2
    assert "操作人" in blank.err
    # Refused before acting: no unaudited rotation.
    assert json.loads(gateway.runtime.settings.keyring_path.read_text())["primary"] == primary
    assert await audit_entries(gateway, start) == []


async def test_policy_import_is_the_security_administrators_and_canonical(
    gateway: Harness, tmp_path: Path
) -> None:
    exported = await _cli(gateway, "policy", "export")
    assert exported.code == 0, exported.err
    changed = tmp_path / "policy.csv"
    changed.write_text(
        exported.out + "p, health:county, Person.gender, read, *\n", encoding="utf-8"
    )
    start = await last_audit_id(gateway)
    imported = await _cli(
        gateway, "policy", "import", str(changed), "--proposed-by", " Ｏfficer.X "
    )
    assert imported.code == 0, imported.err
    assert "提出人 officer.x" in imported.out  # the spelling four eyes compares
    trail = await audit_entries(gateway, start)
    assert [(e.subject, e.operation, _released(e)) for e in trail] == [
        (
            "officer.x",
            "relief-gateway policy import",
            {
                "Admin.file": "policy.csv",
                "Admin.os_user": canonical_subject(getpass.getuser()),
                "Admin.role": "security_admin",
                "Admin.signed_in": "no (development)",
            },
        )
    ]


async def _policy_file(gateway: Harness, tmp_path: Path) -> Path:
    exported = await _cli(gateway, "policy", "export")
    assert exported.code == 0, exported.err
    changed = tmp_path / "policy.csv"
    changed.write_text(
        exported.out + "p, health:county, Person.gender, read, *\n", encoding="utf-8"
    )
    return changed


async def _proposers(gateway: Harness) -> list[str]:
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(select(PolicyProposal.proposed_by))
        return [row[0] for row in rows]


async def test_in_production_policy_import_needs_the_proposers_own_token(
    gateway: Harness, tmp_path: Path
) -> None:
    """A name typed on a shell proves nothing: in production the proposer signs in with its
    own token, whose subject and jurisdiction the proposal takes (four eyes holds)."""
    changed = await _policy_file(gateway, tmp_path)
    typed = await _cli(
        gateway, "policy", "import", str(changed), "--proposed-by", "officer.a", production=True
    )
    assert typed.code == 2
    assert "--token-file" in typed.err
    assert await _proposers(gateway) == []

    province = gateway.runtime.settings.province
    region = next(p.code for p in provinces() if p.key == province.value)
    clerk = gateway.token("medical_insurance", "province", region, subject="clerk.x")
    (tmp_path / "clerk.jwt").write_text(clerk)
    refused = await _cli(
        gateway,
        "policy",
        "import",
        str(changed),
        "--token-file",
        str(tmp_path / "clerk.jwt"),
        production=True,
    )
    assert refused.code == 2
    assert "令牌未通过验证" in refused.err
    assert "安全管理员" in refused.err
    forged = await _cli(
        gateway,
        "policy",
        "import",
        str(changed),
        "--token-file",
        "-",
        production=True,
        stdin=(clerk[:-4] + "AAAA").encode(),
    )
    assert forged.code == 2
    assert await _proposers(gateway) == []

    start = await last_audit_id(gateway)
    officer = gateway.token(
        "medical_insurance", "province", region, subject="Officer.A", roles=["security_admin"]
    )
    signed = await _cli(
        gateway,
        "policy",
        "import",
        str(changed),
        "--token-file",
        "-",
        production=True,
        stdin=f"Bearer {officer}\n".encode(),
    )
    assert signed.code == 0, signed.err
    assert await _proposers(gateway) == ["officer.a"]
    (entry,) = await audit_entries(gateway, start)
    assert (entry.subject, entry.operation) == ("officer.a", "relief-gateway policy import")
    assert _released(entry)["Admin.signed_in"] == "token"
    assert _released(entry)["Admin.os_user"] == canonical_subject(getpass.getuser())


async def test_tokens_minted_in_production_are_the_system_administrators_act(
    gateway: Harness,
) -> None:
    start = await last_audit_id(gateway)
    minted = await _cli(
        gateway,
        "token",
        "--dept",
        "civil_affairs",
        "--level",
        "county",
        "--region",
        "370102",
        "--subject",
        "Chief.Li",
        "--role",
        "security_admin",
        "--operator",
        "OPS.Wang",
        production=True,
    )
    assert minted.code == 0, minted.err
    assert minted.out.count(".") == 2  # one JWT
    (entry,) = await audit_entries(gateway, start)
    assert (entry.subject, entry.operation) == ("ops.wang", "relief-gateway token")
    assert _released(entry) == {
        "Admin.dept": "civil_affairs",
        "Admin.level": "county",
        "Admin.region": "370102",
        "Admin.role": "system_admin",
        "Admin.roles": "security_admin",
        "Admin.subject": "chief.li",
    }
    # Development tokens (demo, tests) are not the trail's.
    dev = await _cli(gateway, "token", "--dept", "health", "--level", "province", "--region", "37")
    assert dev.code == 0, dev.err
    assert len(await audit_entries(gateway, start)) == 1


async def test_production_refuses_a_pinned_date_for_every_command(gateway: Harness) -> None:
    """RELIEF_TODAY would let `audit archive` reach months inside the retention."""
    settings = gateway.runtime.settings
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "audit",
        "archive",
        "--before",
        "2027-06",
        env={
            **os.environ,
            "RELIEF_DATA_DIR": str(settings.data_dir),
            "RELIEF_DATABASE_URL": settings.resolved_database_url,
            "RELIEF_ENV": "production",
            "RELIEF_PROVINCE": settings.province.value,
            "RELIEF_TODAY": "2027-12-15",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    before = await last_audit_id(gateway)
    _out, err = await process.communicate()
    assert process.returncode == 2
    assert "生产环境不允许设置 RELIEF_TODAY" in err.decode()
    assert await last_audit_id(gateway) == before


async def test_keys_init_creates_once_and_never_overwrites(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")},
        "RELIEF_DATA_DIR": str(tmp_path / "fresh"),
        "RELIEF_ENV": "production",
        "RELIEF_PROVINCE": "shanxi",
        "RELIEF_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = run("keys", "init")
    assert created.returncode == 0, created.stderr
    keyring = tmp_path / "fresh" / "keyring.json"
    document = json.loads(keyring.read_text())
    assert document["primary"] in created.stdout
    assert document["audit_primary"] in created.stdout
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"
    assert "未能写入审计日志" in created.stderr  # no database yet: said, not hidden
    again = run("keys", "init")
    assert again.returncode == 2
    assert "已存在, 不会覆盖" in again.stderr
    assert json.loads(keyring.read_text()) == document
    migrated = run("migrate")  # the trail's first entry
    assert migrated.returncode == 0, migrated.stderr


def test_settings_errors_speak_chinese(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")},
        "RELIEF_DATA_DIR": str(tmp_path),
        "RELIEF_CLIENT_TOKEN_TTL_SECONDS": "-5",
        "RELIEF_POLICY_REFRESH_SECONDS": "soon",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "RELIEF_CLIENT_TOKEN_TTL_SECONDS: 应大于 0, 收到 '-5'" in done.stderr
    assert "RELIEF_POLICY_REFRESH_SECONDS: 应为数字, 收到 'soon'" in done.stderr
    assert "Input should" not in done.stderr
