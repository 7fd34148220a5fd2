"""Identities: relief statuses from the civil-affairs and rural-revitalisation lists.

An identity row states a person's place, contacts and household, and optionally a relief
category (特困, 低保, 边缘, 监测对象 …) recognised or exited by the department. Writes
``person`` facts (the latest row wins for what it states), ``household`` and
``relief_status``: a later recognition ends an earlier one of its group (身份变更), whatever
order the roster lists them in, and the days the list and the exit reached the exchange are
kept (000 §2). Opens BIRTH_DATE_MISMATCH, EXITED_IDENTITY_ACTIVE_ELSEWHERE when another
department still holds an exited identity (DOMAIN.md rule 4), and REPORTED_BY_ANOTHER_REGION
for a person held in another jurisdiction (see ChunkApplier's note on scope).
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
    _StatusState,
    _table,
)
from adapters.apply.people import _People
from adapters.rows import IdentityRow
from gateway.domain.departments import CATEGORY_NAMES_ZH
from gateway.storage.models import Household, ReliefStatus


class _Identities(_People):
    """Applies identity rows (relief statuses) of one chunk."""

    async def _identities(self, rows: list[IdentityRow]) -> None:
        await self._load_identities(rows)
        self._classify_identities()

    async def _load_identities(self, rows: list[IdentityRow]) -> None:
        """What classifying the rows reads: their people's statuses and households (the people
        themselves are read by ``_load_people``). Nothing is classified yet."""
        accepted: list[IdentityRow] = []
        for row in rows:
            if not self._in_scope(row.region_code):
                self._reject(row, "行政区划代码", row.region_code, "行政区划代码不在本部门辖区内")
            else:
                accepted.append(row)
        self._identity_rows = accepted
        self._identity_statuses = await self._load_statuses(p.id for p in self._persons.values())
        self._identity_households = await self._load_households(accepted)

    def _classify_identities(self) -> None:
        """Classify the rows read by :meth:`_load_identities`, in memory: no database here, so
        the pipeline may run it while the chunk before is being written."""
        department = self.context.department
        statuses = self._identity_statuses
        households = self._identity_households
        for row in self._identity_rows:
            person = self._person(row)
            if person is None:
                person = self._create_person(row, row.region_code)
            elif person.foreign:
                self._foreign_identity(person, row, statuses[person.id], households)
                continue
            else:
                self._check_name(person, row)
            if row.stated_birth_date is not None and row.stated_birth_date != row.birth_date:
                self._open(
                    person,
                    department,
                    AnomalyKind.BIRTH_DATE_MISMATCH,
                    "报送的出生日期与身份证号码中的出生日期不一致，请核实",
                )
            facts = (
                row.name,
                row.region_code,
                row.phone,
                row.address,
                row.household_number,
                row.relation,
            )
            person_changed = self._note_source(person, row, facts)
            if person_changed or person.is_new:
                self._update_person_facts(person, row, households)
            outcome = Outcome.ADDED if person.is_new and not person_changed else None
            if row.category is not None:
                outcome = self._status(person, row, statuses[person.id])
            elif outcome is None:
                outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
            if outcome is Outcome.UNCHANGED and person_changed:
                outcome = Outcome.UPDATED
            self._check_deceased_statuses(person, statuses[person.id])
            self.result.outcomes[outcome] += 1
            self.result.counties.add(row.region_code[:6])
        self._flush_statuses(statuses)

    def _foreign_identity(
        self,
        person: _PersonState,
        row: IdentityRow,
        statuses: list[_StatusState],
        households: dict[str, uuid.UUID],
    ) -> None:
        """A row about a person held in another jurisdiction (see ChunkApplier's note on scope):
        kept as this sender's report, so it sees the person as it sent them."""
        department = self.context.department
        first_report = self._first_report(person)
        facts = (row.name, row.region_code, row.phone, row.address, row.household_number)
        person_changed = self._note_source(person, row, (*facts, row.relation))
        county = row.region_code[:6]
        if person_changed or first_report:
            self._report(
                person,
                row,
                phone=row.phone,
                address=row.address,
                household_id=self._household(row, households),
            )
        if row.category is not None:
            # Only what this sender's region recorded counts, as if nobody else held the
            # person: the records the person's own places keep are not shown to it, nor
            # compared with its row, nor changed by it.
            own = [
                s
                for s in statuses
                if s.id is None or (s.department == department and s.county == county)
            ]
            outcome = self._status(person, row, own)
            statuses.extend(s for s in own if s.id is None and s not in statuses)
            if outcome is Outcome.UNCHANGED and person_changed:
                outcome = Outcome.UPDATED
        elif first_report:
            outcome = Outcome.ADDED
        else:
            outcome = Outcome.UPDATED if person_changed else Outcome.UNCHANGED
        if not self._report_verified(person, county):
            self._open(
                person,
                department,
                AnomalyKind.REPORTED_BY_ANOTHER_REGION,
                f"辖区 {county} 的{_dept_zh(department)}也报送了该人员，"
                "请核实其户籍或居住地是否变动、是否重复认定",
                related_county=county,
            )
        self._check_deceased_statuses(person, statuses)
        self.result.outcomes[outcome] += 1
        self.result.counties.add(row.region_code[:6])

    async def _load_households(self, rows: list[IdentityRow]) -> dict[str, uuid.UUID]:
        numbers = {r.household_number for r in rows if r.household_number}
        if not numbers:
            return {}
        stmt = select(Household.id, Household.source_number).where(
            Household.source_department == self.context.department,
            self._among(Household.source_number, numbers),
        )
        return {r.source_number: r.id for r in await self.connection.execute(stmt)}

    def _update_person_facts(
        self, person: _PersonState, row: IdentityRow, households: dict[str, uuid.UUID]
    ) -> None:
        """Identity departments keep a person's place and contacts current: the latest row
        wins for what it states; what it leaves empty is kept."""
        vault = self.context.vault
        changes: dict[str, Any] = {}
        if row.region_code != person.region_code:
            changes.update(
                region_code=row.region_code,
                province_code=row.region_code[:2],
                city_code=row.region_code[:4],
                county_code=row.region_code[:6],
            )
            person.region_code = row.region_code
        if row.phone is not None:
            changes.update(
                phone_ct=vault.seal(person.id, "phone", row.phone),
                phone_bidx=vault.phone_index(row.phone),
            )
        if row.address is not None:
            changes["address_ct"] = vault.seal(person.id, "address", row.address)
        if row.relation is not None:
            changes["relation"] = row.relation
        household = self._household(row, households)
        if household is not None:
            changes["household_id"] = household
            person.household_id = household
        if changes:
            self._change_person(person, **changes)

    def _household(self, row: IdentityRow, households: dict[str, uuid.UUID]) -> uuid.UUID | None:
        """The household the row's household number names, created on first mention."""
        if not row.household_number:
            return None
        household = households.get(row.household_number)
        if household is None:
            household = uuid.uuid4()
            households[row.household_number] = household
            self._new_households.append(
                {
                    "id": household,
                    "region_code": row.region_code,
                    "county_code": row.region_code[:6],
                    "source_department": self.context.department,
                    "source_number": row.household_number,
                }
            )
        return household

    def _status(
        self, person: _PersonState, row: IdentityRow, statuses: list[_StatusState]
    ) -> Outcome:
        department = self.context.department
        category, recognized = row.category, row.recognized_on
        assert category is not None
        assert recognized is not None
        # the records of this department in the sender's jurisdiction (another county's
        # report of the same recognition is that county's: issue 14)
        mine = [
            s
            for s in statuses
            if s.department == department and (s.county is None or self._in_scope(s.county))
        ]
        same = next(
            (s for s in mine if s.category == category and s.recognized_on == recognized), None
        )
        if row.exited_on is not None:
            exited = row.exited_on
            target = same or next(
                (s for s in mine if s.category == category and s.valid_to is None), None
            )
            if target is not None and target.valid_to == exited:
                return Outcome.UNCHANGED
            if target is None:
                statuses.append(self._new_status(person, row, valid_to=exited))
                # A recognition first reported together with its exit still replaced the
                # earlier tier of its group (身份变更, then 退出), as it does when the roster
                # lists the older tier after it: the result must not depend on row order.
                self._end_earlier_tiers(mine, row)
            else:
                self._touch(target, row, valid_to=exited)
            self._check_exit_elsewhere(person, category, exited, statuses)
            return Outcome.EXITED
        feed = self.context.feed

        # A later recognition ends an earlier one of the same category (re-recognised) as well
        # as one of another tier in its group: without the same-category case, re-loading a
        # roster that lists both recognitions re-opened the earlier one (not idempotent), and
        # listing the older one second ended the newer one on its first day.
        def superseded_by(h: _StatusState) -> bool:
            return h.recognized_on > recognized and (
                h.category == category or feed.replaces(category, h.category)
            )

        if same is not None:
            if same.valid_to is None or any(superseded_by(h) for h in mine):
                # held, or ended by a later recognition in its group: re-listing it is no news
                return Outcome.UNCHANGED
            self._touch(same, row, valid_to=None)  # listed again after an exit
            return Outcome.ADDED
        # Every later recognition counts, held or not: with three tiers (特困 2021, 低保 2023,
        # 边缘 2024) 特困 ends the day before 低保 even when 低保 has already been ended by 边缘.
        newer = [h.recognized_on for h in mine if superseded_by(h)]
        if newer:
            # An older tier listed next to a newer one (the roster lists both): history, ended
            # by the newer recognition, whatever order the rows come in.
            ended = max(recognized, min(newer) - timedelta(days=1))
            self._end_earlier_tiers(mine, row)
            statuses.append(self._new_status(person, row, valid_to=ended))
            return Outcome.UPDATED
        outcome = Outcome.ADDED
        for held in mine:
            if held.valid_to is not None:
                continue
            if feed.replaces(category, held.category):
                outcome = Outcome.CHANGED
            elif held.category == category:
                outcome = Outcome.UPDATED  # re-recognised: the new recognition takes over
            else:
                continue
            self._touch(held, row, valid_to=max(held.valid_from, recognized - timedelta(days=1)))
        statuses.append(self._new_status(person, row, valid_to=None))
        return outcome

    def _end_earlier_tiers(self, mine: list[_StatusState], row: IdentityRow) -> None:
        """A recognition stored below the top of its chain (listed with its exit, or older
        than one already held) ends the earlier recognitions of its group that were still held
        when it began, or that the next recognition after it had ended: it sits between them.
        E.g. 特困 2021 and 边缘 2024 stored, then 低保 2023: 特困 now ends on 2022-12-31, as
        it does in every other row order."""
        feed = self.context.feed
        category, recognized = row.category, row.recognized_on
        assert category is not None
        assert recognized is not None

        def in_group(s: _StatusState) -> bool:
            return s.category == category or feed.replaces(category, s.category)

        later = [s.recognized_on for s in mine if s.recognized_on > recognized and in_group(s)]
        ended_by_next = min(later) - timedelta(days=1) if later else None
        for earlier in mine:
            if (
                earlier.recognized_on < recognized
                and in_group(earlier)
                and (earlier.valid_to is None or earlier.valid_to == ended_by_next)
            ):
                ended = max(earlier.valid_from, recognized - timedelta(days=1))
                self._touch(earlier, row, valid_to=ended)

    def _new_status(
        self, person: _PersonState, row: IdentityRow, valid_to: date | None
    ) -> _StatusState:
        assert row.category is not None
        assert row.recognized_on is not None
        return _StatusState(
            None,
            person.id,
            self.context.department,
            row.category,
            row.recognized_on,
            row.recognized_on,
            valid_to,
            line=row.line,
            dirty=True,
            county=row.region_code[:6],
        )

    @staticmethod
    def _touch(status: _StatusState, row: IdentityRow, valid_to: date | None) -> None:
        status.valid_to = valid_to
        status.line = row.line
        status.dirty = True

    def _check_exit_elsewhere(
        self, person: _PersonState, category: str, exited: date, statuses: list[_StatusState]
    ) -> None:
        """An identity exited here but still held in another department's data (rule 4)."""
        for other in statuses:
            if (
                other.department != self.context.department
                and other.category == category
                and other.held_after(exited)
            ):
                self._open(
                    person,
                    other.department,
                    AnomalyKind.EXITED_IDENTITY_ACTIVE_ELSEWHERE,
                    f"{_dept_zh(self.context.department)}已于 {exited.isoformat()} 退出该人员的"
                    f"“{CATEGORY_NAMES_ZH.get(category, category)}”身份，"
                    "但本部门数据中该身份仍有效，请核实",
                    related=self.context.department,
                )

    def _flush_statuses(self, statuses: dict[uuid.UUID, list[_StatusState]]) -> None:
        new_rows: list[dict[str, Any]] = []
        for person_statuses in statuses.values():
            for s in person_statuses:
                if not s.dirty:
                    continue
                provenance = self._provenance(s.line)
                if s.id is None:
                    new_rows.append(
                        {
                            "person_id": s.person_id,
                            "category": s.category,
                            "source_department": s.department,
                            "recognized_on": s.recognized_on,
                            "valid_from": s.valid_from,
                            "valid_to": s.valid_to,
                            # The days the list and the exit reached the exchange (000 §2).
                            "listed_on": self.context.today,
                            "exit_listed_on": self.context.today if s.valid_to else None,
                            "county_code": s.county,
                            **provenance,
                        }
                    )
                else:
                    self._fact_updates.append(
                        update(ReliefStatus)
                        .where(ReliefStatus.id == s.id)
                        .values(
                            valid_to=s.valid_to,
                            exit_listed_on=self.context.today if s.valid_to else None,
                            **provenance,
                        )
                    )
        self._fact_inserts.append((_table(ReliefStatus), new_rows))
