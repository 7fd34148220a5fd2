"""Rate limits per subject and per department (gateway.runtime.rate_limit): over the limit HTTP 429,
``RATE_LIMITED`` and ``Retry-After``; other callers still served; on in production only by
default; each process counts its own requests (docs/security.md "Hardening")."""

from __future__ import annotations

import pytest

from gateway.domain.departments import Department, Level
from gateway.domain.errors import RateLimited
from gateway.domain.principal import Principal
from gateway.domain.settings import load_settings
from gateway.runtime.rate_limit import PRODUCTION_DEPARTMENT, PRODUCTION_SUBJECT, Rate, RateLimiter
from tests.hardening_support import ME, post, refused, served, variant
from tests.harness import Harness


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _principal(subject: str, department: Department = Department.CIVIL_AFFAIRS) -> Principal:
    return Principal(subject=subject, department=department, level=Level.COUNTY, region="370102")


# --------------------------------------------------------------------------- the buckets


def test_subject_bucket_allows_burst_then_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(subject=Rate(per_second=2, burst=3), clock=clock)
    clerk = _principal("clerk-1")
    for _ in range(3):
        limiter.check(clerk)
    with pytest.raises(RateLimited) as refused_now:
        limiter.check(clerk)
    assert refused_now.value.retry_after == 1  # half a second, rounded up
    assert "每秒最多 2 次" in refused_now.value.message
    limiter.check(_principal("clerk-2"))  # another subject has its own bucket
    clock.now += 0.5
    limiter.check(clerk)  # one token back
    with pytest.raises(RateLimited):
        limiter.check(clerk)
    clock.now += 60
    for _ in range(3):  # refilled to the burst, not beyond
        limiter.check(clerk)
    with pytest.raises(RateLimited):
        limiter.check(clerk)


def test_department_bucket_is_shared_by_its_subjects() -> None:
    clock = FakeClock()
    limiter = RateLimiter(department=Rate(per_second=0.1, burst=2), clock=clock)
    limiter.check(_principal("a"))
    limiter.check(_principal("b"))
    with pytest.raises(RateLimited) as refused_now:
        limiter.check(_principal("c"))
    assert refused_now.value.retry_after == 10
    assert "本部门" in refused_now.value.message
    limiter.check(_principal("c", Department.MEDICAL_INSURANCE))  # another department


def test_a_refused_request_takes_no_token() -> None:
    """Refused by the department, the subject's own bucket is untouched (and vice versa)."""
    clock = FakeClock()
    limiter = RateLimiter(
        subject=Rate(per_second=1, burst=2), department=Rate(per_second=1, burst=1), clock=clock
    )
    limiter.check(_principal("a"))
    with pytest.raises(RateLimited):
        limiter.check(_principal("a"))
    clock.now += 1
    limiter.check(_principal("a"))  # the subject still had its second token


@pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_rates_must_be_positive(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        Rate(per_second, burst)


# --------------------------------------------------------------------------- settings


def test_off_in_development_on_in_production_zero_turns_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    development = RateLimiter.from_settings(load_settings())
    assert not development.enabled
    production = RateLimiter.from_settings(load_settings(env="production"))
    assert production.subjects is not None
    assert production.subjects.rate == PRODUCTION_SUBJECT
    assert production.departments is not None
    assert production.departments.rate == PRODUCTION_DEPARTMENT
    monkeypatch.setenv("RELIEF_RATE_LIMIT_SUBJECT", "0")
    monkeypatch.setenv("RELIEF_RATE_LIMIT_DEPARTMENT", "50")
    configured = RateLimiter.from_settings(load_settings(env="production"))
    assert configured.subjects is None
    assert configured.departments is not None
    assert configured.departments.rate == Rate(50, 100)  # burst: twice the rate


# --------------------------------------------------------------------------- over HTTP


async def test_subject_over_its_limit_gets_429(harness: Harness) -> None:
    county = harness.persons[0].region_code[:6]
    clerk = harness.token("civil_affairs", "county", county, subject="clerk-rate-1")
    colleague = harness.token("civil_affairs", "county", county, subject="clerk-rate-2")
    async with variant(harness, rate_limit_subject=0.01, rate_limit_subject_burst=2) as client:
        served(await post(client, clerk, ME))
        served(await post(client, clerk, ME))
        response = await post(client, clerk, ME)
        message = refused(response, "RATE_LIMITED", status=429)
        assert "秒后重试" in message
        assert response.headers["retry-after"] == "100"
        assert response.headers["x-request-id"]
        served(await post(client, colleague, ME))  # the attack does not lock others out


async def test_department_over_its_limit_gets_429(harness: Harness) -> None:
    county = harness.persons[0].region_code[:6]
    async with variant(
        harness, rate_limit_department=0.01, rate_limit_department_burst=2
    ) as client:
        for subject in ("civil-1", "civil-2"):
            served(
                await post(
                    client, harness.token("civil_affairs", "county", county, subject=subject), ME
                )
            )
        third = harness.token("civil_affairs", "county", county, subject="civil-3")
        response = await post(client, third, ME)
        assert "本部门" in refused(response, "RATE_LIMITED", status=429)
        assert int(response.headers["retry-after"]) >= 1
        other = harness.token("medical_insurance", "county", county, subject="medical-1")
        served(await post(client, other, ME))


async def test_unauthenticated_requests_take_no_tokens(harness: Harness) -> None:
    """The limit is counted after the token is verified: an attacker without a token cannot
    spend a real subject's allowance."""
    county = harness.persons[0].region_code[:6]
    async with variant(harness, rate_limit_subject=0.01, rate_limit_subject_burst=1) as client:
        for _ in range(3):
            response = await client.post("/graphql", json={"query": ME})
            assert response.status_code == 401
        served(await post(client, harness.token("health", "county", county), ME))
