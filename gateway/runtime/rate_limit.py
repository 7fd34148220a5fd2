"""Rate limits per subject and per department: token buckets in this process.

Each authenticated request takes one token from its subject's bucket and one from its
department's; a bucket refills at ``rate`` tokens a second up to ``burst``. A request that finds
either bucket empty takes nothing and is refused with HTTP 429, ``RATE_LIMITED`` and a
``Retry-After`` of the seconds until both have a token again. The subject's bucket is keyed by
its canonical form: ``OFFICER.A`` and ``ｏｆｆｉｃｅｒ.ａ`` share ``officer.a``'s (one person,
one subject, issue 16).

The buckets live in each gateway process: behind a load balancer with N processes the effective
limit is up to N times the configured one (docs/security.md "Hardening"). Operators who need one
province-wide figure set the limit at the load balancer too (or divide by N here).

    limiter = RateLimiter(subject=Rate(10, 30), department=Rate(200, 400))
    limiter.check(principal)      # raises RateLimited when over either limit
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.domain.errors import RateLimited
from gateway.domain.principal import Principal, canonical_subject
from gateway.domain.settings import Settings

# Buckets kept per process: subjects hold signed tokens, so this bounds memory, not abuse.
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")


# Production defaults (RELIEF_RATE_LIMIT_*): a clerk's screen or a department system's lookups
# stay well under 10 a second; all of a department's accounts together under 200.
PRODUCTION_SUBJECT = Rate(per_second=10, burst=30)
PRODUCTION_DEPARTMENT = Rate(per_second=200, burst=400)


class TokenBuckets:
    """One bucket per key; ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0 when it has one now); takes nothing."""
        tokens = self._level(key)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate.per_second

    def take(self, key: str) -> None:
        self._buckets[key] = (self._level(key) - 1, self.clock())
        self._buckets.move_to_end(key)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)  # the longest idle: refilled to full anyway

    def _level(self, key: str) -> float:
        now = self.clock()
        tokens, since = self._buckets.get(key, (float(self.rate.burst), now))
        return min(float(self.rate.burst), tokens + (now - since) * self.rate.per_second)


class RateLimiter:
    """Per-subject and per-department limits; either may be off (``None``)."""

    def __init__(
        self,
        *,
        subject: Rate | None = None,
        department: Rate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.subjects = TokenBuckets(subject, clock) if subject else None
        self.departments = TokenBuckets(department, clock) if department else None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """RELIEF_RATE_LIMIT_*: unset means the PRODUCTION_* rates in production and no limit in
        development; 0 means no limit; an unset burst is twice the rate."""

        def rate(per_second: float | None, burst: int | None, default: Rate) -> Rate | None:
            if per_second is None:
                return default if settings.is_production else None
            if per_second == 0:
                return None
            return Rate(per_second, burst or max(1, math.ceil(2 * per_second)))

        return cls(
            subject=rate(
                settings.rate_limit_subject, settings.rate_limit_subject_burst, PRODUCTION_SUBJECT
            ),
            department=rate(
                settings.rate_limit_department,
                settings.rate_limit_department_burst,
                PRODUCTION_DEPARTMENT,
            ),
        )

    @property
    def enabled(self) -> bool:
        return self.subjects is not None or self.departments is not None

    def check(self, principal: Principal) -> None:
        """Take a token for the caller and its department, or refuse the request."""
        # Tokens carry canonical subjects already (gateway.runtime.tokens); canonicalised here
        # too so no other way of building a Principal can give one person two buckets.
        subject = canonical_subject(principal.subject)
        subject_wait = self.subjects.wait(subject) if self.subjects else 0.0
        department = principal.department.value
        department_wait = self.departments.wait(department) if self.departments else 0.0
        if subject_wait > 0 or department_wait > 0:
            retry_after = max(1, math.ceil(max(subject_wait, department_wait)))
            if subject_wait >= department_wait and self.subjects:
                limit = f"本账号每秒最多 {self.subjects.rate.per_second:g} 次请求"
            else:
                assert self.departments is not None
                limit = f"本部门所有账号合计每秒最多 {self.departments.rate.per_second:g} 次请求"
            raise RateLimited(f"请求过于频繁 ({limit}), 请 {retry_after} 秒后重试", retry_after)
        if self.subjects:
            self.subjects.take(subject)
        if self.departments:
            self.departments.take(department)
