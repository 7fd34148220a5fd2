"""Arguments in every form GraphQL lets a client write them, for the access-control tests.

The same argument can reach the gateway four ways, and each must answer as the literal does
(issue 13 item 1: a variable crashed the page look-ahead for every department):

* ``literal``  — ``enrollments(year: 2026)``
* ``variable`` — ``query($v0: Int) { … enrollments(year: $v0) … }`` with ``{"v0": 2026}``
* ``default``  — ``query($v0: Int = 2026)`` and no value given
* ``omitted``  — ``query($v0: Int)`` and no value given: as if the argument were not written
  (the argument's own default applies, e.g. ``first`` is 50)

``write_arguments`` turns a selection tree (``tests.expectations.Sel``) with concrete argument
values into a document whose arguments take the given forms, one form per argument in the
order they are met, and returns, next to the query and its variables, the tree *as the gateway
must read it* (arguments written ``omitted`` removed) for ``tests.expectations.Checker``::

    written = write_arguments(selections, ("variable", "omitted", "literal"))
    body = await harness.query(token, written.query, written.variables)
    Checker(world, subject).root(body, written.selections)

A ``PersonFilter`` written as a literal object gives each of its fields a form of its own
(``filter: {category: $v3, activeOn: "2026-01-01"}``); otherwise the whole object is one
variable. A required argument without a default (``person(idNumber:)``) cannot be omitted
(the request would be refused before execution): it is written as a variable instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from tests.expectations import CHILD_TYPE, EnumLit, Sel, Var, literal, render

LITERAL = "literal"
VARIABLE = "variable"
DEFAULT = "default"
OMITTED = "omitted"
FORMS = (LITERAL, VARIABLE, DEFAULT, OMITTED)

# The variable type each argument is declared with: the argument's own type, nullable where
# the argument has a default (``first: Int! = 50`` accepts an ``Int`` variable).
ARGUMENT_TYPES: Mapping[tuple[str, str, str], str] = {
    ("Query", "person", "idNumber"): "String!",
    ("Query", "persons", "filter"): "PersonFilter",
    ("Query", "persons", "first"): "Int",
    ("Query", "persons", "after"): "String",
    ("Person", "reliefStatuses", "activeOn"): "Date",
    ("Person", "enrollments", "year"): "Int",
    ("Person", "costBurdens", "year"): "Int",
}
FILTER_TYPES: Mapping[str, str] = {
    "regionPrefix": "String",
    "category": "ReliefCategory",
    "activeOn": "Date",
    "enrolledIn": "Int",
}


def json_value(value: Any) -> Any:
    """A Python argument value as a client sends it in ``variables`` (JSON)."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, EnumLit):
        return str(value)
    if isinstance(value, Mapping):
        return {k: json_value(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Written:
    """A document with its arguments in chosen forms."""

    query: str
    variables: dict[str, Any]
    # The selections as the gateway must read them (for ``Checker``): omitted arguments gone.
    selections: tuple[Sel, ...]
    # The form each argument was written in, in document order.
    forms: tuple[str, ...]


class _Writer:
    def __init__(self, forms: Sequence[str]) -> None:
        self.forms = tuple(forms) or (LITERAL,)
        self.used = 0
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}
        self.written: list[str] = []

    def next_form(self) -> str:
        form = self.forms[self.used % len(self.forms)]
        self.used += 1
        return form

    def write(self, value: Any, type_: str, form: str) -> tuple[Any, bool]:
        """(what the document carries, whether the gateway reads the value)."""
        self.written.append(form)
        if form == LITERAL:
            return value, True
        name = f"v{len(self.definitions)}"
        if form == VARIABLE:
            self.definitions.append(f"${name}: {type_}")
            self.variables[name] = json_value(value)
            return Var(name), True
        if form == DEFAULT:
            self.definitions.append(f"${name}: {type_} = {literal(value)}")
            return Var(name), True
        assert form == OMITTED, form
        self.definitions.append(f"${name}: {type_}")
        return Var(name), False

    def argument(self, key: tuple[str, str, str], value: Any) -> tuple[Any, Any | None]:
        """(written value, value as read or None when it reads as absent)."""
        type_ = ARGUMENT_TYPES[key]
        form = self.next_form()
        if form == OMITTED and type_.endswith("!"):
            form = VARIABLE  # a required argument cannot be left out
        if key[2] == "filter" and form == LITERAL:
            self.written.append(LITERAL)
            written: dict[str, Any] = {}
            read: dict[str, Any] = {}
            for name, field_value in value.items():
                shown, kept = self.write(field_value, FILTER_TYPES[name], self.next_form())
                written[name] = shown
                if kept:
                    read[name] = field_value
            return written, read
        shown, kept = self.write(value, type_, form)
        return shown, value if kept else None

    def selections(
        self, sels: tuple[Sel, ...], parent: str
    ) -> tuple[tuple[Sel, ...], tuple[Sel, ...]]:
        written: list[Sel] = []
        read: list[Sel] = []
        for sel in sels:
            args_written: list[tuple[str, Any]] = []
            args_read: list[tuple[str, Any]] = []
            for name, value in sel.args:
                shown, kept = self.argument((parent, sel.field, name), value)
                args_written.append((name, shown))
                if kept is not None:
                    args_read.append((name, kept))
            children_written: tuple[Sel, ...] = ()
            children_read: tuple[Sel, ...] = ()
            if sel.children:
                child_type = CHILD_TYPE[(parent, sel.field)]
                children_written, children_read = self.selections(sel.children, child_type)
            written.append(
                dataclasses.replace(sel, args=tuple(args_written), children=children_written)
            )
            read.append(dataclasses.replace(sel, args=tuple(args_read), children=children_read))
        return tuple(written), tuple(read)


def write_arguments(
    selections: tuple[Sel, ...], forms: Sequence[str], *, name: str = "Q"
) -> Written:
    """``selections`` with their arguments written in ``forms`` (cycled, in document order)."""
    writer = _Writer(forms)
    written, read = writer.selections(selections, "Query")
    header = f"query {name}"
    if writer.definitions:
        header += "(" + ", ".join(writer.definitions) + ")"
    query = render(written, operation=header)
    return Written(query, writer.variables, read, tuple(writer.written))
