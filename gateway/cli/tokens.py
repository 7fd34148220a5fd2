"""``relief-gateway token``: mint one access token with the gateway's token key (printed to
standard output; outside production the key is created when missing).

The token's ``sub`` is the subject in canonical form (NFKC, case-folded, trimmed: what the
gateway compares anyway when it verifies a token, issue 16); a subject given in another
spelling is minted canonical and the command says so on standard error. Roles are checked like
a token's claims: two administrator roles for one subject are refused (三权分立). In production
the minting is the system administrator's act in the audit chain (``--operator``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gateway.cli.admin_trail import add_operator_argument, check_operator, record
from gateway.domain.errors import BadUserInput
from gateway.domain.principal import SYSTEM_ADMIN, canonical_subject
from gateway.domain.settings import Settings


def add_token_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    token = command("token", "签发一个访问令牌 (打印到标准输出)")
    token.add_argument("--dept", required=True, help="部门代码, 如 civil_affairs")
    token.add_argument(
        "--level",
        required=True,
        choices=["province", "city", "county"],
        help="层级: province 省, city 市, county 县",
    )
    token.add_argument("--region", required=True, help="辖区代码: 省 2 位, 市 4 位, 县 6 位")
    token.add_argument("--subject", default=None, help="主体标识 (默认由部门、层级、区划组成)")
    token.add_argument(
        "--role",
        action="append",
        default=[],
        help="角色 (可重复): security_admin 安全管理员, audit_admin 审计管理员, "
        "system_admin 系统管理员 (三者互斥); security_officer 为 security_admin 的旧名",
    )
    token.add_argument("--ttl", type=int, default=None, help="有效期秒数 (默认 8 小时)")
    add_operator_argument(token, "系统管理员")
    token.set_defaults(handler=_token)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.runtime.tokens import TokenService

    if settings.is_production:
        check_operator(args)
    tokens = TokenService.from_file(
        settings.token_key_path, settings.token_issuer, create=not settings.is_production
    )
    given = args.subject or f"{args.dept}-{args.level}-{args.region}"
    subject = canonical_subject(given)
    if not subject:
        raise BadUserInput("主体标识 (--subject) 不能为空")
    if len(subject) > 128:
        raise BadUserInput("主体标识 (--subject) 最多 128 个字符")
    if subject != given:
        print(
            f"提示: 主体标识按规范形式签发为 {subject!r} (大小写、全角半角、首尾空白不计)",
            file=sys.stderr,
        )
    token = tokens.mint(
        subject=subject,
        dept=args.dept,
        level=args.level,
        region=args.region,
        roles=args.role,
        ttl_seconds=settings.token_ttl_seconds if args.ttl is None else args.ttl,
    )
    if settings.is_production:
        # Credentials minted on the server are the system administrator's act: recorded first,
        # printed after (not recorded, not issued). Development tokens (demo, tests) are not.
        record(
            settings,
            args,
            role=SYSTEM_ADMIN,
            operation="token",
            details={
                "subject": subject,
                "dept": args.dept,
                "level": args.level,
                "region": args.region,
                "roles": ",".join(sorted(args.role)),
            },
        )
    print(token)
    return 0
