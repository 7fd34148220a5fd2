"""The demo's loop is alive (issue 15): after the demo's own seeding, every workbench and
dashboard screen has something real, seen through the GraphQL API with the demo's tokens.

The data directory is seeded exactly as ``relief-gateway demo`` seeds it (its rules file, keys,
migration, ``_demo_data``), on SQLite and on PostgreSQL (``--database-url``), with the one clock
pinned by the test tooling (``RELIEF_TODAY``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli.database import migrate_database
from gateway.cli.serving import DEMO_SUBJECTS, _demo_data, _demo_rules, demo_county
from gateway.domain import clock
from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.loop.demo import LoopStory
from gateway.loop.warnings import previous_month
from gateway.runtime.parts import Runtime

PERSONS = 400


@dataclass
class Seeded:
    data_dir: Path
    database_url: str
    regions: dict[str, str]
    story: LoopStory


def _seed(data_dir: Path, database_url: str) -> Seeded:
    """What `demo` does before it serves (and a second time: it must add nothing)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _demo_rules(settings)
    args = argparse.Namespace(persons=PERSONS, seed=42)

    def once() -> tuple[dict[str, str], Any]:
        runtime = Runtime.create(settings, create_keys=True)
        migrate_database(settings)

        async def run() -> tuple[dict[str, str], Any]:
            try:
                regions, story, _bundles = await _demo_data(runtime, settings, args)
                return regions, story
            finally:
                await runtime.close()

        return asyncio.run(run())

    # asyncio.run in a thread of its own: pytest-asyncio's loop stays untouched.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        regions, story = pool.submit(once).result()
        _again, second = pool.submit(once).result()
    assert second.run is None, "a second demo must reuse the loop, not run it again"
    assert (second.open_tasks, second.answered_tasks) == (story.open_tasks, story.answered_tasks)
    return Seeded(data_dir, database_url, regions, story)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    data_dir = tmp_path_factory.mktemp(f"demo-alive-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database("relief_demo_alive")
    return _seed(data_dir, url)


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: dict[str, tuple[str, str]]  # subject -> (token, purpose)

    async def query(self, subject: str, query: str, purpose: str | None = None) -> Any:
        token, default_purpose = self.tokens[subject]
        response = await self.client.post(
            "/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": purpose or default_purpose},
        )
        body = response.json()
        assert response.status_code == 200, body
        assert not body.get("errors"), body
        return body["data"]


@pytest.fixture(scope="module")
async def api(seeded: Seeded) -> AsyncIterator[Api]:
    settings = load_settings(data_dir=seeded.data_dir, database_url=seeded.database_url)
    runtime = Runtime.create(settings)
    await runtime.start()
    tokens = {
        subject: (
            runtime.tokens.mint(
                subject=subject,
                dept=dept,
                level=level,
                region=seeded.regions[level],
                ttl_seconds=600,
            ),
            purpose,
        )
        for subject, dept, level, purpose in DEMO_SUBJECTS
    }
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as client:
        yield Api(client, tokens)
    await runtime.close()


def _count(api_data: Any, field: str) -> int:
    return int(api_data[field]["totalCount"])


def test_the_demo_county_is_a_county_of_the_configured_province(seeded: Seeded) -> None:
    assert seeded.regions["county"] == demo_county("37") == seeded.story.county
    assert seeded.regions["province"] == "37"


@pytest.mark.parametrize("department", ["demo-civil-county", "demo-rural-county"])
async def test_county_offices_have_overdue_due_soon_and_answered_tasks(
    api: Api, department: str
) -> None:
    data = await api.query(
        department,
        """{ overdue: tasks(filter: {state: OVERDUE}) { totalCount }
             dueSoon: tasks(filter: {state: DUE_SOON}) { totalCount }
             answered: tasks(filter: {state: ANSWERED}) { totalCount }
             open: tasks(filter: {state: OPEN}) { totalCount } }""",
    )
    counts = {name: _count(data, name) for name in ("overdue", "dueSoon", "answered", "open")}
    assert counts["overdue"] > 0, counts
    assert counts["dueSoon"] > 0, counts
    assert counts["answered"] >= 2, counts  # recognised and not eligible
    assert counts["open"] > 0, counts  # last month's run, today


async def test_medical_insurance_has_verification_tasks(api: Api) -> None:
    data = await api.query(
        "demo-mib-county",
        """{ overdue: tasks(filter: {state: OVERDUE, kind: IDENTITY_VERIFICATION}) { totalCount }
             answered: tasks(filter: {state: ANSWERED, kind: IDENTITY_VERIFICATION})
               { totalCount } }""",
    )
    assert _count(data, "overdue") > 0, data
    assert _count(data, "answered") > 0, data


async def test_warnings_of_last_month_reach_the_county(api: Api) -> None:
    last = previous_month(clock.today()).label
    for subject in ("demo-civil-county", "demo-rural-county"):
        data = await api.query(
            subject, f'{{ warnings(filter: {{month: "{last}"}}) {{ totalCount }} }}'
        )
        assert _count(data, "warnings") > 0, (subject, data)


async def test_open_anomalies_are_sent_back(api: Api) -> None:
    for subject in ("demo-civil-county", "demo-rural-county"):
        data = await api.query(subject, "{ anomalies(filter: {status: OPEN}) { totalCount } }")
        assert _count(data, "anomalies") > 0, (subject, data)


async def test_batches_of_the_departments_files(api: Api) -> None:
    data = await api.query("demo-civil-county", "{ batches { totalCount } }")
    assert _count(data, "batches") > 0, data


async def test_province_sees_several_months_of_sharing(api: Api) -> None:
    today = clock.today()
    start = date(today.year - 1, today.month, 1)
    # Batches are stamped with the real time (received_at), which a pinned clock may precede.
    end = max(today, date.today())
    data = await api.query(
        "demo-mib-province",
        f"""{{ statistics(groupBy: COUNTY) {{
              sharing(from: "{start}", to: "{end}") {{
                reads {{ department month requests personTimes }}
                provided {{ department month batches }} }}
              warnings(year: {previous_month(today).year}) {{ regionCode count }}
              tasks {{ regionCode department open overdue }} }} }}""",
        purpose="supervision",
    )
    sharing = data["statistics"]["sharing"]
    months = {row["month"] for row in sharing["reads"]}
    departments = {row["department"] for row in sharing["reads"]}
    assert len(months) >= 3, months
    assert {"MEDICAL_INSURANCE", "CIVIL_AFFAIRS", "RURAL_REVITALIZATION"} <= departments
    assert all(
        row["requests"] > 0 and row["personTimes"] >= row["requests"] for row in sharing["reads"]
    )
    assert sharing["provided"], sharing
    assert data["statistics"]["warnings"], data
    assert data["statistics"]["tasks"], data


def test_the_story_matches_what_the_screens_show(seeded: Seeded) -> None:
    story = seeded.story
    assert story.warnings_last_month > 0
    assert story.open_anomalies > 0
    assert story.overdue_tasks > 0
    assert story.due_soon_tasks > 0
    assert story.answered_tasks > 0
    assert len(story.audit_months) >= 3
