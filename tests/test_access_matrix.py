"""The access matrix: for each default subject, everything it sees, field by field.

For every subject in ``SUBJECTS`` the test pages through all visible people (``first: 200`` and
``after`` cursors), asking for every field of the contract including relations and household
members, and compares with what ``tests/expectations.py`` computes from the seeded plaintext:

* the set of visible people (jurisdiction + row rule, relief statuses held on ``harness.today``),
  and ``totalCount`` on every page;
* each field: the plaintext, its mask, or ``null`` with a ``FORBIDDEN`` error at exactly that
  path; child records (relief statuses, enrollments, cost burdens) record by record;
* ``me`` reports the same field effects and row scope as the independent table.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.expectations import (
    ALL_GUARDED,
    DENY,
    FIELD_EFFECTS,
    ROW_RULES,
    Checker,
    Sel,
    Subject,
    Var,
    World,
    person_selection,
    render,
    world_of,
)
from tests.harness import Harness

PAGE_SIZE = 200


def _busiest(codes: list[str]) -> str:
    counts = Counter(codes)
    return max(sorted(counts), key=lambda code: counts[code])


# (department, level, how to pick the region from the seeded data)
SUBJECTS: list[tuple[str, str, Callable[[Harness, World], str]]] = [
    ("medical_insurance", "province", lambda h, w: h.busiest_county()[:2]),
    ("medical_insurance", "county", lambda h, w: h.busiest_county()),
    ("civil_affairs", "county", lambda h, w: h.busiest_county()),
    ("civil_affairs", "city", lambda h, w: _busiest([p.region_code[:4] for p in h.persons])),
    ("rural_revitalization", "county", lambda h, w: w.rural_county()),
    ("rural_revitalization", "city", lambda h, w: w.rural_county()[:4]),
    ("health", "city", lambda h, w: _busiest([p.region_code[:4] for p in h.persons])),
    ("big_data", "province", lambda h, w: h.busiest_county()[:2]),
]


def page_selection() -> tuple[Sel, ...]:
    node = person_selection()
    persons = Sel(
        "persons",
        args=(("first", PAGE_SIZE), ("after", Var("after"))),
        children=(
            Sel("totalCount"),
            Sel("pageInfo", children=(Sel("hasNextPage"), Sel("endCursor"))),
            Sel("edges", children=(Sel("cursor"), Sel("node", children=node))),
        ),
    )
    return (persons,)


ME = "query { me { department level region rowScope policyVersion fieldAccess { field effect } } }"


@pytest.mark.parametrize(
    ("dept", "level", "pick"), SUBJECTS, ids=[f"{d}-{lv}" for d, lv, _ in SUBJECTS]
)
async def test_subject_sees_exactly_its_rows_and_fields(
    harness: Harness, dept: str, level: str, pick: Callable[[Harness, World], str]
) -> None:
    world = world_of(harness)
    subject = Subject(dept, level, pick(harness, world))
    token = harness.token(dept, level, subject.region)
    expected = world.scope(subject)
    # The subject is meaningful: it sees someone (or nobody by rule), and not everybody.
    if ROW_RULES[dept] is not None:
        assert expected, f"{subject}: the seeded data gives this subject nobody to see"
    assert len(expected) < len(world.persons)
    if dept == "rural_revitalization":
        # The row rule must matter here: people in the jurisdiction it hides, some of them
        # former holders of its categories or members of a household it partly sees.
        in_area = [p for p in world.persons.values() if p.region_code.startswith(subject.region)]
        assert len(expected) < len(in_area), "the rural subject should also have hidden people"
        assert world.split_households(subject), "no household split by the rural row rule"

    selections = page_selection()
    query = render(selections, operation="query Page($after: String)")
    seen: list[uuid.UUID] = []
    after: str | None = None
    pages = 0
    while True:
        body = await harness.query(token, query, {"after": after})
        pages += 1
        assert pages <= len(world.persons) // PAGE_SIZE + 2, "paging does not terminate"
        checker = Checker(world, subject, selections=selections)
        data: dict[str, Any] | None = body.get("data")
        assert data is not None, f"{subject}: no data: {body.get('errors')}"
        connection = data["persons"]
        assert connection["totalCount"] == len(expected), (
            f"{subject}: totalCount {connection['totalCount']} != {len(expected)}"
        )
        edges = connection["edges"]
        assert len(edges) <= PAGE_SIZE
        for index, edge in enumerate(edges):
            pid = uuid.UUID(edge["node"]["id"])
            assert pid in expected, f"{subject}: sees {pid} outside its scope"
            seen.append(pid)
            node_sel = selections[0].children[2].children[1]
            checker.person(
                edge["node"], node_sel.children, ("persons", "edges", index, "node"),
                world.persons[pid],
            )  # fmt: skip
        checker.finish(body)
        info = connection["pageInfo"]
        if not info["hasNextPage"]:
            break
        assert edges, f"{subject}: hasNextPage with an empty page"
        assert info["endCursor"] == edges[-1]["cursor"]
        after = info["endCursor"]

    assert len(seen) == len(set(seen)), f"{subject}: a person appeared on two pages"
    assert set(seen) == expected, f"{subject}: missing {len(expected - set(seen))} visible people"


@pytest.mark.parametrize(
    ("dept", "level", "pick"), SUBJECTS, ids=[f"{d}-{lv}" for d, lv, _ in SUBJECTS]
)
async def test_me_reports_the_same_decision(
    harness: Harness, dept: str, level: str, pick: Callable[[Harness, World], str]
) -> None:
    world = world_of(harness)
    region = pick(harness, world)
    body = await harness.query(harness.token(dept, level, region), ME)
    assert "errors" not in body, body["errors"]
    me = body["data"]["me"]
    assert (me["department"], me["level"], me["region"]) == (dept.upper(), level.upper(), region)
    reported = {a["field"]: a["effect"].lower() for a in me["fieldAccess"]}
    # Fields outside the core contract (added by later issues) are not this table's business.
    reported = {f: e for f, e in reported.items() if f in ALL_GUARDED}
    expected = {f: e for f, e in FIELD_EFFECTS[dept].items() if e != DENY}
    assert reported == expected
    rule = ROW_RULES[dept]
    if rule is None:
        assert me["rowScope"] == []
    elif rule == "all":
        assert me["rowScope"] == ["all"]
    else:
        # Its categories, and the people pushed to it (none in the seeded world: no tasks).
        assert len(me["rowScope"]) == 2
        assert me["rowScope"][1] == "pushed"
        assert all(category in me["rowScope"][0] for category in rule)
        others = {"MINIMUM_LIVING", "EXTREME_POVERTY", "SEVERE_DISABILITY", "ORPHAN"}
        assert not any(category in me["rowScope"][0] for category in others)
