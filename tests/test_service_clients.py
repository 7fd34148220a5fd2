"""Service accounts (issue 16 item 2): a department system registered with ``relief-gateway
clients add`` obtains short-lived tokens by OAuth2 client credentials (RFC 6749 §4.4) at
``POST /oauth/token``, uses them like any caller within the purposes it was registered for,
and stops working within seconds on every process once disabled.

* the CLI as an operator runs it (subprocesses): the secret shown once and stored only as a
  scrypt hash, the table in Chinese, administrator roles and role pairs refused;
* the token endpoint on both databases: Basic and form authentication, one answer for an
  unknown client, a wrong secret and a disabled client, scopes, the RFC 6749 §5.2 errors, the
  brute-force lock-out, the JWKS verifying the token in a second implementation;
* the verifier refusing forged tokens (``alg: none``, HS256 with the public key, another key,
  another issuer, missing claims) and expired ones;
* the purposes enforced on ``/graphql`` and the upload endpoint;
* revocation across two real ``serve`` processes on one PostgreSQL, with the poll set to an
  hour so only NOTIFY explains it, disabled from a third process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sqlite3
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto import SigningKey
from gateway.domain.clock import now_utc
from gateway.domain.errors import Unauthenticated
from gateway.runtime.client_tokens import (
    ClientCredentials,
    ClientTokenIssuer,
    ClientTokenKey,
    ClientTokenVerifier,
    DisabledClients,
)
from gateway.storage.clients import (
    add_client,
    authenticate,
    disable_client,
    hash_secret,
    needs_rehash,
    verify_secret,
)
from tests.harness import Harness
from tests.pgcluster import ThrowawayCluster
from tests.test_policy_reload import Gateway, _free_port, _ready, _stop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
COUNTY = "medical_insurance", "county"
ME = "{ me { subject department level region purpose } }"
PERSONS = "{ persons(first: 1) { edges { node { regionCode } } } }"
PURPOSES = ("enrollment_verification", "supervision")


# ------------------------------------------------------------------------------- helpers
def _env(data_dir: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    if url is not None:
        env["RELIEF_DATABASE_URL"] = url
    return env


def _cli(
    data_dir: Path, *args: str, url: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=_env(data_dir, url, **extra),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _refused_cleanly(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"[\u4e00-\u9fff]", done.stderr), done.stderr
    return done.stderr


async def _register(
    harness: Harness,
    *,
    purposes: tuple[str, ...] = PURPOSES,
    region: str | None = None,
) -> tuple[str, str]:
    async with harness.runtime.sessions() as session:
        created = await add_client(
            session,
            name="县医保结算系统",
            department=COUNTY[0],
            level=COUNTY[1],
            region=region or harness.busiest_county(),
            purposes=purposes,
            known_purposes=list(harness.runtime.purposes),
            created_by="test-operator",
        )
        await session.commit()
    assert created.secret is not None
    return created.client.client_id, created.secret


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}


async def _token_request(
    harness: Harness,
    form: dict[str, str] | str,
    *,
    headers: dict[str, str] | None = None,
    url: str = "/oauth/token",
) -> httpx.Response:
    sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    content = form if isinstance(form, str) else "&".join(f"{k}={v}" for k, v in form.items())
    return await harness.client.post(url, content=content, headers=sent)


async def _token(harness: Harness, client_id: str, secret: str, **form: str) -> dict[str, Any]:
    response = await _token_request(
        harness, {"grant_type": "client_credentials", **form}, headers=_basic(client_id, secret)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _credentials(harness: Harness) -> ClientCredentials:
    assert harness.runtime.clients is not None
    return harness.runtime.clients


# ------------------------------------------------------------------------------- the CLI
def test_clients_add_list_disable_as_an_operator_runs_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert _cli(data_dir, "migrate").returncode == 0
    # A gateway with its keys (the administrators' trail is MAC'd with the keyring's audit key).
    assert _cli(data_dir, "seed", "--persons", "3").returncode == 0
    added = _cli(
        data_dir,
        "clients",
        "add",
        "--dept",
        "medical_insurance",
        "--level",
        "county",
        "--region",
        "370102",
        "--name",
        "历下区医保结算系统",
        "--purpose",
        "enrollment_verification",
        "--purpose",
        "supervision",
        "--operator",
        "Sys.Admin",
    )
    assert added.returncode == 0, added.stderr
    client_id = re.search(r"client_id:\s+(\S+)", added.stdout)
    secret = re.search(r"client_secret:\s+(\S+)", added.stdout)
    assert client_id is not None, added.stdout
    assert secret is not None, added.stdout
    client_id_text, secret_text = client_id.group(1), secret.group(1)
    assert client_id_text.startswith("medical-insurance-")
    assert len(secret_text) >= 43  # 256 random bits
    assert "只显示这一次" in added.stdout

    # Stored only as a slow hash: not in any column, not anywhere in the database file.
    database = data_dir / "relief.db"
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT * FROM service_client").fetchall()
        (stored,) = connection.execute("SELECT secret_hash FROM service_client").fetchone()
    assert len(rows) == 1
    assert all(secret_text not in str(value) for value in rows[0])
    assert stored.startswith("scrypt$ln=15,r=8,p=1$")
    assert verify_secret(secret_text, stored)
    assert secret_text.encode() not in database.read_bytes()

    listed = _cli(data_dir, "clients", "list")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0]
    for column in ("客户端标识", "名称", "部门", "用途", "状态"):
        assert column in header
    assert client_id_text in listed.stdout
    assert "启用" in listed.stdout
    assert secret_text not in listed.stdout
    as_json = json.loads(_cli(data_dir, "clients", "list", "--json").stdout)
    assert as_json[0]["client_id"] == client_id_text
    assert as_json[0]["purposes"] == ["enrollment_verification", "supervision"]
    assert as_json[0]["created_by"] == "sys.admin"  # the operator in canonical form
    assert secret_text not in json.dumps(as_json)

    disabled = _cli(data_dir, "clients", "disable", client_id_text)
    assert disabled.returncode == 0, disabled.stderr
    assert "已停用" in disabled.stdout
    again = _cli(data_dir, "clients", "disable", client_id_text)
    assert again.returncode == 0
    assert "早已停用" in again.stdout
    as_json = json.loads(_cli(data_dir, "clients", "list", "--json").stdout)
    assert as_json[0]["disabled_at"] is not None
    assert "没有服务账号" in _refused_cleanly(_cli(data_dir, "clients", "disable", "nobody-1"))

    # The gateway's signing key: made by `clients add`, owner-only, never the HS256 key.
    key_file = data_dir / "client-token-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", f"deploy/{key_file.name}"],
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0, "client-token-key.pem must be ignored by git"
    # The registration and the disable are in the administrators' trail.
    with sqlite3.connect(database) as connection:
        operations = [
            row[0] for row in connection.execute("SELECT operation FROM audit_log ORDER BY id")
        ]
    assert "relief-gateway clients add" in operations
    assert "relief-gateway clients disable" in operations


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--role", "system_admin"], "不得持有管理员角色"),
        (["--role", "security_officer"], "不得持有管理员角色"),
        (["--role", "security_admin", "--role", "audit_admin"], "三权分立"),
        (["--role", "superuser"], "未知角色"),
        (["--purpose", "marketing"], "未知用途"),
        (["--region", "999999"], "不存在"),
        (["--level", "city"], "4 位数字"),
        (["--dept", "tax_bureau"], "未知部门"),
        (["--name", "   "], "名称不能为空"),
    ],
)
def test_clients_add_refuses_in_chinese(tmp_path: Path, extra: list[str], expected: str) -> None:
    data_dir = tmp_path / "data"
    assert _cli(data_dir, "migrate").returncode == 0
    base = {
        "--dept": "civil_affairs",
        "--level": "county",
        "--region": "370102",
        "--name": "民政系统",
        "--purpose": "relief_recognition",
    }
    pairs = list(zip(extra[::2], extra[1::2], strict=True))
    options = base | {option: value for option, value in pairs if option != "--role"}
    args = [part for pair in options.items() for part in pair]
    args += [part for pair in pairs if pair[0] == "--role" for part in pair]
    stderr = _refused_cleanly(_cli(data_dir, "clients", "add", *args))
    assert expected in stderr
    with sqlite3.connect(data_dir / "relief.db") as connection:
        assert connection.execute("SELECT count(*) FROM service_client").fetchone() == (0,)


# ------------------------------------------------------------------------------- secrets
def test_secret_hash_records_its_parameters_and_is_salted() -> None:
    first, second = hash_secret("s3cret"), hash_secret("s3cret")
    assert first != second  # salted
    assert verify_secret("s3cret", first)
    assert verify_secret("s3cret", second)
    assert not verify_secret("s3cret ", first)
    weaker = hash_secret("s3cret", log_n=12)
    assert weaker.startswith("scrypt$ln=12,")
    assert verify_secret("s3cret", weaker)
    assert needs_rehash(weaker)
    assert not needs_rehash(first)
    assert not verify_secret("s3cret", "scrypt$ln=40,r=8,p=1$AAAA$AAAA")  # no runaway cost
    assert not verify_secret("s3cret", "plain:s3cret")


@settings(max_examples=25, deadline=None)
@given(secret=st.text(max_size=64), other=st.text(max_size=64))
def test_a_hash_accepts_its_secret_and_nothing_else(secret: str, other: str) -> None:
    stored = hash_secret(secret, log_n=10)  # the format at a cost a property can afford
    assert verify_secret(secret, stored)
    assert verify_secret(other, stored) == (other == secret)


async def test_unknown_client_and_wrong_secret_cost_alike(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    timings: dict[str, list[float]] = {"unknown": [], "wrong": [], "disabled": []}
    async with harness.runtime.sessions() as session:
        disabled_id, disabled_secret = await _register(harness)
        await disable_client(session, disabled_id, disabled_by="test")
        await session.commit()
    for _ in range(5):
        for kind, (cid, sec) in {
            "unknown": (f"medical-insurance-{uuid.uuid4().hex[:12]}", secret),
            "wrong": (client_id, secret[::-1]),
            "disabled": (disabled_id, disabled_secret),
        }.items():
            async with harness.runtime.sessions() as session:
                started = time.perf_counter()
                assert await authenticate(session, cid, secret=sec) is None
                timings[kind].append(time.perf_counter() - started)
    medians = {kind: statistics.median(values) for kind, values in timings.items()}
    # Each runs one scrypt (about 0.1 s); a short cut for unknown ids would be 1000x faster.
    assert max(medians.values()) < 3 * min(medians.values()), medians


# ------------------------------------------------------------------------------- tokens
async def test_a_token_by_basic_and_by_form_authentication(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    response = await _token_request(
        harness, {"grant_type": "client_credentials"}, headers=_basic(client_id, secret)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == harness.runtime.settings.client_token_ttl_seconds == 600
    assert body["scope"] == "enrollment_verification supervision"

    by_form = await _token_request(
        harness,
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert by_form.status_code == 200, by_form.text

    # Verified with the published key alone, by PyJWT's own JWK reader (not our verifier).
    jwks = (await harness.client.get("/oauth/jwks")).json()
    (published,) = jwks["keys"]
    assert published["kty"] == "EC"
    assert published["alg"] == "ES256"
    assert "d" not in published
    for token in (body["access_token"], by_form.json()["access_token"]):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256"
        assert header["kid"] == published["kid"]
        claims = jwt.decode(
            token,
            jwt.PyJWK(published).key,
            algorithms=["ES256"],
            issuer=f"{harness.runtime.settings.token_issuer}/clients",
        )
        assert claims["sub"] == f"client:{client_id}"
        assert claims["client_id"] == client_id
        assert (claims["dept"], claims["level"]) == COUNTY
        assert claims["purposes"] == list(PURPOSES)
        assert claims["exp"] - claims["iat"] == 600


async def test_the_client_token_works_on_graphql(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    token = (await _token(harness, client_id, secret))["access_token"]
    body = await harness.query(token, ME, purpose="supervision")
    me = body["data"]["me"]
    assert me["subject"] == f"client:{client_id}"
    assert me["region"] == harness.busiest_county()
    assert me["purpose"] == "supervision"


@pytest.mark.parametrize("kind", ["unknown", "wrong", "disabled", "empty", "garbage"])
async def test_one_answer_for_every_failed_authentication(harness: Harness, kind: str) -> None:
    client_id, secret = await _register(harness)
    if kind == "disabled":
        async with harness.runtime.sessions() as session:
            await disable_client(session, client_id, disabled_by="test")
            await session.commit()
    credentials = {
        "unknown": _basic(f"medical-insurance-{uuid.uuid4().hex[:12]}", secret),
        "wrong": _basic(client_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        "disabled": _basic(client_id, secret),
        "empty": _basic(client_id, ""),
        "garbage": {"Authorization": "Basic !!!not-base64"},
    }[kind]
    response = await _token_request(
        harness, {"grant_type": "client_credentials"}, headers=credentials
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "客户端认证失败: 客户端标识或密钥 (证书) 不正确, 或该服务账号已停用",
    }
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ("grant_type=password", 400, "unsupported_grant_type"),
        ("grant_type=authorization_code", 400, "unsupported_grant_type"),
        ("scope=supervision", 400, "invalid_request"),  # no grant_type
        ("grant_type=client_credentials&grant_type=client_credentials", 400, "invalid_request"),
        ("grant_type=client_credentials&scope=high_cost_monitoring", 400, "invalid_scope"),
        ("grant_type=client_credentials&scope=supervision%20marketing", 400, "invalid_scope"),
        ("grant_type=client_credentials&scope=supervision%20%20", 400, "invalid_scope"),
    ],
)
async def test_rfc_6749_errors(harness: Harness, form: str, status: int, error: str) -> None:
    client_id, secret = await _register(harness)
    response = await _token_request(harness, form, headers=_basic(client_id, secret))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert re.search(r"[\u4e00-\u9fff]", body["error_description"])
    assert secret not in response.text


async def test_malformed_token_requests(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    form = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    # Two ways of authentication at once.
    both = await _token_request(harness, form, headers=_basic(client_id, secret))
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
    # The secret in the URL (kept by proxies and access logs).
    in_url = await _token_request(
        harness, "grant_type=client_credentials", url=f"/oauth/token?client_secret={secret}"
    )
    assert (in_url.status_code, in_url.json()["error"]) == (400, "invalid_request")
    # Not a form.
    as_json = await harness.client.post(
        "/oauth/token",
        json={"grant_type": "client_credentials"},
        headers=_basic(client_id, secret),
    )
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    # No client authentication at all.
    anonymous = await _token_request(harness, "grant_type=client_credentials")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    # GET is not the token endpoint's method.
    assert (await harness.client.get("/oauth/token")).status_code == 405


async def test_scope_narrows_the_token_to_some_registered_purposes(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    body = await _token(harness, client_id, secret, scope="supervision")
    assert body["scope"] == "supervision"
    principal = await harness.runtime.tokens.verify(body["access_token"])
    assert principal.allowed_purposes == frozenset({"supervision"})
    refused = await harness.post(body["access_token"], ME, purpose="enrollment_verification")
    assert refused.status_code == 403, refused.text


async def test_brute_force_locks_the_client_id_out(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    unknown = f"medical-insurance-{uuid.uuid4().hex[:12]}"
    limit = harness.runtime.settings.client_auth_failures
    for target in (client_id, unknown):
        for _ in range(limit):
            failed = await _token_request(
                harness, "grant_type=client_credentials", headers=_basic(target, "guess")
            )
            assert failed.status_code == 401
        locked = await _token_request(
            harness, "grant_type=client_credentials", headers=_basic(target, secret)
        )
        assert locked.status_code == 429, locked.text  # even with the right secret, for now
        assert locked.json()["error"] == "invalid_client"
        assert 1 <= int(locked.headers["retry-after"]) <= 61
    # Other clients are not affected.
    other_id, other_secret = await _register(harness)
    assert (await _token(harness, other_id, other_secret))["token_type"] == "Bearer"


async def test_the_database_away_is_a_retryable_503(tmp_path: Path) -> None:
    from gateway.domain.settings import load_settings
    from gateway.http.app import create_app
    from gateway.runtime.parts import Runtime

    settings = load_settings(
        data_dir=tmp_path / "data", database_url="postgresql+asyncpg://u:p@127.0.0.1:9/none"
    )
    runtime = Runtime.create(settings, create_keys=True)
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            response = await client.post(
                "/oauth/token",
                content="grant_type=client_credentials",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    **_basic("civil-affairs-000000000000", "secret"),
                },
            )
    finally:
        await runtime.engine.dispose()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert "Retry-After" in response.headers
    assert "SELECT" not in response.text


# ------------------------------------------------------------------------------- certificates
def _certificate(common_name: str) -> bytes:
    """A self-signed client certificate (PEM): what the province's proxy has verified."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = now_utc()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


async def test_a_client_certificate_passed_by_the_trusted_proxy(harness: Harness) -> None:
    from urllib.parse import quote

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = _certificate("county-insurance-system")
    fingerprint = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())
    async with harness.runtime.sessions() as session:
        created = await add_client(
            session,
            name="证书认证的系统",
            department=COUNTY[0],
            level=COUNTY[1],
            region=harness.busiest_county(),
            purposes=["supervision"],
            known_purposes=list(harness.runtime.purposes),
            created_by="test",
            cert_sha256=":".join(f"{byte:02X}" for byte in fingerprint),
        )
        await session.commit()
    assert created.secret is None  # the certificate is its credential
    client_id = created.client.client_id
    form = f"grant_type=client_credentials&client_id={client_id}"
    escaped = {"X-SSL-Client-Cert": quote(pem.decode())}  # nginx $ssl_client_escaped_cert
    settings = harness.runtime.settings
    # Not configured: the header is ignored, and without a secret the client cannot sign in.
    assert (await _token_request(harness, form, headers=escaped)).status_code == 401
    settings.client_cert_header = "X-SSL-Client-Cert"
    try:
        # From a sender that is not the proxy: ignored (anyone could send the header).
        settings.client_cert_proxies = "10.9.0.0/16"
        assert (await _token_request(harness, form, headers=escaped)).status_code == 401
        settings.client_cert_proxies = "127.0.0.0/8"
        accepted = await _token_request(harness, form, headers=escaped)
        assert accepted.status_code == 200, accepted.text
        token = accepted.json()["access_token"]
        assert (await harness.post(token, ME, purpose="supervision")).status_code == 200
        # The fingerprint alone, as some proxies pass it.
        by_fingerprint = {"X-SSL-Client-Cert": fingerprint.hex()}
        assert (await _token_request(harness, form, headers=by_fingerprint)).status_code == 200
        # Another certificate, even one with the same name, is not this client's.
        other = {"X-SSL-Client-Cert": quote(_certificate("county-insurance-system").decode())}
        refused = await _token_request(harness, form, headers=other)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        garbage = await _token_request(harness, form, headers={"X-SSL-Client-Cert": "%2D%2D"})
        assert garbage.status_code == 400
    finally:
        settings.client_cert_header = ""
        settings.client_cert_proxies = ""


def test_clients_add_with_a_certificate_prints_no_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert _cli(data_dir, "migrate").returncode == 0
    assert _cli(data_dir, "seed", "--persons", "3").returncode == 0
    certificate = tmp_path / "client.pem"
    certificate.write_bytes(_certificate("system"))
    args = ["clients", "add", "--dept", "health", "--level", "province", "--region", "37"]
    added = _cli(
        data_dir, *args, "--name", "省卫健", "--purpose", "supervision", "--cert", str(certificate)
    )
    assert added.returncode == 0, added.stderr
    assert "client_secret" not in added.stdout
    assert "SHA-256 指纹" in added.stdout
    missing = _cli(
        data_dir, *args, "--name", "省卫健", "--purpose", "supervision", "--cert", "nope.pem"
    )
    assert "找不到证书文件" in _refused_cleanly(missing)
    listed = json.loads(_cli(data_dir, "clients", "list", "--json").stdout)
    assert len(listed) == 1
    assert re.fullmatch(r"[0-9a-f]{64}", listed[0]["cert_sha256"])


# ------------------------------------------------------------------------------- purposes
async def test_a_client_declares_only_its_registered_purposes(harness: Harness) -> None:
    client_id, secret = await _register(harness, purposes=("enrollment_verification",))
    token = (await _token(harness, client_id, secret))["access_token"]

    outside = await harness.post(token, ME, purpose="supervision")
    assert outside.status_code == 403, outside.text
    message = outside.json()["errors"][0]["message"]
    assert "服务账号登记的用途" in message
    assert "enrollment_verification" in message

    inside = await harness.post(token, PERSONS, purpose="enrollment_verification")
    assert inside.status_code == 200, inside.text
    assert "服务账号" not in inside.text

    # Reading people without a purpose would get every line valid for any purpose: refused.
    undeclared = await harness.post(token, PERSONS, purpose=None)
    assert undeclared.status_code == 403, undeclared.text
    assert "X-Purpose" in undeclared.json()["errors"][0]["message"]
    # `me` reads no one: served without a purpose.
    assert (await harness.post(token, ME, purpose=None)).status_code == 200

    # The upload endpoint too, before it reads the body.
    upload = await harness.client.post(
        "/ingest/upload?feed=enrollments",
        content=b"x",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Purpose": "supervision",
            "Content-Type": "application/octet-stream",
            "X-File-Name": "roster.csv",
        },
    )
    assert upload.status_code == 403, upload.text
    assert "服务账号登记的用途" in upload.text


async def test_a_purpose_outside_the_tokens_scope_but_registered_says_scope(
    harness: Harness,
) -> None:
    """A token obtained with ``scope`` carries fewer purposes than the client is registered
    for: declaring a registered purpose outside the scope says to obtain a token with that
    scope, not to register a new client; a purpose not registered keeps the registration
    message (naming the registered purposes, not the scope)."""
    client_id, secret = await _register(harness, purposes=PURPOSES)
    scoped = await _token(harness, client_id, secret, scope="enrollment_verification")
    assert scoped["scope"] == "enrollment_verification"
    token = scoped["access_token"]

    outside_scope = await harness.post(token, ME, purpose="supervision")
    assert outside_scope.status_code == 403, outside_scope.text
    message = outside_scope.json()["errors"][0]["message"]
    assert "本令牌获取时限定的用途 (scope) 为 enrollment_verification" in message
    assert "scope=supervision" in message
    assert "登记新的服务账号" not in message

    unregistered = await harness.post(token, ME, purpose="high_cost_monitoring")
    assert unregistered.status_code == 403, unregistered.text
    message = unregistered.json()["errors"][0]["message"]
    assert "服务账号登记的用途为 enrollment_verification、supervision" in message
    assert "登记新的服务账号" in message
    assert "scope=" not in message

    # The token with the whole registration serves the purpose the scoped one refused.
    whole = (await _token(harness, client_id, secret))["access_token"]
    assert (await harness.post(whole, ME, purpose="supervision")).status_code == 200
    # The upload endpoint says the same.
    upload = await harness.client.post(
        "/ingest/upload?feed=enrollments",
        content=b"x",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Purpose": "supervision",
            "Content-Type": "application/octet-stream",
            "X-File-Name": "roster.csv",
        },
    )
    assert upload.status_code == 403, upload.text
    assert "scope=supervision" in upload.text


async def test_a_host_without_the_signing_key_says_to_copy_it(harness: Harness) -> None:
    """What a production host without ``client-token-key.pem`` answers (its runtime holds no
    issuer): copy the key from a host that has it; ``clients add`` only on the first host."""
    clients = _credentials(harness)
    issuer, clients.issuer = clients.issuer, None
    try:
        response = await _token_request(harness, {"grant_type": "client_credentials"})
    finally:
        clients.issuer = issuer
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    description = body["error_description"]
    assert "client-token-key.pem" in description
    assert "复制" in description
    assert "第一台主机" in description
    assert "token.key" not in description


async def test_a_persons_token_is_not_limited_by_purposes(harness: Harness) -> None:
    token = harness.token(*COUNTY, harness.busiest_county())
    assert (await harness.post(token, ME, purpose="supervision")).status_code == 200


# ------------------------------------------------------------------------------- verifier
def _claims(issuer: str, **changes: Any) -> dict[str, Any]:
    now = int(now_utc().timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "client:medical-insurance-000000000001",
        "client_id": "medical-insurance-000000000001",
        "dept": "medical_insurance",
        "level": "county",
        "region": "370102",
        "purposes": ["supervision"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def verifier_parts(tmp_path: Path) -> tuple[ClientTokenKey, ClientTokenVerifier, DisabledClients]:
    key = ClientTokenKey.load(tmp_path / "k.pem", create=True)
    assert key is not None
    disabled = DisabledClients()
    disabled.replace(frozenset())
    return key, ClientTokenVerifier("gw/clients", key.public_key, disabled), disabled


def test_the_verifier_accepts_its_own_tokens_only(
    verifier_parts: tuple[ClientTokenKey, ClientTokenVerifier, DisabledClients],
) -> None:
    key, verifier, _ = verifier_parts
    good = jwt.encode(_claims("gw/clients"), key.private_key, algorithm="ES256")
    principal = verifier.verify(good)
    assert principal.subject == "client:medical-insurance-000000000001"
    assert principal.roles == frozenset()
    assert principal.allowed_purposes == frozenset({"supervision"})

    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(_claims("gw/clients")).encode()).rstrip(b"=")
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = {
        "alg none": f"{header}.{payload.decode()}.",
        "HS256 with the public key": _hs256(_claims("gw/clients"), public_pem),
        "another key": jwt.encode(_claims("gw/clients"), other_key, algorithm="ES256"),
        "another issuer": jwt.encode(_claims("relief-gateway"), key.private_key, algorithm="ES256"),
        "no purposes": jwt.encode(
            _claims("gw/clients", purposes=None), key.private_key, algorithm="ES256"
        ),
        "empty purposes": jwt.encode(
            _claims("gw/clients", purposes=[]), key.private_key, algorithm="ES256"
        ),
        "sub of another client": jwt.encode(
            _claims("gw/clients", sub="client:someone-else"), key.private_key, algorithm="ES256"
        ),
        "bad region": jwt.encode(
            _claims("gw/clients", region="37"), key.private_key, algorithm="ES256"
        ),
        "expired": jwt.encode(
            _claims("gw/clients", exp=int(now_utc().timestamp()) - 1),
            key.private_key,
            algorithm="ES256",
        ),
        "no exp": jwt.encode(_claims("gw/clients", exp=None), key.private_key, algorithm="ES256"),
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
    }
    for name, token in forged.items():
        with pytest.raises(Unauthenticated):
            verifier.verify(token)
        assert name  # the case's name, for the reader


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token keyed with the public key's PEM (PyJWT refuses to make one itself)."""
    import hashlib
    import hmac

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing = f"{part(header)}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(signature)}"


_FUZZ_KEY = ClientTokenKey(SigningKey.from_pem(SigningKey.generate_pem()))
_FUZZ_DISABLED = DisabledClients()
_FUZZ_DISABLED.replace(frozenset())
_FUZZ_VERIFIER = ClientTokenVerifier("gw/clients", _FUZZ_KEY.public_key, _FUZZ_DISABLED)
_JWT_PIECE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@settings(max_examples=300)
@given(
    token=st.one_of(
        st.text(max_size=400),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", _JWT_PIECE, _JWT_PIECE, _JWT_PIECE),
        st.builds(
            # signed with the right key, whatever the claims (PyJWT's encode would check them)
            lambda claims: jwt.PyJWS().encode(
                json.dumps(claims).encode(), _FUZZ_KEY.private_key, algorithm="ES256"
            ),
            st.dictionaries(
                st.sampled_from(
                    ["iss", "sub", "client_id", "dept", "level", "region", "purposes", "exp", "iat"]
                ),
                st.one_of(
                    st.none(), st.integers(), st.text(max_size=12), st.lists(st.text(max_size=8))
                ),
            ),
        ),
    )
)
def test_the_verifier_refuses_anything_else_with_unauthenticated(token: str) -> None:
    """Whatever arrives (garbage, JWT-shaped pieces, our own signature over wrong claims): a
    401, never another exception (a 500)."""
    with pytest.raises(Unauthenticated):
        _FUZZ_VERIFIER.verify(token)


def test_a_disabled_client_is_refused_at_once_when_announced(
    verifier_parts: tuple[ClientTokenKey, ClientTokenVerifier, DisabledClients],
) -> None:
    key, verifier, disabled = verifier_parts
    token = jwt.encode(_claims("gw/clients"), key.private_key, algorithm="ES256")
    assert verifier.verify(token).subject.startswith("client:")  # now cached
    disabled.announce("medical-insurance-000000000001")
    with pytest.raises(Unauthenticated, match="已停用"):
        verifier.verify(token)
    # A later read that has not seen the disable yet does not bring the client back.
    disabled.replace(frozenset())
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_revocation_state_unknown_fails_closed(tmp_path: Path) -> None:
    key = ClientTokenKey.load(tmp_path / "k.pem", create=True)
    assert key is not None
    verifier = ClientTokenVerifier("gw/clients", key.public_key, DisabledClients())
    token = jwt.encode(_claims("gw/clients"), key.private_key, algorithm="ES256")
    with pytest.raises(Unauthenticated, match="暂时无法确认"):
        verifier.verify(token)  # never read: no token is trusted


async def test_tokens_expire(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    credentials = _credentials(harness)
    assert credentials.issuer is not None
    short = ClientTokenIssuer(credentials.issuer.key, credentials.issuer.issuer, ttl_seconds=1)
    async with harness.runtime.sessions() as session:
        client = await authenticate(session, client_id, secret=secret)
    assert client is not None
    token = short.mint(client, ["supervision"]).access_token
    assert (await harness.post(token, ME, purpose="supervision")).status_code == 200
    await asyncio.sleep(1.1)
    expired = await harness.post(token, ME, purpose="supervision")
    assert expired.status_code == 401, expired.text
    assert "过期" in expired.json()["errors"][0]["message"]


async def test_disable_reaches_this_process_within_seconds(harness: Harness) -> None:
    client_id, secret = await _register(harness)
    token = (await _token(harness, client_id, secret))["access_token"]
    assert (await harness.post(token, ME, purpose="supervision")).status_code == 200
    # Disabled as another process would: in the database only (this process is not told).
    async with harness.runtime.sessions() as session:
        assert await disable_client(session, client_id, disabled_by="test")
        await session.commit()
    started = time.monotonic()
    while (await harness.post(token, ME, purpose="supervision")).status_code == 200:
        assert time.monotonic() - started < 5, "a disabled client still served after 5 s"
        await asyncio.sleep(0.1)
    refresh = harness.runtime.settings.client_revocation_refresh_seconds
    assert time.monotonic() - started <= refresh + 1.5
    again = await _token_request(
        harness, "grant_type=client_credentials", headers=_basic(client_id, secret)
    )
    assert again.status_code == 401


# ------------------------------------------------------------------------------- two processes
@pytest.fixture(scope="module")
def revocation_database(postgres_cluster: ThrowawayCluster) -> Iterator[str]:
    name = f"relief_clients_{uuid.uuid4().hex[:10]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


def _serve(name: str, data_dir: Path, url: str) -> Gateway:
    port = _free_port()
    log = data_dir.parent / f"serve-{name}.log"
    # Polls once an hour: only NOTIFY explains a refusal within seconds.
    env = _env(data_dir, url, RELIEF_CLIENT_REVOCATION_REFRESH_SECONDS="3600")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port)],
            env=env,
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Gateway(name, proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
async def two_gateways(
    revocation_database: str, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, Gateway, Path]]:
    data_dir = tmp_path / "data"
    assert _cli(data_dir, "migrate", url=revocation_database).returncode == 0
    assert _cli(data_dir, "seed", "--persons", "5", url=revocation_database).returncode == 0
    a, b = _serve("a", data_dir, revocation_database), _serve("b", data_dir, revocation_database)
    try:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(_ready(a, client), _ready(b, client))
        yield a, b, data_dir
    finally:
        _stop(a)
        _stop(b)


async def test_disable_in_a_third_process_stops_both_gateways(
    two_gateways: tuple[Gateway, Gateway, Path], revocation_database: str
) -> None:
    a, b, data_dir = two_gateways
    added = _cli(
        data_dir,
        "clients",
        "add",
        "--dept",
        "civil_affairs",
        "--level",
        "city",
        "--region",
        "3701",
        "--name",
        "济南市民政救助系统",
        "--purpose",
        "relief_recognition",
        url=revocation_database,
    )
    assert added.returncode == 0, added.stderr
    client_id = re.search(r"client_id:\s+(\S+)", added.stdout)
    secret = re.search(r"client_secret:\s+(\S+)", added.stdout)
    assert client_id is not None
    assert secret is not None
    async with httpx.AsyncClient(timeout=10) as http:
        issued = await http.post(
            f"{a.base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id.group(1), secret.group(1)),
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-Purpose": "relief_recognition"}

        async def status(gateway: Gateway) -> int:
            response = await http.post(
                f"{gateway.base}/graphql", json={"query": ME}, headers=headers
            )
            return response.status_code

        # Issued by A, honoured by B: one key in the shared data dir.
        assert [await status(a), await status(b)] == [200, 200]

        disabled = _cli(data_dir, "clients", "disable", client_id.group(1), url=revocation_database)
        assert disabled.returncode == 0, disabled.stderr
        started = time.monotonic()
        pending = {a.name: a, b.name: b}
        refused_after: dict[str, float] = {}
        while pending:
            for name, gateway in list(pending.items()):
                if await status(gateway) == 401:
                    refused_after[name] = time.monotonic() - started
                    del pending[name]
            assert time.monotonic() - started < 5, f"still served by {sorted(pending)}"
            await asyncio.sleep(0.05)
        print(f"refused after (s): {refused_after}")
        assert max(refused_after.values()) < 3, refused_after
        again = await http.post(
            f"{b.base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id.group(1), secret.group(1)),
        )
        assert again.status_code == 401
