"""Errors the gateway raises on purpose, each with the code a client sees.

    GatewayError                 code             seen as
    ├── Unauthenticated          UNAUTHENTICATED  HTTP 401
    ├── Forbidden                FORBIDDEN        error at the field's path
    ├── BadUserInput             BAD_USER_INPUT   error at the argument's field
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
