"""Arguments read outside the executor, exactly as the executor reads them.

A resolver that looks ahead at its selection (``schema.prefetch``: the relations a page
selects, with their arguments) must see the same values the fields themselves will get: a
literal, a variable, the default in the operation's variable definitions (``$y: Int = 2026``),
a variable declared but not given (as if the argument were omitted), and ``@include`` /
``@skip`` driven by variables. graphql-core's own coercion does all of that
(``get_argument_values``, ``get_directive_values``), given the operation's ``VariableValues``::

    variables = operation_variables(info)
    if included(node, variables):
        year = get_argument_values(person.fields["enrollments"], node, variables)["year"]

strawberry hands resolvers only the coerced dict in ``info.variable_values``
(``StrawberryGraphQLCoreExecutionContext.build_resolve_info``), which graphql-core 3.3's
helpers do not accept (they read ``.coerced`` and ``.sources``): ``operation_variables`` puts
the container back together. Hand-reading ``ArgumentNode.value`` instead sees a
``VariableNode`` where the caller meant a value.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLResolveInfo,
    GraphQLSkipDirective,
    SelectionNode,
    Undefined,
    get_directive_values,
)
from graphql.execution.get_variable_signature import get_variable_signature
from graphql.execution.values import VariableValues, VariableValueSource

__all__ = ["included", "operation_variables"]


def operation_variables(info: GraphQLResolveInfo[Any]) -> VariableValues:
    """The operation's variables as graphql-core's execution helpers take them.

    ``coerced`` is the executor's own dict (values given or defaulted by the operation; a
    variable declared but not given is absent from it, so an argument using it takes the
    argument's default, as in execution). ``sources`` pairs each declared variable with its
    signature; its value is the coerced one (graphql-core reads it only to print a variable
    back into a custom scalar's list or object literal: the JSON scalar, whose coerced value
    is its input)."""
    given: object = info.variable_values
    if isinstance(given, VariableValues):  # graphql-core's own resolve info
        return given
    if not isinstance(given, dict):  # pragma: no cover - neither graphql-core's nor strawberry's
        raise TypeError(f"unexpected variable values: {type(given).__name__}")
    sources: dict[str, VariableValueSource] = {}
    for definition in info.operation.variable_definitions or ():
        signature = get_variable_signature(info.schema, definition)
        if isinstance(signature, GraphQLError):  # refused by validation before execution
            continue
        sources[signature.name] = VariableValueSource(
            signature, given.get(signature.name, Undefined)
        )
    return VariableValues(sources, given)


def included(node: SelectionNode, variables: VariableValues) -> bool:
    """Whether execution selects ``node``: not when ``@skip(if: true)``, nor when
    ``@include(if: false)`` (graphql-core's ``should_include_node``, which is internal)."""
    if not node.directives:
        return True
    skip = get_directive_values(GraphQLSkipDirective, node, variables)
    if skip is not None and skip["if"] is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, variables)
    return include is None or include["if"] is not False
