"""GraphQL enums, named as in CONTRACT.md, with the Chinese term in each description."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="救助身份类别")
class ReliefCategory(Enum):
    EXTREME_POVERTY = strawberry.enum_value("EXTREME_POVERTY", description="特困人员")
    MINIMUM_LIVING = strawberry.enum_value("MINIMUM_LIVING", description="低保对象")
    MINIMUM_LIVING_EDGE = strawberry.enum_value(
        "MINIMUM_LIVING_EDGE", description="低保边缘家庭成员"
    )
    RIGID_EXPENDITURE = strawberry.enum_value(
        "RIGID_EXPENDITURE", description="刚性支出困难家庭成员"
    )
    SERIOUS_ILLNESS = strawberry.enum_value("SERIOUS_ILLNESS", description="因病致贫重病患者")
    RETURNED_TO_POVERTY = strawberry.enum_value("RETURNED_TO_POVERTY", description="返贫致贫人口")
    MONITORED_UNSTABLE = strawberry.enum_value(
        "MONITORED_UNSTABLE", description="防止返贫监测对象: 脱贫不稳定人口"
    )
    MONITORED_MARGINAL = strawberry.enum_value(
        "MONITORED_MARGINAL", description="防止返贫监测对象: 边缘易致贫人口"
    )
    MONITORED_SUDDEN_HARDSHIP = strawberry.enum_value(
        "MONITORED_SUDDEN_HARDSHIP", description="防止返贫监测对象: 突发严重困难人口"
    )
    LIFTED_FROM_POVERTY = strawberry.enum_value("LIFTED_FROM_POVERTY", description="脱贫人口")
    ORPHAN = strawberry.enum_value("ORPHAN", description="孤儿")
    UNSUPPORTED_CHILD = strawberry.enum_value("UNSUPPORTED_CHILD", description="事实无人抚养儿童")
    SEVERE_DISABILITY = strawberry.enum_value("SEVERE_DISABILITY", description="重度残疾人")


@strawberry.enum(description="部门")
class Department(Enum):
    MEDICAL_INSURANCE = strawberry.enum_value("medical_insurance", description="医疗保障局")
    CIVIL_AFFAIRS = strawberry.enum_value("civil_affairs", description="民政")
    RURAL_REVITALIZATION = strawberry.enum_value("rural_revitalization", description="乡村振兴局")
    HEALTH = strawberry.enum_value("health", description="卫生健康委")
    PUBLIC_SECURITY = strawberry.enum_value("public_security", description="公安")
    DISABLED_FEDERATION = strawberry.enum_value("disabled_federation", description="残联")
    HUMAN_RESOURCES = strawberry.enum_value("human_resources", description="人社")
    BIG_DATA = strawberry.enum_value("big_data", description="大数据局")


@strawberry.enum(description="层级")
class Level(Enum):
    PROVINCE = strawberry.enum_value("province", description="省级")
    CITY = strawberry.enum_value("city", description="市级")
    COUNTY = strawberry.enum_value("county", description="县级")


@strawberry.enum(description="性别")
class Gender(Enum):
    MALE = strawberry.enum_value("MALE", description="男")
    FEMALE = strawberry.enum_value("FEMALE", description="女")


@strawberry.enum(description="险种类型")
class InsuranceType(Enum):
    RESIDENT = strawberry.enum_value("RESIDENT", description="城乡居民基本医疗保险")
    EMPLOYEE = strawberry.enum_value("EMPLOYEE", description="职工基本医疗保险")


@strawberry.enum(description="参保状态")
class EnrollmentStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="正常参保")
    SUSPENDED = strawberry.enum_value("SUSPENDED", description="暂停参保")
    TERMINATED = strawberry.enum_value("TERMINATED", description="终止参保")


@strawberry.enum(description="字段访问效果")
class FieldEffect(Enum):
    READ = strawberry.enum_value("read", description="明文可读")
    MASK = strawberry.enum_value("mask", description="脱敏后可读")
    DENY = strawberry.enum_value("deny", description="不可读")


@strawberry.enum(description="推送任务类型")
class TaskKind(Enum):
    WARNING_REVIEW = strawberry.enum_value(
        "WARNING_REVIEW", description="高额费用预警核实 (民政、乡村振兴, 5个工作日内反馈认定结果)"
    )
    IDENTITY_VERIFICATION = strawberry.enum_value(
        "IDENTITY_VERIFICATION", description="新增救助身份核验 (医保, 5个工作日内核查参保并标识)"
    )
