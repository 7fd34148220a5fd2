"""Relief identity on a date (DOMAIN.md rules 5 and 6): which identities a person held on a
day, which one governs, and from when to when each entitles to medical-assistance benefits
under the configured province's rule.

Pure functions over plain values: no database, no GraphQL. ``schema.relief`` feeds them the
person's relief statuses (loaded in batches) and the year's enrollment.

Two questions, kept apart on purpose:

* **held** (持有): the source department's dates, ``valid_from <= day <= valid_to``
  (``valid_to`` is the last day held, null while still recognised);
* **entitled** (享受待遇): the province's benefit dates, which may start later or end later
  than the identity itself —

  - Shandong, ``SOURCE_DATES`` (001 §2): aligned with the source department's dates;
  - Shanxi, ``LIST_DATE`` (000 §2): from the day the list is provided, until the day before
    the exit list is provided;
  - Anhui, ``NEXT_MONTH`` (004 §3, events from 2026-01-01): from the first day of the month
    after a recognition from 2026, until the last day of the month of an exit from 2026 (an
    identity recognised in 2025 and exited in 2026 keeps its start and ends with its exit's
    month: the rule governs the event, not the original recognition); people recognised
    mainly because of a major illness may claim back compliant self-paid costs of the six
    months before recognition, on application (the reason is not in the shared data, so the
    window is stated, never applied).

Benefits follow the highest identity, never two at once (待遇从优、就高不就低, 001 §2, 002 §4,
004 §3): the governing identity is the highest one *held*, the benefit category the highest
one *entitled*. Ties go to the earlier recognition, then the category code, so the answer is
the same on every call.

    rules = load_rules(Province.ANHUI)
    relief = relief_on([Identity("MINIMUM_LIVING", "civil_affairs", d, d, None)], day, rules)
    relief.benefit  # None until the first of the next month
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from gateway.domain.departments import CATEGORY_NAMES_ZH
from gateway.domain.errors import BadUserInput
from gateway.loop.config import BenefitDates, ProvinceRules

# 住院天数 = 出院日期 - 入院日期. A stay longer than a year (366 nights) is a typing error,
# not a hospital stay; refusing it also bounds the work one request can ask for.
MAX_STAY_DAYS = 366

# The province rules in the words of the notices, for the clerk reading the answer.
RULE_TEXT: dict[BenefitDates, str] = {
    BenefitDates.SOURCE_DATES: (
        "医保待遇享受时间与民政部门和乡村振兴部门认定的身份起止时间保持一致 (001 §2)"
    ),
    BenefitDates.LIST_DATE: (
        "新增医疗救助对象自民政等部门提供名单之日起享受医疗救助待遇, "
        "动态调出的自提供名单之日起不再享受 (000 §2)"
    ),
    BenefitDates.NEXT_MONTH: (
        "自身份认定之日次月起享受医疗救助待遇, 自身份退出次月起停止享受; "
        "主要因重大疾病被认定为特困人员、低保对象、防止返贫监测对象的, "
        "认定前6个月内个人自付的合规医疗费用可依申请追溯救助 (004 §3)"
    ),
}
TIES_TEXT = "多重身份待遇从优、就高不就低, 不重复享受 (001 §2, 004 §3)"
STAY_TEXT = "住院期间身份变动的, 一个住院周期内按就高不就低原则享受医疗救助待遇 (004 §3)"
SUBSIDY_TEXT = (
    "一个自然年度内资助参保类别发生变动的, 已享受的资助不作调整, 次年起按新类别享受 "
    "(001 §2, 004 §3)"
)


def province_rule_text(rules: ProvinceRules) -> str:
    """The benefit-date rule of the province, with the date the next-month rule starts."""
    text = RULE_TEXT[rules.benefit_dates]
    if rules.benefit_dates is BenefitDates.NEXT_MONTH and rules.next_month_rule_from:
        start = rules.next_month_rule_from.isoformat()
        text = (
            f"{start} 起认定或退出的: {text}; 此前认定的自认定之日起享受, "
            f"此前退出的自退出之日起停止 ({RULE_TEXT[BenefitDates.SOURCE_DATES]})"
        )
    return f"{rules.name}: {text}"


# ----------------------------------------------------------------------------- dates
def first_of_next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def last_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: date, months: int) -> date:
    """``day`` shifted by whole months, the day of the month clamped to the target month's
    length (2026-08-31 minus 6 months is 2026-02-28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


# ----------------------------------------------------------------------------- identities
@dataclass(frozen=True, slots=True)
class Identity:
    """One relief status as stored: the source department's category and dates, and the days
    the exchange received the list and the exit list (000 §2; null for rows from before
    they were recorded: taken as ``valid_from`` and the day after ``valid_to``)."""

    category: str
    source_department: str
    recognized_on: date
    valid_from: date
    valid_to: date | None
    listed_on: date | None = None
    exit_listed_on: date | None = None

    @classmethod
    def of(cls, record: Any) -> Identity:
        """From a relief-status row (``gateway.storage.people``) or anything shaped like one."""
        return cls(
            category=record.category,
            source_department=record.source_department,
            recognized_on=record.recognized_on,
            valid_from=record.valid_from,
            valid_to=record.valid_to,
            listed_on=getattr(record, "listed_on", None),
            exit_listed_on=getattr(record, "exit_listed_on", None),
        )

    def held_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Entitlement:
    """An identity under the province's benefit-date rule.

    ``entitled_from``/``entitled_to`` are the first and last day of benefits (``entitled_to``
    null: open-ended); both null when the rule leaves no day at all (Shanxi: listed and exited
    on the same day; Anhui: recognised and exited within one month). ``claim_back_from`` and
    ``claim_back_to`` are Anhui's look-back window, separate from the entitlement.
    """

    identity: Identity
    rank: int  # tier in the province ranking, 0 highest
    dates_rule: BenefitDates  # the rule that set the start (Anhui before 2026: source dates)
    entitled_from: date | None
    entitled_to: date | None
    claim_back_from: date | None = None
    claim_back_to: date | None = None
    # The rule that set the end (Anhui: the month after an exit from 2026, whenever recognised).
    exit_rule: BenefitDates | None = None

    @property
    def category(self) -> str:
        return self.identity.category

    @property
    def order(self) -> tuple[int, date, str, date, str]:
        """Highest first: rank, then the earlier recognition, then the category code."""
        i = self.identity
        return (self.rank, i.recognized_on, i.category, i.valid_from, i.source_department)

    def held_on(self, day: date) -> bool:
        return self.identity.held_on(day)

    def entitled_on(self, day: date) -> bool:
        return self.entitled_between(day, day)

    def entitled_between(self, first: date, last: date) -> bool:
        """Whether any day of ``[first, last]`` is in the entitlement window."""
        if self.entitled_from is None:
            return False
        return self.entitled_from <= last and (
            self.entitled_to is None or first <= self.entitled_to
        )

    def may_claim_back_on(self, day: date) -> bool:
        if self.claim_back_from is None or self.claim_back_to is None:
            return False
        return self.claim_back_from <= day <= self.claim_back_to


def entitlement(identity: Identity, rules: ProvinceRules) -> Entitlement:
    """The benefit window of one identity under ``rules`` (DOMAIN.md rule 5).

    A rule that takes effect on a date governs the *events* from that date, not the identities
    recognised from it: Anhui's "自2026年起 … 自身份认定之日次月起享受 … 自身份退出次月起停止"
    (004 §3) moves the start of an identity recognised from 2026 and the end of an identity
    exited from 2026 — including one recognised in 2025, which keeps its source start date."""
    rule = end_rule = rules.benefit_dates
    if rule is BenefitDates.NEXT_MONTH:
        from_day = rules.next_month_rule_from
        if from_day is None or identity.recognized_on < from_day:
            rule = BenefitDates.SOURCE_DATES  # recognised before: the source department's start
        if from_day is None or (identity.valid_to is not None and identity.valid_to < from_day):
            end_rule = BenefitDates.SOURCE_DATES  # exited before: the source department's end
    start: date = identity.valid_from
    end: date | None = identity.valid_to
    claim_back_from = claim_back_to = None
    if rule is BenefitDates.LIST_DATE:
        # 000 §2: from the day the list is provided, stops from the day the exit list is.
        if identity.listed_on is not None:
            start = max(start, identity.listed_on)
        if end is not None and identity.exit_listed_on is not None:
            end = identity.exit_listed_on - timedelta(days=1)
    elif rule is BenefitDates.NEXT_MONTH:
        # 004 §3: from the month after recognition; the look-back is for those recognitions.
        start = max(start, first_of_next_month(identity.recognized_on))
        if identity.category in rules.lookback_categories and rules.lookback_months > 0:
            claim_back_from = add_months(identity.recognized_on, -rules.lookback_months)
            claim_back_to = identity.recognized_on - timedelta(days=1)
    if end is not None and end_rule is BenefitDates.NEXT_MONTH:
        end = last_of_month(end)  # 004 §3: stops from the month after the exit
    window_empty = end is not None and end < start
    return Entitlement(
        identity=identity,
        rank=rules.rank(identity.category),
        dates_rule=rule,
        exit_rule=end_rule,
        entitled_from=None if window_empty else start,
        entitled_to=None if window_empty else end,
        claim_back_from=claim_back_from,
        claim_back_to=claim_back_to,
    )


def highest(candidates: Iterable[Entitlement]) -> Entitlement | None:
    """The one that governs: highest rank, then earliest recognition, then category code."""
    return min(candidates, key=lambda e: e.order, default=None)


# ----------------------------------------------------------------------------- one day
@dataclass(frozen=True, slots=True)
class ReliefOnDate:
    """The answer for one day: the identities that matter that day (held, entitled, or in a
    look-back window), highest first; the governing (highest held) and the benefit (highest
    entitled) identity."""

    on: date
    identities: tuple[Entitlement, ...]
    governing: Entitlement | None
    benefit: Entitlement | None

    @property
    def held(self) -> tuple[Entitlement, ...]:
        return tuple(e for e in self.identities if e.held_on(self.on))

    @property
    def entitled(self) -> tuple[Entitlement, ...]:
        return tuple(e for e in self.identities if e.entitled_on(self.on))

    def summary(self) -> str:
        """One sentence a settlement clerk can read aloud."""
        day = self.on.isoformat()
        if not self.identities:
            return f"{day} 无救助身份, 不享受医疗救助待遇"
        parts = [
            f"持有的最高身份为{_name(self.governing)}"
            if self.governing is not None
            else "未持有救助身份"
        ]
        benefit = self.benefit
        if benefit is None:
            parts.append("不享受医疗救助待遇")
        else:
            paid = f"按{_name(benefit)}享受医疗救助待遇"
            if not benefit.held_on(self.on) and benefit.identity.valid_to is not None:
                until = benefit.entitled_to.isoformat() if benefit.entitled_to else ""
                paid += (
                    f" (该身份已于 {benefit.identity.valid_to.isoformat()} 退出, "
                    f"待遇享受至 {until})"
                )
            parts.append(paid)
        for entry in self.held:
            starts = entry.entitled_from
            outranks = benefit is None or entry.order < benefit.order
            if outranks and starts is not None and starts > self.on:
                parts.append(f"{_name(entry)}自 {starts.isoformat()} 起享受待遇")
        for entry in self.identities:
            if entry.may_claim_back_on(self.on):
                assert entry.claim_back_from is not None
                assert entry.claim_back_to is not None
                parts.append(
                    f"该日在{_name(entry)}认定前的追溯期内 ({entry.claim_back_from.isoformat()}"
                    f" 至 {entry.claim_back_to.isoformat()}), 主要因重大疾病认定的, "
                    "合规自付费用可依申请追溯救助"
                )
        return f"{day} " + "; ".join(parts)


def _name(entry: Entitlement) -> str:
    return "“" + CATEGORY_NAMES_ZH.get(entry.category, entry.category) + "”"


def entitlements(identities: Iterable[Identity], rules: ProvinceRules) -> list[Entitlement]:
    return sorted((entitlement(i, rules) for i in identities), key=lambda e: e.order)


def relief_on(identities: Iterable[Identity], on: date, rules: ProvinceRules) -> ReliefOnDate:
    """Which identities ``on`` falls in, which governs, and which one benefits follow."""
    relevant = tuple(
        e
        for e in entitlements(identities, rules)
        if e.held_on(on) or e.entitled_on(on) or e.may_claim_back_on(on)
    )
    return ReliefOnDate(
        on=on,
        identities=relevant,
        governing=highest(e for e in relevant if e.held_on(on)),
        benefit=highest(e for e in relevant if e.entitled_on(on)),
    )


# ----------------------------------------------------------------------------- a stay
@dataclass(frozen=True, slots=True)
class StayRelief:
    """A hospital stay: the benefit identity for the whole stay is the highest entitled on any
    of its days (004 §3: 一个住院周期内就高不就低)."""

    admitted_on: date
    discharged_on: date
    benefit: Entitlement | None
    identity_changed: bool  # an entitlement began or ended during the stay

    @property
    def days(self) -> int:
        return (self.discharged_on - self.admitted_on).days


def check_stay(admitted_on: date, discharged_on: date) -> None:
    """Refuse a discharge before admission or a stay longer than a year (BAD_USER_INPUT)."""
    if discharged_on < admitted_on:
        raise BadUserInput(
            f"出院日期 dischargedOn ({discharged_on.isoformat()}) "
            f"不能早于入院日期 on ({admitted_on.isoformat()})"
        )
    if (discharged_on - admitted_on).days > MAX_STAY_DAYS:
        raise BadUserInput(
            f"住院天数不能超过 {MAX_STAY_DAYS} 天: 请检查入院日期 on 和出院日期 dischargedOn"
        )


def relief_for_stay(
    identities: Iterable[Identity], admitted_on: date, discharged_on: date, rules: ProvinceRules
) -> StayRelief:
    check_stay(admitted_on, discharged_on)
    during = [
        e for e in entitlements(identities, rules) if e.entitled_between(admitted_on, discharged_on)
    ]

    def changes_inside(e: Entitlement) -> bool:
        assert e.entitled_from is not None
        starts_inside = admitted_on < e.entitled_from <= discharged_on
        ends_inside = e.entitled_to is not None and admitted_on <= e.entitled_to < discharged_on
        return starts_inside or ends_inside

    return StayRelief(
        admitted_on=admitted_on,
        discharged_on=discharged_on,
        benefit=highest(during),
        identity_changed=any(changes_inside(e) for e in during),
    )


# ----------------------------------------------------------------------------- subsidy
@dataclass(frozen=True, slots=True)
class SubsidyYear:
    """The subsidised-enrollment category (资助参保类别) of a natural year (rule 6, 001 §2,
    004 §3): locked once granted; a different governing identity applies from next year."""

    year: int
    category: str | None  # on the year's enrollment: already granted, not adjusted
    next_year_category: str | None  # the governing identity's category on the day asked

    @property
    def locked(self) -> bool:
        return self.category is not None

    @property
    def changes_next_year(self) -> bool:
        return self.next_year_category != self.category


def subsidised_category(enrollments: Sequence[Any]) -> str | None:
    """The subsidy category on a year's enrollments: resident insurance first (the subsidy is
    towards the resident contribution), then any other enrollment that carries one."""
    ordered = sorted(enrollments, key=lambda e: (e.insurance_type != "RESIDENT", e.id))
    return next((e.subsidy_category for e in ordered if e.subsidy_category), None)


def subsidy_for_year(
    year: int, granted_category: str | None, governing: Entitlement | None
) -> SubsidyYear:
    """The year's subsidy: what was granted stays; the identity governing on the day asked is
    what applies from next year (004 §3: 次年起落实相应参保资助政策)."""
    return SubsidyYear(
        year=year,
        category=granted_category,
        next_year_category=None if governing is None else governing.category,
    )
