"""``relief-gateway keys``: online rotation of the data keys (issue 6 §3).

The operator's sequence, with the gateway serving throughout::

    relief-gateway keys init                # a new deployment's keyring (and token key)
    relief-gateway keys rotate              # new primary; running gateways load it within
                                            # RELIEF_KEYRING_RELOAD_SECONDS (default 1 s)
    relief-gateway keys reencrypt           # old ciphertexts re-sealed in batches (resumable)
    relief-gateway keys status              # ciphertexts per key: the old key should show 0
    relief-gateway keys retire dk-…         # refused while any ciphertext still uses the key

Keys in a cipher machine (RELIEF_PKCS11_*, docs/key-lifecycle.md)::

    relief-gateway keys wrap --generate-kek # new token: generate the KEK in it (non-extractable)
    relief-gateway keys wrap                # every key of keyring.json stored wrapped by the KEK;
                                            # with a new RELIEF_PKCS11_KEY_LABEL: moved to that KEK
    relief-gateway keys destroy-kek 标签 --confirm   # an old KEK nothing refers to any more
    relief-gateway keys unwrap --confirm    # back to plaintext, to migrate off a module

With the KEK configured, every command unwraps the keyring in memory and ``rotate`` / ``retire``
store it wrapped again.

Only key ids are printed, never key material or the token's PIN. The blind-index key
(``ik-…``) is separate and is not rotated by these commands: rotating it means recomputing
every lookup index.

Exit codes: 0 done; 1 re-encryption finished with values it could not open; 2 refused.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

from gateway.cli.admin_trail import add_operator_argument, check_operator, record
from gateway.crypto import (
    FieldCipher,
    Keyring,
    TokenProtector,
    destroy_kek,
    generate_kek,
    open_keyring,
    protector_from_settings,
)
from gateway.domain.principal import SYSTEM_ADMIN
from gateway.domain.settings import Settings

ACTIONS = ("init", "rotate", "reencrypt", "status", "retire", "wrap", "unwrap", "destroy-kek")


def add_keys_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    keys = command(
        "keys",
        "密钥: init 新部署创建密钥环 (及开发令牌密钥); rotate 新建主密钥; "
        "reencrypt 用主密钥重新加密旧密文; "
        "status 各密钥保护的密文数; retire 密钥ID 停用不再使用的旧密钥; "
        "wrap 用密码机中的密钥加密密钥封装密钥环; unwrap 解除封装 (明文); "
        "destroy-kek 标签 销毁不再使用的密钥加密密钥",
    )
    keys.add_argument("action", choices=ACTIONS)
    keys.add_argument(
        "key_id",
        nargs="?",
        help="retire: 要停用的数据密钥 ID (dk-…); destroy-kek: 要销毁的密钥加密密钥标签",
    )
    keys.add_argument(
        "--generate-kek",
        action="store_true",
        help="wrap: 先在密码机令牌中生成密钥加密密钥 (RELIEF_PKCS11_KEY_LABEL, 不可导出)",
    )
    keys.add_argument(
        "--confirm",
        action="store_true",
        help="unwrap / destroy-kek: 确认这一降低保护或不可撤销的操作",
    )
    keys.add_argument(
        "--algorithm",
        default=None,
        help="rotate: 新密钥的算法 AES-256-GCM 或 SM4-GCM (国密); 默认沿用当前主密钥的算法",
    )
    keys.add_argument(
        "--batch", type=int, default=500, help="reencrypt: 每批行数, 每批一个短事务 (默认 500)"
    )
    keys.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="reencrypt: 每批之间暂停的秒数, 减轻对在线服务的压力 (默认 0)",
    )
    keys.add_argument(
        "--dry-run", action="store_true", help="reencrypt: 只统计需要重新加密的数量, 不写入"
    )
    add_operator_argument(keys, "系统管理员")
    keys.set_defaults(handler=_keys)


# What changes keys is written to the administrators' trail (``status`` only reads; ``reencrypt
# --dry-run`` only counts).
_RECORDED = frozenset({"init", "rotate", "reencrypt", "retire", "wrap", "unwrap", "destroy-kek"})


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    check_operator(args)
    code = _act(settings, args)
    if args.action in _RECORDED and code in (0, 1) and not getattr(args, "dry_run", False):
        details: dict[str, object] = {"exit": code}
        if args.key_id:
            details["target"] = args.key_id.strip()
        # (A new deployment creates its keys before its database exists: said on stderr.)
        record(settings, args, role=SYSTEM_ADMIN, operation=f"keys {args.action}", details=details)
    return code


def _act(settings: Settings, args: argparse.Namespace) -> int:
    if args.action not in ("retire", "destroy-kek") and args.key_id is not None:
        print(f"错误: keys {args.action} 不接受密钥 ID 参数", file=sys.stderr)
        return 2
    if args.action == "init":
        return _init(settings)
    if args.action == "wrap":
        return _wrap(settings, generate=args.generate_kek)
    if args.action == "unwrap":
        return _unwrap(settings, confirmed=args.confirm)
    if args.action == "destroy-kek":
        if not args.key_id:
            print("错误: 用法 relief-gateway keys destroy-kek 标签 --confirm", file=sys.stderr)
            return 2
        return _destroy_kek(settings, args.key_id.strip(), confirmed=args.confirm)
    if args.action == "rotate":
        return _rotate(settings, args.algorithm)
    if args.action == "reencrypt":
        if args.batch <= 0 or args.pause < 0:
            print("错误: --batch 必须为正整数, --pause 不能为负数", file=sys.stderr)
            return 2
        return asyncio.run(_reencrypt(settings, args.batch, args.pause, dry_run=args.dry_run))
    if args.action == "status":
        return asyncio.run(_status(settings))
    if not args.key_id:
        print("错误: 用法 relief-gateway keys retire 密钥ID (见 keys status)", file=sys.stderr)
        return 2
    return _retire(settings, args.key_id.strip())


def _init(settings: Settings) -> int:
    """A new deployment's keys, in production too (the step before the first ``serve``): the
    keyring (data, index and audit keys of ``RELIEF_CIPHER_SUITE``; wrapped by the KEK from
    the start when ``RELIEF_PKCS11_MODULE`` is set) and the token key. Never overwrites."""
    from gateway.domain.errors import ConfigurationError
    from gateway.runtime.tokens import TokenService

    if settings.keyring_path.exists():
        raise ConfigurationError(
            f"密钥环 {settings.keyring_path} 已存在, 不会覆盖 (轮换请用 relief-gateway keys rotate)"
        )
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    kek = protector_from_settings(settings)
    keyring = open_keyring(settings, create=True)
    print(
        f"已创建密钥环 {settings.keyring_path}: 数据密钥 {keyring.primary_id}, "
        f"审计密钥 {keyring.audit_primary_id} ({settings.cipher_suite.value})"
    )
    _say_protection(keyring, kek)
    if not settings.token_key_path.exists():
        TokenService.from_file(settings.token_key_path, settings.token_issuer, create=True)
        print(
            f"已创建令牌签名密钥 {settings.token_key_path} (网关自签令牌; 接入统一身份认证后"
            "仅用于开发与应急, 见 docs/identity.md)"
        )
    print("请备份密钥环 (与数据库分开保存), 并复制到每台网关主机; 下一步: relief-gateway migrate")
    return 0


def _rotate(settings: Settings, algorithm: str | None) -> int:
    kek = protector_from_settings(settings)
    with Keyring.editing(settings.keyring_path, kek) as keyring:
        previous = keyring.primary_id
        key = keyring.rotate(algorithm)
    print(f"新数据密钥 {key.key_id} ({key.algorithm}) 已设为主密钥 (原主密钥 {previous} 保留)")
    _say_protection(keyring, kek)
    print(
        f"运行中的网关将在 {settings.keyring_reload_seconds:g} 秒内自动载入, 此后新写入的数据"
        "使用新密钥; 旧密文照常可读"
    )
    print("下一步: relief-gateway keys reencrypt 用新密钥重新加密旧密文")
    return 0


def _cipher(settings: Settings) -> FieldCipher:
    # Reloads like a gateway does: a rotation during a long re-encryption is followed.
    keyring = open_keyring(settings)
    return FieldCipher(keyring, reload_seconds=settings.keyring_reload_seconds)


async def _reencrypt(settings: Settings, batch: int, pause: float, *, dry_run: bool) -> int:
    from gateway.storage.engine import make_engine
    from gateway.storage.reencrypt import Progress, reencrypt, stale_counts

    cipher = _cipher(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        if dry_run:
            async with engine.connect() as connection:
                rows, values = await stale_counts(connection, cipher)
            batches = -(-rows // batch)
            print(
                f"演练 (未写入): 主密钥 {cipher.primary_key_id}; 需要重新加密 {values} 个字段, "
                f"涉及 {rows} 行, 每批 {batch} 行约 {batches} 批"
            )
            return 0

        started = time.monotonic()

        def report(progress: Progress) -> None:
            share = progress.rows_seen / progress.rows_total if progress.rows_total else 1.0
            print(
                f"第 {progress.batches} 批: 已检查 {progress.rows_seen}/{progress.rows_total} 行"
                f" ({min(share, 1.0):.0%}), 已重新加密 {progress.resealed} 个字段"
                f", 用时 {time.monotonic() - started:.1f} 秒",
                flush=True,
            )

        async def on_batch(progress: Progress) -> None:
            report(progress)
            if pause:
                await asyncio.sleep(pause)  # between transactions: no lock held meanwhile

        print(f"开始重新加密: 主密钥 {cipher.primary_key_id}, 每批 {batch} 行", flush=True)
        done = await reencrypt(engine, cipher, batch_size=batch, on_batch=on_batch)
        async with engine.connect() as connection:
            rows_left, values_left = await stale_counts(connection, cipher)
    finally:
        await engine.dispose()
    print(
        f"完成: 共检查 {done.rows_seen} 行, 重新加密 {done.resealed} 个字段"
        f" ({time.monotonic() - started:.1f} 秒)"
    )
    if done.superseded:
        print(f"其中 {done.superseded} 个字段在此期间已被其他写入更新 (保留新值, 未覆盖)")
    if done.unreadable:
        listed = ", ".join(f"{u.person_id}.{u.column}" for u in done.unreadable[:20])
        more = " …" if len(done.unreadable) > 20 else ""
        print(
            f"错误: {len(done.unreadable)} 个字段无法解密 (密文损坏或密钥已不在密钥环中), "
            f"保持原样: {listed}{more}",
            file=sys.stderr,
        )
        return 1
    if values_left:
        print(
            f"仍有 {values_left} 个字段 ({rows_left} 行) 不在主密钥下"
            " (运行期间由尚未载入新密钥环的进程写入), 请再次运行"
        )
        return 0
    print("所有密文均已使用主密钥; 可用 relief-gateway keys status 核对后 keys retire 旧密钥")
    return 0


async def _status(settings: Settings) -> int:
    from gateway.storage.engine import make_engine
    from gateway.storage.reencrypt import SEALED_COLUMNS, key_usage

    keyring = open_keyring(settings)
    cipher = FieldCipher(keyring)
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            usage = await key_usage(connection, cipher)
    finally:
        await engine.dispose()
    print(f"数据密钥 ({len(keyring.data_keys)} 个, 主密钥 {keyring.primary_id}):")
    for key_id in cipher.data_key_ids:
        key = keyring.data_keys[key_id]
        per_column = usage.by_key[key_id]
        detail = ", ".join(f"{SEALED_COLUMNS[c]} {n}" for c, n in per_column.items())
        marker = "  [主密钥]" if key_id == keyring.primary_id else ""
        print(
            f"  {key_id}  {key.algorithm}  创建于 {key.created_at or '未知'}  "
            f"密文 {usage.count(key_id)} 个 ({detail}){marker}"
        )
    if usage.unknown_total:
        print(f"  另有 {usage.unknown_total} 个密文的密钥不在密钥环中 (无法解密, 请检查)")
    index = keyring.index_key
    print(
        f"盲索引密钥 {index.key_id} ({index.algorithm}): 独立于数据密钥, 不随 keys rotate 轮换"
        " (轮换需要重算全部盲索引)"
    )
    if keyring.audit_keys:
        print(f"审计密钥 {len(keyring.audit_keys)} 个, 当前 {keyring.audit_primary_id}")
    protection = Keyring.protection(settings.keyring_path)
    if protection.wrapped and not protection.plain:
        labels = "、".join(sorted(protection.kek_labels))
        mechanisms = "、".join(sorted({w.mechanism for w in protection.wrapped.values()}))
        print(f"密钥保护: 全部 {len(protection.wrapped)} 个密钥由密码机中的密钥加密密钥 {labels}")
        print(f"  ({mechanisms}) 封装存放, 文件中没有明文密钥")
    elif protection.wrapped:
        print(
            f"密钥保护: {len(protection.wrapped)} 个密钥已封装, {len(protection.plain)} 个仍为"
            "明文; 请运行 relief-gateway keys wrap"
        )
    else:
        print("密钥保护: 明文存放于密钥环文件 (权限 600), 未使用密码机")
    return 0


def _retire(settings: Settings, key_id: str) -> int:
    from gateway.domain.errors import ConfigurationError
    from gateway.storage.engine import make_engine
    from gateway.storage.reencrypt import key_usage

    async def in_use(keyring: Keyring) -> int:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with engine.connect() as connection:
                return (await key_usage(connection, FieldCipher(keyring))).count(key_id)
        finally:
            await engine.dispose()

    # Counted under the keyring lock: no rotation can slip in between the count and the save.
    with Keyring.editing(settings.keyring_path, protector_from_settings(settings)) as keyring:
        if key_id not in keyring.data_keys:
            raise ConfigurationError(
                f"密钥环中没有数据密钥 {key_id} (见 relief-gateway keys status)"
            )
        if key_id == keyring.primary_id:
            raise ConfigurationError(
                f"{key_id} 是当前主密钥, 不能停用; 请先 relief-gateway keys rotate"
            )
        count = asyncio.run(in_use(keyring))
        if count:
            raise ConfigurationError(
                f"拒绝停用密钥 {key_id}: 仍有 {count} 个密文使用它, 停用后将无法解密; "
                "请先运行 relief-gateway keys reencrypt"
            )
        keyring.retire(key_id)
    print(
        f"数据密钥 {key_id} 已从密钥环中移除; "
        f"运行中的网关将在 {settings.keyring_reload_seconds:g} 秒内载入"
    )
    return 0


# ------------------------------------------------------------------------- cipher machine


def _configured_kek(settings: Settings, action: str) -> TokenProtector:
    from gateway.domain.errors import ConfigurationError

    kek = protector_from_settings(settings)
    if kek is None:
        raise ConfigurationError(
            f"keys {action} 需要配置密码机: RELIEF_PKCS11_MODULE (PKCS#11 模块路径)、"
            "RELIEF_PKCS11_TOKEN_LABEL、RELIEF_PKCS11_KEY_LABEL 和 PIN "
            "(RELIEF_PKCS11_PIN_FILE 或 RELIEF_PKCS11_PIN)"
        )
    return kek


def _say_protection(keyring: Keyring, kek: TokenProtector | None) -> None:
    if keyring.wrapped and kek is not None:
        print(f"密钥环已由{kek.description} 封装保存, 文件中没有明文密钥")
    elif kek is not None:
        print("注意: 已配置密码机, 但密钥环仍以明文存放; 请运行 relief-gateway keys wrap")


def _wrap(settings: Settings, *, generate: bool) -> int:
    kek = _configured_kek(settings, "wrap")
    if generate:
        label = generate_kek(kek.token)
        print(
            f"已在密码机令牌 {kek.token.token_label} 中生成密钥加密密钥 {label} (AES-256, 不可导出)"
        )
    path = settings.keyring_path
    with Keyring.editing(path, kek) as keyring:
        before = Keyring.protection(path)  # read under the lock: what this run changes
        keyring.wrapped = True
    moved = {label for label in before.kek_labels if label != kek.token.kek_label}
    count = len(before.plain) + len(before.wrapped)
    print(
        f"密钥环 {path} 的 {count} 个密钥 (数据密钥 {len(keyring.data_keys)} 个, 盲索引密钥 1 个, "
        f"审计密钥 {len(keyring.audit_keys)} 个) 已由{kek.description} 封装"
    )
    if before.plain:
        print(
            f"其中 {len(before.plain)} 个原为明文; 此前的明文密钥环副本 (备份、旧磁盘)"
            " 仍含明文密钥, 须按 docs/key-lifecycle.md 销毁"
        )
    if moved:
        print(
            f"原密钥加密密钥 {'、'.join(sorted(moved))} 已不再使用; 旧备份仍需要它, 确认后可用 "
            "relief-gateway keys destroy-kek 销毁"
        )
    print(
        f"运行中的网关将在 {settings.keyring_reload_seconds:g} 秒内重新载入 (须已配置同一密码机;"
        " 未配置的进程继续使用内存中的密钥并记录警告, 重启前请补上 RELIEF_PKCS11_* 设置)"
    )
    return 0


def _unwrap(settings: Settings, *, confirmed: bool) -> int:
    path = settings.keyring_path
    if not confirmed:
        print(
            f"错误: keys unwrap 会把全部密钥以明文写入 {path}, 只用于迁出密码机; "
            "确认请加 --confirm",
            file=sys.stderr,
        )
        return 2
    kek = _configured_kek(settings, "unwrap")
    with Keyring.editing(path, kek) as keyring:
        if not keyring.wrapped:
            print(f"密钥环 {path} 未被封装, 无需 unwrap")
            return 0
        keyring.wrapped = False
    print(f"密钥环 {path} 已解除封装: 全部密钥现以明文存放 (权限 600)")
    if settings.is_production:
        print(
            "注意: 生产环境在设置 RELIEF_PKCS11_MODULE 时拒绝明文密钥环; 迁移到新密码机后请立即"
            " relief-gateway keys wrap"
        )
    return 0


def _destroy_kek(settings: Settings, label: str, *, confirmed: bool) -> int:
    from gateway.domain.errors import ConfigurationError

    kek = _configured_kek(settings, "destroy-kek")
    if label == kek.token.kek_label:
        raise ConfigurationError(
            f"{label} 是当前配置的密钥加密密钥 (RELIEF_PKCS11_KEY_LABEL), 不能销毁"
        )
    if label in Keyring.protection(settings.keyring_path).kek_labels:
        raise ConfigurationError(
            f"密钥环中仍有密钥由 {label} 封装, 不能销毁; 请先运行 relief-gateway keys wrap"
        )
    if not confirmed:
        print(
            f"错误: 销毁后, 由 {label} 封装的旧密钥环备份将永远无法解开; 确认请加 --confirm",
            file=sys.stderr,
        )
        return 2
    destroy_kek(kek.token, label)
    print(f"密码机令牌 {kek.token.token_label} 中的密钥加密密钥 {label} 已销毁")
    return 0
