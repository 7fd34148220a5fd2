"""Sealing field values: AEAD with a per-value nonce and associated data binding the value to
its table, column and row, so a ciphertext copied into another row (or column) fails to open
instead of revealing the other person's data.

Sealed layout::

    0x01 | len(key_id) | key_id (ascii) | nonce (12) | ciphertext ‖ tag (16)

The key id in the header lets old ciphertexts open after rotation (``Keyring.rotate``), and
lets ``relief-gateway keys status`` count ciphertexts per key in SQL: the header of a key
(:meth:`FieldCipher.key_prefix`) is a prefix of every value sealed with it, and of no other.
"""

from __future__ import annotations

import hmac as std_hmac
import math
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto._keys import DataKey, Keyring
from gateway.domain.errors import DecryptionError

FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16


class FieldCipher:
    """Seals and opens field values with a keyring.

    With ``reload_seconds`` (the gateway passes ``RELIEF_KEYRING_RELOAD_SECONDS``) the keyring
    file is checked for a newer version at most that often, so a ``keys rotate`` run by another
    process reaches this one without a restart: values sealed afterwards use the new primary.
    A ciphertext naming a key not in memory triggers the check at once, so a value another
    process sealed with a key it loaded first still opens here.
    """

    def __init__(self, keyring: Keyring, *, reload_seconds: float | None = None) -> None:
        self._keyring = keyring
        self._reload_seconds = reload_seconds
        self._next_reload_check = math.inf if reload_seconds is None else time.monotonic()
        self._aesgcm: dict[str, AESGCM] = {}
        # Per data key: the sealed header. Per index key and column: the HMAC state after the
        # key and the domain prefix, copied for each value (a fresh HMAC costs 3-4 times more,
        # and ingest computes four blind indexes per row).
        self._headers: dict[str, bytes] = {}
        self._index_macs: dict[tuple[str, str, str], hmac.HMAC] = {}

    # ---------------------------------------------------------------- sealing
    def seal(self, plaintext: str, *, table: str, column: str, row_id: str) -> bytes:
        if time.monotonic() >= self._next_reload_check:
            self._reload(scheduled=True)
        key = self._keyring.primary
        nonce = os.urandom(NONCE_BYTES)
        body = self._encrypt(key, nonce, plaintext.encode("utf-8"), _aad(table, column, row_id))
        return self.key_prefix(key.key_id) + nonce + body

    def open(self, sealed: bytes, *, table: str, column: str, row_id: str) -> str:
        where = f"{table}.{column}"
        if len(sealed) < 2 or sealed[0] != FORMAT_VERSION:
            raise DecryptionError(f"{where} 的密文格式无法识别")
        id_end = 2 + sealed[1]
        key_id = sealed[2:id_end].decode("ascii", errors="replace")
        if time.monotonic() >= self._next_reload_check:
            self._reload(scheduled=True)
        key = self._keyring.data_keys.get(key_id)
        if key is None and self._reload(scheduled=False):
            key = self._keyring.data_keys.get(key_id)  # sealed after a rotation elsewhere
        if key is None:
            raise DecryptionError(f"{where} 的密文使用了密钥环中没有的密钥 {key_id}")
        nonce = sealed[id_end : id_end + NONCE_BYTES]
        body = sealed[id_end + NONCE_BYTES :]
        if len(nonce) != NONCE_BYTES or len(body) < TAG_BYTES:
            raise DecryptionError(f"{where} 的密文被截断")
        try:
            plain = self._decrypt(key, nonce, body, _aad(table, column, row_id))
        except InvalidTag:
            # Wrong row, wrong column, tampered bytes: all look the same, on purpose.
            raise DecryptionError(f"{where} 的密文校验失败(可能被篡改或错位)") from None
        return plain.decode("utf-8")

    def key_id_of(self, sealed: bytes) -> str:
        return sealed[2 : 2 + sealed[1]].decode("ascii", errors="replace")

    # ---------------------------------------------------------------- rotation
    @property
    def primary_key_id(self) -> str:
        return self._keyring.primary_id

    @property
    def data_key_ids(self) -> list[str]:
        """Data keys held, oldest first (key ids start with their creation date)."""
        return sorted(self._keyring.data_keys)

    def key_prefix(self, key_id: str) -> bytes:
        """The leading bytes of every value sealed with ``key_id`` (format, id length, id); the
        length byte keeps ``dk-a`` from being a prefix of ``dk-ab``. Not secret."""
        header = self._headers.get(key_id)
        if header is None:
            encoded = key_id.encode("ascii")
            header = self._headers[key_id] = bytes([FORMAT_VERSION, len(encoded)]) + encoded
        return header

    def reseal(self, sealed: bytes, *, table: str, column: str, row_id: str) -> bytes | None:
        """``sealed`` re-encrypted under the primary key (fresh nonce, same associated data), or
        None when it already is. Raises ``DecryptionError`` as :meth:`open` does."""
        if sealed.startswith(self.key_prefix(self.primary_key_id)):
            return None
        plaintext = self.open(sealed, table=table, column=column, row_id=row_id)
        return self.seal(plaintext, table=table, column=column, row_id=row_id)

    def _reload(self, *, scheduled: bool) -> bool:
        if scheduled and self._reload_seconds is not None:
            self._next_reload_check = time.monotonic() + self._reload_seconds
        if not self._keyring.reload_if_changed():
            return False
        # Same key id, other material is impossible by construction, but a cache keyed by id
        # must not outlive the keyring it was built from.
        self._aesgcm.clear()
        self._headers.clear()
        return True

    # ---------------------------------------------------------------- blind index
    def blind_index(self, value: str, *, table: str, column: str) -> bytes:
        """Keyed HMAC of a normalised value for equality lookup; domain-separated per column so
        equal values in different columns do not share an index."""
        key = self._keyring.index_key
        domain = (key.key_id, table, column)
        prefixed = self._index_macs.get(domain)
        if prefixed is None:
            algorithm = hashes.SHA256() if key.algorithm == "HMAC-SHA-256" else hashes.SM3()
            prefixed = hmac.HMAC(key.material, algorithm)
            prefixed.update(f"{table}.{column}\x00".encode())
            self._index_macs[domain] = prefixed
        mac = prefixed.copy()
        mac.update(value.encode("utf-8"))
        return mac.finalize()

    @staticmethod
    def same_index(a: bytes, b: bytes) -> bool:
        return std_hmac.compare_digest(a, b)

    # ---------------------------------------------------------------- algorithms
    def _encrypt(self, key: DataKey, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if key.algorithm == "AES-256-GCM":
            return self._aes(key).encrypt(nonce, data, aad)
        encryptor = Cipher(algorithms.SM4(key.material), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return encryptor.update(data) + encryptor.finalize() + encryptor.tag

    def _decrypt(self, key: DataKey, nonce: bytes, body: bytes, aad: bytes) -> bytes:
        if key.algorithm == "AES-256-GCM":
            return self._aes(key).decrypt(nonce, body, aad)
        ciphertext, tag = body[:-TAG_BYTES], body[-TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(key.material), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(ciphertext) + decryptor.finalize()

    def _aes(self, key: DataKey) -> AESGCM:
        cached = self._aesgcm.get(key.key_id)
        if cached is None:
            cached = self._aesgcm[key.key_id] = AESGCM(key.material)
        return cached


def _aad(table: str, column: str, row_id: str) -> bytes:
    return f"relief-gateway\x00{table}\x00{column}\x00{row_id}".encode()
