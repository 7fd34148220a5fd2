"""The field guard: the only code that releases, masks or forbids a field value.

Resolvers hand it the field name and a way to get the clear value; it returns the value, its
masked form, or raises ``Forbidden`` (GraphQL then puts ``null`` and a ``FORBIDDEN`` error at
that path). It also notes what it released, for the audit log.

A person the caller sees only through a place other than the residence is *narrowed* to the
fields of that place's relation (``authz.resources.PLACE_FIELDS``): storage tells the guard
which rows those are, once per loaded page; the check itself is a set lookup, no policy call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from authz.decision import AccessDecision, Effect
from authz.masking import MASKS
from authz.resources import ARGUMENT_REQUIRES, PLACE_FIELDS
from gateway.domain.errors import Forbidden
from gateway.domain.places import PlaceKind

T = TypeVar("T")

_FIELD_LABELS_ZH = {
    "Person.idNumber": "身份证号码",
    "Person.name": "姓名",
    "Person.phone": "联系电话",
    "Person.address": "家庭住址",
}


class FieldGuard:
    def __init__(self, decision: AccessDecision) -> None:
        self.decision = decision
        self.released: dict[str, Effect] = {}
        self.people: set[uuid.UUID] = set()
        self.touched_person_data = False
        # person → the fields its places allow, for people seen only through such places
        self._narrowed: dict[uuid.UUID, frozenset[str]] = {}

    def narrow(self, person_id: uuid.UUID, places: Iterable[PlaceKind]) -> None:
        """``person_id`` is visible to the caller only through ``places`` (not its residence,
        not a push addressed to the caller's department): fields follow the place."""
        allowed: frozenset[str] = frozenset()
        for place in places:
            allowed |= PLACE_FIELDS.get(place, frozenset())
        self._narrowed[person_id] = allowed

    def narrowed(self, person_id: uuid.UUID) -> frozenset[str] | None:
        return self._narrowed.get(person_id)

    def effect(self, field: str, person_id: uuid.UUID | None = None) -> Effect:
        """The caller's effect on ``field`` of this person's record."""
        effect = self.decision.effect(field)
        if person_id is not None and effect is not Effect.DENY:
            allowed = self._narrowed.get(person_id)
            if allowed is not None and field not in allowed:
                return Effect.DENY
        return effect

    def permits(self, field: str) -> bool:
        return self.decision.effect(field) is Effect.READ

    def permits_argument(self, argument: str) -> bool:
        return all(self.permits(field) for field in ARGUMENT_REQUIRES[argument])

    def require_operation(self, operation: str) -> None:
        """Refuse an exchange operation (``Ingest.submitRecords`` …) no policy line grants."""
        if operation not in self.decision.operations:
            raise Forbidden(f"无权使用 {operation}")

    def require(self, field: str) -> None:
        if self.decision.effect(field) is not Effect.READ:
            raise Forbidden(f"无权读取字段 {field}")

    def require_argument(self, argument: str) -> None:
        """Refuse a filter or lookup on a field the caller may not read in clear."""
        for field in ARGUMENT_REQUIRES[argument]:
            if self.decision.effect(field) is not Effect.READ:
                raise Forbidden(f"无权按 {field} 查询或筛选")

    def relation(self, field: str, person_id: uuid.UUID | None = None) -> None:
        """A relation (list or object) may be followed only with a read grant."""
        if self.effect(field, person_id) is not Effect.READ:
            raise Forbidden(f"无权读取字段 {field}")
        self.released.setdefault(field, Effect.READ)
        if person_id is not None:
            self.people.add(person_id)

    def release(self, field: str, person_id: uuid.UUID, reveal: Callable[[], T]) -> T:
        """Return the value (or its mask) of ``field``; ``reveal`` runs only when allowed, so a
        denied field is never even decrypted."""
        effect = self.effect(field, person_id)
        if effect is Effect.DENY:
            raise Forbidden(f"无权读取字段 {_FIELD_LABELS_ZH.get(field, field)}")
        value = reveal()
        self._note(field, effect, person_id)
        if effect is Effect.MASK and isinstance(value, str):
            return MASKS[field](value)  # type: ignore[return-value]
        return value

    def release_many(
        self,
        field: str,
        person_ids: Sequence[uuid.UUID],
        reveal: Callable[[int], T],
    ) -> list[T | Exception]:
        """``release`` of ``field`` for each of these people, in order (``reveal(i)`` gives the
        i-th clear value), with one decision for the people the caller sees whole. Where
        ``release`` would raise (a refusal, a value that fails to open) the exception takes the
        value's place. The same values, masks, refusals and notes as a ``release`` each."""
        effect = self.decision.effect(field)
        narrowed = self._narrowed
        values: list[T | Exception] = []
        if effect is Effect.DENY or any(
            field not in narrowed[p] for p in person_ids if p in narrowed
        ):
            for i, person_id in enumerate(person_ids):
                try:
                    values.append(self.release(field, person_id, lambda i=i: reveal(i)))  # type: ignore[misc]
                except Exception as refused:  # handed back in the value's place
                    values.append(refused)
            return values
        mask = MASKS[field] if effect is Effect.MASK else None
        released: list[uuid.UUID] = []
        for i, person_id in enumerate(person_ids):
            try:
                value: Any = reveal(i)
            except Exception as failed:  # handed back in the value's place
                values.append(failed)
                continue
            values.append(mask(value) if mask is not None and isinstance(value, str) else value)  # type: ignore[arg-type]
            released.append(person_id)
        if released:
            self.released.setdefault(field, effect)
            self.people.update(released)
        return values

    def note_read(self, field: str, people: Iterable[uuid.UUID] = ()) -> None:
        """Record a read that no policy line governs (an officer's query of the audit log), so
        this request is audited like any read of person data: a query of the audit is itself
        audited (issue 5)."""
        self.touched_person_data = True
        self.released.setdefault(field, Effect.READ)
        self.people.update(people)

    def _note(self, field: str, effect: Effect, person_id: uuid.UUID) -> None:
        self.released.setdefault(field, effect)
        self.people.add(person_id)
