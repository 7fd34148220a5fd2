"""Canonical plaintext records: what adapters and the synthetic generator produce and the
storage writer seals and stores. No SQL, no GraphQL, no crypto here.

Enum-like strings use the GraphQL enum names (``MINIMUM_LIVING``, ``RESIDENT``, ``ACTIVE``,
``MALE``) and department codes from DOMAIN.md (``civil_affairs``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class HouseholdRecord:
    household_id: uuid.UUID
    region_code: str


@dataclass(frozen=True, slots=True)
class PersonRecord:
    person_id: uuid.UUID
    id_number: str  # 18 characters, check digit valid, upper-case X
    name: str
    gender: str  # MALE / FEMALE
    birth_date: date
    region_code: str  # 12 digits where known, else 6
    phone: str | None = None
    address: str | None = None
    household_id: uuid.UUID | None = None
    relation: str | None = None  # 与户主关系: 户主, 配偶, 子女, 父母, 孙子女, 其他


@dataclass(frozen=True, slots=True)
class ReliefStatusRecord:
    person_id: uuid.UUID
    category: str  # ReliefCategory name
    source_department: str  # department code
    recognized_on: date
    valid_from: date
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    person_id: uuid.UUID
    year: int
    insurance_type: str  # RESIDENT / EMPLOYEE
    status: str  # ACTIVE / SUSPENDED / TERMINATED
    region_code: str
    subsidy_category: str | None = None
    subsidy_amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CostBurdenRecord:
    person_id: uuid.UUID
    year: int
    total_cost: Decimal
    basic_insurance_paid: Decimal
    critical_illness_paid: Decimal
    medical_assistance_paid: Decimal
    personal_burden: Decimal
    inpatient_count: int


@dataclass(slots=True)
class HouseholdBundle:
    """One household with everything about its members, the unit the writer stores at once."""

    household: HouseholdRecord
    members: list[PersonRecord] = field(default_factory=list)
    relief_statuses: list[ReliefStatusRecord] = field(default_factory=list)
    enrollments: list[EnrollmentRecord] = field(default_factory=list)
    cost_burdens: list[CostBurdenRecord] = field(default_factory=list)
