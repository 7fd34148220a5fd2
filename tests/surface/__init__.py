"""The public surface, rendered the way tests/test_public_surface.py compares it.

.venv/bin/python -m tests.surface     # rewrite the snapshots after an intended change
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

from starlette.applications import Starlette

NAMES = ("schema.graphql", "cli_help.txt", "http_routes.txt", "environment.txt")
HERE = Path(__file__).parent


def render(name: str, scratch: Path) -> str:
    if name == "schema.graphql":
        from schema import build_schema

        return build_schema(production=False).as_str() + "\n"
    if name == "cli_help.txt":
        return _cli_help()
    if name == "http_routes.txt":
        return _routes(scratch)
    if name == "environment.txt":
        from gateway.domain.settings import Settings

        prefix = str(Settings.model_config.get("env_prefix", ""))
        return "\n".join(sorted((prefix + field).upper() for field in Settings.model_fields)) + "\n"
    raise KeyError(name)


def _cli_help() -> str:
    from gateway.cli.app import _parser

    def walk(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, str]]:
        yield name, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield from walk(subparser, f"{name} {sub}")

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width
    try:
        return "".join(f"===== {n} --help\n{h}" for n, h in walk(_parser(), "relief-gateway"))
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _routes(scratch: Path) -> str:
    from gateway.domain.settings import load_settings
    from gateway.http.app import create_app
    from gateway.runtime.parts import Runtime

    def lines(app: Starlette) -> Iterator[str]:
        for route in app.routes:
            methods = ",".join(sorted(getattr(route, "methods", None) or [])) or "*"
            yield f"{route.path} {methods}"  # type: ignore[attr-defined]

    out: list[str] = []
    for env in ("development", "production"):
        data_dir = scratch / env
        runtime = Runtime.create(load_settings(data_dir=data_dir), create_keys=True)
        if env == "production":  # only the routes differ: production's checks are not the point
            runtime.settings = load_settings(data_dir=data_dir, env=env, province="shandong")
        out += [f"{env} {line}" for line in lines(create_app(runtime))]
    return "\n".join(out) + "\n"


def write_all() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for name in NAMES:
            (HERE / name).write_text(render(name, Path(scratch)), encoding="utf-8")
            print("wrote", HERE / name)
