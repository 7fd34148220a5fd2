"""Configuration from ``RELIEF_*`` environment variables (and matching CLI options).

What production refuses to start with is checked by ``gateway.runtime.production``; settings
know nothing of HTTP, the database or the schema.
"""

from __future__ import annotations

import ipaddress
import math
import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A request body of 1,000 full records (submitRecords) is about 1.2 MB of JSON.
MAX_BODY_BYTES = 4_000_000
# The server's HTTP parser (httptools, under gateway.http.protocol) cannot take a request target
# (path and query string) longer than this. RELIEF_MAX_URL_BYTES stays below it, so a long URL
# is refused by the application first: 414 in the JSON error shape, counted and logged.
SERVER_URL_LIMIT = 65_535

# 网络安全法第二十一条: network logs are kept for no less than six months.
MIN_AUDIT_RETENTION_MONTHS = 6

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


class KeyWrapMechanism(StrEnum):
    """How the key-encryption key in the PKCS#11 token protects the keyring's keys
    (``gateway.crypto._pkcs11``; a 国密 module's SM4 mechanisms are vendor-defined: see
    docs/key-lifecycle.md "SM4 in the cipher machine")."""

    AES_GCM = "AES-GCM"  # CKM_AES_GCM, associated data binding each key to its id and role
    AES_KEY_WRAP_PAD = "AES-KEY-WRAP-PAD"  # CKM_AES_KEY_WRAP_PAD (RFC 5649)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    data_dir: Path = Path(".relief")
    database_url: str | None = None
    # A PostgreSQL streaming replica (hot standby) for reads that tolerate its lag (issue 17;
    # gateway.runtime.reads decides which); writes, the audit, policy and LISTEN stay on the
    # primary. Unset: every read on the primary. Beyond max_lag_seconds behind, reads go back
    # to the primary until it catches up (docs/replica.md).
    database_replica_url: str | None = None
    database_replica_max_lag_seconds: float = Field(default=30.0, gt=0)
    env: Environment = Environment.DEVELOPMENT
    today: str | None = Field(default=None, description="开发环境下视为今天的日期, YYYY-MM-DD")
    province: Province = Province.SHANDONG
    cipher_suite: CipherSuite = CipherSuite.AES
    token_issuer: str = "relief-gateway"  # noqa: S105 - the issuer name, not a secret
    token_ttl_seconds: int = 8 * 3600
    max_page_size: int = 200
    # Queries of people answered by one SQL statement per root field on PostgreSQL (issue 17,
    # schema.compiled); off: every query through the GraphQL executor (the reference).
    compiled_reads: bool = True
    # Worker processes that parse, validate and seal a large file for `relief-gateway ingest`
    # (adapters.parallel); unset or 0: everything in one process (measured no faster on two
    # cores).
    ingest_workers: int | None = Field(default=None, ge=0, le=16)
    # How often a process checks for a new policy version when no NOTIFY arrives (PostgreSQL
    # announces approvals at once: gateway.storage.policy_listener; SQLite relies on this poll).
    policy_refresh_seconds: float = Field(default=2.0, gt=0)
    # Webhook delivery (issue 18 item 2, docs/webhooks.md, gateway.runtime.delivery): a worker
    # inside `serve` (off: only `relief-gateway deliver` delivers); a delivery failing for longer
    # than dead_after since its first attempt is a dead letter (8 days: longer than the National
    # Day holiday; an endpoint may set its own); each HTTP attempt's time limit; deliveries one
    # worker holds at once.
    delivery_worker: bool = True
    delivery_dead_after_seconds: int = Field(default=8 * 86400, ge=60)
    delivery_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    delivery_concurrency: int = Field(default=16, ge=1, le=256)
    # How often a process checks the keyring file for a rotation made by `keys rotate` in
    # another process (a ciphertext under a key not yet loaded triggers the check at once).
    keyring_reload_seconds: float = Field(default=1.0, gt=0)
    # A directory of extra feed mappings (*.toml, see adapters/mapping.py) for this deployment.
    mappings_dir: Path | None = None
    # Province rules overriding gateway/data/rules.toml key by key (see gateway.loop.config).
    rules_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    # Hardening (docs/security.md "Hardening"): every limit on by default, in production and
    # development.
    # Query shape, checked before execution (schema.limits, schema.cost):
    max_query_depth: int = Field(default=10, gt=0)
    max_query_aliases: int = Field(default=50, gt=0)
    max_query_tokens: int = Field(default=5000, gt=0)
    max_query_directives: int = Field(default=50, gt=0)
    max_operations: int = Field(default=5, gt=0, description="一个文档中的操作定义数上限")
    max_query_cost: int = Field(default=50_000, gt=0, description="一次查询预计返回对象数上限")
    # "Type.field": expected list length, on top of schema.cost.DEFAULT_LIST_ESTIMATES (JSON).
    query_cost_estimates: dict[str, int] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    # Request target (path + query string) in bytes, HTTP 414 beyond. Production GETs carry a
    # document hash only; the common load-balancer default for a request line is 8 KiB.
    max_url_bytes: int = 8192
    # Slow clients (gateway.http.protocol): seconds to complete the request headers (from the
    # connection's opening or the request's first byte), and at most between two pieces of a
    # body; HTTP 408 and the connection closed beyond.
    client_timeout_seconds: float = 10.0
    # Requests per second and burst, per subject and per department, in EACH gateway process
    # (gateway.runtime.rate_limit). Unset: its PRODUCTION_* rates in production, off in
    # development; 0: off. Burst unset: twice the rate.
    rate_limit_subject: float | None = Field(default=None, ge=0)
    rate_limit_subject_burst: int | None = Field(default=None, gt=0)
    rate_limit_department: float | None = Field(default=None, ge=0)
    rate_limit_department_burst: int | None = Field(default=None, gt=0)
    # Frontend origins allowed to call /graphql from a browser, comma-separated; none by default.
    cors_origins: str = ""
    # One JSON file per pinned department: sha256 → document (gateway.runtime.trusted_documents).
    trusted_documents_dir: Path | None = None

    # Operations (docs/operations.md "运维 / Operations", gateway.http.logs): JSON lines in
    # production, text in development; the gateway's loggers at log_level; log_file receives
    # them as well.
    log_format: str | None = None
    log_level: str = "INFO"
    log_file: Path | None = None
    # GET /metrics: served to loopback and these networks only (comma-separated CIDRs, e.g.
    # "10.20.0.0/16"); "*" serves it to anyone. Metrics carry no personal data, but they do
    # show who calls what and how much.
    metrics_allow: str = ""
    # Months the audit log stays online before `audit archive` may move a month to an archive
    # file (gateway.storage.audit_archive): at least six, 网络安全法第二十一条.
    audit_retention_months: int = MIN_AUDIT_RETENTION_MONTHS

    # Service accounts (docs/service-accounts.md, gateway.http.oauth): lifetime of a token
    # obtained by client credentials; how often each process re-reads the disabled clients (a
    # disable is also announced at once on PostgreSQL); failed authentications per client id
    # and minute before its sign-ins are refused for the rest of the minute.
    client_token_ttl_seconds: int = Field(default=600, gt=0)
    client_revocation_refresh_seconds: float = Field(default=2.0, gt=0)
    client_auth_failures: int = Field(default=5, gt=0)
    # Mutual TLS ended at the province's proxy: the request header in which the proxy passes
    # the verified client certificate (URL-escaped PEM, nginx $ssl_client_escaped_cert) or its
    # SHA-256 fingerprint, and the proxies (comma-separated CIDRs) whose header is believed.
    # Both unset: certificates are not accepted.
    client_cert_header: str = ""
    client_cert_proxies: str = ""

    # Keys in a cipher machine (docs/key-lifecycle.md): a key-encryption key (KEK) in a PKCS#11
    # token wraps every key of the keyring (relief-gateway keys wrap). On when the module is
    # set: the province's GB/T 37092 cipher machine in production, SoftHSM2 in tests. The PIN
    # comes from a file (mode 0600) or the environment, never the database, never a log line.
    pkcs11_module: Path | None = None
    pkcs11_token_label: str | None = None
    pkcs11_key_label: str = "relief-gateway-kek"
    pkcs11_pin_file: Path | None = None
    pkcs11_pin: SecretStr | None = None
    pkcs11_mechanism: KeyWrapMechanism = KeyWrapMechanism.AES_GCM

    # Province to province (issue 18 item 5, docs/national-exchange.md): the peers file (TOML
    # or JSON: each peer's code, url and public keys; gateway.runtime.peer_exchange). Unset: no
    # exchange, POST /exchange/v1/messages answers 404. A message whose signing time is further
    # than the skew from now is refused (replay); failed sends are retried from the base delay,
    # doubling with jitter, up to the maximum; the sender looks for new events every poll.
    exchange_peers_file: Path | None = None
    exchange_max_skew_seconds: float = Field(default=300.0, gt=0)
    exchange_retry_base_seconds: float = Field(default=2.0, gt=0)
    exchange_retry_max_seconds: float = Field(default=600.0, gt=0)
    exchange_poll_seconds: float = Field(default=1.0, gt=0)

    @field_validator(
        "pkcs11_module",
        "pkcs11_pin_file",
        "pkcs11_token_label",
        "exchange_peers_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("pkcs11_mechanism", mode="before")
    @classmethod
    def _mechanism_is_known(cls, value: object) -> object:
        known = [m.value for m in KeyWrapMechanism]
        if isinstance(value, str) and value not in known:
            raise ValueError(
                f"RELIEF_PKCS11_MECHANISM 应为 {'、'.join(known)} 之一, 收到 {value!r} "
                "(国密 SM4 机制由密码机厂商定义, 见 docs/key-lifecycle.md)"
            )
        return value

    # Identity platform (统一身份认证, issue 16; docs/identity.md, gateway.runtime.issuers):
    # trusted external token issuers. One issuer from these settings, or several from
    # RELIEF_OIDC_FILE (TOML, with claim mappings), not both. Subjects become "<name>|<sub>".
    oidc_issuer: str | None = None  # the platform's `iss`, exactly
    oidc_name: str = "oidc"  # short name qualifying subjects
    oidc_discovery_url: str | None = None  # …/.well-known/openid-configuration
    oidc_jwks_url: str | None = None  # or the key set itself
    oidc_jwks_file: Path | None = None  # or a key set on disk
    oidc_audience: str | None = None  # comma-separated; the gateway's client id at the platform
    oidc_algorithms: str = "RS256,ES256"  # pinned; HS* never accepted from a platform
    oidc_leeway_seconds: float = 60.0  # clock skew allowed on exp / nbf / iat (0-300)
    oidc_client_id: str | None = None  # the console's and workbench's browser sign-in (PKCE)
    oidc_refresh_seconds: float = 30.0  # at most one key-set refresh per issuer per interval
    oidc_timeout_seconds: float = 5.0  # discovery and JWKS fetches
    oidc_file: Path | None = None  # several issuers (see docs/identity.md for the format)
    # Production with issuers configured refuses the gateway's own HS256 tokens (minted by
    # whoever holds token.key) unless this is set: people sign in at the platform.
    oidc_allow_local_tokens: bool = False

    @field_validator("audit_retention_months")
    @classmethod
    def _retention_at_least_six_months(cls, value: int) -> int:
        if value < MIN_AUDIT_RETENTION_MONTHS:
            raise ValueError(
                f"RELIEF_AUDIT_RETENTION_MONTHS 不能少于 {MIN_AUDIT_RETENTION_MONTHS} 个月, "
                f"收到 {value}: 《网络安全法》第二十一条要求留存相关的网络日志不少于六个月"
            )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_exact(cls, value: str) -> str:
        for origin in _split(value):
            # An origin is scheme://host[:port]; "*" would let any web page call the gateway.
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(
                    f"RELIEF_CORS_ORIGINS 应为逗号分隔的 http(s)://主机[:端口], 收到 {origin!r}"
                )
        return value

    @field_validator("max_url_bytes")
    @classmethod
    def _url_limit_below_the_servers(cls, value: int) -> int:
        if not 0 < value < SERVER_URL_LIMIT:
            raise ValueError(
                f"RELIEF_MAX_URL_BYTES 应在 1 到 {SERVER_URL_LIMIT - 1} 之间 (服务器的 HTTP 解析器"
                f"拒绝超过 {SERVER_URL_LIMIT} 字节的地址, 应用须先于它拒绝), 收到 {value}"
            )
        return value

    @field_validator("database_replica_url")
    @classmethod
    def _replica_is_postgresql(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("postgresql+asyncpg://", "postgresql+psycopg://")):
            # A replica is PostgreSQL streaming replication; SQLite has none.
            # Named by its scheme only: the rest may carry a password.
            scheme = value.partition("://")[0] if "://" in value else "?"
            raise ValueError(
                "RELIEF_DATABASE_REPLICA_URL 应为 PostgreSQL 流复制备库地址 "
                f"(postgresql+asyncpg://用户@主机/库), 收到 {scheme}://…"
            )
        return value

    @field_validator("client_timeout_seconds")
    @classmethod
    def _client_timeout_positive(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"RELIEF_CLIENT_TIMEOUT_SECONDS 应为正数 (秒), 收到 {value}")
        return value

    @field_validator("province", mode="before")
    @classmethod
    def _province_is_known(cls, value: object) -> object:
        known = [p.value for p in Province]
        if isinstance(value, str) and value not in known:
            raise ValueError(
                f"RELIEF_PROVINCE 应为 {'、'.join(known)} 之一, 收到 {value!r}: 未知省份"
            )
        return value

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
    def client_token_key_path(self) -> Path:
        """The ES256 key pair signing service-account tokens (PEM, mode 0600)."""
        return self.data_dir / "client-token-key.pem"

    @property
    def exchange_key_path(self) -> Path:
        """This province's key signing exchange messages and receipts (ES256 PEM or SM2 JSON,
        mode 0600), created at the first start with peers configured."""
        return self.data_dir / "exchange-signing.key"

    @property
    def client_token_issuer(self) -> str:
        """``iss`` of service-account tokens: distinct from the development tokens' issuer."""
        return f"{self.token_issuer}/clients"

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def metrics_networks(self) -> list[Network] | None:
        """RELIEF_METRICS_ALLOW as networks (loopback always included); None means anyone
        ("*"). Raises ValueError for a malformed network."""
        networks: list[Network] = [
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ]
        for item in (part.strip() for part in self.metrics_allow.split(",")):
            if not item:
                continue
            if item == "*":
                return None
            networks.append(ipaddress.ip_network(item, strict=False))
        return networks


def _split(origins: str) -> list[str]:
    return [origin.strip() for origin in origins.split(",") if origin.strip()]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit (CLI) overrides taking precedence."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
