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
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer, "sqlite")
Money = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


class SourcedMixin:
    """Provenance of a stored fact: the batch (department, file or push, when received) and
    the line of the file, or the position in the push, it came from. Null only for rows
    written before ingest existed."""

    @declared_attr
    def batch_id(cls) -> Mapped[uuid.UUID | None]:
        return mapped_column(
            ForeignKey(
                "ingest_batch.id",
                ondelete="SET NULL",
                name=f"fk_{cls.__tablename__}_batch_id",  # type: ignore[attr-defined]
            )
        )

    source_line: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IngestBatch(Base):
    """批次: one file or one push from one department's feed, with what it changed."""

    __tablename__ = "ingest_batch"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    department: Mapped[str] = mapped_column(String(32))
    feed: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))  # FILE / PUSH / SEED
    file_name: Mapped[str | None] = mapped_column(String(255))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    # Narrowest jurisdiction (2/4/6 digits) covering the batch; who may list it.
    region: Mapped[str] = mapped_column(String(12))
    submitted_by: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # RUNNING / COMPLETED / FAILED
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_accepted: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)  # 新增
    exited: Mapped[int] = mapped_column(Integer, default=0)  # 退出
    identity_changed: Mapped[int] = mapped_column(Integer, default=0)  # 身份变更
    updated: Mapped[int] = mapped_column(Integer, default=0)  # 信息更新
    unmatched: Mapped[int] = mapped_column(Integer, default=0)  # 未匹配到人员 (不涉及)
    anomalies_opened: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_ingest_batch_department_received", "department", "received_at"),
        Index("ix_ingest_batch_content", "department", "feed", "content_sha256"),
    )


class Household(Base):
    """户: a household as the source department numbered it."""

    __tablename__ = "household"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    region_code: Mapped[str] = mapped_column(String(12))
    county_code: Mapped[str] = mapped_column(String(6), index=True)
    # 户编号 as the source department numbers it (null for synthetic households).
    source_department: Mapped[str | None] = mapped_column(String(32))
    source_number: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ux_household_source", "source_department", "source_number", unique=True),
    )


class Person(Base):
    """人员: one real person, unique by resident ID number (via its blind index)."""

    __tablename__ = "person"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id_number_bidx: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    id_number_ct: Mapped[bytes] = mapped_column(LargeBinary)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # Keyed hash of the name: compares what two departments call one person without decrypting.
    name_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(32))
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
    deceased_on: Mapped[date | None] = mapped_column(Date)  # reported by health (死亡)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Keyset pagination inside a jurisdiction: WHERE county_code = ? AND id > ? ORDER BY id.
        Index("ix_person_county_id", "county_code", "id"),
        Index("ix_person_city_id", "city_code", "id"),
        Index("ix_person_province_id", "province_code", "id"),
    )


class PersonSource(Base):
    """Which departments reported a person, and from which batch and line they last did.

    ``digest`` is a keyed hash of everything the department said about the person (name,
    region, contact, household), so a re-sent unchanged row is recognised without decrypting.
    """

    __tablename__ = "person_source"

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    department: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ingest_batch.id", ondelete="SET NULL")
    )
    source_line: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PersonPlace(Base):
    """A place the shared data tie a person to, other than the residence (issue 14; kinds in
    ``gateway.domain.places``): where a department recognised an identity, where the person is
    insured, where a push was addressed to a department. Derived from those facts by
    ``gateway.storage.places`` after every write that changes them, so a re-run or a resumed
    run leaves the same rows; an exit or a terminated enrollment ends a place with ``until``,
    it is never deleted while its facts exist.

    Region columns at every level, each indexed with the kind: a row scope "insured place in
    3701" is an index range, like the residence's ``person.city_code``."""

    __tablename__ = "person_place"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # identity: the recognising department; insured: medical_insurance; addressed: the
    # department the push or task was addressed to.
    department: Mapped[str] = mapped_column(String(32))
    county_code: Mapped[str] = mapped_column(String(6))
    city_code: Mapped[str] = mapped_column(String(4))
    province_code: Mapped[str] = mapped_column(String(2))
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)  # the last day; null while it holds

    __table_args__ = (
        Index("ux_person_place", "person_id", "kind", "department", "county_code", unique=True),
        Index("ix_person_place_county", "county_code", "kind", "person_id"),
        Index("ix_person_place_city", "city_code", "kind", "person_id"),
        Index("ix_person_place_province", "province_code", "kind", "person_id"),
    )


class PersonReport(Base):
    """What a department sent about a person held outside its jurisdiction (issue 14 item 4):
    the identification, contacts and household as that row stated them, per department and
    the sender's county, sealed like the person's own. The sender sees the person as it sent
    them (``reported`` place) and nothing the person's own places hold, exactly as it would see
    a person its row created, until the person's own county verifies the tie
    (REPORTED_BY_ANOTHER_REGION resolved as 不属于异常 or 已更正: ``verified_on``)."""

    __tablename__ = "person_report"

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    department: Mapped[str] = mapped_column(String(32), primary_key=True)
    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)  # the sender's
    region_code: Mapped[str] = mapped_column(String(12))  # as the row stated it
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    address_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("household.id", ondelete="SET NULL")
    )
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ingest_batch.id", ondelete="SET NULL")
    )
    source_line: Mapped[int | None] = mapped_column(Integer)
    reported_on: Mapped[date] = mapped_column(Date)  # first sent
    verified_on: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (Index("ix_person_report_household", "household_id"),)


class ReliefStatus(SourcedMixin, Base):
    """救助身份: one category recognised by one department for one period."""

    __tablename__ = "relief_status"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32))
    source_department: Mapped[str] = mapped_column(String(32))
    recognized_on: Mapped[date] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    # The (Beijing) day the exchange first received this identity, and the day it received the
    # exit: Shanxi's benefits run from list to list (000 §2). Null for rows stored before
    # migration 0003 (taken as valid_from and the day after valid_to).
    listed_on: Mapped[date | None] = mapped_column(Date)
    exit_listed_on: Mapped[date | None] = mapped_column(Date)
    # 认定地: the county of the department that recognised it (the county of the list row
    # that reported it). Null for rows stored before migration 0007: their person's county.
    county_code: Mapped[str | None] = mapped_column(String(6))

    __table_args__ = (
        # Row conditions ("holds one of these categories") probe by category, then person.
        Index("ix_relief_status_category_person", "category", "person_id"),
        # What one batch changed (the verification tasks a list opens for medical insurance).
        Index("ix_relief_status_batch", "batch_id"),
        # One department of one county recognises one category for a person once per
        # recognition date: the key that makes re-loading a file change nothing. (Two
        # counties may report the same recognition: a double recognition, verified by the
        # person's county — issue 14.)
        Index(
            "ux_relief_status_source",
            "person_id",
            "source_department",
            "category",
            "recognized_on",
            "county_code",
            unique=True,
        ),
    )


class Enrollment(SourcedMixin, Base):
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

    __table_args__ = (
        Index("ux_enrollment_person_year_type", "person_id", "year", "insurance_type", unique=True),
    )


class CostBurden(SourcedMixin, Base):
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

    __table_args__ = (Index("ux_cost_burden_person_year", "person_id", "year", unique=True),)


class Settlement(SourcedMixin, Base):
    """结算: one settled medical visit; cost burdens are the per-year sums of these."""

    __tablename__ = "settlement"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    settlement_number: Mapped[str] = mapped_column(String(64))  # 结算流水号
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    settled_on: Mapped[date] = mapped_column(Date)
    year: Mapped[int] = mapped_column(Integer)
    visit_type: Mapped[str] = mapped_column(String(12))  # INPATIENT / OUTPATIENT
    total_cost: Mapped[Decimal] = mapped_column(Money)
    basic_insurance_paid: Mapped[Decimal] = mapped_column(Money)
    critical_illness_paid: Mapped[Decimal] = mapped_column(Money)
    medical_assistance_paid: Mapped[Decimal] = mapped_column(Money)
    personal_burden: Mapped[Decimal] = mapped_column(Money)

    # On PostgreSQL the table is partitioned by year (migration 0005), whose keys must hold the
    # year: the primary key there is (id, year), and a settlement number is unique per year in
    # the database and across years by ingest (looked up under the ingest lock).
    __table_args__ = (
        Index("ix_settlement_person_year", "person_id", "year"),
        UniqueConstraint("settlement_number", "year", name="ux_settlement_number_year"),
    )


class VitalEvent(SourcedMixin, Base):
    """生命事件: a death or birth reported by health."""

    __tablename__ = "vital_event"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(8))  # DEATH / BIRTH
    event_date: Mapped[date] = mapped_column(Date)

    __table_args__ = (Index("ux_vital_event_person_event", "person_id", "event", unique=True),)


class Anomaly(Base):
    """异常回传: a disagreement between sources, sent back to the department that must verify
    it within 10 working days (003 §2). While one is open about a person, their benefits are
    suspended (003 §3): the person is under verification."""

    __tablename__ = "anomaly"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    department: Mapped[str] = mapped_column(String(32))  # who must verify
    county_code: Mapped[str] = mapped_column(String(6))  # whose jurisdiction it lies in
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)  # Chinese, never a name or ID number
    related_department: Mapped[str | None] = mapped_column(String(32))
    # REPORTED_BY_ANOTHER_REGION: the county whose report the person's county must verify
    related_county: Mapped[str | None] = mapped_column(String(6))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ingest_batch.id", ondelete="SET NULL")
    )
    opened_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))  # OPEN / RESOLVED
    resolution: Mapped[str | None] = mapped_column(String(24))
    resolved_on: Mapped[date | None] = mapped_column(Date)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_anomaly_department_county", "department", "county_code", "status"),
        Index("ix_anomaly_person_status", "person_id", "status"),
    )


class WarningRun(Base):
    """一次月度高额费用监测预警: what was computed for one month, with which thresholds."""

    __tablename__ = "warning_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM
    province: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # RUNNING / COMPLETED / FAILED
    triggered_by: Mapped[str] = mapped_column(String(128))
    warnings_created: Mapped[int] = mapped_column(Integer, default=0)
    tasks_opened: Mapped[int] = mapped_column(Integer, default=0)
    thresholds: Mapped[str] = mapped_column(Text)  # JSON: rule -> threshold used


class CostWarning(Base):
    """高额费用预警: a person whose cost burden crossed a rule's threshold, with the figures.

    One per person, year and rule (001 §4: 推送新增达到监测标准人员): a person who stays above a
    threshold is not pushed again every month; crossing a higher rule is a new warning."""

    __tablename__ = "cost_warning"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warning_run.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    year: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    county_code: Mapped[str] = mapped_column(String(6))
    rule: Mapped[str] = mapped_column(String(40))
    measure: Mapped[str] = mapped_column(String(20))
    figure: Mapped[Decimal] = mapped_column(Money)  # the person's burden or stay count
    threshold: Mapped[Decimal] = mapped_column(Money)
    attention: Mapped[str] = mapped_column(String(16))  # level that must pay attention
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ux_cost_warning_person_year_rule", "person_id", "year", "rule", unique=True),
        Index("ix_cost_warning_county_month", "county_code", "month"),
    )


class Task(Base):
    """推送任务: something pushed to a department that must be answered by ``due_on``.

    WARNING_REVIEW: a high-cost warning pushed to civil affairs / rural revitalisation, answered
    with a recognition result (000 §1, 001 §4). IDENTITY_VERIFICATION: a new identity on a list
    pushed to medical insurance, which checks enrollment and marks it (004 §1). Both within 5
    working days. ``source_key`` names what caused the task, so re-running changes nothing."""

    __tablename__ = "task"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    department: Mapped[str] = mapped_column(String(32))  # who must answer
    county_code: Mapped[str] = mapped_column(String(6))  # whose jurisdiction it lies in
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    source_key: Mapped[str] = mapped_column(String(80))
    warning_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cost_warning.id", ondelete="CASCADE")
    )
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ingest_batch.id", ondelete="SET NULL")
    )
    category: Mapped[str | None] = mapped_column(String(32))  # the identity to verify
    opened_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # OPEN / WAITING / ANSWERED
    answer: Mapped[str | None] = mapped_column(String(32))
    answer_category: Mapped[str | None] = mapped_column(String(32))
    answered_on: Mapped[date | None] = mapped_column(Date)
    answered_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    relief_status_id: Mapped[int | None] = mapped_column(
        ForeignKey("relief_status.id", ondelete="SET NULL")
    )
    # Receipts (issue 18 item 4, migration 0013): when the push first reached the department's
    # system (a delivery to one of its endpoints succeeded), and when one of its people first
    # opened the task itself (``task(id)``, the workbench's task view; list pages don't count).
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ux_task_source", "department", "source_key", "person_id", unique=True),
        Index("ix_task_department_county", "department", "county_code", "status", "due_on"),
        Index("ix_task_person", "person_id"),
    )


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
    """One row per policy version; the highest id is in force. Caches key on it.

    ``lines`` keeps the version's complete policy (JSON array of [subject, object, action,
    purpose], and a fifth cell for a line's validity end, 期限), so every version can be shown,
    diffed, explained and rolled back to; null only for versions older than migration 0004
    that were no longer in force when it ran."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text)
    lines: Mapped[str | None] = mapped_column(Text)
    proposal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("policy_proposal.id", ondelete="SET NULL", name="fk_policy_version_proposal")
    )
    approved_by: Mapped[str | None] = mapped_column(String(128))
    # The version's policy expectations (``authz.expectations``, migration 0010): canonical
    # text, one ``e`` line each; null or "" for none.
    expectations: Mapped[str | None] = mapped_column(Text)


class PolicyProposal(Base):
    """策略变更申请: lines to add and remove, proposed by one security officer against a base
    version and approved or rejected by another (four-eyes, issue 5). An approval writes a new
    version; a proposal whose base is no longer in force can no longer be approved (STALE)."""

    __tablename__ = "policy_proposal"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    base_version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    added: Mapped[str] = mapped_column(Text)  # JSON array of lines
    removed: Mapped[str] = mapped_column(Text)  # JSON array of lines
    proposed_by: Mapped[str] = mapped_column(String(128))
    proposer_level: Mapped[str] = mapped_column(String(16))
    proposer_region: Mapped[str] = mapped_column(String(12))
    proposed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # PENDING / APPROVED / REJECTED / STALE
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(Text)
    resulting_version: Mapped[int | None] = mapped_column(Integer)
    # The proposed complete set of policy expectations (migration 0010); null: unchanged.
    expectations: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_policy_proposal_status", "status", "proposed_at"),)


class AuditAnchor(Base):
    """审计锚点: where the online audit chain starts (issue 16 item 6, migration 0011).

    ``archive``: the entries up to ``last_entry_id`` went to the archive file ``file_name``
    (SHA-256 ``file_digest``); the first online entry's ``prev_hash`` is ``last_entry_hash``.
    ``mac_start``: ``last_entry_id`` is the first entry written with a MAC; from it on every
    entry must carry one. Each anchor is MAC'd with the audit key (``anchor_mac``), so one
    inserted or edited by someone without the key is detected. Never updated or deleted.
    """

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # archive | mac_start
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    operator: Mapped[str] = mapped_column(String(128))
    month: Mapped[str | None] = mapped_column(String(7))  # archive: YYYY-MM (Beijing time)
    entries: Mapped[int] = mapped_column(Integer)
    first_prev_hash: Mapped[str] = mapped_column(String(64))
    last_entry_id: Mapped[int] = mapped_column(BigInteger)
    last_entry_hash: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(255))
    file_digest: Mapped[str | None] = mapped_column(String(64))
    mac_key_id: Mapped[str] = mapped_column(String(32))
    anchor_mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """链头: the chain's last entry hash, one row (migration 0012). Every append moves it in the
    same statement (PostgreSQL) or transaction (SQLite) that inserts the entries, only if it
    still holds the hash the entries were chained from: a compare-and-swap that keeps the chain
    from forking without a lock held across round trips (``gateway.storage.audit_chain``).
    Archiving removes entries but never moves the head."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entry_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_head_singleton"),)


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
    entry_hash: Mapped[str] = mapped_column(String(64))
    # HMAC of entry_hash with the audit key ``mac_key_id`` (migration 0011); null on entries
    # written before (gateway.storage.audit_chain says when one is required).
    mac_key_id: Mapped[str | None] = mapped_column(String(32))
    entry_mac: Mapped[str | None] = mapped_column(String(64))

    # Partitioned by month of occurred_at on PostgreSQL (migration 0005): the primary key there
    # is (id, occurred_at); ids come from one sequence, and the chain links every hash.
    __table_args__ = (
        Index("ix_audit_log_occurred", "occurred_at"),
        UniqueConstraint("entry_hash", "occurred_at", name="ux_audit_log_entry_hash"),
    )


class ServiceClient(Base):
    """服务账号: a department system that obtains short-lived tokens by OAuth2 client
    credentials (issue 16 item 2, ``gateway.storage.clients``). The secret is kept only as a
    slow hash with its parameters (``scrypt$ln=…,r=…,p=…$salt$hash``); a client registered with
    a certificate keeps its SHA-256 fingerprint instead (null secret). Never deleted: a
    disabled client stays listed with who disabled it and when."""

    __tablename__ = "service_client"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    department: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(12))
    purposes: Mapped[str] = mapped_column(Text)  # JSON array of purpose codes
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    cert_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_by: Mapped[str | None] = mapped_column(String(128))


class OutboxEvent(Base):
    """发件箱: one event that concerns another department, written in the transaction of the
    change it describes (issue 18 item 1, ``gateway.storage.outbox``), one row per audience
    department. ``dedupe_key`` makes a re-run of a set-wise write emit nothing twice;
    ``emit_id`` marks the rows one write emitted, so their deliveries fan out set-wise in the
    same transaction. Holds no name or ID number: payloads are rendered at delivery, through
    the receiving department's policy."""

    __tablename__ = "outbox_event"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(32))  # the department it concerns
    county_code: Mapped[str] = mapped_column(String(6))  # whose jurisdiction it lies in
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    subject_type: Mapped[str] = mapped_column(String(16))  # task / warning / anomaly / batch
    subject_id: Mapped[str] = mapped_column(String(36))
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    facts: Mapped[str | None] = mapped_column(Text)  # JSON, never a name or ID number
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    emit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Received from another province's gateway (its two-digit code), else null.
    origin: Mapped[str | None] = mapped_column(String(2))

    __table_args__ = (
        Index("ix_outbox_event_audience", "audience", "county_code", "id"),
        Index("ix_outbox_event_person", "person_id", "id"),
        Index("ix_outbox_event_emit", "emit_id"),
    )


class WebhookEndpoint(Base):
    """A department system's webhook (issue 18 item 2): where events of the kinds it
    subscribes to (``webhook_subscription``) inside its jurisdiction are POSTed, signed with
    its secret (sealed by the vault; the previous one signs too until it expires, for
    rotation). Payloads are what ``department``/``level``/``region`` may read by policy.
    Disabled, never deleted: its deliveries stay as evidence."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    department: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(12))
    url: Mapped[str] = mapped_column(String(2000))
    algorithm: Mapped[str] = mapped_column(String(16))  # HMAC-SHA256 / HMAC-SM3
    secret_id: Mapped[str] = mapped_column(String(32))
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_id: Mapped[str | None] = mapped_column(String(32))
    previous_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_after_seconds: Mapped[int | None] = mapped_column(Integer)  # null: the setting
    max_in_flight: Mapped[int] = mapped_column(Integer)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_webhook_endpoint_department", "department", "region"),)


class WebhookSubscription(Base):
    """The event kinds an endpoint receives."""

    __tablename__ = "webhook_subscription"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)


class WebhookDelivery(Base):
    """One event to one endpoint (``gateway.storage.deliveries``): PENDING until a worker
    claims it (IN_FLIGHT, with a lease), then DELIVERED, or PENDING again with a later
    ``next_attempt_at``, or DEAD (死信) once it has failed for longer than the endpoint's
    dead-letter time, or CANCELLED (the endpoint was disabled; the person left its scope).
    ``ordering_key`` (the person) keeps one person's events in order per endpoint."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(AutoId, ForeignKey("outbox_event.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    ordering_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ux_webhook_delivery_event_endpoint", "event_id", "endpoint_id", unique=True),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_order", "endpoint_id", "ordering_key", "id"),
        Index("ix_webhook_delivery_endpoint_status", "endpoint_id", "status"),
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, for the operations team (what was sent: the body's
    SHA-256 and the signing secrets' ids; what came back)."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        AutoId, ForeignKey("webhook_delivery.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    secret_ids: Mapped[str | None] = mapped_column(String(80))
    worker: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "attempt"),)


class ExchangeMessage(Base):
    """省际交换消息日志: one message sent to (OUT) or received from (IN) another province's
    gateway (issue 18 item 5, ``gateway.storage.peers``). The envelope holds the person's ID
    number (the join key between provinces), so it is sealed with the vault; its SHA-256 and the
    sender's signature stay in clear for verification, as do the signed receipt and its
    signature. A complete entry is chained (``seq``/``prev_hash``/``entry_hash``, MAC'd with the
    audit key); a PENDING OUT row is the sender's queue."""

    __tablename__ = "exchange_message"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    direction: Mapped[str] = mapped_column(String(3))  # IN / OUT
    peer: Mapped[str] = mapped_column(String(2))  # the other province's code
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    ref: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the message this one answers
    kind: Mapped[str] = mapped_column(String(32))
    # OUT: the local outbox event sent; IN: the outbox event the message was applied as.
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL")
    )
    envelope_ct: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str | None] = mapped_column(String(40))  # as signed, ISO 8601
    signature: Mapped[str | None] = mapped_column(Text)
    signer_key_id: Mapped[str | None] = mapped_column(String(64))
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary)  # the exact bytes signed
    receipt_signature: Mapped[str | None] = mapped_column(Text)
    receipt_key_id: Mapped[str | None] = mapped_column(String(64))
    receipt_status: Mapped[str | None] = mapped_column(String(10))  # ACCEPTED / REJECTED
    status: Mapped[str] = mapped_column(String(10))  # PENDING / DONE
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    receipted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    entry_hash: Mapped[str | None] = mapped_column(String(64))
    mac_key_id: Mapped[str | None] = mapped_column(String(32))
    entry_mac: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ux_exchange_message", "peer", "direction", "message_id", unique=True),
        Index("ux_exchange_message_seq", "seq", unique=True),
        Index("ix_exchange_message_due", "direction", "status", "next_attempt_at"),
        Index("ix_exchange_message_event", "peer", "direction", "event_id"),
        Index("ix_exchange_message_person", "person_id"),
    )


class ExchangeHead(Base):
    """The message log's chain head: last position and entry hash (one row, migration 0014)."""

    __tablename__ = "exchange_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("id = 1", name="ck_exchange_head_singleton"),)
