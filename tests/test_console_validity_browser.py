"""The console's 期限 and policy expectations (issue 16 item 5), in Debian's chromium: a grant
ending in 10 days shows in the 即将到期 list and in its cell with its end; a grant made with a
期限 date in the grid reaches the proposal as the end of that day in Beijing time; a proposal
that breaks an expectation shows the failure in review and 批准 stays disabled; no English
words are left on the page. The server and the officers' tokens are those of
``tests/test_console_browser.py`` (one gateway for the module, SQLite)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from playwright.sync_api import expect, sync_playwright

from gateway.domain.clock import CHINA_TZ, now_utc
from tests.test_console_browser import (  # noqa: F401
    ARTIFACTS,
    Gateway,
    Session,
    _chromium,
    _post,
    gateway,
)

PROPOSE = """
mutation($add: [PolicyLineInput!]! = [], $expectations: String) {
  proposePolicyChange(title: "浏览器测试", add: $add, expectations: $expectations) { id }
}"""
APPROVE = 'mutation($id: ID!) { approvePolicyChange(id: $id, note: "同意") { resultingVersion } }'
PROPOSALS = """
{ policyProposals(status: PENDING, first: 20) { edges { node { id title added { validTo } } } } }
"""
EXPECTATION = "e, health:city@3701, *, Person.phone, deny"


EXPIRING = "query Expiring { policies(expiringWithinDays: 30) { lines { subject object } } }"


def _graphql(served: Gateway, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{served.base}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


def test_validity_and_expectations_in_the_console(gateway: Gateway) -> None:  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    end = (now_utc() + timedelta(days=10)).replace(microsecond=0)
    grant = {"subject": "health@3701:city", "object": "Person.address", "action": "READ"}
    proposal = _graphql(
        gateway,
        gateway.officer_a,
        PROPOSE,
        add=[{**grant, "validTo": end.isoformat()}],
        expectations=EXPECTATION + "\n",
    )["data"]["proposePolicyChange"]["id"]
    _graphql(gateway, gateway.officer_b, APPROVE, id=proposal)
    breaking = _graphql(
        gateway,
        gateway.officer_a,
        PROPOSE,
        add=[{"subject": "health@3701:city", "object": "Person.phone", "action": "READ"}],
    )["data"]["proposePolicyChange"]["id"]

    # The serving process enforces the approved version within its refresh interval; under a
    # loaded machine the page could otherwise load the lines just before (and not reload).
    for _ in range(100):
        lines = _graphql(gateway, gateway.officer_b, EXPIRING)["data"]["policies"]["lines"]
        if any(line["object"] == "Person.address" for line in lines):
            break
        time.sleep(0.2)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            # ---- officer B: the 即将到期 list, the line's 期限 in its cell
            b = Session(browser, gateway.base)
            b.sign_in(gateway.officer_b)
            page = b.page
            expiring = page.locator("#validity-panel ul.expiring li")
            expect(expiring).to_have_count(1)
            expect(expiring).to_contain_text("health@3701:city, Person.address, read, *")
            expect(expiring).to_contain_text("即将到期")
            expect(page.locator("#validity-panel")).to_contain_text("即将到期 (30 天内)")
            b.shot("v1-expiring-list")

            # ---- review: the breaking proposal shows its failure; 批准 disabled
            page.get_by_role("tab", name="审批").click()
            card = page.locator(f'article.proposal[data-proposal-id="{breaking}"]')
            expect(card).to_contain_text("策略期望检查: 不成立")
            expect(card.locator("ul.expectation-failures li")).to_contain_text(EXPECTATION)
            expect(card.get_by_role("button", name="批准")).to_be_disabled()
            expect(card).to_contain_text("不满足策略期望")
            b.shot("v2-review-expectation-failure")
            card.get_by_label("审批意见 (驳回时必填)").fill("违反策略期望")
            card.get_by_role("button", name="驳回").click()
            expect(card).to_be_hidden()

            # ---- a grant with a 期限 date from the grid
            page.get_by_role("tab", name="策略表").click()
            cell = page.locator(
                '#grid button[data-subject="health:county"][data-field="Person.address"]'
            )
            cell.click()
            panel = page.locator("#cell-panel")
            panel.get_by_label("期限 (可选", exact=False).fill("2030-06-30")
            panel.get_by_role("button", name="授予 可读").click()
            added = page.locator("#draft-list li.added")
            expect(added).to_contain_text("health:county, Person.address, read, *, 2030-06-30")
            expect(added).to_contain_text("期限至 2030-06-30 24:00 (北京时间)")
            page.get_by_label("申请标题").fill("卫健县级读取地址至 2030 年 6 月底")
            b.shot("v3-draft-with-validity")
            page.get_by_role("button", name="提交申请").click()
            expect(page.locator("#draft-message")).to_contain_text("已提交申请 #")
            b.close()
        finally:
            browser.close()

    pending = _post(gateway.base, gateway.officer_a, PROPOSALS, "")["data"]["policyProposals"]
    titles = {e["node"]["title"]: e["node"]["added"] for e in pending["edges"]}
    [added_line] = titles["卫健县级读取地址至 2030 年 6 月底"]
    assert datetime.fromisoformat(added_line["validTo"]).astimezone(CHINA_TZ).isoformat() == (
        "2030-07-01T00:00:00+08:00"
    )
