"""Adversarial queries: nothing outside a caller's scope leaks, and denied fields stay denied.

CONTRACT.md, "Access-control semantics": a row outside scope behaves exactly like a row that
does not exist; a denied field is ``null`` with a ``FORBIDDEN`` error at its path; filtering or
looking up by a field the caller may not read is refused with ``FORBIDDEN``. Each test below
tries one way around that (aliases, fragments, relations, prefixes, ID spellings, cursors,
``__typename``, repeated fields with different arguments) and checks the answer against the
independent rules in ``tests/expectations.py``.

The tests about arguments (lookups, filters, prefixes, relation arguments) send each document
again with its arguments rewritten (``REWRITES``, ``tests.argument_forms_support``): all as
variables, then mixed (variables, variable defaults, variables declared and not given, which
read as absent). A variable gets exactly what the literal gets: the same rows, the same
fields, the same refusals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import date
from typing import Any

import pytest

from tests.argument_forms_support import DEFAULT, LITERAL, OMITTED, VARIABLE, write_arguments
from tests.expectations import (
    ALL_GUARDED,
    LEVEL_DIGITS,
    LEVELS,
    Checker,
    EnumLit,
    Sel,
    Subject,
    World,
    assert_no_secrets,
    make_id,
    person_selection,
    render,
    strings_in,
    world_of,
)
from tests.harness import Harness

BY_ID = "query($id: String!) { person(idNumber: $id) { %s } }"
# How the argument tests write their documents again, forms cycled in document order: every
# argument a variable; then mixed (``persons``: ``first`` a default, the filter a literal object
# whose fields are left out, variables, defaults in turn; relation arguments likewise).
REWRITES = ((VARIABLE,), (DEFAULT, LITERAL, OMITTED, VARIABLE))
NO_LIST_DEPARTMENTS = ("big_data", "public_security", "disabled_federation", "human_resources")


# ---------------------------------------------------------------------------- helpers
def without_request_ids(body: dict[str, Any]) -> dict[str, Any]:
    """The body with per-request noise (request ids) removed, for byte-for-byte comparisons."""
    copy = json.loads(json.dumps(body))
    for error in copy.get("errors") or []:
        error.get("extensions", {}).pop("requestId", None)
        error.pop("locations", None)
    return copy


def people_in(world: World, prefix: str) -> list[Any]:
    return sorted(
        (p for p in world.persons.values() if p.region_code.startswith(prefix)),
        key=lambda p: p.person_id,
    )


def other_county(world: World, county: str, *, same_city: bool) -> str:
    candidates = [c for c in world.counties() if c != county and (c[:4] == county[:4]) == same_city]
    if same_city and not candidates:
        candidates = [c for c in world.counties() if c != county and c[:2] == county[:2]]
    assert candidates, "the seeded data has a single county"
    return candidates[0]


def other_province(world: World, province: str) -> str:
    return next(p for p in world.provinces() if p != province)


def outsiders(world: World, subject: Subject, prefix: str) -> list[Any]:
    """People living under ``prefix`` whom ``subject`` does not see (no place ties them to
    its region either: a person insured there is seen by medical insurance, issue 14)."""
    return [p for p in people_in(world, prefix) if p.person_id not in world.scope(subject)]


def absent_id(world: World, county: str) -> str:
    """A valid ID number (check digit right, real region and date) that nobody holds."""
    for sequence in range(1, 1000, 2):
        candidate = make_id(county, date(1970, 1, 1), sequence)
        if candidate not in world.by_id_number:
            return candidate
    raise AssertionError("no free ID number")  # pragma: no cover


def with_wrong_check_digit(id_number: str) -> str:
    wrong = "0" if id_number[17] != "0" else "1"
    return id_number[:17] + wrong


def _literal_lookup(id_number: str) -> str:
    return render((lookup("person", id_number, (Sel("id"),)),))


def codes(body: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    return {
        tuple(e.get("path") or ()): e.get("extensions", {}).get("code")
        for e in body.get("errors") or []
    }


async def check(
    harness: Harness,
    subject: Subject,
    selections: tuple[Sel, ...],
    *,
    rewrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``selections`` as ``subject`` and check the whole response against the rules; with
    ``rewrite``, also each of ``REWRITES`` of the document. Returns the literal's answer."""
    token = harness.token(subject.dept, subject.level, subject.region)
    body = await harness.query(token, render(selections), **kwargs)
    Checker(world_of(harness), subject).root(body, selections)
    for forms in REWRITES if rewrite else ():
        written = write_arguments(selections, forms)
        answer = await harness.query(token, written.query, written.variables, **kwargs)
        try:
            Checker(world_of(harness), subject).root(answer, written.selections)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{written.query}\n{written.variables}") from None
    return body


async def check_each(
    harness: Harness, subject: Subject, selections: tuple[Sel, ...], *, rewrite: bool = False
) -> dict[str, Any]:
    """Like ``check``, one request per root field, answers merged into one body.

    Several root fields in one request are exercised by the alias tests; everywhere else one
    root per request keeps each test about its own concern (see
    ``test_several_root_fields_in_one_request``)."""
    merged: dict[str, Any] = {"data": {}, "errors": []}
    for sel in selections:
        body = await check(harness, subject, (sel,), rewrite=rewrite)
        merged["data"][sel.key] = None if body["data"] is None else body["data"][sel.key]
        merged["errors"] += body.get("errors") or []
    if not merged["errors"]:
        del merged["errors"]
    return merged


def lookup(alias: str, id_number: str, children: tuple[Sel, ...] | None = None) -> Sel:
    return Sel(
        "person",
        alias=alias,
        args=(("idNumber", id_number),),
        children=person_selection() if children is None else children,
    )


def persons(
    alias: str | None = None,
    *,
    flt: dict[str, Any] | None = None,
    first: int = 200,
    node: tuple[Sel, ...] | None = None,
) -> Sel:
    args: list[tuple[str, Any]] = [("first", first)]
    if flt is not None:
        args.append(("filter", flt))
    return Sel(
        "persons",
        alias=alias,
        args=tuple(args),
        children=(
            Sel("totalCount"),
            Sel("pageInfo", children=(Sel("hasNextPage"), Sel("endCursor"))),
            Sel("edges", children=(Sel("cursor"), Sel("node", children=node or (Sel("id"),)))),
        ),
    )


@pytest.fixture
def world(harness: Harness) -> World:
    return world_of(harness)


@pytest.fixture
def county(harness: Harness) -> str:
    return harness.busiest_county()


# ---------------------------------------------------------------------------- aliases
async def test_aliases_mixing_in_and_out_of_scope_lookups(
    harness: Harness, world: World, county: str
) -> None:
    subject = Subject("civil_affairs", "county", county)
    inside = people_in(world, county)[0]
    near = outsiders(world, subject, other_county(world, county, same_city=True))[0]
    far = outsiders(world, subject, other_province(world, county[:2]))[0]
    selections = (
        lookup("a", inside.id_number),
        lookup("b", near.id_number),
        lookup("c", far.id_number, (Sel("id"), Sel("regionCode"))),
        lookup("d", inside.id_number, (Sel("id"), Sel("phone", alias="idNumber"))),
    )
    body = await check(harness, subject, selections, rewrite=True)
    data = body["data"]
    assert data["a"]["id"] == str(inside.person_id)
    assert data["b"] is None
    assert data["c"] is None
    # An alias named like another field gets the masked phone, not the ID number.
    masked = None if inside.phone is None else inside.phone[:3] + "****" + inside.phone[-4:]
    assert data["d"]["idNumber"] == masked
    assert not any(path[0] in ("b", "c") for path in codes(body))


async def test_aliases_rural_holder_and_non_holder_of_one_county(
    harness: Harness, world: World
) -> None:
    subject = Subject("rural_revitalization", "county", world.rural_county())
    scope = world.scope(subject)
    in_county = people_in(world, subject.region)
    holder = next(p for p in in_county if p.person_id in scope)
    hidden = [p for p in in_county if p.person_id not in scope]
    assert hidden
    selections = (
        lookup("holder", holder.id_number),
        *(lookup(f"h{i}", p.id_number) for i, p in enumerate(hidden)),
    )
    body = await check(harness, subject, selections)
    assert body["data"]["holder"] is not None
    assert all(body["data"][f"h{i}"] is None for i in range(len(hidden)))


async def test_several_root_fields_in_one_request(harness: Harness, county: str) -> None:
    """Two root fields that read people, in one request, both answered (no internal error).

    GraphQL resolves root query fields concurrently; they share the request's one database
    session."""
    token = harness.token("medical_insurance", "county", county)
    for query in (
        "{ a: persons(first: 1) { totalCount } b: persons(first: 1) { totalCount } }",
        "{ a: persons(first: 1) { edges { node { id } } } b: persons(first: 2) { totalCount } }",
    ):
        for _ in range(3):
            body = await harness.query(token, query)
            assert "errors" not in body, body["errors"]
            assert body["data"]["a"] is not None
            assert body["data"]["b"] is not None


@pytest.mark.parametrize(
    "shape",
    ["refused_first_then_page", "page_then_refused", "refused_then_lookup", "lookup_then_refused"],
)
async def test_refused_root_next_to_a_reading_root(
    harness: Harness, world: World, county: str, shape: str
) -> None:
    """A refused filter (non-null ``persons``) nulls the whole answer; the sibling root that
    was reading people must not break the request (an exception instead of HTTP 200 with
    ``data: null`` and one ``FORBIDDEN``)."""
    inside = people_in(world, county)[0]
    refused = "a: persons(filter: {category: MINIMUM_LIVING}) { totalCount }"
    page = "b: persons(first: 5) { edges { node { id name } } }"
    one = f'b: person(idNumber: "{inside.id_number}") {{ id name }}'
    query = {
        "refused_first_then_page": f"{{ {refused} {page} }}",
        "page_then_refused": f"{{ {page} {refused} }}",
        "refused_then_lookup": f"{{ {refused} {one} }}",
        "lookup_then_refused": f"{{ {one} {refused} }}",
    }[shape]
    token = harness.token("health", "county", county)
    for attempt in range(4):
        try:
            response = await asyncio.wait_for(harness.post(token, query), 10)
        except Exception as error:  # the app itself raised: a 500 for a real client
            raise AssertionError(
                f"attempt {attempt}: request failed with {type(error).__name__}: {error}"
            ) from None
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"] is None
        assert codes(body) == {("a",): "FORBIDDEN"}, body["errors"]


@pytest.mark.parametrize("shape", ["too_many_aliases", "too_deep"])
async def test_over_limit_query_is_refused_cleanly(
    harness: Harness, world: World, county: str, shape: str
) -> None:
    """Aliases (or nesting) beyond the gateway's query-shape limits: refused as the caller's
    fault, with nothing executed; not an internal server error."""
    outsider = people_in(world, other_county(world, county, same_city=True))[0]
    inside = people_in(world, county)[0]
    if shape == "too_many_aliases":
        lookups = " ".join(
            f'a{i}: person(idNumber: "{outsider.id_number}") {{ id name }}' for i in range(60)
        )
        query = "{ " + lookups + " }"
    else:
        nested = "id"
        for _ in range(8):
            nested = f"id household {{ members {{ {nested} }} }}"
        query = f'{{ person(idNumber: "{inside.id_number}") {{ {nested} }} }}'
    subject = Subject("civil_affairs", "county", county)
    body = await harness.query(harness.token(subject.dept, subject.level, subject.region), query)
    assert body.get("data") is None, "an over-limit query was executed"
    got = {e["extensions"]["code"] for e in body["errors"]}
    assert got <= {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}, body[
        "errors"
    ]
    assert_no_secrets(world, subject, body)


# ---------------------------------------------------------------------------- fragments
async def test_named_and_inline_fragments_do_not_unlock_denied_fields(
    harness: Harness, world: World
) -> None:
    city = harness.busiest_county()[:4]
    subject = Subject("health", "city", city)
    person = people_in(world, city)[0]
    denied = (
        Sel("phone", wrap="named"),
        Sel("address", wrap="inline"),
        Sel(
            "household",
            wrap="named",
            children=(Sel("id"), Sel("members", children=(Sel("id"), Sel("phone")))),
        ),
        Sel("reliefStatuses", wrap="inline", children=(Sel("category"),)),
        Sel("costBurdens", wrap="named", children=(Sel("year"), Sel("totalCost", wrap="inline"))),
        Sel(
            "enrollments",
            wrap="named",
            children=(
                Sel("year"),
                Sel("status", wrap="inline"),
                Sel("subsidyAmount", wrap="named"),
                Sel("regionCode", wrap="inline"),
            ),
        ),
    )
    node = (Sel("id", wrap="inline"), Sel("name", wrap="named"), *denied)
    selections = (
        lookup("p", person.id_number, node),
        persons("list", first=5, node=node),
    )
    body = await check_each(harness, subject, selections)
    forbidden = {path for path, code in codes(body).items() if code == "FORBIDDEN"}
    assert ("p", "phone") in forbidden
    assert ("p", "address") in forbidden
    assert ("p", "household") in forbidden
    assert ("list", "edges", 4, "node", "costBurdens") in forbidden


async def test_hand_written_nested_fragments(harness: Harness, world: World) -> None:
    city = harness.busiest_county()[:4]
    token = harness.token("health", "city", city)
    query = """
    query { persons(first: 3) { ...Conn } }
    fragment Conn on PersonConnection {
      totalCount edges { node { ...P ... on Person { address } } }
    }
    fragment P on Person { id name phone ...Deep }
    fragment Deep on Person { costBurdens { year } household { members { id } } }
    """
    body = await harness.query(token, query)
    edges = body["data"]["persons"]["edges"]
    assert len(edges) == 3
    expected = set()
    for index, edge in enumerate(edges):
        node = edge["node"]
        person = world.persons[uuid.UUID(node["id"])]
        assert person.region_code.startswith(city)
        assert node["name"] == person.name
        for denied in ("address", "phone", "costBurdens", "household"):
            assert node[denied] is None
            expected.add(("persons", "edges", index, "node", denied))
    assert codes(body) == dict.fromkeys(expected, "FORBIDDEN")
    assert_no_secrets(world, Subject("health", "city", city), body)


# ---------------------------------------------------------------------------- relations
async def test_household_members_outside_row_scope_are_absent(
    harness: Harness, world: World
) -> None:
    subject = Subject("rural_revitalization", "county", world.rural_county())
    split = world.split_households(subject)
    assert split, "the seeded data has no household split by the rural row rule"
    scope = world.scope(subject)
    members_sel = (
        Sel("id"), Sel("idNumber"), Sel("name"), Sel("phone"),
        Sel("reliefStatuses", children=(Sel("category"), Sel("validTo"))),
        Sel("household", children=(Sel("id"), Sel("members", children=(Sel("id"), Sel("name"))))),
    )  # fmt: skip
    node = (Sel("id"), Sel("household", children=(Sel("id"), Sel("members", children=members_sel))))
    selections: list[Sel] = []
    for index, household_id in enumerate(split):
        member = next(m for m in world.households[household_id] if m.person_id in scope)
        selections.append(lookup(f"m{index}", member.id_number, node))
    selections.append(persons("all", node=node))
    body = await check_each(harness, subject, tuple(selections))
    hidden = {
        str(m.person_id)
        for household_id in split
        for m in world.households[household_id]
        if m.person_id not in scope
    }
    assert hidden
    assert not hidden & set(strings_in(body)), "a hidden household member's id is in the answer"
    # Only __typename asked: the list still has exactly the in-scope members.
    token = harness.token(subject.dept, subject.level, subject.region)
    member = next(m for m in world.households[split[0]] if m.person_id in scope)
    typename_only = await harness.query(
        token,
        "query($id: String!) { person(idNumber: $id) { household { members { __typename } } } }",
        {"id": member.id_number},
    )
    listed = typename_only["data"]["person"]["household"]["members"]
    assert len(listed) == sum(1 for m in world.households[split[0]] if m.person_id in scope)


async def test_civil_affairs_sees_the_whole_household_the_rural_caller_sees_in_part(
    harness: Harness, world: World
) -> None:
    rural = Subject("rural_revitalization", "county", world.rural_county())
    household_id = world.split_households(rural)[0]
    member = world.households[household_id][0]
    civil = Subject("civil_affairs", "county", rural.region)
    node = (Sel("id"), Sel("household", children=(Sel("members", children=(Sel("id"),)),)))
    body = await check(harness, civil, (lookup("p", member.id_number, node),))
    assert len(body["data"]["p"]["household"]["members"]) == len(world.households[household_id])


# ---------------------------------------------------------------------------- prefixes & counts
async def test_region_prefix_outside_jurisdiction_is_empty(
    harness: Harness, world: World, county: str
) -> None:
    subject = Subject("civil_affairs", "county", county)
    near = other_county(world, county, same_city=True)
    far_person = people_in(world, other_province(world, county[:2]))[0]
    inside = people_in(world, county)[0]
    prefixes = {
        "near_county": near,
        "near_village": people_in(world, near)[0].region_code,
        "far_province": far_person.region_code[:2],
        "far_village": far_person.region_code,
        "own_city": county[:4],  # wider than the jurisdiction: narrows nothing
        "own_province": county[:2],
        "own_township": inside.region_code[:9],
        "own_village": inside.region_code,
        "own_county": county,
    }
    selections = tuple(
        persons(alias, flt={"regionPrefix": prefix}, node=(Sel("id"), Sel("regionCode")))
        for alias, prefix in prefixes.items()
    )
    body = await check_each(harness, subject, selections, rewrite=True)
    data = body["data"]
    for alias in ("near_county", "near_village", "far_province", "far_village"):
        assert data[alias]["totalCount"] == 0
        assert data[alias]["edges"] == []
        assert data[alias]["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    scope_size = len(world.scope(subject))
    assert data["own_city"]["totalCount"] == data["own_province"]["totalCount"] == scope_size
    assert 0 < data["own_village"]["totalCount"] <= data["own_township"]["totalCount"]


async def test_region_prefix_out_of_scope_reads_like_an_empty_village(
    harness: Harness, world: World
) -> None:
    """A prefix naming a place where people exist but are out of scope answers exactly like a
    prefix naming a place where nobody lives."""
    subject = Subject("rural_revitalization", "county", world.rural_county())
    scope = world.scope(subject)
    villages_in_scope = {world.persons[pid].region_code for pid in scope}
    hidden = sorted(
        (p for p in people_in(world, subject.region) if p.person_id not in scope),
        key=lambda p: (p.region_code in villages_in_scope, p.person_id),
    )[0]
    empty_village = subject.region + "999999"
    assert not people_in(world, empty_village)
    token = harness.token(subject.dept, subject.level, subject.region)
    query = (
        "query($p: String) { persons(filter: {regionPrefix: $p}, first: 200) "
        "{ totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    answers = {}
    for prefix in (hidden.region_code, empty_village):
        answers[prefix] = await harness.query(token, query, {"p": prefix})
    expected_ids = {
        str(pid) for pid in scope if world.persons[pid].region_code == hidden.region_code
    }
    got = answers[hidden.region_code]["data"]["persons"]
    assert {e["node"]["id"] for e in got["edges"]} == expected_ids
    assert got["totalCount"] == len(expected_ids)
    if not expected_ids:
        assert answers[hidden.region_code] == answers[empty_village]


@pytest.mark.parametrize(
    "flt",
    [
        None,
        {"category": EnumLit("LIFTED_FROM_POVERTY")},
        {"category": EnumLit("MINIMUM_LIVING")},  # held by rural people too; others hidden
        {"category": EnumLit("SEVERE_DISABILITY")},
        {"activeOn": date(2023, 6, 1)},
        {"category": EnumLit("MONITORED_UNSTABLE"), "activeOn": date(2026, 3, 1)},
        {"enrolledIn": 2026},
        {"enrolledIn": 2025, "category": EnumLit("MONITORED_MARGINAL")},
    ],
    ids=lambda f: "none" if f is None else "+".join(sorted(f)),
)
async def test_total_count_never_includes_out_of_scope(
    harness: Harness, world: World, flt: dict[str, Any] | None
) -> None:
    subjects = [
        Subject("rural_revitalization", "county", world.rural_county()),
        Subject("rural_revitalization", "city", world.rural_county()[:4]),
        Subject("civil_affairs", "city", harness.busiest_county()[:4]),
    ]
    for subject in subjects:
        body = await check(harness, subject, (persons("p", flt=flt, first=200),), rewrite=True)
        count = body["data"]["p"]["totalCount"]
        assert count == len(world.filtered_scope(subject, flt))
        # The same filter as medical insurance (who sees everyone in the jurisdiction) counts
        # at least as many: the difference is exactly the out-of-scope people.
        wide = Subject("medical_insurance", subject.level, subject.region)
        assert count <= len(world.filtered_scope(wide, flt))


# ---------------------------------------------------------------------------- refused filters
REFUSED_FILTERS = [
    ("health", {"category": EnumLit("MINIMUM_LIVING")}),
    ("health", {"activeOn": date(2026, 1, 1)}),
    ("health", {"category": EnumLit("EXTREME_POVERTY"), "enrolledIn": 2026}),
    ("big_data", {"category": EnumLit("MINIMUM_LIVING")}),
    ("big_data", {"enrolledIn": 2026}),
    ("public_security", {"activeOn": date(2026, 1, 1)}),
    ("human_resources", {"enrolledIn": 2025, "regionPrefix": "37"}),
]


@pytest.mark.parametrize(("dept", "flt"), REFUSED_FILTERS, ids=lambda v: str(v))
async def test_filter_on_unreadable_field_is_forbidden(
    harness: Harness, world: World, county: str, dept: str, flt: dict[str, Any]
) -> None:
    subject = Subject(dept, "county", county)
    selections = (persons("p", flt=flt),)
    body = await check(harness, subject, selections, rewrite=True)
    assert body["data"] is None
    assert codes(body) == {("p",): "FORBIDDEN"}
    # The filter as one variable, as a default, or field by field in a literal object: the
    # same refusal (a variable never reaches a field the caller may not filter by).
    token = harness.token(subject.dept, subject.level, subject.region)
    for forms in (
        (VARIABLE,),
        (DEFAULT,),
        (LITERAL, LITERAL, VARIABLE),
        (LITERAL, LITERAL, DEFAULT),
    ):
        written = write_arguments(selections, forms)
        answer = await harness.query(token, written.query, written.variables)
        assert answer["data"] is None, written.query
        assert codes(answer) == {("p",): "FORBIDDEN"}, written.query


async def test_refused_filter_answers_the_same_whether_or_not_anyone_matches(
    harness: Harness, world: World, county: str
) -> None:
    token = harness.token("health", "county", county)
    held = {s.category for p in people_in(world, county) for s in world.statuses[p.person_id]}
    never = next(c for c in ("ORPHAN", "UNSUPPORTED_CHILD", "SEVERE_DISABILITY") if c not in held)
    present = sorted(held)[0]
    query = "query { persons(filter: {category: %s}) { totalCount edges { node { id } } } }"
    a = await harness.query(token, query % present)
    b = await harness.query(token, query % never)
    assert without_request_ids(a) == without_request_ids(b)
    assert a["data"] is None


@pytest.mark.parametrize(
    ("dept", "flt"),
    [
        ("civil_affairs", {"enrolledIn": 2026}),
        ("health", {"enrolledIn": 2026}),
        ("civil_affairs", {"category": EnumLit("MINIMUM_LIVING"), "activeOn": date(2025, 1, 1)}),
        ("rural_revitalization", {"activeOn": date(2024, 1, 1), "enrolledIn": 2025}),
    ],
    ids=lambda v: str(v),
)
async def test_filter_on_readable_field_is_allowed(
    harness: Harness, world: World, county: str, dept: str, flt: dict[str, Any]
) -> None:
    subject = Subject(dept, "county", county)
    selection = persons("p", flt=flt, node=(Sel("id"), Sel("name")))
    body = await check(harness, subject, (selection,), rewrite=True)
    assert body["data"]["p"]["totalCount"] == len(world.filtered_scope(subject, flt))


async def test_active_on_argument_needs_validity_dates(
    harness: Harness, world: World, county: str
) -> None:
    person = people_in(world, county)[0]
    node = (
        Sel("id"),
        Sel("reliefStatuses", alias="now", args=(("activeOn", harness.today),),
            children=(Sel("category"),)),
    )  # fmt: skip
    for dept in ("health", "big_data"):
        subject = Subject(dept, "county", county)
        selections = (lookup("p", person.id_number, node), persons("l", node=node))
        await check_each(harness, subject, selections, rewrite=True)


# ---------------------------------------------------------------------------- lookups
async def test_lookup_outside_scope_reads_exactly_like_an_absent_person(
    harness: Harness, world: World, county: str
) -> None:
    rural = Subject("rural_revitalization", "county", world.rural_county())
    hidden_rural = next(
        p for p in people_in(world, rural.region) if p.person_id not in world.scope(rural)
    )
    near = other_county(world, county, same_city=True)
    far = other_province(world, county[:2])
    cases = [
        (Subject("civil_affairs", "county", county), near),
        (Subject("civil_affairs", "city", county[:4]), far),
        (Subject("medical_insurance", "province", county[:2]), far),
        (Subject("medical_insurance", "county", county), near),
        (Subject("health", "county", county), other_county(world, county, same_city=False)),
    ]
    chosen = [(subject, outsiders(world, subject, prefix)[0]) for subject, prefix in cases]
    chosen.append((rural, hidden_rural))
    query = BY_ID % "id idNumber name phone regionCode household { members { id } }"
    for subject, outsider in chosen:
        assert outsider.person_id not in world.scope(subject)
        token = harness.token(subject.dept, subject.level, subject.region)
        out = await harness.query(token, query, {"id": outsider.id_number})
        none = await harness.query(token, query, {"id": absent_id(world, outsider.id_number[:6])})
        assert out == {"data": {"person": None}}, f"{subject}: {out}"
        assert out == none


async def test_other_province_caller_cannot_find_this_provinces_people(
    harness: Harness, world: World, county: str
) -> None:
    home = county[:2]
    foreign = other_province(world, home)
    for dept in ("medical_insurance", "civil_affairs", "health"):
        subject = Subject(dept, "province", foreign)
        # (someone of this county insured in the other province is seen there: not these)
        local_people = outsiders(world, subject, county)[:20]
        assert len(local_people) == min(20, len(people_in(world, county)))
        node = (Sel("id"), Sel("name"))
        selections = tuple(lookup(f"p{i}", p.id_number, node) for i, p in enumerate(local_people))
        body = await check_each(harness, subject, selections)
        assert all(value is None for value in body["data"].values())
        assert "errors" not in body


def _spellings(id_number: str) -> list[str]:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in id_number)
    variants = [
        id_number.lower(),
        full_width,
        full_width.replace("X", "ｘ"),
        f"{id_number[:6]} {id_number[6:14]} {id_number[14:]}",
        f"  {id_number}\t",
        f"{id_number[:6]}\u3000{id_number[6:]}",
    ]
    return list(dict.fromkeys(variants))


async def test_id_number_spellings_resolve_only_in_scope(harness: Harness, world: World) -> None:
    with_x = sorted(
        (p for p in world.persons.values() if p.id_number.endswith("X")),
        key=lambda p: p.person_id,
    )
    assert with_x, "no seeded ID ends with X"
    person = with_x[0]
    county = person.region_code[:6]
    outsider = next(
        p
        for p in sorted(world.persons.values(), key=lambda p: p.person_id)
        if p.id_number.endswith("X") and not p.region_code.startswith(county)
    )
    subject = Subject("civil_affairs", "county", county)
    node = (Sel("id"), Sel("idNumber"))
    spellings = _spellings(person.id_number)
    selections = tuple(lookup(f"in{i}", s, node) for i, s in enumerate(spellings)) + tuple(
        lookup(f"out{i}", s, node) for i, s in enumerate(_spellings(outsider.id_number))
    )
    body = await check_each(harness, subject, selections)
    for i in range(len(spellings)):
        # The canonical stored form comes back, whatever the caller typed.
        assert body["data"][f"in{i}"] == {"id": str(person.person_id), "idNumber": person.id_number}
        assert body["data"][f"out{i}"] is None
    assert "errors" not in body


@pytest.mark.parametrize(
    "kind", ["in_scope_bad_check", "out_of_scope_bad_check", "absent_bad_check", "short",
             "letters", "future_birth", "bad_province"],
)  # fmt: skip
async def test_invalid_id_number_is_bad_user_input_without_echo(
    harness: Harness, world: World, county: str, kind: str
) -> None:
    subject = Subject("civil_affairs", "county", county)
    inside = people_in(world, county)[0]
    outside = people_in(world, other_county(world, county, same_city=True))[0]
    raw = {
        "in_scope_bad_check": with_wrong_check_digit(inside.id_number),
        "out_of_scope_bad_check": with_wrong_check_digit(outside.id_number),
        "absent_bad_check": with_wrong_check_digit(absent_id(world, county)),
        "short": inside.id_number[:15],
        "letters": "ABCDEF" + inside.id_number[6:],
        "future_birth": make_id(county, date(harness.today.year + 1, 1, 1), 11),
        "bad_province": make_id("990101", date(1980, 1, 1), 11),
    }[kind]
    token = harness.token(subject.dept, subject.level, subject.region)
    body = await harness.query(token, BY_ID % "id name", {"id": raw})
    assert body["data"] == {"person": None}
    assert codes(body) == {("person",): "BAD_USER_INPUT"}
    message = json.dumps(body["errors"], ensure_ascii=False)
    assert raw[:14] not in message, "the error echoes the submitted number"
    for person in (inside, outside):
        for value in (person.id_number, person.name, person.phone, person.address):
            assert not value or value not in message
    assert_no_secrets(world, subject, body)


async def test_bad_check_digit_answers_the_same_for_present_and_absent_people(
    harness: Harness, world: World, county: str
) -> None:
    token = harness.token("civil_affairs", "county", county)
    inside = people_in(world, county)[0]
    query = BY_ID % "id"
    a = await harness.query(token, query, {"id": with_wrong_check_digit(inside.id_number)})
    b = await harness.query(token, query, {"id": with_wrong_check_digit(absent_id(world, county))})
    assert without_request_ids(a) == without_request_ids(b)


# ---------------------------------------------------------------------------- no-list departments
@pytest.mark.parametrize("dept", NO_LIST_DEPARTMENTS)
@pytest.mark.parametrize("level", LEVELS)
async def test_departments_without_a_sharing_list_get_no_person_data(
    harness: Harness, world: World, county: str, dept: str, level: str
) -> None:
    subject = Subject(dept, level, county[: LEVEL_DIGITS[level]])
    token = harness.token(dept, level, subject.region)
    person = people_in(world, county)[0]
    selections = (
        persons("all", node=person_selection()),
        persons("prefixed", flt={"regionPrefix": county}, first=0),
        lookup("one", person.id_number),
    )
    body = await check_each(harness, subject, selections)
    assert body["data"]["all"] == {
        "totalCount": 0, "edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}
    }  # fmt: skip
    assert body["data"]["prefixed"]["totalCount"] == 0
    # With no row there is no field to resolve; the lookup itself is refused (no idNumber READ),
    # and the decision denies every core field.
    assert body["data"]["one"] is None
    assert codes(body) == {("one",): "FORBIDDEN"}
    me = await harness.query(token, "{ me { rowScope fieldAccess { field effect } } }")
    assert me["data"]["me"]["rowScope"] == []
    granted = {a["field"] for a in me["data"]["me"]["fieldAccess"]}
    assert not granted & set(ALL_GUARDED)


# ---------------------------------------------------------------------------- error messages
async def test_error_messages_never_carry_seeded_plaintext(
    harness: Harness, world: World, county: str
) -> None:
    """Errors from denied fields, refused filters, invalid input and bad cursors: none of them
    carries a name, ID number, phone or address of anyone, readable or not."""
    plaintext = {
        value
        for p in world.persons.values()
        for value in (p.id_number, p.name, p.phone, p.address)
        if value and len(value) >= 2
    }
    inside = people_in(world, county)[0]
    queries = [
        ("health", "city", county[:4], render((persons(node=person_selection()),))),
        ("civil_affairs", "county", county, render((persons(node=person_selection()),))),
        ("rural_revitalization", "county", world.rural_county(),
         render((persons(node=person_selection()),))),
        ("health", "county", county,
         '{ persons(filter: {category: MINIMUM_LIVING}) { totalCount } }'),
        ("big_data", "province", county[:2], _literal_lookup(inside.id_number)),
        ("civil_affairs", "county", county,
         _literal_lookup(with_wrong_check_digit(inside.id_number))),
        ("civil_affairs", "county", county, '{ persons(after: "bm9wZQ==") { totalCount } }'),
        ("civil_affairs", "county", county, '{ persons(first: 201) { totalCount } }'),
        ("civil_affairs", "county", county,
         '{ persons(filter: {regionPrefix: "37x"}) { totalCount } }'),
    ]  # fmt: skip
    messages = 0
    for dept, level, region, query in queries:
        body = await harness.query(harness.token(dept, level, region), query)
        for error in body.get("errors") or []:
            messages += 1
            text = json.dumps(error, ensure_ascii=False)
            leaked = [value for value in plaintext if value in text]
            assert not leaked, f"{dept}:{level} error carries seeded plaintext {leaked}: {text}"
    assert messages > 100


# ---------------------------------------------------------------------------- __typename
async def test_typename_tricks(harness: Harness, world: World, county: str) -> None:
    civil = Subject("civil_affairs", "county", county)
    outsider = outsiders(world, civil, other_county(world, county, same_city=True))[0]
    token = harness.token("civil_affairs", "county", county)
    body = await harness.query(
        token,
        "query($id: String!) { __typename "
        "a: person(idNumber: $id) { __typename ... on Person { id name } } }",
        {"id": outsider.id_number},
    )
    assert body == {"data": {"__typename": "Query", "a": None}}
    body = await harness.query(
        token,
        "query($p: String) { __typename b: persons(filter: {regionPrefix: $p}) "
        "{ __typename totalCount edges { __typename node { __typename } } } }",
        {"p": outsider.region_code[:6]},
    )
    assert body == {
        "data": {
            "__typename": "Query",
            "b": {"__typename": "PersonConnection", "totalCount": 0, "edges": []},
        }
    }
    # Denied relations stay denied even when only __typename is asked of them.
    inside = people_in(world, county)[0]
    health = harness.token("health", "county", county)
    body = await harness.query(
        health,
        BY_ID % "__typename household { __typename } reliefStatuses { __typename } "
        "costBurdens { __typename } enrollments { __typename }",
        {"id": inside.id_number},
    )
    person = body["data"]["person"]
    assert person["__typename"] == "Person"
    assert person["household"] is None
    assert person["reliefStatuses"] is None
    assert person["costBurdens"] is None
    assert len(person["enrollments"]) == len(world.enrollments[inside.person_id])
    assert codes(body) == {
        ("person", "household"): "FORBIDDEN",
        ("person", "reliefStatuses"): "FORBIDDEN",
        ("person", "costBurdens"): "FORBIDDEN",
    }


# ---------------------------------------------------------------------------- repeated fields
async def test_repeated_relation_with_different_arguments(harness: Harness, world: World) -> None:
    rural = Subject("rural_revitalization", "county", world.rural_county())
    # Someone whose statuses differ by date: one ended or started within the last years.
    scope = world.scope(rural)
    person = max(
        (world.persons[pid] for pid in sorted(scope)),
        key=lambda p: (
            len({(s.valid_from, s.valid_to) for s in world.statuses[p.person_id]}),
            len(world.enrollments[p.person_id]),
        ),
    )
    status_fields = (Sel("category"), Sel("sourceDepartment"), Sel("validFrom"), Sel("validTo"))
    node = (
        Sel("id"),
        Sel("reliefStatuses", alias="now", args=(("activeOn", harness.today),),
            children=status_fields),
        Sel("reliefStatuses", alias="then", args=(("activeOn", date(2021, 6, 30)),),
            children=status_fields),
        Sel("reliefStatuses", alias="ever", children=status_fields),
        Sel("enrollments", alias="last", args=(("year", harness.today.year - 1),),
            children=(Sel("year"), Sel("status"), Sel("subsidyAmount"))),
        Sel("enrollments", alias="this", args=(("year", harness.today.year),),
            children=(Sel("year"), Sel("status"), Sel("regionCode"))),
        Sel("costBurdens", alias="cost", args=(("year", harness.today.year),),
            children=(Sel("year"), Sel("totalCost"), Sel("basicInsurancePaid"))),
        Sel("costBurdens", alias="costs", children=(Sel("year"), Sel("personalBurden"))),
    )  # fmt: skip
    for subject in (
        rural,
        Subject("medical_insurance", "county", rural.region),
        Subject("health", "county", rural.region),
    ):
        body = await check_each(
            harness,
            subject,
            (lookup("p", person.id_number, node), persons("l", node=node)),
            rewrite=True,
        )
        if subject.dept == "health":
            assert body["data"]["p"]["now"] is None
            assert body["data"]["p"]["ever"] is None


async def test_same_person_twice_with_different_selections(
    harness: Harness, world: World, county: str
) -> None:
    person = people_in(world, county)[0]
    for dept in ("civil_affairs", "health", "medical_insurance"):
        subject = Subject(dept, "county", county)
        selections = (
            lookup("a", person.id_number, (Sel("id"), Sel("name"))),
            lookup("b", person.id_number, (Sel("id"), Sel("phone"), Sel("address"))),
            lookup("c", person.id_number.lower(), person_selection()),
        )
        await check(harness, subject, selections)


# ---------------------------------------------------------------------------- paging
async def test_forged_cursor_of_an_outsider_reveals_nothing(harness: Harness, world: World) -> None:
    subject = Subject("rural_revitalization", "county", world.rural_county())
    scope = world.scope(subject)
    token = harness.token(subject.dept, subject.level, subject.region)
    hidden = [p for p in people_in(world, subject.region) if p.person_id not in scope]
    far = people_in(world, other_province(world, subject.region[:2]))[:3]
    query = (
        "query($after: String) { persons(first: 200, after: $after) "
        "{ totalCount edges { node { id name } } } }"
    )
    for outsider in [*hidden[:5], *far]:
        cursor = base64.urlsafe_b64encode(f"person:{outsider.person_id.hex}".encode()).decode()
        body = await harness.query(token, query, {"after": cursor})
        assert "errors" not in body, body["errors"]
        ids = {uuid.UUID(e["node"]["id"]) for e in body["data"]["persons"]["edges"]}
        assert ids <= scope
        assert outsider.person_id not in ids
        assert body["data"]["persons"]["totalCount"] == len(scope)
        assert_no_secrets(world, subject, body)


@pytest.mark.parametrize("first", [-1, 201, 10_000])
async def test_first_out_of_bounds_is_bad_user_input(
    harness: Harness, county: str, first: int
) -> None:
    token = harness.token("medical_insurance", "county", county)
    body = await harness.query(
        token, "query($n: Int) { persons(first: $n) { totalCount } }", {"n": first}
    )
    assert body["data"] is None
    assert codes(body) == {("persons",): "BAD_USER_INPUT"}


async def test_first_zero_counts_without_rows(harness: Harness, world: World) -> None:
    subject = Subject("rural_revitalization", "county", world.rural_county())
    body = await check(harness, subject, (persons("p", first=0, node=person_selection()),))
    assert body["data"]["p"]["edges"] == []
    assert body["data"]["p"]["totalCount"] == len(world.scope(subject)) > 0


async def test_get_requests_are_scoped_the_same_way(
    harness: Harness, world: World, county: str
) -> None:
    outsider = people_in(world, other_county(world, county, same_city=True))[0]
    inside = people_in(world, county)[0]
    token = harness.token("health", "county", county)
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "supervision"}
    bodies = []
    for sel in (
        lookup("a", inside.id_number, (Sel("id"), Sel("phone"))),
        lookup("b", outsider.id_number, (Sel("id"),)),
    ):
        response = await harness.client.get(
            "/graphql", params={"query": render((sel,))}, headers=headers
        )
        assert response.status_code == 200
        bodies.append(response.json())
    assert bodies[0]["data"] == {"a": {"id": str(inside.person_id), "phone": None}}
    assert codes(bodies[0]) == {("a", "phone"): "FORBIDDEN"}
    assert bodies[1] == {"data": {"b": None}}


async def test_cached_statements_never_cross_caller_scopes(harness: Harness, world: World) -> None:
    """Statements are built once per caller scope and shape, then reused with new parameters
    (gateway.storage.people). Two counties' callers asking the same questions in turn, many
    times, each see exactly their own scope: the same person lookup is found by its county
    and null for the other (unless insured in the caller's county: then seen by it, issue
    14), and pages hold only the caller's people."""
    from gateway.storage import people as people_storage

    before = set(people_storage._STATEMENTS)
    by_county: dict[str, list[str]] = {}
    for record in harness.persons:
        by_county.setdefault(record.region_code[:6], []).append(record.id_number)
    first, second = sorted(by_county, key=lambda c: -len(by_county[c]))[:2]
    tokens = {c: harness.token("medical_insurance", "county", c) for c in (first, second)}
    scopes = {c: world.scope(Subject("medical_insurance", "county", c)) for c in (first, second)}
    lookup = (
        "query L($id: String!) { person(idNumber: $id) { id regionCode "
        "reliefStatuses { category } enrollments { year } costBurdens { year } } }"
    )
    page = "{ persons(first: 20) { edges { node { id regionCode reliefStatuses { category } } } } }"
    for _ in range(3):
        for caller, other in ((first, second), (second, first)):
            for owner in (caller, other):
                for id_number in by_county[owner][:3]:
                    body = await harness.query(tokens[caller], lookup, {"id": id_number})
                    assert "errors" not in body, body["errors"]
                    person = body["data"]["person"]
                    record = world.by_id_number[id_number]
                    if owner == caller:
                        assert person is not None
                        assert person["regionCode"].startswith(caller)
                    elif record.person_id not in scopes[caller]:
                        assert person is None
                    else:  # insured in the caller's county
                        assert person is not None
                        assert person["id"] == str(record.person_id)
            body = await harness.query(tokens[caller], page)
            nodes = [edge["node"] for edge in body["data"]["persons"]["edges"]]
            assert nodes
            assert all(uuid.UUID(n["id"]) in scopes[caller] for n in nodes)
    # The statements were reused: a lookup and a page shape per scope, not one per request.
    built = set(people_storage._STATEMENTS) - before
    assert len(built) <= 4, built  # (fewer when an earlier test built them already)
