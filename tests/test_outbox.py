"""The outbox (issue 18 item 1): every event that concerns another department is written in the
transaction of its change, with its deliveries, so there is no event without its change and no
change without its event; a re-run that changes nothing emits nothing.

Events come from the real sources: a warning run (``warning.raised``, ``task.pushed``), a list
of identities (``batch.accepted``, verification ``task.pushed``), an answer (``task.answered``,
``identity.recognised``), a name another department disagrees with (``anomaly.opened``) and its
resolution (``anomaly.closed``). Deliveries fan out to the endpoints of the audience department
whose jurisdiction holds the event's county and which subscribe to its kind. Both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text

from gateway.storage import outbox
from gateway.storage.models import (
    Anomaly,
    CostWarning,
    OutboxEvent,
    Task,
    WarningRun,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from gateway.storage.writer import write_bundles
from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    enrollment,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    person_id,
    pushed,
    someone,
)
from tests.harness import Harness
from tests.test_warning_run import Subject, bundle, run

pytestmark = pytest.mark.usefixtures("clean_outbox")

ALL_KINDS = tuple(kind.value for kind in outbox.EventKind)


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


@pytest.fixture
async def clean_outbox(exchange_gateway: Harness) -> None:  # noqa: F811
    async with exchange_gateway.runtime.engine.begin() as connection:
        for model in (WebhookDelivery, WebhookSubscription, WebhookEndpoint, OutboxEvent):
            await connection.execute(delete(model))


def token(gateway: Harness, dept: str, region: str) -> str:
    level = {2: "province", 4: "city", 6: "county"}[len(region)]
    return gateway.token(dept, level, region, subject=f"{dept}-{region}")


async def endpoint(
    gateway: Harness,
    department: str,
    region: str,
    kinds: tuple[str, ...] = ALL_KINDS,
    *,
    disabled: bool = False,
) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(WebhookEndpoint).values(
                id=endpoint_id,
                name=f"{department}-{region}",
                department=department,
                level={2: "province", 4: "city", 6: "county"}[len(region)],
                region=region,
                url="http://127.0.0.1:9/hook",
                algorithm="HMAC-SHA256",
                secret_id="s1",
                secret_ct=b"not opened by these tests",
                max_in_flight=8,
                consecutive_failures=0,
                created_at=now,
                created_by="test",
                disabled_at=now if disabled else None,
                disabled_by="test" if disabled else None,
            )
        )
        for kind in kinds:
            await connection.execute(
                insert(WebhookSubscription).values(endpoint_id=endpoint_id, kind=kind)
            )
    return endpoint_id


async def events(gateway: Harness) -> list[Any]:
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(select(*OutboxEvent.__table__.c).order_by(OutboxEvent.id))
        return list(rows)


async def deliveries(gateway: Harness) -> set[tuple[uuid.UUID, str, str]]:
    """(endpoint, event kind, subject) of every delivery."""
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(WebhookDelivery.endpoint_id, OutboxEvent.kind, OutboxEvent.subject_id).join(
                OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id
            )
        )
        return {(uuid.UUID(str(e)), k, s) for e, k, s in rows}


async def scalar(gateway: Harness, statement: Any) -> Any:
    async with gateway.runtime.engine.connect() as connection:
        return (await connection.execute(statement)).scalar()


async def warned(gateway: Harness, key: str) -> uuid.UUID:
    """A Jinan resident whose 2026 burden crosses Shandong's 150% rule, and October's run."""
    global _numbered
    _numbered += 1  # a new ID number every time (the module's people accumulate)
    made = bundle(Subject(key, "shandong", (), "61500.01"), 500 + _numbered)
    async with gateway.runtime.sessions() as session:
        await write_bundles(session, gateway.runtime.vault, [made])
    return made.members[0].person_id


_numbered = 0


# ============================================================================ warning run
async def test_a_warning_run_writes_its_events_and_their_deliveries(gw: Harness) -> None:
    here = await endpoint(gw, "civil_affairs", COUNTY)
    warnings_only = await endpoint(gw, "civil_affairs", "37", ("warning.raised",))
    neighbour = await endpoint(gw, "civil_affairs", NEIGHBOUR)
    other_department = await endpoint(gw, "medical_insurance", "37")
    disabled = await endpoint(gw, "civil_affairs", "3701", disabled=True)
    person = await warned(gw, "outbox-a")

    await run(gw, "shandong")

    async with gw.runtime.engine.connect() as connection:
        tasks = list(
            await connection.execute(
                select(Task.id, Task.department).where(Task.person_id == person)
            )
        )
        warning = (
            await connection.execute(select(CostWarning.id).where(CostWarning.person_id == person))
        ).scalar_one()
    assert tasks, "the rule pushes to at least one department"
    found = {(e.kind, e.audience, e.subject_id) for e in await events(gw)}
    pushed_to = {department for _, department in tasks}
    assert found == {("task.pushed", d, str(t)) for t, d in tasks} | {
        ("warning.raised", d, str(warning)) for d in pushed_to
    }
    assert all(e.person_id == person and e.county_code == COUNTY for e in await events(gw))
    expected = {
        (here, "warning.raised", str(warning)),
        (warnings_only, "warning.raised", str(warning)),
    }
    expected |= {(here, "task.pushed", str(t)) for t, d in tasks if d == "civil_affairs"}
    assert await deliveries(gw) == expected
    assert not {neighbour, other_department, disabled} & {e for e, _, _ in await deliveries(gw)}


async def test_a_run_that_changes_nothing_emits_nothing(gw: Harness) -> None:
    await endpoint(gw, "civil_affairs", COUNTY)
    await warned(gw, "outbox-b")
    await run(gw, "shandong")
    before = (len(await events(gw)), len(await deliveries(gw)))

    await run(gw, "shandong")  # the same month again: no new warning, no new task

    assert (len(await events(gw)), len(await deliveries(gw))) == before


async def test_no_event_without_its_change_a_failing_fan_out_undoes_the_run(
    gw: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await endpoint(gw, "civil_affairs", COUNTY)
    person = await warned(gw, "outbox-c")

    async def broken(connection: Any, emit_id: uuid.UUID) -> None:
        raise RuntimeError("fan-out failed")  # after the events were inserted

    monkeypatch.setattr(outbox, "fan_out", broken)
    with pytest.raises(RuntimeError):
        await run(gw, "shandong")

    assert await events(gw) == []
    assert await scalar(gw, select(func.count()).where(Task.person_id == person)) == 0
    assert await scalar(gw, select(func.count()).where(CostWarning.person_id == person)) == 0
    # the run itself is recorded as failed, as every failed run is
    assert await scalar(gw, select(WarningRun.status).order_by(WarningRun.started_at.desc())) == (
        "FAILED"
    )


async def _execute(gw: Harness, statements: list[str]) -> None:
    async with gw.runtime.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


# ============================================================================ answers
ANSWER = """
mutation Answer($id: ID!, $answer: TaskAnswer!, $category: ReliefCategory) {
  answerTask(taskId: $id, answer: $answer, category: $category) { task { id state } }
}
"""


async def warning_task(gw: Harness, key: str) -> tuple[uuid.UUID, uuid.UUID]:
    person = await warned(gw, key)
    await run(gw, "shandong")
    task = await scalar(
        gw,
        select(Task.id).where(Task.person_id == person, Task.department == "civil_affairs"),
    )
    assert task is not None
    return person, uuid.UUID(str(task))


async def test_an_answer_reaches_the_department_that_pushed_and_a_recognition_medical_insurance(
    gw: Harness,
) -> None:
    hub = await endpoint(gw, "medical_insurance", COUNTY)
    person, task = await warning_task(gw, "outbox-d")
    clerk = token(gw, "civil_affairs", COUNTY)

    body = await gw.query(
        clerk, ANSWER, {"id": str(task), "answer": "RECOGNIZED", "category": "MINIMUM_LIVING"}
    )

    assert "errors" not in body, body
    mine = [e for e in await events(gw) if e.person_id == person]
    kinds = {(e.kind, e.audience) for e in mine}
    assert ("task.answered", "medical_insurance") in kinds  # the department that pushed
    assert ("task.answered", "civil_affairs") in kinds  # and the one that answered
    assert ("identity.recognised", "medical_insurance") in kinds
    # the recognition opens a verification task for medical insurance: pushed to it too
    verification = [
        e for e in mine if e.kind == "task.pushed" and e.audience == "medical_insurance"
    ]
    assert len(verification) == 1
    sent = await deliveries(gw)
    assert (hub, "task.answered", str(task)) in sent
    assert (hub, "task.pushed", verification[0].subject_id) in sent
    # no name or ID number in any event
    for event in mine:
        assert "测试" not in (event.facts or "")


async def test_a_refused_event_undoes_the_answer(gw: Harness) -> None:
    _, task = await warning_task(gw, "outbox-e")
    clerk = token(gw, "civil_affairs", COUNTY)
    postgres = gw.runtime.engine.dialect.name == "postgresql"
    if postgres:
        await _execute(
            gw,
            [
                "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$",
                "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox_event "
                "FOR EACH ROW EXECUTE FUNCTION refuse_outbox()",
            ],
        )
    else:
        await _execute(
            gw,
            [
                "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox_event "
                "BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"
            ],
        )
    try:
        response = await gw.post(clerk, ANSWER, {"id": str(task), "answer": "NOT_ELIGIBLE"})
    finally:
        drop = (
            ["DROP TRIGGER refuse_outbox ON outbox_event", "DROP FUNCTION refuse_outbox()"]
            if postgres
            else ["DROP TRIGGER refuse_outbox"]
        )
        await _execute(gw, drop)

    # the caller is told the database could not take it (503), in its terms, without SQL
    assert response.status_code == 503, response.text
    message = response.text
    assert "outbox refused" not in message  # no database text in errors
    assert "INSERT" not in message
    stored = await scalar(gw, select(Task.status).where(Task.id == task))
    assert stored == "OPEN"  # the answer did not happen without its event


# ============================================================================ lists and anomalies
async def test_a_list_reaches_medical_insurance_and_its_sender_hears_it_was_accepted(
    gw: Harness,
) -> None:
    sender = await endpoint(gw, "civil_affairs", COUNTY, ("batch.accepted",))
    hub = await endpoint(gw, "medical_insurance", "3701", ("task.pushed",))
    person = someone(201)

    result = await pushed(gw, token(gw, "civil_affairs", COUNTY), [identity(person)])

    batch = result["batch"]["id"]
    found = await events(gw)
    accepted = [e for e in found if e.kind == "batch.accepted"]
    assert [(e.audience, e.subject_id, e.person_id) for e in accepted] == [
        ("civil_affairs", batch, None)
    ]
    who = await person_id(gw, person.id_number)
    verification = [e for e in found if e.kind == "task.pushed" and e.person_id == who]
    assert [e.audience for e in verification] == ["medical_insurance"]
    assert await deliveries(gw) == {
        (sender, "batch.accepted", batch),
        (hub, "task.pushed", verification[0].subject_id),
    }


RESOLVE = """
mutation Resolve($id: ID!) {
  resolveAnomaly(id: $id, resolution: CORRECTED, note: "已更正") { id status }
}
"""


async def test_an_anomaly_sent_back_and_its_resolution_are_events(gw: Harness) -> None:
    hub = await endpoint(gw, "medical_insurance", COUNTY, ("anomaly.opened", "anomaly.closed"))
    person = someone(202)
    await pushed(gw, token(gw, "civil_affairs", COUNTY), [identity(person)])
    mi = token(gw, "medical_insurance", COUNTY)

    # medical insurance calls the person by another name: sent back to it to verify (回传)
    await pushed(gw, mi, [enrollment(person, name="测试别名")], feed="enrollments")

    who = await person_id(gw, person.id_number)
    anomaly = await scalar(gw, select(Anomaly.id).where(Anomaly.person_id == who))
    assert anomaly is not None
    opened = [e for e in await events(gw) if e.kind == "anomaly.opened"]
    assert [(e.audience, e.subject_id, e.person_id) for e in opened] == [
        ("medical_insurance", str(anomaly), who)
    ]

    body = await gw.query(mi, RESOLVE, {"id": str(anomaly)})

    assert "errors" not in body, body
    closed = [e for e in await events(gw) if e.kind == "anomaly.closed"]
    assert [(e.audience, e.subject_id) for e in closed] == [("medical_insurance", str(anomaly))]
    assert {(k, s) for e, k, s in await deliveries(gw) if e == hub} == {
        ("anomaly.opened", str(anomaly)),
        ("anomaly.closed", str(anomaly)),
    }
    again = await gw.query(mi, RESOLVE, {"id": str(anomaly)})  # already resolved: no event
    assert len([e for e in await events(gw) if e.kind == "anomaly.closed"]) == 1, again


async def test_events_hold_no_name_or_id_number(gw: Harness) -> None:
    person = someone(203)
    await pushed(gw, token(gw, "civil_affairs", COUNTY), [identity(person)])
    for event in await events(gw):
        row = " ".join(str(value) for value in event)
        assert person.name not in row
        assert person.id_number not in row


async def test_occurred_at_reads_the_clock(gw: Harness) -> None:
    person = someone(204)
    before = datetime.now(UTC)
    await pushed(gw, token(gw, "civil_affairs", COUNTY), [identity(person)])
    for event in await events(gw):
        moment = event.occurred_at
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        assert before.timestamp() - 1 <= moment.timestamp() <= datetime.now(UTC).timestamp() + 1
