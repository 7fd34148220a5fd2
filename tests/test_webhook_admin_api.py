"""Webhook administration through GraphQL (issue 18 item 2): a department's system
administrator registers, rotates and disables its endpoints, inside its own department and
jurisdiction; the operations team lists deliveries and replays dead letters (死信).

The rules, each with its boundary:

- a county system administrator registers for its own county (level and region default to its
  own); the city above it, a sibling county or another department: FORBIDDEN, nothing written;
- security, audit administrators and plain clerks: FORBIDDEN, nothing written; a policy line
  granting ``Webhook.manage`` lets a clerk in;
- the secret is returned once, at registration and at rotation, and verifies a signature made
  by ``gateway.crypto``'s webhook signer with the secret the gateway stored; no field, alias or
  fragment reads a sealed secret;
- rotation keeps the previous secret signing for ``keepPreviousHours`` (0: none);
- disabling cancels the endpoint's pending deliveries;
- deliveries are listed in scope only: another county's never, not even as a count;
- replaying a DEAD delivery sets it PENDING, attempts 0, due now; another county's dead letters
  are not replayed;
- bad input (URL, event kind, hours) is a Chinese BAD_USER_INPUT and writes nothing;
- every mutation, refused ones included, is in the administrators' trail.

One gateway per backend for the module (SQLite and PostgreSQL, ``exchange_gateway``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from graphql import parse, validate
from sqlalchemy import func, select, update

from gateway.crypto import verify_webhook, webhook_headers
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.principal import canonical_subject
from gateway.http.console import console_directory
from gateway.storage import deliveries as stored
from gateway.storage.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from gateway.storage.outbox import Event, EventKind, emit_rows
from schema._schema import build_schema
from tests.exchange_support import (  # noqa: F401
    exchange_gateway,
    extra_policy,
    leaks,
    only_error,
)
from tests.harness import Harness

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ENDPOINT_FIELDS = """
  id name department level region url algorithm eventKinds secretId previousSecretId
  previousSecretExpiresAt deadAfterHours maxInFlight consecutiveFailures pausedUntil enabled
  createdAt createdBy disabledAt disabledBy
"""
REGISTER = f"""
mutation Register($input: RegisterWebhookEndpointInput!) {{
  registerWebhookEndpoint(input: $input) {{ secret endpoint {{ {ENDPOINT_FIELDS} }} }}
}}
"""
ROTATE = f"""
mutation Rotate($id: ID!, $keep: Int!) {{
  rotateWebhookSecret(id: $id, keepPreviousHours: $keep) {{
    secret endpoint {{ {ENDPOINT_FIELDS} }}
  }}
}}
"""
DISABLE = f"""
mutation Disable($id: ID!) {{ disableWebhookEndpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }}
"""
ENDPOINTS = f"query {{ webhookEndpoints {{ {ENDPOINT_FIELDS} }} }}"
DELIVERIES = """
query Deliveries($status: DeliveryStatus, $endpointId: ID, $first: Int! = 50, $after: String) {
  webhookDeliveries(status: $status, endpointId: $endpointId, first: $first, after: $after) {
    edges { cursor node {
      id endpointId endpointName eventId eventKind occurredAt status attempts createdAt
      nextAttemptAt lastStatus lastError deliveredAt deadAt cancelReason
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
REPLAY = """
mutation Replay($ids: [ID!], $endpointId: ID, $since: DateTime) {
  replayDeliveries(ids: $ids, endpointId: $endpointId, since: $since)
}
"""
PREFIX = "whadmin-"


# ---------------------------------------------------------------------------- helpers
def _counties(gateway: Harness) -> tuple[str, str]:
    """The busiest county and a sibling in the same city (made up when the seed has none)."""
    county = gateway.busiest_county()
    siblings = sorted(
        {p.region_code[:6] for p in gateway.persons if p.region_code[:4] == county[:4]} - {county}
    )
    return county, siblings[0] if siblings else county[:4] + ("98" if county[4:] != "98" else "97")


def _admin(gateway: Harness, dept: str, level: str, region: str, role: str = "system_admin") -> str:
    return gateway.token(
        dept, level, region, roles=[role], subject=f"{PREFIX}{dept}-{level}-{region}-{role}"
    )


def _input(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "民政救助系统",
        "url": "https://civil.example.gov.cn/relief/webhook",
        "algorithm": "HMAC_SHA256",
        "eventKinds": ["TASK_PUSHED", "WARNING_RAISED"],
    }
    base.update(changes)
    return base


async def _register(gateway: Harness, token: str, **changes: Any) -> dict[str, Any]:
    body = await gateway.query(token, REGISTER, {"input": _input(**changes)})
    assert "errors" not in body, body
    issued: dict[str, Any] = body["data"]["registerWebhookEndpoint"]
    return issued


async def _endpoint_rows(gateway: Harness) -> int:
    async with gateway.runtime.engine.connect() as connection:
        return int(
            (
                await connection.execute(select(func.count()).select_from(WebhookEndpoint))
            ).scalar_one()
        )


async def _stored_secrets(gateway: Harness, endpoint_id: str) -> tuple[str, str | None]:
    """The endpoint's current and previous secret as the gateway stored them (opened)."""
    key = uuid.UUID(endpoint_id)
    async with gateway.runtime.engine.connect() as connection:
        row = (
            await connection.execute(
                select(WebhookEndpoint.secret_ct, WebhookEndpoint.previous_secret_ct).where(
                    WebhookEndpoint.id == key
                )
            )
        ).one()
    cipher = gateway.runtime.vault.cipher
    previous = (
        stored.open_secret(cipher, row.previous_secret_ct, key) if row.previous_secret_ct else None
    )
    return stored.open_secret(cipher, row.secret_ct, key), previous


async def _sealed(gateway: Harness) -> list[str]:
    """Every sealed secret in the database, as a response might spell it (base64, hex)."""
    async with gateway.runtime.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(WebhookEndpoint.secret_ct, WebhookEndpoint.previous_secret_ct)
            )
        ).all()
    found = []
    for row in rows:
        for sealed in row:
            if sealed:
                found += [base64.b64encode(sealed).decode()[:24], sealed.hex()[:24]]
    return found


async def _deliveries_of(
    gateway: Harness, endpoint_id: str, county: str, count: int, *, dead: bool
) -> list[int]:
    """``count`` task.pushed events in ``county`` for the endpoint's department, fanned out
    through the outbox as the loop writes them; ``dead``: then failed past the dead-letter time
    (what the delivery worker does to a receiver that stays down). The endpoint is paused so no
    worker touches them while the test looks."""
    key = uuid.UUID(endpoint_id)
    async with gateway.runtime.engine.begin() as connection:
        department = (
            await connection.execute(
                select(WebhookEndpoint.department).where(WebhookEndpoint.id == key)
            )
        ).scalar_one()
        await connection.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == key)
            .values(paused_until=now_utc() + timedelta(days=1))
        )
        await emit_rows(
            connection,
            [
                Event(
                    kind=EventKind.TASK_PUSHED,
                    audience=department,
                    county_code=county,
                    subject_type="task",
                    subject_id=str(uuid.uuid4()),
                    dedupe_key=f"{PREFIX}{uuid.uuid4()}",
                )
                for _ in range(count)
            ],
        )
        ids = [
            int(i)
            for i in (
                await connection.execute(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.endpoint_id == key, WebhookDelivery.status == "PENDING")
                    .order_by(WebhookDelivery.id)
                )
            ).scalars()
        ][-count:]
        assert len(ids) == count
        if dead:
            now = now_utc()
            await connection.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(
                    status="DEAD",
                    attempts=17,
                    first_attempt_at=now - timedelta(days=8, hours=1),
                    last_attempt_at=now - timedelta(minutes=5),
                    last_status=503,
                    last_error="HTTP 503 服务不可用",
                    dead_at=now - timedelta(minutes=5),
                )
            )
    return ids


async def _statuses(gateway: Harness, ids: list[int]) -> dict[int, Any]:
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(*WebhookDelivery.__table__.c).where(WebhookDelivery.id.in_(ids))
        )
        return {int(row.id): row for row in rows}


async def _trail(gateway: Harness, subject: str) -> list[tuple[str, dict[str, str]]]:
    """(operation, released fields) of the subject's audit entries, oldest first."""
    async with gateway.runtime.engine.connect() as connection:
        rows = await connection.execute(
            select(AuditEntry.operation, AuditEntry.fields)
            .where(AuditEntry.subject == canonical_subject(subject))
            .order_by(AuditEntry.id)
        )
        return [(row.operation, json.loads(row.fields)) for row in rows]


def _error(body: dict[str, Any]) -> tuple[str, str]:
    _, code, text = only_error(body)
    assert CHINESE.search(text), text
    return code, text


@pytest.fixture(autouse=True)
async def _disable_ours(exchange_gateway: Harness) -> Any:  # noqa: F811
    """Each test leaves no enabled endpoint behind: the module's next test starts clean."""
    yield
    async with exchange_gateway.runtime.engine.begin() as connection:
        await connection.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.disabled_at.is_(None))
            .values(disabled_at=now_utc(), disabled_by="test")
        )


# ---------------------------------------------------------------------------- registration
async def test_county_admin_registers_for_its_own_department_and_county(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    before = time.time()
    issued = await _register(gateway, admin, algorithm="HMAC_SHA256", deadAfterHours=48)
    endpoint = issued["endpoint"]
    assert endpoint["department"] == "CIVIL_AFFAIRS"
    assert (endpoint["level"], endpoint["region"]) == ("COUNTY", county)
    assert endpoint["eventKinds"] == ["TASK_PUSHED", "WARNING_RAISED"]
    assert endpoint["algorithm"] == "HMAC_SHA256"
    assert endpoint["deadAfterHours"] == 48
    assert endpoint["enabled"] is True
    assert endpoint["createdBy"] == f"{PREFIX}civil_affairs-county-{county}-system_admin"
    secret = issued["secret"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret

    # The secret shown is the one the gateway signs with: a delivery signed by gateway.crypto
    # with the stored secret verifies with the shown one, and by plain HMAC-SHA-256 (what an
    # integrator's Standard Webhooks library computes).
    signing, previous = await _stored_secrets(gateway, endpoint["id"])
    assert previous is None
    body = b'{"type":"task.pushed","id":"evt_1"}'
    stamp = int(before)
    headers = webhook_headers("evt_1", stamp, body, [signing], algorithm="HMAC-SHA256")
    assert verify_webhook(body, headers, secret, algorithm="HMAC-SHA256", now=stamp) == "evt_1"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"evt_1.{stamp}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()

    # Never again: the listing holds no secret, sealed or clear.
    listed = await gateway.query(admin, ENDPOINTS)
    assert "errors" not in listed, listed
    assert listed["data"]["webhookEndpoints"][0]["id"] == endpoint["id"]  # newest first
    assert leaks(listed, secret, signing, *await _sealed(gateway)) == []


async def test_sm3_endpoint_signs_with_hmac_sm3(exchange_gateway: Harness) -> None:  # noqa: F811
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "rural_revitalization", "county", county)
    issued = await _register(gateway, admin, algorithm="HMAC_SM3", eventKinds=["TASK_PUSHED"])
    assert issued["endpoint"]["algorithm"] == "HMAC_SM3"
    signing, _ = await _stored_secrets(gateway, issued["endpoint"]["id"])
    body = b"{}"
    stamp = int(time.time())
    headers = webhook_headers("evt_2", stamp, body, [signing], algorithm="HMAC-SM3")
    assert headers["webhook-signature"].startswith("v1sm3,")
    assert verify_webhook(body, headers, issued["secret"], algorithm="HMAC-SM3", now=stamp)


async def test_city_admin_registers_for_a_county_inside_its_city(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "medical_insurance", "city", county[:4])
    own = await _register(gateway, admin)
    assert (own["endpoint"]["level"], own["endpoint"]["region"]) == ("CITY", county[:4])
    below = await _register(gateway, admin, regionPrefix=county)
    assert (below["endpoint"]["level"], below["endpoint"]["region"]) == ("COUNTY", county)
    assert below["endpoint"]["department"] == "MEDICAL_INSURANCE"


@pytest.mark.parametrize(
    "region",
    [
        pytest.param("city", id="the-city-above"),
        pytest.param("sibling", id="another-county"),
        pytest.param("province", id="the-province"),
    ],
)
async def test_county_admin_cannot_register_outside_its_county(
    exchange_gateway: Harness,  # noqa: F811
    region: str,
) -> None:
    gateway = exchange_gateway
    county, sibling = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    prefix = {"city": county[:4], "sibling": sibling, "province": county[:2]}[region]
    before = await _endpoint_rows(gateway)
    body = await gateway.query(admin, REGISTER, {"input": _input(regionPrefix=prefix)})
    code, text = _error(body)
    assert code == "FORBIDDEN"
    assert county in text
    assert body["data"] is None
    assert await _endpoint_rows(gateway) == before
    # The administrator's attempt is in its trail.
    trail = await _trail(gateway, f"{PREFIX}civil_affairs-county-{county}-system_admin")
    assert trail[-1] == ("registerWebhookEndpoint", {"Webhook.change": "read"})


async def test_another_department_cannot_be_named(exchange_gateway: Harness) -> None:  # noqa: F811
    """The endpoint's department is the administrator's own: the input has no field to name
    another, and trying is refused before anything runs."""
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    before = await _endpoint_rows(gateway)
    body = await gateway.query(admin, REGISTER, {"input": _input(department="MEDICAL_INSURANCE")})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert CHINESE.search(body["errors"][0]["message"])
    assert await _endpoint_rows(gateway) == before


@pytest.mark.parametrize(
    ("dept", "level", "role"),
    [
        pytest.param("civil_affairs", "county", None, id="a-clerk"),
        pytest.param("civil_affairs", "county", "security_admin", id="security-admin"),
        pytest.param("civil_affairs", "county", "audit_admin", id="audit-admin"),
        pytest.param("big_data", "province", "security_admin", id="province-security-admin"),
    ],
)
async def test_only_system_administrators(
    exchange_gateway: Harness,  # noqa: F811
    dept: str,
    level: str,
    role: str | None,
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    region = county if level == "county" else county[:2]
    subject = f"{PREFIX}refused-{dept}-{role}"
    token = gateway.token(dept, level, region, roles=[role] if role else [], subject=subject)
    ours = await _register(gateway, _admin(gateway, "civil_affairs", "county", county))
    before = await _endpoint_rows(gateway)
    attempts = [
        (REGISTER, {"input": _input()}),
        (ROTATE, {"id": ours["endpoint"]["id"], "keep": 0}),
        (DISABLE, {"id": ours["endpoint"]["id"]}),
        (REPLAY, {"endpointId": ours["endpoint"]["id"]}),
        (ENDPOINTS, {}),
        (DELIVERIES, {}),
    ]
    for document, variables in attempts:
        body = await gateway.query(token, document, variables)
        code, text = _error(body)
        assert code == "FORBIDDEN", document
        assert "系统管理员" in text
        assert leaks(body, ours["secret"]) == []
    assert await _endpoint_rows(gateway) == before
    signing, previous = await _stored_secrets(gateway, ours["endpoint"]["id"])
    assert (signing, previous) == (ours["secret"], None)  # not rotated
    listed = await gateway.query(_admin(gateway, "civil_affairs", "county", county), ENDPOINTS)
    assert listed["data"]["webhookEndpoints"][0]["enabled"] is True  # not disabled
    # A refusal of the duty reads and records nothing (as for the other duties).
    assert await _trail(gateway, subject) == []


async def test_a_simulation_cannot_borrow_the_role(exchange_gateway: Harness) -> None:  # noqa: F811
    """A security administrator simulating a caller with the system_admin role reads no
    endpoint through it."""
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    await _register(gateway, _admin(gateway, "civil_affairs", "county", county))
    officer = gateway.token(
        "big_data", "province", county[:2], roles=["security_admin"], subject=f"{PREFIX}officer"
    )
    proposed = await gateway.query(
        officer,
        """mutation P($add: [PolicyLineInput!]!) {
             proposePolicyChange(title: "模拟", add: $add) { id } }""",
        {
            "add": [
                {"subject": f"health@{county}:county", "object": "Person.phone", "action": "MASK"}
            ]
        },
    )
    proposal_id = proposed["data"]["proposePolicyChange"]["id"]
    subject = {
        "department": "CIVIL_AFFAIRS",
        "level": "COUNTY",
        "region": county,
        "roles": ["system_admin"],
    }
    for query in ("{ webhookEndpoints { id url } }", "{ webhookDeliveries { edges { cursor } } }"):
        body = await gateway.query(
            officer,
            """query S($id: ID!, $subject: SimulatedSubject!, $query: String!) {
                 simulateAccess(proposalId: $id, subject: $subject, query: $query) {
                   current { data errors { code } } proposed { data errors { code } } } }""",
            {"id": proposal_id, "subject": subject, "query": query},
        )
        assert "errors" not in body, body
        for side in ("current", "proposed"):
            outcome = body["data"]["simulateAccess"][side]
            assert [error["code"] for error in outcome["errors"]] == ["FORBIDDEN"], outcome
            assert "example.gov.cn" not in json.dumps(outcome)


async def test_a_policy_grant_lets_a_department_system_in(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """Beside the role, a policy line granting Webhook.manage; still its own department and
    jurisdiction only."""
    gateway = exchange_gateway
    county, sibling = _counties(gateway)
    clerk = gateway.token("health", "county", county, subject=f"{PREFIX}health-system")
    refused = await gateway.query(clerk, REGISTER, {"input": _input()})
    assert _error(refused)[0] == "FORBIDDEN"
    async with extra_policy(gateway, [(f"health@{county}:county", "Webhook.manage", "call")]):
        issued = await _register(gateway, clerk, eventKinds=["ANOMALY_OPENED"])
        assert issued["endpoint"]["department"] == "HEALTH"
        assert issued["endpoint"]["region"] == county
        elsewhere = await gateway.query(clerk, REGISTER, {"input": _input(regionPrefix=sibling)})
        assert _error(elsewhere)[0] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        pytest.param({"url": "http://civil.example.gov.cn/hook"}, "https", id="plain-http"),
        pytest.param({"url": "ftp://civil.example.gov.cn/hook"}, "https", id="ftp"),
        pytest.param({"url": "不是地址"}, "推送地址", id="not-a-url"),
        pytest.param({"url": "https://user:pw@civil.example.gov.cn/"}, "密码", id="credentials"),
        pytest.param({"url": ""}, "推送地址", id="empty-url"),
        pytest.param({"eventKinds": ["TASK_PUSHED", "PERSON.READ"]}, "", id="unknown-kind"),
        pytest.param({"eventKinds": []}, "事件类型", id="no-kind"),
        pytest.param({"deadAfterHours": -1}, "deadAfterHours", id="negative-hours"),
        pytest.param({"deadAfterHours": 0}, "deadAfterHours", id="zero-hours"),
        pytest.param({"deadAfterHours": 100_000}, "deadAfterHours", id="too-many-hours"),
        pytest.param({"name": "  "}, "名称", id="blank-name"),
        pytest.param({"regionPrefix": "37x1"}, "regionPrefix", id="bad-region"),
        pytest.param({"algorithm": "MD5"}, "", id="unknown-algorithm"),
    ],
)
async def test_bad_input_is_refused_in_chinese_and_writes_nothing(
    exchange_gateway: Harness,  # noqa: F811
    changes: dict[str, Any],
    said: str,
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    before = await _endpoint_rows(gateway)
    body = await gateway.query(admin, REGISTER, {"input": _input(**changes)})
    code, text = _error(body)
    assert code == "BAD_USER_INPUT", body
    assert said in text
    assert "Traceback" not in text
    assert "SELECT" not in text
    assert await _endpoint_rows(gateway) == before


async def test_plain_http_to_loopback_only_outside_production(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """An integrator testing a receiver on its own machine: http://127.0.0.1 is accepted by a
    development gateway (the schema knows it is not production), never by a production one."""
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    issued = await _register(gateway, admin, url="http://127.0.0.1:8765/hook")
    assert issued["endpoint"]["url"] == "http://127.0.0.1:8765/hook"
    assert getattr(gateway.runtime.schema, "production", None) is False
    assert getattr(build_schema(production=True), "production", None) is True


# ---------------------------------------------------------------------------- rotation, disabling
async def test_rotation_returns_a_new_secret_once_and_keeps_the_old_one_signing(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    issued = await _register(gateway, admin)
    first = issued["secret"]
    endpoint_id = issued["endpoint"]["id"]

    body = await gateway.query(admin, ROTATE, {"id": endpoint_id, "keep": 24})
    assert "errors" not in body, body
    rotated = body["data"]["rotateWebhookSecret"]
    second = rotated["secret"]
    assert second != first
    assert second.startswith("whsec_")
    assert rotated["endpoint"]["previousSecretId"] == issued["endpoint"]["secretId"]
    assert rotated["endpoint"]["secretId"] != issued["endpoint"]["secretId"]
    expires = rotated["endpoint"]["previousSecretExpiresAt"]
    assert expires is not None
    left = as_utc(datetime.fromisoformat(expires)) - now_utc()
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)
    assert await _stored_secrets(gateway, endpoint_id) == (second, first)

    # After a leak: 0 hours, the old secret stops at once.
    body = await gateway.query(admin, ROTATE, {"id": endpoint_id, "keep": 0})
    third = body["data"]["rotateWebhookSecret"]
    assert third["endpoint"]["previousSecretId"] is None
    assert third["endpoint"]["previousSecretExpiresAt"] is None
    assert await _stored_secrets(gateway, endpoint_id) == (third["secret"], None)
    listed = await gateway.query(admin, ENDPOINTS)
    assert leaks(listed, first, second, third["secret"]) == []

    for keep in (-1, 10_000):
        refused = await gateway.query(admin, ROTATE, {"id": endpoint_id, "keep": keep})
        code, text = _error(refused)
        assert (code, "keepPreviousHours" in text) == ("BAD_USER_INPUT", True)
    assert await _stored_secrets(gateway, endpoint_id) == (third["secret"], None)


async def test_disabling_cancels_pending_deliveries(exchange_gateway: Harness) -> None:  # noqa: F811
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    issued = await _register(gateway, admin)
    endpoint_id = issued["endpoint"]["id"]
    pending = await _deliveries_of(gateway, endpoint_id, county, 3, dead=False)
    dead = await _deliveries_of(gateway, endpoint_id, county, 1, dead=True)

    body = await gateway.query(admin, DISABLE, {"id": endpoint_id})
    assert "errors" not in body, body
    disabled = body["data"]["disableWebhookEndpoint"]
    assert disabled["enabled"] is False
    assert disabled["disabledBy"] == f"{PREFIX}civil_affairs-county-{county}-system_admin"
    rows = await _statuses(gateway, pending + dead)
    assert {rows[i].status for i in pending} == {"CANCELLED"}
    assert {rows[i].cancel_reason for i in pending} == {"endpoint_disabled"}
    assert rows[dead[0]].status == "DEAD"  # evidence stays as it was
    listed = await gateway.query(admin, DELIVERIES, {"endpointId": endpoint_id})
    statuses = {
        n["node"]["id"]: n["node"]["status"] for n in listed["data"]["webhookDeliveries"]["edges"]
    }
    assert {statuses[str(i)] for i in pending} == {"CANCELLED"}

    # Disabled: no rotation, no replay.
    refused = await gateway.query(admin, ROTATE, {"id": endpoint_id, "keep": 0})
    assert _error(refused)[0] == "BAD_USER_INPUT"
    refused = await gateway.query(admin, REPLAY, {"endpointId": endpoint_id})
    assert _error(refused)[0] == "BAD_USER_INPUT"


# ---------------------------------------------------------------------------- scope
async def test_deliveries_and_endpoints_are_listed_in_scope_only(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, sibling = _counties(gateway)
    ours_admin = _admin(gateway, "civil_affairs", "county", county)
    theirs_admin = _admin(gateway, "civil_affairs", "county", sibling)
    ours = await _register(gateway, ours_admin, name="本县系统")
    theirs = await _register(gateway, theirs_admin, name="邻县系统")
    ours_ids = await _deliveries_of(gateway, ours["endpoint"]["id"], county, 2, dead=True)
    theirs_ids = await _deliveries_of(gateway, theirs["endpoint"]["id"], sibling, 3, dead=True)

    async def listed(token: str, **variables: Any) -> tuple[set[str], set[str], dict[str, Any]]:
        """(endpoint ids, delivery ids, the deliveries' body); every endpoint and delivery
        listed lies in the caller's jurisdiction."""
        endpoints = await gateway.query(token, ENDPOINTS)
        deliveries = await gateway.query(token, DELIVERIES, variables)
        assert "errors" not in deliveries, deliveries
        seen = {e["id"]: e for e in endpoints["data"]["webhookEndpoints"]}
        nodes = [e["node"] for e in deliveries["data"]["webhookDeliveries"]["edges"]]
        assert {node["endpointId"] for node in nodes} <= set(seen)
        return set(seen), {node["id"] for node in nodes}, deliveries

    endpoint_ids, delivery_ids, body = await listed(ours_admin, status="DEAD")
    assert ours["endpoint"]["id"] in endpoint_ids
    assert theirs["endpoint"]["id"] not in endpoint_ids
    assert {str(i) for i in ours_ids} <= delivery_ids
    assert not delivery_ids & {str(i) for i in theirs_ids}
    assert "邻县系统" not in json.dumps(body, ensure_ascii=False)
    listed_endpoints = (await gateway.query(ours_admin, ENDPOINTS))["data"]["webhookEndpoints"]
    assert all(e["region"].startswith(county) for e in listed_endpoints)
    assert all(e["department"] == "CIVIL_AFFAIRS" for e in listed_endpoints)
    node = next(
        e["node"]
        for e in body["data"]["webhookDeliveries"]["edges"]
        if e["node"]["id"] == str(ours_ids[0])
    )
    assert node["endpointName"] == "本县系统"
    assert node["eventKind"] == "TASK_PUSHED"
    assert node["eventId"].startswith("evt_")
    assert (node["status"], node["attempts"], node["lastStatus"]) == ("DEAD", 17, 503)
    assert node["lastError"] == "HTTP 503 服务不可用"
    assert node["deadAt"] is not None
    assert node["nextAttemptAt"] is None

    # Asking for the other county's endpoint by id shows nothing of it: no row, no page after.
    _, delivery_ids, body = await listed(ours_admin, endpointId=theirs["endpoint"]["id"])
    assert delivery_ids == set()
    assert body["data"]["webhookDeliveries"]["pageInfo"] == {
        "hasNextPage": False,
        "endCursor": None,
    }

    # Another department in the same county sees none of them.
    other = _admin(gateway, "medical_insurance", "county", county)
    endpoint_ids, delivery_ids, _ = await listed(other)
    assert not endpoint_ids & {ours["endpoint"]["id"], theirs["endpoint"]["id"]}
    assert not delivery_ids & {str(i) for i in ours_ids + theirs_ids}

    # The city's administrator of the department sees both counties, a page at a time.
    city = _admin(gateway, "civil_affairs", "city", county[:4])
    endpoint_ids, delivery_ids, _ = await listed(city, status="DEAD")
    assert {ours["endpoint"]["id"], theirs["endpoint"]["id"]} <= endpoint_ids
    assert {str(i) for i in ours_ids + theirs_ids} <= delivery_ids
    seen: list[str] = []
    after = None
    while True:
        page = await gateway.query(city, DELIVERIES, {"status": "DEAD", "first": 2, "after": after})
        connection = page["data"]["webhookDeliveries"]
        seen += [e["node"]["id"] for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) == delivery_ids
    assert seen == sorted(seen, key=int, reverse=True)  # newest first

    # The platform's operations team (大数据局 system administrator) sees every department.
    operations = _admin(gateway, "big_data", "province", county[:2])
    endpoint_ids, delivery_ids, _ = await listed(operations, status="DEAD")
    assert {ours["endpoint"]["id"], theirs["endpoint"]["id"]} <= endpoint_ids
    assert {str(i) for i in ours_ids + theirs_ids} <= delivery_ids

    # The other county's endpoint is "not found" for rotation and disabling.
    for document, variables in [
        (ROTATE, {"id": theirs["endpoint"]["id"], "keep": 0}),
        (DISABLE, {"id": theirs["endpoint"]["id"]}),
        (REPLAY, {"endpointId": theirs["endpoint"]["id"]}),
    ]:
        code, text = _error(await gateway.query(ours_admin, document, variables))
        assert (code, "未找到" in text) == ("BAD_USER_INPUT", True)
    assert await _stored_secrets(gateway, theirs["endpoint"]["id"]) == (theirs["secret"], None)

    bad = await gateway.query(ours_admin, DELIVERIES, {"after": "bm90LWEtY3Vyc29y"})
    assert _error(bad)[0] == "BAD_USER_INPUT"


# ---------------------------------------------------------------------------- replay
async def test_replay_sets_dead_deliveries_pending(exchange_gateway: Harness) -> None:  # noqa: F811
    gateway = exchange_gateway
    county, sibling = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    issued = await _register(gateway, admin)
    endpoint_id = issued["endpoint"]["id"]
    dead = await _deliveries_of(gateway, endpoint_id, county, 3, dead=True)
    pending = await _deliveries_of(gateway, endpoint_id, county, 1, dead=False)
    theirs = await _register(gateway, _admin(gateway, "civil_affairs", "county", sibling))
    theirs_dead = await _deliveries_of(gateway, theirs["endpoint"]["id"], sibling, 1, dead=True)

    # One by id (and the other county's id in the same request is not replayed).
    body = await gateway.query(admin, REPLAY, {"ids": [str(dead[0]), str(theirs_dead[0])]})
    assert body == {"data": {"replayDeliveries": 1}}, body
    rows = await _statuses(gateway, dead + pending + theirs_dead)
    replayed = rows[dead[0]]
    assert replayed.status == "PENDING"
    assert (replayed.attempts, replayed.first_attempt_at, replayed.dead_at) == (0, None, None)
    assert as_utc(replayed.next_attempt_at) <= now_utc()
    assert rows[theirs_dead[0]].status == "DEAD"
    assert {rows[i].status for i in dead[1:]} == {"DEAD"}

    # The listing shows the change.
    listed = await gateway.query(admin, DELIVERIES, {"status": "DEAD", "endpointId": endpoint_id})
    assert {e["node"]["id"] for e in listed["data"]["webhookDeliveries"]["edges"]} == {
        str(i) for i in dead[1:]
    }

    # The rest of the endpoint's dead letters at once; a pending one is left as it is.
    body = await gateway.query(admin, REPLAY, {"endpointId": endpoint_id})
    assert body == {"data": {"replayDeliveries": 2}}, body
    rows = await _statuses(gateway, dead + pending)
    assert {rows[i].status for i in dead + pending} == {"PENDING"}
    again = await gateway.query(admin, REPLAY, {"endpointId": endpoint_id})
    assert again == {"data": {"replayDeliveries": 0}}

    # Bad requests.
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "ids"),
        ({"ids": ["abc"]}, "推送编号"),
        ({"since": "2026-11-20T00:00:00+08:00"}, "since"),
        ({"endpointId": "not-a-uuid"}, "编号"),
        ({"endpointId": endpoint_id, "since": "2026-11-20T00:00:00"}, "时区"),
    ]
    for variables, said in bad:
        code, text = _error(await gateway.query(admin, REPLAY, variables))
        assert (code, said in text) == ("BAD_USER_INPUT", True), (variables, text)

    trail = await _trail(gateway, f"{PREFIX}civil_affairs-county-{county}-system_admin")
    assert ("replayDeliveries", {"Webhook.change": "read"}) in trail


async def test_replay_since_takes_only_later_dead_letters(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    endpoint_id = (await _register(gateway, admin))["endpoint"]["id"]
    old = await _deliveries_of(gateway, endpoint_id, county, 1, dead=True)
    recent = await _deliveries_of(gateway, endpoint_id, county, 1, dead=True)
    async with gateway.runtime.engine.begin() as connection:
        await connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == old[0])
            .values(dead_at=now_utc() - timedelta(days=3))
        )
    since = (now_utc() - timedelta(days=1)).isoformat()
    body = await gateway.query(admin, REPLAY, {"endpointId": endpoint_id, "since": since})
    assert body == {"data": {"replayDeliveries": 1}}, body
    rows = await _statuses(gateway, old + recent)
    assert (rows[old[0]].status, rows[recent[0]].status) == ("DEAD", "PENDING")


# ---------------------------------------------------------------------------- adversarial
@pytest.mark.parametrize(
    "document",
    [
        pytest.param("{ webhookEndpoints { id secretCt } }", id="field"),
        pytest.param("{ webhookEndpoints { id s: secret_ct } }", id="alias"),
        pytest.param("{ webhookEndpoints { id secret } }", id="secret-on-listing"),
        pytest.param("{ webhookEndpoints { id previousSecretCt } }", id="previous"),
        pytest.param(
            "{ webhookEndpoints { ...F } } fragment F on WebhookEndpoint { id s: secretCt }",
            id="fragment",
        ),
        pytest.param(
            "{ webhookEndpoints { ... on WebhookSecretIssued { secret } } }", id="inline-fragment"
        ),
        pytest.param(
            "{ webhookEndpoints { ...F } } fragment F on WebhookSecretIssued { secret }",
            id="fragment-on-the-issued-type",
        ),
        pytest.param(
            "{ webhookDeliveries { edges { node { id secret: lastError secretCt } } } }",
            id="delivery",
        ),
    ],
)
async def test_no_query_reads_a_secret(
    exchange_gateway: Harness,  # noqa: F811
    document: str,
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    admin = _admin(gateway, "civil_affairs", "county", county)
    issued = await _register(gateway, admin)
    await _deliveries_of(gateway, issued["endpoint"]["id"], county, 1, dead=True)
    body = await gateway.query(admin, document)
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    signing, _ = await _stored_secrets(gateway, issued["endpoint"]["id"])
    assert leaks(body, issued["secret"], signing, *await _sealed(gateway)) == []
    # With everything a listing may ask, aliased twice: no secret either.
    listing = await gateway.query(
        admin, f"{{ a: webhookEndpoints {{ {ENDPOINT_FIELDS} }} b: webhookEndpoints {{ id }} }}"
    )
    assert "errors" not in listing
    assert leaks(listing, issued["secret"], signing, *await _sealed(gateway)) == []
    assert "whsec_" not in json.dumps(listing)


async def test_mutations_are_in_the_administrators_trail(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gateway = exchange_gateway
    county, _ = _counties(gateway)
    subject = f"{PREFIX}trail-{county}"
    admin = gateway.token(
        "civil_affairs", "county", county, roles=["system_admin"], subject=subject
    )
    issued = await _register(gateway, admin)
    endpoint_id = issued["endpoint"]["id"]
    await gateway.query(admin, ROTATE, {"id": endpoint_id, "keep": 1})
    await gateway.query(admin, REPLAY, {"endpointId": endpoint_id})
    await gateway.query(admin, DISABLE, {"id": endpoint_id})
    await gateway.query(admin, ENDPOINTS)
    trail = await _trail(gateway, subject)
    assert [operation for operation, _ in trail] == [
        "registerWebhookEndpoint",
        "rotateWebhookSecret",
        "replayDeliveries",
        "disableWebhookEndpoint",
    ]
    assert all(fields == {"Webhook.change": "read"} for _, fields in trail)
    async with gateway.runtime.engine.connect() as connection:
        texts = (
            await connection.execute(
                select(AuditEntry.fields, AuditEntry.operation).where(
                    AuditEntry.subject == canonical_subject(subject)
                )
            )
        ).all()
    assert issued["secret"] not in json.dumps([tuple(t) for t in texts], ensure_ascii=False)


# ---------------------------------------------------------------------------- the console
def test_the_console_documents_are_valid_against_the_schema() -> None:
    """deliveries.js's GraphQL documents (the 推送投递 screen) validate against the schema."""
    source = (console_directory() / "deliveries.js").read_text(encoding="utf-8")
    documents: dict[str, str] = {}
    for name, body in re.findall(r"^const (\w+) = `([^`]*)`;", source, re.M):
        documents[name] = re.sub(r"\$\{(\w+)\}", lambda m: documents[m.group(1)], body)
    operations = {n: d for n, d in documents.items() if re.match(r"\s*(query|mutation)\b", d)}
    assert set(operations) == {"ENDPOINTS", "DELIVERIES", "REGISTER", "ROTATE", "DISABLE", "REPLAY"}
    schema = build_schema()._schema
    problems = {n: [e.message for e in validate(schema, parse(d))] for n, d in operations.items()}
    assert problems == {name: [] for name in operations}
