"""Pushes without an existence oracle (issue 14 item 4, CONTRACT.md: out of scope behaves like
absent): a row about a person held in another county shows its sender exactly what a row about
a person nobody held would show it — the person as the row stated them, the records its own
region sent, nothing the person's own county holds — until the person's county verifies the
tie (REPORTED_BY_ANOTHER_REGION answered 不属于异常 or 已更正). Then the sender's facts give
their real place (identity, insured) and the person is seen through it.

Runs on SQLite and PostgreSQL, on a gateway of this module alone (``exchange_gateway``).
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.domain.id_numbers import make_id_number
from tests.exchange_support import (
    ANOMALIES,
    COUNTY,
    NEIGHBOUR,
    RESOLVE,
    Someone,
    county_token,
    enrollment,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    leaks,
    nodes,
    pushed,
)
from tests.harness import Harness

# What a county office asks about a person after pushing them: everything it may read.
EVERYTHING = """
query($id: String!) {
  person(idNumber: $id) {
    name gender birthDate regionCode phone address underVerification
    household { members { name regionCode phone } }
    reliefStatuses { category sourceDepartment recognizedOn validFrom validTo
                     provenance { department channel line } }
    enrollments { year insuranceType status regionCode subsidyCategory }
    costBurdens { year totalCost personalBurden }
    provenance { department channel line }
    effectiveRelief(on: "2026-06-01") { entitled benefitCategory suspended summary }
  }
  reliefChain(idNumber: $id) { events { kind summary department } }
  persons(first: 1) { totalCount }
}
"""

# Fields that name the person or the batch, not what the answer says about them.
_IDENTIFYING = {"id", "idNumber", "batchId", "receivedAt", "birthDate", "gender", "requestId"}


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _IDENTIFYING}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def _pair(n: int) -> tuple[Someone, Someone]:
    """Two people born the same day, of the same gender, both with numbers issued in the
    neighbouring county: one will be held there, the other nowhere."""
    born = date(1961, 5, 17)
    mark = "甲乙丙丁戊己庚辛壬癸"[n]
    held = Someone(f"原登记{mark}", make_id_number(NEIGHBOUR, born, 100 + 2 * n), NEIGHBOUR)
    nobody = Someone(f"无此人{mark}", make_id_number(NEIGHBOUR, born, 500 + 2 * n), NEIGHBOUR)
    return held, nobody


def _identity_as_sent(person: Someone, household: str) -> dict[str, str]:
    """The row the pushing county sends: the same stated facts whoever the number belongs to."""
    return {
        **identity(person, "特困人员", "2026-04-01", name="报送姓名", region=COUNTY + "001001"),
        "联系电话": "13900000001",
        "家庭住址": "报送地址1号",
        "户编号": household,
        "与户主关系": "户主",
    }


async def _held_in_neighbour(gw: Harness, person: Someone) -> None:
    """The person's own county: civil affairs recognised them with their own contacts, medical
    insurance enrolled them for last year. (The same year enrolled in two counties is a double
    enrollment: the second is never stored over the first, and its sender sees that.)"""
    home = county_token(gw, "civil_affairs", NEIGHBOUR)
    row = {
        **identity(person, "低保对象", "2025-02-01"),
        "联系电话": "13811112222",
        "家庭住址": "原住址9号",
        "户编号": "NB-" + person.id_number[-6:],
    }
    await _accepted(gw, home, [row])
    insurer = county_token(gw, "medical_insurance", NEIGHBOUR)
    await _accepted(gw, insurer, [enrollment(person, year=2025)], feed="enrollments")


async def _accepted(
    gw: Harness, caller: str, rows: list[Any], *, feed: str = "identities"
) -> dict[str, Any]:
    result = await pushed(gw, caller, rows, feed=feed)
    assert result["rejections"] == [], result["rejections"]
    return result


def _secrets(person: Someone) -> tuple[str, ...]:
    return (
        person.name,
        "13811112222",
        "****2222",
        "原住址9号",
        "低保对象",
        "MINIMUM_LIVING",
        '"year": 2025',
    )


async def _anomaly_for(gw: Harness, dept: str, person: Someone) -> dict[str, Any]:
    """The person's county's open REPORTED_BY_ANOTHER_REGION anomaly about ``person``."""
    query = ANOMALIES.replace("batchId", "batchId person { idNumber }")
    body = await gw.query(county_token(gw, dept, NEIGHBOUR), query, {"first": 200})
    found = [
        a
        for a in nodes(body["data"]["anomalies"])
        if a["kind"] == "REPORTED_BY_ANOTHER_REGION"
        and a["status"] == "OPEN"
        and a["person"]["idNumber"] == person.id_number
    ]
    assert len(found) == 1, found
    return found[0]


async def _resolve(gw: Harness, dept: str, anomaly: dict[str, Any], resolution: str) -> None:
    body = await gw.query(
        county_token(gw, dept, NEIGHBOUR),
        RESOLVE,
        {"id": anomaly["id"], "resolution": resolution, "note": "已核实"},
    )
    assert "errors" not in body, body["errors"]


# ============================================================================ no oracle
async def test_an_identity_push_about_a_person_held_elsewhere_answers_like_one_about_nobody(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gw = exchange_gateway
    held, nobody = _pair(1)
    await _held_in_neighbour(gw, held)
    caller = county_token(gw, "civil_affairs", COUNTY)

    answers = []
    for person in (held, nobody):
        before = await gw.query(caller, EVERYTHING, {"id": person.id_number})
        assert before.get("data") is not None, before
        assert before["data"]["person"] is None
        result = await _accepted(gw, caller, [_identity_as_sent(person, "HH-" + person.name)])
        assert result["counts"]["added"] == 1
        assert result["counts"]["anomaliesOpened"] == 0
        body = await gw.query(caller, EVERYTHING, {"id": person.id_number})
        assert body["data"]["person"] is not None, body
        answers.append(body)

    seen_held, seen_nobody = answers
    assert seen_held["data"]["person"]["name"] == "报送姓名"
    assert seen_held["data"]["person"]["regionCode"] == COUNTY + "001001"
    # the household as reported, with the person in it, like the household a new row creates
    members = seen_held["data"]["person"]["household"]["members"]
    assert [m["name"] for m in members] == ["报送姓名"]
    # the people count grew by one with each push: compare the answers without the count
    count_held = seen_held["data"].pop("persons")["totalCount"]
    count_nobody = seen_nobody["data"].pop("persons")["totalCount"]
    assert count_nobody == count_held + 1
    assert _shape(seen_held) == _shape(seen_nobody)
    assert leaks(seen_held, *_secrets(held)) == []


async def test_an_enrollment_push_about_a_person_held_elsewhere_answers_like_one_about_nobody(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """Medical insurance of the county where the person is insured (rule 9: legitimate) sees
    its own enrollment, not the identity the other county recognised, until that county
    verifies; and exactly what it would see of an enrollee nobody held."""
    gw = exchange_gateway
    held, nobody = _pair(2)
    await _held_in_neighbour(gw, held)
    caller = county_token(gw, "medical_insurance", COUNTY)

    answers = []
    for person in (held, nobody):
        row = {**enrollment(person, name="报送姓名"), "参保地行政区划代码": COUNTY}
        result = await _accepted(gw, caller, [row], feed="enrollments")
        assert result["counts"]["added"] == 1
        assert result["counts"]["anomaliesOpened"] == 0
        body = await gw.query(caller, EVERYTHING, {"id": person.id_number})
        assert body["data"]["person"] is not None, body
        body["data"].pop("persons")
        answers.append(body)

    seen_held, seen_nobody = answers
    person = seen_held["data"]["person"]
    assert person["name"] == "报送姓名"
    assert person["reliefStatuses"] == []
    assert [(e["year"], e["regionCode"]) for e in person["enrollments"]] == [(2026, COUNTY)]
    assert _shape(seen_held) == _shape(seen_nobody)
    assert leaks(seen_held, *_secrets(held), NEIGHBOUR) == []


async def test_the_persons_own_county_keeps_its_data_and_is_asked_to_verify(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    gw = exchange_gateway
    held, _ = _pair(3)
    await _held_in_neighbour(gw, held)
    await _accepted(gw, county_token(gw, "civil_affairs", COUNTY), [_identity_as_sent(held, "H3")])

    home = county_token(gw, "civil_affairs", NEIGHBOUR)
    body = await gw.query(home, EVERYTHING, {"id": held.id_number})
    person = body["data"]["person"]
    assert (person["name"], person["phone"], person["address"]) == (
        held.name,
        "138****2222",  # civil affairs reads phone numbers masked
        "原住址9号",
    )
    assert person["regionCode"] == NEIGHBOUR
    assert person["underVerification"] is True
    anomaly = await _anomaly_for(gw, "civil_affairs", held)
    assert COUNTY in anomaly["description"]
    # the sender is not told that its row is being verified elsewhere
    mine = await gw.query(
        county_token(gw, "civil_affairs", COUNTY), EVERYTHING, {"id": held.id_number}
    )
    assert mine["data"]["person"]["underVerification"] is False


# ============================================================================ verified
async def test_once_the_persons_county_verifies_the_sender_sees_them_through_their_place(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """不属于异常: the tie is real. The sender's identity now gives an identity place: the
    person is seen as the shared data hold them, through that place's fields."""
    gw = exchange_gateway
    held, _ = _pair(4)
    await _held_in_neighbour(gw, held)
    caller = county_token(gw, "civil_affairs", COUNTY)
    await _accepted(gw, caller, [_identity_as_sent(held, "H4")])

    await _resolve(
        gw, "civil_affairs", await _anomaly_for(gw, "civil_affairs", held), "NOT_APPLICABLE"
    )

    body = await gw.query(caller, EVERYTHING, {"id": held.id_number})
    person = body["data"]["person"]
    assert person["name"] == held.name  # the person as held, no longer as reported
    assert person["regionCode"] == NEIGHBOUR
    categories = sorted(s["category"] for s in person["reliefStatuses"])
    assert categories == ["EXTREME_POVERTY", "MINIMUM_LIVING"]
    # a resend of the same row opens nothing new: the tie was verified
    again = await _accepted(gw, caller, [_identity_as_sent(held, "H4")])
    assert again["counts"]["rowsUnchanged"] == 1
    home = await gw.query(
        county_token(gw, "civil_affairs", NEIGHBOUR), EVERYTHING, {"id": held.id_number}
    )
    assert home["data"]["person"]["underVerification"] is False


async def test_confirmed_correct_keeps_the_sender_to_what_it_sent(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """经核实本部门数据无误: the person's county stands by its records (a double recognition):
    the sender goes on seeing only what it sent."""
    gw = exchange_gateway
    held, _ = _pair(5)
    await _held_in_neighbour(gw, held)
    caller = county_token(gw, "civil_affairs", COUNTY)
    await _accepted(gw, caller, [_identity_as_sent(held, "H5")])

    anomaly = await _anomaly_for(gw, "civil_affairs", held)
    await _resolve(gw, "civil_affairs", anomaly, "CONFIRMED_CORRECT")

    body = await gw.query(caller, EVERYTHING, {"id": held.id_number})
    assert body["data"]["person"]["name"] == "报送姓名"
    assert leaks(body, *_secrets(held)) == []


async def test_the_insured_county_sees_the_identity_to_mark_once_verified(
    exchange_gateway: Harness,  # noqa: F811
) -> None:
    """The issue's case: a 低保 recipient recognised in one county and insured in another. The
    insuring county's medical insurance pushes the enrollment; the person's county confirms;
    the insurer then sees the identity it must mark (004 §1) through the insured place."""
    gw = exchange_gateway
    held, _ = _pair(6)
    home = county_token(gw, "civil_affairs", NEIGHBOUR)
    await _accepted(gw, home, [identity(held, "低保对象", "2025-02-01")])
    insurer = county_token(gw, "medical_insurance", COUNTY)
    row = {**enrollment(held), "参保地行政区划代码": COUNTY}
    await _accepted(gw, insurer, [row], feed="enrollments")

    before = await gw.query(insurer, EVERYTHING, {"id": held.id_number})
    assert before["data"]["person"]["reliefStatuses"] == []

    anomaly = await _anomaly_for(gw, "medical_insurance", held)
    assert COUNTY in anomaly["description"]
    await _resolve(gw, "medical_insurance", anomaly, "NOT_APPLICABLE")

    after = await gw.query(insurer, EVERYTHING, {"id": held.id_number})
    person = after["data"]["person"]
    assert [s["category"] for s in person["reliefStatuses"]] == ["MINIMUM_LIVING"]
    assert [(e["year"], e["regionCode"]) for e in person["enrollments"]] == [(2026, COUNTY)]


@pytest.mark.parametrize("dept", ["health", "rural_revitalization"])
async def test_other_departments_of_the_sending_county_see_nothing_of_it(
    exchange_gateway: Harness,  # noqa: F811
    dept: str,
) -> None:
    """A report is its department's: another department of the same county gains nothing."""
    gw = exchange_gateway
    held, _ = _pair(7 if dept == "health" else 8)
    await _held_in_neighbour(gw, held)
    await _accepted(gw, county_token(gw, "civil_affairs", COUNTY), [_identity_as_sent(held, "H7")])
    body = await gw.query(county_token(gw, dept, COUNTY), EVERYTHING, {"id": held.id_number})
    assert body["data"]["person"] is None
    assert body["data"]["reliefChain"] is None


# ============================================================================ the property
_SEQUENCE = itertools.count()

STATED = st.fixed_dictionaries(
    {
        "姓名": st.sampled_from(["报送姓名", "张三", "欧阳某某"]),
        "行政区划代码": st.sampled_from([COUNTY, COUNTY + "001001", COUNTY + "002003"]),
        "人员类别": st.sampled_from(["特困人员", "低保对象", "孤儿"]),
        # 2025-02-01: the day the person's own county recognised them
        "认定日期": st.sampled_from(["2025-02-01", "2025-12-01", "2026-04-01"]),
    },
    optional={
        "退出日期": st.just("2026-10-31"),
        "联系电话": st.sampled_from(["13900000001", "0531-8888888"]),
        "家庭住址": st.just("报送地址1号"),
        "户编号": st.just("HH"),
        "与户主关系": st.sampled_from(["户主", "子女"]),
    },
)


class _Gateway:
    """The module's gateway behind a short repr (hypothesis prints its arguments)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def __repr__(self) -> str:
        return f"<gateway on {self.harness.backend}>"


@pytest.fixture
def gateway(exchange_gateway: Harness) -> _Gateway:  # noqa: F811
    return _Gateway(exchange_gateway)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stated=STATED, dept=st.sampled_from(["civil_affairs", "rural_revitalization"]))
# the very identity the person's county recorded, stated again by the sender
@example(
    stated={
        "姓名": "报送姓名",
        "行政区划代码": COUNTY,
        "人员类别": "低保对象",
        "认定日期": "2025-02-01",
    },
    dept="civil_affairs",
)
async def test_whatever_a_row_states_it_answers_alike_for_held_and_unknown_people(
    gateway: _Gateway,
    stated: dict[str, str],
    dept: str,
) -> None:
    """For any identity row a county sends, what it then reads about the person is the same
    whether the number belongs to someone held in the neighbouring county or to nobody."""
    gw = gateway.harness
    n = next(_SEQUENCE)
    born = date(1970, 1, 1) + timedelta(days=37 * n)
    held = Someone("原登记甲", make_id_number(NEIGHBOUR, born, 200), NEIGHBOUR)
    nobody = Someone("无此人甲", make_id_number(NEIGHBOUR, born, 202), NEIGHBOUR)
    await _held_in_neighbour(gw, held)
    if dept == "rural_revitalization":
        stated = {**stated, "人员类别": "脱贫人口"}
    caller = county_token(gw, dept, COUNTY)
    answers = []
    for person in (held, nobody):
        row = {**stated, "身份证号码": person.id_number}
        if "户编号" in row:
            row["户编号"] = f"HH-{n}-{person.id_number[-4:]}"
        result = await _accepted(gw, caller, [row])
        body = await gw.query(caller, EVERYTHING, {"id": person.id_number})
        body["data"].pop("persons")
        answers.append((result["counts"], body))
    (counts_held, seen_held), (counts_nobody, seen_nobody) = answers
    assert counts_held == counts_nobody
    assert _shape(seen_held) == _shape(seen_nobody)
    # what the person's county holds (the category may be the one the row states)
    assert leaks(seen_held, held.name, "13811112222", "****2222", "原住址9号") == []
