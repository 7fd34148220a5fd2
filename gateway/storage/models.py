"""Tables. Person identity fields are stored only as ciphertext (see ``gateway.crypto``).

``id_number_ct``/``name_ct``/``phone_ct``/``address_ct`` hold sealed values whose associated
data binds them to ``person.<column>.<person id>``; ``id_number_bidx``/``phone_bidx`` are keyed
blind indexes (HMAC) for equality lookup. The region code is split into province/city/county
columns so that a jurisdiction predicate is a plain indexed equality, not a LIKE.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer, "sqlite")
Money = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


class Household(Base):
    """户: a household as the source department numbered it."""

    __tablename__ = "household"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    region_code: Mapped[str] = mapped_column(String(12))
    county_code: Mapped[str] = mapped_column(String(6), index=True)


class Person(Base):
    """人员: one real person, unique by resident ID number (via its blind index)."""

    __tablename__ = "person"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id_number_bidx: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    id_number_ct: Mapped[bytes] = mapped_column(LargeBinary)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    phone_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    address_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    gender: Mapped[str] = mapped_column(String(6))  # MALE / FEMALE, from the ID's sequence digit
    birth_date: Mapped[date] = mapped_column(Date)
    region_code: Mapped[str] = mapped_column(String(12))  # 12-digit where known, else 6
    province_code: Mapped[str] = mapped_column(String(2))
    city_code: Mapped[str] = mapped_column(String(4))
    county_code: Mapped[str] = mapped_column(String(6))
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("household.id", ondelete="SET NULL"), index=True
    )
    relation: Mapped[str | None] = mapped_column(String(16))  # 与户主关系
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Keyset pagination inside a jurisdiction: WHERE county_code = ? AND id > ? ORDER BY id.
        Index("ix_person_county_id", "county_code", "id"),
        Index("ix_person_city_id", "city_code", "id"),
        Index("ix_person_province_id", "province_code", "id"),
    )


class ReliefStatus(Base):
    """救助身份: one category recognised by one department for one period."""

    __tablename__ = "relief_status"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32))
    source_department: Mapped[str] = mapped_column(String(32))
    recognized_on: Mapped[date] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        Index("ix_relief_status_person", "person_id"),
        # Row conditions ("holds one of these categories") probe by category, then person.
        Index("ix_relief_status_category_person", "category", "person_id"),
    )


class Enrollment(Base):
    """参保: one person's enrollment in one year."""

    __tablename__ = "enrollment"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    year: Mapped[int] = mapped_column(Integer)
    insurance_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str] = mapped_column(String(12))  # 参保地
    subsidy_category: Mapped[str | None] = mapped_column(String(32))
    subsidy_amount: Mapped[Decimal | None] = mapped_column(Money)

    __table_args__ = (Index("ix_enrollment_person_year", "person_id", "year"),)


class CostBurden(Base):
    """医疗费用负担: one person's cumulative costs in one year."""

    __tablename__ = "cost_burden"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    year: Mapped[int] = mapped_column(Integer)
    total_cost: Mapped[Decimal] = mapped_column(Money)
    basic_insurance_paid: Mapped[Decimal] = mapped_column(Money)
    critical_illness_paid: Mapped[Decimal] = mapped_column(Money)
    medical_assistance_paid: Mapped[Decimal] = mapped_column(Money)
    personal_burden: Mapped[Decimal] = mapped_column(Money)
    inpatient_count: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_cost_burden_person_year", "person_id", "year"),)


class CasbinRule(Base):
    """casbin's policy lines, in the layout casbin's SQLAlchemy adapter reads and writes."""

    __tablename__ = "casbin_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str | None] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    def __str__(self) -> str:
        """The policy line as the adapter hands it to casbin's line parser."""
        values = [self.ptype or ""]
        for value in (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5):
            if value is None:
                break
            values.append(value)
        return ", ".join(values)


class PolicyVersion(Base):
    """One row per policy version; the highest id is in force. Caches key on it."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """审计: who read what. Hash-chained: ``entry_hash`` covers the entry and ``prev_hash``."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(128))
    department: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(12))
    purpose: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[int] = mapped_column(Integer)
    person_ids: Mapped[str] = mapped_column(Text)  # JSON array of person ids touched
    fields: Mapped[str] = mapped_column(Text)  # JSON object: field -> "read" | "mask"
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_audit_log_occurred", "occurred_at"),)
