"""The data path of one request, shared by ``/graphql`` and the officers' simulation:

    decision → row predicate (authz.compiler) → field guard → scoped storage → RequestContext

``gateway.http.graphql`` builds the context of a real request here; ``schema.simulator`` builds
the context of a simulated subject the same way, so a simulation sees exactly what a real
request of that subject would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.mapping import Feed
from authz.compiler import place_narrowing, row_predicate
from authz.decision import AccessDecision
from authz.guard import FieldGuard
from gateway.domain.principal import Principal
from gateway.loop.config import ProvinceRules
from gateway.storage.exchange import DepartmentExchange
from gateway.storage.people import PersonRow, ScopedPeople
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
) -> RequestContext:
    """The context every resolver of one request gets, for ``principal`` under ``decision``:
    its reads run on ``connection`` with the decision's row predicate inside."""
    predicate = row_predicate(
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
    after_load: Callable[[Sequence[PersonRow]], Awaitable[None]] | None = None
    if narrowing is not None:
        places = narrowing

        async def narrow(rows: Sequence[PersonRow]) -> None:
            """Fields follow the place: people living elsewhere, seen through a place."""
            outside = [row.id for row in rows if places.outside(row.region_code)]
            if outside:
                result = await people.execute(places.places_held(outside))
                held = [(found.person_id, found.kind) for found in result]
                for person_id, kinds in places.narrowed(outside, held).items():
                    guard.narrow(person_id, kinds)

        after_load = narrow
    people = ScopedPeople(connection, predicate, today, after_load=after_load)
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
    )
