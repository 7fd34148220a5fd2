"""Officers simulate a query "as" a subject under a proposal before approving it (issue 5
item 2): ``simulateAccess`` returns the shape of both answers (never a value), the FORBIDDEN
paths, the people gained and lost; after approval, the real request of that subject gets
exactly what the simulation predicted. Mutations are never executed, non-officers are refused,
and the simulation is audited as the officer's own request."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.storage.models import AuditEntry, IngestBatch, Person
from tests.exchange_support import (
    audit_entries,
    codes,
    errors,
    exchange_gateway,  # noqa: F401 - the module's own gateway (fixture)
    last_audit_id,
    leaks,
    only_error,
)
from tests.harness import Harness


@pytest.fixture
def gateway(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


OFFICER = ["security_officer"]
MASK_MARK, READ_MARK = "已脱敏", "已读取"

PROPOSE = """
mutation Propose($title: String!, $add: [PolicyLineInput!]!, $remove: [PolicyLineInput!]!) {
  proposePolicyChange(title: $title, add: $add, remove: $remove) { id status }
}
"""
APPROVE = 'mutation Approve($id: ID!) { approvePolicyChange(id: $id, note: "同意") { status } }'

SIMULATE = """
query Simulate($id: ID!, $subject: SimulatedSubject!, $query: String!, $variables: JSON) {
  simulateAccess(proposalId: $id, subject: $subject, query: $query, variables: $variables) {
    current { policyVersion rowScope fieldAccess { field effect } people data
              errors { path code message } }
    proposed { policyVersion rowScope fieldAccess { field effect } people data
               errors { path code message } }
    fieldChanges { subject field before after }
    peopleGained peopleLost identical
  }
}
"""

# Aliases, a named fragment and an inline fragment: the redaction must still know that
# ``tel`` is Person.phone (masked) and ``born`` Person.birthDate (denied by the proposal).
PEOPLE = """
query Clerk($first: Int!, $withEnrollments: Boolean = true) {
  people: persons(first: $first) {
    totalCount
    edges { node { ...Who tel: phone } }
  }
}
fragment Who on Person {
  id
  name
  born: birthDate
  address
  ... on Person { enrollments @include(if: $withEnrollments) { status year } }
}
"""

# The county's health commission asks for the phone (masked) and the address; birth dates are
# withdrawn from health everywhere.
REGIONAL_PHONE = {"subject": "health@{region}:county", "object": "Person.phone", "action": "MASK"}
REGIONAL_ADDRESS = {
    "subject": "health@{region}:county",
    "object": "Person.address",
    "action": "READ",
}
BIRTH_DATE = {"subject": "health:*", "object": "Person.birthDate", "action": "READ"}


def officer(gateway: Harness, subject: str, level: str = "province", region: str = "") -> str:
    """A security officer; by default of the province the seeded people live in."""
    region = region or gateway.busiest_county()[:2]
    return gateway.token("big_data", level, region, roles=OFFICER, subject=subject)


def lines_for(region: str, *templates: dict[str, str]) -> list[dict[str, str]]:
    return [{**t, "subject": t["subject"].format(region=region)} for t in templates]


async def propose(gateway: Harness, token: str, add: list[Any], remove: list[Any]) -> str:
    body = await gateway.query(
        token, PROPOSE, {"title": "卫健读取电话 (脱敏) 与住址", "add": add, "remove": remove}
    )
    assert "errors" not in body, body
    return str(body["data"]["proposePolicyChange"]["id"])


def subject(region: str, **extra: Any) -> dict[str, Any]:
    return {"department": "HEALTH", "level": "COUNTY", "region": region, **extra}


async def simulate(
    gateway: Harness,
    token: str,
    proposal: str,
    who: dict[str, Any],
    query: str = PEOPLE,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return await gateway.query(
        token,
        SIMULATE,
        {"id": proposal, "subject": who, "query": query, "variables": variables or {"first": 50}},
    )


def shape(value: Any, masked: frozenset[str] = frozenset({"tel"}), key: str = "") -> Any:
    """The test's own redaction of a real answer: leaves → marks (``masked`` keys masked)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: shape(v, masked, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v, masked, key) for v in value]
    return MASK_MARK if key in masked else READ_MARK


def forbidden_paths(outcome_or_body: dict[str, Any]) -> set[tuple[str, ...]]:
    found = set()
    for error in outcome_or_body.get("errors") or []:
        code = error["code"] if "code" in error else error["extensions"]["code"]
        if code == "FORBIDDEN":
            found.add(tuple(str(step) for step in error["path"]))
    return found


async def people_of_entry(gateway: Harness, entry_id: int) -> set[str]:
    async with gateway.runtime.engine.connect() as connection:
        raw = (
            await connection.execute(select(AuditEntry.person_ids).where(AuditEntry.id == entry_id))
        ).scalar_one()
    return set(json.loads(raw))


async def test_simulation_equal_to_the_effect_after_approval(gateway: Harness) -> None:
    county = gateway.busiest_county()
    clerk = gateway.token("health", "county", county, subject="health-clerk")
    proposer, approver = officer(gateway, "officer-a"), officer(gateway, "officer-b")
    proposal = await propose(
        gateway,
        proposer,
        add=lines_for(county, REGIONAL_PHONE, REGIONAL_ADDRESS),
        remove=[BIRTH_DATE],
    )

    before = await last_audit_id(gateway)
    body = await simulate(gateway, proposer, proposal, subject(county))
    assert "errors" not in body, body
    simulation = body["data"]["simulateAccess"]
    current, proposed = simulation["current"], simulation["proposed"]

    # The officer sees shapes and counts, never a value.
    people = [p for p in gateway.persons if p.region_code.startswith(county)]
    assert people, "the seeded population has people in the busiest county"
    secrets = [p.name for p in people] + [p.id_number for p in people]
    secrets += [p.phone for p in people if p.phone] + [p.address for p in people if p.address]
    assert leaks(body, *secrets) == []
    assert {"field": "Person.phone", "effect": "MASK"} in proposed["fieldAccess"]
    assert {"field": "Person.phone", "effect": "MASK"} not in current["fieldAccess"]
    node = proposed["data"]["people"]["edges"][0]["node"]
    assert (node["tel"], node["address"], node["born"]) == (MASK_MARK, READ_MARK, None)
    assert node["name"] == READ_MARK
    assert node["enrollments"] is not None
    changes = {(c["field"], c["before"], c["after"]) for c in simulation["fieldChanges"]}
    assert ("Person.phone", "DENY", "MASK") in changes
    assert ("Person.address", "DENY", "READ") in changes
    assert ("Person.birthDate", "READ", "DENY") in changes
    assert {c["subject"] for c in simulation["fieldChanges"]} == {f"health@{county}:county"}
    assert simulation["identical"] is False
    assert simulation["peopleGained"] == simulation["peopleLost"] == 0
    assert current["people"] == proposed["people"] == len(people)

    # The simulation is audited as the officer's request: the people both runs touched.
    [entry] = [e for e in await audit_entries(gateway, before) if e.subject == "officer-a"]
    assert entry.operation == "simulateAccess"
    assert json.loads(entry.fields) == {"Simulation.shapes": "read"}
    simulated_people = set(json.loads(entry.person_ids))
    assert len(simulated_people) == len(people)

    # The version in force today: the real request gets what the "current" side predicted.
    real_now = await gateway.query(clerk, PEOPLE, {"first": 50})
    assert shape(real_now["data"]) == current["data"]
    assert forbidden_paths(real_now) == forbidden_paths(current)

    approved = await gateway.query(approver, APPROVE, {"id": proposal})
    assert approved["data"]["approvePolicyChange"]["status"] == "APPROVED", approved

    mark = await last_audit_id(gateway)
    real = await gateway.query(clerk, PEOPLE, {"first": 50})
    assert shape(real["data"]) == proposed["data"]
    assert forbidden_paths(real) == forbidden_paths(proposed) != set()
    assert all(path[-1] == "born" for path in forbidden_paths(real))
    phones = [e["node"]["tel"] for e in real["data"]["people"]["edges"] if e["node"]["tel"]]
    assert phones
    assert all("*" in phone for phone in phones)  # really masked
    [clerk_entry] = [e for e in await audit_entries(gateway, mark) if e.subject == "health-clerk"]
    assert await people_of_entry(gateway, clerk_entry.id) == simulated_people
    assert clerk_entry.policy_version == proposed["policyVersion"]

    # Once approved, both sides are the same policy: the simulation reports no difference.
    again = await simulate(gateway, proposer, proposal, subject(county))
    assert again["data"]["simulateAccess"]["current"]["data"] == proposed["data"]


async def test_rows_gained_and_lost_are_counted(gateway: Harness) -> None:
    county = gateway.busiest_county()
    token = officer(gateway, "officer-a")
    # Health of this county would see only people holding a relief category (not everyone).
    narrowed = [
        {
            "subject": f"health@{county}:county",
            "object": "Person(category: MINIMUM_LIVING)",
            "action": "ROWS",
        },
    ]
    # (Person(all) for health stays province-wide: the proposal adds a row scope only.)
    proposal = await propose(gateway, token, add=narrowed, remove=[])
    body = await simulate(
        gateway,
        token,
        proposal,
        subject(county),
        query="{ persons { totalCount edges { node { id } } } }",
    )
    simulation = body["data"]["simulateAccess"]
    # Adding a narrower scope next to Person(all) changes nothing: rows add up.
    assert simulation["identical"] is True
    assert simulation["peopleGained"] == simulation["peopleLost"] == 0
    assert [c["field"] for c in simulation["fieldChanges"]] == ["Person(category: MINIMUM_LIVING)"]

    # Rural revitalisation of the county gains everyone when given Person(all).
    opened = [
        {
            "subject": f"rural_revitalization@{county}:county",
            "object": "Person(all)",
            "action": "ROWS",
        }
    ]
    proposal = await propose(gateway, token, add=opened, remove=[])
    body = await simulate(
        gateway,
        token,
        proposal,
        {"department": "RURAL_REVITALIZATION", "level": "COUNTY", "region": county},
        query="{ persons(first: 200) { totalCount edges { node { id } } } }",
    )
    simulation = body["data"]["simulateAccess"]
    everyone = len([p for p in gateway.persons if p.region_code.startswith(county)])
    assert simulation["proposed"]["people"] == everyone
    assert simulation["peopleGained"] == everyone - simulation["current"]["people"] > 0
    assert simulation["peopleLost"] == 0
    assert simulation["proposed"]["data"]["persons"]["totalCount"] == READ_MARK


async def test_mutations_are_refused_before_anything_executes(gateway: Harness) -> None:
    county = gateway.busiest_county()
    token = officer(gateway, "officer-a")
    proposal = await _any_proposal(gateway, token, county)
    push = """mutation { submitRecords(feed: "identities", records: [{"姓名": "测试甲"}]) {
      counts { rowsTotal } } }"""
    async with gateway.runtime.engine.connect() as connection:
        batches = (await connection.execute(select(func.count()).select_from(IngestBatch))).scalar()
    cases: list[tuple[str, dict[str, Any]]] = [
        (push, {}),
        ("query A { me { subject } } query B { me { region } }", {}),
    ]
    for query, variables in cases:
        body = await simulate(
            gateway,
            token,
            proposal,
            {"department": "CIVIL_AFFAIRS", "level": "COUNTY", "region": county},
            query=query,
            variables=variables,
        )
        path, code, message = only_error(body)
        assert (path, code) == (("simulateAccess",), "BAD_USER_INPUT"), body
        assert "模拟" in message
    async with gateway.runtime.engine.connect() as connection:
        after = (await connection.execute(select(func.count()).select_from(IngestBatch))).scalar()
    assert after == batches


async def _any_proposal(gateway: Harness, token: str, county: str) -> str:
    line = {
        "subject": f"civil_affairs@{county}:county",
        "object": "Person.phone",
        "action": "READ",
        "purpose": "relief_recognition",
    }
    return await propose(gateway, token, add=[line], remove=[])


async def test_refusals(gateway: Harness) -> None:
    county = gateway.busiest_county()
    token = officer(gateway, "officer-a")
    proposal = await _any_proposal(gateway, token, county)

    # Not an officer: a clerk cannot look at what others would see.
    clerk = gateway.token("medical_insurance", "province", "37")
    body = await simulate(gateway, clerk, proposal, subject(county))
    assert only_error(body)[:2] == (("simulateAccess",), "FORBIDDEN")
    assert "仅安全管理员" in only_error(body)[2]

    # A city officer simulates callers of its own city only.
    city_officer = officer(gateway, "officer-city", "city", county[:4])
    other_city = county[:2] + ("02" if county[2:4] != "02" else "03")
    body = await simulate(gateway, city_officer, proposal, subject(other_city + "01"))
    assert only_error(body)[:2] == (("simulateAccess",), "FORBIDDEN")
    body = await simulate(gateway, city_officer, proposal, subject(county))
    assert "errors" not in body, body

    # Claims are checked like a token's: a county has 6 digits; roles are known ones.
    for bad in (subject(county[:4]), subject(county, roles=["root"]), subject(county, purpose="x")):
        body = await simulate(gateway, token, proposal, bad)
        assert only_error(body)[:2] == (("simulateAccess",), "BAD_USER_INPUT"), bad

    # An unknown proposal.
    body = await simulate(gateway, token, str(uuid.uuid4()), subject(county))
    assert only_error(body)[:2] == (("simulateAccess",), "BAD_USER_INPUT")

    # A simulated officer cannot simulate in turn (no recursion through the query text).
    nested = (
        f'query {{ simulateAccess(proposalId: "{proposal}", subject: {{department: HEALTH, '
        f'level: COUNTY, region: "{county}"}}, query: "{{ me {{ subject }} }}") {{ identical }} }}'
    )
    body = await simulate(gateway, token, proposal, subject(county, roles=OFFICER), query=nested)
    current = body["data"]["simulateAccess"]["current"]
    assert [(e["path"], e["code"]) for e in current["errors"]] == [
        (["simulateAccess"], "FORBIDDEN")
    ]


async def test_a_query_for_a_denied_field_shows_the_forbidden_path(gateway: Harness) -> None:
    county = gateway.busiest_county()
    token = officer(gateway, "officer-a")
    proposal = await _any_proposal(gateway, token, county)
    query = "{ persons(first: 3) { edges { node { secret: costBurdens { totalCost } } } } }"
    body = await simulate(gateway, token, proposal, subject(county), query=query)
    simulation = body["data"]["simulateAccess"]
    for side in ("current", "proposed"):
        outcome = simulation[side]
        assert outcome["errors"], outcome
        assert {tuple(e["path"][-1:]) for e in outcome["errors"]} == {("secret",)}
        assert {e["code"] for e in outcome["errors"]} == {"FORBIDDEN"}
        nodes = [edge["node"] for edge in outcome["data"]["persons"]["edges"]]
        assert nodes
        assert all(node == {"secret": None} for node in nodes)
    assert simulation["identical"] is True
    # The people the officer's entry names are the people the simulated runs touched.
    assert codes(body) == {}
    assert errors(body) == []


async def test_people_outside_the_subject_scope_never_counted(gateway: Harness) -> None:
    county = gateway.busiest_county()
    token = officer(gateway, "officer-a")
    proposal = await _any_proposal(gateway, token, county)
    body = await simulate(
        gateway,
        token,
        proposal,
        subject(county),
        query="{ persons(first: 200) { edges { node { id } } } }",
    )
    async with gateway.runtime.engine.connect() as connection:
        in_county = (
            await connection.execute(
                select(func.count()).select_from(Person).where(Person.county_code == county)
            )
        ).scalar()
    assert body["data"]["simulateAccess"]["current"]["people"] == in_county
