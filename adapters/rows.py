"""Source rows → canonical, validated rows of one kind, or the reasons a row is rejected.

Every problem in a row is reported (one rejection per column), so a clerk fixes a row once.
Nothing here touches the database: what a row *means* for stored records (new, exit, identity
change, anomaly) is decided in ``adapters.apply`` against what is already stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from adapters import values
from adapters.mapping import FIELD_NAMES_ZH, NOT_A_CATEGORY, Feed
from adapters.readers import SourceRow
from adapters.values import ValueProblem
from gateway.domain.id_numbers import birth_date_of, gender_of

MAX_ADDRESS = 200
MAX_HOUSEHOLD_NUMBER = 64
MAX_RELATION = 16
MAX_SETTLEMENT_NUMBER = 64


@dataclass(frozen=True, slots=True)
class Rejection:
    """One reason a row was not stored: 行号, 列, 值, 原因 in the report."""

    line: int
    column: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class PersonFacts:
    line: int
    id_number: str
    name: str

    @property
    def birth_date(self) -> date:
        return birth_date_of(self.id_number)

    @property
    def gender(self) -> str:
        return gender_of(self.id_number)


@dataclass(frozen=True, slots=True)
class IdentityRow(PersonFacts):
    region_code: str
    category: str | None  # None: a person-only feed, or a label that is not an identity
    recognized_on: date | None
    exited_on: date | None
    stated_birth_date: date | None
    phone: str | None
    address: str | None
    household_number: str | None
    relation: str | None


@dataclass(frozen=True, slots=True)
class EnrollmentRow(PersonFacts):
    year: int
    insurance_type: str
    status: str
    region_code: str
    subsidy_category: str | None
    subsidy_amount: Decimal | None


@dataclass(frozen=True, slots=True)
class SettlementRow(PersonFacts):
    settlement_number: str
    settled_on: date
    visit_type: str
    total_cost: Decimal
    basic_paid: Decimal
    critical_paid: Decimal
    assistance_paid: Decimal
    personal_burden: Decimal


@dataclass(frozen=True, slots=True)
class VitalEventRow(PersonFacts):
    event: str
    event_date: date


CanonicalRow = IdentityRow | EnrollmentRow | SettlementRow | VitalEventRow


def _bounded_text(limit: int, what: str) -> Callable[[object], str | None]:
    def parse(raw: object) -> str | None:
        value = values.text(raw)
        if value is not None and len(value) > limit:
            raise ValueProblem(f"{what}过长（最多{limit}个字）")
        return value

    return parse


def _required_text(limit: int, what: str) -> Callable[[object], str]:
    optional = _bounded_text(limit, what)

    def parse(raw: object) -> str:
        value = optional(raw)
        if value is None:
            raise ValueProblem(f"{what}不能为空")
        return value

    return parse


class RowParser:
    """Parses the rows of one feed; ``today`` bounds dates that cannot lie in the future."""

    def __init__(self, feed: Feed, *, today: date, header_names: dict[str, str]) -> None:
        self.feed = feed
        self.today = today
        # canonical field → the header the clerk sees in their file (for the report)
        self.header_names = {f: header_names.get(f, FIELD_NAMES_ZH.get(f, f)) for f in feed.mapped}
        self._parsers = self._field_parsers()

    def _label(self, field: str) -> Callable[[object], str]:
        labels = self.feed.labels[field]
        what = FIELD_NAMES_ZH.get(field, field)
        return values.label_parser(labels, what=what)

    def _optional_label(self, field: str) -> Callable[[object], str | None]:
        parse = self._label(field)
        return lambda raw: None if values.text(raw) is None else parse(raw)

    def _field_parsers(self) -> dict[str, Callable[[object], Any]]:
        today = self.today
        parsers: dict[str, Callable[[object], Any]] = {
            "name": values.parse_name,
            "id_number": lambda raw: values.parse_id_number(raw, today=today),
            "region_code": values.parse_region_code,
            "recognized_on": values.parse_date,
            "exited_on": values.parse_optional_date,
            "birth_date": values.parse_optional_date,
            "phone": values.parse_phone,
            "address": _bounded_text(MAX_ADDRESS, "家庭住址"),
            "household_id": _bounded_text(MAX_HOUSEHOLD_NUMBER, "户编号"),
            "relation": _bounded_text(MAX_RELATION, "与户主关系"),
            "year": values.parse_year,
            "subsidy_amount": values.parse_optional_amount,
            "settled_on": values.parse_date,
            "event_date": values.parse_date,
            "settlement_id": _required_text(MAX_SETTLEMENT_NUMBER, "结算流水号"),
        }
        for money in ("total_cost", "basic_paid", "critical_paid", "assistance_paid"):
            parsers[money] = values.parse_amount
        parsers["personal_burden"] = values.parse_amount
        for field in ("category", "insurance_type", "status", "visit_type", "event"):
            if field in self.feed.labels:
                parsers[field] = self._label(field)
        if "subsidy_category" in self.feed.labels:
            parsers["subsidy_category"] = self._optional_label("subsidy_category")
        return {f: p for f, p in parsers.items() if f in self.feed.mapped}

    def parse(self, row: SourceRow) -> CanonicalRow | list[Rejection]:
        if row.error is not None:
            return [Rejection(row.line, "", "", row.error)]
        parsed: dict[str, Any] = {}
        problems: list[Rejection] = []
        for field, parse in self._parsers.items():
            raw = row.values.get(field)
            try:
                parsed[field] = parse(raw)
            except ValueProblem as problem:
                problems.append(self._rejection(row.line, field, raw, problem.reason))
        if problems:
            return problems
        rule = self._cross_field_problem(parsed)
        if rule is not None:
            field, reason = rule
            return [self._rejection(row.line, field, row.values.get(field), reason)]
        return self._build(row.line, parsed)

    def _rejection(self, line: int, field: str, raw: object, reason: str) -> Rejection:
        shown = "" if raw is None else str(raw)
        return Rejection(line, self.header_names.get(field, field), shown[:100], reason)

    def _cross_field_problem(self, p: dict[str, Any]) -> tuple[str, str] | None:
        """Rules between the fields of one row; the field named is where the clerk looks."""
        kind = self.feed.kind
        if kind == "identities":
            recognized, exited = p.get("recognized_on"), p.get("exited_on")
            if recognized is not None and recognized > self.today:
                return "recognized_on", "认定日期不能晚于今天"
            if exited is not None and recognized is not None and exited < recognized:
                return "exited_on", "退出日期早于认定日期"
        elif kind == "enrollments":
            if p.get("subsidy_amount") is not None and p.get("subsidy_category") is None:
                return "subsidy_category", "填写了资助金额但未填写资助类别"
        elif kind == "settlements":
            if p["settled_on"] > self.today:
                return "settled_on", "结算日期不能晚于今天"
            paid = p["basic_paid"] + p["critical_paid"] + p["assistance_paid"]
            if paid > p["total_cost"]:
                return "total_cost", "基本医保、大病保险与医疗救助支付合计超过医疗总费用"
            if p["personal_burden"] > p["total_cost"]:
                return "personal_burden", "个人负担超过医疗总费用"
        elif kind == "vital_events":
            if p["event_date"] > self.today:
                return "event_date", "事件日期不能晚于今天"
            if p["event_date"] < birth_date_of(p["id_number"]):
                return "event_date", "事件日期早于身份证号码中的出生日期"
        return None

    def _build(self, line: int, p: dict[str, Any]) -> CanonicalRow:
        kind = self.feed.kind
        person = {"line": line, "id_number": p["id_number"], "name": p["name"]}
        if kind == "identities":
            category = p.get("category")
            return IdentityRow(
                **person,
                region_code=p["region_code"],
                category=None if category in (None, NOT_A_CATEGORY) else category,
                recognized_on=p.get("recognized_on"),
                exited_on=p.get("exited_on"),
                stated_birth_date=p.get("birth_date"),
                phone=p.get("phone"),
                address=p.get("address"),
                household_number=p.get("household_id"),
                relation=p.get("relation"),
            )
        if kind == "enrollments":
            return EnrollmentRow(
                **person,
                year=p["year"],
                insurance_type=p["insurance_type"],
                status=p["status"],
                region_code=p["region_code"],
                subsidy_category=p.get("subsidy_category"),
                subsidy_amount=p.get("subsidy_amount"),
            )
        if kind == "settlements":
            return SettlementRow(
                **person,
                settlement_number=p["settlement_id"],
                settled_on=p["settled_on"],
                visit_type=p["visit_type"],
                total_cost=p["total_cost"],
                basic_paid=p["basic_paid"],
                critical_paid=p["critical_paid"],
                assistance_paid=p["assistance_paid"],
                personal_burden=p["personal_burden"],
            )
        return VitalEventRow(**person, event=p["event"], event_date=p["event_date"])
