"""What production refuses to start with (``check``, called by ``Runtime.create``), each refusal one
Chinese sentence naming the file or setting, raised as ``ConfigurationError`` (the CLI prints
it and exits 2, no traceback).

    keys        keyring and token key: present, regular files, readable by this process, not
                readable or writable by group/others (0600), in a directory others cannot write
    token key   at least 32 bytes, not a key published anywhere (samples, the benchmark rig),
                not a placeholder (fewer than 16 distinct characters: "changeme…", "0000…")
    province    RELIEF_PROVINCE set explicitly (a Shanxi gateway must not fall back to the
                Shandong default), with rules that load and name a real GB/T 2260 province
                whose key matches
    logging     RELIEF_LOG_FORMAT json/text, RELIEF_METRICS_ALLOW valid networks
    identity    RELIEF_OIDC_* / RELIEF_OIDC_FILE valid, the platforms' discovery and JWKS over
                https (loopback excepted); with a platform configured, the gateway's own HS256
                tokens are refused unless RELIEF_OIDC_ALLOW_LOCAL_TOKENS (docs/identity.md)
    cipher      with RELIEF_PKCS11_MODULE set: the module present, token label and PIN
    machine     configured (a PIN file private like the keys), and every key of the keyring
                stored wrapped by the KEK in the token (docs/key-lifecycle.md); the token
                itself (PIN, KEK) is tried when the keyring is opened, right after
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.domain.errors import ConfigurationError
from gateway.runtime.issuers import issuer_configs

if TYPE_CHECKING:
    from gateway.domain.settings import Settings

MIN_TOKEN_KEY_BYTES = 32
MIN_DISTINCT_CHARACTERS = 16
# Keys that were ever written down where someone could copy them: a deployment using one
# accepts tokens anyone can mint. Compared after stripping whitespace.
KNOWN_TOKEN_KEYS = frozenset(
    {
        "peer-bench-jwt-secret-loopback-only-0123456789",  # ../shared/bench-peer/peer.env
        "relief-gateway-demo-token-key-do-not-use-in-production",
        "change-me-to-a-long-random-secret-of-32-bytes-or-more",
        "please-change-this-secret-key-in-production-deployments",
        "your-256-bit-secret",
        "secretkey" * 4,
        "changeme" * 4,
    }
)


def check(settings: Settings) -> None:
    """Refuse settings that are only acceptable on a developer's machine (nothing to check in
    development)."""
    if not settings.is_production:
        return
    if settings.today:
        raise ConfigurationError("生产环境不允许设置 RELIEF_TODAY (测试用的日期)")
    if not settings.database_url:
        raise ConfigurationError("生产环境必须显式设置 RELIEF_DATABASE_URL")
    _check_province(settings)
    for path, what in (
        (settings.keyring_path, "密钥环文件"),
        (settings.token_key_path, "令牌签名密钥文件"),
    ):
        _check_private_file(path, what)
    _check_token_key(settings.token_key_path)
    _check_cipher_machine(settings)
    if settings.log_format not in (None, "json", "text"):
        raise ConfigurationError(
            f"RELIEF_LOG_FORMAT 应为 json 或 text, 收到 {settings.log_format!r}"
        )
    try:
        _ = settings.metrics_networks
    except ValueError:
        raise ConfigurationError(
            "RELIEF_METRICS_ALLOW 应为逗号分隔的网段 (如 10.20.0.0/16) 或 *, "
            f"收到 {settings.metrics_allow!r}"
        ) from None
    issuer_configs(settings)  # the identity platforms: Chinese refusals, https only


def _check_province(settings: Settings) -> None:
    from gateway.domain import regions
    from gateway.loop.config import load_rules

    if "province" not in settings.model_fields_set:
        raise ConfigurationError(
            "生产环境必须显式设置 RELIEF_PROVINCE (shandong、shanxi 或 anhui): "
            "省份决定预警标准和待遇起止规则, 不能默认"
        )
    rules = load_rules(settings.province, settings.resolved_rules_file)
    known = {province.code: province.key for province in regions.provinces()}
    if known.get(rules.code) != settings.province.value:
        where = settings.resolved_rules_file or "gateway/data/rules.toml"
        raise ConfigurationError(
            f"规则文件 {where} 中 provinces.{settings.province.value}.code = {rules.code!r} "
            f"不是 {settings.province.value} 的省级行政区划代码: 未知省份, 拒绝启动"
        )


def _check_private_file(path: Path, what: str) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigurationError(f"生产环境缺少{what} {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{what} {path} 不是普通文件")
    if info.st_mode & 0o077:
        # Keys readable by other users are keys already shared: refuse, do not chmod.
        raise ConfigurationError(f"{what} {path} 权限过宽, 应仅属主可读写 (chmod 600)")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{what} {path} 无法读取: 请以文件属主身份运行网关")
    parent = path.parent.resolve()
    if parent.stat().st_mode & 0o002 and not parent.stat().st_mode & stat.S_ISVTX:
        # Anyone could replace the file with a keyring of their own.
        raise ConfigurationError(f"{what}所在目录 {parent} 对所有用户可写, 请改为仅属主可写")


def _check_token_key(path: Path) -> None:
    key = path.read_bytes().strip()
    if len(key) < MIN_TOKEN_KEY_BYTES:
        raise ConfigurationError(
            f"令牌签名密钥文件 {path} 中的密钥太短 ({len(key)} 字节, 至少 "
            f"{MIN_TOKEN_KEY_BYTES} 字节); 删除后在开发环境执行 relief-gateway token 可生成新密钥, "
            "或写入 openssl rand -base64 48 的输出"
        )
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text in KNOWN_TOKEN_KEYS:
        raise ConfigurationError(
            f"令牌签名密钥文件 {path} 使用的是公开的示例/默认密钥, 任何人都能伪造令牌; "
            "请换成随机生成的密钥"
        )
    if len(set(key)) < MIN_DISTINCT_CHARACTERS:
        raise ConfigurationError(
            f"令牌签名密钥文件 {path} 中的密钥像是占位符 (只有 {len(set(key))} 种不同字符); "
            "请换成随机生成的密钥"
        )


def _check_cipher_machine(settings: Settings) -> None:
    from gateway.crypto import Keyring, TokenSettings

    if settings.pkcs11_module is None:
        return
    if not settings.pkcs11_module.is_file():
        raise ConfigurationError(
            f"RELIEF_PKCS11_MODULE 指向的密码机 PKCS#11 模块 {settings.pkcs11_module} 不存在"
        )
    if settings.pkcs11_pin_file is not None:
        _check_private_file(settings.pkcs11_pin_file, "密码机 PIN 文件")
    TokenSettings.from_settings(settings)  # token label and exactly one PIN source
    protection = Keyring.protection(settings.keyring_path)
    if protection.plain:
        raise ConfigurationError(
            "生产环境已启用密码机 (RELIEF_PKCS11_MODULE), 但密钥环文件 "
            f"{settings.keyring_path} 中有 {len(protection.plain)} 个密钥以明文存放, "
            "未由密码机中的密钥加密密钥保护: 拒绝启动; "
            "请先运行 relief-gateway keys wrap"
        )
