"""Service-account tokens (issue 16 item 2): signed by the gateway's own ES256 key, verified
here, refused within seconds of ``relief-gateway clients disable`` on every process.

    ClientTokenKey     the ES256 key pair in the data dir (``client-token-key.pem``, 0600),
                       created on first need outside production; its public half is the JWKS
                       at ``GET /oauth/jwks``
    ClientTokenIssuer  mints a token for an authenticated client (``gateway.http.oauth``)
    DisabledClients    this process's set of disabled client ids: re-read every
                       RELIEF_CLIENT_REVOCATION_REFRESH_SECONDS (2 s), and on PostgreSQL also
                       told at once by ``NOTIFY relief_clients`` (``clients disable``)
    ClientTokenVerifier  ``verify(token) -> Principal``: ES256 pinned, ``iss`` / ``exp`` and the
                       claims checked, a disabled client refused

The key is the gateway's, not the HS256 development key: whoever holds ``token.key`` (anyone
who can run ``relief-gateway token``) cannot mint service-account tokens, and other systems can
verify them with the published public key alone. Several hosts share the one key file, as they
share ``token.key``.

Revocation fails closed: when this process has not been able to read the disabled clients for
:data:`STALE_AFTER_SECONDS` (the database unreachable), client tokens are refused until it can.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import jwt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.crypto import PrivateKey, PublicKey, SigningKey
from gateway.domain.clock import now_utc
from gateway.domain.errors import BadUserInput, ConfigurationError, Forbidden, Unauthenticated
from gateway.domain.principal import Principal, check_claims
from gateway.runtime.issuers import check_lifetime, decode_options
from gateway.storage.clients import CHANNEL, RegisteredClient, disabled_client_ids

log = logging.getLogger("gateway.clients")

ALGORITHM = "ES256"
SUBJECT_PREFIX = "client:"
REQUIRED_CLAIMS = ("iss", "sub", "exp", "iat", "client_id", "dept", "level", "region", "purposes")
# Without a successful read of the disabled clients for this long, client tokens are refused.
STALE_AFTER_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 4096
# subject → the purposes its client was registered for (the token's ``registered`` claim), so a
# refused purpose can be told apart: outside the token's scope, or outside the registration.
# A client's registration never changes (a new purpose means a new client id), so an entry is
# never stale; the map is emptied when full, as the verified-token cache is.
_registered: dict[str, frozenset[str]] = {}
APPLICATION_NAME = "relief-gateway client listener"


# ---------------------------------------------------------------------------- the key pair
@dataclass(frozen=True)
class ClientTokenKey:
    signing: SigningKey

    @property
    def private_key(self) -> PrivateKey:
        return self.signing.private

    @property
    def public_key(self) -> PublicKey:
        return self.signing.public

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key: changes with the key, names it in the JWKS."""
        jwk = self.public_jwk()
        members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        return _b64(hashlib.sha256(canonical).digest())

    def public_jwk(self) -> dict[str, str]:
        return self.signing.public_jwk()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.public_jwk(), "use": "sig", "alg": ALGORITHM, "kid": self.kid}]}

    @classmethod
    def load(cls, path: Path, *, create: bool, production: bool = False) -> ClientTokenKey | None:
        """The key in ``path``; created there when missing and ``create`` (None otherwise).
        In production a key file readable by others is refused, as the token key is."""
        if not path.exists():
            if not create:
                return None
            _create(path)
        if production and path.stat().st_mode & 0o077:
            raise ConfigurationError(
                f"服务账号签名密钥 {path} 权限过宽, 应仅属主可读写 (chmod 600)"
            )
        try:
            return cls(SigningKey.from_pem(path.read_bytes()))
        except ValueError:
            raise ConfigurationError(
                f"服务账号签名密钥 {path} 应为 PEM 格式的 P-256 (ES256) 椭圆曲线私钥"
            ) from None


def _create(path: Path) -> None:
    """Write a new key atomically and exclusively: two processes starting at once end up with
    one key (the second link fails and that process reads the first one's file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = SigningKey.generate_pem()
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------------------- issuing
@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    purposes: tuple[str, ...]


@dataclass(frozen=True)
class ClientTokenIssuer:
    key: ClientTokenKey
    issuer: str
    ttl_seconds: int

    def mint(self, client: RegisteredClient, purposes: Iterable[str]) -> IssuedToken:
        granted = tuple(sorted(set(purposes)))
        issued = int(now_utc().timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"{SUBJECT_PREFIX}{client.client_id}",
            "client_id": client.client_id,
            "dept": client.department,
            "level": client.level,
            "region": client.region,
            "purposes": list(granted),
            "registered": sorted(set(client.purposes)),
            "iat": issued,
            "exp": issued + self.ttl_seconds,
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(
            claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid}
        )
        return IssuedToken(token, self.ttl_seconds, granted)


# ---------------------------------------------------------------------------- revocation
@dataclass
class DisabledClients:
    """The client ids this process refuses. ``loaded_at``: monotonic time of the last
    successful read (None: never read)."""

    ids: frozenset[str] = frozenset()
    loaded_at: float | None = None
    _announced: set[str] = field(default_factory=set)

    def replace(self, ids: frozenset[str]) -> None:
        self.ids = ids | frozenset(self._announced)
        self._announced.clear()  # a read after the announcement holds it (or it was undone)
        self.loaded_at = time.monotonic()

    def announce(self, client_id: str) -> None:
        """A NOTIFY: refused from now on, before the next read."""
        self._announced.add(client_id)
        self.ids = self.ids | {client_id}

    def refuses(self, client_id: str) -> bool:
        return client_id in self.ids

    @property
    def stale(self) -> bool:
        return self.loaded_at is None or time.monotonic() - self.loaded_at > STALE_AFTER_SECONDS


class RevocationWatch:
    """Keeps :class:`DisabledClients` current: a poll every ``refresh_seconds`` and, on
    PostgreSQL, a LISTEN connection of its own (as ``gateway.storage.policy_listener``)."""

    def __init__(
        self,
        disabled: DisabledClients,
        sessions: async_sessionmaker[AsyncSession],
        *,
        refresh_seconds: float,
        dsn: str | None,
    ) -> None:
        self._disabled = disabled
        self._sessions = sessions
        self._refresh_seconds = refresh_seconds
        self._dsn = dsn
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    async def start(self) -> None:
        await self.refresh()
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._poll(), name="client-revocation-poll"))
        if self._dsn is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="client-listener"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listening.wait(), 5)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        try:
            async with self._sessions() as session:
                self._disabled.replace(await disabled_client_ids(session))
        except Exception as exc:  # the database away, or not migrated yet: keep the last set
            log.warning("disabled clients not read (%s); keeping the last set", type(exc).__name__)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    async def _listen(self) -> None:
        assert self._dsn is not None
        delay = 0.5
        while True:
            try:
                await self._listen_until_lost(self._dsn)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("client listener: %s; retrying in %.1f s", type(exc).__name__, delay)
                delay = min(delay * 2, 10.0)
            await asyncio.sleep(delay)

    async def _listen_until_lost(self, dsn: str) -> None:
        lost = asyncio.Event()
        connection = await asyncpg.connect(
            dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(
                CHANNEL, lambda _c, _pid, _channel, payload: self._disabled.announce(str(payload))
            )
            self.listening.set()
            await self.refresh()  # anything disabled while nobody listened
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 30)
                if not lost.is_set():  # a half-open connection reports nothing: ping it
                    await asyncio.wait_for(connection.execute("SELECT 1"), 30)
        finally:
            self.listening.clear()
            if not connection.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)


# ---------------------------------------------------------------------------- verifying
class ClientTokenVerifier:
    """Verifies service-account tokens. ``issuer`` is what the dispatcher in
    ``gateway.runtime.tokens`` routes on; ``verify`` raises Unauthenticated.

        verifier = ClientTokenVerifier("relief-gateway/clients", key.public_key, disabled)
        principal = verifier.verify(token)   # principal.allowed_purposes: the token's purposes
    """

    def __init__(
        self, issuer: str, public_key: PublicKey | None, disabled: DisabledClients
    ) -> None:
        self.issuer = issuer
        self._public_key = public_key
        self._disabled = disabled
        # token → (principal, client id, exp); the disabled set is consulted on every call.
        self._verified: dict[str, tuple[Principal, str, float]] = {}

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is None:
            cached = self._verify(token)
        principal, client_id, expires = cached
        if principal.subject not in _registered:  # emptied when full: this token says it again
            self._registered_from(token, principal)
        if now_utc().timestamp() >= expires:  # RFC 7519: expired once exp <= now
            self._verified.pop(token, None)
            raise Unauthenticated("令牌已过期, 请重新获取")
        if self._disabled.refuses(client_id):
            raise Unauthenticated("服务账号已停用")
        if self._disabled.stale:
            raise Unauthenticated("暂时无法确认服务账号状态, 请稍后重试")
        return principal

    def _verify(self, token: str) -> tuple[Principal, str, float]:
        if self._public_key is None:
            raise Unauthenticated("本网关未配置服务账号签名密钥, 不接受服务账号令牌")
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],  # pinned: never "none", never HS256 with this key
                issuer=self.issuer,
                # exp, nbf, iat against gateway.domain.clock (check_lifetime), no leeway: the
                # gateway signs and verifies with one clock.
                options=decode_options(*REQUIRED_CLAIMS),
            )
        except jwt.PyJWTError:
            raise Unauthenticated("令牌无效") from None
        expires = check_lifetime(claims, 0, again="请重新获取")
        client_id = claims["client_id"]
        purposes = claims["purposes"]
        if (
            not isinstance(client_id, str)
            or claims["sub"] != f"{SUBJECT_PREFIX}{client_id}"
            or not isinstance(purposes, list)
            or not purposes
            or not all(isinstance(p, str) for p in purposes)
        ):
            raise Unauthenticated("令牌中的服务账号声明无效")
        try:
            checked = check_claims(
                str(claims["dept"]), str(claims["level"]), str(claims["region"]), []
            )
        except BadUserInput:
            raise Unauthenticated("令牌中的部门、层级或区划声明无效") from None
        principal = Principal(
            f"{SUBJECT_PREFIX}{client_id}",
            checked.department,
            checked.level,
            checked.region,
            frozenset(),  # a department system holds no role
            allowed_purposes=frozenset(purposes),
        )
        registered = claims.get("registered")
        if isinstance(registered, list) and all(isinstance(p, str) for p in registered):
            _remember_registration(principal.subject, frozenset(registered) | frozenset(purposes))
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        entry = (principal, client_id, expires)
        self._verified[token] = entry
        return entry

    @staticmethod
    def _registered_from(token: str, principal: Principal) -> None:
        """The ``registered`` claim of a token already verified (its signature was checked)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return
        registered = claims.get("registered")
        if isinstance(registered, list) and all(isinstance(p, str) for p in registered):
            allowed = principal.allowed_purposes or frozenset()
            _remember_registration(principal.subject, frozenset(registered) | allowed)


def _remember_registration(subject: str, purposes: frozenset[str]) -> None:
    if len(_registered) >= VERIFIED_CACHE_SIZE:
        _registered.clear()
    _registered[subject] = purposes


# ---------------------------------------------------------------------------- brute force
class FailedSignIns:
    """Failed client authentications per client id in this process: after ``limit`` failures
    within ``window_seconds`` the id's sign-ins are refused until the oldest failure leaves the
    window. Applied alike to ids that exist and ids that do not (the answer tells neither).

    The lock-out costs a real client at most a minute of new tokens (the ones it holds keep
    working); what it stops is trying secrets, and burning the gateway's CPU on scrypt, for
    one id at a time."""

    MAX_TRACKED = 10_000

    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._failures: dict[str, list[float]] = {}

    def retry_after(self, client_id: str) -> int:
        """Seconds until ``client_id`` may try again (0: now)."""
        recent = self._recent(client_id)
        if len(recent) < self.limit:
            return 0
        return max(1, int(recent[0] + self.window_seconds - time.monotonic()) + 1)

    def failed(self, client_id: str) -> None:
        if len(self._failures) >= self.MAX_TRACKED:
            self._failures.clear()  # a flood of invented ids: start again rather than grow
        self._failures[client_id] = [*self._recent(client_id), time.monotonic()]

    def succeeded(self, client_id: str) -> None:
        self._failures.pop(client_id, None)

    def _recent(self, client_id: str) -> list[float]:
        since = time.monotonic() - self.window_seconds
        return [moment for moment in self._failures.get(client_id, ()) if moment > since]


# ---------------------------------------------------------------------------- the whole
@dataclass
class ClientCredentials:
    """What a process needs for service accounts: the key (None in production until
    ``clients add`` created it), the issuer, the verifier and the revocation watch."""

    key: ClientTokenKey | None
    issuer: ClientTokenIssuer | None
    verifier: ClientTokenVerifier
    disabled: DisabledClients
    failures: FailedSignIns
    watch: RevocationWatch | None = None

    @classmethod
    def create(
        cls,
        key_path: Path,
        issuer: str,
        *,
        ttl_seconds: int,
        production: bool,
        failures_per_minute: int = 5,
    ) -> ClientCredentials:
        key = ClientTokenKey.load(key_path, create=not production, production=production)
        disabled = DisabledClients()
        return cls(
            key=key,
            issuer=ClientTokenIssuer(key, issuer, ttl_seconds) if key is not None else None,
            verifier=ClientTokenVerifier(issuer, key.public_key if key else None, disabled),
            disabled=disabled,
            failures=FailedSignIns(failures_per_minute),
        )

    async def start(
        self, sessions: async_sessionmaker[AsyncSession], *, refresh_seconds: float, dsn: str | None
    ) -> None:
        if self.watch is None:
            self.watch = RevocationWatch(
                self.disabled, sessions, refresh_seconds=refresh_seconds, dsn=dsn
            )
        await self.watch.start()

    async def close(self) -> None:
        if self.watch is not None:
            await self.watch.close()
            self.watch = None


def purpose_refusal(
    principal: Principal, purpose: str, *, reads_person_data: bool
) -> Forbidden | None:
    """A service account declares only the purposes it was registered for (and its token
    carries): another declared purpose is refused, and so is a read of person data declaring
    none (it would otherwise get every line valid for any purpose). None for a person's token."""
    allowed = principal.allowed_purposes
    if allowed is None:
        return None
    listed = "、".join(sorted(allowed))
    registered = _registered.get(principal.subject, allowed)
    if purpose and purpose not in allowed and purpose in registered:
        # Registered, but the token was obtained for fewer purposes (OAuth ``scope``).
        return Forbidden(
            f"本令牌获取时限定的用途 (scope) 为 {listed}, 不含用途 {purpose!r}; "
            f"如需用途 {purpose}, 请以 scope={purpose} 重新获取令牌"
        )
    if purpose and purpose not in allowed:
        registered_listed = "、".join(sorted(registered))
        return Forbidden(
            f"服务账号登记的用途为 {registered_listed}, 不得以用途 {purpose!r} 访问; "
            "如需新用途, 请系统管理员为其登记新的服务账号"
        )
    if not purpose and reads_person_data:
        return Forbidden(f"服务账号读取人员数据须在请求头 X-Purpose 中声明其登记的用途: {listed}")
    return None
