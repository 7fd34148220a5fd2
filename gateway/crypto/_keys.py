"""The keyring file: data keys (each recording its algorithm), the blind-index key and the
audit keys.

Layout (JSON, mode 0600, under the data dir, never in the database or in git)::

    {"format": 1, "primary": "dk-…",
     "data_keys": {"dk-…": {"algorithm": "AES-256-GCM", "key": "<base64>", "created_at": "…"}},
     "index_key": {"id": "ik-…", "algorithm": "HMAC-SHA-256", "key": "<base64>"},
     "audit_primary": "ak-…", "audit_since": "…",
     "audit_keys": {"ak-…": {"algorithm": "HMAC-SHA-256", "key": "<base64>", "created_at": "…"}}}

With a key-encryption key (KEK) in a PKCS#11 token (``gateway.crypto._pkcs11``, the
province's cipher machine; ``relief-gateway keys wrap``) every key is stored wrapped instead of
``"key"`` (format 2), each recording which KEK and mechanism wrapped it::

    "dk-…": {"algorithm": "AES-256-GCM", "created_at": "…",
             "wrapped": {"kek": "relief-gateway-kek", "mechanism": "AES-GCM", "value": "<base64>"}}

The keys are unwrapped in memory when the file is loaded (at start, and on every reload after
a rotation), never written back in plaintext while the keyring is wrapped. See
docs/key-lifecycle.md for the whole life cycle.

The blind-index key is separate from the data keys (a leaked index key reveals equality, not
plaintext) and does not rotate with them: rotating it means recomputing every index.

The audit keys MAC each audit entry (``gateway.storage.audit_chain``): someone who can write
the database but not read this file cannot rewrite the audit chain unnoticed. They rotate
(:meth:`Keyring.rotate_audit_key`; each entry records its key id) and are never removed while
entries they signed are online or archived. ``audit_since`` is when the first audit key was
created: entries written after it must carry a MAC. Keyrings written before audit keys existed
get one on :meth:`Keyring.load_or_create` or ``relief-gateway audit rotate-key``.

Online rotation (``relief-gateway keys rotate`` / ``retire``) rewrites the file under an
exclusive lock (:meth:`Keyring.editing`), atomically (temporary file, fsync, rename). Running
processes pick the new file up without a restart: :meth:`Keyring.reload_if_changed`, called by
the cipher at most once per ``RELIEF_KEYRING_RELOAD_SECONDS`` and at once when a ciphertext
names a key it does not hold.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.domain.clock import now_utc
from gateway.domain.errors import ConfigurationError

log = logging.getLogger("gateway.crypto")

# What identifies one version of the keyring file: a rename gives a new inode, a rewrite a
# new mtime or size.
_FileStamp = tuple[int, int, int]

# Algorithm name → key length in bytes. 国密 SM4 has a 128-bit key by definition.
DATA_ALGORITHMS = {"AES-256-GCM": 32, "SM4-GCM": 16}
INDEX_ALGORITHMS = {"HMAC-SHA-256": 32, "HMAC-SM3": 32}
SUITES = {
    "aes-256-gcm+hmac-sha256": ("AES-256-GCM", "HMAC-SHA-256"),
    "sm4-gcm+hmac-sm3": ("SM4-GCM", "HMAC-SM3"),
}
# "format" of the file: 1 every key in plaintext (base64), 2 keys wrapped by a KEK.
PLAIN_FORMAT, WRAPPED_FORMAT = 1, 2


@dataclass(frozen=True, slots=True)
class KeyName:
    """Which key a wrapped value holds: its role in the keyring (``data``, ``index``,
    ``audit``), id and algorithm. ``context`` is bound to the wrapped bytes where the mechanism
    allows it (AES-GCM's associated data), so a wrapped value moved to another entry of the
    file (the index key's into a data key's place, say) fails to unwrap."""

    role: str
    key_id: str
    algorithm: str

    @property
    def context(self) -> bytes:
        return (
            f"relief-gateway keyring\x00{self.role}\x00{self.key_id}\x00{self.algorithm}".encode()
        )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A key as a wrapped keyring stores it: the KEK's label in the token, the mechanism, and
    the wrapped bytes (of no use without the token)."""

    kek: str
    mechanism: str
    value: bytes

    def __repr__(self) -> str:
        return f"WrappedKey({self.kek!r}, {self.mechanism!r})"


class KeyProtector(Protocol):
    """A key-encryption key held outside this process (``gateway.crypto._pkcs11.TokenProtector``).

    ``wrap`` wraps each material under the configured KEK and mechanism; ``unwrap`` opens
    each wrapped value with the KEK it names. Both take a whole keyring's keys at once (one
    session and login per call) and raise ``ConfigurationError`` with a Chinese message that
    names keys, labels and settings, never key material or the PIN.
    """

    @property
    def description(self) -> str: ...

    def wrap(self, keys: Sequence[tuple[KeyName, bytes]]) -> list[WrappedKey]: ...

    def random(self, size: int) -> bytes: ...

    def unwrap(self, keys: Sequence[tuple[KeyName, WrappedKey]]) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class KeyringProtection:
    """What protects each key of a keyring file, read without unwrapping anything (for the
    production check and ``keys status``)."""

    plain: list[str]  # key ids stored in plaintext
    wrapped: dict[str, WrappedKey]  # key id → how it is wrapped

    @property
    def kek_labels(self) -> set[str]:
        return {item.kek for item in self.wrapped.values()}


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    algorithm: str
    material: bytes
    created_at: str

    def __repr__(self) -> str:  # never print key material, not even in a traceback
        return f"DataKey({self.key_id!r}, {self.algorithm!r})"


@dataclass(frozen=True, slots=True)
class AuditKey:
    """A key for the audit-entry MAC (HMAC-SHA-256, or HMAC-SM3 under the 国密 suite)."""

    key_id: str
    algorithm: str
    material: bytes
    created_at: str

    def __repr__(self) -> str:
        return f"AuditKey({self.key_id!r}, {self.algorithm!r})"


@dataclass(frozen=True, slots=True)
class IndexKey:
    key_id: str
    algorithm: str
    material: bytes

    def __repr__(self) -> str:
        return f"IndexKey({self.key_id!r}, {self.algorithm!r})"


class Keyring:
    def __init__(self, data_keys: dict[str, DataKey], primary: str, index_key: IndexKey) -> None:
        if primary not in data_keys:
            raise ConfigurationError("密钥环损坏: 主密钥不在密钥列表中")
        self.data_keys = data_keys
        self.primary_id = primary
        self.index_key = index_key
        # Audit keys: none in a keyring written before they existed (see add_audit_key).
        self.audit_keys: dict[str, AuditKey] = {}
        self.audit_primary_id: str | None = None
        self.audit_since: str | None = None
        # ``kek``: the configured key-encryption key, used to unwrap on (re)load and to wrap on
        # save. ``wrapped``: whether save stores the keys wrapped (the file was wrapped, or
        # ``keys wrap`` asked for it); a plain keyring stays plain until asked.
        self.kek: KeyProtector | None = None
        self.wrapped = False
        # The file this keyring came from (``load``) and which version of it, for reloading.
        self.path: Path | None = None
        self._stamp: _FileStamp | None = None

    @property
    def primary(self) -> DataKey:
        return self.data_keys[self.primary_id]

    @property
    def audit_key(self) -> AuditKey | None:
        """The audit key new entries are MAC'd with; None in a keyring that has none yet."""
        if self.audit_primary_id is None:
            return None
        return self.audit_keys[self.audit_primary_id]

    def rotate_audit_key(self, algorithm: str | None = None) -> AuditKey:
        """Add an audit key and make it the one new entries use; the first one also sets
        ``audit_since``. Old audit keys stay: entries record which key MAC'd them."""
        current = self.audit_key
        if algorithm is None:
            # The suite's MAC, as the blind-index key (never rotated) records it.
            algorithm = current.algorithm if current else self.index_key.algorithm
        if algorithm not in INDEX_ALGORITHMS:
            raise ConfigurationError(f"未知的审计密钥算法 {algorithm!r}")
        created = now_utc().isoformat(timespec="seconds")
        key = AuditKey(
            key_id=f"ak-{now_utc().strftime('%Y%m%d')}-{secrets.token_hex(3)}",
            algorithm=algorithm,
            material=_key_material(INDEX_ALGORITHMS[algorithm], self.kek),
            created_at=created,
        )
        self.audit_keys = {**self.audit_keys, key.key_id: key}
        self.audit_primary_id = key.key_id
        if self.audit_since is None:
            self.audit_since = created
        return key

    @classmethod
    def generate(cls, suite: str, kek: KeyProtector | None = None) -> Keyring:
        """A new keyring: one data key, the index key, one audit key. With ``kek`` the key
        material also draws on the cipher machine's generator (see :func:`_key_material`)."""
        if suite not in SUITES:
            raise ConfigurationError(f"未知的密码套件 {suite!r}, 可选: {', '.join(SUITES)}")
        data_algorithm, index_algorithm = SUITES[suite]
        data_key = _new_data_key(data_algorithm, kek)
        index_key = IndexKey(
            key_id=f"ik-{secrets.token_hex(4)}",
            algorithm=index_algorithm,
            material=_key_material(INDEX_ALGORITHMS[index_algorithm], kek),
        )
        keyring = cls({data_key.key_id: data_key}, data_key.key_id, index_key)
        keyring.kek = kek
        keyring.rotate_audit_key(index_algorithm)
        return keyring

    def rotate(self, algorithm: str | None = None) -> DataKey:
        """Add a new data key and make it primary; old keys stay to open old ciphertexts."""
        key = _new_data_key(algorithm or self.primary.algorithm, self.kek)
        self.data_keys[key.key_id] = key
        self.primary_id = key.key_id
        return key

    def retire(self, key_id: str) -> DataKey:
        """Remove a data key that no longer protects anything (the caller checks the data:
        ``gateway.storage.reencrypt``). Never the primary: new values are sealed with it."""
        if key_id not in self.data_keys:
            raise ConfigurationError(f"密钥环中没有数据密钥 {key_id}")
        if key_id == self.primary_id:
            raise ConfigurationError(
                f"{key_id} 是当前主密钥, 不能停用; 请先 relief-gateway keys rotate"
            )
        return self.data_keys.pop(key_id)

    def reload_if_changed(self) -> bool:
        """Re-read the keyring file if another process rewrote it; True when keys changed.

        Never raises: a file that cannot be read (being edited by hand, removed) leaves the keys
        in memory as they are and is logged once, so reads keep working. A file whose blind-index
        key differs is refused the same way: every lookup index was computed with the old one.
        """
        if self.path is None:
            return False
        try:
            stamp = _file_stamp(os.stat(self.path))
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        try:
            fresh = Keyring.load(self.path, self.kek)
        except ConfigurationError as exc:
            self._stamp = stamp  # once per version of the file, not once per request
            log.warning("密钥环文件未重新载入, 继续使用内存中的密钥: %s", exc.message)
            return False
        if (fresh.index_key.key_id, fresh.index_key.material) != (
            self.index_key.key_id,
            self.index_key.material,
        ):
            self._stamp = stamp
            log.error("密钥环文件的盲索引密钥与运行中的不同, 拒绝载入 (盲索引密钥不能在线轮换)")
            return False
        # New dict first, then the primary: a concurrent reader never sees a primary that is
        # missing from data_keys.
        self.data_keys = fresh.data_keys
        self.primary_id = fresh.primary_id
        # Audit keys only ever grow, so a process keeps verifying what it MAC'd before.
        self.audit_keys = {**self.audit_keys, **fresh.audit_keys}
        self.audit_primary_id = fresh.audit_primary_id or self.audit_primary_id
        self.audit_since = self.audit_since or fresh.audit_since
        self._stamp = fresh._stamp
        log.info(
            "密钥环已重新载入: 主密钥 %s, 共 %d 个数据密钥", self.primary_id, len(self.data_keys)
        )
        return True

    # ---------------------------------------------------------------- file
    @classmethod
    def load(cls, path: Path, kek: KeyProtector | None = None) -> Keyring:
        """Read the keyring file; wrapped keys are unwrapped with ``kek`` (refused without
        one: a wrapped keyring copied without its token opens nothing)."""
        try:
            # Stat the descriptor that is read: the stamp then names exactly this content.
            with path.open("rb") as handle:
                stamp = _file_stamp(os.fstat(handle.fileno()))
                raw = json.loads(handle.read().decode("utf-8"))
            if raw.get("format", PLAIN_FORMAT) not in (PLAIN_FORMAT, WRAPPED_FORMAT):
                raise ConfigurationError(
                    f"密钥环文件 {path} 的格式版本 {raw.get('format')!r} 不受支持 (本版本支持 1、2)"
                )
            stored = _stored_keys(raw)
            primary = raw["primary"]
            if not isinstance(primary, str):
                raise TypeError("primary")
            audit_primary = raw.get("audit_primary")
            if audit_primary is not None and audit_primary not in stored["audit"]:
                raise KeyError("audit_primary")
            audit_since = raw.get("audit_since")
        except FileNotFoundError:
            raise ConfigurationError(f"找不到密钥环文件 {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            # The detail could quote key material; say only which file is unreadable.
            raise ConfigurationError(f"密钥环文件 {path} 格式错误") from None
        materials = _open_materials(path, stored, kek)

        def material(role: str, key_id: str) -> bytes:
            return materials[(role, key_id)]

        data_keys = {
            key_id: DataKey(key_id, entry.name.algorithm, material("data", key_id), entry.created)
            for key_id, entry in stored["data"].items()
        }
        [index] = stored["index"].values()
        index_key = IndexKey(
            index.name.key_id, index.name.algorithm, material("index", index.name.key_id)
        )
        audit_keys = {
            key_id: AuditKey(key_id, entry.name.algorithm, material("audit", key_id), entry.created)
            for key_id, entry in stored["audit"].items()
        }
        for key in data_keys.values():
            _check_length(key.key_id, key.algorithm, key.material, DATA_ALGORITHMS)
        _check_length(index_key.key_id, index_key.algorithm, index_key.material, INDEX_ALGORITHMS)
        for audit_key in audit_keys.values():
            _check_length(
                audit_key.key_id, audit_key.algorithm, audit_key.material, INDEX_ALGORITHMS
            )
        keyring = cls(data_keys, primary, index_key)
        keyring.audit_keys, keyring.audit_primary_id = audit_keys, audit_primary
        keyring.audit_since = audit_since if isinstance(audit_since, str) else None
        keyring.kek = kek
        keyring.wrapped = any(entry.wrapped is not None for entry in _all(stored))
        keyring.path, keyring._stamp = path, stamp
        return keyring

    @staticmethod
    def protection(path: Path) -> KeyringProtection:
        """Which keys of the file are stored in plaintext and which wrapped (nothing is
        unwrapped, no key material is returned)."""
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
            stored = _stored_keys(raw)
        except FileNotFoundError:
            raise ConfigurationError(f"找不到密钥环文件 {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(f"密钥环文件 {path} 格式错误") from None
        entries = _all(stored)
        return KeyringProtection(
            plain=[e.name.key_id for e in entries if e.wrapped is None],
            wrapped={e.name.key_id: e.wrapped for e in entries if e.wrapped is not None},
        )

    @classmethod
    @contextmanager
    def editing(cls, path: Path, kek: KeyProtector | None = None) -> Iterator[Keyring]:
        """Load, change and save the keyring file under an exclusive lock, so two operators
        rotating at once cannot lose each other's key. Nothing is saved if the block raises::

            with Keyring.editing(settings.keyring_path, kek) as keyring:
                keyring.rotate()

        A wrapped keyring is saved wrapped again (under ``kek``'s KEK and mechanism).
        """
        if not path.exists():
            raise ConfigurationError(f"找不到密钥环文件 {path}")
        lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keyring = cls.load(path, kek)
            yield keyring
            keyring.save(path)
        finally:
            os.close(lock)  # releases the lock

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (the file is created private, never chmod'ed later):
        a temporary file beside it, fsync, rename, fsync of the directory. A reader (a running
        gateway reloading) sees the old file or the new one, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        store = self._stored_forms()
        document: dict[str, Any] = {
            "format": WRAPPED_FORMAT if self.wrapped else PLAIN_FORMAT,
            "primary": self.primary_id,
            "data_keys": {
                key.key_id: {
                    "algorithm": key.algorithm,
                    **store[("data", key.key_id)],
                    "created_at": key.created_at,
                }
                for key in self.data_keys.values()
            },
            "index_key": {
                "id": self.index_key.key_id,
                "algorithm": self.index_key.algorithm,
                **store[("index", self.index_key.key_id)],
            },
        }
        if self.audit_keys:
            document["audit_primary"] = self.audit_primary_id
            document["audit_since"] = self.audit_since
            document["audit_keys"] = {
                key.key_id: {
                    "algorithm": key.algorithm,
                    **store[("audit", key.key_id)],
                    "created_at": key.created_at,
                }
                for key in self.audit_keys.values()
            }
        # mkstemp creates the file with mode 0600 and a name no other writer uses.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
        if self.path is None or self.path == path:
            self.path, self._stamp = path, _file_stamp(os.stat(path))

    def _stored_forms(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (role, key id): ``{"key": …}`` or, wrapped, ``{"wrapped": {…}}`` (all keys
        wrapped in one call to the KEK)."""
        names = [
            *(
                (KeyName("data", k.key_id, k.algorithm), k.material)
                for k in self.data_keys.values()
            ),
            (
                KeyName("index", self.index_key.key_id, self.index_key.algorithm),
                self.index_key.material,
            ),
            *(
                (KeyName("audit", k.key_id, k.algorithm), k.material)
                for k in self.audit_keys.values()
            ),
        ]
        if not self.wrapped:
            return {
                (name.role, name.key_id): {"key": base64.b64encode(material).decode()}
                for name, material in names
            }
        if self.kek is None:
            raise ConfigurationError(
                "密钥环由密码机中的密钥加密密钥保护, 但未配置密码机 (RELIEF_PKCS11_MODULE): "
                "拒绝以明文写回"
            )
        wrapped = self.kek.wrap(names)
        return {
            (name.role, name.key_id): {
                "wrapped": {
                    "kek": item.kek,
                    "mechanism": item.mechanism,
                    "value": base64.b64encode(item.value).decode(),
                }
            }
            for (name, _), item in zip(names, wrapped, strict=True)
        }

    @classmethod
    def load_or_create(cls, path: Path, suite: str, kek: KeyProtector | None = None) -> Keyring:
        """Load the keyring, or create it (wrapped from the start when ``kek`` is given)."""
        if path.exists():
            keyring = cls.load(path, kek)
            if keyring.audit_key is None:
                # A keyring from before audit keys: add one, under the lock, once.
                with cls.editing(path, kek) as edited:
                    if edited.audit_key is None:
                        edited.rotate_audit_key(SUITES[suite][1])
                keyring = cls.load(path, kek)
            return keyring
        keyring = cls.generate(suite, kek)
        keyring.wrapped = kek is not None
        keyring.save(path)
        return keyring


@dataclass(frozen=True, slots=True)
class _Stored:
    """One key entry of the file before unwrapping: plaintext or wrapped, never both."""

    name: KeyName
    created: str
    plain: bytes | None
    wrapped: WrappedKey | None


def _stored_entry(role: str, key_id: str, entry: dict[str, Any]) -> _Stored:
    if not isinstance(key_id, str):
        raise TypeError("key id")
    name = KeyName(role, key_id, entry["algorithm"])
    created = entry.get("created_at", "")
    if ("key" in entry) == ("wrapped" in entry):
        raise KeyError("key or wrapped")
    if "key" in entry:
        return _Stored(name, created, base64.b64decode(entry["key"], validate=True), None)
    item = entry["wrapped"]
    if not (isinstance(item["kek"], str) and isinstance(item["mechanism"], str)):
        raise TypeError("wrapped")
    wrapped = WrappedKey(
        item["kek"], item["mechanism"], base64.b64decode(item["value"], validate=True)
    )
    return _Stored(name, created, None, wrapped)


def _stored_keys(raw: dict[str, Any]) -> dict[str, dict[str, _Stored]]:
    index = raw["index_key"]
    return {
        "data": {k: _stored_entry("data", k, e) for k, e in raw["data_keys"].items()},
        "index": {index["id"]: _stored_entry("index", index["id"], index)},
        "audit": {k: _stored_entry("audit", k, e) for k, e in raw.get("audit_keys", {}).items()},
    }


def _all(stored: dict[str, dict[str, _Stored]]) -> list[_Stored]:
    return [entry for entries in stored.values() for entry in entries.values()]


def _open_materials(
    path: Path, stored: dict[str, dict[str, _Stored]], kek: KeyProtector | None
) -> dict[tuple[str, str], bytes]:
    entries = _all(stored)
    materials = {(e.name.role, e.name.key_id): e.plain for e in entries if e.plain is not None}
    wrapped = [(e.name, e.wrapped) for e in entries if e.wrapped is not None]
    if not wrapped:
        return materials
    if kek is None:
        labels = "、".join(sorted({item.kek for _, item in wrapped}))
        raise ConfigurationError(
            f"密钥环文件 {path} 中的密钥由密码机中的密钥加密密钥 {labels} 保护, 需要配置密码机才能"
            "解开: RELIEF_PKCS11_MODULE、RELIEF_PKCS11_TOKEN_LABEL 和 PIN "
            "(RELIEF_PKCS11_PIN_FILE 或 RELIEF_PKCS11_PIN)"
        )
    opened = kek.unwrap(wrapped)
    for (name, _), material in zip(wrapped, opened, strict=True):
        materials[(name.role, name.key_id)] = material
    return materials


def _key_material(size: int, kek: KeyProtector | None) -> bytes:
    """``size`` random bytes for a new key: the kernel's CSPRNG (getrandom), XORed with the
    cipher machine's generator when a KEK is configured. The XOR of two independent sources is
    as unpredictable as the better one, so a level-3 assessment can count the certified module's
    RNG (GB/T 39786: keys generated with a certified module's random numbers) without the key
    depending on it alone."""
    host = os.urandom(size)
    if kek is None:
        return host
    module = kek.random(size)
    if len(module) != size:
        raise ConfigurationError("密码机返回的随机数长度不符")
    return bytes(a ^ b for a, b in zip(host, module, strict=True))


def _new_data_key(algorithm: str, kek: KeyProtector | None = None) -> DataKey:
    if algorithm not in DATA_ALGORITHMS:
        raise ConfigurationError(f"未知的加密算法 {algorithm!r}")
    stamp = now_utc().strftime("%Y%m%d")
    return DataKey(
        key_id=f"dk-{stamp}-{secrets.token_hex(3)}",
        algorithm=algorithm,
        material=_key_material(DATA_ALGORITHMS[algorithm], kek),
        created_at=now_utc().isoformat(timespec="seconds"),
    )


def _file_stamp(status: os.stat_result) -> _FileStamp:
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _check_length(key_id: str, algorithm: str, material: bytes, table: dict[str, int]) -> None:
    if algorithm not in table:
        raise ConfigurationError(f"密钥 {key_id} 使用了未知算法 {algorithm!r}")
    if len(material) != table[algorithm]:
        raise ConfigurationError(f"密钥 {key_id} 长度不符合 {algorithm}")
