"""Configuration from ``RELIEF_*`` environment variables (and matching CLI options).

Production fails closed: see :func:`Settings.check_production`.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import ConfigurationError


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Province(StrEnum):
    SHANDONG = "shandong"
    SHANXI = "shanxi"
    ANHUI = "anhui"


class CipherSuite(StrEnum):
    """Which algorithms new keys use (existing keys keep the algorithm they record)."""

    AES = "aes-256-gcm+hmac-sha256"
    SM = "sm4-gcm+hmac-sm3"  # 国密, for 商用密码应用安全性评估


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    data_dir: Path = Path(".relief")
    database_url: str | None = None
    env: Environment = Environment.DEVELOPMENT
    today: str | None = Field(default=None, description="开发环境下视为今天的日期, YYYY-MM-DD")
    province: Province = Province.SHANDONG
    cipher_suite: CipherSuite = CipherSuite.AES
    token_issuer: str = "relief-gateway"  # noqa: S105 - the issuer name, not a secret
    token_ttl_seconds: int = 8 * 3600
    max_page_size: int = 200
    # How often a process checks for a new policy version when no NOTIFY arrives (PostgreSQL
    # announces approvals at once: gateway.policy_listener; SQLite relies on this poll).
    policy_refresh_seconds: float = Field(default=2.0, gt=0)
    # A directory of extra feed mappings (*.toml, see adapters/mapping.py) for this deployment.
    mappings_dir: Path | None = None
    # Province rules overriding gateway/data/rules.toml key by key (see gateway.rules.config).
    rules_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("today")
    @classmethod
    def _today_is_iso(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"RELIEF_TODAY 必须是 YYYY-MM-DD 格式的日期, 收到 {value!r}") from exc
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'relief.db').resolve()}"

    @property
    def resolved_rules_file(self) -> Path | None:
        """RELIEF_RULES_FILE, else ``rules.toml`` in the data directory when there is one (the
        deployment's own figures, e.g. this year's per-capita income, kept beside its keys)."""
        if self.rules_file is not None:
            return self.rules_file
        beside = self.data_dir / "rules.toml"
        return beside if beside.exists() else None

    @property
    def keyring_path(self) -> Path:
        return self.data_dir / "keyring.json"

    @property
    def token_key_path(self) -> Path:
        return self.data_dir / "token.key"

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    def check_production(self) -> None:
        """Refuse settings that are only acceptable on a developer's machine."""
        if not self.is_production:
            return
        if self.today:
            raise ConfigurationError("生产环境不允许设置 RELIEF_TODAY (测试用的日期)")
        if not self.database_url:
            raise ConfigurationError("生产环境必须显式设置 RELIEF_DATABASE_URL")
        for path, what in (
            (self.keyring_path, "密钥环文件"),
            (self.token_key_path, "令牌签名密钥文件"),
        ):
            if not path.exists():
                raise ConfigurationError(f"生产环境缺少{what} {path}")
            if path.stat().st_mode & 0o077:
                # Keys readable by other users are keys already shared: refuse, do not chmod.
                raise ConfigurationError(f"{what} {path} 权限过宽, 应仅属主可读写 (chmod 600)")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit (CLI) overrides taking precedence."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
