"""The gateway's own token-signing key for service accounts (ES256: ECDSA on P-256 with SHA-256)
and the fingerprints of client certificates. Key material stays in ``gateway.crypto``; the
runtime (``gateway.runtime.client_tokens``) holds a :class:`SigningKey` and hands its keys to
PyJWT, the HTTP layer asks for a certificate's fingerprint.

    pem = SigningKey.generate_pem()          # PKCS#8 PEM, written by the caller (mode 0600)
    key = SigningKey.from_pem(pem)           # ValueError unless a P-256 private key
    key.public_jwk()                         # {"kty": "EC", "crv": "P-256", "x": …, "y": …}
    certificate_sha256(pem_certificate)      # 64 hex digits over the DER encoding
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PublicKey = ec.EllipticCurvePublicKey
PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    private: PrivateKey

    @staticmethod
    def generate_pem() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("not a PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 private key")
        return cls(key)

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()

    def public_jwk(self) -> dict[str, str]:
        numbers = self.public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }

    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def certificate_sha256(pem: bytes) -> str:
    """The SHA-256 fingerprint (64 lower-case hex digits) of a PEM X.509 certificate's DER
    encoding, as ``openssl x509 -fingerprint -sha256`` shows it. ValueError if unreadable."""
    certificate = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
