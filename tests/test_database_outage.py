"""PostgreSQL stopped while the gateway serves: a clear 503, then service resumes by itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._pg_fixture import postgres_required
from tests.harness import build_harness
from tests.pgcluster import ThrowawayCluster, find_postgres_bindir

LOOKUP = "query($id: String!) { person(idNumber: $id) { name } }"


@pytest.fixture
def private_cluster() -> Iterator[ThrowawayCluster]:
    if os.environ.get("RELIEF_TEST_POSTGRES_URL") or find_postgres_bindir() is None:
        if postgres_required():
            pytest.fail("this test needs local PostgreSQL server binaries", pytrace=False)
        pytest.skip("needs local PostgreSQL server binaries to stop and start a server")
    with ThrowawayCluster() as cluster:
        yield cluster


@pytest.mark.slow
async def test_outage_gives_503_and_service_resumes(
    private_cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = private_cluster.create_database("outage")
    harness = await build_harness(tmp_path, url, backend="postgres", persons=20)
    try:
        person = harness.persons[0]
        token = harness.token("medical_insurance", "province", person.region_code[:2])
        ok = await harness.query(token, LOOKUP, {"id": person.id_number})
        assert ok["data"]["person"]["name"] == person.name

        private_cluster.stop()
        down = await harness.post(token, LOOKUP, {"id": person.id_number})
        assert down.status_code == 503
        error = down.json()["errors"][0]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert "数据库" in error["message"]
        assert "Traceback" not in down.text
        assert "SELECT" not in down.text
        readiness = await harness.client.get("/readyz")
        assert readiness.status_code == 503

        private_cluster.start()
        # Pooled connections died with the server; each is replaced on its next use.
        statuses = []
        for _ in range(12):
            response = await harness.post(token, LOOKUP, {"id": person.id_number})
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.json()["data"]["person"]["name"] == person.name
                break
        assert statuses[-1] == 200, statuses
    finally:
        await harness.close()
