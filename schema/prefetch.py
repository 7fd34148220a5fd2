"""Look-ahead for pages: the resolver that returns people loads, in the same step, the relations
the query selects on them, so the per-person relation fields resolve without awaiting.

Without it each person's relation field is an awaitable the executor gathers separately (a
task per person and relation); with it a page's children arrive in one query per relation
before the people are completed. Results are the same either way: relations not prefetched
(nested deeper, or denied — the guard still refuses them) fall back to the batch loaders.

The look-ahead reads the selection as execution will (``schema.arguments``): arguments given
as literals, variables, variable defaults or variables not given, through fragments, and
without what ``@skip`` / ``@include`` leave out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
    get_argument_values,
)
from graphql.execution.values import VariableValues

from gateway.storage.people import PersonRow
from schema.arguments import included, operation_variables
from schema.context import RequestContext

# GraphQL relation field on Person → (relation key in the context, its argument name)
PERSON_RELATIONS = {
    "reliefStatuses": ("relief", "activeOn"),
    "enrollments": ("enrollment", "year"),
    "costBurdens": ("cost", "year"),
}


def _fields(
    selection_set: SelectionSetNode | None,
    info: GraphQLResolveInfo[Any],
    variables: VariableValues,
) -> Iterable[FieldNode]:
    """Field nodes a selection set selects, through inline fragments and fragment spreads."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if not included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, info, variables)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = info.fragments.get(selection.name.value)
            if fragment is not None:
                yield from _fields(fragment.selection_set, info, variables)


def _person_nodes(
    info: GraphQLResolveInfo[Any],
    path: Sequence[str],
    variables: VariableValues,
) -> list[FieldNode]:
    """The field nodes whose selection sets select on Person, following ``path`` (e.g.
    ``edges``/``node`` under a connection) from the current field."""
    nodes = list(info.field_nodes)
    for name in path:
        nodes = [
            child
            for node in nodes
            for child in _fields(node.selection_set, info, variables)
            if child.name.value == name
        ]
    return nodes


def requested_relations(
    info: GraphQLResolveInfo[Any],
    path: Sequence[str] = (),
) -> set[tuple[str, Any]]:
    """(relation key, argument value) pairs selected on the people this field returns; the
    argument value is the one the relation's resolver will receive."""
    person_type = info.schema.get_type("Person")
    assert isinstance(person_type, GraphQLObjectType)
    variables = operation_variables(info)
    requested: set[tuple[str, Any]] = set()
    for node in _person_nodes(info, path, variables):
        for child in _fields(node.selection_set, info, variables):
            if child.name.value == "household":
                members = _fields(child.selection_set, info, variables)
                if any(f.name.value == "members" for f in members):
                    requested.add(("members", None))
                continue
            relation = PERSON_RELATIONS.get(child.name.value)
            if relation is None:
                continue
            key, argument = relation
            try:
                arguments = get_argument_values(
                    person_type.fields[child.name.value], child, variables
                )
            except GraphQLError:  # a bad argument is reported by the field itself
                continue
            requested.add((key, arguments.get(argument)))
    return requested


async def prefetch_people(
    context: RequestContext,
    info: GraphQLResolveInfo[Any],
    people: Sequence[PersonRow],
    path: Sequence[str] = (),
) -> None:
    if people:
        await context.prefetch(people, requested_relations(info, path))
