"""``relief-gateway`` as an operator runs it: a real subprocess of the console script with
``RELIEF_DATA_DIR`` in a temporary directory."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from authz.store import default_policy_lines, parse_policy_text
from gateway.domain.settings import Settings, load_settings
from gateway.http.app import create_app
from gateway.runtime.parts import Runtime

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
COMMANDS = ("demo", "serve", "migrate", "seed", "token", "policy", "audit")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    env["PYTHONUNBUFFERED"] = "1"  # the demo prints before serving; read it through a pipe
    env.update(extra)
    return env


def run(
    data_dir: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=_env(data_dir, **env),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _settings(data_dir: Path) -> Settings:
    """The settings the subprocess used (explicit, whatever RELIEF_* this process has)."""
    return load_settings(
        data_dir=data_dir, database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after ``migrate`` and ``seed --persons 30`` (module-wide, read-only after)."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    migrated = run(data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    seeded = run(data_dir, "seed", "--persons", "30")
    assert seeded.returncode == 0, seeded.stderr
    (data_dir / "seed-output.txt").write_text(seeded.stdout, encoding="utf-8")
    return data_dir


# --------------------------------------------------------------------------- help


def test_top_level_help(tmp_path: Path) -> None:
    result = run(tmp_path / "data", "--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert CHINESE.search(result.stdout)


def test_no_command_prints_help(tmp_path: Path) -> None:
    result = run(tmp_path / "data")
    assert result.returncode == 2
    assert "用法: relief-gateway" in result.stdout + result.stderr
    _no_traceback(result)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(tmp_path: Path, command: str) -> None:
    result = run(tmp_path / "data", command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"用法: relief-gateway {command}" in result.stdout
    assert "--data-dir" in result.stdout
    assert CHINESE.search(result.stdout)
    assert not (tmp_path / "data").exists()  # --help touches nothing


# --------------------------------------------------------------------------- migrate, seed


def test_migrate(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run(data_dir, "migrate")
    assert result.returncode == 0, result.stderr
    assert CHINESE.search(result.stdout)
    assert (data_dir / "relief.db").exists()
    again = run(data_dir, "migrate")  # idempotent
    assert again.returncode == 0, again.stderr


def test_seed_prints_counts_in_chinese(seeded: Path) -> None:
    output = (seeded / "seed-output.txt").read_text(encoding="utf-8")
    match = re.search(
        r"已生成 (\d+) 人、(\d+) 户、(\d+) 条救助身份、(\d+) 条参保记录、(\d+) 条费用负担记录",
        output,
    )
    assert match, output
    persons, households = int(match.group(1)), int(match.group(2))
    assert persons == 30
    assert 1 <= households <= 30
    assert (seeded / "keyring.json").exists()
    assert (seeded / "keyring.json").stat().st_mode & 0o077 == 0
    assert (seeded / "token.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("persons", ["0", "-5"])
def test_seed_refuses_non_positive(tmp_path: Path, persons: str) -> None:
    result = run(tmp_path / "data", "seed", "--persons", persons)
    assert result.returncode == 2
    assert CHINESE.search(result.stderr)
    _no_traceback(result)


# --------------------------------------------------------------------------- token


def test_token_is_accepted_by_the_gateway(seeded: Path) -> None:
    result = run(
        seeded, "token", "--dept", "civil_affairs", "--level", "county", "--region", "370102"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), token

    key = (seeded / "token.key").read_text().strip().encode()
    claims = jwt.decode(token, key, algorithms=["HS256"], issuer="relief-gateway")
    assert claims["dept"] == "civil_affairs"
    assert claims["level"] == "county"
    assert claims["region"] == "370102"
    assert claims["sub"] == "civil_affairs-county-370102"
    assert claims["roles"] == []
    assert 8 * 3600 - 60 <= claims["exp"] - claims["iat"] <= 8 * 3600


async def test_token_works_over_http(seeded: Path) -> None:
    result = run(
        seeded,
        "token",
        "--dept",
        "medical_insurance",
        "--level",
        "province",
        "--region",
        "37",
        "--subject",
        "cli-op",
        "--role",
        "security_officer",
        "--ttl",
        "120",
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    runtime = Runtime.create(_settings(seeded))
    try:
        await runtime.start()
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            response = await client.post(
                "/graphql",
                json={"query": "{ me { subject roles department region } }"},
                headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
            )
    finally:
        await runtime.close()
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"] == {
        "subject": "cli-op",
        "roles": ["security_admin"],
        "department": "MEDICAL_INSURANCE",
        "region": "37",
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dept", "civil_affairs", "--level", "county", "--region", "3701"], "行政区划代码"),
        (["--dept", "civil_affairs", "--level", "city", "--region", "370102"], "行政区划代码"),
        (["--dept", "police", "--level", "county", "--region", "370102"], "部门"),
        (["--dept", "health", "--level", "city", "--region", "3701", "--role", "god"], "角色"),
        (["--dept", "health", "--level", "city", "--region", "3701", "--ttl", "-5"], "有效期"),
        (["--dept", "health", "--level", "city", "--region", "3701", "--ttl", "0"], "有效期"),
    ],
    ids=[
        "county-4-digits",
        "city-6-digits",
        "unknown-dept",
        "unknown-role",
        "negative-ttl",
        "zero-ttl",
    ],
)
def test_token_refuses_bad_claims(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run(tmp_path / "data", "token", *args)
    assert result.returncode == 2
    assert result.stdout.strip() == ""  # no token printed
    assert fragment in result.stderr, result.stderr
    assert CHINESE.search(result.stderr)
    _no_traceback(result)


def test_bad_environment_value_is_one_clear_error(tmp_path: Path) -> None:
    result = run(
        tmp_path / "data",
        "token",
        "--dept",
        "health",
        "--level",
        "city",
        "--region",
        "3701",
        RELIEF_TODAY="23.11.2026",
    )
    assert result.returncode == 2
    assert "RELIEF_TODAY" in result.stderr
    _no_traceback(result)


# --------------------------------------------------------------------------- policy, audit


def _exported_lines(stdout: str) -> list[tuple[str, str, str, str]]:
    return parse_policy_text(stdout, source="导出")


def test_policy_export_after_migrate_lists_default_lines(tmp_path: Path) -> None:
    """Before the server first starts, export shows what it will enforce: the defaults."""
    data_dir = tmp_path / "data"
    assert run(data_dir, "migrate").returncode == 0
    result = run(data_dir, "policy", "export")
    assert result.returncode == 0, result.stderr
    # Grouped by department in a fixed order (small diffs in version control): same lines.
    assert sorted(_exported_lines(result.stdout)) == sorted(default_policy_lines())


async def test_policy_export_lists_policy_in_force(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run(data_dir, "seed", "--persons", "5").returncode == 0
    runtime = Runtime.create(_settings(data_dir))
    try:
        await runtime.start()  # what `serve`/`demo` do on first start
    finally:
        await runtime.close()
    result = run(data_dir, "policy", "export")
    assert result.returncode == 0, result.stderr
    lines = _exported_lines(result.stdout)
    assert sorted(lines) == sorted(default_policy_lines())
    assert (
        "p, medical_insurance:*, Person(all; places: residence|insured), rows, *"
        in result.stdout.splitlines()
    )
    assert re.search(r"版本 1\b", result.stdout)


@pytest.mark.parametrize("state", ["no-data-dir", "not-migrated"])
@pytest.mark.parametrize(
    "command", [["audit", "verify"], ["policy", "export"]], ids=["audit-verify", "policy-export"]
)
def test_commands_on_missing_database_fail_cleanly(
    tmp_path: Path, command: list[str], state: str
) -> None:
    """No database yet (never migrated): one clear Chinese line and exit 2, no traceback
    (and for `audit verify` not exit 1, which means "tampered")."""
    if state == "not-migrated":
        (tmp_path / "data").mkdir()
    result = run(tmp_path / "data", *command)
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    assert CHINESE.search(result.stderr)
    _no_traceback(result)


def test_audit_verify_on_fresh_database(seeded: Path) -> None:
    result = run(seeded, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "完整" in result.stdout


# --------------------------------------------------------------------------- demo


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    base: str
    output: str
    tokens: list[str]
    headers: list[tuple[str, str, str, str]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`relief-gateway demo --persons 50` in the background, healthy, with its output parsed."""
    tmp_path = tmp_path_factory.mktemp("demo")
    port = _free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "demo", "--persons", "50", "--port", str(port)],
            env=_env(tmp_path / "data"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        healthy = False
        while time.monotonic() < deadline and not healthy:
            assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            try:
                healthy = httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.3)
        output = log.read_text(encoding="utf-8", errors="replace")
        assert healthy, output
        yield Demo(
            proc=proc,
            base=base,
            output=output,
            tokens=re.findall(r"令牌: (\S+)", output),
            headers=re.findall(r"■ \S+ \S+ \((\w+) / (\w+) / (\d+), 用途 (\w+)\)", output),
        )
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


PAGE = "{ persons(first: 5) { totalCount edges { node { idNumber name regionCode } } } }"


def test_demo_prints_tokens_and_url(demo: Demo) -> None:
    assert len(demo.tokens) == len(demo.headers) >= 5, demo.output
    assert f"{demo.base}/graphql" in demo.output
    assert "GraphiQL" in demo.output
    assert "Traceback" not in demo.output
    levels = {(dept, level) for dept, level, _region, _purpose in demo.headers}
    assert ("medical_insurance", "province") in levels
    assert len({level for _dept, level in levels}) == 3
    # Last month's warning run, under the configured province's rules (Shandong by default,
    # whose income figures the demo supplies, labelled as demonstration values).
    assert "■ 高额费用预警: 已按山东省规则计算" in demo.output
    # Two security officers for the console (four eyes needs two).
    assert f"{demo.base}/console" in demo.output
    assert len(re.findall(r"安全管理员[甲乙] \(省级\): (\S+)", demo.output)) == 2


def test_demo_serves(demo: Demo) -> None:
    dept, level, region, purpose = demo.headers[0]
    assert (dept, level) == ("medical_insurance", "province")
    response = httpx.post(
        f"{demo.base}/graphql",
        json={"query": PAGE},
        headers={"Authorization": f"Bearer {demo.tokens[0]}", "X-Purpose": purpose},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    persons = body["data"]["persons"]
    assert persons["totalCount"] >= 1
    assert persons["edges"]
    for edge in persons["edges"]:
        assert edge["node"]["regionCode"].startswith(region)
        assert len(edge["node"]["idNumber"]) == 18
        assert CHINESE.search(edge["node"]["name"])

    assert httpx.get(f"{demo.base}/readyz", timeout=5).json()["ready"] is True
    page = httpx.get(f"{demo.base}/graphql", headers={"Accept": "text/html"}, timeout=5)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


def test_demo_every_token_sees_people(demo: Demo) -> None:
    """The demo chooses its regions "so that every token sees people" (cli.DEMO_SUBJECTS)."""
    empty = []
    for token, (dept, level, region, purpose) in zip(demo.tokens, demo.headers, strict=True):
        answer = httpx.post(
            f"{demo.base}/graphql",
            json={"query": "{ persons(first: 1) { totalCount } }"},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": purpose},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        if answer.json()["data"]["persons"]["totalCount"] == 0:
            empty.append(f"{dept}/{level}/{region}")
    assert not empty, f"demo tokens that see nobody: {empty}"


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    """The audit chain has one writer per SQLite file; several processes need PostgreSQL."""
    data_dir = tmp_path / "data"
    done = run(data_dir, "serve", "--workers", "2", timeout=60)
    assert done.returncode == 2
    assert "PostgreSQL" in done.stderr
    _no_traceback(done)
