"""Migration 0010 (policy expectations, issue 16 item 5) on a gateway that already runs:

* ``policy_version.expectations`` and ``policy_proposal.expectations`` are added, null for the
  versions and proposals already there (no expectations, nothing proposed about them), and the
  policy in force decides exactly as before;
* a line's validity end needs no column (``casbin_rule.v4``): one written there is read as the
  line's end by the enforcer and by the versions' snapshots (a fifth cell);
* downgrading drops the two columns and keeps every version, proposal and line; upgrading again
  works. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authz.admin import PolicyAdmin
from authz.decision import Effect
from authz.store import Authorizer, TimedLine, default_policy_lines, lines_json
from gateway.domain.clock import now_utc, travel
from gateway.domain.departments import Department, Level
from gateway.domain.principal import Principal
from gateway.storage.models import CasbinRule
from tests.migration_support import engine, migrate, revision_of, schema_of  # noqa: F401

PHONE = ("health@3701:city", "Person.phone", "read", "*")
CALLER = Principal("c", Department.HEALTH, Level.CITY, "3701")


async def _at_0009(engine: AsyncEngine) -> datetime:  # noqa: F811
    """The default policies and one line ending in an hour (written as a later release
    writes it), a version and a pending proposal, at revision 0009."""
    await migrate(engine, "upgrade", "0009")
    end = (now_utc() + timedelta(hours=1)).replace(microsecond=0)
    lines = [*default_policy_lines(), TimedLine(PHONE, end)]
    async with engine.begin() as connection:
        await connection.execute(
            insert(CasbinRule),
            [
                {"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": p, "v4": None}
                for s, o, a, p in default_policy_lines()
            ]
            + [
                {
                    "ptype": "p",
                    "v0": PHONE[0],
                    "v1": PHONE[1],
                    "v2": "read",
                    "v3": "*",
                    "v4": end.isoformat(),
                }
            ],
        )
        await connection.execute(
            text(
                "INSERT INTO policy_version (created_at, created_by, note, lines) "
                "VALUES (:at, 'system', '默认', :lines)"
            ),
            {"at": now_utc(), "lines": lines_json(lines)},
        )
        await connection.execute(
            text(
                "INSERT INTO policy_proposal (id, base_version, title, added, removed, "
                "proposed_by, proposer_level, proposer_region, proposed_at, status) VALUES "
                "(:id, 1, '旧申请', '[]', :removed, 'alice', 'province', '37', :at, 'PENDING')"
            ),
            {
                "id": uuid.uuid4() if engine.dialect.name == "postgresql" else uuid.uuid4().hex,
                "removed": json.dumps([list(PHONE)]),
                "at": now_utc(),
            },
        )
    return end


async def _decide(engine: AsyncEngine) -> Authorizer:  # noqa: F811
    authorizer = Authorizer(engine)
    async with engine.connect() as connection:
        await authorizer.load(connection)
    return authorizer


async def test_upgrade_adds_the_columns_and_keeps_the_policy(engine: AsyncEngine) -> None:  # noqa: F811
    end = await _at_0009(engine)
    before = await _decide(engine)
    assert before.decision_for(CALLER, "").effect("Person.phone") is Effect.READ

    await migrate(engine, "upgrade", "0010")
    assert await revision_of(engine) == "0010"
    _, columns = await schema_of(engine)
    assert "expectations" in columns["policy_version"]
    assert "expectations" in columns["policy_proposal"]

    async with engine.connect() as connection:
        admin = PolicyAdmin(connection.execute, engine)
        in_force = await admin.in_force()
        version = await admin.version(1)
        proposals, _ = await admin.proposals(status=None, first=10)
        assert in_force.expectations is None
        assert version is not None
        assert version.lines == in_force.lines  # the snapshot reads the end back
        assert TimedLine(PHONE, end) in (in_force.lines or ())
        assert [(p.title, p.expectations) for p in proposals] == [("旧申请", None)]
        assert await admin.expectation_failures(proposals[0]) == []

    after = await _decide(engine)
    assert after.version == before.version
    assert after.next_end == end
    for purpose in ("", "supervision"):
        assert after.decision_for(CALLER, purpose) == before.decision_for(CALLER, purpose)
    with travel(end):
        assert after.decision_for(CALLER, "").effect("Person.phone") is Effect.DENY


async def test_downgrade_drops_the_columns_and_keeps_the_rest(engine: AsyncEngine) -> None:  # noqa: F811
    await _at_0009(engine)
    await migrate(engine, "upgrade", "0010")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE policy_version SET expectations = :e"),
            {"e": "e, health:city@3701, -, Person.phone, read\n"},
        )
    await migrate(engine, "downgrade", "0009")
    assert await revision_of(engine) == "0009"
    _, columns = await schema_of(engine)
    assert "expectations" not in columns["policy_version"]
    assert "expectations" not in columns["policy_proposal"]
    async with engine.connect() as connection:
        counts = [
            (await connection.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()  # noqa: S608
            for name in ("policy_version", "policy_proposal", "casbin_rule")
        ]
        ends = (
            await connection.execute(select(CasbinRule.v4).where(CasbinRule.v4.is_not(None)))
        ).all()
    assert counts == [1, 1, len(default_policy_lines()) + 1]
    [(stored_end,)] = ends
    assert isinstance(stored_end, str)
    assert datetime.fromisoformat(stored_end).tzinfo is not None

    await migrate(engine, "upgrade", "0010")
    async with engine.connect() as connection:
        admin = PolicyAdmin(connection.execute, engine)
        assert (await admin.in_force()).expectations is None
    assert datetime.fromisoformat(stored_end).astimezone(UTC) > now_utc()
