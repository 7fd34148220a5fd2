"""The caller: who asks (``sub``), for which department, at which level, for which region, in
which roles. Built from a verified token by ``gateway.runtime.tokens``; policies, rate limits
and the audit all speak of a ``Principal``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.domain.departments import Department, Level
from gateway.domain.errors import BadUserInput

SECURITY_OFFICER = "security_officer"  # 安全管理员: governs the policies (issue 5)
KNOWN_ROLES = frozenset({SECURITY_OFFICER})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. ``subject_keys`` are what casbin policies are written for."""

    subject: str
    department: Department
    level: Level
    region: str
    roles: frozenset[str] = field(default_factory=frozenset)

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
        return tuple(keys)

    @property
    def is_security_officer(self) -> bool:
        return SECURITY_OFFICER in self.roles


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
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        raise BadUserInput(f"未知角色: {', '.join(sorted(unknown))}")
    return Principal("", department, lvl, region, frozenset(roles))
