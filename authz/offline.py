"""Decisions for a policy that is not (or not yet) in force: a proposal under review, an older
version being explained, the grid of the console. The same casbin model and the same
``decide`` as the enforcer in force, over lines held in memory; nothing is written.

    policy = OfflinePolicy(lines)
    policy.decision(principal, purpose="supervision").effect("Person.phone")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import casbin

from authz.conditions import is_row_object
from authz.decision import AccessDecision, decide
from authz.store import PolicyLine, model_path, validate_line
from gateway.domain.principal import Principal


class OfflinePolicy:
    def __init__(self, lines: Iterable[Sequence[str]], *, version: int = 0) -> None:
        self.lines: tuple[PolicyLine, ...] = tuple(
            (line[0], line[1], line[2], line[3]) for line in lines
        )
        for line in self.lines:
            validate_line(line)
        self.version = version
        self._enforcer = casbin.Enforcer(model_path())
        if self.lines:
            self._enforcer.add_policies([list(line) for line in self.lines])
        self._row_objects = tuple(sorted({o for _, o, _, _ in self.lines if is_row_object(o)}))
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
        (what ``explainAccess`` shows next to an effect)."""
        enforce = self._enforcer.enforce_ex
        found: list[PolicyLine] = []
        for key in subject_keys:
            allowed, explained = enforce(key, obj, act, purpose)
            if allowed and explained:
                line = (explained[0], explained[1], explained[2], explained[3])
                if line not in found:
                    found.append(line)
        return found
