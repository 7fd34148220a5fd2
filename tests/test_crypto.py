"""Field encryption (``gateway.crypto``): sealing, AAD binding, tamper detection, rotation,
blind indexes and the keyring file, for both cipher suites (AES and 国密 SM4/SM3)."""

from __future__ import annotations

import base64
import json
import os
import stat
import traceback
from pathlib import Path

import pytest

from gateway.crypto import DataKey, FieldCipher, IndexKey, Keyring
from gateway.domain.errors import ConfigurationError, DecryptionError

SUITES = ("aes-256-gcm+hmac-sha256", "sm4-gcm+hmac-sm3")
EXPECTED_ALGORITHMS = {
    "aes-256-gcm+hmac-sha256": ("AES-256-GCM", 32, "HMAC-SHA-256"),
    "sm4-gcm+hmac-sm3": ("SM4-GCM", 16, "HMAC-SM3"),
}
WHERE = {"table": "person", "column": "name", "row_id": "7c6b0a52-0000-4000-8000-000000000001"}


@pytest.fixture(params=SUITES)
def suite(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def keyring(suite: str) -> Keyring:
    return Keyring.generate(suite)


@pytest.fixture
def cipher(keyring: Keyring) -> FieldCipher:
    return FieldCipher(keyring)


def _material_forms(keyring: Keyring) -> list[str]:
    """Every printable form key material could leak in: hex, base64 and the raw repr."""
    forms: list[str] = []
    materials = [k.material for k in keyring.data_keys.values()] + [keyring.index_key.material]
    for material in materials:
        forms += [material.hex(), base64.b64encode(material).decode(), repr(material)[2:-1]]
    return forms


def _assert_no_material(text: str, keyring: Keyring) -> None:
    for form in _material_forms(keyring):
        assert form not in text


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "plaintext",
    [
        "张三",
        "欧阳娜娜",
        "山东省济南市历下区泉城路 12 号 3 单元",
        "370102199003071234",
        "13812345678",
        "",
        "𠀀𪚥 emoji 🙂 and ASCII",
    ],
)
def test_round_trip(cipher: FieldCipher, plaintext: str) -> None:
    sealed = cipher.seal(plaintext, **WHERE)
    assert isinstance(sealed, bytes)
    if plaintext:
        assert plaintext.encode("utf-8") not in sealed
    assert cipher.open(sealed, **WHERE) == plaintext


def test_nonce_differs_per_seal(cipher: FieldCipher) -> None:
    sealed = [cipher.seal("王小明", **WHERE) for _ in range(20)]
    assert len(set(sealed)) == len(sealed)
    header = 2 + sealed[0][1]
    nonces = {s[header : header + 12] for s in sealed}
    assert len(nonces) == len(sealed)
    assert all(cipher.open(s, **WHERE) == "王小明" for s in sealed)


# --------------------------------------------------------------------------- AAD binding


@pytest.mark.parametrize(
    "other",
    [
        {"row_id": "7c6b0a52-0000-4000-8000-000000000002"},
        {"column": "address"},
        {"table": "household"},
        {"row_id": ""},
    ],
    ids=["other-row", "other-column", "other-table", "empty-row"],
)
def test_aad_binds_table_column_row(cipher: FieldCipher, other: dict[str, str]) -> None:
    sealed = cipher.seal("李四", **WHERE)
    with pytest.raises(DecryptionError) as info:
        cipher.open(sealed, **{**WHERE, **other})
    assert info.value.code == "DATA_INTEGRITY"
    assert "李四" not in info.value.message


def test_aad_fields_are_not_ambiguous(cipher: FieldCipher) -> None:
    """Moving a boundary between table/column/row must not produce the same associated data."""
    sealed = cipher.seal("赵五", table="person", column="name", row_id="1")
    with pytest.raises(DecryptionError):
        cipher.open(sealed, table="person", column="nam", row_id="e1")
    with pytest.raises(DecryptionError):
        cipher.open(sealed, table="perso", column="nname", row_id="1")


# --------------------------------------------------------------------------- tampering


def test_flipping_any_byte_is_detected(cipher: FieldCipher, keyring: Keyring) -> None:
    sealed = cipher.seal("孙六", **WHERE)
    for position in range(len(sealed)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(sealed)
            tampered[position] ^= mask
            with pytest.raises(DecryptionError) as info:
                cipher.open(bytes(tampered), **WHERE)
            assert "孙六" not in info.value.message
            _assert_no_material(info.value.message, keyring)


def test_truncated_input(cipher: FieldCipher, keyring: Keyring) -> None:
    sealed = cipher.seal("周七", **WHERE)
    for length in range(len(sealed)):
        with pytest.raises(DecryptionError) as info:
            cipher.open(sealed[:length], **WHERE)
        _assert_no_material(info.value.message, keyring)
        _assert_no_material("".join(traceback.format_exception(info.value)), keyring)


def test_appended_bytes_are_detected(cipher: FieldCipher) -> None:
    sealed = cipher.seal("周七", **WHERE)
    with pytest.raises(DecryptionError):
        cipher.open(sealed + b"\x00", **WHERE)


def test_unknown_key_id(suite: str) -> None:
    mine, theirs = Keyring.generate(suite), Keyring.generate(suite)
    sealed = FieldCipher(theirs).seal("吴八", **WHERE)
    with pytest.raises(DecryptionError) as info:
        FieldCipher(mine).open(sealed, **WHERE)
    message = info.value.message
    assert theirs.primary_id in message  # names the key id (not secret) so operators can act
    _assert_no_material(message, mine)
    _assert_no_material(message, theirs)
    _assert_no_material("".join(traceback.format_exception(info.value)), theirs)


def test_same_key_id_other_material_fails(suite: str) -> None:
    """A keyring whose key has the right id but other bytes must not open (or mis-open)."""
    original = Keyring.generate(suite)
    forged_key = DataKey(
        key_id=original.primary_id,
        algorithm=original.primary.algorithm,
        material=os.urandom(len(original.primary.material)),
        created_at=original.primary.created_at,
    )
    forged = Keyring({forged_key.key_id: forged_key}, forged_key.key_id, original.index_key)
    sealed = FieldCipher(original).seal("郑九", **WHERE)
    with pytest.raises(DecryptionError):
        FieldCipher(forged).open(sealed, **WHERE)


# --------------------------------------------------------------------------- rotation


def test_rotation_keeps_old_ciphertexts_open(keyring: Keyring, cipher: FieldCipher) -> None:
    old_id = keyring.primary_id
    old = cipher.seal("冯十", **WHERE)
    assert cipher.key_id_of(old) == old_id

    new_key = keyring.rotate()
    assert new_key.key_id != old_id
    assert keyring.primary_id == new_key.key_id
    assert new_key.algorithm == keyring.data_keys[old_id].algorithm
    assert set(keyring.data_keys) == {old_id, new_key.key_id}

    new = cipher.seal("冯十", **WHERE)
    assert cipher.key_id_of(new) == new_key.key_id
    assert new_key.key_id.encode() in new
    assert cipher.open(old, **WHERE) == "冯十"
    assert cipher.open(new, **WHERE) == "冯十"
    # A fresh cipher over the same keyring (as after a restart) opens both as well.
    fresh = FieldCipher(keyring)
    assert fresh.open(old, **WHERE) == fresh.open(new, **WHERE) == "冯十"


def test_rotation_to_other_algorithm(keyring: Keyring, cipher: FieldCipher) -> None:
    old = cipher.seal("陈十一", **WHERE)
    other = "SM4-GCM" if keyring.primary.algorithm == "AES-256-GCM" else "AES-256-GCM"
    key = keyring.rotate(other)
    assert key.algorithm == other
    assert len(key.material) == {"SM4-GCM": 16, "AES-256-GCM": 32}[other]
    new = cipher.seal("陈十一", **WHERE)
    assert cipher.key_id_of(new) == key.key_id
    assert cipher.open(old, **WHERE) == cipher.open(new, **WHERE) == "陈十一"


def test_rotation_to_unknown_algorithm_is_refused(keyring: Keyring) -> None:
    with pytest.raises(ConfigurationError):
        keyring.rotate("DES")


def test_rotation_survives_save_and_load(keyring: Keyring, tmp_path: Path) -> None:
    cipher = FieldCipher(keyring)
    old = cipher.seal("褚十二", **WHERE)
    keyring.rotate()
    new = cipher.seal("褚十二", **WHERE)
    path = tmp_path / "keyring.json"
    keyring.save(path)
    loaded = Keyring.load(path)
    assert loaded.primary_id == keyring.primary_id
    reopened = FieldCipher(loaded)
    assert reopened.open(old, **WHERE) == reopened.open(new, **WHERE) == "褚十二"


# --------------------------------------------------------------------------- blind index


def test_blind_index_is_deterministic(cipher: FieldCipher, keyring: Keyring) -> None:
    a = cipher.blind_index("370102199003071234", table="person", column="id_number")
    b = cipher.blind_index("370102199003071234", table="person", column="id_number")
    assert a == b
    assert len(a) == 32
    assert FieldCipher.same_index(a, b)
    assert (
        FieldCipher(keyring).blind_index("370102199003071234", table="person", column="id_number")
        == a
    )
    c = cipher.blind_index("370102199003071235", table="person", column="id_number")
    assert c != a
    assert not FieldCipher.same_index(a, c)
    assert b"370102199003071234" not in a


def test_blind_index_differs_across_columns_and_tables(cipher: FieldCipher) -> None:
    value = "13812345678"
    indexes = {
        cipher.blind_index(value, table="person", column="phone"),
        cipher.blind_index(value, table="person", column="id_number"),
        cipher.blind_index(value, table="household", column="phone"),
    }
    assert len(indexes) == 3


def test_blind_index_differs_across_keyrings(suite: str) -> None:
    value = "370102199003071234"
    first = FieldCipher(Keyring.generate(suite)).blind_index(
        value, table="person", column="id_number"
    )
    second = FieldCipher(Keyring.generate(suite)).blind_index(
        value, table="person", column="id_number"
    )
    assert first != second


def test_blind_index_survives_rotation(keyring: Keyring, cipher: FieldCipher) -> None:
    before = cipher.blind_index("370102199003071234", table="person", column="id_number")
    keyring.rotate()
    after = cipher.blind_index("370102199003071234", table="person", column="id_number")
    assert before == after


def test_suites_use_different_index_algorithms() -> None:
    aes = Keyring.generate("aes-256-gcm+hmac-sha256")
    sm = Keyring.generate("sm4-gcm+hmac-sm3")
    # Same key bytes, different algorithm, different index: SM3 really is used for 国密.
    shared = os.urandom(32)
    aes_ring = Keyring(aes.data_keys, aes.primary_id, IndexKey("ik-a", "HMAC-SHA-256", shared))
    sm_ring = Keyring(sm.data_keys, sm.primary_id, IndexKey("ik-s", "HMAC-SM3", shared))
    value = "370102199003071234"
    assert FieldCipher(aes_ring).blind_index(
        value, table="person", column="id_number"
    ) != FieldCipher(sm_ring).blind_index(value, table="person", column="id_number")


# --------------------------------------------------------------------------- keys and algorithms


def test_keys_record_their_algorithm_and_length(suite: str, keyring: Keyring) -> None:
    data_algorithm, data_length, index_algorithm = EXPECTED_ALGORITHMS[suite]
    assert keyring.primary.algorithm == data_algorithm
    assert len(keyring.primary.material) == data_length
    assert keyring.index_key.algorithm == index_algorithm
    assert len(keyring.index_key.material) == 32
    assert keyring.primary.key_id.startswith("dk-")
    assert keyring.index_key.key_id.startswith("ik-")
    assert keyring.primary.material != keyring.index_key.material[: len(keyring.primary.material)]


def test_unknown_suite_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.generate("rot13")
    assert "密码套件" in info.value.message


def test_repr_never_shows_material(keyring: Keyring) -> None:
    keyring.rotate()
    texts = [
        repr(keyring.primary),
        str(keyring.primary),
        f"{keyring.primary}",
        repr(keyring.index_key),
        str(keyring.index_key),
        repr(keyring),
        repr(keyring.data_keys),
        repr(vars(keyring)),
        repr(FieldCipher(keyring)),
    ]
    for text in texts:
        _assert_no_material(text, keyring)
    assert keyring.primary.key_id in repr(keyring.primary)
    assert keyring.primary.algorithm in repr(keyring.primary)


def test_key_objects_are_immutable(keyring: Keyring) -> None:
    with pytest.raises(AttributeError):
        keyring.primary.material = b"x" * 32  # type: ignore[misc]


# --------------------------------------------------------------------------- keyring file


def test_keyring_file_mode_and_round_trip(keyring: Keyring, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keyring.json"
    keyring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_suffix(".tmp").exists()
    loaded = Keyring.load(path)
    assert loaded.primary_id == keyring.primary_id
    assert set(loaded.data_keys) == set(keyring.data_keys)
    for key_id, key in keyring.data_keys.items():
        assert loaded.data_keys[key_id].material == key.material
        assert loaded.data_keys[key_id].algorithm == key.algorithm
    assert loaded.index_key.material == keyring.index_key.material
    assert loaded.index_key.algorithm == keyring.index_key.algorithm
    sealed = FieldCipher(keyring).seal("蒋十三", **WHERE)
    assert FieldCipher(loaded).open(sealed, **WHERE) == "蒋十三"
    assert FieldCipher(loaded).blind_index("x", table="t", column="c") == FieldCipher(
        keyring
    ).blind_index("x", table="t", column="c")


def test_keyring_file_stays_private_when_overwritten(keyring: Keyring, tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("{}")
    path.chmod(0o644)
    keyring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(path).primary_id == keyring.primary_id


def test_load_or_create(suite: str, tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    created = Keyring.load_or_create(path, suite)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Keyring.load_or_create(path, suite)
    assert again.primary_id == created.primary_id
    assert again.primary.material == created.primary.material


def test_missing_keyring_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.load(tmp_path / "absent.json")
    assert "找不到密钥环文件" in info.value.message


def _corruptions(document: dict[str, object], text: str) -> dict[str, str]:
    def edited(change: object) -> str:
        doc = json.loads(text)
        change(doc)  # type: ignore[operator]
        return json.dumps(doc)

    primary = str(document["primary"])
    return {
        "empty": "",
        "truncated": text[: len(text) // 2],
        "not-json": "密钥环" + text,
        "json-list": "[]",
        "json-string": json.dumps(text),
        "no-primary": edited(lambda d: d.pop("primary")),
        "primary-unknown": edited(lambda d: d.__setitem__("primary", "dk-nope")),
        "no-index-key": edited(lambda d: d.pop("index_key")),
        "key-not-base64": edited(
            lambda d: d["data_keys"][primary].__setitem__("key", "不是base64")
        ),
        "key-null": edited(lambda d: d["data_keys"][primary].__setitem__("key", None)),
        "key-too-short": edited(
            lambda d: d["data_keys"][primary].__setitem__("key", d["data_keys"][primary]["key"][:8])
        ),
        "algorithm-unknown": edited(
            lambda d: d["data_keys"][primary].__setitem__("algorithm", "DES")
        ),
        "algorithm-swapped": edited(
            lambda d: d["data_keys"][primary].__setitem__(
                "algorithm", _other_algorithm(d["data_keys"][primary]["algorithm"])
            )
        ),
        "index-too-short": edited(lambda d: d["index_key"].__setitem__("key", "AAAA")),
        "data-keys-list": edited(lambda d: d.__setitem__("data_keys", [d["data_keys"]])),
        "entry-string": edited(
            lambda d: d["data_keys"].__setitem__(primary, d["data_keys"][primary]["key"])
        ),
        "index-key-string": edited(lambda d: d.__setitem__("index_key", d["index_key"]["key"])),
        "primary-list": edited(lambda d: d.__setitem__("primary", [d["primary"]])),
    }


def _other_algorithm(algorithm: str) -> str:
    return "SM4-GCM" if algorithm == "AES-256-GCM" else "AES-256-GCM"


CORRUPTIONS = (
    "empty",
    "truncated",
    "not-json",
    "json-list",
    "json-string",
    "no-primary",
    "primary-unknown",
    "no-index-key",
    "key-not-base64",
    "key-null",
    "key-too-short",
    "algorithm-unknown",
    "algorithm-swapped",
    "index-too-short",
    "data-keys-list",
    "entry-string",
    "index-key-string",
    "primary-list",
)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupted_keyring_file(keyring: Keyring, tmp_path: Path, corruption: str) -> None:
    path = tmp_path / "keyring.json"
    keyring.save(path)
    text = path.read_text(encoding="utf-8")
    document = json.loads(text)
    path.write_text(_corruptions(document, text)[corruption], encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Keyring.load(path)
    message = info.value.message
    assert "密钥" in message
    _assert_no_material(message, keyring)
    # Neither the message nor a printed traceback quotes the key (no chained exception detail).
    _assert_no_material("".join(traceback.format_exception(info.value)), keyring)


def test_non_utf8_keyring_file(keyring: Keyring, tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keyring.save(path)
    path.write_bytes(b"\xff\xfe" + path.read_bytes())
    with pytest.raises(ConfigurationError) as info:
        Keyring.load(path)
    _assert_no_material(info.value.message, keyring)
