"""The domain's closed vocabularies: departments, levels and how a region code nests.

Category labels, rankings and province rules are configuration (``gateway/data``); these are
the fixed codes of DOMAIN.md that the token claims and policies are written in.
"""

from __future__ import annotations

from enum import StrEnum


class Department(StrEnum):
    MEDICAL_INSURANCE = "medical_insurance"  # 医疗保障局
    CIVIL_AFFAIRS = "civil_affairs"  # 民政
    RURAL_REVITALIZATION = "rural_revitalization"  # 乡村振兴局
    HEALTH = "health"  # 卫生健康委
    PUBLIC_SECURITY = "public_security"  # 公安
    DISABLED_FEDERATION = "disabled_federation"  # 残联
    HUMAN_RESOURCES = "human_resources"  # 人社
    BIG_DATA = "big_data"  # 大数据局


class Level(StrEnum):
    PROVINCE = "province"  # 省
    CITY = "city"  # 市
    COUNTY = "county"  # 县(市、区)

    @property
    def region_digits(self) -> int:
        """GB/T 2260: 2 digits name a province, 4 a city, 6 a county."""
        return {"province": 2, "city": 4, "county": 6}[self.value]


DEPARTMENT_NAMES_ZH = {
    Department.MEDICAL_INSURANCE: "医疗保障局",
    Department.CIVIL_AFFAIRS: "民政局",
    Department.RURAL_REVITALIZATION: "乡村振兴局",
    Department.HEALTH: "卫生健康委",
    Department.PUBLIC_SECURITY: "公安局",
    Department.DISABLED_FEDERATION: "残联",
    Department.HUMAN_RESOURCES: "人社局",
    Department.BIG_DATA: "大数据局",
}
LEVEL_NAMES_ZH = {Level.PROVINCE: "省级", Level.CITY: "市级", Level.COUNTY: "县级"}
