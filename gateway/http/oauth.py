"""``POST /oauth/token``: OAuth2 client credentials for department systems (RFC 6749 §4.4), and
``GET /oauth/jwks``: the public key that signs the tokens (RFC 7517), so others can verify them.

    POST /oauth/token
    Authorization: Basic base64(client_id:client_secret)      (client_secret_basic), or
    client_id=…&client_secret=… in the body                   (client_secret_post), or
    client_id=… and a client certificate verified by the proxy (tls_client_auth, RFC 8705)
    Content-Type: application/x-www-form-urlencoded

    grant_type=client_credentials&scope=enrollment_verification%20supervision

    200 {"access_token": "…", "token_type": "Bearer", "expires_in": 600,
         "scope": "enrollment_verification supervision"}          Cache-Control: no-store

``scope`` is a space-separated subset of the purposes the client was registered for (all of
them when omitted); the token carries them and a request declaring another X-Purpose is refused
(``gateway.runtime.client_tokens.purpose_refusal``). Errors follow RFC 6749 §5.2, with the
``error_description`` in Chinese:

    invalid_request         400  a parameter missing, repeated or malformed; two ways of client
                                 authentication at once; the secret in the URL
    invalid_client          401  unknown client, wrong secret or certificate, disabled client:
                                 one answer for all (with WWW-Authenticate); 429 with
                                 Retry-After after RELIEF_CLIENT_AUTH_FAILURES failures a minute
    unsupported_grant_type  400  any grant but client_credentials
    invalid_scope           400  a purpose the client is not registered for, or unknown
    temporarily_unavailable 503  no signing key yet; the database unreachable (Retry-After)

(``invalid_grant`` has no occasion here: the client-credentials grant carries no grant of its
own to be invalid.)

Client certificates: mutual TLS ends at the province's proxy, which passes the verified
certificate (URL-escaped PEM, as nginx's ``$ssl_client_escaped_cert``) or its SHA-256
fingerprint in the header named by RELIEF_CLIENT_CERT_HEADER. The header is believed only from
the proxies in RELIEF_CLIENT_CERT_PROXIES: anyone else could send it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import re
import weakref
from urllib.parse import parse_qsl, unquote, unquote_plus

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.crypto import certificate_sha256
from gateway.domain.errors import BadUserInput
from gateway.domain.settings import Settings
from gateway.runtime.parts import Runtime
from gateway.storage.clients import RegisteredClient, authenticate, normalize_fingerprint

log = logging.getLogger("gateway.clients")

GRANT_TYPE = "client_credentials"
FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 8192  # a token request is a few hundred bytes
# scrypt costs 32 MiB per check: at most this many at once per process.
CONCURRENT_CHECKS = 4
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="relief-gateway", charset="UTF-8"'}
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)

AUTH_FAILED = "客户端认证失败: 客户端标识或密钥 (证书) 不正确, 或该服务账号已停用"


class OAuthError(Exception):
    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={**NO_STORE, **self.headers},
        )


def _invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


def oauth_routes() -> list[BaseRoute]:
    return [
        Route("/oauth/token", token_endpoint, methods=["POST"]),
        Route("/oauth/jwks", jwks_endpoint, methods=["GET"]),
    ]


async def jwks_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    clients = runtime.clients
    keys = clients.key.jwks() if clients is not None and clients.key is not None else {"keys": []}
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})


async def token_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        return await _token(runtime, request)
    except OAuthError as error:
        return error.response()


async def _token(runtime: Runtime, request: Request) -> Response:
    clients = runtime.clients
    if clients is None or clients.issuer is None:
        raise OAuthError(
            503,
            "temporarily_unavailable",
            "本网关主机缺少服务账号签名密钥 client-token-key.pem: 请系统管理员从已有该文件的"
            "网关主机复制到本机数据目录 (权限 600); 仅当所有主机都还没有时, 在第一台主机上执行 "
            "relief-gateway clients add 生成 (在其他主机上再执行会生成不同的密钥)",
        )
    if "client_secret" in request.query_params:
        # RFC 6749 §2.3.1: never in the URL, which proxies and access logs keep.
        raise _invalid_request("client_secret 不得放在地址中, 请放在请求体或 Authorization 头中")
    params = await _form(request)
    grant_type = params.get("grant_type")
    if grant_type is None:
        raise _invalid_request("缺少参数 grant_type (应为 client_credentials)")
    if grant_type != GRANT_TYPE:
        raise OAuthError(
            400,
            "unsupported_grant_type",
            f"不支持的授权类型 {grant_type[:40]!r}; 仅支持 client_credentials",
        )
    client_id, secret, fingerprint = _credentials(runtime.settings, request, params)
    wait = clients.failures.retry_after(client_id)
    if wait:
        raise OAuthError(
            429,
            "invalid_client",
            f"该客户端认证失败次数过多, 请 {wait} 秒后再试",
            {"Retry-After": str(wait)},
        )
    try:
        client = await _authenticate(runtime, client_id, secret, fingerprint)
    except (SQLAlchemyError, OSError) as exc:
        # The log names the kind of failure only: the exception's text carries SQL.
        log.warning("token endpoint: database unavailable (%s)", type(exc).__name__)
        raise OAuthError(
            503, "temporarily_unavailable", "数据库暂时不可用, 请稍后重试", {"Retry-After": "5"}
        ) from None
    if client is None:
        clients.failures.failed(client_id)
        log.warning("client authentication failed: %s", _loggable(client_id))
        raise OAuthError(401, "invalid_client", AUTH_FAILED, CHALLENGE)
    clients.failures.succeeded(client_id)
    purposes = _scope(params.get("scope"), client.purposes, runtime.purposes)
    issued = clients.issuer.mint(client, purposes)
    log.info("client token issued: %s scope=%s", client.client_id, " ".join(issued.purposes))
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.purposes),
        },
        headers=NO_STORE,
    )


async def _form(request: Request) -> dict[str, str]:
    """The form parameters; RFC 6749 §3.2: a parameter sent without a value is as one not sent,
    and none may be sent twice."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != FORM:
        raise _invalid_request(f"请求体应为 {FORM} 表单")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise _invalid_request(f"请求体过大 (最多 {MAX_BODY_BYTES} 字节)")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise _invalid_request("请求体不是 UTF-8 编码的表单") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise _invalid_request(f"参数 {name} 重复出现")
        if value:
            params[name] = value
    return params


def _credentials(
    settings: Settings, request: Request, params: dict[str, str]
) -> tuple[str, str | None, str | None]:
    """(client id, secret, certificate fingerprint) from exactly one way of authentication."""
    header = request.headers.get("authorization")
    form_id, form_secret = params.get("client_id"), params.get("client_secret")
    fingerprint = _certificate(settings, request)
    if header is not None:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(401, "invalid_client", "Authorization 头应使用 Basic 方式", CHALLENGE)
        if form_secret is not None:
            raise _invalid_request("不得同时在 Authorization 头和请求体中提供客户端密钥")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", AUTH_FAILED, CHALLENGE) from None
        raw_id, colon, raw_secret = decoded.partition(":")
        if not colon:
            raise OAuthError(401, "invalid_client", AUTH_FAILED, CHALLENGE)
        # RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if form_id is not None and form_id != client_id:
            raise _invalid_request("请求体中的 client_id 与 Authorization 头中的不一致")
        return client_id, secret, None
    if form_id is None:
        raise OAuthError(
            401, "invalid_client", "缺少客户端认证 (Basic 或 client_id/client_secret)", CHALLENGE
        )
    if form_secret is not None:
        return form_id, form_secret, None
    if fingerprint is not None:
        return form_id, None, fingerprint
    raise OAuthError(401, "invalid_client", "缺少客户端密钥或经代理验证的客户端证书", CHALLENGE)


def _certificate(settings: Settings, request: Request) -> str | None:
    """The SHA-256 fingerprint of the client certificate the trusted proxy verified; None when
    certificates are not configured, the header is absent or the sender is not the proxy."""
    name = settings.client_cert_header.strip()
    value = request.headers.get(name, "").strip() if name else ""
    if not value or not _from_proxy(settings, request):
        return None
    if "BEGIN CERTIFICATE" in value or value.startswith("-----") or "%" in value:
        try:
            return certificate_sha256(unquote(value).encode())
        except ValueError:
            raise _invalid_request("代理传来的客户端证书无法解析") from None
    try:
        return normalize_fingerprint(value)
    except BadUserInput:
        raise _invalid_request("代理传来的客户端证书指纹格式不正确") from None


def _from_proxy(settings: Settings, request: Request) -> bool:
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    for item in settings.client_cert_proxies.split(","):
        item = item.strip()
        if item and address in ipaddress.ip_network(item, strict=False):
            return True
    return False


async def _authenticate(
    runtime: Runtime, client_id: str, secret: str | None, fingerprint: str | None
) -> RegisteredClient | None:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.setdefault(loop, asyncio.Semaphore(CONCURRENT_CHECKS))
    async with slots, runtime.sessions() as session:
        client = await authenticate(session, client_id, secret=secret, cert_sha256=fingerprint)
        await session.commit()  # a hash re-stored at a raised cost
    return client


def _scope(requested: str | None, registered: tuple[str, ...], labels: dict[str, str]) -> list[str]:
    if requested is None:
        return list(registered)
    wanted = requested.split(" ")
    if any(not purpose for purpose in wanted):
        raise OAuthError(400, "invalid_scope", "scope 应为以单个空格分隔的用途代码")
    outside = [purpose for purpose in wanted if purpose not in registered]
    if outside:
        named = "、".join(f"{labels.get(p, p)} ({p})" if p in labels else repr(p) for p in outside)
        raise OAuthError(
            400,
            "invalid_scope",
            f"申请的用途 {named} 不在该服务账号登记的用途 ({' '.join(registered)}) 之内",
        )
    return wanted


def _loggable(client_id: str) -> str:
    """A client id for the log; anything else (a secret pasted in the wrong field) is not."""
    return client_id if _CLIENT_ID.fullmatch(client_id) else "<格式不符的客户端标识>"
