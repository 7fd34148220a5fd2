"""Comparing one query run under two policies (``simulateAccess``, issue 5): the pure half.

An officer reviewing a proposal runs a query "as" a subject twice, under the version in force
and under the proposal (``schema.simulator`` executes). What the officer gets back is the
*shape* of each answer, never a person's values: every non-null leaf becomes ``已读取`` (released
in clear) or ``已脱敏`` (released masked); nulls and errors keep their paths. This module holds
what is decided on those shapes: the mark of a leaf, the cells whose effect differs for the
subject, the people gained or lost, and whether the two outcomes are identical.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from authz.decision import AccessDecision, Effect
from authz.effects import EffectChange
from authz.resources import GUARDED_FIELDS, MASKABLE_FIELDS, OPERATIONS

READ_MARK = "已读取"  # a value released in clear
MASK_MARK = "已脱敏"  # a value released in its masked form


def leaf_mark(field: str, decision: AccessDecision) -> str:
    """The mark that replaces a released value of ``field`` (``Type.field``)."""
    if field in MASKABLE_FIELDS and decision.effect(field) is Effect.MASK:
        return MASK_MARK
    return READ_MARK


@dataclass(frozen=True, slots=True)
class SimulatedError:
    path: tuple[str, ...]
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One run of the simulated query under one policy, already redacted."""

    policy_version: int
    decision: AccessDecision
    data: Any  # redacted: leaves replaced by READ_MARK / MASK_MARK, nulls kept
    errors: tuple[SimulatedError, ...]
    people: frozenset[uuid.UUID]  # the distinct people the field guard recorded
    touched_person_data: bool

    @property
    def error_paths(self) -> frozenset[tuple[tuple[str, ...], str]]:
        return frozenset((error.path, error.code) for error in self.errors)


@dataclass(frozen=True, slots=True)
class Comparison:
    field_changes: tuple[EffectChange, ...]
    people_gained: frozenset[uuid.UUID]
    people_lost: frozenset[uuid.UUID]
    identical: bool


def decision_cells(decision: AccessDecision) -> dict[str, Effect]:
    """A decision as the console's grid cells: fields, operations and row scopes
    (operations and row scopes READ when granted, as in ``authz.effects``)."""
    cells: dict[str, Effect] = dict(decision.fields)
    for operation in decision.operations:
        cells[operation] = Effect.READ
    for condition in decision.row_conditions:
        cells[f"Person({condition})"] = Effect.READ
    return cells


def field_changes(
    subject: str, before: AccessDecision, after: AccessDecision
) -> tuple[EffectChange, ...]:
    """The cells whose effect differs for ``subject`` between two decisions, in grid order
    (guarded fields, operations, then row scopes)."""
    old, new = decision_cells(before), decision_cells(after)
    scopes = sorted({cell for cell in (*old, *new) if cell.startswith("Person(")})
    changes = []
    for cell in (*GUARDED_FIELDS, *OPERATIONS, *scopes):
        was, now = old.get(cell, Effect.DENY), new.get(cell, Effect.DENY)
        if was is not now:
            changes.append(EffectChange(subject, cell, was, now))
    return tuple(changes)


def compare(subject: str, current: RunOutcome, proposed: RunOutcome) -> Comparison:
    """What the proposal changes for this subject and this query. Identical means the officer
    could not tell the two answers apart: same shape, same errors at the same paths, same
    people (a changed field the query does not ask for does not count)."""
    return Comparison(
        field_changes=field_changes(subject, current.decision, proposed.decision),
        people_gained=proposed.people - current.people,
        people_lost=current.people - proposed.people,
        identical=(
            current.data == proposed.data
            and current.error_paths == proposed.error_paths
            and current.people == proposed.people
        ),
    )
