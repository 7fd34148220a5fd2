"""Signatures between provinces' gateways (issue 18 item 5): each gateway signs the messages
it sends and the receipts it returns with its own province key, and verifies the other side's
with the public keys configured for that peer. ES256 (ECDSA on P-256 with SHA-256), the
signature r ‖ s in 64 bytes, base64url; SM2 is the 国密 alternative for a later revision (the
repository verifies SM2 only, ``gateway.runtime.sm2``).

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
import hashlib
import hmac as std_hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.crypto._audit_mac import AuditMac

SIGNATURE_DOMAINS = ("message", "receipt")
ALGORITHM = "ES256"


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
    """This gateway's own signing key for the exchange (a PKCS#8 PEM file in the data dir)."""

    province: str
    private: ec.EllipticCurvePrivateKey

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

    def sign(self, domain: str, payload: bytes) -> str:
        der = self.private.sign(_signing_input(domain, payload), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PeerKey:
    """A public key of another province's gateway, as configured on this side."""

    province: str
    key_id: str
    public: ec.EllipticCurvePublicKey

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
        try:
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (ValueError, binascii.Error):
            return False
        if len(raw) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            self.public.verify(der, _signing_input(domain, payload), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


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
