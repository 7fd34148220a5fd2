"""MACs of audit evidence with the keyring's audit keys (issue 16 item 6).

The audit chain (``gateway.storage.audit_chain``) is a SHA-256 chain anyone with write access
to the database can recompute. A MAC with a key the database never holds closes that: an
entry's ``entry_mac`` is ``HMAC(audit key, "entry" ‖ key id ‖ entry_hash)``, and the entry hash
already covers every field and the previous hash, so a chain rewritten with every hash
recomputed fails at the first rewritten entry. HMAC-SHA-256, or HMAC-SM3 under the 国密 suite:
the audit key records its algorithm, each entry its key id, so entries MAC'd before a rotation
keep verifying.

Each use has its own domain (``entry``, ``anchor``, ``archive``): a MAC computed for one can
never pass for another.
"""

from __future__ import annotations

import hmac as std_hmac

from cryptography.hazmat.primitives import hashes, hmac

from gateway.crypto._keys import AuditKey, Keyring

DOMAINS = ("entry", "anchor", "archive")


class AuditMac:
    """Computes and checks audit MACs; only key ids leave it, never key material::

    macs = AuditMac(keyring)
    key_id, mac = macs.sign("entry", entry_hash.encode())
    macs.check(key_id, "entry", entry_hash.encode(), mac)  # True, False, or None (no key)
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        # Per key and domain: the HMAC state after the key and the domain prefix, copied for
        # each message (a fresh HMAC costs several times more; every request appends an entry).
        self._prefixed: dict[tuple[str, str], hmac.HMAC] = {}

    @property
    def key_id(self) -> str | None:
        """The audit key new evidence is MAC'd with; None when the keyring has none yet."""
        key = self._keyring.audit_key
        return None if key is None else key.key_id

    @property
    def since(self) -> str | None:
        """When the first audit key was created (ISO 8601, UTC): entries written after it must
        carry a MAC."""
        return self._keyring.audit_since

    def algorithm_of(self, key_id: str) -> str | None:
        key = self._keyring.audit_keys.get(key_id)
        return None if key is None else key.algorithm

    def sign(self, domain: str, message: bytes, *, key_id: str | None = None) -> tuple[str, str]:
        """(key id, hex MAC) of ``message`` under the current audit key (or ``key_id``)."""
        key = self._keyring.audit_key if key_id is None else self._keyring.audit_keys.get(key_id)
        if key is None:
            raise LookupError("密钥环中没有审计密钥")
        return key.key_id, self._mac(key, domain, message)

    def check(self, key_id: str, domain: str, message: bytes, mac: str) -> bool | None:
        """Whether ``mac`` is the MAC of ``message`` under ``key_id``; None when the keyring
        does not hold that key (after one reload: it may have been rotated elsewhere)."""
        key = self._keyring.audit_keys.get(key_id)
        if key is None and self._keyring.reload_if_changed():
            key = self._keyring.audit_keys.get(key_id)
        if key is None:
            return None
        return std_hmac.compare_digest(self._mac(key, domain, message), mac)

    def _mac(self, key: AuditKey, domain: str, message: bytes) -> str:
        if domain not in DOMAINS:
            raise ValueError(domain)
        prefixed = self._prefixed.get((key.key_id, domain))
        if prefixed is None:
            algorithm = hashes.SHA256() if key.algorithm == "HMAC-SHA-256" else hashes.SM3()
            prefixed = hmac.HMAC(key.material, algorithm)
            prefixed.update(f"relief-gateway audit {domain}\x00{key.key_id}\x00".encode())
            self._prefixed[(key.key_id, domain)] = prefixed
        mac = prefixed.copy()
        mac.update(message)
        return mac.finalize().hex()
