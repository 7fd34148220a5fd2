"""Resident ID numbers (GB 11643-1999): the required element of every shared record (001 §1)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from gateway.domain.errors import BadUserInput
from gateway.domain.id_numbers import (
    PROVINCE_CODES,
    InvalidIdNumber,
    birth_date_of,
    gender_of,
    make_id_number,
    normalize_id_number,
    validate_id_number,
)

TODAY = date(2026, 3, 15)


def with_check_digit(body17: str) -> str:
    """Complete 17 characters with their correct check digit, to isolate other faults."""
    return body17 + ric.calc_check_digit(body17 + "0")


def stdnum_outcome(number: str) -> str:
    """What stdnum.cn.ric.validate says: 'valid', or the exception class it raises."""
    try:
        ric.validate(number)
    except (ValidationError, KeyError) as error:
        return type(error).__name__
    return "valid"


# -- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("11010519491231002X", "11010519491231002X", id="already-canonical"),
        pytest.param("11010519491231002x", "11010519491231002X", id="lower-case-x"),
        pytest.param("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X", id="full-width"),
        pytest.param("11010519491231002ｘ", "11010519491231002X", id="full-width-lower-x"),
        pytest.param(" 110105 19491231 002X ", "11010519491231002X", id="spaces-inside"),
        pytest.param("110105\u300019491231\u00a0002X\n", "11010519491231002X", id="odd-spaces"),
        pytest.param("1101-05", "1101-05", id="no-validation"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalize_folds_what_clerks_type(raw: str, expected: str) -> None:
    assert normalize_id_number(raw) == expected


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("11010519491231002X", "11010519491231002X", id="x-check-digit"),
        pytest.param("360426199101010071", "360426199101010071", id="stdnum-doc-example"),
        pytest.param(" 11010519491231002x", "11010519491231002X", id="normalised-first"),
        pytest.param(with_check_digit("37010219000101001"), None, id="earliest-birth-1900-01-01"),
        pytest.param(with_check_digit("37010220260315002"), None, id="born-today"),
        pytest.param(with_check_digit("14010520000229003"), None, id="leap-day"),
    ],
)
def test_valid_numbers_are_returned_normalised(raw: str, expected: str | None) -> None:
    assert validate_id_number(raw, today=TODAY) == (expected or raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("", "长度应为18位", id="empty"),
        pytest.param("1101051949123100", "长度应为18位", id="16-chars"),
        pytest.param("11010519491231002X1", "长度应为18位", id="19-chars"),
        pytest.param("110105194912310X2X", "前17位应为数字，末位应为数字或X", id="x-inside"),
        pytest.param("11010519491231002Y", "前17位应为数字，末位应为数字或X", id="bad-last-char"),
        pytest.param("11010519491231002٣", "前17位应为数字，末位应为数字或X", id="arabic-digit"),
        pytest.param(with_check_digit("00010519491231002"), "行政区划代码无效", id="province-00"),
        pytest.param(with_check_digit("99010519491231002"), "行政区划代码无效", id="province-99"),
        pytest.param(with_check_digit("72010519491231002"), "行政区划代码无效", id="province-72"),
        pytest.param(with_check_digit("37010219491331002"), "出生日期无效", id="month-13"),
        pytest.param(with_check_digit("37010219490230002"), "出生日期无效", id="february-30"),
        pytest.param(with_check_digit("37010219490000002"), "出生日期无效", id="zero-date"),
        pytest.param(with_check_digit("37010220260316002"), "出生日期无效", id="tomorrow"),
        pytest.param(with_check_digit("37010218991231002"), "出生日期无效", id="before-1900"),
        pytest.param("110105194912310021", "校验位错误", id="wrong-check-digit"),
        pytest.param("11010519491231020X", "校验位错误", id="transposed-digits"),
    ],
)
def test_each_invalid_number_names_its_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as caught:
        validate_id_number(raw, today=TODAY)
    assert caught.value.reason == reason
    assert caught.value.message == f"身份证号码无效：{reason}"


def test_invalid_id_number_reaches_the_client_as_bad_user_input() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_id_number("123", today=TODAY)
    assert caught.value.code == "BAD_USER_INPUT"


# -- where we deliberately differ from stdnum.cn.ric -----------------------------------------


@pytest.mark.parametrize(
    ("number", "stdnum_says", "we_accept"),
    [
        # The prefix is where the number was assigned, not a birth-year fact: 370102 历下区 is
        # listed from 1983, yet everyone born there before 1983 holds a 370102 number.
        pytest.param(
            with_check_digit("37010219650101001"),
            "InvalidComponent",
            True,
            id="county-code-newer-than-birth-year",
        ),
        # Numbers outlive their codes: 莱芜市莱城区 371202 was merged into 济南 after 2018.
        pytest.param(
            with_check_digit("37120220190105002"),
            "InvalidComponent",
            True,
            id="abolished-county-code",
        ),
        # A county stdnum's data does not know (newer code, or a gap in its table) inside a
        # real province: stdnum even fails with a bare KeyError instead of a validation error.
        pytest.param(
            with_check_digit("37999919900101002"), "KeyError", True, id="county-unknown-to-stdnum"
        ),
        # 830000: Taiwan residents' residence permits use GB 11643 numbers too.
        pytest.param(
            with_check_digit("83000019900101002"),
            "InvalidComponent",
            True,
            id="taiwan-residence-permit",
        ),
        # stdnum does not look at the calendar.
        pytest.param(
            with_check_digit("11010120300101002"), "valid", False, id="birth-date-in-the-future"
        ),
        pytest.param(
            with_check_digit("11010118800101002"), "valid", False, id="birth-date-before-1900"
        ),
        # stdnum strips only the ends, and reads a full-width x as a wrong check digit.
        pytest.param("110105 19491231 002X", "InvalidLength", True, id="spaces-inside"),
        pytest.param("11010519491231002ｘ", "InvalidChecksum", True, id="full-width-x"),
    ],
)
def test_pinned_differences_from_stdnum(number: str, stdnum_says: str, we_accept: bool) -> None:
    assert stdnum_outcome(number) == stdnum_says
    if we_accept:
        assert validate_id_number(number, today=TODAY) == normalize_id_number(number)
    else:
        with pytest.raises(InvalidIdNumber, match="出生日期无效"):
            validate_id_number(number, today=TODAY)


def test_every_gb2260_province_code_is_accepted() -> None:
    for code in sorted(PROVINCE_CODES):
        number = make_id_number(code + "0102", date(1990, 1, 1), 1)
        assert validate_id_number(number, today=TODAY) == number


# -- taking numbers apart and building them --------------------------------------------------


@pytest.mark.parametrize(
    ("number", "gender", "birth"),
    [
        pytest.param("11010519491231002X", "FEMALE", date(1949, 12, 31), id="even-order-code"),
        pytest.param("360426199101010071", "MALE", date(1991, 1, 1), id="odd-order-code"),
        pytest.param("３６０４２６１９９１０１０１００７１", "MALE", date(1991, 1, 1), id="wide"),
    ],
)
def test_gender_and_birth_date_come_from_the_number(number: str, gender: str, birth: date) -> None:
    assert gender_of(number) == gender
    assert birth_date_of(number) == birth


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        pytest.param(lambda: gender_of("1101051949"), "长度应为18位", id="gender-short"),
        pytest.param(lambda: birth_date_of("11010519491331002X"), "出生日期无效", id="month-13"),
    ],
)
def test_helpers_refuse_malformed_numbers(call: Callable[[], object], reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as caught:
        call()
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("region6", "birth", "sequence", "expected"),
    [
        pytest.param("110105", date(1949, 12, 31), 2, "11010519491231002X", id="x"),
        pytest.param("360426", date(1991, 1, 1), 7, "360426199101010071", id="digit"),
    ],
)
def test_make_id_number_matches_known_numbers(
    region6: str, birth: date, sequence: int, expected: str
) -> None:
    assert make_id_number(region6, birth, sequence) == expected


@pytest.mark.parametrize(
    ("region6", "sequence"),
    [
        pytest.param("37010", 1, id="short-region"),
        pytest.param("37010a", 1, id="letter-in-region"),
        pytest.param("３７０１０２", 1, id="full-width-region"),
        pytest.param("370102", 1000, id="sequence-too-big"),
        pytest.param("370102", -1, id="negative-sequence"),
    ],
)
def test_make_id_number_refuses_bad_parts(region6: str, sequence: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_id_number(region6, date(1990, 1, 1), sequence)


@given(
    province=st.sampled_from(sorted(PROVINCE_CODES)),
    rest=st.from_regex(r"\A[0-9]{4}\Z"),
    birth=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    sequence=st.integers(min_value=0, max_value=999),
)
def test_made_numbers_validate_and_round_trip(
    province: str, rest: str, birth: date, sequence: int
) -> None:
    number = make_id_number(province + rest, birth, sequence)
    assert validate_id_number(number, today=TODAY) == number
    assert validate_id_number(number.lower(), today=TODAY) == number
    assert birth_date_of(number) == birth
    assert gender_of(number) == ("MALE" if sequence % 2 else "FEMALE")
    assert number[:6] == province + rest


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    sequence=st.integers(min_value=0, max_value=999),
    position=st.integers(min_value=0, max_value=16),
    shift=st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_typo_is_caught(
    birth: date, sequence: int, position: int, shift: int
) -> None:
    """MOD 11-2 detects every single substitution, so a mistyped digit never passes."""
    number = make_id_number("370102", birth, sequence)
    typo = str((int(number[position]) + shift) % 10)
    mistyped = number[:position] + typo + number[position + 1 :]
    with pytest.raises(InvalidIdNumber):
        validate_id_number(mistyped, today=TODAY)


def test_future_boundary_follows_the_given_today() -> None:
    number = make_id_number("370102", TODAY + timedelta(days=1), 1)
    with pytest.raises(InvalidIdNumber, match="出生日期无效"):
        validate_id_number(number, today=TODAY)
    assert validate_id_number(number, today=TODAY + timedelta(days=1)) == number
