"""Service accounts (服务账号, issue 16 item 2): department systems registered with
``relief-gateway clients add`` that obtain tokens by OAuth2 client credentials.

A client is a department system at one level and region, limited to the purposes it was
registered for. It authenticates with a secret, shown once at registration and stored only as a
slow hash, or with a client certificate whose SHA-256 fingerprint is registered (mutual TLS
ended at the province's proxy, ``gateway.http.oauth``).

The secret hash is scrypt (RFC 7914) from :mod:`hashlib` (OpenSSL): memory-hard, no dependency
beyond the standard library, and its parameters are stored with every hash
(``scrypt$ln=15,r=8,p=1$<salt>$<hash>``, base64), so :data:`SCRYPT_LOG_N` can be raised later:
old hashes keep verifying with the parameters they record and are re-hashed at the new cost on
the client's next successful sign-in. The secrets themselves are 256 random bits, which no
hash cost is needed to protect against guessing; the slow hash is what an assessor expects of
stored credentials, and it makes a copied table useless for trying leaked secrets in bulk.

:func:`authenticate` answers alike, and in about the same time, for an unknown client, a wrong
secret and a disabled client: each costs one scrypt (against a dummy hash when the client is
unknown) and one constant-time comparison, so neither the answer nor its timing tells which
client ids exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.clock import as_utc, now_utc
from gateway.domain.errors import BadUserInput
from gateway.domain.principal import ADMIN_ROLES, ROLE_LABELS, canonical_roles, check_claims
from gateway.storage.models import ServiceClient

# scrypt cost: N = 2**15, r = 8 → 32 MiB and about 0.1 s per hash on one core (2026). OWASP's
# password figure is N = 2**17; these secrets are random, not chosen by people (see above).
SCRYPT_LOG_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
SECRET_BYTES = 32  # 256 bits, token_urlsafe: 43 characters
MAX_NAME = 128
# Announced at commit to every gateway process (PostgreSQL LISTEN, gateway.runtime.client_tokens).
CHANNEL = "relief_clients"
_HASH_FORMAT = re.compile(r"scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A client as listed (never its secret or hash)."""

    client_id: str
    name: str
    department: str
    level: str
    region: str
    purposes: tuple[str, ...]
    cert_sha256: str | None
    has_secret: bool
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    disabled_by: str | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class NewClient:
    """What ``add`` returns: the registration and, once, the secret in clear (None for a
    certificate-only client)."""

    client: RegisteredClient
    secret: str | None


# ---------------------------------------------------------------------------- secret hashing
def hash_secret(secret: str, *, log_n: int = SCRYPT_LOG_N) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, log_n, SCRYPT_R, SCRYPT_P)
    return (
        f"scrypt$ln={log_n},r={SCRYPT_R},p={SCRYPT_P}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a stored hash (False for a malformed one)."""
    match = _HASH_FORMAT.fullmatch(stored)
    if match is None:
        return False
    log_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (10 <= log_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        return False  # parameters no hash of ours records: refuse rather than burn memory
    salt = base64.b64decode(match.group(4))
    expected = base64.b64decode(match.group(5))
    return hmac.compare_digest(_scrypt(secret, salt, log_n, r, p), expected)


def needs_rehash(stored: str) -> bool:
    match = _HASH_FORMAT.fullmatch(stored)
    return match is None or int(match.group(1)) < SCRYPT_LOG_N


def _scrypt(secret: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r * p,  # OpenSSL's default cap (32 MiB) is just below N = 2**15
        dklen=HASH_BYTES,
    )


# Compared against when the client is unknown or has no secret: the same work as a real check.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(SECRET_BYTES))


# ---------------------------------------------------------------------------- validation
def normalize_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (``AB:CD:…`` and spaces accepted)."""
    cleaned = value.strip().lower().replace(":", "").replace(" ", "")
    if not _FINGERPRINT.fullmatch(cleaned):
        raise BadUserInput("证书指纹应为 SHA-256 的 64 位十六进制数字 (可用冒号分隔)")
    return cleaned


def check_registration(
    *,
    name: str,
    department: str,
    level: str,
    region: str,
    purposes: Sequence[str],
    known_purposes: Sequence[str],
    roles: Sequence[str] = (),
) -> tuple[str, tuple[str, ...]]:
    """The cleaned name and purposes of a client to register; BadUserInput otherwise.

    A client is a department system, never an administrator: it holds no role at all.
    Separation of duties (三权分立) is checked first, so a pair of administrator roles is
    refused as such (issue 16: "refused … in clients add"), then any administrator role."""
    held = canonical_roles(list(roles))  # unknown roles and role pairs refused here
    admins = sorted(held & ADMIN_ROLES)
    if admins:
        labels = "、".join(f"{ROLE_LABELS[role]} ({role})" for role in admins)
        raise BadUserInput(
            f"服务账号代表部门业务系统, 不得持有管理员角色 {labels}: "
            "管理员须以本人身份登录, 不能由系统账号代行"
        )
    check_claims(department, level, region, [])
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise BadUserInput(f"名称不能为空, 最多 {MAX_NAME} 个字符")
    if not purposes:
        raise BadUserInput("至少须登记一个用途 (--purpose)")
    unknown = [p for p in purposes if p not in known_purposes]
    if unknown:
        raise BadUserInput(f"未知用途: {', '.join(unknown)}; 可选: {', '.join(known_purposes)}")
    return cleaned, tuple(sorted(set(purposes)))


# ---------------------------------------------------------------------------- storage
async def add_client(
    session: AsyncSession,
    *,
    name: str,
    department: str,
    level: str,
    region: str,
    purposes: Sequence[str],
    known_purposes: Sequence[str],
    created_by: str,
    roles: Sequence[str] = (),
    cert_sha256: str | None = None,
) -> NewClient:
    """Register a client; returns its secret in clear once (none when ``cert_sha256`` is given:
    the certificate is its credential). The caller commits."""
    cleaned, allowed = check_registration(
        name=name,
        department=department,
        level=level,
        region=region,
        purposes=purposes,
        known_purposes=known_purposes,
        roles=roles,
    )
    fingerprint = normalize_fingerprint(cert_sha256) if cert_sha256 is not None else None
    secret = None if fingerprint is not None else secrets.token_urlsafe(SECRET_BYTES)
    row = ServiceClient(
        # The department in the id tells an operator reading a log whose system it is.
        client_id=f"{department.replace('_', '-')}-{secrets.token_hex(6)}",
        name=cleaned,
        department=department,
        level=level,
        region=region,
        purposes=json.dumps(list(allowed)),
        secret_hash=hash_secret(secret) if secret is not None else None,
        cert_sha256=fingerprint,
        created_at=now_utc(),
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return NewClient(_registered(row), secret)


async def list_clients(session: AsyncSession) -> list[RegisteredClient]:
    rows = await session.scalars(select(ServiceClient).order_by(ServiceClient.created_at))
    return [_registered(row) for row in rows]


async def disable_client(session: AsyncSession, client_id: str, *, disabled_by: str) -> bool:
    """Disable a client (idempotent: False when it was disabled already) and, on PostgreSQL,
    announce it to every gateway process at commit. BadUserInput for an unknown id. The caller
    commits."""
    row = await session.get(ServiceClient, client_id)
    if row is None:
        raise BadUserInput(f"没有服务账号 {client_id!r} (relief-gateway clients list 列出全部)")
    if row.disabled_at is not None:
        return False
    await session.execute(
        update(ServiceClient)
        .where(ServiceClient.client_id == client_id)
        .values(disabled_at=now_utc(), disabled_by=disabled_by)
    )
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_notify(:channel, :client)"), {"channel": CHANNEL, "client": client_id}
        )
    return True


async def disabled_client_ids(session: AsyncSession) -> frozenset[str]:
    rows = await session.scalars(
        select(ServiceClient.client_id).where(ServiceClient.disabled_at.is_not(None))
    )
    return frozenset(rows)


async def authenticate(
    session: AsyncSession,
    client_id: str,
    *,
    secret: str | None = None,
    cert_sha256: str | None = None,
) -> RegisteredClient | None:
    """The enabled client that ``secret`` (or the verified certificate's fingerprint)
    authenticates; None otherwise, alike for an unknown client, a wrong secret and a disabled
    client. The scrypt runs in a worker thread, off the event loop. The caller commits (a
    hash stored at a lower cost is replaced after a successful check)."""
    row = await session.get(ServiceClient, client_id) if len(client_id) <= 64 else None
    accepted, rehashed = await asyncio.to_thread(_accepts, row, secret, cert_sha256)
    if not accepted or row is None or row.disabled_at is not None:
        return None
    if rehashed is not None:
        row.secret_hash = rehashed
    return _registered(row)


def _accepts(
    row: ServiceClient | None, secret: str | None, cert_sha256: str | None
) -> tuple[bool, str | None]:
    """Whether the credential matches the row; the same work whether there is a row or not."""
    if cert_sha256 is not None:
        # The proxy verified the certificate chain; the fingerprint binds it to this client.
        registered = row.cert_sha256 if row is not None and row.cert_sha256 else "-" * 64
        same = hmac.compare_digest(registered.encode(), cert_sha256.encode())
        return same and row is not None and row.cert_sha256 is not None, None
    stored = row.secret_hash if row is not None and row.secret_hash else _DUMMY_HASH
    same = verify_secret(secret or "", stored)
    if not (same and row is not None and row.secret_hash is not None):
        return False, None
    # The cost was raised since this hash was stored: store it again at the new cost.
    return True, hash_secret(secret or "") if needs_rehash(row.secret_hash) else None


def _registered(row: ServiceClient) -> RegisteredClient:
    return RegisteredClient(
        client_id=row.client_id,
        name=row.name,
        department=row.department,
        level=row.level,
        region=row.region,
        purposes=tuple(json.loads(row.purposes)),
        cert_sha256=row.cert_sha256,
        has_secret=row.secret_hash is not None,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        disabled_at=as_utc(row.disabled_at) if row.disabled_at is not None else None,
        disabled_by=row.disabled_by,
    )
