"""Errors the gateway raises on purpose, each with the code a client sees.

    GatewayError                 code             seen as
    ├── Unauthenticated          UNAUTHENTICATED  HTTP 401
    ├── Forbidden                FORBIDDEN        error at the field's path
    ├── BadUserInput             BAD_USER_INPUT   error at the argument's field; HTTP 400
    │   ├── QueryTooComplex      QUERY_TOO_COMPLEX refused before execution (schema.limits)
    │   ├── PersistedQueryNotFound PERSISTED_QUERY_NOT_FOUND HTTP 400: unknown sha256Hash
    │   ├── PayloadTooLarge      BAD_USER_INPUT   HTTP 413: request body over RELIEF_MAX_BODY_BYTES
    │   ├── UnsupportedMediaType BAD_USER_INPUT   HTTP 415: POST body not application/json
    │   └── NotAcceptable        BAD_USER_INPUT   HTTP 406: no JSON media type in Accept
    ├── RateLimited              RATE_LIMITED     HTTP 429 with Retry-After (runtime.rate_limit)
    ├── PersistedQueryNotAllowed PERSISTED_QUERY_NOT_ALLOWED HTTP 403: a pinned department's
    │                                             document not in its trusted list
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
