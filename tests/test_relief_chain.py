"""``reliefChain(idNumber)``: one relief chain per person (一人一条救助链, 000 §1, 004 §1),
filtered by what the caller may see.

The chain of one person is built once per backend, through the public paths where they exist:
a civil affairs identities file, later the same list with the exit (退出日期), a rural
revitalisation identities file, a medical insurance enrollments file and a health death file,
all loaded by ``adapters.pipeline.Ingestor``. The warning run and task answers are written by
other services; this module's fixture stands in for them by inserting their rows directly
(``_loop_fixture``): one high-cost warning (Shandong's 50% rule) pushed as a task to civil
affairs (answered "not eligible") and to rural revitalisation (open), and a verification task
of medical insurance for the new identity. Anomalies are inserted like ``adapters.apply``
writes them (one of civil affairs, resolved; one of rural revitalisation, open).

Every test runs on SQLite and PostgreSQL (``exchange_gateway``: this module's own gateway).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from adapters.pipeline import Ingestor
from gateway.storage.models import Anomaly, CostWarning, Task, WarningRun
from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    audit_entries,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    extra_policy,
    insert_anomaly,
    last_audit_id,
    leaks,
    person_id,
)
from tests.harness import Harness
from tests.ingest_support import (
    enrollment_row,
    identity_row,
    someone,
    vital_event_row,
    write_rows,
)

CHAIN = """
query Chain($id: String!) {
  reliefChain(idNumber: $id) {
    person { id regionCode }
    events { date kind department category summary taskId warningId anomalyId }
  }
}
"""

PERSON = someone(300, COUNTY, born=date(1961, 5, 6))
STRANGER = someone(301, COUNTY, born=date(1962, 7, 8))  # never loaded

T_CIVIL = uuid.UUID(int=1)  # warning review pushed to civil affairs, answered
T_RURAL = uuid.UUID(int=2)  # warning review pushed to rural revitalisation, open
T_VERIFY = uuid.UUID(int=3)  # new identity pushed to medical insurance, answered
WARNING_ID = uuid.UUID(int=10)
FIXTURE_TASKS = {str(T_CIVIL), str(T_RURAL), str(T_VERIFY)}


@dataclass(frozen=True)
class Chain:
    person_id: uuid.UUID
    civil_anomaly: uuid.UUID
    rural_anomaly: uuid.UUID
    pipeline_anomalies: list[tuple[str, str, str]]  # (opened_on, department, id) by id


async def _load(gateway: Harness, tmp: Path, source: str, feed: str, rows: Sequence[Any]) -> None:
    path = write_rows(tmp / f"{source}-{feed}-{uuid.uuid4().hex[:6]}.csv", rows)
    ingestor = Ingestor(
        gateway.runtime.engine,
        gateway.runtime.vault,
        gateway.runtime.feeds[(source, feed)],
        submitted_by=f"test:{source}",
        today=gateway.today,
    )
    result = await ingestor.ingest_file(path)
    assert result.counts.rows_rejected == 0, result.rejections


async def _loop_fixture(gateway: Harness, person: uuid.UUID) -> None:
    """Rows the warning run and the task answers would write (stand-in, see module doc)."""
    created = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
    run_id = uuid.uuid4()
    task = {
        "county_code": COUNTY,
        "person_id": person,
        "batch_id": None,
        "note": None,
        "relief_status_id": None,
    }
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(WarningRun).values(
                id=run_id,
                month="2026-09",
                province="shandong",
                started_at=created,
                finished_at=created,
                status="COMPLETED",
                triggered_by="test",
                warnings_created=1,
                tasks_opened=2,
                thresholds=json.dumps({"SHANDONG_LOW_INCOME_50": "19945.00"}),
            )
        )
        await connection.execute(
            insert(CostWarning).values(
                id=WARNING_ID,
                run_id=run_id,
                month="2026-09",
                year=2026,
                person_id=person,
                county_code=COUNTY,
                rule="SHANDONG_LOW_INCOME_50",
                measure="personal_burden",
                figure=Decimal("21000.00"),
                threshold=Decimal("19945.00"),
                attention="province",
                created_at=created,
            )
        )
        await connection.execute(
            insert(Task),
            [
                {
                    **task,
                    "id": T_CIVIL,
                    "kind": "WARNING_REVIEW",
                    "department": "civil_affairs",
                    "source_key": f"warning:{WARNING_ID}",
                    "warning_id": WARNING_ID,
                    "category": None,
                    "opened_on": date(2026, 10, 8),
                    "due_on": date(2026, 10, 15),
                    "status": "ANSWERED",
                    "answer": "NOT_ELIGIBLE",
                    "answer_category": None,
                    "answered_on": date(2026, 10, 14),
                    "answered_by": "ca-clerk",
                },
                {
                    **task,
                    "id": T_RURAL,
                    "kind": "WARNING_REVIEW",
                    "department": "rural_revitalization",
                    "source_key": f"warning:{WARNING_ID}",
                    "warning_id": WARNING_ID,
                    "category": None,
                    "opened_on": date(2026, 10, 8),
                    "due_on": date(2026, 10, 15),
                    "status": "OPEN",
                    "answer": None,
                    "answer_category": None,
                    "answered_on": None,
                    "answered_by": None,
                },
                {
                    **task,
                    "id": T_VERIFY,
                    "kind": "IDENTITY_VERIFICATION",
                    "department": "medical_insurance",
                    "source_key": "identity:fixture",
                    "warning_id": None,
                    "category": "MINIMUM_LIVING",
                    "opened_on": date(2025, 3, 5),
                    "due_on": date(2025, 3, 12),
                    "status": "ANSWERED",
                    "answer": "IDENTITY_MARKED",
                    "answer_category": None,
                    "answered_on": date(2025, 3, 10),
                    "answered_by": "mib-clerk",
                },
            ],
        )


@pytest.fixture(scope="module")
async def chain(
    exchange_gateway: Harness,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Chain:
    gateway = exchange_gateway
    tmp = tmp_path_factory.mktemp(f"chain-{gateway.backend}")
    await _load(
        gateway,
        tmp,
        "rural_revitalization",
        "identities",
        [identity_row(PERSON, "脱贫人口", "2024-05-10")],
    )
    await _load(
        gateway,
        tmp,
        "civil_affairs",
        "identities",
        [identity_row(PERSON, "低保对象", "2025-03-01")],
    )
    # The next month's list carries the exit (退出, 001 §3).
    await _load(
        gateway,
        tmp,
        "civil_affairs",
        "identities",
        [identity_row(PERSON, "低保对象", "2025-03-01", "2026-06-30")],
    )
    await _load(
        gateway,
        tmp,
        "medical_insurance",
        "enrollments",
        [
            enrollment_row(PERSON, 2025, subsidy_category="低保对象", subsidy_amount="280.00"),
            enrollment_row(PERSON, 2026, "暂停参保"),
        ],
    )
    found = await person_id(gateway, PERSON.id_number)
    await _loop_fixture(gateway, found)
    civil = await insert_anomaly(
        gateway,
        found,
        department="civil_affairs",
        county=COUNTY,
        opened_on=date(2026, 7, 1),
        due_on=date(2026, 7, 15),
        status="RESOLVED",
    )
    rural = await insert_anomaly(
        gateway,
        found,
        department="rural_revitalization",
        county=COUNTY,
        kind="EXITED_IDENTITY_ACTIVE_ELSEWHERE",
        opened_on=date(2026, 8, 1),
        due_on=date(2026, 8, 14),
    )
    await _load(
        gateway, tmp, "health", "vital_events", [vital_event_row(PERSON, "死亡", "2026-11-01")]
    )
    async with gateway.runtime.engine.connect() as connection:
        opened = (
            await connection.execute(
                select(Anomaly.opened_on, Anomaly.department, Anomaly.id).where(
                    Anomaly.person_id == found, Anomaly.id.not_in([civil, rural])
                )
            )
        ).all()
    pipeline = sorted(
        ((row.opened_on.isoformat(), row.department, str(row.id)) for row in opened),
        key=lambda item: (item[0], item[2]),
    )
    return Chain(found, civil, rural, pipeline)


def _caller(gateway: Harness, dept: str, county: str = COUNTY) -> str:
    return gateway.token(dept, "county", county, subject=f"chain-{dept}-{county}")


async def _chain(gateway: Harness, token: str, id_number: str) -> dict[str, Any] | None:
    body = await gateway.query(token, CHAIN, {"id": id_number})
    assert "errors" not in body, body["errors"]
    found: dict[str, Any] | None = body["data"]["reliefChain"]
    return found


def _rows(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(date, kind, department, category) of each event, tasks limited to the fixture's (the
    pipeline may push verification tasks of its own)."""
    return [
        (e["date"], e["kind"], e["department"], e["category"])
        for e in events
        if e["taskId"] is None or e["taskId"] in FIXTURE_TASKS
    ]


def _pipeline_rows(found: Chain, *departments: str) -> list[tuple[Any, ...]]:
    return [
        (opened, "ANOMALY_OPENED", department.upper(), None)
        for opened, department, _ in found.pipeline_anomalies
        if department in departments
    ]


MI, CA, RR, HEALTH = "MEDICAL_INSURANCE", "CIVIL_AFFAIRS", "RURAL_REVITALIZATION", "HEALTH"


# ============================================================================ the chain
async def test_medical_insurance_sees_the_whole_chain_in_order(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    found = await _chain(
        exchange_gateway, _caller(exchange_gateway, "medical_insurance"), PERSON.id_number
    )
    assert found is not None
    assert found["person"] == {"id": str(chain.person_id), "regionCode": COUNTY}
    assert _rows(found["events"]) == [
        ("2024-05-10", "IDENTITY_RECOGNIZED", RR, "LIFTED_FROM_POVERTY"),
        ("2025-01-01", "ENROLLED", MI, "MINIMUM_LIVING"),  # subsidy category, year's first day
        ("2025-03-01", "IDENTITY_RECOGNIZED", CA, "MINIMUM_LIVING"),
        ("2025-03-05", "TASK_PUSHED", MI, "MINIMUM_LIVING"),
        ("2025-03-10", "TASK_ANSWERED", MI, None),
        ("2026-01-01", "ENROLLMENT_SUSPENDED", MI, None),
        ("2026-06-30", "IDENTITY_EXITED", CA, "MINIMUM_LIVING"),
        ("2026-07-01", "ANOMALY_OPENED", CA, None),
        ("2026-07-15", "ANOMALY_RESOLVED", CA, None),
        ("2026-08-01", "ANOMALY_OPENED", RR, None),
        ("2026-10-08", "WARNING", MI, None),
        ("2026-10-08", "TASK_PUSHED", CA, None),
        ("2026-10-08", "TASK_PUSHED", RR, None),
        ("2026-10-14", "TASK_ANSWERED", CA, None),
        ("2026-11-01", "DEATH", HEALTH, None),
        *_pipeline_rows(chain, "medical_insurance", "civil_affairs", "rural_revitalization"),
    ]
    by_kind = {(e["kind"], e["department"]): e for e in found["events"]}
    warning = by_kind[("WARNING", MI)]
    assert warning["warningId"] == str(WARNING_ID)
    assert "21000.00" in warning["summary"]
    assert "19945.00" in warning["summary"]
    assert by_kind[("TASK_PUSHED", CA)]["taskId"] == str(T_CIVIL)
    assert "不符合" in by_kind[("TASK_ANSWERED", CA)]["summary"]
    assert by_kind[("TASK_PUSHED", CA)]["warningId"] == str(WARNING_ID)
    assert by_kind[("ANOMALY_RESOLVED", CA)]["anomalyId"] == str(chain.civil_anomaly)
    (rural,) = [e for e in found["events"] if e["date"] == "2026-08-01"]
    assert rural["anomalyId"] == str(chain.rural_anomaly)
    assert "280.00" in by_kind[("ENROLLED", MI)]["summary"]


async def test_county_civil_affairs_sees_only_its_own_tasks_and_anomalies(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    found = await _chain(
        exchange_gateway, _caller(exchange_gateway, "civil_affairs"), PERSON.id_number
    )
    assert found is not None
    assert _rows(found["events"]) == [
        ("2024-05-10", "IDENTITY_RECOGNIZED", RR, "LIFTED_FROM_POVERTY"),
        ("2025-01-01", "ENROLLED", MI, None),  # no grant on Enrollment.subsidyCategory
        ("2025-03-01", "IDENTITY_RECOGNIZED", CA, "MINIMUM_LIVING"),
        ("2026-01-01", "ENROLLMENT_SUSPENDED", MI, None),
        ("2026-06-30", "IDENTITY_EXITED", CA, "MINIMUM_LIVING"),
        ("2026-07-01", "ANOMALY_OPENED", CA, None),
        ("2026-07-15", "ANOMALY_RESOLVED", CA, None),
        ("2026-10-08", "WARNING", MI, None),  # pushed to civil affairs
        ("2026-10-08", "TASK_PUSHED", CA, None),
        ("2026-10-14", "TASK_ANSWERED", CA, None),
        *_pipeline_rows(chain, "civil_affairs"),
    ]
    task_ids = {e["taskId"] for e in found["events"]} - {None}
    assert task_ids == {str(T_CIVIL)}
    assert {e["anomalyId"] for e in found["events"]} - {None} <= {str(chain.civil_anomaly)} | {
        anomaly
        for _, department, anomaly in chain.pipeline_anomalies
        if department == "civil_affairs"
    }
    assert "280.00" not in json.dumps(found, ensure_ascii=False)  # no Enrollment.subsidyAmount


async def test_county_rural_revitalisation_sees_its_own_push(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    found = await _chain(
        exchange_gateway, _caller(exchange_gateway, "rural_revitalization"), PERSON.id_number
    )
    assert found is not None
    rows = _rows(found["events"])
    assert ("2026-10-08", "TASK_PUSHED", RR, None) in rows
    assert ("2026-10-08", "WARNING", MI, None) in rows
    assert ("2026-08-01", "ANOMALY_OPENED", RR, None) in rows
    assert all(kind != "DEATH" for _, kind, _, _ in rows)
    assert {e["taskId"] for e in found["events"]} - {None} == {str(T_RURAL)}
    assert {e["department"] for e in found["events"] if e["kind"].startswith("ANOMALY")} <= {RR}


async def test_a_warning_not_pushed_to_the_caller_is_left_out(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    """A city civil affairs caller sees the county's tasks of its own department (T_CIVIL),
    so the warning; the open rural push and the verification task stay out."""
    token = exchange_gateway.token("civil_affairs", "city", COUNTY[:4], subject="chain-city")
    found = await _chain(exchange_gateway, token, PERSON.id_number)
    assert found is not None
    assert {e["taskId"] for e in found["events"]} - {None} == {str(T_CIVIL)}


# ============================================================================ access
async def test_health_may_not_read_relief_chains(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    body = await exchange_gateway.query(
        _caller(exchange_gateway, "health"), CHAIN, {"id": PERSON.id_number}
    )
    assert body["data"] is None or body["data"]["reliefChain"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["reliefChain"]


@pytest.mark.parametrize(
    ("county", "person"),
    [(NEIGHBOUR, PERSON), (COUNTY, STRANGER)],
    ids=["out-of-scope", "absent"],
)
async def test_out_of_scope_is_null_like_absent(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
    county: str,
    person: Any,
) -> None:
    token = _caller(exchange_gateway, "civil_affairs", county)
    assert await _chain(exchange_gateway, token, person.id_number) is None


async def test_a_malformed_id_number_is_bad_user_input(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    body = await exchange_gateway.query(
        _caller(exchange_gateway, "civil_affairs"), CHAIN, {"id": "37010219500101001"}
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_events_of_denied_fields_are_omitted(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    """A list without enrollments shows no enrollment events; without the source department
    the identity events have no department; without Loop.* nothing of the loop."""
    lines = [
        ("public_security:*", "Person(all)", "rows"),
        ("public_security:*", "Person.idNumber", "read"),
        ("public_security:*", "Person.reliefStatuses", "read"),
        ("public_security:*", "ReliefStatus.recognizedOn", "read"),
        ("public_security:*", "ReliefStatus.validFrom", "read"),
        ("public_security:*", "ReliefStatus.validTo", "read"),
        ("public_security:*", "Loop.reliefChain", "call"),
        ("health:*", "Loop.reliefChain", "call"),
    ]
    async with extra_policy(exchange_gateway, lines):
        police = await _chain(
            exchange_gateway, _caller(exchange_gateway, "public_security"), PERSON.id_number
        )
        health = await _chain(
            exchange_gateway, _caller(exchange_gateway, "health"), PERSON.id_number
        )
    assert police is not None
    assert health is not None
    assert _rows(police["events"]) == [
        ("2024-05-10", "IDENTITY_RECOGNIZED", None, "LIFTED_FROM_POVERTY"),
        ("2025-03-01", "IDENTITY_RECOGNIZED", None, "MINIMUM_LIVING"),
        ("2026-06-30", "IDENTITY_EXITED", None, "MINIMUM_LIVING"),
    ]
    # Health reads enrollment status, not relief statuses: only the enrollment years.
    assert _rows(health["events"]) == [
        ("2025-01-01", "ENROLLED", MI, None),
        ("2026-01-01", "ENROLLMENT_SUSPENDED", MI, None),
    ]


async def test_summaries_never_carry_a_name_or_an_id_number(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    body = await exchange_gateway.query(
        _caller(exchange_gateway, "medical_insurance"),
        "query C($id: String!) { reliefChain(idNumber: $id) { events { summary } } }",
        {"id": PERSON.id_number},
    )
    summaries = [e["summary"] for e in body["data"]["reliefChain"]["events"]]
    assert summaries
    assert all(re.search(r"[\u4e00-\u9fff]", s) for s in summaries)
    assert leaks(body, PERSON.name, PERSON.id_number, PERSON.id_number[-8:]) == []


async def test_the_chain_is_audited(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    before = await last_audit_id(exchange_gateway)
    await _chain(exchange_gateway, _caller(exchange_gateway, "civil_affairs"), PERSON.id_number)
    (entry,) = await audit_entries(exchange_gateway, before)
    assert str(chain.person_id) in json.loads(entry.person_ids)
    fields = json.loads(entry.fields)
    assert fields["Person.reliefStatuses"] == "read"
    assert fields["Enrollment.status"] == "read"


# ============================================================================ cost
@contextmanager
def _statements(gateway: Harness) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = gateway.runtime.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _reads(statements: Sequence[str]) -> list[str]:
    """Reads of data tables (not the policy-version poll, not the audit append's reads of its
    chain head and anchors: a process's first keyed append looks up its mac_start anchor)."""
    return [
        s
        for s in statements
        if s.lstrip().upper().startswith("SELECT")
        and " FROM " in " ".join(s.split()).upper()
        and "policy_version" not in s
        and not any(table in s for table in ("audit_log", "audit_head", "audit_anchor"))
    ]


async def test_a_chain_costs_one_query_per_source(
    exchange_gateway: Harness,  # noqa: F811
    chain: Chain,
) -> None:
    """The person lookup plus one query per event source (identities, enrollments, warnings,
    tasks, events from other provinces, anomalies, deaths), whatever the number of events."""
    token = _caller(exchange_gateway, "medical_insurance")
    with _statements(exchange_gateway) as seen:
        await _chain(exchange_gateway, token, PERSON.id_number)
    assert len(_reads(seen)) == 8, "\n".join(" ".join(r.split())[:120] for r in _reads(seen))
