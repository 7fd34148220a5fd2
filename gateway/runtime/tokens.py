"""Bearer tokens: signed JWTs carrying who the caller is (``sub``, ``dept``, ``level``,
``region``, ``roles``), verified by the issuer that signed them.

    iss = RELIEF_TOKEN_ISSUER      the gateway's own HS256 tokens (``relief-gateway token``, the
                                   demo, development); its key is a file in the data dir, never
                                   in the database. In production with an identity platform
                                   configured they are refused unless
                                   RELIEF_OIDC_ALLOW_LOCAL_TOKENS is set.
    iss = a configured platform    the province's identity platform (统一身份认证): RS256,
                                   ES256 or SM2 with its published keys
                                   (``gateway.runtime.issuers``)
    iss = a registered verifier    other parts of the gateway (``TokenService.register``), e.g.
                                   service accounts' client-credentials tokens

The ``iss`` read before verification only chooses the verifier; each verifier checks its own
signature, algorithm and issuer again, so a token naming one issuer and signed by another is
refused.

    tokens = TokenService(key, "relief-gateway", issuers=load_issuers(settings))
    tokens.register(client_tokens)             # any object with .issuer and .verify(token)
    principal = await tokens.verify(token)     # Unauthenticated (HTTP 401) when not trusted
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, Protocol

import jwt

from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput, ConfigurationError, Unauthenticated
from gateway.domain.principal import Principal, canonical_roles, canonical_subject, check_claims
from gateway.runtime.issuers import (
    SUBJECT_SEPARATOR,
    Issuer,
    check_lifetime,
    decode_options,
    warn_deprecated_roles,
)

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
VERIFIED_CACHE_SIZE = 4096
MAX_TOKEN_BYTES = 16 * 1024  # a JWT with a platform's claims is 1-2 KB
# Subjects of service accounts (gateway.runtime.client_tokens.SUBJECT_PREFIX): only the
# client-credentials issuer may name one, so the audit never shows a department system for a
# call made with the local key.
CLIENT_SUBJECT_PREFIX = "client:"


class Verifier(Protocol):
    """Tokens of one issuer, verified by another part of the gateway (``register``). ``verify``
    raises Unauthenticated for a token it does not trust; it may be a coroutine function."""

    issuer: str

    def verify(self, token: str) -> Principal | Awaitable[Principal]: ...


class TokenService:
    def __init__(
        self,
        key: bytes,
        issuer: str,
        *,
        issuers: Iterable[Issuer] = (),
        accept_local: bool = True,
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError("令牌签名密钥太短 (至少 32 字节)")
        self._key = key
        self._issuer = issuer
        self._accept_local = accept_local
        self._platforms: dict[str, Issuer] = {}
        self._verifiers: dict[str, Verifier] = {}
        for platform in issuers:
            self._claim_issuer(platform.issuer)
            self._platforms[platform.issuer] = platform
        self._platform_prefixes = tuple(
            canonical_subject(f"{platform.config.name}{SUBJECT_SEPARATOR}")
            for platform in self._platforms.values()
        )
        # Tokens already verified: token → (principal, exp). A department's system sends the
        # same token with every request; its signature and claims are checked once, its expiry
        # every time. Only valid tokens enter; the cache is emptied when full.
        self._verified: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def from_file(
        cls,
        path: Path,
        issuer: str,
        *,
        create: bool,
        issuers: Iterable[Issuer] = (),
        accept_local: bool = True,
    ) -> TokenService:
        if not path.exists():
            if not create:
                raise ConfigurationError(f"找不到令牌签名密钥文件 {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return cls(
            path.read_text().strip().encode(), issuer, issuers=issuers, accept_local=accept_local
        )

    # ------------------------------------------------------------------ issuers
    @property
    def accepts_local(self) -> bool:
        """Whether this gateway's own HS256 tokens are accepted (``/readyz``)."""
        return self._accept_local

    @property
    def platforms(self) -> tuple[Issuer, ...]:
        """The configured identity platforms (for the browser sign-in and start-up)."""
        return tuple(self._platforms.values())

    def register(self, verifier: Verifier) -> None:
        """Trust tokens whose ``iss`` is ``verifier.issuer``, checked by ``verifier.verify``.
        Their results are not cached here: the verifier decides how long a token stays good
        (a disabled service account must stop within seconds)."""
        self._claim_issuer(verifier.issuer)
        self._verifiers[verifier.issuer] = verifier

    def _claim_issuer(self, issuer: str) -> None:
        if (
            not issuer
            or issuer == self._issuer
            or issuer in self._platforms
            or (issuer in self._verifiers)
        ):
            raise ConfigurationError(
                f"令牌签发方 {issuer!r} 重复或为空: 每个签发方只能有一个验证者"
            )

    async def start(self) -> None:
        """Read each platform's keys once (best effort: an unreachable platform is logged and
        retried on the first token that needs it; the gateway still serves other callers)."""
        for platform in self._platforms.values():
            await platform.keys.refresh(force=True)

    # ------------------------------------------------------------------ local tokens
    def mint(
        self,
        *,
        subject: str,
        dept: str,
        level: str,
        region: str,
        roles: list[str] | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        check_claims(dept, level, region, roles or [])
        if canonical_subject(subject).startswith(CLIENT_SUBJECT_PREFIX):
            # Refused here too (verification refuses it anyway): `relief-gateway token` says why.
            raise BadUserInput(
                f"不能签发主体 {subject!r} 的令牌: 主体前缀 {CLIENT_SUBJECT_PREFIX} 保留给服务账号,"
                " 服务账号请以客户端凭证向 /oauth/token 获取令牌"
            )
        if ttl_seconds <= 0:
            raise BadUserInput("有效期必须为正数秒")
        issued = int(now_utc().timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "dept": dept,
            "level": level,
            "region": region,
            "roles": sorted(roles or []),
            "iat": issued,
            "exp": issued + ttl_seconds,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    # ------------------------------------------------------------------ verification
    async def verify(self, token: str) -> Principal:
        """The caller a bearer token names; Unauthenticated (HTTP 401) when not trusted."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if now_utc().timestamp() < expires:  # RFC 7519: expired once exp <= now
                return principal
            del self._verified[token]
            raise Unauthenticated("令牌已过期, 请重新获取")
        issuer = _unverified_issuer(token)
        if issuer == self._issuer:
            if not self._accept_local:
                raise Unauthenticated(
                    "本网关签发的令牌在生产环境已停用: 请通过统一身份认证平台登录, "
                    "部门系统请使用服务账号"
                )
            return self._verify(token)
        platform = self._platforms.get(issuer)
        if platform is not None:
            principal, expires = await platform.verify(token)
            # Within the platform's clock leeway a token is still good; so it stays here.
            self._remember(token, principal, expires + platform.config.leeway_seconds)
            return principal
        verifier = self._verifiers.get(issuer)
        if verifier is not None:
            result = verifier.verify(token)
            return await result if inspect.isawaitable(result) else result
        raise Unauthenticated("令牌无效: 签发方不受信任")

    def _remember(self, token: str, principal: Principal, expires: float) -> None:
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires)

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # pinned: never "none", never an alg the token picks
                issuer=self._issuer,
                options=decode_options("exp", "sub", "iss"),
            )
        except jwt.PyJWTError:
            raise Unauthenticated("令牌无效") from None
        expires = check_lifetime(claims, 0, again="请重新获取")
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated("令牌中的部门、层级或区划声明无效")
        _separate_duties(roles)
        try:
            checked = check_claims(
                str(claims["dept"]), str(claims["level"]), str(claims["region"]), roles
            )
        except (KeyError, BadUserInput):
            raise Unauthenticated("令牌中的部门、层级或区划声明无效") from None
        # One person, one subject (issue 16): "OFFICER.A" and "officer.a" are one subject.
        subject = canonical_subject(str(claims["sub"]))
        if not subject:
            raise Unauthenticated("令牌缺少主体 (sub)")
        reserved = self._reserved_subject(subject)
        if reserved:
            raise Unauthenticated(f"令牌无效: {reserved}")
        warn_deprecated_roles(roles)
        principal = Principal(
            subject, checked.department, checked.level, checked.region, checked.roles
        )
        self._remember(token, principal, expires)
        return principal

    def _reserved_subject(self, subject: str) -> str | None:
        """Why a canonical subject may not be carried by a local token, or None. "sd-iam|…"
        names a person of a platform, "client:…" a service account: the local key must not
        stand in for either."""
        if subject.startswith(CLIENT_SUBJECT_PREFIX):
            return (
                f"主体前缀 {CLIENT_SUBJECT_PREFIX} 保留给服务账号 (客户端凭证签发), "
                "本网关签发的令牌不能使用"
            )
        if any(subject.startswith(prefix) for prefix in self._platform_prefixes):
            return "本网关签发的令牌不能使用身份平台的主体"
        return None


def _separate_duties(roles: list[str]) -> None:
    """三权分立 (等保 8.1.5): a token holding two administrator roles is refused at sign-in."""
    try:
        canonical_roles(roles)
    except BadUserInput as refusal:
        if "三权分立" not in refusal.message:
            raise Unauthenticated("令牌中的部门、层级或区划声明无效") from None
        raise Unauthenticated(f"拒绝登录: {refusal.message}") from None


def _unverified_issuer(token: str) -> str:
    """The ``iss`` a token claims, read without verifying anything: it only picks the verifier,
    which checks the signature and the issuer itself."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("令牌无效")
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("令牌无效")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise Unauthenticated("令牌无效") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str):
        raise Unauthenticated("令牌无效")
    return issuer
