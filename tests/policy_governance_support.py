"""Helpers shared by the tests of expiring lines, policy expectations and near-miss
explanations (issue 16 items 5 and 8): officers' tokens, proposals with a validity end or a new
set of expectations, a second gateway runtime on the same database, the CLI in this process."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx

from authz.store import Authorizer
from gateway import cli
from gateway.http.app import create_app
from gateway.runtime.parts import Runtime
from tests.exchange_support import only_error
from tests.harness import Harness

OFFICER = ["security_officer"]
LINE_FIELDS = "subject object action purpose region editable validTo expired"
FAILURE_FIELDS = "line expectation purpose actual expected message"
PROPOSAL_FIELDS = f"""
  id status baseVersion resultingVersion canApprove expectations expectationsBefore
  added {{ {LINE_FIELDS} }} removed {{ {LINE_FIELDS} }}
  expectationFailures {{ {FAILURE_FIELDS} }}
"""
PROPOSE = f"""
mutation Propose($title: String!, $add: [PolicyLineInput!]! = [],
                 $remove: [PolicyLineInput!]! = [], $expectations: String) {{
  proposePolicyChange(title: $title, add: $add, remove: $remove, expectations: $expectations) {{
    {PROPOSAL_FIELDS}
  }}
}}
"""
APPROVE = f"""
mutation Approve($id: ID!) {{ approvePolicyChange(id: $id, note: "同意") {{ {PROPOSAL_FIELDS} }} }}
"""
REJECT = """
mutation Reject($id: ID!) { rejectPolicyChange(id: $id, note: "撤回") { id status } }
"""
PROPOSAL = f"query Proposal($id: ID!) {{ policyProposal(id: $id) {{ {PROPOSAL_FIELDS} }} }}"
POLICIES = f"""
query Policies($days: Int) {{
  policies(expiringWithinDays: $days) {{
    version expectations lines {{ {LINE_FIELDS} }} expectationFailures {{ {FAILURE_FIELDS} }}
  }}
}}
"""


def officer(gateway: Harness, name: str, level: str = "province", region: str = "37") -> str:
    return gateway.token(
        "big_data", level, region, roles=OFFICER, subject=name, ttl_seconds=7 * 24 * 3600
    )


def line(
    subject: str,
    obj: str,
    action: str = "read",
    purpose: str = "*",
    valid_to: str | None = None,
) -> dict[str, Any]:
    given: dict[str, Any] = {
        "subject": subject,
        "object": obj,
        "action": action.upper(),
        "purpose": purpose,
    }
    if valid_to is not None:
        given["validTo"] = valid_to
    return given


async def ok(gateway: Harness, token: str, document: str, **variables: Any) -> dict[str, Any]:
    body = await gateway.query(token, document, variables)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def refused(gateway: Harness, token: str, document: str, **variables: Any) -> tuple[str, str]:
    body = await gateway.query(token, document, variables)
    _, code, message = only_error(body)
    return code, message


async def propose(gateway: Harness, proposer: str, **variables: Any) -> dict[str, Any]:
    variables.setdefault("title", "测试")
    data = await ok(gateway, officer(gateway, proposer), PROPOSE, **variables)
    proposal: dict[str, Any] = data["proposePolicyChange"]
    return proposal


async def approve(gateway: Harness, approver: str, proposal_id: str) -> dict[str, Any]:
    data = await ok(gateway, officer(gateway, approver), APPROVE, id=proposal_id)
    approved: dict[str, Any] = data["approvePolicyChange"]
    return approved


async def install(gateway: Harness, **variables: Any) -> int:
    """Propose (officer ``setup-a``) and approve (``setup-b``); the new version."""
    proposal = await propose(gateway, "setup-a", **variables)
    return int((await approve(gateway, "setup-b", proposal["id"]))["resultingVersion"])


async def policies(gateway: Harness, days: int | None = None) -> dict[str, Any]:
    data = await ok(gateway, officer(gateway, "reader"), POLICIES, days=days)
    found: dict[str, Any] = data["policies"]
    return found


def run_cli(gateway: Harness, *args: str) -> tuple[int, str, str]:
    """``relief-gateway`` in this process, against this gateway's database."""
    settings = gateway.runtime.settings
    argv = [*args, "--data-dir", str(settings.data_dir)]
    argv += ["--database-url", settings.resolved_database_url]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.asynccontextmanager
async def second_runtime(gateway: Harness) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """Another gateway process's parts on the same database and keys, polling the policy
    version only once an hour: what it learns without being told comes from its own clock."""
    runtime = Runtime.create(gateway.runtime.settings)
    runtime.authorizer = Authorizer(runtime.engine, refresh_seconds=3600)
    await runtime.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://gateway-b.test"
    )
    try:
        yield runtime, client
    finally:
        await client.aclose()
        await runtime.close()
