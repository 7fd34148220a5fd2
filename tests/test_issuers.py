"""Tokens from the province's identity platform (统一身份认证, issue 16 item 1), against real
issuers served on loopback (tests.issuer_support): their keys, discovery and JWKS documents are
fetched over HTTP by the gateway, never patched in.

The rules, each with its boundary: an issuer's tokens verify only with the keys it publishes,
under the algorithms pinned for it, for this gateway's audience, within their lifetime (plus the
configured clock leeway); a new key is picked up without restart, at most one key-set fetch per
interval; subjects are the platform's ``sub`` qualified by the issuer's name, kept exact; two
administrator roles are refused at sign-in; a bad configuration stops start-up in Chinese.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import clock
from gateway.domain.errors import BadUserInput, ConfigurationError, Unauthenticated
from gateway.domain.principal import Principal
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.runtime import sm2
from gateway.runtime.issuers import ClaimMapping, Issuer, IssuerConfig, issuer_configs
from gateway.runtime.parts import Runtime
from gateway.runtime.sm2 import Sm2PublicKey
from gateway.runtime.tokens import TokenService
from gateway.storage.migrate import upgrade_to_head
from tests.issuer_support import SigningKey, Sm2SigningKey, TestIssuer, new_key, pkce_pair

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ME = "{ me { subject department level region roles } }"
GATEWAY_ORIGIN = "http://gateway.test"
LOCAL_KEY = b"k" * 32

# The second platform speaks its own words: nested org claims, Chinese department names and
# organisation codes, Keycloak-style realm roles in Chinese, no level claim (from the region).
MAPPED_CLAIMS = """
[issuer.claims]
department = "org.code"
region = "org.region"
level = ""
roles = "realm_access.roles"

[issuer.claims.departments]
"11370000MB0000001X" = "medical_insurance"
"山东省民政厅" = "civil_affairs"

[issuer.claims.role_names]
"安全管理员" = "security_admin"
"审计管理员" = "audit_admin"
"系统管理员" = "system_admin"
"""


@pytest.fixture(scope="module")
def platform() -> Iterator[TestIssuer]:
    with TestIssuer(cors_origin=GATEWAY_ORIGIN, sm2=True) as issuer:
        yield issuer


@pytest.fixture(scope="module")
def mapped_platform() -> Iterator[TestIssuer]:
    with TestIssuer(audience="relief-gateway") as issuer:
        yield issuer


def issuers_file(directory: Path, platform: TestIssuer, mapped: TestIssuer) -> Path:
    path = directory / "issuers.toml"
    path.write_text(
        textwrap.dedent(f"""
            [[issuer]]
            name = "sd-iam"
            issuer = "{platform.url}"
            discovery_url = "{platform.discovery_url}"
            audience = ["relief-gateway"]
            algorithms = ["RS256", "ES256", "SM2"]
            leeway_seconds = 30
            client_id = "relief-console"

            [[issuer]]
            name = "gov-sso"
            issuer = "{mapped.url}"
            jwks_url = "{mapped.jwks_url}"
            audience = "relief-gateway"
            algorithms = ["ES256"]
            """)
        + MAPPED_CLAIMS,
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
async def gateway(
    platform: TestIssuer, mapped_platform: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A gateway (SQLite, default policies) trusting both platforms through RELIEF_OIDC_FILE."""
    data_dir = tmp_path_factory.mktemp("issuers")
    settings = load_settings(
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
        oidc_file=issuers_file(data_dir, platform, mapped_platform),
    )
    runtime = Runtime.create(settings, create_keys=True)
    await upgrade_to_head(runtime.engine)
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url=GATEWAY_ORIGIN) as client:
        yield runtime, client
    await runtime.close()


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
    )


def assert_refused(response: httpx.Response, *leaks: str) -> str:
    """401 UNAUTHENTICATED, a Chinese message, and nothing of the token's or keys' detail."""
    assert response.status_code == 401, response.text
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    message: str = errors[0]["message"]
    assert CHINESE.search(message), message
    for leak in ("Traceback", "Signature", "signature", "BEGIN", "PyJWT", "jwt", *leaks):
        assert leak not in response.text
    return message


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("alg", ["RS256", "ES256", "SM2"])
async def test_platform_token_signs_in_over_http(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer, alg: str
) -> None:
    _, client = gateway
    token = platform.mint(
        {
            "sub": "Zhang.San-0001",
            "dept": "health",
            "level": "city",
            "region": "3701",
            "roles": ["audit_admin", "offline_access"],
        },
        alg=alg,
    )
    response = await me(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"] == {
        # The platform's sub, qualified by the issuer's name and kept exactly (OIDC: the case
        # of a sub matters); roles the gateway does not know are ignored.
        "subject": "sd-iam|Zhang.San-0001",
        "department": "HEALTH",
        "level": "CITY",
        "region": "3701",
        "roles": ["audit_admin"],
    }


async def test_claims_are_mapped_through_the_tables(
    gateway: tuple[Runtime, httpx.AsyncClient], mapped_platform: TestIssuer
) -> None:
    _, client = gateway
    cases = [
        (
            {"code": "山东省民政厅", "region": "370102"},
            ["安全管理员", "default-roles"],
            ("CIVIL_AFFAIRS", "COUNTY", "370102", ["security_admin"]),
        ),
        (
            {"code": "11370000MB0000001X", "region": "37"},
            [],
            ("MEDICAL_INSURANCE", "PROVINCE", "37", []),
        ),
        (
            {"code": "health", "region": "3701"},
            ["审计管理员"],  # already our word: kept
            ("HEALTH", "CITY", "3701", ["audit_admin"]),
        ),
    ]
    for org, roles, (department, level, region, ours) in cases:
        token = mapped_platform.mint(
            {"sub": "u-7", "org": org, "realm_access": {"roles": roles}}, alg="ES256"
        )
        response = await me(client, token)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["me"] == {
            "subject": "gov-sso|u-7",
            "department": department,
            "level": level,
            "region": region,
            "roles": ours,
        }


async def test_two_platforms_subjects_never_meet(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer, mapped_platform: TestIssuer
) -> None:
    runtime, _ = gateway
    first = await runtime.tokens.verify(
        platform.mint({"sub": "u-1", "dept": "health", "level": "province", "region": "37"})
    )
    second = await runtime.tokens.verify(
        mapped_platform.mint({"sub": "u-1", "org": {"code": "health", "region": "37"}}, alg="ES256")
    )
    assert (first.subject, second.subject) == ("sd-iam|u-1", "gov-sso|u-1")
    case = await runtime.tokens.verify(
        platform.mint({"sub": "U-1", "dept": "health", "level": "province", "region": "37"})
    )
    assert case.subject == "sd-iam|U-1"  # another person at the platform: sub is case-sensitive


# --------------------------------------------------------------------------- refused


def hs256_with_public_key(platform: TestIssuer, claims: dict[str, Any]) -> str:
    """The key-confusion attack: an HMAC keyed with the issuer's public key (PEM), which a
    verifier taking ``alg`` from the token would check with the very same bytes."""
    from cryptography.hazmat.primitives import serialization

    key = platform.key("RS256")
    assert isinstance(key, SigningKey)
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{b64(header)}.{b64(claims)}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def refused_tokens(platform: TestIssuer) -> dict[str, str]:
    person = {"sub": "u-9", "dept": "health", "level": "city", "region": "3701"}
    claims = {**platform.claims("u-9"), **person}
    now = int(clock.now_utc().timestamp())
    kid = platform.key("RS256").kid
    return {
        "forged-other-key-same-kid": platform.mint(person, key=new_key("RS256"), kid=kid),
        "forged-es256-other-key": platform.mint(
            person, key=new_key("ES256"), kid=platform.key("ES256").kid
        ),
        "payload-changed": _swap_payload(platform.mint(person), {**claims, "region": "3702"}),
        "expired-beyond-leeway": platform.mint({**person, "iat": now - 700, "exp": now - 120}),
        "not-yet-valid-beyond-leeway": platform.mint({**person, "nbf": now + 120}),
        "issued-in-the-future": platform.mint({**person, "iat": now + 120}),
        "wrong-audience": platform.mint({**person, "aud": "another-system"}),
        "no-audience": platform.mint(
            {k: v for k, v in claims.items() if k != "aud"}, defaults=False
        ),
        "wrong-issuer": platform.mint({**person, "iss": "https://evil.example"}),
        "issuer-other-case": platform.mint({**person, "iss": platform.url.upper()}),
        "alg-none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "alg-none-with-kid": f"{b64({'alg': 'none', 'kid': kid})}.{b64(claims)}.",
        "hs256-signed-with-the-public-key": hs256_with_public_key(platform, claims),
        "rs256-header-on-es256-key": _relabel(platform.mint(person, alg="ES256"), alg="RS256"),
        "unknown-kid": platform.mint(person, kid="never-published"),
        "sm2-forged-other-key-same-kid": platform.mint(
            person, key=new_key("SM2"), kid=platform.key("SM2").kid
        ),
        "sm2-payload-changed": _swap_payload(
            platform.mint(person, alg="SM2"), {**claims, "region": "3702"}
        ),
        "sm2-name-not-pinned": platform.mint(person, key=_renamed(platform.key("SM2"))),
        "es256-header-on-sm2-key": _relabel(platform.mint(person, alg="SM2"), alg="ES256"),
        "sm2-header-on-es256-key": _relabel(platform.mint(person, alg="ES256"), alg="SM2"),
        "sm2-der-signature": _der_signature(platform.mint(person, alg="SM2")),
        "sm2-signature-zero": _with_signature(platform.mint(person, alg="SM2"), bytes(64)),
        "no-sub": platform.mint({k: v for k, v in claims.items() if k != "sub"}, defaults=False),
        "unknown-department": platform.mint({**person, "dept": "police"}),
        "level-region-mismatch": platform.mint({**person, "level": "county"}),
    }


def _renamed(key: Any) -> Sm2SigningKey:
    """The same SM2 key announcing itself as "SM3withSM2", a name this issuer did not pin."""
    assert isinstance(key, Sm2SigningKey)
    return Sm2SigningKey(key.kid, "SM3withSM2", key.private_hex, key.public_hex)


def _signature(token: str) -> bytes:
    encoded = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def _with_signature(token: str, signature: bytes) -> str:
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{token.rsplit('.', 1)[0]}.{encoded}"


def _der_signature(token: str) -> str:
    """r ‖ s re-encoded as DER (what some Java stacks emit): refused, raw r ‖ s only."""
    raw = _signature(token)

    def integer(value: bytes) -> bytes:
        value = value.lstrip(b"\0") or b"\0"
        if value[0] & 0x80:
            value = b"\0" + value
        return bytes([2, len(value)]) + value

    body = integer(raw[:32]) + integer(raw[32:])
    return _with_signature(token, bytes([0x30, len(body)]) + body)


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64(claims)}.{signature}"


def _relabel(token: str, *, alg: str) -> str:
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return f"{b64({**fields, 'alg': alg})}.{payload}.{signature}"


async def test_untrusted_tokens_are_refused_without_detail(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer
) -> None:
    _, client = gateway
    for case, token in refused_tokens(platform).items():
        response = await me(client, token)
        assert response.status_code == 401, case
        message = assert_refused(response, platform.url, "never-published", "evil")
        if case.startswith("expired"):
            assert "过期" in message, case
        if case.startswith("not-yet") or case.startswith("issued-in"):
            assert "尚未生效" in message, case


async def test_leeway_is_the_configured_clock_skew(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer
) -> None:
    """leeway_seconds = 30, read on the gateway's clock: 25 s past exp (or before nbf) still
    signs in, 35 s does not (5 s either side of the boundary for the test's own run time)."""
    _, client = gateway
    person = {"sub": "u-9", "dept": "health", "level": "city", "region": "3701"}
    moment = int(clock.now_utc().timestamp()) + 3600
    for claims, boundary in (
        ({"iat": moment - 700, "exp": moment}, moment),
        ({"iat": moment - 700, "nbf": moment, "exp": moment + 600}, moment),
    ):
        late = 1 if "nbf" not in claims else -1  # past exp, or before nbf
        beyond = platform.mint({**person, **claims})
        within = platform.mint({**person, **claims, "jti": "within"})
        with clock.travel(datetime.fromtimestamp(boundary + late * 35, UTC)):
            message = assert_refused(await me(client, beyond))
        assert ("过期" if late == 1 else "尚未生效") in message
        with clock.travel(datetime.fromtimestamp(boundary + late * 25, UTC)):
            response = await me(client, within)
        assert response.status_code == 200, response.text


async def test_a_cached_platform_token_still_expires(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer
) -> None:
    runtime, _ = gateway
    token = platform.mint({"sub": "u-3", "dept": "health", "level": "city", "region": "3701"})
    first = await runtime.tokens.verify(token)
    assert await runtime.tokens.verify(token) is first  # from the cache
    with (
        clock.travel(clock.now_utc() + timedelta(seconds=600 + 31)),
        pytest.raises(Unauthenticated, match="过期"),
    ):
        await runtime.tokens.verify(token)


async def test_two_administrator_roles_are_refused_at_sign_in(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer, mapped_platform: TestIssuer
) -> None:
    """三权分立 (等保 8.1.5): whichever way the platform spells the roles."""
    _, client = gateway
    tokens = [
        platform.mint(
            {
                "sub": "root",
                "dept": "big_data",
                "level": "province",
                "region": "37",
                "roles": ["security_admin", "audit_admin"],
            }
        ),
        platform.mint(
            {
                "sub": "root",
                "dept": "big_data",
                "level": "province",
                "region": "37",
                "roles": ["security_officer", "system_admin"],
            }
        ),  # alias counts
        mapped_platform.mint(
            {
                "sub": "root",
                "org": {"code": "health", "region": "37"},
                "realm_access": {"roles": ["审计管理员", "系统管理员"]},
            },
            alg="ES256",
        ),
    ]
    for token in tokens:
        message = assert_refused(await me(client, token))
        assert "三权分立" in message
        assert "拒绝登录" in message


async def test_local_tokens_may_not_borrow_a_platform_subject(
    gateway: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = gateway
    own = runtime.tokens.mint(subject="clerk", dept="health", level="city", region="3701")
    assert (await me(client, own)).status_code == 200  # development: the local key still works
    borrowed = runtime.tokens.mint(
        subject="SD-IAM|Zhang.San-0001", dept="health", level="city", region="3701"
    )
    assert_refused(await me(client, borrowed))


# --------------------------------------------------------------------------- keys


def service_for(platform: TestIssuer, *, min_refresh_seconds: float) -> TokenService:
    config = IssuerConfig(
        name="sd-iam",
        issuer=platform.url,
        audience=(platform.audience,),
        jwks_url=platform.jwks_url,
        min_refresh_seconds=min_refresh_seconds,
    )
    return TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])


async def test_key_rollover_needs_no_restart() -> None:
    """The platform publishes a new key and retires the old one: tokens with the new kid are
    accepted by the same gateway process, new tokens with the retired key are refused."""
    person = {"dept": "health", "level": "city", "region": "3701"}
    with TestIssuer() as platform:
        service = service_for(platform, min_refresh_seconds=0.2)
        await service.start()
        old = platform.key("RS256")
        assert (await service.verify(platform.mint({"sub": "a", **person}))).subject == "sd-iam|a"
        new_kid = platform.rotate("RS256")
        platform.retire(old.kid)
        await asyncio.sleep(0.25)
        fetched = platform.jwks_requests
        rolled = platform.mint({"sub": "b", **person}, kid=new_kid, key=platform.keys[new_kid])
        assert (await service.verify(rolled)).subject == "sd-iam|b"
        assert platform.jwks_requests == fetched + 1  # one fetch for the unknown kid
        await asyncio.sleep(0.25)
        with pytest.raises(Unauthenticated):
            await service.verify(platform.mint({"sub": "c", **person}, key=old))


async def test_a_withdrawn_key_stops_verifying_without_a_new_kid() -> None:
    """A key the platform withdraws (compromised) while no new kid appears: the keys, older
    than key_max_age_seconds, are read again before use, and its new tokens are refused."""
    person = {"dept": "health", "level": "city", "region": "3701"}
    with TestIssuer() as platform:
        config = IssuerConfig(
            name="sd-iam",
            issuer=platform.url,
            audience=(platform.audience,),
            jwks_url=platform.jwks_url,
            min_refresh_seconds=0.3,
            key_max_age_seconds=0.3,
        )
        service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
        withdrawn = platform.key("RS256")
        assert (await service.verify(platform.mint({"sub": "a", **person}))).subject == "sd-iam|a"
        platform.retire(withdrawn.kid)
        # Within the age the keys in hand are used (no fetch per token).
        assert await service.verify(platform.mint({"sub": "b", **person}, key=withdrawn))
        assert platform.jwks_requests == 1
        await asyncio.sleep(0.65)
        with pytest.raises(Unauthenticated):
            await service.verify(platform.mint({"sub": "c", **person}, key=withdrawn))
        # The fetch for the age, and at most one more for the unknown kid (rate-limited).
        assert 2 <= platform.jwks_requests <= 3
        principal = await service.verify(platform.mint({"sub": "d", **person}, alg="ES256"))
        assert principal.subject == "sd-iam|d"


async def test_unknown_kids_refresh_at_most_once_per_interval() -> None:
    """A flood of tokens with invented kids costs the platform one key-set request per
    interval (30 s here), even when they arrive together."""
    person = {"sub": "a", "dept": "health", "level": "city", "region": "3701"}
    with TestIssuer() as platform:
        service = service_for(platform, min_refresh_seconds=30)
        forged = [platform.mint(person, kid=f"invented-{n}") for n in range(20)]
        results = await asyncio.gather(
            *(service.verify(token) for token in forged), return_exceptions=True
        )
        assert all(isinstance(result, Unauthenticated) for result in results)
        assert platform.jwks_requests == 1
        for token in forged:
            with pytest.raises(Unauthenticated):
                await service.verify(token)
        assert platform.jwks_requests == 1
        # The keys fetched by that one request serve the real tokens.
        assert (await service.verify(platform.mint(person))).subject == "sd-iam|a"
        assert platform.jwks_requests == 1


async def test_a_slow_platform_delays_only_its_own_tokens() -> None:
    """The key-set fetch is awaited, not blocking: while it waits, other callers are served;
    beyond timeout_seconds the platform's token is refused and the gateway goes on."""
    person = {"sub": "a", "dept": "health", "level": "city", "region": "3701"}
    with TestIssuer() as platform:
        platform.jwks_delay = 1.5
        config = IssuerConfig(
            name="sd-iam",
            issuer=platform.url,
            audience=(platform.audience,),
            jwks_url=platform.jwks_url,
            timeout_seconds=0.5,
        )
        service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
        local = service.mint(subject="clerk", dept="health", level="city", region="3701")
        finished: list[str] = []

        async def platform_caller() -> None:
            with pytest.raises(Unauthenticated):
                await service.verify(platform.mint(person))
            finished.append("platform")

        async def local_caller() -> None:
            await asyncio.sleep(0.05)
            assert (await service.verify(local)).subject == "clerk"
            finished.append("local")

        started = time.monotonic()
        await asyncio.gather(platform_caller(), local_caller())
        assert finished == ["local", "platform"]
        assert time.monotonic() - started < 1.4  # the timeout, not the platform's 1.5 s


async def test_discovery_naming_another_issuer_is_not_trusted() -> None:
    """OIDC Discovery §4.3: the document's issuer must be the configured one exactly."""
    person = {"sub": "a", "dept": "health", "level": "city", "region": "3701"}
    with TestIssuer(issuer_override="https://someone-else.example") as platform:
        config = IssuerConfig(
            name="sd-iam",
            issuer=platform.url,
            audience=(platform.audience,),
            discovery_url=platform.discovery_url,
        )
        service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
        await service.start()
        assert platform.jwks_requests == 0
        with pytest.raises(Unauthenticated):
            await service.verify(platform.mint(person))


async def test_unreachable_platform_refuses_its_tokens_only() -> None:
    with TestIssuer() as platform:
        token = platform.mint({"sub": "a", "dept": "health", "level": "city", "region": "3701"})
        url = platform.jwks_url
    config = IssuerConfig(
        name="sd-iam",
        issuer=platform.url,
        audience=("relief-gateway",),
        jwks_url=url,
        timeout_seconds=1,
    )
    service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
    await service.start()  # logged, not raised: the gateway still starts
    with pytest.raises(Unauthenticated):
        await service.verify(token)
    local = service.mint(subject="clerk", dept="health", level="city", region="3701")
    assert (await service.verify(local)).subject == "clerk"


async def test_jwks_file_is_a_key_source(tmp_path: Path) -> None:
    with TestIssuer() as platform:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(platform.jwks()), encoding="utf-8")
        config = IssuerConfig(
            name="file",
            issuer=platform.url,
            audience=("relief-gateway",),
            jwks_file=path,
            algorithms=("ES256",),
        )
        service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
        person = {"sub": "a", "dept": "health", "level": "city", "region": "3701"}
        principal = await service.verify(platform.mint(person, alg="ES256"))
        assert principal.subject == "file|a"
        with pytest.raises(Unauthenticated):  # RS256 is not pinned for this issuer
            await service.verify(platform.mint(person, alg="RS256"))


async def test_a_key_verifies_only_the_algorithm_published_for_it(tmp_path: Path) -> None:
    """A JWK that says ``alg: RS512`` does not verify an RS256 token, though both are RSA."""
    signer = new_key("RS256", kid="k1")
    assert isinstance(signer, SigningKey)
    published = {**signer.public_jwk(), "alg": "RS512"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [published]}), encoding="utf-8")
    config = IssuerConfig(
        name="file",
        issuer="https://iam.example",
        audience=("gw",),
        jwks_file=path,
        algorithms=("RS256",),
    )
    service = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
    now = int(clock.now_utc().timestamp())
    claims = {
        "iss": "https://iam.example",
        "aud": "gw",
        "sub": "a",
        "exp": now + 60,
        "dept": "health",
        "level": "province",
        "region": "37",
    }
    token = jwt.encode(claims, signer.private, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        await service.verify(token)
    path.write_text(json.dumps({"keys": [signer.public_jwk()]}), encoding="utf-8")
    fixed = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])
    assert (await fixed.verify(token)).subject == "file|a"


# --------------------------------------------------------------------------- dispatch


class StaticVerifier:
    """A verifier of another part of the gateway (service accounts register theirs)."""

    issuer = "relief-gateway/clients"

    def __init__(self) -> None:
        self.calls = 0

    def verify(self, token: str) -> Principal:
        self.calls += 1
        claims = jwt.decode(token, options={"verify_signature": False})
        if claims.get("sub") != "system-a":
            raise Unauthenticated("令牌无效")
        from gateway.domain.departments import Department, Level

        return Principal("client:system-a", Department.HEALTH, Level.CITY, "3701")


async def test_registered_verifiers_get_their_issuers_tokens_uncached() -> None:
    service = TokenService(LOCAL_KEY, "relief-gateway")
    verifier = StaticVerifier()
    service.register(verifier)
    token = jwt.encode({"iss": verifier.issuer, "sub": "system-a"}, "x" * 32, algorithm="HS256")
    assert (await service.verify(token)).subject == "client:system-a"
    await service.verify(token)
    assert verifier.calls == 2  # its own decision every time (a disabled client stops at once)
    with pytest.raises(ConfigurationError):
        service.register(verifier)  # one verifier per issuer
    with pytest.raises(Unauthenticated):
        await service.verify(jwt.encode({"iss": "nobody", "sub": "x"}, "x" * 32))


async def test_production_with_a_platform_refuses_local_tokens(platform: TestIssuer) -> None:
    config = IssuerConfig(
        name="sd-iam", issuer=platform.url, audience=("relief-gateway",), jwks_url=platform.jwks_url
    )
    strict = TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)], accept_local=False)
    local = strict.mint(subject="clerk", dept="health", level="city", region="3701")
    with pytest.raises(Unauthenticated, match="统一身份认证"):
        await strict.verify(local)
    person = {"sub": "a", "dept": "health", "level": "city", "region": "3701"}
    assert (await strict.verify(platform.mint(person))).subject == "sd-iam|a"


async def test_runtime_decides_local_tokens_by_environment(tmp_path: Path) -> None:
    """Runtime.create: production with a platform refuses local HS256 tokens unless
    RELIEF_OIDC_ALLOW_LOCAL_TOKENS; development, and production without a platform, accept
    them (the demo, deployments not yet connected)."""
    from gateway.crypto import Keyring

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [new_key("ES256").public_jwk()]}), encoding="utf-8")
    oidc = {
        "oidc_issuer": "https://iam.example",
        "oidc_jwks_file": jwks,
        "oidc_audience": "relief-gateway",
    }
    cases = [
        ("development", oidc, True),
        ("production", oidc, False),
        ("production", {**oidc, "oidc_allow_local_tokens": True}, True),
        ("production", {}, True),
    ]
    for number, (environment, extra, accepted) in enumerate(cases):
        data_dir = tmp_path / f"case-{number}"
        data_dir.mkdir(mode=0o700)
        Keyring.generate("aes-256-gcm+hmac-sha256").save(data_dir / "keyring.json")
        TokenService.from_file(data_dir / "token.key", "relief-gateway", create=True)
        pinned = os.environ.pop("RELIEF_TODAY", None)  # production refuses a pinned clock
        try:
            settings = load_settings(
                env=environment,
                province="shandong",
                data_dir=data_dir,
                database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
                **extra,
            )
            runtime = Runtime.create(settings)
        finally:
            if pinned is not None:
                os.environ["RELIEF_TODAY"] = pinned
        try:
            assert len(runtime.tokens.platforms) == (1 if extra else 0)
            local = runtime.tokens.mint(
                subject="clerk", dept="health", level="province", region="37"
            )
            if accepted:
                assert (await runtime.tokens.verify(local)).subject == "clerk"
            else:
                with pytest.raises(Unauthenticated, match="统一身份认证"):
                    await runtime.tokens.verify(local)
        finally:
            await runtime.close()


def test_production_refuses_a_platform_over_plain_http(tmp_path: Path) -> None:
    """Keys fetched in clear text could be swapped in transit: production refuses to start."""
    from gateway.crypto import Keyring
    from gateway.runtime import production

    Keyring.generate("aes-256-gcm+hmac-sha256").save(tmp_path / "keyring.json")
    TokenService.from_file(tmp_path / "token.key", "relief-gateway", create=True)
    pinned = os.environ.pop("RELIEF_TODAY", None)
    try:
        for url, refused in [
            ("http://iam.example/jwks", True),
            ("http://127.0.0.1:9/jwks", False),
            ("https://iam.example/jwks", False),
        ]:
            settings = load_settings(
                env="production",
                province="shandong",
                data_dir=tmp_path,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'relief.db'}",
                oidc_issuer="https://iam.example",
                oidc_jwks_url=url,
                oidc_audience="gw",
            )
            if refused:
                with pytest.raises(ConfigurationError, match="必须使用 https"):
                    production.check(settings)
            else:
                production.check(settings)
    finally:
        if pinned is not None:
            os.environ["RELIEF_TODAY"] = pinned


# --------------------------------------------------------------------------- the browser sign-in


async def test_authorization_code_with_pkce_signs_in(
    gateway: tuple[Runtime, httpx.AsyncClient], platform: TestIssuer
) -> None:
    """The flow the console and workbench use: /authorize (login form) → code → /token with
    the PKCE verifier → an access token the gateway accepts."""
    runtime, client = gateway
    sign_in = runtime.tokens.platforms[0].sign_in()
    assert sign_in is not None
    assert sign_in["authorizationEndpoint"] == f"{platform.url}/authorize"
    assert sign_in["clientId"] == "relief-console"
    verifier, challenge = pkce_pair()
    redirect = f"{GATEWAY_ORIGIN}/console/"
    params = {
        "response_type": "code",
        "client_id": "relief-console",
        "redirect_uri": redirect,
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient() as browser:
        form = await browser.get(sign_in["authorizationEndpoint"], params=params)
        assert form.status_code == 200
        assert 'name="username"' in form.text
        login = await browser.post(
            sign_in["authorizationEndpoint"], params=params, data={"username": "officer.b"}
        )
        assert login.status_code == 302
        location = urlsplit(login.headers["location"])
        answer = parse_qs(location.query)
        assert answer["state"] == ["st-1"]
        exchange = {
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": redirect,
            "client_id": "relief-console",
        }
        wrong = await browser.post(
            sign_in["tokenEndpoint"],
            data={**exchange, "code_verifier": "not-the-verifier"},
            headers={"Origin": GATEWAY_ORIGIN},
        )
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        assert wrong.headers["access-control-allow-origin"] == GATEWAY_ORIGIN
        # The failed attempt spent the code (RFC 6749 §4.1.2: a code is good once).
        login = await browser.post(
            sign_in["authorizationEndpoint"], params=params, data={"username": "officer.b"}
        )
        exchange["code"] = parse_qs(urlsplit(login.headers["location"]).query)["code"][0]
        tokens = await browser.post(
            sign_in["tokenEndpoint"], data={**exchange, "code_verifier": verifier}
        )
        assert tokens.status_code == 200, tokens.text
        again = await browser.post(
            sign_in["tokenEndpoint"], data={**exchange, "code_verifier": verifier}
        )
        assert again.status_code == 400
    response = await me(client, tokens.json()["access_token"])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"]["subject"] == "sd-iam|officer.b"
    assert response.json()["data"]["me"]["roles"] == ["security_admin"]
    # The ID token is for the browser (audience: the sign-in client), never a bearer token.
    id_token = tokens.json()["id_token"]
    id_claims = jwt.decode(id_token, options={"verify_signature": False})
    assert (id_claims["aud"], id_claims["sub"]) == ("relief-console", "officer.b")
    assert_refused(await me(client, id_token))


# --------------------------------------------------------------------------- configuration


def settings_with(tmp_path: Path, body: str | None = None, **values: Any) -> Any:
    if body is not None:
        path = tmp_path / "issuers.toml"
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        values["oidc_file"] = path
    return load_settings(data_dir=tmp_path, **values)


GOOD = """
[[issuer]]
name = "sd-iam"
issuer = "https://iam.example"
jwks_url = "https://iam.example/jwks"
audience = ["relief-gateway"]
"""


@pytest.mark.parametrize(
    ("case", "body", "expected"),
    [
        ("not toml", "[[issuer]\nname=", "不是有效的 TOML"),
        ("no issuers", "title = 'x'\n", "未知的表"),
        ("empty", "", "没有 [[issuer]]"),
        ("no audience", GOOD.replace('audience = ["relief-gateway"]', ""), "必须设置 audience"),
        ("hs256", GOOD + 'algorithms = ["HS256"]\n', "不支持的签名算法 HS256"),
        ("none", GOOD + 'algorithms = ["none"]\n', "不支持的签名算法 none"),
        (
            "two sources",
            GOOD + 'discovery_url = "https://iam.example/.well-known/x"\n',
            "只能设置一个",
        ),
        ("no source", GOOD.replace('jwks_url = "https://iam.example/jwks"', ""), "只能设置一个"),
        ("bad name", GOOD.replace('"sd-iam"', '"sd iam|x"'), "name 应为"),
        ("leeway", GOOD + "leeway_seconds = 3600\n", "leeway_seconds"),
        ("unknown key", GOOD + 'audiance = "x"\n', "未知的配置项 audiance"),
        (
            "bad url",
            GOOD.replace("https://iam.example/jwks", "ftp://iam.example/jwks"),
            "应为 http(s) 地址",
        ),
        (
            "department table",
            GOOD + '[issuer.claims.departments]\n"民政厅" = "police"\n',
            "不是本系统的取值",
        ),
        (
            "role table",
            GOOD + '[issuer.claims.role_names]\n"管理员" = "root"\n',
            "不是本系统的取值",
        ),
        ("region table", GOOD + '[issuer.claims.regions]\n"济南" = "jinan"\n', "行政区划代码"),
        ("duplicate", GOOD + GOOD, "name 重复"),
        ("missing file", None, "无法读取身份平台配置文件"),
    ],
)
def test_configuration_errors_are_chinese(
    tmp_path: Path, case: str, body: str | None, expected: str
) -> None:
    if body is None:
        settings = settings_with(tmp_path, oidc_file=tmp_path / "absent.toml")
    else:
        settings = settings_with(tmp_path, body)
    with pytest.raises(ConfigurationError) as refused:
        issuer_configs(settings)
    assert expected in refused.value.message, (case, refused.value.message)
    assert CHINESE.search(refused.value.message)


def test_environment_issuer_and_its_errors(tmp_path: Path) -> None:
    configs = issuer_configs(
        settings_with(
            tmp_path,
            oidc_issuer="https://iam.example",
            oidc_audience="a, b",
            oidc_jwks_url="https://iam.example/jwks",
            oidc_algorithms="ES256",
            oidc_name="sd-iam",
            oidc_client_id="relief-console",
        )
    )
    assert [(c.name, c.audience, c.algorithms, c.client_id) for c in configs] == [
        ("sd-iam", ("a", "b"), ("ES256",), "relief-console")
    ]
    for values, expected in [
        (
            {"oidc_issuer": "https://iam.example", "oidc_jwks_url": "https://iam.example/j"},
            "必须设置 RELIEF_OIDC_AUDIENCE",
        ),
        ({"oidc_issuer": "https://iam.example", "oidc_audience": "a"}, "只能设置一个"),
        (
            {"oidc_issuer": "relief-gateway", "oidc_audience": "a", "oidc_jwks_url": "https://x/j"},
            "RELIEF_TOKEN_ISSUER",
        ),
        (
            {
                "oidc_issuer": "https://iam.example",
                "oidc_audience": "a",
                "oidc_jwks_url": "http://iam.example/j",
                "env": "production",
            },
            "必须使用 https",
        ),
    ]:
        with pytest.raises(ConfigurationError, match=expected):
            issuer_configs(settings_with(tmp_path, **values))
    both = settings_with(tmp_path, GOOD, oidc_issuer="https://iam.example")
    with pytest.raises(ConfigurationError, match="只能设置其一"):
        issuer_configs(both)


def test_claim_mapping_table() -> None:
    mapping = ClaimMapping(
        department="org.code",
        level=None,
        region="org.region",
        roles="groups",
        departments={"卫健委": "health"},
        regions={"JN": "3701"},
        role_table={"审计": "audit_admin"},
    )
    principal = mapping.principal(
        "p|x", {"org": {"code": "卫健委", "region": "JN"}, "groups": "审计, 访客"}
    )
    assert (principal.department.value, principal.level.value, principal.region) == (
        "health",
        "city",
        "3701",
    )
    assert principal.roles == frozenset({"audit_admin"})
    # A claim literally named with dots is found before the nested path.
    flat = mapping.principal("p|x", {"org.code": "health", "org.region": "37"})
    assert flat.level.value == "province"
    for claims in (
        {"org": {"code": "公安厅", "region": "37"}},  # not in the table, not ours
        {"org": {"code": "health", "region": "3701001"}},  # no level for 7 digits
        {"org": {"code": "health"}},
        {"org": {"code": ["health"], "region": "37"}},
    ):
        with pytest.raises(Unauthenticated):
            mapping.principal("p|x", claims)


# --------------------------------------------------------------------------- properties


_FUZZ_KEYS = new_key("RS256", kid="fuzz")


def _fuzz_service(directory: Path) -> TokenService:
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [_FUZZ_KEYS.public_jwk()]}), encoding="utf-8")
    config = IssuerConfig(
        name="fz", issuer="https://iam.example", audience=("relief-gateway",), jwks_file=path
    )
    return TokenService(LOCAL_KEY, "relief-gateway", issuers=[Issuer(config)])


def _jws(header: object, payload: object, signature: bytes) -> str:
    def part(value: object) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}.{part(signature)}"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    header=st.fixed_dictionaries(
        {"alg": st.sampled_from(["RS256", "ES256", "HS256", "none", "SM2", "rs256"])},
        optional={"kid": st.sampled_from(["fuzz", "other", ""]) | JSON, "typ": JSON},
    )
    | JSON,
    payload=st.fixed_dictionaries(
        {"iss": st.sampled_from(["https://iam.example", "relief-gateway", "x"]) | JSON},
        optional={
            "sub": JSON,
            "aud": JSON,
            "exp": JSON,
            "nbf": JSON,
            "dept": JSON,
            "level": JSON,
            "region": JSON,
            "roles": JSON,
        },
    )
    | JSON,
    signature=st.binary(max_size=300),
)
def test_any_unsigned_token_is_refused_as_unauthenticated(
    tmp_path_factory: pytest.TempPathFactory, header: object, payload: object, signature: bytes
) -> None:
    """Whatever a caller puts in the header, the claims or the signature, without the
    platform's private key the answer is Unauthenticated (HTTP 401), never another error
    (HTTP 500) and never a caller."""
    service = _fuzz_service(tmp_path_factory.mktemp("fuzz"))
    with pytest.raises(Unauthenticated):
        asyncio.run(service.verify(_jws(header, payload, signature)))


@settings(max_examples=60, deadline=None)
@given(
    roles=st.lists(
        st.sampled_from(
            [
                "security_admin",
                "security_officer",
                "audit_admin",
                "system_admin",
                "offline_access",
                "安全管理员",
                "审计管理员",
            ]
        ),
        max_size=5,
    )
)
def test_a_token_holds_at_most_one_administrator_role(roles: list[str]) -> None:
    """三权分立 as a property of the claim mapping: two distinct administrator roles (aliases
    and mapped names included) never make a principal."""
    table = {"安全管理员": "security_admin", "审计管理员": "audit_admin"}
    table.update({role: role for role in ("security_admin", "audit_admin", "system_admin")})
    table["security_officer"] = "security_admin"
    mapping = ClaimMapping(role_table=table)
    held = {table[role] for role in roles if role in table}
    claims = {"dept": "health", "level": "province", "region": "37", "roles": roles}
    if len(held) > 1:
        with pytest.raises(Unauthenticated, match="三权分立"):
            mapping.principal("p|x", claims)
    else:
        assert mapping.principal("p|x", claims).roles == frozenset(held)


# --------------------------------------------------------------------------- SM2 (国密)
# The gateway verifies with pysmx (snowland-smx); tokens are signed by independent
# implementations (gmssl, Debian's OpenSSL), and pysmx's signatures verify with both.


def _sm2_key() -> Sm2SigningKey:
    return Sm2SigningKey.generate("k", "SM2")


def _public(key: Sm2SigningKey) -> Sm2PublicKey:
    return Sm2PublicKey.from_jwk(key.public_jwk())


def test_sm2_gmssl_signs_and_the_gateway_verifies() -> None:
    key = _sm2_key()
    message = b"eyJhbGciOiJTTTIifQ.eyJzdWIiOiJ1LTEifQ"
    signature = key.sign(message)
    assert sm2.verify_signature(message, signature, _public(key), sm2.DEFAULT_USER_ID)
    assert not sm2.verify_signature(message + b"x", signature, _public(key), sm2.DEFAULT_USER_ID)
    assert not sm2.verify_signature(message, signature, _public(_sm2_key()), sm2.DEFAULT_USER_ID)
    # The signer ID is part of what is signed (Z value): another ID, another digest.
    assert not sm2.verify_signature(message, signature, _public(key), "another-signer-id")


def test_sm2_the_gateways_library_signs_and_gmssl_verifies() -> None:
    from gmssl import sm2 as gmssl_sm2  # type: ignore[import-untyped]
    from pysmx.SM2 import Sign  # type: ignore[import-untyped]

    key = _sm2_key()
    message = b"header.payload"
    nonce = f"{secrets.randbelow(sm2.N - 1) + 1:064x}"
    signature: bytes = Sign(message, key.private_hex, nonce, 64, uid=sm2.DEFAULT_USER_ID)
    verifier = gmssl_sm2.CryptSM2(private_key="", public_key=key.public_hex)
    assert verifier.verify_with_sm3(signature.hex(), message)
    assert not verifier.verify_with_sm3(signature.hex(), message + b"x")


def _openssl_sm2() -> bool:
    try:
        probe = subprocess.run(
            ["openssl", "genpkey", "-algorithm", "SM2"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _der_integers(der: bytes) -> tuple[int, int]:
    assert der[0] == 0x30
    position, values = 2, []
    for _ in range(2):
        assert der[position] == 0x02
        length = der[position + 1]
        values.append(int.from_bytes(der[position + 2 : position + 2 + length], "big"))
        position += 2 + length
    return values[0], values[1]


def _der(r: int, s: int) -> bytes:
    def integer(value: int) -> bytes:
        raw = value.to_bytes(33, "big").lstrip(b"\0") or b"\0"
        raw = b"\0" + raw if raw[0] & 0x80 else raw
        return bytes([2, len(raw)]) + raw

    body = integer(r) + integer(s)
    return bytes([0x30, len(body)]) + body


@pytest.mark.skipif(not _openssl_sm2(), reason="openssl without SM2")
def test_sm2_interoperates_with_openssl_both_ways(tmp_path: Path) -> None:
    """OpenSSL 3 (sm3 digest, distid 1234567812345678) signs, the gateway verifies; pysmx
    signs, OpenSSL verifies."""
    from pysmx.SM2 import Sign

    private_pem, public_pem, message_file = (
        tmp_path / "k.pem",
        tmp_path / "p.pem",
        tmp_path / "m",
    )

    def run(command: list[str]) -> bytes:
        return subprocess.run(command, check=True, capture_output=True, timeout=30).stdout

    run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(private_pem)])
    run(["openssl", "pkey", "-in", str(private_pem), "-pubout", "-out", str(public_pem)])
    text = run(["openssl", "pkey", "-in", str(private_pem), "-text", "-noout"]).decode()
    fields = {}
    for name in ("priv", "pub"):
        block = text.split(f"{name}:")[1].split("\n")[1:]
        fields[name] = "".join(
            line.strip().replace(":", "")
            for line in itertools.takewhile(lambda line: line.startswith("    "), block)
        )
    point = fields["pub"][2:]  # 04 ‖ x ‖ y
    jwk = {
        "kty": "EC",
        "crv": "SM2",
        "x": base64.urlsafe_b64encode(bytes.fromhex(point[:64])).rstrip(b"=").decode(),
        "y": base64.urlsafe_b64encode(bytes.fromhex(point[64:])).rstrip(b"=").decode(),
    }
    public = Sm2PublicKey.from_jwk(jwk)
    message = b"eyJhbGciOiJTTTIifQ.eyJzdWIiOiJvcGVuc3NsIn0"
    message_file.write_bytes(message)
    distid = ["-sigopt", f"distid:{sm2.DEFAULT_USER_ID}"]
    signed = run(["openssl", "dgst", "-sm3", "-sign", str(private_pem), *distid, str(message_file)])
    r, s = _der_integers(signed)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert sm2.verify_signature(message, raw, public, sm2.DEFAULT_USER_ID)
    nonce = f"{secrets.randbelow(sm2.N - 1) + 1:064x}"
    ours: bytes = Sign(
        message, fields["priv"].rjust(64, "0")[-64:], nonce, 64, uid=sm2.DEFAULT_USER_ID
    )
    signature_file = tmp_path / "sig.der"
    signature_file.write_bytes(
        _der(int.from_bytes(ours[:32], "big"), int.from_bytes(ours[32:], "big"))
    )
    verified = run(
        [
            "openssl",
            "dgst",
            "-sm3",
            "-verify",
            str(public_pem),
            *distid,
            "-signature",
            str(signature_file),
            str(message_file),
        ]
    )
    assert b"Verified OK" in verified


def test_sm2_signature_values_outside_the_group_order_are_refused() -> None:
    """GB/T 32918.2 §7.1 B1-B2: r, s in [1, n-1], checked before the library's arithmetic."""
    key = _sm2_key()
    message = b"header.payload"
    good = key.sign(message)
    r, s = int.from_bytes(good[:32], "big"), int.from_bytes(good[32:], "big")
    public = _public(key)
    for bad_r, bad_s in [(0, s), (r, 0), (sm2.N, s), (r, sm2.N), (r, (1 << 256) - 1)]:
        forged = bad_r.to_bytes(32, "big") + bad_s.to_bytes(32, "big")
        assert not sm2.verify_signature(message, forged, public, sm2.DEFAULT_USER_ID)
    for length in (0, 63, 65, 72):
        assert not sm2.verify_signature(
            message, good[:length].ljust(length, b"\1"), public, sm2.DEFAULT_USER_ID
        )


def test_sm2_keys_off_the_curve_are_not_keys() -> None:
    """Invalid-curve attacks: a point that is not on the SM2 curve never becomes a key."""
    jwk = _sm2_key().public_jwk()
    y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big")

    def b64(number: int, size: int = 32) -> str:
        return base64.urlsafe_b64encode(number.to_bytes(size, "big")).rstrip(b"=").decode()

    for change in (
        {"y": b64((y + 1) % sm2.P)},
        {"x": b64(0), "y": b64(0)},
        {"x": b64(sm2.P)},
        {"x": jwk["x"][:-2]},
        {"crv": "P-256"},
        {"alg": "ES256"},
        {"x": 12},
    ):
        with pytest.raises(sm2.Sm2KeyError):
            Sm2PublicKey.from_jwk({**jwk, **change})
    assert "sm2" not in {k.lower() for k in jwks_keys({**jwk, "y": b64((y + 1) % sm2.P)})}


def jwks_keys(jwk: dict[str, Any]) -> dict[str, Any]:
    from gateway.runtime.jwks import parse_key_set

    return parse_key_set({"keys": [{**jwk, "kid": "sm2"}]})


@settings(max_examples=20, deadline=None)
@given(signature=st.binary(min_size=64, max_size=64))
def test_sm2_random_signatures_never_verify(signature: bytes) -> None:
    assert not sm2.verify_signature(b"header.payload", signature, _FIXED_SM2, sm2.DEFAULT_USER_ID)


_FIXED_SM2 = Sm2PublicKey.from_jwk(Sm2SigningKey.generate("fixed").public_jwk())


def test_sm2_is_pinned_per_issuer(tmp_path: Path) -> None:
    configs = issuer_configs(settings_with(tmp_path, GOOD + 'algorithms = ["SM3withSM2"]\n'))
    assert configs[0].algorithms == ("SM3withSM2",)
    with pytest.raises(ConfigurationError, match="可选 RS256、ES256、SM2"):
        issuer_configs(settings_with(tmp_path, GOOD + 'algorithms = ["SM9"]\n'))


# --------------------------------------------------------------------------- review findings


def test_environment_errors_name_the_environment_variables(tmp_path: Path) -> None:
    """An issuer from RELIEF_OIDC_* is named by its variables, one from the file by its keys."""
    base: dict[str, Any] = {"oidc_issuer": "https://iam.example", "oidc_audience": "relief-gateway"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"oidc_issuer": "https://iam.example", "oidc_jwks_url": "https://iam.example/j"},
            "必须设置 RELIEF_OIDC_AUDIENCE",
            "audience (",
        ),
        (
            {**base, "oidc_jwks_url": "http://iam.example/j", "env": "production"},
            "RELIEF_OIDC_JWKS_URL",
            "jwks_url",
        ),
        (
            {**base, "oidc_jwks_url": "ftp://iam.example/j"},
            "RELIEF_OIDC_JWKS_URL 应为 http(s) 地址",
            "jwks_url",
        ),
        (
            {**base, "oidc_jwks_url": "https://x/j", "oidc_leeway_seconds": 900},
            "RELIEF_OIDC_LEEWAY_SECONDS",
            "leeway_seconds",
        ),
        ({**base}, "RELIEF_OIDC_DISCOVERY_URL、RELIEF_OIDC_JWKS_URL", "discovery_url"),
        (
            {**base, "oidc_jwks_file": tmp_path / "absent.json"},
            "找不到 RELIEF_OIDC_JWKS_FILE",
            "jwks_file",
        ),
    ]
    for values, named, not_named in cases:
        with pytest.raises(ConfigurationError) as refused:
            issuer_configs(settings_with(tmp_path, **values))
        assert named in refused.value.message, refused.value.message
        assert not_named not in refused.value.message, refused.value.message
    # The file's keys keep their names.
    with pytest.raises(ConfigurationError) as refused:
        issuer_configs(settings_with(tmp_path, GOOD.replace('audience = ["relief-gateway"]', "")))
    assert "必须设置 audience" in refused.value.message
    assert "RELIEF_OIDC" not in refused.value.message


def test_a_browser_client_id_equal_to_an_audience_is_refused(tmp_path: Path) -> None:
    """The browser client's ID token has aud = client_id: were that an accepted audience, an ID
    token would pass as a bearer token. Refused at start-up, in both configurations."""
    env = {
        "oidc_issuer": "https://iam.example",
        "oidc_jwks_url": "https://iam.example/jwks",
        "oidc_audience": "relief-gateway, relief-api",
    }
    for client_id in ("relief-gateway", "relief-api"):
        with pytest.raises(ConfigurationError) as refused:
            issuer_configs(settings_with(tmp_path, **env, oidc_client_id=client_id))
        message = refused.value.message
        assert "RELIEF_OIDC_CLIENT_ID" in message
        assert "RELIEF_OIDC_AUDIENCE" in message
        assert "ID 令牌" in message
    with pytest.raises(ConfigurationError, match=r"client_id \(relief-gateway\) 不得与 audience"):
        issuer_configs(settings_with(tmp_path, GOOD + 'client_id = "relief-gateway"\n'))
    # Different names: accepted (the documented examples).
    assert issuer_configs(settings_with(tmp_path, **env, oidc_client_id="relief-console"))
    assert issuer_configs(settings_with(tmp_path, GOOD + 'client_id = "relief-console"\n'))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "不是有效的 JSON"),
        ("[1, 2]", "不是 JWK Set"),
        ('{"keys": []}', "没有可用的签名密钥"),
        ("ENC", "没有可用的签名密钥"),  # an encryption key only
        ("PRIVATE", "没有可用的签名密钥"),  # a private key is never used
        ('{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "没有可用的签名密钥"),  # malformed
        (b"\xff\xfe", "无法读取"),
    ],
)
def test_a_broken_local_jwks_file_stops_the_gateway(
    tmp_path: Path, content: str | bytes, words: str
) -> None:
    key = new_key("ES256")
    path = tmp_path / "jwks.json"
    if content == "ENC":
        content = json.dumps({"keys": [{**key.public_jwk(), "use": "enc"}]})
    elif content == "PRIVATE":
        content = json.dumps({"keys": [{**key.public_jwk(), "d": "AAAA"}]})
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    env = {"oidc_issuer": "https://iam.example", "oidc_audience": "relief-gateway"}
    with pytest.raises(ConfigurationError) as refused:
        issuer_configs(settings_with(tmp_path, **env, oidc_jwks_file=path))
    message = refused.value.message
    assert words in message, message
    assert "RELIEF_OIDC_JWKS_FILE" in message
    assert CHINESE.search(message)
    # In the issuers file the key is named as written there.
    body = GOOD.replace('jwks_url = "https://iam.example/jwks"', f'jwks_file = "{path}"')
    with pytest.raises(ConfigurationError, match=f"jwks_file {re.escape(str(path))}"):
        issuer_configs(settings_with(tmp_path, body))
    # The same file with a usable key: accepted.
    path.write_text(json.dumps({"keys": [key.public_jwk()]}), encoding="utf-8")
    assert issuer_configs(settings_with(tmp_path, **env, oidc_jwks_file=path))


async def _readyz_gateway(
    tmp_path: Path, jwks_url: str, *, environment: str, **extra: Any
) -> tuple[Runtime, httpx.AsyncClient]:
    from gateway.crypto import Keyring

    data_dir = tmp_path / environment
    data_dir.mkdir(mode=0o700)
    Keyring.generate("aes-256-gcm+hmac-sha256").save(data_dir / "keyring.json")
    TokenService.from_file(data_dir / "token.key", "relief-gateway", create=True)
    pinned = os.environ.pop("RELIEF_TODAY", None) if environment == "production" else None
    try:
        settings = load_settings(
            env=environment,
            province="shandong",
            data_dir=data_dir,
            database_url=f"sqlite+aiosqlite:///{data_dir / 'relief.db'}",
            oidc_issuer="https://iam.example",
            oidc_name="sd-iam",
            oidc_jwks_url=jwks_url,
            oidc_audience="relief-gateway",
            oidc_timeout_seconds=1,
            oidc_refresh_seconds=0.05,
            **extra,
        )
        runtime = Runtime.create(settings)
    finally:
        if pinned is not None:
            os.environ["RELIEF_TODAY"] = pinned
    await upgrade_to_head(runtime.engine)
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    return runtime, httpx.AsyncClient(transport=transport, base_url=GATEWAY_ORIGIN)


async def test_readyz_reports_a_platform_whose_keys_are_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable remote key set does not stop the start (the platform may come up later):
    it is logged in Chinese and /readyz names the issuer as not loaded. Not ready only when no
    platform has keys and local tokens are refused (production); ready again once the platform
    answers, without a token to trigger the fetch (/readyz retries in the background)."""
    later = TestIssuer(audience="relief-gateway")  # bound, not yet listening
    jwks_url = later.jwks_url
    caplog.set_level("WARNING", logger="gateway.identity")
    runtime, client = await _readyz_gateway(tmp_path, jwks_url, environment="development")
    try:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text  # local tokens still sign people in
        assert ready.json()["issuers"] == {"sd-iam": False}
        logged = [r.getMessage() for r in caplog.records if r.name == "gateway.identity"]
        assert any("签名密钥未能读取" in line for line in logged), logged
    finally:
        await client.aclose()
        await runtime.close()

    runtime, client = await _readyz_gateway(tmp_path, jwks_url, environment="production")
    try:
        assert runtime.tokens.accepts_local is False
        refused = await client.get("/readyz")
        assert refused.status_code == 503, refused.text
        assert refused.json()["issuers"] == {"sd-iam": False}
        assert "身份平台的签名密钥均未加载" in refused.json()["reason"]
        with later:  # the platform comes up: /readyz itself retries its keys
            for _ in range(100):
                answer = await client.get("/readyz")
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert answer.status_code == 200, answer.text
            assert answer.json()["issuers"] == {"sd-iam": True}
    finally:
        await client.aclose()
        await runtime.close()


def test_local_tokens_may_not_name_a_service_account(tmp_path: Path) -> None:
    """``client:`` subjects are the client-credentials issuer's: minting one with the local key
    is refused, and a local token carrying one (however spelled) is refused on verification."""
    service = TokenService(LOCAL_KEY, "relief-gateway")
    for subject in ("client:medical-insurance-5f0c2a9e41d7", "CLIENT:x", " ｃｌｉｅｎｔ:x"):
        with pytest.raises(BadUserInput, match="client:"):
            service.mint(subject=subject, dept="health", level="city", region="3701")
    now = int(clock.now_utc().timestamp())
    for subject in ("client:medical-insurance-5f0c2a9e41d7", "Client:X", "ｃｌｉｅｎｔ:x"):
        forged = jwt.encode(
            {
                "iss": "relief-gateway",
                "sub": subject,
                "dept": "health",
                "level": "city",
                "region": "3701",
                "iat": now,
                "exp": now + 600,
            },
            LOCAL_KEY,
            algorithm="HS256",
        )
        with pytest.raises(Unauthenticated, match="保留给服务账号"):
            asyncio.run(service.verify(forged))
    # A subject merely containing the word is a person's.
    token = service.mint(subject="clientele.a", dept="health", level="city", region="3701")
    assert asyncio.run(service.verify(token)).subject == "clientele.a"


def test_the_deprecated_role_name_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.runtime import issuers

    issuers._warned_aliases.clear()
    caplog.set_level("WARNING", logger="gateway.identity")
    service = TokenService(LOCAL_KEY, "relief-gateway")
    for subject in ("officer.a", "officer.b"):
        token = service.mint(
            subject=subject,
            dept="health",
            level="province",
            region="37",
            roles=["security_officer"],
        )
        assert asyncio.run(service.verify(token)).roles == frozenset({"security_admin"})
    warnings = [r.getMessage() for r in caplog.records if "已弃用" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "security_officer" in warnings[0]
    assert "security_admin" in warnings[0]
    # A platform's mapped role is warned about through the same once-per-process flag.
    issuers._warned_aliases.clear()
    mapping = ClaimMapping()
    claims = {"dept": "health", "level": "province", "region": "37", "roles": ["security_officer"]}
    mapping.principal("p|a", claims)
    mapping.principal("p|b", claims)
    warnings = [r.getMessage() for r in caplog.records if "已弃用" in r.getMessage()]
    assert len(warnings) == 2, warnings
