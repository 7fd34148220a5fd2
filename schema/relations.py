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

from gateway.storage.people import PersonRow
from schema.context import Related, RequestContext


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
