"""Vital events: deaths and births reported by the health department.

Writes ``vital_event`` rows (one per person and event) for people the gateway holds in the
submitter's jurisdiction; everyone else's is counted 未匹配 (UNMATCHED, DOMAIN.md rule 2) and
stored nowhere. A death sets the person's ``deceased_on`` and opens, for the departments
concerned (rule 4), DECEASED_WITH_ACTIVE_STATUS for each identity still held after the date of
death and DECEASED_STILL_ENROLLED for each active enrollment in a later year.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select, update

from adapters.apply._shared import Outcome, _table
from adapters.apply.people import _People
from adapters.rows import VitalEventRow
from gateway.storage.models import Enrollment, VitalEvent


class _VitalEvents(_People):
    """Applies vital-event rows (deaths, births) of one chunk."""

    async def _vital_events(self, rows: list[VitalEventRow]) -> None:
        ids = [p.id for p in self._persons.values()]
        existing: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        if ids:
            stmt = select(
                VitalEvent.id, VitalEvent.person_id, VitalEvent.event, VitalEvent.event_date
            ).where(self._among(VitalEvent.person_id, ids))
            for r in await self.connection.execute(stmt):
                existing[(r.person_id, r.event)] = dict(r._mapping)
        deaths = [row for row in rows if row.event == "DEATH"]
        statuses = await self._load_statuses(ids) if deaths else {}
        enrollments = await self._active_enrollment_years(ids) if deaths else {}
        new_rows: list[dict[str, Any]] = []
        for row in rows:
            person = self._person(row)
            if person is None or not self._in_scope(person.region_code):
                # Health reports everyone's births and deaths; most are not in the gateway.
                self.result.outcomes[Outcome.UNMATCHED] += 1
                continue
            self._check_name(person, row)
            person_changed = self._note_source(person, row, (row.name,))
            key = (person.id, row.event)
            provenance = self._provenance(row.line)
            before = existing.get(key)
            if before is None:
                record = {
                    "person_id": person.id,
                    "event": row.event,
                    "event_date": row.event_date,
                    **provenance,
                }
                new_rows.append(record)
                existing[key] = {"id": None, **record}
                outcome = Outcome.ADDED
            elif before["event_date"] == row.event_date:
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                before["event_date"] = row.event_date
                if before["id"] is None:
                    for pending in new_rows:
                        if (pending["person_id"], pending["event"]) == key:
                            pending.update(event_date=row.event_date, **provenance)
                else:
                    self._fact_updates.append(
                        update(VitalEvent)
                        .where(VitalEvent.id == before["id"])
                        .values(event_date=row.event_date, **provenance)
                    )
                outcome = Outcome.UPDATED
            if row.event == "DEATH" and person.deceased_on != row.event_date:
                person.deceased_on = row.event_date
                self._change_person(person, deceased_on=row.event_date)
                self._check_deceased_statuses(person, statuses.get(person.id, []))
                for year in enrollments.get(person.id, ()):
                    self._check_deceased_enrollment(person, year, "ACTIVE")
            self.result.outcomes[outcome] += 1
            self.result.counties.add(person.county_code)
        self._fact_inserts.append((_table(VitalEvent), new_rows))

    async def _active_enrollment_years(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, set[int]]:
        years: dict[uuid.UUID, set[int]] = defaultdict(set)
        if not ids:
            return years
        stmt = select(Enrollment.person_id, Enrollment.year).where(
            self._among(Enrollment.person_id, ids), Enrollment.status == "ACTIVE"
        )
        for r in await self.connection.execute(stmt):
            years[r.person_id].add(r.year)
        return years
