"""Production fails closed (issue 6 §2): ``relief-gateway serve`` with RELIEF_ENV=production
refuses each unsafe setting with one Chinese line naming the file or setting, exit code 2,
no traceback, nothing served. Run as the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from gateway.crypto import Keyring
from gateway.runtime import production
from gateway.runtime.tokens import TokenService

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
RANDOM_KEY = "kX9-vQ2_mZ7pL4wR8tY1uE6iO3aS5dF0gH2jK4lZ6xC8vB1nM3qW5eR7tY9uI0oP"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir(mode=0o700)
    Keyring.generate("aes-256-gcm+hmac-sha256").save(directory / "keyring.json")
    TokenService.from_file(directory / "token.key", "relief-gateway", create=True)
    return directory


def _serve(data_dir: Path, **env_overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_ENV="production",
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
        RELIEF_PROVINCE="shanxi",
    )
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [str(SCRIPT), "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-800:])
    assert "Traceback" not in done.stderr
    assert "Uvicorn running" not in done.stderr + done.stdout
    for word in words:
        assert word in done.stderr, done.stderr


def _write_key(data_dir: Path, key: str) -> None:
    path = data_dir / "token.key"
    path.write_text(key)
    path.chmod(0o600)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing_keyring", ("缺少密钥环文件", "keyring.json")),
        ("world_readable_keyring", ("密钥环文件", "keyring.json", "权限过宽", "chmod 600")),
        ("group_readable_keyring", ("密钥环文件", "权限过宽")),
        ("group_writable_token_key", ("令牌签名密钥文件", "token.key", "权限过宽")),
        ("missing_token_key", ("令牌签名密钥文件", "token.key")),
        ("short_token_key", ("token.key", "太短", "至少 32 字节")),
        ("bench_rig_token_key", ("token.key", "公开的示例/默认密钥")),
        ("placeholder_token_key", ("token.key", "占位符")),
        ("world_writable_data_dir", ("对所有用户可写",)),
        ("keyring_without_audit_key", ("没有审计密钥", "audit rotate-key")),
    ],
)
def test_serve_refuses_unsafe_keys(data_dir: Path, case: str, words: tuple[str, ...]) -> None:
    keyring, token_key = data_dir / "keyring.json", data_dir / "token.key"
    if case == "missing_keyring":
        keyring.unlink()
    elif case == "world_readable_keyring":
        keyring.chmod(0o644)
    elif case == "group_readable_keyring":
        keyring.chmod(0o640)
    elif case == "group_writable_token_key":
        token_key.chmod(0o620)
    elif case == "missing_token_key":
        token_key.unlink()
    elif case == "short_token_key":
        _write_key(data_dir, "x7Gq2Lp9Zr4Tk1Wm8Yv3Bn6")  # 23 bytes, random-looking
    elif case == "bench_rig_token_key":
        _write_key(data_dir, "peer-bench-jwt-secret-loopback-only-0123456789\n")
    elif case == "placeholder_token_key":
        _write_key(data_dir, "changeme" * 5)
    elif case == "world_writable_data_dir":
        data_dir.chmod(0o777)
    elif case == "keyring_without_audit_key":  # written before audit keys existed
        _write_key(data_dir, RANDOM_KEY)
        document = json.loads(keyring.read_text())
        for name in ("audit_keys", "audit_primary", "audit_since"):
            document.pop(name, None)
        keyring.write_text(json.dumps(document))
    _refused(_serve(data_dir), *words)


@pytest.mark.parametrize(
    ("province", "words"),
    [
        (None, ("RELIEF_PROVINCE", "显式设置")),  # a Shanxi gateway must not run Shandong rules
        ("beijing", ("RELIEF_PROVINCE", "未知省份", "beijing")),
        ("", ("RELIEF_PROVINCE", "未知省份")),
    ],
)
def test_serve_refuses_an_unknown_province(
    data_dir: Path, province: str | None, words: tuple[str, ...]
) -> None:
    _write_key(data_dir, RANDOM_KEY)
    _refused(_serve(data_dir, RELIEF_PROVINCE=province), *words)


def test_serve_refuses_rules_naming_another_provinces_code(data_dir: Path) -> None:
    rules = data_dir / "rules.toml"
    rules.write_text('[provinces.shanxi]\ncode = "99"\n', encoding="utf-8")
    _refused(_serve(data_dir), "rules.toml", "provinces.shanxi.code", "未知省份")


def test_serve_refuses_bad_operations_settings(data_dir: Path) -> None:
    _refused(_serve(data_dir, RELIEF_LOG_FORMAT="xml"), "RELIEF_LOG_FORMAT")
    _refused(_serve(data_dir, RELIEF_METRICS_ALLOW="10.0.0.0/33"), "RELIEF_METRICS_ALLOW")


def test_serve_refuses_http_limits_the_server_could_not_keep(data_dir: Path) -> None:
    """The application's URL limit must stay below the HTTP parser's (65,535 bytes), so that
    the application refuses first; a client timeout must be a positive number of seconds."""
    _write_key(data_dir, RANDOM_KEY)
    _refused(_serve(data_dir, RELIEF_MAX_URL_BYTES="70000"), "RELIEF_MAX_URL_BYTES", "65535")
    _refused(_serve(data_dir, RELIEF_CLIENT_TIMEOUT_SECONDS="0"), "RELIEF_CLIENT_TIMEOUT_SECONDS")


def test_sound_production_settings_pass_the_checks(data_dir: Path) -> None:
    """The same settings with nothing wrong: the checks pass (``migrate`` runs them too via
    ``Runtime``-free paths, so ask the settings directly, as ``serve`` does first)."""
    from gateway.domain.settings import load_settings

    previous = os.environ.pop("RELIEF_TODAY", None)
    try:
        settings = load_settings(
            env="production",
            province="shanxi",
            data_dir=data_dir,
            database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
            metrics_allow="10.20.0.0/16, fd00::/8",
        )
        production.check(settings)
    finally:
        if previous is not None:
            os.environ["RELIEF_TODAY"] = previous
    assert json.loads((data_dir / "keyring.json").read_text())  # untouched, still a keyring
