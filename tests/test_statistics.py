"""``statistics``: aggregates without person data (DOMAIN.md rule 11, 000 §5; issue 4 item 6).

Rules under test:

* **Aggregate-only access.** ``Statistics.read`` alone opens it: big_data (no person-level
  access at all) gets the figures and is refused every person field; health (no grant) is
  refused the statistics.
* **Jurisdiction.** Cells cover the token's region; ``regionPrefix`` narrows it; outside →
  FORBIDDEN, malformed → BAD_USER_INPUT. A county clerk sees only its county, with the same
  figures the province sees for that county.
* **Small cells.** 1..4 people → null and ``suppressed``; 5 → shown; 0 → shown. Secondary
  suppression: no row (a region's categories and total) or column (one category across the
  counties of a city) ever has exactly one suppressed cell next to published non-zero ones.
* **Counts are right**: equal to a plain-Python computation over the tables (seeded synthetic
  population plus the hand-built one below), on SQLite and PostgreSQL.
* **Sharing** (共享次数/共享人次): person reads made through the API by other departments show
  up per reading department and month; not suppressed.

Each backend gets a gateway of this module alone (``stats_gateway``): the synthetic population
of Shanxi and Anhui, and in Shandong only the hand-built counties A = 370102 and B = 370103 of
济南市, pushed through ``submitRecords`` like a department system would, recognised 2026-03-01
(today is pinned to 2026-11-23):

    county A   特困人员 4 · 低保对象 5 (+1 exited 2026-10-31) · 孤儿 2 · 脱贫人口 9
               enrolled 2026: all coverage holders but two 特困人员 (16 of 18)
    county B   特困人员 6 · 低保对象 7 · 因病致贫重病患者 3 · 脱贫人口 8
               enrolled 2026: 14 of 21

``cost_warning`` and ``task`` rows are inserted directly (``seeded_loop`` fixture, documented
there): the warning run and the task workflow are their own modules.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from gateway.domain.clock import CHINA_TZ, as_utc, now_utc
from gateway.domain.departments import Level
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.domain.synthetic import generate_population
from gateway.loop.statistics import Group, Key, column_groups, statistics_scope, suppress
from gateway.storage.models import (
    AuditEntry,
    CostWarning,
    Enrollment,
    IngestBatch,
    Person,
    ReliefStatus,
    Task,
    WarningRun,
)
from gateway.storage.writer import write_bundles
from tests.exchange_support import (
    TODAY,
    Someone,
    codes,
    county_token,
    enrollment,
    identity,
    last_audit_id,
    person_id,
    pushed,
    someone,
)
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

MIN = 5
BACKENDS = ("sqlite", "postgres")
SEED_PERSONS = 1500
SEED = 20261123
A, B, CITY = "370102", "370103", "3701"  # 济南市历下区, 济南市市中区, 济南市
CATEGORY_LABELS = {
    "EXTREME_POVERTY": ("civil_affairs", "特困人员"),
    "MINIMUM_LIVING": ("civil_affairs", "低保对象"),
    "ORPHAN": ("civil_affairs", "孤儿"),
    "SERIOUS_ILLNESS": ("civil_affairs", "因病致贫重病患者"),
    "LIFTED_FROM_POVERTY": ("rural_revitalization", "脱贫人口"),
}
# county -> category -> people holding it today
DESIGN = {
    "A": {"EXTREME_POVERTY": 4, "MINIMUM_LIVING": 5, "ORPHAN": 2, "LIFTED_FROM_POVERTY": 9},
    "B": {
        "EXTREME_POVERTY": 6,
        "MINIMUM_LIVING": 7,
        "SERIOUS_ILLNESS": 3,
        "LIFTED_FROM_POVERTY": 8,
    },
}
NOT_ENROLLED = {"A": 2, "B": 7}  # coverage holders left without a 2026 enrollment

RELIEF = """
query Relief($prefix: String, $groupBy: RegionLevel! = COUNTY, $on: Date) {
  statistics(regionPrefix: $prefix, groupBy: $groupBy) {
    regionPrefix groupBy minCellSize
    reliefPeople(on: $on) { regionCode category count suppressed }
  }
}
"""
WARNINGS = """
query Warnings($year: Int!, $month: String, $groupBy: RegionLevel! = COUNTY) {
  statistics(groupBy: $groupBy) {
    warnings(year: $year, month: $month) { regionCode rule month count suppressed }
  }
}
"""
TASKS = """
query Tasks($prefix: String) {
  statistics(regionPrefix: $prefix) {
    tasks { regionCode department kind open openSuppressed overdue overdueSuppressed }
  }
}
"""
COVERAGE = """
query Coverage($year: Int!, $prefix: String) {
  statistics(regionPrefix: $prefix) {
    coverage(year: $year) {
      year referenceDate target
      regions { regionCode population populationSuppressed enrolled enrolledSuppressed
                notEnrolled notEnrolledSuppressed rate meetsTarget }
    }
  }
}
"""
SHARING = """
query Sharing($from: Date!, $to: Date!, $prefix: String) {
  statistics(regionPrefix: $prefix) {
    sharing(from: $from, to: $to) {
      reads { department month requests personTimes }
      provided { department month batches rowsReceived rowsAccepted }
    }
  }
}
"""


# ============================================================================ suppression rule
@pytest.mark.parametrize(
    ("case", "counts", "groups", "hidden"),
    [
        ("4 people: suppressed", {"a": 4}, [], {"a"}),
        ("5 people: shown", {"a": 5}, [], set()),
        ("0 people: shown (describes nobody)", {"a": 0}, [], set()),
        ("1 person: suppressed", {"a": 1}, [], {"a"}),
        (
            "a lone suppressed member takes the next smallest member",
            {"a": 4, "b": 9, "c": 5, "t": 18},
            [(("a", "b", "c"), "t")],
            {"a", "c"},
        ),
        (
            "two suppressed members: nothing more",
            {"a": 4, "b": 2, "c": 5, "t": 11},
            [(("a", "b", "c"), "t")],
            {"a", "b"},
        ),
        (
            "a zero member is never the second cell (subtracting it reveals as much)",
            {"a": 3, "b": 0, "c": 8, "t": 11},
            [(("a", "b", "c"), "t")],
            {"a", "c"},
        ),
        (
            "no member to take: the total goes (only non-additive totals reach this)",
            {"a": 3, "b": 0, "t": 8},
            [(("a", "b"), "t")],
            {"a", "t"},
        ),
        (
            "a column without a total (the parent's figure is published elsewhere)",
            {"a": 2, "b": 6, "c": 7},
            [(("a", "b", "c"), None)],
            {"a", "b"},
        ),
        (
            "equal candidates: the first in key order",
            {"a": 1, "b": 6, "c": 6, "t": 13},
            [(("a", "b", "c"), "t")],
            {"a", "b"},
        ),
        (
            "a secondary suppression cascades into the crossing column",
            # rows r1 = (x1, y1), r2 = (x2, y2); columns x = (x1, x2), y = (y1, y2)
            {"x1": 3, "y1": 7, "x2": 8, "y2": 9},
            [
                (("x1", "y1"), None),
                (("x2", "y2"), None),
                (("x1", "x2"), None),
                (("y1", "y2"), None),
            ],
            {"x1", "y1", "x2", "y2"},
        ),
    ],
)
def test_small_cell_suppression(
    case: str,
    counts: dict[str, int],
    groups: list[tuple[tuple[str, ...], str | None]],
    hidden: set[str],
) -> None:
    keyed: dict[Key, int] = {(name,): value for name, value in counts.items()}
    found = suppress(
        keyed,
        [
            Group(tuple((m,) for m in members), (total,) if total else None)
            for members, total in groups
        ],
        MIN,
    )
    assert {key[0] for key in found} == hidden, case


def test_min_cell_size_is_configuration() -> None:
    assert suppress({("a",): 2, ("b",): 3}, [], 3) == {("a",)}


@st.composite
def _tables(draw: st.DrawFn) -> tuple[dict[tuple[str | None, ...], int], list[Group]]:
    """A county × category table of one or two cities, with per-county totals."""
    counties = draw(
        st.lists(
            st.sampled_from(["370102", "370103", "370104", "370202", "370203"]),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    categories = ["c1", "c2", "c3", "c4"]
    small = st.one_of(st.integers(0, 6), st.integers(0, 60))
    counts: dict[tuple[str | None, ...], int] = {}
    rows = []
    for county in counties:
        members = tuple((county, c) for c in categories)
        for key in members:
            counts[key] = draw(small)
        counts[(county, None)] = sum(counts[key] for key in members)
        rows.append(Group(members, (county, None)))
    return counts, rows + column_groups(counts, Level.COUNTY)


@settings(max_examples=300, deadline=None)
@given(_tables())
def test_no_group_has_one_suppressed_cell_beside_published_counts(
    table: tuple[dict[tuple[str | None, ...], int], list[Group]],
) -> None:
    counts, groups = table
    hidden = suppress(counts, groups, MIN)
    assert {k for k, v in counts.items() if 0 < v < MIN} <= hidden
    assert all(counts[k] > 0 for k in hidden), "a zero is never suppressed"
    for group in groups:
        cells = [*group.members, *([group.total] if group.total else [])]
        alone = [c for c in cells if c in hidden]
        if len(alone) == 1:
            others = [c for c in cells if c not in hidden]
            assert all(counts[c] == 0 for c in others), (group, counts)


@pytest.mark.parametrize(
    ("jurisdiction", "prefix", "group_by", "expected"),
    [
        ("37", None, Level.COUNTY, ("37", "37")),
        ("37", "3701", Level.COUNTY, ("3701", "3701")),
        ("37", "370102", Level.COUNTY, ("370102", "3701")),  # suppression over the city
        ("37", "3701", Level.CITY, ("3701", "37")),
        ("37", None, Level.PROVINCE, ("37", "37")),
        ("370102", None, Level.COUNTY, ("370102", "3701")),
        ("3701", "370102", Level.COUNTY, ("370102", "3701")),
        ("37", "14", Level.COUNTY, Forbidden),  # another province
        ("3701", "37", Level.COUNTY, Forbidden),  # wider than the jurisdiction
        ("370102", "370103", Level.COUNTY, Forbidden),  # the neighbour
        ("37", "37010", Level.COUNTY, BadUserInput),  # not a region code
        ("37", "370102001", Level.COUNTY, BadUserInput),  # finer than a county: not published
        ("37", "37a1", Level.COUNTY, BadUserInput),
        ("370102", None, Level.CITY, BadUserInput),  # a county's figures are not a city's
        ("37", "3701", Level.PROVINCE, BadUserInput),
    ],
)
def test_scope_of_the_figures(
    jurisdiction: str, prefix: str | None, group_by: Level, expected: Any
) -> None:
    if isinstance(expected, tuple):
        scope = statistics_scope(jurisdiction, prefix, group_by)
        assert (scope.published, scope.computed) == expected
    else:
        with pytest.raises(expected):
            statistics_scope(jurisdiction, prefix, group_by)


# ============================================================================ the population
@dataclass(frozen=True, slots=True)
class Built:
    a: str  # county codes
    b: str
    city: str
    people: dict[str, list[tuple[Someone, str]]]  # county letter -> (person, category)
    exited: Someone  # 低保对象 in A, exited 2026-10-31


@pytest.fixture(scope="module", params=BACKENDS)
async def stats_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """A gateway of this module alone per backend: the synthetic population of Shanxi and
    Anhui (the plain-Python cross-check), and Shandong left to the hand-built counties."""
    backend = str(request.param)
    data_dir: Path = tmp_path_factory.mktemp(f"statistics-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'relief.db'}"
    else:
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        name = f"relief_statistics_{uuid.uuid4().hex[:12]}"
        url = cluster.create_database(name)
    gateway = await build_harness(data_dir, url, backend=backend, persons=0)
    gateway.bundles = list(
        generate_population(SEED_PERSONS, seed=SEED, today=TODAY, provinces=["shanxi", "anhui"])
    )
    async with gateway.runtime.sessions() as session:
        await write_bundles(session, gateway.runtime.vault, gateway.bundles)
    try:
        yield gateway
    finally:
        await gateway.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


@pytest.fixture(scope="module")
async def built(stats_gateway: Harness) -> Built:
    gw = stats_gateway
    city, a, b = CITY, A, B
    codes_of = {"A": a, "B": b}
    people: dict[str, list[tuple[Someone, str]]] = {}
    for letter, design in DESIGN.items():
        county, n = codes_of[letter], 0
        people[letter] = []
        for category, size in design.items():
            for _ in range(size):
                people[letter].append((someone(n, county), category))
                n += 1
        by_department: dict[str, list[dict[str, str]]] = defaultdict(list)
        for person, category in people[letter]:
            department, label = CATEGORY_LABELS[category]
            by_department[department].append(identity(person, label, "2026-03-01"))
        for department, records in sorted(by_department.items()):
            await pushed(
                gw, county_token(gw, department, county, f"{department}-{letter}"), records
            )
        coverage_holders = [p for p, c in people[letter] if c not in ("ORPHAN", "SERIOUS_ILLNESS")]
        # The first NOT_ENROLLED holders (特困人员 come first) stay without an enrollment.
        insured = coverage_holders[NOT_ENROLLED[letter] :]
        enrolled = await pushed(
            gw,
            county_token(gw, "medical_insurance", county, f"mi-{letter}"),
            [enrollment(p) for p in insured],
            feed="enrollments",
        )
        assert enrolled["rejections"] == []
    exited = someone(sum(DESIGN["A"].values()), a)
    clerk = county_token(gw, "civil_affairs", a, "civil_affairs-A")
    result = await pushed(
        gw, clerk, [identity(exited, "低保对象", "2026-03-01", exited_on="2026-10-31")]
    )
    assert result["rejections"] == []
    return Built(a=a, b=b, city=city, people=people, exited=exited)


async def _ids(gw: Harness, people: Sequence[Someone]) -> list[uuid.UUID]:
    return [await person_id(gw, p.id_number) for p in people]


@pytest.fixture(scope="module")
async def seeded_loop(stats_gateway: Harness, built: Built) -> Built:
    """Warnings and tasks written directly, as the warning run and the task workflow would.

    cost_warning, county A, year 2026 (one row = one person × year × rule):
        SHANDONG_LOW_INCOME_50  2026-10: 4 people, 2026-11: 6 people
        SHANDONG_ORDINARY_150   2026-11: 5 people          (15 different people)
    task, county A, kind WARNING_REVIEW:
        civil_affairs         6 OPEN (2 of them due before today) + 3 ANSWERED
        rural_revitalization  5 OPEN, none due yet
    """
    gw = stats_gateway
    ids = await _ids(gw, [p for p, _ in built.people["A"]])
    run_id = uuid.uuid4()
    warnings = (
        [("SHANDONG_LOW_INCOME_50", "2026-10", pid) for pid in ids[0:4]]
        + [("SHANDONG_LOW_INCOME_50", "2026-11", pid) for pid in ids[4:10]]
        + [("SHANDONG_ORDINARY_150", "2026-11", pid) for pid in ids[10:15]]
    )
    due = [TODAY - timedelta(days=3)] * 2 + [TODAY + timedelta(days=3)] * 7
    tasks = (
        [("civil_affairs", "OPEN", due[i], ids[i]) for i in range(6)]
        + [("civil_affairs", "ANSWERED", due[i], ids[i]) for i in range(6, 9)]
        + [("rural_revitalization", "OPEN", due[-1], ids[i]) for i in range(5)]
    )
    async with gw.runtime.engine.begin() as connection:
        await connection.execute(
            insert(WarningRun).values(
                id=run_id, month="2026-11", province="shandong", started_at=now_utc(),
                finished_at=now_utc(), status="COMPLETED", triggered_by="test",
                warnings_created=len(warnings), tasks_opened=0, thresholds="{}",
            )
        )  # fmt: skip
        await connection.execute(
            insert(CostWarning),
            [
                {
                    "id": uuid.uuid4(), "run_id": run_id, "month": month, "year": 2026,
                    "person_id": pid, "county_code": built.a, "rule": rule,
                    "measure": "personal_burden", "figure": 30000, "threshold": 20000,
                    "attention": "province", "created_at": now_utc(),
                }
                for rule, month, pid in warnings
            ],
        )  # fmt: skip
        await connection.execute(
            insert(Task),
            [
                {
                    "id": uuid.uuid4(), "kind": "WARNING_REVIEW", "department": department,
                    "county_code": built.a, "person_id": pid, "source_key": f"test:stat:{i}",
                    "opened_on": TODAY - timedelta(days=10), "due_on": due_on,
                    "status": status,
                }
                for i, (department, status, due_on, pid) in enumerate(tasks)
            ],
        )  # fmt: skip
    return built


def province_token(gw: Harness, dept: str = "big_data") -> str:
    return gw.token(dept, "province", "37", subject=f"{dept}-province")


def cells(body: dict[str, Any], section: str) -> list[dict[str, Any]]:
    assert "errors" not in body, body["errors"]
    found: list[dict[str, Any]] = body["data"]["statistics"][section]
    return found


def by_key(rows: list[dict[str, Any]], *names: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[name] for name in names): row for row in rows}


# ============================================================================ plain Python
async def true_relief_people(gw: Harness, on: date, digits: int) -> Counter[tuple[str, Any]]:
    """People holding each category on ``on`` by region (and any category: None), computed in
    Python from the stored rows."""
    async with gw.runtime.engine.connect() as connection:
        people = {
            row.id: row
            for row in await connection.execute(
                select(Person.id, Person.county_code, Person.deceased_on)
            )
        }
        statuses = list(
            await connection.execute(
                select(
                    ReliefStatus.person_id,
                    ReliefStatus.category,
                    ReliefStatus.valid_from,
                    ReliefStatus.valid_to,
                )
            )
        )
    holders: dict[tuple[str, Any], set[uuid.UUID]] = defaultdict(set)
    for status in statuses:
        person = people[status.person_id]
        if person.deceased_on is not None and person.deceased_on < on:
            continue
        if status.valid_from <= on and (status.valid_to is None or status.valid_to >= on):
            region = person.county_code[:digits]
            holders[(region, status.category)].add(status.person_id)
            holders[(region, None)].add(status.person_id)
    return Counter({key: len(ids) for key, ids in holders.items()})


def assert_published_truthfully(
    published: Mapping[tuple[str, Any], dict[str, Any]], truth: Mapping[tuple[str, Any], int]
) -> None:
    """Every published count is the true count; every true count of 1..4 is suppressed; a
    suppressed cell is never a zero."""
    for key, cell in published.items():
        true = truth.get(key, 0)
        if cell["suppressed"]:
            assert cell["count"] is None, key
            assert true > 0, key
        else:
            assert cell["count"] == true, (key, cell, true)
        if 0 < true < MIN:
            assert cell["suppressed"], key


# ============================================================================ access
async def test_big_data_gets_aggregates_and_no_person_data(gw_built: Harness) -> None:
    gw = gw_built
    token = province_token(gw)
    before = await last_audit_id(gw)

    body = await gw.query(token, RELIEF)
    assert cells(body, "reliefPeople"), "big_data sees the aggregates"
    assert body["data"]["statistics"]["regionPrefix"] == "37"
    assert body["data"]["statistics"]["minCellSize"] == MIN
    assert await last_audit_id(gw) == before, "statistics touch no person: no audit entry"

    anyone = gw.persons[0]
    looked_up = await gw.query(
        token, "query($id: String!) { person(idNumber: $id) { name } }", {"id": anyone.id_number}
    )
    assert codes(looked_up) == {("person",): "FORBIDDEN"}
    filtered = await gw.query(
        token, "{ persons(filter: {category: MINIMUM_LIVING}) { totalCount } }"
    )
    assert codes(filtered) == {("persons",): "FORBIDDEN"}
    listed = await gw.query(token, "{ persons { totalCount edges { node { id name } } } }")
    assert listed["data"]["persons"] == {"totalCount": 0, "edges": []}, "no row scope at all"


@pytest.mark.parametrize(
    ("dept", "level", "region", "prefix", "code"),
    [
        ("health", "province", "37", None, "FORBIDDEN"),  # no Statistics.read
        ("public_security", "county", "370102", None, "FORBIDDEN"),
        ("big_data", "province", "37", "14", "FORBIDDEN"),  # another province
        ("civil_affairs", "county", "370102", "3701", "FORBIDDEN"),  # its own city: wider
        ("civil_affairs", "county", "370102", "370103", "FORBIDDEN"),  # the neighbour
        ("big_data", "province", "37", "3701x", "BAD_USER_INPUT"),
        ("big_data", "province", "37", "370102001", "BAD_USER_INPUT"),  # finer than published
    ],
)
async def test_who_may_read_which_figures(
    gw_built: Harness, dept: str, level: str, region: str, prefix: str | None, code: str
) -> None:
    token = gw_built.token(dept, level, region)
    body = await gw_built.query(token, RELIEF, {"prefix": prefix})
    assert codes(body) == {("statistics",): code}
    assert body["data"] is None


async def test_a_coarser_grouping_than_the_scope_is_refused(gw_built: Harness) -> None:
    token = county_token(gw_built, "civil_affairs", "370102")
    body = await gw_built.query(token, RELIEF, {"groupBy": "CITY"})
    assert codes(body) == {("statistics",): "BAD_USER_INPUT"}
    assert "COUNTY" in body["errors"][0]["message"]


# ============================================================================ relief people
@pytest.fixture
def gw_built(stats_gateway: Harness, seeded_loop: Built) -> Harness:
    return stats_gateway


@pytest.mark.parametrize("group_by", ["COUNTY", "CITY", "PROVINCE"])
@pytest.mark.parametrize("province", ["37", "14", "34"], ids=["built", "shanxi", "anhui"])
async def test_relief_people_equal_a_plain_python_count(
    gw_built: Harness, province: str, group_by: str
) -> None:
    gw = gw_built
    digits = Level[group_by].region_digits
    token = gw.token("big_data", "province", province)
    body = await gw.query(token, RELIEF, {"groupBy": group_by})
    published = by_key(cells(body, "reliefPeople"), "regionCode", "category")
    truth = await true_relief_people(gw, TODAY, digits)
    inside = {k: v for k, v in truth.items() if k[0].startswith(province)}

    assert_published_truthfully(published, inside)
    assert {key for key, n in inside.items() if n} <= published.keys(), "no region left out"
    assert all(code.startswith(province) and len(code) == digits for code, _ in published)
    if group_by == "COUNTY":
        assert any(cell["suppressed"] for cell in published.values()), "there are small cells"
        assert any(not cell["suppressed"] and cell["count"] for cell in published.values())


async def test_suppression_in_the_built_counties(gw_built: Harness, seeded_loop: Built) -> None:
    built = seeded_loop
    body = await gw_built.query(province_token(gw_built), RELIEF, {"prefix": built.city})
    got = {
        key: (cell["count"], cell["suppressed"])
        for key, cell in by_key(cells(body, "reliefPeople"), "regionCode", "category").items()
    }
    a, b = built.a, built.b
    hidden = (None, True)
    expected = {
        (a, "EXTREME_POVERTY"): hidden,  # 4: primary
        (a, "MINIMUM_LIVING"): (5, False),  # 5: shown
        (a, "ORPHAN"): hidden,  # 2: primary (second in A's row: nothing more)
        (a, "LIFTED_FROM_POVERTY"): (9, False),
        (a, "RETURNED_TO_POVERTY"): (0, False),  # 0: shown
        (a, None): (20, False),  # A's total
        (b, "SERIOUS_ILLNESS"): hidden,  # 3: primary, alone in B's row ...
        (b, "EXTREME_POVERTY"): hidden,  # ... so B's smallest (6) goes too: secondary
        (b, "MINIMUM_LIVING"): (7, False),
        (b, "LIFTED_FROM_POVERTY"): (8, False),
        (b, None): (24, False),
    }
    assert {key: got[key] for key in expected} == expected
    assert {code for code, _ in got} == {a, b}


async def test_an_identity_exited_on_a_day_is_still_held_that_day(
    gw_built: Harness, seeded_loop: Built
) -> None:
    built = seeded_loop
    token = province_token(gw_built)
    on_exit_day = await gw_built.query(token, RELIEF, {"prefix": built.a, "on": "2026-10-31"})
    day_after = await gw_built.query(token, RELIEF, {"prefix": built.a, "on": "2026-11-01"})
    key = (built.a, "MINIMUM_LIVING")
    assert by_key(cells(on_exit_day, "reliefPeople"), "regionCode", "category")[key]["count"] == 6
    assert by_key(cells(day_after, "reliefPeople"), "regionCode", "category")[key]["count"] == 5


async def test_a_county_clerk_sees_only_its_county_with_the_province_figures(
    gw_built: Harness, seeded_loop: Built
) -> None:
    built = seeded_loop
    province = by_key(
        cells(await gw_built.query(province_token(gw_built), RELIEF), "reliefPeople"),
        "regionCode",
        "category",
    )
    for token in (
        county_token(gw_built, "civil_affairs", built.a),
        gw_built.token("medical_insurance", "city", built.city),
    ):
        body = await gw_built.query(token, RELIEF, {"prefix": built.a})
        own = by_key(cells(body, "reliefPeople"), "regionCode", "category")
        assert {code for code, _ in own} == {built.a}
        assert own == {key: province[key] for key in own}, "same figure for every caller"
    clerk = county_token(gw_built, "civil_affairs", built.a)
    unnarrowed = cells(await gw_built.query(clerk, RELIEF), "reliefPeople")
    assert {cell["regionCode"] for cell in unnarrowed} == {built.a}


# ============================================================================ warnings, tasks
async def test_warnings_by_region_rule_and_month(gw_built: Harness, seeded_loop: Built) -> None:
    a = seeded_loop.a
    token = province_token(gw_built)
    year = by_key(
        cells(await gw_built.query(token, WARNINGS, {"year": 2026}), "warnings"),
        "regionCode", "rule", "month",
    )  # fmt: skip
    low, ordinary = "SHANDONG_LOW_INCOME_50", "SHANDONG_ORDINARY_150"
    assert {k: (v["count"], v["suppressed"]) for k, v in year.items() if k[0] == a} == {
        (a, low, "2026-10"): (None, True),  # 4: primary
        (a, low, "2026-11"): (None, True),  # 6: the total (10) would give the 4 away
        (a, low, None): (10, False),
        (a, ordinary, "2026-10"): (0, False),
        (a, ordinary, "2026-11"): (5, False),
        (a, ordinary, None): (5, False),
        (a, None, None): (15, False),  # people warned under any rule
    }
    month = by_key(
        cells(
            await gw_built.query(token, WARNINGS, {"year": 2026, "month": "2026-11"}), "warnings"
        ),
        "regionCode", "rule", "month",
    )  # fmt: skip
    assert {k: v["count"] for k, v in month.items() if k[0] == a} == {
        (a, low, "2026-11"): 6,
        (a, ordinary, "2026-11"): 5,
        (a, None, "2026-11"): 11,
    }
    for month_text in ("2025-11", "2026-13", "11"):
        refused = await gw_built.query(token, WARNINGS, {"year": 2026, "month": month_text})
        assert codes(refused) == {("statistics", "warnings"): "BAD_USER_INPUT"}


async def test_open_and_overdue_tasks(gw_built: Harness, seeded_loop: Built) -> None:
    a = seeded_loop.a
    body = await gw_built.query(province_token(gw_built), TASKS, {"prefix": a})
    got = {
        key: (row["open"], row["openSuppressed"], row["overdue"], row["overdueSuppressed"])
        for key, row in by_key(cells(body, "tasks"), "regionCode", "department", "kind").items()
    }
    assert got[(a, "CIVIL_AFFAIRS", "WARNING_REVIEW")] == (6, False, None, True)  # 3 answered
    assert got[(a, "CIVIL_AFFAIRS", None)] == (6, False, None, True)
    assert got[(a, "CIVIL_AFFAIRS", "IDENTITY_VERIFICATION")] == (0, False, 0, False)
    assert got[(a, "RURAL_REVITALIZATION", "WARNING_REVIEW")] == (5, False, 0, False)

    # Cross-check against the table (other modules may open verification tasks on pushes).
    async with gw_built.runtime.engine.connect() as connection:
        rows = list(
            await connection.execute(
                select(Task.department, Task.kind, Task.due_on).where(
                    Task.county_code == a, Task.status == "OPEN"
                )
            )
        )
    for (_, department, kind), row in by_key(
        cells(body, "tasks"), "regionCode", "department", "kind"
    ).items():
        mine = [r for r in rows if r.department == department.lower() and kind in (None, r.kind)]
        late = [r for r in mine if r.due_on < TODAY]
        for value, hidden, true in (
            (row["open"], row["openSuppressed"], len(mine)),
            (row["overdue"], row["overdueSuppressed"], len(late)),
        ):
            assert (value is None) == hidden
            assert hidden or value == true
            assert not 0 < true < MIN or hidden


# ============================================================================ coverage
async def test_coverage_per_county(gw_built: Harness, seeded_loop: Built) -> None:
    built = seeded_loop
    body = await gw_built.query(province_token(gw_built), COVERAGE, {"year": 2026})
    coverage = body["data"]["statistics"]["coverage"]
    assert "errors" not in body, body["errors"]
    assert (coverage["year"], coverage["referenceDate"], coverage["target"]) == (
        2026,
        TODAY.isoformat(),
        "0.99",
    )
    regions_ = {row["regionCode"]: row for row in coverage["regions"]}
    a = regions_[built.a]
    # 18 holders, 2 not enrolled: the 2 is suppressed, and the 16 with it (18 - 16 = 2).
    assert (a["population"], a["populationSuppressed"]) == (18, False)
    assert (a["notEnrolled"], a["notEnrolledSuppressed"]) == (None, True)
    assert (a["enrolled"], a["enrolledSuppressed"]) == (None, True)
    assert (a["rate"], a["meetsTarget"]) == (None, None)
    b = regions_[built.b]
    assert b["population"] == 21
    for row in regions_.values():
        assert (row["rate"] is None) == (row["enrolled"] is None or row["population"] is None)
        if row["rate"] is not None:
            assert row["meetsTarget"] == (row["enrolled"] >= 0.99 * row["population"])

    true = await true_coverage(gw_built, 2026)
    for code, row in regions_.items():
        population, enrolled = true[code]
        for name, value in (
            ("population", population),
            ("enrolled", enrolled),
            ("notEnrolled", population - enrolled),
        ):
            assert row[f"{name}Suppressed"] == (row[name] is None)
            assert row[name] is None or row[name] == value, (code, name)
            assert not 0 < value < MIN or row[name] is None, (code, name)
    assert {code for code, (n, _) in true.items() if n and code.startswith("37")} == set(regions_)

    future = await gw_built.query(province_token(gw_built), COVERAGE, {"year": 2027})
    assert codes(future) == {("statistics", "coverage"): "BAD_USER_INPUT"}


async def true_coverage(gw: Harness, year: int) -> dict[str, tuple[int, int]]:
    """(population, enrolled) per county: coverage-category holders on the reference day, not
    deceased before it, and those with an ACTIVE enrollment in ``year``."""
    day = TODAY if year == TODAY.year else date(year, 12, 31)
    categories = gw.runtime.rules.coverage_categories
    async with gw.runtime.engine.connect() as connection:
        people = {
            r.id: r
            for r in await connection.execute(
                select(Person.id, Person.county_code, Person.deceased_on)
            )
        }
        holders = {
            r.person_id
            for r in await connection.execute(
                select(ReliefStatus.person_id, ReliefStatus.valid_to).where(
                    ReliefStatus.category.in_(categories), ReliefStatus.valid_from <= day
                )
            )
            if r.valid_to is None or r.valid_to >= day
        }
        enrolled = {
            r.person_id
            for r in await connection.execute(
                select(Enrollment.person_id).where(
                    Enrollment.year == year, Enrollment.status == "ACTIVE"
                )
            )
        }
    counted: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for pid in holders:
        person = people[pid]
        if person.deceased_on is not None and person.deceased_on < day:
            continue
        population, insured = counted[person.county_code]
        counted[person.county_code] = (population + 1, insured + (pid in enrolled))
    return dict(counted)


# ============================================================================ sharing
def _beijing_today() -> date:
    return datetime.now(CHINA_TZ).date()


async def _sharing(gw: Harness, token: str, prefix: str | None = None) -> dict[str, Any]:
    day = _beijing_today().isoformat()
    body = await gw.query(token, SHARING, {"from": day, "to": day, "prefix": prefix})
    assert "errors" not in body, body["errors"]
    sharing: dict[str, Any] = body["data"]["statistics"]["sharing"]
    return sharing


def _reads(sharing: Mapping[str, Any], department: str) -> tuple[int, int]:
    month = _beijing_today().strftime("%Y-%m")
    for row in sharing["reads"]:
        if (row["department"], row["month"]) == (department, month):
            return row["requests"], row["personTimes"]
    return 0, 0


async def test_shares_and_person_times_per_department(
    gw_built: Harness, seeded_loop: Built
) -> None:
    gw, built = gw_built, seeded_loop
    big_data = province_token(gw)
    county_clerk = county_token(gw, "civil_affairs", built.a, "ca-a-stats")
    before = await _sharing(gw, big_data)
    before_county = await _sharing(gw, county_clerk)

    insurer = county_token(gw, "medical_insurance", built.a, "mi-reader")
    for person, _ in built.people["A"][:3]:
        found = await gw.query(
            insurer, "query($id: String!) { person(idNumber: $id) { name } }",
            {"id": person.id_number},
        )  # fmt: skip
        assert found["data"]["person"]["name"] == person.name
    city_clerk = gw.token("civil_affairs", "city", built.city, subject="ca-city-reader")
    listed = await gw.query(
        city_clerk,
        "query($p: String) { persons(filter: {regionPrefix: $p}, first: 100) "
        "{ edges { node { name } } } }",
        {"p": built.b},
    )
    listed_people = len(listed["data"]["persons"]["edges"])
    assert listed_people >= sum(DESIGN["B"].values())

    after = await _sharing(gw, big_data)
    mi = _reads(after, "MEDICAL_INSURANCE")
    ca = _reads(after, "CIVIL_AFFAIRS")
    mi0 = _reads(before, "MEDICAL_INSURANCE")
    ca0 = _reads(before, "CIVIL_AFFAIRS")
    assert (mi[0] - mi0[0], mi[1] - mi0[1]) == (3, 3), "3 lookups of one person each"
    assert (ca[0] - ca0[0], ca[1] - ca0[1]) == (1, listed_people), "1 list of the county"

    # The county clerk's figures count readers of its county only: the city clerk is not one.
    after_county = await _sharing(gw, county_clerk)
    assert _reads(after_county, "CIVIL_AFFAIRS") == _reads(before_county, "CIVIL_AFFAIRS")
    mi_county = _reads(after_county, "MEDICAL_INSURANCE")
    assert mi_county[1] - _reads(before_county, "MEDICAL_INSURANCE")[1] == 3

    # And all of it equals a plain count over the audit log.
    assert after["reads"] == await true_reads(gw, "37")
    assert after["provided"] == await true_provided(gw, "37")
    assert not any("id" in key.lower() for row in after["reads"] for key in row)


async def true_reads(gw: Harness, prefix: str) -> list[dict[str, Any]]:
    day = _beijing_today()
    async with gw.runtime.engine.connect() as connection:
        rows = list(
            await connection.execute(
                select(AuditEntry.department, AuditEntry.region, AuditEntry.occurred_at,
                       AuditEntry.person_ids)
            )
        )  # fmt: skip
    grouped: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        moment = as_utc(row.occurred_at).astimezone(CHINA_TZ)
        released = len(json.loads(row.person_ids))
        if row.region.startswith(prefix) and moment.date() == day and released:
            slot = grouped[(row.department, moment.strftime("%Y-%m"))]
            slot[0] += 1
            slot[1] += released
    return [
        {"department": dept.upper(), "month": month, "requests": n, "personTimes": times}
        for (dept, month), (n, times) in sorted(grouped.items())
    ]


async def true_provided(gw: Harness, prefix: str) -> list[dict[str, Any]]:
    day = _beijing_today()
    async with gw.runtime.engine.connect() as connection:
        rows = list(await connection.execute(select(*IngestBatch.__table__.c)))
    grouped: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        moment = as_utc(row.received_at).astimezone(CHINA_TZ)
        if (
            row.region.startswith(prefix)
            and row.channel in ("FILE", "PUSH")
            and moment.date() == day
        ):
            slot = grouped[(row.department, moment.strftime("%Y-%m"))]
            slot[0] += 1
            slot[1] += row.rows_total
            slot[2] += row.rows_accepted
    return [
        {"department": dept.upper(), "month": month, "batches": n, "rowsReceived": total,
         "rowsAccepted": accepted}
        for (dept, month), (n, total, accepted) in sorted(grouped.items())
    ]  # fmt: skip


async def test_a_sharing_period_must_run_forwards(gw_built: Harness) -> None:
    body = await gw_built.query(
        province_token(gw_built), SHARING, {"from": "2026-11-02", "to": "2026-11-01"}
    )
    assert codes(body) == {("statistics", "sharing"): "BAD_USER_INPUT"}
