"""The keyring file: data keys (each recording its algorithm) and the blind-index key.

Layout (JSON, mode 0600, under the data dir, never in the database or in git)::

    {"format": 1, "primary": "dk-…",
     "data_keys": {"dk-…": {"algorithm": "AES-256-GCM", "key": "<base64>", "created_at": "…"}},
     "index_key": {"id": "ik-…", "algorithm": "HMAC-SHA-256", "key": "<base64>"}}

The blind-index key is separate from the data keys (a leaked index key reveals equality, not
plaintext) and does not rotate with them: rotating it means recomputing every index.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import now_utc
from gateway.errors import ConfigurationError

# Algorithm name → key length in bytes. 国密 SM4 has a 128-bit key by definition.
DATA_ALGORITHMS = {"AES-256-GCM": 32, "SM4-GCM": 16}
INDEX_ALGORITHMS = {"HMAC-SHA-256": 32, "HMAC-SM3": 32}
SUITES = {
    "aes-256-gcm+hmac-sha256": ("AES-256-GCM", "HMAC-SHA-256"),
    "sm4-gcm+hmac-sm3": ("SM4-GCM", "HMAC-SM3"),
}


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    algorithm: str
    material: bytes
    created_at: str

    def __repr__(self) -> str:  # never print key material, not even in a traceback
        return f"DataKey({self.key_id!r}, {self.algorithm!r})"


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

    @property
    def primary(self) -> DataKey:
        return self.data_keys[self.primary_id]

    @classmethod
    def generate(cls, suite: str) -> Keyring:
        if suite not in SUITES:
            raise ConfigurationError(f"未知的密码套件 {suite!r}, 可选: {', '.join(SUITES)}")
        data_algorithm, index_algorithm = SUITES[suite]
        data_key = _new_data_key(data_algorithm)
        index_key = IndexKey(
            key_id=f"ik-{secrets.token_hex(4)}",
            algorithm=index_algorithm,
            material=os.urandom(INDEX_ALGORITHMS[index_algorithm]),
        )
        return cls({data_key.key_id: data_key}, data_key.key_id, index_key)

    def rotate(self, algorithm: str | None = None) -> DataKey:
        """Add a new data key and make it primary; old keys stay to open old ciphertexts."""
        key = _new_data_key(algorithm or self.primary.algorithm)
        self.data_keys[key.key_id] = key
        self.primary_id = key.key_id
        return key

    # ---------------------------------------------------------------- file
    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            data_keys = {
                key_id: DataKey(
                    key_id=key_id,
                    algorithm=entry["algorithm"],
                    material=base64.b64decode(entry["key"]),
                    created_at=entry.get("created_at", ""),
                )
                for key_id, entry in raw["data_keys"].items()
            }
            index = raw["index_key"]
            index_key = IndexKey(index["id"], index["algorithm"], base64.b64decode(index["key"]))
            primary = raw["primary"]
            if not isinstance(primary, str):
                raise TypeError("primary")
        except FileNotFoundError:
            raise ConfigurationError(f"找不到密钥环文件 {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            # The detail could quote key material; say only which file is unreadable.
            raise ConfigurationError(f"密钥环文件 {path} 格式错误") from None
        for key in data_keys.values():
            _check_length(key.key_id, key.algorithm, key.material, DATA_ALGORITHMS)
        _check_length(index_key.key_id, index_key.algorithm, index_key.material, INDEX_ALGORITHMS)
        return cls(data_keys, primary, index_key)

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (the file is created private, never chmod'ed later)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": 1,
            "primary": self.primary_id,
            "data_keys": {
                key.key_id: {
                    "algorithm": key.algorithm,
                    "key": base64.b64encode(key.material).decode(),
                    "created_at": key.created_at,
                }
                for key in self.data_keys.values()
            },
            "index_key": {
                "id": self.index_key.key_id,
                "algorithm": self.index_key.algorithm,
                "key": base64.b64encode(self.index_key.material).decode(),
            },
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load_or_create(cls, path: Path, suite: str) -> Keyring:
        if path.exists():
            return cls.load(path)
        keyring = cls.generate(suite)
        keyring.save(path)
        return keyring


def _new_data_key(algorithm: str) -> DataKey:
    if algorithm not in DATA_ALGORITHMS:
        raise ConfigurationError(f"未知的加密算法 {algorithm!r}")
    stamp = now_utc().strftime("%Y%m%d")
    return DataKey(
        key_id=f"dk-{stamp}-{secrets.token_hex(3)}",
        algorithm=algorithm,
        material=os.urandom(DATA_ALGORITHMS[algorithm]),
        created_at=now_utc().isoformat(timespec="seconds"),
    )


def _check_length(key_id: str, algorithm: str, material: bytes, table: dict[str, int]) -> None:
    if algorithm not in table:
        raise ConfigurationError(f"密钥 {key_id} 使用了未知算法 {algorithm!r}")
    if len(material) != table[algorithm]:
        raise ConfigurationError(f"密钥 {key_id} 长度不符合 {algorithm}")
