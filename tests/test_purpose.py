"""Purpose-bound access (issue 5 item 3): a data-sharing list may grant a department its reads
only for listed purposes. A read of person data without an allowed X-Purpose is refused as a
whole (HTTP 403, FORBIDDEN, the allowed purposes named, nothing returned, nothing audited); the
allowed purpose is served; ``me`` always is; departments whose lines say ``*`` are unaffected;
a simulation under such a proposal predicts the refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert, select, update

from authz.store import lines_json
from gateway.domain.clock import now_utc
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.exchange_support import (
    exchange_gateway,  # noqa: F401 - the module's own gateway (fixture)
    last_audit_id,
)
from tests.harness import Harness


@pytest.fixture
def gateway(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


RESTRICTED = "enrollment_verification"  # 参保核查
PERSON_ACTIONS = ("read", "mask", "rows")
PERSONS = "query People { persons(first: 3) { totalCount edges { node { name } } } }"


async def _install(gateway: Harness, note: str) -> None:
    async with gateway.runtime.sessions() as session:
        rows = await session.execute(
            select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3).order_by(
                CasbinRule.id
            )
        )
        lines = [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
        session.add(
            PolicyVersion(
                created_at=now_utc(), created_by="test", note=note, lines=lines_json(lines)
            )
        )
        await session.commit()
        await gateway.runtime.authorizer.load(session)


@asynccontextmanager
async def purpose_bound(
    gateway: Harness, department: str, purposes: Iterable[str] = (RESTRICTED,)
) -> AsyncIterator[None]:
    """For the block, the department's person-data lines (rows, read, mask) hold only for
    ``purposes`` instead of ``*`` (a new version, as tests.exchange_support.extra_policy)."""
    wanted = list(purposes)
    subject = f"{department}:*"
    person_lines = (
        (CasbinRule.v0 == subject) & CasbinRule.v2.in_(PERSON_ACTIONS) & (CasbinRule.v3 == "*")
    )
    async with gateway.runtime.sessions() as session:
        rows = list(
            await session.execute(
                select(CasbinRule.v0, CasbinRule.v1, CasbinRule.v2).where(person_lines)
            )
        )
        await session.execute(update(CasbinRule).where(person_lines).values(v3=wanted[0]))
        for purpose in wanted[1:]:
            await session.execute(
                insert(CasbinRule),
                [{"ptype": "p", "v0": s, "v1": o, "v2": a, "v3": purpose} for s, o, a in rows],
            )
        await session.commit()
    await _install(gateway, f"test: {department} limited to {', '.join(wanted)}")
    try:
        yield
    finally:
        async with gateway.runtime.sessions() as session:
            for purpose in wanted[1:]:
                await session.execute(
                    delete(CasbinRule).where(
                        (CasbinRule.v0 == subject) & (CasbinRule.v3 == purpose)
                    )
                )
            await session.execute(
                update(CasbinRule)
                .where((CasbinRule.v0 == subject) & (CasbinRule.v3 == wanted[0]))
                .values(v3="*")
            )
            await session.commit()
        await _install(gateway, f"test: {department} unlimited again")


async def post(
    gateway: Harness, token: str, query: str, purpose: str | None
) -> tuple[httpx.Response, dict[str, Any]]:
    response = await gateway.post(token, query, purpose=purpose)
    body: dict[str, Any] = response.json()
    return response, body


async def test_a_read_without_an_allowed_purpose_is_refused(gateway: Harness) -> None:
    county = gateway.busiest_county()
    health = gateway.token("health", "county", county, subject="health-clerk")
    async with purpose_bound(gateway, "health"):
        for declared in (None, "relief_recognition"):
            before = await last_audit_id(gateway)
            response, body = await post(gateway, health, PERSONS, declared)
            assert response.status_code == 403, body
            assert "data" not in body
            [error] = body["errors"]
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert error["message"].startswith(
                "本部门读取人员数据须声明用途: 参保核查 (enrollment_verification)"
            )
            assert ("未声明" if declared is None else "救助对象认定 (relief_recognition)") in error[
                "message"
            ]
            # Nothing was read: no audit entry (the refusal is a denial, not a read).
            assert await last_audit_id(gateway) == before

        # The allowed purpose is served and audited with it.
        before = await last_audit_id(gateway)
        response, body = await post(gateway, health, PERSONS, RESTRICTED)
        assert (response.status_code, body.get("errors")) == (200, None), body
        assert body["data"]["persons"]["totalCount"] > 0
        assert await last_audit_id(gateway) == before + 1


async def test_the_refusal_cannot_be_dodged(gateway: Harness) -> None:
    health = gateway.token("health", "county", gateway.busiest_county())
    hidden = (
        "query { x: persons { totalCount } }",
        "query { ...F } fragment F on Query { persons { totalCount } }",
        'query { ... on Query { person(idNumber: "110101199003070016") { name } } }',
        "query { me { subject } persons { totalCount } }",
    )
    async with purpose_bound(gateway, "health"):
        for query in hidden:
            response, body = await post(gateway, health, query, None)
            assert response.status_code == 403, (query, body)
        # GET: the same refusal.
        response = await gateway.client.get(
            "/graphql",
            params={"query": PERSONS},
            headers={"Authorization": f"Bearer {health}"},
        )
        assert response.status_code == 403


async def test_me_and_unrestricted_departments_are_served(gateway: Harness) -> None:
    county = gateway.busiest_county()
    health = gateway.token("health", "county", county)
    medical = gateway.token("medical_insurance", "county", county)
    async with purpose_bound(gateway, "health"):
        # me: a client discovers that it reads nothing without the purpose …
        response, body = await post(
            gateway, health, "{ me { purpose fieldAccess { field } } }", None
        )
        assert response.status_code == 200, body
        assert body["data"]["me"]["fieldAccess"] == []
        # … and what it reads with it.
        response, body = await post(
            gateway, health, "{ me { purpose fieldAccess { field } } }", RESTRICTED
        )
        assert {"field": "Person.name"} in body["data"]["me"]["fieldAccess"]
        # Pushing its own data is governed by "call" lines, not by purposes.
        response, body = await post(gateway, health, "{ batches { totalCount } }", None)
        assert (response.status_code, body.get("errors")) == (200, None), body
        # Medical insurance's lines say "*": any purpose, or none.
        for declared in (None, "relief_recognition"):
            response, body = await post(gateway, medical, PERSONS, declared)
            assert (response.status_code, body.get("errors")) == (200, None), body


async def test_every_allowed_purpose_is_named(gateway: Harness) -> None:
    health = gateway.token("health", "county", gateway.busiest_county())
    async with purpose_bound(gateway, "health", (RESTRICTED, "relief_recognition")):
        response, body = await post(gateway, health, PERSONS, "supervision")
        assert response.status_code == 403
        message = body["errors"][0]["message"]
        assert "参保核查 (enrollment_verification)" in message
        assert "救助对象认定 (relief_recognition)" in message
        assert "监督管理 (supervision)" in message
        for allowed in (RESTRICTED, "relief_recognition"):
            response, body = await post(gateway, health, PERSONS, allowed)
            assert response.status_code == 200, body


SIMULATE = """
query Simulate($id: ID!, $subject: SimulatedSubject!, $query: String!) {
  simulateAccess(proposalId: $id, subject: $subject, query: $query) {
    current { data errors { path code message } }
    proposed { data errors { path code message } }
    identical
  }
}
"""


async def test_a_simulation_predicts_the_refusal(gateway: Harness) -> None:
    county = gateway.busiest_county()
    officer = gateway.token(
        "big_data", "province", county[:2], roles=["security_officer"], subject="officer-a"
    )
    rows = {"subject": "health:*", "object": "Person(all)", "action": "ROWS"}
    body = await gateway.query(
        officer,
        """mutation P($add: [PolicyLineInput!]!, $remove: [PolicyLineInput!]!) {
             proposePolicyChange(title: "卫健仅在参保核查时读取", add: $add, remove: $remove) {
               id } }""",
        {"add": [{**rows, "purpose": RESTRICTED}], "remove": [rows]},
    )
    proposal = body["data"]["proposePolicyChange"]["id"]
    subject = {"department": "HEALTH", "level": "COUNTY", "region": county}
    body = await gateway.query(
        officer, SIMULATE, {"id": proposal, "subject": subject, "query": PERSONS}
    )
    simulation = body["data"]["simulateAccess"]
    assert simulation["current"]["errors"] == []
    assert simulation["proposed"]["data"] is None
    [refusal] = simulation["proposed"]["errors"]
    assert (refusal["path"], refusal["code"]) == ([], "FORBIDDEN")
    assert "enrollment_verification" in refusal["message"]
    assert simulation["identical"] is False

    body = await gateway.query(
        officer,
        SIMULATE,
        {"id": proposal, "subject": {**subject, "purpose": RESTRICTED}, "query": PERSONS},
    )
    assert body["data"]["simulateAccess"]["identical"] is True
