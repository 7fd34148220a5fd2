"""Compiled reads (issue 17 item 2): the differential proof.

Every document here runs, for the same caller and decision, through the compiled path
(``schema.compiled``: one statement per root field, JSON built by PostgreSQL) and through the
GraphQL executor, which stays the reference; the two must give byte-identical ``data``, the
same errors (message, code, path, locations) and the same audit (people, fields released).
Decisions are generated (hypothesis) as well as taken from the default policy: random field
effects, row conditions and places, subjects of every level. The population has people tied
to counties other than their residence (insured elsewhere, recognised elsewhere), so fields
that follow the place are exercised too.

The tests also look at the plans: the SQL of a compiled plan carries the row predicate at
every level, and the plan cache never serves one caller's plan to another decision.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import delete, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.responses import JSONResponse

from authz.conditions import AllRows, HoldsCategory, PushedToDepartment, RowCondition
from authz.decision import AccessDecision, Effect
from authz.guard import FieldGuard
from authz.resources import GUARDED_FIELDS, MASKABLE_FIELDS
from gateway.domain.departments import Department, Level
from gateway.domain.errors import DecryptionError, Forbidden
from gateway.domain.places import PlaceKind
from gateway.domain.principal import Principal
from gateway.http.graphql import _format_result, _ResultResponse
from gateway.storage.models import Enrollment, PersonReport, ReliefStatus
from gateway.storage.places import refresh_places
from schema.scope import scoped_context
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

PERSON_FIELDS = """
  id idNumber name gender birthDate regionCode phone address underVerification __typename
  reliefStatuses { category sourceDepartment recognizedOn validFrom validTo __typename }
  enrollments { year insuranceType status regionCode subsidyCategory subsidyAmount }
  costBurdens {
    year totalCost basicInsurancePaid criticalIllnessPaid medicalAssistancePaid
    personalBurden inpatientCount
  }
"""

DIRECTIVES = """
query S($withName: Boolean!, $noCost: Boolean!) {
  persons(first: 10) { edges { node {
    id name @include(if: $withName)
    costBurdens @skip(if: $noCost) { year }
    ... on Person @include(if: $withName) { phone }
  } } }
}
"""

CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "page with everything",
        "query P($first: Int!) { persons(first: $first) { totalCount __typename "
        "pageInfo { hasNextPage endCursor __typename } "
        "edges { cursor __typename node {" + PERSON_FIELDS + "} } } }",
        {"first": 50},
    ),
    (
        "aliases and fragments",
        """
        query A($first: Int = 20, $on: Date, $year: Int) {
          a: persons(first: $first) { edges { n: node { ...P  k: id } c: cursor } t: totalCount }
          b: persons(first: 3) { pageInfo { endCursor } edges { node { ... on Person { name } } } }
          __typename
        }
        fragment P on Person {
          nm: name  id2: idNumber
          now: reliefStatuses(activeOn: $on) { category validTo }
          y: enrollments(year: $year) { year status subsidyAmount }
          all: enrollments { year }
          costBurdens(year: 2025) { totalCost }
        }
        """,
        {"on": "2026-11-23", "year": 2026},
    ),
    (
        "include and skip",
        DIRECTIVES,
        {"withName": True, "noCost": False},
    ),
    (
        "include and skip, the other way",
        DIRECTIVES,
        {"withName": False, "noCost": True},
    ),
    (
        "count only",
        "{ persons(first: 0) { totalCount pageInfo { hasNextPage endCursor } edges { cursor } } }",
        {},
    ),
    (
        "filtered page",
        "query F($f: PersonFilter) { persons(first: 30, filter: $f) { totalCount "
        "edges { node { id regionCode reliefStatuses { category } } } } }",
        {"f": {"category": "MINIMUM_LIVING"}},
    ),
]


@pytest.mark.postgres
async def test_pages_walked_by_cursor_match_the_executor(gateway: Harness) -> None:
    """A county walked page by page with ``after`` (the random page of the benchmarks): every
    page equal on both paths, the cursors chaining to the end."""
    county = gateway.busiest_county()
    caller = _caller(gateway, "medical_insurance", "county", county)
    query = (
        "query W($after: String, $on: Date) { persons(first: 7, after: $after) { "
        "pageInfo { hasNextPage endCursor } edges { cursor node { id name idNumber "
        "reliefStatuses(activeOn: $on) { category } } } } }"
    )
    after = None
    pages = 0
    while True:
        variables = {"after": after, "on": "2026-11-23"}
        compiled, reference, audit_c, audit_r = await _both(
            gateway, caller, _policy_decision(gateway, caller), query, variables
        )
        _same(compiled, reference)
        assert audit_c == audit_r
        info = compiled["data"]["persons"]["pageInfo"]
        pages += 1
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert pages > 3


@dataclass
class Caller:
    principal: Principal
    purpose: str


# ----------------------------------------------------------------------------- the gateway


@pytest.fixture(scope="module")
async def gateway(
    postgres_cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    # a name of its own: pytest may set the module up twice (tests ordered by backend)
    url = postgres_cluster.create_database(f"relief_compiled_{uuid.uuid4().hex[:8]}")
    data_dir: Path = tmp_path_factory.mktemp("compiled")
    harness = await build_harness(data_dir, url, backend="postgres", persons=400)
    # A short repr: Hypothesis prints the arguments of a failing example, the seeded people too.
    built = _Quiet(**{f.name: getattr(harness, f.name) for f in fields(Harness)})
    await _tie_elsewhere(built)
    assert built.runtime.compiled is not None
    yield built
    await built.close()


@dataclass(repr=False)
class _Quiet(Harness):
    def __repr__(self) -> str:
        return "<gateway for compiled reads>"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))


async def _tie_elsewhere(harness: Harness) -> None:
    """Some people insured, or recognised, in a county they do not live in (the busiest
    county's neighbours in the seed), so that fields follow the place for some rows."""
    counties = sorted({p.region_code[:6] for p in harness.persons})
    target = harness.busiest_county()
    others = [p for p in harness.persons if p.region_code[:6] != target][:30]
    async with harness.runtime.engine.begin() as connection:
        for i, person in enumerate(others):
            if i % 2 == 0:
                await connection.execute(
                    pg_insert(Enrollment)
                    .values(
                        person_id=person.person_id,
                        year=2026,
                        insurance_type="EMPLOYEE",
                        status="ACTIVE",
                        region_code=target,
                        subsidy_category=None,
                        subsidy_amount=None,
                    )
                    .on_conflict_do_nothing()
                )
            else:
                await connection.execute(
                    insert(ReliefStatus).values(
                        person_id=person.person_id,
                        category="MINIMUM_LIVING",
                        source_department="civil_affairs",
                        recognized_on=date(2026, 1, 5),
                        valid_from=date(2026, 1, 5),
                        valid_to=None,
                        county_code=target,
                    )
                )
        await refresh_places(connection, [p.person_id for p in others])
    assert len(counties) > 1


# ----------------------------------------------------------------------------- both paths


async def _both(
    harness: Harness,
    caller: Caller,
    decision: AccessDecision,
    query: str,
    variables: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...], tuple[Any, ...]]:
    runtime = harness.runtime
    assert runtime.compiled is not None
    bodies = []
    audits = []
    for compiled in (True, False):
        async with runtime.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            context = scoped_context(
                connection,
                principal=caller.principal,
                purpose=caller.purpose,
                decision=decision,
                request_id="req",
                today=harness.today,
                vault=runtime.vault,
                max_page_size=200,
                feeds=runtime.feeds,
                engine=runtime.engine,
                rules=runtime.rules,
            )
            if compiled:
                result = await runtime.compiled.execute(query, variables, None, context)
                if result is None:  # the executor's to answer: it must refuse a root field
                    reference = await runtime.schema.execute(
                        query, variable_values=variables, context_value=context
                    )
                    assert any(len(e.path or ()) == 1 for e in reference.errors or ()), (
                        "the document did not compile",
                        reference,
                    )
                    _event("answered by the executor: a root field refused")
                    return {}, {}, (), ()
                _event("compiled")
                if context.guard.people:
                    _event("compiled, people seen")
                if any(
                    e.get("extensions", {}).get("code") == "FORBIDDEN"
                    for e in _format_result(result, "req").get("errors", [])
                ):
                    _event("compiled, with FORBIDDEN fields")
            else:
                result = await runtime.schema.execute(
                    query, variable_values=variables, context_value=context
                )
        bodies.append(_format_result(result, "req"))  # type: ignore[arg-type]
        guard = context.guard
        audits.append(
            (
                sorted(map(str, guard.people)),
                sorted((k, v.value) for k, v in guard.released.items()),
                guard.touched_person_data,
            )
        )
    return bodies[0], bodies[1], tuple(audits[0]), tuple(audits[1])


def _event(text: str) -> None:
    if currently_in_test_context():  # the corpus runs outside Hypothesis
        event(text)


def _same(compiled: dict[str, Any], reference: dict[str, Any]) -> None:
    assert json.dumps(compiled.get("data"), ensure_ascii=False) == json.dumps(
        reference.get("data"), ensure_ascii=False
    )
    # Within a root field errors come in the order its fields resolve; across root fields the
    # executor resolves concurrently and lists them as each root completes (a root that needs
    # another read finishes later), so that order is the executor's timing: compared per root.
    assert _by_root(compiled.get("errors")) == _by_root(reference.get("errors"))


def _by_root(errors: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if errors is None:
        return None
    return sorted(errors, key=lambda e: str((e.get("path") or [""])[0]))  # stable


def _caller(harness: Harness, department: str, level: str, region: str) -> Caller:
    principal = Principal(
        subject=f"t-{department}-{region}",
        department=Department(department),
        level=Level(level),
        region=region,
    )
    return Caller(principal, "supervision")


def _policy_decision(harness: Harness, caller: Caller) -> AccessDecision:
    return harness.runtime.authorizer.decision_for(caller.principal, caller.purpose)


# ----------------------------------------------------------------------------- the corpus


@pytest.mark.postgres
@pytest.mark.parametrize(("name", "query", "variables"), CORPUS, ids=[c[0] for c in CORPUS])
@pytest.mark.parametrize(
    "who",
    [
        ("medical_insurance", "county"),
        ("civil_affairs", "county"),
        ("health", "city"),
        ("rural_revitalization", "province"),
    ],
)
async def test_corpus_matches_the_executor(
    gateway: Harness, name: str, query: str, variables: dict[str, Any], who: tuple[str, str]
) -> None:
    county = gateway.busiest_county()
    region = {"county": county, "city": county[:4], "province": county[:2]}[who[1]]
    caller = _caller(gateway, who[0], who[1], region)
    compiled, reference, audit_c, audit_r = await _both(
        gateway, caller, _policy_decision(gateway, caller), query, variables
    )
    _same(compiled, reference)
    assert audit_c == audit_r


# ----------------------------------------------------------------------------- generated

PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
    ],
)

_LEAVES = {
    "Person": [
        "id", "idNumber", "name", "gender", "birthDate", "regionCode", "phone", "address",
        "underVerification", "__typename",
    ],
    "ReliefStatus": [
        "category", "sourceDepartment", "recognizedOn", "validFrom", "validTo", "__typename",
    ],
    "Enrollment": [
        "year", "insuranceType", "status", "regionCode", "subsidyCategory", "subsidyAmount",
    ],
    "CostBurden": [
        "year", "totalCost", "basicInsurancePaid", "criticalIllnessPaid", "personalBurden",
        "inpatientCount", "__typename",
    ],
}  # fmt: skip
_RELATIONS = {
    "reliefStatuses": (
        "ReliefStatus",
        ["", '(activeOn: "2026-11-23")', '(activeOn: "2020-01-01")'],
    ),
    "enrollments": ("Enrollment", ["", "(year: 2026)", "(year: 2025)"]),
    "costBurdens": ("CostBurden", ["", "(year: 2026)", "(year: 2025)"]),
}


@st.composite
def _selection(draw: st.DrawFn, type_name: str = "Person") -> str:
    """A selection set on ``type_name``: leaves (some aliased), and on Person relations with
    or without their argument, an inline fragment or a skipped field now and then."""
    parts: list[str] = []
    leaves = draw(st.lists(st.sampled_from(_LEAVES[type_name]), min_size=1, max_size=6))
    for i, leaf in enumerate(leaves):
        alias = draw(st.sampled_from(["", f"x{i}: "]))
        if leaf == "__typename" and alias:
            alias = ""
        parts.append(alias + leaf)
    if type_name == "Person":
        for name, (child, arguments) in _RELATIONS.items():
            if draw(st.booleans()):
                argument = draw(st.sampled_from(arguments))
                alias = draw(st.sampled_from(["", f"r{name[:3]}: "]))
                parts.append(f"{alias}{name}{argument} {{ {draw(_selection(child))} }}")
        if draw(st.booleans()):
            parts.append(f"... on Person {{ {draw(st.sampled_from(_LEAVES['Person']))} }}")
        if draw(st.booleans()):
            parts.append("skipped: phone @skip(if: true)")
    # distinct response keys only: a repeated leaf with no alias merges, which is valid
    return " ".join(dict.fromkeys(parts))


@dataclass(frozen=True)
class DocumentPlan:
    roots: tuple[tuple[str, str, int], ...]  # (kind, selection, page size or person index)
    fragment: bool


@st.composite
def _documents(draw: st.DrawFn) -> DocumentPlan:
    count = draw(st.integers(1, 2))
    roots = tuple(
        (
            draw(st.sampled_from(["persons", "person"])),
            draw(_selection()),
            draw(st.integers(0, 60)),
        )
        for _ in range(count)
    )
    return DocumentPlan(roots, draw(st.booleans()))


_EFFECTS = (Effect.READ, Effect.DENY)
_PLACES = (PlaceKind.RESIDENCE, PlaceKind.IDENTITY, PlaceKind.INSURED, PlaceKind.ADDRESSED)


@st.composite
def _decisions(draw: st.DrawFn) -> tuple[dict[str, Effect], tuple[RowCondition, ...]]:
    fields: dict[str, Effect] = {}
    for name in GUARDED_FIELDS:
        choices = (*_EFFECTS, Effect.MASK) if name in MASKABLE_FIELDS else _EFFECTS
        fields[name] = draw(st.sampled_from(choices))
    places = st.frozensets(st.sampled_from(_PLACES), min_size=1)
    condition = st.one_of(
        st.builds(AllRows, places),
        st.builds(
            HoldsCategory,
            st.frozensets(st.sampled_from(["MINIMUM_LIVING", "EXTREME_POVERTY"]), min_size=1),
            places,
        ),
        st.builds(PushedToDepartment, places),
    )
    rows = tuple(draw(st.lists(condition, min_size=1, max_size=3, unique_by=str)))
    return fields, rows


def _render(plan: DocumentPlan, harness: Harness) -> str:
    people = harness.persons
    roots = []
    fragments = []
    for i, (kind, selection, number) in enumerate(plan.roots):
        body = selection
        if plan.fragment:
            fragments.append(f"fragment F{i} on Person {{ {selection} }}")
            body = f"...F{i}"
        if kind == "persons":
            roots.append(
                f"p{i}: persons(first: {number}) {{ totalCount pageInfo {{ hasNextPage endCursor }}"
                f" edges {{ cursor node {{ {body} }} }} }}"
            )
        else:
            id_number = people[number * 7 % len(people)].id_number
            roots.append(f'p{i}: person(idNumber: "{id_number}") {{ {body} }}')
    return "query G { " + " ".join(roots) + " } " + " ".join(fragments)


@pytest.mark.postgres
@settings(PROPERTY_SETTINGS, max_examples=int(os.environ.get("COMPILED_EXAMPLES", "60")))
@given(
    document=_documents(),
    decision=_decisions(),
    department=st.sampled_from(["medical_insurance", "civil_affairs", "health"]),
    level=st.sampled_from(["county", "city", "province"]),
)
async def test_generated_documents_and_decisions_match_the_executor(
    gateway: Harness,
    document: DocumentPlan,
    decision: tuple[dict[str, Effect], tuple[RowCondition, ...]],
    department: str,
    level: str,
) -> None:
    county = gateway.busiest_county()
    region = {"county": county, "city": county[:4], "province": county[:2]}[level]
    caller = _caller(gateway, department, level, region)
    fields, rows = decision
    access = AccessDecision(
        policy_version=1, purpose="supervision", fields=fields, row_conditions=rows
    )
    query = _render(document, gateway)
    note(query)
    compiled, reference, audit_c, audit_r = await _both(gateway, caller, access, query, {})
    _same(compiled, reference)
    assert audit_c == audit_r


# ----------------------------------------------------------------------------- the plans

PAGE = """query Page($first: Int!) { persons(first: $first) { totalCount
  edges { node { id regionCode name reliefStatuses { category } enrollments { year }
  costBurdens { year } } } } }"""


def _plan_sql(harness: Harness) -> list[str]:
    assert harness.runtime.compiled is not None
    return [
        root.prepared.sql
        for plan in harness.runtime.compiled._plans.entries.values()
        for root in plan.roots
        if root.prepared is not None
    ]


@pytest.mark.postgres
async def test_the_row_predicate_is_in_the_page_and_the_count_and_relations_hang_off_it(
    gateway: Harness,
) -> None:
    """A county civil-affairs caller (residence only): every read of ``person`` in the
    statement carries the county predicate — the keyset page and the count — and every
    relation is correlated to a person row of the page (``firsts JOIN person``)."""
    county = gateway.busiest_county()
    caller = _caller(gateway, "civil_affairs", "county", county)
    assert gateway.runtime.compiled is not None
    gateway.runtime.compiled._plans.entries.clear()
    compiled, reference, *_ = await _both(
        gateway, caller, _policy_decision(gateway, caller), PAGE, {"first": 20}
    )
    _same(compiled, reference)
    (sql,) = _plan_sql(gateway)
    reads = re.findall(r"FROM person\b", sql)
    scoped = re.findall(r"person\.county_code = \$\d+", sql)
    assert len(reads) == 2, sql  # the page and the count: both scoped
    assert len(scoped) >= len(reads), sql
    assert "FROM firsts JOIN person ON person.id = firsts.id" in sql
    for table in ("relief_status", "enrollment", "cost_burden"):
        assert re.search(rf"FROM {table}\s+WHERE {table}\.person_id = person\.id", sql), table
    (plan,) = gateway.runtime.compiled._plans.entries.values()
    assert county in plan.roots[0].prepared.constants.values()  # type: ignore[union-attr]


@pytest.mark.postgres
async def test_a_person_lookup_is_one_statement_with_the_probe(gateway: Harness) -> None:
    county = gateway.busiest_county()
    person = next(p for p in gateway.persons if p.region_code.startswith(county))
    caller = _caller(gateway, "medical_insurance", "county", county)
    assert gateway.runtime.compiled is not None
    gateway.runtime.compiled._plans.entries.clear()
    query = (
        f'{{ person(idNumber: "{person.id_number}") {{ name idNumber '
        "reliefStatuses { category } costBurdens { totalCount: totalCost } } }"
    )
    compiled, reference, *_ = await _both(
        gateway, caller, _policy_decision(gateway, caller), query, {}
    )
    _same(compiled, reference)
    assert compiled["data"]["person"]["name"] == person.name
    (sql,) = _plan_sql(gateway)
    assert len(re.findall(r"FROM person\b", sql)) == 1
    assert "person.id_number_bidx = $" in sql
    assert "person.county_code = $" in sql  # the probe: residence …
    assert "FROM person_place" in sql  # … or an insured place held in the county


@pytest.mark.postgres
async def test_two_counties_alternating_never_share_a_plan(gateway: Harness) -> None:
    """The same document for two counties (and two departments of one county), alternating
    over HTTP: each answer holds only its own county's people and equals the executor's; the
    cache holds one plan per decision and scope."""
    counties = sorted({p.region_code[:6] for p in gateway.persons})[:2]
    tokens = {
        (department, county): gateway.token(department, "county", county)
        for county in counties
        for department in ("civil_affairs", "health")
    }
    runtime = gateway.runtime
    compiled = runtime.compiled
    assert compiled is not None
    answers: dict[tuple[str, str], str] = {}
    for _round in range(3):
        for (department, county), token in tokens.items():
            before = compiled.compiled
            body = await gateway.query(token, PAGE, {"first": 50})
            assert compiled.compiled == before + 1
            codes = {e["node"]["regionCode"][:6] for e in body["data"]["persons"]["edges"]}
            assert codes <= {county}, (department, county, codes)
            text = json.dumps(body["data"], sort_keys=True)
            assert answers.setdefault((department, county), text) == text
    # and each equals the executor's answer for that caller
    runtime.compiled = None
    try:
        for (department, county), token in tokens.items():
            body = await gateway.query(token, PAGE, {"first": 50})
            assert json.dumps(body["data"], sort_keys=True) == answers[(department, county)]
    finally:
        runtime.compiled = compiled
    assert answers[("civil_affairs", counties[0])] != answers[("civil_affairs", counties[1])]


async def test_requests_over_http_take_the_compiled_path(harness: Harness) -> None:
    """The shared harness (every other suite's gateway) answers person queries compiled on
    PostgreSQL, so the leak, scope and access-matrix suites run against the compiled path;
    SQLite stays on the executor."""
    compiled = harness.runtime.compiled
    assert compiled is not None
    county = harness.busiest_county()
    token = harness.token("medical_insurance", "county", county)
    before = compiled.compiled
    body = await harness.query(token, PAGE, {"first": 5})
    assert "errors" not in body
    expected = 1 if harness.backend == "postgres" else 0
    assert compiled.compiled == before + expected


# ----------------------------------------------------------------------------- the guard


@settings(max_examples=200, deadline=None, database=None)
@given(
    effect=st.sampled_from([Effect.READ, Effect.MASK, Effect.DENY]),
    narrowed=st.lists(
        st.sampled_from([None, frozenset(), frozenset({PlaceKind.INSURED})]), max_size=6
    ),
    failing=st.integers(-1, 5),
)
def test_release_many_is_release_for_each(
    effect: Effect, narrowed: list[frozenset[PlaceKind] | None], failing: int
) -> None:
    """``FieldGuard.release_many`` (compiled reads' column at a time) gives what ``release``
    per person gives: values, masks, refusals and values that fail to open in their places,
    the same notes."""
    field = "Person.name"
    decision = AccessDecision(
        policy_version=1, purpose="p", fields={field: effect}, row_conditions=()
    )
    people = [uuid.UUID(int=i + 1) for i in range(len(narrowed))]
    values = [f"测试{i}号" for i in range(len(people))]
    outcomes = []
    for many in (True, False):
        guard = FieldGuard(decision)
        for person, places in zip(people, narrowed, strict=True):
            if places is not None:
                guard.narrow(person, places)

        def reveal(i: int) -> str:
            if i == failing:
                raise DecryptionError("测试: 密文校验失败")
            return values[i]

        got: list[Any] = []
        if many:
            got = list(guard.release_many(field, people, reveal))
        else:
            for i, person in enumerate(people):
                try:
                    got.append(guard.release(field, person, lambda i=i: reveal(i)))
                except (Forbidden, DecryptionError) as refused:
                    got.append(refused)
        shown = [(type(v).__name__, str(v)) if isinstance(v, Exception) else v for v in got]
        outcomes.append((shown, dict(guard.released), set(guard.people)))
    assert outcomes[0] == outcomes[1]


@pytest.mark.postgres
async def test_a_person_seen_only_through_the_callers_report_is_the_executors(
    gateway: Harness,
) -> None:
    """A department sees a person it reported while they were held elsewhere as it reported
    them (the report's view, issue 14): that page is answered by the executor, and the answer
    is the same as with compiled reads off."""
    county = gateway.busiest_county()
    outsider = next(p for p in gateway.persons if not p.region_code.startswith(county[:4]))
    vault = gateway.runtime.vault
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            insert(PersonReport).values(
                person_id=outsider.person_id,
                department="civil_affairs",
                county_code=county,
                region_code=county,
                name_ct=vault.seal(outsider.person_id, "name", "测试报送名"),
                phone_ct=None,
                address_ct=None,
                household_id=None,
                batch_id=None,
                source_line=None,
                reported_on=date(2026, 11, 1),
                verified_on=None,
            )
        )
        await refresh_places(connection, [outsider.person_id])
    caller = _caller(gateway, "civil_affairs", "county", county)
    decision = AccessDecision(
        policy_version=1,
        purpose="supervision",
        fields={"Person.name": Effect.READ},
        row_conditions=(AllRows(frozenset({PlaceKind.RESIDENCE})),),
    )
    query = "{ persons(first: 200) { edges { node { id name } } } }"
    runtime = gateway.runtime
    assert runtime.compiled is not None
    async with runtime.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        context = scoped_context(
            connection,
            principal=caller.principal,
            purpose=caller.purpose,
            decision=decision,
            request_id="req",
            today=gateway.today,
            vault=runtime.vault,
            max_page_size=200,
            feeds=runtime.feeds,
            engine=runtime.engine,
            rules=runtime.rules,
        )
        fallbacks = runtime.compiled.fallbacks
        assert await runtime.compiled.execute(query, {}, None, context) is None
        assert runtime.compiled.fallbacks == fallbacks + 1
        assert not context.guard.people  # nothing of the attempt reaches the audit
        reference = await runtime.schema.execute(query, context_value=context)
    names = {e["node"]["id"]: e["node"]["name"] for e in reference.data["persons"]["edges"]}
    assert names[str(outsider.person_id)] == "测试报送名"
    async with gateway.runtime.engine.begin() as connection:  # the module's other tests
        await connection.execute(
            delete(PersonReport).where(PersonReport.person_id == outsider.person_id)
        )
        await refresh_places(connection, [outsider.person_id])


# ----------------------------------------------------------------------------- the response

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(body=st.dictionaries(st.sampled_from(["data", "errors"]), _JSON))
def test_the_result_response_writes_what_jsonresponse_wrote(body: dict[str, Any]) -> None:
    """GraphQL results are written by orjson (``gateway.http.graphql._ResultResponse``): byte
    for byte what Starlette's ``JSONResponse`` wrote (control characters, U+2028, Chinese,
    emoji, key order)."""
    assert _ResultResponse(body).body == JSONResponse(body).body
