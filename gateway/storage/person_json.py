"""Compiled reads, the storage half (issue 17): one statement per root field that returns the
response of ``person`` or ``persons`` as JSON built by PostgreSQL.

``schema.compiled`` reads a GraphQL document and the caller's decision and describes what each
object of the response holds as a tree of ``Out`` (response key, what goes there); this module
turns the tree into one statement over the caller's scoped reads (``ScopedPeople``: the same
row predicate, the same keyset page, the same count as the executor's reads)::

    person(idNumber)  →  SELECT json_build_object(<person>), person.id, <places>
                         FROM person WHERE id_number_bidx = $bidx AND <probe>
    persons(...)      →  WITH page AS (<page ids, limit first + 1>),
                              firsts AS (SELECT id FROM page ORDER BY id LIMIT $first)
                         SELECT json_build_object('edges', (SELECT json_agg(...) FROM firsts
                                JOIN person ...), 'pageInfo', ..., 'totalCount', (SELECT count(*)
                                FROM person WHERE <predicate> AND <filter>)), <meta>

A relation is a correlated ``json_agg`` over the child table in the order every read of it
uses. A denied field is ``null`` (the schema side adds the ``FORBIDDEN`` errors); a sealed
column is its ciphertext in hex, opened by the vault only where the field guard releases it.
``<places>`` / ``<meta>`` carry, per person, the place kinds through which a caller that sees
people outside its region sees them (``PlaceNarrowing.kinds_held``): fields follow the place.

Nothing here releases a value: the statement selects ciphertext, never clear text, and only
the columns the caller's decision lets the response hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    LargeBinary,
    Select,
    Text,
    bindparam,
    exists,
    func,
    literal_column,
    null,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect

from gateway.storage.models import Anomaly, Person
from gateway.storage.people import PersonCriteria, ScopedPeople, child_table, relation_condition

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


@dataclass(frozen=True, slots=True)
class Out:
    """One entry of a response object: its response ``key`` and what it holds.

    ``kind`` is ``typename`` (``name`` is the type), ``null``, ``column`` (``name`` a column of
    the object's table, ``convert`` one of ``CONVERSIONS``), ``records`` (``name`` a relation
    of Person: relief, enrollment, cost; ``param`` the bind parameter of its argument when
    one is given; ``fields`` each record's entries), and on a connection ``edges``,
    ``page_info``, ``total_count``, ``cursor``, ``node``, ``has_next_page``, ``end_cursor``."""

    key: str
    kind: str
    name: str | None = None
    convert: str = "as_is"
    param: str | None = None
    fields: tuple[Out, ...] = ()


# How a column is written into the JSON so that it equals what the GraphQL executor serialises.
CONVERSIONS = frozenset({"as_is", "text", "upper", "empty_null", "hex", "open_anomaly"})

_ARGUMENT_TYPES: dict[str, Any] = {"relief": Date(), "enrollment": Integer(), "cost": Integer()}


def _key(name: str) -> ColumnElement[Any]:
    if not _NAME.match(name):  # GraphQL names only: they are written into the statement
        raise ValueError(f"not a GraphQL name: {name!r}")
    return literal_column(f"'{name}'")


def _column(table: Any, out: Out) -> ColumnElement[Any]:
    if out.convert == "open_anomaly":  # 003 §3: under verification while an anomaly is open
        return exists(
            select(Anomaly.id).where(Anomaly.person_id == Person.id, Anomaly.status == "OPEN")
        )
    column = table.c[out.name]
    if out.convert == "text":
        return sql_cast(column, Text)
    if out.convert == "upper":
        return func.upper(column)
    if out.convert == "empty_null":
        return func.nullif(column, literal_column("''"))
    if out.convert == "hex":
        return func.encode(column, literal_column("'hex'"))
    if out.convert != "as_is":
        raise ValueError(f"unknown conversion {out.convert!r}")
    return cast("ColumnElement[Any]", column)


def _object(entries: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    if len(entries) > 100:  # PostgreSQL's limit on a function's arguments
        raise ValueError("too many keys for one json_build_object")
    if not entries:
        return literal_column("'{}'::json")
    return func.json_build_object(*entries)


def _value(table: Any, out: Out) -> ColumnElement[Any]:
    if out.kind == "typename":
        return _key(cast(str, out.name))
    if out.kind == "null":
        return null()
    if out.kind == "column":
        return _column(table, out)
    if out.kind == "records":
        return _records(out)
    raise ValueError(f"unexpected entry {out.kind!r} on a record")


def record_object(table: Any, fields: tuple[Out, ...]) -> ColumnElement[Any]:
    entries: list[ColumnElement[Any]] = []
    for out in fields:
        entries += [_key(out.key), _value(table, out)]
    return _object(entries)


def person_object(fields: tuple[Out, ...]) -> ColumnElement[Any]:
    return record_object(Person.__table__, fields)


def _records(out: Out) -> ColumnElement[Any]:
    relation = cast(str, out.name)
    table, order = child_table(relation)
    aggregated = func.json_agg(aggregate_order_by(record_object(table, out.fields), *order))
    records = select(func.coalesce(aggregated, literal_column("'[]'::json"))).where(
        table.c.person_id == Person.id
    )
    if out.param is not None:
        argument: Any = bindparam(out.param, type_=_ARGUMENT_TYPES[relation])
        condition = relation_condition(relation, argument)
        if condition is not None:
            records = records.where(condition)
    return records.correlate(Person).scalar_subquery()


def _cursor(person_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """``schema.query.encode_cursor`` in SQL: base64url of ``person:<hex>`` (39 bytes: 52
    characters, no padding, no line break)."""
    hex_id = func.replace(sql_cast(person_id, Text), literal_column("'-'"), literal_column("''"))
    raw = func.convert_to(literal_column("'person:'").op("||")(hex_id), literal_column("'UTF8'"))
    encoded = func.encode(raw, literal_column("'base64'"))
    return func.translate(encoded, literal_column("'+/'"), literal_column("'-_'"))


def person_statement(
    people: ScopedPeople, fields: tuple[Out, ...], places: ColumnElement[Any] | None
) -> Select[Any]:
    """One person by the blind index of their ID number (bind parameter ``bidx``), inside the
    caller's scope: (data as JSON text, person id, place kinds or NULL)."""
    return cast(
        "Select[Any]",
        select(
            sql_cast(person_object(fields), Text).label("data"),
            Person.id.label("pid"),
            (null() if places is None else places).label("places"),
        ).where(
            Person.id_number_bidx == bindparam("bidx", type_=LargeBinary()),
            people.probe,
        ),
    )


def persons_statement(
    people: ScopedPeople,
    criteria: PersonCriteria,
    *,
    after: bool,
    fields: tuple[Out, ...],
    places: ColumnElement[Any] | None,
) -> Select[Any]:
    """A keyset page as ``PersonConnection`` JSON text (bind parameters ``limit`` = first + 1,
    ``first`` and, with ``after``, ``after``): (data, ids, places): the ids of the page's people
    in order, and (as JSON text) the place kinds each is seen through, when the caller sees
    people through places; NULL when no entry selects the people."""
    page = people.page_ids(criteria, after=after).cte("page")
    firsts = select(page.c.id).order_by(page.c.id).limit(bindparam("first")).cte("firsts")
    # The page's people are read once: every edges entry, their ids and places are aggregates
    # of one pass over ``firsts JOIN person``.
    aggregates: list[ColumnElement[Any]] = []
    edges_at: dict[str, int] = {}
    for out in fields:
        if out.kind != "edges":
            continue
        edge: list[ColumnElement[Any]] = []
        for part in out.fields:
            if part.kind == "cursor":
                value = _cursor(cast("ColumnElement[Any]", Person.id))
            elif part.kind == "node":
                value = person_object(part.fields)
            else:
                value = _value(Person.__table__, part)
            edge += [_key(part.key), value]
        edges_at[out.key] = len(aggregates)
        aggregated = func.json_agg(aggregate_order_by(_object(edge), Person.id))
        aggregates.append(aggregated.label(f"edges_{len(aggregates)}"))
    people_read = None
    if aggregates:
        aggregates.append(func.array_agg(aggregate_order_by(Person.id, Person.id)).label("ids"))
        if places is not None:
            kinds = func.json_agg(aggregate_order_by(places, Person.id))
            aggregates.append(kinds.label("places"))
        people_read = (
            select(*aggregates)
            .select_from(firsts.join(Person, Person.id == firsts.c.id))
            .subquery("people_read")
        )
    entries: list[ColumnElement[Any]] = []
    for out in fields:
        if out.kind == "edges":
            assert people_read is not None
            listed = people_read.c[f"edges_{edges_at[out.key]}"]
            value = func.coalesce(listed, literal_column("'[]'::json"))
        elif out.kind == "page_info":
            info: list[ColumnElement[Any]] = []
            for part in out.fields:
                if part.kind == "has_next_page":
                    fetched = select(func.count()).select_from(page).scalar_subquery()
                    value = fetched > bindparam("first")
                elif part.kind == "end_cursor":
                    last = (
                        select(firsts.c.id).order_by(firsts.c.id.desc()).limit(1)
                    ).scalar_subquery()
                    value = _cursor(last)
                else:
                    value = _value(None, part)
                info += [_key(part.key), value]
            value = _object(info)
        elif out.kind == "total_count":
            value = people.count_statement(criteria).scalar_subquery()
        else:
            value = _value(None, out)
        entries += [_key(out.key), value]
    data = sql_cast(_object(entries), Text).label("data")
    if people_read is None:
        return cast("Select[Any]", select(data, null().label("ids"), null().label("places")))
    kinds_text = (sql_cast(people_read.c.places, Text) if places is not None else null()).label(
        "places"
    )
    return cast("Select[Any]", select(data, people_read.c.ids, kinds_text).select_from(people_read))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once for the driver: its SQL, its bind parameters in positional
    order and the values fixed at build time (the scope's region, today, kinds …)."""

    sql: str
    names: tuple[str, ...]
    constants: Mapping[str, Any]

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            values[name] if name in values else self.constants[name] for name in self.names
        )


def prepare(stmt: Select[Any], dialect: Dialect) -> Prepared:
    """The statement for the driver. The request's values (page size, cursor, blind index,
    arguments) are given at run time; the IN lists fixed at build time (place kinds …) are
    written out as parameters of their own."""
    compiled = stmt.compile(dialect=dialect)
    expanded = compiled.construct_expanded_state(compiled.construct_params(_check=False))
    return Prepared(
        expanded.statement, tuple(expanded.positiontup or ()), dict(expanded.parameters)
    )
