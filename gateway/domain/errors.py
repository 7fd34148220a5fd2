"""Errors the gateway raises on purpose, each with the code a client sees.

    GatewayError                 code             seen as
    ├── Unauthenticated          UNAUTHENTICATED  HTTP 401
    ├── Forbidden                FORBIDDEN        error at the field's path
    ├── BadUserInput             BAD_USER_INPUT   error at the argument's field; HTTP 400
    │   ├── QueryTooComplex      QUERY_TOO_COMPLEX refused before execution (schema.limits)
    │   ├── PersistedQueryNotFound PERSISTED_QUERY_NOT_FOUND HTTP 400: unknown sha256Hash
    │   ├── PayloadTooLarge      BAD_USER_INPUT   HTTP 413: request body over RELIEF_MAX_BODY_BYTES
    │   ├── UnsupportedMediaType BAD_USER_INPUT   HTTP 415: POST body not application/json
    │   ├── NotAcceptable        BAD_USER_INPUT   HTTP 406: no JSON media type in Accept
    │   ├── UriTooLong           BAD_USER_INPUT   HTTP 414: request target over RELIEF_MAX_URL_BYTES
    │   ├── HeadersTooLarge      BAD_USER_INPUT   HTTP 431: header fields over the server's limit
    │   └── MethodNotAllowed     METHOD_NOT_ALLOWED HTTP 405 with Allow: a method the address does
    │                                             not serve; a mutation, or (production) any
    │                                             document text or variables, over GET
    ├── RateLimited              RATE_LIMITED     HTTP 429 with Retry-After (runtime.rate_limit)
    ├── PersistedQueryNotAllowed PERSISTED_QUERY_NOT_ALLOWED HTTP 403: a pinned department's
    │                                             document not in its trusted list
    ├── CorsNotAllowed           CORS_NOT_ALLOWED HTTP 403: a CORS preflight the gateway refuses
    ├── NotFound                 NOT_FOUND        HTTP 404: no such address (GraphiQL in production)
    ├── RequestTimeout           REQUEST_TIMEOUT  HTTP 408: headers or body not sent in time
    ├── ConfigurationError       CONFIGURATION    refused start-up / CLI exit 2
    ├── DecryptionError          DATA_INTEGRITY   error at the field's path, no data released
    ├── AuditUnavailable         AUDIT_UNAVAILABLE HTTP 503: no data leaves without its audit entry
    └── ServiceUnavailable       SERVICE_UNAVAILABLE HTTP 503: the database cannot be reached

Messages are for a clerk: Chinese, in the caller's terms, never SQL, stack traces, key
material or another person's data. Anything else raised while serving is masked as
``INTERNAL_SERVER_ERROR`` with a request id (the detail goes to the server log only).
"""

from __future__ import annotations


class GatewayError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    http_status = 400  # when the error refuses the whole request before it executes

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(GatewayError):
    code = "UNAUTHENTICATED"


class Forbidden(GatewayError):
    code = "FORBIDDEN"


class BadUserInput(GatewayError):
    code = "BAD_USER_INPUT"


class ConfigurationError(GatewayError):
    code = "CONFIGURATION"


class DecryptionError(GatewayError):
    """A ciphertext failed authentication: tampered, moved to another row, or unknown key."""

    code = "DATA_INTEGRITY"


class AuditUnavailable(GatewayError):
    """The audit entry of a read could not be committed, so the read's result is withheld."""

    code = "AUDIT_UNAVAILABLE"


class ServiceUnavailable(GatewayError):
    """The database could not be reached; the request can be retried."""

    code = "SERVICE_UNAVAILABLE"


class QueryTooComplex(BadUserInput):
    """Too deep, too many aliases, tokens, directives or operations, or too costly."""

    code = "QUERY_TOO_COMPLEX"


class PayloadTooLarge(BadUserInput):
    http_status = 413


class UnsupportedMediaType(BadUserInput):
    http_status = 415


class NotAcceptable(BadUserInput):
    http_status = 406


class PersistedQueryNotFound(BadUserInput):
    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotAllowed(GatewayError):
    """A department pinned to trusted documents sent one it did not register."""

    code = "PERSISTED_QUERY_NOT_ALLOWED"
    http_status = 403


class RateLimited(GatewayError):
    """Over a per-subject or per-department request rate; retry after ``retry_after`` s."""

    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UriTooLong(BadUserInput):
    """The request target (path and query string) is longer than RELIEF_MAX_URL_BYTES."""

    http_status = 414


class HeadersTooLarge(BadUserInput):
    """The request's header fields exceed what the server reads (gateway.http.protocol)."""

    http_status = 431


class MethodNotAllowed(BadUserInput):
    """Not with this HTTP method; ``allow`` is what the response's ``Allow`` header names."""

    code = "METHOD_NOT_ALLOWED"
    http_status = 405

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class NotFound(GatewayError):
    code = "NOT_FOUND"
    http_status = 404


class RequestTimeout(GatewayError):
    """The client did not send its headers, or the next piece of its body, in time."""

    code = "REQUEST_TIMEOUT"
    http_status = 408


class CorsNotAllowed(GatewayError):
    """A browser asked (CORS preflight) whether a page of another origin may call the gateway,
    and the answer is no: the origin, method or a header is not allowed."""

    code = "CORS_NOT_ALLOWED"
    http_status = 403
