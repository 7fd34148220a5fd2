"""The audit log as the audit administrator reads it (issues 5 and 16): entries of requests
made inside the administrator's jurisdiction, newest first, filtered by person, department,
subject and period, never the reader's own, and the verification of the whole chain.

Jurisdiction is the requester's region: a city administrator (``3701``) sees what callers of
Jinan and its counties read, never another city's callers, whoever the people read were.

One person, one subject (issue 16): subjects are compared in canonical form
(:func:`gateway.domain.principal.canonical_subject`). Entries written since issue 16 store the
canonical subject (tokens are canonicalised when verified), but the subject is inside the hash
chain, so entries written before keep whatever spelling their token had (``OFFICER.A``,
``ｏｆｆｉｃｅｒ.ａ``) and cannot be rewritten. The filter and the reader's own-subject exclusion
therefore compare the canonical key of every stored subject, computed in the database as the
rows are scanned (the query scans by id and region anyway; there is no subject index):

- SQLite: :func:`canonical_subject` itself, registered on the connection as a SQL function;
- PostgreSQL: ``lower(btrim(normalize(subject, NFKC)))``, the same mapping for every subject
  except letters whose lower case differs from their case folding (``ß``/``ẞ``, final
  ``ς``), which no subject scheme of an identity platform uses; an ASCII subject skips
  ``normalize`` (NFKC leaves it unchanged) and is lowered byte by byte (``COLLATE "C"``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from gateway.crypto import AuditMac
from gateway.domain.clock import beijing_day_start
from gateway.domain.principal import canonical_subject
from gateway.storage.audit_chain import ChainReport, verify_chain
from gateway.storage.models import AuditEntry, Person


@dataclass(frozen=True, slots=True)
class AuditCriteria:
    region: str  # the officer's jurisdiction: the requester's region starts with it
    person_id: uuid.UUID | None = None
    no_person: bool = False  # an ID-number filter that matched nobody: nothing can match
    department: str | None = None
    subject: str | None = None  # any spelling: compared in canonical form
    # The reader's own subject (any spelling): its entries are left out, an administrator
    # never reads its own trail (三权分立, issue 16); another audit administrator does.
    excluded_subject: str | None = None
    occurred_from: date | None = None  # Beijing dates, inclusive
    occurred_to: date | None = None


# The SQLite function computing a stored subject's canonical key (registered per connection).
SQLITE_SUBJECT_KEY = "relief_canonical_subject"
# What Python's str.strip() removes once NFKC has run (NFKC turns the ideographic, no-break and
# other spaces into U+0020 first): ASCII white space, then the few non-ASCII ones NFKC keeps.
_ASCII_SPACE = " \t\n\v\f\r\x1c\x1d\x1e\x1f"
_UNICODE_SPACE = _ASCII_SPACE + "\x85\u1680\u2028\u2029"


def subject_key(column: ColumnElement[str] | Any, dialect: str) -> ColumnElement[str]:
    """The canonical key of a stored subject (a column or a literal), in SQL (see the module
    docstring)."""
    if dialect == "sqlite":
        key: ColumnElement[str] = getattr(func, SQLITE_SUBJECT_KEY)(column, type_=String)
        return key
    # An ASCII subject (as many bytes as characters) needs no normalisation, and its lower
    # case is the C collation's, byte by byte: several times cheaper per row than a
    # locale's lower() of NFKC (docs/security.md, 三权分立).
    ascii_only = func.octet_length(column) == func.char_length(column)
    ascii_key = func.lower(func.btrim(column, _ASCII_SPACE).collate("C"), type_=String)
    normalised = func.normalize(column, literal_column("NFKC"))
    unicode_key = func.lower(func.btrim(normalised, _UNICODE_SPACE), type_=String)
    return case((ascii_only, ascii_key), else_=unicode_key)


async def prepare_subject_key(connection: AsyncConnection) -> None:
    """Register :data:`SQLITE_SUBJECT_KEY` on this SQLite connection (once per connection)."""
    if connection.dialect.name != "sqlite":
        return
    raw = await connection.get_raw_connection()
    if raw.info.get(SQLITE_SUBJECT_KEY):
        return

    def register(sync_connection: Any) -> None:
        sync_connection.connection.dbapi_connection.create_function(
            SQLITE_SUBJECT_KEY, 1, _sqlite_key, deterministic=True
        )

    await connection.run_sync(register)
    raw.info[SQLITE_SUBJECT_KEY] = True


def _sqlite_key(value: object) -> str | None:
    return canonical_subject(value) if isinstance(value, str) else None


class AuditLogReader:
    """Reads the audit log; never writes it (entries are appended by
    ``gateway.storage.audit_chain`` only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def person_id(self, id_number_index: bytes) -> uuid.UUID | None:
        """The person with this blind index (not scoped: the officer reads the log, not the
        person; the entry of this query records the look-up)."""
        async with self._engine.connect() as connection:
            found = await connection.execute(
                select(Person.id).where(Person.id_number_bidx == id_number_index)
            )
            value = found.scalar()
        return None if value is None else uuid.UUID(str(value))

    def _conditions(self, criteria: AuditCriteria, dialect: str) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [AuditEntry.region.startswith(criteria.region)]
        if criteria.no_person:
            conditions.append(AuditEntry.id < 0)
        if criteria.person_id is not None:
            # person_ids is a JSON array of ids as text: the quoted id matches exactly one
            # element (same statement on SQLite and PostgreSQL; ids hold no LIKE wildcards).
            conditions.append(AuditEntry.person_ids.contains(f'"{criteria.person_id}"'))
        if criteria.department is not None:
            conditions.append(AuditEntry.department == criteria.department)
        key = subject_key(AuditEntry.subject, dialect)
        if criteria.subject is not None:
            conditions.append(key == canonical_subject(criteria.subject))
        if criteria.excluded_subject is not None:
            conditions.append(key != canonical_subject(criteria.excluded_subject))
        # Bounds in UTC like the stored timestamps (see gateway.storage.exchange).
        if criteria.occurred_from is not None:
            conditions.append(AuditEntry.occurred_at >= beijing_day_start(criteria.occurred_from))
        if criteria.occurred_to is not None:
            end = beijing_day_start(criteria.occurred_to + timedelta(days=1))
            conditions.append(AuditEntry.occurred_at < end)
        return conditions

    async def page(
        self, criteria: AuditCriteria, *, first: int, before_id: int | None
    ) -> tuple[list[Any], bool]:
        """Newest first (ids grow with the chain); ``before_id`` is the cursor."""
        async with self._engine.connect() as connection:
            await prepare_subject_key(connection)
            conditions = self._conditions(criteria, connection.dialect.name)
            stmt = select(*AuditEntry.__table__.c).where(*conditions)
            if before_id is not None:
                stmt = stmt.where(AuditEntry.id < before_id)
            stmt = stmt.order_by(AuditEntry.id.desc()).limit(first + 1)
            rows = list((await connection.execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def count(self, criteria: AuditCriteria) -> int:
        async with self._engine.connect() as connection:
            await prepare_subject_key(connection)
            conditions = self._conditions(criteria, connection.dialect.name)
            stmt = select(func.count()).select_from(AuditEntry).where(*conditions)
            return int((await connection.execute(stmt)).scalar_one())

    async def verify(self, macs: AuditMac | None = None) -> ChainReport:
        """The chain's links and hashes, and with ``macs`` (the keyring's audit MAC) every
        entry's MAC: a chain rewritten with recomputed hashes is caught only by the MAC."""
        async with AsyncSession(self._engine, expire_on_commit=False) as session:
            return await verify_chain(session, macs=macs)
