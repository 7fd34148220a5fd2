"""Shared fixtures. ``harness`` is parametrised over both databases: every test that uses it
runs on SQLite (the embedded default) and on a real, throw-away PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._pg_fixture import postgres_cluster  # noqa: F401
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

# The log scan (issue 6 §2): every log record of the run is scanned for seeded plaintext.
pytest_plugins = ("tests.logscan",)

# Tests must not depend on the day they run: pin the one clock (RELIEF_TODAY).
os.environ.setdefault("RELIEF_TODAY", "2026-11-23")
os.environ.pop("RELIEF_ENV", None)

BACKENDS = ("sqlite", "postgres")


def xdist_scope(nodeid: str) -> str:
    """The unit of work a pytest-xdist worker takes whole (``scripts/test`` runs ``-n 2``).

    A test parametrised on a backend (``[sqlite]``, ``[postgres-civil_affairs-city]``: the
    session's ``backend`` of the harness and the ingest databases, or a module's own gateway
    per backend) goes with every test of that backend, so each worker builds one seeded harness
    instead of rebuilding it whenever the backend changes; any other test goes with its module,
    so a module's own gateway or database is built once.
    """
    path, _, rest = nodeid.partition("::")
    params = rest[rest.index("[") + 1 : -1] if rest.endswith("]") and "[" in rest else ""
    for backend in BACKENDS:
        if backend in params.split("-"):
            return f"backend-{backend}"
    return path


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Load-scope scheduling by :func:`xdist_scope` (pytest 9 ignores xdist's own groups)."""
    from xdist.scheduler import LoadScopeScheduling

    class BackendScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return BackendScheduling(config, log)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "relief.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
    yield cluster.create_database("relief_harness")


@pytest.fixture(scope="session")
async def harness(
    backend: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    data_dir: Path = tmp_path_factory.mktemp(f"data-{backend}")
    built = await build_harness(data_dir, database_url, backend=backend)
    yield built
    await built.close()
