"""Keys in a cipher machine (issue 16 item 7): the keyring wrapped by a key-encryption key (KEK)
in a PKCS#11 token, here Debian's SoftHSM2 (tests/softhsm_support.py).

A wrapped keyring serves a gateway, rotates and re-encrypts through the real CLI in its own
process; its file holds no key material; a copy of it is useless without the token (another
machine, another token with the same labels, no module at all); a wrong PIN is refused without
being echoed; production refuses a plaintext keyring when the cipher machine is configured.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto import Keyring, TokenProtector, open_keyring, protector_from_settings
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import load_settings
from gateway.runtime import production
from gateway.runtime.tokens import TokenService
from tests.harness import Harness, build_harness
from tests.softhsm_support import (
    SoftToken,
    generate_kek_elsewhere,
    make_token,
    require_softhsm,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
# Distinctive, so that finding it anywhere in output or logs is a finding.
PIN = "7319-pin-Qz4w"
WRONG_PIN = "8842-not-it-Kp2"
TOKEN_LABEL = "relief-cipher-machine"
SUITES = ("aes-256-gcm+hmac-sha256", "sm4-gcm+hmac-sm3")
MECHANISMS = ("AES-GCM", "AES-KEY-WRAP-PAD")
LOOKUP = "query One($id: String!) { person(idNumber: $id) { idNumber name phone address } }"
RANDOM_TOKEN_KEY = "kX9-vQ2_mZ7pL4wR8tY1uE6iO3aS5dF0gH2jK4lZ6xC8vB1nM3qW5eR7tY9uI0oP"


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """One token for the test process: SoftHSM2 reads SOFTHSM2_CONF when the module is first
    loaded, so the process keeps this token; other machines are subprocesses."""
    module = require_softhsm()
    made = make_token(tmp_path_factory.mktemp("softhsm"), module, label=TOKEN_LABEL, pin=PIN)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(made.conf)
    yield made
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def kek_label(token: SoftToken) -> str:
    """A fresh KEK in the token, generated through the binding (non-extractable)."""
    return token.generate_kek(f"kek-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def on_token(token: SoftToken, kek_label: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """RELIEF_PKCS11_* for this test's KEK, in the environment of the process and its children."""
    env = token.env(kek_label)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _kek(mechanism: str = "AES-GCM") -> TokenProtector:
    kek = protector_from_settings(load_settings(pkcs11_mechanism=mechanism))
    assert kek is not None
    return kek


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _cli(*argv: str, env: dict[str, str]) -> Ran:
    """``relief-gateway …`` in its own process, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    ran = Ran(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in ran.text, ran.text
    assert PIN not in ran.text
    assert WRONG_PIN not in ran.text
    return ran


def _materials(keyring: Keyring) -> list[bytes]:
    return [
        *(key.material for key in keyring.data_keys.values()),
        keyring.index_key.material,
        *(key.material for key in keyring.audit_keys.values()),
    ]


def _assert_no_key_material(path: Path, keyring: Keyring) -> None:
    raw = path.read_bytes()
    for material in _materials(keyring):
        for form in (
            material,
            material.hex().encode(),
            base64.b64encode(material),
            base64.urlsafe_b64encode(material),
        ):
            assert form not in raw


def _stored_entries(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return [
        *document["data_keys"].values(),
        document["index_key"],
        *document.get("audit_keys", {}).values(),
    ]


# --------------------------------------------------------------------------- the file


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("suite", SUITES)
def test_keys_wrap_leaves_no_key_material_in_the_file(
    tmp_path: Path, on_token: dict[str, str], kek_label: str, suite: str, mechanism: str
) -> None:
    path = tmp_path / "data" / "keyring.json"
    plain = Keyring.generate(suite)
    plain.rotate()
    plain.rotate_audit_key()
    plain.save(path)

    ran = _cli(
        "keys",
        "wrap",
        env={
            **os.environ,
            "RELIEF_DATA_DIR": str(path.parent),
            "RELIEF_PKCS11_MECHANISM": mechanism,
        },
    )

    assert ran.code == 0, ran.err
    assert "5 个密钥 (数据密钥 2 个, 盲索引密钥 1 个, 审计密钥 2 个)" in ran.out
    assert "其中 5 个原为明文" in ran.out
    _assert_no_key_material(path, plain)
    assert json.loads(path.read_text())["format"] == 2
    for entry in _stored_entries(path):
        assert "key" not in entry
        assert entry["wrapped"]["kek"] == kek_label
        assert entry["wrapped"]["mechanism"] == mechanism
    assert path.stat().st_mode & 0o777 == 0o600
    # Unwrapped in memory, the very same keys.
    opened = Keyring.load(path, _kek(mechanism))
    assert _materials(opened) == _materials(plain)
    assert (opened.primary_id, opened.audit_primary_id) == (
        plain.primary_id,
        plain.audit_primary_id,
    )
    # Without the token: refused, naming what is missing.
    with pytest.raises(ConfigurationError) as refused:
        Keyring.load(path)
    assert kek_label in refused.value.message
    assert "RELIEF_PKCS11_MODULE" in refused.value.message
    assert Keyring.protection(path).plain == []


def test_a_wrapped_key_moved_or_altered_in_the_file_does_not_unwrap(
    tmp_path: Path, on_token: dict[str, str]
) -> None:
    """AES-GCM binds each wrapped key to its role, id and algorithm: putting the index key's
    wrapped bytes in a data key's place (or flipping a bit) is refused, not a silent swap."""
    path = tmp_path / "keyring.json"
    Keyring.load_or_create(path, SUITES[0], _kek())
    original = json.loads(path.read_text())
    data_id = original["primary"]

    moved = json.loads(path.read_text())
    moved["data_keys"][data_id]["wrapped"] = original["index_key"]["wrapped"]
    path.write_text(json.dumps(moved))
    with pytest.raises(ConfigurationError) as refused:
        Keyring.load(path, _kek())
    assert data_id in refused.value.message
    assert "篡改" in refused.value.message

    altered = json.loads(json.dumps(original))
    value = bytearray(base64.b64decode(altered["index_key"]["wrapped"]["value"]))
    value[-1] ^= 1
    altered["index_key"]["wrapped"]["value"] = base64.b64encode(bytes(value)).decode()
    path.write_text(json.dumps(altered))
    with pytest.raises(ConfigurationError, match="无法用"):
        Keyring.load(path, _kek())


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(st.sampled_from(["rotate", "rotate-sm4", "audit", "retire"]), max_size=6),
    mechanism=st.sampled_from(MECHANISMS),
)
def test_any_edited_keyring_unwraps_to_exactly_the_keys_it_held(
    tmp_path_factory: pytest.TempPathFactory,
    on_token: dict[str, str],
    steps: list[str],
    mechanism: str,
) -> None:
    path = tmp_path_factory.mktemp("ring") / "keyring.json"
    kek = _kek(mechanism)
    Keyring.load_or_create(path, SUITES[0], kek)
    for step in steps:
        with Keyring.editing(path, kek) as keyring:
            if step == "rotate":
                keyring.rotate()
            elif step == "rotate-sm4":
                keyring.rotate("SM4-GCM")
            elif step == "audit":
                keyring.rotate_audit_key()
            else:
                retired = [key for key in keyring.data_keys if key != keyring.primary_id]
                if retired:
                    keyring.retire(retired[0])
        expected = keyring
    held = Keyring.load(path, kek)
    if steps:
        assert _materials(held) == _materials(expected)
        assert held.primary_id == expected.primary_id
    assert held.wrapped
    _assert_no_key_material(path, held)


# --------------------------------------------------------------------------- serving


def _settings_env(harness: Harness) -> dict[str, str]:
    settings = harness.runtime.settings
    return {
        **os.environ,
        "RELIEF_DATA_DIR": str(settings.data_dir),
        "RELIEF_DATABASE_URL": settings.resolved_database_url,
    }


async def _check_reads(harness: Harness, count: int) -> None:
    for person in harness.persons[:count]:
        token = harness.token("medical_insurance", "province", person.region_code[:2])
        body = await harness.query(token, LOOKUP, {"id": person.id_number})
        assert "errors" not in body, body
        assert body["data"]["person"] == {
            "idNumber": person.id_number,
            "name": person.name,
            "phone": person.phone,
            "address": person.address,
        }


async def _wait_until_sealing_with(harness: Harness, key_id: str) -> None:
    vault = harness.runtime.vault
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = vault.seal(uuid.uuid4(), "name", "探针")
        assert probe is not None
        if vault.cipher.key_id_of(probe) == key_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway did not pick up {key_id}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def wrapped_harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    on_token: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Harness]:
    monkeypatch.setenv("RELIEF_KEYRING_RELOAD_SECONDS", "0.2")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database(f"pkcs11_{uuid.uuid4().hex[:8]}")
    built = await build_harness(tmp_path / "data", url, backend=request.param, persons=30)
    yield built
    await built.close()


async def test_a_wrapped_keyring_serves_rotates_and_reencrypts(
    wrapped_harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness = wrapped_harness
    path = harness.runtime.settings.keyring_path
    # Created wrapped from the start: the gateway never wrote a plaintext key.
    assert Keyring.protection(path).plain == []
    await _check_reads(harness, 10)
    old = Keyring.load(path, _kek()).primary_id
    log_file = tmp_path / "cli.log"
    env = {**_settings_env(harness), "RELIEF_LOG_FILE": str(log_file)}

    rotated = await asyncio.to_thread(_cli, "keys", "rotate", env=env)
    assert rotated.code == 0, rotated.err
    assert "文件中没有明文密钥" in rotated.out
    keyring = Keyring.load(path, _kek())
    new = keyring.primary_id
    assert new != old
    assert new in rotated.out
    _assert_no_key_material(path, keyring)
    # The running gateway unwraps the rewritten file through the token, without a restart.
    await _wait_until_sealing_with(harness, new)
    await _check_reads(harness, 10)

    reencrypted = await asyncio.to_thread(_cli, "keys", "reencrypt", "--batch", "7", env=env)
    assert reencrypted.code == 0, reencrypted.err
    assert "所有密文均已使用主密钥" in reencrypted.out
    status = await asyncio.to_thread(_cli, "keys", "status", env=env)
    assert status.code == 0, status.err
    assert "密文 0 个" in next(line for line in status.out.splitlines() if old in line)
    assert "全部 4 个密钥由密码机中的密钥加密密钥" in status.out
    retired = await asyncio.to_thread(_cli, "keys", "retire", old, env=env)
    assert retired.code == 0, retired.err
    await asyncio.sleep(0.5)
    await _check_reads(harness, 30)
    assert harness.runtime.vault.cipher.data_key_ids == [new]
    _assert_no_key_material(path, Keyring.load(path, _kek()))

    # The PIN is nowhere: not in the commands' output (checked by _cli), their log file, this
    # process's log records, the settings' or the protector's repr.
    logged = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
    records = "\n".join(record.getMessage() for record in caplog.records)
    for text in (logged, records, repr(harness.runtime.settings), repr(_kek())):
        assert PIN not in text


# --------------------------------------------------------------------------- another machine


@pytest.fixture
def wrapped_dir(tmp_path: Path, on_token: dict[str, str]) -> Path:
    directory = tmp_path / "data"
    Keyring.load_or_create(directory / "keyring.json", SUITES[1], _kek())
    return directory


def test_a_keyring_copied_without_its_token_opens_nothing(
    wrapped_dir: Path, tmp_path: Path, token: SoftToken, kek_label: str, on_token: dict[str, str]
) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(wrapped_dir, copy)
    base = {**os.environ, "RELIEF_DATA_DIR": str(copy)}

    # Another machine with a token of the same label and PIN and a KEK of the same label: the
    # labels match, the key does not.
    other = make_token(tmp_path / "other-hsm", token.module, label=TOKEN_LABEL, pin=PIN)
    generate_kek_elsewhere(other, kek_label)
    ran = _cli("keys", "status", env={**base, "SOFTHSM2_CONF": str(other.conf)})
    assert ran.code == 2
    assert "无法用密码机令牌" in ran.err
    assert "解开密钥" in ran.err
    assert "从别处复制而来" in ran.err

    # A token without that KEK.
    bare = make_token(tmp_path / "bare-hsm", token.module, label=TOKEN_LABEL, pin=PIN)
    ran = _cli("keys", "status", env={**base, "SOFTHSM2_CONF": str(bare.conf)})
    assert ran.code == 2
    assert f"找不到标签为 {kek_label} 的密钥加密密钥" in ran.err

    # No token of that label at all.
    ran = _cli("keys", "status", env={**base, "RELIEF_PKCS11_TOKEN_LABEL": "not-this-machine"})
    assert ran.code == 2
    assert "找不到标签为 not-this-machine 的令牌" in ran.err

    # No module on this machine.
    ran = _cli("keys", "status", env={**base, "RELIEF_PKCS11_MODULE": str(tmp_path / "no.so")})
    assert ran.code == 2
    assert "找不到密码机 PKCS#11 模块" in ran.err

    # No cipher machine configured: the file says what protects it, and opens nothing.
    plain_env = {k: v for k, v in base.items() if not k.startswith("RELIEF_PKCS11_")}
    ran = _cli("keys", "status", env=plain_env)
    assert ran.code == 2
    assert f"由密码机中的密钥加密密钥 {kek_label} 保护" in ran.err


def test_a_wrong_pin_is_refused_without_being_echoed(
    wrapped_dir: Path, tmp_path: Path, on_token: dict[str, str]
) -> None:
    base = {**os.environ, "RELIEF_DATA_DIR": str(wrapped_dir)}
    ran = _cli("keys", "rotate", env={**base, "RELIEF_PKCS11_PIN": WRONG_PIN})
    assert ran.code == 2
    assert "PIN 不正确" in ran.err
    assert "RELIEF_PKCS11_PIN" in ran.err  # where the PIN came from, never what it is

    pin_file = tmp_path / "pin"
    pin_file.write_text(WRONG_PIN + "\n")
    pin_file.chmod(0o600)
    env = {k: v for k, v in base.items() if k != "RELIEF_PKCS11_PIN"}
    ran = _cli("keys", "rotate", env={**env, "RELIEF_PKCS11_PIN_FILE": str(pin_file)})
    assert ran.code == 2
    assert f"PIN 来自 RELIEF_PKCS11_PIN_FILE {pin_file}" in ran.err

    # Nothing changed, and the right PIN from a file works.
    pin_file.write_text(PIN + "\n")
    ran = _cli("keys", "rotate", env={**env, "RELIEF_PKCS11_PIN_FILE": str(pin_file)})
    assert ran.code == 0, ran.err
    both = _cli("keys", "rotate", env={**base, "RELIEF_PKCS11_PIN_FILE": str(pin_file)})
    assert both.code == 2
    assert "只能设置其一" in both.err


def test_kek_rotation_moves_every_key_and_the_old_kek_is_destroyed(
    wrapped_dir: Path, tmp_path: Path, token: SoftToken, kek_label: str, on_token: dict[str, str]
) -> None:
    """The KEK rotates without touching the data: a new KEK wraps the same keys, then the old
    one is destroyed in the token, and a backup wrapped by it is unreadable for good."""
    path = wrapped_dir / "keyring.json"
    backup = tmp_path / "backup.json"
    shutil.copy2(path, backup)
    before = _materials(Keyring.load(path, _kek()))
    new_label = f"kek-new-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "RELIEF_DATA_DIR": str(wrapped_dir), "RELIEF_PKCS11_KEY_LABEL": new_label}

    moved = _cli("keys", "wrap", "--generate-kek", env=env)
    assert moved.code == 0, moved.err
    assert f"已在密码机令牌 {TOKEN_LABEL} 中生成密钥加密密钥 {new_label}" in moved.out
    assert f"原密钥加密密钥 {kek_label} 已不再使用" in moved.out
    assert Keyring.protection(path).kek_labels == {new_label}

    refused = _cli("keys", "destroy-kek", new_label, "--confirm", env=env)
    assert refused.code == 2
    assert "当前配置的密钥加密密钥" in refused.err
    unconfirmed = _cli("keys", "destroy-kek", kek_label, env=env)
    assert unconfirmed.code == 2
    assert "--confirm" in unconfirmed.err
    again = _cli("keys", "wrap", "--generate-kek", env=env)
    assert again.code == 2
    assert "已有标签为" in again.err

    destroyed = _cli("keys", "destroy-kek", kek_label, "--confirm", env=env)
    assert destroyed.code == 0, destroyed.err
    new_kek = protector_from_settings(load_settings(pkcs11_key_label=new_label))
    assert new_kek is not None
    assert _materials(Keyring.load(path, new_kek)) == before
    with pytest.raises(ConfigurationError, match=f"找不到标签为 {kek_label}"):
        Keyring.load(backup, new_kek)


def test_unwrap_is_guarded_and_restores_the_same_keys(
    wrapped_dir: Path, on_token: dict[str, str]
) -> None:
    path = wrapped_dir / "keyring.json"
    before = _materials(Keyring.load(path, _kek()))
    env = {**os.environ, "RELIEF_DATA_DIR": str(wrapped_dir)}

    refused = _cli("keys", "unwrap", env=env)
    assert refused.code == 2
    assert "--confirm" in refused.err
    assert Keyring.protection(path).plain == []

    done = _cli("keys", "unwrap", "--confirm", env=env)
    assert done.code == 0, done.err
    assert Keyring.protection(path).wrapped == {}
    assert _materials(Keyring.load(path)) == before  # no KEK needed any more


def test_an_extractable_key_is_not_accepted_as_kek(
    tmp_path: Path, token: SoftToken, on_token: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pkcs11 import Attribute, KeyType

    from gateway.crypto._pkcs11 import _session

    label = f"weak-{uuid.uuid4().hex[:6]}"
    with _session(token.settings(label), rw=True) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    monkeypatch.setenv("RELIEF_PKCS11_KEY_LABEL", label)
    with pytest.raises(ConfigurationError, match="可被导出"):
        Keyring.load_or_create(tmp_path / "keyring.json", SUITES[0], _kek())
    assert not (tmp_path / "keyring.json").exists()


# --------------------------------------------------------------------------- production


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve(data_dir: Path, pkcs11: dict[str, str] | None, **overrides: str) -> Ran:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_ENV="production",
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
        RELIEF_PROVINCE="shanxi",
        **(pkcs11 or {}),
        **overrides,
    )
    done = subprocess.run(
        [str(SCRIPT), "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ran = Ran(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in ran.text
    assert PIN not in ran.text
    assert WRONG_PIN not in ran.text
    assert "Uvicorn running" not in ran.text
    return ran


@pytest.fixture
def production_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prod"
    directory.mkdir(mode=0o700)
    Keyring.generate(SUITES[1]).save(directory / "keyring.json")
    TokenService.from_file(directory / "token.key", "relief-gateway", create=True)
    (directory / "token.key").write_text(RANDOM_TOKEN_KEY)
    return directory


def test_production_refuses_a_plaintext_keyring_when_the_cipher_machine_is_on(
    production_dir: Path, on_token: dict[str, str]
) -> None:
    ran = _serve(production_dir, on_token)
    assert ran.code == 2
    assert "生产环境已启用密码机" in ran.err
    assert "明文存放" in ran.err
    assert "keys wrap" in ran.err


def test_production_with_a_wrapped_keyring(
    production_dir: Path, tmp_path: Path, on_token: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapped = _cli("keys", "wrap", env={**os.environ, "RELIEF_DATA_DIR": str(production_dir)})
    assert wrapped.code == 0, wrapped.err

    # Without the module and PIN: refused, saying what is needed.
    ran = _serve(production_dir, None)
    assert ran.code == 2
    assert "需要配置密码机" in ran.err
    assert "RELIEF_PKCS11_MODULE" in ran.err
    # A wrong PIN: refused, not echoed.
    ran = _serve(production_dir, {**on_token, "RELIEF_PKCS11_PIN": WRONG_PIN})
    assert ran.code == 2
    assert "PIN 不正确" in ran.err
    # A PIN file others can read: refused like a key file.
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN)
    pin_file.chmod(0o644)
    from_file = {k: v for k, v in on_token.items() if k != "RELIEF_PKCS11_PIN"}
    ran = _serve(production_dir, {**from_file, "RELIEF_PKCS11_PIN_FILE": str(pin_file)})
    assert ran.code == 2
    assert "密码机 PIN 文件" in ran.err
    assert "权限过宽" in ran.err
    # The module missing on this machine.
    ran = _serve(production_dir, {**on_token, "RELIEF_PKCS11_MODULE": str(tmp_path / "x.so")})
    assert ran.code == 2
    assert "RELIEF_PKCS11_MODULE" in ran.err

    # With all of it right, the production checks pass and the keyring opens.
    pin_file.chmod(0o600)
    monkeypatch.delenv("RELIEF_PKCS11_PIN")
    monkeypatch.delenv("RELIEF_TODAY", raising=False)
    sound = load_settings(
        env="production",
        province="shanxi",
        data_dir=production_dir,
        database_url=f"sqlite+aiosqlite:///{production_dir / 'relief.db'}",
        pkcs11_pin_file=pin_file,
    )
    production.check(sound)
    assert open_keyring(sound).wrapped
    assert PIN not in repr(sound)


def test_new_keys_draw_on_the_cipher_machines_generator(
    tmp_path: Path, on_token: dict[str, str]
) -> None:
    """With a KEK configured, every new key's material mixes in C_GenerateRandom's bytes (the
    certified module's RNG), XORed with the kernel's."""

    class Counting(TokenProtector):
        sizes: list[int]

        def random(self, size: int) -> bytes:
            self.sizes.append(size)
            return super().random(size)

    counting = Counting(_kek().token)
    counting.sizes = []
    path = tmp_path / "keyring.json"
    Keyring.load_or_create(path, SUITES[1], counting)
    assert counting.sizes == [16, 32, 32]  # SM4 data key, HMAC-SM3 index and audit keys
    with Keyring.editing(path, counting) as keyring:
        keyring.rotate("AES-256-GCM")
        keyring.rotate_audit_key()
    assert counting.sizes[3:] == [32, 32]
    assert len({*_materials(Keyring.load(path, _kek()))}) == 5


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"RELIEF_PKCS11_MECHANISM": "SM4-ECB"}, ("RELIEF_PKCS11_MECHANISM", "SM4-ECB")),
        ({"RELIEF_PKCS11_TOKEN_LABEL": ""}, ("RELIEF_PKCS11_TOKEN_LABEL",)),
        ({"RELIEF_PKCS11_PIN": ""}, ("RELIEF_PKCS11_PIN_FILE", "RELIEF_PKCS11_PIN")),
        ({"RELIEF_PKCS11_PIN_FILE": "/nonexistent/pin"}, ("只能设置其一",)),
        ({"RELIEF_PKCS11_KEY_LABEL": " "}, ("RELIEF_PKCS11_KEY_LABEL",)),
    ],
)
def test_incomplete_cipher_machine_settings_are_one_clear_refusal(
    wrapped_dir: Path, on_token: dict[str, str], overrides: dict[str, str], words: tuple[str, ...]
) -> None:
    ran = _cli(
        "keys", "status", env={**os.environ, "RELIEF_DATA_DIR": str(wrapped_dir), **overrides}
    )
    assert ran.code == 2
    for word in words:
        assert word in ran.err


def test_a_reload_the_token_refuses_keeps_the_keys_in_memory(
    wrapped_dir: Path, token: SoftToken, kek_label: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cipher machine refusing a reload (here: the PIN changed under a running process) is
    logged once, without the PIN, and the process keeps serving with the keys it holds."""
    path = wrapped_dir / "keyring.json"
    running = Keyring.load(path, _kek())
    held = running.primary_id
    with Keyring.editing(path, _kek()) as keyring:
        keyring.rotate()
    wrong = TokenProtector(replace(token.settings(kek_label), pin=WRONG_PIN))
    running.kek = wrong
    with caplog.at_level("WARNING", logger="gateway.crypto"):
        assert not running.reload_if_changed()
        assert not running.reload_if_changed()  # once per version of the file
    refusals = [r.getMessage() for r in caplog.records if "PIN 不正确" in r.getMessage()]
    assert len(refusals) == 1
    assert WRONG_PIN not in refusals[0]
    assert running.primary_id == held
    # With the token answering again, the next version of the file is taken.
    running.kek = _kek()
    with Keyring.editing(path, _kek()) as keyring:
        latest = keyring.rotate()
    assert running.reload_if_changed()
    assert running.primary_id == latest.key_id
    assert held in running.data_keys


def test_wrap_without_a_cipher_machine_names_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keyring.json"
    Keyring.generate(SUITES[0]).save(path)
    before = path.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_PKCS11_")}
    ran = _cli("keys", "wrap", env={**env, "RELIEF_DATA_DIR": str(path.parent)})
    assert ran.code == 2
    assert "keys wrap 需要配置密码机" in ran.err
    assert "RELIEF_PKCS11_MODULE" in ran.err
    assert path.read_bytes() == before
