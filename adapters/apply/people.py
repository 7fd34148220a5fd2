"""Person matching: a row's ID number → the stored person, and what each department said.

The chunk's people are read by the blind index of their ID numbers in one query, with what
this department last reported about them (``person_source``: a digest, so a re-sent row is
recognised as 无变化, DOMAIN.md rule 2) and their open anomalies; a person first named by an
identity or enrollment row is created, and a name that differs from the one on record opens
NAME_MISMATCH (rule 4). A person held outside the submitter's jurisdiction is marked foreign
and never moved or compared (see ChunkApplier's note on scope). Writes ``person`` and
``person_source``; also reads the people's relief statuses, which identities change and
enrollments and vital events check against.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select, update

from adapters.apply._shared import AnomalyKind, _PersonState, _StatusState, _table, insert_rows
from adapters.apply.anomalies import _Anomalies
from adapters.rows import CanonicalRow, EnrollmentRow, IdentityRow
from gateway.domain.records import PersonRecord
from gateway.storage.models import Anomaly, Person, PersonReport, PersonSource, ReliefStatus
from gateway.storage.setwise import dialect_insert


class _People(_Anomalies):
    """Matches the chunk's rows to people; keeps what each department said about them."""

    async def _load_people(self, rows: Sequence[CanonicalRow]) -> None:
        vault = self.context.vault
        self._index = {row.id_number: vault.id_number_index(row.id_number) for row in rows}
        stmt = select(
            Person.id,
            Person.id_number_bidx,
            Person.name_bidx,
            Person.region_code,
            Person.household_id,
            Person.deceased_on,
        ).where(self._among(Person.id_number_bidx, set(self._index.values())))
        for row in await self.connection.execute(stmt):
            self._persons[row.id_number_bidx] = _PersonState(
                row.id,
                row.name_bidx,
                row.region_code,
                row.household_id,
                row.deceased_on,
                foreign=not self._in_scope(row.region_code),
            )
        ids = [p.id for p in self._persons.values()]
        if not ids:
            return
        keys = {self.context.department}
        if self.context.scope is not None:
            keys.add(self._foreign_key)
        sources = select(
            PersonSource.person_id, PersonSource.department, PersonSource.digest
        ).where(self._among(PersonSource.person_id, ids), PersonSource.department.in_(keys))
        self._sources = {
            (row.person_id, row.department): row.digest
            for row in await self.connection.execute(sources)
        }
        anomalies = select(
            Anomaly.person_id, Anomaly.department, Anomaly.kind, Anomaly.related_county
        ).where(self._among(Anomaly.person_id, ids), Anomaly.status == "OPEN")
        self._open_anomalies = {
            (row.person_id, row.department, row.kind, row.related_county)
            for row in await self.connection.execute(anomalies)
        }
        foreign = [p.id for p in self._persons.values() if p.foreign]
        if foreign:
            verified = select(PersonReport.person_id, PersonReport.county_code).where(
                self._among(PersonReport.person_id, foreign),
                PersonReport.department == self.context.department,
                PersonReport.verified_on.is_not(None),
            )
            self._verified_reports = {
                (row.person_id, row.county_code) for row in await self.connection.execute(verified)
            }

    def _person(self, row: CanonicalRow) -> _PersonState | None:
        return self._persons.get(self._index[row.id_number])

    def _create_person(self, row: CanonicalRow, region_code: str) -> _PersonState:
        vault = self.context.vault
        # A worker process may have sealed the row's values under an id it drew for the
        # person already (adapters.parallel.PreparedVault).
        drawn = getattr(vault, "new_person_id", None)
        record = PersonRecord(
            person_id=uuid.uuid4() if drawn is None else drawn(row.id_number),
            id_number=row.id_number,
            name=row.name,
            gender=row.gender,
            birth_date=row.birth_date,
            region_code=region_code,
        )
        values = vault.person_values(record)
        values["created_at"] = self.context.received_at
        values["deceased_on"] = None
        self._new_persons[record.person_id] = values
        state = _PersonState(
            record.person_id, values["name_bidx"], region_code, None, None, is_new=True
        )
        self._persons[self._index[row.id_number]] = state
        return state

    @property
    def _foreign_key(self) -> str:
        return f"{self.context.department}@{self.context.scope}"

    def _source_key(self, person: _PersonState) -> tuple[uuid.UUID, str]:
        """What a department said about a person is kept per department; what a submitter
        said about someone held outside its jurisdiction is kept per department *and*
        submitter jurisdiction (``civil_affairs@370102``), so its re-sent row is recognised
        without comparing it with what the person's own county reported."""
        if person.foreign:
            return (person.id, self._foreign_key)
        return (person.id, self.context.department)

    def _first_report(self, person: _PersonState) -> bool:
        return self._source_key(person) not in self._sources

    def _note_source(
        self, person: _PersonState, row: CanonicalRow, facts: tuple[str | None, ...]
    ) -> bool:
        """Record that this department reported ``person`` on this row; True if what it says
        about the person differs from its previous report (or it never reported them)."""
        context = self.context
        key = self._source_key(person)
        digest = context.vault.source_digest(context.department, facts)
        previous = self._sources.get(key)
        if previous == digest:
            return False
        values = {
            "person_id": person.id,
            "department": key[1],
            "digest": digest,
            "batch_id": context.batch_id,
            "source_line": row.line,
            "received_at": context.received_at,
        }
        pending = self._source_writes.get(key)
        is_new = previous is None if pending is None else pending[0]
        self._source_writes[key] = (is_new, values)
        self._sources[key] = digest
        return previous is not None or not person.is_new

    def _report(
        self,
        person: _PersonState,
        row: IdentityRow | EnrollmentRow,
        *,
        phone: str | None = None,
        address: str | None = None,
        household_id: uuid.UUID | None = None,
    ) -> str:
        """Keep what this row states about a person held outside the sender's jurisdiction
        (``person_report``): the sender sees the person as it sent them. The sender's county."""
        county = row.region_code[:6]
        vault = self.context.vault
        values = self._reports.setdefault(
            (person.id, county),
            {
                "person_id": person.id,
                "department": self.context.department,
                "county_code": county,
                "phone_ct": None,
                "address_ct": None,
                "household_id": None,
                "reported_on": self.context.today,
                "verified_on": None,
            },
        )
        values.update(
            region_code=row.region_code,
            name_ct=vault.seal(person.id, "name", row.name),
            batch_id=self.context.batch_id,
            source_line=row.line,
        )
        # the latest row wins for what it states; what it leaves empty is kept
        if phone is not None:
            values["phone_ct"] = vault.seal(person.id, "phone", phone)
        if address is not None:
            values["address_ct"] = vault.seal(person.id, "address", address)
        if household_id is not None:
            values["household_id"] = household_id
        return county

    def _report_verified(self, person: _PersonState, county: str) -> bool:
        """The person's own county already confirmed this sender's tie to them."""
        return (person.id, county) in self._verified_reports

    async def _flush_reports(self) -> None:
        if not self._reports:
            return
        table = _table(PersonReport)
        statement = dialect_insert(self.connection.dialect.name, PersonReport)
        kept = ("phone_ct", "address_ct", "household_id")
        statement = statement.on_conflict_do_update(
            index_elements=["person_id", "department", "county_code"],
            set_={
                **{
                    name: getattr(statement.excluded, name)
                    for name in ("region_code", "name_ct", "batch_id", "source_line")
                },
                **{
                    name: func.coalesce(getattr(statement.excluded, name), table.c[name])
                    for name in kept
                },
            },
        )
        await self.connection.execute(statement, list(self._reports.values()))

    def _check_name(self, person: _PersonState, row: CanonicalRow) -> None:
        name_bidx = self.context.vault.name_index(row.name)
        if person.name_bidx is not None and person.name_bidx != name_bidx:
            self._open(
                person,
                self.context.department,
                AnomalyKind.NAME_MISMATCH,
                "报送的姓名与已登记的姓名不一致，请核实身份证号码与姓名是否对应",
            )

    def _change_person(self, person: _PersonState, **changes: Any) -> None:
        if person.is_new:
            self._new_persons[person.id].update(changes)
        else:
            self._person_changes[person.id].update(changes)

    async def _flush_people(self) -> None:
        await insert_rows(self.connection, _table(Person), list(self._new_persons.values()))
        for person_id, changes in self._person_changes.items():
            if changes:
                await self.connection.execute(
                    update(Person).where(Person.id == person_id).values(**changes)
                )
        new_sources = [values for is_new, values in self._source_writes.values() if is_new]
        await insert_rows(self.connection, _table(PersonSource), new_sources)
        for is_new, values in self._source_writes.values():
            if not is_new:
                await self.connection.execute(
                    update(PersonSource)
                    .where(
                        PersonSource.person_id == values["person_id"],
                        PersonSource.department == values["department"],
                    )
                    .values(
                        digest=values["digest"],
                        batch_id=values["batch_id"],
                        source_line=values["source_line"],
                        received_at=values["received_at"],
                    )
                )

    async def _load_statuses(
        self, person_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, list[_StatusState]]:
        ids = list(person_ids)
        statuses: dict[uuid.UUID, list[_StatusState]] = defaultdict(list)
        if not ids:
            return statuses
        stmt = select(
            ReliefStatus.id,
            ReliefStatus.person_id,
            ReliefStatus.source_department,
            ReliefStatus.category,
            ReliefStatus.recognized_on,
            ReliefStatus.valid_from,
            ReliefStatus.valid_to,
            ReliefStatus.county_code,
        ).where(self._among(ReliefStatus.person_id, ids))
        for r in await self.connection.execute(stmt):
            statuses[r.person_id].append(
                _StatusState(
                    r.id,
                    r.person_id,
                    r.source_department,
                    r.category,
                    r.recognized_on,
                    r.valid_from,
                    r.valid_to,
                    county=r.county_code,
                )
            )
        return statuses
