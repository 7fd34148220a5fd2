"""Access control on the exchange's GraphQL side, adversarially (CONTRACT.md "Access-control
semantics"): provenance and the under-verification mark are guarded fields like any other;
aliases and fragments do not get around the guard; an anomaly never leads to a person outside
the caller's row scope; reading an anomaly's person is audited; ``me`` lists the exchange
operations each department's data-sharing list grants.

Runs on SQLite and PostgreSQL, on a gateway of this module alone (``exchange_gateway``).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    Someone,
    audit_entries,
    codes,
    county_token,
    enrollment,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    extra_policy,
    identity,
    insert_anomaly,
    last_audit_id,
    leaks,
    nodes,
    person_id,
    pushed,
    row_counts,
    someone,
    submit,
)
from tests.harness import Harness

ALL_OPERATIONS = [
    "Ingest.anomalies",
    "Ingest.batches",
    "Ingest.resolveAnomaly",
    "Ingest.submitRecords",
]
RURAL_COUNTY = "370124"  # 平阴县: the rural revitalisation case alone
AUDIT_COUNTY = "370105"  # 天桥区: the audit case alone


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


@pytest.fixture(scope="module")
async def reported(exchange_gateway: Harness) -> dict[str, Any]:  # noqa: F811
    """A person civil affairs pushed (second record of its push) and medical insurance then
    enrolled (first record of its push): a fact with provenance from two departments."""
    gw = exchange_gateway
    person, other = someone(1), someone(2)
    civil = await pushed(
        gw, county_token(gw, "civil_affairs", COUNTY), [identity(other), identity(person)]
    )
    insurer = await pushed(
        gw,
        county_token(gw, "medical_insurance", COUNTY),
        [enrollment(person)],
        feed="enrollments",
    )
    return {"person": person, "civil": civil["batch"], "insurer": insurer["batch"]}


# ============================================================================ provenance
PERSON_PROVENANCE = """
query($id: String!) {
  person(idNumber: $id) { name provenance { department channel batchId fileName line receivedAt } }
}
"""


async def test_person_provenance_is_for_medical_insurance_not_civil_affairs(
    gw: Harness, reported: dict[str, Any]
) -> None:
    person: Someone = reported["person"]
    variables = {"id": person.id_number}

    insurer = await gw.query(
        county_token(gw, "medical_insurance", COUNTY), PERSON_PROVENANCE, variables
    )
    assert "errors" not in insurer, insurer["errors"]
    civil, enrolled = reported["civil"], reported["insurer"]
    assert insurer["data"]["person"] == {
        "name": person.name,
        "provenance": [
            {
                "department": "CIVIL_AFFAIRS",
                "channel": "PUSH",
                "batchId": civil["id"],
                "fileName": None,
                "line": 2,
                "receivedAt": civil["receivedAt"],
            },
            {
                "department": "MEDICAL_INSURANCE",
                "channel": "PUSH",
                "batchId": enrolled["id"],
                "fileName": None,
                "line": 1,
                "receivedAt": enrolled["receivedAt"],
            },
        ],
    }

    for dept in ("civil_affairs", "health"):
        body = await gw.query(county_token(gw, dept, COUNTY), PERSON_PROVENANCE, variables)
        assert body["data"] == {"person": {"name": person.name, "provenance": None}}
        assert codes(body) == {("person", "provenance"): "FORBIDDEN"}
        assert leaks(body, civil["id"], enrolled["id"]) == []


RECORD_PROVENANCE = """
query($id: String!) {
  person(idNumber: $id) {
    name
    reliefStatuses { category provenance { department batchId line } }
    enrollments { year provenance { department batchId line } }
  }
}
"""


async def test_record_provenance_follows_the_record_grants(
    gw: Harness, reported: dict[str, Any]
) -> None:
    person: Someone = reported["person"]
    variables = {"id": person.id_number}
    status_source = {"department": "CIVIL_AFFAIRS", "batchId": reported["civil"]["id"], "line": 2}
    enrollment_source = {
        "department": "MEDICAL_INSURANCE",
        "batchId": reported["insurer"]["id"],
        "line": 1,
    }

    # Medical insurance reads ReliefStatus.* and Enrollment.*: both provenances.
    body = await gw.query(
        county_token(gw, "medical_insurance", COUNTY), RECORD_PROVENANCE, variables
    )
    assert "errors" not in body, body["errors"]
    found = body["data"]["person"]
    assert found["reliefStatuses"] == [{"category": "MINIMUM_LIVING", "provenance": status_source}]
    assert found["enrollments"] == [{"year": 2026, "provenance": enrollment_source}]

    # Civil affairs reads ReliefStatus.* but only two Enrollment fields: not its provenance.
    body = await gw.query(county_token(gw, "civil_affairs", COUNTY), RECORD_PROVENANCE, variables)
    found = body["data"]["person"]
    assert found["reliefStatuses"] == [{"category": "MINIMUM_LIVING", "provenance": status_source}]
    assert found["enrollments"] == [{"year": 2026, "provenance": None}]
    assert codes(body) == {("person", "enrollments", 0, "provenance"): "FORBIDDEN"}

    # Health reads neither relief statuses nor enrollment provenance.
    body = await gw.query(county_token(gw, "health", COUNTY), RECORD_PROVENANCE, variables)
    assert body["data"]["person"]["reliefStatuses"] is None
    assert codes(body) == {
        ("person", "reliefStatuses"): "FORBIDDEN",
        ("person", "enrollments", 0, "provenance"): "FORBIDDEN",
    }
    assert leaks(body, reported["civil"]["id"], reported["insurer"]["id"]) == []


async def test_seeded_records_point_at_their_seed_batch(gw: Harness) -> None:
    """The synthetic population carries provenance too: one SEED batch per department, no
    line (it was not read from a file or a push)."""
    bundle = next(b for b in gw.bundles if b.relief_statuses)
    status = bundle.relief_statuses[0]
    seeded = next(p for p in bundle.members if p.person_id == status.person_id)
    body = await gw.query(
        gw.token("medical_insurance", "province", seeded.region_code[:2]),
        """query($id: String!) { person(idNumber: $id) {
             reliefStatuses { sourceDepartment provenance { department channel fileName line } }
             provenance { department channel line } } }""",
        {"id": seeded.id_number},
    )
    assert "errors" not in body, body["errors"]
    found = body["data"]["person"]
    assert found["reliefStatuses"]
    for record in found["reliefStatuses"]:
        assert record["provenance"] == {
            "department": record["sourceDepartment"],
            "channel": "SEED",
            "fileName": None,
            "line": None,
        }
    assert {"department": status.source_department.upper(), "channel": "SEED", "line": None} in (
        found["provenance"]
    )


# Subject for constructed policies: human resources has no line by default (no person data).
HR = "human_resources:*"

ALIASED = """
query($id: String!) {
  person(idNumber: $id) {
    name
    a: underVerification
    ... on Person { b: underVerification }
    ...Marks
    reliefStatuses {
      category
      p: provenance { line }
      ... on ReliefStatus { q: provenance { batchId } }
      ...Source
    }
  }
}
fragment Marks on Person { underVerification c: underVerification }
fragment Source on ReliefStatus { provenance { department } }
"""


async def test_aliases_and_fragments_do_not_get_round_the_guard(
    gw: Harness, reported: dict[str, Any]
) -> None:
    """A subject that reads names and relief statuses but neither the under-verification mark
    nor provenance: every spelling of those fields is refused at its own path."""
    person: Someone = reported["person"]
    lines = [
        (HR, "Person(all)", "rows"),
        (HR, "Person.idNumber", "read"),
        (HR, "Person.name", "read"),
        (HR, "Person.reliefStatuses", "read"),
        (HR, "ReliefStatus.validFrom", "read"),
    ]
    caller = county_token(gw, "human_resources", COUNTY)
    async with extra_policy(gw, lines):
        body = await gw.query(caller, ALIASED, {"id": person.id_number})
    found = body["data"]["person"]
    assert found["name"] == person.name
    for key in ("a", "b", "underVerification", "c"):
        assert found[key] is None
    (status,) = found["reliefStatuses"]
    assert status == {"category": "MINIMUM_LIVING", "p": None, "q": None, "provenance": None}
    assert codes(body) == {
        ("person", "a"): "FORBIDDEN",
        ("person", "b"): "FORBIDDEN",
        ("person", "underVerification"): "FORBIDDEN",
        ("person", "c"): "FORBIDDEN",
        ("person", "reliefStatuses", 0, "p"): "FORBIDDEN",
        ("person", "reliefStatuses", 0, "q"): "FORBIDDEN",
        ("person", "reliefStatuses", 0, "provenance"): "FORBIDDEN",
    }
    assert leaks(body, reported["civil"]["id"]) == []

    # The same spellings for civil affairs: the mark is granted, Person.provenance is not.
    civil = county_token(gw, "civil_affairs", COUNTY)
    body = await gw.query(
        civil,
        """query($id: String!) { person(idNumber: $id) {
             x: provenance { line } ... on Person { y: provenance { batchId } } ...P
             u: underVerification } }
           fragment P on Person { provenance { department } }""",
        {"id": person.id_number},
    )
    assert body["data"]["person"] == {"x": None, "y": None, "provenance": None, "u": False}
    assert codes(body) == {
        ("person", "x"): "FORBIDDEN",
        ("person", "y"): "FORBIDDEN",
        ("person", "provenance"): "FORBIDDEN",
    }


async def test_record_provenance_needs_its_own_grant(gw: Harness, reported: dict[str, Any]) -> None:
    """ReliefStatus.provenance is granted with ReliefStatus.* (or by name), not with the
    status's other fields."""
    person: Someone = reported["person"]
    query = (
        "query($id: String!) { person(idNumber: $id) "
        "{ reliefStatuses { validFrom provenance { line } } } }"
    )
    caller = county_token(gw, "human_resources", COUNTY)
    base = [
        (HR, "Person(all)", "rows"),
        (HR, "Person.idNumber", "read"),
        (HR, "Person.reliefStatuses", "read"),
        (HR, "ReliefStatus.validFrom", "read"),
    ]
    async with extra_policy(gw, base):
        denied = await gw.query(caller, query, {"id": person.id_number})
    async with extra_policy(gw, [*base, (HR, "ReliefStatus.*", "read")]):
        granted = await gw.query(caller, query, {"id": person.id_number})
    assert denied["data"]["person"]["reliefStatuses"] == [
        {"validFrom": "2026-03-01", "provenance": None}
    ]
    assert codes(denied) == {("person", "reliefStatuses", 0, "provenance"): "FORBIDDEN"}
    assert "errors" not in granted, granted["errors"]
    assert granted["data"]["person"]["reliefStatuses"] == [
        {"validFrom": "2026-03-01", "provenance": {"line": 2}}
    ]


async def test_an_anomalys_person_is_masked_and_refused_by_field_policy(gw: Harness) -> None:
    """A subject that reads names only masked and not ID numbers gets the anomaly's person so."""
    person = someone(3)
    await pushed(gw, county_token(gw, "civil_affairs", COUNTY), [identity(person)])
    pid = await person_id(gw, person.id_number)
    await insert_anomaly(
        gw, pid, department="human_resources", county=COUNTY, due_on=date(2026, 12, 7)
    )
    lines = [
        (HR, "Person(all)", "rows"),
        (HR, "Person.name", "mask"),
        (HR, "Ingest.anomalies", "call"),
    ]
    async with extra_policy(gw, lines):
        body = await gw.query(
            county_token(gw, "human_resources", COUNTY),
            "{ anomalies { edges { node { kind person { name idNumber } } } } }",
        )
    (node,) = nodes(body["data"]["anomalies"])
    assert node == {
        "kind": "NAME_MISMATCH",
        "person": {"name": person.name[0] + "*" * (len(person.name) - 1), "idNumber": None},
    }
    assert codes(body) == {("anomalies", "edges", 0, "node", "person", "idNumber"): "FORBIDDEN"}
    assert leaks(body, person.name, person.id_number) == []


# ============================================================================ row scope
async def test_rural_revitalisation_cannot_reach_a_person_outside_its_rows_through_anomalies(
    gw: Harness,
) -> None:
    """Rural revitalisation sees only people holding one of its categories today. It pushes two
    people civil affairs registered under other names: one it still monitors, one whose rural
    identity ended in June. Both anomalies are its own to verify; only the first leads to a
    person."""
    civil = county_token(gw, "civil_affairs", RURAL_COUNTY)
    rural = county_token(gw, "rural_revitalization", RURAL_COUNTY, "rr-clerk")
    held, ended = someone(10, RURAL_COUNTY), someone(11, RURAL_COUNTY)
    await pushed(gw, civil, [identity(held), identity(ended)])
    result = await pushed(
        gw,
        rural,
        [
            identity(held, "脱贫不稳定人口", "2025-01-01", name="测试另名"),
            identity(
                ended, "脱贫不稳定人口", "2025-01-01", exited_on="2026-06-30", name="测试别名"
            ),
        ],
    )
    assert result["counts"]["anomaliesOpened"] == 2
    # The control: outside its rows, the person is as if absent.
    lookup = "query($id: String!) { person(idNumber: $id) { name } }"
    assert (await gw.query(rural, lookup, {"id": ended.id_number})) == {"data": {"person": None}}
    assert (await gw.query(rural, lookup, {"id": held.id_number}))["data"]["person"] == {
        "name": held.name
    }
    ended_id = await person_id(gw, ended.id_number)
    before = await last_audit_id(gw)

    body = await gw.query(
        rural,
        """query RuralAnomalies { anomalies { totalCount edges { node {
             kind description batchId
             person { id name idNumber phone address regionCode underVerification
                      household { id } reliefStatuses { category } } } } } }""",
    )

    assert "errors" not in body, body["errors"]
    connection = body["data"]["anomalies"]
    assert connection["totalCount"] == 2
    people = [node["person"] for node in nodes(connection)]
    assert {node["kind"] for node in nodes(connection)} == {"NAME_MISMATCH"}
    assert None in people
    (visible,) = [p for p in people if p is not None]
    assert visible["name"] == held.name
    assert leaks(body, ended.name, ended.id_number, str(ended_id), "测试别名") == []
    (entry,) = await audit_entries(gw, before)
    assert str(ended_id) not in json.loads(entry.person_ids)


async def test_reading_an_anomalys_person_is_audited(gw: Harness) -> None:
    person = someone(20, AUDIT_COUNTY)
    insurer = county_token(gw, "medical_insurance", AUDIT_COUNTY)
    await pushed(gw, insurer, [enrollment(person)], feed="enrollments")
    caller = county_token(gw, "civil_affairs", AUDIT_COUNTY, "ca-auditee")
    await pushed(gw, caller, [identity(person, name="测试换名")])
    pid = await person_id(gw, person.id_number)
    before = await last_audit_id(gw)

    body = await gw.query(
        caller,
        "query AnomalyPeople { anomalies { edges { node { kind person { name } } } } }",
        purpose="relief_recognition",
    )

    assert nodes(body["data"]["anomalies"]) == [
        {"kind": "NAME_MISMATCH", "person": {"name": person.name}}
    ]
    (entry,) = await audit_entries(gw, before)
    assert (entry.subject, entry.department, entry.level, entry.region) == (
        "ca-auditee",
        "civil_affairs",
        "county",
        AUDIT_COUNTY,
    )
    assert entry.operation == "AnomalyPeople"
    assert entry.purpose == "relief_recognition"
    assert json.loads(entry.person_ids) == [str(pid)]
    assert json.loads(entry.fields) == {"Person.name": "read"}


# ============================================================================ scope of a push
async def test_a_push_does_not_pull_another_countys_person_into_view(gw: Harness) -> None:
    registered = someone(30, NEIGHBOUR)
    await pushed(gw, county_token(gw, "civil_affairs", NEIGHBOUR), [identity(registered)])
    caller = county_token(gw, "civil_affairs", COUNTY)
    lookup = "query($id: String!) { person(idNumber: $id) { name regionCode } }"
    assert (await gw.query(caller, lookup, {"id": registered.id_number})) == {
        "data": {"person": None}
    }

    await pushed(gw, caller, [identity(registered, name="测试冒名", region=COUNTY)])

    after = await gw.query(caller, lookup, {"id": registered.id_number})
    assert leaks(after, registered.name) == []
    home = await gw.query(
        county_token(gw, "civil_affairs", NEIGHBOUR), lookup, {"id": registered.id_number}
    )
    assert home["data"]["person"] == {"name": registered.name, "regionCode": NEIGHBOUR}


@pytest.mark.parametrize(
    ("dept", "feed", "row"),
    [
        ("civil_affairs", "identities", lambda p: identity(p, name="测试冒名", region=COUNTY)),
        (
            "public_security",
            "household_registration",
            lambda p: {
                "姓名": "测试冒名",
                "公民身份号码": p.id_number,
                "户籍地行政区划代码": COUNTY,
            },
        ),
    ],
    ids=["civil_affairs", "public_security"],
)
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "stored"])
async def test_a_dry_run_is_no_oracle_for_people_outside_the_callers_scope(
    gw: Harness, dept: str, feed: str, row: Any, dry_run: bool
) -> None:
    """A row outside scope behaves like a row that does not exist: a push about a person
    registered in another county counts exactly like one about an ID number nobody holds,
    the first time and when sent again."""
    n = (40 if dept == "civil_affairs" else 42) + (0 if dry_run else 100)
    registered, unknown = someone(n, NEIGHBOUR), someone(n + 1, NEIGHBOUR)
    await pushed(gw, county_token(gw, "civil_affairs", NEIGHBOUR), [identity(registered)])
    caller = county_token(gw, dept, COUNTY)
    before = await row_counts(gw)

    for attempt in range(1 if dry_run else 2):
        answers = []
        for person in (registered, unknown):
            body = await submit(gw, caller, [row(person)], feed=feed, dry_run=dry_run)
            assert "errors" not in body, body["errors"]
            answers.append(body["data"]["submitRecords"])
        assert answers[0]["counts"] == answers[1]["counts"], attempt
        assert answers[0]["rejections"] == answers[1]["rejections"] == []
    if dry_run:
        assert await row_counts(gw) == before


async def test_a_push_about_another_countys_person_is_sent_there_to_verify(gw: Harness) -> None:
    """The person stays where they are held; that county's same department is asked whether
    they moved or are recognised twice (剔重), and the pushing county is told nothing."""
    registered = someone(60, NEIGHBOUR)
    home = county_token(gw, "civil_affairs", NEIGHBOUR)
    await pushed(gw, home, [identity(registered)])
    caller = county_token(gw, "civil_affairs", COUNTY)
    result = await pushed(gw, caller, [identity(registered, "特困人员", region=COUNTY)])
    assert result["counts"]["added"] == 1
    assert result["counts"]["anomaliesOpened"] == 0
    query = "{ anomalies { edges { node { kind description person { idNumber regionCode } } } } }"

    def about(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            a
            for a in nodes(body["data"]["anomalies"])
            if a["person"] and a["person"]["idNumber"] == registered.id_number
        ]

    theirs = about(await gw.query(home, query))
    assert [a["kind"] for a in theirs] == ["REPORTED_BY_ANOTHER_REGION"]
    assert COUNTY in theirs[0]["description"]
    assert theirs[0]["person"]["regionCode"] == NEIGHBOUR
    mine = nodes((await gw.query(caller, query))["data"]["anomalies"])
    assert [a for a in mine if a["kind"] == "REPORTED_BY_ANOTHER_REGION"] == []


async def test_an_enrollment_from_another_county_is_no_oracle(gw: Harness) -> None:
    """Rule 9: insured in one county, held in another. A county's MIB pushing an enrollment
    for a person held elsewhere, even for a year already insured there, counts as for anyone
    unknown, and never overwrites the other county's enrollment."""
    registered, unknown = someone(62, NEIGHBOUR), someone(63, NEIGHBOUR)
    await pushed(
        gw,
        county_token(gw, "medical_insurance", NEIGHBOUR),
        [enrollment(registered)],
        feed="enrollments",
    )
    caller = county_token(gw, "medical_insurance", COUNTY)
    for attempt in range(2):
        answers = []
        for person in (registered, unknown):
            row = {**enrollment(person), "参保地行政区划代码": COUNTY, "姓名": "测试冒名"}
            answers.append(await pushed(gw, caller, [row], feed="enrollments"))
        assert answers[0]["counts"] == answers[1]["counts"], attempt
    home = county_token(gw, "medical_insurance", NEIGHBOUR)
    lookup = "query($id: String!) { person(idNumber: $id) { name enrollments { regionCode } } }"
    body = await gw.query(home, lookup, {"id": registered.id_number})
    assert body["data"]["person"] == {
        "name": registered.name,
        "enrollments": [{"regionCode": NEIGHBOUR}],
    }


# ============================================================================ me
@pytest.mark.parametrize(
    ("dept", "operations"),
    [
        ("medical_insurance", ALL_OPERATIONS),
        ("civil_affairs", ALL_OPERATIONS),
        ("rural_revitalization", ALL_OPERATIONS),
        ("health", ALL_OPERATIONS),
        ("public_security", ALL_OPERATIONS),
        ("disabled_federation", ALL_OPERATIONS),
        ("human_resources", []),
        ("big_data", []),
    ],
)
@pytest.mark.parametrize("level", ["province", "city", "county"])
async def test_me_lists_the_exchange_operations(
    gw: Harness, dept: str, operations: list[str], level: str
) -> None:
    """The exchange's operations (the closed loop's are pinned by its own tests)."""
    region = {"province": COUNTY[:2], "city": COUNTY[:4], "county": COUNTY}[level]
    body = await gw.query(gw.token(dept, level, region), "{ me { department operations } }")
    me = body["data"]["me"]
    ingest = [op for op in me["operations"] if op.startswith("Ingest.")]
    assert (me["department"], ingest) == (dept.upper(), operations)
