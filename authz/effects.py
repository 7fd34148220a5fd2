"""What a policy grants, as a grid: subjects (department × level) × cells (every guarded field,
every exchange operation, every row scope). The console's grid (``policyMatrix``) and a
proposal's ``fieldChanges`` (the cells a change turns from one effect into another).

Rows of the grid:

- ``dept:level`` for the 8 departments × 3 levels: a caller of that department and level in a
  region no region-limited line names (only province-wide lines apply);
- ``dept@<region>:level`` for every region a line of the policy names
  (``civil_affairs@3701:county``: a civil affairs county caller inside 3701 — province-wide
  lines plus the lines of 37 and 3701), for the levels that can lie inside that region;
- ``role:<role>`` for every role a line names (what the role adds to any caller).

A cell is the effect for the best purpose: lines limited to a purpose count for that purpose,
so ``READ`` means "readable for at least one declared purpose". Decisions come from the same
casbin model and ``decide`` as the enforcer in force (:class:`authz.offline.OfflinePolicy`),
asked only with the lines that can match the row's subject keys (a few dozen, not all), and
cached per row and lines: a version's grid is computed once per process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from casbin.util import key_match

from authz.conditions import parse_row_object
from authz.decision import Effect
from authz.offline import OfflinePolicy
from authz.resources import GUARDED_FIELDS, OPERATIONS
from authz.store import PolicyLine
from gateway.domain.departments import Department, Level
from gateway.domain.principal import Principal

_STRENGTH = {Effect.DENY: 0, Effect.MASK: 1, Effect.READ: 2}


@dataclass(frozen=True, slots=True)
class GridRow:
    """One row of the grid: its name and the caller it stands for."""

    name: str
    principal: Principal
    role: str = ""  # a role row: only the role's own lines count

    def relevant(self, lines: Iterable[PolicyLine]) -> tuple[PolicyLine, ...]:
        """The lines that can grant this row anything, in a canonical order."""
        if self.role:
            wanted = f"role:{self.role}"
            found = {line for line in lines if line[0] == wanted}
        else:
            keys = self.principal.subject_keys
            found = {line for line in lines if any(key_match(key, line[0]) for key in keys)}
        return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class EffectChange:
    subject: str
    cell: str
    before: Effect
    after: Effect


def row_cell(obj: str) -> str:
    """The grid's name of a row scope (``Person(category: A|B)``, categories sorted)."""
    return f"Person({parse_row_object(obj)})"


def grid_rows(*policies: Iterable[PolicyLine]) -> list[GridRow]:
    """The 24 department × level rows, then a row per region and per role the lines name."""
    rows = [
        GridRow(f"{dept.value}:{level.value}", Principal("policy-grid", dept, level, ""))
        for dept in Department
        for level in Level
    ]
    regional: set[tuple[str, str, str]] = set()
    roles: set[str] = set()
    for lines in policies:
        for subject, _, _, _ in lines:
            head, _, level = subject.partition(":")
            if head == "role":
                roles.add(level)
                continue
            department, _, region = head.partition("@")
            if not region:
                continue
            levels = list(Level) if level == "*" else [Level(level)]
            regional.update(
                (department, region, lv.value)
                for lv in levels
                if lv.region_digits >= len(region)  # a province caller is never inside 3701
            )
    level_order = [lv.value for lv in Level]
    for department, region, level in sorted(
        regional, key=lambda r: (r[0], r[1], level_order.index(r[2]))
    ):
        principal = Principal("policy-grid", Department(department), Level(level), region)
        rows.append(GridRow(f"{department}@{region}:{level}", principal))
    for role in sorted(roles):
        principal = Principal(
            "policy-grid", Department.BIG_DATA, Level.PROVINCE, "", frozenset({role})
        )
        rows.append(GridRow(f"role:{role}", principal, role))
    return rows


def grid_cells(*policies: Iterable[PolicyLine]) -> list[str]:
    """Columns: guarded fields, operations, then the row scopes the lines name."""
    scopes = sorted({row_cell(o) for lines in policies for _, o, a, _ in lines if a == "rows"})
    return [*GUARDED_FIELDS, *OPERATIONS, *scopes]


def cells_of(row: GridRow, lines: Sequence[PolicyLine]) -> dict[str, Effect]:
    """Every cell of ``row`` under ``lines`` (cells not listed are denied)."""
    return dict(_cells(row, row.relevant(lines)))


@lru_cache(maxsize=4096)
def _cells(row: GridRow, lines: tuple[PolicyLine, ...]) -> tuple[tuple[str, Effect], ...]:
    if not lines:
        return ()
    policy = OfflinePolicy(lines)
    purposes = sorted({""} | {purpose for _, _, _, purpose in lines if purpose != "*"})
    best: dict[str, Effect] = {}

    def grant(cell: str, effect: Effect) -> None:
        if _STRENGTH[effect] > _STRENGTH[best.get(cell, Effect.DENY)]:
            best[cell] = effect

    for purpose in purposes:
        decision = policy.decision(row.principal, purpose)
        for field, effect in decision.fields.items():
            grant(field, effect)
        for operation in decision.operations:
            grant(operation, Effect.READ)
        for condition in decision.row_conditions:
            grant(f"Person({condition})", Effect.READ)
    return tuple(sorted(best.items()))


def effect_changes(before: Sequence[PolicyLine], after: Sequence[PolicyLine]) -> list[EffectChange]:
    """The cells whose effect differs between two policies, row by row in grid order.

    Only rows whose relevant lines differ are evaluated: a change of civil affairs lines never
    costs a decision for health."""
    changes: list[EffectChange] = []
    cells = grid_cells(before, after)
    for row in grid_rows(before, after):
        old_lines, new_lines = row.relevant(before), row.relevant(after)
        if old_lines == new_lines:
            continue
        old, new = dict(_cells(row, old_lines)), dict(_cells(row, new_lines))
        for cell in cells:
            was, now = old.get(cell, Effect.DENY), new.get(cell, Effect.DENY)
            if was is not now:
                changes.append(EffectChange(row.name, cell, was, now))
    return changes
