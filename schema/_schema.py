from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from schema.query import Query


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query, config=StrawberryConfig(auto_camel_case=True))
