"""``Person.effectiveRelief(on, dischargedOn)``: the relief identity on a date and the benefit
level that applies, under the configured province's rule (DOMAIN.md rules 5 and 6).

The rules are in ``gateway.loop.relief``; this module loads the person's relief statuses
(and, when asked, the year's enrollments) through the request's batch loaders, so a page of
people costs one query per relation, and shapes the answer for a settlement clerk.

The field is derived from the relief-status dates (``authz.resources.DERIVED_FROM``): the
guard grants it only with them. Parts that reveal more carry their own guard: the source
department (``ReliefStatus.sourceDepartment``), the suspension (``Person.underVerification``)
and the subsidy category (``Enrollment.subsidyCategory``) resolve to ``null`` with a
``FORBIDDEN`` error at their own path when denied, the rest of the answer is still served.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Sequence
from datetime import date
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from gateway.domain.errors import Forbidden
from gateway.loop.relief import (
    STAY_TEXT,
    SUBSIDY_TEXT,
    TIES_TEXT,
    Entitlement,
    Identity,
    check_stay,
    province_rule_text,
    relief_for_stay,
    relief_on,
    subsidised_category,
    subsidy_for_year,
)
from gateway.storage.people import PersonRow
from schema.context import Related, RequestContext
from schema.enums import Department, ReliefCategory

Ctx = Info[RequestContext, None]


@strawberry.enum(description="待遇享受时间规则")
class BenefitDatesRule(Enum):
    SOURCE_DATES = strawberry.enum_value(
        "source_dates", description="与认定部门的身份起止时间一致 (001 §2)"
    )
    LIST_DATE = strawberry.enum_value(
        "list_date", description="自提供名单之日起享受, 自提供退出名单之日起停止 (000 §2)"
    )
    NEXT_MONTH = strawberry.enum_value(
        "next_month", description="自认定次月起享受, 自退出次月起停止 (004 §3)"
    )


def _category(code: str | None) -> ReliefCategory | None:
    return None if code is None else ReliefCategory[code]


def _category_of(entry: Entitlement | None) -> ReliefCategory | None:
    return None if entry is None else ReliefCategory[entry.category]


async def _loaded(related: Related) -> list[Any]:
    return await related if inspect.isawaitable(related) else related


@strawberry.type(description="某日相关的救助身份: 该日持有、享受待遇或处于追溯期的身份")
class IdentityOnDate:
    category: ReliefCategory = strawberry.field(description="救助身份类别")
    rank: int = strawberry.field(description="身份档次: 0 最高, 数字越小待遇越优 (按省级配置)")
    recognized_on: date = strawberry.field(description="认定日期")
    valid_from: date = strawberry.field(description="身份有效期起 (认定部门)")
    valid_to: date | None = strawberry.field(
        description="身份有效期止 (含当日, 认定部门); 为空表示仍在认定中"
    )
    listed_on: date | None = strawberry.field(description="认定名单提供 (共享) 日期")
    exit_listed_on: date | None = strawberry.field(description="退出名单提供 (共享) 日期")
    dates_rule: BenefitDatesRule = strawberry.field(description="确定待遇起止的规则")
    entitled_from: date | None = strawberry.field(
        description="待遇享受起始日; 为空表示按规则不产生待遇期"
    )
    entitled_to: date | None = strawberry.field(
        description="待遇享受截止日 (含当日); 为空表示尚未停止或不产生待遇期"
    )
    held_on: bool = strawberry.field(description="该日是否持有此身份 (按认定部门的起止时间)")
    entitled_on: bool = strawberry.field(description="该日是否在此身份的待遇享受期内")
    claim_back_from: date | None = strawberry.field(
        description="可依申请追溯救助的起始日 (认定前6个月, 004 §3); 仅主要因重大疾病认定的适用"
    )
    claim_back_to: date | None = strawberry.field(
        description="可依申请追溯救助的截止日 (认定前一日)"
    )
    person_id: strawberry.Private[uuid.UUID]
    source_department_code: strawberry.Private[str]

    @strawberry.field(description="认定部门")
    def source_department(self, info: Ctx) -> Department | None:
        return info.context.guard.release(
            "ReliefStatus.sourceDepartment",
            self.person_id,
            lambda: Department(self.source_department_code),
        )

    @classmethod
    def of(cls, entry: Entitlement, on: date, person_id: uuid.UUID) -> IdentityOnDate:
        identity = entry.identity
        return cls(
            category=ReliefCategory[identity.category],
            rank=entry.rank,
            recognized_on=identity.recognized_on,
            valid_from=identity.valid_from,
            valid_to=identity.valid_to,
            listed_on=identity.listed_on,
            exit_listed_on=identity.exit_listed_on,
            dates_rule=BenefitDatesRule(entry.dates_rule.value),
            entitled_from=entry.entitled_from,
            entitled_to=entry.entitled_to,
            held_on=entry.held_on(on),
            entitled_on=entry.entitled_on(on),
            claim_back_from=entry.claim_back_from,
            claim_back_to=entry.claim_back_to,
            person_id=person_id,
            source_department_code=identity.source_department,
        )


@strawberry.type(
    description="资助参保类别 (001 §2, 004 §3): 年度内已享受的资助不调整, 次年起按新类别"
)
class SubsidyOnDate:
    year: int = strawberry.field(description="参保年度 (查询日期所在自然年)")
    category: ReliefCategory | None = strawberry.field(
        description="当年参保记录上的资助参保类别: 已享受, 年度内锁定不调整"
    )
    locked: bool = strawberry.field(description="当年已按该类别享受资助, 年度内不调整")
    next_year_category: ReliefCategory | None = strawberry.field(
        description="按查询日期决定待遇的身份, 次年起适用的资助参保类别"
    )
    changes_next_year: bool = strawberry.field(
        description="次年起的资助参保类别与当年不同 (当年不调整, 次年起按新类别)"
    )
    rule: str = strawberry.field(description="适用的规定")


@strawberry.type(description="一个住院周期: 住院期间身份变动的, 整个住院周期按最高身份享受待遇")
class HospitalStay:
    admitted_on: date = strawberry.field(description="入院日期 (即 on)")
    discharged_on: date = strawberry.field(description="出院日期")
    days: int = strawberry.field(description="住院天数 (出院日期 - 入院日期)")
    benefit_category: ReliefCategory | None = strawberry.field(
        description="整个住院周期适用的医疗救助待遇类别: 住院期间任一日享受待遇的最高身份"
    )
    benefit: IdentityOnDate | None = strawberry.field(
        description="决定该住院周期待遇的身份 (heldOn/entitledOn 按入院日期)"
    )
    identity_changed: bool = strawberry.field(description="住院期间是否有身份的待遇开始或停止")
    rule: str = strawberry.field(description="适用的规定 (004 §3)")


@strawberry.type(
    description=(
        "某日的救助身份与医疗救助待遇 (按本省规则): 持有的身份、决定待遇的身份、待遇享受期、"
        "资助参保类别和住院周期"
    )
)
class EffectiveRelief:
    on: date = strawberry.field(description="查询日期 (有住院时为入院日期)")
    province: str = strawberry.field(description="适用规则的省份")
    rule: str = strawberry.field(description="本省待遇享受时间规则 (原文要点及出处)")
    ranking_rule: str = strawberry.field(description="多重身份的处理规则")
    summary: str = strawberry.field(description="结论 (一句话)")
    identities: list[IdentityOnDate] = strawberry.field(
        description="该日相关的身份 (持有、享受待遇或处于追溯期), 从高到低"
    )
    held: list[IdentityOnDate] = strawberry.field(description="该日持有的身份, 从高到低")
    governing: IdentityOnDate | None = strawberry.field(
        description="该日持有的最高身份 (档次最高; 同档取认定较早的)"
    )
    benefit_category: ReliefCategory | None = strawberry.field(
        description="该日享受医疗救助待遇的类别: 该日在待遇期内的最高身份; 为空表示不享受"
    )
    benefit: IdentityOnDate | None = strawberry.field(description="决定该日待遇的身份")
    entitled: bool = strawberry.field(description="该日是否享受医疗救助待遇")
    stay: HospitalStay | None = strawberry.field(
        description="住院周期 (指定 dischargedOn 时): 整个住院周期按最高身份享受待遇"
    )
    person_id: strawberry.Private[uuid.UUID]
    under_verification: strawberry.Private[bool]
    governing_entry: strawberry.Private[Entitlement | None]

    @strawberry.field(
        description="待遇暂停: 该人员当前有回传的异常正在核实, 核实期间暂停相关待遇 (003 §3)"
    )
    def suspended(self, info: Ctx) -> bool | None:
        return info.context.guard.release(
            "Person.underVerification", self.person_id, lambda: self.under_verification
        )

    @strawberry.field(description="查询日期所在年度的资助参保类别 (年度内锁定, 次年起按新类别)")
    async def subsidy(self, info: Ctx) -> SubsidyOnDate | None:
        context = info.context
        guard = context.guard
        if not (
            guard.permits("Person.enrollments") and guard.permits("Enrollment.subsidyCategory")
        ):
            raise Forbidden("无权读取字段 资助参保类别")
        guard.relation("Person.enrollments", self.person_id)
        year = self.on.year
        records = await _loaded(context.enrollments(self.person_id, year))
        granted = guard.release(
            "Enrollment.subsidyCategory", self.person_id, lambda: subsidised_category(records)
        )
        subsidy = subsidy_for_year(year, granted, self.governing_entry)
        return SubsidyOnDate(
            year=year,
            category=_category(subsidy.category),
            locked=subsidy.locked,
            next_year_category=_category(subsidy.next_year_category),
            changes_next_year=subsidy.changes_next_year,
            rule=SUBSIDY_TEXT,
        )


async def effective_relief(
    person: PersonRow, context: RequestContext, on: date, discharged_on: date | None
) -> EffectiveRelief:
    """The resolver of ``Person.effectiveRelief``: guard, load in batches, apply the rules."""
    context.guard.relation("Person.effectiveRelief", person.id)
    if discharged_on is not None:
        check_stay(on, discharged_on)  # before loading anything: BAD_USER_INPUT
    # All of the person's statuses (no activeOn): Shanxi and Anhui entitle beyond valid_to.
    records: Sequence[Any] = await _loaded(context.relief_statuses(person.id, None))
    identities = [Identity.of(record) for record in records]
    rules = context.rules
    relief = relief_on(identities, on, rules)

    def shown(entry: Entitlement | None) -> IdentityOnDate | None:
        return None if entry is None else IdentityOnDate.of(entry, on, person.id)

    listed = [IdentityOnDate.of(entry, on, person.id) for entry in relief.identities]
    stay = None
    if discharged_on is not None:
        over_stay = relief_for_stay(identities, on, discharged_on, rules)
        stay = HospitalStay(
            admitted_on=on,
            discharged_on=discharged_on,
            days=over_stay.days,
            benefit_category=_category_of(over_stay.benefit),
            benefit=shown(over_stay.benefit),
            identity_changed=over_stay.identity_changed,
            rule=STAY_TEXT,
        )
    return EffectiveRelief(
        on=on,
        province=rules.name,
        rule=province_rule_text(rules),
        ranking_rule=TIES_TEXT,
        summary=relief.summary(),
        identities=listed,
        held=[entry for entry in listed if entry.held_on],
        governing=shown(relief.governing),
        benefit_category=_category_of(relief.benefit),
        benefit=shown(relief.benefit),
        entitled=relief.benefit is not None,
        stay=stay,
        person_id=person.id,
        under_verification=bool(person.under_verification),
        governing_entry=relief.governing,
    )
