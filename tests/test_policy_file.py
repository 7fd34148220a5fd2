"""Policy text (``authz.store.parse_policy_text``) and the access decision casbin yields for it
(``authz.decision.decide``): a typo refuses the file with its line number, and the decision
follows the documented rules (read beats mask, maskable fields only, relations gate their
children, purposes restrict, roles add)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import casbin
import pytest

from authz.conditions import AllRows, HoldsCategory, parse_row_object
from authz.decision import AccessDecision, Effect, decide
from authz.resources import DERIVED_FROM, GUARDED_FIELDS, MASKABLE_FIELDS
from authz.store import (
    default_policy_lines,
    model_path,
    parse_policy_text,
    read_policy_file,
    subject_region,
)
from gateway.domain.departments import Department, Level
from gateway.domain.errors import ConfigurationError
from gateway.domain.principal import Principal

CHINESE = re.compile(r"[\u4e00-\u9fff]")
HEADER = "# 测试策略\np, civil_affairs:*, Person.name, read, *\n"  # lines 1-2 are fine


# --------------------------------------------------------------------------- parsing


def test_default_file_parses() -> None:
    lines = default_policy_lines()
    assert len(lines) > 40
    assert ("medical_insurance:*", "Person(all; places: residence|insured)", "rows", "*") in lines
    assert ("civil_affairs:*", "Person.phone", "mask", "*") in lines
    rural_rows = [
        line for line in lines if line[0] == "rural_revitalization:*" and line[2] == "rows"
    ]
    # Rural revitalisation: its own categories, and the people pushed to it (CONTRACT.md).
    assert sorted(
        str(parse_row_object(line[1])).split(";")[0].split(":")[0] for line in rural_rows
    ) == [
        "category",
        "pushed",
    ]
    # No department without an agreed list gets any person data; those that send data
    # (public security, disabled federation) may only use the exchange's operations, and the
    # big-data bureau only the aggregate statistics.
    for department in ("public_security", "disabled_federation"):
        granted = [line for line in lines if line[0].startswith(department + ":")]
        assert all(line[2] == "call" and line[1].startswith("Ingest.") for line in granted)
    big_data = [line for line in lines if line[0].startswith("big_data:")]
    assert big_data == [("big_data:*", "Statistics.read", "call", "*")]
    assert not [line for line in lines if line[0].startswith("human_resources:")]


def test_comments_blank_lines_and_spacing() -> None:
    text = (
        "# comment\n"
        "\n"
        "   \n"
        "p,civil_affairs:county,Person.name,read,relief_recognition\n"
        "  # indented comment\n"
        "p,   health:*,   Person(category: ORPHAN|SEVERE_DISABILITY),   rows,   *   \n"
        "p, role:security_officer, Person.phone, read, supervision\n"
        "p, civil_affairs:*, CostBurden.*, read, *\n"
    )
    assert parse_policy_text(text) == [
        ("civil_affairs:county", "Person.name", "read", "relief_recognition"),
        ("health:*", "Person(category: ORPHAN|SEVERE_DISABILITY)", "rows", "*"),
        ("role:security_officer", "Person.phone", "read", "supervision"),
        ("civil_affairs:*", "CostBurden.*", "read", "*"),
    ]


BAD_LINES = {
    "too-few-columns": "p, civil_affairs:*, Person.name, read",
    "too-many-columns": "p, civil_affairs:*, Person.name, read, *, extra",
    "unquoted-comma-in-object": "p, health:*, Person(category: ORPHAN, SEVERE_DISABILITY), rows, *",
    "not-p": "g, civil_affairs:*, Person.name, read, *",
    "unknown-department": "p, police:*, Person.name, read, *",
    "department-wildcard": "p, *:county, Person.name, read, *",
    "no-level": "p, civil_affairs, Person.name, read, *",
    "unknown-level": "p, civil_affairs:town, Person.name, read, *",
    "role-without-name": "p, role:, Person.name, read, *",
    "unknown-action": "p, civil_affairs:*, Person.name, write, *",
    "empty-action": "p, civil_affairs:*, Person.name, , *",
    "unknown-field": "p, civil_affairs:*, Person.salary, read, *",
    "field-wrong-case": "p, civil_affairs:*, person.name, read, *",
    "wildcard-matching-nothing": "p, civil_affairs:*, Salary.*, read, *",
    "row-object-with-read": "p, civil_affairs:*, Person(all), read, *",
    "field-with-rows": "p, civil_affairs:*, Person.name, rows, *",
    "bad-row-object": "p, civil_affairs:*, Person[all], rows, *",
    "unclosed-row-object": "p, civil_affairs:*, Person(all, rows, *",
    "unknown-row-condition": "p, civil_affairs:*, Person(region: 3701), rows, *",
    "empty-category": "p, civil_affairs:*, Person(category: ), rows, *",
    "unknown-category": "p, civil_affairs:*, Person(category: ORPHAN|RICH), rows, *",
    "empty-purpose": "p, civil_affairs:*, Person.name, read, ",
    "region-not-digits": "p, civil_affairs@jinan:county, Person.name, read, *",
    "region-of-5-digits": "p, civil_affairs@37010:county, Person.name, read, *",
    "region-of-a-township": "p, civil_affairs@370102001:county, Person.name, read, *",
    "region-empty": "p, civil_affairs@:county, Person.name, read, *",
    "region-on-a-role": "p, role@37:security_officer, Person.name, read, *",
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_bad_line_is_refused_with_line_number(kind: str) -> None:
    text = HEADER + BAD_LINES[kind] + "\np, health:*, Person.name, read, *\n"
    with pytest.raises(ConfigurationError) as info:
        parse_policy_text(text, source="测试文件")
    message = info.value.message
    assert "第 3 行" in message, message
    assert "测试文件" in message
    assert CHINESE.search(message.replace("第 3 行", "").replace("测试文件", ""))
    assert info.value.code == "CONFIGURATION"


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("unknown-department", "police"),
        ("unknown-level", "town"),
        ("unknown-action", "write"),
        ("unknown-field", "Person.salary"),
        ("wildcard-matching-nothing", "Salary.*"),
        ("unknown-category", "RICH"),
        ("empty-purpose", "用途"),
        ("too-few-columns", "五列"),
    ],
)
def test_message_names_the_culprit(kind: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_policy_text(HEADER + BAD_LINES[kind] + "\n")
    assert fragment in info.value.message


def test_line_numbers_count_comments_and_blank_lines() -> None:
    text = (
        "# a\n\n# b\np, civil_affairs:*, Person.name, read, *\n\n\np, x:*, Person.name, read, *\n"
    )
    with pytest.raises(ConfigurationError) as info:
        parse_policy_text(text)
    assert "第 7 行" in info.value.message


def test_read_policy_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.csv"
    path.write_text("p, civil_affairs:*, Person.nam, read, *\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        read_policy_file(path)
    assert str(path) in info.value.message
    assert "第 1 行" in info.value.message


# --------------------------------------------------------------------------- decisions


def _enforcer(lines: Iterable[tuple[str, str, str, str]]) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(model_path())
    for line in lines:
        enforcer.add_policy(*line)
    return enforcer


def _decide(
    text: str,
    *subject_keys: str,
    purpose: str = "supervision",
) -> AccessDecision:
    lines = parse_policy_text(text)
    enforcer = _enforcer(lines)
    rows = {obj for _, obj, act, _ in lines if act == "rows"}
    return decide(
        enforcer,
        subject_keys=subject_keys or ("civil_affairs:county",),
        purpose=purpose,
        row_objects=rows,
        policy_version=7,
    )


def test_deny_by_default() -> None:
    decision = _decide("# nothing\n")
    assert set(decision.fields) == set(GUARDED_FIELDS)
    assert all(effect is Effect.DENY for effect in decision.fields.values())
    assert decision.row_conditions == ()
    assert not decision.sees_rows
    assert decision.effect("Person.unknownField") is Effect.DENY
    assert decision.policy_version == 7


def test_read_beats_mask() -> None:
    text = (
        "p, civil_affairs:*, Person.phone, mask, *\n"
        "p, civil_affairs:*, Person.phone, read, *\n"
        "p, civil_affairs:*, Person.name, mask, *\n"
    )
    decision = _decide(text)
    assert decision.effect("Person.phone") is Effect.READ
    assert decision.effect("Person.name") is Effect.MASK
    # Order does not matter.
    reversed_text = "\n".join(reversed(text.strip().splitlines()))
    assert _decide(reversed_text).effect("Person.phone") is Effect.READ


@pytest.mark.parametrize("field", sorted(set(GUARDED_FIELDS) - MASKABLE_FIELDS))
def test_mask_on_non_maskable_field_is_deny(field: str) -> None:
    relation = {
        "Household": "Person.household",
        "ReliefStatus": "Person.reliefStatuses",
        "Enrollment": "Person.enrollments",
        "CostBurden": "Person.costBurdens",
    }.get(field.split(".")[0])
    text = f"p, civil_affairs:*, {field}, mask, *\n"
    if relation:
        text += f"p, civil_affairs:*, {relation}, read, *\n"
    assert _decide(text).effect(field) is Effect.DENY


@pytest.mark.parametrize("field", sorted(MASKABLE_FIELDS))
def test_mask_on_maskable_field(field: str) -> None:
    assert _decide(f"p, civil_affairs:*, {field}, mask, *\n").effect(field) is Effect.MASK


@pytest.mark.parametrize(
    ("relation", "children"),
    [
        ("Person.reliefStatuses", "ReliefStatus.*"),
        ("Person.enrollments", "Enrollment.*"),
        ("Person.costBurdens", "CostBurden.*"),
        ("Person.household", "Household.*"),
    ],
)
def test_children_denied_without_their_relation(relation: str, children: str) -> None:
    prefix = children[:-1]
    without = _decide(f"p, civil_affairs:*, {children}, read, *\n")
    child_fields = [f for f in GUARDED_FIELDS if f.startswith(prefix)]
    assert child_fields
    assert all(without.effect(f) is Effect.DENY for f in child_fields)
    assert without.effect(relation) is Effect.DENY

    with_relation = _decide(
        f"p, civil_affairs:*, {children}, read, *\np, civil_affairs:*, {relation}, read, *\n"
    )
    assert with_relation.effect(relation) is Effect.READ
    assert all(with_relation.effect(f) is Effect.READ for f in child_fields)


def test_relation_granted_for_other_purpose_denies_children() -> None:
    text = (
        "p, civil_affairs:*, ReliefStatus.*, read, *\n"
        "p, civil_affairs:*, Person.reliefStatuses, read, relief_recognition\n"
    )
    recognition = _decide(text, purpose="relief_recognition")
    assert recognition.effect("ReliefStatus.validFrom") is Effect.READ
    assert _decide(text, purpose="supervision").effect("ReliefStatus.validFrom") is Effect.DENY


def test_purpose_restricts_a_line() -> None:
    text = "p, civil_affairs:*, Person.name, read, relief_recognition\n"
    assert _decide(text, purpose="relief_recognition").effect("Person.name") is Effect.READ
    assert _decide(text, purpose="supervision").effect("Person.name") is Effect.DENY
    assert _decide(text, purpose="").effect("Person.name") is Effect.DENY
    assert _decide(text, purpose="relief_recognition_x").effect("Person.name") is Effect.DENY


def test_purpose_star_includes_no_purpose() -> None:
    text = "p, civil_affairs:*, Person.name, read, *\n"
    for purpose in ("", "supervision", "benefit_settlement"):
        assert _decide(text, purpose=purpose).effect("Person.name") is Effect.READ


def test_purpose_specific_read_over_general_mask() -> None:
    text = (
        "p, civil_affairs:*, Person.phone, mask, *\n"
        "p, civil_affairs:*, Person.phone, read, high_cost_monitoring\n"
    )
    assert _decide(text, purpose="high_cost_monitoring").effect("Person.phone") is Effect.READ
    assert _decide(text, purpose="supervision").effect("Person.phone") is Effect.MASK


def test_purpose_restricts_rows() -> None:
    text = "p, civil_affairs:*, Person(all), rows, relief_recognition\n"
    assert _decide(text, purpose="relief_recognition").row_conditions == (AllRows(),)
    assert _decide(text, purpose="supervision").row_conditions == ()


def test_role_subjects_add_grants() -> None:
    text = (
        "p, civil_affairs:*, Person.phone, mask, *\n"
        "p, role:security_officer, Person.phone, read, *\n"
        "p, role:security_officer, Person.address, read, supervision\n"
    )
    plain = _decide(text, "civil_affairs:county")
    officer = _decide(text, "civil_affairs:county", "role:security_officer")
    assert plain.effect("Person.phone") is Effect.MASK
    assert officer.effect("Person.phone") is Effect.READ
    assert plain.effect("Person.address") is Effect.DENY
    assert officer.effect("Person.address") is Effect.READ
    assert (
        _decide(text, "civil_affairs:county", "role:security_officer", purpose="").effect(
            "Person.address"
        )
        is Effect.DENY
    )


def test_subject_level_and_department_matching() -> None:
    text = (
        "p, civil_affairs:county, Person.name, read, *\n"
        "p, civil_affairs:*, Person.gender, read, *\n"
    )
    county = _decide(text, "civil_affairs:county")
    city = _decide(text, "civil_affairs:city")
    health = _decide(text, "health:county")
    assert county.effect("Person.name") is Effect.READ
    assert city.effect("Person.name") is Effect.DENY
    assert city.effect("Person.gender") is Effect.READ
    assert health.effect("Person.gender") is Effect.DENY
    assert health.effect("Person.name") is Effect.DENY


def test_field_wildcard_is_a_prefix_within_the_type() -> None:
    decision = _decide("p, civil_affairs:*, Person.*, read, *\n")
    for field in GUARDED_FIELDS:
        expected = Effect.READ if field.startswith("Person.") else Effect.DENY
        if field in DERIVED_FROM:
            expected = Effect.DENY  # derived from ReliefStatus fields, not granted here
        assert decision.effect(field) is expected, field


def test_row_conditions_granted() -> None:
    text = (
        "p, rural_revitalization:*, "
        "Person(category: MONITORED_UNSTABLE|LIFTED_FROM_POVERTY), rows, *\n"
        "p, health:*, Person(all), rows, *\n"
    )
    rural = _decide(text, "rural_revitalization:county")
    assert rural.row_conditions == (
        HoldsCategory(frozenset({"MONITORED_UNSTABLE", "LIFTED_FROM_POVERTY"})),
    )
    assert rural.sees_rows
    assert _decide(text, "health:city").row_conditions == (AllRows(),)
    assert _decide(text, "civil_affairs:city").row_conditions == ()


def test_default_policy_decisions() -> None:
    lines = default_policy_lines()
    enforcer = _enforcer(lines)
    rows = {obj for _, obj, act, _ in lines if act == "rows"}

    def decision(subject: str) -> AccessDecision:
        return decide(
            enforcer, subject_keys=(subject,), purpose="", row_objects=rows, policy_version=1
        )

    medical = decision("medical_insurance:province")
    assert all(medical.effect(f) is Effect.READ for f in GUARDED_FIELDS)
    civil = decision("civil_affairs:county")
    assert civil.effect("Person.phone") is Effect.MASK
    assert civil.effect("Enrollment.subsidyAmount") is Effect.DENY
    assert civil.effect("CostBurden.medicalAssistancePaid") is Effect.DENY
    health = decision("health:city")
    assert health.effect("Person.phone") is Effect.DENY
    assert health.effect("Person.reliefStatuses") is Effect.DENY
    assert health.effect("ReliefStatus.validFrom") is Effect.DENY
    big_data = decision("big_data:province")
    assert all(big_data.effect(f) is Effect.DENY for f in GUARDED_FIELDS)
    assert big_data.row_conditions == ()


# --------------------------------------------------------------------------- region-limited lines


def test_a_region_limited_subject_parses() -> None:
    assert parse_policy_text("p, civil_affairs@3701:*, Person.phone, read, *\n") == [
        ("civil_affairs@3701:*", "Person.phone", "read", "*")
    ]
    assert subject_region("civil_affairs@3701:county") == "3701"
    assert subject_region("civil_affairs:county") == ""
    assert subject_region("role:security_officer") == ""


@pytest.mark.parametrize(
    ("line_subject", "caller_region", "granted"),
    [
        ("civil_affairs@3701:county", "370102", True),  # inside the city
        ("civil_affairs@3701:county", "370202", False),  # another city
        ("civil_affairs@3701:*", "370102", True),  # any level inside the city
        ("civil_affairs@370102:county", "370102", True),
        ("civil_affairs@370102:county", "370103", False),  # the neighbouring county
        ("civil_affairs@37:county", "370102", True),
        ("civil_affairs@14:county", "370102", False),
        ("civil_affairs@3701:city", "370102", False),  # another level
        ("health@3701:county", "370102", False),  # another department
    ],
)
def test_a_region_limited_line_grants_only_inside_its_region(
    line_subject: str, caller_region: str, granted: bool
) -> None:
    """A list one city agreed for its own area (000 §4) binds callers there and nowhere else."""
    caller = Principal("t", Department.CIVIL_AFFAIRS, Level.COUNTY, caller_region)
    decision = _decide(
        f"p, civil_affairs:*, Person.phone, mask, *\np, {line_subject}, Person.phone, read, *\n",
        *caller.subject_keys,
    )
    assert decision.effect("Person.phone") is (Effect.READ if granted else Effect.MASK)


def test_province_wide_lines_still_reach_every_region() -> None:
    caller = Principal("t", Department.CIVIL_AFFAIRS, Level.COUNTY, "140105")
    decision = _decide("p, civil_affairs:county, Person.name, read, *\n", *caller.subject_keys)
    assert decision.effect("Person.name") is Effect.READ
