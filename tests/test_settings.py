"""Configuration: the one clock, and production failing closed (CONTRACT.md, RELIEF_ENV)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.crypto import Keyring
from gateway.domain import clock
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import Settings, load_settings
from gateway.runtime.parts import Runtime
from gateway.runtime.tokens import TokenService
from tests.harness import Harness

SQLITE = "sqlite+aiosqlite:////tmp/unused.db"


def _keys(data_dir: Path) -> None:
    Keyring.generate("aes-256-gcm+hmac-sha256").save(data_dir / "keyring.json")
    TokenService.from_file(data_dir / "token.key", "relief-gateway", create=True)


def test_clock_reads_relief_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_TODAY", "2026-12-28")
    assert clock.today() == date(2026, 12, 28)


def test_malformed_relief_today_is_refused_in_the_callers_terms() -> None:
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        Settings(today="28/12/2026")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_database_url", "RELIEF_DATABASE_URL"),
        ("pinned_today", "RELIEF_TODAY"),
        ("no_keyring", "密钥环文件"),
        ("no_token_key", "令牌签名密钥文件"),
        ("world_readable_keyring", "权限过宽"),
        ("group_readable_token_key", "权限过宽"),
    ],
)
def test_production_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, message: str
) -> None:
    monkeypatch.delenv("RELIEF_TODAY", raising=False)
    _keys(tmp_path)
    overrides: dict[str, object] = {"env": "production", "data_dir": tmp_path}
    overrides["province"] = "shandong"  # production needs it explicit
    overrides["database_url"] = None if case == "no_database_url" else SQLITE
    if case == "pinned_today":
        overrides["today"] = "2026-12-28"
    if case == "no_keyring":
        (tmp_path / "keyring.json").unlink()
    if case == "no_token_key":
        (tmp_path / "token.key").unlink()
    if case == "world_readable_keyring":
        (tmp_path / "keyring.json").chmod(0o644)
    if case == "group_readable_token_key":
        (tmp_path / "token.key").chmod(0o640)
    settings = load_settings(**overrides)
    with pytest.raises(ConfigurationError, match=message):
        Runtime.create(settings)


async def test_production_starts_with_private_keys_and_hides_the_schema(tmp_path: Path) -> None:
    _keys(tmp_path)
    previous = os.environ.pop("RELIEF_TODAY")
    try:
        settings = load_settings(
            env="production",
            province="shandong",
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        )
        runtime = Runtime.create(settings)
        result = await runtime.schema.execute("{ __schema { types { name } } }")
        assert result.errors, "introspection must be off in production"
        typo = await runtime.schema.execute("{ persn { id } }")
        assert typo.errors
        assert "Did you mean" not in typo.errors[0].message
        await runtime.close()
    finally:
        os.environ["RELIEF_TODAY"] = previous


async def test_development_keeps_introspection_and_graphiql(harness: Harness) -> None:
    result = await harness.runtime.schema.execute("{ __schema { queryType { name } } }")
    assert result.errors is None
    response = await harness.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
