"""The workbench in a real headless Chromium, on SQLite and on a throw-away PostgreSQL.

A real gateway (``relief-gateway serve``, seeded by ``relief-gateway seed`` for Shanxi, whose
warning lines are plain amounts) and Debian's chromium driven through Playwright with its
executable path: Playwright never downloads a browser (scripts/test installs Debian's
``chromium`` when it is missing; without it these tests FAIL, they do not skip).

The data is made the way departments make it: medical insurance pushes a settlement
(``submitRecords``) that lifts an ordinary insured person over the 20,000-yuan line, the monthly
warning run (``relief-gateway warn run``) pushes the warning to civil affairs and rural
revitalisation, and civil affairs sends back one of its own people under another name (an
anomaly returned to it). Then, in the browser:

- a county civil-affairs officer sees the warning (rule, threshold, figure), goes to its task,
  sees the chain, answers 已认定 (因病致贫重病患者) and sees the answer and the chain update;
- a county medical-insurance clerk uploads a GBK CSV with bad rows, sees the CLI's summary,
  downloads the rejection report, and uploading the same file again changes nothing;
- a county rural-revitalisation user finds the people holding its categories and not the others;
- keyboard: every form control has a label, and Tab reaches every action of every screen.

Screenshots of every screen are kept in ``$RELIEF_TEST_ARTIFACTS`` (default
``tests/artifacts/workbench/``, gitignored), one set per backend.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway.domain.id_numbers import make_id_number
from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService
from tests.pgcluster import ThrowawayCluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
ARTIFACTS = Path(
    os.environ.get("RELIEF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts" / "workbench"
)
TIMEOUT_MS = 20_000
# expect() waits as long as an action may (its own default is 5 s): the suite's two workers,
# the served gateway and the browser share the machine's cores
expect.set_options(timeout=TIMEOUT_MS)
YEAR = 2026
WARNING_MONTH = "2026-10"
BURDEN = "25000.00"  # over Shanxi's 20,000 yuan for ordinary insured residents (002 §3)
RURAL = {"RETURNED_TO_POVERTY", "MONITORED_UNSTABLE", "MONITORED_MARGINAL"}
RURAL |= {"MONITORED_SUDDEN_HARDSHIP", "LIFTED_FROM_POVERTY"}
NOT_FOUND = "未找到（不存在或不在本辖区）"

PEOPLE = """
query WorkbenchTestPeople($after: String) {
  persons(first: 200, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node {
      idNumber name regionCode
      reliefStatuses { category sourceDepartment recognizedOn validTo }
      costBurdens(year: 2026) { personalBurden }
    } }
  }
}"""


@dataclass
class Person:
    id_number: str
    name: str
    region: str
    categories: set[str]
    civil_affairs: list[dict[str, Any]]  # its civil-affairs statuses (for a roster row)
    burden: bool


@dataclass
class Gateway:
    backend: str
    base: str
    county: str
    tokens: dict[str, str]
    warned: Person  # ordinary insured, over the line: a warning task for CA and RR
    rural: Person  # holds a rural-revitalisation category
    outsider: Person  # holds none and was never pushed to rural revitalisation
    renamed: Person  # sent back to civil affairs under another name
    upload_people: list[Person] = field(default_factory=list)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, and the workbench's browser tests need it: "
            "run scripts/test (it installs it) or apt-get install chromium"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def graphql(
    base: str, token: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}", "X-Purpose": "relief_recognition"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def _people(base: str, hub: str) -> list[Person]:
    people: list[Person] = []
    after = None
    while True:
        page = graphql(base, hub, PEOPLE, {"after": after})["persons"]
        for edge in page["edges"]:
            node = edge["node"]
            statuses = [s for s in node["reliefStatuses"] if s["validTo"] is None]
            people.append(
                Person(
                    id_number=node["idNumber"],
                    name=node["name"],
                    region=node["regionCode"][:6],
                    categories={s["category"] for s in statuses},
                    civil_affairs=[s for s in statuses if s["sourceDepartment"] == "CIVIL_AFFAIRS"],
                    burden=bool(node["costBurdens"]),
                )
            )
        if not page["pageInfo"]["hasNextPage"]:
            return people
        after = page["pageInfo"]["endCursor"]


def _choose(people: list[Person]) -> tuple[str, dict[str, Person], list[Person]]:
    """The county with the people every story needs (most people first)."""
    counties = Counter(person.region for person in people)
    for county, _ in counties.most_common():
        here = sorted((p for p in people if p.region == county), key=lambda p: p.id_number)
        ordinary = [p for p in here if not p.categories and not p.burden]
        rural = [p for p in here if p.categories & RURAL]
        civil = [p for p in here if p.civil_affairs and not p.categories & RURAL and not p.burden]
        if len(ordinary) >= 4 and rural and len(civil) >= 2:
            chosen = {"warned": ordinary[0], "rural": rural[0], "outsider": civil[0]}
            chosen["renamed"] = civil[1]
            return county, chosen, ordinary[1:3]
    pytest.fail("the seeded data has no county with the people the stories need")


@pytest.fixture(scope="module")
def gateway(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """`relief-gateway serve` on seeded data, with a warning pushed and an anomaly sent back."""
    _chromium()  # fail first, and clearly, without a browser
    data_dir = tmp_path_factory.mktemp(f"workbench-browser-{backend}") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    env["RELIEF_PROVINCE"] = "shanxi"
    database_url = None
    if backend == "postgres":
        cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
        database_url = cluster.create_database("relief_workbench")
        env["RELIEF_DATABASE_URL"] = database_url
    _run(["seed", "--persons", "400", "--province", "shanxi"], env)
    port = _free_port()
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port)],
            env=env,
            cwd=data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).json().get("ready") is True
            except (httpx.TransportError, ValueError):
                time.sleep(0.3)
        assert ready, log.read_text(encoding="utf-8", errors="replace")

        settings = load_settings(data_dir=data_dir, database_url=database_url)
        minted = TokenService.from_file(
            settings.token_key_path, settings.token_issuer, create=False
        )
        hub = minted.mint(subject="hub", dept="medical_insurance", level="province", region="14")
        county, chosen, upload_people = _choose(_people(base, hub))

        def county_token(subject: str, department: str) -> str:
            return minted.mint(subject=subject, dept=department, level="county", region=county)

        tokens = {
            "civil_affairs": county_token("民政-县级-经办", "civil_affairs"),
            "medical_insurance": county_token("医保-县级-经办", "medical_insurance"),
            "rural_revitalization": county_token("乡村振兴-县级-经办", "rural_revitalization"),
        }
        built = Gateway(backend, base, county, tokens, upload_people=upload_people, **chosen)
        _make_the_loop(built, env)
        yield built
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if database_url is not None:
            request.getfixturevalue("postgres_cluster").drop_database("relief_workbench")


SUBMIT = """
mutation WorkbenchTestSubmit($feed: String!, $records: [JSON!]!) {
  submitRecords(feed: $feed, records: $records) {
    counts { rowsAccepted rowsRejected anomaliesOpened }
    rejections { line column reason }
  }
}"""


def _make_the_loop(gateway: Gateway, env: dict[str, str]) -> None:
    """A settlement over the line → the warning run → tasks; a roster row under another name
    → an anomaly sent back to civil affairs. Each through the departments' own paths."""
    person = gateway.warned
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
        "settlement_id": f"WB-{person.id_number[-6:]}",
    }
    pushed = graphql(
        gateway.base,
        gateway.tokens["medical_insurance"],
        SUBMIT,
        {"feed": "settlements", "records": [settlement]},
    )["submitRecords"]
    assert pushed["counts"]["rowsAccepted"] == 1, pushed
    _run(["warn", "run", "--month", WARNING_MONTH], env)

    renamed = gateway.renamed
    status = renamed.civil_affairs[0]
    label = {
        "EXTREME_POVERTY": "特困人员",
        "MINIMUM_LIVING": "低保对象",
        "MINIMUM_LIVING_EDGE": "低保边缘家庭成员",
        "RIGID_EXPENDITURE": "刚性支出困难家庭成员",
        "SERIOUS_ILLNESS": "因病致贫重病患者",
        "ORPHAN": "孤儿",
        "UNSUPPORTED_CHILD": "事实无人抚养儿童",
    }[status["category"]]
    other_name = renamed.name[0] + ("小" if renamed.name[1:2] != "小" else "晓") + renamed.name[-1]
    roster_row = {
        "name": other_name,
        "id_number": renamed.id_number,
        "region_code": gateway.county,
        "category": label,
        "recognized_on": status["recognizedOn"],
    }
    sent = graphql(
        gateway.base,
        gateway.tokens["civil_affairs"],
        SUBMIT,
        {"feed": "identities", "records": [roster_row]},
    )["submitRecords"]
    assert sent["counts"]["anomaliesOpened"] >= 1, sent


# --------------------------------------------------------------------------- browser helpers


class Session:
    """One clerk's browser session (its own context: its own sessionStorage)."""

    def __init__(self, browser: Browser, gateway: Gateway, department: str) -> None:
        self.gateway = gateway
        self.context = browser.new_context(
            viewport={"width": 1440, "height": 960},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            accept_downloads=True,
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"页面脚本错误: {error}"))
        self.page.on(
            "console",
            lambda msg: self.problems.append(msg.text) if msg.type == "error" else None,
        )
        self.page.goto(f"{gateway.base}/workbench")
        self.page.get_by_label("访问令牌").fill(gateway.tokens[department])
        self.page.get_by_role("button", name="登录").click()
        expect(self.page.locator("#whoami-text")).to_contain_text(self.gateway.county)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.gateway.backend}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        problems = self.problems
        self.context.close()
        assert problems == [], problems


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _chain_lookup(page: Page, id_number: str) -> None:
    page.get_by_label("身份证号码", exact=True).fill(id_number)
    page.locator("#chain-form").get_by_role("button", name="查询").click()


# --------------------------------------------------------------------------- the stories


def test_civil_affairs_answers_a_warning_task_and_sees_the_chain_update(
    gateway: Gateway, browser: Browser
) -> None:
    person = gateway.warned
    clerk = Session(browser, gateway, "civil_affairs")
    page = clerk.page
    expect(page.locator("#whoami-text")).to_contain_text("民政 县级")
    expect(page.locator("#purpose")).to_have_value("relief_recognition")

    # ---- 待办: the task, due in 5 working days, with the working days left
    card = page.locator("article.task").filter(has_text=person.id_number)
    expect(card).to_have_count(1)
    expect(card).to_contain_text("高额费用预警核查")
    expect(card).to_contain_text("剩余")
    expect(card).to_contain_text("SHANXI_OTHERS_20000")
    expect(page.locator("#task-states")).to_contain_text("未办结")
    # the clerk of the department it is pushed to has now seen it: the read receipt (issue 18)
    expect(card.locator(".receipts")).to_contain_text("已阅")
    expect(card.locator(".receipts")).not_to_contain_text("送达")  # no system: no delivery
    clerk.shot("01-tasks")
    page.get_by_label("临期 (2 个工作日内到期)").check()
    expect(page.locator("#tasks")).not_to_contain_text(person.id_number)
    page.get_by_label("未办结").check()
    expect(card).to_have_count(1)

    # ---- 预警: rule, threshold and figure, linked to its task
    clerk.tab("预警")
    row = page.locator("#warnings-rows tr").filter(has_text=person.id_number)
    expect(row).to_contain_text("SHANXI_OTHERS_20000")
    expect(row).to_contain_text("20000.00 元")
    expect(row.locator("td.figure")).to_have_text(f"{BURDEN} 元")
    expect(row).to_contain_text("民政: 待办")
    clerk.shot("02-warnings")
    row.get_by_role("button", name="去办理").click()
    expect(page.get_by_role("tab", name="待办")).to_have_attribute("aria-selected", "true")
    expect(card).to_have_class("task card highlight")

    # ---- 救助链 before the answer: the warning and the push, no answer yet
    card.get_by_role("button", name="查看救助链").click()
    chain = page.locator("#chain")
    expect(chain).to_contain_text("高额医疗费用预警")
    expect(chain).to_contain_text("推送部门核实")
    expect(chain.locator('li[data-kind="TASK_ANSWERED"]')).to_have_count(0)
    expect(page.locator("#chain-purpose")).to_have_value("relief_recognition")
    clerk.shot("03-chain-before-answer")

    # ---- answer: recognised as 因病致贫重病患者, with a note; the answer shows at once
    clerk.tab("待办")
    card.get_by_label("答复结果").select_option("RECOGNIZED")
    card.get_by_label("认定类别").select_option("SERIOUS_ILLNESS")
    card.get_by_label("答复说明").fill("入户核实, 符合因病致贫重病患者认定条件")
    card.get_by_role("button", name="提交答复").click()
    expect(card.locator(".answer")).to_contain_text("已认定为救助对象 (因病致贫重病患者)")
    expect(card).to_contain_text("已生成救助身份")
    expect(card.locator("form")).to_have_count(0)
    expect(card.locator(".state")).to_have_text("已答复")
    clerk.shot("04-task-answered")

    # ---- the chain has the answer and the new identity
    card.get_by_role("button", name="查看救助链").click()
    expect(chain.locator('li[data-kind="TASK_ANSWERED"]')).to_have_count(1)
    recognised = chain.locator('li[data-kind="IDENTITY_RECOGNIZED"]').filter(
        has_text="因病致贫重病患者"
    )
    expect(recognised).to_have_count(1)
    expect(chain.locator(".person-card")).to_contain_text("因病致贫重病患者")
    clerk.shot("05-chain-after-answer")

    # ---- not found, in the clerk's words
    _chain_lookup(page, make_id_number(gateway.county, date(1990, 3, 7), 977))
    expect(page.locator("#chain-message")).to_have_text(NOT_FOUND)

    # ---- 异常回传: the row sent back under another name, resolved in place
    clerk.tab("异常回传")
    anomaly = page.locator("article.anomaly").filter(has_text=gateway.renamed.id_number)
    expect(anomaly).to_contain_text("姓名与已登记的不一致")
    expect(anomaly).to_contain_text("核实期限")
    expect(page.locator("#anomalies-count")).not_to_be_hidden()
    clerk.shot("06-anomalies")
    anomaly.get_by_label("处理结果").select_option("CORRECTED")
    anomaly.get_by_label("处理说明").fill("姓名录入有误, 已在本月名单中更正")
    anomaly.get_by_role("button", name="提交处理结果").click()
    resolved = page.locator("article.anomaly").filter(has_text=gateway.renamed.id_number)
    expect(resolved.locator(".answer")).to_contain_text("已更正")
    expect(resolved).to_contain_text("✓ 已处理")
    clerk.shot("07-anomaly-resolved")

    # ---- 数据报送: the push above is a batch of the department
    clerk.tab("数据报送")
    pushes = page.locator("#batches-rows tr").filter(has_text="实时推送")
    expect(pushes.first).to_contain_text("identities")
    clerk.shot("08-batches-civil-affairs")
    clerk.close()


def _gbk_file(gateway: Gateway, path: Path) -> Path:
    """An enrollment list (参保信息) as a county bureau's system exports it: GBK, Chinese
    headers; two good rows and three bad ones."""
    good = gateway.upload_people
    rows = [
        "姓名,身份证号码,参保年度,险种类型,参保状态,参保地行政区划代码,资助类别,资助金额",
        *(f"{p.name},{p.id_number},{YEAR},城乡居民,正常参保,{gateway.county},," for p in good),
        f"错号码,{good[0].id_number[:-1]}{'0' if good[0].id_number[-1] != '0' else '1'},"
        f"{YEAR},城乡居民,正常参保,{gateway.county},,",
        f"{good[1].name},{good[1].id_number},二〇二六,城乡居民,正常参保,{gateway.county},,",
        f"{good[0].name},{good[0].id_number},{YEAR},商业保险,正常参保,{gateway.county},,",
    ]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("gbk"))
    return path


BATCH_COUNT = "query WorkbenchTestBatches { batches(first: 0) { totalCount } }"


def test_medical_insurance_uploads_a_gbk_file_with_bad_rows(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    data = _gbk_file(gateway, tmp_path / "参保信息-2026年11月.csv")
    clerk = Session(browser, gateway, "medical_insurance")
    page = clerk.page
    clerk.tab("数据报送")
    feeds = page.get_by_label("数据类别", exact=True).first
    expect(feeds.locator("option")).to_have_count(2)  # 参保信息, 结算信息: its own feeds only
    feeds.select_option("enrollments")
    page.locator("#upload-file").set_input_files(str(data))
    expect(page.locator("#upload-file-name")).to_contain_text("参保信息-2026年11月.csv")
    clerk.shot("10-upload-chosen")
    page.get_by_role("button", name="上传").click()

    result = page.locator("#upload-result .summary-card")
    expect(result).to_have_attribute("data-outcome", "loaded")
    expect(result.locator("h3")).to_contain_text(re.compile(r"GB(K|18030) 编码"))  # GBK's superset
    expect(result.locator('dd[data-count="rowsTotal"]')).to_have_text("5")
    expect(result.locator('dd[data-count="rowsRejected"]')).to_have_text("3")
    expect(result.locator('dd[data-count="rowsAccepted"]')).to_have_text("2")
    expect(result.locator("table.rejections tbody tr")).to_have_count(3)
    expect(page.locator("#upload-status")).to_contain_text("完成")
    expect(page.locator("#batches-rows tr").first).to_contain_text("参保信息-2026年11月.csv")
    clerk.shot("11-upload-summary")

    with page.expect_download() as download_info:
        result.get_by_role("button", name="下载拒收报告").click()
    download = download_info.value
    assert download.suggested_filename.endswith("拒收报告.csv"), download.suggested_filename
    report = Path(download.path()).read_bytes().decode("utf-8-sig")
    assert "二〇二六" in report
    assert "商业保险" in report
    expect(page.locator("#upload-message")).to_contain_text("已下载拒收报告")

    # ---- the same file again: nothing changes, no new batch
    before = graphql(gateway.base, gateway.tokens["medical_insurance"], BATCH_COUNT)
    page.get_by_role("button", name="上传").click()
    again = page.locator('#upload-result .summary-card[data-outcome="duplicate"]')
    expect(again).to_contain_text("本次未做任何更改")
    after = graphql(gateway.base, gateway.tokens["medical_insurance"], BATCH_COUNT)
    assert after == before
    clerk.shot("12-upload-again-unchanged")

    # ---- the list's own report link works the same way
    row = page.locator("#batches-rows tr").filter(has_text="参保信息-2026年11月.csv").first
    expect(row.locator('td[data-count="rowsRejected"]')).to_have_text("3")
    with page.expect_download() as listed:
        row.get_by_role("button", name="下载拒收报告").click()
    assert listed.value.suggested_filename.endswith("拒收报告.csv")
    clerk.close()


def test_rural_revitalization_sees_only_people_holding_its_categories(
    gateway: Gateway, browser: Browser
) -> None:
    clerk = Session(browser, gateway, "rural_revitalization")
    page = clerk.page
    expect(page.locator("#whoami-text")).to_contain_text("乡村振兴局 县级")

    # the warning pushed to it: its task, with no answer yet (civil affairs answered its own)
    card = page.locator("article.task").filter(has_text=gateway.warned.id_number)
    expect(card).to_have_count(1)
    expect(card.get_by_label("答复结果").locator("option")).to_have_count(4)
    card.get_by_label("答复结果").select_option("RECOGNIZED")
    categories = card.get_by_label("认定类别").locator("option")
    expect(categories).to_have_count(6)  # 请选择 + its five categories, never civil affairs'
    expect(card.get_by_label("认定类别")).not_to_contain_text("低保")
    clerk.shot("20-rural-tasks")

    clerk.tab("救助链")
    _chain_lookup(page, gateway.rural.id_number)
    person = page.locator("#chain .person-card")
    expect(person).to_contain_text(gateway.rural.name)
    clerk.shot("21-rural-chain-own-category")
    _chain_lookup(page, gateway.outsider.id_number)
    expect(page.locator("#chain-message")).to_have_text(NOT_FOUND)
    expect(page.locator("#chain .person-card")).to_have_count(0)
    clerk.shot("22-rural-chain-not-found")

    clerk.tab("预警")
    rows = page.locator("#warnings-rows tr[data-warning-id]")
    expect(rows.filter(has_text=gateway.warned.id_number)).to_have_count(1)
    expect(page.locator("#warnings-rows")).not_to_contain_text(gateway.outsider.id_number)
    clerk.shot("23-rural-warnings")
    clerk.close()


FOCUSABLE = """
(panel) => {
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const controls = [...document.querySelectorAll(
    `#${panel} button, #${panel} input, #${panel} select, #${panel} textarea,` +
    ' #whoami button, #whoami select, [role="tab"][aria-selected="true"]'
  )].filter((el) => !el.disabled && (visible(el) || el.type === 'file'))
    .filter((el) => el.type !== 'radio' || el.checked);  // a radio group is one tab stop
  controls.forEach((el, index) => { el.dataset.kb = String(index); });
  return controls.map((el) => el.id || el.textContent.trim() || el.name);
}
"""

UNLABELLED = """
() => [...document.querySelectorAll('input, select, textarea')]
  .filter((el) => el.type !== 'hidden')
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map((el) => el.id || el.name || el.outerHTML.slice(0, 80))
"""

TABS = ("待办", "预警", "异常回传", "数据报送", "救助链")


def test_keyboard_every_control_labelled_and_every_action_reached(
    gateway: Gateway, browser: Browser
) -> None:
    clerk = Session(browser, gateway, "rural_revitalization")
    page = clerk.page
    # The tabs by keyboard alone: arrows move between them (one tab stop for the list).
    page.get_by_role("tab", name="待办").focus()
    for index, name in enumerate(TABS):
        if index:
            page.keyboard.press("ArrowRight")
        expect(page.get_by_role("tab", name=name)).to_be_focused()
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        panel = page.locator('[role="tabpanel"]:not([hidden])')
        panel_id = panel.get_attribute("id")
        assert panel_id is not None
        if name == "救助链":  # a person on screen: its controls are part of the screen
            _chain_lookup(page, gateway.rural.id_number)
            expect(page.locator("#chain .person-card")).to_be_visible()
        # settled: no GraphQL request in flight (the live stream stays open: never "networkidle")
        expect(page.locator("html")).to_have_attribute("data-pending", "0")
        assert page.evaluate(UNLABELLED) == [], name
        controls = page.evaluate(FOCUSABLE, panel_id)
        assert controls, name
        # Tab from the tab itself round the page: every control of the screen is reached.
        page.get_by_role("tab", name=name).focus()
        reached: set[str] = set()
        for _ in range(len(controls) * 3 + 20):
            page.keyboard.press("Tab")
            index_reached = page.evaluate("() => document.activeElement?.dataset?.kb ?? null")
            if index_reached is not None:
                reached.add(index_reached)
        missing = [controls[int(i)] for i in range(len(controls)) if str(i) not in reached]
        assert missing == [], f"{name}: Tab never reaches {missing}"
        clerk.shot(f"3{index}-keyboard-{panel_id.removeprefix('panel-')}")
        page.get_by_role("tab", name=name).focus()
    clerk.close()
