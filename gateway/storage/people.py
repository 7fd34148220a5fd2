"""Scoped reads of people and their records.

``ScopedPeople`` is built with the caller's row predicate (from ``authz.compiler``) and puts it
into every query that returns people: lookups, pages, counts and household members. Child
records are loaded in batches for people that came out of those scoped queries, so nothing
reachable from here leads out of scope, and a page costs a constant number of statements.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, defaultdict, namedtuple
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Result,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from gateway.storage.models import Anomaly, CostBurden, Enrollment, Person, ReliefStatus

PersonRow = Row[Any]
# A relation of Person a query selects, with its argument: ("relief", active_on),
# ("enrollment", year) or ("cost", year).
Relation = tuple[str, Any]

_PERSON_COLUMNS = (
    Person.id,
    Person.id_number_ct,
    Person.name_ct,
    Person.phone_ct,
    Person.address_ct,
    Person.gender,
    Person.birth_date,
    Person.region_code,
    Person.household_id,
    # 003 §3: while an anomaly about a person is open, their benefits are suspended.
    exists(
        select(Anomaly.id).where(Anomaly.person_id == Person.id, Anomaly.status == "OPEN")
    ).label("under_verification"),
)


_PLAIN_TYPES: dict[tuple[str, ...], Callable[..., Any]] = {}


def _plain(rows: Iterable[Row[Any]]) -> list[Any]:
    """Rows as named tuples (same attributes). SQLAlchemy's Row resolves every attribute in
    Python and builds an exception for each absent one, and GraphQL execution probes every
    object it completes (``__await__``): on a page that was a tenth of the time."""
    plain: list[Any] = []
    make: Callable[..., Any] | None = None
    for row in rows:
        if make is None:
            fields = tuple(row._fields)
            record = _PLAIN_TYPES.get(fields)
            if record is None:
                record = _PLAIN_TYPES.setdefault(fields, namedtuple("Record", fields))
            make = record._make  # type: ignore[attr-defined]
        plain.append(make(row))
    return plain


def _select_people() -> Select[Any]:
    """The person columns resolvers may need (ciphertexts are opened only when released)."""
    return cast("Select[Any]", select(*_PERSON_COLUMNS))


@dataclass(frozen=True, slots=True)
class IdSource:
    """One way into a caller's jurisdiction and what people must meet there (built by
    ``authz.compiler.row_scope``; a scope is in effect the ``OR`` of its sources).

    ``key`` is ``person.id`` (the residence) or ``person_place.person_id`` (one stored kind);
    ``jurisdiction`` is over the key's table, an index range in key order
    (``ix_person_county_id``; ``ix_person_place_county``: region, kind, person_id), where a
    place may list a person twice (two counties of one city). ``conditions`` is over
    ``person``; ``None`` when everyone the source brings is in scope."""

    key: InstrumentedAttribute[uuid.UUID]
    jurisdiction: ColumnElement[bool]
    conditions: ColumnElement[bool] | None

    @property
    def reads_places(self) -> bool:
        return self.key is not Person.id


@dataclass(frozen=True, slots=True)
class PersonCriteria:
    """A validated ``PersonFilter``. ``category`` without ``active_on`` means held today."""

    region_prefix: str | None = None
    category: str | None = None
    active_on: date | None = None
    enrolled_in: int | None = None


def _active_on(day: date) -> ColumnElement[bool]:
    return and_(
        ReliefStatus.valid_from <= day,
        or_(ReliefStatus.valid_to.is_(None), ReliefStatus.valid_to >= day),
    )


def child_table(key: str) -> tuple[Table, tuple[Any, ...]]:
    """The table of a relation and its order (the order every read of it uses)."""
    if key == "relief":
        return ReliefStatus.__table__, (ReliefStatus.valid_from, ReliefStatus.id)  # type: ignore[return-value]
    if key == "enrollment":
        return Enrollment.__table__, (Enrollment.year, Enrollment.id)  # type: ignore[return-value]
    if key == "cost":
        return CostBurden.__table__, (CostBurden.year, CostBurden.id)  # type: ignore[return-value]
    raise ValueError(f"not an embeddable relation: {key}")


# Records of embedded relations: the same attribute names as the rows of the batch queries.
_RECORD_TYPES: dict[str, Callable[..., Any]] = {
    key: namedtuple(f"{key.title()}Record", [c.name for c in child_table(key)[0].c])
    for key in ("relief", "enrollment", "cost")
}


def relation_condition(key: str, argument: Any) -> ColumnElement[bool] | None:
    if argument is None:
        return None
    if key == "relief":
        return _active_on(argument)
    year = Enrollment.year if key == "enrollment" else CostBurden.year
    condition: ColumnElement[bool] = year == argument
    return condition


# Built statements, per caller scope (the row predicate object, one per scope: see
# authz.compiler) and shape; values vary through bound parameters. Building a Select and its
# cache key costs more than a lookup by index takes in PostgreSQL.
_STATEMENTS: OrderedDict[tuple[int, Hashable], tuple[ColumnElement[bool], Select[Any]]] = (
    OrderedDict()
)
_STATEMENTS_MAX = 512


def _cached(
    predicate: ColumnElement[bool], shape: Hashable, build: Callable[[], Select[Any]]
) -> Select[Any]:
    key = (id(predicate), shape)
    entry = _STATEMENTS.get(key)
    if entry is not None and entry[0] is predicate:  # the entry keeps its predicate alive
        _STATEMENTS.move_to_end(key)
        return entry[1]
    stmt = build()
    _STATEMENTS[key] = (predicate, stmt)
    if len(_STATEMENTS) > _STATEMENTS_MAX:
        _STATEMENTS.popitem(last=False)
    return stmt


class ScopedPeople:
    def __init__(
        self,
        connection: AsyncConnection,
        predicate: ColumnElement[bool],
        today: date,
        *,
        sources: Sequence[IdSource] = (),
        probe: ColumnElement[bool] | None = None,
        after_load: Callable[[list[PersonRow]], Awaitable[None]] | None = None,
        reported_members: Callable[[Sequence[uuid.UUID]], ColumnElement[bool]] | None = None,
    ) -> None:
        self._connection = connection
        self._predicate = predicate
        # For lookups of one person (by ID number, by ids): the predicate with places probed
        # per person (``authz.compiler.RowScope.probe``); the same rows.
        self._probe = predicate if probe is None else probe
        self._today = today
        # The predicate read as ways into the jurisdiction (``authz.compiler.row_scope``), for
        # keyset pages; a residence-only scope's predicate is already one index range.
        self._sources = tuple(sources) if any(s.reads_places for s in sources) else ()
        # Told of every person row loaded, before any resolver sees it (fields follow the
        # place: the request's field guard learns who is seen only through which places; a
        # person seen only through the caller's own report is replaced by the report's view).
        self._after_load = after_load
        # Who the caller reported as a member of a household (``gateway.storage.reports``).
        self._reported_members = reported_members
        # On PostgreSQL a person query carries the relations the request selects as arrays of
        # rows (one statement instead of one per relation); SQLite has no arrays.
        self.embeds = connection.dialect.name == "postgresql"
        # GraphQL resolves sibling root fields and batch loaders concurrently; one connection
        # (one connection, one transaction) runs one statement at a time.
        self._lock = asyncio.Lock()

    @property
    def dialect(self) -> Dialect:
        return self._connection.dialect

    @property
    def predicate(self) -> ColumnElement[bool]:
        """The caller's row predicate, for aggregates built elsewhere (coverage) that must count
        exactly the people these methods would return."""
        return self._predicate

    async def execute_driver_sql(self, sql: str, arguments: tuple[Any, ...]) -> Any:
        """The first row of a statement compiled ahead (``gateway.storage.person_json``), run
        on the request's connection as the driver's own prepared statement."""
        async with self._lock:
            result = await self._connection.exec_driver_sql(sql, arguments)
            return result.first()

    async def execute(self, stmt: Any) -> Result[Any]:
        """Run one statement on the request's connection (shared with ``DepartmentExchange``)."""
        return await self._execute(stmt)

    async def _execute(self, stmt: Any, params: dict[str, Any] | None = None) -> Result[Any]:
        async with self._lock:
            result: Result[Any] = await self._connection.execute(stmt, params)
            return result

    # ---------------------------------------------------------------- people
    async def by_id_number_index(
        self, index: bytes, embed: Sequence[Relation] = ()
    ) -> PersonRow | None:
        embed = tuple(embed)

        def build() -> Select[Any]:
            stmt = _select_people().where(
                Person.id_number_bidx == bindparam("bidx", type_=Person.id_number_bidx.type),
                self._probe,
            )
            return self._embedding(stmt, embed)

        stmt = _cached(self._probe, ("by_index", embed), build)
        rows = await self._loaded(_plain((await self._execute(stmt, {"bidx": index})).all()))
        return rows[0] if rows else None

    async def by_ids(self, person_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[PersonRow]]:
        """People by id, inside the caller's scope (anomalies point at people by id)."""
        stmt = _select_people().where(Person.id.in_(person_ids), self._probe)
        return {row.id: [row] for row in await self._loaded(_plain(await self._execute(stmt)))}

    async def page(
        self,
        criteria: PersonCriteria,
        *,
        first: int,
        after: uuid.UUID | None,
        embed: Sequence[Relation] = (),
    ) -> tuple[list[PersonRow], bool]:
        """Keyset page ordered by id: ``first`` rows after ``after``, and whether more follow."""
        embed = tuple(embed)

        def build() -> Select[Any]:
            if self._sources:
                return self._embedding(self._page_by_sources(criteria, after is not None), embed)
            stmt = self._embedding(self._filtered(_select_people(), criteria), embed)
            if after is not None:
                stmt = stmt.where(Person.id > bindparam("after", type_=Person.id.type))
            return stmt.order_by(Person.id).limit(bindparam("limit"))

        shape = ("page", criteria, after is None, embed, bool(self._sources))
        stmt = _cached(self._predicate, shape, build)
        params: dict[str, Any] = {"limit": first + 1}
        if after is not None:
            params["after"] = after
        rows = _plain(await self._execute(stmt, params))
        return await self._loaded(rows[:first]), len(rows) > first

    def _page_ids_by_sources(self, criteria: PersonCriteria, after: bool) -> Select[Any]:
        """The page read by sources (issue 14: the predicate's ``OR`` of a column and a place
        subselect walks the primary key): each source's people in id order along its index,
        with its conditions and the filter applied, stopped after ``limit``; the page is the
        first ``limit`` distinct ids of those streams (``_page_by_sources`` reads their rows).

        Exact for any filter: a person among the first ``limit`` in scope is among the first
        ``limit`` of each source that brings them in (whoever precedes them there is in scope
        and precedes them on the page). Every stream carries its source's conditions, so no
        statement selects a person out of scope. A place stream reads ``person_place`` alone
        when nothing needs the person row."""
        limit: BindParameter[Any] = bindparam("limit")
        after_id = bindparam("after", type_=Person.id.type)
        filters = self._criteria(criteria)
        streams = []
        for source in self._sources:
            conditions = filters if source.conditions is None else [source.conditions, *filters]
            stream = select(source.key.label("id")).where(source.jurisdiction, *conditions)
            if source.reads_places:
                if conditions:
                    stream = stream.join(Person, Person.id == source.key)
                stream = stream.distinct()
            if after:
                stream = stream.where(source.key > after_id)
            ordered = stream.order_by(source.key).limit(limit).subquery()
            streams.append(select(ordered.c.id))
        merged = union_all(*streams).subquery()
        return cast(
            "Select[Any]", select(merged.c.id).distinct().order_by(merged.c.id).limit(limit)
        )

    def _page_by_sources(self, criteria: PersonCriteria, after: bool) -> Select[Any]:
        page = self._page_ids_by_sources(criteria, after).subquery("page")
        stmt = _select_people().select_from(page.join(Person, Person.id == page.c.id))
        return stmt.order_by(Person.id)

    def page_ids(self, criteria: PersonCriteria, *, after: bool) -> Select[Any]:
        """The ids of the keyset page ``page`` reads, in id order: ``limit`` (a bind
        parameter) people in scope that meet the filter, after ``after`` (a bind parameter)
        when ``after`` is set. For statements that build the page's rows themselves
        (``gateway.storage.person_json``)."""
        if self._sources:
            return self._page_ids_by_sources(criteria, after)
        stmt = select(Person.id).where(self._predicate, *self._criteria(criteria))
        if after:
            stmt = stmt.where(Person.id > bindparam("after", type_=Person.id.type))
        return cast("Select[Any]", stmt.order_by(Person.id).limit(bindparam("limit")))

    def count_statement(self, criteria: PersonCriteria) -> Select[Any]:
        """``SELECT count(*)`` of the people ``count`` counts."""
        return self._filtered(select(func.count()).select_from(Person), criteria)

    @property
    def probe(self) -> ColumnElement[bool]:
        """The row predicate for a lookup of one person (see ``__init__``)."""
        return self._probe

    async def _loaded(self, rows: list[Any]) -> list[Any]:
        if rows and self._after_load is not None:
            await self._after_load(rows)
        return rows

    async def count(self, criteria: PersonCriteria) -> int:
        stmt = self.count_statement(criteria)
        return int((await self._execute(stmt)).scalar_one())

    async def household_members(
        self, household_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[PersonRow]]:
        member: ColumnElement[bool] = Person.household_id.in_(household_ids)
        if self._reported_members is not None:
            member = or_(member, self._reported_members(household_ids))
        stmt = _select_people().where(member, self._predicate).order_by(Person.id)
        members: dict[uuid.UUID, list[PersonRow]] = defaultdict(list)
        # grouped after loading: a person seen as reported is a member of the reported household
        for row in await self._loaded(_plain(await self._execute(stmt))):
            members[row.household_id].append(row)
        return members

    def _filtered(self, stmt: Select[Any], criteria: PersonCriteria) -> Select[Any]:
        return stmt.where(self._predicate, *self._criteria(criteria))

    def _criteria(self, criteria: PersonCriteria) -> list[ColumnElement[bool]]:
        """The filter's conditions, over ``person``."""
        filters: list[ColumnElement[bool]] = []
        prefix = criteria.region_prefix
        if prefix:
            # Equality on the split code columns uses their indexes; LIKE narrows the rest.
            if len(prefix) >= 6:
                filters.append(Person.county_code == prefix[:6])
            elif len(prefix) >= 4:
                filters.append(Person.city_code == prefix[:4])
            elif len(prefix) >= 2:
                filters.append(Person.province_code == prefix[:2])
            if len(prefix) not in (2, 4, 6):
                filters.append(Person.region_code.like(prefix + "%"))
        if criteria.category is not None or criteria.active_on is not None:
            day = criteria.active_on or self._today
            conditions = [ReliefStatus.person_id == Person.id, _active_on(day)]
            if criteria.category is not None:
                conditions.append(ReliefStatus.category == criteria.category)
            filters.append(exists(select(ReliefStatus.id).where(*conditions)))
        if criteria.enrolled_in is not None:
            filters.append(
                exists(
                    select(Enrollment.id).where(
                        Enrollment.person_id == Person.id,
                        Enrollment.year == criteria.enrolled_in,
                        Enrollment.status == "ACTIVE",
                    )
                )
            )
        return filters

    # ---------------------------------------------------------------- embedded relations
    def _embedding(self, stmt: Select[Any], embed: Sequence[Relation]) -> Select[Any]:
        """Add ``embedded_<i>``: ARRAY(SELECT ROW(child columns) … ORDER BY …) per relation,
        correlated to the person row (PostgreSQL only; the rows come from the scoped query, so
        nothing out of scope is reachable)."""
        if not embed:
            return stmt
        if not self.embeds:
            raise ValueError("relations are embedded only on PostgreSQL")
        for i, (key, argument) in enumerate(embed):
            table, order = child_table(key)
            children = select(func.row(*table.c)).where(table.c.person_id == Person.id)
            condition = relation_condition(key, argument)
            if condition is not None:
                children = children.where(condition)
            stmt = stmt.add_columns(
                func.array(children.order_by(*order).scalar_subquery()).label(f"embedded_{i}")
            )
        return stmt

    @staticmethod
    def embedded(
        rows: Sequence[PersonRow], index: int, relation: Relation
    ) -> dict[uuid.UUID, list[Any]]:
        """The records of the ``index``-th embedded relation of each row, by person id."""
        record = _RECORD_TYPES[relation[0]]
        label = f"embedded_{index}"
        return {row.id: [record(*r) for r in getattr(row, label)] for row in rows}

    # ---------------------------------------------------------------- child records
    # Callers pass ids of people that came out of the scoped queries above.

    async def relief_statuses(
        self, person_ids: Sequence[uuid.UUID], active_on: date | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*ReliefStatus.__table__.c).where(ReliefStatus.person_id.in_(person_ids))
        if active_on is not None:
            stmt = stmt.where(_active_on(active_on))
        stmt = stmt.order_by(ReliefStatus.person_id, ReliefStatus.valid_from, ReliefStatus.id)
        return await self._grouped(stmt)

    async def enrollments(
        self, person_ids: Sequence[uuid.UUID], year: int | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*Enrollment.__table__.c).where(Enrollment.person_id.in_(person_ids))
        if year is not None:
            stmt = stmt.where(Enrollment.year == year)
        stmt = stmt.order_by(Enrollment.person_id, Enrollment.year, Enrollment.id)
        return await self._grouped(stmt)

    async def cost_burdens(
        self, person_ids: Sequence[uuid.UUID], year: int | None
    ) -> dict[uuid.UUID, list[Any]]:
        stmt = select(*CostBurden.__table__.c).where(CostBurden.person_id.in_(person_ids))
        if year is not None:
            stmt = stmt.where(CostBurden.year == year)
        stmt = stmt.order_by(CostBurden.person_id, CostBurden.year, CostBurden.id)
        return await self._grouped(stmt)

    async def _grouped(self, stmt: Select[Any]) -> dict[uuid.UUID, list[Any]]:
        grouped: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for record in _plain(await self._execute(stmt)):  # no ORM identity map
            grouped[record.person_id].append(record)
        return grouped
