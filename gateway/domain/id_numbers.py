"""Resident ID numbers (居民身份证号码, GB 11643-1999): normalise, validate, take apart, build.

Every shared record carries a name and an ID number (001 §1), and MIB de-duplicates people by
it (001 §3, 000 §5), so an ID has to be compared in one canonical form and checked the same way
at every door. The arithmetic comes from python-stdnum's :mod:`stdnum.cn.ric`; the acceptance
rules are ours, because stdnum's differ from what departments actually hold:

* **Region codes are checked only down to the province.** stdnum looks the 6-digit prefix up in
  its own copy of GB/T 2260 and requires the county code to have existed *in the birth year*.
  But the prefix records where the number was first assigned (household registration or the
  first card, from 1984 on), not where and when the person was born: everyone born in 历下区
  before 1983 holds a ``370102`` number, which stdnum rejects because 370102 dates from 1983.
  Numbers also outlive their codes (old county codes before a district merger: 莱芜市莱城区
  371202 became 济南市莱芜区 370116, yet stdnum refuses 371202 for anyone born after 2018) and
  new codes appear faster than stdnum's data file. So a well-formed prefix whose first two
  digits are a real province code is accepted; stdnum's county lookup is never a reason to
  refuse a record. (stdnum also raises a bare ``KeyError`` instead of a validation error for
  an unknown county inside a known province.)
* **Birth dates must be plausible**, which stdnum does not check: not after today and not
  before 1900.
* **Input as clerks type it**: full-width digits and letters (``３７０１…``, ``ｘ``), spaces in
  the middle and a lower-case ``x`` are normalised first; stdnum only strips the ends and does
  not fold a full-width ``ｘ``.
"""

from __future__ import annotations

import unicodedata
from datetime import date

from stdnum.cn import ric

from gateway.domain.errors import BadUserInput

__all__ = [
    "PROVINCE_CODES",
    "InvalidIdNumber",
    "birth_date_of",
    "gender_of",
    "make_id_number",
    "normalize_id_number",
    "validate_id_number",
]

# GB/T 2260 province-level codes, plus 83: the 2018 residence permits for Taiwan residents
# (台湾居民居住证) are GB 11643 numbers with the address code 830000 (81/82 for Hong Kong and
# Macao), and their holders enrol in resident medical insurance like anyone else.
PROVINCE_CODES = frozenset(
    {
        *("11", "12", "13", "14", "15"),
        *("21", "22", "23"),
        *("31", "32", "33", "34", "35", "36", "37"),
        *("41", "42", "43", "44", "45", "46"),
        *("50", "51", "52", "53", "54"),
        *("61", "62", "63", "64", "65"),
        *("71", "81", "82", "83"),
    }
)

EARLIEST_BIRTH_DATE = date(1900, 1, 1)

REASON_LENGTH = "长度应为18位"
REASON_FORMAT = "前17位应为数字，末位应为数字或X"
REASON_REGION = "行政区划代码无效"
REASON_BIRTH_DATE = "出生日期无效"
REASON_CHECK_DIGIT = "校验位错误"


class InvalidIdNumber(BadUserInput):
    """An ID number that cannot be a real one; ``reason`` is the short Chinese cause.

    >>> try:
    ...     validate_id_number("110105194912310021", today=date(2026, 1, 1))
    ... except InvalidIdNumber as error:
    ...     error.reason
    '校验位错误'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"身份证号码无效：{reason}")
        self.reason = reason


def normalize_id_number(raw: str) -> str:
    """The canonical form used for storage, lookup and de-duplication; does not validate.

    NFKC folds full-width digits and letters (and the ideographic space) to ASCII; all
    whitespace is dropped, and the check character ``x`` becomes ``X`` as the standard writes it.
    """
    if raw.isascii() and raw.isalnum():
        # The usual input, already canonical but for a lower-case x: NFKC leaves ASCII as it
        # is and there is no whitespace to drop (a 1,000,000-row roster saves seconds here).
        return raw.upper()
    folded = unicodedata.normalize("NFKC", raw)
    return "".join(folded.split()).upper()


def validate_id_number(raw: str, *, today: date) -> str:
    """Normalise ``raw`` and return it if it can be a real ID number, else raise.

    Checks, in the order a clerk can act on them: length, characters, province code, birth
    date (a real date, from 1900 up to ``today``), and the ISO 7064 MOD 11-2 check digit.

    Raises:
        InvalidIdNumber: with one of the reasons ``长度应为18位``,
            ``前17位应为数字，末位应为数字或X``, ``行政区划代码无效``, ``出生日期无效`` or
            ``校验位错误``.
    """
    number = normalize_id_number(raw)
    _check_shape(number)
    if number[:2] not in PROVINCE_CODES:
        raise InvalidIdNumber(REASON_REGION)
    birth = _birth_date(number)
    if not EARLIEST_BIRTH_DATE <= birth <= today:
        raise InvalidIdNumber(REASON_BIRTH_DATE)
    if number[17] != ric.calc_check_digit(number):
        raise InvalidIdNumber(REASON_CHECK_DIGIT)
    return number


def gender_of(id_number: str) -> str:
    """``MALE`` or ``FEMALE`` from the order code: GB 11643 gives men odd 17th digits."""
    number = normalize_id_number(id_number)
    _check_shape(number)
    return "MALE" if int(number[16]) % 2 == 1 else "FEMALE"


def birth_date_of(id_number: str) -> date:
    """The birth date in digits 7-14 (YYYYMMDD)."""
    number = normalize_id_number(id_number)
    _check_shape(number)
    return _birth_date(number)


def make_id_number(region6: str, birth: date, sequence: int) -> str:
    """Build a number with a correct check digit, for synthetic data and tests.

    ``sequence`` is the 3-digit order code (0-999); its parity decides the gender.
    """
    if len(region6) != 6 or not region6.isascii() or not region6.isdigit():
        raise ValueError(f"region6 must be 6 ASCII digits, got {region6!r}")
    if not 0 <= sequence <= 999:
        raise ValueError(f"sequence must be within 0..999, got {sequence}")
    body = f"{region6}{birth.year:04d}{birth.month:02d}{birth.day:02d}{sequence:03d}"
    # calc_check_digit expects the number *with* a check position and ignores it.
    return body + ric.calc_check_digit(body + "0")


def _check_shape(number: str) -> None:
    if len(number) != 18:
        raise InvalidIdNumber(REASON_LENGTH)
    body, check = number[:17], number[17]
    if not (body.isascii() and body.isdigit()) or check not in "0123456789X":
        raise InvalidIdNumber(REASON_FORMAT)


def _birth_date(number: str) -> date:
    """Digits 7-14 of a number that passed :func:`_check_shape`, as stdnum's
    ``ric.get_birth_date`` reads them, without its per-character re-cleaning of the number."""
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber(REASON_BIRTH_DATE) from None
