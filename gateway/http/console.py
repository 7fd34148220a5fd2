"""The administrators' console (管理员控制台) at ``/console``, served by the gateway itself.

No build step: ``static/console/`` holds the page as checked in (``index.html``,
``console.css`` and vanilla JavaScript ES modules), so a fresh machine, or a provincial network
without internet, serves it as is. The page holds no secret of its own: the administrator
pastes a token, kept in the tab's ``sessionStorage``, and the page talks only to
``POST /graphql`` (and ``GET /readyz``), where every administrator field is authorised like
any other request. It is served in production too: administrators govern the policy and read
the audit there.

Separation of duties (三权分立, issue 16): each administrator role sees only its own screens,
the security administrator the policy grid and the review (proposals, simulation, versions),
the audit administrator the audit log with its explanations and the chain's verification, the
system administrator a page saying its work is on the server's command line, with the gateway's
status. The screens are inert ``<template>`` elements; ``console.js`` copies in those of the
signed-in role only, so another role's screen is never part of the document, and the gateway
refuses its data anyway (FORBIDDEN). A token without an administrator role is refused at
sign-in, in Chinese.

Every response carries strict headers, because the page is where a token that can change who
sees what is used:

- ``Content-Security-Policy`` allows only this origin's own files and no inline script or
  style, so a proposal's title or note can never run as code (the page also inserts such text
  with ``textContent`` only), and ``frame-ancestors 'none'`` with ``X-Frame-Options: DENY``
  stop another site from framing the page and tricking a click on 批准 (clickjacking);
- ``Cache-Control: no-store`` leaves nothing of the page or its data on a shared workstation;
- ``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute

from gateway.http.pages import StaticPage

CONSOLE_PATH = "/console"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # every form is handled by the page's script, never submitted
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_PAGE = StaticPage(CONSOLE_PATH, "console", SECURITY_HEADERS)


def console_directory() -> Path:
    return _PAGE.directory


def console_routes() -> list[BaseRoute]:
    return _PAGE.routes()
