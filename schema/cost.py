"""A query's cost: how many objects (rows) it could return, estimated before it runs.

    persons(first: 200) {                 200                      page size
      edges { node {                      0                        connection structure
        household {                       200 × 1                  one related object
          members { name } } } } }        200 × 1 × 8              a list: its per-item estimate
                                          ─────
                                          2,000

The estimate is static (no database): a field with a ``first`` argument multiplies what it
contains by its page size (the literal, else the variable's value, else the argument's default,
capped at the maximum page size); any other list of objects by a configured estimate of its
length (``Household.members``, ``Person.reliefStatuses``, …); a single object counts one. Fields
of ``…Connection`` and ``…Edge`` types are structure (their items are the page already counted).
Scalars cost nothing. Fragments are followed; inline fragments on different types of one union
are all counted (an upper bound). The result is linear in the multiplier, so each fragment is
walked once per document however often it is spread (no blow-up through nested spreads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

PAGE_ARGUMENT = "first"

# How many items a list of related objects is expected to hold (RELIEF_QUERY_COST_ESTIMATES
# overrides or adds "Type.field": n). Generous: a household of eight, a few records a person.
# With these, a 200-person page with every relation of each person and of each household
# member is about 34,000; the default RELIEF_MAX_QUERY_COST is 50,000.
DEFAULT_LIST_ESTIMATES: Mapping[str, int] = {
    "Household.members": 8,
    "Person.reliefStatuses": 3,
    "Person.enrollments": 3,
    "Person.costBurdens": 3,
    "Person.provenance": 3,
    "Warning.tasks": 4,
    "ReliefChain.events": 20,
}
DEFAULT_LIST_ESTIMATE = 10


@dataclass(frozen=True)
class CostModel:
    max_page_size: int = 200
    list_estimates: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIST_ESTIMATES))
    default_list_estimate: int = DEFAULT_LIST_ESTIMATE


def page_variables(document: DocumentNode) -> frozenset[str]:
    """Variables used as a ``first`` argument anywhere: the only ones the estimate depends on."""
    names: set[str] = set()

    def visit(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                for argument in selection.arguments or ():
                    if argument.name.value == PAGE_ARGUMENT and isinstance(
                        argument.value, VariableNode
                    ):
                        names.add(argument.value.name.value)
            if isinstance(selection, FieldNode | InlineFragmentNode):
                visit(selection.selection_set)

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            visit(definition.selection_set)
    return frozenset(names)


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, object],
    model: CostModel,
) -> int:
    """The estimated number of objects ``operation`` could return (see the module docstring).

    ``document`` must have passed validation (unknown fields are skipped, not guessed)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    defaults = {
        v.variable.name.value: int(v.default_value.value)
        for v in operation.variable_definitions or ()
        if isinstance(v.default_value, IntValueNode)
    }
    fragment_costs: dict[str, int] = {}

    def page_size(node: FieldNode, definition: GraphQLField) -> int:
        size: object = definition.args[PAGE_ARGUMENT].default_value
        for argument in node.arguments or ():
            if argument.name.value != PAGE_ARGUMENT:
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                name = value.name.value
                given = variables.get(name, defaults.get(name))
                if given is not None:
                    size = given
        if not isinstance(size, int) or isinstance(size, bool):
            size = model.max_page_size  # no usable value: assume the largest page
        return max(0, min(size, model.max_page_size))

    def field_size(parent: GraphQLNamedType, node: FieldNode, definition: GraphQLField) -> int:
        """(objects this field returns per enclosing item) = its children's multiplier."""
        if PAGE_ARGUMENT in definition.args:
            return page_size(node, definition)
        if parent.name.endswith(("Connection", "Edge")):
            return 1  # edges/node/pageInfo: the page counted at the connection field
        returned = definition.type
        if isinstance(returned, GraphQLNonNull):
            returned = returned.of_type
        if isinstance(returned, GraphQLList):
            key = f"{parent.name}.{node.name.value}"
            return model.list_estimates.get(key, model.default_list_estimate)
        return 1

    def cost(selection_set: SelectionSetNode | None, parent: GraphQLNamedType) -> int:
        """Cost of ``selection_set`` for one item of ``parent``."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                    continue
                definition = parent.fields.get(selection.name.value)
                if definition is None:
                    continue  # __typename and introspection: no rows
                child = get_named_type(definition.type)
                if is_leaf_type(child):
                    continue
                size = field_size(parent, selection, definition)
                own = 0 if parent.name.endswith(("Connection", "Edge")) else size
                total += own + size * cost(selection.selection_set, child)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                if target is not None:
                    total += cost(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                total += spread(selection.name.value)
        return total

    def spread(name: str) -> int:
        if name in fragment_costs:
            return fragment_costs[name]
        fragment_costs[name] = 0  # a cycle (refused by validation) ends here
        definition = fragments.get(name)
        target = schema.get_type(definition.type_condition.name.value) if definition else None
        if definition is not None and target is not None:
            fragment_costs[name] = cost(definition.selection_set, target)
        return fragment_costs[name]

    root = schema.get_root_type(operation.operation)
    return cost(operation.selection_set, root) if root is not None else 0
