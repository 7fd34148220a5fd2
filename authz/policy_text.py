"""The policy as a readable file for review in version control (issue 5 §6): what
``relief-gateway policy export`` prints and ``policy import`` reads back
(:func:`authz.store.parse_policy_text`).

The lines are grouped by department (roles last) and kept in a fixed order inside each group
(region, level, object in catalogue order, action, purpose), so that a one-line change is a
one-line diff whatever order the lines were added in.

A line with a validity end (期限) carries it as a sixth column: a bare date when the line ends
with that day in Beijing time (``2027-03-31``), else the moment with its offset. The version's
policy expectations (``authz.expectations``) follow the lines in a section of their own, as
``e`` lines in their stored order; ``policy import`` reads both back, ``policy test`` runs them.
"""

from __future__ import annotations

from typing import Any

from authz.admin import VersionRecord, format_line
from authz.expectations import HEADER as EXPECTATIONS_HEADER
from authz.expectations import parse_expectations
from authz.resources import GUARDED_FIELDS, OPERATIONS
from authz.store import PolicyLine, valid_to_of
from gateway.domain.departments import DEPARTMENT_NAMES_ZH, Department

_ACTION_ORDER = ("rows", "read", "mask", "call")
_LEVEL_ORDER = ("*", "province", "city", "county")


def _object_rank(obj: str) -> tuple[int, int, str]:
    """Row scopes first (by text), then fields in catalogue order (a wildcard just before the
    fields it covers), then operations in catalogue order."""
    if obj in GUARDED_FIELDS:
        return (1, 2 * GUARDED_FIELDS.index(obj) + 1, obj)
    if obj in OPERATIONS:
        return (2, OPERATIONS.index(obj), obj)
    if obj.endswith("*"):
        prefix = obj[:-1]
        first = next((i for i, f in enumerate(GUARDED_FIELDS) if f.startswith(prefix)), 0)
        return (1, 2 * first, obj)
    return (0, 0, obj)


def _line_rank(line: PolicyLine) -> tuple[Any, ...]:
    head, _, level = line[0].partition(":")
    _, _, region = head.partition("@")
    return (
        region,
        _LEVEL_ORDER.index(level) if level in _LEVEL_ORDER else len(_LEVEL_ORDER),
        level,
        _object_rank(line[1]),
        _ACTION_ORDER.index(line[2]),
        line[3],
        valid_to_of(line) is not None,
        str(valid_to_of(line) or ""),
    )


def policy_text(record: VersionRecord) -> str:
    """The version as a readable file for review in version control: a header (version, date,
    who proposed and approved), then the lines as ``p, subject, object, action, purpose`` grouped
    by department (roles last) and in a fixed order inside each group, so that a one-line
    change is a one-line diff whatever order the lines were added in. ``parse_policy_text``
    reads it back (``relief-gateway policy import``)."""
    out = [
        f"# relief-gateway 访问策略 (数据共享清单), 版本 {record.version}",
        f"# 生效时间: {record.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"# 提出人: {record.created_by}; 批准人: {record.approved_by or '-'}",
        f"# 说明: {' '.join(record.note.split())}",
        "# 修改后导入: relief-gateway policy import <文件> --proposed-by <安全管理员>",
        "#   (生成变更申请, 由另一名安全管理员审批后生效)",
        "# 列: p, 主体, 对象, 动作, 用途[, 期限]",
        "#   (期限可选: 2027-03-31 为北京时间当日结束, 或带时区的时刻 2027-03-31T12:00:00+08:00)",
    ]
    groups: dict[str, list[PolicyLine]] = {}
    for line in dict.fromkeys(record.lines or ()):
        department = line[0].partition(":")[0].partition("@")[0]
        groups.setdefault(department, []).append(line)
    order = [d.value for d in Department] + ["role"]
    for department in sorted(groups, key=lambda d: (order.index(d) if d in order else 99, d)):
        name = "角色" if department == "role" else DEPARTMENT_NAMES_ZH[Department(department)]
        out.extend(["", f"# -- {name} ({department})"])
        out.extend("p, " + format_line(line) for line in sorted(groups[department], key=_line_rank))
    expectations = parse_expectations(record.expectations or "")
    if expectations:
        out.extend(
            ["", "# -- 策略期望 (每次变更申请都按此检查; relief-gateway policy test 离线运行)"]
        )
        out.append(EXPECTATIONS_HEADER)
        out.extend(expectation.text for expectation in expectations)
    return "\n".join(out) + "\n"
