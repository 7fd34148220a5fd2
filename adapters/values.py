"""Raw cell values from department files and pushes → canonical values, or a clerk's reason.

Ingest reads CSV and JSON (every cell a ``str``), XLSX through openpyxl (``str``, ``int``,
``float``, ``datetime``, ``date``, ``bool``) and GraphQL pushes (``str``, ``int``, ``float``).
Each parser here takes any of those and returns one canonical value, or raises
:class:`ValueProblem` whose ``reason`` is a short Chinese sentence that goes into the rejection
report next to the line number, column and raw value: it says what is wrong *and* what to do,
because the county clerk who reads it fixes the file, not the code.

    >>> parse_amount("￥1,234.5")
    Decimal('1234.50')
    >>> parse_region_code("370102000000")
    '370102'

What spreadsheets do to data, and what we do back:

* **ID numbers as numbers.** Excel keeps 15 significant digits, so an 18-digit ID typed into a
  "General" cell loses its last three digits for good. Any number in an ID column is refused
  with instructions to re-export the column as text; guessing the digits is not possible.
* **Dates as serial numbers.** A date cell formatted "General" reaches us as 45717 (days since
  1899-12-30). Numbers from 3000 (1908-03-18) to 80000 (2119-01-11) are read as such serials;
  see :func:`parse_date` for why the window is where it is.
* **Money as binary floats.** A float is read through its decimal text at Excel's 15
  significant digits, never through its binary expansion, so ``0.1`` is 0.10 and a sheet's
  ``=0.1+0.2`` (stored as 0.30000000000000004) is 0.30.
* **Full-width input** (``１２３４．５``, ``２０２５／３／１``) is folded with NFKC wherever
  the value is digits; names are never NFKC-folded (it would rewrite CJK compatibility
  ideographs, which some rare surnames are stored as).

Region codes are checked against python-stdnum's copy of GB/T 2260 (``stdnum.cn.loc``, taken
from zh.wikipedia's code tables, historical codes included with their years) plus the counties
in ``gateway/data/regions.json``; see :func:`parse_region_code` for what stdnum's table holds
that is not a county.
"""

from __future__ import annotations

import calendar
import contextlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TypeGuard

from stdnum import numdb

from gateway.domain import regions
from gateway.domain.id_numbers import InvalidIdNumber, validate_id_number

__all__ = [
    "ValueProblem",
    "label_parser",
    "parse_amount",
    "parse_date",
    "parse_id_number",
    "parse_int",
    "parse_label",
    "parse_name",
    "parse_optional_amount",
    "parse_optional_date",
    "parse_phone",
    "parse_region_code",
    "parse_year",
    "text",
]


class ValueProblem(Exception):
    """One cell that cannot become a canonical value; ``reason`` is what the clerk reads.

    >>> try:
    ...     parse_amount("-5")
    ... except ValueProblem as problem:
    ...     problem.reason
    '金额不能为负数'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Besides str.strip()'s whitespace: a byte-order mark or zero-width space left by copy-paste.
_INVISIBLE = "\ufeff\u200b"


def text(raw: object) -> str | None:
    """The cell as stripped text, or ``None`` when it is empty; the first step of every parser.

    Numbers from XLSX become the digits a clerk typed (``13812345678.0`` → ``"13812345678"``).
    No other normalisation happens here: each parser folds what is safe for its kind of value.

    Raises:
        ValueProblem: for a TRUE/FALSE cell or a non-finite number, which no column expects.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueProblem("单元格是逻辑值（TRUE/FALSE），请填写实际内容")
    if isinstance(raw, str):
        stripped = raw.strip().strip(_INVISIBLE).strip()
        return stripped or None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueProblem("单元格内容不是有效数字")
        return str(int(raw)) if raw.is_integer() else _float_text(raw)
    if isinstance(raw, Decimal):
        return str(raw)
    if isinstance(raw, datetime):
        return raw.date().isoformat() if raw.time() == datetime.min.time() else str(raw)
    if isinstance(raw, date):
        return raw.isoformat()
    raise ValueProblem("单元格内容无法识别")


def _float_text(value: float) -> str:
    """A float's decimal text at Excel's 15 significant digits: beyond them is binary noise."""
    return format(value, ".15g")


def _folded(raw: object) -> str | None:
    """:func:`text`, then NFKC: full-width digits, letters and punctuation become ASCII."""
    value = text(raw)
    if value is None or value.isascii():
        return value  # NFKC changes no ASCII character; most cells are ASCII
    return unicodedata.normalize("NFKC", value)


def _is_number(raw: object) -> TypeGuard[int | float | Decimal]:
    """A number cell (XLSX or a push); ``bool`` is an ``int`` to Python but TRUE/FALSE here."""
    return isinstance(raw, int | float | Decimal) and not isinstance(raw, bool)


# -- names -----------------------------------------------------------------------------------

# The separator in transliterated minority names (阿依古丽·买买提) is typed with whatever the
# input method offers; one spelling keeps de-duplication by name + ID from splitting a person.
_MIDDLE_DOTS = "\u00b7\u2022\u2027\u2219\u22c5\u30fb\uff65"
_MIDDLE_DOT_RUN = re.compile(rf"\s*[{_MIDDLE_DOTS}]\s*")
# Not re.ASCII: \d is then exactly Unicode category Nd, any script's decimal digits.
_ANY_DIGIT = re.compile(r"\d")
NAME_MAX_LENGTH = 50


def parse_name(raw: object) -> str:
    """A person's name (姓名, a required element of every record, 001 §1), tidied, not folded.

    Inner whitespace runs become one space and every middle-dot variant becomes ``·`` (U+00B7)
    without spaces around it. Digits are refused: they mean a shifted column or an ID pasted
    into the name.
    """
    value = text(raw)
    if value is None:
        raise ValueProblem("姓名不能为空")
    name = " ".join(value.split())
    name = _MIDDLE_DOT_RUN.sub("\u00b7", name)
    if _ANY_DIGIT.search(name):
        raise ValueProblem("姓名不应包含数字")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueProblem(f"姓名不能超过{NAME_MAX_LENGTH}个字符")
    return name


# -- ID numbers ------------------------------------------------------------------------------


_ID_AS_NUMBER = "身份证号码被存为数字格式，后几位可能已丢失；请将该列设置为文本后重新导出"
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE]\+?\d+", re.ASCII)


def parse_id_number(raw: object, *, today: date) -> str:
    """A resident ID number, normalised and checked by
    :func:`gateway.domain.id_numbers.validate_id_number`.

    ``today`` comes from the one clock (:func:`gateway.domain.clock.today`): a birth date after
    it is refused. A number cell is refused outright because Excel has already destroyed its last
    digits (it keeps 15 significant digits); the clerk has to re-export the column as text.
    """
    if _is_number(raw):
        raise ValueProblem(_ID_AS_NUMBER)
    value = text(raw)
    if value is None:
        raise ValueProblem("身份证号码不能为空")
    if _SCIENTIFIC.fullmatch(value):  # a CSV written from a number cell: 3.70102E+17
        raise ValueProblem(_ID_AS_NUMBER)
    try:
        return validate_id_number(value, today=today)
    except InvalidIdNumber as error:
        raise ValueProblem(error.message) from None


# -- dates -----------------------------------------------------------------------------------

_DATE_FORMATS = (
    re.compile(
        r"(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})", re.ASCII
    ),
    re.compile(r"(?P<year>\d{4})年(?P<month>\d{1,2})月(?P<day>\d{1,2})日", re.ASCII),
    re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})", re.ASCII),
)
# A time of day after the date ("2025-03-01 00:00:00", "2025/3/1 0:00") is what spreadsheets
# print for a datetime cell; it is checked for shape and dropped.
_TIME_OF_DAY = re.compile(
    r"(?:[ T]\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::\d{2}(?:\.\d{1,6})?)?)?", re.ASCII
)
_DATE_FORMAT_HINT = "日期格式无法识别，请使用 2025-03-01 等格式"
# The form nearly every export uses, tried first; anything else takes the general path.
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)

# Excel's 1900 date system counts days from 1900-01-01 = 1 but also counts the non-existent
# 1900-02-29 (a Lotus 1-2-3 compatibility bug), so from serial 61 on, day 0 is 1899-12-30.
_EXCEL_EPOCH = date(1899, 12, 30)
EXCEL_SERIAL_MIN = 3000  # 1908-03-18
EXCEL_SERIAL_MAX = 80000  # 2119-01-11


def parse_date(raw: object) -> date:
    """A calendar date from any of the forms departments send.

    Text: ``2025-03-01``, ``2025/3/1``, ``2025.3.1``, ``20250301``, ``2025年3月1日``, full-width
    digits, each with an optional time of day that is dropped. ``date`` and ``datetime`` cells
    are taken as they are (openpyxl has already applied the workbook's date system).

    Numbers: an 8-digit integer is read as ``YYYYMMDD`` (a date typed without separators into
    a number cell); one from 3000 to 80000 as an Excel serial date (a date cell whose format
    was reset to "General"). The window holds every date the gateway records: birth dates of
    anyone alive (a 出生日期 column of 特困人员 holds people born in the 1930s, serials near
    14000) up to 2119. Below it are the numbers that turn up in a mis-mapped column — a
    year such as 2025 (as a serial, 1905-07-17), an age, a count — which are refused instead
    of silently becoming a day in the 1900s. Text that looks like a serial (``"45717"``) is
    refused: a text cell is read as what it says.

    Raises:
        ValueProblem: ``日期无效：…`` for a date that does not exist (2025-02-30), or the hint
            ``日期格式无法识别，请使用 2025-03-01 等格式``.
    """
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if _is_number(raw):
        return _date_from_number(raw)
    if isinstance(raw, str) and (iso := _ISO_DATE.fullmatch(raw)) is not None:
        with contextlib.suppress(ValueError):  # 2025-02-30: the general path says why not
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
    value = _folded(raw)
    if value is None:
        raise ValueProblem("日期不能为空")
    for pattern in _DATE_FORMATS:
        found = pattern.match(value)
        if found is None:
            continue
        time_of_day = _TIME_OF_DAY.fullmatch(value, found.end())
        if time_of_day is None:
            continue
        hour, minute = time_of_day.group("hour"), time_of_day.group("minute")
        if hour is not None and (int(hour) > 23 or int(minute) > 59):
            raise ValueProblem(_DATE_FORMAT_HINT)
        return _checked_date(int(found["year"]), int(found["month"]), int(found["day"]))
    raise ValueProblem(_DATE_FORMAT_HINT)


def _date_from_number(raw: int | float | Decimal) -> date:
    number = Decimal(_float_text(raw)) if isinstance(raw, float) else Decimal(raw)
    if not number.is_finite():
        raise ValueProblem(_DATE_FORMAT_HINT)
    if number == number.to_integral_value() and 10_000_000 <= number <= 99_999_999:
        digits = str(int(number))
        return _checked_date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    if EXCEL_SERIAL_MIN <= number <= EXCEL_SERIAL_MAX:
        # The fraction is the time of day.
        return _EXCEL_EPOCH + timedelta(days=int(number))
    raise ValueProblem(_DATE_FORMAT_HINT)


def _checked_date(year: int, month: int, day: int) -> date:
    if year < 1:
        raise ValueProblem(f"日期无效：没有{year:04d}年")
    if not 1 <= month <= 12:
        raise ValueProblem(f"日期无效：月份应为1至12，不能为{month}")
    last_day = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last_day:
        raise ValueProblem(f"日期无效：{year}年{month}月只有{last_day}天，没有{day}日")
    return date(year, month, day)


def parse_optional_date(raw: object) -> date | None:
    """:func:`parse_date`, with an empty cell meaning "no date" (an exit date not yet known)."""
    return None if text(raw) is None else parse_date(raw)


# -- amounts ---------------------------------------------------------------------------------

AMOUNT_MAX = Decimal("999999999999.99")
_CENT = Decimal("0.01")
# ASCII digits only, here and in every pattern below: NFKC folds full-width digits, but a
# stray Arabic-Indic or Devanagari digit would pass \d and be stored as it is.
# Thousands separators must group by three: "1234,5" is a European decimal comma, and reading
# it as 12345 would be a silent hundredfold error.
_AMOUNT = re.compile(
    r"(?P<sign>[-+]?)\s*(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d+))?", re.ASCII
)
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-"})
_AMOUNT_FORMAT = "金额格式无法识别"


def parse_amount(raw: object) -> Decimal:
    """A sum of money in yuan, quantized to fen (two places).

    Accepts ``1234.5``, ``1,234.50``, ``１２３４．５``, ``¥1234``, ``￥1234``, ``1234元`` and
    numbers. Trailing zeros are not precision (``1.500`` is 1.50); a third significant decimal
    is refused rather than rounded, since rounding would change a settlement figure without
    anyone deciding to.

    Raises:
        ValueProblem: ``金额不能为空``, ``金额格式无法识别``, ``金额不能为负数``,
            ``金额超出范围，最大为999999999999.99`` or ``金额最多保留两位小数``.
    """
    if _is_number(raw):
        amount = _amount_from_number(raw)
    else:
        value = _folded(raw)
        if value is None:
            raise ValueProblem("金额不能为空")
        amount = _amount_from_text(value)
    if amount < 0:
        raise ValueProblem("金额不能为负数")
    if amount > AMOUNT_MAX:
        raise ValueProblem(f"金额超出范围，最大为{AMOUNT_MAX}")
    cents = amount.quantize(_CENT)
    if cents != amount:
        raise ValueProblem("金额最多保留两位小数")
    return abs(cents)  # abs: "-0.00" is zero, not a negative amount


def _amount_from_number(raw: int | float | Decimal) -> Decimal:
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueProblem(_AMOUNT_FORMAT)
        return Decimal(_float_text(raw))
    amount = Decimal(raw)
    if not amount.is_finite():
        raise ValueProblem(_AMOUNT_FORMAT)
    return amount


def _amount_from_text(value: str) -> Decimal:
    value = value.translate(_MINUS_SIGNS)
    # NFKC has already turned ￥ (U+FFE5) into ¥ (U+00A5).
    value = value.removeprefix("¥").removesuffix("元").strip()
    found = _AMOUNT.fullmatch(value)
    if found is None:
        raise ValueProblem(_AMOUNT_FORMAT)
    number = found["digits"].replace(",", "")
    if found["cents"] is not None:
        number += "." + found["cents"]
    try:
        amount = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        raise ValueProblem(_AMOUNT_FORMAT) from None
    return -amount if found["sign"] == "-" else amount


def parse_optional_amount(raw: object) -> Decimal | None:
    """:func:`parse_amount`, with an empty cell meaning "not reported" rather than zero."""
    return None if text(raw) is None else parse_amount(raw)


# -- whole numbers ---------------------------------------------------------------------------

YEAR_MIN, YEAR_MAX = 2000, 2100
_YEAR = re.compile(r"(?P<year>\d{4})(?:\.0+)?年?", re.ASCII)
_INTEGER = re.compile(r"(?P<sign>[-+]?)(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?", re.ASCII)


def parse_year(raw: object) -> int:
    """A year (年度) such as an enrollment or cost-burden year: ``2025``, ``"2025年"``, ``2025.0``.

    The range check catches a two-digit year and a year shifted in from another column; it is
    reported separately so the clerk knows the shape was right.
    """
    if _is_number(raw):
        number = Decimal(_float_text(raw)) if isinstance(raw, float) else Decimal(raw)
        if not number.is_finite() or number != number.to_integral_value():
            raise ValueProblem("年度应为四位年份")
        year = int(number)
    else:
        value = _folded(raw)
        if value is None:
            raise ValueProblem("年度不能为空")
        found = _YEAR.fullmatch(value)
        if found is None:
            raise ValueProblem("年度应为四位年份")
        year = int(found["year"])
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise ValueProblem(f"年度应在{YEAR_MIN}至{YEAR_MAX}年之间")
    return year


def parse_int(raw: object, *, minimum: int = 0) -> int:
    """A whole number such as a count of hospital stays (住院次数); ``"1,200"`` and ``3.0`` too.

    Raises:
        ValueProblem: ``不能为空``, ``应为整数`` or ``不能小于{minimum}`` (the report names the
            column, so the reason does not repeat it).
    """
    if _is_number(raw):
        number = Decimal(_float_text(raw)) if isinstance(raw, float) else Decimal(raw)
        if not number.is_finite() or number != number.to_integral_value():
            raise ValueProblem("应为整数")
        result = int(number)
    else:
        value = _folded(raw)
        if value is None:
            raise ValueProblem("不能为空")
        found = _INTEGER.fullmatch(value.translate(_MINUS_SIGNS))
        if found is None:
            raise ValueProblem("应为整数")
        result = int(found["digits"].replace(",", ""))
        if found["sign"] == "-":
            result = -result
    if result < minimum:
        raise ValueProblem(f"不能小于{minimum}")
    return result


# -- phone numbers ---------------------------------------------------------------------------

_PHONE_NOISE = str.maketrans("", "", "-()")
_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
# Area codes: 010 and 02X are three digits, every other one four (0311, 0531, ...); local
# numbers are 7 or 8 digits and never start with 0 or 1 (those are trunk and service prefixes).
_LANDLINE = re.compile(r"(?P<area>010|02\d|0[3-9]\d\d)(?P<local>[2-9]\d{6,7})", re.ASCII)
_PHONE_FORMAT = "联系电话格式不正确"


def parse_phone(raw: object) -> str | None:
    """A contact number (联系电话): a mainland mobile as 11 digits, a landline as ``0531-88888888``.

    Optional: an empty cell is ``None``. Spaces, ``-`` and brackets are dropped and a mobile's
    country code (``+86``, ``0086``, ``86``) removed, so one phone has one spelling for the
    blind index that lookups by phone use.
    """
    if isinstance(raw, str) and _MOBILE.fullmatch(raw):
        return raw  # already the canonical form, the usual case
    value = _folded(raw)
    if value is None:
        return None
    digits = "".join(value.split()).translate(_PHONE_NOISE)
    for country_code in ("+86", "0086", "86"):
        rest = digits.removeprefix(country_code)
        if rest != digits and _MOBILE.fullmatch(rest):
            return rest
    if _MOBILE.fullmatch(digits):
        return digits
    landline = _LANDLINE.fullmatch(digits)
    if landline is not None:
        return f"{landline['area']}-{landline['local']}"
    raise ValueProblem(_PHONE_FORMAT)


# -- region codes ----------------------------------------------------------------------------

_REGION_SHAPE = "行政区划代码应为6、9或12位数字"
_NOT_COUNTY = "行政区划代码应精确到县级"
# Entries of stdnum's table that sit at the county position but group counties instead of
# being one: 市辖区 (a city's urban districts together, e.g. 370101) and its pre-1983 name 市区.
_GROUPING_NAMES = frozenset({"市辖区", "市区"})


def parse_region_code(raw: object) -> str:
    """A GB/T 2260 region code (行政区划代码) of the place a record is kept, precise to a county.

    6 digits name a county, 9 a township (乡镇/街道) and 12 a village (村/社区) in the
    statistical extension (003 §3(2) asks for records that precise). Padding is removed, so
    one place has one code: ``370102000000`` and ``370102000`` are ``370102`` and
    ``370102001000`` is ``370102001``. Only the county part can be checked: neither stdnum nor
    the gateway ships township or village tables.

    The county part must be in stdnum's table or ``regions.json``. stdnum keeps historical
    codes (莱城区 371202, merged into 济南 in 2019), which is right for records kept under the old
    code. Its table also holds entries that are not counties, refused as ``应精确到县级``:
    provinces (370000), cities and prefectures (370100), groupings at the county position
    (370101 市辖区; 419000 省直辖县级行政单位 ends in 00 like a city). One exception: a
    prefecture-level city with no counties under it (东莞 441900, 中山 442000, 儋州 460400,
    嘉峪关 620200) is its own county level, and its code is accepted.

    Raises:
        ValueProblem: ``行政区划代码不能为空``, ``行政区划代码应为6、9或12位数字``,
            ``行政区划代码应精确到县级`` or ``行政区划代码不存在：370199``.
    """
    value = _folded(raw)
    if value is None:
        raise ValueProblem("行政区划代码不能为空")
    code = "".join(value.split())
    if len(code) not in (6, 9, 12) or not (code.isascii() and code.isdigit()):
        raise ValueProblem(_REGION_SHAPE)
    # Township and village codes start at 001, so trailing zero groups are only padding.
    while len(code) > 6 and code.endswith("000"):
        code = code[:-3]
    _check_county(code[:6])
    return code


def _check_county(county_code: str) -> None:
    names = _stdnum_county_names(county_code)
    if names is None:
        if regions.county(county_code) is not None:
            return  # newer than stdnum's table, listed by us
        raise ValueProblem(f"行政区划代码不存在：{county_code}")
    problem = _listed_county_problem(county_code)
    if problem is not None:
        raise ValueProblem(problem)


# A province's file names a few hundred counties a million times. Only codes in stdnum's table
# are cached, so the cache is bounded by that table, whatever codes a file holds.
@cache
def _listed_county_problem(county_code: str) -> str | None:
    """Why a code in stdnum's table is not a county, or ``None`` if it is one."""
    if county_code.endswith("0000"):
        return _NOT_COUNTY
    if county_code.endswith("00"):
        return _NOT_COUNTY if _has_counties_under(county_code[:4]) else None
    names = _stdnum_county_names(county_code) or ()
    if all(name in _GROUPING_NAMES for name in names):
        return _NOT_COUNTY
    return None


@cache
def _stdnum_county_names(code: str) -> tuple[str, ...] | None:
    """Every name stdnum's GB/T 2260 table has held for ``code``, or ``None`` if it has none.

    The table (the data behind :func:`stdnum.cn.ric.get_birth_place`) stores a code's names
    as ``[1992-2018]莱城区`` or ``[-1991]东郊区,[1992-]东丽区``; the years are dropped here
    because a record may be kept under a code that has since been retired.
    """
    parts = numdb.get("cn/loc").info(code)
    properties = {key: value for _, props in parts for key, value in props.items()}
    if "county" not in properties:
        return None
    return tuple(entry.rpartition("]")[2] for entry in properties["county"].split(","))


@cache
def _has_counties_under(city_code: str) -> bool:
    """Whether stdnum lists any county-level unit (not a grouping) under a 4-digit city code."""
    for number in range(1, 100):
        names = _stdnum_county_names(f"{city_code}{number:02d}")
        if names is not None and not all(name in _GROUPING_NAMES for name in names):
            return True
    return False


# -- labels ----------------------------------------------------------------------------------


def parse_label(raw: object, labels: Mapping[str, str], *, what: str) -> str:
    """The canonical value for a department's label (``低保对象`` → ``MINIMUM_LIVING``).

    ``labels`` maps each label a department writes to the canonical value (from the adapter's
    mapping file); the canonical value itself is accepted too, so a re-exported file and a
    push that already speaks the gateway's words both pass. ``what`` names the field in the
    reason (``救助身份``).

    Raises:
        ValueProblem: ``{what}不能为空`` or ``未知的{what}：{value}``.
    """
    return label_parser(labels, what=what)(raw)


def label_parser(labels: Mapping[str, str], *, what: str) -> Callable[[object], str]:
    """:func:`parse_label` for one column, with the labels folded once instead of per cell.

    >>> category = label_parser({"低保对象": "MINIMUM_LIVING"}, what="救助身份")
    >>> category("低保对象")
    'MINIMUM_LIVING'
    """
    folded: dict[str, str] = {}
    for label, canonical in labels.items():
        folded.setdefault(unicodedata.normalize("NFKC", label).strip(), canonical)  # first wins
    canonical_values = frozenset(labels.values())

    def parse(raw: object) -> str:
        value = _folded(raw)
        if value is None:
            raise ValueProblem(f"{what}不能为空")
        canonical = folded.get(value)
        if canonical is not None:
            return canonical
        if value in canonical_values:
            return value
        raise ValueProblem(f"未知的{what}：{value}")

    return parse
