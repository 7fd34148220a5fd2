"""Encryption at rest. The only code that touches key material.

``Keyring`` loads and creates the keyring file; ``FieldCipher`` seals and opens field values
and computes blind indexes; ``AuditMac`` MACs audit evidence with the audit keys. None of them
knows about policies or GraphQL. ``open_keyring`` opens the configured keyring, unwrapping it
with the key-encryption key in a PKCS#11 token (the cipher machine) when
``RELIEF_PKCS11_MODULE`` is set (``_pkcs11``). ``SigningKey`` is the gateway's ES256 key for
service-account tokens, ``certificate_sha256`` a client certificate's fingerprint (``_signing``).
"""

from gateway.crypto._audit_mac import AuditMac
from gateway.crypto._cipher import FieldCipher
from gateway.crypto._keys import AuditKey, DataKey, IndexKey, Keyring, KeyringProtection
from gateway.crypto._pkcs11 import (
    TokenProtector,
    TokenSettings,
    destroy_kek,
    generate_kek,
    open_keyring,
    protector_from_settings,
)
from gateway.crypto._signing import PrivateKey, PublicKey, SigningKey, certificate_sha256

__all__ = [
    "AuditKey",
    "AuditMac",
    "DataKey",
    "FieldCipher",
    "IndexKey",
    "Keyring",
    "KeyringProtection",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "TokenProtector",
    "TokenSettings",
    "certificate_sha256",
    "destroy_kek",
    "generate_kek",
    "open_keyring",
    "protector_from_settings",
]
