"""The access matrix: for each default subject, everything it sees, field by field.

For every subject in ``SUBJECTS`` the test pages through all visible people (``first: 200`` and
``after`` cursors), asking for every field of the contract including relations and household
members, and compares with what ``tests/expectations.py`` computes from the seeded plaintext:

* the set of visible people (jurisdiction through the places each row rule names + row rule,
  relief statuses and places held on ``harness.today``), and ``totalCount`` on every page;
* each field: the plaintext, its mask, or ``null`` with a ``FORBIDDEN`` error at exactly that
  path; child records (relief statuses, enrollments, cost burdens) record by record; for a
  person seen only through an insured place (medical insurance), only that relation's fields;
* ``me`` reports the same field effects and row scopes (with their places) as the table.
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
    INSURED,
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


def _most_insured_from_elsewhere(world: World, digits: int) -> str:
    """The region (of ``digits``) where most people living elsewhere are insured today: the
    medical-insurance caller there sees them through the insured place only."""
    counts: Counter[str] = Counter()
    for pid, places in world.places.items():
        home = world.persons[pid].region_code[:digits]
        counts.update(
            {
                p.county[:digits]
                for p in places
                if p.kind == INSURED and p.held_on(world.today) and p.county[:digits] != home
            }
        )
    return _busiest(list(counts.elements()))


# (department, level, how to pick the region from the seeded data); the medical-insurance
# subjects marked ``places`` see people living elsewhere, insured in their region.
def _subject(dept: str, level: str, pick: Callable[[Harness, World], str], tag: str = "") -> Any:
    return pytest.param(dept, level, pick, id="-".join(filter(None, (dept, level, tag))))


def _busiest_city(h: Harness, w: World) -> str:
    return _busiest([p.region_code[:4] for p in h.persons])


SUBJECTS = [
    _subject("medical_insurance", "province", lambda h, w: h.busiest_county()[:2], "places"),
    _subject("medical_insurance", "county", lambda h, w: h.busiest_county()),
    _subject("medical_insurance", "county", lambda h, w: _most_insured_from_elsewhere(w, 6),
             "places"),
    _subject("medical_insurance", "city", lambda h, w: _most_insured_from_elsewhere(w, 4),
             "places"),
    _subject("civil_affairs", "county", lambda h, w: h.busiest_county()),
    _subject("civil_affairs", "city", _busiest_city),
    _subject("rural_revitalization", "county", lambda h, w: w.rural_county()),
    _subject("rural_revitalization", "city", lambda h, w: w.rural_county()[:4]),
    _subject("health", "city", _busiest_city),
    _subject("big_data", "province", lambda h, w: h.busiest_county()[:2]),
]  # fmt: skip


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


@pytest.mark.parametrize(("dept", "level", "pick"), SUBJECTS)
async def test_subject_sees_exactly_its_rows_and_fields(
    harness: Harness,
    dept: str,
    level: str,
    pick: Callable[[Harness, World], str],
    request: pytest.FixtureRequest,
) -> None:
    world = world_of(harness)
    subject = Subject(dept, level, pick(harness, world))
    token = harness.token(dept, level, subject.region)
    expected = world.scope(subject)
    # The subject is meaningful: it sees someone (or nobody by rule), and not everybody.
    if ROW_RULES[dept]:
        assert expected, f"{subject}: the seeded data gives this subject nobody to see"
    assert len(expected) < len(world.persons)
    if "places" in request.node.callspec.id:
        # People living elsewhere, insured here: seen, with the insured relation's fields.
        assert world.narrowed(subject), f"{subject}: nobody seen through the insured place only"
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


@pytest.mark.parametrize(("dept", "level", "pick"), SUBJECTS)
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
    # Each row scope with the places it counts (medical insurance: "all; places:
    # residence|insured"; rural revitalisation: its categories, then the people pushed to it).
    assert sorted(me["rowScope"]) == sorted(str(rule) for rule in ROW_RULES[dept])
