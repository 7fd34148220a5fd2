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
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.domain.principal import canonical_subject
from gateway.storage.audit_chain import verify_chain
from gateway.storage.models import AuditEntry
from tests.exchange_support import audit_entries, last_audit_id
from tests.harness import Harness, build_harness


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def _cli(harness: Harness, *argv: str) -> Ran:
    settings = harness.runtime.settings
    env = {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
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
            {"Admin.file": "policy.csv", "Admin.role": "security_admin"},
        )
    ]
