"""What every resolver gets: the caller, the one access decision of this request, the field
guard, scoped storage, the vault, and per-request batch loaders (no N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from strawberry.dataloader import DataLoader

from authz.decision import AccessDecision
from authz.guard import FieldGuard
from gateway.auth import Principal
from gateway.storage.people import PersonRow, ScopedPeople
from gateway.storage.vault import PersonVault

BatchFn = Callable[[Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, list[Any]]]]


@dataclass
class RequestContext:
    request_id: str
    principal: Principal
    purpose: str
    decision: AccessDecision
    guard: FieldGuard
    people: ScopedPeople
    vault: PersonVault
    today: date
    max_page_size: int
    _loaders: dict[tuple[object, ...], DataLoader[uuid.UUID, list[Any]]] = field(
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

    async def relief_statuses(self, person_id: uuid.UUID, active_on: date | None) -> list[Any]:
        return await self.loader(
            ("relief", active_on), lambda ids: self.people.relief_statuses(ids, active_on)
        ).load(person_id)

    async def enrollments(self, person_id: uuid.UUID, year: int | None) -> list[Any]:
        return await self.loader(
            ("enrollment", year), lambda ids: self.people.enrollments(ids, year)
        ).load(person_id)

    async def cost_burdens(self, person_id: uuid.UUID, year: int | None) -> list[Any]:
        return await self.loader(
            ("cost", year), lambda ids: self.people.cost_burdens(ids, year)
        ).load(person_id)

    async def household_members(self, household_id: uuid.UUID) -> list[PersonRow]:
        return await self.loader(("members",), self.people.household_members).load(household_id)
