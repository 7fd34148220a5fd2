"""ChunkApplier: one chunk of one feed's rows, classified in memory and written in bulk.

Reads the chunk's people (``people``), dispatches the rows to the applier of the feed's record
kind (``identities``, ``enrollments``, ``settlements``, ``vital_events``), then writes in the
order foreign keys need: households, people and their sources, the facts (inserts, then
updates), recomputed cost burdens, anomalies. Classification follows DOMAIN.md rule 2 and the
cross-source checks rules 3 and 4 (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Uuid, bindparam, func, select
from sqlalchemy.dialects import postgresql

from adapters.apply._shared import ChunkResult, _table, insert_rows
from adapters.apply.enrollments import _Enrollments
from adapters.apply.identities import _Identities
from adapters.apply.settlements import _Settlements
from adapters.apply.vital_events import _VitalEvents
from adapters.rows import CanonicalRow, EnrollmentRow, IdentityRow, SettlementRow, VitalEventRow
from gateway.storage.models import Household
from gateway.storage.places import refresh_places


class ChunkApplier(_Identities, _Enrollments, _Settlements, _VitalEvents):
    """Applies one chunk of one feed's rows inside the caller's transaction.

    Scope. A submitter with a jurisdiction (every push; ``ingest --region``) may name an ID
    number the gateway holds for a person *outside* that jurisdiction. Such a person is never
    moved, renamed or re-linked by the row, their stored data is never compared with it, and
    the row is classified exactly as if the person were unknown (新增 the first time, 无变化
    when re-sent), so counts, anomalies and dry runs reveal nothing about who exists elsewhere
    (CONTRACT.md: out of scope behaves like absent). The department's own facts (its status,
    its enrollment) are stored against the person, and the same department of the person's
    county is asked to verify (REPORTED_BY_ANOTHER_REGION: a move, or a double recognition).
    """

    # ------------------------------------------------------------------ entry point
    async def apply(self, rows: Sequence[CanonicalRow]) -> ChunkResult:
        await self.load(rows)
        self.classify()
        await self.flush()
        return self.result

    async def load(self, rows: Sequence[CanonicalRow]) -> None:
        """Read what classifying ``rows`` needs; identity rows are classified by
        :meth:`classify`, other kinds here already."""
        self._loaded = bool(rows)
        self._loaded_rows = rows
        if not rows:
            return
        kind = self.context.feed.kind
        plan_cache_mode = await self._plan_cache_mode("force_custom_plan")
        await self._load_people(rows)
        if kind == "identities":
            await self._load_identities([r for r in rows if isinstance(r, IdentityRow)])
        elif kind == "enrollments":
            await self._enrollments([r for r in rows if isinstance(r, EnrollmentRow)])
        elif kind == "settlements":
            await self._settlements([r for r in rows if isinstance(r, SettlementRow)])
        else:
            await self._vital_events([r for r in rows if isinstance(r, VitalEventRow)])
        await self._plan_cache_mode(plan_cache_mode)

    @property
    def classifies_apart(self) -> bool:
        """Whether :meth:`classify` is the in-memory part of this chunk's work (identities),
        which ``adapters.pipeline`` may run while the chunk before is written."""
        return self.context.feed.kind == "identities"

    def classify(self) -> None:
        """Classify the loaded rows in memory (no database access)."""
        if self._loaded and self.classifies_apart:
            self._classify_identities()

    async def flush(self) -> ChunkResult:
        """Write what the chunk's rows changed, in the caller's transaction."""
        if self._loaded:
            await self._flush()
        return self.result

    @property
    def touched(self) -> tuple[set[str], set[str]]:
        """The ID numbers and household numbers of the loaded rows: a chunk naming none of
        them reads the same before and after this one is written."""
        rows = self._loaded_rows
        return (
            {row.id_number for row in rows},
            {h for row in rows if (h := getattr(row, "household_number", None))},
        )

    async def _plan_cache_mode(self, mode: str | None) -> str | None:
        """Set PostgreSQL's ``plan_cache_mode`` for the rest of the transaction; the old value.

        The chunk's lookups (:meth:`_among`) are planned for the tables as they are now: they
        are statements the driver prepares once, and after five runs PostgreSQL may switch to
        a generic plan costed while the tables were nearly empty, a sequential scan for the
        rest of the file (6× slower at 100,000 rows). The writes then go back to the old mode:
        the foreign-key checks of ``COPY`` are cached plans too, and planning them for every
        row doubled the cost of the writes.
        """
        if mode is None or self.connection.dialect.name != "postgresql":
            return None
        previous = func.current_setting("plan_cache_mode")
        change = func.set_config("plan_cache_mode", mode, True)
        old: str | None = (await self.connection.execute(select(previous, change))).scalar()
        return old

    async def _flush(self) -> None:
        await insert_rows(self.connection, _table(Household), self._new_households)
        await self._flush_people()
        await self._flush_reports()
        for table, rows in self._fact_inserts:
            await insert_rows(self.connection, table, rows)
        for statement in self._fact_updates:
            await self.connection.execute(statement)
        await self._recompute_cost_burdens(self._cost_pairs)
        await self._flush_anomalies()
        if self.context.feed.kind in ("identities", "enrollments"):
            # identity and insured places follow the facts just written (issue 14)
            await refresh_places(self.connection, self._people_selected())

    def _people_selected(self) -> Any:
        """The chunk's people for ``refresh_places``: on PostgreSQL a SELECT over one array
        parameter, not an IN list of one bind parameter per person (compiling and planning ten
        thousand of those, in each of its four statements, cost a tenth of the ingest)."""
        ids = [p.id for p in self._persons.values()]
        if self.connection.dialect.name != "postgresql" or not ids:
            return ids
        return select(func.unnest(bindparam(None, ids, type_=postgresql.ARRAY(Uuid()))))
