"""People a department sees only through its own report (issue 14 item 4).

A row about a person held outside the sender's jurisdiction is kept as the sender's report
(``person_report``, written by ``adapters.apply``) and gives the sender a ``reported`` place.
Through that place alone the sender sees the person *as it reported them*: the name, region,
contacts and household its row stated, the records its own region sent, its own anomalies —
exactly what it would see of a person its row had created, and nothing the person's own places
hold. So a push about an outside person answers like a push about a nobody: no existence
oracle. Once the person's county verifies the report, the sender's facts give their real
places (identity, insured) and the person is seen through those instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Result, exists, select

from gateway.storage.models import Anomaly, Person, PersonReport

Execute = Callable[[Any], Awaitable[Result[Any]]]


@dataclass(frozen=True, slots=True)
class ReportView:
    """The person columns as the caller's report states them."""

    name_ct: bytes
    phone_ct: bytes | None
    address_ct: bytes | None
    region_code: str
    household_id: uuid.UUID | None
    under_verification: bool

    def applied_to(self, row: Any) -> Any:
        """The loaded person row with the reported values in place of the person's own."""
        return row._replace(
            name_ct=self.name_ct,
            phone_ct=self.phone_ct,
            address_ct=self.address_ct,
            region_code=self.region_code,
            household_id=self.household_id,
            under_verification=self.under_verification,
        )


@dataclass(frozen=True, slots=True)
class ReportedPeople:
    """The reports of one caller's department in its region."""

    department: str
    region: str  # the caller's jurisdiction (2, 4 or 6 digits)

    async def views(
        self, execute: Execute, person_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ReportView]:
        """The report view of each of these people (two queries, whatever their number). With
        several reports in a city's region, the one from the first county in code order."""
        reports = (
            select(*PersonReport.__table__.c)
            .where(
                PersonReport.person_id.in_(person_ids),
                PersonReport.department == self.department,
                PersonReport.county_code.like(self.region + "%"),
                PersonReport.verified_on.is_(None),
            )
            .order_by(PersonReport.person_id, PersonReport.county_code)
        )
        # under verification as far as the caller's own anomalies go: the person's county's
        # verification of this very report is that county's, not the sender's
        open_here = (
            select(Anomaly.person_id)
            .where(
                Anomaly.person_id.in_(person_ids),
                Anomaly.department == self.department,
                Anomaly.county_code.like(self.region + "%"),
                Anomaly.status == "OPEN",
            )
            .distinct()
        )
        verifying = {row.person_id for row in await execute(open_here)}
        views: dict[uuid.UUID, ReportView] = {}
        for report in await execute(reports):
            views.setdefault(
                report.person_id,
                ReportView(
                    name_ct=report.name_ct,
                    phone_ct=report.phone_ct,
                    address_ct=report.address_ct,
                    region_code=report.region_code,
                    household_id=report.household_id,
                    under_verification=report.person_id in verifying,
                ),
            )
        return views

    @staticmethod
    def members_of(
        department: str, region: str
    ) -> Callable[[Sequence[uuid.UUID]], ColumnElement[bool]]:
        """The condition "reported by the caller's department as a member of these
        households": such a person is a member as reported, like one whose row it created."""

        def condition(household_ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
            return exists(
                select(PersonReport.person_id).where(
                    PersonReport.person_id == Person.id,
                    PersonReport.household_id.in_(household_ids),
                    PersonReport.department == department,
                    PersonReport.county_code.like(region + "%"),
                    PersonReport.verified_on.is_(None),
                )
            )

        return condition
