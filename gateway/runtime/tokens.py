"""Bearer tokens: signed JWTs carrying who the caller is (``sub``, ``dept``, ``level``,
``region``, ``roles``). The signing key is a file in the data dir, never in the database.

HS256 with a 256-bit random key: the gateway both mints (``relief-gateway token``) and checks
tokens, so a shared secret is enough; a department's identity provider would use its own key
pair and this module would verify with ``RS256``/``ES256`` instead.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import jwt

from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput, ConfigurationError, Unauthenticated
from gateway.domain.principal import Principal, canonical_subject, check_claims

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
VERIFIED_CACHE_SIZE = 4096


class TokenService:
    def __init__(self, key: bytes, issuer: str) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError("令牌签名密钥太短 (至少 32 字节)")
        self._key = key
        self._issuer = issuer
        # Tokens already verified: token → (principal, exp). A department's system sends the
        # same token with every request; its signature and claims are checked once, its expiry
        # every time. Only valid tokens enter; the cache is emptied when full.
        self._verified: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def from_file(cls, path: Path, issuer: str, *, create: bool) -> TokenService:
        if not path.exists():
            if not create:
                raise ConfigurationError(f"找不到令牌签名密钥文件 {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return cls(path.read_text().strip().encode(), issuer)

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

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:  # PyJWT's rule: expired once exp <= now
                return principal
            del self._verified[token]
            raise Unauthenticated("令牌已过期, 请重新获取")
        return self._verify(token)

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # pinned: never "none", never an alg the token picks
                issuer=self._issuer,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("令牌已过期, 请重新获取") from None
        except jwt.PyJWTError:
            raise Unauthenticated("令牌无效") from None
        try:
            roles = claims.get("roles") or []
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise BadUserInput("roles")
            checked = check_claims(
                str(claims["dept"]), str(claims["level"]), str(claims["region"]), roles
            )
        except (KeyError, BadUserInput):
            raise Unauthenticated("令牌中的部门、层级或区划声明无效") from None
        # One person, one subject (issue 16): "OFFICER.A" and "officer.a" are one subject.
        subject = canonical_subject(str(claims["sub"]))
        if not subject:
            raise Unauthenticated("令牌缺少主体 (sub)")
        principal = Principal(
            subject, checked.department, checked.level, checked.region, checked.roles
        )
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal
