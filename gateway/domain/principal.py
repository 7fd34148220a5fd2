"""The caller: who asks (``sub``), for which department, at which level, for which region, in
which roles. Built from a verified token by ``gateway.runtime.tokens``; policies, rate limits
and the audit all speak of a ``Principal``."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from gateway.domain.departments import Department, Level
from gateway.domain.errors import BadUserInput

# Separation of duties (三权分立, 等保 8.1.5; GB/T 39786 §8.6): three administrator roles, no
# subject holds two of them.
SECURITY_ADMIN = "security_admin"  # 安全管理员: policies (propose, review, approve)
AUDIT_ADMIN = "audit_admin"  # 审计管理员: the audit log, explanations, verification, anchors
SYSTEM_ADMIN = "system_admin"  # 系统管理员: keys, partitions, clients, configuration
ADMIN_ROLES = frozenset({SECURITY_ADMIN, AUDIT_ADMIN, SYSTEM_ADMIN})
# Deprecated alias of security_admin, accepted for one release (issue 16) and stored as
# security_admin: policies and the audit speak of the role, not of its old name.
SECURITY_OFFICER = "security_officer"
ROLE_ALIASES = {SECURITY_OFFICER: SECURITY_ADMIN}
KNOWN_ROLES = ADMIN_ROLES | ROLE_ALIASES.keys()
ROLE_LABELS = {SECURITY_ADMIN: "安全管理员", AUDIT_ADMIN: "审计管理员", SYSTEM_ADMIN: "系统管理员"}


def canonical_subject(subject: str) -> str:
    """The one spelling of a subject wherever identity matters (four eyes, withdrawal, audit
    queries, rate limits): Unicode NFKC (full-width ``ＯＦＦＩＣＥＲ`` → ``OFFICER``), case-folded,
    surrounding white space trimmed. ``officer.a``, ``OFFICER.A`` and `` ｏｆｆｉｃｅｒ.ａ`` are
    one person."""
    return unicodedata.normalize("NFKC", subject).casefold().strip()


def canonical_roles(roles: list[str] | frozenset[str]) -> frozenset[str]:
    """Roles with deprecated aliases replaced; BadUserInput for an unknown role or for two
    administrator roles held together."""
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        raise BadUserInput(f"未知角色: {', '.join(sorted(unknown))}")
    resolved = frozenset(ROLE_ALIASES.get(role, role) for role in roles)
    admins = sorted(resolved & ADMIN_ROLES)
    if len(admins) > 1:
        held = "、".join(f"{ROLE_LABELS[role]} ({role})" for role in admins)
        raise BadUserInput(f"三权分立: 同一主体不得兼任 {held}")
    return resolved


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. ``subject_keys`` are what casbin policies are written for."""

    subject: str
    department: Department
    level: Level
    region: str
    roles: frozenset[str] = field(default_factory=frozenset)
    # A registered department system (service account, ``relief-gateway clients add``) may
    # declare only the purposes it was registered for; None: any purpose the policy allows.
    allowed_purposes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.roles & ROLE_ALIASES.keys():  # a deprecated name is held as the role it names
            resolved = frozenset(ROLE_ALIASES.get(role, role) for role in self.roles)
            object.__setattr__(self, "roles", resolved)

    @property
    def subject_keys(self) -> tuple[str, ...]:
        """``dept:level`` (province-wide lines), ``dept@region:level`` for the caller's region and
        every region containing it (lines a city or county agreed for its own area, 000 §4:
        a data-sharing list per department pair and place), and ``role:<role>``."""
        department, level = self.department.value, self.level.value
        keys = [f"{department}:{level}"]
        keys.extend(
            f"{department}@{self.region[:digits]}:{level}"
            for digits in (2, 4, 6)
            if digits <= len(self.region)
        )
        keys.extend(f"role:{role}" for role in sorted(self.roles))
        # Lines still written for a deprecated alias keep applying for one release.
        keys.extend(
            f"role:{alias}" for alias, role in sorted(ROLE_ALIASES.items()) if role in self.roles
        )
        return tuple(keys)

    @property
    def is_security_admin(self) -> bool:
        return SECURITY_ADMIN in self.roles

    @property
    def is_audit_admin(self) -> bool:
        return AUDIT_ADMIN in self.roles

    @property
    def is_system_admin(self) -> bool:
        return SYSTEM_ADMIN in self.roles

    @property
    def is_security_officer(self) -> bool:
        """Deprecated name of :attr:`is_security_admin` (the role's alias, issue 16)."""
        return self.is_security_admin


def check_claims(dept: str, level: str, region: str, roles: list[str]) -> Principal:
    """Validate the claims of a token to be minted (or just decoded). Raises BadUserInput."""
    try:
        department = Department(dept)
    except ValueError:
        choices = ", ".join(d.value for d in Department)
        raise BadUserInput(f"未知部门 {dept!r}, 可选: {choices}") from None
    try:
        lvl = Level(level)
    except ValueError:
        raise BadUserInput(f"未知层级 {level!r}, 可选: province, city, county") from None
    if not (region.isascii() and region.isdigit() and len(region) == lvl.region_digits):
        raise BadUserInput(
            f"{lvl.value} 级的行政区划代码应为 {lvl.region_digits} 位数字, 收到 {region!r}"
        )
    return Principal("", department, lvl, region, canonical_roles(roles))
