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


# 救助身份类别 (the GraphQL enum ReliefCategory has exactly these names; a test pins it).
RELIEF_CATEGORIES = frozenset(
    {
        "EXTREME_POVERTY",  # 特困人员
        "MINIMUM_LIVING",  # 低保对象
        "MINIMUM_LIVING_EDGE",  # 低保边缘家庭成员
        "RIGID_EXPENDITURE",  # 刚性支出困难家庭成员
        "SERIOUS_ILLNESS",  # 因病致贫重病患者
        "RETURNED_TO_POVERTY",  # 返贫致贫人口
        "MONITORED_UNSTABLE",  # 防止返贫监测对象: 脱贫不稳定人口
        "MONITORED_MARGINAL",  # 防止返贫监测对象: 边缘易致贫人口
        "MONITORED_SUDDEN_HARDSHIP",  # 防止返贫监测对象: 突发严重困难人口
        "LIFTED_FROM_POVERTY",  # 脱贫人口
        "ORPHAN",  # 孤儿
        "UNSUPPORTED_CHILD",  # 事实无人抚养儿童
        "SEVERE_DISABILITY",  # 重度残疾人
    }
)

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

# The official Chinese name of each category, as the notices and departments' files write it.
CATEGORY_NAMES_ZH = {
    "EXTREME_POVERTY": "特困人员",
    "MINIMUM_LIVING": "低保对象",
    "MINIMUM_LIVING_EDGE": "低保边缘家庭成员",
    "RIGID_EXPENDITURE": "刚性支出困难家庭成员",
    "SERIOUS_ILLNESS": "因病致贫重病患者",
    "RETURNED_TO_POVERTY": "返贫致贫人口",
    "MONITORED_UNSTABLE": "脱贫不稳定人口",
    "MONITORED_MARGINAL": "边缘易致贫人口",
    "MONITORED_SUDDEN_HARDSHIP": "突发严重困难人口",
    "LIFTED_FROM_POVERTY": "脱贫人口",
    "ORPHAN": "孤儿",
    "UNSUPPORTED_CHILD": "事实无人抚养儿童",
    "SEVERE_DISABILITY": "重度残疾人",
}
