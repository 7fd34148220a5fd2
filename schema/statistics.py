"""``statistics``: aggregates without person data (共享统计, DOMAIN.md rule 11, 000 §5).

Granted by the operation ``Statistics.read`` alone: a subject with no person-level access
(big_data) may use it. The figures cover the caller's jurisdiction (``regionPrefix`` narrows
it), every count of people from 1 to 4 is published as null with ``suppressed: true``, and
secondary suppression keeps totals from giving a suppressed cell away; see
``gateway.loop.statistics``. Reading statistics touches no person, so it writes no audit entry.

    query {
      statistics(groupBy: COUNTY) {
        reliefPeople(on: "2026-11-01") { regionCode category count suppressed }
        sharing(from: "2026-01-01", to: "2026-11-30") {
          reads { department month requests personTimes }
        }
      }
    }
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry

from gateway.domain.departments import Level
from gateway.loop import statistics as aggregates
from schema.enums import Department, ReliefCategory, TaskKind
from schema.types import Ctx


@strawberry.enum(description="统计的区域层级 (最细到县级)")
class RegionLevel(Enum):
    PROVINCE = strawberry.enum_value("province", description="按省")
    CITY = strawberry.enum_value("city", description="按市")
    COUNTY = strawberry.enum_value("county", description="按县(市、区)")


@strawberry.type(description="各救助类别人数 (按地区; category 为空的行是该地区持有任一身份的人数)")
class ReliefPeopleCell:
    region_code: str = strawberry.field(description="行政区划代码")
    category: ReliefCategory | None = strawberry.field(
        description="救助身份类别; 为空表示合计 (同时持有多个身份的人只计一次)"
    )
    count: int | None = strawberry.field(description="人数; 被抑制时为空")
    suppressed: bool = strawberry.field(description="小于最小发布人数 (或为防推算) 而不发布")


@strawberry.type(description="高额费用预警人数 (按地区、预警规则、月份)")
class WarningCell:
    region_code: str = strawberry.field(description="行政区划代码")
    rule: str | None = strawberry.field(description="预警规则代码; 为空表示任一规则 (按人计)")
    month: str | None = strawberry.field(description="月份 YYYY-MM; 为空表示全年合计")
    count: int | None = strawberry.field(description="预警人数; 被抑制时为空")
    suppressed: bool = strawberry.field(description="小于最小发布人数 (或为防推算) 而不发布")


@strawberry.type(description="推送任务办理情况 (按地区、承办部门、任务类型)")
class TaskCell:
    region_code: str = strawberry.field(description="行政区划代码")
    department: Department = strawberry.field(description="承办 (须反馈) 的部门")
    kind: TaskKind | None = strawberry.field(description="任务类型; 为空表示该部门合计")
    open: int | None = strawberry.field(description="未办结任务数; 被抑制时为空")
    open_suppressed: bool
    overdue: int | None = strawberry.field(description="其中已超期的任务数; 被抑制时为空")
    overdue_suppressed: bool
    delivered: int | None = strawberry.field(
        description="其中已送达部门业务系统的任务数 (回执); 被抑制时为空"
    )
    delivered_suppressed: bool
    read: int | None = strawberry.field(description="其中承办部门已查阅的任务数; 被抑制时为空")
    read_suppressed: bool


@strawberry.type(description="一个地区的参保覆盖情况")
class CoverageCell:
    region_code: str = strawberry.field(description="行政区划代码")
    population: int | None = strawberry.field(
        description="应参保人数 (监测类别持有人); 被抑制时为空"
    )
    population_suppressed: bool
    enrolled: int | None = strawberry.field(description="已正常参保人数; 被抑制时为空")
    enrolled_suppressed: bool
    not_enrolled: int | None = strawberry.field(description="疑似未参保人数; 被抑制时为空")
    not_enrolled_suppressed: bool
    rate: Decimal | None = strawberry.field(
        description="参保率 (四位小数, 向下取整); 人数被抑制时为空"
    )
    meets_target: bool | None = strawberry.field(description="是否达到目标; 人数被抑制时为空")


@strawberry.type(description="农村低收入人口和脱贫人口参保覆盖率 (002 §1)")
class CoverageStatistics:
    year: int
    reference_date: date = strawberry.field(
        description="认定身份的统计日 (往年为 12 月 31 日, 当年为今天)"
    )
    target: Decimal = strawberry.field(description="目标参保率")
    regions: list[CoverageCell]


@strawberry.type(description="数据使用: 某部门某月共享次数与共享人次")
class SharingReadCell:
    department: Department = strawberry.field(description="读取数据的部门")
    month: str = strawberry.field(description="月份 YYYY-MM (北京时间)")
    requests: int = strawberry.field(description="共享次数: 返回了人员数据的查询次数")
    person_times: int = strawberry.field(description="共享人次: 各次查询返回的人数之和")


@strawberry.type(description="数据提供: 某部门某月报送的批次和行数")
class DataProvidedCell:
    department: Department = strawberry.field(description="报送部门")
    month: str = strawberry.field(description="月份 YYYY-MM (北京时间)")
    batches: int = strawberry.field(description="批次数 (文件导入和实时推送)")
    rows_received: int = strawberry.field(description="报送行数")
    rows_accepted: int = strawberry.field(description="接收行数")


@strawberry.type(description="推送送达: 某部门某月收到的推送次数与人次")
class SharingPushCell:
    department: Department = strawberry.field(description="接收推送的部门")
    month: str = strawberry.field(description="月份 YYYY-MM (北京时间, 按送达时刻)")
    deliveries: int = strawberry.field(description="送达次数: 成功投递到其业务系统的推送")
    person_times: int = strawberry.field(description="推送人次: 这些推送涉及的人数之和")


@strawberry.type(description="共享运行情况 (000 §5): 请求和行数, 不含人员信息, 不做抑制")
class SharingStatistics:
    reads: list[SharingReadCell] = strawberry.field(
        description="读取方 (辖区在统计范围内) 的共享次数和共享人次"
    )
    provided: list[DataProvidedCell] = strawberry.field(description="各部门报送的数据")
    pushes: list[SharingPushCell] = strawberry.field(
        description="推送送达各部门业务系统的次数和人次 (Webhook 投递成功; 按接收部门)"
    )


@strawberry.type(
    description="只含汇总数的统计; 1 至 4 人的格子不发布 (suppressed), 并做防推算的二次抑制"
)
class Statistics:
    region_prefix: str = strawberry.field(description="统计范围 (行政区划代码前缀)")
    group_by: RegionLevel = strawberry.field(description="分组层级")
    min_cell_size: int = strawberry.field(description="最小发布人数: 少于此数的格子不发布")
    figures: strawberry.Private[aggregates.Statistics]

    @strawberry.field(description="各救助类别持有人数, 按地区 × 类别, 另有各地区合计")
    async def relief_people(
        self,
        on: Annotated[date | None, strawberry.argument(description="统计日, 默认今天")] = None,
    ) -> list[ReliefPeopleCell]:
        cells = await self.figures.relief_people(on)
        return [
            ReliefPeopleCell(
                region_code=cell.region_code,
                category=ReliefCategory[cell.category] if cell.category else None,
                count=cell.people.value,
                suppressed=cell.people.suppressed,
            )
            for cell in cells
        ]

    @strawberry.field(
        description="高额费用预警人数, 按地区 × 规则 × 月份; 另有各规则全年合计和各地区合计"
    )
    async def warnings(
        self,
        year: int,
        month: Annotated[
            str | None, strawberry.argument(description="只统计该月 (YYYY-MM, 须在 year 内)")
        ] = None,
    ) -> list[WarningCell]:
        cells = await self.figures.warnings(year, month)
        return [
            WarningCell(
                region_code=cell.region_code,
                rule=cell.rule,
                month=cell.month,
                count=cell.people.value,
                suppressed=cell.people.suppressed,
            )
            for cell in cells
        ]

    @strawberry.field(description="未办结和超期的推送任务数, 按地区 × 承办部门 × 类型")
    async def tasks(self) -> list[TaskCell]:
        return [
            TaskCell(
                region_code=cell.region_code,
                department=Department(cell.department),
                kind=TaskKind[cell.kind] if cell.kind else None,
                open=cell.open.value,
                open_suppressed=cell.open.suppressed,
                overdue=cell.overdue.value,
                overdue_suppressed=cell.overdue.suppressed,
                delivered=cell.delivered.value,
                delivered_suppressed=cell.delivered.suppressed,
                read=cell.read.value,
                read_suppressed=cell.read.suppressed,
            )
            for cell in await self.figures.tasks()
        ]

    @strawberry.field(description="参保覆盖率, 按地区")
    async def coverage(self, year: int) -> CoverageStatistics:
        found = await self.figures.coverage(year)
        return CoverageStatistics(
            year=found.year,
            reference_date=found.reference_date,
            target=found.target,
            regions=[
                CoverageCell(
                    region_code=cell.region_code,
                    population=cell.population.value,
                    population_suppressed=cell.population.suppressed,
                    enrolled=cell.enrolled.value,
                    enrolled_suppressed=cell.enrolled.suppressed,
                    not_enrolled=cell.not_enrolled.value,
                    not_enrolled_suppressed=cell.not_enrolled.suppressed,
                    rate=cell.rate,
                    meets_target=cell.meets_target,
                )
                for cell in found.regions
            ],
        )

    @strawberry.field(description="共享次数、共享人次和数据报送量, 按部门 × 月份 (日期含首尾)")
    async def sharing(
        self,
        from_: Annotated[date, strawberry.argument(name="from", description="起始日 (含)")],
        to: Annotated[date, strawberry.argument(description="截止日 (含)")],
    ) -> SharingStatistics:
        found = await self.figures.sharing(from_, to)
        return SharingStatistics(
            reads=[
                SharingReadCell(
                    department=Department(row.department),
                    month=row.month,
                    requests=row.requests,
                    person_times=row.person_times,
                )
                for row in found.reads
            ],
            pushes=[
                SharingPushCell(
                    department=Department(row.department),
                    month=row.month,
                    deliveries=row.deliveries,
                    person_times=row.person_times,
                )
                for row in found.pushes
            ],
            provided=[
                DataProvidedCell(
                    department=Department(row.department),
                    month=row.month,
                    batches=row.batches,
                    rows_received=row.rows_received,
                    rows_accepted=row.rows_accepted,
                )
                for row in found.provided
            ],
        )


async def statistics(
    info: Ctx,
    region_prefix: Annotated[
        str | None,
        strawberry.argument(
            description="统计范围: 本辖区内的省、市或县级代码 (2、4、6 位), 默认本辖区"
        ),
    ] = None,
    group_by: Annotated[
        RegionLevel, strawberry.argument(description="分组层级, 不能粗于统计范围")
    ] = RegionLevel.COUNTY,
) -> Statistics:
    """Gated by ``Statistics.read`` only: no row policy, no person field."""
    context = info.context
    context.guard.require_operation("Statistics.read")
    scope = aggregates.statistics_scope(
        context.principal.region, region_prefix, Level(str(group_by.value))
    )
    return Statistics(
        region_prefix=scope.published,
        group_by=group_by,
        min_cell_size=context.rules.min_cell_size,
        figures=aggregates.Statistics(
            context.people.execute,
            dialect=context.engine.dialect.name,
            scope=scope,
            rules=context.rules,
            today=context.today,
        ),
    )
