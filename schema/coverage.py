"""``coverage(regionPrefix, year)``: enrollment coverage of rural low-income and
lifted-from-poverty people against the 99% target, and the suspected non-enrolled (rule 8,
002 §1).

Granted by ``Loop.coverage``, for a region inside the caller's jurisdiction. It counts the
people the caller would list in that region: inside its row scope and tied to the region by a
place its row scope names (``people_in``: the policy compiler's predicate for the region, so a
county's figure is the same whether its own office or the city asks, docs/closed-loop.md
"Counting by place"). Figures are computed in SQL by ``gateway.loop.coverage``, each only when
selected; the non-enrolled are people, paged and resolved like ``persons``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date
from decimal import Decimal
from enum import Enum

import strawberry
from sqlalchemy import ColumnElement, and_, false, or_

from authz.compiler import in_jurisdiction, row_predicate
from gateway.domain.departments import Level
from gateway.domain.errors import BadUserInput
from gateway.loop import coverage as rules
from schema.context import RequestContext
from schema.enums import ReliefCategory
from schema.paging import PageInfo
from schema.prefetch import prefetch_people
from schema.types import Ctx, Person, as_person

_CURSOR_PREFIX = "not-enrolled:"
_LEVELS = {2: Level.PROVINCE, 4: Level.CITY, 6: Level.COUNTY}


@strawberry.enum(description="疑似未参保的原因")
class NonEnrollmentReason(Enum):
    NO_ENROLLMENT = strawberry.enum_value("NO_ENROLLMENT", description="当年无参保记录")
    SUSPENDED = strawberry.enum_value("SUSPENDED", description="暂停参保")
    TERMINATED = strawberry.enum_value("TERMINATED", description="终止参保")


@strawberry.type(description="某一救助身份类别的参保情况 (同时持有两类身份的人在两类中各计一次)")
class CategoryCoverage:
    category: ReliefCategory
    population: int = strawberry.field(description="应参保人数")
    enrolled: int = strawberry.field(description="正常参保人数")
    rate: Decimal | None = strawberry.field(description="参保率 (4位小数, 舍去); 无人时为空")


@strawberry.type(description="某县 (市、区) 的参保情况")
class CountyCoverage:
    region_code: str = strawberry.field(description="县级行政区划代码")
    population: int = strawberry.field(description="应参保人数")
    enrolled: int = strawberry.field(description="正常参保人数")
    rate: Decimal | None = strawberry.field(description="参保率 (4位小数, 舍去); 无人时为空")
    meets_target: bool = strawberry.field(description="达到目标参保率")


@strawberry.type(description="疑似未参保人员及原因")
class NotEnrolledPerson:
    reason: NonEnrollmentReason
    person: Person


@strawberry.type
class NotEnrolledEdge:
    cursor: str
    node: NotEnrolledPerson


@strawberry.type(description="疑似未参保人员分页结果 (按人员编号)")
class NotEnrolledConnection:
    edges: list[NotEnrolledEdge]
    page_info: PageInfo
    counter: strawberry.Private[rules.CoverageCounter]

    @strawberry.field(description="疑似未参保总人数")
    async def total_count(self) -> int:
        return await self.counter.count_not_enrolled()


@strawberry.type(description="参保率: 农村低收入人口和脱贫人口参保率稳定在99%以上 (002 §1)")
class Coverage:
    region_prefix: str = strawberry.field(description="行政区划代码前缀")
    year: int = strawberry.field(description="参保年度")
    reference_date: date = strawberry.field(
        description="身份认定的基准日: 该年12月31日, 当年为今天"
    )
    target: Decimal = strawberry.field(description="目标参保率")
    population: int = strawberry.field(
        description="应参保人数: 基准日持有统计类别身份且未死亡的人 (每人计一次)"
    )
    enrolled: int = strawberry.field(description="其中该年度正常参保的人数")
    rate: Decimal | None = strawberry.field(description="参保率 (4位小数, 舍去); 无人时为空")
    meets_target: bool = strawberry.field(description="达到目标参保率 (按精确比例判断)")
    counter: strawberry.Private[rules.CoverageCounter]

    @strawberry.field(description="按救助身份类别")
    async def by_category(self) -> list[CategoryCoverage]:
        return [
            CategoryCoverage(
                category=ReliefCategory[category],
                population=tally.population,
                enrolled=tally.enrolled,
                rate=tally.rate(),
            )
            for category, tally in await self.counter.by_category()
        ]

    @strawberry.field(description="按县 (市、区)")
    async def by_county(self) -> list[CountyCoverage]:
        return [
            CountyCoverage(
                region_code=county,
                population=tally.population,
                enrolled=tally.enrolled,
                rate=tally.rate(),
                meets_target=tally.meets(self.target),
            )
            for county, tally in await self.counter.by_county()
        ]

    @strawberry.field(description="疑似未参保人员 (需跟进): 当年无参保记录、暂停或终止参保")
    async def not_enrolled(
        self, info: Ctx, first: int = 50, after: str | None = None
    ) -> NotEnrolledConnection:
        context = info.context
        if first < 0 or first > context.max_page_size:
            raise BadUserInput(f"first 应在 0 到 {context.max_page_size} 之间")
        position = _decode_cursor(after) if after else None
        found, has_next = await self.counter.not_enrolled(first=first, after=position)
        rows = await context.people.by_ids([person_id for person_id, _ in found]) if found else {}
        people = [rows[person_id][0] for person_id, _ in found if person_id in rows]
        await prefetch_people(context, info._raw_info, people, path=("edges", "node", "person"))
        edges = [
            NotEnrolledEdge(
                cursor=_encode_cursor(person_id),
                node=NotEnrolledPerson(
                    reason=NonEnrollmentReason(reason.value),
                    person=as_person(rows[person_id][0]),
                ),
            )
            for person_id, reason in found
            if person_id in rows
        ]
        return NotEnrolledConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            counter=self.counter,
        )


def _encode_cursor(person_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + person_id.hex).encode()).decode()


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(raw)
        return uuid.UUID(hex=raw[len(_CURSOR_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("分页游标 after 无效, 请使用上一页返回的 endCursor") from None


async def coverage(info: Ctx, region_prefix: str, year: int) -> Coverage | None:
    context = info.context
    context.guard.require_operation("Loop.coverage")
    prefix = rules.check_region_prefix(region_prefix, context.principal.region)
    day = rules.reference_date(year, context.today)
    # Counts of people in the caller's scope are person data for the audit log.
    context.guard.touched_person_data = True
    counter = rules.CoverageCounter(
        context.people.execute,
        _people_in(context),
        region_prefix=prefix,
        year=year,
        reference_date=day,
        categories=context.rules.coverage_categories,
    )
    totals = await counter.totals()
    target = context.rules.coverage_target
    return Coverage(
        region_prefix=prefix,
        year=year,
        reference_date=day,
        target=target,
        population=totals.population,
        enrolled=totals.enrolled,
        rate=totals.rate(),
        meets_target=totals.meets(target),
        counter=counter,
    )


def _people_in(context: RequestContext) -> rules.PeopleIn:
    """The caller's people of a region inside its jurisdiction: its own row scope compiled for
    that region (the rows an office of the same department and list there would see), and
    tied to the region by a place a row scope names. The second half leaves out anyone the
    scope admits otherwise (a person seen only as the department reported them): the figures
    are computed from the person's own records, which only a place opens."""
    principal, decision, today = context.principal, context.guard.decision, context.today
    department = principal.department.value
    named = sorted({condition.places for condition in decision.row_conditions}, key=sorted)

    def people_in(region: str) -> ColumnElement[bool]:
        if not named or not region.startswith(principal.region):
            return false()
        level = _LEVELS[len(region)]
        scope = row_predicate(
            decision, department=department, level=level, region=region, today=today
        )
        tied = [in_jurisdiction(places, department, level, region, today) for places in named]
        return and_(scope, or_(*tied))

    return people_in
