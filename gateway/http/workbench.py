"""Placeholder while issue 15's workbench is being built (replaced by its module)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def workbench_routes() -> list[BaseRoute]:
    return []
