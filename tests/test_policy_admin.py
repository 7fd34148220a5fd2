"""The policy administration service without HTTP (``authz.admin``, ``authz.effects``): an
officer's jurisdiction, the policy as text, field effects of a change, and approvals racing on
one base version (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import difflib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from authz.admin import (
    APPROVED,
    Officer,
    PolicyAdmin,
    VersionRecord,
    apply_change,
    text_change,
)
from authz.decision import Effect
from authz.effects import EffectChange, effect_changes, grid_cells, grid_rows
from authz.policy_text import policy_text
from authz.store import PolicyLine, default_policy_lines, parse_policy_text
from gateway.domain.clock import now_utc
from gateway.domain.departments import Department, Level
from gateway.domain.errors import BadUserInput, Forbidden
from gateway.domain.principal import Principal
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.exchange_support import exchange_gateway  # noqa: F401
from tests.harness import Harness

DEFAULTS = default_policy_lines()


# ============================================================================ jurisdiction
@pytest.mark.parametrize(
    ("level", "region", "subject", "covered"),
    [
        ("province", "37", "civil_affairs:*", True),
        ("province", "37", "role:security_officer", True),
        ("province", "37", "health@1401:county", True),  # the deployment is the province
        ("city", "3701", "civil_affairs@3701:county", True),
        ("city", "3701", "civil_affairs@370102:*", True),
        ("city", "3701", "civil_affairs@3702:county", False),
        ("city", "3701", "civil_affairs@37:county", False),
        ("city", "3701", "civil_affairs:county", False),
        ("city", "3701", "role:security_officer", False),
        ("county", "370102", "civil_affairs@370102:county", True),
        ("county", "370102", "civil_affairs@370103:county", False),
        ("county", "370102", "civil_affairs@3701:county", False),
        ("county", "370102", "civil_affairs:*", False),
    ],
)
def test_an_officer_covers_lines_of_its_own_region_only(
    level: str, region: str, subject: str, covered: bool
) -> None:
    officer = Officer("o", Level(level), region)
    assert officer.covers((subject, "Person.phone", "read", "*")) is covered


def test_only_a_security_officer_is_an_officer() -> None:
    clerk = Principal("clerk", Department.MEDICAL_INSURANCE, Level.PROVINCE, "37")
    with pytest.raises(Forbidden, match="仅安全管理员"):
        Officer.of(clerk)
    chief = Principal(
        "chief", Department.BIG_DATA, Level.CITY, "3701", frozenset({"security_officer"})
    )
    assert Officer.of(chief) == Officer("chief", Level.CITY, "3701")


# ============================================================================ policy as text
def _record(lines: list[PolicyLine]) -> VersionRecord:
    return VersionRecord(7, now_utc(), "alice", "说明\n两行", "bob", None, tuple(lines))


def test_the_text_reads_back_as_the_same_lines() -> None:
    text = policy_text(_record(DEFAULTS))
    assert Counter(parse_policy_text(text)) == Counter(DEFAULTS)
    header = [line for line in text.splitlines() if line.startswith("#")][:4]
    assert "版本 7" in header[0]
    assert "批准人: bob" in header[2]
    assert header[3] == "# 说明: 说明 两行"  # one line, whatever the note holds


def test_the_text_does_not_depend_on_the_order_lines_were_added() -> None:
    shuffled = list(DEFAULTS)
    random.Random(5).shuffle(shuffled)
    assert policy_text(_record(shuffled)) == policy_text(_record(DEFAULTS))


def test_a_one_line_change_is_a_one_line_diff() -> None:
    """An approved change appends its line to casbin_rule; the text keeps it in its place."""
    old = ("civil_affairs:*", "Person.phone", "mask", "*")
    new = ("civil_affairs:*", "Person.phone", "read", "*")
    before = policy_text(_record(DEFAULTS))
    after = policy_text(_record(list(apply_change(DEFAULTS, [new], [old]))))
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == ["-p, " + ", ".join(old), "+p, " + ", ".join(new)]


def test_text_change_is_the_difference_whatever_the_order() -> None:
    extra = ("health@3701:county", "Person.phone", "read", "*")
    gone = DEFAULTS[3]
    wanted = [line for line in reversed(DEFAULTS) if line != gone] + [extra]
    assert text_change(DEFAULTS, wanted) == ([extra], [gone])
    assert text_change(DEFAULTS, list(reversed(DEFAULTS))) == ([], [])


# ============================================================================ effects
def test_grid_rows_name_regions_and_roles_the_lines_use() -> None:
    lines: list[PolicyLine] = [
        ("civil_affairs@3701:*", "Person.phone", "read", "*"),
        ("health@370102:county", "Person.phone", "read", "*"),
        ("role:security_officer", "Statistics.read", "call", "*"),
    ]
    names = [row.name for row in grid_rows(lines)]
    assert len(names) == 24 + 2 + 1 + 1
    assert names[:3] == ["medical_insurance:province", "medical_insurance:city",
                         "medical_insurance:county"]  # fmt: skip
    # a province caller is never inside 3701; a city never inside a county
    assert names[24:] == [
        "civil_affairs@3701:city",
        "civil_affairs@3701:county",
        "health@370102:county",
        "role:security_officer",
    ]


def test_a_region_limited_line_changes_only_its_region() -> None:
    added: PolicyLine = ("civil_affairs@3701:county", "Person.phone", "read", "*")
    changes = effect_changes(DEFAULTS, [*DEFAULTS, added])
    assert changes == [
        EffectChange("civil_affairs@3701:county", "Person.phone", Effect.MASK, Effect.READ)
    ]


def test_a_removed_relation_denies_its_child_fields_too() -> None:
    gone: PolicyLine = ("health:*", "Person.enrollments", "read", "*")
    changes = effect_changes(DEFAULTS, [line for line in DEFAULTS if line != gone])
    fields = {(c.subject, c.cell) for c in changes}
    for level in ("province", "city", "county"):
        assert (f"health:{level}", "Person.enrollments") in fields
        assert (f"health:{level}", "Enrollment.status") in fields  # reachable only through it
    assert all(c.after is Effect.DENY for c in changes)
    assert {c.subject.partition(":")[0] for c in changes} == {"health"}


def test_a_purpose_limited_line_counts_for_its_purpose() -> None:
    added: PolicyLine = ("health:county", "Person.phone", "read", "relief_recognition")
    assert effect_changes(DEFAULTS, [*DEFAULTS, added]) == [
        EffectChange("health:county", "Person.phone", Effect.DENY, Effect.READ)
    ]


def test_row_scopes_and_operations_are_cells() -> None:
    scope: PolicyLine = ("big_data:province", "Person(category: ORPHAN)", "rows", "*")
    call: PolicyLine = ("big_data:province", "Loop.coverage", "call", "*")
    after = [*DEFAULTS, scope, call]
    assert "Person(category: ORPHAN)" in grid_cells(DEFAULTS, after)
    assert effect_changes(DEFAULTS, after) == [
        EffectChange("big_data:province", "Loop.coverage", Effect.DENY, Effect.READ),
        EffectChange("big_data:province", "Person(category: ORPHAN)", Effect.DENY, Effect.READ),
    ]


# ============================================================================ the service
@pytest.fixture
async def admin(exchange_gateway: Harness) -> AsyncIterator[PolicyAdmin]:  # noqa: F811
    engine = exchange_gateway.runtime.engine
    async with engine.connect() as connection:

        async def execute(stmt: Any) -> Any:
            return await connection.execute(stmt)

        yield PolicyAdmin(execute, engine)


PROVINCE_A = Officer("alice", Level.PROVINCE, "37")
PROVINCE_B = Officer("bob", Level.PROVINCE, "37")
PROVINCE_C = Officer("carol", Level.PROVINCE, "37")


async def test_two_approvals_never_build_on_the_same_base(
    admin: PolicyAdmin,
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """Two officers approve two proposals of the same base at the same moment: one installs a
    new version, the other is refused as stale; casbin_rule and the snapshot agree."""
    first = await admin.propose(
        PROVINCE_A, "一", None, add=[("health@3710:county", "Person.phone", "mask", "*")], remove=[]
    )
    second = await admin.propose(
        PROVINCE_A, "二", None, add=[("health@3711:county", "Person.phone", "mask", "*")], remove=[]
    )
    base = first.base_version
    assert second.base_version == base

    results = await asyncio.gather(
        admin.approve(PROVINCE_B, first.id, None),
        admin.approve(PROVINCE_C, second.id, None),
        return_exceptions=True,
    )

    approved = [r for r in results if not isinstance(r, BaseException)]
    refusals = [r for r in results if isinstance(r, BaseException)]
    assert len(approved) == 1
    assert approved[0].status == APPROVED
    assert approved[0].resulting_version == base + 1
    assert len(refusals) == 1
    assert isinstance(refusals[0], BadUserInput)
    assert f"该申请基于版本 {base}, 当前为版本 {base + 1}" in refusals[0].message

    engine = exchange_gateway.runtime.engine
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.max(PolicyVersion.id)))).scalar() == base + 1
        rules = await connection.execute(
            select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3)
        )
        enforced = Counter((r[0], r[1], r[2], r[3]) for r in rules)
        snapshot = (
            await connection.execute(
                select(PolicyVersion.lines).where(PolicyVersion.id == base + 1)
            )
        ).scalar_one()
    assert snapshot is not None
    assert Counter(tuple(line) for line in json.loads(snapshot)) == enforced


async def test_a_refused_approval_changes_nothing(
    admin: PolicyAdmin,
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    proposal = await admin.propose(
        PROVINCE_A, "三", None, add=[("health@3712:county", "Person.phone", "mask", "*")], remove=[]
    )
    before = await admin.in_force()
    with pytest.raises(Forbidden, match="四眼原则"):
        await admin.approve(PROVINCE_A, proposal.id, None)
    city = Officer("dan", Level.CITY, "3701")
    with pytest.raises(Forbidden, match="超出辖区"):
        await admin.approve(city, proposal.id, None)
    after = await admin.in_force()
    assert (after.version, after.lines) == (before.version, before.lines)
    pending = await admin.proposal(proposal.id)
    assert pending is not None
    assert pending.status == "PENDING"
    assert pending.decided_by is None


async def test_approval_calls_the_invalidation_hook(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    engine = exchange_gateway.runtime.engine
    called: list[str] = []
    async with engine.connect() as connection:
        admin = PolicyAdmin(connection.execute, engine, on_change=lambda: called.append("x"))
        proposal = await admin.propose(
            PROVINCE_A,
            "四",
            None,
            add=[("health@3713:county", "Person.name", "read", "*")],
            remove=[],
        )
        assert called == []
        await admin.approve(PROVINCE_B, proposal.id, "同意")
    assert called == ["x"]


async def test_an_approval_is_announced_on_postgresql(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """``NOTIFY relief_policy, '<version>'`` at commit: what other processes reload on. SQLite
    has one process, which polls: there is no listener, and announcing is a no-op."""
    if exchange_gateway.backend != "postgres":
        from gateway.storage.policy_listener import announce_policy_version, listener_dsn

        url = exchange_gateway.runtime.settings.resolved_database_url
        assert listener_dsn(url) is None
        async with exchange_gateway.runtime.engine.begin() as connection:
            await announce_policy_version(connection, 99)  # writes nothing, raises nothing
        return
    import asyncpg  # type: ignore[import-untyped]

    from gateway.storage.policy_listener import listener_dsn

    dsn = listener_dsn(exchange_gateway.runtime.settings.resolved_database_url)
    assert dsn is not None
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("relief_policy", lambda *args: heard.put_nowait(args[3]))
        engine = exchange_gateway.runtime.engine
        async with engine.connect() as connection:
            admin = PolicyAdmin(connection.execute, engine)
            proposal = await admin.propose(
                PROVINCE_A,
                "五",
                None,
                add=[("health@3714:county", "Person.name", "read", "*")],
                remove=[],
            )
            approved = await admin.approve(PROVINCE_B, proposal.id, None)
        assert await asyncio.wait_for(heard.get(), timeout=10) == str(approved.resulting_version)
    finally:
        await listener.close()
