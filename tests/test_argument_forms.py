"""Every argument answers the same whichever way the client writes it (issue 13 item 1).

GraphQL lets a client write an argument as a literal, as a variable, as a variable's default in
the operation (``query($y: Int = 2026)``), or as a variable it declares and then does not
give (read as if the argument were absent; a ``null`` value likewise). The gateway looks ahead
at a page's selection to load relations in batches (``schema.prefetch``); it used to read
arguments its own way and a variable crashed the whole root with ``INTERNAL_SERVER_ERROR`` for
every department.

``CASES`` lists the arguments of the schema the shared seeded harness can exercise: the root
fields that read people, the Person relations under each way of reaching a person (a page, a
lookup, a relief chain, household members, the not-enrolled list), and the loop, exchange and
statistics roots. For each, one document selects the field in six places (aliased; plain, in
an inline fragment under ``@include(if: $yes)``, and in a named fragment next to copies under
``@include(if: $no)`` and ``@skip(if: $yes)``), and for an entitled caller and a denied one:

* variable, default ↔ literal: identical ``data`` and errors;
* ``null`` variable, omitted variable ↔ the argument's absent value written as a literal
  (``null``, or the argument's default such as ``first: 50``); a required argument left
  without a value is refused before execution (``BAD_USER_INPUT``), nothing read;
* never ``INTERNAL_SERVER_ERROR``; a refusal the literal gets (a filter on a field the caller
  may not read, a relation argument it may not use) is the variable's too.

The harness parametrises backends: every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from gateway.domain.records import PersonRecord
from tests.argument_forms_support import json_value
from tests.expectations import (
    EnumLit,
    Subject,
    World,
    assert_no_secrets,
    holds_on,
    literal,
    world_of,
)
from tests.harness import Harness

ENTITLED = "medical_insurance"
DENIED = "health"  # reads identities and enrollments only: no relief, costs, loop or filters
# Callers of the busiest county's city (a county caller may not group statistics by city).
LEVEL = "city"
ABSENT_IS_NULL = "null"
REQUIRED = None  # no absent value: leaving it out is refused

# The field is selected in six places, three of which execution keeps: their response keys.
SHOWN_KEYS = ("plain", "kept", "named")


@dataclass(frozen=True)
class Setting:
    """What the values of a case refer to, read from the seeded data."""

    county: str
    village: str
    id_number: str
    status_day: date  # a day on which the person holds some of its relief statuses, not all
    today: date
    persons_cursor: str
    not_enrolled_cursor: str


@dataclass(frozen=True)
class Case:
    """One argument: ``field`` (with ``ARG`` where the argument's value goes) selected on
    ``parent`` inside ``outer`` (``FIELD`` where the field goes)."""

    name: str
    parent: str
    outer: str
    field: str
    type_: str  # the variable's declared type
    value: Callable[[Setting], Any]
    absent: str | None  # the literal the argument reads as when left out; REQUIRED: refused
    denied_refused: bool = False  # the denied caller's literal answer is refused (FORBIDDEN)
    # The value answers differently from the absent one (false where the harness has no data
    # to tell them apart: warnings, tasks, batches and anomalies are empty in it).
    honoured: bool = True


# Ways to reach a person; FIELD goes among its fields.
# A page of the chosen person's village (regionCode, up to 12 digits): the person among others.
UNDER_PAGE = (
    'persons(first: 6, filter: {regionPrefix: "<VILLAGE>"}) { edges { node { id FIELD } } }'
)
UNDER_LOOKUP = 'person(idNumber: "<ID>") { id FIELD }'
UNDER_CHAIN = 'reliefChain(idNumber: "<ID>") { person { id FIELD } }'
UNDER_MEMBERS = 'person(idNumber: "<ID>") { id household { members { id FIELD } } }'
# Two years back the busiest county has people not enrolled (the seed enrolls nobody then).
UNDER_NOT_ENROLLED = (
    'coverage(regionPrefix: "<COUNTY>", year: <LAST_YEAR_BUT_ONE>) '
    "{ notEnrolled(first: 4) { edges { node { reason person { id FIELD } } } } }"
)
PERSON_PLACES = {
    "persons": (UNDER_PAGE, False),
    "person": (UNDER_LOOKUP, False),
    "reliefChain": (UNDER_CHAIN, True),  # the denied caller may not follow a relief chain
    "household.members": (UNDER_MEMBERS, True),  # nor see a household
    "coverage.notEnrolled": (UNDER_NOT_ENROLLED, True),  # nor read coverage
}


def _person_cases() -> list[Case]:
    relations = [
        # (argument, field, type, value, absent, denied caller refused at the field itself)
        ("reliefStatuses(activeOn)", "reliefStatuses(activeOn: ARG) { category validFrom validTo }",
         "Date", lambda s: s.status_day, ABSENT_IS_NULL, True),
        ("enrollments(year)", "enrollments(year: ARG) { year status insuranceType }",
         "Int", lambda s: s.today.year, ABSENT_IS_NULL, False),
        ("costBurdens(year)", "costBurdens(year: ARG) { year totalCost personalBurden }",
         "Int", lambda s: s.today.year - 1, ABSENT_IS_NULL, True),
        ("effectiveRelief(on)", "effectiveRelief(on: ARG) { on benefitCategory entitled }",
         "Date!", lambda s: s.today, REQUIRED, True),
        ("effectiveRelief(dischargedOn)",
         'effectiveRelief(on: "<TODAY>", dischargedOn: ARG) { on entitled stay { days } }',
         "Date", lambda s: date(s.today.year, 12, 31), ABSENT_IS_NULL, True),
    ]  # fmt: skip
    cases = []
    for place, (outer, place_denied) in PERSON_PLACES.items():
        for argument, field, type_, value, absent, denied in relations:
            cases.append(
                Case(
                    f"{place} → Person.{argument}",
                    "Person",
                    outer,
                    field,
                    type_,
                    value,
                    absent,
                    denied_refused=place_denied or denied,
                )
            )
    return cases


PAGE = "{ totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } }"
NOT_ENROLLED_PAGE = (
    "{ totalCount pageInfo { hasNextPage endCursor } "
    "edges { cursor node { reason person { id name } } } }"
)
COVERAGE = 'coverage(regionPrefix: "<COUNTY>", year: <LAST_YEAR_BUT_ONE>) { FIELD }'
STATS = 'statistics(regionPrefix: "<COUNTY>") '

ROOT_CASES = [
    Case("person(idNumber)", "Query", "FIELD", "person(idNumber: ARG) { id name birthDate }",
         "String!", lambda s: s.id_number, REQUIRED),
    Case("persons(first)", "Query", "FIELD", "persons(first: ARG) " + PAGE,
         "Int", lambda s: 3, "50"),
    Case("persons(after)", "Query", "FIELD", "persons(first: 3, after: ARG) " + PAGE,
         "String", lambda s: s.persons_cursor, ABSENT_IS_NULL),
    Case("persons(filter) readable by all", "Query", "FIELD",
         "persons(first: 5, filter: ARG) " + PAGE, "PersonFilter",
         lambda s: {"regionPrefix": s.county, "enrolledIn": s.today.year}, ABSENT_IS_NULL),
    Case("persons(filter) on relief statuses", "Query", "FIELD",
         "persons(first: 5, filter: ARG) " + PAGE, "PersonFilter",
         lambda s: {"category": EnumLit("MINIMUM_LIVING"), "activeOn": date(s.today.year, 1, 1)},
         ABSENT_IS_NULL, denied_refused=True),
    Case("persons(filter: {regionPrefix})", "Query", "FIELD",
         "persons(first: 5, filter: {regionPrefix: ARG}) " + PAGE,
         "String", lambda s: s.county, ABSENT_IS_NULL),
    Case("persons(filter: {category})", "Query", "FIELD",
         "persons(first: 5, filter: {category: ARG}) " + PAGE,
         "ReliefCategory", lambda s: EnumLit("MINIMUM_LIVING"), ABSENT_IS_NULL,
         denied_refused=True),
    Case("persons(filter: {activeOn})", "Query", "FIELD",
         "persons(first: 5, filter: {activeOn: ARG}) " + PAGE,
         "Date", lambda s: date(s.today.year - 1, 6, 30), ABSENT_IS_NULL, denied_refused=True),
    Case("persons(filter: {enrolledIn})", "Query", "FIELD",
         "persons(first: 5, filter: {enrolledIn: ARG}) " + PAGE,
         "Int", lambda s: s.today.year, ABSENT_IS_NULL),
    Case("reliefChain(idNumber)", "Query", "FIELD",
         "reliefChain(idNumber: ARG) { person { id } events { date kind category summary } }",
         "String!", lambda s: s.id_number, REQUIRED, denied_refused=True),
    Case("coverage(regionPrefix)", "Query", "FIELD",
         "coverage(regionPrefix: ARG, year: <YEAR>) { population enrolled rate }",
         "String!", lambda s: s.county, REQUIRED, denied_refused=True),
    Case("coverage(year)", "Query", "FIELD",
         'coverage(regionPrefix: "<COUNTY>", year: ARG) { population enrolled rate }',
         "Int!", lambda s: s.today.year - 1, REQUIRED, denied_refused=True),
    Case("Coverage.notEnrolled(first)", "Coverage", COVERAGE,
         "notEnrolled(first: ARG) " + NOT_ENROLLED_PAGE, "Int", lambda s: 2, "50",
         denied_refused=True),
    Case("Coverage.notEnrolled(after)", "Coverage", COVERAGE,
         "notEnrolled(first: 2, after: ARG) " + NOT_ENROLLED_PAGE, "String",
         lambda s: s.not_enrolled_cursor, ABSENT_IS_NULL, denied_refused=True),
    Case("statistics(regionPrefix)", "Query", "FIELD",
         "statistics(regionPrefix: ARG) { regionPrefix reliefPeople { regionCode count } }",
         "String", lambda s: s.county, ABSENT_IS_NULL, denied_refused=True),
    Case("statistics(groupBy)", "Query", "FIELD",
         'statistics(regionPrefix: "<CITY>", groupBy: ARG) { groupBy reliefPeople { count } }',
         "RegionLevel", lambda s: EnumLit("CITY"), "COUNTY", denied_refused=True),
    Case("Statistics.reliefPeople(on)", "Statistics", STATS + "{ FIELD }",
         "reliefPeople(on: ARG) { regionCode category count suppressed }",
         "Date", lambda s: date(2018, 1, 1), ABSENT_IS_NULL, denied_refused=True),
    Case("Statistics.warnings(year)", "Statistics", STATS + "{ FIELD }",
         "warnings(year: ARG) { regionCode rule month count }",
         "Int!", lambda s: s.today.year, REQUIRED, denied_refused=True),
    Case("Statistics.warnings(month)", "Statistics", STATS + "{ FIELD }",
         "warnings(year: <YEAR>, month: ARG) { regionCode rule month count }",
         "String", lambda s: f"{s.today.year}-03", ABSENT_IS_NULL, denied_refused=True,
         honoured=False),
    Case("Statistics.coverage(year)", "Statistics", STATS + "{ FIELD }",
         "coverage(year: ARG) { year referenceDate regions { regionCode } }",
         "Int!", lambda s: s.today.year, REQUIRED, denied_refused=True),
    Case("Statistics.sharing(from)", "Statistics", STATS + "{ FIELD }",
         'sharing(from: ARG, to: "<TODAY>") { __typename }',
         "Date!", lambda s: date(s.today.year, 1, 1), REQUIRED, denied_refused=True),
    *(
        Case(f"{root}({argument})", "Query", "FIELD", f"{root}({argument}: ARG) " + PAGE,
             type_, value, absent, denied_refused=root in ("warnings", "tasks"), honoured=False)
        for root in ("warnings", "tasks", "batches", "anomalies")
        for argument, type_, value, absent in (
            ("first", "Int", lambda s: 2, "50"),
            # A cursor of another kind: refused as BAD_USER_INPUT in every form.
            ("after", "String", lambda s: "bm90IGEgY3Vyc29y", ABSENT_IS_NULL),
        )
    ),
    # Each filter whole, every field set: one object variable (or default) carries them all.
    *(
        Case(f"{root}(filter)", "Query", "FIELD", f"{root}(first: 5, filter: ARG) " + PAGE,
             type_, value, ABSENT_IS_NULL, denied_refused=root in ("warnings", "tasks"),
             honoured=False)
        for root, type_, value in (
            ("warnings", "WarningFilter", lambda s: {
                "month": f"{s.today.year}-10", "rule": "SHANDONG_LOW_INCOME_50",
                "attention": EnumLit("COUNTY"), "regionPrefix": s.county}),
            ("tasks", "TaskFilter", lambda s: {
                "state": EnumLit("OPEN"), "kind": EnumLit("WARNING_REVIEW"),
                "department": EnumLit("CIVIL_AFFAIRS"), "regionPrefix": s.county,
                "dueBefore": s.today}),
            ("batches", "BatchFilter", lambda s: {
                "feed": "identities", "status": EnumLit("COMPLETED"),
                "receivedFrom": date(s.today.year, 1, 1), "receivedTo": s.today}),
            ("anomalies", "AnomalyFilter", lambda s: {
                "status": EnumLit("OPEN"), "kind": EnumLit("NAME_MISMATCH"), "overdue": True}),
        )
    ),
]  # fmt: skip
CASES = [*ROOT_CASES, *_person_cases()]
# Roots whose answer to a bad value is an error for the entitled caller too.
BAD_VALUE_CASES = {f"{root}(after)" for root in ("warnings", "tasks", "batches", "anomalies")}


# ---------------------------------------------------------------------------- documents
def _document(case: Case, setting: Setting, argument: str, definitions: str) -> str:
    """The case's field in six places, with ``argument`` where its value goes."""
    field = case.field.replace("ARG", argument)
    head, selection = _split(field)
    places = (
        f"plain: {field} "
        f"... on {case.parent} {{ kept: {head} @include(if: $yes) {selection} }} "
        "...Named"
    )
    named = (
        f"named: {field} gone: {head} @include(if: $no) {selection} "
        f"skipped: {head} @skip(if: $yes) {selection}"
    )
    body = case.outer.replace("FIELD", places)
    text = (
        f"query Forms($yes: Boolean!, $no: Boolean!{definitions}) {{ {body} }}\n"
        f"fragment Named on {case.parent} {{ {named} }}"
    )
    for token, value in (
        ("<COUNTY>", setting.county),
        ("<ID>", setting.id_number),
        ("<VILLAGE>", setting.village),
        ("<TODAY>", setting.today.isoformat()),
        ("<CITY>", setting.county[:4]),
        ("<YEAR>", str(setting.today.year)),
        ("<LAST_YEAR_BUT_ONE>", str(setting.today.year - 2)),
    ):
        text = text.replace(token, value)
    return text


def _split(field: str) -> tuple[str, str]:
    """``name(args)`` and ``{ selection }`` (where a directive goes between them)."""
    depth = 0
    for index, char in enumerate(field):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "{" and depth == 0:
            return field[:index].rstrip(), field[index:]
    return field, ""


DIRECTIVES = {"yes": True, "no": False}


def _forms(case: Case, setting: Setting) -> dict[str, tuple[str, dict[str, Any]]]:
    """form → (query, variables). ``literal`` and ``absent`` are what the others must equal."""
    value = case.value(setting)
    shown = literal(value)
    nullable = not case.type_.endswith("!")
    forms = {
        "literal": (_document(case, setting, shown, ""), DIRECTIVES),
        "variable": (
            _document(case, setting, "$arg", f", $arg: {case.type_}"),
            {**DIRECTIVES, "arg": json_value(value)},
        ),
        "default": (
            _document(case, setting, "$arg", f", $arg: {case.type_} = {shown}"),
            DIRECTIVES,
        ),
        "omitted": (_document(case, setting, "$arg", f", $arg: {case.type_}"), DIRECTIVES),
    }
    if case.absent is not None:
        forms["absent"] = (_document(case, setting, case.absent, ""), DIRECTIVES)
    if nullable and case.absent == ABSENT_IS_NULL:
        forms["null"] = (
            _document(case, setting, "$arg", f", $arg: {case.type_}"),
            {**DIRECTIVES, "arg": None},
        )
    return forms


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without what differs between two texts of one query (request ids, error
    locations). When a non-null root was refused, sibling roots may be cancelled before they
    report: then the distinct errors are compared, not how many of them arrived."""
    errors = []
    for error in body.get("errors") or []:
        errors.append(
            (
                json.dumps(error.get("path")),
                error.get("extensions", {}).get("code"),
                error.get("message"),
            )
        )
    if body.get("data") is None:
        return {"data": None, "errors": sorted({(code, msg) for _path, code, msg in errors})}
    return {"data": body["data"], "errors": sorted(errors)}


def _codes(body: dict[str, Any]) -> set[str]:
    return {e.get("extensions", {}).get("code") for e in body.get("errors") or []}


# ---------------------------------------------------------------------------- setting
_settings: dict[int, Setting] = {}


async def _setting(harness: Harness) -> Setting:
    """A county and, in it, the person with the most to show: relief statuses that differ by
    date, enrollments and cost burdens of several years, a household of several."""
    key = id(harness)
    if key in _settings:
        return _settings[key]
    world = world_of(harness)
    county = harness.busiest_county()
    in_county = sorted(
        (p for p in world.persons.values() if p.region_code.startswith(county)),
        key=lambda p: p.person_id,
    )
    person = max(
        in_county,
        key=lambda p: (
            _status_day(world, p) is not None,
            len({(s.valid_from, s.valid_to) for s in world.statuses[p.person_id]}),
            len({e.year for e in world.enrollments[p.person_id]}),
            len({c.year for c in world.costs[p.person_id]}),
            len(world.households.get(p.household_id, ())) if p.household_id else 0,
        ),
    )
    token = harness.token(ENTITLED, LEVEL, county[:4])
    year = harness.today.year - 2
    cursors = await harness.query(
        token,
        "query($c: String!, $y: Int!) { persons(first: 2) { pageInfo { endCursor } } "
        "coverage(regionPrefix: $c, year: $y) "
        "{ notEnrolled(first: 1) { pageInfo { endCursor } } } }",
        {"c": county, "y": year},
    )
    data = cursors["data"]
    setting = Setting(
        county=county,
        village=person.region_code,
        id_number=person.id_number,
        status_day=_status_day(world, person) or harness.today,
        today=harness.today,
        persons_cursor=data["persons"]["pageInfo"]["endCursor"],
        not_enrolled_cursor=data["coverage"]["notEnrolled"]["pageInfo"]["endCursor"] or "",
    )
    _settings[key] = setting
    return setting


def _status_day(world: World, person: PersonRecord) -> date | None:
    """A day on which the person holds some of its relief statuses, not all (or, with a
    single status, none): the day one starts or ends, or the day before the first starts."""
    statuses = world.statuses[person.person_id]
    if not statuses:
        return None
    days = sorted(
        {s.valid_from for s in statuses}
        | {s.valid_to + timedelta(days=1) for s in statuses if s.valid_to is not None}
        | {min(s.valid_from for s in statuses) - timedelta(days=1)}
    )
    held = {d: sum(holds_on(s, d) for s in statuses) for d in days}
    return next(
        (d for d in days if 0 < held[d] < len(statuses)),
        next(d for d in days if held[d] < len(statuses)),
    )


# ---------------------------------------------------------------------------- the table
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_argument_answers_the_same_in_every_form(harness: Harness, case: Case) -> None:
    setting = await _setting(harness)
    world: World = world_of(harness)
    for dept in (ENTITLED, DENIED):
        subject = Subject(dept, LEVEL, setting.county[:4])
        token = harness.token(dept, LEVEL, setting.county[:4])
        bodies = {
            form: await harness.query(token, query, variables)
            for form, (query, variables) in _forms(case, setting).items()
        }
        where = f"{case.name} as {dept}"
        for form, body in bodies.items():
            unexpected = _codes(body) & {"INTERNAL_SERVER_ERROR", "GRAPHQL_VALIDATION_FAILED"}
            assert not unexpected, f"{where}, {form}: {body}"
        every = {
            "data": {form: body.get("data") for form, body in bodies.items()},
            "errors": [error for body in bodies.values() for error in body.get("errors") or []],
        }
        assert_no_secrets(world, subject, every)
        reference = comparable(bodies["literal"])
        for form in ("variable", "default"):
            assert comparable(bodies[form]) == reference, f"{where}: {form} ≠ literal"
        if case.absent is None:
            # Declared String!/Int!/Date! and not given: refused before anything is read.
            omitted = bodies["omitted"]
            assert omitted.get("data") is None, f"{where}: omitted required ran: {omitted}"
            assert _codes(omitted) == {"BAD_USER_INPUT"}, f"{where}: {omitted}"
        else:
            absent = comparable(bodies["absent"])
            assert comparable(bodies["omitted"]) == absent, f"{where}: omitted ≠ absent"
            if "null" in bodies:
                assert comparable(bodies["null"]) == absent, f"{where}: null ≠ absent"
        # The rule each case states, on the literal answer (so the comparisons compare
        # something): the entitled caller reads, the denied caller is refused where it must be.
        literal_codes = _codes(bodies["literal"])
        if dept == ENTITLED and case.name not in BAD_VALUE_CASES:
            assert not literal_codes, f"{where}: {bodies['literal']}"
            assert _shown(bodies["literal"]), f"{where}: the field is missing from {bodies}"
        if dept == ENTITLED and case.name in BAD_VALUE_CASES:
            assert literal_codes == {"BAD_USER_INPUT"}, f"{where}: {bodies['literal']}"
        if dept == ENTITLED and case.absent is not None and case.honoured:
            assert comparable(bodies["absent"]) != reference, f"{where}: the value changes nothing"
        if dept == DENIED and case.denied_refused:
            assert "FORBIDDEN" in literal_codes, f"{where}: {bodies['literal']}"


def _shown(body: dict[str, Any]) -> bool:
    """Each of the three included places answered, the excluded ones did not."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in (*SHOWN_KEYS, "gone", "skipped"):
                    found.add(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body.get("data"))
    return found == set(SHOWN_KEYS)


# ---------------------------------------------------------------------------- the report
async def test_variable_relation_argument_under_a_page_is_answered(harness: Harness) -> None:
    """The document of the report, verbatim: it used to answer INTERNAL_SERVER_ERROR for
    every department, the entitled ones included; the literal always worked."""
    query = (
        "query($y: Int) { persons(first: 1) { edges { node { id enrollments(year: $y) "
        "{ year } } } } }"
    )
    setting = await _setting(harness)
    world = world_of(harness)
    for dept in ("medical_insurance", "civil_affairs", "rural_revitalization", "health"):
        token = harness.token(dept, "county", setting.county)
        body = await harness.query(token, query, {"y": 2026})
        assert "errors" not in body, f"{dept}: {body}"
        written = query.replace("($y: Int)", "").replace("$y", "2026")
        assert body == await harness.query(token, written), dept
        for edge in body["data"]["persons"]["edges"]:
            person = world.persons[uuid.UUID(edge["node"]["id"])]
            expected = sorted(e.year for e in world.enrollments[person.person_id] if e.year == 2026)
            assert sorted(e["year"] for e in edge["node"]["enrollments"]) == expected
