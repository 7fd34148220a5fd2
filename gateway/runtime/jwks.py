"""The public keys of a trusted token issuer (a JWK Set, RFC 7517), cached and refreshed.

Where the keys come from, in order of preference:

    discovery URL   OpenID Connect Discovery 1.0: ``/.well-known/openid-configuration`` names
                    the ``jwks_uri``; its ``issuer`` must be the configured issuer exactly (§4.3)
    JWKS URL        the key set itself
    JWKS file       a key set kept on disk (a platform without a reachable endpoint, or tests)

Keys are read once and kept. A token signed with a ``kid`` the set does not hold triggers a
refresh (the platform rolled its keys over), at most once per ``min_refresh_seconds`` per
issuer: a flood of tokens with invented ``kid`` values costs the platform one request per
interval, not one per token. Keys older than ``max_age_seconds`` (an hour) are read again
before use, so a key the platform withdraws stops verifying. Fetches are asynchronous (httpx)
with a timeout, so a slow platform delays only the requests that need its keys, never the
event loop.

    keys = KeySource(issuer="https://iam.sd.gov.cn", jwks_url="https://iam…/jwks", …)
    await keys.refresh()              # at start (best effort) and on an unknown kid
    key = keys.get("2026-rsa")        # None: not (yet) known
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from gateway.runtime.sm2 import Sm2KeyError, Sm2PublicKey

log = logging.getLogger("gateway.identity")

# JWK key types and the JWS algorithms each may verify (RFC 7518 §3): a token's ``alg`` must
# fit its key, so an RSA key never checks an HS256 MAC (the public-key-as-HMAC-secret attack).
ALGORITHMS_BY_KEY_TYPE = {"RSA": frozenset({"RS256"}), "EC": frozenset({"ES256"})}
PublicKey = jwt.PyJWK | Sm2PublicKey
MAX_JWKS_BYTES = 512 * 1024  # a key set is a few KB; refuse to buffer a runaway response


class KeySourceError(Exception):
    """The key set could not be fetched or read; the message is for the server log only."""


@dataclass
class KeySource:
    issuer: str
    discovery_url: str | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None
    min_refresh_seconds: float = 30.0
    timeout_seconds: float = 5.0
    # Keys are re-read when older than this even if no unknown kid shows up, so a key the
    # platform withdrew (compromised, retired early) stops verifying without a restart.
    max_age_seconds: float = 3600.0
    # kid → key; a key set entry without kid is kept under "" (a platform with one key).
    _keys: dict[str, PublicKey] = field(default_factory=dict, init=False)
    _last_attempt: float = field(default=float("-inf"), init=False)
    _loaded_at: float = field(default=float("-inf"), init=False)
    _lock: asyncio.Lock | None = field(default=None, init=False)
    # Discovery document fields kept for the browser sign-in (authorization code + PKCE).
    discovered: dict[str, Any] = field(default_factory=dict, init=False)
    refreshes: int = field(default=0, init=False)  # successful loads, for tests and metrics
    _background: asyncio.Task[bool] | None = field(default=None, init=False, repr=False)

    def get(self, kid: str | None) -> PublicKey | None:
        if kid is None:
            # No kid in the header: acceptable only while the set holds exactly one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def loaded(self) -> bool:
        """Whether this process holds at least one of the issuer's keys (``/readyz``)."""
        return bool(self._keys)

    def refresh_soon(self) -> None:
        """Try again in the background when no key is held and the interval allows (``/readyz``
        asks: a gateway taken out of the load balancer receives no token that would retry)."""
        if self._keys or not self.may_refresh():
            return
        if self._background is not None and not self._background.done():
            return
        self._background = asyncio.get_running_loop().create_task(
            self.refresh(), name=f"jwks-refresh {self.issuer}"
        )

    async def ensure_fresh(self) -> None:
        """Re-read keys older than ``max_age_seconds`` (one request waits for the fetch; if the
        platform does not answer, the keys in hand keep serving)."""
        if time.monotonic() - self._loaded_at > self.max_age_seconds and self.may_refresh():
            await self.refresh()

    def may_refresh(self) -> bool:
        return time.monotonic() - self._last_attempt >= self.min_refresh_seconds

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the key set unless one was attempted within ``min_refresh_seconds`` (``force``
        at start-up). True when this call (or a concurrent one it waited for) loaded keys."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        attempted_before = self._last_attempt
        async with self._lock:
            if self._last_attempt != attempted_before:
                return True  # another request refreshed while this one waited
            if not force and not self.may_refresh():
                return False
            self._last_attempt = time.monotonic()
            try:
                document = await self._load()
                keys = parse_key_set(document)
            except KeySourceError as exc:
                log.warning(
                    "身份平台 %s 的签名密钥未能读取: %s; %s",
                    self.issuer,
                    exc,
                    "沿用已有密钥"
                    if self._keys
                    else f"该平台的令牌暂时无法验证, 将至多每 {self.min_refresh_seconds:g} 秒重试",
                )
                return False
            if not keys:
                log.warning("身份平台 %s 的密钥集中没有可用的签名密钥", self.issuer)
            self._keys = keys
            self._loaded_at = time.monotonic()
            self.refreshes += 1
            log.info("身份平台 %s: 已读取 %d 个签名密钥", self.issuer, len(keys))
            return True

    async def _load(self) -> dict[str, Any]:
        if self.jwks_file is not None:
            text = await asyncio.to_thread(_read_file, self.jwks_file)
            return _json_object(text, str(self.jwks_file))
        # trust_env: HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE (a province's own CA) apply.
        async with httpx.AsyncClient(
            timeout=self.timeout_seconds, follow_redirects=False
        ) as client:
            url = self.jwks_url
            if self.discovery_url is not None:
                discovered = await _get_json(client, self.discovery_url)
                if discovered.get("issuer") != self.issuer:
                    # OIDC Discovery §4.3: a document naming another issuer is not this one's
                    # (and is never kept: the browser sign-in reads its endpoints from here).
                    raise KeySourceError(
                        f"发现文档中的 issuer 为 {discovered.get('issuer')!r}, 与配置不符"
                    )
                self.discovered = discovered
                url = discovered.get("jwks_uri")
                if not isinstance(url, str):
                    raise KeySourceError("发现文档中没有 jwks_uri")
                if self.discovery_url.startswith("https:") and not url.startswith("https:"):
                    # Keys in clear text after a TLS discovery: a downgrade, refused.
                    raise KeySourceError(f"jwks_uri {url!r} 不是 https 地址")
            if url is None:
                raise KeySourceError("未配置发现地址、JWKS 地址或 JWKS 文件")
            return await _get_json(client, url)


def parse_key_set(document: dict[str, Any]) -> dict[str, PublicKey]:
    """Signature keys of a JWK Set by kid. Encryption keys (``use: enc``), private keys, key
    types other than RSA, EC P-256 and SM2 (``crv: SM2``, gateway.runtime.sm2), and malformed
    entries are left out (logged)."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeySourceError("密钥集中没有 keys 列表")
    keys: dict[str, PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid", "")
        if not isinstance(kid, str):
            continue
        if entry.get("use", "sig") != "sig" or "d" in entry:
            continue  # encryption keys verify nothing; a private key has no place in a JWKS
        if entry.get("kty") == "EC" and entry.get("crv") == "SM2":
            try:
                keys[kid] = Sm2PublicKey.from_jwk(entry)
            except Sm2KeyError as exc:
                log.warning("密钥 %r 不是有效的 SM2 公钥 (%s), 已跳过", kid, exc)
            continue
        if entry.get("kty") not in ALGORITHMS_BY_KEY_TYPE:
            log.info("密钥 %r 的类型 %r 不受支持, 已跳过", kid, entry.get("kty"))
            continue
        if entry.get("kty") == "EC" and entry.get("crv") != "P-256":
            log.info("密钥 %r 的曲线 %r 不受支持, 已跳过", kid, entry.get("crv"))
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError):
            log.warning("密钥 %r 格式错误, 已跳过", kid)
    return keys


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeySourceError(f"无法读取 {path}: {exc.strerror}") from None


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as reply:
            if reply.status_code != 200:
                raise KeySourceError(f"GET {url}: HTTP {reply.status_code}")
            body = b""
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeySourceError(f"GET {url}: 响应超过 {MAX_JWKS_BYTES} 字节")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise KeySourceError(f"GET {url}: 无法连接或读取 ({type(exc).__name__})") from None
    return _json_object(body.decode("utf-8", "replace"), url)


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise KeySourceError(f"{where}: 不是有效的 JSON") from None
    if not isinstance(value, dict):
        raise KeySourceError(f"{where}: 不是 JSON 对象")
    return value


def read_key_file(path: Path) -> str | None:
    """What is wrong with a key set on disk (Chinese, for a start-up error), None when it
    holds at least one usable signature key. Checked at start-up: a local file that is broken
    is the operator's to fix now, not a platform that may come up later."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "无法读取 (应为 UTF-8 编码的 JSON 文件, 网关进程可读)"
    try:
        document = json.loads(text)
    except ValueError:
        return '不是有效的 JSON (应为 JWK Set: {"keys": [...]})'
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return '不是 JWK Set (应为含 keys 列表的 JSON 对象: {"keys": [...]})'
    if not parse_key_set(document):
        return "中没有可用的签名密钥 (RSA、EC P-256 或 SM2, use 为 sig, 不含私钥)"
    return None
