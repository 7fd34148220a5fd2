"""Expiring grants (期限, issue 16 item 5): a policy line may carry a validity end; it stops
granting at that instant on every process, without a restart and without a new version.

The clock is moved with ``gateway.domain.clock.travel`` (the one clock), never slept: just
before the end the line grants, at the end and after it does not — in two gateway runtimes
sharing one database (SQLite and PostgreSQL), the second polling the version only hourly.
One slow test runs two real ``serve`` processes, which no hook reaches, over a 12-second end.
The text form: a sixth column, a bare date meaning the end of that day in Beijing time,
timezone-less or malformed moments refused naming the line; export and import round-trip it.
"""

from __future__ import annotations

import asyncio
import operator
import os
import socket
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from authz.admin import VersionRecord
from authz.decision import Effect
from authz.expectations import parse_expectations
from authz.offline import OfflinePolicy
from authz.policy_text import policy_text
from authz.store import (
    PolicyLine,
    TimedLine,
    default_policy_lines,
    format_valid_to,
    lines_from_json,
    lines_json,
    parse_moment,
    parse_policy_text,
    parse_valid_to,
    valid_to_of,
    with_valid_to,
)
from gateway.domain.clock import CHINA_TZ, now_utc, travel
from gateway.domain.departments import Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal
from gateway.domain.settings import load_settings
from gateway.runtime.tokens import TokenService
from gateway.storage.models import CasbinRule, PolicyVersion
from tests.exchange_support import exchange_gateway  # noqa: F401
from tests.harness import Harness
from tests.policy_governance_support import (
    PROPOSE,
    approve,
    install,
    line,
    officer,
    policies,
    propose,
    refused,
    run_cli,
    second_runtime,
)

PHONES = "{ persons(first: 50) { edges { node { phone } } } }"
PHONE: PolicyLine = ("civil_affairs:*", "Person.phone", "read", "*")


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


# ============================================================================ the text form
def test_a_bare_date_is_the_end_of_that_day_in_beijing_time() -> None:
    end = parse_valid_to("2027-03-31")
    assert end == datetime(2027, 4, 1, tzinfo=CHINA_TZ)
    assert end == datetime(2027, 3, 31, 16, tzinfo=UTC)
    assert format_valid_to(end) == "2027-03-31"
    moment = parse_valid_to("2027-03-31T23:59:59+08:00")
    assert moment == datetime(2027, 3, 31, 15, 59, 59, tzinfo=UTC)
    assert format_valid_to(moment) == "2027-03-31T23:59:59+08:00"
    assert parse_valid_to("2027-03-31T15:59:59Z") == moment


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("2027-03-31T23:59:59", "缺少时区"),
        ("2027-02-30", "期限日期无效"),
        ("31/03/2027", "期限无效"),
        ("明年", "期限无效"),
        ("2027-03-31 23:59", "缺少时区"),
    ],
)
def test_a_malformed_or_timezone_less_end_is_refused_naming_the_line(cell: str, words: str) -> None:
    text = (
        f"# 注释\np, health:*, Person.name, read, *\np, health:*, Person.phone, read, *, {cell}\n"
    )
    with pytest.raises(ConfigurationError) as refusal:
        parse_policy_text(text, source="policy.csv")
    assert "policy.csv 第 3 行" in refusal.value.message
    assert words in refusal.value.message


@pytest.mark.parametrize(
    "row",
    [
        "p, health:*, Person.phone, read, *, ",  # an empty sixth column
        "p, health:*, Person.phone, read, *, 2027-03-31, x",  # seven columns
        "p, health:*, Person.phone, read",  # four
    ],
)
def test_a_line_with_the_wrong_number_of_columns_is_refused(row: str) -> None:
    with pytest.raises(ConfigurationError) as refusal:
        parse_policy_text(row + "\n")
    assert "第 1 行" in refusal.value.message
    assert "五列或六列" in refusal.value.message


def test_a_line_with_an_end_is_another_line_than_without() -> None:
    end = datetime(2027, 4, 1, tzinfo=UTC)
    timed = TimedLine(PHONE, end)
    assert timed != PHONE
    assert operator.ne(PHONE, timed)  # the plain tuple on the left asks the line
    assert timed == TimedLine(PHONE, end)
    assert timed != TimedLine(PHONE, end + timedelta(seconds=1))
    assert len({timed, PHONE, TimedLine(PHONE, end)}) == 2
    assert tuple(timed) == PHONE  # what casbin is given: the four fields
    assert with_valid_to(PHONE, None) == PHONE
    assert valid_to_of(PHONE) is None
    assert lines_from_json(lines_json([timed, PHONE])) == (timed, PHONE)


def test_offline_decisions_follow_the_end() -> None:
    end = datetime(2027, 4, 1, tzinfo=CHINA_TZ)
    lines = [*default_policy_lines(), TimedLine(PHONE, end)]
    caller = Principal("c", Department.CIVIL_AFFAIRS, Level.COUNTY, "370102")

    def phone(at: datetime) -> Effect:
        return OfflinePolicy(lines, at=at).decision(caller, "").effect("Person.phone")

    assert phone(end - timedelta(microseconds=1)) is Effect.READ
    assert phone(end) is Effect.MASK  # the default line masks
    assert phone(end + timedelta(days=400)) is Effect.MASK


ends = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, CHINA_TZ, None]),
).map(lambda moment: moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ))
EXPECTATION_ROWS = [
    "e, civil_affairs:county@370102, relief_recognition, Person.phone, mask",
    "e, health:city@3701, *, Person.phone, deny",
    "e, big_data:province@37, -, rows, none",
    "e, medical_insurance:county@370102, *, Loop.tasks, call",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.sampled_from(default_policy_lines()), st.none() | ends), max_size=12
    ),
    expectations=st.lists(st.sampled_from(EXPECTATION_ROWS), unique=True),
)
def test_the_text_round_trips_lines_with_their_ends_and_the_expectations(
    picks: list[tuple[PolicyLine, datetime | None]], expectations: list[str]
) -> None:
    lines = list(dict.fromkeys(with_valid_to(fields, end) for fields, end in picks))
    record = VersionRecord(
        3, now_utc(), "a", "n", "b", None, tuple(lines), "".join(f"{e}\n" for e in expectations)
    )
    text = policy_text(record)
    assert Counter(parse_policy_text(text)) == Counter(lines)
    assert [e.text for e in parse_expectations(text)] == expectations


# ============================================================================ the gateway
def _end_in(minutes: int) -> datetime:
    """An end on a whole second, ``minutes`` from now."""
    return (now_utc() + timedelta(minutes=minutes)).replace(microsecond=0)


async def _phones(client: Any, token: str) -> list[str]:
    response = await client.post("/graphql", json={"query": PHONES}, headers=_auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return [e["node"]["phone"] for e in body["data"]["persons"]["edges"] if e["node"]["phone"]]


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_an_expiring_grant_stops_at_its_instant_in_two_runtimes(gw: Harness) -> None:
    county = gw.busiest_county()
    clerk = gw.token("civil_affairs", "county", county, ttl_seconds=7 * 24 * 3600)
    caller = Principal("c", Department.CIVIL_AFFAIRS, Level.COUNTY, county)
    end = _end_in(60)
    async with second_runtime(gw) as (other, other_client):
        version = await install(
            gw,
            add=[line(f"civil_affairs@{county}:county", "Person.phone", valid_to=end.isoformat())],
        )
        other.authorizer.invalidate()  # as NOTIFY would (SQLite: the poll)
        clients = [gw.client, other_client]
        authorizers = [gw.runtime.authorizer, other.authorizer]

        with travel(end - timedelta(seconds=1)):
            for client in clients:
                phones = await _phones(client, clerk)
                assert phones
                assert not any("*" in phone for phone in phones)  # in clear
            for authorizer in authorizers:
                assert authorizer.version == version
                assert authorizer.next_end == end
                assert authorizer.decision_for(caller, "").effect("Person.phone") is Effect.READ

        with travel(end):
            for authorizer in authorizers:  # the instant itself no longer grants
                assert authorizer.decision_for(caller, "").effect("Person.phone") is Effect.MASK

        with travel(end + timedelta(minutes=5)):
            for client in clients:
                phones = await _phones(client, clerk)
                assert phones
                assert all("*" in phone for phone in phones)  # masked, as the default line
            for authorizer in authorizers:
                assert authorizer.version == version  # no new version, no reload
                assert authorizer.next_end is None
            # The line is still in the policy, shown as expired.
            listed = [
                x
                for x in (await policies(gw))["lines"]
                if x["subject"].endswith(f"{county}:county")
            ]
            assert [(x["object"], x["expired"]) for x in listed] == [("Person.phone", True)]
        async with gw.runtime.engine.connect() as connection:
            latest = (
                await connection.execute(select(PolicyVersion.id).order_by(PolicyVersion.id.desc()))
            ).first()
            stored = (
                await connection.execute(
                    select(CasbinRule.v0, CasbinRule.v4).where(
                        CasbinRule.v0 == f"civil_affairs@{county}:county"
                    )
                )
            ).all()
        assert latest is not None
        assert latest[0] == version
        assert [(row.v0, datetime.fromisoformat(row.v4)) for row in stored] == [
            (f"civil_affairs@{county}:county", end)
        ]
    # Tidy up for the other tests of this module: remove the expired line.
    await install(
        gw,
        remove=[line(f"civil_affairs@{county}:county", "Person.phone", valid_to=end.isoformat())],
    )


async def test_officers_see_the_grants_expiring_within_30_days(gw: Harness) -> None:
    soon, later = _end_in(10 * 24 * 60), _end_in(40 * 24 * 60)
    added = [
        line("health@3701:city", "Person.address", valid_to=soon.isoformat()),
        line("health@3702:city", "Person.address", valid_to=later.isoformat()),
        line("health@3703:city", "Person.address"),
    ]
    await install(gw, add=added)
    expiring = (await policies(gw, 30))["lines"]
    assert [(x["subject"], x["validTo"]) for x in expiring] == [
        ("health@3701:city", soon.isoformat())
    ]
    assert [x["subject"] for x in (await policies(gw, 45))["lines"]] == [
        "health@3701:city",
        "health@3702:city",
    ]
    everything = {x["subject"]: x for x in (await policies(gw))["lines"]}
    assert everything["health@3703:city"]["validTo"] is None
    assert everything["health@3702:city"]["expired"] is False
    code, message = await refused(
        gw, officer(gw, "a"), "{ policies(expiringWithinDays: -1) { version } }"
    )
    assert (code, "expiringWithinDays" in message) == ("BAD_USER_INPUT", True)
    with travel(soon + timedelta(days=1)):  # past: no longer "expiring", but expired
        assert [x["subject"] for x in (await policies(gw, 30))["lines"]] == ["health@3702:city"]
    await install(gw, remove=added)


async def test_a_line_past_its_end_or_without_a_timezone_cannot_be_proposed(gw: Harness) -> None:
    past = (now_utc() - timedelta(days=1)).isoformat()
    code, message = await refused(
        gw,
        officer(gw, "a"),
        PROPOSE,
        title="过期行",
        add=[line("health@3701:city", "Person.phone", valid_to=past)],
    )
    assert code == "BAD_USER_INPUT"
    assert "期限已过" in message
    code, message = await refused(
        gw,
        officer(gw, "a"),
        PROPOSE,
        title="无时区",
        add=[line("health@3701:city", "Person.phone", valid_to="2099-03-31T23:59:59")],
    )
    assert code == "BAD_USER_INPUT"
    assert "期限缺少时区" in message


def test_a_moment_to_look_at_reads_a_bare_date_as_the_start_of_that_day() -> None:
    """``policy test --at 2027-04-01``: the start of that day (the first moment a line ending
    "2027-03-31" no longer grants), and the errors say so, not "当日结束"."""
    assert parse_moment("2027-04-01") == datetime(2027, 4, 1, tzinfo=CHINA_TZ)
    assert parse_moment("2027-04-01") == parse_valid_to("2027-03-31")
    assert parse_moment(" 2027-04-01T08:30+08:00 ") == datetime(2027, 4, 1, 0, 30, tzinfo=UTC)
    for text, words in [
        ("2027-04-01T00:00", "时刻缺少时区"),
        ("2027-13-01", "时刻日期无效"),
        ("明天", "时刻无效"),
    ]:
        with pytest.raises(ConfigurationError) as refusal:
            parse_moment(text)
        message = refusal.value.message
        assert words in message, message
        assert "当日结束" not in message, message
        assert "期限" not in message, message
    with pytest.raises(ConfigurationError) as refusal:
        parse_moment("2027-04-01T00:00")
    assert "北京时间当日零时" in refusal.value.message
    # A policy line's end keeps its own wording.
    with pytest.raises(ConfigurationError) as refusal:
        parse_valid_to("2027-04-01T00:00")
    assert "期限缺少时区" in refusal.value.message
    assert "北京时间当日结束" in refusal.value.message


async def test_a_bare_date_as_valid_to_says_exactly_what_to_send(gw: Harness) -> None:
    """validTo is a moment (the DateTime scalar reads "2099-01-01" as a midnight without a
    zone): the refusal gives the moment for "through that day" and for "until that day"."""
    code, message = await refused(
        gw,
        officer(gw, "a"),
        PROPOSE,
        title="只写日期",
        add=[line("health@3701:city", "Person.phone", valid_to="2099-01-01")],
    )
    assert code == "BAD_USER_INPUT"
    assert "期限缺少时区" in message
    assert "不接受只写日期" in message
    assert "2099-01-02T00:00:00+08:00" in message  # through 1 January, Beijing time
    assert "2099-01-01T00:00:00+08:00" in message


async def test_changing_an_end_is_a_removal_and_an_addition(gw: Harness) -> None:
    first, second = _end_in(60 * 24), _end_in(90 * 24 * 60)
    grant = line("health@3704:city", "Person.address", valid_to=first.isoformat())
    await install(gw, add=[grant])
    renewed = {**grant, "validTo": second.isoformat()}
    proposal = await propose(gw, "a", add=[renewed], remove=[grant])
    assert [x["validTo"] for x in proposal["removed"]] == [first.isoformat()]
    assert [x["validTo"] for x in proposal["added"]] == [second.isoformat()]
    await approve(gw, "b", proposal["id"])
    lines = [x for x in (await policies(gw))["lines"] if x["subject"] == "health@3704:city"]
    assert [x["validTo"] for x in lines] == [second.isoformat()]
    await install(gw, remove=[renewed])


async def test_export_and_import_round_trip_an_end(gw: Harness, tmp_path: Path) -> None:
    end = _end_in(200 * 24 * 60)
    code, exported, _ = await asyncio.to_thread(run_cli, gw, "policy", "export")
    assert code == 0
    row = f"p, health@3705:city, Person.address, read, *, {format_valid_to(end)}"
    edited = tmp_path / "edited.csv"
    edited.write_text(exported + row + "\n", encoding="utf-8")
    code, printed, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(edited), "--proposed-by", "ops-a"
    )
    assert code == 0, error
    assert "+ " + row in printed
    proposal_id = printed.split()[1]
    await approve(gw, "ops-b", proposal_id)
    code, again, _ = await asyncio.to_thread(run_cli, gw, "policy", "export")
    assert row in again.splitlines()
    assert Counter(parse_policy_text(again)) == Counter(parse_policy_text(edited.read_text()))
    same = tmp_path / "same.csv"
    same.write_text(again, encoding="utf-8")
    code, _, error = await asyncio.to_thread(
        run_cli, gw, "policy", "import", str(same), "--proposed-by", "ops-a"
    )
    assert code == 2
    assert "没有变化" in error
    await install(gw, remove=[line("health@3705:city", "Person.address", valid_to=end.isoformat())])


# ============================================================================ two processes
SCRIPT = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "relief-gateway"


def _process_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
        RELIEF_POLICY_REFRESH_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


APPROVE_VERSION = "mutation($id: ID!) { approvePolicyChange(id: $id) { resultingVersion } }"


def _seed_and_serve(
    tmp_path: Path,
) -> tuple[TokenService, list[subprocess.Popen[bytes]], list[str]]:
    """A seeded SQLite data dir and two ``serve`` processes on it (not yet ready)."""
    data_dir = tmp_path / "data"
    env = _process_env(data_dir)
    seeded = subprocess.run(
        [str(SCRIPT), "seed", "--persons", "60", "--province", "shandong"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    settings = load_settings(data_dir=data_dir)
    tokens = TokenService.from_file(settings.token_key_path, settings.token_issuer, create=False)
    processes, bases = [], []
    for name in ("a", "b"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with (tmp_path / f"serve-{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [str(SCRIPT), "serve", "--port", str(port)],
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        bases.append(f"http://127.0.0.1:{port}")
    return tokens, processes, bases


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.mark.slow
async def test_an_expiring_grant_stops_in_two_serve_processes(tmp_path: Path) -> None:
    """Two real ``relief-gateway serve`` processes on one SQLite database, each with its own
    clock (no test hook reaches them): a line ending a few seconds from now grants in both
    before its end and in neither after it, while both keep the same policy version."""
    tokens, processes, bases = await asyncio.to_thread(_seed_and_serve, tmp_path)

    def mint(subject: str, dept: str, roles: list[str] | None = None) -> str:
        return tokens.mint(subject=subject, dept=dept, level="province", region="37", roles=roles)

    clerk = mint("civil-province", "civil_affairs")
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def version(base: str) -> int | None:
                try:
                    response = await client.get(f"{base}/readyz", timeout=2)
                except httpx.TransportError:
                    return None
                if response.status_code != 200:
                    return None
                return int(response.json()["policyVersion"])

            async def graphql(base: str, token: str, query: str, **variables: Any) -> Any:
                response = await client.post(
                    f"{base}/graphql",
                    json={"query": query, "variables": variables},
                    headers=_auth(token),
                )
                body = response.json()
                assert "errors" not in body, body
                return body["data"]

            async def phones(base: str) -> list[str]:
                edges = (await graphql(base, clerk, PHONES))["persons"]["edges"]
                return [e["node"]["phone"] for e in edges if e["node"]["phone"]]

            async def until(check: Any, what: str, seconds: float = 60) -> None:
                deadline = time.monotonic() + seconds
                while not await check():
                    assert time.monotonic() < deadline, what
                    await asyncio.sleep(0.2)

            async def both_ready() -> bool:
                return all([await version(base) for base in bases])

            await until(both_ready, "both gateways ready")
            end = (now_utc() + timedelta(seconds=12)).replace(microsecond=0)
            grant = line("civil_affairs@37:province", "Person.phone", valid_to=end.isoformat())
            officer_a = mint("officer-a", "big_data", ["security_admin"])
            officer_b = mint("officer-b", "big_data", ["security_admin"])
            proposed = await graphql(bases[0], officer_a, PROPOSE, title="到期测试", add=[grant])
            proposal = proposed["proposePolicyChange"]["id"]
            approved = await graphql(bases[0], officer_b, APPROVE_VERSION, id=proposal)
            new = approved["approvePolicyChange"]["resultingVersion"]

            async def both_on_new() -> bool:
                for base in bases:  # a request refreshes the policy (polled every second)
                    await phones(base)
                return [await version(base) for base in bases] == [new, new]

            await until(both_on_new, "both gateways on the new version", 10)
            assert now_utc() < end - timedelta(seconds=1), "too slow to read before the end"
            for base in bases:
                before = await phones(base)
                assert before
                assert not any("*" in phone for phone in before), base  # in clear

            await asyncio.sleep(max(0.0, (end - now_utc()).total_seconds()) + 0.3)
            for base in bases:
                after = await phones(base)
                assert after
                assert all("*" in phone for phone in after), base  # masked again
                assert await version(base) == new  # no new version, no restart
    finally:
        await asyncio.to_thread(_stop, processes)
