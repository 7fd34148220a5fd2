"""Relations between record types: followed only with a read grant on the relation, loaded in
batches through the request context (one query per relation and argument values per request).

Each returns the records, or an awaitable of them when they were not loaded with the page
(see ``schema.prefetch``). Both bindings call these: the strawberry resolvers in
``schema.types`` (which declare the fields and their arguments) and the plain resolvers
``schema.fields`` binds on the executable schema for speed.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from gateway.storage.people import PersonRow
from schema.context import Related, RequestContext
from schema.provenance import Provenance, provenance


def household_id(person: PersonRow, context: RequestContext) -> uuid.UUID | None:
    context.guard.relation("Person.household", person.id)
    household: uuid.UUID | None = person.household_id
    return household


def relief_statuses(person: PersonRow, context: RequestContext, active_on: date | None) -> Related:
    context.guard.relation("Person.reliefStatuses", person.id)
    if active_on is not None:
        context.guard.require_argument("Person.reliefStatuses.activeOn")
    return context.relief_statuses(person.id, active_on)


def enrollments(person: PersonRow, context: RequestContext, year: int | None) -> Related:
    context.guard.relation("Person.enrollments", person.id)
    return context.enrollments(person.id, year)


def cost_burdens(person: PersonRow, context: RequestContext, year: int | None) -> Related:
    context.guard.relation("Person.costBurdens", person.id)
    return context.cost_burdens(person.id, year)


def household_members(household: uuid.UUID, context: RequestContext) -> Related:
    context.guard.relation("Household.members")
    return context.household_members(household)


async def person_provenance(person: PersonRow, context: RequestContext) -> list[Provenance]:
    """One entry per department that reported the person: its latest batch and line."""
    context.guard.relation("Person.provenance", person.id)
    sources = await context.loader(("sources",), context.exchange.person_sources).load(person.id)
    region = context.reported.get(person.id)
    if region is not None:  # seen as its region reported them: those reports only
        sources = [s for s in sources if _reported_from(s.department, region)]
    batches = await _batches(context, [s.batch_id for s in sources])
    # A report about someone held in another jurisdiction is kept as "department@region"
    # (adapters.apply): it is that department's report all the same.
    return [
        provenance(
            s.department.partition("@")[0], batches.get(s.batch_id), s.source_line, s.received_at
        )
        for s in sources
    ]


def _reported_from(key: str, region: str) -> bool:
    """``department@region`` keys a report about a person held elsewhere (adapters.apply)."""
    _department, at, scope = key.partition("@")
    return bool(at) and (scope.startswith(region) or region.startswith(scope))


async def record_provenance(
    field: str, record: Any, department: str | None, context: RequestContext
) -> Provenance | None:
    """The batch and line a relief status, enrollment or cost burden came from (None for
    records that predate ingest, such as synthetic seed data without a batch)."""
    context.guard.relation(field, record.person_id)
    if record.batch_id is None:
        return None
    batch = (await _batches(context, [record.batch_id])).get(record.batch_id)
    if batch is None:
        return None
    return provenance(department or batch.department, batch, record.source_line, record.received_at)


async def _batches(context: RequestContext, ids: list[Any]) -> dict[Any, Any]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    loader = context.loader(("batch",), context.exchange.batches_by_id)
    found = await loader.load_many(wanted)
    return {i: rows[0] for i, rows in zip(wanted, found, strict=True) if rows}
