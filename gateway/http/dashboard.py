"""Placeholder while issue 15's dashboard is being built (replaced by its module)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def dashboard_routes() -> list[BaseRoute]:
    return []
