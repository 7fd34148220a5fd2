"""``relief-gateway clients``: service accounts for department systems (issue 16 item 2; the
integrator's guide is docs/service-accounts.md).

    clients add --dept D --level L --region R --name N --purpose P [--purpose P …] [--cert PEM]
    clients list [--json]
    clients disable CLIENT_ID

``add`` prints the client id and the secret once: the gateway keeps only the secret's slow hash
(``gateway.storage.clients``), so a lost secret is replaced by registering a new client and
disabling the old one. With ``--cert`` the client authenticates with that certificate (mutual
TLS at the province's proxy) and no secret is made. ``add`` also creates the gateway's ES256
signing key (``client-token-key.pem``) when missing — in production too: it is the operator's
deliberate step; run ``add`` first on one host and copy ``client-token-key.pem`` to every other
host (it is not ``token.key``, the development HS256 key).

A client is a department system, not an administrator: ``--role`` exists only to refuse, in
Chinese, what would otherwise be a silent misunderstanding (a pair of administrator roles is
refused as a breach of 三权分立 first).

Exit codes: 0 done; 2 refused (bad value, unknown client, database missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.domain.clock import CHINA_TZ
from gateway.domain.departments import Department
from gateway.domain.errors import BadUserInput
from gateway.domain.settings import Settings

if TYPE_CHECKING:
    from gateway.storage.clients import NewClient, RegisteredClient

ACTIONS = ("add", "list", "disable")
HEADERS = (
    "客户端标识",
    "名称",
    "部门",
    "层级",
    "区划",
    "用途",
    "认证方式",
    "登记时间 (北京时间)",
    "登记人",
    "状态",
)


def purpose_code(value: str) -> str:
    """A purpose of ``gateway/data/purposes.json`` (argparse type)."""
    from schema.purposes import purpose_labels

    code = value.strip()
    labels = purpose_labels()
    if code not in labels:
        known = "、".join(f"{label} ({key})" for key, label in labels.items())
        raise argparse.ArgumentTypeError(f"未知用途 {value!r}; 可选: {known}")
    return code


def _known_purposes() -> dict[str, str]:
    from schema.purposes import purpose_labels

    return purpose_labels()


def department_code(value: str) -> str:
    code = value.strip()
    if code not in {d.value for d in Department}:
        choices = ", ".join(d.value for d in Department)
        raise argparse.ArgumentTypeError(f"未知部门 {value!r}; 可选: {choices}")
    return code


def add_clients_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    clients = command(
        "clients",
        "服务账号 (部门业务系统以 OAuth2 客户端凭证获取令牌): add 登记; list 列出; "
        "disable 客户端标识 停用",
    )
    clients.add_argument("action", choices=ACTIONS)
    clients.add_argument("client_id", nargs="?", help="disable: 要停用的客户端标识")
    clients.add_argument("--dept", type=department_code, help="add: 部门代码, 如 medical_insurance")
    clients.add_argument("--level", choices=["province", "city", "county"], help="add: 层级")
    clients.add_argument("--region", help="add: 辖区代码: 省 2 位, 市 4 位, 县 6 位")
    clients.add_argument("--name", help="add: 系统名称, 如 县医保结算系统")
    clients.add_argument(
        "--purpose",
        action="append",
        type=purpose_code,
        default=[],
        help="add: 允许声明的用途, 可重复 (见 gateway/data/purposes.json)",
    )
    clients.add_argument(
        "--cert",
        type=Path,
        help="add: 客户端证书 (PEM); 以证书认证, 不生成密钥 (双向 TLS 由省级代理终结)",
    )
    clients.add_argument(
        "--role", action="append", default=[], help="add: 不接受: 服务账号不得持有管理员角色"
    )
    clients.add_argument(
        "--operator", default=None, help="操作人 (系统管理员的主体标识; 默认为当前操作系统用户)"
    )
    clients.add_argument("--json", action="store_true", help="list/add: 以 JSON 输出")
    clients.set_defaults(handler=_clients)


def _clients(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.storage.admin_audit import operator_subject

    by = operator_subject(args.operator)
    if args.action == "add":
        return _add(settings, args, by)
    if args.action == "list":
        return asyncio.run(_list(settings, as_json=args.json))
    if not args.client_id:
        raise BadUserInput("用法: relief-gateway clients disable 客户端标识")
    return asyncio.run(_disable(settings, args.client_id.strip(), by))


def _add(settings: Settings, args: argparse.Namespace, by: str) -> int:
    missing = [
        option
        for option, value in (
            ("--dept", args.dept),
            ("--level", args.level),
            ("--region", args.region),
            ("--name", args.name),
        )
        if not value
    ]
    if not args.purpose:
        missing.append("--purpose")
    if missing:
        raise BadUserInput(f"clients add 缺少 {'、'.join(missing)}")
    if args.client_id:
        raise BadUserInput("clients add 不接受客户端标识: 标识由网关生成")
    fingerprint = _fingerprint(args.cert) if args.cert is not None else None
    from gateway.runtime.client_tokens import ClientTokenKey

    # The gateway's signing key: made here when missing (the operator's step, also in production).
    ClientTokenKey.load(
        settings.client_token_key_path, create=True, production=settings.is_production
    )
    created = asyncio.run(_store(settings, args, by, fingerprint))
    client, secret = created.client, created.secret
    if args.json:
        print(
            json.dumps(
                {"client_id": client.client_id, "client_secret": secret, **_as_json(client)},
                ensure_ascii=False,
            )
        )
        return 0
    print(f"已登记服务账号 {client.name} ({client.client_id})")
    print(f"client_id:     {client.client_id}")
    if secret is not None:
        print(f"client_secret: {secret}")
        print("密钥只显示这一次, 网关只保存其散列值: 请立即交给对接系统安全保存。")
        print("遗失或泄露时: 登记一个新的服务账号, 切换后停用本账号 (clients disable)。")
    else:
        print(f"以客户端证书认证, SHA-256 指纹 {client.cert_sha256}")
    purposes = " ".join(client.purposes)
    print(f"令牌地址: POST /oauth/token (grant_type=client_credentials), 用途: {purposes}")
    return 0


def _fingerprint(path: Path) -> str:
    from gateway.crypto import certificate_sha256

    try:
        return certificate_sha256(path.read_bytes())
    except FileNotFoundError:
        raise BadUserInput(f"找不到证书文件 {path}") from None
    except (OSError, ValueError):
        raise BadUserInput(f"无法读取证书 {path}: 应为 PEM 格式的 X.509 证书") from None


async def _store(
    settings: Settings, args: argparse.Namespace, by: str, fingerprint: str | None
) -> NewClient:
    from sqlalchemy import delete

    from gateway.domain.principal import SYSTEM_ADMIN
    from gateway.storage.admin_audit import record_admin_action
    from gateway.storage.clients import add_client
    from gateway.storage.engine import make_engine, make_sessionmaker
    from gateway.storage.models import ServiceClient

    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            created = await add_client(
                session,
                name=args.name,
                department=args.dept,
                level=args.level,
                region=args.region,
                purposes=args.purpose,
                known_purposes=list(_known_purposes()),
                created_by=by,
                roles=args.role,
                cert_sha256=fingerprint,
            )
            await session.commit()
            # The system administrator's action, in the trail the audit administrator reads.
            # Not recorded, not done: the client goes again and its secret is never shown.
            try:
                await record_admin_action(
                    settings,
                    role=SYSTEM_ADMIN,
                    operation="clients add",
                    operator=by,
                    details={"client": created.client.client_id, "name": created.client.name},
                    sessions=make_sessionmaker(engine),
                )
            except BaseException:
                await session.execute(
                    delete(ServiceClient).where(ServiceClient.client_id == created.client.client_id)
                )
                await session.commit()
                raise
        return created
    finally:
        await engine.dispose()


async def _list(settings: Settings, *, as_json: bool) -> int:
    from gateway.storage.clients import list_clients
    from gateway.storage.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            clients = await list_clients(session)
    finally:
        await engine.dispose()
    if as_json:
        print(json.dumps([_as_json(client) for client in clients], ensure_ascii=False, indent=2))
        return 0
    if not clients:
        print("尚未登记服务账号 (relief-gateway clients add 登记)")
        return 0
    rows = [
        (
            client.client_id,
            client.name,
            client.department,
            client.level,
            client.region,
            " ".join(client.purposes),
            "证书" if client.cert_sha256 else "密钥",
            f"{client.created_at.astimezone(CHINA_TZ):%Y-%m-%d %H:%M}",
            client.created_by,
            _state(client),
        )
        for client in clients
    ]
    print(_table(HEADERS, rows))
    return 0


def _state(client: RegisteredClient) -> str:
    if client.disabled_at is None:
        return "启用"
    return f"已停用 {client.disabled_at.astimezone(CHINA_TZ):%Y-%m-%d %H:%M} ({client.disabled_by})"


def _as_json(client: RegisteredClient) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "department": client.department,
        "level": client.level,
        "region": client.region,
        "purposes": list(client.purposes),
        "cert_sha256": client.cert_sha256,
        "created_at": client.created_at.isoformat(),
        "created_by": client.created_by,
        "disabled_at": client.disabled_at.isoformat() if client.disabled_at else None,
        "disabled_by": client.disabled_by,
    }


async def _disable(settings: Settings, client_id: str, by: str) -> int:
    from gateway.domain.principal import SYSTEM_ADMIN
    from gateway.storage.admin_audit import record_admin_action
    from gateway.storage.clients import disable_client
    from gateway.storage.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            changed = await disable_client(session, client_id, disabled_by=by)
            await session.commit()
        if changed:
            await record_admin_action(
                settings,
                role=SYSTEM_ADMIN,
                operation="clients disable",
                operator=by,
                details={"client": client_id},
            )
    finally:
        await engine.dispose()
    if not changed:
        print(f"服务账号 {client_id} 早已停用, 未作改动")
        return 0
    seconds = settings.client_revocation_refresh_seconds
    print(
        f"已停用服务账号 {client_id}: 不能再获取令牌; 已签发的令牌在各网关进程 {seconds:g} 秒内失效"
    )
    return 0


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(_width(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c + " " * (w - _width(c)) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *map(line, rows)])
