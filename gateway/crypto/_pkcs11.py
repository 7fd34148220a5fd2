"""The keyring's key-encryption key (KEK) in a PKCS#11 token: the province's cipher machine
(密码机, GB/T 37092 certified) in production, Debian's SoftHSM2 in tests.

The KEK is generated inside the token as a sensitive, non-extractable secret key
(:func:`generate_kek`) and never leaves it. :class:`TokenProtector` wraps and unwraps the
keyring's keys with it (``Keyring.load`` / ``Keyring.save`` call it), so keyring.json holds
only wrapped keys and a copy of it is useless without the token and its PIN.

Mechanisms (``RELIEF_PKCS11_MECHANISM``; each wrapped key records its own, so the setting can
change without rewrapping):

    AES-GCM            C_Encrypt / C_Decrypt with CKM_AES_GCM: 96-bit random IV, 128-bit tag,
                       associated data naming the key (role, id, algorithm): a wrapped value
                       moved to another entry of the file does not unwrap. The default.
    AES-KEY-WRAP-PAD   C_WrapKey / C_UnwrapKey with CKM_AES_KEY_WRAP_PAD (RFC 5649): the
                       key enters the token as a session object to be wrapped, and is created
                       extractable there to be read back after unwrapping. For modules whose
                       policy allows wrapping but not C_Encrypt with a KEK.

A 国密 cipher machine's SM4 mechanisms (SM4-ECB/CBC/GCM, key type SM4) are vendor-defined
numbers (CKM_VENDOR_DEFINED + n), different per vendor: :data:`MECHANISMS` is the one place to
add the vendor's entry (docs/key-lifecycle.md "SM4 in the cipher machine").

Errors are ``ConfigurationError`` with one Chinese sentence naming the module, token, KEK or
setting: never the PIN, never key material.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from gateway.crypto._keys import KeyName, Keyring, WrappedKey
from gateway.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from gateway.domain.settings import Settings

GCM_IV_BYTES = 12
GCM_TAG_BITS = 128
KEK_BITS = 256
MECHANISMS = ("AES-GCM", "AES-KEY-WRAP-PAD")

# One library object per module and process: C_Initialize once (a forked child initialises
# again: PKCS#11 §5.1), and token operations one at a time (C_Initialize without locking
# callbacks promises the module no concurrent calls).
_libraries: dict[tuple[str, int], Any] = {}
_token_lock = threading.RLock()


@dataclass(frozen=True)
class TokenSettings:
    """Where the KEK lives. The PIN is held here in memory only; ``repr`` omits it."""

    module: Path
    token_label: str
    kek_label: str
    mechanism: str
    pin: str
    pin_source: str  # "RELIEF_PKCS11_PIN_FILE /path" or "RELIEF_PKCS11_PIN": for messages

    def __repr__(self) -> str:
        return (
            f"TokenSettings({str(self.module)!r}, token={self.token_label!r}, "
            f"kek={self.kek_label!r}, {self.mechanism})"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSettings | None:
        """None when no module is configured (keys then stay in the file as they are)."""
        if settings.pkcs11_module is None:
            return None
        if not settings.pkcs11_token_label:
            raise ConfigurationError(
                "已设置 RELIEF_PKCS11_MODULE, 还须设置 RELIEF_PKCS11_TOKEN_LABEL (密码机令牌标签)"
            )
        if not settings.pkcs11_key_label.strip():
            raise ConfigurationError("RELIEF_PKCS11_KEY_LABEL (密钥加密密钥标签) 不能为空")
        pin, source = _read_pin(settings)
        return cls(
            module=settings.pkcs11_module,
            token_label=settings.pkcs11_token_label,
            kek_label=settings.pkcs11_key_label.strip(),
            mechanism=str(settings.pkcs11_mechanism.value),
            pin=pin,
            pin_source=source,
        )


def _read_pin(settings: Settings) -> tuple[str, str]:
    from_env = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin else ""
    if settings.pkcs11_pin_file is not None and from_env:
        raise ConfigurationError(
            "RELIEF_PKCS11_PIN_FILE 与 RELIEF_PKCS11_PIN 只能设置其一 (建议用 PIN 文件, 权限 600)"
        )
    if settings.pkcs11_pin_file is not None:
        path = settings.pkcs11_pin_file
        try:
            pin = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise ConfigurationError(f"找不到密码机 PIN 文件 {path}") from None
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError(f"无法读取密码机 PIN 文件 {path}") from None
        if not pin:
            raise ConfigurationError(f"密码机 PIN 文件 {path} 是空的")
        return pin, f"RELIEF_PKCS11_PIN_FILE {path}"
    if from_env:
        return from_env, "RELIEF_PKCS11_PIN"
    raise ConfigurationError(
        "已设置 RELIEF_PKCS11_MODULE, 还须提供密码机令牌的 PIN: RELIEF_PKCS11_PIN_FILE (PIN 文件,"
        " 权限 600) 或 RELIEF_PKCS11_PIN (环境变量); PIN 不保存在数据库中"
    )


class TokenProtector:
    """Wraps and unwraps keyring keys with the KEK in the token (``Keyring``'s ``kek``)."""

    def __init__(self, token: TokenSettings) -> None:
        if token.mechanism not in MECHANISMS:
            raise ConfigurationError(
                f"RELIEF_PKCS11_MECHANISM 应为 {'、'.join(MECHANISMS)} 之一, "
                f"收到 {token.mechanism!r}"
            )
        self.token = token

    def __repr__(self) -> str:
        return f"TokenProtector({self.token!r})"

    @property
    def description(self) -> str:
        return (
            f"密码机令牌 {self.token.token_label} 中的密钥加密密钥 {self.token.kek_label}"
            f" ({self.token.mechanism})"
        )

    def wrap(self, keys: Sequence[tuple[KeyName, bytes]]) -> list[WrappedKey]:
        token = self.token
        with _session(token) as session:
            kek = _find_kek(session, token, token.kek_label)
            wrapped = []
            for name, material in keys:
                try:
                    value = _WRAP[token.mechanism](session, kek, name, material)
                except p11.PKCS11Error as exc:
                    raise ConfigurationError(
                        f"密码机无法用密钥加密密钥 {token.kek_label} ({token.mechanism}) 加密密钥 "
                        f"{name.key_id}: {_reason(exc)}"
                    ) from None
                wrapped.append(WrappedKey(token.kek_label, token.mechanism, value))
        return wrapped

    def random(self, size: int) -> bytes:
        """``size`` bytes from the token's random number generator (C_GenerateRandom)."""
        with _session(self.token) as session:
            try:
                generated: bytes = session.generate_random(size * 8)
            except p11.PKCS11Error as exc:
                raise ConfigurationError(
                    f"{_where(self.token)}无法生成随机数: {_reason(exc)}"
                ) from None
        return generated

    def unwrap(self, keys: Sequence[tuple[KeyName, WrappedKey]]) -> list[bytes]:
        token = self.token
        with _session(token) as session:
            keks: dict[str, Any] = {}
            materials = []
            for name, item in keys:
                if item.mechanism not in _UNWRAP:
                    raise ConfigurationError(
                        f"密钥 {name.key_id} 的封装机制 {item.mechanism!r} 不受支持"
                        f" (支持 {'、'.join(MECHANISMS)})"
                    )
                if item.kek not in keks:
                    keks[item.kek] = _find_kek(session, token, item.kek)
                try:
                    materials.append(_UNWRAP[item.mechanism](session, keks[item.kek], name, item))
                except p11.PKCS11Error:
                    # Wrong KEK (a keyring copied from another machine), tampered or moved value:
                    # the token cannot tell which, and neither do we.
                    raise ConfigurationError(
                        f"无法用{_where(token)}中的密钥加密密钥 {item.kek} 解开密钥 {name.key_id}: "
                        "此密钥环不是由这台密码机中的密钥保护的 (从别处复制而来?), 或文件已被篡改"
                    ) from None
        return materials


def protector_from_settings(settings: Settings) -> TokenProtector | None:
    """The configured KEK, or None when ``RELIEF_PKCS11_MODULE`` is unset. Nothing is opened
    yet: the token is first used when a keyring is loaded or saved."""
    token = TokenSettings.from_settings(settings)
    return None if token is None else TokenProtector(token)


def generate_kek(token: TokenSettings, label: str | None = None) -> str:
    """Generate the KEK in the token: AES-256 by the token's own generator, stored on the
    token, private, sensitive, never extractable. Refused if a key with the label exists.
    Returns the label."""
    label = label or token.kek_label
    with _session(token, rw=True) as session:
        try:
            _find_kek(session, token, label)
        except ConfigurationError:
            pass
        else:
            raise ConfigurationError(f"{_where(token)}中已有标签为 {label} 的密钥, 未重新生成")
        try:
            session.generate_key(
                KeyType.AES,
                KEK_BITS,
                label=label,
                store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
                },
            )
        except p11.PKCS11Error as exc:
            raise ConfigurationError(
                f"无法在{_where(token)}中生成密钥加密密钥 {label}: {_reason(exc)}"
            ) from None
    return label


def destroy_kek(token: TokenSettings, label: str) -> None:
    """Destroy a KEK in the token (after ``keys wrap`` moved every key to a new one): whatever
    it wrapped is unreadable from then on."""
    with _session(token, rw=True) as session:
        kek = _find_kek(session, token, label)
        try:
            kek.destroy()
        except p11.PKCS11Error as exc:
            raise ConfigurationError(
                f"无法销毁{_where(token)}中的密钥 {label}: {_reason(exc)}"
            ) from None


# ------------------------------------------------------------------------- token access


def _where(token: TokenSettings) -> str:
    return f"密码机令牌 {token.token_label} "


def _library(module: Path) -> Any:
    key = (str(module), os.getpid())
    library = _libraries.get(key)
    if library is None:
        if not module.is_file():
            raise ConfigurationError(
                f"找不到密码机 PKCS#11 模块 {module} (RELIEF_PKCS11_MODULE): 此机器没有安装该模块"
            )
        try:
            library = pkcs11.lib(str(module))
        except (p11.PKCS11Error, OSError):
            raise ConfigurationError(
                f"无法载入密码机 PKCS#11 模块 {module} (RELIEF_PKCS11_MODULE)"
            ) from None
        _libraries[key] = library
    return library


@contextmanager
def _session(token: TokenSettings, *, rw: bool = False) -> Iterator[Any]:
    """A logged-in session on the token, one operation batch long."""
    with _token_lock:
        library = _library(token.module)
        try:
            found = library.get_token(token_label=token.token_label)
        except p11.NoSuchToken:
            raise ConfigurationError(
                f"密码机模块 {token.module} 中找不到标签为 {token.token_label} 的令牌"
                " (RELIEF_PKCS11_TOKEN_LABEL): 令牌未初始化, 或此机器不是该密码机所在的机器"
            ) from None
        except p11.MultipleTokensReturned:
            raise ConfigurationError(
                f"密码机模块 {token.module} 中有多个标签为 {token.token_label} 的令牌, "
                "请使用唯一标签"
            ) from None
        except p11.PKCS11Error as exc:
            raise ConfigurationError(
                f"无法访问密码机模块 {token.module} 的令牌: {_reason(exc)}"
            ) from None
        try:
            session = found.open(rw=rw, user_pin=token.pin)
        except p11.PinIncorrect:
            # The PIN itself is never quoted; where it came from is.
            raise ConfigurationError(
                f"{_where(token)}拒绝登录: PIN 不正确 (PIN 来自 {token.pin_source}); "
                "多次错误可能锁定令牌, 请核对后再试"
            ) from None
        except p11.PinLocked:
            raise ConfigurationError(
                f"{_where(token)}的用户 PIN 已被锁定, 须由密码机管理员解锁"
            ) from None
        except (p11.PinExpired, p11.PinInvalid, p11.PinLenRange):
            raise ConfigurationError(
                f"{_where(token)}拒绝登录: PIN 无效或已过期 (PIN 来自 {token.pin_source})"
            ) from None
        except p11.PKCS11Error as exc:
            raise ConfigurationError(f"无法登录{_where(token)}: {_reason(exc)}") from None
        try:
            yield session
        finally:
            session.close()  # closing the last session logs out


def _find_kek(session: Any, token: TokenSettings, label: str) -> Any:
    try:
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
    except p11.NoSuchKey:
        raise ConfigurationError(
            f"{_where(token)}中找不到标签为 {label} 的密钥加密密钥 (RELIEF_PKCS11_KEY_LABEL); "
            "新令牌请先运行 relief-gateway keys wrap --generate-kek"
        ) from None
    except p11.MultipleObjectsReturned:
        raise ConfigurationError(
            f"{_where(token)}中有多个标签为 {label} 的密钥, 请使用唯一标签"
        ) from None
    # A KEK that could be read out of the token protects nothing the token's holder could not
    # copy: refuse it (GB/T 39786 level 3: keys protected by the certified module).
    if kek[Attribute.EXTRACTABLE] or not kek[Attribute.SENSITIVE]:
        raise ConfigurationError(
            f"{_where(token)}中的密钥 {label} 可被导出 (CKA_EXTRACTABLE 或非 CKA_SENSITIVE), "
            "不能作为密钥加密密钥; 请在令牌中生成不可导出的密钥"
        )
    return kek


def _reason(exc: p11.PKCS11Error) -> str:
    # The exception's class names the PKCS#11 return value; its text may be empty.
    return type(exc).__name__


# ------------------------------------------------------------------------- mechanisms


def _wrap_gcm(session: Any, kek: Any, name: KeyName, material: bytes) -> bytes:
    iv = os.urandom(GCM_IV_BYTES)
    params = GCMParams(iv, name.context, GCM_TAG_BITS)
    sealed: bytes = kek.encrypt(material, mechanism=Mechanism.AES_GCM, mechanism_param=params)
    return iv + sealed


def _unwrap_gcm(session: Any, kek: Any, name: KeyName, item: WrappedKey) -> bytes:
    iv, sealed = item.value[:GCM_IV_BYTES], item.value[GCM_IV_BYTES:]
    if len(iv) != GCM_IV_BYTES or len(sealed) <= GCM_TAG_BITS // 8:
        raise p11.EncryptedDataLenRange()
    params = GCMParams(iv, name.context, GCM_TAG_BITS)
    material: bytes = kek.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params)
    return material


def _wrap_kwp(session: Any, kek: Any, name: KeyName, material: bytes) -> bytes:
    # A session object (gone when the session closes), extractable so it can be wrapped.
    key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: material,
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True,
        }
    )
    try:
        wrapped: bytes = kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    finally:
        key.destroy()
    return wrapped


def _unwrap_kwp(session: Any, kek: Any, name: KeyName, item: WrappedKey) -> bytes:
    key = kek.unwrap_key(
        ObjectClass.SECRET_KEY,
        KeyType.GENERIC_SECRET,
        item.value,
        mechanism=Mechanism.AES_KEY_WRAP_PAD,
        store=False,
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    try:
        material: bytes = key[Attribute.VALUE]
    finally:
        key.destroy()
    return material


_WRAP: dict[str, Callable[[Any, Any, KeyName, bytes], bytes]] = {
    "AES-GCM": _wrap_gcm,
    "AES-KEY-WRAP-PAD": _wrap_kwp,
}
_UNWRAP: dict[str, Callable[[Any, Any, KeyName, WrappedKey], bytes]] = {
    "AES-GCM": _unwrap_gcm,
    "AES-KEY-WRAP-PAD": _unwrap_kwp,
}


def open_keyring(settings: Settings, *, create: bool = False) -> Keyring:
    """The keyring of ``settings``, unwrapped with the configured KEK when there is one;
    ``create`` makes a new one (``demo``, development), wrapped from the start when the KEK is
    configured. Every process that needs keys should open them here."""
    kek = protector_from_settings(settings)
    if create:
        return Keyring.load_or_create(settings.keyring_path, settings.cipher_suite.value, kek)
    return Keyring.load(settings.keyring_path, kek)
