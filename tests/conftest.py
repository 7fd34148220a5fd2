"""Shared fixtures. ``harness`` is parametrised over both databases: every test that uses it
runs on SQLite (the embedded default) and on a real, throw-away PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
