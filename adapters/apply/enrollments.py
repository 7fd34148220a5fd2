"""Enrollments: medical-insurance enrollment per person, year and insurance type.

Writes ``enrollment`` rows (status, insured region, subsidy category and amount), classified
新增 / 退出 / 身份变更 (a new subsidy category) / 信息更新 (DOMAIN.md rule 2). A person first
named here is created. Insured here but held elsewhere is legitimate (rule 9): the row is
classified as if the person were unknown, and the same year insured in another county opens
REPORTED_BY_ANOTHER_REGION for that county. Subsidised enrollment in a year after the identity
was exited everywhere opens EXITED_IDENTITY_ACTIVE_ELSEWHERE (the year of exit keeps its
subsidy: 001 §2 / 004 §3); an active enrollment after a reported death opens
DECEASED_STILL_ENROLLED.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, update

from adapters.apply._shared import (
    AnomalyKind,
    Outcome,
    _dept_zh,
    _PersonState,
    _same,
    _StatusState,
    _table,
)
from adapters.apply.people import _People
from adapters.rows import EnrollmentRow
from gateway.domain.departments import CATEGORY_NAMES_ZH, Department
from gateway.storage.models import Enrollment


class _Enrollments(_People):
    """Applies enrollment rows of one chunk."""

    async def _enrollments(self, rows: list[EnrollmentRow]) -> None:
        context = self.context
        accepted = []
        for row in rows:
            if not self._in_scope(row.region_code):
                self._reject(row, "参保地行政区划代码", row.region_code, "参保地不在本部门辖区内")
            else:
                accepted.append(row)
        ids = [p.id for p in self._persons.values()]
        existing: dict[tuple[uuid.UUID, int, str], dict[str, Any]] = {}
        if ids:
            stmt = select(
                Enrollment.id,
                Enrollment.person_id,
                Enrollment.year,
                Enrollment.insurance_type,
                Enrollment.status,
                Enrollment.region_code,
                Enrollment.subsidy_category,
                Enrollment.subsidy_amount,
            ).where(self._among(Enrollment.person_id, ids))
            for r in await self.connection.execute(stmt):
                existing[(r.person_id, r.year, r.insurance_type)] = dict(r._mapping)
        statuses = (
            await self._load_statuses(ids) if any(r.subsidy_category for r in accepted) else {}
        )
        new_rows: list[dict[str, Any]] = []
        for row in accepted:
            person = self._person(row)
            if person is None:
                person = self._create_person(row, row.region_code)
            elif not person.foreign:
                self._check_name(person, row)
            first_report = self._first_report(person)
            person_changed = self._note_source(person, row, (row.name,))
            key = (person.id, row.year, row.insurance_type)
            if person.foreign:
                # Insured here, held elsewhere (rule 9: legitimate). Classified as if unknown
                # (see ChunkApplier's note on scope); the same year insured in another county is
                # a double enrollment for that county to verify, never overwritten from here.
                # Kept as this sender's report (it sees the person as it sent them), which the
                # person's own county verifies before the insured place counts (issue 14).
                if person_changed or first_report:
                    self._report(person, row)
                person_changed = person_changed and not first_report
                county = row.region_code[:6]
                held = existing.get(key)
                double = held is not None and not self._in_scope(held["region_code"])
                if double or not self._report_verified(person, county):
                    self._open(
                        person,
                        context.department,
                        AnomalyKind.REPORTED_BY_ANOTHER_REGION,
                        f"参保地 {county} 的医保部门也报送了该人员 {row.year} 年度参保，"
                        + ("请核实是否重复参保" if double else "请核实是否为同一人、是否重复参保"),
                        related_county=county,
                    )
                if double:
                    outcome = Outcome.ADDED if first_report else Outcome.UNCHANGED
                    self.result.outcomes[outcome] += 1
                    self.result.counties.add(row.region_code[:6])
                    continue
            state = {
                "status": row.status,
                "region_code": row.region_code,
                "subsidy_category": row.subsidy_category,
                "subsidy_amount": row.subsidy_amount,
            }
            provenance = self._provenance(row.line)
            before = existing.get(key)
            if before is None:
                record = {
                    "person_id": person.id,
                    "year": row.year,
                    "insurance_type": row.insurance_type,
                    **state,
                    **provenance,
                }
                new_rows.append(record)
                existing[key] = {"id": None, **record}
                outcome = Outcome.ADDED if row.status == "ACTIVE" else Outcome.EXITED
            elif all(_same(before[k], v) for k, v in state.items()):
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                if before["status"] == "ACTIVE" and row.status != "ACTIVE":
                    outcome = Outcome.EXITED
                elif before["status"] != "ACTIVE" and row.status == "ACTIVE":
                    outcome = Outcome.ADDED
                elif before["subsidy_category"] != row.subsidy_category:
                    outcome = Outcome.CHANGED
                else:
                    outcome = Outcome.UPDATED
                before.update(state)
                if before["id"] is None:  # inserted earlier in this chunk
                    before.update(provenance)
                    for pending in new_rows:
                        if (
                            pending["person_id"],
                            pending["year"],
                            pending["insurance_type"],
                        ) == key:
                            pending.update(state, **provenance)
                else:
                    self._fact_updates.append(
                        update(Enrollment)
                        .where(Enrollment.id == before["id"])
                        .values(**state, **provenance)
                    )
            self._check_deceased_enrollment(person, row.year, row.status)
            if row.subsidy_category:
                self._check_subsidy(person, row, statuses.get(person.id, []))
            self.result.outcomes[outcome] += 1
            self.result.counties.add(row.region_code[:6])
        self._fact_inserts.append((_table(Enrollment), new_rows))

    def _check_subsidy(
        self, person: _PersonState, row: EnrollmentRow, statuses: list[_StatusState]
    ) -> None:
        """Subsidised enrollment in a year after the identity was exited everywhere (the year
        of exit keeps its subsidy: 001 §2 / 004 §3 lock the category for the natural year)."""
        category = row.subsidy_category
        same = [s for s in statuses if s.category == category]
        if not same:
            return  # recognised by a department whose data the gateway does not hold
        year_start = date(row.year, 1, 1)
        if any(s.held_after(year_start - timedelta(days=1)) for s in same):
            return
        exited_by = max(same, key=lambda s: s.valid_to or date.max)
        self._open(
            person,
            Department.MEDICAL_INSURANCE.value,
            AnomalyKind.EXITED_IDENTITY_ACTIVE_ELSEWHERE,
            f"{_dept_zh(exited_by.department)}已退出该人员的"
            f"“{CATEGORY_NAMES_ZH.get(category or '', category)}”身份，"
            f"但其 {row.year} 年度仍按该类别资助参保，请核实",
            related=exited_by.department,
        )
