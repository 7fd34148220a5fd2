"""What every resolver gets: the caller, the one access decision of this request, the field
guard, scoped storage, the vault, and per-request batch loaders (no N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from adapters.mapping import Feed
from authz.compiler import PlaceNarrowing
from authz.guard import FieldGuard
from gateway.crypto import AuditMac
from gateway.domain.principal import Principal
from gateway.loop.config import ProvinceRules
from gateway.storage.exchange import DepartmentExchange
from gateway.storage.people import PersonRow, Relation, ScopedPeople
from gateway.storage.vault import PersonVault

BatchFn = Callable[[Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, list[Any]]]]
Related = list[Any] | Awaitable[list[Any]]


@dataclass
class RequestContext:
    request_id: str
    principal: Principal
    purpose: str
    guard: FieldGuard
    people: ScopedPeople
    vault: PersonVault
    today: date
    max_page_size: int
    exchange: DepartmentExchange
    feeds: Mapping[tuple[str, str], Feed]
    engine: AsyncEngine  # pushes and anomaly answers write in their own transactions
    rules: ProvinceRules  # the configured province's rules (RELIEF_PROVINCE)
    # Called after an officer's approval installs a policy version: this process enforces it
    # on the next request (Authorizer.invalidate) instead of at its next poll.
    policy_changed: Callable[[], None] | None = None
    # The keyring's audit MAC: the audit administrator's chain check verifies the entries' MACs
    # too (issue 16 item 6), not only their hashes.
    audit_macs: AuditMac | None = None
    # The operation the audit entry names instead of the GraphQL operation's own name (an
    # officer's simulation is recorded as "simulateAccess", whatever the client named it).
    audit_operation: str | None = None
    # People seen only through the caller's own report (``gateway.storage.reports``), each
    # with the region whose records they show: filled as people are loaded.
    reported: dict[uuid.UUID, str] = field(default_factory=dict)
    # Which people of a loaded page the caller sees only through a place (fields follow the
    # place; ``authz.compiler.place_narrowing``): compiled reads select those places.
    narrowing: PlaceNarrowing | None = None
    # Opening a task leaves the read receipt (issue 18): true for people and their systems'
    # requests, false where the gateway reads on a department's behalf (a push being rendered).
    leaves_receipts: bool = True
    _loaders: dict[tuple[object, ...], DataLoader[uuid.UUID, list[Any]]] = field(
        default_factory=dict
    )
    _prefetched: dict[tuple[str, Any], tuple[dict[uuid.UUID, list[Any]], set[uuid.UUID]]] = field(
        default_factory=dict
    )

    def loader(self, key: tuple[object, ...], batch: BatchFn) -> DataLoader[uuid.UUID, list[Any]]:
        """One loader per relation and argument values, so a page's children load in one query
        per relation however many people the page holds."""
        existing = self._loaders.get(key)
        if existing is None:

            async def load(ids: list[uuid.UUID]) -> list[list[Any]]:
                grouped = await batch(ids)
                return [grouped.get(i, []) for i in ids]

            existing = self._loaders[key] = DataLoader(load_fn=load)
        return existing

    # ---------------------------------------------------------------- relations
    # Each returns the records at once when the page's look-ahead loaded them
    # (``schema.prefetch``), else an awaitable from the batch loader.

    def relief_statuses(self, person_id: uuid.UUID, active_on: date | None) -> Related:
        return self._related("relief", active_on, person_id)

    def enrollments(self, person_id: uuid.UUID, year: int | None) -> Related:
        return self._related("enrollment", year, person_id)

    def cost_burdens(self, person_id: uuid.UUID, year: int | None) -> Related:
        return self._related("cost", year, person_id)

    def household_members(self, household_id: uuid.UUID) -> Related:
        return self._related("members", None, household_id)

    def may_load(self, key: str, argument: Any) -> bool:
        """Whether the caller may follow this relation with this argument (otherwise its field
        is refused by the guard, and nothing is loaded for it)."""
        field, needs_argument = _RELATION_FIELDS[key]
        if not self.guard.permits(field):
            return False
        return (
            argument is None
            or needs_argument is None
            or self.guard.permits_argument(needs_argument)
        )

    def embeddable(self, requests: set[Relation]) -> list[Relation]:
        """The requested relations the person query itself can carry (PostgreSQL), in a stable
        order; ``prefetch`` takes them from the rows instead of querying."""
        if not self.people.embeds:
            return []
        return [
            (key, argument)
            for key, argument in sorted(requests, key=repr)
            if key != "members" and self.may_load(key, argument)
        ]

    async def prefetch(
        self,
        people: Sequence[PersonRow],
        requests: set[Relation],
        embedded: Sequence[Relation] = (),
    ) -> None:
        """Load the requested relations of ``people`` now, each in one query, except those
        the person query carried (``embedded``). Relations the caller may not follow are
        skipped (their fields are refused by the guard anyway)."""
        for index, relation in enumerate(embedded):
            rows, loaded = self._prefetched.setdefault(relation, ({}, set()))
            rows.update(self.people.embedded(people, index, relation))
            loaded.update(p.id for p in people)
        for key, argument in sorted(requests, key=repr):
            if (key, argument) in embedded or not self.may_load(key, argument):
                continue
            if key == "members":
                owners = sorted({p.household_id for p in people if p.household_id is not None})
            else:
                owners = [p.id for p in people]
            if not owners:
                continue
            rows, loaded = self._prefetched.setdefault((key, argument), ({}, set()))
            missing = [owner for owner in owners if owner not in loaded]
            if missing:
                rows.update(await self._batch(key, argument)(missing))
                loaded.update(missing)

    def _related(self, key: str, argument: Any, owner: uuid.UUID) -> Related:
        slot = self._prefetched.get((key, argument))
        if slot is not None and owner in slot[1]:
            records: Related = slot[0].get(owner, [])
        else:
            records = self.loader((key, argument), self._batch(key, argument)).load(owner)
        region = self.reported.get(owner) if key != "members" else None
        if region is None:
            return records
        return _as_reported(key, region, records)

    def _batch(self, key: str, argument: Any) -> BatchFn:
        people = self.people
        if key == "relief":
            return lambda ids: people.relief_statuses(ids, argument)
        if key == "enrollment":
            return lambda ids: people.enrollments(ids, argument)
        if key == "cost":
            return lambda ids: people.cost_burdens(ids, argument)
        return people.household_members


# relation key → (the relation's policy object, the argument check its argument needs)
_RELATION_FIELDS: dict[str, tuple[str, str | None]] = {
    "relief": ("Person.reliefStatuses", "Person.reliefStatuses.activeOn"),
    "enrollment": ("Person.enrollments", None),
    "cost": ("Person.costBurdens", None),
    "members": ("Household.members", None),
}


def _as_reported(key: str, region: str, records: Related) -> Related:
    """A person seen only through the caller's own report shows the records its region sent:
    identities recognised there, enrollments insured there; no cost burden (a settlement about
    a person held elsewhere is not accepted from it)."""

    def kept(rows: list[Any]) -> list[Any]:
        if key == "relief":
            return [
                r for r in rows if r.county_code is not None and r.county_code.startswith(region)
            ]
        if key == "enrollment":
            return [r for r in rows if r.region_code.startswith(region)]
        return []

    if isinstance(records, list):
        return kept(records)

    async def later() -> list[Any]:
        return kept(await records)

    return later()
