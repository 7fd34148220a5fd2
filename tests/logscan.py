"""The log scan (issue 6 §2): the logs of a full test run never carry a seeded plaintext.

A pytest plugin (loaded by ``tests/conftest.py``) that, for the whole session:

* records every **seeded plaintext**: each value the real ``FieldCipher.seal`` encrypts for a
  person's ``id_number``, ``name``, ``phone`` or ``address`` (synthetic populations, ingest
  files, pushed records, fixtures: whatever entered storage through the one cipher), plus the
  people of the default synthetic populations that CLI subprocesses seed themselves;
* sends **every log record of every logger** to ``<run dir>/pytest.jsonl`` through the
  gateway's production formatter (``gateway.http.logs.JsonFormatter``), with the
  gateway's own loggers at DEBUG and the rest at INFO (the test's HTTP client, ``httpx`` and
  ``httpcore``, is not the gateway and stays at WARNING: its lines are the caller's URLs);
* gives every ``relief-gateway`` subprocess a ``RELIEF_LOG_FILE`` in the same run directory
  (tests build their environments without ``RELIEF_*`` variables, so this is added at
  ``subprocess.Popen``), so served, ingesting and seeding processes are scanned too;
* at the end, scans all of it (``scan_files``) and **fails the run** when a value is found,
  printing where (file, line, logger, which kind of value) but not the value itself.

Matching is by candidates, not by one regex of tens of thousands of alternatives: runs of
digits (ID numbers: 18 characters, phones: 11 digits, compared window by window with the
seeded sets), runs of Chinese characters (names: every 2-4 character window), and Chinese
runs followed by a house number (addresses). Escaped JSON (``\\uXXXX``) is decoded first. A
full run's logs are scanned in well under a second per ten megabytes.

Masked values (``370102********1234``, ``138****5678``, ``张*``) do not match, by design: a
masked value is what the gateway is allowed to show. ``RELIEF_LOG_SCAN_OFF=1`` turns the
plugin off (for profiling a test, never in CI).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest

SENSITIVE = ("id_number", "name", "phone", "address")
_DIGITS = re.compile(r"[0-9]{11,}[0-9Xx]?")
_CHINESE = re.compile(r"[\u3400-\u9fff]{2,}")
_HOUSE = re.compile(r"[\u3400-\u9fff]{4,}([0-9]{1,4})号")
_ESCAPE = re.compile(r"\\+u([0-9a-fA-F]{4})")  # \uXXXX, also escaped once more
# Loggers of the test's own HTTP client: they print the caller's request URLs (a GET with a
# literal ID number in its query string), which are not the gateway's logs.
CLIENT_LOGGERS = ("httpx", "httpcore")
OWN_LOGGERS = ("gateway", "authz", "schema", "adapters")


@dataclass
class SeededValues:
    id_numbers: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def add(self, column: str, value: str) -> None:
        if column == "id_number":
            self.id_numbers.add(value.upper())
        elif column == "name" and len(value) >= 2:
            self.names.add(value)
        elif column == "phone" and len(value) >= 11:
            self.phones.add(value)
        elif column == "address":
            self.addresses.add(value)

    def __len__(self) -> int:
        return len(self.id_numbers) + len(self.names) + len(self.phones) + len(self.addresses)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str
    masked: str
    logger: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line} [{self.logger}] {self.kind} {self.masked}"


def mask(value: str) -> str:
    return value[:2] + "*" * max(1, len(value) - 4) + value[-2:] if len(value) > 4 else "*" * 2


class Scanner:
    def __init__(self, values: SeededValues) -> None:
        self.values = values
        self.name_lengths = sorted({len(n) for n in values.names if len(n) <= 6})
        # Addresses end in a house number ("…村12号"): a match is a Chinese run before "N号"
        # whose last `width` characters plus the number make a seeded address.
        self.address_lengths = sorted(
            {len(re.sub(r"[0-9]{1,4}号$", "", address)) for address in values.addresses}
        )

    def scan_text(self, text: str) -> Iterator[tuple[int, str, str]]:
        """(offset, kind, value) of each seeded value in ``text``."""
        if "\\u" in text:
            text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        values = self.values
        for match in _DIGITS.finditer(text):
            run = match.group().upper()
            for width, kind, seeded in (
                (18, "ID number", values.id_numbers),
                (11, "phone", values.phones),
            ):
                for start in range(len(run) - width + 1):
                    if run[start : start + width] in seeded:
                        yield match.start() + start, kind, run[start : start + width]
        if values.names:
            for match in _CHINESE.finditer(text):
                run = match.group()
                for start in range(len(run)):
                    for width in self.name_lengths:
                        piece = run[start : start + width]
                        if len(piece) == width and piece in values.names:
                            yield match.start() + start, "name", piece
        if values.addresses:
            for match in _HOUSE.finditer(text):
                end = match.end()
                for width in self.address_lengths:
                    begin = match.start(1) - width
                    if begin >= 0 and text[begin:end] in values.addresses:
                        yield begin, "address", text[begin:end]

    def scan_file(self, path: Path) -> list[Finding]:
        findings = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                for _, kind, value in self.scan_text(line):
                    logger = re.search(r'"logger": "([^"]+)"', line)
                    findings.append(
                        Finding(path, number, kind, mask(value), logger.group(1) if logger else "?")
                    )
        return findings


def scan_files(paths: Iterable[Path], values: SeededValues) -> list[Finding]:
    scanner = Scanner(values)
    return [finding for path in paths for finding in scanner.scan_file(path)]


# ------------------------------------------------------------------ the session


class LogScan:
    """The plugin's state for one pytest session."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="relief-logscan-"))
        self.session_log = self.run_dir / "pytest.jsonl"
        self.values = SeededValues()
        self._numbers = count(1)
        self._restore: list[Any] = []
        self.handler: logging.Handler | None = None

    def subprocess_log(self) -> Path:
        return self.run_dir / f"subprocess-{os.getpid()}-{next(self._numbers)}.jsonl"

    def install(self) -> None:
        from gateway.crypto import FieldCipher
        from gateway.http.logs import JsonFormatter

        handler = logging.FileHandler(self.session_log, encoding="utf-8")
        handler.setFormatter(JsonFormatter())
        handler.setLevel(logging.DEBUG)
        self.handler = handler
        root = logging.getLogger()
        root.addHandler(handler)
        self._restore.append((root, root.level))
        root.setLevel(logging.INFO)
        for name in OWN_LOGGERS:
            logger = logging.getLogger(name)
            self._restore.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
        for name in CLIENT_LOGGERS:
            logger = logging.getLogger(name)
            self._restore.append((logger, logger.level))
            logger.setLevel(logging.WARNING)

        seal = FieldCipher.seal
        values = self.values

        def recording_seal(
            cipher: FieldCipher, plaintext: str, *, table: str, column: str, row_id: str
        ) -> bytes:
            if table == "person" and column in SENSITIVE:
                values.add(column, plaintext)
            return seal(cipher, plaintext, table=table, column=column, row_id=row_id)

        FieldCipher.seal = recording_seal  # type: ignore[method-assign]
        self._restore.append((FieldCipher, seal))

        popen_init = subprocess.Popen.__init__
        scan = self

        def gateway_popen_init(
            self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any
        ) -> None:
            if _is_gateway(args):
                env = dict(os.environ if kw.get("env") is None else kw["env"])
                env.setdefault("RELIEF_LOG_FILE", str(scan.subprocess_log()))
                kw["env"] = env
            popen_init(self, args, *rest, **kw)

        subprocess.Popen.__init__ = gateway_popen_init  # type: ignore[method-assign]
        self._restore.append((subprocess.Popen, popen_init))

    def uninstall(self) -> None:
        from gateway.crypto import FieldCipher

        for target, previous in reversed(self._restore):
            if target is FieldCipher:
                FieldCipher.seal = previous  # type: ignore[method-assign]
            elif target is subprocess.Popen:
                subprocess.Popen.__init__ = previous  # type: ignore[method-assign]
            else:
                target.setLevel(previous)
        self._restore.clear()
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
            self.handler = None

    def subprocess_seeds(self) -> None:
        """People that ``relief-gateway seed``/``demo`` subprocesses write with the default
        seed (their sealing happens in another process): the same generator, regenerated."""
        from datetime import date

        from gateway.domain.synthetic import generate_population

        today = date.fromisoformat(os.environ.get("RELIEF_TODAY", "2026-11-23"))
        for persons, provinces in ((2000, None), (200, ["shandong"])):
            for bundle in generate_population(persons, seed=42, today=today, provinces=provinces):
                for person in bundle.members:
                    for column in SENSITIVE:
                        value = getattr(person, column)
                        if value:
                            self.values.add(column, value)

    def log_files(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.jsonl"))


def _is_gateway(args: Any) -> bool:
    if isinstance(args, (str, bytes, os.PathLike)):
        first = os.fspath(args)
    elif isinstance(args, (list, tuple)) and args:
        first = os.fspath(args[0])
    else:
        return False
    name = os.path.basename(first if isinstance(first, str) else first.decode())
    return name == "relief-gateway"


_STATE: LogScan | None = None


def current() -> LogScan:
    assert _STATE is not None, "tests.logscan is not active"
    return _STATE


def pytest_configure(config: pytest.Config) -> None:
    global _STATE
    if _STATE is None and not os.environ.get("RELIEF_LOG_SCAN_OFF"):
        _STATE = LogScan()
        _STATE.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    # the controller of a pytest-xdist run (scripts/test: -n 2) runs no test: its workers scan
    # their own logs and hand over what they found (pytest_testnodedown)
    for line in session.config.stash.get(_WORKER_SUMMARIES, []):
        if reporter is not None:
            reporter.write_line(line)
    worker_findings = session.config.stash.get(_WORKER_FINDINGS, [])
    if worker_findings:
        _fail(session, worker_findings)
    state = _STATE
    if state is None or state.handler is None:
        return
    state.handler.flush()
    state.subprocess_seeds()
    files = state.log_files()
    findings = scan_files(files, state.values)
    size = sum(path.stat().st_size for path in files)
    summary = (
        f"log scan: {len(files)} log files, {size / 1e6:.1f} MB, "
        f"{len(state.values)} seeded values: "
    )
    workeroutput = getattr(session.config, "workeroutput", None)
    if not findings:
        if workeroutput is not None:
            workeroutput["logscan_summary"] = (
                f"[{session.config.workerinput['workerid']}] {summary}no plaintext found"
            )
        elif reporter is not None:
            reporter.write_line(summary + "no plaintext found")
        return
    lines = [summary + f"{len(findings)} 处日志含有明文个人信息 (run dir kept: {state.run_dir})"]
    lines.extend(f"  {finding}" for finding in findings[:30])
    if workeroutput is not None:
        workeroutput["logscan_findings"] = lines
    _fail(session, lines)


def _fail(session: pytest.Session, lines: list[str]) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in lines:
            reporter.write_line(line, red=True)
    session.config.stash[_FAILED] = True
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: what a worker's scan found (its exit status is not the run's)."""
    output = getattr(node, "workeroutput", None) or {}
    stash = node.config.stash
    if output.get("logscan_summary"):
        stash[_WORKER_SUMMARIES] = [*stash.get(_WORKER_SUMMARIES, []), output["logscan_summary"]]
    if output.get("logscan_findings"):
        stash[_WORKER_FINDINGS] = [*stash.get(_WORKER_FINDINGS, []), *output["logscan_findings"]]


_FAILED = pytest.StashKey[bool]()
_WORKER_SUMMARIES = pytest.StashKey[list[str]]()
_WORKER_FINDINGS = pytest.StashKey[list[str]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _STATE
    state = _STATE
    if state is None:
        return
    state.uninstall()
    if not config.stash.get(_FAILED, False):
        shutil.rmtree(state.run_dir, ignore_errors=True)
    _STATE = None
