"""Tasks over GraphQL: ``tasks`` (what is pushed to my department, most urgent first) and
``answerTask`` (answer within the deadline; a recognition creates the relief status).

Rules (DOMAIN.md rule 3): a warning pushed to civil affairs / rural revitalisation is answered
within 5 working days with a recognition result (000 §1); a list pushed to medical insurance is
verified and marked within 5 (004 §1); "needs more information" restarts the deadline and a
final answer follows; a recognition closes the loop by creating the relief status. A department
sees and answers only its own tasks in its jurisdiction; the hub (medical insurance,
``Loop.otherDepartments``) lists every department's; health has no tasks at all.

WARNING_REVIEW tasks are inserted by :func:`pushed_warning`, which stands in for the monthly
warning run (``relief-gateway warn run``: one ``cost_warning`` and one task per department
pushed to, as the run writes them); the run's own tests are elsewhere. Every test runs on
SQLite and PostgreSQL, on a gateway of this module alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select

from gateway.domain.clock import now_utc
from gateway.domain.workdays import add_working_days
from gateway.storage.models import CostWarning, ReliefStatus, Task, WarningRun
from gateway.storage.places import refresh_places
from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    PERSON,
    TODAY,
    Someone,
    codes,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    nodes,
    only_error,
    person_id,
    pushed,
    someone,
)
from tests.harness import Harness

DUE = add_working_days(TODAY, 5)  # 2026-11-30: 5 working days after Monday 2026-11-23
RULE = "SHANDONG_ORDINARY_150"

TASKS = """
query Tasks($filter: TaskFilter, $first: Int = 50, $after: String) {
  tasks(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id kind department regionCode category openedOn dueOn state overdue workingDaysLeft
      answer answerCategory answeredOn answeredBy note
      warning { id rule ruleDescription month }
      person { id regionCode }
    } }
  }
}
"""

ANSWER = """
mutation Answer($id: ID!, $answer: TaskAnswer!, $category: ReliefCategory, $note: String) {
  answerTask(taskId: $id, answer: $answer, category: $category, note: $note) {
    reliefStatusCreated
    task { id kind department state overdue dueOn workingDaysLeft answer answerCategory
           answeredOn answeredBy note }
  }
}
"""


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


def token(gateway: Harness, dept: str, region: str, subject: str | None = None) -> str:
    level = {2: "province", 4: "city", 6: "county"}[len(region)]
    return gateway.token(dept, level, region, subject=subject or f"{dept}-{region}")


# ---------------------------------------------------------------------------- data
async def resident(gateway: Harness, n: int, county: str) -> tuple[Someone, uuid.UUID]:
    """An ordinary resident (no relief identity), as public security's household register
    reports them."""
    person = someone(n, county)
    row = {"姓名": person.name, "身份证号码": person.id_number, "行政区划代码": county}
    caller = token(gateway, "public_security", county)
    result = await pushed(gateway, caller, [row], feed="household_registration")
    assert result["counts"]["rowsAccepted"] == 1, result
    return person, await person_id(gateway, person.id_number)


async def pushed_warning(
    gateway: Harness,
    person: uuid.UUID,
    county: str,
    *,
    departments: tuple[str, ...] = ("civil_affairs",),
    due_on: date = DUE,
    status: str = "OPEN",
    rule: str = RULE,
) -> dict[str, uuid.UUID]:
    """Stands in for the warning run: a warning about ``person`` and its WARNING_REVIEW tasks
    (source ``warning:<id>``) for ``departments`` of ``county``. Returns task ids by department."""
    run_id, warning_id = uuid.uuid4(), uuid.uuid4()
    tasks = {department: uuid.uuid4() for department in departments}
    answered = status == "ANSWERED"
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(WarningRun).values(
                id=run_id,
                month="2026-10",
                province="shandong",
                started_at=now_utc(),
                finished_at=now_utc(),
                status="COMPLETED",
                triggered_by="test",
                warnings_created=1,
                tasks_opened=len(tasks),
                thresholds="{}",
            )
        )
        await connection.execute(
            insert(CostWarning).values(
                id=warning_id,
                run_id=run_id,
                month="2026-10",
                year=2026,
                person_id=person,
                county_code=county,
                rule=rule,
                measure="personal_burden",
                figure=Decimal("61000.00"),
                threshold=Decimal("59835.00"),
                attention="province",
                created_at=now_utc(),
            )
        )
        for department, task_id in tasks.items():
            await connection.execute(
                insert(Task).values(
                    id=task_id,
                    kind="WARNING_REVIEW",
                    department=department,
                    county_code=county,
                    person_id=person,
                    source_key=f"warning:{warning_id}",
                    warning_id=warning_id,
                    opened_on=due_on - timedelta(days=7),
                    due_on=due_on,
                    status=status,
                    answer="NOT_ELIGIBLE" if answered else None,
                    answered_on=due_on if answered else None,
                    answered_by="test-clerk" if answered else None,
                )
            )
        await refresh_places(connection, [person])  # as the warning run does (issue 14)
    return tasks


async def verification_task(
    gateway: Harness, person: uuid.UUID, county: str, *, category: str = "MINIMUM_LIVING"
) -> uuid.UUID:
    """An IDENTITY_VERIFICATION task as a civil affairs list opens it (see tests/test_tasks.py
    for the lists themselves)."""
    task_id = uuid.uuid4()
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(Task).values(
                id=task_id,
                kind="IDENTITY_VERIFICATION",
                department="medical_insurance",
                county_code=county,
                person_id=person,
                source_key=f"batch:{uuid.uuid4()}",
                category=category,
                opened_on=TODAY,
                due_on=DUE,
                status="OPEN",
            )
        )
        await refresh_places(connection, [person])  # as a completed list does (issue 14)
    return task_id


async def stored_task(gateway: Harness, task_id: uuid.UUID) -> Any:
    async with gateway.runtime.engine.connect() as connection:
        return (await connection.execute(select(*Task.__table__.c).where(Task.id == task_id))).one()


async def statuses_of(gateway: Harness, person: uuid.UUID) -> list[Any]:
    async with gateway.runtime.engine.connect() as connection:
        found = await connection.execute(
            select(*ReliefStatus.__table__.c)
            .where(ReliefStatus.person_id == person)
            .order_by(ReliefStatus.id)
        )
        return list(found.all())


async def listed(
    gateway: Harness, caller: str, task_filter: dict[str, Any] | None = None, **variables: Any
) -> dict[str, Any]:
    body = await gateway.query(caller, TASKS, {"filter": task_filter, **variables})
    assert "errors" not in body, body["errors"]
    connection: dict[str, Any] = body["data"]["tasks"]
    return connection


async def answered(
    gateway: Harness,
    caller: str,
    task_id: uuid.UUID | str,
    answer: str,
    category: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    variables = {"id": str(task_id), "answer": answer, "category": category, "note": note}
    return await gateway.query(caller, ANSWER, variables)


def answer_of(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["answerTask"]
    return result


# ============================================================================ access
async def test_health_has_no_tasks(gw: Harness) -> None:
    health = token(gw, "health", COUNTY)
    body = await gw.query(health, TASKS)
    assert codes(body) == {("tasks",): "FORBIDDEN"}
    body = await answered(gw, health, uuid.uuid4(), "NOT_ELIGIBLE")
    assert codes(body) == {("answerTask",): "FORBIDDEN"}


async def test_each_department_sees_its_own_tasks_in_its_jurisdiction(gw: Harness) -> None:
    here, there = "370202", "370203"  # 青岛市市南区, 市北区: this test's own counties
    _, local = await resident(gw, 300, here)
    _, neighbour = await resident(gw, 301, there)
    _, moved = await resident(gw, 302, there)
    civil_here = (await pushed_warning(gw, local, here))["civil_affairs"]
    civil_there = (await pushed_warning(gw, neighbour, there))["civil_affairs"]
    rural = ("rural_revitalization",)
    rural_here = (await pushed_warning(gw, local, here, departments=rural, rule="R2"))[rural[0]]
    verify_here = await verification_task(gw, local, here)
    # Pushed to this county, but the person now lives in the next one: the task is listed, and
    # the push keeps the person in the clerk's rows (issue 14: Person(pushed; places:
    # addressed) — the department that must answer sees whom it answers for).
    civil_moved = (await pushed_warning(gw, moved, here))["civil_affairs"]

    def ids(connection: dict[str, Any]) -> set[str]:
        return {node["id"] for node in nodes(connection)}

    expected = {
        ("civil_affairs", here): {civil_here, civil_moved},
        ("civil_affairs", "3702"): {civil_here, civil_there, civil_moved},
        ("rural_revitalization", here): {rural_here},
        ("medical_insurance", here): {civil_here, rural_here, verify_here, civil_moved},
        ("medical_insurance", "3702"): {
            civil_here, civil_there, rural_here, verify_here, civil_moved,
        },
    }  # fmt: skip
    for (department, region), tasks in expected.items():
        found = await listed(gw, token(gw, department, region))
        assert ids(found) == {str(t) for t in tasks}, (department, region)
        assert found["totalCount"] == len(tasks), (department, region)

    civil = token(gw, "civil_affairs", here)
    by_id = {node["id"]: node for node in nodes(await listed(gw, civil))}
    assert by_id[str(civil_here)]["person"] == {"id": str(local), "regionCode": here}
    assert by_id[str(civil_moved)]["person"] == {"id": str(moved), "regionCode": there}
    # Rural revitalisation holds none of its categories for this person: it sees them because
    # the task was pushed to it (Person(pushed)).
    (pushed_to_rural,) = nodes(await listed(gw, token(gw, "rural_revitalization", here)))
    assert pushed_to_rural["person"] == {"id": str(local), "regionCode": here}

    # The hub may filter by department; a county department may not look at another's.
    hub = token(gw, "medical_insurance", "37")
    civil_only = await listed(gw, hub, {"department": "CIVIL_AFFAIRS", "regionPrefix": "3702"})
    assert ids(civil_only) == {str(civil_here), str(civil_there), str(civil_moved)}
    own = await listed(gw, civil, {"department": "CIVIL_AFFAIRS"})
    assert ids(own) == {str(civil_here), str(civil_moved)}
    body = await gw.query(civil, TASKS, {"filter": {"department": "RURAL_REVITALIZATION"}})
    assert codes(body) == {("tasks",): "FORBIDDEN"}
    kinds = await listed(gw, hub, {"kind": "IDENTITY_VERIFICATION", "regionPrefix": here})
    assert ids(kinds) == {str(verify_here)}


@pytest.mark.parametrize(
    ("task_filter", "variables"),
    [
        ({"regionPrefix": "3"}, {}),
        ({"regionPrefix": "3702021"}, {}),
        ({"regionPrefix": "37a2"}, {}),
        (None, {"first": -1}),
        (None, {"first": 100_000}),
        (None, {"after": "not-a-cursor"}),
    ],
    ids=["short-prefix", "long-prefix", "non-digit", "negative-first", "huge-first", "cursor"],
)
async def test_bad_listing_arguments_are_refused(
    gw: Harness, task_filter: dict[str, Any] | None, variables: dict[str, Any]
) -> None:
    body = await gw.query(
        token(gw, "civil_affairs", COUNTY), TASKS, {"filter": task_filter, **variables}
    )
    _, code, message = only_error(body)
    assert code == "BAD_USER_INPUT"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message)


# ============================================================================ states
async def test_states_deadlines_and_order_in_the_list(gw: Harness) -> None:
    """Today is Monday 2026-11-23; due soon = due by Wednesday 2026-11-25 (2 working days)."""
    county = "370113"  # 济南市长清区: this test's own county
    cases = [
        # (due_on, stored status, state, overdue, working days left)
        (date(2026, 11, 20), "OPEN", "OVERDUE", True, -1),
        (date(2026, 11, 20), "ANSWERED", "ANSWERED", False, None),
        (date(2026, 11, 23), "OPEN", "DUE_SOON", False, 0),  # due today: not overdue
        (date(2026, 11, 25), "OPEN", "DUE_SOON", False, 2),
        (date(2026, 11, 26), "OPEN", "OPEN", False, 3),
        (date(2026, 11, 30), "WAITING", "WAITING", False, 5),
    ]
    made = []
    for n, (due_on, status, *_) in enumerate(cases):
        _, person = await resident(gw, 280 + n, county)
        task = await pushed_warning(gw, person, county, due_on=due_on, status=status)
        made.append((task["civil_affairs"], person))
    civil = token(gw, "civil_affairs", county)
    found = await listed(gw, civil)
    assert found["totalCount"] == len(cases)
    listed_nodes = nodes(found)
    # Most urgent first: by due date (ties by id).
    assert [n["dueOn"] for n in listed_nodes] == sorted(c[0].isoformat() for c in cases)
    by_id = {n["id"]: n for n in listed_nodes}
    for (task_id, person), (_, _, state, overdue, left) in zip(made, cases, strict=True):
        node = by_id[str(task_id)]
        assert (node["state"], node["overdue"], node["workingDaysLeft"]) == (state, overdue, left)
        assert node["kind"] == "WARNING_REVIEW"
        assert (node["department"], node["regionCode"]) == ("CIVIL_AFFAIRS", county)
        assert node["warning"]["rule"] == RULE
        assert node["warning"]["month"] == "2026-10"
        assert "150%" in node["warning"]["ruleDescription"]  # the configured description
        assert node["person"]["id"] == str(person)

    for state in ("OPEN", "WAITING", "DUE_SOON", "OVERDUE", "ANSWERED"):
        only = await listed(gw, civil, {"state": state})
        expected = {str(t) for (t, _), case in zip(made, cases, strict=True) if case[2] == state}
        assert {n["id"] for n in nodes(only)} == expected, state
        assert only["totalCount"] == len(expected), state
    due_by_today = await listed(gw, civil, {"dueBefore": "2026-11-23"})
    assert {n["dueOn"] for n in nodes(due_by_today)} == {"2026-11-20", "2026-11-23"}

    # Pages of two follow the same order, with no task lost or repeated.
    seen: list[str] = []
    after = None
    while True:
        page = await listed(gw, civil, first=2, after=after)
        seen += [n["id"] for n in nodes(page)]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [n["id"] for n in listed_nodes]


# ============================================================================ answers
@pytest.mark.parametrize(
    ("n", "kind", "department", "answer", "note", "state"),
    [
        (150, "WARNING_REVIEW", "civil_affairs", "NOT_ELIGIBLE", None, "ANSWERED"),
        (151, "WARNING_REVIEW", "rural_revitalization", "NOT_ELIGIBLE", "收入超标", "ANSWERED"),
        (152, "IDENTITY_VERIFICATION", "medical_insurance", "IDENTITY_MARKED", None, "ANSWERED"),
        (153, "IDENTITY_VERIFICATION", "medical_insurance", "NOT_ENROLLED", "已动员", "ANSWERED"),
    ],
)
async def test_final_answers_close_the_task(
    gw: Harness, n: int, kind: str, department: str, answer: str, note: str | None, state: str
) -> None:
    _, person = await resident(gw, n, COUNTY)
    if kind == "WARNING_REVIEW":
        pushed_to = (department,)
        task_id = (await pushed_warning(gw, person, COUNTY, departments=pushed_to))[department]
    else:
        task_id = await verification_task(gw, person, COUNTY)
    clerk = token(gw, department, COUNTY, subject=f"{department}-clerk")
    result = answer_of(await answered(gw, clerk, task_id, answer, note=note))
    assert result["reliefStatusCreated"] is False
    task = result["task"]
    assert (task["state"], task["answer"], task["note"]) == (state, answer, note)
    assert (task["answeredOn"], task["answeredBy"]) == (TODAY.isoformat(), f"{department}-clerk")
    assert task["workingDaysLeft"] is None
    assert task["dueOn"] == DUE.isoformat()  # a final answer keeps the deadline it met

    again = await answered(gw, clerk, task_id, answer, note=note)
    _, code, message = only_error(again)
    assert code == "BAD_USER_INPUT"
    assert "不能再次答复" in message
    assert (await stored_task(gw, task_id)).answered_by == f"{department}-clerk"


@pytest.mark.parametrize(
    ("kind", "department", "final"),
    [
        ("WARNING_REVIEW", "civil_affairs", "NOT_ELIGIBLE"),
        ("IDENTITY_VERIFICATION", "medical_insurance", "IDENTITY_MARKED"),
    ],
)
async def test_needs_more_information_restarts_the_deadline_and_waits_for_a_final_answer(
    gw: Harness, monkeypatch: pytest.MonkeyPatch, kind: str, department: str, final: str
) -> None:
    _, person = await resident(gw, 190 + len(kind), NEIGHBOUR)
    if kind == "WARNING_REVIEW":
        task_id = (await pushed_warning(gw, person, NEIGHBOUR, due_on=TODAY))[department]
    else:
        task_id = await verification_task(gw, person, NEIGHBOUR)
    clerk = token(gw, department, NEIGHBOUR)
    waiting = answer_of(
        await answered(gw, clerk, task_id, "NEEDS_MORE_INFORMATION", note="请补充近三月收入证明")
    )["task"]
    assert (waiting["state"], waiting["answer"]) == ("WAITING", "NEEDS_MORE_INFORMATION")
    assert waiting["dueOn"] == add_working_days(TODAY, 5).isoformat()
    assert waiting["note"] == "请补充近三月收入证明"

    # Three days later the information arrives and the final answer follows.
    monkeypatch.setenv("RELIEF_TODAY", "2026-11-26")
    done = answer_of(await answered(gw, clerk, task_id, final))["task"]
    assert (done["state"], done["answer"], done["answeredOn"]) == (
        "ANSWERED",
        final,
        "2026-11-26",
    )


async def test_recognition_creates_the_relief_status_with_its_provenance(gw: Harness) -> None:
    someone_here, person = await resident(gw, 220, COUNTY)
    task_id = (await pushed_warning(gw, person, COUNTY))["civil_affairs"]
    civil = token(gw, "civil_affairs", COUNTY, subject="ca-clerk")
    result = answer_of(
        await answered(gw, civil, task_id, "RECOGNIZED", "MINIMUM_LIVING", "入户核查属实")
    )
    assert result["reliefStatusCreated"] is True
    assert (result["task"]["state"], result["task"]["answerCategory"]) == (
        "ANSWERED",
        "MINIMUM_LIVING",
    )

    body = await gw.query(civil, PERSON, {"id": someone_here.id_number})
    assert "errors" not in body, body["errors"]
    (status,) = body["data"]["person"]["reliefStatuses"]
    assert status["category"] == "MINIMUM_LIVING"
    assert status["sourceDepartment"] == "CIVIL_AFFAIRS"
    assert (status["validFrom"], status["validTo"]) == (TODAY.isoformat(), None)
    provenance = status["provenance"]
    assert (provenance["channel"], provenance["department"], provenance["line"]) == (
        "ANSWER",
        "CIVIL_AFFAIRS",
        1,
    )
    (stored,) = await statuses_of(gw, person)
    assert (stored.recognized_on, stored.listed_on) == (TODAY, TODAY)
    assert (await stored_task(gw, task_id)).relief_status_id == stored.id

    # The new identity reaches medical insurance like any list (004 §1).
    mib = nodes(await listed(gw, token(gw, "medical_insurance", COUNTY),
                             {"kind": "IDENTITY_VERIFICATION"}))  # fmt: skip
    mine = [n for n in mib if n["person"] and n["person"]["id"] == str(person)]
    assert [(n["category"], n["dueOn"]) for n in mine] == [("MINIMUM_LIVING", DUE.isoformat())]


async def test_rural_revitalisation_recognises_a_monitored_person(gw: Harness) -> None:
    _, person = await resident(gw, 221, COUNTY)
    task_id = (await pushed_warning(gw, person, COUNTY, departments=("rural_revitalization",)))[
        "rural_revitalization"
    ]
    rural = token(gw, "rural_revitalization", COUNTY)
    result = answer_of(
        await answered(gw, rural, task_id, "RECOGNIZED", "MONITORED_SUDDEN_HARDSHIP")
    )
    assert result["reliefStatusCreated"] is True
    (stored,) = await statuses_of(gw, person)
    assert (stored.category, stored.source_department, stored.valid_to) == (
        "MONITORED_SUDDEN_HARDSHIP",
        "rural_revitalization",
        None,
    )


async def test_recognition_of_a_higher_tier_ends_the_held_one(gw: Harness) -> None:
    """身份变更 as a list row would make it: 低保边缘 held since March, recognised 低保 today."""
    edge = someone(222, COUNTY)
    await pushed(gw, token(gw, "civil_affairs", COUNTY), [identity(edge, "低保边缘家庭成员")])
    person = await person_id(gw, edge.id_number)
    task_id = (await pushed_warning(gw, person, COUNTY))["civil_affairs"]
    civil = token(gw, "civil_affairs", COUNTY)
    answer_of(await answered(gw, civil, task_id, "RECOGNIZED", "MINIMUM_LIVING"))
    held = {(s.category, s.valid_from, s.valid_to) for s in await statuses_of(gw, person)}
    assert held == {
        ("MINIMUM_LIVING_EDGE", date(2026, 3, 1), TODAY - timedelta(days=1)),
        ("MINIMUM_LIVING", TODAY, None),
    }


async def test_a_recognition_already_listed_today_is_linked_not_repeated(gw: Harness) -> None:
    listed_today = someone(223, COUNTY)
    civil = token(gw, "civil_affairs", COUNTY)
    await pushed(gw, civil, [identity(listed_today, "低保对象", TODAY.isoformat())])
    person = await person_id(gw, listed_today.id_number)
    task_id = (await pushed_warning(gw, person, COUNTY))["civil_affairs"]
    result = answer_of(await answered(gw, civil, task_id, "RECOGNIZED", "MINIMUM_LIVING"))
    assert result["reliefStatusCreated"] is False
    (stored,) = await statuses_of(gw, person)
    assert (await stored_task(gw, task_id)).relief_status_id == stored.id


# ============================================================================ refusals
@dataclass(frozen=True)
class Refusal:
    kind: str  # the task's kind
    owner: str  # department the task is pushed to
    county: str  # the task's county
    caller: tuple[str, str]  # (department, region) answering
    answer: str
    category: str | None = None
    note: str | None = None
    task_id: str | None = None  # instead of the task's own id
    says: str = ""


REFUSALS = {
    "wrong-answer-for-a-warning": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "IDENTITY_MARKED",
        says="只能答复",
    ),
    "recognition-of-a-verification": Refusal(
        "IDENTITY_VERIFICATION", "medical_insurance", COUNTY, ("medical_insurance", COUNTY),
        "RECOGNIZED", "MINIMUM_LIVING", says="只能答复",
    ),
    "recognition-without-category": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "RECOGNIZED",
        says="category",
    ),
    "category-with-not-eligible": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "NOT_ELIGIBLE",
        "MINIMUM_LIVING", says="category",
    ),
    "category-with-identity-marked": Refusal(
        "IDENTITY_VERIFICATION", "medical_insurance", COUNTY, ("medical_insurance", COUNTY),
        "IDENTITY_MARKED", "MINIMUM_LIVING", says="category",
    ),
    "category-of-rural-revitalisation": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "RECOGNIZED",
        "RETURNED_TO_POVERTY", says="本部门不认定“返贫致贫人口”",
    ),
    "category-of-civil-affairs": Refusal(
        "WARNING_REVIEW", "rural_revitalization", COUNTY, ("rural_revitalization", COUNTY),
        "RECOGNIZED", "MINIMUM_LIVING", says="本部门不认定“低保对象”",
    ),
    "category-of-the-disabled-federation": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "RECOGNIZED",
        "SEVERE_DISABILITY", says="本部门不认定",
    ),
    "more-information-without-note": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY),
        "NEEDS_MORE_INFORMATION", note="   ", says="note",
    ),
    "note-too-long": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "NOT_ELIGIBLE",
        note="说" * 501, says="500",
    ),
    "another-departments-task": Refusal(
        "WARNING_REVIEW", "rural_revitalization", COUNTY, ("civil_affairs", COUNTY),
        "NOT_ELIGIBLE", says="没有这个任务",
    ),
    "another-countys-task": Refusal(
        "WARNING_REVIEW", "civil_affairs", NEIGHBOUR, ("civil_affairs", COUNTY), "NOT_ELIGIBLE",
        says="没有这个任务",
    ),
    "the-hub-answering-for-civil-affairs": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("medical_insurance", "37"), "NOT_ELIGIBLE",
        says="没有这个任务",
    ),
    "out-of-jurisdiction-id": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", "140105"), "NOT_ELIGIBLE",
        says="没有这个任务",
    ),
    "absent-id": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "NOT_ELIGIBLE",
        task_id=str(uuid.UUID(int=42)), says="没有这个任务",
    ),
    "malformed-id": Refusal(
        "WARNING_REVIEW", "civil_affairs", COUNTY, ("civil_affairs", COUNTY), "NOT_ELIGIBLE",
        task_id="42", says="无效",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
async def test_refused_answers_change_nothing(gw: Harness, case: str) -> None:
    refusal = REFUSALS[case]
    _, person = await resident(gw, 230 + list(REFUSALS).index(case), refusal.county)
    if refusal.kind == "WARNING_REVIEW":
        task_id = (await pushed_warning(gw, person, refusal.county,
                                        departments=(refusal.owner,)))[refusal.owner]  # fmt: skip
    else:
        task_id = await verification_task(gw, person, refusal.county)
    before = await stored_task(gw, task_id)
    statuses = await statuses_of(gw, person)
    department, region = refusal.caller
    body = await answered(
        gw,
        token(gw, department, region),
        refusal.task_id or task_id,
        refusal.answer,
        refusal.category,
        refusal.note,
    )
    path, code, message = only_error(body)
    assert (path, code) == (("answerTask",), "BAD_USER_INPUT")
    assert refusal.says in message
    assert str(person) not in message
    assert await stored_task(gw, task_id) == before
    assert await statuses_of(gw, person) == statuses


async def test_a_recognition_after_a_final_answer_is_refused(gw: Harness) -> None:
    _, person = await resident(gw, 260, COUNTY)
    task_id = (await pushed_warning(gw, person, COUNTY))["civil_affairs"]
    civil = token(gw, "civil_affairs", COUNTY)
    answer_of(await answered(gw, civil, task_id, "NOT_ELIGIBLE"))
    body = await answered(gw, civil, task_id, "RECOGNIZED", "MINIMUM_LIVING")
    assert only_error(body)[1] == "BAD_USER_INPUT"
    assert await statuses_of(gw, person) == []
    assert (await stored_task(gw, task_id)).answer == "NOT_ELIGIBLE"


# ============================================================================ pushes
async def test_a_pushed_list_opens_verification_tasks_for_medical_insurance(gw: Harness) -> None:
    """submitRecords is the same pipeline as a file: a new identity is verified within 5."""
    county = "370114"  # 济南市章丘区: this test's own county
    new, leaving = someone(270, county), someone(271, county)
    civil = token(gw, "civil_affairs", county)
    exit_row = identity(leaving, "低保对象", exited_on="2026-10-31")
    await pushed(gw, civil, [identity(new, "特困人员"), exit_row])
    mib = nodes(await listed(gw, token(gw, "medical_insurance", county)))
    assert [(n["kind"], n["category"], n["openedOn"], n["dueOn"], n["state"]) for n in mib] == [
        ("IDENTITY_VERIFICATION", "EXTREME_POVERTY", TODAY.isoformat(), DUE.isoformat(), "OPEN")
    ]
    assert mib[0]["person"]["id"] == str(await person_id(gw, new.id_number))
    assert nodes(await listed(gw, civil)) == []  # medical insurance's task, not theirs
    # Answered by medical insurance, as a county would.
    done = answer_of(
        await answered(gw, token(gw, "medical_insurance", county), mib[0]["id"], "IDENTITY_MARKED")
    )
    assert done["task"]["state"] == "ANSWERED"
