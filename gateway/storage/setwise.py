"""Set-based writes that run the same on PostgreSQL and SQLite: ``INSERT … SELECT … ON
CONFLICT DO NOTHING`` with row ids computed by the database, so a run over a province never
brings its rows into Python (warning runs, tasks opened for a batch)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, Uuid, cast, func, literal, literal_column
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(dialect: str, model: Any) -> Any:
    """The dialect's ``insert`` (the one with ``on_conflict_do_nothing``)."""
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"relief-gateway supports PostgreSQL and SQLite, not {dialect}")


def new_uuid(dialect: str) -> ColumnElement[Any]:
    """A random (version 4) UUID computed by the database, one per inserted row, in the form
    the ``Uuid`` column stores: native on PostgreSQL, 32 hex digits on SQLite. Such ids need no
    determinism: each table's unique key is what makes a re-run change nothing."""
    if dialect == "postgresql":
        return func.gen_random_uuid().cast(Uuid())
    # Every randomblob() call is fresh randomness, so the pieces need not come from one blob.
    return literal_column(
        "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)"
        " || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2)"
        " || hex(randomblob(6)))",
        type_=Uuid(),
    )


def uuid_text(dialect: str, column: ColumnElement[Any]) -> ColumnElement[str]:
    """The canonical text of a stored UUID (``str(uuid)``: 8-4-4-4-12, lower case), so a key
    built from it reads the same on both databases."""
    if dialect == "postgresql":
        return cast(column, String())
    pieces = [func.substr(column, start, length) for start, length in _UUID_GROUPS]
    joined: ColumnElement[str] = pieces[0]
    for piece in pieces[1:]:
        joined = joined + literal("-", String()) + piece
    return func.lower(joined)


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
