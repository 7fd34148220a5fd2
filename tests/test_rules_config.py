"""Province rules as configuration (gateway/data/rules.toml, RELIEF_RULES_FILE): the shipped
rules say what the notices say, an override replaces key by key, and a broken file refuses to
start with the key named, never a guessed default."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.domain.departments import RELIEF_CATEGORIES, Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import Province, load_settings
from gateway.loop.config import BenefitDates, Measure, Population, load_rules
from gateway.runtime.parts import Runtime

# --------------------------------------------------------------------------- shipped rules


def test_every_province_loads() -> None:
    for province in Province:
        rules = load_rules(province)
        assert rules.province is province
        assert rules.warnings
        assert set(rules.ranking) == RELIEF_CATEGORIES


def test_default_ranking_follows_domain_md() -> None:
    """特困 > 低保 > 返贫致贫 > 防止返贫监测 > 低保边缘 > 刚性支出/因病致贫 > 脱贫 (DOMAIN.md)."""
    rank = load_rules(Province.SHANDONG).rank
    order = [
        "EXTREME_POVERTY",
        "MINIMUM_LIVING",
        "RETURNED_TO_POVERTY",
        "MONITORED_UNSTABLE",
        "MINIMUM_LIVING_EDGE",
        "RIGID_EXPENDITURE",
        "LIFTED_FROM_POVERTY",
    ]
    assert [rank(c) for c in order] == sorted(rank(c) for c in order)
    assert len({rank(c) for c in order}) == len(order)
    # Ties: the three monitoring subtypes, and rigid expenditure with serious illness.
    assert rank("MONITORED_UNSTABLE") == rank("MONITORED_MARGINAL")
    assert rank("MONITORED_MARGINAL") == rank("MONITORED_SUDDEN_HARDSHIP")
    assert rank("RIGID_EXPENDITURE") == rank("SERIOUS_ILLNESS")


@pytest.mark.parametrize(
    ("province", "benefit_dates", "rules"),
    [
        (
            Province.SHANDONG,
            BenefitDates.SOURCE_DATES,
            {"SHANDONG_LOW_INCOME_50", "SHANDONG_ORDINARY_150"},
        ),
        (
            Province.SHANXI,
            BenefitDates.LIST_DATE,
            {"SHANXI_LOW_INCOME_6000", "SHANXI_OTHERS_20000"},
        ),
        (Province.ANHUI, BenefitDates.NEXT_MONTH, {"ANHUI_INPATIENT_3", "ANHUI_INPATIENT_5"}),
    ],
)
def test_each_province_has_its_notices_rules(
    province: Province, benefit_dates: BenefitDates, rules: set[str]
) -> None:
    loaded = load_rules(province)
    assert loaded.benefit_dates is benefit_dates
    assert {w.rule for w in loaded.warnings} == rules
    for warning in loaded.warnings:
        assert set(warning.push_to) <= {Department.CIVIL_AFFAIRS, Department.RURAL_REVITALIZATION}


def test_shanxi_thresholds_are_6000_and_20000_exceeded_strictly() -> None:
    by_rule = {w.rule: w for w in load_rules(Province.SHANXI).warnings}
    low, others = by_rule["SHANXI_LOW_INCOME_6000"], by_rule["SHANXI_OTHERS_20000"]
    assert (low.threshold(None), others.threshold(None)) == (Decimal(6000), Decimal(20000))
    assert low.strict
    assert others.strict
    assert low.population is Population.HOLDERS
    assert others.population is Population.NONE_OF
    assert low.categories == others.categories
    assert "LIFTED_FROM_POVERTY" in low.categories


def test_anhui_counts_stays_at_least_3_for_the_city_and_5_for_the_province() -> None:
    by_rule = {w.rule: w for w in load_rules(Province.ANHUI).warnings}
    three, five = by_rule["ANHUI_INPATIENT_3"], by_rule["ANHUI_INPATIENT_5"]
    assert (three.measure, five.measure) == (Measure.INPATIENT_COUNT, Measure.INPATIENT_COUNT)
    assert (three.threshold(None), five.threshold(None)) == (3, 5)
    assert not three.strict
    assert not five.strict
    assert (three.attention, five.attention) == (Level.CITY, Level.PROVINCE)


def test_shandong_thresholds_are_shares_of_the_previous_years_income() -> None:
    rules = load_rules(Province.SHANDONG)
    by_rule = {w.rule: w for w in rules.warnings}
    income = rules.income_for_warning_year(2024)  # 2023's figure
    assert income == Decimal("39890")
    assert by_rule["SHANDONG_LOW_INCOME_50"].threshold(income) == Decimal("19945.00")
    assert by_rule["SHANDONG_ORDINARY_150"].threshold(income) == Decimal("59835.00")
    assert rules.needs_income()


def test_a_missing_income_figure_is_refused_naming_the_key() -> None:
    rules = load_rules(Province.SHANDONG)
    with pytest.raises(ConfigurationError) as refused:
        rules.income_for_warning_year(2031)
    assert "2030" in str(refused.value)
    assert "per_capita_disposable_income" in str(refused.value)


def test_anhui_next_month_rule_and_look_back() -> None:
    rules = load_rules(Province.ANHUI)
    assert str(rules.next_month_rule_from) == "2026-01-01"
    assert rules.lookback_months == 6
    assert "MINIMUM_LIVING" in rules.lookback_categories
    assert "LIFTED_FROM_POVERTY" not in rules.lookback_categories


def test_loop_defaults() -> None:
    rules = load_rules(Province.SHANXI)
    assert (rules.task_working_days, rules.due_soon_working_days) == (5, 2)
    assert rules.coverage_target == Decimal("0.99")
    assert rules.min_cell_size == 5
    assert "LIFTED_FROM_POVERTY" in rules.coverage_categories


# --------------------------------------------------------------------------- overrides


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_override_adds_an_income_figure_and_keeps_the_rest(tmp_path: Path) -> None:
    override = write(
        tmp_path, '[provinces.shandong.per_capita_disposable_income]\n2025 = "43000"\n'
    )
    rules = load_rules(Province.SHANDONG, override)
    assert rules.income_for_warning_year(2026) == Decimal("43000")
    assert rules.income_for_warning_year(2024) == Decimal("39890")  # shipped figure kept
    assert len(rules.warnings) == 2


def test_an_override_replaces_a_provinces_warnings(tmp_path: Path) -> None:
    override = write(
        tmp_path,
        """
[[provinces.anhui.warnings]]
rule = "ANHUI_BURDEN_10000"
description = "省定标准: 个人负担超过1万元"
measure = "personal_burden"
amount = "10000"
population = "holders"
categories = ["MINIMUM_LIVING"]
attention = "county"
push_to = ["civil_affairs"]
""",
    )
    rules = load_rules(Province.ANHUI, override)
    assert [w.rule for w in rules.warnings] == ["ANHUI_BURDEN_10000"]
    assert rules.benefit_dates is BenefitDates.NEXT_MONTH


def test_an_override_changes_the_ranking(tmp_path: Path) -> None:
    tiers = [[c] for c in sorted(RELIEF_CATEGORIES)]
    body = "ranking = [" + ", ".join(f'["{t[0]}"]' for t in tiers) + "]\n"
    rules = load_rules(Province.SHANXI, write(tmp_path, body))
    assert rules.rank(sorted(RELIEF_CATEGORIES)[0]) == 0


_WARNING = """
[[provinces.shanxi.warnings]]
rule = "SHANXI_X"
description = "测试"
measure = "{measure}"
population = "holders"
categories = ["MINIMUM_LIVING"]
attention = "county"
push_to = ["civil_affairs"]
{threshold}
"""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('ranking = [["EXTREME_POVERTY", "NOT_A_CATEGORY"]]', "NOT_A_CATEGORY"),
        ('ranking = [["EXTREME_POVERTY"], ["EXTREME_POVERTY"]]', "两次"),
        ('ranking = [["EXTREME_POVERTY"]]', "缺少类别"),
        ('[provinces.shanxi]\nbenefit_dates = "whenever"', "benefit_dates"),
        ('[provinces.shanxi]\ncode = "140"', "code"),
        ("[deadlines]\ntask_working_days = 0", "task_working_days"),
        ("[deadlines]\ndue_soon_working_days = 9", "due_soon_working_days"),
        ('[coverage]\ntarget = "1.5"', "coverage.target"),
        ('[coverage]\ncategories = ["LOW"]', "coverage.categories"),
        ("[statistics]\nmin_cell_size = 0", "min_cell_size"),
        ('[provinces.shanxi.per_capita_disposable_income]\n2025 = "-1"', "2025"),
        ('[provinces.shanxi.per_capita_disposable_income]\n"25" = "1"', "四位年份"),
        ('[provinces.anhui]\nnext_month_rule_from = "soon"', "next_month_rule_from"),
        (_WARNING.format(measure="personal_burden", threshold=""), "恰好"),
        (
            _WARNING.format(measure="personal_burden", threshold='amount = "1"\nat_least = 2'),
            "恰好",
        ),
        (_WARNING.format(measure="personal_burden", threshold="at_least = 2"), "住院次数"),
        (_WARNING.format(measure="inpatient_count", threshold='share_of_income = "1"'), "收入比例"),
        (_WARNING.format(measure="cost", threshold='amount = "1"'), "cost"),
        (_WARNING.format(measure="personal_burden", threshold="amount = 0.5"), "字符串"),
        (_WARNING.format(measure="personal_burden", threshold='amount = "abc"'), "不是数字"),
        (_WARNING.format(measure="personal_burden", threshold='amount = "0"'), "正数"),
        (
            _WARNING.format(measure="personal_burden", threshold='amount = "1"').replace(
                '"SHANXI_X"', '"lower case"'
            ),
            "大写",
        ),
        (
            _WARNING.format(measure="personal_burden", threshold='amount = "1"').replace(
                '["civil_affairs"]', "[]"
            ),
            "push_to",
        ),
        (
            _WARNING.format(measure="personal_burden", threshold='amount = "1"').replace(
                '["civil_affairs"]', '["police"]'
            ),
            "police",
        ),
        ("[provinces.shanxi]\nwarnings = []", "没有任何预警规则"),
        ("this is = = not toml", "无法读取"),
    ],
)
def test_a_broken_rules_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, named: str
) -> None:
    province = Province.ANHUI if "anhui" in text else Province.SHANXI
    with pytest.raises(ConfigurationError) as refused:
        load_rules(province, write(tmp_path, text))
    assert named in str(refused.value)


def test_duplicate_rule_codes_are_refused(tmp_path: Path) -> None:
    one = _WARNING.format(measure="personal_burden", threshold='amount = "1"')
    with pytest.raises(ConfigurationError, match="重复"):
        load_rules(Province.SHANXI, write(tmp_path, one + one))


def test_an_unreadable_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="无法读取"):
        load_rules(Province.SHANXI, tmp_path / "missing.toml")


def test_the_gateway_refuses_to_start_with_a_broken_rules_file(tmp_path: Path) -> None:
    """Validated at start-up, like feed mappings: a typo never runs with a guessed rule."""
    broken = write(tmp_path, 'ranking = [["EXTREME_POVERTY"]]')
    settings = load_settings(data_dir=tmp_path, province="shanxi", rules_file=broken)
    with pytest.raises(ConfigurationError) as refused:
        Runtime.create(settings, create_keys=True)
    assert str(broken) in str(refused.value)


def test_relief_province_chooses_the_rules(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, province="anhui")
    runtime = Runtime.create(settings, create_keys=True)
    assert runtime.rules.province is Province.ANHUI
