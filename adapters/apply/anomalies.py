"""Anomalies: data that disagree, sent back to the department that must verify (回传).

Cross-source checks open anomalies for the department that must verify (DOMAIN.md rule 4),
due in 10 Chinese working days (rule 3, 003 §2); a later row that corrects the data closes
them (CORRECTED_BY_DATA), and one opened and corrected within a chunk is never written. This
module writes the ``anomaly`` rows and holds the checks that more than one record kind raises:
a person reported dead who still holds an identity (DECEASED_WITH_ACTIVE_STATUS) or an active
enrollment for a later year (DECEASED_STILL_ENROLLED). Checks of one kind live with it (name:
``people``; birth date, exit: ``identities``; subsidy, double enrollment: ``enrollments``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import update

from adapters.apply._shared import (
    AnomalyKind,
    _ChunkState,
    _dept_zh,
    _PersonState,
    _StatusState,
    _table,
    insert_rows,
)
from gateway.domain.departments import Department
from gateway.storage import outbox
from gateway.storage.models import Anomaly


class _Anomalies(_ChunkState):
    """Opens and closes the chunk's anomalies in memory; writes them at the end."""

    def _open(
        self,
        person: _PersonState,
        department: str,
        kind: AnomalyKind,
        detail: str,
        related: str | None = None,
        related_county: str | None = None,
    ) -> None:
        key = (person.id, department, kind.value, related_county)
        self._closed_anomalies.discard(key)
        if key in self._open_anomalies:
            return
        self._open_anomalies.add(key)
        self._new_anomalies.append(
            {
                "id": uuid.uuid4(),
                "person_id": person.id,
                "department": department,
                "county_code": person.county_code,
                "kind": kind.value,
                "detail": detail,
                "related_department": related,
                "related_county": related_county,
                "batch_id": self.context.batch_id,
                "opened_on": self.context.today,
                "due_on": self._due_on,
                "status": "OPEN",
                "resolution": None,
                "resolved_on": None,
                "resolved_by": None,
                "note": None,
            }
        )

    def _close(self, person: _PersonState, department: str, kind: AnomalyKind) -> None:
        """The data that raised an anomaly has been corrected by a later row."""
        key = (person.id, department, kind.value, None)
        if key in self._open_anomalies:
            self._closed_anomalies.add(key)

    async def _flush_anomalies(self) -> None:
        # An anomaly opened and corrected within the same chunk never needs a clerk.
        fresh = [
            a
            for a in self._new_anomalies
            if (a["person_id"], a["department"], a["kind"], a["related_county"])
            not in self._closed_anomalies
        ]
        await insert_rows(self.connection, _table(Anomaly), fresh)
        # The departments that must verify hear of them, in this chunk's transaction (issue 18).
        events = [outbox.anomaly_event(outbox.EventKind.ANOMALY_OPENED, a) for a in fresh]
        # A submitter with a jurisdiction is told about the anomalies sent back to it there;
        # others (another county's, another department's) are theirs to see.
        scope, department = self.context.scope, self.context.department
        self.result.anomalies_opened += sum(
            1
            for a in fresh
            if scope is None
            or (a["department"] == department and a["county_code"].startswith(scope))
        )
        opened_now = {
            (a["person_id"], a["department"], a["kind"], a["related_county"])
            for a in self._new_anomalies
        }
        for person_id, department, kind, _county in self._closed_anomalies - opened_now:
            closed = await self.connection.execute(
                update(Anomaly)
                .where(
                    Anomaly.person_id == person_id,
                    Anomaly.department == department,
                    Anomaly.kind == kind,
                    Anomaly.status == "OPEN",
                )
                .values(
                    status="RESOLVED",
                    resolution="CORRECTED_BY_DATA",
                    resolved_on=self.context.today,
                    resolved_by=f"batch:{self.context.batch_id}",
                )
                .returning(Anomaly.id, Anomaly.department, Anomaly.county_code, Anomaly.person_id)
            )
            events.extend(
                outbox.anomaly_event(outbox.EventKind.ANOMALY_CLOSED, row) for row in closed
            )
        await outbox.emit_rows(self.connection, events)

    def _check_deceased_statuses(
        self, person: _PersonState, statuses: Iterable[_StatusState]
    ) -> None:
        """A person reported dead must not keep an identity: open (or close) one anomaly per
        department whose status is still held after the date of death."""
        if person.deceased_on is None:
            return
        holders = {s.department for s in statuses if s.held_after(person.deceased_on)}
        departments = {s.department for s in statuses}
        for department in sorted(departments):
            if department in holders:
                self._open(
                    person,
                    department,
                    AnomalyKind.DECEASED_WITH_ACTIVE_STATUS,
                    f"卫生健康部门报告该人员已于 {person.deceased_on.isoformat()} 死亡，"
                    f"但{_dept_zh(department)}认定的救助身份仍在有效期内，请核实并办理退出",
                    related=Department.HEALTH.value,
                )
            else:
                self._close(person, department, AnomalyKind.DECEASED_WITH_ACTIVE_STATUS)

    def _check_deceased_enrollment(self, person: _PersonState, year: int, status: str) -> None:
        if person.deceased_on is None:
            return
        if status == "ACTIVE" and year > person.deceased_on.year:
            self._open(
                person,
                Department.MEDICAL_INSURANCE.value,
                AnomalyKind.DECEASED_STILL_ENROLLED,
                f"卫生健康部门报告该人员已于 {person.deceased_on.isoformat()} 死亡，"
                f"但其 {year} 年度仍为正常参保，请核实并办理终止参保",
                related=Department.HEALTH.value,
            )
        elif status != "ACTIVE":
            self._close(
                person, Department.MEDICAL_INSURANCE.value, AnomalyKind.DECEASED_STILL_ENROLLED
            )
