"""Storage: SQLAlchemy models, engines and the scoped queries that carry the row predicate."""
