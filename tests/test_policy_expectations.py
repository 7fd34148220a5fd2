"""Policy expectations (策略期望, issue 16 item 5): what the policy must keep granting or denying,
kept as data with every version, checked against every proposal in review; a proposal that
breaks one cannot be approved unless the same proposal changes that expectation, which another
officer then approves with the lines (four eyes). ``relief-gateway policy test`` runs them
offline: exit 0 all hold, 1 some fail (a Chinese line per failure), 2 bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import parse, validate

from authz.expectations import (
    Expectation,
    canonical,
    check_expectations,
    expectations_text,
    parse_expectations,
)
from authz.store import default_policy_lines
from gateway import cli
from gateway.domain.clock import now_utc, travel
from gateway.domain.errors import ConfigurationError
from schema import build_schema
from tests.exchange_support import exchange_gateway  # noqa: F401
from tests.harness import Harness
from tests.policy_governance_support import (
    APPROVE,
    PROPOSAL,
    REJECT,
    approve,
    install,
    line,
    officer,
    ok,
    policies,
    propose,
    refused,
    run_cli,
)

HOLDING = """\
# 民政县级读取脱敏电话; 卫健不读电话; 大数据局看不到任何人
e, civil_affairs:county@370102, -, Person.phone, mask
e, civil_affairs:county@370102, relief_recognition, Person.phone, mask
e, health:city@3701, *, Person.phone, deny
e, big_data:province@37, *, rows, none
e, medical_insurance:county@370102, *, Loop.tasks, call
e, health:county@370102, -, rows, Person(all)
e, civil_affairs:county@370102, -, rows, Person(pushed; places: addressed) + \
Person(all; places: identity|residence)
"""
HEALTH_PHONE = "e, health:city@3701, *, Person.phone, deny"
SIMULATE = """
query Simulate($id: ID!, $subject: SimulatedSubject!, $query: String!) {
  simulateAccess(proposalId: $id, subject: $subject, query: $query) {
    identical expectationFailures { expectation purpose actual expected message }
  }
}
"""


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


# ============================================================================ the format
def test_the_shipped_defaults_meet_the_examples() -> None:
    expectations = parse_expectations(HOLDING)
    assert len(expectations) == 7
    assert check_expectations(expectations, default_policy_lines()) == []


def test_row_scopes_compare_whatever_their_order() -> None:
    (rows,) = parse_expectations(
        "e, civil_affairs:county@370102, -, rows, "
        "Person(pushed; places: addressed) + Person(all; places: identity|residence)"
    )
    assert rows.expected == (
        "Person(all; places: residence|identity) + Person(pushed; places: addressed)"
    )
    assert canonical(expectations_text([rows])) == expectations_text([rows])


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("e, civil_affairs/370102/county, -, Person.phone, mask", "调用方格式错误"),
        ("e, civil_affairs@370102, -, Person.phone, mask", "调用方格式错误"),
        ("e, civil_affairs@3701:county, -, Person.phone, mask", "6 位代码"),
        ("e, civil_affairs:county@3701, -, Person.phone, mask", "6 位代码"),
        ("e, police:county@370102, -, Person.phone, mask", "未知部门"),
        ("e, civil_affairs:county@370102, -, Person.salary, read", "未知对象"),
        ("e, civil_affairs:county@370102, -, Person.phone, masked", "read、mask 或 deny"),
        ("e, civil_affairs:county@370102, -, Person.gender, mask", "没有脱敏形式"),
        ("e, civil_affairs:county@370102, -, Loop.tasks, read", "call 或 deny"),
        ("e, civil_affairs:county@370102, -, rows, Person(everyone)", ""),
        ("e, civil_affairs:county@370102, , Person.phone, mask", "用途不能为空"),
        ("e, civil_affairs:county@370102, -, Person.phone", "五列"),
        ("x, civil_affairs:county@370102, -, Person.phone, mask", "五列"),
    ],
)
def test_a_bad_expectation_is_refused_naming_its_line(row: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as refusal:
        parse_expectations(f"# 注释\n\n{row}\n", source="expect.csv")
    assert "expect.csv 第 3 行" in refusal.value.message
    assert words in refusal.value.message


def test_a_duplicate_expectation_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refusal:
        parse_expectations(f"{HEALTH_PHONE}\ne, health:city@3701, *, Person.phone, read\n")
    assert "与第 1 行重复" in refusal.value.message


def test_the_policys_spelling_of_a_caller_is_the_same_caller() -> None:
    """``civil_affairs@370102:county`` (how a policy line writes the subject) and
    ``civil_affairs:county@370102`` name one caller: both accepted, written back in one
    spelling, a duplicate across the two spellings refused, checked alike."""
    policy_spelling = "e, health@3701:city, *, Person.phone, deny"
    (read,) = parse_expectations(policy_spelling)
    assert read.caller == "health:city@3701"
    assert read.text == HEALTH_PHONE
    assert canonical(policy_spelling) == canonical(HEALTH_PHONE)
    with pytest.raises(ConfigurationError) as refusal:
        parse_expectations(f"{HEALTH_PHONE}\n{policy_spelling.replace('deny', 'read')}\n")
    assert "与第 1 行重复" in refusal.value.message
    lines = [*default_policy_lines(), ("health@3701:*", "Person.phone", "read", "supervision")]
    assert [f.purpose for f in check_expectations([read], lines)] == ["supervision"]
    assert read.region == "3701"


def test_an_expectation_for_every_purpose_fails_in_each_purpose_it_fails_in() -> None:
    lines = [
        *default_policy_lines(),
        ("health@3701:*", "Person.phone", "read", "supervision"),
    ]
    failures = check_expectations(parse_expectations(HEALTH_PHONE), lines)
    assert [(f.purpose, f.actual) for f in failures] == [("supervision", "read")]
    assert "声明用途 supervision 时 Person.phone 为 明文读取 (read), 期望 拒绝 (deny)" in (
        failures[0].message
    )
    assert failures[0].message.startswith(f"策略期望第 1 行「{HEALTH_PHONE}」不成立")


# ============================================================================ policy test
DEFAULT_TEXT = "".join(f"p, {', '.join(x)}\n" for x in default_policy_lines())
POLICY_TEXT = DEFAULT_TEXT + "p, health@3701:city, Person.phone, read, *, 2030-06-30\n"


@pytest.mark.parametrize(
    ("expectation", "at", "code", "words"),
    [
        ("e, health:city@3701, -, Person.phone, read", None, 0, "1 条全部成立"),
        ("e, health:city@3701, -, Person.phone, deny", None, 1, "1 条不成立"),
        # the grant ends with 2030-06-30 (Beijing time): from 1 July the expectation fails
        ("e, health:city@3701, -, Person.phone, read", "2030-06-30", 0, "全部成立"),
        ("e, health:city@3701, -, Person.phone, read", "2030-07-01", 1, "不成立"),
        ("e, health:city@3701, -, Person.phone, read", "2030-06-30T23:59:59+08:00", 0, "成立"),
        ("e, health:city@3701, -, Person.phone, read", "2030-06-30T16:00:00Z", 1, "不成立"),
    ],
)
def test_policy_test_exit_codes(
    tmp_path: Path, expectation: str, at: str | None, code: int, words: str
) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY_TEXT + expectation + "\n", encoding="utf-8")
    args = ["policy", "test", str(policy), *(["--at", at] if at else [])]
    exit_code, out, err = offline(tmp_path, *args)
    assert (exit_code, err) == (code, "")
    assert words in out.splitlines()[-1]
    if code == 1:
        assert out.splitlines()[0].startswith("不成立: 策略期望第 ")


def test_policy_test_reads_a_separate_expectations_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY_TEXT, encoding="utf-8")
    expect = tmp_path / "expect.csv"
    expect.write_text(HOLDING + "e, health:city@3702, -, Person.phone, read\n", encoding="utf-8")
    code, out, _ = offline(tmp_path, "policy", "test", str(policy), "--expectations", str(expect))
    assert code == 1
    failures = [x for x in out.splitlines() if x.startswith("不成立")]
    # the file's own line grants health in 3701 the phone: line 4 fails too
    assert [x.split("「")[0] for x in failures] == [
        "不成立: 策略期望第 4 行",
        "不成立: 策略期望第 9 行",
    ]
    assert "「e, health:city@3702, -, Person.phone, read」" in failures[1]
    assert "8 条, 2 条不成立" in out


@pytest.mark.parametrize(
    ("policy_text", "expect_text", "words"),
    [
        (POLICY_TEXT, "e, health:city@3701, -, Person.salary, read\n", "未知对象"),
        (POLICY_TEXT + "p, health:*, Person.phone, read, *, 2030-06-30T00:00\n", HOLDING, "时区"),
        (POLICY_TEXT, "# 没有期望\n", "没有策略期望"),
        (None, HOLDING, "找不到文件"),
    ],
)
def test_policy_test_refuses_bad_input_with_exit_2(
    tmp_path: Path, policy_text: str | None, expect_text: str, words: str
) -> None:
    policy = tmp_path / "policy.csv"
    if policy_text is not None:
        policy.write_text(policy_text, encoding="utf-8")
    expect = tmp_path / "expect.csv"
    expect.write_text(expect_text, encoding="utf-8")
    code, out, err = offline(tmp_path, "policy", "test", str(policy), "--expectations", str(expect))
    assert (code, out) == (2, "")
    assert words in err
    assert "Traceback" not in err


def offline(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``relief-gateway`` with a database URL that does not exist: ``policy test`` never
    opens it (nor creates its directory)."""
    missing = tmp_path / "nowhere" / "relief.db"
    argv = [*args, "--data-dir", str(tmp_path / "data")]
    argv += ["--database-url", f"sqlite+aiosqlite:///{missing}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert not missing.parent.exists()
    return code, out.getvalue(), err.getvalue()


def test_the_shipped_policy_meets_the_examples_offline(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(DEFAULT_TEXT + HOLDING, encoding="utf-8")
    code, out, err = offline(tmp_path, "policy", "test", str(policy))
    assert (code, err) == (0, "")
    assert "策略期望 7 条全部成立" in out


# ============================================================================ gating approval
async def _set_expectations(gw: Harness, text: str) -> None:
    current = (await policies(gw))["expectations"]
    if canonical(text) != current:
        await install(gw, expectations=text)


async def test_a_proposal_breaking_an_expectation_cannot_be_approved(gw: Harness) -> None:
    await _set_expectations(gw, HOLDING)
    assert (await policies(gw))["expectations"] == canonical(HOLDING)
    breaking = [line("health@3701:city", "Person.phone")]
    proposal = await propose(gw, "alice", title="卫健读取电话", add=breaking)
    assert proposal["expectations"] is None
    assert proposal["expectationsBefore"] == canonical(HOLDING)
    failures = proposal["expectationFailures"]
    assert {(f["expectation"], f["actual"]) for f in failures} == {(HEALTH_PHONE, "read")}
    assert proposal["canApprove"] is False  # the proposer's own view (four eyes)

    simulated = await ok(
        gw,
        officer(gw, "bob"),
        SIMULATE,
        id=proposal["id"],
        subject={"department": "HEALTH", "level": "CITY", "region": "3701"},
        query="{ persons(first: 1) { edges { node { phone } } } }",
    )
    assert [f["expectation"] for f in simulated["simulateAccess"]["expectationFailures"]] == [
        HEALTH_PHONE
    ]

    code, message = await refused(gw, officer(gw, "bob"), APPROVE, id=proposal["id"])
    assert code == "BAD_USER_INPUT"
    assert "不能批准" in message
    assert HEALTH_PHONE in message
    assert "修改相应的策略期望" in message
    still = await ok(gw, officer(gw, "bob"), PROPOSAL, id=proposal["id"])
    assert still["policyProposal"]["resultingVersion"] is None
    await ok(gw, officer(gw, "alice"), REJECT, id=proposal["id"])


async def test_it_can_once_the_same_proposal_changes_the_expectation(gw: Harness) -> None:
    await _set_expectations(gw, HOLDING)
    version = (await policies(gw))["version"]
    changed = HOLDING.replace(HEALTH_PHONE, "e, health:city@3701, *, Person.phone, read")
    grant = [line("health@3701:city", "Person.phone")]
    proposal = await propose(
        gw, "alice", title="卫健读取电话 (修改期望)", add=grant, expectations=changed
    )
    assert proposal["expectations"] == canonical(changed)
    assert proposal["expectationFailures"] == []

    # Four eyes still: the proposer cannot approve its own change of the expectation.
    code, _ = await refused(gw, officer(gw, "ALICE "), APPROVE, id=proposal["id"])
    assert code == "FORBIDDEN"
    # A city officer elsewhere covers neither the line nor the expectation.
    code, _ = await refused(gw, officer(gw, "carol", "city", "3702"), APPROVE, id=proposal["id"])
    assert code == "FORBIDDEN"
    approved = await approve(gw, "bob", proposal["id"])
    assert approved["resultingVersion"] == version + 1
    now = await policies(gw)
    assert now["expectations"] == canonical(changed)
    assert now["expectationFailures"] == []

    # A change that keeps the new expectation but breaks nothing else goes through; restoring
    # the old expectation without the line would break nothing either: both ways are gated.
    back = await propose(gw, "bob", title="恢复", remove=grant, expectations=HOLDING)
    assert back["expectationFailures"] == []
    await approve(gw, "alice", back["id"])


async def test_an_expectation_change_alone_is_gated_and_within_jurisdiction(gw: Harness) -> None:
    await _set_expectations(gw, HOLDING)
    wrong = HOLDING + "e, health:county@370102, -, Person.phone, read\n"
    proposal = await propose(gw, "alice", title="错误的期望", expectations=wrong)
    assert [f["expectation"] for f in proposal["expectationFailures"]] == [
        "e, health:county@370102, -, Person.phone, read"
    ]
    code, _ = await refused(gw, officer(gw, "bob"), APPROVE, id=proposal["id"])
    assert code == "BAD_USER_INPUT"
    await ok(gw, officer(gw, "alice"), REJECT, id=proposal["id"])

    # A city officer changes only expectations about callers in its own region.
    mine = HOLDING + "e, civil_affairs:county@370203, -, Person.phone, mask\n"
    code, message = await refused(
        gw,
        officer(gw, "dave", "city", "3701"),
        """mutation($e: String) { proposePolicyChange(title: "t", expectations: $e) { id } }""",
        e=mine,
    )
    assert code == "FORBIDDEN"
    assert "策略期望" in message
    assert "370203" in message

    code, message = await refused(
        gw,
        officer(gw, "alice"),
        """mutation($e: String) { proposePolicyChange(title: "t", expectations: $e) { id } }""",
        e="e, health:city@37, -, Person.phone, deny\n",
    )
    assert code == "BAD_USER_INPUT"
    assert "第 1 行" in message
    code, message = await refused(
        gw,
        officer(gw, "alice"),
        """mutation($e: String) { proposePolicyChange(title: "t", expectations: $e) { id } }""",
        e=HOLDING,
    )
    assert code == "BAD_USER_INPUT"
    assert "没有变化" in message


async def test_an_expiry_that_breaks_an_expectation_shows_in_force(gw: Harness) -> None:
    await _set_expectations(gw, HOLDING)
    end = (now_utc() + timedelta(days=3)).replace(microsecond=0)
    grant = line("health@3706:city", "Person.address", valid_to=end.isoformat())
    expectation = "e, health:city@3706, -, Person.address, read"
    await install(gw, add=[grant], expectations=HOLDING + expectation + "\n")
    assert (await policies(gw))["expectationFailures"] == []
    with travel(end):
        failures = (await policies(gw))["expectationFailures"]
        assert [(f["expectation"], f["actual"]) for f in failures] == [(expectation, "deny")]
    await install(gw, remove=[grant], expectations=HOLDING)


async def test_export_and_import_carry_the_expectations(gw: Harness, tmp_path: Path) -> None:
    await _set_expectations(gw, HOLDING)
    code, exported, _ = await asyncio.to_thread(run_cli, gw, "policy", "export")
    assert code == 0
    assert "# -- 策略期望" in exported
    assert [e.text for e in parse_expectations(exported)] == [
        e.text for e in parse_expectations(HOLDING)
    ]
    code, out, _ = run_cli(gw, "policy", "test", _write(tmp_path / "p.csv", exported))
    assert code == 0
    assert "7 条全部成立" in out

    edited = exported.replace(HEALTH_PHONE, "e, health:city@3701, -, Person.phone, deny")
    code, printed, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", _write(tmp_path / "e.csv", edited), "--proposed-by", "ops"
    )
    assert code == 0, error
    assert "策略期望: 提出新的完整期望 7 条" in printed
    proposal_id = printed.split()[1]
    pending: dict[str, Any] = (await ok(gw, officer(gw, "bob"), PROPOSAL, id=proposal_id))[
        "policyProposal"
    ]
    assert (pending["added"], pending["removed"]) == ([], [])
    assert "e, health:city@3701, -, Person.phone, deny" in pending["expectations"]
    await approve(gw, "bob", proposal_id)
    assert "e, health:city@3701, -, Person.phone, deny" in (await policies(gw))["expectations"]

    # Lines only (no e line in the file): the expectations stay as they are.
    without = "".join(x + "\n" for x in exported.splitlines() if not x.startswith("e,"))
    without += "p, health@3707:city, Person.address, read, *\n"
    code, printed, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", _write(tmp_path / "l.csv", without), "--proposed-by", "o"
    )
    assert code == 0, error
    assert "策略期望" not in printed
    pending = (await ok(gw, officer(gw, "bob"), PROPOSAL, id=printed.split()[1]))["policyProposal"]
    assert pending["expectations"] is None
    await ok(gw, officer(gw, "o"), REJECT, id=pending["id"])


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_expectation_principal_is_the_named_caller() -> None:
    expectation = Expectation("civil_affairs:county@370102", "-", "Person.phone", "mask")
    principal = expectation.principal()
    assert principal.subject_keys[:2] == ("civil_affairs:county", "civil_affairs@37:county")
    assert expectation.caller_words() == "370102 县级民政局"


# ============================================================================ the console
def test_the_console_documents_of_expiry_and_expectations_are_valid() -> None:
    """The documents policy.js and review.js send for 期限 and expectations (beside
    queries.js, which ``tests/test_console.py`` checks) are valid against the schema."""
    console = Path(__file__).resolve().parent.parent / "gateway/http/static/console"
    graphql_schema = build_schema()._schema
    found = {}
    for name in ("policy.js", "review.js"):
        source = (console / name).read_text(encoding="utf-8")
        strings: dict[str, str] = dict(re.findall(r'^const (\w+) = "([^"]*)";', source, re.M))
        for constant, body in re.findall(r"^const (\w+) = `([^`]*)`;", source, re.M):
            if re.match(r"\s*(query|mutation)\b", body):
                document = body
                for key, value in strings.items():
                    document = document.replace(f"${{{key}}}", value)
                found[constant] = [e.message for e in validate(graphql_schema, parse(document))]
    assert found == {"POLICY_LINES": [], "PROPOSE": [], "REVIEW_PROPOSALS": []}


async def test_a_rollback_brings_back_the_versions_expectations(gw: Harness) -> None:
    await _set_expectations(gw, HOLDING)
    target = (await policies(gw))["version"]
    extra = HOLDING + "e, health:county@370102, -, Person.phone, deny\n"
    await install(gw, expectations=extra)
    rollback = await ok(
        gw,
        officer(gw, "alice"),
        "mutation($v: Int!) { proposePolicyRollback(version: $v) { id expectations } }",
        v=target,
    )
    proposal = rollback["proposePolicyRollback"]
    assert proposal["expectations"] == canonical(HOLDING)
    await approve(gw, "bob", proposal["id"])
    assert (await policies(gw))["expectations"] == canonical(HOLDING)
