"""Signatures between provinces' gateways (issue 18 item 5): each gateway signs the messages
it sends and the receipts it returns with its own province key, and verifies the other side's
with the public keys configured for that peer. Two algorithms, each province its own:

    ES256  ECDSA on P-256 with SHA-256 (``ProvinceKey``/``PeerKey``; key file PKCS#8 PEM,
           public key SPKI PEM)
    SM2    SM2 with SM3 under the 国密 suite, GB/T 32918.2, e = SM3(Z_A ‖ M) with the default
           signer ID 1234567812345678 (``Sm2ProvinceKey``/``Sm2PeerKey``; key file JSON with
           the private scalar, public key a JWK ``{"kty": "EC", "crv": "SM2", "x", "y"}`` as
           ``gateway.runtime.sm2`` reads them). pysmx's arithmetic, imported on first use; the
           checks it leaves to its caller (point on the curve, r and s in [1, n-1]) made here.

Both sign r ‖ s in 64 bytes, base64url.

Each use signs in its own domain, so a receipt's signature never passes for a message's:

    key = ProvinceKey.from_pem(pem, province="37")
    signature = key.sign("message", signed_at.encode() + b"\\n" + envelope)
    peer = PeerKey.from_pem("37", key.key_id, key.public_pem())
    peer.verify("message", signed_at.encode() + b"\\n" + envelope, signature)   # True

The message log is MAC'd with the keyring's audit key (``log_mac``): the chain of SHA-256
hashes alone can be recomputed by anyone who writes the database.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac as std_hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.crypto._audit_mac import AuditMac

SIGNATURE_DOMAINS = ("message", "receipt")
ES256 = "ES256"
SM2 = "SM2"
SM2_USER_ID = "1234567812345678"  # GM/T 0009-2012 §10: the default signer ID
# GM/T 0003.5 / GB/T 32918.5 recommended curve parameters (as gateway.runtime.sm2).
_SM2_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_SM2_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_SM2_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


def _signing_input(domain: str, payload: bytes) -> bytes:
    if domain not in SIGNATURE_DOMAINS:
        raise ValueError(domain)
    return f"relief-gateway exchange/1 {domain}\n".encode() + payload


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id_for(province: str, key: ec.EllipticCurvePublicKey) -> str:
    """``<province>-<16 hex digits of the public key's SHA-256>``: stable, derived, checkable."""
    return f"{province}-{hashlib.sha256(_public_der(key)).hexdigest()[:16]}"


@dataclass(frozen=True)
class ProvinceKey:
    """This gateway's own ES256 signing key for the exchange (a PKCS#8 PEM file)."""

    province: str
    private: ec.EllipticCurvePrivateKey
    algorithm = ES256

    @staticmethod
    def generate_pem() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes, *, province: str) -> ProvinceKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("not a PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 private key")
        return cls(province, key)

    @property
    def key_id(self) -> str:
        return key_id_for(self.province, self.private.public_key())

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def public_entry(self) -> dict[str, Any]:
        """As a peer configures it (the peers file's ``[[peers.keys]]``)."""
        return {"id": self.key_id, "alg": ES256, "pem": self.public_pem()}

    def sign(self, domain: str, payload: bytes) -> str:
        der = self.private.sign(_signing_input(domain, payload), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass(frozen=True)
class PeerKey:
    """A public key of another province's gateway, as configured on this side."""

    province: str
    key_id: str
    public: ec.EllipticCurvePublicKey
    algorithm = ES256

    @classmethod
    def from_pem(cls, province: str, key_id: str, pem: str | bytes) -> PeerKey:
        raw = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError):
            raise ValueError("not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 public key")
        return cls(province, key_id, key)

    @property
    def derived_key_id(self) -> str:
        return key_id_for(self.province, self.public)

    def verify(self, domain: str, payload: bytes, signature: str) -> bool:
        raw = _unb64(signature)
        if raw is None or len(raw) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            self.public.verify(der, _signing_input(domain, payload), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


# ---------------------------------------------------------------------------- SM2 (国密)
@functools.cache
def _smx() -> tuple[Callable[..., Any], Callable[..., Any], Callable[[int], str]]:
    """pysmx's Sign, Verify and k·G, imported on first use (importing pysmx computes its SM9
    tables: over half a second a gateway without SM2 never pays)."""
    from pysmx.SM2 import Sign, Verify, kG, sm2_G  # type: ignore[import-untyped]

    def times_g(k: int) -> str:
        point: str = kG(k, sm2_G, 64)
        return point

    return Sign, Verify, times_g


def _on_sm2_curve(x: int, y: int) -> bool:
    if not (0 <= x < _SM2_P and 0 <= y < _SM2_P):
        return False
    return (y * y - (x * x * x + _SM2_A * x + _SM2_B)) % _SM2_P == 0


def _sm2_key_id(province: str, point: bytes) -> str:
    return f"{province}-{hashlib.sha256(b'SM2' + point).hexdigest()[:16]}"


@dataclass(frozen=True)
class Sm2ProvinceKey:
    """This gateway's own SM2 signing key (a JSON file ``{"alg": "SM2", "d": hex}``)."""

    province: str
    private: int = field(repr=False)  # never in a repr or a traceback
    algorithm = SM2

    @staticmethod
    def generate_text() -> bytes:
        scalar = secrets.randbelow(_SM2_N - 2) + 1  # d in [1, n-2], GB/T 32918.1 §6.1
        return json.dumps({"alg": SM2, "d": f"{scalar:064x}"}).encode("ascii")

    @classmethod
    def from_text(cls, raw: bytes, *, province: str) -> Sm2ProvinceKey:
        try:
            loaded = json.loads(raw)
            scalar = int(str(loaded["d"]), 16)
        except (ValueError, KeyError, TypeError):
            raise ValueError("not an SM2 key file") from None
        if loaded.get("alg") != SM2 or not 1 <= scalar <= _SM2_N - 2:
            raise ValueError("not an SM2 key file")
        return cls(province, scalar)

    @functools.cached_property
    def point(self) -> bytes:
        """The public key x ‖ y, 64 bytes."""
        return bytes.fromhex(_smx()[2](self.private))

    @property
    def key_id(self) -> str:
        return _sm2_key_id(self.province, self.point)

    def public_entry(self) -> dict[str, Any]:
        jwk = {"kty": "EC", "crv": "SM2", "x": _b64(self.point[:32]), "y": _b64(self.point[32:])}
        return {"id": self.key_id, "alg": SM2, "jwk": jwk}

    def sign(self, domain: str, payload: bytes) -> str:
        sign = _smx()[0]
        while True:  # a nonce giving r = 0, r + k = n or s = 0 is drawn again
            nonce = f"{secrets.randbelow(_SM2_N - 1) + 1:064x}"
            signature = sign(
                _signing_input(domain, payload), f"{self.private:064x}", nonce, 64, uid=SM2_USER_ID
            )
            if signature is not None:
                return _b64(bytes(signature))


@dataclass(frozen=True)
class Sm2PeerKey:
    """An SM2 public key of another province's gateway (a JWK in the peers file)."""

    province: str
    key_id: str
    point: bytes  # x ‖ y
    algorithm = SM2

    @classmethod
    def from_jwk(cls, province: str, key_id: str, jwk: Mapping[str, Any]) -> Sm2PeerKey:
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "EC" or jwk.get("crv") != "SM2":
            raise ValueError("not an SM2 JWK")
        x, y = _unb64(str(jwk.get("x", ""))), _unb64(str(jwk.get("y", "")))
        if x is None or y is None or len(x) != 32 or len(y) != 32:
            raise ValueError("not an SM2 JWK")
        # A point off the curve (invalid-curve attacks) is no key.
        if not _on_sm2_curve(int.from_bytes(x, "big"), int.from_bytes(y, "big")):
            raise ValueError("point not on the SM2 curve")
        return cls(province, key_id, x + y)

    @property
    def derived_key_id(self) -> str:
        return _sm2_key_id(self.province, self.point)

    def verify(self, domain: str, payload: bytes, signature: str) -> bool:
        raw = _unb64(signature)
        if raw is None or len(raw) != 64:
            return False
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        if not (1 <= r < _SM2_N and 1 <= s < _SM2_N):  # GB/T 32918.2 §7.1 B1, B2
            return False
        verify = _smx()[1]
        return bool(
            verify(
                raw.hex(), _signing_input(domain, payload), self.point.hex(), 64, uid=SM2_USER_ID
            )
        )


# ---------------------------------------------------------------------------- either
AnyProvinceKey = ProvinceKey | Sm2ProvinceKey
AnyPeerKey = PeerKey | Sm2PeerKey


def generate_province_key(algorithm: str) -> bytes:
    """A new key file's content: PKCS#8 PEM (ES256) or JSON (SM2)."""
    if algorithm == SM2:
        return Sm2ProvinceKey.generate_text()
    if algorithm == ES256:
        return ProvinceKey.generate_pem()
    raise ValueError(algorithm)


def load_province_key(raw: bytes, *, province: str) -> AnyProvinceKey:
    """A key file, either algorithm (told apart by its form). ValueError if neither."""
    if raw.lstrip().startswith(b"-----BEGIN"):
        return ProvinceKey.from_pem(raw, province=province)
    return Sm2ProvinceKey.from_text(raw, province=province)


def peer_key_from_entry(province: str, entry: Mapping[str, Any]) -> AnyPeerKey:
    """A peer's key as configured: ``{id, alg: ES256, pem}`` or ``{id, alg: SM2, jwk}``
    (``alg`` defaults to ES256). ValueError if it is not a key of its algorithm."""
    key_id = str(entry.get("id", ""))
    algorithm = str(entry.get("alg", ES256))
    if algorithm == ES256:
        return PeerKey.from_pem(province, key_id, str(entry.get("pem", "")))
    if algorithm == SM2:
        return Sm2PeerKey.from_jwk(province, key_id, entry.get("jwk") or {})
    raise ValueError(f"unknown algorithm {algorithm[:16]}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return None


# ---------------------------------------------------------------------------- log MACs
def _log_mac_with(macs: AuditMac, key_id: str, entry_hash: str) -> str | None:
    # The audit keys are the keyring's keys for evidence; the exchange log is evidence too, in
    # a domain of its own (an audit entry's MAC never passes for a log entry's).
    key = macs._keyring.audit_keys.get(key_id)
    if key is None and macs._keyring.reload_if_changed():
        key = macs._keyring.audit_keys.get(key_id)
    if key is None:
        return None
    algorithm = hashes.SHA256() if key.algorithm == "HMAC-SHA-256" else hashes.SM3()
    mac = hmac.HMAC(key.material, algorithm)
    mac.update(f"relief-gateway exchange entry\x00{key.key_id}\x00{entry_hash}".encode())
    return mac.finalize().hex()


def log_mac(macs: AuditMac, entry_hash: str) -> tuple[str, str]:
    """(key id, hex MAC) of a message-log entry hash under the current audit key."""
    key_id = macs.key_id
    if key_id is None:
        raise LookupError("密钥环中没有审计密钥")
    mac = _log_mac_with(macs, key_id, entry_hash)
    assert mac is not None
    return key_id, mac


def check_log_mac(macs: AuditMac, key_id: str, entry_hash: str, mac: str) -> bool | None:
    """Whether ``mac`` is the entry's MAC; None when the keyring lacks ``key_id``."""
    expected = _log_mac_with(macs, key_id, entry_hash)
    return None if expected is None else std_hmac.compare_digest(expected, mac)
