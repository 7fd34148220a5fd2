"""SM2-with-SM3 signatures on tokens from an identity platform (GB/T 32918.2, GM/T 0003.2; the
digest e = SM3(Z_A ‖ M), Z_A from the signer's ID and public key, GB/T 32918.2 §5.5, GM/T 0009).

There is no IANA-registered JWS algorithm or JWK curve for SM2; platforms in China name it
``SM2`` or ``SM3withSM2``. What the gateway accepts, when an issuer pins one of those names:

    JWK         {"kty": "EC", "crv": "SM2", "x": b64url(32 bytes), "y": b64url(32 bytes),
                 "kid": …, "alg": optional, the pinned name}
    signature   the JWS signature is r ‖ s, 32 bytes each, big-endian (as ES256, RFC 7518
                §3.4); a DER-encoded signature is refused
    signer ID   ``1234567812345678`` (GM/T 0009 default) unless the issuer sets ``sm2_user_id``

The arithmetic is snowland-smx's (``pysmx``, pure Python, BSD-3-Clause, pinned in
constraints.txt); the checks the library leaves to its caller are made here first: the public
key is a point of the curve (cofactor 1: so of the group), r and s lie in [1, n-1]. Tests sign
with a second, independent implementation (gmssl) and with OpenSSL, and the other way round.

A verification costs milliseconds of pure-Python CPU (bench/results/token_verify_*.md), against
a quarter of a millisecond for ES256: it runs in a worker thread, at most ``CONCURRENCY`` at a
time, so a burst of SM2 tokens queues instead of stalling the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SM2_ALGORITHMS = frozenset({"SM2", "SM3withSM2"})
DEFAULT_USER_ID = "1234567812345678"  # GM/T 0009-2012 §10: the default signer ID
CONCURRENCY = 2

# GM/T 0003.5 / GB/T 32918.5 recommended curve parameters.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


class Sm2KeyError(ValueError):
    """A JWK that is not a valid SM2 public key."""


@dataclass(frozen=True)
class Sm2PublicKey:
    x: int
    y: int
    algorithm: str | None = None  # the JWK's "alg", when it names one

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> Sm2PublicKey:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "SM2":
            raise Sm2KeyError("not an SM2 key")
        x, y = _coordinate(jwk.get("x")), _coordinate(jwk.get("y"))
        # A point off the curve (invalid-curve attacks) or the point at infinity is no key.
        if (y * y - (x * x * x + A * x + B)) % P != 0:
            raise Sm2KeyError("point not on the SM2 curve")
        algorithm = jwk.get("alg")
        if algorithm is not None and algorithm not in SM2_ALGORITHMS:
            raise Sm2KeyError("alg is not an SM2 name")
        return cls(x, y, algorithm)

    @property
    def hex_point(self) -> str:
        return f"{self.x:064x}{self.y:064x}"


def verify_signature(
    signing_input: bytes, signature: bytes, key: Sm2PublicKey, user_id: str
) -> bool:
    """SM2-with-SM3 over ``signing_input`` (the JWS ``header.payload``), r ‖ s in 64 bytes."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < N and 1 <= s < N):  # GB/T 32918.2 §7.1 B1, B2
        return False
    verify = library()
    return bool(verify(signature.hex(), signing_input, key.hex_point, 64, uid=user_id))


@functools.cache
def library() -> Callable[..., object]:
    """pysmx's SM2 verification, imported on first use: importing pysmx computes its SM9
    tables (over half a second), which a gateway without an SM2 issuer never pays. An issuer
    pinning SM2 calls this at start-up (gateway.runtime.issuers)."""
    from pysmx.SM2 import Verify  # type: ignore[import-untyped]

    verify: Callable[..., object] = Verify
    return verify


async def verify_compact(
    token: str, key: Sm2PublicKey, user_id: str, slots: asyncio.Semaphore
) -> bool:
    """The signature of a compact JWS, verified in a worker thread (``slots``: the issuer's
    bound on concurrent verifications, ``CONCURRENCY``)."""
    header, _, rest = token.partition(".")
    payload, _, encoded_signature = rest.partition(".")
    try:
        signature = base64.urlsafe_b64decode(
            encoded_signature + "=" * (-len(encoded_signature) % 4)
        )
    except (ValueError, binascii.Error):
        return False
    signing_input = f"{header}.{payload}".encode()  # not ASCII: cannot verify, no error
    async with slots:
        return await asyncio.to_thread(verify_signature, signing_input, signature, key, user_id)


def _coordinate(value: object) -> int:
    if not isinstance(value, str):
        raise Sm2KeyError("coordinate missing")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        raise Sm2KeyError("coordinate not base64url") from None
    if len(raw) != 32:
        raise Sm2KeyError("coordinate not 32 bytes")
    number = int.from_bytes(raw, "big")
    if number >= P:
        raise Sm2KeyError("coordinate not in the field")
    return number
