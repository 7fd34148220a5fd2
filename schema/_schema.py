from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.fields import bind_field_resolvers
from schema.limits import QueryLimits, query_limits
from schema.query import Mutation, Query
from schema.subscriptions import Subscription


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Not strawberry's default, which logs every error as the printed GraphQL error: the
        query source with its literal arguments (an ID number typed into the query) plus a
        traceback. ``gateway.http.graphql`` logs what is unexpected, without either."""


def build_schema(
    *, production: bool = False, limits: QueryLimits | None = None
) -> strawberry.Schema:
    """The gateway's schema. Production hides the schema's shape: no introspection and no
    "Did you mean …" suggestions (CONTRACT.md, RELIEF_ENV). ``limits`` (depth, aliases, tokens,
    directives, operations, cost: ``QueryLimits.from_settings``) default to the Settings
    defaults."""
    # Factories: strawberry builds fresh extension instances per request (the parse and
    # validation caches themselves are shared across requests).
    cached_parse, shape_limits, checks = query_limits(limits or QueryLimits())
    extensions: list[Callable[[], SchemaExtension]] = [
        cached_parse,  # a parse cache with the token limit
        lambda: ValidationCache(maxsize=512),
        shape_limits,  # after the validation cache: it reads its result
    ]
    if production:
        extensions.append(DisableIntrospection)
    schema = _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,  # live worklists over SSE (gateway.http.sse)
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True, disable_field_suggestions=production),
    )
    bind_field_resolvers(schema._schema)
    # The same checks admit a document to compiled reads (schema.compiled).
    schema.limit_checks = checks  # type: ignore[attr-defined]
    # schema.deliveries: production refuses plain-HTTP loopback webhook addresses.
    schema.production = production  # type: ignore[attr-defined]
    return schema
