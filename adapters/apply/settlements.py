"""Settlements: medical-expense settlements, and the cost burden rolled up from them.

Writes ``settlement`` rows keyed by settlement number (a re-sent number with other amounts is a
corrected settlement, 信息更新; one already used for another person is rejected), only for
people the gateway already holds in the submitter's jurisdiction (others are rejected with
their ID number masked). Every person and year a chunk touches has its ``cost_burden``
recomputed as the sum of that year's settlements (personal burden is cumulative, 001 §4).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import case, delete, func, select, tuple_, update

from adapters.apply._shared import NOT_IN_SCOPE, Outcome, _masked, _same, _table, insert_rows
from adapters.apply.people import _People
from adapters.rows import SettlementRow
from gateway.storage.models import CostBurden, Settlement


class _Settlements(_People):
    """Applies settlement rows of one chunk; recomputes the cost burdens they change."""

    async def _settlements(self, rows: list[SettlementRow]) -> None:
        numbers = [row.settlement_number for row in rows]
        existing: dict[str, dict[str, Any]] = {}
        stmt = select(*_table(Settlement).c).where(
            self._among(Settlement.settlement_number, numbers)
        )
        for r in await self.connection.execute(stmt):
            existing[r.settlement_number] = dict(r._mapping)
        new_rows: list[dict[str, Any]] = []
        touched: set[tuple[uuid.UUID, int]] = set()
        for row in rows:
            person = self._person(row)
            if person is None or not self._in_scope(person.region_code):
                self._reject(row, "身份证号码", _masked(row.id_number), NOT_IN_SCOPE)
                continue
            before = existing.get(row.settlement_number)
            if before is not None and before["person_id"] != person.id:
                # Refused before anything is noted about the person: a rejected row must leave
                # nothing behind (no person_source pointing at its line, no name anomaly).
                self._reject(
                    row, "结算流水号", row.settlement_number, "结算流水号已用于另一人员的结算记录"
                )
                continue
            self._check_name(person, row)
            person_changed = self._note_source(person, row, (row.name,))
            state = {
                "person_id": person.id,
                "settled_on": row.settled_on,
                "year": row.settled_on.year,
                "visit_type": row.visit_type,
                "total_cost": row.total_cost,
                "basic_insurance_paid": row.basic_paid,
                "critical_illness_paid": row.critical_paid,
                "medical_assistance_paid": row.assistance_paid,
                "personal_burden": row.personal_burden,
            }
            provenance = self._provenance(row.line)
            if before is None:
                record = {"settlement_number": row.settlement_number, **state, **provenance}
                new_rows.append(record)
                existing[row.settlement_number] = {"id": None, **record}
                outcome = Outcome.ADDED
            elif all(_same(before[k], v) for k, v in state.items()):
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            else:
                touched.add((person.id, before["year"]))
                before.update(state)
                if before["id"] is None:
                    for pending in new_rows:
                        if pending["settlement_number"] == row.settlement_number:
                            pending.update(state, **provenance)
                else:
                    self._fact_updates.append(
                        update(Settlement)
                        .where(Settlement.id == before["id"])
                        .values(**state, **provenance)
                    )
                outcome = Outcome.UPDATED  # a corrected settlement
            if outcome is not Outcome.UNCHANGED:
                touched.add((person.id, row.settled_on.year))
            self.result.outcomes[outcome] += 1
            self.result.counties.add(person.county_code)
        self._fact_inserts.append((_table(Settlement), new_rows))
        self._cost_pairs |= touched

    async def _recompute_cost_burdens(self, pairs: set[tuple[uuid.UUID, int]]) -> None:
        """Cost burden = the year's settlements summed (personal burden is cumulative, 001 §4)."""
        if not pairs:
            return
        keys = sorted(pairs)
        await self.connection.execute(
            delete(CostBurden).where(tuple_(CostBurden.person_id, CostBurden.year).in_(keys))
        )
        inpatient = func.sum(case((Settlement.visit_type == "INPATIENT", 1), else_=0))
        totals = (
            select(
                Settlement.person_id,
                Settlement.year,
                func.sum(Settlement.total_cost),
                func.sum(Settlement.basic_insurance_paid),
                func.sum(Settlement.critical_illness_paid),
                func.sum(Settlement.medical_assistance_paid),
                func.sum(Settlement.personal_burden),
                inpatient,
            )
            .where(tuple_(Settlement.person_id, Settlement.year).in_(keys))
            .group_by(Settlement.person_id, Settlement.year)
        )
        rows = [
            {
                "person_id": r[0],
                "year": r[1],
                "total_cost": Decimal(r[2]),
                "basic_insurance_paid": Decimal(r[3]),
                "critical_illness_paid": Decimal(r[4]),
                "medical_assistance_paid": Decimal(r[5]),
                "personal_burden": Decimal(r[6]),
                "inpatient_count": int(r[7]),
                "batch_id": self.context.batch_id,
                "source_line": None,
                "received_at": self.context.received_at,
            }
            for r in await self.connection.execute(totals)
        ]
        await insert_rows(self.connection, _table(CostBurden), rows)
