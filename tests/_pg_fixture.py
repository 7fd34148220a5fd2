"""Session-scoped ``postgres_cluster`` fixture (a real, throw-away PostgreSQL).

Imported into ``tests/conftest.py``.  Without server binaries the fixture skips
locally, but when ``CI`` (or ``RELIEF_TEST_REQUIRE_POSTGRES``) is set to a true
value it *fails*, so PostgreSQL tests are never silently skipped in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pgcluster import BINDIR_ENV, EXTERNAL_URL_ENV, ThrowawayCluster, find_postgres_bindir

REQUIRE_ENV = "RELIEF_TEST_REQUIRE_POSTGRES"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "y"}


def postgres_required() -> bool:
    return _truthy(os.environ.get("CI")) or _truthy(os.environ.get(REQUIRE_ENV))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[ThrowawayCluster]:
    """A running PostgreSQL server for the whole test session."""
    if not os.environ.get(EXTERNAL_URL_ENV) and find_postgres_bindir() is None:
        where = (
            f"{BINDIR_ENV}={os.environ[BINDIR_ENV]}"
            if BINDIR_ENV in os.environ
            else "pg_config --bindir, /usr/lib/postgresql/*/bin, PATH"
        )
        msg = (
            f"no PostgreSQL server binaries found ({where}); run `bash scripts/test` "
            f"(installs Debian's postgresql) or set {EXTERNAL_URL_ENV}"
        )
        if postgres_required():
            pytest.fail(f"{msg} -- PostgreSQL is mandatory when CI is set", pytrace=False)
        pytest.skip(msg)
    with ThrowawayCluster() as cluster:
        yield cluster
