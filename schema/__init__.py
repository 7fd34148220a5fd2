"""The GraphQL schema: strawberry types and thin resolvers.

Resolvers ask the request context's field guard for every guarded field and the scoped
storage for rows; they never build SQL and never decide access themselves.
"""

from schema._schema import build_schema

__all__ = ["build_schema"]
