"""The exchange over GraphQL: real-time pushes (``submitRecords``), the department's batches
(``batches``), anomalies sent back for verification (``anomalies``, ``resolveAnomaly``) and the
under-verification mark they put on a person (``Person.underVerification``).

Rules (DOMAIN.md): 1 name and ID number on every record; 2 county departments push their
changes, a push is a batch like a file; 3 data that disagree go back to the source, which
confirms within 10 working days; 4 anomalies are returned to the source department and, while
open, the person is under verification (003 §3).

Every test runs on SQLite and PostgreSQL, on a gateway of this module alone
(``exchange_gateway``); each test pushes its own synthetic people, so the order of the tests
does not matter.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, update

from gateway.domain.workdays import add_working_days
from gateway.storage.models import IngestBatch
from schema.exchange import MAX_PUSH_RECORDS
from tests.exchange_support import (
    ANOMALIES,
    BATCHES,
    CITY,
    COUNTY,
    NEIGHBOUR,
    PERSON,
    RESOLVE,
    SUBMIT,
    TODAY,
    Someone,
    codes,
    county_token,
    enrollment,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    insert_anomaly,
    leaks,
    nodes,
    only_error,
    person_id,
    pushed,
    row_counts,
    someone,
    submit,
)
from tests.harness import Harness

CHINESE = re.compile(r"[\u4e00-\u9fff]")
DUE_ON = add_working_days(TODAY, 10)  # 003 §2: confirmed within 10 working days


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


def clerk(gateway: Harness, county: str = COUNTY, subject: str = "ca-clerk") -> str:
    return county_token(gateway, "civil_affairs", county, subject)


async def lookup(gateway: Harness, caller: str, person: Someone) -> dict[str, Any] | None:
    body = await gateway.query(caller, PERSON, {"id": person.id_number})
    assert "errors" not in body, body["errors"]
    found: dict[str, Any] | None = body["data"]["person"]
    return found


# ============================================================================ submitRecords
@pytest.mark.parametrize(
    ("english", "first"), [(False, 0), (True, 10)], ids=["中文列名", "english"]
)
async def test_push_stores_identities_with_their_provenance(
    gw: Harness, english: bool, first: int
) -> None:
    people = [someone(first + i) for i in range(3)]
    labels = ["低保对象", "特困人员", "孤儿"]
    records = [
        identity(p, label, f"2026-0{i + 1}-15", english=english)
        for i, (p, label) in enumerate(zip(people, labels, strict=True))
    ]
    caller = clerk(gw, subject=f"ca-push-{english}")

    result = await pushed(gw, caller, records)

    counts = {
        "rowsTotal": 3, "rowsAccepted": 3, "rowsRejected": 0, "rowsUnchanged": 0, "added": 3,
        "exited": 0, "identityChanged": 0, "updated": 0, "unmatched": 0, "anomaliesOpened": 0,
    }  # fmt: skip
    assert result["dryRun"] is False
    assert result["counts"] == counts
    assert result["rejections"] == []
    batch = result["batch"]
    assert batch["counts"] == counts
    assert uuid.UUID(batch["id"])
    assert (batch["department"], batch["feed"], batch["channel"]) == (
        "CIVIL_AFFAIRS",
        "identities",
        "PUSH",
    )
    assert batch["fileName"] is None
    assert batch["region"] == COUNTY
    # The subject as the gateway holds it: canonical (issue 16: one person, one subject).
    assert batch["submittedBy"] == f"ca-push-{english}".casefold()
    assert batch["status"] == "COMPLETED"
    assert batch["finishedAt"] is not None

    categories = ["MINIMUM_LIVING", "EXTREME_POVERTY", "ORPHAN"]
    for line, (person, category) in enumerate(zip(people, categories, strict=True), start=1):
        stored = await lookup(gw, caller, person)
        assert stored is not None, f"line {line} not stored"
        assert stored["name"] == person.name
        assert stored["regionCode"] == COUNTY
        assert stored["underVerification"] is False
        assert stored["reliefStatuses"] == [
            {
                "category": category,
                "sourceDepartment": "CIVIL_AFFAIRS",
                "validFrom": f"2026-0{line}-15",
                "validTo": None,
                "provenance": {
                    "department": "CIVIL_AFFAIRS",
                    "channel": "PUSH",
                    "batchId": batch["id"],
                    "fileName": None,
                    "line": line,  # the record's position in the push, from 1
                    "receivedAt": batch["receivedAt"],
                },
            }
        ]


async def test_pushing_the_same_records_again_changes_nothing(gw: Harness) -> None:
    people = [someone(20 + i) for i in range(4)]
    records = [identity(p, "低保边缘家庭成员", "2025-11-01") for p in people]
    records[2] = identity(people[2], "特困人员", "2025-06-01", exited_on="2026-10-31")
    caller = clerk(gw)
    first = await pushed(gw, caller, records)
    assert first["counts"]["rowsAccepted"] == 4
    before = await row_counts(gw)
    stored_before = [await lookup(gw, caller, p) for p in people]

    again = await pushed(gw, caller, records)

    assert again["counts"] == {
        "rowsTotal": 4, "rowsAccepted": 4, "rowsRejected": 0, "rowsUnchanged": 4, "added": 0,
        "exited": 0, "identityChanged": 0, "updated": 0, "unmatched": 0, "anomaliesOpened": 0,
    }  # fmt: skip
    assert again["batch"]["id"] != first["batch"]["id"]
    after = await row_counts(gw)
    assert after == {**before, "ingest_batch": before["ingest_batch"] + 1}
    # Nothing was rewritten: the statuses still point at the push that brought them.
    assert [await lookup(gw, caller, p) for p in people] == stored_before
    for stored in stored_before:
        assert stored is not None
        assert {s["provenance"]["batchId"] for s in stored["reliefStatuses"]} == {
            first["batch"]["id"]
        }


async def test_bad_rows_are_rejected_with_line_column_value_and_reason(gw: Harness) -> None:
    good, bad_id, bad_date, bad_label, good_too = (someone(30 + i) for i in range(5))
    outside = someone(36, NEIGHBOUR)
    wrong_check = bad_id.id_number[:17] + ("0" if bad_id.id_number[17] != "0" else "1")
    records = [
        identity(good),
        {**identity(bad_id), "身份证号码": wrong_check},
        identity(bad_date, recognized_on="2026-13-45"),
        identity(bad_label, "不存在的类别"),
        identity(good_too, english=True),
        identity(outside),
        "不是对象",
        {**identity(someone(37)), "name": "测试另名"},  # 姓名 and name disagree
    ]
    before = await row_counts(gw)

    result = await pushed(gw, clerk(gw), records)

    assert result["counts"]["rowsTotal"] == 8
    assert result["counts"]["rowsAccepted"] == 2
    assert result["counts"]["rowsRejected"] == 6
    assert result["counts"]["added"] == 2
    rejections = {(r["line"], r["column"]): r for r in result["rejections"]}
    assert {line for line, _ in rejections} == {2, 3, 4, 6, 7, 8}
    expected_values = {
        (2, "身份证号码"): wrong_check,
        (3, "认定日期"): "2026-13-45",
        (4, "人员类别"): "不存在的类别",
        (6, "行政区划代码"): NEIGHBOUR,
    }
    for key, value in expected_values.items():
        assert key in rejections, f"no rejection at line/column {key}: {result['rejections']}"
        assert rejections[key]["value"] == value
    for rejection in result["rejections"]:
        assert CHINESE.search(rejection["reason"]), rejection  # a clerk reads it
    assert "不在本部门辖区内" in rejections[(6, "行政区划代码")]["reason"]

    # The good rows are stored, the bad ones are not.
    after = await row_counts(gw)
    assert after["person"] == before["person"] + 2
    assert after["relief_status"] == before["relief_status"] + 2
    insurer = gw.token("medical_insurance", "city", COUNTY[:4])
    assert await lookup(gw, insurer, good) is not None
    assert await lookup(gw, insurer, good_too) is not None
    for rejected in (bad_date, bad_label, outside, someone(37)):
        assert await lookup(gw, insurer, rejected) is None


@pytest.mark.parametrize(
    ("dept", "feed", "own"),
    [
        ("civil_affairs", "enrollments", "identities"),
        ("civil_affairs", "no_such_feed", "identities"),
        ("rural_revitalization", "vital_events", "identities"),
        ("medical_insurance", "identities", "enrollments, settlements"),
        ("public_security", "identities", "household_registration"),
    ],
)
async def test_a_push_to_another_departments_feed_is_refused(
    gw: Harness, dept: str, feed: str, own: str
) -> None:
    person = someone(40)
    before = await row_counts(gw)
    body = await submit(gw, county_token(gw, dept, COUNTY), [identity(person)], feed=feed)
    assert body["data"] is None
    path, code, message = only_error(body)
    assert (path, code) == (("submitRecords",), "BAD_USER_INPUT")
    assert feed in message
    assert own in message  # lists the caller's own feeds
    assert await row_counts(gw) == before


async def test_push_size_limits(gw: Harness) -> None:
    caller = clerk(gw)
    before = await row_counts(gw)

    empty = await submit(gw, caller, [])
    assert only_error(empty)[:2] == (("submitRecords",), "BAD_USER_INPUT")

    many = [identity(someone(n % 1000)) for n in range(MAX_PUSH_RECORDS + 1)]
    too_many = await submit(gw, caller, many)
    path, code, message = only_error(too_many)
    assert (path, code) == (("submitRecords",), "BAD_USER_INPUT")
    assert str(MAX_PUSH_RECORDS) in message
    assert await row_counts(gw) == before

    # Exactly the limit is accepted (checked as a dry run: nothing stored).
    at_limit = await submit(gw, caller, many[:MAX_PUSH_RECORDS], dry_run=True)
    assert "errors" not in at_limit, at_limit["errors"]
    assert at_limit["data"]["submitRecords"]["counts"]["rowsTotal"] == MAX_PUSH_RECORDS
    assert await row_counts(gw) == before


async def test_dry_run_reports_counts_and_stores_nothing(gw: Harness) -> None:
    people = [someone(50 + i) for i in range(3)]
    records = [identity(p) for p in people] + [identity(someone(53, NEIGHBOUR))]
    caller = clerk(gw)
    before = await row_counts(gw)
    listed = await gw.query(caller, BATCHES)

    body = await submit(gw, caller, records, dry_run=True)

    assert "errors" not in body, body["errors"]
    result = body["data"]["submitRecords"]
    assert result["dryRun"] is True
    assert result["batch"] is None
    assert result["counts"]["rowsTotal"] == 4
    assert result["counts"]["added"] == 3
    assert result["counts"]["rowsRejected"] == 1
    assert [r["line"] for r in result["rejections"]] == [4]
    assert await row_counts(gw) == before
    assert await gw.query(caller, BATCHES) == listed
    for person in people:
        assert await lookup(gw, caller, person) is None
    # The real push afterwards counts the same.
    real = await pushed(gw, caller, records)
    assert real["counts"] == result["counts"]


@pytest.mark.parametrize("dept", ["big_data", "human_resources"])
async def test_departments_without_the_grant_cannot_push(gw: Harness, dept: str) -> None:
    before = await row_counts(gw)
    body = await submit(gw, county_token(gw, dept, COUNTY), [identity(someone(60))])
    assert body["data"] is None
    assert only_error(body)[:2] == (("submitRecords",), "FORBIDDEN")
    assert await row_counts(gw) == before
    assert await lookup(gw, clerk(gw), someone(60)) is None


async def test_a_mutation_over_get_is_refused_and_not_run(gw: Harness) -> None:
    person = someone(61)
    before = await row_counts(gw)
    response = await gw.client.get(
        "/graphql",
        params={
            "query": SUBMIT,
            "variables": json.dumps({"feed": "identities", "records": [identity(person)]}),
        },
        headers={"Authorization": f"Bearer {clerk(gw)}", "X-Purpose": "supervision"},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert await row_counts(gw) == before
    assert await lookup(gw, clerk(gw), person) is None


# ============================================================================ batches
# City 3702 (青岛市) is used by the batch tests alone: what is listed there is exactly this.
BATCH_CITY = "3702"
B_COUNTY, B_SIBLING, B_THIRD = "370211", "370212", "370213"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
async def batch_world(exchange_gateway: Harness) -> dict[str, str]:  # noqa: F811
    """Batches with chosen receipt times (UTC), keyed by a short name:

    b1..b3 civil affairs in three counties of the city, b4 received at 01:30 Beijing time on
    23 November (still 22 November in UTC), f1 a failed batch, r1 rural revitalisation's."""
    gw = exchange_gateway
    pushes = {
        "b1": ("civil_affairs", B_COUNTY, [someone(100, B_COUNTY), someone(101, B_COUNTY)]),
        "b2": ("civil_affairs", B_COUNTY, [someone(102, B_COUNTY)]),
        "b3": ("civil_affairs", B_SIBLING, [someone(103, B_SIBLING)]),
        "b4": ("civil_affairs", B_THIRD, [someone(104, B_THIRD)]),
        "r1": ("rural_revitalization", B_COUNTY, [someone(105, B_COUNTY)]),
    }
    received = {
        "b1": "2026-11-20T02:00:00",
        "b2": "2026-11-21T02:00:00",
        "b3": "2026-11-22T10:00:00",
        "b4": "2026-11-22T17:30:00",
        "r1": "2026-11-21T05:00:00",
    }
    ids: dict[str, str] = {}
    for key, (dept, county, people) in pushes.items():
        label = "脱贫人口" if dept == "rural_revitalization" else "低保对象"
        result = await pushed(
            gw, county_token(gw, dept, county), [identity(p, label) for p in people]
        )
        ids[key] = result["batch"]["id"]
    failed = uuid.uuid4()
    ids["f1"] = str(failed)
    async with gw.runtime.engine.begin() as connection:
        for key, at in received.items():
            await connection.execute(
                update(IngestBatch)
                .where(IngestBatch.id == uuid.UUID(ids[key]))
                .values(received_at=_utc(at), finished_at=_utc(at))
            )
        await connection.execute(
            insert(IngestBatch).values(
                id=failed, department="civil_affairs", feed="identities", channel="PUSH",
                file_name=None, content_sha256=None, region=B_SIBLING, submitted_by="test",
                received_at=_utc("2026-11-19T03:00:00"), finished_at=None, status="FAILED",
                rows_total=0, rows_accepted=0, rows_rejected=0, rows_unchanged=0, added=0,
                exited=0, identity_changed=0, updated=0, unmatched=0, anomalies_opened=0,
                error="interrupted",
            )
        )  # fmt: skip
    return ids


async def _batch_ids(
    gw: Harness, caller: str, batch_filter: dict[str, Any] | None = None
) -> tuple[list[str], int]:
    body = await gw.query(caller, BATCHES, {"filter": batch_filter, "first": 200})
    assert "errors" not in body, body["errors"]
    connection = body["data"]["batches"]
    return [node["id"] for node in nodes(connection)], connection["totalCount"]


def _named(world: dict[str, str], names: str) -> list[str]:
    return [world[name] for name in names.split()]


@pytest.mark.parametrize(
    ("dept", "level", "region", "expected"),
    [
        ("civil_affairs", "city", BATCH_CITY, "b4 b3 b2 b1 f1"),  # newest first
        ("civil_affairs", "province", "37", "b4 b3 b2 b1 f1"),
        ("civil_affairs", "county", B_COUNTY, "b2 b1"),
        ("civil_affairs", "county", B_SIBLING, "b3 f1"),
        ("rural_revitalization", "county", B_COUNTY, "r1"),
        ("rural_revitalization", "city", BATCH_CITY, "r1"),
        ("medical_insurance", "city", BATCH_CITY, ""),
        ("civil_affairs", "city", "3701", ""),
        ("civil_affairs", "province", "14", ""),
    ],
)
async def test_batches_are_the_callers_department_and_jurisdiction(
    gw: Harness, batch_world: dict[str, str], dept: str, level: str, region: str, expected: str
) -> None:
    listed, total = await _batch_ids(gw, gw.token(dept, level, region))
    mine = [batch for batch in listed if batch in batch_world.values()]
    assert mine == _named(batch_world, expected)
    if region.startswith(BATCH_CITY):
        assert listed == mine  # nothing else lies in that city
        assert total == len(mine)
    else:
        assert total == len(listed)


async def test_batch_nodes_describe_the_push(gw: Harness, batch_world: dict[str, str]) -> None:
    body = await gw.query(gw.token("civil_affairs", "county", B_COUNTY), BATCHES)
    by_id = {node["id"]: node for node in nodes(body["data"]["batches"])}
    b1 = by_id[batch_world["b1"]]
    assert b1["department"] == "CIVIL_AFFAIRS"
    assert (b1["feed"], b1["channel"], b1["region"], b1["status"]) == (
        "identities",
        "PUSH",
        B_COUNTY,
        "COMPLETED",
    )
    assert b1["counts"] == {"rowsTotal": 2, "added": 2}
    assert datetime.fromisoformat(b1["receivedAt"]).replace(tzinfo=UTC) == _utc(
        "2026-11-20T02:00:00"
    )


async def test_receipt_times_carry_their_offset(
    gw: Harness, request: pytest.FixtureRequest
) -> None:
    """A time without an offset is read as local time by clients (Beijing: 8 hours off)."""
    person = someone(70)
    caller = clerk(gw)
    result = await pushed(gw, caller, [identity(person)])
    stored = await lookup(gw, caller, person)
    assert stored is not None
    times = [
        result["batch"]["receivedAt"],
        result["batch"]["finishedAt"],
        stored["reliefStatuses"][0]["provenance"]["receivedAt"],
    ]
    for value in times:
        assert datetime.fromisoformat(value).utcoffset() is not None, value


async def test_batches_page_with_cursors(gw: Harness, batch_world: dict[str, str]) -> None:
    caller = gw.token("civil_affairs", "city", BATCH_CITY)
    everything, total = await _batch_ids(gw, caller)
    seen: list[str] = []
    after = None
    for _ in range(10):
        body = await gw.query(caller, BATCHES, {"first": 2, "after": after})
        assert "errors" not in body, body["errors"]
        connection = body["data"]["batches"]
        assert connection["totalCount"] == total
        edges = connection["edges"]
        assert len(edges) <= 2
        seen += [edge["node"]["id"] for edge in edges]
        info = connection["pageInfo"]
        assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == everything == _named(batch_world, "b4 b3 b2 b1 f1")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


# fixed ids no batch has: the parameters (so the test's ids) must be the same in every
# pytest-xdist worker
_ANY_ID = "07a8e27f4b024ac5aa81e0e7b82e6b7c"


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "!!!",
        _b64("person:" + _ANY_ID),  # another connection's cursor
        _b64(f"anomaly:2026-11-23|{_ANY_ID}"),
        _b64(f"batch:yesterday|{_ANY_ID}"),
        _b64("batch:2026-11-23T00:00:00+00:00|not-hex"),
        _b64("batch:|" + _ANY_ID),
    ],
)
async def test_a_bad_batch_cursor_is_bad_user_input(
    gw: Harness, batch_world: dict[str, str], cursor: str
) -> None:
    body = await gw.query(gw.token("civil_affairs", "city", BATCH_CITY), BATCHES, {"after": cursor})
    assert body["data"] is None
    assert only_error(body)[:2] == (("batches",), "BAD_USER_INPUT")


@pytest.mark.parametrize("first", [-1, 201])
async def test_page_size_is_bounded(gw: Harness, first: int) -> None:
    caller = clerk(gw)
    for document, root in ((BATCHES, "batches"), (ANOMALIES, "anomalies")):
        body = await gw.query(caller, document, {"first": first})
        assert only_error(body)[:2] == ((root,), "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("batch_filter", "expected"),
    [
        ({"feed": "identities"}, "b4 b3 b2 b1 f1"),
        ({"feed": "enrollments"}, ""),
        ({"status": "FAILED"}, "f1"),
        ({"status": "COMPLETED"}, "b4 b3 b2 b1"),
        ({"status": "RUNNING"}, ""),
        ({"receivedFrom": "2026-11-21"}, "b4 b3 b2"),
        ({"receivedTo": "2026-11-20"}, "b1 f1"),
        ({"receivedFrom": "2026-11-21", "receivedTo": "2026-11-21"}, "b2"),
        (
            {"receivedFrom": "2026-11-20", "receivedTo": "2026-11-21", "status": "COMPLETED"},
            "b2 b1",
        ),
        ({"receivedFrom": "2026-11-24"}, ""),
    ],
)
async def test_batch_filters(
    gw: Harness, batch_world: dict[str, str], batch_filter: dict[str, Any], expected: str
) -> None:
    listed, total = await _batch_ids(
        gw, gw.token("civil_affairs", "city", BATCH_CITY), batch_filter
    )
    assert listed == _named(batch_world, expected)
    assert total == len(listed)


@pytest.mark.parametrize(
    ("batch_filter", "expected"),
    [
        # b4 arrived at 17:30 UTC on the 22nd: 01:30 on the 23rd in Beijing, the day that counts.
        ({"receivedFrom": "2026-11-23"}, "b4"),
        ({"receivedTo": "2026-11-22"}, "b3 b2 b1 f1"),
        ({"receivedFrom": "2026-11-22", "receivedTo": "2026-11-22"}, "b3"),
    ],
)
async def test_batch_date_filters_use_beijing_days(
    gw: Harness,
    batch_world: dict[str, str],
    batch_filter: dict[str, Any],
    expected: str,
    request: pytest.FixtureRequest,
) -> None:
    listed, total = await _batch_ids(
        gw, gw.token("civil_affairs", "city", BATCH_CITY), batch_filter
    )
    assert listed == _named(batch_world, expected)
    assert total == len(listed)


@pytest.mark.parametrize("dept", ["big_data", "human_resources"])
async def test_batches_and_anomalies_need_the_grant(gw: Harness, dept: str) -> None:
    caller = gw.token(dept, "city", BATCH_CITY)
    for document, root in ((BATCHES, "batches"), (ANOMALIES, "anomalies")):
        body = await gw.query(caller, document)
        assert body["data"] is None
        assert only_error(body)[:2] == ((root,), "FORBIDDEN")


# ============================================================================ anomalies
# Counties of the anomaly tests (济南市): one per test, so each sees exactly its own anomalies.
A_SENT, A_VISIBILITY, A_LIFECYCLE, A_FILTERS, A_CLOCK = (
    "370104", "370105", "370112", "370113", "370114",
)  # fmt: skip


async def open_name_mismatch(gw: Harness, person: Someone) -> dict[str, Any]:
    """Medical insurance enrolls ``person``; civil affairs then pushes the same ID number under
    another name: a NAME_MISMATCH for civil affairs to verify. Returns civil affairs' push."""
    insurer = county_token(gw, "medical_insurance", person.county)
    await pushed(gw, insurer, [enrollment(person)], feed="enrollments")
    result = await pushed(gw, clerk(gw, person.county), [identity(person, name=person.name + "改")])
    assert result["counts"]["anomaliesOpened"] == 1, result
    return result


async def _anomalies(
    gw: Harness, caller: str, anomaly_filter: dict[str, Any] | None = None, first: int = 200
) -> tuple[list[dict[str, Any]], int]:
    body = await gw.query(caller, ANOMALIES, {"filter": anomaly_filter, "first": first})
    assert "errors" not in body, body["errors"]
    connection = body["data"]["anomalies"]
    return nodes(connection), connection["totalCount"]


async def test_a_name_mismatch_goes_back_to_the_sending_county(gw: Harness) -> None:
    person = someone(200, A_SENT)
    push = await open_name_mismatch(gw, person)

    listed, total = await _anomalies(gw, clerk(gw, A_SENT))
    assert total == 1
    (anomaly,) = listed
    assert uuid.UUID(anomaly["id"])
    assert anomaly["kind"] == "NAME_MISMATCH"
    assert anomaly["department"] == "CIVIL_AFFAIRS"
    assert anomaly["status"] == "OPEN"
    assert anomaly["openedOn"] == TODAY.isoformat()
    assert anomaly["dueOn"] == DUE_ON.isoformat() == "2026-12-07"
    assert anomaly["overdue"] is False
    assert anomaly["batchId"] == push["batch"]["id"]
    assert (anomaly["resolution"], anomaly["resolvedOn"], anomaly["resolvedBy"]) == (None,) * 3
    description = anomaly["description"]
    assert CHINESE.search(description)
    assert leaks({"d": description}, person.name, person.name + "改", person.id_number) == []
    assert person.id_number[-4:] not in description


async def test_the_anomalys_person_follows_the_callers_field_policy(gw: Harness) -> None:
    """A seeded person pushed under another name: the anomaly names the person as stored."""
    # Outside the cities the other tests push in (their counts stay exact).
    seeded = next(p for p in gw.persons if p.region_code[:4] not in {CITY, BATCH_CITY})
    county = seeded.region_code[:6]
    caller = clerk(gw, county)
    pushed_as = Someone("测试冒名", seeded.id_number, seeded.region_code)
    push = await pushed(gw, caller, [identity(pushed_as)])
    assert push["counts"]["anomaliesOpened"] == 1

    body = await gw.query(
        caller,
        "{ anomalies(first: 200) { edges { node { batchId kind "
        "person { name idNumber phone underVerification provenance { department } } } } } }",
    )
    mine = [n for n in nodes(body["data"]["anomalies"]) if n["batchId"] == push["batch"]["id"]]
    assert len(mine) == 1
    person = mine[0]["person"]
    assert person["name"] == seeded.name  # as registered, not as pushed
    assert person["idNumber"] == seeded.id_number
    if seeded.phone:
        assert person["phone"] == seeded.phone[:3] + "****" + seeded.phone[-4:]  # masked
    assert person["underVerification"] is True
    assert person["provenance"] is None  # denied to civil affairs
    index = next(i for i, n in enumerate(nodes(body["data"]["anomalies"])) if n in mine)
    assert codes(body) == {
        ("anomalies", "edges", index, "node", "person", "provenance"): "FORBIDDEN"
    }


@pytest.mark.parametrize(
    ("dept", "level", "region", "sees"),
    [
        ("civil_affairs", "county", A_VISIBILITY, True),
        ("civil_affairs", "city", A_VISIBILITY[:4], True),
        ("civil_affairs", "province", "37", True),
        ("civil_affairs", "county", NEIGHBOUR, False),  # another county
        ("civil_affairs", "city", "3702", False),
        ("medical_insurance", "county", A_VISIBILITY, False),  # other departments
        ("rural_revitalization", "county", A_VISIBILITY, False),
        ("health", "county", A_VISIBILITY, False),
    ],
)
async def test_who_sees_the_anomaly(
    gw: Harness, dept: str, level: str, region: str, sees: bool
) -> None:
    person = someone(201, A_VISIBILITY)
    await _ensure_mismatch(gw, person)
    anomaly_id = await _only_anomaly_of(gw, person)
    listed, total = await _anomalies(gw, gw.token(dept, level, region))
    ids = [a["id"] for a in listed]
    assert (anomaly_id in ids) is sees
    assert total == len(ids)


async def _ensure_mismatch(gw: Harness, person: Someone) -> None:
    caller = gw.token("medical_insurance", "county", person.county)
    if await lookup(gw, caller, person) is None:
        await open_name_mismatch(gw, person)


async def _only_anomaly_of(gw: Harness, person: Someone) -> str:
    pid = await person_id(gw, person.id_number)
    body = await gw.query(
        clerk(gw, person.county),
        "{ anomalies(first: 200) { edges { node { id person { id } } } } }",
    )
    found = [n["id"] for n in nodes(body["data"]["anomalies"]) if n["person"]["id"] == str(pid)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("dept", "level", "region"),
    [
        ("medical_insurance", "county", A_LIFECYCLE),
        ("civil_affairs", "county", A_LIFECYCLE),
        ("health", "city", A_LIFECYCLE[:4]),
    ],
)
async def test_under_verification_while_the_anomaly_is_open(
    gw: Harness, dept: str, level: str, region: str
) -> None:
    person = someone(202, A_LIFECYCLE)
    await _ensure_mismatch(gw, person)
    unrelated = someone(203, A_LIFECYCLE)
    await _ensure_person(gw, unrelated)
    query = "query($id: String!) { person(idNumber: $id) { underVerification } }"
    caller = gw.token(dept, level, region)
    for who, expected in ((person, True), (unrelated, False)):
        body = await gw.query(caller, query, {"id": who.id_number})
        assert body == {"data": {"person": {"underVerification": expected}}}


async def _ensure_person(gw: Harness, person: Someone) -> None:
    caller = clerk(gw, person.county)
    if await lookup(gw, caller, person) is None:
        await pushed(gw, caller, [identity(person)])


async def test_resolving_an_anomaly_closes_it(gw: Harness) -> None:
    person = someone(210, A_LIFECYCLE)
    await open_name_mismatch(gw, person)
    anomaly_id = await _only_anomaly_of(gw, person)
    caller = clerk(gw, A_LIFECYCLE, subject="ca-verifier-7")
    verification = "query($id: String!) { person(idNumber: $id) { underVerification } }"
    assert (await gw.query(caller, verification, {"id": person.id_number}))["data"] == {
        "person": {"underVerification": True}
    }

    body = await gw.query(
        caller,
        RESOLVE,
        {"id": anomaly_id, "resolution": "CONFIRMED_CORRECT", "note": "经入户核实, 姓名无误"},
    )

    assert "errors" not in body, body["errors"]
    assert body["data"]["resolveAnomaly"] == {
        "id": anomaly_id,
        "kind": "NAME_MISMATCH",
        "status": "RESOLVED",
        "resolution": "CONFIRMED_CORRECT",
        "resolvedOn": TODAY.isoformat(),
        "resolvedBy": "ca-verifier-7",
        "note": "经入户核实, 姓名无误",
        "overdue": False,
        "person": {"underVerification": False},  # in the same response, already lifted
    }
    assert (await gw.query(caller, verification, {"id": person.id_number}))["data"] == {
        "person": {"underVerification": False}
    }
    resolved, _ = await _anomalies(gw, caller, {"status": "RESOLVED"})
    assert anomaly_id in [a["id"] for a in resolved]
    still_open, _ = await _anomalies(gw, caller, {"status": "OPEN"})
    assert anomaly_id not in [a["id"] for a in still_open]

    again = await gw.query(caller, RESOLVE, {"id": anomaly_id, "resolution": "NOT_APPLICABLE"})
    path, code, message = only_error(again)
    assert (path, code) == (("resolveAnomaly",), "BAD_USER_INPUT")
    assert f"已于 {TODAY.isoformat()} 处理" in message
    # The first answer stands.
    resolved, _ = await _anomalies(gw, caller, {"status": "RESOLVED"})
    (mine,) = [a for a in resolved if a["id"] == anomaly_id]
    assert (mine["resolution"], mine["resolvedBy"]) == ("CONFIRMED_CORRECT", "ca-verifier-7")


async def test_resolving_is_refused_without_an_existence_oracle(gw: Harness) -> None:
    person = someone(211, A_LIFECYCLE)
    await open_name_mismatch(gw, person)
    anomaly_id = await _only_anomaly_of(gw, person)

    async def refusal(caller: str, the_id: str, resolution: str = "CORRECTED") -> str:
        body = await gw.query(caller, RESOLVE, {"id": the_id, "resolution": resolution})
        assert body["data"] is None
        path, code, message = only_error(body)
        assert (path, code) == (("resolveAnomaly",), "BAD_USER_INPUT")
        return message

    unknown = await refusal(clerk(gw, A_LIFECYCLE), str(uuid.uuid4()))
    out_of_scope = {
        "another county": await refusal(clerk(gw, NEIGHBOUR), anomaly_id),
        "another department": await refusal(
            county_token(gw, "medical_insurance", A_LIFECYCLE), anomaly_id
        ),
        "another city": await refusal(gw.token("civil_affairs", "city", "3702"), anomaly_id),
    }
    for case, message in out_of_scope.items():
        assert message == unknown, f"{case}: {message!r} differs from an unknown id's"
    assert await refusal(clerk(gw, A_LIFECYCLE), "not-a-uuid")
    system_only = await refusal(clerk(gw, A_LIFECYCLE), anomaly_id, "CORRECTED_BY_DATA")
    assert "CORRECTED_BY_DATA" in system_only
    body = await gw.query(
        clerk(gw, A_LIFECYCLE),
        RESOLVE,
        {"id": anomaly_id, "resolution": "CORRECTED", "note": "长" * 501},
    )
    assert only_error(body)[:2] == (("resolveAnomaly",), "BAD_USER_INPUT")
    forbidden = await gw.query(
        county_token(gw, "big_data", A_LIFECYCLE),
        RESOLVE,
        {"id": anomaly_id, "resolution": "CORRECTED"},
    )
    assert only_error(forbidden)[:2] == (("resolveAnomaly",), "FORBIDDEN")

    # None of that touched it.
    still_open, _ = await _anomalies(gw, clerk(gw, A_LIFECYCLE), {"status": "OPEN"})
    assert anomaly_id in [a["id"] for a in still_open]


@pytest.fixture(scope="module")
async def filter_world(exchange_gateway: Harness) -> dict[str, str]:  # noqa: F811
    """Anomalies of civil affairs in A_FILTERS: one opened by a push (due 2026-12-07), the rest
    written with chosen dates: overdue, due today, resolved long ago, another kind."""
    gw = exchange_gateway
    people = [someone(220 + i, A_FILTERS) for i in range(4)]
    await open_name_mismatch(gw, people[0])
    ids = {"pushed": await _only_anomaly_of(gw, people[0])}
    for person in people[1:]:
        await pushed(gw, clerk(gw, A_FILTERS), [identity(person)])
    pid = [await person_id(gw, p.id_number) for p in people]
    common = {"department": "civil_affairs", "county": A_FILTERS}
    ids["overdue"] = str(await insert_anomaly(gw, pid[1], due_on=date(2026, 11, 20), **common))
    ids["due_today"] = str(
        await insert_anomaly(gw, pid[2], kind="DECEASED_WITH_ACTIVE_STATUS", due_on=TODAY, **common)
    )
    ids["resolved"] = str(
        await insert_anomaly(gw, pid[3], due_on=date(2026, 11, 10), status="RESOLVED", **common)
    )
    return ids


@pytest.mark.parametrize(
    ("anomaly_filter", "expected"),
    [
        (None, "resolved overdue due_today pushed"),  # by due date
        ({"status": "OPEN"}, "overdue due_today pushed"),
        ({"status": "RESOLVED"}, "resolved"),
        ({"kind": "NAME_MISMATCH"}, "resolved overdue pushed"),
        ({"kind": "DECEASED_WITH_ACTIVE_STATUS"}, "due_today"),
        ({"kind": "BIRTH_DATE_MISMATCH"}, ""),
        ({"overdue": True}, "overdue"),  # open and due before today
        ({"overdue": False}, "resolved due_today pushed"),
        ({"overdue": True, "kind": "DECEASED_WITH_ACTIVE_STATUS"}, ""),
        ({"status": "OPEN", "kind": "NAME_MISMATCH", "overdue": False}, "pushed"),
    ],
)
async def test_anomaly_filters(
    gw: Harness, filter_world: dict[str, str], anomaly_filter: dict[str, Any] | None, expected: str
) -> None:
    listed, total = await _anomalies(gw, clerk(gw, A_FILTERS), anomaly_filter)
    assert [a["id"] for a in listed] == [filter_world[k] for k in expected.split()]
    assert total == len(listed)
    for anomaly in listed:
        assert anomaly["overdue"] is (anomaly["id"] == filter_world["overdue"])


async def test_anomalies_page_by_due_date(gw: Harness, filter_world: dict[str, str]) -> None:
    caller = clerk(gw, A_FILTERS)
    seen: list[str] = []
    after = None
    for _ in range(10):
        body = await gw.query(caller, ANOMALIES, {"first": 1, "after": after})
        assert "errors" not in body, body["errors"]
        connection = body["data"]["anomalies"]
        assert connection["totalCount"] == 4
        seen += [n["id"] for n in nodes(connection)]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == [filter_world[k] for k in ("resolved", "overdue", "due_today", "pushed")]
    for bad in ("garbage", _b64(f"batch:2026-11-23T00:00:00|{uuid.uuid4().hex}")):
        body = await gw.query(caller, ANOMALIES, {"after": bad})
        assert only_error(body)[:2] == (("anomalies",), "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("today", "overdue"),
    [("2026-12-04", False), ("2026-12-07", False), ("2026-12-08", True), ("2027-01-04", True)],
)
async def test_overdue_follows_the_clock(
    gw: Harness, monkeypatch: pytest.MonkeyPatch, today: str, overdue: bool
) -> None:
    """Due on 2026-12-07 (10 working days after 2026-11-23): overdue from the day after."""
    person = someone(230, A_CLOCK)
    await _ensure_mismatch(gw, person)
    monkeypatch.setenv("RELIEF_TODAY", today)
    listed, _ = await _anomalies(gw, clerk(gw, A_CLOCK))
    assert [(a["dueOn"], a["overdue"]) for a in listed] == [("2026-12-07", overdue)]
    flagged, total = await _anomalies(gw, clerk(gw, A_CLOCK), {"overdue": True})
    assert total == len(flagged) == int(overdue)
