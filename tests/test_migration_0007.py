"""Migration 0007 (person places, DOMAIN.md rule 9) on a gateway that already runs:

* ``relief_status.county_code`` is backfilled with the person's county (the lists recorded no
  other), and ``person_place`` gets the places of the existing relief statuses, enrollments and
  tasks, exactly as ``gateway.storage.places.refresh_places`` derives them;
* a gateway running the shipped default policy gets the place-aware row scopes as one new
  policy version (with its ``lines`` snapshot); a line an officer changed is kept as it was; a
  fresh database gets no version from the migration (the default file is installed whole);
* downgrading removes the table and the column, and upgrading again rebuilds the places.

That the models match the migrations at head is ``tests/test_migration_0003.py``'s
``test_the_migrations_build_exactly_the_models`` (it compares at head, 0007 included).

On SQLite and PostgreSQL, through alembic the way ``gateway.storage.migrate`` runs it.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections import Counter
from datetime import date
from typing import Any

import pytest
from sqlalchemy import String, cast, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.conditions import parse_row_object
from authz.store import Authorizer, PolicyLine, default_policy_lines, install_default_policies
from gateway.crypto import FieldCipher, Keyring
from gateway.domain.clock import now_utc
from gateway.storage.engine import make_sessionmaker
from gateway.storage.models import CasbinRule, Person, PersonPlace, PolicyVersion, ReliefStatus
from gateway.storage.vault import PersonVault
from tests.ingest_support import CIPHER_SUITE
from tests.migration_support import (  # noqa: F401
    engine,
    migrate,
    policy_lines,
    revision_of,
    schema_of,
    versions,
)
from tests.places_support import (
    CIVIL,
    JINGHU,
    LIXIA,
    LUYANG,
    MIB,
    RURAL,
    SHUSHAN,
    YAOHAI,
    Facts,
    refresh,
)

MIGRATION = importlib.import_module("migrations.versions.0007_person_places")

_RURAL_CATEGORIES = (
    "category: RETURNED_TO_POVERTY|MONITORED_UNSTABLE|MONITORED_MARGINAL"
    "|MONITORED_SUDDEN_HARDSHIP|LIFTED_FROM_POVERTY"
)
# The rule, as a table: each shipped row line → the place-aware lines that replace it.
PLACE_AWARE: dict[PolicyLine, tuple[PolicyLine, ...]] = {
    ("medical_insurance:*", "Person(all)", "rows", "*"): (
        ("medical_insurance:*", "Person(all; places: residence|insured)", "rows", "*"),
    ),
    ("civil_affairs:*", "Person(all)", "rows", "*"): (
        ("civil_affairs:*", "Person(all; places: residence|identity)", "rows", "*"),
        ("civil_affairs:*", "Person(pushed; places: addressed)", "rows", "*"),
    ),
    ("rural_revitalization:*", f"Person({_RURAL_CATEGORIES})", "rows", "*"): (
        (
            "rural_revitalization:*",
            f"Person({_RURAL_CATEGORIES}; places: residence|identity)",
            "rows",
            "*",
        ),
    ),
    ("rural_revitalization:*", "Person(pushed)", "rows", "*"): (
        ("rural_revitalization:*", "Person(pushed; places: addressed)", "rows", "*"),
    ),
}
_SHIPPED_BEFORE = {new: old for old, news in PLACE_AWARE.items() for new in news}


def _lines_at_0006() -> list[PolicyLine]:
    """The default policy as 0006 shipped it: today's file with place-aware lines put back."""
    lines: list[PolicyLine] = []
    for line in default_policy_lines():
        shipped = _SHIPPED_BEFORE.get(line, line)
        if shipped not in lines:
            lines.append(shipped)
    return lines


LINES_AT_0006 = _lines_at_0006()


def made_place_aware(lines: list[PolicyLine]) -> Counter[PolicyLine]:
    """What the rule makes of ``lines``: every exactly-as-shipped row line replaced."""
    result: Counter[PolicyLine] = Counter()
    for line in lines:
        result.update(PLACE_AWARE.get(line, (line,)))
    return result


def test_the_migration_replaces_exactly_the_lines_of_the_rule() -> None:
    assert MIGRATION._REPLACED == PLACE_AWARE
    assert set(PLACE_AWARE) <= set(LINES_AT_0006)  # each replaced line was shipped
    for news in PLACE_AWARE.values():
        for _, row_object, _, _ in news:
            parse_row_object(row_object)  # the policy loader accepts it


def test_the_default_file_ships_the_place_aware_lines() -> None:
    """A fresh gateway installs what the migration gives a running one (the migration says
    ``authz/default_policy.csv`` has the new lines)."""
    defaults = Counter(default_policy_lines())
    assert defaults == made_place_aware(LINES_AT_0006)


# ---------------------------------------------------------------------------- a gateway at 0006
def _vault() -> PersonVault:
    return PersonVault(FieldCipher(Keyring.generate(CIPHER_SUITE)))


async def people_at_0006(engine: AsyncEngine) -> dict[str, uuid.UUID]:  # noqa: F811
    """Relief statuses (one exited), enrollments in another county and in two years (one
    terminated), tasks, stored before 0007 (no relief_status.county_code)."""
    facts = Facts(_vault(), before_0007=True)
    a = facts.person("340103001001")  # lives in 庐阳
    facts.identity(a, None)  # civil affairs, 低保, 2025-03-01, open
    facts.identity(
        a,
        None,
        department=RURAL,
        category="LIFTED_FROM_POVERTY",
        valid_from=date(2021, 1, 1),
        valid_to=date(2026, 6, 30),
    )
    facts.enrollment(a, 2025, "340102003004")  # insured in 瑶海 last year
    facts.enrollment(a, 2026, LUYANG)
    facts.task(a, CIVIL, LUYANG, date(2026, 10, 12))
    facts.task(a, MIB, LUYANG, date(2025, 3, 5))
    b = facts.person(SHUSHAN)
    facts.identity(
        b,
        None,
        category="EXTREME_POVERTY",
        valid_from=date(2024, 1, 1),
        valid_to=date(2025, 12, 31),
    )
    facts.enrollment(b, 2025, SHUSHAN)
    facts.enrollment(b, 2026, SHUSHAN, "TERMINATED")
    c = facts.person(JINGHU)
    facts.enrollment(c, 2026, JINGHU, "TERMINATED")  # terminated only
    d = facts.person(LIXIA)  # no facts, no places
    await facts.write(engine)
    return {"a": a, "b": b, "c": c, "d": d}


EXPECTED_PLACES = {
    # person, kind, department, county, city, province, since, until (as stored, ISO text)
    ("a", "identity", CIVIL, LUYANG, "3401", "34", "2025-03-01", None),
    ("a", "identity", RURAL, LUYANG, "3401", "34", "2021-01-01", "2026-06-30"),
    ("a", "insured", MIB, YAOHAI, "3401", "34", "2025-01-01", "2025-12-31"),
    ("a", "insured", MIB, LUYANG, "3401", "34", "2026-01-01", None),
    ("a", "addressed", CIVIL, LUYANG, "3401", "34", "2026-10-12", None),
    ("a", "addressed", MIB, LUYANG, "3401", "34", "2025-03-05", None),
    ("b", "identity", CIVIL, SHUSHAN, "3401", "34", "2024-01-01", "2025-12-31"),
    ("b", "insured", MIB, SHUSHAN, "3401", "34", "2025-01-01", "2025-12-31"),
    # terminated only: ends the day before it starts (never held)
    ("c", "insured", MIB, JINGHU, "3402", "34", "2026-01-01", "2025-12-31"),
}


async def places_of(engine: AsyncEngine, people: dict[str, uuid.UUID]) -> set[tuple[Any, ...]]:  # noqa: F811
    """Every stored place, its person by name and its dates as text (read as text, so a date
    Python cannot hold shows as what it is)."""
    names = {person: name for name, person in people.items()}
    t = PersonPlace.__table__.c
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                t.person_id,
                t.kind,
                t.department,
                t.county_code,
                t.city_code,
                t.province_code,
                cast(t.since, String()),
                cast(t.until, String()),
            )
        )
        return {(names[row[0]], *row[1:]) for row in rows}


async def identity_counties(
    engine: AsyncEngine,  # noqa: F811
    people: dict[str, uuid.UUID],
) -> Counter[tuple[str, str, str | None]]:
    names = {person: name for name, person in people.items()}
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(ReliefStatus.person_id, ReliefStatus.category, ReliefStatus.county_code)
        )
        return Counter((names[p], category, county) for p, category, county in rows)


async def test_upgrade_backfills_identity_counties_and_places_as_refresh_does(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "0006")
    people = await people_at_0006(engine)

    await migrate(engine, "upgrade", "0007")

    assert await revision_of(engine) == "0007"
    assert await identity_counties(engine, people) == Counter(
        {
            ("a", "MINIMUM_LIVING", LUYANG): 1,  # the person's county, not the 12-digit code
            ("a", "LIFTED_FROM_POVERTY", LUYANG): 1,
            ("b", "EXTREME_POVERTY", SHUSHAN): 1,
        }
    )
    migrated = await places_of(engine, people)
    assert migrated == EXPECTED_PLACES

    # … which is what refresh_places derives from the same facts (at head: it reads the
    # reports of 0008, of which this database has none).
    await migrate(engine, "upgrade", "head")
    async with engine.begin() as connection:
        await connection.execute(delete(PersonPlace))
    await refresh(engine, select(Person.id))
    assert await places_of(engine, people) == migrated


# ---------------------------------------------------------------------------- the policy
async def initialised_at_0006(
    engine: AsyncEngine,  # noqa: F811
    officers_changed: dict[PolicyLine, PolicyLine],
) -> list[PolicyLine]:
    """A gateway at 0006 that installed the shipped defaults as version 1 and, if officers
    changed lines, approved them as version 2; the lines in force, in ``casbin_rule`` order."""
    await migrate(engine, "upgrade", "0006")
    lines = [officers_changed.get(line, line) for line in LINES_AT_0006]
    async with engine.begin() as connection:
        await connection.execute(
            insert(CasbinRule),
            [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p} for s, o, a, p in lines],
        )
        snapshots = [("system", LINES_AT_0006)]
        if officers_changed:
            snapshots.append(("officer:test", lines))
        for who, snapshot in snapshots:
            await connection.execute(
                insert(PolicyVersion).values(
                    created_at=now_utc(),
                    created_by=who,
                    note=who,
                    lines=json.dumps([list(line) for line in snapshot], ensure_ascii=False),
                )
            )
    return lines


async def snapshot_of(engine: AsyncEngine, version: int) -> list[PolicyLine] | None:  # noqa: F811
    async with engine.connect() as connection:
        raw = (
            await connection.execute(select(PolicyVersion.lines).where(PolicyVersion.id == version))
        ).scalar_one()
    return None if raw is None else [(s, o, a, p) for s, o, a, p in json.loads(raw)]


async def lines_in_order(engine: AsyncEngine) -> list[PolicyLine]:  # noqa: F811
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3)
            .where(CasbinRule.ptype == "p")
            .order_by(CasbinRule.id)
        )
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


MIB_LINE, CIVIL_LINE, RURAL_CATEGORY_LINE, RURAL_PUSHED_LINE = PLACE_AWARE
OFFICERS = {
    "as shipped: every row line made place-aware as one new version": ({}, True),
    "medical insurance's line changed by an officer: kept, the others replaced": (
        {MIB_LINE: ("medical_insurance:*", "Person(category: MINIMUM_LIVING)", "rows", "*")},
        True,
    ),
    "every replaced line changed by officers: nothing replaced, no version": (
        {
            MIB_LINE: ("medical_insurance:*", "Person(category: MINIMUM_LIVING)", "rows", "*"),
            CIVIL_LINE: ("civil_affairs:*", "Person(category: ORPHAN)", "rows", "*"),
            RURAL_CATEGORY_LINE: ("rural_revitalization:*", "Person(all)", "rows", "*"),
            RURAL_PUSHED_LINE: (
                "rural_revitalization:*",
                "Person(category: RETURNED_TO_POVERTY)",
                "rows",
                "*",
            ),
        },
        False,
    ),
}


@pytest.mark.parametrize("case", OFFICERS.values(), ids=OFFICERS.keys())
async def test_a_running_gateway_gets_the_place_aware_row_scopes_as_one_version(
    engine: AsyncEngine,  # noqa: F811
    case: tuple[dict[PolicyLine, PolicyLine], bool],
) -> None:
    officers_changed, new_version = case
    before = await initialised_at_0006(engine, officers_changed)
    versions_before = await versions(engine)

    await migrate(engine, "upgrade", "0007")

    enforced = await lines_in_order(engine)
    assert Counter(enforced) == made_place_aware(before)
    for changed in officers_changed.values():
        assert changed in enforced  # an officer's line is kept as it was
    if not new_version:
        assert await versions(engine) == versions_before
        assert enforced == before
        return
    assert await versions(engine) == [
        *versions_before,
        (len(versions_before) + 1, "migration 0007"),
    ]
    assert await snapshot_of(engine, len(versions_before) + 1) == enforced
    authorizer = Authorizer(engine)  # the policy in force loads (every line parses)
    async with engine.connect() as connection:
        await authorizer.load(connection)
    assert authorizer.version == len(versions_before) + 1


async def test_a_fresh_database_gets_no_version_from_the_migration(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await migrate(engine, "upgrade", "head")
    assert await versions(engine) == []
    assert await policy_lines(engine) == Counter()

    async with make_sessionmaker(engine)() as session:
        assert await install_default_policies(session) is True

    assert await versions(engine) == [(1, "system")]
    assert await policy_lines(engine) == Counter(default_policy_lines())


# ---------------------------------------------------------------------------- downgrade
async def test_downgrade_removes_the_places_and_upgrading_again_rebuilds_them(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    await initialised_at_0006(engine, {})
    people = await people_at_0006(engine)
    await migrate(engine, "upgrade", "0007")
    places, counties = await places_of(engine, people), await identity_counties(engine, people)
    enforced = await policy_lines(engine)

    await migrate(engine, "downgrade", "0006")

    assert await revision_of(engine) == "0006"
    tables, columns = await schema_of(engine)
    assert "person_place" not in tables
    assert "county_code" not in columns["relief_status"]
    assert len(await statuses_at_0006(engine)) == 3  # the facts are kept

    await migrate(engine, "upgrade", "0007")  # and up again
    assert await places_of(engine, people) == places
    assert await identity_counties(engine, people) == counties
    assert await policy_lines(engine) == enforced


async def statuses_at_0006(engine: AsyncEngine) -> list[Any]:  # noqa: F811
    async with engine.connect() as connection:
        return list(
            (await connection.execute(select(ReliefStatus.id, ReliefStatus.category))).all()
        )


async def test_downgrade_gives_back_row_scopes_that_0006_can_read(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    """0006 knows no places: after the downgrade the lines in force are the shipped ones
    again, and the version in force says so (as 0003's downgrade takes its lines back)."""
    await initialised_at_0006(engine, {})
    await migrate(engine, "upgrade", "0007")

    await migrate(engine, "downgrade", "0006")

    enforced = await lines_in_order(engine)
    assert [line for line in enforced if "places:" in line[1]] == []
    assert Counter(enforced) == Counter(LINES_AT_0006)
    in_force = (await versions(engine))[-1][0]
    assert await snapshot_of(engine, in_force) == enforced
