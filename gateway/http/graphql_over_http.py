"""Media types and status codes of the GraphQL over HTTP specification.

    Accept                                   response media type                 request errors
    application/graphql-response+json        application/graphql-response+json   HTTP 400, no data
    application/json, */*, application/*     application/json                    HTTP 200 (legacy)
    (none)                                   application/json
    anything else (e.g. text/html only)      —                                   HTTP 406

A *request error* (the document does not parse or validate, a variable does not coerce, a
query-shape limit refuses it) means nothing executed: under the new media type the response has
no ``data`` and status 400, so a client can tell it from a field error (status 200, partial data).
``application/json`` keeps status 200 for every well-formed request, as clients before the
specification expect. Request bodies are ``application/json`` only (see ``REQUEST_MEDIA_TYPE``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
REQUEST_MEDIA_TYPE = JSON


@lru_cache(maxsize=256)
def response_media_type(accept: str | None) -> str | None:
    """The media type to answer in for this ``Accept`` header, or None (HTTP 406).

    The highest ``q`` wins; on a tie the GraphQL response type is preferred when named."""
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for part in accept.split(","):
        media_range, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        charset_ok = True
        for param in params:
            name, _, value = param.partition("=")
            name = name.strip().lower()
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                charset_ok = False  # responses are always UTF-8
        media_range = media_range.lower()
        if quality <= 0 or not charset_ok:
            continue
        if media_range == GRAPHQL_RESPONSE_JSON:
            candidate = (quality, 1, GRAPHQL_RESPONSE_JSON)
        elif media_range in (JSON, "application/*", "*/*"):
            candidate = (quality, 0, JSON)
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best is not None else None


def is_request_error(body: dict[str, Any]) -> bool:
    """Nothing executed: no data, and no error points at a field."""
    errors = body.get("errors")
    if not errors or body.get("data") is not None:
        return False
    return all("path" not in error for error in errors)
