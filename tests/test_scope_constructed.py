"""Scope cases the synthetic population never produces, built on a private database through
the same writer and policy tables the gateway uses: a household split across two counties, and
a subject that may see ID numbers only masked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, insert

from gateway.domain.clock import now_utc
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import HouseholdBundle, HouseholdRecord, PersonRecord
from gateway.storage.models import CasbinRule, PolicyVersion
from gateway.storage.writer import write_bundles
from tests.harness import Harness, build_harness

COUNTY_A, COUNTY_B = "370102", "370112"  # 历下区, 历城区: same city, different counties
MEMBERS = """query($id: String!) {
  person(idNumber: $id) { name household { members { name regionCode } } }
}"""


def _person(region: str, name: str, household: uuid.UUID, sequence: int) -> PersonRecord:
    id_number = make_id_number(region[:6], date(1970, 5, 17), sequence)
    return PersonRecord(
        person_id=uuid.uuid4(),
        id_number=id_number,
        name=name,
        gender="MALE" if int(id_number[16]) % 2 else "FEMALE",
        birth_date=date(1970, 5, 17),
        region_code=region,
        household_id=household,
    )


@pytest.fixture
async def split_household(
    tmp_path: Path,
) -> AsyncIterator[tuple[Harness, PersonRecord, PersonRecord]]:
    harness = await build_harness(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", backend="sqlite", persons=30
    )
    household = uuid.uuid4()
    a = _person(COUNTY_A + "001001", "跨县甲", household, 901)
    b = _person(COUNTY_B + "002003", "跨县乙", household, 903)
    bundle = HouseholdBundle(HouseholdRecord(household, a.region_code), members=[a, b])
    async with harness.runtime.sessions() as session:
        await write_bundles(session, harness.runtime.vault, [bundle])
    yield harness, a, b
    await harness.close()


@pytest.mark.parametrize(("county", "own", "other"), [(COUNTY_A, 0, 1), (COUNTY_B, 1, 0)])
async def test_household_members_never_lead_into_another_county(
    split_household: tuple[Harness, PersonRecord, PersonRecord], county: str, own: int, other: int
) -> None:
    harness, *members = split_household
    token = harness.token("civil_affairs", "county", county)
    body = await harness.query(token, MEMBERS, {"id": members[own].id_number})
    listed = body["data"]["person"]["household"]["members"]
    assert listed == [{"name": members[own].name, "regionCode": members[own].region_code}]
    assert members[other].name not in str(body)
    outsider = await harness.query(token, MEMBERS, {"id": members[other].id_number})
    assert outsider == {"data": {"person": None}}


async def test_city_caller_sees_the_whole_split_household(
    split_household: tuple[Harness, PersonRecord, PersonRecord],
) -> None:
    harness, a, b = split_household
    token = harness.token("civil_affairs", "city", COUNTY_A[:4])
    body = await harness.query(token, MEMBERS, {"id": a.id_number})
    names = {m["name"] for m in body["data"]["person"]["household"]["members"]}
    assert names == {a.name, b.name}


async def test_masked_id_number_cannot_be_used_for_lookup(tmp_path: Path) -> None:
    """A subject that sees ID numbers only masked must not confirm a full number by lookup."""
    harness = await build_harness(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", backend="sqlite", persons=30
    )
    try:
        async with harness.runtime.sessions() as session:
            await session.execute(
                delete(CasbinRule).where(
                    CasbinRule.v0 == "health:*", CasbinRule.v1 == "Person.idNumber"
                )
            )
            await session.execute(
                insert(CasbinRule).values(
                    ptype="p", v0="health:*", v1="Person.idNumber", v2="mask", v3="*"
                )
            )
            session.add(PolicyVersion(created_at=now_utc(), created_by="test", note="mask id"))
            await session.commit()
            await harness.runtime.authorizer.load(session)
        person = harness.persons[0]
        token = harness.token("health", "county", person.region_code[:6])
        lookup = await harness.query(
            token,
            "query($id: String!) { person(idNumber: $id) { name } }",
            {"id": person.id_number},
        )
        assert lookup["data"]["person"] is None
        assert [e["extensions"]["code"] for e in lookup["errors"]] == ["FORBIDDEN"]
        assert person.name not in str(lookup)
        page = await harness.query(token, "{ persons(first: 200) { edges { node { idNumber } } } }")
        shown = {edge["node"]["idNumber"] for edge in page["data"]["persons"]["edges"]}
        masked = person.id_number[:6] + "********" + person.id_number[-4:]
        assert masked in shown
        assert person.id_number not in shown
    finally:
        await harness.close()
