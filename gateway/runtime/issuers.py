"""Trusted external token issuers: the province's identity platform (统一身份认证, issue 16).

A configured issuer's tokens are verified with its published keys (``gateway.runtime.jwks``)
under the algorithms pinned for it, its audience, its issuer name and a clock leeway; the
claims are mapped to a :class:`Principal` through the issuer's claim mapping. Configuration
comes from ``RELIEF_OIDC_*`` (one issuer) or ``RELIEF_OIDC_FILE`` (a TOML file, several
issuers), validated at start-up with Chinese errors (docs/identity.md has the format)::

    [[issuer]]
    name = "sd-iam"                                   # subjects become "sd-iam|<sub>"
    issuer = "https://iam.shandong.gov.cn/realms/gov"
    discovery_url = "https://iam.shandong.gov.cn/realms/gov/.well-known/openid-configuration"
    audience = ["relief-gateway"]
    algorithms = ["RS256"]
    leeway_seconds = 60

    [issuer.claims]
    department = "org.code"                           # dotted paths into nested claims
    region = "org.region"
    roles = "realm_access.roles"

    [issuer.claims.departments]                       # the platform's values → ours
    "11370000MB1234567X" = "medical_insurance"
    "山东省民政厅" = "civil_affairs"

What is refused, each as HTTP 401 ``UNAUTHENTICATED`` with a Chinese message that names no key,
claim value or configuration detail: a signature that does not verify, an algorithm not pinned
for the issuer (``none``, ``HS256`` signed with the public key), a ``kid`` the platform does not
publish (after one rate-limited refresh), another issuer or audience, an expired or
not-yet-valid token (beyond the leeway), claims that do not map, and two administrator roles
(三权分立).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from jwt.types import Options

from gateway.domain.clock import now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import BadUserInput, ConfigurationError, Unauthenticated
from gateway.domain.principal import KNOWN_ROLES, ROLE_ALIASES, Principal, canonical_roles
from gateway.runtime import sm2
from gateway.runtime.jwks import ALGORITHMS_BY_KEY_TYPE, KeySource, read_key_file
from gateway.runtime.sm2 import SM2_ALGORITHMS, Sm2PublicKey

if TYPE_CHECKING:
    from gateway.domain.settings import Settings

# Algorithms a platform may be trusted with. HS* is never among them: an issuer's key is public,
# and a MAC keyed with a public key is a token anyone can mint. SM2-with-SM3 under either name
# platforms use (no IANA-registered one; gateway.runtime.sm2).
SUPPORTED_ALGORITHMS = frozenset({"RS256", "ES256"}) | SM2_ALGORITHMS
SUBJECT_SEPARATOR = "|"
MAX_LEEWAY_SECONDS = 300
REGION_LEVELS = {2: Level.PROVINCE, 4: Level.CITY, 6: Level.COUNTY}
INVALID = "令牌无效"  # one message for every signature, key and claim failure: no oracle
log = logging.getLogger("gateway.identity")
_warned_aliases: set[str] = set()


def warn_deprecated_roles(roles: list[str] | frozenset[str]) -> None:
    """A token carrying a deprecated role name (``security_officer``) is still accepted, as the
    role it names; the operator is told once per process and name, so the platform's or the
    token tooling's role can be renamed before the alias is removed."""
    for role in sorted(set(roles) & ROLE_ALIASES.keys() - _warned_aliases):
        _warned_aliases.add(role)
        log.warning(
            "令牌携带已弃用的角色名 %s, 暂按 %s 处理; 该别名将在后续版本移除, "
            "请在身份平台 (或签发令牌处) 改用 %s (本进程只提示一次)",
            role,
            ROLE_ALIASES[role],
            ROLE_ALIASES[role],
        )


@dataclass(frozen=True)
class ClaimMapping:
    """Which claims carry department, level, region and roles (dotted paths into nested claims),
    and tables mapping the platform's values to ours. Without a level claim the level follows
    from the region code's length (2 province, 4 city, 6 county)."""

    department: str = "dept"
    level: str | None = "level"
    region: str = "region"
    roles: str | None = "roles"
    departments: dict[str, str] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    regions: dict[str, str] = field(default_factory=dict)
    # With a role_names table only the platform roles it names count; without one, the platform's
    # role names are ours and any other role it lists (offline_access, …) is ignored.
    role_table: dict[str, str] | None = None

    def principal(self, subject: str, claims: dict[str, Any]) -> Principal:
        department = _mapped(_claim(claims, self.department), self.departments)
        region = _mapped(_claim(claims, self.region), self.regions)
        if self.level is not None:
            level_value = _mapped(_claim(claims, self.level), self.levels)
        else:
            derived = REGION_LEVELS.get(len(region or ""))
            level_value = derived.value if derived else None
        if department not in {d.value for d in Department} or level_value is None:
            raise Unauthenticated(
                "令牌中的部门或层级无法识别, 请联系身份平台管理员核对账号的机构信息"
            )
        level = Level(level_value) if level_value in {v.value for v in Level} else None
        if (
            level is None
            or region is None
            or not (region.isascii() and region.isdigit() and len(region) == level.region_digits)
        ):
            raise Unauthenticated("令牌中的层级或行政区划代码无法识别, 请联系身份平台管理员核对")
        roles = self._roles(claims)
        warn_deprecated_roles(roles)
        try:
            held = canonical_roles(roles)
        except BadUserInput as refusal:
            # 三权分立 (等保 8.1.5): one subject may not hold two administrator roles.
            raise Unauthenticated(
                f"拒绝登录: {refusal.message}; 请身份平台管理员为该账号只保留一个管理员角色"
            ) from None
        return Principal(subject, Department(department), level, region, held)

    def _roles(self, claims: dict[str, Any]) -> list[str]:
        if self.roles is None:
            return []
        value = _lookup(claims, self.roles)
        if value is None:
            return []
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if not isinstance(value, list):
            raise Unauthenticated(INVALID)
        names = [item for item in value if isinstance(item, str)]
        if self.role_table is not None:
            return sorted({self.role_table[name] for name in names if name in self.role_table})
        return sorted({name for name in names if name in KNOWN_ROLES})


@dataclass(frozen=True)
class IssuerConfig:
    name: str
    issuer: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    discovery_url: str | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None
    leeway_seconds: float = 60.0
    client_id: str | None = None  # the browser sign-in's OAuth client (authorization code + PKCE)
    min_refresh_seconds: float = 30.0
    timeout_seconds: float = 5.0
    key_max_age_seconds: float = 3600.0
    sm2_user_id: str = sm2.DEFAULT_USER_ID  # the signer ID in SM2's Z value (GM/T 0009)
    claims: ClaimMapping = field(default_factory=ClaimMapping)


class Issuer:
    """One trusted platform: its keys, pinned algorithms and claim mapping.

    ``verify`` is asynchronous because an unknown ``kid`` may need the platform's key set
    fetched again (at most once per ``min_refresh_seconds``)."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self.issuer = config.issuer
        self.keys = KeySource(
            issuer=config.issuer,
            discovery_url=config.discovery_url,
            jwks_url=config.jwks_url,
            jwks_file=config.jwks_file,
            min_refresh_seconds=config.min_refresh_seconds,
            timeout_seconds=config.timeout_seconds,
            max_age_seconds=config.key_max_age_seconds,
        )
        self._sm2_slots: asyncio.Semaphore | None = None
        if SM2_ALGORITHMS & set(config.algorithms):
            sm2.library()  # at start-up, not in the first SM2 request

    async def verify(self, token: str) -> tuple[Principal, float]:
        """The caller and the token's ``exp``; Unauthenticated for anything not trusted."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(INVALID) from None
        algorithm = header.get("alg")
        if algorithm not in self.config.algorithms:
            # "none", HS256 (a MAC keyed with the public key), or an alg not pinned for it.
            raise Unauthenticated(INVALID)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated(INVALID)
        await self.keys.ensure_fresh()
        key = self.keys.get(kid)
        if key is None and await self.keys.refresh():
            key = self.keys.get(kid)  # the platform rolled its keys over
        if key is None:
            raise Unauthenticated("令牌无效: 身份平台未公布该签名密钥, 请重新登录")
        if isinstance(key, Sm2PublicKey):
            claims = await self._sm2_claims(token, algorithm, key)
        else:
            if (
                algorithm not in ALGORITHMS_BY_KEY_TYPE.get(key.key_type or "", ())
                or key.algorithm_name != algorithm
            ):
                # The alg must fit the key it claims, and the alg the platform published for
                # the key (RFC 7517 §4.4; PyJWK defaults it from the key type when absent).
                raise Unauthenticated(INVALID)
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience=list(self.config.audience),
                    issuer=self.config.issuer,
                    options=decode_options("exp", "iss", "sub", "aud"),
                )
            except jwt.PyJWTError:
                raise Unauthenticated(INVALID) from None
        check_lifetime(claims, self.config.leeway_seconds, again="请重新登录")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or subject != subject.strip():
            raise Unauthenticated(INVALID)
        # OIDC Core §2: sub is unique within the issuer and case-sensitive; kept exactly,
        # qualified by the issuer's short name so two platforms' subjects never meet.
        principal = self.config.claims.principal(
            f"{self.config.name}{SUBJECT_SEPARATOR}{subject}", claims
        )
        return principal, float(claims["exp"])

    async def _sm2_claims(self, token: str, algorithm: str, key: Sm2PublicKey) -> dict[str, Any]:
        """SM2-with-SM3: the signature checked by gateway.runtime.sm2 first, then the same
        claim checks PyJWT makes for RS256/ES256 (issuer, audience, required claims)."""
        if algorithm not in SM2_ALGORITHMS or key.algorithm not in (None, algorithm):
            raise Unauthenticated(INVALID)
        if self._sm2_slots is None:
            self._sm2_slots = asyncio.Semaphore(sm2.CONCURRENCY)
        if not await sm2.verify_compact(token, key, self.config.sm2_user_id, self._sm2_slots):
            raise Unauthenticated(INVALID)
        try:
            return jwt.decode(
                token,
                audience=list(self.config.audience),
                issuer=self.config.issuer,
                options={
                    **decode_options("exp", "iss", "sub", "aud"),
                    "verify_signature": False,  # verified above, with SM2
                    "verify_aud": True,
                    "verify_iss": True,
                },
            )
        except jwt.PyJWTError:
            raise Unauthenticated(INVALID) from None

    def sign_in(self) -> dict[str, str] | None:
        """What a browser needs to sign in through this platform (authorization code + PKCE),
        once discovery has been read; None without a client id or discovery."""
        endpoint = self.keys.discovered.get("authorization_endpoint")
        token_endpoint = self.keys.discovered.get("token_endpoint")
        if not self.config.client_id or not isinstance(endpoint, str):
            return None
        return {
            "name": self.config.name,
            "issuer": self.config.issuer,
            "clientId": self.config.client_id,
            "authorizationEndpoint": endpoint,
            "tokenEndpoint": token_endpoint if isinstance(token_endpoint, str) else "",
        }


# PyJWT would read the wall clock; lifetimes are checked against gateway.domain.clock instead.
def decode_options(*required: str) -> Options:
    return {
        "require": list(required),
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
    }


def check_lifetime(claims: dict[str, Any], leeway: float, *, again: str) -> float:
    """``exp`` (required), ``nbf`` and ``iat`` against :func:`gateway.domain.clock.now_utc`
    with ``leeway`` seconds of clock skew, as RFC 7519 §4.1.4-6 and PyJWT read them; the
    token's exp. Unauthenticated when outside."""
    now = now_utc().timestamp()
    times: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None and name != "exp":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unauthenticated(INVALID)
        times[name] = float(value)
    if now >= times["exp"] + leeway:
        raise Unauthenticated(f"令牌已过期, {again}")
    if now < times.get("nbf", now) - leeway or now < times.get("iat", now) - leeway:
        raise Unauthenticated("令牌尚未生效, 请检查签发方与本网关的服务器时间")
    return times["exp"]


# --------------------------------------------------------------------------- configuration


def load_issuers(settings: Settings) -> list[Issuer]:
    """The configured issuers, validated; ConfigurationError (Chinese) for anything wrong."""
    return [Issuer(config) for config in issuer_configs(settings)]


def issuer_configs(settings: Settings) -> list[IssuerConfig]:
    if settings.oidc_file is not None:
        if settings.oidc_issuer:
            raise ConfigurationError(
                "RELIEF_OIDC_FILE 与 RELIEF_OIDC_ISSUER 只能设置其一: 多个身份平台请都写入文件"
            )
        configs = _from_file(settings.oidc_file, production=settings.is_production)
    elif settings.oidc_issuer:
        configs = [_from_settings(settings)]
    else:
        return []
    for kind, values in (
        ("name", [c.name for c in configs]),
        ("issuer", [c.issuer for c in configs]),
    ):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigurationError(f"身份平台配置中 {kind} 重复: {', '.join(duplicates)}")
    if settings.token_issuer in {c.issuer for c in configs}:
        raise ConfigurationError(
            f"身份平台的 issuer 不能与本网关的 RELIEF_TOKEN_ISSUER ({settings.token_issuer}) 相同"
        )
    return configs


def _from_settings(settings: Settings) -> IssuerConfig:
    raw: dict[str, Any] = {
        "name": settings.oidc_name,
        "issuer": settings.oidc_issuer,
        "discovery_url": settings.oidc_discovery_url,
        "jwks_url": settings.oidc_jwks_url,
        "jwks_file": str(settings.oidc_jwks_file) if settings.oidc_jwks_file else None,
        "audience": settings.oidc_audience,
        "algorithms": settings.oidc_algorithms,
        "leeway_seconds": settings.oidc_leeway_seconds,
        "client_id": settings.oidc_client_id,
        "min_refresh_seconds": settings.oidc_refresh_seconds,
        "timeout_seconds": settings.oidc_timeout_seconds,
    }
    return _config(
        {k: v for k, v in raw.items() if v is not None},
        "RELIEF_OIDC_*",
        production=settings.is_production,
        names=ENVIRONMENT_NAMES,
    )


def _from_file(path: Path, *, production: bool) -> list[IssuerConfig]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigurationError(f"无法读取身份平台配置文件 RELIEF_OIDC_FILE={path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"身份平台配置文件 {path} 不是有效的 TOML: {exc}") from None
    unknown = set(document) - {"issuer"}
    if unknown:
        raise ConfigurationError(
            f"身份平台配置文件 {path} 含未知的表: {', '.join(sorted(unknown))}"
        )
    entries = document.get("issuer")
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"身份平台配置文件 {path} 中没有 [[issuer]] 表")
    return [
        _config(entry, f"{path} 第 {number} 个 [[issuer]]", production=production)
        for number, entry in enumerate(entries, start=1)
    ]


ISSUER_KEYS = {
    "name", "issuer", "discovery_url", "jwks_url", "jwks_file", "audience", "algorithms",
    "leeway_seconds", "client_id", "min_refresh_seconds", "timeout_seconds",
    "key_max_age_seconds", "sm2_user_id", "claims",
}  # fmt: skip
# What an operator set, for the messages: the issuer from RELIEF_OIDC_* is named by its variables.
ENVIRONMENT_NAMES = {
    "name": "RELIEF_OIDC_NAME",
    "issuer": "RELIEF_OIDC_ISSUER",
    "discovery_url": "RELIEF_OIDC_DISCOVERY_URL",
    "jwks_url": "RELIEF_OIDC_JWKS_URL",
    "jwks_file": "RELIEF_OIDC_JWKS_FILE",
    "audience": "RELIEF_OIDC_AUDIENCE",
    "algorithms": "RELIEF_OIDC_ALGORITHMS",
    "leeway_seconds": "RELIEF_OIDC_LEEWAY_SECONDS",
    "client_id": "RELIEF_OIDC_CLIENT_ID",
    "min_refresh_seconds": "RELIEF_OIDC_REFRESH_SECONDS",
    "timeout_seconds": "RELIEF_OIDC_TIMEOUT_SECONDS",
}
CLAIM_KEYS = {
    "department", "level", "region", "roles", "departments", "levels", "regions", "role_names",
}  # fmt: skip


def _config(
    raw: dict[str, Any], where: str, *, production: bool, names: dict[str, str] | None = None
) -> IssuerConfig:
    def fail(message: str) -> ConfigurationError:
        return ConfigurationError(f"身份平台配置 ({where}): {message}")

    def n(key: str) -> str:  # the name the operator wrote: a TOML key or an environment variable
        return (names or {}).get(key, key)

    unknown = set(raw) - ISSUER_KEYS
    if unknown:
        raise fail(f"未知的配置项 {', '.join(sorted(unknown))}")
    name = _text(raw.get("name"), n("name"), fail)
    if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii() or len(name) > 32:
        raise fail(f"{n('name')} 应为不超过 32 个字符的字母、数字、- 或 _, 收到 {name!r}")
    issuer = _text(raw.get("issuer"), n("issuer"), fail)
    sources = [k for k in ("discovery_url", "jwks_url", "jwks_file") if raw.get(k)]
    if len(sources) != 1:
        listed = "、".join(n(k) for k in ("discovery_url", "jwks_url", "jwks_file"))
        raise fail(f"{listed} 须且只能设置一个 (密钥从哪里取)")
    for key in ("discovery_url", "jwks_url"):
        if raw.get(key):
            _check_url(_text(raw[key], n(key), fail), n(key), fail, production=production)
    jwks_file = Path(raw["jwks_file"]) if raw.get("jwks_file") else None
    if jwks_file is not None:
        if not jwks_file.is_file():
            raise fail(f"找不到 {n('jwks_file')} {jwks_file}")
        # A local key set is checked now, as a missing one is: a broken file would otherwise
        # let the gateway start and refuse every token of the platform.
        problem = read_key_file(jwks_file)
        if problem:
            raise fail(f"{n('jwks_file')} {jwks_file} {problem}")
    audience = _names(raw.get("audience"), n("audience"), fail)
    if not audience:
        raise fail(
            f"必须设置 {n('audience')} (本网关在身份平台登记的客户端标识): "
            "否则发给其他系统的令牌也会被接受"
        )
    algorithms = _names(raw.get("algorithms", ["RS256", "ES256"]), n("algorithms"), fail)
    refused = [a for a in algorithms if a not in SUPPORTED_ALGORITHMS]
    if refused or not algorithms:
        raise fail(
            f"{n('algorithms')} 含不支持的签名算法 {', '.join(refused) or '(空)'}: 可选 RS256、"
            "ES256、SM2 或 SM3withSM2 (HS256 等对称算法不能用于外部身份平台)"
        )
    leeway = _number(raw.get("leeway_seconds", 60), n("leeway_seconds"), fail)
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise fail(
            f"{n('leeway_seconds')} (时钟偏差) 应在 0 到 {MAX_LEEWAY_SECONDS} 秒之间, 收到 {leeway}"
        )
    refresh = _number(raw.get("min_refresh_seconds", 30), n("min_refresh_seconds"), fail)
    timeout = _number(raw.get("timeout_seconds", 5), n("timeout_seconds"), fail)
    max_age = _number(raw.get("key_max_age_seconds", 3600), n("key_max_age_seconds"), fail)
    if refresh <= 0 or timeout <= 0 or max_age <= 0:
        listed = "、".join(n(k) for k in ("min_refresh_seconds", "timeout_seconds"))
        raise fail(f"{listed} 与 {n('key_max_age_seconds')} 应为正数 (秒)")
    client_id = raw.get("client_id")
    if client_id is not None:
        client_id = _text(client_id, n("client_id"), fail)
        if client_id in audience:
            # The browser client's ID token carries aud = client_id: were that an accepted
            # audience, an ID token (meant for the page only) would pass as a bearer token.
            raise fail(
                f"{n('client_id')} ({client_id}) 不得与 {n('audience')} 中的受众相同: "
                "浏览器登录客户端的 ID 令牌 (aud 为该客户端) 否则会被当作访问令牌接受; "
                "请在身份平台为浏览器登录另行登记一个客户端 (如 relief-console)"
            )
    return IssuerConfig(
        name=name,
        issuer=issuer,
        audience=tuple(audience),
        algorithms=tuple(algorithms),
        discovery_url=raw.get("discovery_url") or None,
        jwks_url=raw.get("jwks_url") or None,
        jwks_file=jwks_file,
        leeway_seconds=leeway,
        client_id=client_id,
        min_refresh_seconds=refresh,
        timeout_seconds=timeout,
        key_max_age_seconds=max_age,
        sm2_user_id=_text(raw.get("sm2_user_id", sm2.DEFAULT_USER_ID), "sm2_user_id", fail),
        claims=_claims(raw.get("claims", {}), fail),
    )


def _claims(raw: object, fail: Any) -> ClaimMapping:
    if not isinstance(raw, dict):
        raise fail("claims 应为表")
    unknown = set(raw) - CLAIM_KEYS
    if unknown:
        raise fail(f"claims 中未知的配置项 {', '.join(sorted(unknown))}")
    paths: dict[str, str | None] = {}
    for key, default in (("department", "dept"), ("level", "level"), ("region", "region")):
        value = raw.get(key, default)
        paths[key] = None if value == "" else _text(value, f"claims.{key}", fail)
    roles_value = raw.get("roles", "roles")
    roles_path = None if roles_value == "" else _text(roles_value, "claims.roles", fail)
    role_table = (
        _table(raw["role_names"], "claims.role_names", KNOWN_ROLES, fail)
        if "role_names" in raw
        else None
    )
    if paths["department"] is None or paths["region"] is None:
        raise fail("claims.department 与 claims.region 不能为空")
    return ClaimMapping(
        department=paths["department"],
        level=paths["level"],
        region=paths["region"],
        roles=roles_path,
        departments=_table(
            raw.get("departments", {}), "claims.departments", {d.value for d in Department}, fail
        ),
        levels=_table(raw.get("levels", {}), "claims.levels", {v.value for v in Level}, fail),
        regions=_table(raw.get("regions", {}), "claims.regions", None, fail),
        role_table=role_table,
    )


def _table(
    raw: object, what: str, allowed: set[str] | frozenset[str] | None, fail: Any
) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise fail(f"{what} 应为表 (身份平台的取值 = 本系统的取值)")
    table: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise fail(f"{what}.{key} 应为字符串")
        if allowed is not None and value not in allowed:
            raise fail(
                f"{what}.{key} = {value!r} 不是本系统的取值, 可选: {', '.join(sorted(allowed))}"
            )
        if allowed is None and not (
            value.isascii() and value.isdigit() and len(value) in REGION_LEVELS
        ):
            raise fail(f"{what}.{key} = {value!r} 应为 2、4 或 6 位行政区划代码")
        table[str(key)] = value
    return table


def _check_url(url: str, what: str, fail: Any, *, production: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"{what} 应为 http(s) 地址, 收到 {url!r}")
    if production and parts.scheme == "http" and not _loopback(parts.hostname):
        # Keys fetched in clear text can be swapped in transit: anyone could then mint tokens.
        raise fail(f"生产环境的 {what} 必须使用 https, 收到 {url!r}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(value: object, what: str, fail: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{what} 应为非空字符串")
    return value.strip()


def _names(value: object, what: str, fail: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise fail(f"{what} 应为字符串或字符串列表")


def _number(value: object, what: str, fail: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"{what} 应为数字 (秒), 收到 {value!r}")
    return float(value)


# --------------------------------------------------------------------------- claims


def _lookup(claims: dict[str, Any], path: str) -> object:
    """A claim by dotted path: ``realm_access.roles`` reads claims["realm_access"]["roles"]; a
    claim whose own name contains the dots (``"org.code"``) is found first."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _claim(claims: dict[str, Any], path: str) -> str | None:
    value = _lookup(claims, path)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip()


def _mapped(value: str | None, table: dict[str, str]) -> str | None:
    if value is None:
        return None
    return table.get(value, value)
