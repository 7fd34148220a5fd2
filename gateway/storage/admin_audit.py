"""The administrators' own trail for commands run on the server (三权分立, issue 16).

The system administrator's work (keys, partitions, service clients, configuration, migrations)
and the audit administrator's command-line work (``audit verify``, archives) are
``relief-gateway`` commands run on the server, not GraphQL requests. Each such command appends
one entry to the same hash chain as every request (:func:`record_admin_action`), so the audit
administrator reads them in ``auditLog`` next to the security administrators' policy changes,
and no administrator reads its own (the audit log leaves out the reader's subject)::

    await record_admin_action(
        settings, role=SYSTEM_ADMIN, operation="keys rotate", details={"key": "dk-…"}
    )

The entry: subject the operator (``--operator`` when given, else the operating-system user,
in canonical form), department ``big_data`` at province level in the configured province (the
platform's operator; the entry is visible to the province's audit administrators), no purpose,
operation ``relief-gateway <command>``, no person, and as released "fields" ``Admin.role`` (the
administrator role the command belongs to) and ``Admin.<detail>`` for each detail (key ids,
months, client names; never a secret: callers pass identifiers only).
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.domain.clock import now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import BadUserInput
from gateway.domain.principal import ADMIN_ROLES, ROLE_ALIASES, canonical_subject
from gateway.domain.regions import provinces
from gateway.domain.settings import Settings
from gateway.storage.audit_chain import append_entries
from gateway.storage.models import AuditEntry, PolicyVersion

if TYPE_CHECKING:
    from gateway.crypto import AuditMac

OPERATION_PREFIX = "relief-gateway "
MAX_SUBJECT = 128  # audit_log.subject
MAX_DETAIL = 200


def operator_subject(operator: str | None) -> str:
    """The subject an administrative command is recorded under: ``operator`` (the person's
    subject on the identity platform, ``--operator``) or the operating-system user, in
    canonical form. BadUserInput for an empty or overlong one."""
    if operator is None:
        try:
            operator = getpass.getuser()
        except (OSError, KeyError):  # a container's uid without a passwd entry
            operator = f"uid:{os.getuid()}"
    subject = canonical_subject(operator)
    if not subject:
        raise BadUserInput("操作人 (--operator) 不能为空")
    if len(subject) > MAX_SUBJECT:
        raise BadUserInput(f"操作人 (--operator) 最多 {MAX_SUBJECT} 个字符")
    return subject


def province_code(settings: Settings) -> str:
    """The configured province's 2-digit code (RELIEF_PROVINCE)."""
    return next(p.code for p in provinces() if p.key == settings.province.value)


def admin_entry(
    *,
    subject: str,
    role: str,
    operation: str,
    region: str,
    policy_version: int,
    details: Mapping[str, object] | None = None,
) -> AuditEntry:
    """The (not yet chained) entry of one administrative command."""
    role = ROLE_ALIASES.get(role, role)
    if role not in ADMIN_ROLES:
        raise BadUserInput(f"未知的管理员角色: {role!r}")
    released = {"Admin.role": role}
    for name, value in (details or {}).items():
        released[f"Admin.{name}"] = str(value)[:MAX_DETAIL]
    return AuditEntry(
        occurred_at=now_utc(),
        request_id=str(uuid.uuid4()),
        subject=subject,
        department=Department.BIG_DATA.value,
        level=Level.PROVINCE.value,
        region=region,
        purpose="",
        operation=f"{OPERATION_PREFIX}{operation.strip()}"[:128],
        policy_version=policy_version,
        person_ids="[]",
        fields=json.dumps(dict(sorted(released.items())), ensure_ascii=False),
    )


async def record_admin_action(
    settings: Settings,
    *,
    role: str,
    operation: str,
    operator: str | None = None,
    details: Mapping[str, object] | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    macs: AuditMac | None = None,
) -> AuditEntry:
    """Append the entry of one administrative command to the audit chain and return it.

    ``sessions``: the command's own session factory when it has one open (else an engine is
    made from ``settings`` for this one entry). ``macs``: the keyring's audit MAC when the
    command holds the keyring already (``keys rotate``); else the keyring of ``settings`` is
    opened, so the entry is MAC'd like every request's (issue 16 item 6).

    Raises BadUserInput for an unknown role or a bad operator; a database error propagates
    (the command reports it and exits 2: an action that cannot be recorded is reported, never
    silently unaudited)."""
    subject = operator_subject(operator)
    region = province_code(settings)
    if macs is None:
        from gateway.crypto import AuditMac, open_keyring

        macs = AuditMac(open_keyring(settings))
    action = _Action(subject, role, operation, region, details, macs)
    if sessions is not None:
        return await action.append(sessions)
    from gateway.storage.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        return await action.append(make_sessionmaker(engine))
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class _Action:
    subject: str
    role: str
    operation: str
    region: str
    details: Mapping[str, object] | None
    macs: AuditMac

    async def append(self, sessions: async_sessionmaker[AsyncSession]) -> AuditEntry:
        async with sessions() as session:
            # The policy version in force (authz.store.current_version; storage cannot ask authz).
            version = int((await session.execute(select(func.max(PolicyVersion.id)))).scalar() or 0)
            await session.commit()  # append_entries needs an idle session
            entry = admin_entry(
                subject=self.subject,
                role=self.role,
                operation=self.operation,
                region=self.region,
                policy_version=version,
                details=self.details,
            )
            await append_entries(session, [entry], macs=self.macs)
        return entry
