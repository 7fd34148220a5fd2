"""Decisions for a policy that is not (or not yet) in force: a proposal under review, an older
version being explained, the grid of the console, a policy file under ``policy test``. The same
casbin model and the same ``decide`` as the enforcer in force, over lines held in memory;
nothing is written.

    policy = OfflinePolicy(lines)                       # the lines that grant now
    policy.decision(principal, purpose="supervision").effect("Person.phone")
    OfflinePolicy(lines, at=audit_entry.occurred_at)    # as they granted then

A line with a validity end (期限) grants before it only: ``at`` (default: now, from
``gateway.domain.clock``) picks the lines that grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from authz.conditions import is_row_object
from authz.decision import AccessDecision, decide
from authz.store import PolicyLine, build_enforcer, in_force_at, validate_line, with_valid_to
from authz.store import valid_to_of as _valid_to_of
from gateway.domain.clock import now_utc
from gateway.domain.principal import Principal


class OfflinePolicy:
    def __init__(
        self, lines: Iterable[Sequence[str]], *, version: int = 0, at: datetime | None = None
    ) -> None:
        self.lines: tuple[PolicyLine, ...] = tuple(
            with_valid_to(line, _valid_to_of(line)) for line in lines
        )
        for line in self.lines:
            validate_line(line)
        self.version = version
        self.at = at if at is not None else now_utc()
        self.granting: tuple[PolicyLine, ...] = in_force_at(self.lines, self.at)
        self._enforcer = build_enforcer(self.granting)
        # casbin answers with the four fields; explanations show the line as written.
        self._written: dict[PolicyLine, PolicyLine] = {}
        for line in self.granting:
            self._written.setdefault((line[0], line[1], line[2], line[3]), line)
        self._row_objects = tuple(sorted({o for _, o, _, _ in self.granting if is_row_object(o)}))
        self._cache: dict[tuple[tuple[str, ...], str], AccessDecision] = {}

    def decision(self, principal: Principal, purpose: str) -> AccessDecision:
        key = (principal.subject_keys, purpose)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = decide(
                self._enforcer,
                subject_keys=principal.subject_keys,
                purpose=purpose,
                row_objects=self._row_objects,
                policy_version=self.version,
            )
        return cached

    def matching_lines(
        self, subject_keys: Sequence[str], obj: str, act: str, purpose: str
    ) -> list[PolicyLine]:
        """The lines that grant ``act`` on ``obj`` to any of ``subject_keys`` for ``purpose``
        (what ``explainAccess`` shows next to an effect), as written (with their end)."""
        enforce = self._enforcer.enforce_ex
        found: list[PolicyLine] = []
        for key in subject_keys:
            allowed, explained = enforce(key, obj, act, purpose)
            if allowed and explained:
                fields = (explained[0], explained[1], explained[2], explained[3])
                line = self._written.get(fields, fields)
                if line not in found:
                    found.append(line)
        return found
