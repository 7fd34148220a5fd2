"""Property-based access control: random callers, random queries, never a leak.

For a random subject (any department, any level, a seeded or a non-existent region) and a random
query built from the contract's core (a random subset of Person fields with nested relations
and household members, random aliases, inline and named fragments, ``persons`` with a random
filter and ``first``, ``person(idNumber)`` lookups of in- and out-of-scope, absent, re-spelt
and malformed ID numbers), ``tests.expectations.Checker`` asserts that

* no person outside the subject's computed scope appears anywhere (lookups, pages, household
  members), and ``totalCount`` is the size of the filtered scope; the scope counts the places
  each row rule names (a county where people living elsewhere are insured is drawn like one
  where people live);
* every field value is the plaintext, exactly its mask, or ``null`` with ``FORBIDDEN`` at that
  path; every ``FORBIDDEN`` path is a denied field, a field narrowed away for a person seen
  only through a place, or a refused filter/lookup;
* no sealed plaintext the subject may not read in clear appears in data or error messages.

Every argument of the generated document (``idNumber``, ``first``, the filter or each of its
fields, the relations' ``activeOn`` and ``year``) is written in a form the example draws: a
literal, a variable, a variable's default, or a variable declared and not given (then read as
absent); see ``tests.argument_forms_support``. A variable must answer exactly as the literal:
the same rows, the same fields, the same refusals (issue 13 item 1).

How Hypothesis runs against the async harness: pytest-asyncio (1.x, ``asyncio_mode = auto``)
recognises an ``async def`` test decorated with ``@given`` (its ``AsyncHypothesisTest`` item)
and replaces ``test.hypothesis.inner_test`` by a synchronous wrapper that runs each example's
coroutine on the test's event loop, which is the session loop here, the same one the
session-scoped ``harness`` fixture lives on. So the tests below are plain ``async def``
functions with ``@given``.

One rule keeps that robust: nothing is drawn inside the coroutine. An earlier version drew
with ``st.data()`` inside the test and Hypothesis reported ``FlakyStrategyDefinition`` on
replays; now the strategies produce a world-independent *plan* (selection trees with abstract
choices such as "the n-th in-scope person, re-spelt") as ``@given`` arguments, and the
coroutine only resolves the plan against the seeded data, deterministically. Each example is
thus a pure function of its plan, which Hypothesis prints on failure (with the rendered query,
via ``note``). The example database is off (``database=None``): runs write nothing to the
working tree. A request that hangs fails its example after ``REQUEST_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from graphql import Lexer, Source, TokenKind
from hypothesis import HealthCheck, Phase, assume, event, given, note, settings
from hypothesis import strategies as st

from tests.argument_forms_support import FORMS, write_arguments
from tests.expectations import (
    CATEGORIES,
    COST_GUARDED,
    DEPARTMENTS,
    ENROLLMENT_GUARDED,
    LEVEL_DIGITS,
    LEVELS,
    RELIEF_GUARDED,
    Checker,
    EnumLit,
    Sel,
    Subject,
    World,
    make_id,
    world_of,
)
from tests.harness import Harness

# Departments with a data-sharing list are drawn more often: they have more to get wrong.
WEIGHTED_DEPARTMENTS = (
    *(("medical_insurance", "civil_affairs", "rural_revitalization", "health") * 3),
    *DEPARTMENTS,
)
SCALAR_FIELDS = ("idNumber", "name", "gender", "birthDate", "phone", "address", "regionCode")
RELATIONS = ("household", "reliefStatuses", "enrollments", "costBurdens")
# Alias names that are also field names: an alias must never change what a field releases.
TRICKY_ALIASES = ("a", "b", "idNumber", "name", "phone", "id", "address", "members", "node")
WRAPS = (None, None, "inline", "named")
REQUEST_TIMEOUT = 5  # seconds; a request that hangs fails the example instead of the run
# The gateway refuses over-large query shapes (schema/_schema.py: 50 aliases, depth 10, 5000
# tokens); these properties are about access control, so examples stay well inside.
MAX_ALIASES = 40
MAX_TOKENS = 4000

# No shrink phase: a failure here can be a hung request (REQUEST_TIMEOUT per replay), and
# shrinking replays it dozens of times. The failing query is printed whole instead (``note``
# and the assertion messages carry the subject and the rendered query).
PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
        HealthCheck.data_too_large,
    ],
)


# ---------------------------------------------------------------------------- plans
# Abstract choices, resolved against the seeded data inside the test (no drawing there).
@dataclass(frozen=True)
class RegionPlan:
    index: int | None  # the n-th seeded code of the level, or
    digits: str | None = None  # an invented code


@dataclass(frozen=True)
class SubjectPlan:
    dept: str
    level: str
    region: RegionPlan


@dataclass(frozen=True)
class IdPlan:
    from_scope: bool  # the n-th person in the subject's scope (else of everyone)
    index: int
    kind: str  # as_is, respelt, absent, bad_check, short
    variant: int = 0
    birth: date = date(1970, 1, 1)


@dataclass(frozen=True)
class PrefixPlan:
    source: str  # scope / person (the n-th in-scope / any person's region cut to `cut`
    # digits), subject (the subject's own region), digits (random)
    index: int = 0
    cut: int = 6
    digits: str = ""


def chance(k: int, n: int) -> st.SearchStrategy[bool]:
    """True with probability about k/n (integers() favour small values; this does not)."""
    return st.sampled_from([True] * k + [False] * (n - k))


DATES = st.dates(min_value=date(2018, 1, 1), max_value=date(2026, 12, 31))


class Keys:
    """Response keys of one selection set: unique, so fields never have to be merged."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.used: set[str] = set()

    def alias(self, field: str) -> str | None:
        alias = self.draw(st.sampled_from(TRICKY_ALIASES)) if self.draw(chance(1, 4)) else None
        if (alias or field) in self.used:
            alias = f"k{len(self.used)}"
            while alias in self.used:
                alias += "_"
        self.used.add(alias or field)
        return alias

    def sel(self, field: str, **kwargs: Any) -> Sel:
        wrap = self.draw(st.sampled_from(WRAPS))
        return Sel(field, alias=self.alias(field), wrap=wrap, **kwargs)


@st.composite
def child_fields(draw: st.DrawFn, key_field: str, guarded: tuple[str, ...]) -> tuple[Sel, ...]:
    keys = Keys(draw)
    names = draw(st.lists(st.sampled_from((key_field, "__typename", *guarded)), min_size=1,
                          max_size=len(guarded) + 2, unique=True))  # fmt: skip
    return tuple(keys.sel(name) for name in names)


@st.composite
def person_fields(draw: st.DrawFn, depth: int) -> tuple[Sel, ...]:
    """A random Person selection; always with ``id`` (maybe aliased) to identify the node."""
    keys = Keys(draw)
    sels = [keys.sel("id")]
    for name in draw(st.lists(st.sampled_from((*SCALAR_FIELDS, "__typename")), unique=True)):
        sels.append(keys.sel(name))
    # Relations may repeat (with aliases and different arguments).
    for relation in draw(st.lists(st.sampled_from(RELATIONS), max_size=4 if depth else 2)):
        if relation == "household":
            inner = Keys(draw)
            children = [inner.sel("id")] if draw(st.booleans()) else []
            if depth > 0 or not children:
                members = draw(person_fields(depth - 1)) if depth > 0 else (Sel("id"),)
                children.append(inner.sel("members", children=members))
            if draw(st.booleans()):
                children.append(inner.sel("__typename"))
            sels.append(keys.sel("household", children=tuple(children)))
        elif relation == "reliefStatuses":
            args = (("activeOn", draw(DATES)),) if draw(st.booleans()) else ()
            children = draw(child_fields("category", RELIEF_GUARDED))
            sels.append(keys.sel("reliefStatuses", args=args, children=children))
        else:
            year = st.sampled_from((2024, 2025, 2026))
            args = (("year", draw(year)),) if draw(st.booleans()) else ()
            guarded = ENROLLMENT_GUARDED if relation == "enrollments" else COST_GUARDED
            children = draw(child_fields("year", guarded))
            sels.append(keys.sel(relation, args=args, children=children))
    return tuple(sels)


@st.composite
def subject_plans(draw: st.DrawFn) -> SubjectPlan:
    level = draw(st.sampled_from(LEVELS))
    digits = LEVEL_DIGITS[level]
    invented = st.text(alphabet="0123456789", min_size=digits, max_size=digits)
    if draw(chance(4, 5)):  # mostly a seeded code, sometimes an invented one
        region = RegionPlan(draw(st.integers(0, 500)))
    else:
        region = RegionPlan(None, draw(invented))
    return SubjectPlan(draw(st.sampled_from(WEIGHTED_DEPARTMENTS)), level, region)


ID_PLANS = st.builds(
    IdPlan,
    from_scope=st.sampled_from((True, True, True, False)),
    index=st.integers(0, 5000),
    kind=st.sampled_from(("as_is", "as_is", "respelt", "absent", "bad_check", "short")),
    variant=st.integers(0, 17),
    birth=st.dates(min_value=date(1940, 1, 1), max_value=date(2010, 12, 31)),
)

CUTS = st.sampled_from((2, 4, 6, 9, 12))
PREFIX_PLANS = st.one_of(
    st.builds(PrefixPlan, st.just("scope"), st.integers(0, 5000), CUTS),
    st.builds(PrefixPlan, st.just("scope"), st.integers(0, 5000), CUTS),
    st.builds(PrefixPlan, st.just("person"), st.integers(0, 5000), CUTS),
    st.builds(PrefixPlan, st.just("subject")),
    st.builds(PrefixPlan, st.just("digits"),
              digits=st.text(alphabet="0123456789", min_size=2, max_size=12)),
)  # fmt: skip


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any] | None:
    if not draw(chance(1, 2)):
        return None
    flt: dict[str, Any] = {}
    if draw(chance(1, 2)):
        flt["regionPrefix"] = draw(PREFIX_PLANS)
    if draw(chance(1, 4)):
        flt["category"] = EnumLit(draw(st.sampled_from(CATEGORIES)))
    if draw(chance(1, 4)):
        flt["activeOn"] = draw(DATES)
    if draw(chance(1, 4)):
        flt["enrolledIn"] = draw(st.sampled_from((2024, 2025, 2026)))
    return flt


@st.composite
def root_plans(draw: st.DrawFn, count: int) -> tuple[Sel, ...]:
    keys = Keys(draw)
    sels = []
    for _ in range(count):
        if draw(st.booleans()):
            children = draw(person_fields(1))
            sels.append(keys.sel("person", args=(("idNumber", draw(ID_PLANS)),),
                                 children=children))  # fmt: skip
            continue
        first = draw(st.integers(1, 60)) if draw(chance(5, 6)) else 0
        args: list[tuple[str, Any]] = [("first", first)]
        flt = draw(filters())
        if flt is not None:
            args.append(("filter", flt))
        inner = Keys(draw)
        edge = [inner.sel("node", children=draw(person_fields(1)))]
        if draw(st.booleans()):
            edge.append(inner.sel("cursor"))
        children = [inner.sel("edges", children=tuple(edge))]
        if draw(st.booleans()):
            children.append(inner.sel("totalCount"))
        if draw(st.booleans()):
            children.append(
                inner.sel("pageInfo", children=(inner.sel("hasNextPage"), inner.sel("endCursor")))
            )
        sels.append(Sel("persons", alias=keys.alias("persons"), args=tuple(args),
                        children=tuple(children)))  # fmt: skip
    return tuple(sels)


# ---------------------------------------------------------------------------- resolution
def spellings(id_number: str) -> list[str]:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in id_number)
    return [
        id_number,
        id_number.lower(),
        full_width,
        full_width.replace("X", "ｘ"),
        f" {id_number[:6]} {id_number[6:]} ",
        f"{id_number[:9]}\u3000{id_number[9:]}",
    ]


def resolve_subject(world: World, plan: SubjectPlan) -> Subject:
    if plan.region.index is None:
        assert plan.region.digits is not None
        return Subject(plan.dept, plan.level, plan.region.digits)
    # Where someone lives or holds a place: a county where people living elsewhere are
    # insured is a region like any other (issue 14).
    codes = world.regions(plan.level)
    return Subject(plan.dept, plan.level, codes[plan.region.index % len(codes)])


def resolve_id(world: World, subject: Subject, plan: IdPlan) -> str:
    in_scope = sorted(world.persons[pid].id_number for pid in world.scope(subject))
    pool = in_scope if plan.from_scope and in_scope else sorted(world.by_id_number)
    chosen = pool[plan.index % len(pool)]
    if plan.kind == "respelt":
        variants = spellings(chosen)
        return variants[plan.variant % len(variants)]
    if plan.kind == "absent":
        counties = world.counties()
        return make_id(counties[plan.index % len(counties)], plan.birth, plan.variant * 37)
    if plan.kind == "bad_check":
        return chosen[:17] + ("0" if chosen[17] != "0" else "1")
    if plan.kind == "short":
        return chosen[: plan.variant % 18]
    return chosen


def resolve_prefix(world: World, subject: Subject, plan: PrefixPlan) -> str:
    if plan.source == "subject":
        return subject.region
    if plan.source == "digits":
        return plan.digits
    people = sorted(world.persons.values(), key=lambda p: p.person_id)
    in_scope = [p for p in people if p.person_id in world.scope(subject)]
    if plan.source == "scope" and in_scope:
        people = in_scope
    return people[plan.index % len(people)].region_code[: plan.cut]


def resolve(world: World, subject: Subject, sels: tuple[Sel, ...]) -> tuple[Sel, ...]:
    resolved = []
    for sel in sels:
        args = []
        for name, value in sel.args:
            if isinstance(value, IdPlan):
                value = resolve_id(world, subject, value)
            elif name == "filter":
                value = {
                    k: resolve_prefix(world, subject, v) if isinstance(v, PrefixPlan) else v
                    for k, v in value.items()
                }
            args.append((name, value))
        resolved.append(dataclasses.replace(sel, args=tuple(args)))
    return tuple(resolved)


def alias_count(sels: tuple[Sel, ...]) -> int:
    return sum((sel.alias is not None) + alias_count(sel.children) for sel in sels)


def token_count(query: str) -> int:
    lexer = Lexer(Source(query))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


# ---------------------------------------------------------------------------- properties
class Gateway:
    """The harness behind a short repr: Hypothesis prints every test argument on failure, and
    the harness's repr holds all the seeded data."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def __repr__(self) -> str:
        return f"Gateway({self.harness.backend})"


@pytest.fixture
def gateway(harness: Harness) -> Gateway:
    return Gateway(harness)


async def _check(
    gateway: Gateway, subject_plan: SubjectPlan, plan: tuple[Sel, ...], forms: tuple[str, ...]
) -> None:
    harness = gateway.harness
    world = world_of(harness)
    subject = resolve_subject(world, subject_plan)
    written = write_arguments(resolve(world, subject, plan), forms)
    query, variables, selections = written.query, written.variables, written.selections
    assume(alias_count(selections) <= MAX_ALIASES and token_count(query) <= MAX_TOKENS)
    note(f"subject: {subject}\nquery:\n{query}\nvariables: {variables}")
    token = harness.token(subject.dept, subject.level, subject.region)
    try:
        body = await asyncio.wait_for(harness.query(token, query, variables), REQUEST_TIMEOUT)
    except TimeoutError:
        raise AssertionError(
            f"{subject}: no answer within {REQUEST_TIMEOUT}s (hang) to\n{query}\n{variables}"
        ) from None
    checker = Checker(world, subject)
    checker.root(body, selections)
    # Shown with --hypothesis-show-statistics: how much of the space the examples cover.
    scope = "empty" if not world.scope(subject) else "not empty"
    event(f"department {subject.dept}, scope {scope}")
    event(f"people checked: {'none' if not checker.seen_people else 'some'}")
    through_place = checker.seen_people & world.narrowed(subject)
    event(f"people seen only through a place: {'some' if through_place else 'none'}")
    for code in sorted({e.get("extensions", {}).get("code") for e in body.get("errors") or []}):
        event(f"error code {code}")
    for form in sorted(set(written.forms)):
        event(f"argument form {form}")


# The form of each argument, in the order the document meets them (cycled when it has more).
ARGUMENT_FORMS = st.lists(st.sampled_from(FORMS), min_size=1, max_size=16).map(tuple)


@settings(PROPERTY_SETTINGS, max_examples=150)
@given(subject=subject_plans(), plan=root_plans(1), forms=ARGUMENT_FORMS)
async def test_random_query_with_one_root_field_never_leaks(
    gateway: Gateway, subject: SubjectPlan, plan: tuple[Sel, ...], forms: tuple[str, ...]
) -> None:
    await _check(gateway, subject, plan, forms)


@settings(PROPERTY_SETTINGS, max_examples=50)
@given(subject=subject_plans(), plan=st.integers(2, 3).flatmap(root_plans), forms=ARGUMENT_FORMS)
async def test_random_query_with_several_root_fields_never_leaks(
    gateway: Gateway, subject: SubjectPlan, plan: tuple[Sel, ...], forms: tuple[str, ...]
) -> None:
    await _check(gateway, subject, plan, forms)
