"""Raw cells from department files → canonical values, or the reason a clerk reads.

Cases are named after what a department's file really holds: Excel number cells, full-width
input methods, thousands separators, serial dates, padded statistical region codes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import values
from adapters.values import (
    ValueProblem,
    parse_amount,
    parse_date,
    parse_id_number,
    parse_int,
    parse_label,
    parse_name,
    parse_optional_amount,
    parse_optional_date,
    parse_phone,
    parse_region_code,
    parse_year,
    text,
)
from gateway.domain import regions
from gateway.domain.id_numbers import make_id_number

TODAY = date(2026, 3, 15)
ID_NUMBER = make_id_number("370102", date(1990, 3, 7), 12)  # 370102199003070120
ID_WITH_X = "11010519491231002X"

ID_AS_NUMBER = "身份证号码被存为数字格式，后几位可能已丢失；请将该列设置为文本后重新导出"
DATE_HINT = "日期格式无法识别，请使用 2025-03-01 等格式"
REGION_SHAPE = "行政区划代码应为6、9或12位数字"
NOT_COUNTY = "行政区划代码应精确到县级"


def reason_of(parse: Callable[[], object]) -> str:
    with pytest.raises(ValueProblem) as caught:
        parse()
    return caught.value.reason


def test_value_problem_carries_its_reason() -> None:
    problem = ValueProblem("金额不能为负数")
    assert problem.reason == "金额不能为负数"
    assert str(problem) == "金额不能为负数"


# -- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param(" \t\u3000\n", None, id="whitespace-only"),
        pytest.param("\ufeff张三 ", "张三", id="bom-and-space"),
        pytest.param("  历下区  ", "历下区", id="strip-only"),
        pytest.param("１２３", "１２３", id="not-nfkc-folded"),
        pytest.param(370102, "370102", id="int-from-xlsx"),
        pytest.param(13812345678.0, "13812345678", id="integral-float"),
        pytest.param(1234.5, "1234.5", id="fractional-float"),
        pytest.param(date(2025, 3, 1), "2025-03-01", id="date"),
        pytest.param(datetime(2025, 3, 1), "2025-03-01", id="midnight-datetime"),
        pytest.param(datetime(2025, 3, 1, 8, 30), "2025-03-01 08:30:00", id="datetime"),
    ],
)
def test_text(raw: object, expected: str | None) -> None:
    assert text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(True, "单元格是逻辑值（TRUE/FALSE），请填写实际内容", id="bool"),
        pytest.param(float("nan"), "单元格内容不是有效数字", id="nan"),
        pytest.param(object(), "单元格内容无法识别", id="other-type"),
    ],
)
def test_text_refuses_cells_no_column_expects(raw: object, reason: str) -> None:
    assert reason_of(lambda: text(raw)) == reason


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(" 张三 ", "张三", id="stripped"),
        pytest.param("欧阳  娜娜", "欧阳 娜娜", id="inner-whitespace-collapsed"),
        pytest.param("阿依古丽·买买提", "阿依古丽·买买提", id="middle-dot-u00b7"),
        pytest.param("阿依古丽•买买提", "阿依古丽·买买提", id="bullet-u2022"),
        pytest.param("阿依古丽・买买提", "阿依古丽·买买提", id="katakana-dot-u30fb"),
        pytest.param("阿依古丽･买买提", "阿依古丽·买买提", id="halfwidth-dot-uff65"),
        pytest.param("阿依古丽‧买买提", "阿依古丽·买买提", id="hyphenation-point-u2027"),
        pytest.param("阿依古丽 · 买买提", "阿依古丽·买买提", id="spaces-around-dot"),
        pytest.param("\uf900", "\uf900", id="compatibility-ideograph-kept"),
        pytest.param("王" * 50, "王" * 50, id="50-characters"),
    ],
)
def test_parse_name(raw: str, expected: str) -> None:
    assert parse_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "姓名不能为空", id="none"),
        pytest.param("  ", "姓名不能为空", id="blank"),
        pytest.param("张三2", "姓名不应包含数字", id="ascii-digit"),
        pytest.param("张三２", "姓名不应包含数字", id="full-width-digit"),
        pytest.param(370102, "姓名不应包含数字", id="number-cell"),
        pytest.param("王" * 51, "姓名不能超过50个字符", id="51-characters"),
    ],
)
def test_parse_name_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_name(raw)) == reason


# -- ID numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(ID_NUMBER, ID_NUMBER, id="canonical"),
        pytest.param(" 11010519491231002x ", ID_WITH_X, id="lower-case-x"),
        pytest.param("１１０１０５１９４９１２３１００２Ｘ", ID_WITH_X, id="full-width"),
        pytest.param("110105 19491231 002X", ID_WITH_X, id="spaces-inside"),
    ],
)
def test_parse_id_number(raw: str, expected: str) -> None:
    assert parse_id_number(raw, today=TODAY) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "身份证号码不能为空", id="none"),
        pytest.param("", "身份证号码不能为空", id="empty"),
        # What openpyxl hands over for an ID typed into a "General" cell: Excel kept 15
        # significant digits, so the last three are gone.
        pytest.param(float(ID_NUMBER), ID_AS_NUMBER, id="18-digit-float-from-excel"),
        pytest.param(370102199003070000, ID_AS_NUMBER, id="18-digit-int-from-excel"),
        pytest.param(int(ID_NUMBER), ID_AS_NUMBER, id="even-an-intact-int"),
        pytest.param("3.70102199003070E+17", ID_AS_NUMBER, id="scientific-text-in-csv"),
        pytest.param("370102900307012", "身份证号码无效：长度应为18位", id="15-digit-old-style"),
        pytest.param("370102199003070121", "身份证号码无效：校验位错误", id="check-digit"),
        pytest.param(
            make_id_number("370102", date(2026, 3, 16), 12),
            "身份证号码无效：出生日期无效",
            id="born-after-today",
        ),
    ],
)
def test_parse_id_number_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_id_number(raw, today=TODAY)) == reason


# -- dates -----------------------------------------------------------------------------------

MARCH_1 = date(2025, 3, 1)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("2025-03-01", id="iso"),
        pytest.param("2025-3-1", id="iso-short"),
        pytest.param("2025/3/1", id="slashes"),
        pytest.param("2025/03/01", id="slashes-padded"),
        pytest.param("2025.3.1", id="dots"),
        pytest.param("20250301", id="compact"),
        pytest.param("2025年3月1日", id="chinese"),
        pytest.param("2025年03月01日", id="chinese-padded"),
        pytest.param("2025-03-01 00:00:00", id="with-time"),
        pytest.param("2025/3/1 0:00", id="with-short-time"),
        pytest.param("2025-03-01T08:30:00.123", id="iso-datetime"),
        pytest.param("２０２５－０３－０１", id="full-width"),
        pytest.param("２０２５年３月１日", id="full-width-chinese"),
        pytest.param(" 2025-03-01\n", id="stripped"),
        pytest.param(MARCH_1, id="date-object"),
        pytest.param(datetime(2025, 3, 1, 14, 5), id="datetime-object"),
        pytest.param(20250301, id="yyyymmdd-number-cell"),
        pytest.param(45717, id="excel-serial"),
        pytest.param(45717.0, id="excel-serial-float"),
        pytest.param(45717.99, id="excel-serial-with-time"),
    ],
)
def test_parse_date_accepts(raw: object) -> None:
    assert parse_date(raw) == MARCH_1


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        # Serials count the non-existent 1900-02-29 (Lotus bug), hence day 0 = 1899-12-30.
        pytest.param(3000, date(1908, 3, 18), id="window-start"),
        pytest.param(14732, date(1940, 5, 1), id="birth-date-of-an-elderly-person"),
        pytest.param(36526, date(2000, 1, 1), id="y2k"),
        pytest.param(46357, date(2026, 12, 1), id="2026-12-01"),
        pytest.param(80000, date(2119, 1, 11), id="window-end"),
    ],
)
def test_excel_serial_dates(serial: int, expected: date) -> None:
    assert parse_date(serial) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "日期不能为空", id="none"),
        pytest.param("2025-02-30", "日期无效：2025年2月只有28天，没有30日", id="february-30"),
        pytest.param("2024年2月30日", "日期无效：2024年2月只有29天，没有30日", id="leap-year"),
        pytest.param("20250431", "日期无效：2025年4月只有30天，没有31日", id="april-31"),
        pytest.param("2025-13-01", "日期无效：月份应为1至12，不能为13", id="month-13"),
        pytest.param("2025-00-10", "日期无效：月份应为1至12，不能为0", id="month-0"),
        pytest.param("2025-03-00", "日期无效：2025年3月只有31天，没有0日", id="day-0"),
        pytest.param(20250230, "日期无效：2025年2月只有28天，没有30日", id="number-feb-30"),
        pytest.param("2025-3/1", DATE_HINT, id="mixed-separators"),
        pytest.param("25-3-1", DATE_HINT, id="two-digit-year"),
        pytest.param("2025-03-01 25:00", DATE_HINT, id="bad-time"),
        pytest.param("2025-03-01 上午", DATE_HINT, id="trailing-text"),
        pytest.param("2025年3月", DATE_HINT, id="month-only"),
        pytest.param("3/1/2025", DATE_HINT, id="us-order"),
        pytest.param("٢٠٢٥-٠٣-٠١", DATE_HINT, id="arabic-indic-digits"),
        pytest.param("45717", DATE_HINT, id="serial-as-text"),
        pytest.param(2025, DATE_HINT, id="year-number-below-window"),
        pytest.param(2100, DATE_HINT, id="last-year-number"),
        pytest.param(67, DATE_HINT, id="an-age"),
        pytest.param(2999, DATE_HINT, id="serial-below-window"),
        pytest.param(80001, DATE_HINT, id="serial-above-window"),
        pytest.param(202503, DATE_HINT, id="yyyymm-number"),
    ],
)
def test_parse_date_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_date(raw)) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param(" ", None, id="blank"),
        pytest.param("2025/3/1", MARCH_1, id="text"),
        pytest.param(MARCH_1, MARCH_1, id="date"),
        pytest.param(45717, MARCH_1, id="serial"),
    ],
)
def test_parse_optional_date(raw: object, expected: date | None) -> None:
    assert parse_optional_date(raw) == expected


def test_parse_optional_date_still_rejects_bad_dates() -> None:
    assert reason_of(lambda: parse_optional_date("2025-02-30")).startswith("日期无效：")


DATE_FORMATS: list[Callable[[date], str]] = [
    lambda d: d.isoformat(),
    lambda d: f"{d.year}-{d.month}-{d.day}",
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"{d.year}.{d.month}.{d.day}",
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    lambda d: f"{d.year}年{d.month:02d}月{d.day:02d}日",
    lambda d: f"{d.isoformat()} 00:00:00",
    lambda d: f"{d.year}/{d.month}/{d.day} 0:00",
    lambda d: d.isoformat().translate(str.maketrans("0123456789-", "０１２３４５６７８９－")),
]


@given(
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    style=st.sampled_from(DATE_FORMATS),
)
def test_any_date_round_trips_in_every_format(day: date, style: Callable[[date], str]) -> None:
    assert parse_date(style(day)) == day


@given(day=st.dates(min_value=date(1908, 3, 18), max_value=date(2119, 1, 11)))
def test_any_date_in_the_window_round_trips_as_an_excel_serial(day: date) -> None:
    assert parse_date((day - date(1899, 12, 30)).days) == day


# -- amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("1234.5", "1234.50", id="text"),
        pytest.param("1,234.50", "1234.50", id="thousands-separators"),
        pytest.param("1,234,567", "1234567.00", id="millions"),
        pytest.param("１２３４．５", "1234.50", id="full-width"),
        pytest.param("１，２３４．５０", "1234.50", id="full-width-comma"),
        pytest.param("¥1234", "1234.00", id="yen-sign"),
        pytest.param("￥1234", "1234.00", id="full-width-yen-sign"),
        pytest.param("￥ 1,234.5", "1234.50", id="yen-space-separators"),
        pytest.param("1234元", "1234.00", id="yuan-suffix"),
        pytest.param("0", "0.00", id="zero"),
        pytest.param("-0", "0.00", id="negative-zero"),
        pytest.param("1.500", "1.50", id="trailing-zero-is-not-precision"),
        pytest.param("999999999999.99", "999999999999.99", id="maximum"),
        pytest.param(1234, "1234.00", id="int"),
        pytest.param(1234.5, "1234.50", id="float"),
        pytest.param(0.1, "0.10", id="float-0.1-not-binary-expansion"),
        pytest.param(0.1 + 0.2, "0.30", id="float-sum-noise-beyond-15-digits"),
        pytest.param(999999999999.99, "999999999999.99", id="float-maximum"),
        pytest.param(Decimal("12.3"), "12.30", id="decimal"),
    ],
)
def test_parse_amount(raw: object, expected: str) -> None:
    result = parse_amount(raw)
    assert result == Decimal(expected)
    assert str(result) == expected  # quantized to fen


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "金额不能为空", id="none"),
        pytest.param("  ", "金额不能为空", id="blank"),
        pytest.param("-1", "金额不能为负数", id="negative"),
        pytest.param("−12.5", "金额不能为负数", id="unicode-minus"),
        pytest.param(-0.01, "金额不能为负数", id="negative-float"),
        pytest.param("1234.567", "金额最多保留两位小数", id="three-decimals"),
        pytest.param(0.001, "金额最多保留两位小数", id="float-three-decimals"),
        pytest.param(1e-05, "金额最多保留两位小数", id="float-scientific"),
        pytest.param("1000000000000", "金额超出范围，最大为999999999999.99", id="too-large"),
        pytest.param("1234,5", "金额格式无法识别", id="decimal-comma"),
        pytest.param("12,34", "金额格式无法识别", id="bad-grouping"),
        pytest.param("1 234", "金额格式无法识别", id="space-separator"),
        pytest.param("一千元", "金额格式无法识别", id="chinese-numerals"),
        pytest.param("1.2.3", "金额格式无法识别", id="two-points"),
        pytest.param("1e3", "金额格式无法识别", id="scientific-text"),
        pytest.param("$12", "金额格式无法识别", id="dollar"),
        pytest.param("١٢", "金额格式无法识别", id="arabic-indic-digits"),
        pytest.param(float("inf"), "金额格式无法识别", id="infinity"),
        pytest.param(True, "单元格是逻辑值（TRUE/FALSE），请填写实际内容", id="bool"),
    ],
)
def test_parse_amount_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_amount(raw)) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty-is-not-zero"),
        pytest.param(0, Decimal("0.00"), id="zero-is-zero"),
        pytest.param("12.3", Decimal("12.30"), id="text"),
    ],
)
def test_parse_optional_amount(raw: object, expected: Decimal | None) -> None:
    assert parse_optional_amount(raw) == expected


@given(st.decimals(min_value=0, max_value=values.AMOUNT_MAX, places=2))
def test_any_two_place_amount_round_trips_as_text(amount: Decimal) -> None:
    assert parse_amount(str(amount)) == amount


@given(st.decimals(min_value=0, max_value=values.AMOUNT_MAX, places=2))
def test_any_two_place_amount_round_trips_with_separators(amount: Decimal) -> None:
    assert parse_amount(f"￥{amount:,}元") == amount


# -- years and counts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(2025, id="int"),
        pytest.param("2025", id="text"),
        pytest.param("2025年", id="with-nian"),
        pytest.param("２０２５年", id="full-width"),
        pytest.param(2025.0, id="float"),
        pytest.param("2025.0", id="float-text"),
    ],
)
def test_parse_year(raw: object) -> None:
    assert parse_year(raw) == 2025


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "年度不能为空", id="none"),
        pytest.param("25", "年度应为四位年份", id="two-digits"),
        pytest.param("二〇二五", "年度应为四位年份", id="chinese-numerals"),
        pytest.param(2025.5, "年度应为四位年份", id="fraction"),
        pytest.param("2025-03-01", "年度应为四位年份", id="a-date"),
        pytest.param(1999, "年度应在2000至2100年之间", id="before-2000"),
        pytest.param("2101年", "年度应在2000至2100年之间", id="after-2100"),
    ],
)
def test_parse_year_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_year(raw)) == reason


@pytest.mark.parametrize(
    ("raw", "minimum", "expected"),
    [
        pytest.param(3, 0, 3, id="int"),
        pytest.param("3", 0, 3, id="text"),
        pytest.param("３", 0, 3, id="full-width"),
        pytest.param(3.0, 0, 3, id="integral-float"),
        pytest.param("1,200", 0, 1200, id="separators"),
        pytest.param("0", 0, 0, id="minimum"),
        pytest.param("-2", -5, -2, id="negative-allowed"),
    ],
)
def test_parse_int(raw: object, minimum: int, expected: int) -> None:
    assert parse_int(raw, minimum=minimum) == expected


@pytest.mark.parametrize(
    ("raw", "minimum", "reason"),
    [
        pytest.param(None, 0, "不能为空", id="none"),
        pytest.param("3.5", 0, "应为整数", id="fraction-text"),
        pytest.param(3.5, 0, "应为整数", id="fraction-float"),
        pytest.param("三", 0, "应为整数", id="chinese-numeral"),
        pytest.param("-1", 0, "不能小于0", id="below-zero"),
        pytest.param(0, 1, "不能小于1", id="below-minimum"),
    ],
)
def test_parse_int_rejects(raw: object, minimum: int, reason: str) -> None:
    assert reason_of(lambda: parse_int(raw, minimum=minimum)) == reason


# -- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param(" ", None, id="blank"),
        pytest.param("13812345678", "13812345678", id="mobile"),
        pytest.param("138 1234 5678", "13812345678", id="mobile-spaces"),
        pytest.param("138-1234-5678", "13812345678", id="mobile-dashes"),
        pytest.param("+86 138 1234 5678", "13812345678", id="plus-86"),
        pytest.param("0086-13812345678", "13812345678", id="0086"),
        pytest.param("8613812345678", "13812345678", id="86"),
        pytest.param("(+86)13812345678", "13812345678", id="bracketed-country-code"),
        pytest.param("１３８１２３４５６７８", "13812345678", id="full-width"),
        pytest.param(13812345678, "13812345678", id="int-from-xlsx"),
        pytest.param(13812345678.0, "13812345678", id="float-from-xlsx"),
        pytest.param("19912345678", "19912345678", id="199-prefix"),
        pytest.param("0531-88888888", "0531-88888888", id="landline"),
        pytest.param("053188888888", "0531-88888888", id="landline-no-dash"),
        pytest.param("(0531)88888888", "0531-88888888", id="landline-brackets"),
        pytest.param("0531 8888888", "0531-8888888", id="landline-7-digits"),
        pytest.param("010-62345678", "010-62345678", id="beijing-3-digit-area"),
        pytest.param("02162345678", "021-62345678", id="shanghai-no-dash"),
    ],
)
def test_parse_phone(raw: object, expected: str | None) -> None:
    assert parse_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("12812345678", id="mobile-second-digit-2"),
        pytest.param("1381234567", id="mobile-10-digits"),
        pytest.param("138123456789", id="mobile-12-digits"),
        pytest.param("88888888", id="landline-without-area-code"),
        pytest.param(53188888888, id="landline-int-lost-leading-zero"),
        pytest.param("0531-888888", id="landline-6-digits"),
        pytest.param("0531-888888888", id="landline-9-digits"),
        pytest.param("0531-08888888", id="local-starts-with-0"),
        pytest.param("+86 531 88888888", id="country-code-on-landline"),
        pytest.param("0531-88888888-123", id="extension"),
        pytest.param("无", id="placeholder-text"),
        pytest.param("١٣٨١٢٣٤٥٦٧٨", id="arabic-indic-digits"),
    ],
)
def test_parse_phone_rejects(raw: object) -> None:
    assert reason_of(lambda: parse_phone(raw)) == "联系电话格式不正确"


# -- region codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("370102", "370102", id="county-6"),
        pytest.param(370102, "370102", id="county-int-from-xlsx"),
        pytest.param("３７０１０２", "370102", id="full-width"),
        pytest.param(" 370102 ", "370102", id="stripped"),
        pytest.param("370102001", "370102001", id="township-9"),
        pytest.param("370102001002", "370102001002", id="village-12"),
        pytest.param(370102001002, "370102001002", id="village-int-from-xlsx"),
        pytest.param("370102000", "370102", id="county-padded-to-9"),
        pytest.param("370102000000", "370102", id="county-padded-to-12"),
        pytest.param("370102001000", "370102001", id="township-padded-to-12"),
    ],
)
def test_parse_region_code(raw: object, expected: str) -> None:
    assert parse_region_code(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "行政区划代码不能为空", id="none"),
        pytest.param("37010", REGION_SHAPE, id="5-digits"),
        pytest.param("3701020", REGION_SHAPE, id="7-digits"),
        pytest.param("3701020010", REGION_SHAPE, id="10-digits"),
        pytest.param("37O102", REGION_SHAPE, id="letter-o"),
        pytest.param("370102.5", REGION_SHAPE, id="fraction"),
        pytest.param("370000", NOT_COUNTY, id="province"),
        pytest.param("370100", NOT_COUNTY, id="city"),
        pytest.param("370100000000", NOT_COUNTY, id="city-padded-to-12"),
        pytest.param("370101", NOT_COUNTY, id="shixiaqu-grouping"),
        pytest.param("370101001", NOT_COUNTY, id="township-under-shixiaqu"),
        pytest.param("419000", NOT_COUNTY, id="province-administered-grouping"),
        pytest.param("370199", "行政区划代码不存在：370199", id="unknown-county"),
        pytest.param("370199001001", "行政区划代码不存在：370199", id="unknown-county-12"),
        pytest.param("990101", "行政区划代码不存在：990101", id="unknown-province"),
    ],
)
def test_parse_region_code_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_region_code(raw)) == reason


@pytest.mark.parametrize(
    ("code", "accepted"),
    [
        # Historical codes stay valid: records are kept under them. 莱芜市莱城区 371202 was
        # folded into 济南市莱芜区 370116 in 2019; stdnum lists both with their years.
        pytest.param("371202", True, id="retired-county-laicheng"),
        pytest.param("370116", True, id="its-successor-laiwu"),
        pytest.param("110228", True, id="retired-miyun-county"),
        # stdnum 2.2's table (from zh.wikipedia) is fresh to the end of 2024: 和康县, 和安县.
        pytest.param("653228", True, id="hekang-county-2024"),
        # A county-level city administered by its province.
        pytest.param("419001", True, id="jiyuan-province-administered"),
        # Prefecture-level cities without counties are their own county level.
        pytest.param("441900", True, id="dongguan"),
        pytest.param("442000", True, id="zhongshan"),
        pytest.param("460400", True, id="danzhou"),
        pytest.param("620200", True, id="jiayuguan"),
        # The grouping under a city that has districts is not a place.
        pytest.param("460301", False, id="sansha-shixiaqu"),
        pytest.param("370120", False, id="pre-1983-shiqu-grouping"),
        # Hong Kong, Macao, Taiwan appear only at province level.
        pytest.param("810000", False, id="hong-kong-province-level"),
    ],
)
def test_stdnum_table_as_pinned(code: str, accepted: bool) -> None:
    if accepted:
        assert parse_region_code(code) == code
    else:
        assert reason_of(lambda: parse_region_code(code)) == NOT_COUNTY


def test_every_county_we_ship_is_in_stdnums_table() -> None:
    for county in regions.all_counties():
        assert parse_region_code(county.code) == county.code


def test_a_county_newer_than_stdnum_passes_once_regions_json_lists_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stdnum's table lags the 民政部 announcements; a new code is refused until either stdnum
    # or gateway/data/regions.json knows it. 370199 stands in for such a new code.
    assert reason_of(lambda: parse_region_code("370199")) == "行政区划代码不存在：370199"
    new = regions.County("370199", "新区", "3701", "济南市", "37", "山东省")
    monkeypatch.setattr(regions, "county", {"370199": new}.get)
    assert parse_region_code("370199001") == "370199001"


# -- labels ----------------------------------------------------------------------------------

CATEGORIES = {"特困人员": "EXTREMELY_POOR", "低保对象": "MINIMUM_LIVING"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("低保对象", "MINIMUM_LIVING", id="label"),
        pytest.param(" 低保对象\u3000", "MINIMUM_LIVING", id="stripped"),
        pytest.param("MINIMUM_LIVING", "MINIMUM_LIVING", id="canonical-value"),
        pytest.param("ＭＩＮＩＭＵＭ＿ＬＩＶＩＮＧ", "MINIMUM_LIVING", id="full-width-canonical"),
        pytest.param("特困人员", "EXTREMELY_POOR", id="another-label"),
    ],
)
def test_parse_label(raw: str, expected: str) -> None:
    assert parse_label(raw, CATEGORIES, what="救助身份") == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "救助身份不能为空", id="none"),
        pytest.param("", "救助身份不能为空", id="empty"),
        pytest.param("低保户", "未知的救助身份：低保户", id="unknown-label"),
        pytest.param("minimum_living", "未知的救助身份：minimum_living", id="canonical-case"),
    ],
)
def test_parse_label_rejects(raw: object, reason: str) -> None:
    assert reason_of(lambda: parse_label(raw, CATEGORIES, what="救助身份")) == reason


def test_parse_label_folds_labels_from_the_mapping_file_too() -> None:
    assert parse_label("低保对象", {"低保对象　": "MINIMUM_LIVING"}, what="救助身份") == (
        "MINIMUM_LIVING"
    )


def test_serial_window_constants_match_their_comments() -> None:
    epoch = date(1899, 12, 30)
    assert epoch + timedelta(days=values.EXCEL_SERIAL_MIN) == date(1908, 3, 18)
    assert epoch + timedelta(days=values.EXCEL_SERIAL_MAX) == date(2119, 1, 11)
