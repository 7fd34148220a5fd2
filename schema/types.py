"""Record types. Every guarded field goes through ``info.context.guard``; values of sealed
columns are decrypted only after the guard allows them.

Guarded fields are nullable even where CONTRACT.md writes ``!``: the contract also says a
denied field resolves to ``null`` with a ``FORBIDDEN`` error at its path, and a non-null field
cannot do that without nulling its whole parent (the person). The fields every reader of the
type always gets (``id``, ``regionCode``, ``category``, ``year``) stay non-null.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.types import Info

from gateway.storage import models
from schema.context import RequestContext
from schema.enums import Department, EnrollmentStatus, Gender, InsuranceType, ReliefCategory

Ctx = Info[RequestContext, None]


@strawberry.type(description="救助身份: 某部门认定的一个救助类别及其有效期")
class ReliefStatus:
    record: strawberry.Private[models.ReliefStatus]

    @strawberry.field(description="救助身份类别")
    def category(self) -> ReliefCategory:
        return ReliefCategory[self.record.category]

    @strawberry.field(description="认定部门")
    def source_department(self, info: Ctx) -> Department | None:
        return info.context.guard.release(
            "ReliefStatus.sourceDepartment",
            self.record.person_id,
            lambda: Department(self.record.source_department),
        )

    @strawberry.field(description="认定日期")
    def recognized_on(self, info: Ctx) -> date | None:
        return info.context.guard.release(
            "ReliefStatus.recognizedOn", self.record.person_id, lambda: self.record.recognized_on
        )

    @strawberry.field(description="有效期起")
    def valid_from(self, info: Ctx) -> date | None:
        return info.context.guard.release(
            "ReliefStatus.validFrom", self.record.person_id, lambda: self.record.valid_from
        )

    @strawberry.field(description="有效期止 (含当日); 为空表示仍在认定中")
    def valid_to(self, info: Ctx) -> date | None:
        return info.context.guard.release(
            "ReliefStatus.validTo", self.record.person_id, lambda: self.record.valid_to
        )


@strawberry.type(description="参保: 某人某年度的基本医疗保险参保情况")
class Enrollment:
    record: strawberry.Private[models.Enrollment]

    @strawberry.field(description="参保年度")
    def year(self) -> int:
        return int(self.record.year)

    @strawberry.field(description="险种类型")
    def insurance_type(self, info: Ctx) -> InsuranceType | None:
        return info.context.guard.release(
            "Enrollment.insuranceType",
            self.record.person_id,
            lambda: InsuranceType[self.record.insurance_type],
        )

    @strawberry.field(description="参保状态")
    def status(self, info: Ctx) -> EnrollmentStatus | None:
        return info.context.guard.release(
            "Enrollment.status", self.record.person_id, lambda: EnrollmentStatus[self.record.status]
        )

    @strawberry.field(description="参保地行政区划代码")
    def region_code(self, info: Ctx) -> str | None:
        return info.context.guard.release(
            "Enrollment.regionCode", self.record.person_id, lambda: self.record.region_code
        )

    @strawberry.field(description="资助参保类别")
    def subsidy_category(self, info: Ctx) -> ReliefCategory | None:
        def reveal() -> ReliefCategory | None:
            category = self.record.subsidy_category
            return ReliefCategory[category] if category else None

        return info.context.guard.release(
            "Enrollment.subsidyCategory", self.record.person_id, reveal
        )

    @strawberry.field(description="资助金额 (元)")
    def subsidy_amount(self, info: Ctx) -> Decimal | None:
        return info.context.guard.release(
            "Enrollment.subsidyAmount", self.record.person_id, lambda: self.record.subsidy_amount
        )


def _money(info: Ctx, field: str, record: models.CostBurden, attribute: str) -> Decimal | None:
    def reveal() -> Decimal:
        value: Decimal = getattr(record, attribute)
        return value

    return info.context.guard.release(field, record.person_id, reveal)


@strawberry.type(description="医疗费用负担: 某人某年度的累计医疗费用 (元)")
class CostBurden:
    record: strawberry.Private[models.CostBurden]

    @strawberry.field(description="年度")
    def year(self) -> int:
        return int(self.record.year)

    @strawberry.field(description="医疗总费用")
    def total_cost(self, info: Ctx) -> Decimal | None:
        return _money(info, "CostBurden.totalCost", self.record, "total_cost")

    @strawberry.field(description="基本医保支付")
    def basic_insurance_paid(self, info: Ctx) -> Decimal | None:
        return _money(info, "CostBurden.basicInsurancePaid", self.record, "basic_insurance_paid")

    @strawberry.field(description="大病保险支付")
    def critical_illness_paid(self, info: Ctx) -> Decimal | None:
        return _money(info, "CostBurden.criticalIllnessPaid", self.record, "critical_illness_paid")

    @strawberry.field(description="医疗救助支付")
    def medical_assistance_paid(self, info: Ctx) -> Decimal | None:
        return _money(
            info, "CostBurden.medicalAssistancePaid", self.record, "medical_assistance_paid"
        )

    @strawberry.field(description="个人负担 (经基本医保、大病保险后的个人自付累计)")
    def personal_burden(self, info: Ctx) -> Decimal | None:
        return _money(info, "CostBurden.personalBurden", self.record, "personal_burden")

    @strawberry.field(description="年度住院次数")
    def inpatient_count(self, info: Ctx) -> int | None:
        return info.context.guard.release(
            "CostBurden.inpatientCount", self.record.person_id, lambda: self.record.inpatient_count
        )


@strawberry.type(description="户")
class Household:
    household_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.household_id))

    @strawberry.field(description="户内成员 (只含调用方可见范围内的人员)")
    async def members(self, info: Ctx) -> list[Person] | None:
        info.context.guard.require("Household.members")
        rows = await info.context.household_members(self.household_id)
        return [Person(row=row) for row in rows]


@strawberry.type(description="人员")
class Person:
    row: strawberry.Private[Any]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field(description="身份证号码 (敏感, 加密存储)")
    def id_number(self, info: Ctx) -> str | None:
        return self._sealed(info, "Person.idNumber", "id_number")

    @strawberry.field(description="姓名 (敏感, 加密存储)")
    def name(self, info: Ctx) -> str | None:
        return self._sealed(info, "Person.name", "name")

    @strawberry.field(description="性别")
    def gender(self, info: Ctx) -> Gender | None:
        return info.context.guard.release(
            "Person.gender", self.row.id, lambda: Gender[self.row.gender]
        )

    @strawberry.field(description="出生日期")
    def birth_date(self, info: Ctx) -> date | None:
        return info.context.guard.release(
            "Person.birthDate", self.row.id, lambda: date.fromisoformat(str(self.row.birth_date))
        )

    @strawberry.field(description="行政区划代码: 已知时精确到村(12位), 否则到县(6位)")
    def region_code(self, info: Ctx) -> str:
        info.context.guard.people.add(self.row.id)
        return str(self.row.region_code)

    @strawberry.field(description="联系电话 (敏感, 加密存储)")
    def phone(self, info: Ctx) -> str | None:
        return self._sealed(info, "Person.phone", "phone")

    @strawberry.field(description="家庭住址 (敏感, 加密存储)")
    def address(self, info: Ctx) -> str | None:
        return self._sealed(info, "Person.address", "address")

    @strawberry.field(description="所在户")
    def household(self, info: Ctx) -> Household | None:
        info.context.guard.relation("Person.household", self.row.id)
        if self.row.household_id is None:
            return None
        return Household(household_id=self.row.household_id)

    @strawberry.field(description="救助身份; activeOn 指定时只返回该日有效的身份")
    async def relief_statuses(
        self, info: Ctx, active_on: date | None = None
    ) -> list[ReliefStatus] | None:
        guard = info.context.guard
        guard.relation("Person.reliefStatuses", self.row.id)
        if active_on is not None:
            guard.require_argument("Person.reliefStatuses.activeOn")
        records = await info.context.relief_statuses(self.row.id, active_on)
        return [ReliefStatus(record=r) for r in records]

    @strawberry.field(description="参保记录; year 指定时只返回该年度")
    async def enrollments(self, info: Ctx, year: int | None = None) -> list[Enrollment] | None:
        info.context.guard.relation("Person.enrollments", self.row.id)
        records = await info.context.enrollments(self.row.id, year)
        return [Enrollment(record=r) for r in records]

    @strawberry.field(description="医疗费用负担; year 指定时只返回该年度")
    async def cost_burdens(self, info: Ctx, year: int | None = None) -> list[CostBurden] | None:
        info.context.guard.relation("Person.costBurdens", self.row.id)
        records = await info.context.cost_burdens(self.row.id, year)
        return [CostBurden(record=r) for r in records]

    def _sealed(self, info: Ctx, field: str, column: str) -> str | None:
        context = info.context
        return context.guard.release(
            field, self.row.id, lambda: context.vault.open(self.row, column)
        )
