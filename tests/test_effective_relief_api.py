"""``Person.effectiveRelief(on, dischargedOn)`` over GraphQL, on SQLite and PostgreSQL, under
each province's rule (RELIEF_PROVINCE; DOMAIN.md rules 5 and 6).

The people are pushed through ``submitRecords`` on the days the lists reach the exchange (the
one clock, ``RELIEF_TODAY``), so Shanxi's list dates are the ones ingest records. Each test
switches the running gateway to a province's rules (what ``RELIEF_PROVINCE`` selects at start).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from gateway.domain.settings import Province, load_settings
from gateway.loop.config import load_rules
from gateway.runtime.parts import Runtime
from tests.exchange_support import (
    COUNTY,
    Someone,
    audit_entries,
    codes,
    county_token,
    enrollment,
    exchange_gateway,  # noqa: F401  (the module's own gateway)
    identity,
    insert_anomaly,
    last_audit_id,
    person_id,
    pushed,
    someone,
)
from tests.harness import Harness

RELIEF = """
query Relief($id: String!, $on: Date!, $out: Date) {
  person(idNumber: $id) {
    name
    effectiveRelief(on: $on, dischargedOn: $out) {
      on province rule rankingRule summary entitled benefitCategory
      identities {
        category rank sourceDepartment recognizedOn validFrom validTo listedOn exitListedOn
        datesRule entitledFrom entitledTo heldOn entitledOn claimBackFrom claimBackTo
      }
      held { category }
      governing { category }
      benefit { category }
      stay {
        admittedOn dischargedOn days benefitCategory benefit { category } identityChanged rule
      }
    }
  }
}
"""

SUBSIDY = """
query Subsidy($id: String!, $on: Date!) {
  person(idNumber: $id) {
    name
    effectiveRelief(on: $on) {
      governing { category }
      subsidy { year category locked nextYearCategory changesNextYear rule }
    }
  }
}
"""

SUSPENDED = """
query Suspended($id: String!, $on: Date!) {
  person(idNumber: $id) { effectiveRelief(on: $on) { entitled benefitCategory suspended } }
}
"""

PAGE = """
query Page($first: Int!) {
  persons(first: $first) {
    edges { node {
      id
      effectiveRelief(on: "2026-11-23") {
        entitled benefitCategory suspended
        identities { category sourceDepartment entitledFrom }
        subsidy { category nextYearCategory }
      }
    } }
  }
}
"""

# This module's synthetic people (its gateway is its own: no other module pushes them).
MONTH_END_EXIT = someone(300)  # 低保对象 recognised 31 Jan, exited 30 Apr (exit list 12 May)
UPGRADED = someone(301)  # 脱贫人口 since 2025, 低保对象 from 15 June 2026; subsidised as 脱贫人口
UNDER_REVIEW = someone(302)  # 特困人员, an anomaly open about them
PROVINCES = [Province.SHANDONG, Province.SHANXI, Province.ANHUI]


@pytest.fixture
def gw(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


@contextmanager
def province(gateway: Harness, chosen: Province) -> Iterator[None]:
    """Serve with ``chosen``'s rules for the block, as a gateway started with that
    RELIEF_PROVINCE would."""
    before = gateway.runtime.rules
    gateway.runtime.rules = load_rules(chosen)
    try:
        yield
    finally:
        gateway.runtime.rules = before


@pytest.fixture(scope="module")
async def people(exchange_gateway: Harness) -> dict[str, Someone]:  # noqa: F811
    """Push this module's people once per backend, each list on the day it arrives."""
    gateway = exchange_gateway
    civil = county_token(gateway, "civil_affairs", COUNTY, "ca-relief")
    rural = county_token(gateway, "rural_revitalization", COUNTY, "rr-relief")
    insurance = county_token(gateway, "medical_insurance", COUNTY, "mib-relief")
    pushes: list[tuple[str, str, list[dict[str, str]], str]] = [
        ("2025-03-05", rural, [identity(UPGRADED, "脱贫人口", "2025-03-01")], "identities"),
        ("2026-01-10", insurance, [_subsidised(UPGRADED, "脱贫人口")], "enrollments"),
        ("2026-02-05", civil, [identity(MONTH_END_EXIT, "低保对象", "2026-01-31")], "identities"),
        ("2026-03-02", civil, [identity(UNDER_REVIEW, "特困人员", "2026-03-01")], "identities"),
        (
            "2026-05-12",
            civil,
            [identity(MONTH_END_EXIT, "低保对象", "2026-01-31", exited_on="2026-04-30")],
            "identities",
        ),
        ("2026-06-16", civil, [identity(UPGRADED, "低保对象", "2026-06-15")], "identities"),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for day, caller, records, feed in pushes:
            patch.setenv("RELIEF_TODAY", day)
            result = await pushed(gateway, caller, records, feed=feed)
            assert result["counts"]["rowsRejected"] == 0, result
    under_review = await person_id(gateway, UNDER_REVIEW.id_number)
    await insert_anomaly(
        gateway, under_review, department="civil_affairs", county=COUNTY, due_on=gateway.today
    )
    return {"month_end": MONTH_END_EXIT, "upgraded": UPGRADED, "under_review": UNDER_REVIEW}


def _subsidised(person: Someone, category: str) -> dict[str, str]:
    row = enrollment(person, year=2026)
    row["资助类别"] = category
    row["资助金额"] = "280"
    return row


def mib(gateway: Harness) -> str:
    return county_token(gateway, "medical_insurance", COUNTY, "mib-clerk")


async def relief(
    gateway: Harness, caller: str, person: Someone, on: str, out: str | None = None
) -> dict[str, Any]:
    body = await gateway.query(caller, RELIEF, {"id": person.id_number, "on": on, "out": out})
    assert "errors" not in body, body["errors"]
    answer: dict[str, Any] = body["data"]["person"]["effectiveRelief"]
    return answer


# ============================================================================ per province
# 低保对象 recognised 2026-01-31 (list 2026-02-05), exited 2026-04-30 (exit list 2026-05-12).
#            day           held   Shandong Shanxi Anhui   (entitled)
MONTH_END = [
    ("2026-01-31", True, True, False, False),  # Anhui: 31 January → from 1 February
    ("2026-02-01", True, True, False, True),
    ("2026-02-05", True, True, True, True),  # Shanxi: the list day
    ("2026-04-30", True, True, True, True),  # the last day held
    ("2026-05-01", False, False, True, False),  # Anhui: stops the month after the exit
    ("2026-05-11", False, False, True, False),  # Shanxi: the day before the exit list
    ("2026-05-12", False, False, False, False),  # Shanxi: the exit list day
]


@pytest.mark.parametrize("chosen", PROVINCES, ids=[p.value for p in PROVINCES])
@pytest.mark.parametrize(
    ("day", "held", "shandong", "shanxi", "anhui"), MONTH_END, ids=[c[0] for c in MONTH_END]
)
async def test_exit_on_the_last_day_of_a_month_by_province(
    gw: Harness,
    people: dict[str, Someone],
    chosen: Province,
    day: str,
    held: bool,
    shandong: bool,
    shanxi: bool,
    anhui: bool,
) -> None:
    entitled = {Province.SHANDONG: shandong, Province.SHANXI: shanxi, Province.ANHUI: anhui}
    with province(gw, chosen):
        answer = await relief(gw, mib(gw), people["month_end"], day)
    assert answer["on"] == day
    assert answer["province"] == load_rules(chosen).name
    assert answer["rule"].startswith(answer["province"])
    assert answer["entitled"] is entitled[chosen]
    assert answer["benefitCategory"] == ("MINIMUM_LIVING" if entitled[chosen] else None)
    assert answer["governing"] == ({"category": "MINIMUM_LIVING"} if held else None)
    assert answer["held"] == ([{"category": "MINIMUM_LIVING"}] if held else [])
    assert re.search(r"[\u4e00-\u9fff]", answer["summary"])
    listed = [i for i in answer["identities"] if i["heldOn"] or i["entitledOn"]]
    if held or entitled[chosen]:
        (shown,) = listed
        assert shown["sourceDepartment"] == "CIVIL_AFFAIRS"
        assert (shown["recognizedOn"], shown["validFrom"], shown["validTo"]) == (
            "2026-01-31",
            "2026-01-31",
            "2026-04-30",
        )
        assert (shown["listedOn"], shown["exitListedOn"]) == ("2026-02-05", "2026-05-12")
        windows = {
            Province.SHANDONG: ("SOURCE_DATES", "2026-01-31", "2026-04-30"),
            Province.SHANXI: ("LIST_DATE", "2026-02-05", "2026-05-11"),
            Province.ANHUI: ("NEXT_MONTH", "2026-02-01", "2026-04-30"),
        }
        assert (shown["datesRule"], shown["entitledFrom"], shown["entitledTo"]) == windows[chosen]
    else:
        assert listed == []


# The upgrade: 脱贫人口 (2025) and 低保对象 from 2026-06-15, listed 2026-06-16.
STAYS = [
    (Province.SHANDONG, "2026-06-30", "MINIMUM_LIVING"),
    (Province.SHANXI, "2026-06-30", "MINIMUM_LIVING"),  # listed 16 June, inside the stay
    (Province.ANHUI, "2026-06-30", "LIFTED_FROM_POVERTY"),  # entitled from 1 July only
    (Province.SHANDONG, "2026-07-03", "MINIMUM_LIVING"),
    (Province.SHANXI, "2026-07-03", "MINIMUM_LIVING"),
    (Province.ANHUI, "2026-07-03", "MINIMUM_LIVING"),
]


@pytest.mark.parametrize(
    ("chosen", "discharged", "stay_category"),
    STAYS,
    ids=[f"{p.value}-discharged-{out}" for p, out, _ in STAYS],
)
async def test_hospital_stay_across_the_upgrade_takes_the_highest(
    gw: Harness, people: dict[str, Someone], chosen: Province, discharged: str, stay_category: str
) -> None:
    with province(gw, chosen):
        answer = await relief(gw, mib(gw), people["upgraded"], "2026-06-10", discharged)
    # The day of admission pays the identity held that day ...
    assert answer["benefitCategory"] == "LIFTED_FROM_POVERTY"
    assert answer["governing"] == {"category": "LIFTED_FROM_POVERTY"}
    # ... the stay pays the highest entitled on any of its days (004 §3).
    stay = answer["stay"]
    assert stay["admittedOn"] == "2026-06-10"
    assert stay["dischargedOn"] == discharged
    assert stay["benefitCategory"] == stay_category
    assert stay["benefit"] == {"category": stay_category}
    assert stay["identityChanged"] is (stay_category == "MINIMUM_LIVING")
    assert "004 §3" in stay["rule"]


@pytest.mark.parametrize("chosen", PROVINCES, ids=[p.value for p in PROVINCES])
async def test_overlapping_identities_the_higher_one_governs(
    gw: Harness, people: dict[str, Someone], chosen: Province
) -> None:
    with province(gw, chosen):
        answer = await relief(gw, mib(gw), people["upgraded"], "2026-11-23")
    assert answer["governing"] == {"category": "MINIMUM_LIVING"}
    assert answer["benefitCategory"] == "MINIMUM_LIVING"
    categories = [(i["category"], i["rank"], i["sourceDepartment"]) for i in answer["identities"]]
    assert categories == [
        ("MINIMUM_LIVING", 1, "CIVIL_AFFAIRS"),
        ("LIFTED_FROM_POVERTY", 7, "RURAL_REVITALIZATION"),
    ]
    assert answer["stay"] is None


async def test_anhui_look_back_window_is_stated_for_a_2026_recognition(
    gw: Harness, people: dict[str, Someone]
) -> None:
    with province(gw, Province.ANHUI):
        answer = await relief(gw, mib(gw), people["upgraded"], "2026-03-20")
    # Before the recognition of 2026-06-15: not held, not entitled, but in the look-back.
    by_category = {i["category"]: i for i in answer["identities"]}
    low = by_category["MINIMUM_LIVING"]
    assert (low["heldOn"], low["entitledOn"]) == (False, False)
    assert (low["claimBackFrom"], low["claimBackTo"]) == ("2025-12-15", "2026-06-14")
    assert answer["benefitCategory"] == "LIFTED_FROM_POVERTY"  # the look-back pays nothing
    assert by_category["LIFTED_FROM_POVERTY"]["claimBackFrom"] is None


# ============================================================================ subsidy lock
SUBSIDIES = [
    ("2026-06-10", "LIFTED_FROM_POVERTY", "LIFTED_FROM_POVERTY", True, False),
    ("2026-11-23", "LIFTED_FROM_POVERTY", "MINIMUM_LIVING", True, True),  # upgraded mid-year
    ("2027-01-10", None, "MINIMUM_LIVING", False, True),  # no 2027 enrollment yet
]


@pytest.mark.parametrize(
    ("day", "category", "next_year", "locked", "changes"),
    SUBSIDIES,
    ids=["before_upgrade", "after_upgrade_locked_until_next_year", "next_year_not_enrolled"],
)
async def test_subsidy_category_locked_within_the_year_new_one_next_year(
    gw: Harness,
    people: dict[str, Someone],
    day: str,
    category: str | None,
    next_year: str,
    locked: bool,
    changes: bool,
) -> None:
    body = await gw.query(mib(gw), SUBSIDY, {"id": people["upgraded"].id_number, "on": day})
    assert "errors" not in body, body["errors"]
    subsidy = body["data"]["person"]["effectiveRelief"]["subsidy"]
    assert subsidy["year"] == int(day[:4])
    assert subsidy["category"] == category
    assert subsidy["nextYearCategory"] == next_year
    assert subsidy["locked"] is locked
    assert subsidy["changesNextYear"] is changes
    assert "次年" in subsidy["rule"]


# ============================================================================ suspension
async def test_benefits_suspended_while_under_verification(
    gw: Harness, people: dict[str, Someone]
) -> None:
    for person, suspended in ((people["under_review"], True), (people["upgraded"], False)):
        body = await gw.query(mib(gw), SUSPENDED, {"id": person.id_number, "on": "2026-11-23"})
        assert "errors" not in body, body["errors"]
        answer = body["data"]["person"]["effectiveRelief"]
        assert answer["suspended"] is suspended
        assert answer["entitled"] is True  # entitled, and (under review) suspended: both shown


# ============================================================================ access
async def test_denied_for_a_department_without_relief_status_access(
    gw: Harness, people: dict[str, Someone]
) -> None:
    """Health reads names but no relief statuses: the field is FORBIDDEN at its path, the rest
    of the person is served."""
    health = county_token(gw, "health", COUNTY, "health-clerk")
    person = people["upgraded"]
    body = await gw.query(health, RELIEF, {"id": person.id_number, "on": "2026-11-23"})
    assert body["data"]["person"]["name"] == person.name
    assert body["data"]["person"]["effectiveRelief"] is None
    assert codes(body) == {("person", "effectiveRelief"): "FORBIDDEN"}
    assert "MINIMUM_LIVING" not in json.dumps(body)


async def test_civil_affairs_reads_the_relief_but_not_the_subsidy_category(
    gw: Harness, people: dict[str, Someone]
) -> None:
    """Civil affairs' list has relief statuses, not the enrollment's subsidy category."""
    civil = county_token(gw, "civil_affairs", COUNTY, "ca-clerk")
    body = await gw.query(civil, SUBSIDY, {"id": people["upgraded"].id_number, "on": "2026-11-23"})
    answer = body["data"]["person"]["effectiveRelief"]
    assert answer["governing"] == {"category": "MINIMUM_LIVING"}
    assert answer["subsidy"] is None
    assert codes(body) == {("person", "effectiveRelief", "subsidy"): "FORBIDDEN"}
    assert "LIFTED_FROM_POVERTY" not in json.dumps(body)


@pytest.mark.parametrize(
    ("who", "visible"),
    [("upgraded", True), ("month_end", False)],
    ids=["holds_its_category", "civil_affairs_only"],
)
async def test_rural_revitalization_sees_only_its_people(
    gw: Harness, people: dict[str, Someone], who: str, visible: bool
) -> None:
    rural = county_token(gw, "rural_revitalization", COUNTY, "rr-clerk")
    body = await gw.query(rural, SUSPENDED, {"id": people[who].id_number, "on": "2026-11-23"})
    assert "errors" not in body, body["errors"]
    assert (body["data"]["person"] is not None) is visible


async def test_the_read_is_audited_as_effective_relief(
    gw: Harness, people: dict[str, Someone]
) -> None:
    before = await last_audit_id(gw)
    await relief(gw, mib(gw), people["upgraded"], "2026-11-23")
    entries = [e for e in await audit_entries(gw, before) if e.subject == "mib-clerk"]
    assert entries
    fields = json.loads(entries[-1].fields)
    assert fields["Person.effectiveRelief"] == "read"
    assert fields["ReliefStatus.sourceDepartment"] == "read"
    assert str(await person_id(gw, people["upgraded"].id_number)) in entries[-1].person_ids


# ============================================================================ bad input
@pytest.mark.parametrize(
    ("on", "out", "says"),
    [
        ("2026-06-10", "2026-06-09", "不能早于入院日期"),
        ("2026-01-01", "2027-01-03", "住院天数不能超过 366 天"),
    ],
    ids=["discharged_before_admission", "stay_longer_than_a_year"],
)
async def test_bad_stay_dates_are_refused(
    gw: Harness, people: dict[str, Someone], on: str, out: str, says: str
) -> None:
    person = people["upgraded"]
    body = await gw.query(mib(gw), RELIEF, {"id": person.id_number, "on": on, "out": out})
    assert body["data"]["person"]["name"] == person.name  # the rest is served
    assert body["data"]["person"]["effectiveRelief"] is None
    assert codes(body) == {("person", "effectiveRelief"): "BAD_USER_INPUT"}
    assert says in body["errors"][0]["message"]


async def test_on_is_required(gw: Harness, people: dict[str, Someone]) -> None:
    query = '{ person(idNumber: "%s") { effectiveRelief { entitled } } }'
    body = await gw.query(mib(gw), query % people["upgraded"].id_number)
    assert body["data"] is None
    assert body["errors"]


# ============================================================================ batches
@contextmanager
def statements(gateway: Harness) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = gateway.runtime.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_page_costs_the_same_queries_whatever_its_size(
    gw: Harness, people: dict[str, Someone]
) -> None:
    """Relief statuses and enrollments load once per page, never per person."""
    caller = gw.token("medical_insurance", "province", "37", subject="mib-province")
    counts = []
    for first in (3, 12):  # the seeded province holds a dozen or more
        with statements(gw) as seen:
            body = await gw.query(caller, PAGE, {"first": first})
        assert "errors" not in body, body["errors"]
        assert len(body["data"]["persons"]["edges"]) == first
        counts.append(len(seen))
        reads = [" ".join(statement.split()) for statement in seen]
        assert sum("FROM relief_status WHERE relief_status.person_id IN" in r for r in reads) == 1
        assert sum("FROM enrollment WHERE enrollment.person_id IN" in r for r in reads) == 1
    assert counts[0] == counts[1]


async def test_relief_province_selects_the_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RELIEF_PROVINCE picks the rules the gateway serves (Runtime.rules)."""
    for chosen in PROVINCES:
        monkeypatch.setenv("RELIEF_PROVINCE", chosen.value)
        runtime = Runtime.create(load_settings(data_dir=tmp_path), create_keys=True)
        try:
            assert runtime.rules == load_rules(chosen)
        finally:
            await runtime.close()
