"""Webhook signatures (issue 18 item 2), Standard Webhooks 1.0 with a 国密 variant.

A delivery carries three headers::

    webhook-id: evt_<event uuid>          the same on every retry: the receiver's idempotency key
    webhook-timestamp: 1700000000         unix seconds of this attempt
    webhook-signature: v1,<base64>        HMAC-SHA-256 of b"{id}.{timestamp}." + body
                       v1sm3,<base64>     HMAC-SM3 for an endpoint under the 国密 suite

While a secret is being rotated both the new and the previous secret sign, space-separated
(``v1,<new> v1,<old>``); a receiver accepts any one that matches. An endpoint has one
algorithm: an SM3 endpoint never receives a SHA-256 signature. ``v1sm3`` is our identifier
(the specification defines ``v1`` and ``v1a``; its libraries skip identifiers they do not
know, so an SM3 endpoint needs the verifier of docs/webhooks.md or its own).

The timestamp is signed so a captured request cannot be replayed later: :func:`verify`
refuses one more than ``tolerance`` seconds (300 by default) from the receiver's clock, and
the receiver refuses a ``webhook-id`` it has already processed.

Secrets are ``whsec_<base64 of the key>``, as the specification writes them::

    header = sign(
        "evt_1", 1700000000, b"{}", ["whsec_…"], algorithm="HMAC-SM3"
    )  # "v1sm3,…"
    verify(b"{}", {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": header},
           "whsec_…", algorithm="HMAC-SM3")
"""

from __future__ import annotations

import base64
import binascii
import hmac as std_hmac
import time
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes, hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the secrets' prefix, not a secret
TOLERANCE_SECONDS = 300
# Signature identifier per endpoint algorithm.
VERSIONS = {"HMAC-SHA256": "v1", "HMAC-SM3": "v1sm3"}
_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {
    "HMAC-SHA256": hashes.SHA256,
    "HMAC-SM3": hashes.SM3,
}


class InvalidWebhook(Exception):
    """A delivery that does not verify: headers missing, timestamp outside the tolerance, or
    no signature made with the secret. The message says which, never a key."""


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` (or the base64 alone) decoded; bytes as
    they are."""
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("推送密钥格式不正确, 应为 whsec_<base64>") from None


def signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    """The bytes the signature covers: ``{id}.{timestamp}.{body}``."""
    return f"{webhook_id}.{timestamp}.".encode() + body


def digest(key: bytes, message: bytes, *, algorithm: str) -> bytes:
    """HMAC of ``message`` under ``key`` with the endpoint's algorithm."""
    try:
        hash_type = _HASHES[algorithm]
    except KeyError:
        raise ValueError(f"未知签名算法 {algorithm!r}") from None
    mac = hmac.HMAC(key, hash_type())
    mac.update(message)
    return mac.finalize()


def sign(
    webhook_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str | bytes],
    *,
    algorithm: str,
) -> str:
    """The ``webhook-signature`` header: one ``<version>,<base64>`` per secret (the current one
    first; during a rotation the previous one too), space-separated."""
    if not secrets:
        raise ValueError("至少需要一个签名密钥")
    version = VERSIONS[algorithm]
    content = signed_content(webhook_id, timestamp, body)
    macs = (digest(secret_key(s), content, algorithm=algorithm) for s in secrets)
    return " ".join(f"{version},{base64.b64encode(mac).decode()}" for mac in macs)


def headers(
    webhook_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str | bytes],
    *,
    algorithm: str,
) -> dict[str, str]:
    """The three signature headers of one attempt."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(webhook_id, timestamp, body, secrets, algorithm=algorithm),
    }


def verify(
    body: bytes,
    received: Mapping[str, str],
    secret: str | bytes,
    *,
    algorithm: str = "HMAC-SHA256",
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """What a receiver runs on every request: returns the ``webhook-id`` (to dedup on) or
    raises :class:`InvalidWebhook`. ``received`` is the request's headers (names in lower
    case, as ASGI and httpx give them); ``now`` is the receiver's clock (unix seconds)."""
    lowered = {name.lower(): value for name, value in received.items()}
    webhook_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not webhook_id or not stamp or not signatures:
        raise InvalidWebhook("缺少 webhook-id、webhook-timestamp 或 webhook-signature 头")
    if not (stamp.isascii() and stamp.isdigit()):
        raise InvalidWebhook("webhook-timestamp 应为 Unix 秒数")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        # A captured request replayed later: refused even though its signature is genuine.
        raise InvalidWebhook(f"webhook-timestamp 与当前时间相差超过 {tolerance} 秒, 拒收 (防重放)")
    version = VERSIONS.get(algorithm)
    if version is None:
        raise ValueError(f"未知签名算法 {algorithm!r}")
    expected = digest(
        secret_key(secret), signed_content(webhook_id, timestamp, body), algorithm=algorithm
    )
    for candidate in signatures.split(" "):
        named, _, value = candidate.partition(",")
        if named != version:
            continue  # another scheme's signature (e.g. v1a): not ours to check
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if std_hmac.compare_digest(given, expected):
            return webhook_id
    raise InvalidWebhook("签名不符: 推送不是用本端点的密钥签发的, 或内容被改动")
