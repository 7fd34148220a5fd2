"""Chunks prepared in worker processes while the database writes the chunk before them.

    main process:  read ──► chunk k+2 ──► pool          apply chunk k (classify, COPY) ◄── k
    workers:                    parse, validate, blind indexes, digests, seals of k+1, k+2

Parsing and validating a row, its blind indexes, its source digest and the ciphertexts of a new
person cost about as much CPU as PostgreSQL spends storing it, and the ``cryptography`` AEAD and
HMAC calls hold the GIL on field-sized inputs, so a thread would not overlap them: worker
processes (``spawn``) do that work for the chunks after the one being applied. At most
``workers + 1`` chunks are in flight, so memory stays bounded whatever the file's size.

What a worker computes is a cache, never a decision: :class:`PreparedVault` answers the
applier's ``id_number_index``, ``name_index``, ``source_digest``, ``seal`` … from the chunk's
:class:`CryptoMemo` and computes anything the memo lacks itself, so classification (what a row
*means* against what is stored, ``adapters.apply``) stays in the main process, in file order,
exactly as in a serial run. A new person's ciphertexts are sealed under an id the worker drew
for the row (:meth:`PreparedVault.new_person_id`); a person who turns out to exist already
simply never uses them.

Keys. A worker receives the keyring's primary data key and index key as an argument of its
start-up, through the ``multiprocessing`` pipe (pickled, never written to disk), and holds them
in memory only for its life (the ingest). Nothing else of the keyring (older data keys, audit
keys, the key-encryption key) leaves the main process.

A worker that dies (killed, out of memory) loses nothing: the chunks it held are prepared again
in the main process and the ingest goes on there, serially.
"""

from __future__ import annotations

import logging
import multiprocessing
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from adapters.mapping import Feed
from adapters.readers import SourceRow
from adapters.rows import (
    CanonicalRow,
    EnrollmentRow,
    IdentityRow,
    Rejection,
    RowParser,
    SettlementRow,
    VitalEventRow,
)
from gateway.crypto import FieldCipher, Keyring
from gateway.domain.records import PersonRecord
from gateway.storage.vault import TABLE, PersonVault

log = logging.getLogger(__name__)

# Files smaller than this are parsed in the process that reads them: starting workers (about a
# second of imports each) would cost more than it saves on a few thousand rows.
PARALLEL_MIN_BYTES = 2_000_000
# Worker processes for a large file: one per core, at most two (the main process and
# PostgreSQL need the others; bench/ingest_bench.py measured no gain from more on 2 cores).
MAX_WORKERS = 2

# (accepted rows, rejections, rows seen): one chunk as the pipeline applies it
PreparedRows = tuple[list[CanonicalRow], list[Rejection], int]


# Rows a chunk may grow by to end with the person and the household it is at (see chunks).
MAX_CHUNK_EXTENSION = 200


def _same_group(last: SourceRow, row: SourceRow) -> bool:
    """Whether ``row`` names the person or the household ``last`` named (as sent, unparsed:
    a difference in spelling only costs the overlap, never a result)."""
    values, before = row.values, last.values
    id_number = values.get("id_number")
    if id_number is not None and id_number == before.get("id_number"):
        return True
    household = values.get("household_id")
    return household is not None and household == before.get("household_id")


def default_workers() -> int:
    """None by default: everything in one process. Measured on the 2-core machine, quiet
    (bench/ingest_bench.py, 200,000 rows, 2026-12-05): workers loaded at 3,641 rows/s against
    3,557 in one process, re-loaded at 4,893 against 6,706, with 461 MB against 135 MB peak —
    they spend more CPU per row than they take off the main process (pickling, the memo), so
    they pay only where cores are idle. ``RELIEF_INGEST_WORKERS`` (at most :data:`MAX_WORKERS`
    is useful on two cores) turns them on for `relief-gateway ingest`."""
    return 0


@dataclass(slots=True)
class CryptoMemo:
    """What the workers computed for one chunk, keyed by exactly what the applier asks."""

    department: str = ""
    id_indexes: dict[str, bytes] = field(default_factory=dict)  # ID number → blind index
    name_indexes: dict[str, bytes] = field(default_factory=dict)
    phone_indexes: dict[str, bytes] = field(default_factory=dict)
    digests: dict[tuple[str | None, ...], bytes] = field(default_factory=dict)  # facts → digest
    # ID number → (person id drawn for them, their four values, the values' ciphertexts under
    # that id): used only if the person turns out to be new
    drawn: dict[str, tuple[bytes, tuple[str | None, ...], tuple[bytes | None, ...]]] = field(
        default_factory=dict
    )


_ROW_TYPES = {
    kind.__name__: kind for kind in (IdentityRow, EnrollmentRow, SettlementRow, VitalEventRow)
}
_ROW_FIELDS = {name: tuple(f.name for f in fields(kind)) for name, kind in _ROW_TYPES.items()}
_SEALED = ("id_number", "name", "phone", "address")
# One accepted row's crypto as a worker sends it: id number, name and phone indexes, source
# digest, then the drawn person id (16 bytes) and its four ciphertexts, or None.
_Crypto = tuple[Any, ...]


class PreparedChunk:
    """One chunk as a worker prepared it. Crosses the pipe as plain tuples (rows, rejections,
    and each row's indexes, digest and ciphertexts in a fixed order): unpickling dataclasses
    and dictionaries keyed by tuples cost the main process 30 µs a row, a third of its work."""

    __slots__ = ("_crypto", "accepted", "department", "memo", "rejected", "seen")

    def __init__(
        self,
        accepted: list[CanonicalRow],
        rejected: list[Rejection],
        seen: int,
        memo: CryptoMemo,
        *,
        department: str = "",
        crypto: list[_Crypto] | None = None,
    ) -> None:
        self.accepted = accepted
        self.rejected = rejected
        self.seen = seen  # rows of the file in the chunk (accepted + rejected)
        self.memo = memo
        self.department = department
        self._crypto = crypto

    def __getstate__(self) -> tuple[Any, ...]:
        rows = [
            (type(row).__name__, *[getattr(row, name) for name in _ROW_FIELDS[type(row).__name__]])
            for row in self.accepted
        ]
        rejected = [(r.line, r.column, r.value, r.reason) for r in self.rejected]
        return rows, rejected, self.seen, self.department, self._crypto

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        rows, rejected, seen, department, crypto = state
        self.accepted = [_ROW_TYPES[kind](*values) for kind, *values in rows]
        self.rejected = [Rejection(*r) for r in rejected]
        self.seen = seen
        self.department = department
        self._crypto = None
        self.memo = _memo_of(self.accepted, crypto or [], department)


def _memo_of(rows: list[CanonicalRow], crypto: list[_Crypto], department: str) -> CryptoMemo:
    memo = CryptoMemo(department)
    id_indexes, name_indexes, phone_indexes = memo.id_indexes, memo.name_indexes, memo.phone_indexes
    digests, drawn = memo.digests, memo.drawn
    for row, (id_bidx, name_bidx, phone_bidx, digest, person_id, *sealed) in zip(
        rows, crypto, strict=True
    ):
        id_indexes[row.id_number] = id_bidx
        name_indexes[row.name] = name_bidx
        phone = getattr(row, "phone", None)
        if phone is not None and phone_bidx is not None:
            phone_indexes[phone] = phone_bidx
        digests[_source_facts(row)] = digest
        if person_id is not None:
            values = tuple(getattr(row, column, None) for column in _SEALED)
            drawn[row.id_number] = (person_id, values, tuple(sealed))
    return memo


class PreparedVault(PersonVault):
    """A :class:`PersonVault` that first looks in the memo of the chunk being applied.

    Only the main process's vault decides nothing differently: a value missing from the memo
    (a phone sealed for a person who already existed, a digest of facts the worker did not
    foresee) is computed here, as without workers.
    """

    def __init__(self, cipher: FieldCipher) -> None:
        super().__init__(cipher)
        self.memo = CryptoMemo()
        # the person new_person_id last gave a drawn id, and what the worker sealed for them
        self._sealed_for: uuid.UUID | None = None
        self._sealed_values: tuple[str | None, ...] = ()
        self._sealed: tuple[bytes | None, ...] = ()
        self.created = 0  # people created (person_values): whether workers should seal

    def id_number_index(self, id_number: str) -> bytes:
        found = self.memo.id_indexes.get(id_number)
        return found if found is not None else super().id_number_index(id_number)

    def phone_index(self, phone: str) -> bytes:
        found = self.memo.phone_indexes.get(phone)
        return found if found is not None else super().phone_index(phone)

    def name_index(self, name: str) -> bytes:
        found = self.memo.name_indexes.get(name)
        return found if found is not None else super().name_index(name)

    def source_digest(self, department: str, facts: tuple[str | None, ...]) -> bytes:
        found = self.memo.digests.get(facts) if department == self.memo.department else None
        return found if found is not None else super().source_digest(department, facts)

    def seal(self, person_id: uuid.UUID, column: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        if person_id is self._sealed_for:  # the person just created, under the drawn id
            position = _SEALED.index(column) if column in _SEALED else -1
            if position >= 0 and self._sealed_values[position] == value:
                sealed = self._sealed[position]
                if sealed is not None:
                    return sealed
        return super().seal(person_id, column, value)

    def new_person_id(self, id_number: str) -> uuid.UUID:
        """The id a worker drew for a new person with this ID number (its values are sealed
        under it), or a fresh one."""
        drawn = self.memo.drawn.pop(id_number, None)
        if drawn is None:
            return uuid.uuid4()
        person_id = uuid.UUID(bytes=drawn[0])
        self._sealed_for, self._sealed_values, self._sealed = person_id, drawn[1], drawn[2]
        return person_id

    def person_values(self, record: PersonRecord) -> dict[str, Any]:
        """:meth:`PersonVault.person_values`, column for column (``tests/test_ingest_parallel``
        compares them), with the memo's ciphertexts and indexes."""
        pid = record.person_id
        region = record.region_code
        self.created += 1
        return {
            "id": pid,
            "id_number_bidx": self.id_number_index(record.id_number),
            "id_number_ct": self.seal(pid, "id_number", record.id_number),
            "name_ct": self.seal(pid, "name", record.name),
            "name_bidx": self.name_index(record.name),
            "phone_bidx": self.phone_index(record.phone) if record.phone else None,
            "phone_ct": self.seal(pid, "phone", record.phone),
            "address_ct": self.seal(pid, "address", record.address),
            "gender": record.gender,
            "birth_date": record.birth_date,
            "region_code": region,
            "province_code": region[:2],
            "city_code": region[:4],
            "county_code": region[:6],
            "household_id": record.household_id,
            "relation": record.relation,
        }


# ------------------------------------------------------------------ the workers' side


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """Everything a worker needs, sent once through the pipe when it starts."""

    feed: Feed
    today: date
    header_names: dict[str, str]
    keyring: Keyring  # the primary data key and the index key only (see the module doc)


_worker: _Preparer | None = None


def _start_worker(setup: WorkerSetup) -> None:
    global _worker
    _worker = _Preparer(setup)


def _prepare_in_worker(
    rows: list[tuple[int, dict[str, object], str | None]], seal_new: bool
) -> PreparedChunk:
    assert _worker is not None, "worker not started"
    return _worker.prepare([SourceRow(*row) for row in rows], seal_new)


class _Preparer:
    """Parses one chunk and computes what applying it will ask the vault for."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.feed = setup.feed
        self.parser = RowParser(setup.feed, today=setup.today, header_names=setup.header_names)
        self.vault = PersonVault(FieldCipher(setup.keyring))
        # Kinds whose rows create the people they name (adapters.apply: identities, enrollments).
        self.creates_people = setup.feed.kind in ("identities", "enrollments")

    def prepare(self, rows: list[SourceRow], seal_new: bool) -> PreparedChunk:
        accepted: list[CanonicalRow] = []
        rejected: list[Rejection] = []
        for row in rows:
            parsed = self.parser.parse(row)
            if isinstance(parsed, list):
                rejected.extend(parsed)
            else:
                accepted.append(parsed)
        department = self.feed.department.value
        crypto = self.crypto(accepted, seal_new, department)
        # the memo is built where the chunk is unpickled (the main process), not here
        return PreparedChunk(
            accepted, rejected, len(rows), CryptoMemo(), department=department, crypto=crypto
        )

    def crypto(self, rows: list[CanonicalRow], seal_new: bool, department: str) -> list[_Crypto]:
        vault, cipher = self.vault, self.vault.cipher
        drawn_for: set[str] = set()
        seal = seal_new and self.creates_people
        out: list[_Crypto] = []
        for row in rows:
            id_number, name = row.id_number, row.name
            phone = getattr(row, "phone", None)
            facts = _source_facts(row)
            head = (
                vault.id_number_index(id_number),
                vault.name_index(name),
                None if phone is None else vault.phone_index(phone),
                vault.source_digest(department, facts),
            )
            if not seal or id_number in drawn_for:
                out.append((*head, None))
                continue
            # Sealed under an id drawn here, used only if the person turns out to be new.
            drawn_for.add(id_number)
            person_id = uuid.uuid4()
            row_id = str(person_id)
            sealed = [
                None
                if (value := getattr(row, column, None)) is None
                else cipher.seal(value, table=TABLE, column=column, row_id=row_id)
                for column in _SEALED
            ]
            out.append((*head, person_id.bytes, *sealed))
        return out


def _source_facts(row: CanonicalRow) -> tuple[str | None, ...]:
    """What ``adapters.apply`` digests for a row (``_note_source``); a wrong guess here costs a
    digest in the main process, never a wrong result."""
    if isinstance(row, IdentityRow):
        return (
            row.name,
            row.region_code,
            row.phone,
            row.address,
            row.household_number,
            row.relation,
        )
    return (row.name,)


def worker_keyring(cipher: FieldCipher) -> Keyring | None:
    """The keys a worker seals and indexes with: the primary data key and the index key, in a
    keyring of their own (no file, no key-encryption key, no audit key); None when this cipher
    cannot hand them over (then everything runs in the main process)."""
    keyring = getattr(cipher, "_keyring", None)  # the cipher holds the keyring it seals with
    if not isinstance(keyring, Keyring):
        return None
    primary = keyring.primary
    return Keyring({primary.key_id: primary}, primary.key_id, keyring.index_key)


# ------------------------------------------------------------------ the main process's side


class ChunkPreparer:
    """Feeds chunks of source rows to worker processes and hands them back in file order.

    ``prepare_here`` prepares a chunk in this process (the fallback when a worker died).
    """

    def __init__(
        self,
        setup: WorkerSetup,
        *,
        workers: int,
        chunk_rows: int,
        prepare_here: Callable[[list[SourceRow]], PreparedChunk],
    ) -> None:
        self.setup = setup
        self.workers = workers
        self.chunk_rows = chunk_rows
        self.in_flight = workers + 1  # the bounded queue: chunks submitted, not yet applied
        self.prepare_here = prepare_here
        self.seal_new = True
        self.broken = False
        self.peak_in_flight = 0
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChunkPreparer:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.setup,),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def pids(self) -> list[int]:
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return list(processes)

    def note_applied(self, rows: int, new_people: int) -> None:
        """Seal new people's values in the workers only while chunks bring new people: a
        monthly re-load names people already stored, whose values are never sealed again."""
        self.seal_new = rows > 0 and new_people * 5 >= rows

    async def chunks(self, rows: Iterator[SourceRow]) -> AsyncGenerator[PreparedChunk, None]:
        import asyncio

        pending: deque[tuple[list[SourceRow], Future[PreparedChunk] | None]] = deque()
        held: list[SourceRow] = []  # the row read past the end of the last chunk

        def submit() -> bool:
            raw = held[:]
            held.clear()
            raw.extend(row for _, row in zip(range(self.chunk_rows - len(raw)), rows, strict=False))
            if not raw:
                return False
            # A chunk ends with its last person and household: a chunk that starts with the
            # person (or household) the one before ended with must wait for it to be written
            # (Ingestor._overlapped), and rosters list a person's identities, and a household's
            # members, one after the other.
            for _ in range(MAX_CHUNK_EXTENSION):
                following = next(rows, None)
                if following is None:
                    break
                if not _same_group(raw[-1], following):
                    held.append(following)
                    break
                raw.append(following)
            future: Future[PreparedChunk] | None = None
            if not self.broken and self._pool is not None:
                try:
                    future = self._pool.submit(
                        _prepare_in_worker,
                        [(r.line, r.values, r.error) for r in raw],
                        self.seal_new,
                    )
                except BrokenProcessPool:
                    self._broke()
            pending.append((raw, future))
            self.peak_in_flight = max(self.peak_in_flight, len(pending))
            return True

        more = True
        while more and len(pending) < self.in_flight:
            more = submit()
        while pending:
            raw, future = pending.popleft()
            prepared: PreparedChunk | None = None
            if future is not None:
                try:
                    prepared = await asyncio.wrap_future(future)
                except BrokenProcessPool:
                    self._broke()
            if prepared is None:
                prepared = self.prepare_here(raw)
            if more and len(pending) < self.in_flight:
                more = submit()  # keep the workers busy while this chunk is applied
            yield prepared

    def _broke(self) -> None:
        if not self.broken:
            log.warning("an ingest worker process died; the rest of the file is parsed here")
        self.broken = True
