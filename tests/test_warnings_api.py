"""``warnings`` over GraphQL: who sees which high-cost warning (DOMAIN.md rules 3, 7, 10).

* A county civil-affairs or rural-revitalisation office sees the warnings of its county that
  were pushed to its own department, with its own tasks; never another county's.
* Rural revitalisation sees the warned person even when they hold none of its categories: the
  push opens the row (``Person(pushed)``).
* Medical insurance, the hub (``Loop.otherDepartments``), sees every warning of its
  jurisdiction and every department's task.
* Health has no ``Loop.warnings``: FORBIDDEN. A caller allowed the list but not cost data gets
  the warning without its figure (FORBIDDEN at that path).
* The person is read through the caller's row scope and the read is audited.

Runs on SQLite and PostgreSQL; the warnings come from one run of the Shandong rules in which
the low-income rule is pushed to rural revitalisation only, so the department filter shows.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from gateway.domain.departments import Department
from gateway.loop.warnings import Month, run_warnings
from gateway.storage.models import Person
from tests.exchange_support import audit_entries, codes, extra_policy, last_audit_id, nodes
from tests.harness import Harness
from tests.test_warning_run import (
    EDGE,
    TODAY,
    Held,
    People,
    Subject,
    add_people,
    clear,
    rules_of,
    warning_gateway,  # noqa: F401  (the module's own gateway)
)

COUNTY, NEIGHBOUR, ELSEWHERE = "370102", "370103", "370105"  # 济南: 历下, 市中, 天桥

WARNINGS = """
query Warnings($filter: WarningFilter, $first: Int = 50, $after: String) {
  warnings(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id month year rule ruleDescription measure figure threshold attention regionCode
      person { id name }
      tasks { id kind department regionCode openedOn dueOn overdue state answeredOn
              warning { id rule month } }
    } }
  }
}
"""

SUBJECTS = [
    Subject("ordinary", "shandong", (), "61500.01", county=COUNTY),
    Subject("edge", "shandong", (Held(EDGE),), "20500.01", county=COUNTY),
    Subject("neighbour", "shandong", (), "70000", county=NEIGHBOUR),
    Subject("below", "shandong", (), "100", county=COUNTY),
]


@dataclasses.dataclass
class Loop:
    gateway: Harness
    people: People

    def token(self, dept: str, level: str = "county", region: str = COUNTY) -> str:
        return self.gateway.token(dept, level, region, subject=f"{dept}-{level}-{region}")

    async def warnings(self, token: str, **variables: Any) -> dict[str, Any]:
        return await self.gateway.query(token, WARNINGS, variables)

    async def visible(self, token: str, **variables: Any) -> dict[str, Any]:
        body = await self.warnings(token, **variables)
        assert "errors" not in body, body["errors"]
        connection: dict[str, Any] = body["data"]["warnings"]
        return connection

    def who(self, node: dict[str, Any]) -> str:
        return self.people.key_of(uuid.UUID(node["person"]["id"]))


@pytest.fixture(scope="module")
async def loop(warning_gateway: Harness) -> Loop:  # noqa: F811
    await clear(warning_gateway)
    people = await add_people(warning_gateway, SUBJECTS)
    rules = rules_of("shandong")
    # The low-income rule pushed to rural revitalisation only: civil affairs must not see it.
    only_rural = (Department.RURAL_REVITALIZATION,)
    rules = dataclasses.replace(
        rules,
        warnings=tuple(
            dataclasses.replace(r, push_to=only_rural) if r.rule == "SHANDONG_LOW_INCOME_50" else r
            for r in rules.warnings
        ),
    )
    await run_warnings(
        warning_gateway.runtime.engine, rules, Month(2026, 10), today=TODAY, triggered_by="test"
    )
    return Loop(warning_gateway, people)


def keys(loop: Loop, connection: dict[str, Any]) -> list[str]:
    return sorted(loop.who(node) for node in nodes(connection))


# ============================================================================ who sees what
async def test_county_civil_affairs_sees_only_what_was_pushed_to_it_in_its_county(
    loop: Loop,
) -> None:
    seen = await loop.visible(loop.token("civil_affairs"))

    assert keys(loop, seen) == ["ordinary"]
    assert seen["totalCount"] == 1
    [node] = nodes(seen)
    assert [t["department"] for t in node["tasks"]] == ["CIVIL_AFFAIRS"]
    assert node["person"]["name"] is not None


async def test_rural_revitalisation_sees_the_pushed_ordinary_person(loop: Loop) -> None:
    seen = await loop.visible(loop.token("rural_revitalization"))

    assert keys(loop, seen) == ["edge", "ordinary"]
    for node in nodes(seen):
        # neither person holds a rural-revitalisation category: the push opened the row
        assert node["person"]["name"].startswith("测试")
        assert [t["department"] for t in node["tasks"]] == ["RURAL_REVITALIZATION"]


async def test_medical_insurance_sees_every_warning_and_task_of_its_jurisdiction(
    loop: Loop,
) -> None:
    city = await loop.visible(loop.token("medical_insurance", "city", COUNTY[:4]))
    county = await loop.visible(loop.token("medical_insurance", "county", NEIGHBOUR))

    assert keys(loop, city) == ["edge", "neighbour", "ordinary"]
    assert city["totalCount"] == 3
    departments = {loop.who(n): sorted(t["department"] for t in n["tasks"]) for n in nodes(city)}
    assert departments == {
        "edge": ["RURAL_REVITALIZATION"],
        "neighbour": ["CIVIL_AFFAIRS", "RURAL_REVITALIZATION"],
        "ordinary": ["CIVIL_AFFAIRS", "RURAL_REVITALIZATION"],
    }
    assert keys(loop, county) == ["neighbour"]


@pytest.mark.parametrize("dept", ["civil_affairs", "rural_revitalization", "medical_insurance"])
async def test_another_county_sees_nothing(loop: Loop, dept: str) -> None:
    seen = await loop.visible(loop.token(dept, "county", ELSEWHERE))

    assert (seen["edges"], seen["totalCount"]) == ([], 0)


async def test_health_is_refused(loop: Loop) -> None:
    body = await loop.warnings(loop.token("health", "city", COUNTY[:4]))

    assert body["data"] is None
    assert codes(body) == {("warnings",): "FORBIDDEN"}
    assert "Loop.warnings" in body["errors"][0]["message"]


# ============================================================================ the node
async def test_a_warning_says_why(loop: Loop) -> None:
    seen = await loop.visible(loop.token("civil_affairs"))

    [node] = nodes(seen)
    assert uuid.UUID(node["id"])
    assert {
        k: node[k] for k in ("month", "year", "rule", "measure", "attention", "regionCode")
    } == {
        "month": "2026-10",
        "year": 2026,
        "rule": "SHANDONG_ORDINARY_150",
        "measure": "PERSONAL_BURDEN",
        "attention": "PROVINCE",
        "regionCode": COUNTY,
    }
    assert node["ruleDescription"].startswith("普通参保人员: 年度个人累计负担超过")
    assert (node["figure"], node["threshold"]) == ("61500.01", "61500.00")
    [task] = node["tasks"]
    # pushed on 2026-11-02, due 5 working days later; the gateway's today is 2026-11-23
    assert (task["openedOn"], task["dueOn"], task["state"], task["overdue"]) == (
        TODAY.isoformat(),
        "2026-11-09",
        "OVERDUE",
        True,
    )
    assert (task["kind"], task["regionCode"]) == ("WARNING_REVIEW", COUNTY)
    assert task["warning"] == {"id": node["id"], "rule": node["rule"], "month": "2026-10"}
    assert task["answeredOn"] is None


async def test_the_figure_is_cost_data(loop: Loop) -> None:
    lines = [
        ("health:*", "Loop.warnings", "call"),
        ("health:*", "Loop.otherDepartments", "call"),
    ]
    async with extra_policy(loop.gateway, lines):
        body = await loop.warnings(loop.token("health"))

    found = body["data"]["warnings"]
    assert found["totalCount"] == 2
    assert {n["figure"] for n in nodes(found)} == {None}
    assert {n["threshold"] for n in nodes(found)} == {"61500.00", "20500.00"}
    assert set(codes(body).values()) == {"FORBIDDEN"}
    assert {path[-1] for path in codes(body)} == {"figure"}
    assert all(n["person"]["name"] is not None for n in nodes(found))  # health reads names


async def test_the_person_follows_the_callers_row_scope(loop: Loop) -> None:
    moved = loop.people.ids["ordinary"]
    engine = loop.gateway.runtime.engine

    async def move(county: str) -> None:
        async with engine.begin() as connection:
            await connection.execute(
                update(Person)
                .where(Person.id == moved)
                .values(county_code=county, region_code=county)
            )

    await move(ELSEWHERE)  # moved away after the warning: the county's warning stays
    try:
        seen = await loop.visible(loop.token("civil_affairs"))
    finally:
        await move(COUNTY)

    [node] = nodes(seen)
    # issue 14: the warning was pushed to this county's civil affairs, which must answer for
    # the person: Person(pushed; places: addressed) keeps them in its rows after the move.
    assert node["person"]["id"] == str(moved)
    assert node["regionCode"] == COUNTY


async def test_reading_the_person_is_audited(loop: Loop) -> None:
    before = await last_audit_id(loop.gateway)

    await loop.visible(loop.token("rural_revitalization"))

    [entry] = await audit_entries(loop.gateway, before)
    assert entry.department == "rural_revitalization"
    assert sorted(json.loads(entry.person_ids)) == sorted(
        str(loop.people.ids[k]) for k in ("edge", "ordinary")
    )
    assert "Person.name" in json.loads(entry.fields)
    assert "CostBurden.personalBurden" in json.loads(entry.fields)


# ============================================================================ filters, pages
@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"month": "2026-10"}, ["edge", "neighbour", "ordinary"]),
        ({"month": "2026-09"}, []),
        ({"rule": "SHANDONG_LOW_INCOME_50"}, ["edge"]),
        ({"attention": "PROVINCE"}, ["edge", "neighbour", "ordinary"]),
        ({"attention": "CITY"}, []),
        ({"regionPrefix": NEIGHBOUR}, ["neighbour"]),
        ({"regionPrefix": "3701"}, ["edge", "neighbour", "ordinary"]),
        ({"regionPrefix": "14"}, []),
    ],
)
async def test_filters(loop: Loop, filter_: dict[str, str], expected: list[str]) -> None:
    seen = await loop.visible(loop.token("medical_insurance", "province", "37"), filter=filter_)

    assert keys(loop, seen) == expected
    assert seen["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"filter": {"month": "2026-13"}}, "month 应为 YYYY-MM"),
        ({"filter": {"rule": "drop table"}}, "rule 应为预警规则代码"),
        ({"filter": {"regionPrefix": "370102001"}}, "regionPrefix 应为 2 到 6 位数字"),
        ({"first": 1000}, "first 应在 0 到"),
        ({"after": "bm90LWEtY3Vyc29y"}, "分页游标 after 无效"),
    ],
)
async def test_bad_arguments_are_refused(
    loop: Loop, variables: dict[str, Any], message: str
) -> None:
    body = await loop.warnings(loop.token("medical_insurance"), **variables)

    assert codes(body) == {("warnings",): "BAD_USER_INPUT"}
    assert message in body["errors"][0]["message"]


async def test_pages_walk_every_warning_once(loop: Loop) -> None:
    token = loop.token("medical_insurance", "city", COUNTY[:4])
    seen: list[str] = []
    after = None
    while True:
        page = await loop.visible(token, first=1, after=after)
        seen += [loop.who(n) for n in nodes(page)]
        assert page["totalCount"] == 3
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert base64.urlsafe_b64decode(after).startswith(b"warning:2026-10|")

    assert sorted(seen) == ["edge", "neighbour", "ordinary"]
