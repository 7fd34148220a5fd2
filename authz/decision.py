"""One access decision per subject, purpose and policy version.

casbin is asked once per guarded field and row scope (a few dozen calls) when a subject is
first seen under a policy version; requests reuse the cached decision. Nothing here runs per
row: rows are scoped by the SQL predicate compiled from ``row_conditions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from authz.conditions import RowCondition, parse_row_object
from authz.resources import (
    DERIVED_FROM,
    GUARDED_FIELDS,
    MASKABLE_FIELDS,
    OPERATIONS,
    PARENT_RELATION,
)


class Effect(StrEnum):
    READ = "read"
    MASK = "mask"
    DENY = "deny"


class Enforcer(Protocol):
    def enforce(self, *request: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class AccessDecision:
    policy_version: int
    purpose: str
    fields: Mapping[str, Effect]
    row_conditions: tuple[RowCondition, ...]
    operations: frozenset[str] = frozenset()

    def effect(self, field: str) -> Effect:
        return self.fields.get(field, Effect.DENY)

    @property
    def sees_rows(self) -> bool:
        return bool(self.row_conditions)


def decide(
    enforcer: Enforcer,
    *,
    subject_keys: Iterable[str],
    purpose: str,
    row_objects: Iterable[str],
    policy_version: int,
) -> AccessDecision:
    """Ask casbin about every guarded field and every row scope in the policy.

    Grants from the department-level subject and from roles add up; "read" is the stronger
    grant, so a subject granted both read and mask reads.
    """
    keys = tuple(subject_keys)

    def granted(obj: str, act: str) -> bool:
        return any(enforcer.enforce(key, obj, act, purpose) for key in keys)

    fields: dict[str, Effect] = {}
    for field in GUARDED_FIELDS:
        if granted(field, "read"):
            fields[field] = Effect.READ
        elif field in MASKABLE_FIELDS and granted(field, "mask"):
            fields[field] = Effect.MASK
        else:
            fields[field] = Effect.DENY
    # A child type's fields are reachable only through its relation: without the relation
    # they are denied too, so a decision never says "read" for something unreachable.
    for field in GUARDED_FIELDS:
        parent = PARENT_RELATION.get(field.split(".", 1)[0])
        if parent and fields[parent] is Effect.DENY:
            fields[field] = Effect.DENY
    for field, sources in DERIVED_FROM.items():
        if any(fields[source] is not Effect.READ for source in sources):
            fields[field] = Effect.DENY

    conditions = tuple(
        parse_row_object(obj) for obj in sorted(set(row_objects)) if granted(obj, "rows")
    )
    operations = frozenset(op for op in OPERATIONS if granted(op, "call"))
    return AccessDecision(policy_version, purpose, fields, conditions, operations)
