"""Receipts of a push (issue 18 item 4): delivered (the department's system took it), read (one
of its people opened the task, or its system confirmed it), answered — with their times, on the
task, in ``reliefChain`` and in ``statistics``.

Read receipts are left only by the department the task is pushed to, in its jurisdiction: the
hub (medical insurance, which may list every department's tasks) reading a task leaves none,
another county learns nothing. The first opening counts. Both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from gateway.domain import clock
from gateway.storage.models import Task
from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    person_id,
    pushed,
    someone,
)
from tests.harness import Harness
from tests.test_tasks_api import pushed_warning, stored_task

TASK = """
query Task($id: ID!) {
  task(id: $id) { id state deliveredAt readAt readBy }
}
"""

ACKNOWLEDGE = """
mutation Ack($ids: [ID!]!) {
  acknowledgeTasks(ids: $ids) { acknowledged tasks { id readAt readBy } }
}
"""

CHAIN = """
query Chain($id: String!) {
  reliefChain(idNumber: $id) { events { kind date at taskId summary department } }
}
"""

STATISTICS = """
query Stats($prefix: String) {
  statistics(regionPrefix: $prefix, groupBy: COUNTY) {
    tasks { regionCode department kind open delivered deliveredSuppressed read readSuppressed }
    sharing(from: "2026-01-01", to: "2026-12-31") {
      pushes { department month deliveries personTimes }
    }
  }
}
"""


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


def token(gateway: Harness, dept: str, region: str, subject: str | None = None) -> str:
    level = {2: "province", 4: "city", 6: "county"}[len(region)]
    return gateway.token(dept, level, region, subject=subject or f"{dept}-{region}")


_n = 300


async def a_task(gw: Harness, county: str = COUNTY) -> tuple[Any, uuid.UUID, uuid.UUID]:
    """Someone recognised by civil affairs in ``county`` and a warning review pushed there."""
    global _n
    _n += 1
    person = someone(_n, county)
    await pushed(gw, token(gw, "civil_affairs", county), [identity(person)])
    who = await person_id(gw, person.id_number)
    tasks = await pushed_warning(gw, who, county)
    return person, who, tasks["civil_affairs"]


async def test_opening_a_task_leaves_the_read_receipt_once(gw: Harness) -> None:
    _, _, task = await a_task(gw)
    clerk = token(gw, "civil_affairs", COUNTY, "clerk-a")

    first = await gw.query(clerk, TASK, {"id": str(task)})
    later = await gw.query(token(gw, "civil_affairs", COUNTY, "clerk-b"), TASK, {"id": str(task)})

    found = first["data"]["task"]
    assert found["readBy"] == "clerk-a"
    assert found["readAt"] is not None
    assert later["data"]["task"]["readBy"] == "clerk-a"  # the first opening counts
    assert later["data"]["task"]["readAt"] == found["readAt"]
    stored = await stored_task(gw, task)
    assert stored.read_by == "clerk-a"


async def test_the_hub_reading_a_task_leaves_no_receipt(gw: Harness) -> None:
    _, _, task = await a_task(gw)
    hub = token(gw, "medical_insurance", "37")  # lists every department's tasks

    body = await gw.query(hub, TASK, {"id": str(task)})
    acknowledged = await gw.query(hub, ACKNOWLEDGE, {"ids": [str(task)]})

    assert body["data"]["task"]["id"] == str(task)
    assert body["data"]["task"]["readAt"] is None
    assert acknowledged["data"]["acknowledgeTasks"]["acknowledged"] == 0
    assert (await stored_task(gw, task)).read_at is None


async def test_another_county_neither_sees_nor_receipts_a_task(gw: Harness) -> None:
    _, _, task = await a_task(gw)
    other = token(gw, "civil_affairs", NEIGHBOUR)

    body = await gw.query(other, TASK, {"id": str(task)})
    acknowledged = await gw.query(other, ACKNOWLEDGE, {"ids": [str(task)]})

    assert body["data"]["task"] is None
    assert acknowledged["data"]["acknowledgeTasks"] == {"acknowledged": 0, "tasks": []}
    assert (await stored_task(gw, task)).read_at is None


async def test_a_department_system_acknowledges_what_it_was_pushed(gw: Harness) -> None:
    _, _, one = await a_task(gw)
    _, _, two = await a_task(gw)
    system = token(gw, "civil_affairs", COUNTY, "civil-affairs-system")

    body = await gw.query(system, ACKNOWLEDGE, {"ids": [str(one), str(two)]})
    again = await gw.query(system, ACKNOWLEDGE, {"ids": [str(one)]})

    done = body["data"]["acknowledgeTasks"]
    assert done["acknowledged"] == 2
    assert {t["id"] for t in done["tasks"]} == {str(one), str(two)}
    assert {t["readBy"] for t in done["tasks"]} == {"civil-affairs-system"}
    assert again["data"]["acknowledgeTasks"]["acknowledged"] == 0


@pytest.mark.parametrize("bad", [["not-a-uuid"], ["00000000-0000-0000-0000-00000000000g"]])
async def test_bad_ids_are_refused_in_the_callers_terms(gw: Harness, bad: list[str]) -> None:
    body = await gw.query(token(gw, "civil_affairs", COUNTY), ACKNOWLEDGE, {"ids": bad})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "任务编号" in error["message"]


async def test_too_many_ids_at_once_are_refused(gw: Harness) -> None:
    ids = [str(uuid.uuid4()) for _ in range(501)]
    body = await gw.query(token(gw, "civil_affairs", COUNTY), ACKNOWLEDGE, {"ids": ids})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "500" in error["message"]


async def test_the_chain_shows_delivered_read_and_answered_in_order(gw: Harness) -> None:
    person, _, task = await a_task(gw)
    delivered = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(update(Task).where(Task.id == task).values(delivered_at=delivered))
    with clock.travel(delivered + timedelta(hours=1)):
        await gw.query(token(gw, "civil_affairs", COUNTY, "clerk-c"), TASK, {"id": str(task)})

    body = await gw.query(token(gw, "civil_affairs", COUNTY), CHAIN, {"id": person.id_number})

    events = [e for e in body["data"]["reliefChain"]["events"] if e["taskId"] == str(task)]
    kinds = [e["kind"] for e in events]
    assert kinds.index("TASK_PUSHED") < kinds.index("TASK_DELIVERED") < kinds.index("TASK_READ")
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["TASK_DELIVERED"]["at"].startswith("2026-11-23T02:00:00")
    assert "10:00" in by_kind["TASK_DELIVERED"]["summary"]  # Beijing time in the text
    assert by_kind["TASK_READ"]["at"].startswith("2026-11-23T03:00")
    assert by_kind["TASK_PUSHED"]["at"] is None


async def test_statistics_count_delivered_and_read_open_tasks(gw: Harness) -> None:
    created = [await a_task(gw, NEIGHBOUR) for _ in range(6)]
    ids = [task for _, _, task in created]
    now = datetime.now(UTC)
    async with gw.runtime.engine.begin() as connection:
        # receipts elsewhere in the city (other tests') would hide these cells by secondary
        # suppression (the city's column must not give a small county cell away)
        await connection.execute(update(Task).values(delivered_at=None, read_at=None))
        await connection.execute(update(Task).where(Task.id.in_(ids[:5])).values(delivered_at=now))
    await gw.query(token(gw, "civil_affairs", NEIGHBOUR), ACKNOWLEDGE, {"ids": [str(ids[0])]})

    # one county alone: no other county's small cell asks for a secondary suppression here
    body = await gw.query(token(gw, "medical_insurance", "37"), STATISTICS, {"prefix": NEIGHBOUR})

    assert "errors" not in body, body
    [cell] = [
        c
        for c in body["data"]["statistics"]["tasks"]
        if c["regionCode"] == NEIGHBOUR and c["department"] == "CIVIL_AFFAIRS" and c["kind"] is None
    ]
    assert cell["open"] >= 6, cell
    assert cell["delivered"] == 5
    assert cell["read"] is None  # 1 task: published as suppressed, like a count of people
    assert cell["readSuppressed"] is True
