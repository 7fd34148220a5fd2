from __future__ import annotations

from collections.abc import Callable

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from schema.fields import bind_field_resolvers
from schema.limits import query_limits
from schema.query import Mutation, Query

# Generous first limits against query-shaped denial of service; the hardening work makes them
# configurable and adds a cost limit that accounts for page sizes.
MAX_DEPTH = 10
MAX_ALIASES = 50
MAX_TOKENS = 5000


def build_schema(*, production: bool = False) -> strawberry.Schema:
    """The gateway's schema. Production hides the schema's shape: no introspection and no
    "Did you mean …" suggestions (CONTRACT.md, RELIEF_ENV)."""
    # Factories: strawberry builds fresh extension instances per request (the parse and
    # validation caches themselves live at module level and are shared).
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        query_limits(MAX_DEPTH, MAX_ALIASES),
    ]
    if production:
        extensions.append(DisableIntrospection)
    schema = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True, disable_field_suggestions=production),
    )
    bind_field_resolvers(schema._schema)
    return schema
