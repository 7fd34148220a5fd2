"""The data path of one request, shared by ``/graphql`` and the officers' simulation:

    decision → row predicate (authz.compiler) → field guard → scoped storage → RequestContext

``gateway.http.graphql`` builds the context of a real request here; ``schema.simulator`` builds
the context of a simulated subject the same way, so a simulation sees exactly what a real
request of that subject would.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.mapping import Feed
from authz.compiler import place_narrowing, row_scope
from authz.decision import AccessDecision
from authz.guard import FieldGuard
from gateway.crypto import AuditMac
from gateway.domain.places import PlaceKind
from gateway.domain.principal import Principal
from gateway.loop.config import ProvinceRules
from gateway.storage.exchange import DepartmentExchange
from gateway.storage.people import PersonRow, ScopedPeople
from gateway.storage.reports import ReportedPeople
from gateway.storage.vault import PersonVault
from schema.context import RequestContext


def scoped_context(
    connection: AsyncConnection,
    *,
    principal: Principal,
    purpose: str,
    decision: AccessDecision,
    request_id: str,
    today: date,
    vault: PersonVault,
    max_page_size: int,
    feeds: Mapping[tuple[str, str], Feed],
    engine: AsyncEngine,
    rules: ProvinceRules,
    policy_changed: Callable[[], None] | None = None,
    audit_macs: AuditMac | None = None,
) -> RequestContext:
    """The context every resolver of one request gets, for ``principal`` under ``decision``:
    its reads run on ``connection`` with the decision's row predicate inside."""
    scope = row_scope(
        decision,
        department=principal.department.value,
        level=principal.level,
        region=principal.region,
        today=today,
    )
    guard = FieldGuard(decision)
    narrowing = place_narrowing(
        decision,
        department=principal.department.value,
        level=principal.level,
        region=principal.region,
        today=today,
    )
    after_load: Callable[[list[PersonRow]], Awaitable[None]] | None = None
    # people seen only through the caller's own report → the region whose records they show
    reported: dict[uuid.UUID, str] = {}
    if narrowing is not None:
        places = narrowing
        reports = ReportedPeople(principal.department.value, principal.region)

        async def narrow(rows: list[PersonRow]) -> None:
            """Fields follow the place: people living elsewhere, seen through a place; people
            seen only through the caller's own report, as it reported them."""
            outside = [row.id for row in rows if places.outside(row.region_code)]
            if not outside:
                return
            result = await people.execute(places.places_held(outside))
            held = [(found.person_id, found.kind) for found in result]
            as_reported: list[uuid.UUID] = []
            for person_id, kinds in places.narrowed(outside, held).items():
                if kinds == {PlaceKind.REPORTED}:
                    as_reported.append(person_id)
                else:
                    guard.narrow(person_id, kinds)
            if as_reported:
                views = await reports.views(people.execute, as_reported)
                for index, row in enumerate(rows):
                    view = views.get(row.id)
                    if view is not None:
                        rows[index] = view.applied_to(row)
                        reported[row.id] = principal.region

        after_load = narrow
    people = ScopedPeople(
        connection,
        scope.predicate,
        today,
        sources=scope.sources,
        probe=scope.probe,
        after_load=after_load,
        reported_members=(
            None
            if narrowing is None
            else ReportedPeople.members_of(principal.department.value, principal.region)
        ),
    )
    return RequestContext(
        request_id=request_id,
        principal=principal,
        purpose=purpose,
        guard=guard,
        people=people,
        vault=vault,
        today=today,
        max_page_size=max_page_size,
        exchange=DepartmentExchange(
            people.execute,
            engine,
            department=principal.department.value,
            region=principal.region,
            today=today,
        ),
        feeds=feeds,
        engine=engine,
        rules=rules,
        policy_changed=policy_changed,
        audit_macs=audit_macs,
        reported=reported,
        narrowing=narrowing,
    )
