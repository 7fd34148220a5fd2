"""Jurisdiction follows the person (issue 14, DOMAIN.md rule 9, 004 §3): through the public
GraphQL API, a caller sees a person exactly when one of the places its row scopes name ties the
person to its region today, at county, city and province level; a person seen only through an
identity or insured place shows that relation's fields (docs/access-control.md "Fields follow
the place"); household members never bring in anyone else; ``me``, ``simulateAccess`` and
``explainAccess`` name the places.

The cast (Hefei's districts 瑶海 340102, 庐阳 340103, 蜀山 340104; 金安 341502 in another city;
历下 370102 in another province), written by the seed writer, moved by department files, warned
by the monthly run (``tests.places_access_support``):

    甲  lives in 庐阳, 低保 recognised there, insured 2025 in 庐阳 and 2026 in 瑶海
    乙  recognised (低保) in 庐阳, moved to 蜀山; insured 2025 in 庐阳, 2026 in 金安
    丙  recognised (监测对象) by rural revitalisation in 庐阳, moved to 瑶海; insured 2026 in 金安
    丁 戊 己  one household: 丁 lives in 瑶海; 戊 in 蜀山, insured 2026 in 瑶海; 己 in 蜀山 only
    庚  lives in 蜀山; 2026 enrollment in 瑶海 terminated (never an insured place)
    辛  低保 in 庐阳 exited 2025-06-30, moved to 蜀山 (the identity place has ended)
    壬  低保 in 庐阳, warned there (pushed to civil affairs and rural revitalisation), moved to 蜀山
    子  lives in 历下 (Shandong), insured 2026 in 瑶海

Each case is stated twice: in the table below, by hand, and by ``tests.expectations.World``
(the independent model of places), which the table checks; every response is then checked
field by field against the model (``Checker``), noise of the synthetic population included.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.settings import Province
from gateway.loop.config import load_rules
from gateway.loop.warnings import Month, run_warnings
from tests.exchange_support import audit_entries, last_audit_id
from tests.expectations import (
    MASKS,
    Checker,
    Sel,
    Subject,
    World,
    person_selection,
    render,
)
from tests.harness import Harness
from tests.places_access_support import (
    ANHUI,
    CIVIL,
    HEALTH,
    HEFEI,
    JIN_AN,
    LIXIA,
    LUAN,
    LUYANG,
    MIB,
    RURAL,
    SHANDONG,
    SHUSHAN,
    TODAY,
    YAOHAI,
    HouseholdBundle,
    HouseholdRecord,
    Population,
    burden,
    enrolled,
    move,
    places_gateway,  # noqa: F401 - the module's own gateway (fixture)
    read_pushes,
    status,
    write,
)

SEED_PERSONS = 120  # synthetic noise in every province, Hefei included
WHOLE, NARROWED, UNSEEN = "whole", "narrowed", None
PERSON_FIELDS = ("phone", "address", "household")  # never shown through a place


@dataclass
class Cast:
    harness: Harness
    population: Population
    people: dict[str, Any]  # 甲 … 子 → PersonRecord (as they live now)

    def world(self) -> World:
        return self.population.world()

    def __getitem__(self, key: str) -> Any:
        return self.population.record(self.people[key].person_id)


@pytest.fixture(scope="module")
async def cast(
    places_gateway: Harness,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Cast:
    """The cast above, written once per gateway."""
    return await _write_cast(places_gateway, tmp_path_factory.mktemp("moves"))


async def _write_cast(harness: Harness, tmp: Path) -> Cast:
    population = Population(harness.today, bundles=list(harness.bundles))
    people: dict[str, Any] = {}
    bundles: list[HouseholdBundle] = []

    def household(region: str, *members: tuple[str, str]) -> HouseholdBundle:
        hid = uuid.uuid4()
        bundle = HouseholdBundle(HouseholdRecord(hid, region))
        for key, where in members:
            people[key] = population.person(where, hid, name=f"测试{key}")
            bundle.members.append(people[key])
        bundles.append(bundle)
        return bundle

    a = household("340103001001", ("甲", "340103001001"))
    jia = people["甲"]
    a.relief_statuses.append(status(jia, "MINIMUM_LIVING", CIVIL))
    a.enrollments += [enrolled(jia, 2025, LUYANG), enrolled(jia, 2026, "340102001002")]
    a.cost_burdens.append(burden(jia))

    b = household("340103002002", ("乙", "340103002002"))
    yi = people["乙"]
    b.relief_statuses.append(status(yi, "MINIMUM_LIVING", CIVIL, date(2024, 6, 1)))
    b.enrollments += [enrolled(yi, 2025, LUYANG), enrolled(yi, 2026, JIN_AN)]
    b.cost_burdens += [burden(yi, 2025), burden(yi, 2026, "1500.00")]

    c = household("340103003003", ("丙", "340103003003"))
    bing = people["丙"]
    c.relief_statuses.append(status(bing, "MONITORED_UNSTABLE", RURAL, date(2025, 1, 1)))
    c.enrollments += [enrolled(bing, 2025, LUYANG), enrolled(bing, 2026, JIN_AN)]

    d = household(
        "340102004005", ("丁", "340102004005"), ("戊", "340104004006"), ("己", "340104004007")
    )
    ding, wu, ji = people["丁"], people["戊"], people["己"]
    d.enrollments += [
        enrolled(ding, 2026, YAOHAI),
        enrolled(wu, 2025, SHUSHAN),
        enrolled(wu, 2026, YAOHAI),
        enrolled(ji, 2026, SHUSHAN),
    ]
    d.cost_burdens.append(burden(wu))

    e = household("340104005001", ("庚", "340104005001"))
    geng = people["庚"]
    e.enrollments += [enrolled(geng, 2025, SHUSHAN), enrolled(geng, 2026, YAOHAI, "TERMINATED")]

    f = household("340103006001", ("辛", "340103006001"))
    xin = people["辛"]
    f.relief_statuses.append(
        status(xin, "MINIMUM_LIVING", CIVIL, date(2024, 1, 1), date(2025, 6, 30))
    )
    f.enrollments.append(enrolled(xin, 2026, LUYANG))

    g = household("340103007001", ("壬", "340103007001"))
    ren = people["壬"]
    g.relief_statuses.append(status(ren, "MINIMUM_LIVING", CIVIL))
    g.enrollments.append(enrolled(ren, 2026, LUYANG))
    g.cost_burdens.append(burden(ren, 2026, stays=4))  # 4 hospital stays in 2026: warned

    h = household("370102001001", ("子", "370102001001"))
    zi = people["子"]
    h.enrollments += [enrolled(zi, 2025, LIXIA), enrolled(zi, 2026, YAOHAI)]

    await write(harness, population, bundles)
    # Anhui's rule (004 §2): a holder in hospital 3 times or more in a year is pushed to civil
    # affairs and rural revitalisation of the person's county.
    await run_warnings(
        harness.runtime.engine,
        load_rules(Province.ANHUI),
        Month(2026, 10),
        today=TODAY,
        triggered_by="test",
    )
    population.pushes = await read_pushes(harness)
    assert {
        (p.department, p.county) for p in population.pushes if p.person_id == ren.person_id
    } == {
        (CIVIL, LUYANG),
        (RURAL, LUYANG),
    }
    await move(harness, population, CIVIL, [(yi, "低保对象", "340104002003"),
                                            (xin, "低保对象", "340104006002"),
                                            (ren, "低保对象", "340104007002")], tmp)  # fmt: skip
    await move(harness, population, RURAL, [(bing, "脱贫不稳定人口", "340102003004")], tmp)
    return Cast(harness, population, people)


# ============================================================================ the table
@dataclass(frozen=True)
class Case:
    who: str
    dept: str
    level: str
    region: str
    sees: str | None  # WHOLE, NARROWED or UNSEEN
    why: str

    @property
    def subject(self) -> Subject:
        return Subject(self.dept, self.level, self.region)

    def __str__(self) -> str:
        return f"{self.who} as {self.dept}:{self.level}:{self.region} ({self.why})"

    @property
    def id(self) -> str:
        return f"{PINYIN[self.who]}-{self.dept}-{self.level}-{self.region}"


PINYIN = {
    "甲": "jia", "乙": "yi", "丙": "bing", "丁": "ding", "戊": "wu", "己": "ji", "庚": "geng",
    "辛": "xin", "壬": "ren", "子": "zi",
}  # fmt: skip


CASES = [
    # 甲: the motivating case (004 §3: the insured place pays basic insurance)
    Case("甲", MIB, "county", YAOHAI, NARROWED, "insured in 瑶海, lives in 庐阳"),
    Case("甲", CIVIL, "county", YAOHAI, UNSEEN, "civil affairs does not count insured places"),
    Case("甲", HEALTH, "county", YAOHAI, UNSEEN, "health counts the residence only"),
    Case("甲", CIVIL, "county", LUYANG, WHOLE, "lives and recognised in 庐阳"),
    Case("甲", MIB, "county", LUYANG, WHOLE, "lives in 庐阳"),
    Case("甲", MIB, "city", HEFEI, WHOLE, "lives in Hefei"),
    Case("甲", RURAL, "county", LUYANG, UNSEEN, "holds none of rural revitalisation's kinds"),
    # 乙: three places in three counties, two cities
    Case("乙", CIVIL, "county", LUYANG, NARROWED, "recognised in 庐阳, lives in 蜀山"),
    Case("乙", CIVIL, "county", SHUSHAN, WHOLE, "lives in 蜀山"),
    Case("乙", CIVIL, "city", HEFEI, WHOLE, "lives in Hefei"),
    Case("乙", MIB, "county", JIN_AN, NARROWED, "insured 2026 in 金安"),
    Case("乙", MIB, "city", LUAN, NARROWED, "insured 2026 in Lu'an"),
    Case("乙", MIB, "province", ANHUI, WHOLE, "lives in Anhui"),
    Case("乙", MIB, "county", LUYANG, UNSEEN, "insured in 庐阳 until 2025-12-31 only"),
    Case("乙", CIVIL, "county", JIN_AN, UNSEEN, "civil affairs does not count insured places"),
    Case("乙", CIVIL, "city", LUAN, UNSEEN, "civil affairs does not count insured places"),
    Case("乙", HEALTH, "county", LUYANG, UNSEEN, "health counts the residence only"),
    Case("乙", RURAL, "county", LUYANG, UNSEEN, "holds none of rural revitalisation's kinds"),
    # 丙: rural revitalisation's identity place
    Case("丙", RURAL, "county", LUYANG, NARROWED, "monitored, recognised in 庐阳"),
    Case("丙", RURAL, "county", YAOHAI, WHOLE, "monitored, lives in 瑶海"),
    Case("丙", RURAL, "city", HEFEI, WHOLE, "monitored, lives in Hefei"),
    Case("丙", RURAL, "county", JIN_AN, UNSEEN, "rural revitalisation does not count insured"),
    Case("丙", MIB, "county", JIN_AN, NARROWED, "insured 2026 in 金安"),
    Case("丙", MIB, "county", LUYANG, UNSEEN, "insured in 庐阳 until 2025-12-31 only"),
    # 丁 戊 己
    Case("戊", MIB, "county", YAOHAI, NARROWED, "insured 2026 in 瑶海"),
    Case("戊", CIVIL, "county", YAOHAI, UNSEEN, "no identity in 瑶海"),
    Case("己", MIB, "county", YAOHAI, UNSEEN, "no place in 瑶海 (a household member's is not)"),
    Case("丁", MIB, "county", YAOHAI, WHOLE, "lives in 瑶海"),
    # 庚, 辛: places that ended or never held
    Case("庚", MIB, "county", YAOHAI, UNSEEN, "2026 enrollment in 瑶海 terminated"),
    Case("辛", CIVIL, "county", LUYANG, UNSEEN, "the identity in 庐阳 ended 2025-06-30"),
    Case("辛", CIVIL, "county", SHUSHAN, WHOLE, "lives in 蜀山"),
    # 壬: a push addressed to the department shows the person whole
    Case("壬", CIVIL, "county", LUYANG, WHOLE, "recognised and warned in 庐阳"),
    Case("壬", RURAL, "county", LUYANG, WHOLE, "warned in 庐阳 (pushed to it)"),
    Case("壬", RURAL, "county", SHUSHAN, UNSEEN, "lives in 蜀山, not monitored, not pushed"),
    Case("壬", MIB, "county", LUYANG, NARROWED, "insured 2026 in 庐阳 (the push is not to it)"),
    # 子: another province
    Case("子", MIB, "province", ANHUI, NARROWED, "insured 2026 in Anhui, lives in Shandong"),
    Case("子", MIB, "city", HEFEI, NARROWED, "insured 2026 in Hefei"),
    Case("子", MIB, "county", YAOHAI, NARROWED, "insured 2026 in 瑶海"),
    Case("子", MIB, "province", SHANDONG, WHOLE, "lives in Shandong"),
    Case("子", CIVIL, "province", ANHUI, UNSEEN, "civil affairs does not count insured places"),
    Case("子", HEALTH, "province", ANHUI, UNSEEN, "health counts the residence only"),
]


def lookup(record: Any, alias: str = "p") -> Sel:
    return Sel("person", alias=alias, args=(("idNumber", record.id_number),),
               children=person_selection())  # fmt: skip


def page(alias: str = "l", flt: dict[str, Any] | None = None) -> Sel:
    args: tuple[tuple[str, Any], ...] = (("first", 200),)
    if flt is not None:
        args += (("filter", flt),)
    return Sel(
        "persons",
        alias=alias,
        args=args,
        children=(
            Sel("totalCount"),
            Sel("edges", children=(Sel("node", children=person_selection()),)),
        ),
    )


def codes(body: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    return {tuple(e["path"]): e["extensions"]["code"] for e in body.get("errors") or []}


async def ask(cast: Cast, subject: Subject, *selections: Sel) -> dict[str, Any]:
    """Run ``selections`` as ``subject``; check the whole answer against the model."""
    token = cast.harness.token(subject.dept, subject.level, subject.region)
    body = await cast.harness.query(token, render(selections))
    Checker(cast.world(), subject).root(body, selections)
    return body


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_a_caller_sees_a_person_exactly_through_the_places_it_counts(
    cast: Cast, case: Case
) -> None:
    """``person(idNumber)``, a ``persons`` page and its ``totalCount`` agree with the table;
    a narrowed person answers ``null`` and FORBIDDEN for phone, address and household."""
    world, record, subject = cast.world(), cast[case.who], case.subject
    # The model states the table's case (the table is the contract, written by hand).
    assert world.visible(subject, record) is (case.sees is not UNSEEN), case
    if case.sees is not UNSEEN:
        assert (world.narrowed_to(subject, record) is not None) is (case.sees == NARROWED), case

    # (a page filtered by the person's own county: the filter names the residence)
    home = {"regionPrefix": record.region_code[:6]}
    body = await ask(cast, subject, lookup(record), page(), page("r", home))
    found, listed = body["data"]["p"], body["data"]["l"]
    at_home = {edge["node"]["id"] for edge in body["data"]["r"]["edges"]}
    assert (str(record.person_id) in at_home) is (case.sees is not UNSEEN), case
    page_ids = {edge["node"]["id"] for edge in listed["edges"]}
    assert listed["totalCount"] == len(world.scope(subject)) == len(listed["edges"]), case
    if case.sees is UNSEEN:
        assert found is None, case
        assert str(record.person_id) not in page_ids, case
        assert record.name not in str(body), case
        return
    assert found["id"] == str(record.person_id), case
    assert str(record.person_id) in page_ids, case
    assert found["name"] == record.name
    assert found["idNumber"] == record.id_number
    index = next(i for i, e in enumerate(listed["edges"]) if e["node"]["id"] == found["id"])
    denied = {path for path, code in codes(body).items() if code == "FORBIDDEN"}
    for name in PERSON_FIELDS:
        paths = {("p", name), ("l", "edges", index, "node", name)}
        if case.sees == NARROWED:
            assert found[name] is None, f"{case}: {name} released through a place"
            assert paths <= denied, case
            assert record.address not in str(body)
        else:
            assert not paths & denied, f"{case}: {name} refused to a caller who sees it whole"
    if case.sees == WHOLE:
        expected_phone = record.phone if case.dept == MIB else MASKS["Person.phone"](record.phone)
        assert found["phone"] == expected_phone
        assert found["household"]["id"] == str(record.household_id)


# ============================================================================ fields
DETAIL = """
query($id: String!) { p: person(idNumber: $id) {
  id idNumber name gender birthDate regionCode phone address underVerification
  household { id members { id } }
  provenance { department }
  reliefStatuses { category sourceDepartment recognizedOn validFrom validTo }
  enrollments { year insuranceType status regionCode subsidyCategory subsidyAmount }
  costBurdens { year totalCost basicInsurancePaid criticalIllnessPaid medicalAssistancePaid
                personalBurden inpatientCount }
  statusSources: reliefStatuses { provenance { department } }
  effectiveRelief(on: "2026-11-01") { governing { category } }
} }
"""


def _money(value: Any) -> str | None:
    return None if value is None else str(value)


async def test_insured_place_shows_enrollments_costs_and_identities_never_contacts(
    cast: Cast,
) -> None:
    """Medical insurance of 瑶海 reads 甲 (insured there, living in 庐阳: 004 §3) for the
    insured relation: identification, relief statuses, every enrollment field, the whole cost
    burden; phone, address, household and provenance answer null with FORBIDDEN."""
    jia = cast["甲"]
    subject = Subject(MIB, "county", YAOHAI)
    token = cast.harness.token(subject.dept, subject.level, subject.region)
    body = await cast.harness.query(token, DETAIL, {"id": jia.id_number})
    found = body["data"]["p"]
    assert codes(body) == dict.fromkeys(
        [("p", "phone"), ("p", "address"), ("p", "household"), ("p", "provenance"),
         ("p", "statusSources", 0, "provenance")],
        "FORBIDDEN",
    )  # fmt: skip
    assert found["statusSources"] == [{"provenance": None}]
    assert (found["phone"], found["address"], found["household"], found["provenance"]) == (
        (None,) * 4
    )
    assert (found["idNumber"], found["name"], found["gender"], found["birthDate"]) == (
        jia.id_number, jia.name, jia.gender, jia.birth_date.isoformat(),
    )  # fmt: skip
    assert found["regionCode"] == jia.region_code  # the residence names the county in charge
    assert found["underVerification"] is False
    assert found["reliefStatuses"] == [
        {"category": "MINIMUM_LIVING", "sourceDepartment": "CIVIL_AFFAIRS",
         "recognizedOn": "2025-03-01", "validFrom": "2025-03-01", "validTo": None}
    ]  # fmt: skip
    enrollments = sorted(found["enrollments"], key=lambda e: e["year"])
    assert [(e["year"], e["regionCode"], e["status"], e["subsidyAmount"]) for e in enrollments] == [
        (2025, LUYANG + "001001", "ACTIVE", "400.00"),
        (2026, "340102001002", "ACTIVE", "400.00"),
    ]
    [cost] = found["costBurdens"]
    record = cast.population.costs_of(jia)[0]
    assert cost == {
        "year": 2026,
        "totalCost": _money(record.total_cost),
        "basicInsurancePaid": _money(record.basic_insurance_paid),
        "criticalIllnessPaid": _money(record.critical_illness_paid),
        "medicalAssistancePaid": _money(record.medical_assistance_paid),
        "personalBurden": _money(record.personal_burden),
        "inpatientCount": record.inpatient_count,
    }
    assert found["effectiveRelief"]["governing"]["category"] == "MINIMUM_LIVING"
    text = str(body)
    assert jia.phone not in text
    assert jia.address not in text


async def test_identity_place_shows_identities_costs_and_whether_insured(cast: Cast) -> None:
    """Civil affairs of 庐阳 reads 乙 (recognised there, living in 蜀山) for the identity
    relation: its list's relief statuses and cost totals, whether (not where) 乙 is insured;
    the phone it otherwise reads masked, the address and the household answer FORBIDDEN."""
    yi = cast["乙"]
    subject = Subject(CIVIL, "county", LUYANG)
    token = cast.harness.token(subject.dept, subject.level, subject.region)
    body = await cast.harness.query(token, DETAIL, {"id": yi.id_number})
    found = body["data"]["p"]
    got = codes(body)
    narrowed = {("p", "phone"), ("p", "address"), ("p", "household"),
                ("p", "statusSources", 0, "provenance")}  # fmt: skip
    assert narrowed <= set(got), got
    # Denied by civil affairs' own list, for everyone: provenance is its relief statuses' only.
    by_list = {
        ("p", "provenance"),
        *(("p", "enrollments", i, f) for i in range(2) for f in ("regionCode", "subsidyCategory",
                                                                  "subsidyAmount")),
        *(("p", "costBurdens", i, f) for i in range(2)
          for f in ("basicInsurancePaid", "criticalIllnessPaid", "medicalAssistancePaid")),
    }  # fmt: skip
    assert set(got) == narrowed | by_list, set(got) ^ (narrowed | by_list)
    assert set(got.values()) == {"FORBIDDEN"}
    assert found["phone"] is None
    assert MASKS["Person.phone"](yi.phone) not in str(body)
    assert yi.address not in str(body)
    assert found["name"] == yi.name
    assert found["reliefStatuses"][0]["category"] == "MINIMUM_LIVING"
    assert sorted((e["year"], e["status"]) for e in found["enrollments"]) == [
        (2025, "ACTIVE"),
        (2026, "ACTIVE"),
    ]
    assert sorted(c["totalCost"] for c in found["costBurdens"]) == sorted(
        str(c.total_cost) for c in cast.population.costs_of(yi)
    )
    # The same caller reads 甲, who lives in 庐阳, whole: the phone masked, the household.
    body = await cast.harness.query(token, DETAIL, {"id": cast["甲"].id_number})
    assert body["data"]["p"]["phone"] == MASKS["Person.phone"](cast["甲"].phone)
    assert ("p", "phone") not in codes(body)
    assert body["data"]["p"]["household"]["members"] == [{"id": str(cast["甲"].person_id)}]


# ============================================================================ households
MEMBERS = """
query($id: String!) { p: person(idNumber: $id) {
  id household { id members { id name phone regionCode household { id members { id } } } }
} }
"""


@pytest.mark.parametrize(
    ("dept", "level", "region", "listed", "narrowed"),
    [
        (MIB, "county", YAOHAI, ("丁", "戊"), ("戊",)),  # 戊 insured in 瑶海; 己 no place there
        (CIVIL, "county", YAOHAI, ("丁",), ()),  # neither 戊 nor 己 is recognised in 瑶海
        (HEALTH, "county", YAOHAI, None, ()),  # no household in health's list
        (MIB, "city", HEFEI, ("丁", "戊", "己"), ()),  # all three live in Hefei
    ],
    ids=["medical_insurance-yaohai", "civil_affairs-yaohai", "health-yaohai", "mib-hefei"],
)
async def test_household_members_never_bring_in_people_seen_through_no_place(
    cast: Cast,
    dept: str,
    level: str,
    region: str,
    listed: tuple[str, ...] | None,
    narrowed: tuple[str, ...],
) -> None:
    """丁 lives in 瑶海; from 丁's household a caller reaches only the members it sees by their
    own places: 戊 (insured in 瑶海) for medical insurance, narrowed (no phone, no household
    of its own, so nothing further), never 己, who is tied to 瑶海 by nothing of its own."""
    ding = cast["丁"]
    subject = Subject(dept, level, region)
    selections = (
        Sel("person", alias="p", args=(("idNumber", ding.id_number),), children=(
            Sel("id"),
            Sel("household", children=(Sel("id"), Sel("members", children=(
                Sel("id"), Sel("name"), Sel("phone"), Sel("regionCode"),
                Sel("household", children=(Sel("id"), Sel("members", children=(Sel("id"),)))),
            )))),
        )),
    )  # fmt: skip
    body = await ask(cast, subject, *selections)
    household = body["data"]["p"]["household"]
    if listed is None:
        assert household is None
        assert codes(body) == {("p", "household"): "FORBIDDEN"}
        return
    members = {m["id"]: m for m in household["members"]}
    assert set(members) == {str(cast[k].person_id) for k in listed}
    assert str(cast["己"].person_id) not in str(body) or "己" in listed
    for key in listed:
        member = members[str(cast[key].person_id)]
        if key in narrowed:
            assert member["phone"] is None
            assert member["household"] is None  # no way on from someone seen through a place
        else:
            assert member["household"]["id"] == str(ding.household_id)
    # 己 is found by no lookup of this caller unless tied to its region by its own places.
    ji_lookup = await ask(cast, subject, lookup(cast["己"]))
    assert (ji_lookup["data"]["p"] is None) is (level == "county")


# ============================================================================ me, officers
ROW_SCOPES = {
    MIB: ["all; places: residence|insured"],
    CIVIL: ["all; places: residence|identity", "pushed; places: addressed"],
    RURAL: [
        "category: LIFTED_FROM_POVERTY|MONITORED_MARGINAL|MONITORED_SUDDEN_HARDSHIP|"
        "MONITORED_UNSTABLE|RETURNED_TO_POVERTY; places: residence|identity",
        "pushed; places: addressed",
    ],
    HEALTH: ["all"],
    "big_data": [],
}


@pytest.mark.parametrize("dept", sorted(ROW_SCOPES))
async def test_me_names_the_places_of_each_row_scope(cast: Cast, dept: str) -> None:
    token = cast.harness.token(dept, "county", YAOHAI)
    body = await cast.harness.query(token, "{ me { rowScope } }")
    assert body == {"data": {"me": {"rowScope": ROW_SCOPES[dept]}}}


OFFICER = ["security_officer"]
PROPOSE = """
mutation($add: [PolicyLineInput!]!) { proposePolicyChange(title: "测试", add: $add) { id } }
"""
SIMULATE = """
query($id: ID!, $subject: SimulatedSubject!, $query: String!, $variables: JSON) {
  simulateAccess(proposalId: $id, subject: $subject, query: $query, variables: $variables) {
    current { rowScope people data errors { path code } }
    proposed { rowScope people data errors { path code } }
  }
}
"""
EXPLAIN = """
query($id: ID!) { explainAccess(auditEntryId: $id) { rows { condition granted reason } } }
"""
READ_ONE = "query($id: String!) { person(idNumber: $id) { name phone enrollments { regionCode } } }"


def officer(cast: Cast, name: str) -> str:
    return cast.harness.token("big_data", "province", ANHUI, roles=OFFICER, subject=name)


async def test_simulation_shows_the_places_and_the_narrowed_fields(cast: Cast) -> None:
    """``simulateAccess`` as medical insurance of 瑶海: the row scope with its places, 甲 found
    (one person), the phone null with FORBIDDEN at its path; as civil affairs: nobody."""
    jia = cast["甲"]
    token = officer(cast, "places-officer-a")
    line = {"subject": f"health@{YAOHAI}:county", "object": "Person.phone", "action": "MASK"}
    proposed = await cast.harness.query(token, PROPOSE, {"add": [line]})
    assert "errors" not in proposed, proposed
    proposal = proposed["data"]["proposePolicyChange"]["id"]

    async def simulate(department: str) -> dict[str, Any]:
        who = {"department": department, "level": "COUNTY", "region": YAOHAI}
        variables = {"id": proposal, "subject": who, "query": READ_ONE,
                     "variables": {"id": jia.id_number}}  # fmt: skip
        body = await cast.harness.query(token, SIMULATE, variables)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]["simulateAccess"]
        assert result["current"] == result["proposed"]  # the proposal concerns health only
        return dict(result["current"])

    mib = await simulate("MEDICAL_INSURANCE")
    assert mib["rowScope"] == ["all; places: residence|insured"]
    assert mib["people"] == 1
    assert mib["data"] == {
        "person": {"name": "已读取", "phone": None,
                   "enrollments": [{"regionCode": "已读取"}, {"regionCode": "已读取"}]}
    }  # fmt: skip
    assert mib["errors"] == [{"path": ["person", "phone"], "code": "FORBIDDEN"}]
    civil = await simulate("CIVIL_AFFAIRS")
    assert civil["rowScope"] == ["all; places: residence|identity", "pushed; places: addressed"]
    assert (civil["people"], civil["data"], civil["errors"]) == (0, {"person": None}, [])


async def test_explanation_names_the_places_of_the_row_scope(cast: Cast) -> None:
    """``explainAccess`` of medical insurance's read of 甲: the row scope that granted it names
    the residence and the insured place."""
    mark = await last_audit_id(cast.harness)
    clerk = cast.harness.token(MIB, "county", YAOHAI, subject="places-clerk-mib-yaohai")
    read = await cast.harness.query(clerk, READ_ONE, {"id": cast["甲"].id_number})
    assert read["data"]["person"]["name"] == cast["甲"].name
    [entry] = [e for e in await audit_entries(cast.harness, mark) if e.subject.endswith("yaohai")]
    auditor = cast.harness.token(
        "big_data", "province", ANHUI, roles=["audit_admin"], subject="places-auditor"
    )
    body = await cast.harness.query(auditor, EXPLAIN, {"id": entry.id})
    assert "errors" not in body, body
    rows = {row["condition"]: row for row in body["data"]["explainAccess"]["rows"]}
    granted = rows["Person(all; places: residence|insured)"]
    assert granted["granted"] is True
    assert "参保地" in granted["reason"]
    assert "居住地" in granted["reason"]
    assert rows["Person(all; places: residence|identity)"]["granted"] is False
