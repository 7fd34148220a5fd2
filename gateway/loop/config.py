"""The province rules as data: ``gateway/data/rules.toml``, overridable per deployment.

Loaded and validated once at start-up (``load_rules``): an unknown category, a province
without warnings, a threshold that is not a positive number refuse to start, naming the key.
The services in ``gateway.loop`` take a :class:`ProvinceRules` and nothing else, so a test can
run any province's rules on any date.

    rules = load_rules(Province.ANHUI)
    rules.rank("MINIMUM_LIVING") < rules.rank("LIFTED_FROM_POVERTY")   # lower = higher rank
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.domain.departments import RELIEF_CATEGORIES, Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import Province


class BenefitDates(StrEnum):
    SOURCE_DATES = "source_dates"  # 001 §2 (Shandong): the source department's dates
    LIST_DATE = "list_date"  # 000 §2 (Shanxi): from the day the list is provided
    NEXT_MONTH = "next_month"  # 004 §3 (Anhui, from 2026): the month after recognition/exit


class Measure(StrEnum):
    PERSONAL_BURDEN = "personal_burden"  # 年度个人累计负担 (after basic and critical insurance)
    INPATIENT_COUNT = "inpatient_count"  # 年度住院次数


class Population(StrEnum):
    HOLDERS = "holders"  # people holding one of the categories on the month's last day
    NONE_OF = "none_of"  # people holding none of them ("ordinary insured people")


@dataclass(frozen=True, slots=True)
class WarningRule:
    """One monitoring threshold. Exactly one of ``amount`` / ``share_of_income`` (exceeds,
    strictly greater) or ``at_least`` (a count reaching it) is set."""

    rule: str
    description: str
    measure: Measure
    population: Population
    categories: frozenset[str]
    attention: Level  # which level must pay attention (004 §2: city for 3 stays, province for 5)
    push_to: tuple[Department, ...]
    amount: Decimal | None = None
    share_of_income: Decimal | None = None
    at_least: int | None = None

    def threshold(self, income: Decimal | None) -> Decimal:
        """The figure a person's measure is compared with, for a year whose previous-year
        per-capita income is ``income`` (needed only by share-of-income rules)."""
        if self.amount is not None:
            return self.amount
        if self.at_least is not None:
            return Decimal(self.at_least)
        assert self.share_of_income is not None
        if income is None:
            raise ConfigurationError(f"预警规则 {self.rule} 需要上年全省居民人均可支配收入")
        return (self.share_of_income * income).quantize(Decimal("0.01"))

    @property
    def strict(self) -> bool:
        """Whether the comparison is "exceeds" (>) rather than "at least" (>=)."""
        return self.at_least is None


@dataclass(frozen=True, slots=True)
class ProvinceRules:
    province: Province
    name: str
    code: str  # GB/T 2260 province code: a run touches only this province's people
    ranking: Mapping[str, int]  # category -> tier, 0 highest
    benefit_dates: BenefitDates
    warnings: tuple[WarningRule, ...]
    per_capita_income: Mapping[int, Decimal] = field(default_factory=dict)
    next_month_rule_from: date | None = None
    lookback_months: int = 0
    lookback_categories: frozenset[str] = frozenset()
    task_working_days: int = 5
    due_soon_working_days: int = 2
    coverage_target: Decimal = Decimal("0.99")
    coverage_categories: frozenset[str] = frozenset()
    min_cell_size: int = 5

    def rank(self, category: str) -> int:
        """The tier of ``category``: lower is higher (0 = 特困人员 by default)."""
        return self.ranking[category]

    def income_for_warning_year(self, year: int) -> Decimal:
        """The previous year's per-capita disposable income a warning in ``year`` is measured
        against (001 §4: 全省上年居民人均可支配收入)."""
        try:
            return self.per_capita_income[year - 1]
        except KeyError:
            raise ConfigurationError(
                f"缺少 {year - 1} 年全省居民人均可支配收入, 无法计算 {year} 年的预警标准; "
                f"请在 RELIEF_RULES_FILE 的 [provinces.{self.province.value}."
                f'per_capita_disposable_income] 中配置 {year - 1} = "金额"'
            ) from None

    def needs_income(self) -> bool:
        return any(rule.share_of_income is not None for rule in self.warnings)


def load_rules(province: Province, override: Path | None = None) -> ProvinceRules:
    """The shipped rules for ``province``, with ``override`` (RELIEF_RULES_FILE) merged in."""
    shipped = resources.files("gateway.data").joinpath("rules.toml").read_text("utf-8")
    data = tomllib.loads(shipped)
    if override is not None:
        try:
            extra = tomllib.loads(override.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"规则文件 {override} 无法读取: {exc}") from None
        data = _merge(data, extra)
    try:
        return _province_rules(data, province)
    except ConfigurationError as exc:
        where = f"{override} 或内置规则" if override else "内置规则 gateway/data/rules.toml"
        raise ConfigurationError(f"{where}: {exc}") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (values, arrays of tables) is replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _province_rules(data: Mapping[str, Any], province: Province) -> ProvinceRules:
    ranking = _ranking(data.get("ranking"))
    provinces = data.get("provinces", {})
    section = provinces.get(province.value)
    if not isinstance(section, dict):
        raise ConfigurationError(f"没有省份 {province.value} 的规则 ([provinces.{province.value}])")
    key = f"provinces.{province.value}"
    code = section.get("code")
    if not (isinstance(code, str) and len(code) == 2 and code.isdigit()):
        raise ConfigurationError(f'{key}.code 应为两位省级行政区划代码, 如 "37"')
    try:
        benefit_dates = BenefitDates(str(section.get("benefit_dates")))
    except ValueError:
        raise ConfigurationError(
            f"{key}.benefit_dates 应为 {', '.join(b.value for b in BenefitDates)}"
        ) from None
    warnings = tuple(
        _warning(f"{key}.warnings[{i}]", item) for i, item in enumerate(section.get("warnings", []))
    )
    if not warnings:
        raise ConfigurationError(f"{key} 没有任何预警规则 ([[{key}.warnings]])")
    codes = [w.rule for w in warnings]
    if len(set(codes)) != len(codes):
        raise ConfigurationError(f"{key} 的预警规则代码重复")
    income = {
        _year(f"{key}.per_capita_disposable_income", year): _positive(
            f"{key}.per_capita_disposable_income.{year}", amount
        )
        for year, amount in section.get("per_capita_disposable_income", {}).items()
    }
    next_month_from = section.get("next_month_rule_from")
    if next_month_from is not None and not isinstance(next_month_from, date):
        raise ConfigurationError(f"{key}.next_month_rule_from 应为日期, 如 2026-01-01")
    if benefit_dates is BenefitDates.NEXT_MONTH and next_month_from is None:
        raise ConfigurationError(f"{key}: next_month 规则需要 next_month_rule_from")
    deadlines = data.get("deadlines", {})
    coverage = data.get("coverage", {})
    statistics = data.get("statistics", {})
    task_days = deadlines.get("task_working_days", 5)
    if not isinstance(task_days, int) or not 1 <= task_days <= 60:
        raise ConfigurationError("deadlines.task_working_days 应为 1 到 60 的整数")
    due_soon = deadlines.get("due_soon_working_days", 2)
    if not isinstance(due_soon, int) or not 1 <= due_soon <= task_days:
        raise ConfigurationError(
            "deadlines.due_soon_working_days 应为 1 到 task_working_days 的整数"
        )
    target = _positive("coverage.target", coverage.get("target", "0.99"))
    if target > 1:
        raise ConfigurationError('coverage.target 应不大于 1 (如 "0.99")')
    min_cell = statistics.get("min_cell_size", 5)
    if not isinstance(min_cell, int) or min_cell < 1:
        raise ConfigurationError("statistics.min_cell_size 应为正整数")
    lookback = section.get("lookback_months", 0)
    if not isinstance(lookback, int) or not 0 <= lookback <= 24:
        raise ConfigurationError(f"{key}.lookback_months 应为 0 到 24 的整数")
    return ProvinceRules(
        province=province,
        name=str(section.get("name", province.value)),
        code=code,
        ranking=ranking,
        benefit_dates=benefit_dates,
        warnings=warnings,
        per_capita_income=income,
        next_month_rule_from=next_month_from,
        lookback_months=lookback,
        lookback_categories=_categories(
            f"{key}.lookback_categories", section.get("lookback_categories", [])
        ),
        task_working_days=task_days,
        due_soon_working_days=due_soon,
        coverage_target=target,
        coverage_categories=_categories("coverage.categories", coverage.get("categories", [])),
        min_cell_size=min_cell,
    )


def _ranking(tiers: Any) -> dict[str, int]:
    if not isinstance(tiers, list) or not all(isinstance(t, list) for t in tiers):
        raise ConfigurationError("ranking 应为类别列表的列表 (从高到低)")
    ranking: dict[str, int] = {}
    for tier, categories in enumerate(tiers):
        for category in categories:
            if category not in RELIEF_CATEGORIES:
                raise ConfigurationError(f"ranking 中有未知的救助类别 {category!r}")
            if category in ranking:
                raise ConfigurationError(f"ranking 中类别 {category} 出现了两次")
            ranking[category] = tier
    missing = RELIEF_CATEGORIES - ranking.keys()
    if missing:
        raise ConfigurationError(f"ranking 缺少类别: {', '.join(sorted(missing))}")
    return ranking


def _warning(key: str, item: Any) -> WarningRule:
    if not isinstance(item, dict):
        raise ConfigurationError(f"{key} 应为表")
    rule = item.get("rule")
    if not isinstance(rule, str) or not rule.replace("_", "").isalnum() or not rule.isupper():
        raise ConfigurationError(f"{key}.rule 应为大写英文代码, 如 SHANXI_OTHERS_20000")
    try:
        measure = Measure(str(item.get("measure")))
        population = Population(str(item.get("population")))
        attention = Level(str(item.get("attention")))
        push_to = tuple(Department(d) for d in item.get("push_to", []))
    except ValueError as exc:
        raise ConfigurationError(f"{key}: {exc}") from None
    if not push_to:
        raise ConfigurationError(f"{key}.push_to 至少要有一个部门")
    thresholds = [name for name in ("amount", "share_of_income", "at_least") if name in item]
    if len(thresholds) != 1:
        raise ConfigurationError(f"{key} 应恰好设置 amount、share_of_income、at_least 之一")
    at_least = item.get("at_least")
    if at_least is not None and (not isinstance(at_least, int) or at_least < 1):
        raise ConfigurationError(f"{key}.at_least 应为正整数")
    if at_least is not None and measure is not Measure.INPATIENT_COUNT:
        raise ConfigurationError(f"{key}: at_least 只用于住院次数 (inpatient_count)")
    if at_least is None and measure is Measure.INPATIENT_COUNT and "share_of_income" in item:
        raise ConfigurationError(f"{key}: 住院次数不能按收入比例设置标准")
    description = item.get("description")
    if not isinstance(description, str) or not description:
        raise ConfigurationError(f"{key}.description 不能为空")
    return WarningRule(
        rule=rule,
        description=description,
        measure=measure,
        population=population,
        categories=_categories(f"{key}.categories", item.get("categories", [])),
        attention=attention,
        push_to=push_to,
        amount=_positive(f"{key}.amount", item["amount"]) if "amount" in item else None,
        share_of_income=(
            _positive(f"{key}.share_of_income", item["share_of_income"])
            if "share_of_income" in item
            else None
        ),
        at_least=at_least,
    )


def _categories(key: str, values: Any) -> frozenset[str]:
    if not isinstance(values, list):
        raise ConfigurationError(f"{key} 应为类别列表")
    unknown = sorted(set(values) - RELIEF_CATEGORIES)
    if unknown:
        raise ConfigurationError(f"{key} 中有未知的救助类别: {', '.join(unknown)}")
    return frozenset(values)


def _positive(key: str, value: Any) -> Decimal:
    # Money and shares are strings in the file ("0.5", "39890"): a float would round.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationError(f'{key} 应写成字符串形式的数字, 如 "6000"')
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(f"{key} 不是数字: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ConfigurationError(f"{key} 应为正数: {value!r}")
    return number


def _year(key: str, value: str) -> int:
    if not (value.isdigit() and len(value) == 4):
        raise ConfigurationError(f"{key} 的键应为四位年份, 收到 {value!r}")
    return int(value)
