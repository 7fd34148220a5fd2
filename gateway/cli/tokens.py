"""``relief-gateway token``: mint one access token with the gateway's token key (printed to
standard output; outside production the key is created when missing)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from gateway.domain.settings import Settings


def add_token_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    token = command("token", "签发一个访问令牌 (打印到标准输出)")
    token.add_argument("--dept", required=True, help="部门代码, 如 civil_affairs")
    token.add_argument("--level", required=True, choices=["province", "city", "county"])
    token.add_argument("--region", required=True, help="辖区代码: 省 2 位, 市 4 位, 县 6 位")
    token.add_argument("--subject", default=None, help="主体标识 (默认由部门、层级、区划组成)")
    token.add_argument("--role", action="append", default=[], help="角色, 如 security_officer")
    token.add_argument("--ttl", type=int, default=None, help="有效期秒数 (默认 8 小时)")
    token.set_defaults(handler=_token)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.runtime.tokens import TokenService

    tokens = TokenService.from_file(
        settings.token_key_path, settings.token_issuer, create=not settings.is_production
    )
    subject = args.subject or f"{args.dept}-{args.level}-{args.region}"
    print(
        tokens.mint(
            subject=subject,
            dept=args.dept,
            level=args.level,
            region=args.region,
            roles=args.role,
            ttl_seconds=settings.token_ttl_seconds if args.ttl is None else args.ttl,
        )
    )
    return 0
