"""The workbench updates without a reload (issue 18 item 3), in a real headless Chromium, on
SQLite and on a throw-away PostgreSQL.

A real gateway (``relief-gateway serve`` on a seeded Shanxi population) and Debian's chromium
through Playwright, as ``tests/test_workbench_browser.py`` runs them (its helpers are reused).
The workbench subscribes to ``worklistEvents`` over Server-Sent Events with fetch (the token
goes in the Authorization header, which EventSource cannot send). Then, while the pages stay
open (a marker set in the page before must still be there after: no reload):

- medical insurance pushes a settlement over the 20,000-yuan line and the monthly warning run
  (``relief-gateway warn run``, another process) pushes the warning: the civil-affairs clerk's
  open 待办 list shows the new task, with the notice 新推送 1 条;
- while the clerk types an answer, a second push only shows the notice (the list is not
  redrawn under their hands, the typed note stays) until they refresh;
- the medical-insurance clerk's list (the hub sees every department's tasks) shows it; when
  civil affairs answers it elsewhere (over the API), medical insurance, which raised the
  warning, hears the answer and the task leaves its open list.

Screenshots: ``$RELIEF_TEST_ARTIFACTS`` (default ``tests/artifacts/workbench/``), ``live-*``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService
from tests.pgcluster import ThrowawayCluster
from tests.serve_support import serve_process
from tests.test_workbench_browser import (
    ARTIFACTS,
    BURDEN,
    SUBMIT,
    TIMEOUT_MS,
    WARNING_MONTH,
    Person,
    _chromium,
    _people,
    _run,
    graphql,
)

pytestmark = pytest.mark.slow

ANSWER = """
mutation LiveTestAnswer($id: ID!) {
  answerTask(taskId: $id, answer: NOT_ELIGIBLE, note: "经核查不符合认定条件") { task { id state } }
}"""

OPEN_TASK = """
query LiveTestTask { tasks(first: 50) { edges { node { id person { idNumber } } } } }
"""


@dataclass
class Served:
    backend: str
    base: str
    county: str
    env: dict[str, str]
    tokens: dict[str, str]
    warned: Person
    later: Person  # pushed while the clerk is typing an answer


@pytest.fixture(scope="module")
def served(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`relief-gateway serve` on seeded data; nobody over the line yet."""
    _chromium()
    data_dir = tmp_path_factory.mktemp(f"workbench-live-{backend}") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    env["RELIEF_PROVINCE"] = "shanxi"
    database_url = None
    if backend == "postgres":
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        database_url = cluster.create_database("relief_workbench_live")
        env["RELIEF_DATABASE_URL"] = database_url
    _run(["seed", "--persons", "200", "--province", "shanxi"], env)
    with serve_process(env, data_dir) as base:
        settings = load_settings(data_dir=data_dir, database_url=database_url)
        minted = TokenService.from_file(
            settings.token_key_path, settings.token_issuer, create=False
        )
        hub = minted.mint(subject="hub", dept="medical_insurance", level="province", region="14")
        people = _people(base, hub)
        county, (warned, later) = _ordinary(people)
        tokens = {
            department: minted.mint(
                subject=f"{department}-live", dept=department, level="county", region=county
            )
            for department in ("civil_affairs", "medical_insurance")
        }
        yield Served(backend, base, county, env, tokens, warned, later)
    if database_url is not None:
        request.getfixturevalue("postgres_cluster").drop_database("relief_workbench_live")


def _ordinary(people: list[Person]) -> tuple[str, tuple[Person, Person]]:
    """Two ordinary insured residents of one county with no cost burden yet."""
    ordinary = sorted(
        (p for p in people if not p.categories and not p.burden), key=lambda p: p.id_number
    )
    if not ordinary:
        pytest.fail("the seeded data has no ordinary resident without costs")
    counties: dict[str, int] = {}
    for person in people:
        counties[person.region] = counties.get(person.region, 0) + 1
    ordinary.sort(key=lambda p: -counties[p.region])
    county = ordinary[0].region
    here = [p for p in ordinary if p.region == county]
    if len(here) < 2:
        pytest.fail("the seeded data has no county with two ordinary residents without costs")
    return county, (here[0], here[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Clerk:
    def __init__(self, browser: Browser, served: Served, department: str) -> None:
        self.served = served
        self.context = browser.new_context(
            viewport={"width": 1440, "height": 960}, locale="zh-CN", timezone_id="Asia/Shanghai"
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"页面脚本错误: {error}"))
        self.page.on(
            "console",
            lambda msg: self.problems.append(msg.text) if msg.type == "error" else None,
        )
        self.page.goto(f"{served.base}/workbench")
        self.page.get_by_label("访问令牌").fill(served.tokens[department])
        self.page.get_by_role("button", name="登录").click()
        expect(self.page.locator("#whoami-text")).to_contain_text(served.county)
        # subscribed: the live status in the header
        expect(self.page.locator("#live-status")).to_have_text("● 实时更新")
        # A reload would drop this (the test's proof that nothing reloaded).
        self.page.evaluate("window.__notReloaded = true")

    def not_reloaded(self) -> None:
        assert self.page.evaluate("window.__notReloaded === true")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.served.backend}-live-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        problems = self.problems
        self.context.close()
        assert problems == [], problems


def _push_over_the_line(served: Served, person: Person) -> None:
    settlement = {
        "name": person.name,
        "id_number": person.id_number,
        "settled_on": f"{WARNING_MONTH}-12",
        "visit_type": "住院",
        "total_cost": "61000.00",
        "basic_paid": "30000.00",
        "critical_paid": "6000.00",
        "assistance_paid": "0.00",
        "personal_burden": BURDEN,
        "settlement_id": f"LIVE-{person.id_number[-6:]}",
    }
    pushed = graphql(
        served.base,
        served.tokens["medical_insurance"],
        SUBMIT,
        {"feed": "settlements", "records": [settlement]},
    )["submitRecords"]
    assert pushed["counts"]["rowsAccepted"] == 1, pushed


def test_a_pushed_task_appears_and_an_answer_elsewhere_updates_the_hub(
    served: Served, browser: Browser
) -> None:
    person = served.warned
    civil = Clerk(browser, served, "civil_affairs")
    hub: Clerk | None = None
    try:
        expect(civil.page.locator("#tasks")).not_to_contain_text(person.id_number)
        civil.shot("01-before-the-run")

        # The monthly run, in another process, pushes the warning to civil affairs.
        _push_over_the_line(served, person)
        _run(["warn", "run", "--month", WARNING_MONTH], served.env)

        card = civil.page.locator("article.task").filter(has_text=person.id_number)
        expect(card).to_have_count(1)
        expect(card).to_contain_text("高额费用预警核查")
        expect(card).to_contain_text("SHANXI_OTHERS_20000")
        notice = civil.page.locator("#live-notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("新推送 1 条")
        civil.not_reloaded()
        civil.shot("02-task-pushed")
        civil.page.get_by_role("button", name="知道了").click()
        expect(notice).to_be_hidden()

        # The clerk starts an answer; a new push does not redraw the list under their hands.
        card.get_by_label("答复结果").select_option("NOT_ELIGIBLE")
        card.get_by_label("答复说明").fill("正在核实")
        _push_over_the_line(served, served.later)
        _run(["warn", "run", "--month", WARNING_MONTH], served.env)
        expect(notice).to_contain_text("新推送 1 条")
        expect(notice).to_contain_text("您正在填写答复")
        expect(card.get_by_label("答复说明")).to_have_value("正在核实")
        expect(civil.page.locator("#tasks")).not_to_contain_text(served.later.id_number)
        civil.shot("02b-push-while-typing")
        civil.page.locator("#tasks-refresh").click()  # the clerk's own choice
        expect(civil.page.locator("#tasks")).to_contain_text(served.later.id_number)
        civil.not_reloaded()

        # The hub sees every department's tasks: civil affairs' one is in its open list.
        hub = Clerk(browser, served, "medical_insurance")
        hub_card = hub.page.locator("article.task").filter(has_text=person.id_number)
        expect(hub_card.first).to_be_visible()
        hub.shot("03-hub-sees-the-push")

        # Civil affairs answers elsewhere (its own system, over the API): the hub hears it.
        listed = graphql(served.base, served.tokens["civil_affairs"], OPEN_TASK)["tasks"]
        task_id = next(
            edge["node"]["id"]
            for edge in listed["edges"]
            if (edge["node"]["person"] or {}).get("idNumber") == person.id_number
        )
        civil_card_on_hub = hub.page.locator(f'article.task[data-task-id="{task_id}"]')
        expect(civil_card_on_hub).to_have_count(1)
        graphql(served.base, served.tokens["civil_affairs"], ANSWER, {"id": task_id})
        expect(civil_card_on_hub).to_have_count(0)  # left the open (未办结) list
        hub.not_reloaded()
        hub.shot("04-hub-after-the-answer")
    finally:
        civil.close()
        if hub is not None:
            hub.close()
