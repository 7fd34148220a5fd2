from __future__ import annotations

from tests.harness import Harness

PAGE = """
query Page($first: Int) {
  me { department level region rowScope fieldAccess { field effect } }
  persons(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id idNumber name gender birthDate regionCode phone address
      household { id members { id name } }
      reliefStatuses { category sourceDepartment recognizedOn validFrom validTo }
      enrollments { year insuranceType status regionCode subsidyCategory subsidyAmount }
      costBurdens { year totalCost basicInsurancePaid criticalIllnessPaid medicalAssistancePaid
                    personalBurden inpatientCount }
    } }
  }
}
"""


async def test_county_civil_affairs_page(harness: Harness) -> None:
    county = harness.busiest_county()
    token = harness.token("civil_affairs", "county", county)
    body = await harness.query(token, PAGE, {"first": 3})
    assert body["data"]["persons"]["totalCount"] > 3
    node = body["data"]["persons"]["edges"][0]["node"]
    assert node["regionCode"].startswith(county)
    assert "*" in (node["phone"] or "****")
    codes = {e["extensions"]["code"] for e in body.get("errors", [])}
    assert codes <= {"FORBIDDEN"}
