"""Encryption at rest. The only code that touches key material.

``Keyring`` loads and creates the keyring file; ``FieldCipher`` seals and opens field values
and computes blind indexes; ``AuditMac`` MACs audit evidence with the audit keys. None of them
knows about policies or GraphQL. ``open_keyring`` opens the configured keyring, unwrapping it
with the key-encryption key in a PKCS#11 token (the cipher machine) when
``RELIEF_PKCS11_MODULE`` is set (``_pkcs11``). ``SigningKey`` is the gateway's ES256 key for
service-account tokens, ``certificate_sha256`` a client certificate's fingerprint (``_signing``).
``ProvinceKey``/``PeerKey`` sign and verify the messages and receipts exchanged with other
provinces' gateways, ``log_mac`` MACs their message log (``_province``).
``webhook_headers`` signs a webhook delivery (HMAC-SHA-256 or HMAC-SM3, Standard Webhooks) and
``verify_webhook`` is what its receiver runs (``_webhook``).
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
from gateway.crypto._province import (
    AnyPeerKey,
    AnyProvinceKey,
    PeerKey,
    ProvinceKey,
    Sm2PeerKey,
    Sm2ProvinceKey,
    check_log_mac,
    generate_province_key,
    load_province_key,
    log_mac,
    peer_key_from_entry,
)
from gateway.crypto._signing import PrivateKey, PublicKey, SigningKey, certificate_sha256
from gateway.crypto._webhook import InvalidWebhook
from gateway.crypto._webhook import headers as webhook_headers
from gateway.crypto._webhook import secret_key as webhook_secret_key
from gateway.crypto._webhook import sign as sign_webhook
from gateway.crypto._webhook import verify as verify_webhook

__all__ = [
    "AnyPeerKey",
    "AnyProvinceKey",
    "AuditKey",
    "AuditMac",
    "DataKey",
    "FieldCipher",
    "IndexKey",
    "InvalidWebhook",
    "Keyring",
    "KeyringProtection",
    "PeerKey",
    "PrivateKey",
    "ProvinceKey",
    "PublicKey",
    "SigningKey",
    "Sm2PeerKey",
    "Sm2ProvinceKey",
    "TokenProtector",
    "TokenSettings",
    "certificate_sha256",
    "check_log_mac",
    "destroy_kek",
    "generate_kek",
    "generate_province_key",
    "load_province_key",
    "log_mac",
    "open_keyring",
    "peer_key_from_entry",
    "protector_from_settings",
    "sign_webhook",
    "verify_webhook",
    "webhook_headers",
    "webhook_secret_key",
]
