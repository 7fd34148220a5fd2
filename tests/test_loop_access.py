"""The closed loop's grants in the default data-sharing lists, as ``me`` reports them for every
department at every level: who may list warnings and tasks, answer, follow a relief chain, read
coverage and the aggregate statistics, and see other departments' tasks (the hub only).

The behaviour behind each grant is tested with its service (``test_warnings_api``,
``test_tasks_api``, ``test_relief_chain``, ``test_coverage``, ``test_statistics``).
"""

from __future__ import annotations

import pytest

from tests.harness import Harness

LOOP = ["Loop.answerTask", "Loop.coverage", "Loop.reliefChain", "Loop.tasks", "Loop.warnings"]
EXPECTED: dict[str, list[str]] = {
    "medical_insurance": sorted([*LOOP, "Loop.otherDepartments", "Statistics.read"]),
    "civil_affairs": sorted([*LOOP, "Statistics.read"]),
    "rural_revitalization": sorted([*LOOP, "Statistics.read"]),
    "big_data": ["Statistics.read"],  # aggregates only, never a person
    "health": [],
    "public_security": [],
    "disabled_federation": [],
    "human_resources": [],
}
COUNTY = "370102"


@pytest.mark.parametrize("dept", sorted(EXPECTED))
@pytest.mark.parametrize("level", ["province", "city", "county"])
async def test_me_lists_the_loop_operations(harness: Harness, dept: str, level: str) -> None:
    region = {"province": COUNTY[:2], "city": COUNTY[:4], "county": COUNTY}[level]
    body = await harness.query(
        harness.token(dept, level, region), "{ me { operations rowScope fieldAccess { field } } }"
    )
    me = body["data"]["me"]
    loop = [op for op in me["operations"] if not op.startswith("Ingest.")]
    assert loop == EXPECTED[dept]
    if dept == "big_data":
        assert me["rowScope"] == []
        assert me["fieldAccess"] == []
    relief = {a["field"] for a in me["fieldAccess"]} & {"Person.effectiveRelief"}
    expected_relief = dept in ("medical_insurance", "civil_affairs", "rural_revitalization")
    assert bool(relief) is expected_relief
