"""Record types, declared: names, types and descriptions. How each leaf field is read (and
guarded) is in ``schema.fields``; relations resolve here, in batches, through the context.

Relation resolvers return the records or an awaitable of them (``schema.relations``); the
executor handles both. Objects are storage rows, not wrappers: a ``Person`` is a person row
(``gateway.storage.people``), a ``ReliefStatus`` a relief-status record, and so on.

Guarded fields are nullable even where CONTRACT.md writes ``!``: the contract also says a
denied field resolves to ``null`` with a ``FORBIDDEN`` error at its path, and a non-null field
cannot do that without nulling its whole parent (the person). The fields every reader of the
type always gets (``id``, ``regionCode``, ``category``, ``year``) stay non-null.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, cast

import strawberry
from strawberry.types import Info

from gateway.storage.people import PersonRow
from schema import relations
from schema.context import RequestContext
from schema.enums import (
    Department,
    EnrollmentStatus,
    FieldEffect,
    Gender,
    InsuranceType,
    ReliefCategory,
)
from schema.provenance import Provenance
from schema.relief import EffectiveRelief, effective_relief

Ctx = Info[RequestContext, None]


@strawberry.type(description="救助身份: 某部门认定的一个救助类别及其有效期")
class ReliefStatus:
    category: ReliefCategory = strawberry.field(description="救助身份类别")
    source_department: Department | None = strawberry.field(description="认定部门")
    recognized_on: date | None = strawberry.field(description="认定日期")
    valid_from: date | None = strawberry.field(description="有效期起")
    valid_to: date | None = strawberry.field(description="有效期止 (含当日); 为空表示仍在认定中")
    # resolved by schema.fields (through the field guard, in batches)
    provenance: Provenance | None = strawberry.field(
        description="数据来源: 报送部门、批次、行号、接收时间"
    )


@strawberry.type(description="参保: 某人某年度的基本医疗保险参保情况")
class Enrollment:
    year: int = strawberry.field(description="参保年度")
    insurance_type: InsuranceType | None = strawberry.field(description="险种类型")
    status: EnrollmentStatus | None = strawberry.field(description="参保状态")
    region_code: str | None = strawberry.field(description="参保地行政区划代码")
    subsidy_category: ReliefCategory | None = strawberry.field(description="资助参保类别")
    subsidy_amount: Decimal | None = strawberry.field(description="资助金额 (元)")
    # resolved by schema.fields (through the field guard, in batches)
    provenance: Provenance | None = strawberry.field(
        description="数据来源: 报送部门、批次、行号、接收时间"
    )


@strawberry.type(description="医疗费用负担: 某人某年度的累计医疗费用 (元)")
class CostBurden:
    year: int = strawberry.field(description="年度")
    total_cost: Decimal | None = strawberry.field(description="医疗总费用")
    basic_insurance_paid: Decimal | None = strawberry.field(description="基本医保支付")
    critical_illness_paid: Decimal | None = strawberry.field(description="大病保险支付")
    medical_assistance_paid: Decimal | None = strawberry.field(description="医疗救助支付")
    personal_burden: Decimal | None = strawberry.field(
        description="个人负担 (经基本医保、大病保险后的个人自付累计)"
    )
    inpatient_count: int | None = strawberry.field(description="年度住院次数")
    # resolved by schema.fields (through the field guard, in batches)
    provenance: Provenance | None = strawberry.field(
        description="数据来源: 报送部门、批次、行号、接收时间"
    )


@strawberry.type(description="户")
class Household:
    household_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.household_id))

    @strawberry.field(description="户内成员 (只含调用方可见范围内的人员)")
    def members(self, info: Ctx) -> list[Person] | None:
        return cast(list[Person], relations.household_members(self.household_id, info.context))


@strawberry.type(description="人员")
class Person:
    id: strawberry.ID
    id_number: str | None = strawberry.field(description="身份证号码 (敏感, 加密存储)")
    name: str | None = strawberry.field(description="姓名 (敏感, 加密存储)")
    gender: Gender | None = strawberry.field(description="性别")
    birth_date: date | None = strawberry.field(description="出生日期")
    region_code: str = strawberry.field(
        description="行政区划代码: 已知时精确到村(12位), 否则到县(6位)"
    )
    phone: str | None = strawberry.field(description="联系电话 (敏感, 加密存储)")
    address: str | None = strawberry.field(description="家庭住址 (敏感, 加密存储)")
    under_verification: bool | None = strawberry.field(
        description="核实中: 有回传的异常尚未处理, 期间相关待遇暂停 (003 §3)"
    )

    @strawberry.field(description="数据来源: 报送过该人员的各部门及其最近一次报送的批次和行号")
    async def provenance(root: strawberry.Parent[PersonRow], info: Ctx) -> list[Provenance] | None:
        return await relations.person_provenance(root, info.context)

    @strawberry.field(description="所在户")
    def household(root: strawberry.Parent[PersonRow], info: Ctx) -> Household | None:
        household = relations.household_id(root, info.context)
        return None if household is None else Household(household_id=household)

    @strawberry.field(description="救助身份; activeOn 指定时只返回该日有效的身份")
    def relief_statuses(
        root: strawberry.Parent[PersonRow], info: Ctx, active_on: date | None = None
    ) -> list[ReliefStatus] | None:
        return cast(list[ReliefStatus], relations.relief_statuses(root, info.context, active_on))

    @strawberry.field(description="参保记录; year 指定时只返回该年度")
    def enrollments(
        root: strawberry.Parent[PersonRow], info: Ctx, year: int | None = None
    ) -> list[Enrollment] | None:
        return cast(list[Enrollment], relations.enrollments(root, info.context, year))

    @strawberry.field(description="医疗费用负担; year 指定时只返回该年度")
    def cost_burdens(
        root: strawberry.Parent[PersonRow], info: Ctx, year: int | None = None
    ) -> list[CostBurden] | None:
        return cast(list[CostBurden], relations.cost_burdens(root, info.context, year))

    @strawberry.field(
        description=(
            "某日的救助身份与医疗救助待遇 (按本省规则, DOMAIN.md 规则5、6); "
            "指定 dischargedOn 时按住院周期就高 (004 §3)"
        )
    )
    async def effective_relief(
        root: strawberry.Parent[PersonRow],
        info: Ctx,
        on: Annotated[date, strawberry.argument(description="查询日期; 住院时为入院日期")],
        discharged_on: Annotated[
            date | None, strawberry.argument(description="出院日期: 按整个住院周期就高")
        ] = None,
    ) -> EffectiveRelief | None:
        return await effective_relief(root, info.context, on, discharged_on)


def as_person(row: PersonRow) -> Person:
    """A person row is what the ``Person`` type resolves from (see ``schema.fields``)."""
    return cast(Person, row)


@strawberry.type(description="字段访问: 调用方对某个字段的权限")
class FieldAccess:
    field: str
    effect: FieldEffect
