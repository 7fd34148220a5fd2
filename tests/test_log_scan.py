"""The log scan itself (tests/logscan.py): it finds a planted value, it sees every logger and
every gateway subprocess of the run, and a leak fails the run."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from gateway.http.logs import JsonFormatter
from tests import logscan
from tests.harness import Harness
from tests.logscan import SeededValues, scan_files

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"

ID_NUMBER = "37010219900307123X"
PHONE = "13856781234"
NAME = "欧阳明"
ADDRESS = "山东省济南市历下区泉城街道芙蓉社区12号"


def _values() -> SeededValues:
    values = SeededValues()
    for column, value in (
        ("id_number", ID_NUMBER),
        ("phone", PHONE),
        ("name", NAME),
        ("address", ADDRESS),
    ):
        values.add(column, value)
    return values


def _log_to(path: Path, *messages: tuple[str, tuple[object, ...]]) -> None:
    """Write records through the production JSON formatter, as a gateway process would."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"gateway.planted.{uuid.uuid4().hex}")
    logger.propagate = False  # not into this session's own log: that one must stay clean
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        for message, args in messages:
            logger.info(message, *args)
    finally:
        handler.close()


def test_scanner_finds_each_kind_of_planted_value(tmp_path: Path) -> None:
    log = tmp_path / "planted.jsonl"
    _log_to(
        log,
        ("lookup %s", (ID_NUMBER,)),
        ("callback to %s", (PHONE,)),
        ("resolved person %s", (NAME,)),
        ("moved to %s", (ADDRESS,)),
        ("escaped %s", (json.dumps({"n": NAME}),)),  # "\u6b27\u9633\u660e"
        ("in a run 9%s0", (ID_NUMBER.lower(),)),  # inside a longer digit run, lower-case x
    )
    findings = scan_files([log], _values())
    assert sorted((f.line, f.kind) for f in findings) == [
        (1, "ID number"),
        (2, "phone"),
        (3, "name"),
        (4, "address"),
        (5, "name"),
        (6, "ID number"),
    ]
    assert all(ID_NUMBER not in str(f) and NAME not in str(f) for f in findings)


def test_masked_and_unrelated_values_are_not_findings(tmp_path: Path) -> None:
    log = tmp_path / "clean.jsonl"
    _log_to(
        log,
        ("masked %s %s %s", ("370102********123X", "138****1234", "欧*")),
        ("request %s took %d ms", (uuid.uuid4(), 12)),
        ("policy version %s loaded (%s lines)", (3, 120)),
        ("%s", ("山东省济南市历下区",)),  # a region, not an address
    )
    assert scan_files([log], _values()) == []


def test_every_logger_of_the_session_reaches_the_scanned_file() -> None:
    state = logscan.current()
    marker = f"marker-{uuid.uuid4().hex}"
    logging.getLogger("gateway.some.module").debug("debug %s", marker)  # our DEBUG, too
    logging.getLogger("some_library").info("info %s", marker)
    assert state.handler is not None
    state.handler.flush()
    text = state.session_log.read_text(encoding="utf-8")
    assert text.count(marker) == 2


def test_gateway_subprocesses_log_into_the_run_directory(tmp_path: Path) -> None:
    state = logscan.current()
    before = set(state.log_files())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATA_DIR=str(tmp_path),
        RELIEF_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}",
    )
    done = subprocess.run(
        [str(SCRIPT), "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    # Its RELIEF_LOG_FILE was set (the file is opened at start-up); whatever it logged is JSON.
    [new] = set(state.log_files()) - before
    for line in new.read_text(encoding="utf-8").splitlines():
        assert {"time", "level", "logger", "message"} <= set(json.loads(line))


async def test_seeded_plaintext_is_recorded_where_it_is_sealed(harness: Harness) -> None:
    values = logscan.current().values
    for person in harness.persons[:50]:
        assert person.id_number in values.id_numbers
        assert person.name in values.names
        if person.phone:
            assert person.phone in values.phones
        if person.address:
            assert person.address in values.addresses


def test_a_leaking_log_line_fails_the_run(tmp_path: Path) -> None:
    """The whole mechanism, end to end, in a separate pytest run: a value sealed by the real
    cipher and then logged makes that run fail, and its report does not repeat the value."""
    (tmp_path / "test_leak.py").write_text(
        textwrap.dedent(
            """
            import logging

            from gateway.crypto import FieldCipher, Keyring

            def test_leak():
                cipher = FieldCipher(Keyring.generate("aes-256-gcm+hmac-sha256"))
                cipher.seal("370102199003071234", table="person", column="id_number", row_id="1")
                logging.getLogger("gateway.leaky").info("looked up %s", "370102199003071234")
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.logscan",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_leak.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    assert "明文个人信息" in done.stdout
    assert "ID number" in done.stdout
    assert "[gateway.leaky]" in done.stdout
    assert "370102199003071234" not in done.stdout
