"""Relief identity on a date, the rules alone (``gateway.loop.relief``, DOMAIN.md rules 5, 6).

Held (the source department's dates) and entitled (the province's benefit dates) are different
questions: Anhui entitles from the month after recognition (004 §3), Shanxi from the day the
list is provided until the day before the exit list (000 §2), Shandong on the source dates
(001 §2). Benefits follow the highest identity entitled (就高不就低), a hospital stay takes the
highest of any of its days, and the year's subsidy category is locked once granted.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.departments import RELIEF_CATEGORIES
from gateway.domain.errors import BadUserInput
from gateway.domain.settings import Province
from gateway.loop.config import BenefitDates, ProvinceRules, load_rules
from gateway.loop.relief import (
    MAX_STAY_DAYS,
    Identity,
    add_months,
    entitlement,
    province_rule_text,
    relief_for_stay,
    relief_on,
    subsidised_category,
    subsidy_for_year,
)

SHANDONG = load_rules(Province.SHANDONG)
SHANXI = load_rules(Province.SHANXI)
ANHUI = load_rules(Province.ANHUI)
RULES = {"shandong": SHANDONG, "shanxi": SHANXI, "anhui": ANHUI}


def d(text: str) -> date:
    return date.fromisoformat(text)


def ident(
    category: str = "MINIMUM_LIVING",
    recognized: str = "2026-03-10",
    valid_to: str | None = None,
    *,
    valid_from: str | None = None,
    listed: str | None = None,
    exit_listed: str | None = None,
    department: str = "civil_affairs",
) -> Identity:
    """An identity as ingest stores it: valid from the recognition date unless told."""
    return Identity(
        category=category,
        source_department=department,
        recognized_on=d(recognized),
        valid_from=d(valid_from or recognized),
        valid_to=None if valid_to is None else d(valid_to),
        listed_on=None if listed is None else d(listed),
        exit_listed_on=None if exit_listed is None else d(exit_listed),
    )


def window(identity: Identity, rules: ProvinceRules) -> tuple[date | None, date | None]:
    entry = entitlement(identity, rules)
    return entry.entitled_from, entry.entitled_to


# ============================================================================ held on a day
@pytest.mark.parametrize(
    ("day", "held"),
    [
        ("2026-02-28", False),  # the day before valid_from
        ("2026-03-01", True),  # valid_from itself
        ("2026-05-31", True),  # valid_to is the last day held
        ("2026-06-01", False),  # the day after valid_to
    ],
    ids=["day_before_valid_from", "on_valid_from", "on_valid_to", "day_after_valid_to"],
)
@pytest.mark.parametrize("province", sorted(RULES))
def test_held_on_boundaries_are_the_source_dates(province: str, day: str, held: bool) -> None:
    identity = ident(recognized="2026-03-01", valid_to="2026-05-31")
    relief = relief_on([identity], d(day), RULES[province])
    assert (relief.governing is not None) is held
    assert len(relief.held) == int(held)


# ============================================================================ benefit windows
WINDOWS = [
    # -- Shandong, 001 §2: the source department's dates
    ("shandong_source_dates", SHANDONG, ident(valid_to="2026-05-31"), "2026-03-10", "2026-05-31"),
    ("shandong_still_held_is_open", SHANDONG, ident(), "2026-03-10", None),
    ("shandong_ignores_list_dates", SHANDONG,
     ident(valid_to="2026-05-31", listed="2026-04-01", exit_listed="2026-06-20"),
     "2026-03-10", "2026-05-31"),
    # -- Shanxi, 000 §2: from the list day, to the day before the exit list
    ("shanxi_from_list_day", SHANXI, ident(listed="2026-03-20"), "2026-03-20", None),
    ("shanxi_list_before_valid_from_starts_at_valid_from", SHANXI,
     ident(valid_from="2026-03-10", recognized="2026-03-01", listed="2026-03-05"),
     "2026-03-10", None),
    ("shanxi_no_list_day_is_valid_from", SHANXI, ident(), "2026-03-10", None),
    ("shanxi_stops_day_before_exit_list", SHANXI,
     ident(valid_to="2026-05-31", listed="2026-03-10", exit_listed="2026-06-10"),
     "2026-03-10", "2026-06-09"),
    ("shanxi_exit_list_on_day_after_exit_is_valid_to", SHANXI,
     ident(valid_to="2026-05-31", listed="2026-03-10", exit_listed="2026-06-01"),
     "2026-03-10", "2026-05-31"),
    ("shanxi_no_exit_list_day_is_valid_to", SHANXI,
     ident(valid_to="2026-05-31", listed="2026-03-10"), "2026-03-10", "2026-05-31"),
    ("shanxi_listed_and_exited_same_day_never_entitled", SHANXI,
     ident(valid_to="2026-05-31", listed="2026-06-05", exit_listed="2026-06-05"), None, None),
    # -- Anhui, 004 §3: the month after recognition, to the end of the month of the exit
    ("anhui_recognized_31_january_from_1_february", ANHUI,
     ident(recognized="2026-01-31"), "2026-02-01", None),
    ("anhui_recognized_1_january_from_1_february", ANHUI,
     ident(recognized="2026-01-01"), "2026-02-01", None),
    ("anhui_recognized_31_december_from_1_january_next_year", ANHUI,
     ident(recognized="2026-12-31"), "2027-01-01", None),
    ("anhui_exited_last_day_of_month_until_month_end", ANHUI,
     ident(valid_to="2026-05-31"), "2026-04-01", "2026-05-31"),
    ("anhui_exited_first_day_of_month_until_month_end", ANHUI,
     ident(valid_to="2026-05-01"), "2026-04-01", "2026-05-31"),
    ("anhui_exit_in_february_of_leap_year_until_29th", ANHUI,
     ident(recognized="2027-10-08", valid_to="2028-02-03"), "2027-11-01", "2028-02-29"),
    ("anhui_recognized_and_exited_in_one_month_never_entitled", ANHUI,
     ident(recognized="2026-04-02", valid_to="2026-04-20"), None, None),
    # issue 14: the 2026 rule governs the exit (an event of 2026), not the 2025 recognition
    ("anhui_recognized_before_2026_keeps_its_start_exit_in_2026_ends_with_the_month", ANHUI,
     ident(recognized="2025-12-31", valid_to="2026-03-15"), "2025-12-31", "2026-03-31"),
    ("anhui_recognized_and_exited_before_2026_keeps_source_dates", ANHUI,
     ident(recognized="2025-06-10", valid_to="2025-11-15"), "2025-06-10", "2025-11-15"),
    ("anhui_recognized_on_2026_01_01_takes_next_month_rule", ANHUI,
     ident(recognized="2026-01-01", valid_to="2026-03-15"), "2026-02-01", "2026-03-31"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "identity", "first", "last"),
    [case[1:] for case in WINDOWS],
    ids=[case[0] for case in WINDOWS],
)
def test_entitlement_window_follows_the_province_rule(
    rules: ProvinceRules, identity: Identity, first: str | None, last: str | None
) -> None:
    expected = (None if first is None else d(first), None if last is None else d(last))
    assert window(identity, rules) == expected


@pytest.mark.parametrize(
    ("recognized", "rules", "rule"),
    [
        ("2025-12-31", ANHUI, BenefitDates.SOURCE_DATES),
        ("2026-01-01", ANHUI, BenefitDates.NEXT_MONTH),
        ("2026-01-01", SHANXI, BenefitDates.LIST_DATE),
        ("2026-01-01", SHANDONG, BenefitDates.SOURCE_DATES),
    ],
    ids=["anhui_before_2026", "anhui_from_2026", "shanxi", "shandong"],
)
def test_the_rule_applied_is_stated_per_identity(
    recognized: str, rules: ProvinceRules, rule: BenefitDates
) -> None:
    assert entitlement(ident(recognized=recognized), rules).dates_rule is rule


# ============================================================================ exited at month end
# One identity recognised 2026-02-10 and exited on the last day of April; the exit list
# reached the exchange on 12 May. Entitled on which days, by province?
MONTH_END_EXIT = ident(
    recognized="2026-02-10", valid_to="2026-04-30", listed="2026-02-10", exit_listed="2026-05-12"
)


@pytest.mark.parametrize(
    ("rules", "day", "entitled"),
    [
        (SHANDONG, "2026-04-30", True),  # until valid_to
        (SHANDONG, "2026-05-01", False),
        (SHANXI, "2026-05-11", True),  # until the day before the exit list
        (SHANXI, "2026-05-12", False),  # the exit list day itself: stopped
        (ANHUI, "2026-02-28", False),  # recognised in February: from 1 March
        (ANHUI, "2026-03-01", True),
        (ANHUI, "2026-04-30", True),  # until the end of the month of the exit
        (ANHUI, "2026-05-01", False),  # "stops from the month after exit"
    ],
    ids=[
        "shandong_last_day_held", "shandong_day_after",
        "shanxi_day_before_exit_list", "shanxi_exit_list_day",
        "anhui_rest_of_recognition_month", "anhui_first_of_next_month",
        "anhui_month_of_exit_end", "anhui_first_of_month_after_exit",
    ],
)  # fmt: skip
def test_identity_exited_on_the_last_day_of_a_month(
    rules: ProvinceRules, day: str, entitled: bool
) -> None:
    relief = relief_on([MONTH_END_EXIT], d(day), rules)
    assert (relief.benefit is not None) is entitled


def test_anhui_recognition_on_31_january_holds_but_is_not_yet_entitled() -> None:
    identity = ident(recognized="2026-01-31")
    on_the_day = relief_on([identity], d("2026-01-31"), ANHUI)
    assert on_the_day.governing is not None
    assert on_the_day.governing.category == "MINIMUM_LIVING"
    assert on_the_day.benefit is None
    assert "2026-02-01" in on_the_day.summary()
    next_day = relief_on([identity], d("2026-02-01"), ANHUI)
    assert next_day.benefit is not None
    assert next_day.benefit.category == "MINIMUM_LIVING"


def test_shanxi_exited_identity_still_entitled_until_the_exit_list() -> None:
    """Exit on 31 October, exit list on 25 November: on 23 November the person no longer holds
    the identity, but benefits have not stopped yet (000 §2)."""
    relief = relief_on(
        [ident(valid_to="2026-10-31", listed="2026-03-10", exit_listed="2026-11-25")],
        d("2026-11-23"),
        SHANXI,
    )
    assert relief.governing is None
    assert relief.benefit is not None
    assert relief.held == ()
    assert relief.entitled == relief.identities
    assert "已于 2026-10-31 退出, 待遇享受至 2026-11-24" in relief.summary()


# ============================================================================ several identities
OVERLAPS = [
    ("higher_rank_governs", SHANDONG, "2026-06-01",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-03-01")],
     "MINIMUM_LIVING", "MINIMUM_LIVING"),
    ("higher_rank_governs_whatever_the_order", SHANDONG, "2026-06-01",
     [ident("MINIMUM_LIVING", "2026-03-01"), ident("MINIMUM_LIVING_EDGE", "2026-01-01"),
      ident("EXTREME_POVERTY", "2026-05-01")],
     "EXTREME_POVERTY", "EXTREME_POVERTY"),
    ("tie_in_tier_earlier_recognition_governs", SHANDONG, "2026-06-01",
     [ident("EXTREME_POVERTY", "2026-02-01"), ident("ORPHAN", "2026-01-05")],
     "ORPHAN", "ORPHAN"),
    ("tie_in_tier_same_day_category_code_governs", SHANDONG, "2026-06-01",
     [ident("ORPHAN", "2026-01-05"), ident("EXTREME_POVERTY", "2026-01-05")],
     "EXTREME_POVERTY", "EXTREME_POVERTY"),
    ("monitoring_subtypes_tie_earlier_recognition", SHANDONG, "2026-06-01",
     [ident("MONITORED_MARGINAL", "2026-04-01", department="rural_revitalization"),
      ident("MONITORED_UNSTABLE", "2026-04-02", department="rural_revitalization")],
     "MONITORED_MARGINAL", "MONITORED_MARGINAL"),
    ("anhui_new_higher_identity_held_but_lower_one_pays", ANHUI, "2026-11-23",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01", department="rural_revitalization"),
      ident("MINIMUM_LIVING", "2026-11-10")],
     "MINIMUM_LIVING", "LIFTED_FROM_POVERTY"),
    ("anhui_new_higher_identity_pays_from_next_month", ANHUI, "2026-12-01",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01", department="rural_revitalization"),
      ident("MINIMUM_LIVING", "2026-11-10")],
     "MINIMUM_LIVING", "MINIMUM_LIVING"),
    ("shanxi_exited_higher_identity_pays_until_exit_list", SHANXI, "2026-11-23",
     [ident("MINIMUM_LIVING", "2026-03-10", "2026-10-31", listed="2026-03-10",
            exit_listed="2026-11-25"),
      ident("MINIMUM_LIVING_EDGE", "2026-11-01", listed="2026-11-05")],
     "MINIMUM_LIVING_EDGE", "MINIMUM_LIVING"),
    ("shanxi_lower_identity_pays_after_exit_list", SHANXI, "2026-11-25",
     [ident("MINIMUM_LIVING", "2026-03-10", "2026-10-31", listed="2026-03-10",
            exit_listed="2026-11-25"),
      ident("MINIMUM_LIVING_EDGE", "2026-11-01", listed="2026-11-05")],
     "MINIMUM_LIVING_EDGE", "MINIMUM_LIVING_EDGE"),
    ("nothing_held_nothing_paid", SHANDONG, "2026-06-01",
     [ident("MINIMUM_LIVING", "2026-03-01", "2026-05-31")], None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "day", "identities", "governing", "benefit"),
    [case[1:] for case in OVERLAPS],
    ids=[case[0] for case in OVERLAPS],
)
def test_overlapping_identities_the_highest_governs(
    rules: ProvinceRules,
    day: str,
    identities: list[Identity],
    governing: str | None,
    benefit: str | None,
) -> None:
    for order in (identities, identities[::-1]):  # the input order never matters
        relief = relief_on(order, d(day), rules)
        assert (relief.governing and relief.governing.category) == governing
        assert (relief.benefit and relief.benefit.category) == benefit
        ranks = [e.order for e in relief.identities]
        assert ranks == sorted(ranks)  # listed highest first


# ============================================================================ hospital stays
STAYS = [
    ("shandong_upgrade_during_stay_takes_new_identity", SHANDONG, "2026-06-10", "2026-06-20",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-06-15")],
     "MINIMUM_LIVING", True),
    ("shandong_exit_during_stay_keeps_old_identity", SHANDONG, "2026-06-10", "2026-06-20",
     [ident("MINIMUM_LIVING", "2026-01-01", "2026-06-12"),
      ident("MINIMUM_LIVING_EDGE", "2026-06-13")],
     "MINIMUM_LIVING", True),
    ("no_change_during_stay", SHANDONG, "2026-06-10", "2026-06-20",
     [ident("MINIMUM_LIVING", "2026-01-01")], "MINIMUM_LIVING", False),
    ("new_identity_on_discharge_day_counts", SHANDONG, "2026-06-10", "2026-06-20",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-06-20")],
     "MINIMUM_LIVING", True),
    ("new_identity_day_after_discharge_does_not", SHANDONG, "2026-06-10", "2026-06-20",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-06-21")],
     "LIFTED_FROM_POVERTY", False),
    ("anhui_stay_into_next_month_takes_new_identity", ANHUI, "2026-06-20", "2026-07-03",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-06-15")],
     "MINIMUM_LIVING", True),
    ("anhui_stay_within_recognition_month_does_not", ANHUI, "2026-06-20", "2026-06-30",
     [ident("LIFTED_FROM_POVERTY", "2025-01-01"), ident("MINIMUM_LIVING", "2026-06-15")],
     "LIFTED_FROM_POVERTY", False),
    ("day_case_same_admission_and_discharge", SHANDONG, "2026-06-10", "2026-06-10",
     [ident("MINIMUM_LIVING", "2026-06-10")], "MINIMUM_LIVING", False),
    ("stay_without_any_identity", SHANDONG, "2026-06-10", "2026-06-20", [], None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "admitted", "discharged", "identities", "benefit", "changed"),
    [case[1:] for case in STAYS],
    ids=[case[0] for case in STAYS],
)
def test_hospital_stay_across_a_change_takes_the_highest_for_the_whole_stay(
    rules: ProvinceRules,
    admitted: str,
    discharged: str,
    identities: list[Identity],
    benefit: str | None,
    changed: bool,
) -> None:
    stay = relief_for_stay(identities, d(admitted), d(discharged), rules)
    assert (stay.benefit and stay.benefit.category) == benefit
    assert stay.identity_changed is changed
    assert stay.days == (d(discharged) - d(admitted)).days


@pytest.mark.parametrize(
    ("admitted", "discharged", "accepted"),
    [
        ("2026-06-10", "2026-06-09", False),  # discharged before admission
        ("2026-06-10", "2026-06-10", True),
        ("2026-01-01", "2027-01-02", True),  # 366 nights: the longest accepted
        ("2026-01-01", "2027-01-03", False),  # 367 nights
    ],
    ids=["discharge_before_admission", "same_day", "longest_stay", "too_long"],
)
def test_stay_dates_are_checked(admitted: str, discharged: str, accepted: bool) -> None:
    assert (d(discharged) - d(admitted)).days <= MAX_STAY_DAYS or not accepted
    if accepted:
        relief_for_stay([], d(admitted), d(discharged), SHANDONG)
        return
    with pytest.raises(BadUserInput) as raised:
        relief_for_stay([], d(admitted), d(discharged), SHANDONG)
    assert "dischargedOn" in raised.value.message
    assert raised.value.code == "BAD_USER_INPUT"


# ============================================================================ subsidy lock
SUBSIDIES = [
    ("same_category_stays_locked", "MINIMUM_LIVING", "MINIMUM_LIVING", True, "MINIMUM_LIVING",
     False),
    ("upgrade_within_year_applies_next_year", "MINIMUM_LIVING_EDGE", "MINIMUM_LIVING", True,
     "MINIMUM_LIVING", True),
    ("exit_within_year_keeps_this_years_subsidy", "MINIMUM_LIVING", None, True, None, True),
    ("recognised_after_enrollment_subsidised_next_year", None, "MINIMUM_LIVING", False,
     "MINIMUM_LIVING", True),
    ("no_subsidy_no_identity", None, None, False, None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("granted", "governing", "locked", "next_year", "changes"),
    [case[1:] for case in SUBSIDIES],
    ids=[case[0] for case in SUBSIDIES],
)
def test_subsidy_category_is_locked_within_the_year(
    granted: str | None,
    governing: str | None,
    locked: bool,
    next_year: str | None,
    changes: bool,
) -> None:
    held = None if governing is None else entitlement(ident(governing, "2026-05-01"), SHANDONG)
    subsidy = subsidy_for_year(2026, granted, held)
    assert subsidy.year == 2026
    assert subsidy.category == granted  # never adjusted within the year
    assert subsidy.locked is locked
    assert subsidy.next_year_category == next_year
    assert subsidy.changes_next_year is changes


def test_subsidised_category_prefers_the_resident_enrollment() -> None:
    def row(row_id: int, kind: str, category: str | None) -> SimpleNamespace:
        return SimpleNamespace(id=row_id, insurance_type=kind, subsidy_category=category)

    assert subsidised_category([]) is None
    assert subsidised_category([row(1, "RESIDENT", None)]) is None
    assert (
        subsidised_category([row(1, "EMPLOYEE", "ORPHAN"), row(2, "RESIDENT", "MINIMUM_LIVING")])
        == "MINIMUM_LIVING"
    )
    assert subsidised_category([row(1, "EMPLOYEE", "ORPHAN"), row(2, "RESIDENT", None)]) == "ORPHAN"


# ============================================================================ Anhui look-back
LOOKBACKS = [
    ("recognized_31_august_back_to_28_february", "MINIMUM_LIVING", "2026-08-31", "2026-02-28"),
    ("recognized_15_july_back_to_15_january", "EXTREME_POVERTY", "2026-07-15", "2026-01-15"),
    ("recognized_31_march_back_to_30_september", "MONITORED_SUDDEN_HARDSHIP", "2026-03-31",
     "2025-09-30"),
    ("recognized_1_january_back_to_1_july", "MONITORED_UNSTABLE", "2026-01-01", "2025-07-01"),
    ("leap_year_back_to_29_february", "MINIMUM_LIVING", "2028-08-31", "2028-02-29"),
    ("category_without_look_back", "MINIMUM_LIVING_EDGE", "2026-08-31", None),
    ("lifted_from_poverty_without_look_back", "LIFTED_FROM_POVERTY", "2026-08-31", None),
    ("recognized_before_2026_without_look_back", "MINIMUM_LIVING", "2025-12-31", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("category", "recognized", "claim_back_from"),
    [case[1:] for case in LOOKBACKS],
    ids=[case[0] for case in LOOKBACKS],
)
def test_anhui_look_back_window(
    category: str, recognized: str, claim_back_from: str | None
) -> None:
    entry = entitlement(ident(category, recognized), ANHUI)
    if claim_back_from is None:
        assert (entry.claim_back_from, entry.claim_back_to) == (None, None)
        return
    assert entry.claim_back_from == d(claim_back_from)
    assert entry.claim_back_to == d(recognized) - timedelta(days=1)
    # The look-back is a separate window: it never moves the entitlement start.
    assert entry.entitled_from is not None
    assert entry.entitled_from > d(recognized)


@pytest.mark.parametrize("rules", [SHANDONG, SHANXI], ids=["shandong", "shanxi"])
def test_no_look_back_outside_anhui(rules: ProvinceRules) -> None:
    entry = entitlement(ident("MINIMUM_LIVING", "2026-08-31"), rules)
    assert entry.claim_back_from is None


def test_a_day_in_the_look_back_window_is_listed_but_not_entitled() -> None:
    relief = relief_on([ident("MINIMUM_LIVING", "2026-08-31")], d("2026-05-20"), ANHUI)
    assert relief.benefit is None
    assert relief.governing is None
    assert [e.may_claim_back_on(d("2026-05-20")) for e in relief.identities] == [True]
    assert "追溯" in relief.summary()


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        ("2026-08-31", -6, "2026-02-28"),
        ("2024-08-31", -6, "2024-02-29"),
        ("2026-01-15", -1, "2025-12-15"),
        ("2026-12-31", 2, "2027-02-28"),
        ("2026-05-10", 0, "2026-05-10"),
    ],
)
def test_add_months_clamps_the_day(day: str, months: int, expected: str) -> None:
    assert add_months(d(day), months) == d(expected)


@pytest.mark.parametrize(
    ("rules", "cites"),
    [(SHANDONG, "001 §2"), (SHANXI, "000 §2"), (ANHUI, "004 §3")],
    ids=["shandong", "shanxi", "anhui"],
)
def test_the_rule_text_names_its_notice(rules: ProvinceRules, cites: str) -> None:
    text = province_rule_text(rules)
    assert cites in text
    assert text.startswith(rules.name)


# ============================================================================ properties
DAYS = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def identities(draw: st.DrawFn) -> Identity:
    recognized = draw(DAYS)
    valid_from = recognized + timedelta(days=draw(st.integers(-40, 40)))
    valid_to = draw(st.none() | st.integers(0, 800).map(lambda n: valid_from + timedelta(days=n)))
    listed = draw(st.none() | st.integers(0, 60).map(lambda n: valid_from + timedelta(days=n)))
    exit_listed = None
    if valid_to is not None:
        exit_listed = draw(
            st.none() | st.integers(-10, 60).map(lambda n: valid_to + timedelta(days=n))
        )
    return Identity(
        category=draw(st.sampled_from(sorted(RELIEF_CATEGORIES))),
        source_department=draw(st.sampled_from(["civil_affairs", "rural_revitalization"])),
        recognized_on=recognized,
        valid_from=valid_from,
        valid_to=valid_to,
        listed_on=listed,
        exit_listed_on=exit_listed,
    )


PROVINCES = st.sampled_from([SHANDONG, SHANXI, ANHUI])


@settings(max_examples=300, deadline=None)
@given(st.lists(identities(), max_size=5), DAYS, PROVINCES)
def test_property_benefit_is_the_highest_entitled_and_governing_the_highest_held(
    held: list[Identity], day: date, rules: ProvinceRules
) -> None:
    relief = relief_on(held, day, rules)
    entitled = [e for e in relief.identities if e.entitled_on(day)]
    holding = [e for e in relief.identities if e.held_on(day)]
    if relief.benefit is None:
        assert entitled == []
    else:
        assert relief.benefit in entitled
        assert relief.benefit.rank == min(e.rank for e in entitled)
    if relief.governing is None:
        assert holding == []
    else:
        assert relief.governing in holding
        assert relief.governing.rank == min(e.rank for e in holding)
    # Every identity held or entitled that day is listed, nothing else but look-back windows.
    for identity in held:
        entry = entitlement(identity, rules)
        listed = entry in relief.identities
        assert listed == (
            entry.held_on(day) or entry.entitled_on(day) or entry.may_claim_back_on(day)
        )


@settings(max_examples=300, deadline=None)
@given(identities(), PROVINCES)
def test_property_entitlement_never_starts_before_valid_from(
    identity: Identity, rules: ProvinceRules
) -> None:
    entry = entitlement(identity, rules)
    if entry.entitled_from is None:
        assert entry.entitled_to is None  # no window at all
        return
    assert entry.entitled_from >= identity.valid_from
    assert entry.entitled_to is None or entry.entitled_to >= entry.entitled_from
    if entry.claim_back_to is not None:  # Anhui's look-back: a separate, earlier window
        assert entry.claim_back_to < identity.recognized_on
        assert entry.claim_back_from is not None
        assert entry.claim_back_from <= entry.claim_back_to
    if (
        entry.dates_rule is BenefitDates.NEXT_MONTH
        and identity.valid_from <= identity.recognized_on
    ):
        assert entry.entitled_from.day == 1  # always the first of a month


@settings(max_examples=200, deadline=None)
@given(
    st.lists(identities(), max_size=5),
    DAYS,
    st.integers(0, 60),
    PROVINCES,
)
def test_property_a_stay_takes_the_highest_of_any_of_its_days(
    held: list[Identity], admitted: date, nights: int, rules: ProvinceRules
) -> None:
    discharged = admitted + timedelta(days=nights)
    stay = relief_for_stay(held, admitted, discharged, rules)
    daily = [
        relief_on(held, admitted + timedelta(days=n), rules).benefit for n in range(nights + 1)
    ]
    paid = [b for b in daily if b is not None]
    if not paid:
        assert stay.benefit is None
        return
    assert stay.benefit is not None
    assert stay.benefit.order == min(b.order for b in paid)
    # Without a change during the stay, every day pays the same; with one, the stay may pay
    # more than the day of admission, never less.
    if not stay.identity_changed:
        assert len({None if b is None else b.order for b in daily}) == 1
    if daily[0] is not None:
        assert stay.benefit.order <= daily[0].order


# ============================================================ rules govern events, not recognitions
# Issue 14 item 5: "自2026年起 … 自身份退出次月起停止" (004 §3) applies to exits from 2026,
# whatever year the identity was recognised in. Shanxi (000 §2) and Shandong (001 §2) have no
# starting date: the same 2025 recognition exited in 2026 ends as their rules say, every time.
EXIT_EVENTS = [
    # (province, exit day, exit list day (Shanxi), last day of benefits, first day without)
    ("anhui", "2026-04-15", None, "2026-04-30", "2026-05-01"),
    ("anhui", "2026-04-30", None, "2026-04-30", "2026-05-01"),
    ("anhui", "2026-05-01", None, "2026-05-31", "2026-06-01"),
    ("anhui", "2026-01-01", None, "2026-01-31", "2026-02-01"),  # the rule's first day
    ("anhui", "2025-12-31", None, "2025-12-31", "2026-01-01"),  # the day before it
    ("shanxi", "2026-04-15", "2026-04-20", "2026-04-19", "2026-04-20"),
    ("shanxi", "2026-04-30", "2026-05-01", "2026-04-30", "2026-05-01"),
    ("shanxi", "2026-05-01", "2026-05-06", "2026-05-05", "2026-05-06"),
    ("shandong", "2026-04-15", None, "2026-04-15", "2026-04-16"),
    ("shandong", "2026-04-30", None, "2026-04-30", "2026-05-01"),
    ("shandong", "2026-05-01", None, "2026-05-01", "2026-05-02"),
]


@pytest.mark.parametrize(
    ("province", "exited", "exit_listed", "last_day", "stopped"),
    EXIT_EVENTS,
    ids=[f"{case[0]}_recognized_2025_exited_{case[1]}" for case in EXIT_EVENTS],
)
def test_exit_follows_the_rule_in_force_on_the_exit_day(
    province: str, exited: str, exit_listed: str | None, last_day: str, stopped: str
) -> None:
    rules = RULES[province]
    identity = ident(
        recognized="2025-06-10",
        valid_to=exited,
        listed="2025-06-12" if province == "shanxi" else None,
        exit_listed=exit_listed,
    )
    relief_last = relief_on([identity], d(last_day), rules)
    relief_after = relief_on([identity], d(stopped), rules)

    assert relief_last.benefit is not None
    assert relief_last.benefit.category == "MINIMUM_LIVING"
    assert relief_after.benefit is None
    assert window(identity, rules)[1] == d(last_day)


def test_anhui_2025_identity_exited_mid_april_is_still_effective_on_20_april() -> None:
    """The case of issue 14: recognised in 2025, exited 2026-04-15."""
    identity = ident(recognized="2025-03-02", valid_to="2026-04-15")
    on_20_april = relief_on([identity], d("2026-04-20"), ANHUI)
    assert on_20_april.benefit is not None
    assert on_20_april.benefit.category == "MINIMUM_LIVING"
    assert on_20_april.governing is None  # no longer held: the exit was on 04-15
    assert relief_on([identity], d("2026-05-01"), ANHUI).benefit is None
    entry = entitlement(identity, ANHUI)
    assert entry.dates_rule is BenefitDates.SOURCE_DATES  # started on its 2025 date
    assert entry.exit_rule is BenefitDates.NEXT_MONTH  # ended by the 2026 rule
    assert entry.claim_back_from is None  # the look-back belongs to recognitions from 2026


@pytest.mark.parametrize(
    ("recognized", "entitled_from", "claim_back"),
    [
        ("2025-12-31", "2025-12-31", False),  # recognised before 2026: its own date, no look-back
        ("2026-01-01", "2026-02-01", True),  # the rule's first day: next month, look-back
    ],
    ids=["anhui_recognized_2025_12_31", "anhui_recognized_2026_01_01"],
)
def test_anhui_start_and_look_back_follow_the_recognition_day(
    recognized: str, entitled_from: str, claim_back: bool
) -> None:
    entry = entitlement(ident(recognized=recognized), ANHUI)
    assert entry.entitled_from == d(entitled_from)
    assert (entry.claim_back_from is not None) is claim_back
