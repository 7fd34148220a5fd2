"""Row-scope conditions: the small vocabulary a ``rows`` policy line may use.

    Person(all)                         everyone in the caller's jurisdiction
    Person(category: A|B|…)             people holding one of these relief categories today
    Person(pushed)                      people with a task pushed to the caller's department
                                        (a warning or a list to verify: CONTRACT.md's
                                        "or pushed to it")

Each may name the places that bring a person into the caller's jurisdiction (issue 14,
``gateway.domain.places``), after a semicolon:

    Person(all; places: insured|residence)      insured or living in the caller's region
    Person(category: MINIMUM_LIVING; places: identity|residence)

Without ``places`` a condition means the residence, as it always has. Conditions are parsed and
validated when policies load (a typo refuses the policy, it never silently grants or drops
rows) and compiled to SQL by ``authz.compiler``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.domain.departments import RELIEF_CATEGORIES
from gateway.domain.errors import ConfigurationError
from gateway.domain.places import POLICY_PLACE_KINDS, PlaceKind

_ROW_OBJECT = re.compile(r"^Person\((?P<body>[^()]*)\)$")
RESIDENCE_ONLY = frozenset({PlaceKind.RESIDENCE})
# The order places are written in (policy text, `me`, the console): residence first.
PLACE_ORDER = POLICY_PLACE_KINDS


def _places_text(places: frozenset[PlaceKind]) -> str:
    if places == RESIDENCE_ONLY:
        return ""
    return "; places: " + "|".join(kind.value for kind in PLACE_ORDER if kind in places)


@dataclass(frozen=True, slots=True)
class AllRows:
    places: frozenset[PlaceKind] = field(default=RESIDENCE_ONLY)

    def __str__(self) -> str:
        return "all" + _places_text(self.places)


@dataclass(frozen=True, slots=True)
class HoldsCategory:
    categories: frozenset[str]
    places: frozenset[PlaceKind] = field(default=RESIDENCE_ONLY)

    def __str__(self) -> str:
        return "category: " + "|".join(sorted(self.categories)) + _places_text(self.places)


@dataclass(frozen=True, slots=True)
class PushedToDepartment:
    places: frozenset[PlaceKind] = field(default=RESIDENCE_ONLY)

    def __str__(self) -> str:
        return "pushed" + _places_text(self.places)


RowCondition = AllRows | HoldsCategory | PushedToDepartment


def is_row_object(obj: str) -> bool:
    return obj.startswith("Person(")


def parse_row_object(obj: str) -> RowCondition:
    match = _ROW_OBJECT.match(obj.strip())
    if not match:
        raise ConfigurationError(
            f"行范围对象格式错误: {obj!r} (应为 Person(all)、Person(pushed) 或 Person(category: …),"
            " 可加 ; places: residence|identity|insured|addressed)"
        )
    body, semicolon, places_part = match.group("body").partition(";")
    body = body.strip()
    places = _parse_places(places_part) if semicolon else RESIDENCE_ONLY
    if body == "all":
        return AllRows(places)
    if body == "pushed":
        return PushedToDepartment(places)
    key, _, value = body.partition(":")
    if key.strip() == "category" and value.strip():
        categories = frozenset(part.strip() for part in value.split("|") if part.strip())
        unknown = categories - RELIEF_CATEGORIES
        if unknown:
            raise ConfigurationError(f"行范围条件中有未知的救助类别: {', '.join(sorted(unknown))}")
        return HoldsCategory(categories, places)
    raise ConfigurationError(f"未知的行范围条件: {body!r}")


def _parse_places(text: str) -> frozenset[PlaceKind]:
    key, _, value = text.partition(":")
    names = [part.strip() for part in value.split("|") if part.strip()]
    if key.strip() != "places" or not names:
        raise ConfigurationError(
            f"行范围的地点写法错误: {text.strip()!r}"
            " (应为 places: residence|identity|insured|addressed)"
        )
    known = {kind.value: kind for kind in POLICY_PLACE_KINDS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigurationError(
            f"行范围中有未知的地点类型: {', '.join(unknown)} (可选: {', '.join(known)})"
        )
    return frozenset(known[name] for name in names)
