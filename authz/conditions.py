"""Row-scope conditions: the small vocabulary a ``rows`` policy line may use.

    Person(all)                         everyone in the caller's jurisdiction
    Person(category: A|B|…)             people holding one of these relief categories today
    Person(pushed)                      people with a task pushed to the caller's department
                                        (a warning or a list to verify: CONTRACT.md's
                                        "or pushed to it")

Conditions are parsed and validated when policies load (a typo refuses the policy, it never
silently grants or drops rows) and compiled to SQL by ``authz.compiler``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.domain.departments import RELIEF_CATEGORIES
from gateway.domain.errors import ConfigurationError

_ROW_OBJECT = re.compile(r"^Person\((?P<body>[^()]*)\)$")


@dataclass(frozen=True, slots=True)
class AllRows:
    def __str__(self) -> str:
        return "all"


@dataclass(frozen=True, slots=True)
class HoldsCategory:
    categories: frozenset[str]

    def __str__(self) -> str:
        return "category: " + "|".join(sorted(self.categories))


@dataclass(frozen=True, slots=True)
class PushedToDepartment:
    def __str__(self) -> str:
        return "pushed"


RowCondition = AllRows | HoldsCategory | PushedToDepartment


def is_row_object(obj: str) -> bool:
    return obj.startswith("Person(")


def parse_row_object(obj: str) -> RowCondition:
    match = _ROW_OBJECT.match(obj.strip())
    if not match:
        raise ConfigurationError(
            f"行范围对象格式错误: {obj!r} (应为 Person(all)、Person(pushed) 或 Person(category: …))"
        )
    body = match.group("body").strip()
    if body == "all":
        return AllRows()
    if body == "pushed":
        return PushedToDepartment()
    key, _, value = body.partition(":")
    if key.strip() == "category" and value.strip():
        categories = frozenset(part.strip() for part in value.split("|") if part.strip())
        unknown = categories - RELIEF_CATEGORIES
        if unknown:
            raise ConfigurationError(f"行范围条件中有未知的救助类别: {', '.join(sorted(unknown))}")
        return HoldsCategory(categories)
    raise ConfigurationError(f"未知的行范围条件: {body!r}")
