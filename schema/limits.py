"""Query-shape limits: depth and alias count, checked once per distinct query text.

strawberry's own limiters add validation rules built per request, which defeats the
validation cache (every request re-walks the document). This walks each distinct document once
and remembers the answer; the hardening work adds cost limits on top.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension


def _shape(document: DocumentNode) -> tuple[int, int]:
    """(maximum field depth, number of aliases) over all operations, following fragments."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    aliases = 0

    def depth(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        nonlocal aliases
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                if selection.name.value.startswith("__"):
                    # Introspection (GraphiQL's schema query nests ~13 levels of ofType) reads
                    # the schema, not data; production turns it off altogether.
                    continue
                deepest = max(deepest, 1 + depth(selection.selection_set, seen))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, depth(selection.selection_set, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:  # cycles are a validation error
                    deepest = max(deepest, depth(fragments[name].selection_set, seen | {name}))
        return deepest

    deepest = max(
        (
            depth(d.selection_set, frozenset())
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        ),
        default=0,
    )
    return deepest, aliases


_cached_shape = lru_cache(maxsize=1024)(_shape)


def query_limits(max_depth: int, max_aliases: int) -> type[SchemaExtension]:
    class QueryLimits(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            # Runs after the validation cache has put its result in pre_execution_errors
            # (extension order in build_schema); strawberry checks them before this yields back.
            context = self.execution_context
            document = context.graphql_document
            if document is not None:
                deepest, aliases = _cached_shape(document)
                errors = []
                if deepest > max_depth:
                    errors.append(GraphQLError(f"查询嵌套过深: {deepest} 层, 上限 {max_depth} 层"))
                if aliases > max_aliases:
                    errors.append(GraphQLError(f"别名过多: {aliases} 个, 上限 {max_aliases} 个"))
                if errors:
                    context.pre_execution_errors = [*(context.pre_execution_errors or []), *errors]
            yield

    return QueryLimits
