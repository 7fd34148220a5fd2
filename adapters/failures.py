"""Database failures during ingest, told apart and named in an operator's words.

An ingest meets the database through SQLAlchemy and, for its bulk writes, through the raw
asyncpg connection (``COPY``, :func:`adapters.apply._shared.insert_rows`), past SQLAlchemy's
translation. What reaches the pipeline when the database goes away is therefore any of::

    sqlalchemy.exc.SQLAlchemyError       DBAPIError, OperationalError, InterfaceError …
    asyncpg.PostgresError                ConnectionDoesNotExistError (08003), AdminShutdown …
    asyncpg.InterfaceError               "connection is closed", "another operation is in
                                         progress" (a COPY begun just as the server hung up)
    asyncpg.InternalClientError          the protocol refusing a statement after a FATAL
    OSError                              refused, reset, broken pipe, unreachable, timed out

and the error that surfaces is often a consequence (the rollback of a connection that is gone)
whose cause is further down its chain. :func:`database_problem` reads the whole chain.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - SQLite-only installations
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


_DRIVER_ERRORS = _driver_errors()
# The asyncpg errors of a connection in a state no statement can use (see the module docstring):
# at run time they only arise from a connection the server has closed or is closing.
_DRIVER_CONNECTION_ERRORS = tuple(
    error for error in _DRIVER_ERRORS if error.__name__ in ("InterfaceError", "InternalClientError")
)

# What a block that only talks to the database may raise when the database fails. OSError is
# in it (a dropped socket, a refused connect): catch it only around code that touches nothing
# but the database, never around reading the department's file or writing the report.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, *_DRIVER_ERRORS)

# SQLSTATE classes (PostgreSQL) and result codes (SQLite) of a database that cannot take writes.
_READ_ONLY_STATES = ("25006",)  # read_only_sql_transaction
_FULL_STATES = ("53100",)  # disk_full
_CONNECTION_STATES = ("08", "57P")  # connection exception, operator intervention (shutdown)
_UNDEFINED_STATES = ("42P01", "42703")  # undefined table, undefined column
_SQLITE_READ_ONLY = ("SQLITE_READONLY", "SQLITE_PERM")
_SQLITE_CANT_OPEN = ("SQLITE_CANTOPEN",)  # no such directory, or one that cannot be written
_SQLITE_FULL = ("SQLITE_FULL",)  # also what PRAGMA max_page_count gives


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver error it wraps, and what caused it or was being handled, once each."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None]
        todo += [current.__cause__, current.__context__]


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or "")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its chain) says the connection to the database is gone
    or could not be made."""
    return any(
        _sqlstate(e).startswith(_CONNECTION_STATES)
        or getattr(e, "connection_invalidated", False) is True
        or isinstance(e, (OSError, *_DRIVER_CONNECTION_ERRORS))
        for e in _chain(exc)
    )


def database_problem(exc: BaseException) -> tuple[str, str]:
    """What went wrong with the database and what to check, in an operator's words (never SQL
    or parameters): ``("数据库为只读 ReadOnlySQLTransactionError", "请检查…，")``."""
    kind = type(exc).__name__
    chain = list(_chain(exc))
    states = [_sqlstate(e) for e in chain]
    sqlite = [str(getattr(e, "sqlite_errorname", None) or "") for e in chain]
    if any(s in _READ_ONLY_STATES for s in states) or any(
        s.startswith(_SQLITE_READ_ONLY) for s in sqlite
    ):
        return f"数据库为只读 {kind}", "请检查数据库或其所在磁盘的只读设置，"
    if any(s in _FULL_STATES for s in states) or any(s.startswith(_SQLITE_FULL) for s in sqlite):
        return f"数据库磁盘空间不足 {kind}", "请清理或扩容数据库所在磁盘，"
    if any(s.startswith(_SQLITE_CANT_OPEN) for s in sqlite):
        return (
            f"无法打开数据库文件 {kind}",
            "请检查 RELIEF_DATABASE_URL 是否正确、数据库文件及其目录是否存在且可写"
            "（新数据库请先执行 relief-gateway migrate），",
        )
    if connection_lost(exc):
        return f"数据库连接中断 {kind}", "请检查数据库是否运行、RELIEF_DATABASE_URL 是否可达，"
    if any(s in _UNDEFINED_STATES for s in states) or any(
        str(e).startswith(("no such table", "no such column")) for e in chain
    ):
        return f"数据库结构不是当前版本 {kind}", "请先执行 relief-gateway migrate，"
    return f"数据库错误 {kind}", ""


__all__ = ["DATABASE_ERRORS", "connection_lost", "database_problem"]
