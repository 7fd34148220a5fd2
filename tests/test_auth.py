"""Bearer tokens: every missing, malformed, forged or invalid token is HTTP 401
``UNAUTHENTICATED`` with a Chinese message and no data; minting refuses bad claims."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import httpx
import jwt
import pytest

from gateway.domain.errors import BadUserInput, ConfigurationError
from gateway.runtime.tokens import TokenService
from tests.harness import Harness

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ME = "{ me { subject department level region } }"
PERSONS = "{ persons(first: 2) { totalCount edges { node { id name } } } }"


def _key(harness: Harness) -> bytes:
    return harness.runtime.settings.token_key_path.read_text().strip().encode()


def _claims(harness: Harness, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": harness.runtime.settings.token_issuer,
        "sub": "test-auth",
        "dept": "medical_insurance",
        "level": "province",
        "region": "37",
        "roles": [],
        "iat": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _sign(harness: Harness, claims: dict[str, Any], *, key: bytes | None = None) -> str:
    return jwt.encode(claims, key or _key(harness), algorithm="HS256")


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body.get("data") is None
    errors = body["errors"]
    assert len(errors) == 1
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert CHINESE.search(errors[0]["message"]), errors[0]["message"]
    # No person data, no internals.
    assert "Traceback" not in response.text
    assert "persons" not in body


def _bad_tokens(harness: Harness) -> dict[str, str]:
    other_key = b"another-signing-key-that-is-long-enough-0123456789"
    valid = _claims(harness)
    return {
        "garbage": "garbage",
        "three-dots": "a.b.c",
        "other-key": _sign(harness, valid, key=other_key),
        "alg-none": jwt.encode(valid, None, algorithm="none"),
        "alg-none-handmade": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(valid)}.",
        "alg-none-with-signature": _b64({"alg": "none", "typ": "JWT"})
        + "."
        + _b64(valid)
        + "."
        + _sign(harness, valid).rsplit(".", 1)[1],
        "hs512-same-key": jwt.encode(valid, _key(harness), algorithm="HS512"),
        "wrong-issuer": _sign(harness, _claims(harness, iss="someone-else")),
        "no-issuer": _sign(harness, _claims(harness, iss=_DROP)),
        "expired": _sign(
            harness, _claims(harness, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
        ),
        "no-exp": _sign(harness, _claims(harness, exp=_DROP)),
        "no-sub": _sign(harness, _claims(harness, sub=_DROP)),
        "blank-sub": _sign(harness, _claims(harness, sub="   ")),
        "no-dept": _sign(harness, _claims(harness, dept=_DROP)),
        "unknown-dept": _sign(harness, _claims(harness, dept="police")),
        "no-level": _sign(harness, _claims(harness, level=_DROP)),
        "unknown-level": _sign(harness, _claims(harness, level="town")),
        "no-region": _sign(harness, _claims(harness, region=_DROP)),
        "province-with-county-region": _sign(harness, _claims(harness, region="370102")),
        "county-with-province-region": _sign(
            harness, _claims(harness, level="county", region="37")
        ),
        "city-with-5-digits": _sign(harness, _claims(harness, level="city", region="37010")),
        "region-not-digits": _sign(harness, _claims(harness, region="3x")),
        "region-fullwidth-digits": _sign(harness, _claims(harness, region="３７")),
        "unknown-role": _sign(harness, _claims(harness, roles=["superuser"])),
        "roles-not-list": _sign(harness, _claims(harness, roles="security_officer")),
        "roles-not-strings": _sign(harness, _claims(harness, roles=[1])),
        "tampered-payload": _tamper_payload(harness),
    }


def _tamper_payload(harness: Harness) -> str:
    """A valid county token whose payload is edited to widen the jurisdiction to a province."""
    token = _sign(harness, _claims(harness, level="county", region="370102"))
    header, _, signature = token.split(".")
    widened = _claims(harness, level="province", region="37")
    return f"{header}.{_b64(widened)}.{signature}"


BAD_TOKEN_CASES = (
    "garbage",
    "three-dots",
    "other-key",
    "alg-none",
    "alg-none-handmade",
    "alg-none-with-signature",
    "hs512-same-key",
    "wrong-issuer",
    "no-issuer",
    "expired",
    "no-exp",
    "no-sub",
    "blank-sub",
    "no-dept",
    "unknown-dept",
    "no-level",
    "unknown-level",
    "no-region",
    "province-with-county-region",
    "county-with-province-region",
    "city-with-5-digits",
    "region-not-digits",
    "region-fullwidth-digits",
    "unknown-role",
    "roles-not-list",
    "roles-not-strings",
    "tampered-payload",
)


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
async def test_bad_token_is_401(harness: Harness, case: str) -> None:
    token = _bad_tokens(harness)[case]
    response = await harness.post(token, PERSONS)
    _assert_unauthenticated(response)


async def test_expired_token_says_expired(harness: Harness) -> None:
    token = _bad_tokens(harness)["expired"]
    response = await harness.post(token, ME)
    _assert_unauthenticated(response)
    assert "过期" in response.json()["errors"][0]["message"]


async def test_no_authorization_header(harness: Harness) -> None:
    _assert_unauthenticated(await harness.post(None, PERSONS))


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Token {token}", "{token}", "Bearer", "Bearer    ", "Bearer: {token}"],
)
async def test_wrong_scheme(harness: Harness, header: str) -> None:
    token = harness.token("medical_insurance", "province", "37")
    response = await harness.post(
        None, PERSONS, headers={"Authorization": header.format(token=token)}
    )
    _assert_unauthenticated(response)


async def test_get_requests_are_authenticated_too(harness: Harness) -> None:
    response = await harness.client.get("/graphql", params={"query": ME})
    _assert_unauthenticated(response)
    response = await harness.client.get(
        "/graphql", params={"query": ME}, headers={"Authorization": "Bearer garbage"}
    )
    _assert_unauthenticated(response)


async def test_valid_token(harness: Harness) -> None:
    token = harness.token("civil_affairs", "county", "370102", subject="clerk-1")
    response = await harness.post(token, ME)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body
    assert body["data"]["me"] == {
        "subject": "clerk-1",
        "department": "CIVIL_AFFAIRS",
        "level": "COUNTY",
        "region": "370102",
    }


async def test_valid_token_lowercase_scheme(harness: Harness) -> None:
    token = harness.token("medical_insurance", "province", "37")
    response = await harness.post(None, ME, headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200, response.text


async def test_handmade_valid_token_is_accepted(harness: Harness) -> None:
    """The negative cases above differ from an accepted token only in the claim under test.
    The deprecated role ``security_officer`` is accepted and read as ``security_admin``."""
    token = _sign(harness, _claims(harness, roles=["security_officer"]))
    response = await harness.post(token, "{ me { roles department } }")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"] == {
        "roles": ["security_admin"],
        "department": "MEDICAL_INSURANCE",
    }


async def test_token_for_data_department_without_policy_is_authenticated(
    harness: Harness,
) -> None:
    """big_data is a known department: authenticated (200), it just sees nobody."""
    token = harness.token("big_data", "province", "37")
    body = await harness.query(token, "{ persons(first: 5) { totalCount edges { node { id } } } }")
    assert body["data"]["persons"] == {"totalCount": 0, "edges": []}


# --------------------------------------------------------------------------- minting


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"dept": "police", "level": "county", "region": "370102"}, "部门"),
        ({"dept": "", "level": "county", "region": "370102"}, "部门"),
        ({"dept": "civil_affairs", "level": "town", "region": "370102"}, "层级"),
        ({"dept": "civil_affairs", "level": "county", "region": "3701"}, "行政区划代码"),
        ({"dept": "civil_affairs", "level": "city", "region": "370102"}, "行政区划代码"),
        ({"dept": "civil_affairs", "level": "province", "region": "3"}, "行政区划代码"),
        ({"dept": "civil_affairs", "level": "county", "region": "37010x"}, "行政区划代码"),
        ({"dept": "civil_affairs", "level": "county", "region": "３７０１０２"}, "行政区划代码"),
        (
            {"dept": "civil_affairs", "level": "county", "region": "370102", "roles": ["root"]},
            "角色",
        ),
    ],
    ids=[
        "unknown-dept",
        "empty-dept",
        "unknown-level",
        "county-4-digits",
        "city-6-digits",
        "province-1-digit",
        "county-not-digits",
        "county-fullwidth-digits",
        "unknown-role",
    ],
)
def test_mint_refuses_bad_claims(harness: Harness, claims: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadUserInput) as info:
        harness.runtime.tokens.mint(subject="s", **claims)
    assert info.value.code == "BAD_USER_INPUT"
    assert fragment in info.value.message
    assert CHINESE.search(info.value.message)


@pytest.mark.parametrize("ttl", [0, -1])
def test_mint_refuses_non_positive_ttl(harness: Harness, ttl: int) -> None:
    with pytest.raises(BadUserInput):
        harness.runtime.tokens.mint(
            subject="s", dept="health", level="city", region="3701", ttl_seconds=ttl
        )


async def test_minted_token_claims(harness: Harness) -> None:
    token = harness.runtime.tokens.mint(
        subject="s-1",
        dept="health",
        level="city",
        region="3701",
        roles=["security_officer"],
        ttl_seconds=120,
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(
        token,
        _key(harness),
        algorithms=["HS256"],
        issuer=harness.runtime.settings.token_issuer,
    )
    assert claims["sub"] == "s-1"
    assert claims["dept"] == "health"
    assert claims["level"] == "city"
    assert claims["region"] == "3701"
    assert claims["roles"] == ["security_officer"]
    assert 0 < claims["exp"] - claims["iat"] <= 120
    principal = await harness.runtime.tokens.verify(token)
    assert principal.subject == "s-1"
    # Province-wide lines, lines limited to a region containing the caller's, the role (and,
    # for one release, lines still written for its deprecated alias).
    assert principal.subject_keys == (
        "health:city",
        "health@37:city",
        "health@3701:city",
        "role:security_admin",
        "role:security_officer",
    )


def test_short_signing_key_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        TokenService(b"short", "relief-gateway")


async def test_a_verified_token_still_expires() -> None:
    """Verified tokens are cached (signature checked once); their expiry is checked on every
    use, so a cached token is refused from the second it expires."""
    from gateway.domain.errors import Unauthenticated

    service = TokenService(b"k" * 32, "relief-gateway")
    token = service.mint(
        subject="clerk", dept="civil_affairs", level="county", region="370102", ttl_seconds=2
    )
    first = await service.verify(token)
    assert await service.verify(token) is first  # the second use comes from the cache
    await asyncio.sleep(2.1)  # exp = int(mint time) + 2 <= now
    with pytest.raises(Unauthenticated, match="过期"):
        await service.verify(token)
    with pytest.raises(Unauthenticated):
        await service.verify(token)


async def test_a_cached_token_is_not_a_forgery_oracle() -> None:
    """Only tokens that verified enter the cache: a token with a changed payload and the old
    signature is refused even after the original was used."""
    from gateway.domain.errors import Unauthenticated

    service = TokenService(b"k" * 32, "relief-gateway")
    token = service.mint(subject="clerk", dept="civil_affairs", level="county", region="370102")
    await service.verify(token)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["region"] = "370103"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        await service.verify(f"{header}.{forged_payload}.{signature}")
