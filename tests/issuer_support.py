"""A real OpenID Connect issuer on loopback, standing in for the province's identity platform
(统一身份认证) in tests: its own keys (RSA 2048 and EC P-256, generated at start), a discovery
document, a JWK Set, key rollover, and the browser sign-in (authorization code + PKCE S256).

    with TestIssuer(cors_origin="http://127.0.0.1:8000",
                    redirect_uris={"http://127.0.0.1:8000/console/"}) as platform:
        platform.url                        # http://127.0.0.1:<port>, the issuer (iss)
        platform.discovery_url              # …/.well-known/openid-configuration
        platform.jwks_url                   # …/jwks
        token = platform.mint({"sub": "u-1", "dept": "health", …}, alg="ES256")
        platform.rotate("RS256")            # publish a new key; returns its kid
        TestIssuer(sm2=True)                # also an SM2 key (alg "SM2"), signing with gmssl
        platform.retire(kid)                # stop publishing a key (tokens it signed now fail)
        platform.jwks_requests              # how often the JWKS was fetched (refresh rate limit)
        platform.jwks_delay = 2.0           # a slow platform (fetch timeouts)
        platform.users["clerk.a"] = {"dept": "civil_affairs", "level": "county", …}

Browser sign-in, as the console / workbench would do it (any ``client_id``; the access token's
``aud`` is the issuer's ``audience``, the gateway's, and the ID token's is the ``client_id``):

    GET  /authorize?response_type=code&client_id=relief-console&redirect_uri=R&state=S
         &code_challenge=BASE64URL(SHA256(verifier))&code_challenge_method=S256[&nonce=N]
         → a minimal HTML login form (one field: username, one of ``platform.users``)
    POST /authorize (the form)  → 302 to R?code=C&state=S  (unknown user: 200 with an error)
    POST /token  grant_type=authorization_code&code=C&redirect_uri=R&client_id=…
         &code_verifier=verifier
         → {"access_token", "id_token", "token_type": "Bearer", "expires_in"}; a code is good
           once, for 60 s, only with its verifier and redirect URI (400 invalid_grant otherwise)

A gateway trusting it (``docs/identity.md``; ``Issuer.sign_in()`` then gives a page the
endpoints and client id once discovery has been read at ``Runtime.start``):

    settings = load_settings(..., oidc_issuer=platform.url, oidc_name="sd-iam",
                             oidc_discovery_url=platform.discovery_url,
                             oidc_audience=platform.audience, oidc_client_id="relief-console")

With ``redirect_uris`` given, ``/authorize`` refuses any other redirect URI (400), as a real
platform does. Token times come from ``gateway.domain.clock.now_utc`` (``clock.travel`` moves
them).

``/token``, the discovery document and the JWKS answer CORS requests from ``cors_origin`` (the
gateway's pages call them from the browser). The server runs uvicorn in a thread with its own
event loop; ``close()`` (or leaving the ``with``) stops it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.domain.clock import now_utc

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "clerk.a": {"dept": "civil_affairs", "level": "county", "region": "370102", "roles": []},
    "officer.b": {
        "dept": "medical_insurance",
        "level": "province",
        "region": "37",
        "roles": ["security_admin"],
    },
}


@dataclass
class SigningKey:
    kid: str
    alg: str  # RS256 or ES256
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def sign_compact(self, header: dict[str, Any], claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self.private, algorithm=self.alg, headers=header)

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        text = (
            jwt.algorithms.RSAAlgorithm.to_jwk(public)
            if isinstance(public, rsa.RSAPublicKey)
            else jwt.algorithms.ECAlgorithm.to_jwk(public)
        )
        jwk: dict[str, Any] = json.loads(text)
        jwk.update(kid=self.kid, use="sig", alg=self.alg)
        return jwk


@dataclass
class Sm2SigningKey:
    """An SM2 key signing with gmssl: an implementation independent of the gateway's (pysmx),
    so a token it signs and the gateway accepts shows the two agree (Z value with the default
    signer ID 1234567812345678, e = SM3(Z ‖ M), r ‖ s)."""

    kid: str
    alg: str  # "SM2" or "SM3withSM2", as the platform names it
    private_hex: str
    public_hex: str  # x ‖ y, 128 hex digits

    @classmethod
    def generate(cls, kid: str, alg: str = "SM2") -> Sm2SigningKey:
        from gmssl import sm2  # type: ignore[import-untyped]

        order = int(sm2.default_ecc_table["n"], 16)
        while True:
            private = f"{secrets.randbelow(order - 1) + 1:064x}"
            public = sm2.CryptSM2(private_key=private, public_key="")._kg(
                int(private, 16), sm2.default_ecc_table["g"]
            )
            # gmssl strips a leading "04" with str.lstrip, eating the x coordinate's own leading
            # 0s and 4s: keep to keys it reads correctly.
            if public[0] not in "04":
                return cls(kid, alg, private, public)

    def sign(self, signing_input: bytes) -> bytes:
        from gmssl import sm2

        signer = sm2.CryptSM2(private_key=self.private_hex, public_key=self.public_hex)
        order = int(sm2.default_ecc_table["n"], 16)
        while True:  # gmssl draws its nonce from random.choice unless given one: give a CSPRNG's
            signature = signer.sign_with_sm3(
                signing_input, f"{secrets.randbelow(order - 1) + 1:064x}"
            )
            if signature is not None:
                return bytes.fromhex(signature)

    def sign_compact(self, header: dict[str, Any], claims: Mapping[str, Any]) -> str:
        signing_input = f"{_b64url(json.dumps({'alg': self.alg, 'typ': 'JWT', **header}))}." + (
            _b64url(json.dumps(dict(claims)))
        )
        return f"{signing_input}.{_b64url(self.sign(signing_input.encode()))}"

    def public_jwk(self) -> dict[str, Any]:
        x, y = bytes.fromhex(self.public_hex[:64]), bytes.fromhex(self.public_hex[64:])
        return {
            "kty": "EC",
            "crv": "SM2",
            "x": _b64url(x),
            "y": _b64url(y),
            "kid": self.kid,
            "use": "sig",
            "alg": self.alg,
        }


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


AnyKey = SigningKey | Sm2SigningKey


def new_key(alg: str, kid: str | None = None) -> AnyKey:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg in ("SM2", "SM3withSM2"):
        return Sm2SigningKey.generate(kid or f"sm2-{secrets.token_hex(4)}", alg)
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(alg)
    return SigningKey(kid or f"{alg.lower()}-{secrets.token_hex(4)}", alg, private)


@dataclass
class _Grant:
    username: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    expires: float


class TestIssuer:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        audience: str = "relief-gateway",
        cors_origin: str | None = None,
        users: Mapping[str, dict[str, Any]] | None = None,
        issuer_override: str | None = None,
        redirect_uris: set[str] | None = None,
        sm2: bool = False,
    ) -> None:
        self.audience = audience
        self.cors_origin = cors_origin
        self.users: dict[str, dict[str, Any]] = dict(users or DEFAULT_USERS)
        self.keys: dict[str, AnyKey] = {}
        for alg in ("RS256", "ES256", "SM2") if sm2 else ("RS256", "ES256"):
            key = new_key(alg)
            self.keys[key.kid] = key
        self.jwks_requests = 0
        self.jwks_delay = 0.0  # seconds the JWKS endpoint waits before answering (slow platform)
        self.discovery_requests = 0
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        # A discovery document naming another issuer (OIDC Discovery §4.3 test).
        self.issuer_override = issuer_override
        # Registered redirect URIs (None: any, for convenience); a real platform checks them.
        self.redirect_uris = redirect_uris
        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    # ------------------------------------------------------------------ life cycle
    def start(self) -> TestIssuer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test issuer did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> TestIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    # ------------------------------------------------------------------ keys and tokens
    def key(self, alg: str) -> AnyKey:
        """The newest published key for ``alg``."""
        return [k for k in self.keys.values() if k.alg == alg][-1]

    def rotate(self, alg: str = "RS256") -> str:
        key = new_key(alg)
        with self._lock:
            self.keys[key.kid] = key
        return key.kid

    def retire(self, kid: str) -> None:
        with self._lock:
            del self.keys[kid]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self.keys.values()]}

    def claims(self, sub: str) -> dict[str, Any]:
        now = int(now_utc().timestamp())
        return {"iss": self.url, "aud": self.audience, "sub": sub, "iat": now, "exp": now + 600}

    def mint(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str = "RS256",
        key: AnyKey | None = None,
        kid: str | None = None,
        defaults: bool = True,
    ) -> str:
        """A token signed with the platform's newest ``alg`` key (or ``key``); ``claims`` over
        the defaults (iss, aud, iat, exp = +600 s) unless ``defaults`` is False."""
        signer = key or self.key(alg)
        body = {**self.claims(str(claims.get("sub", "u-1"))), **claims} if defaults else claims
        return signer.sign_compact({"kid": kid if kid is not None else signer.kid}, body)

    def user_token(self, username: str, *, audience: str | None = None) -> str:
        return self.mint(
            {"sub": username, "aud": audience or self.audience, **self.users[username]}
        )

    # ------------------------------------------------------------------ HTTP
    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/.well-known/openid-configuration", self._discovery, methods=["GET", "OPTIONS"]
                ),
                Route("/jwks", self._jwks, methods=["GET", "OPTIONS"]),
                Route("/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/token", self._token, methods=["POST", "OPTIONS"]),
            ]
        )

    def _cors(self, request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin == self.cors_origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Vary"] = "Origin"
        return response

    async def _discovery(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._cors(request, Response(status_code=204))
        self.discovery_requests += 1
        document = {
            "issuer": self.issuer_override or self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }
        return self._cors(request, JSONResponse(document))

    async def _jwks(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._cors(request, Response(status_code=204))
        with self._lock:
            self.jwks_requests += 1
        if self.jwks_delay:
            await asyncio.sleep(self.jwks_delay)
        return self._cors(request, JSONResponse(self.jwks()))

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(await _form(request))
        required = ("client_id", "redirect_uri", "state", "code_challenge")
        if params.get("response_type") != "code" or any(not params.get(k) for k in required):
            return HTMLResponse(
                "<p>缺少参数 (response_type=code, client_id, redirect_uri, "
                "state, code_challenge)</p>",
                status_code=400,
            )
        if self.redirect_uris is not None and params["redirect_uri"] not in self.redirect_uris:
            return HTMLResponse("<p>redirect_uri 未登记</p>", status_code=400)
        if params.get("code_challenge_method") != "S256":
            return HTMLResponse("<p>只支持 code_challenge_method=S256</p>", status_code=400)
        username = params.get("username", "")
        if request.method == "POST" and username in self.users:
            code = secrets.token_urlsafe(24)
            self._grants[code] = _Grant(
                username=username,
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                expires=time.monotonic() + 60,
            )
            query = urlencode({"code": code, "state": params["state"]})
            return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)
        error = "<p class=error>未知用户</p>" if request.method == "POST" else ""
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k != "username"
        )
        page = (
            '<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
            "<title>统一身份认证 (测试)</title>"
            f'<form method="post">{error}{hidden}<label>用户名 <input name="username" autofocus>'
            '</label><button type="submit">登录</button></form></html>'
        )
        return HTMLResponse(page)

    async def _token(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._cors(request, Response(status_code=204))
        form = await _form(request)

        def refuse(error: str) -> Response:
            return self._cors(request, JSONResponse({"error": error}, status_code=400))

        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        grant = self._grants.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or grant.expires < time.monotonic():
            return refuse("invalid_grant")
        if (
            form.get("redirect_uri") != grant.redirect_uri
            or form.get("client_id") != grant.client_id
        ):
            return refuse("invalid_grant")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not secrets.compare_digest(challenge.rstrip(b"=").decode(), grant.challenge):
            return refuse("invalid_grant")  # RFC 7636 §4.6
        access = self.user_token(grant.username)
        identity: dict[str, Any] = {"sub": grant.username, "aud": grant.client_id}
        if grant.nonce:
            identity["nonce"] = grant.nonce
        body = {
            "access_token": access,
            "id_token": self.mint(identity, alg="ES256"),
            "token_type": "Bearer",
            "expires_in": 600,
        }
        return self._cors(request, JSONResponse(body, headers={"Cache-Control": "no-store"}))


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (python-multipart is not a dependency)."""
    return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
