"""``seed --copy``: the synthetic population written with PostgreSQL ``COPY``, for millions.

The rows are exactly what :func:`gateway.storage.writer.write_bundles` stores for the same
``generate_population`` arguments and keyring: the same person ids, ciphertexts under the same
associated data, the same blind indexes and source digests, one ``SEED`` batch per department
with the same counts and region, the same ``relief_status``/``enrollment``/``cost_burden`` ids
(from the tables' own sequences, in generator order). ``tests/test_seed_copy.py`` checks that.

How it goes fast on a small machine:

* **Two processes.** A ``spawn``ed producer runs the (sequential, seeded) generator and formats
  every row that needs no key as COPY text; the main process seals the four person fields,
  computes the blind indexes and source digests, and streams the chunks to PostgreSQL. The
  queue between them (a local pipe; the plaintext never leaves the machine, as in ``seed``)
  holds a few chunks, so the writer's memory is bounded whatever ``persons`` is; the generator
  itself remembers every ID number it issued (about 120 bytes a person: 1.2 GB at 10 million).
  Only the main process loads the keyring.
* **One transaction, indexes built once.** The database must hold no person yet (a seed into a
  populated database collides on the ID-number index anyway). Under exclusive locks the six
  tables are truncated, their foreign keys, primary keys, unique constraints and indexes are
  dropped (definitions kept from the catalogue), the rows are COPYed with ``FREEZE`` (written
  frozen and all-visible: no vacuum needed before index-only scans), then every index and
  constraint is recreated from its saved definition, sorted in bulk instead of 60 million random
  b-tree inserts, and the tables are analysed. A failure rolls everything back: nothing is
  half-written.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.clock import now_utc
from gateway.domain.regions import narrowest_jurisdiction
from gateway.domain.synthetic import household_number
from gateway.storage.models import IngestBatch, Person
from gateway.storage.places import refresh_places
from gateway.storage.vault import PersonVault
from gateway.storage.writer import MEDICAL_INSURANCE, WriteCounts

__all__ = ["COPY_TABLES", "CopySeedError", "copy_seed"]

# Parents first: the order rows are written in (and ids drawn from the sequences).
COPY_TABLES = ("household", "person", "person_source", "relief_status", "enrollment", "cost_burden")
_COLUMNS: dict[str, tuple[str, ...]] = {
    "household": ("id", "region_code", "county_code"),
    "person": (
        "id",
        "id_number_bidx",
        "id_number_ct",
        "name_ct",
        "name_bidx",
        "phone_bidx",
        "phone_ct",
        "address_ct",
        "gender",
        "birth_date",
        "region_code",
        "province_code",
        "city_code",
        "county_code",
        "household_id",
        "relation",
        "created_at",
    ),
    "person_source": ("person_id", "department", "digest", "batch_id", "received_at"),
    "relief_status": (
        "person_id",
        "category",
        "source_department",
        "recognized_on",
        "valid_from",
        "valid_to",
        "batch_id",
        "received_at",
        "listed_on",
        "exit_listed_on",
        "county_code",
    ),
    "enrollment": (
        "person_id",
        "year",
        "insurance_type",
        "status",
        "region_code",
        "subsidy_category",
        "subsidy_amount",
        "batch_id",
        "received_at",
    ),
    "cost_burden": (
        "person_id",
        "year",
        "total_cost",
        "basic_insurance_paid",
        "critical_illness_paid",
        "medical_assistance_paid",
        "personal_burden",
        "inpatient_count",
        "batch_id",
        "received_at",
    ),
}
# Departments the generator reports facts for (a SEED batch each, if any row names it); one it
# started to report without being listed here stops the producer with a KeyError, nothing kept.
_SEED_DEPARTMENTS = (
    "civil_affairs",
    "disabled_federation",
    MEDICAL_INSURANCE,
    "rural_revitalization",
)
_NULL = "\\N"
_CHUNK_PERSONS = 10_000
_QUEUE_CHUNKS = 4  # chunks in flight between producer and writer: bounds memory


class CopySeedError(RuntimeError):
    """The COPY seed cannot run here (wrong database, data already present); Chinese message."""


# ------------------------------------------------------------------------------ producer


@dataclass(slots=True)
class _Chunk:
    """One chunk of households: key-free tables as COPY text, persons as plaintext tuples."""

    households: str
    relief_statuses: str
    enrollments: str
    cost_burdens: str
    # (person id, id number, name, phone, address, the rest of the row as COPY text)
    persons: list[tuple[str, str, str, str | None, str | None, str]]
    # (person id, department, facts joined as the vault's source_digest joins them)
    sources: list[tuple[str, str, str]]
    counts: tuple[int, int, int, int, int]


@dataclass(slots=True)
class _Finished:
    batch_rows: dict[str, int]
    batch_counties: dict[str, list[str]]
    person_sources: int = 0  # counted by the writer


@dataclass(slots=True)
class _Failed:
    message: str


def _fmt(value: object) -> str:
    return _NULL if value is None else str(value)


def _produce(
    out: Any,
    persons: int,
    seed: int,
    today: date,
    provinces: Sequence[str] | None,
    batch_ids: dict[str, str],
    received_at: str,
) -> None:
    """The producer process: generate, format, hand over chunk by chunk (never a key here)."""
    try:
        for item in _chunks(persons, seed, today, provinces, batch_ids, received_at):
            out.put(item)
    except BaseException as exc:  # the writer must not wait forever for a dead producer
        out.put(_Failed(f"{type(exc).__name__}: {exc}"))
        raise


def _chunks(
    persons: int,
    seed: int,
    today: date,
    provinces: Sequence[str] | None,
    batch_ids: dict[str, str],
    received_at: str,
) -> Iterator[_Chunk | _Finished]:
    from gateway.domain.synthetic import generate_population

    rows: dict[str, int] = {}
    counties: dict[str, set[str]] = {}

    def use(department: str) -> str:
        if department not in rows:
            rows[department] = 0
            counties[department] = set()
        return batch_ids[department]

    households: list[str] = []
    statuses: list[str] = []
    enrollments: list[str] = []
    burdens: list[str] = []
    people: list[tuple[str, str, str, str | None, str | None, str]] = []
    sources: list[tuple[str, str, str]] = []
    for bundle in generate_population(persons, seed=seed, today=today, provinces=provinces):
        household = bundle.household
        households.append(
            f"{household.household_id}\t{household.region_code}\t{household.region_code[:6]}\n"
        )
        members = {member.person_id: member for member in bundle.members}
        for member in bundle.members:
            region = member.region_code
            people.append(
                (
                    str(member.person_id),
                    member.id_number,
                    member.name,
                    member.phone,
                    member.address,
                    f"{member.gender}\t{member.birth_date}\t{region}\t{region[:2]}\t{region[:4]}"
                    f"\t{region[:6]}\t{_fmt(member.household_id)}\t{_fmt(member.relation)}"
                    f"\t{received_at}\n",
                )
            )
        reported: dict[uuid.UUID, set[str]] = {}
        for status in bundle.relief_statuses:
            department = status.source_department
            batch = use(department)
            rows[department] += 1
            counties[department].add(members[status.person_id].region_code[:6])
            valid_to = status.valid_to
            exit_listed = valid_to + timedelta(days=1) if valid_to else None
            statuses.append(
                f"{status.person_id}\t{status.category}\t{department}\t{status.recognized_on}"
                f"\t{status.valid_from}\t{_fmt(valid_to)}\t{batch}\t{received_at}"
                f"\t{status.valid_from}\t{_fmt(exit_listed)}"
                # synthetic identities are recognised where the person lives
                f"\t{members[status.person_id].region_code[:6]}\n"
            )
            reported.setdefault(status.person_id, set()).add(department)
        for enrollment in bundle.enrollments:
            batch = use(MEDICAL_INSURANCE)
            rows[MEDICAL_INSURANCE] += 1
            counties[MEDICAL_INSURANCE].add(members[enrollment.person_id].region_code[:6])
            enrollments.append(
                f"{enrollment.person_id}\t{enrollment.year}\t{enrollment.insurance_type}"
                f"\t{enrollment.status}\t{enrollment.region_code}"
                f"\t{_fmt(enrollment.subsidy_category)}\t{_fmt(enrollment.subsidy_amount)}"
                f"\t{batch}\t{received_at}\n"
            )
            reported.setdefault(enrollment.person_id, set()).add(MEDICAL_INSURANCE)
        for burden in bundle.cost_burdens:
            batch = use(MEDICAL_INSURANCE)  # the ordinary seed does not count these rows
            burdens.append(
                f"{burden.person_id}\t{burden.year}\t{burden.total_cost}"
                f"\t{burden.basic_insurance_paid}\t{burden.critical_illness_paid}"
                f"\t{burden.medical_assistance_paid}\t{burden.personal_burden}"
                f"\t{burden.inpatient_count}\t{batch}\t{received_at}\n"
            )
        for person_id, departments in reported.items():
            member = members[person_id]
            for department in sorted(departments):
                facts: tuple[str | None, ...] = (
                    (member.name,)
                    if department == MEDICAL_INSURANCE
                    else (
                        member.name,
                        member.region_code,
                        member.phone,
                        member.address,
                        household_number(household.household_id),
                        member.relation,
                    )
                )
                joined = "\x1f".join("" if fact is None else fact for fact in facts)
                sources.append((str(person_id), department, joined))
        if len(people) >= _CHUNK_PERSONS:
            yield _Chunk(
                "".join(households),
                "".join(statuses),
                "".join(enrollments),
                "".join(burdens),
                people,
                sources,
                (len(households), len(people), len(statuses), len(enrollments), len(burdens)),
            )
            households, statuses, enrollments, burdens, people, sources = [], [], [], [], [], []
    if people:
        yield _Chunk(
            "".join(households),
            "".join(statuses),
            "".join(enrollments),
            "".join(burdens),
            people,
            sources,
            (len(households), len(people), len(statuses), len(enrollments), len(burdens)),
        )
    yield _Finished(rows, {k: sorted(v) for k, v in counties.items()})


# ------------------------------------------------------------------------------ writer


@dataclass(slots=True)
class _SavedDefinitions:
    """Everything dropped before the load, in the order it is recreated."""

    keys: list[tuple[str, str, str]] = field(default_factory=list)  # table, name, definition
    indexes: list[str] = field(default_factory=list)  # CREATE INDEX statements
    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class CopySeedStats:
    counts: WriteCounts
    person_sources: int  # person_source rows (not in WriteCounts)
    seconds: dict[str, float]  # prepare, copy, indexes, places, analyze


def _hex(value: bytes | None) -> str:
    return _NULL if value is None else "\\\\x" + value.hex()


def _seal_persons(
    vault: PersonVault, chunk: _Chunk, batches: dict[str, str], received: str
) -> tuple[str, str]:
    """Person rows and person_source rows as COPY text: what ``vault.person_values`` and
    ``vault.source_digest`` give the ordinary seed."""
    cipher = vault.cipher
    lines = []
    for person_id, id_number, name, phone, address, rest in chunk.persons:
        phone_ct = phone_bidx = None
        if phone is not None:
            phone_ct = cipher.seal(phone, table="person", column="phone", row_id=person_id)
            phone_bidx = vault.phone_index(phone)
        address_ct = (
            None
            if address is None
            else cipher.seal(address, table="person", column="address", row_id=person_id)
        )
        id_ct = cipher.seal(id_number, table="person", column="id_number", row_id=person_id)
        name_ct = cipher.seal(name, table="person", column="name", row_id=person_id)
        lines.append(
            f"{person_id}\t{_hex(vault.id_number_index(id_number))}\t{_hex(id_ct)}"
            f"\t{_hex(name_ct)}\t{_hex(vault.name_index(name))}\t{_hex(phone_bidx)}"
            f"\t{_hex(phone_ct)}\t{_hex(address_ct)}\t{rest}"
        )
    sources = [
        f"{person_id}\t{department}"
        f"\t{_hex(cipher.blind_index(joined, table='person_source', column=department))}"
        f"\t{batches[department]}\t{received}\n"
        for person_id, department, joined in chunk.sources
    ]
    return "".join(lines), "".join(sources)


async def _saved_definitions(connection: AsyncConnection) -> _SavedDefinitions:
    tables = list(COPY_TABLES)
    saved = _SavedDefinitions()
    result = await connection.execute(
        text(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c WHERE c.contype = 'f'"
            # Not the copies a partitioned table's key gives each partition (migration 0005):
            # dropping and re-adding the parent's covers them.
            " AND c.conparentid = 0"
            " AND (c.conrelid::regclass::text = ANY(:t) OR c.confrelid::regclass::text = ANY(:t))"
            " ORDER BY 1, 2"
        ),
        {"t": tables},
    )
    saved.foreign_keys = [(row[0], row[1], row[2]) for row in result]
    result = await connection.execute(
        text(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c WHERE c.contype IN ('p', 'u')"
            " AND c.conrelid::regclass::text = ANY(:t) ORDER BY c.contype, 1, 2"
        ),
        {"t": tables},
    )
    saved.keys = [(row[0], row[1], row[2]) for row in result]
    result = await connection.execute(
        text(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid::regclass::text = ANY(:t) AND NOT EXISTS ("
            "  SELECT 1 FROM pg_constraint c"
            "  WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid"
            "  AND c.contype IN ('p', 'u', 'x'))"
            " ORDER BY i.indexrelid::regclass::text"
        ),
        {"t": tables},
    )
    saved.indexes = [row[0] for row in result]
    return saved


async def _index_names(connection: AsyncConnection) -> list[str]:
    result = await connection.execute(
        text(
            "SELECT i.indexrelid::regclass::text FROM pg_index i"
            " WHERE i.indrelid::regclass::text = ANY(:t) AND NOT EXISTS ("
            "  SELECT 1 FROM pg_constraint c"
            "  WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid"
            "  AND c.contype IN ('p', 'u', 'x'))"
        ),
        {"t": list(COPY_TABLES)},
    )
    return [row[0] for row in result]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _prepare(connection: AsyncConnection) -> _SavedDefinitions:
    """Lock, check emptiness, save and drop constraints and indexes, truncate (for FREEZE)."""
    await connection.execute(
        text(f"LOCK TABLE {', '.join(COPY_TABLES)}, ingest_batch IN ACCESS EXCLUSIVE MODE")
    )
    for table in ("person", "household"):
        exists = text(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608 - constant names
        if (await connection.execute(exists)).scalar():
            raise CopySeedError(
                "--copy 只能向没有人员和家庭数据的数据库批量生成数据 (数据库中已有数据); "
                "请使用新数据库, 或去掉 --copy"
            )
    saved = await _saved_definitions(connection)
    for table, name, _ in saved.foreign_keys:
        await connection.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {_quote(name)}"))
    for name in await _index_names(connection):
        await connection.execute(text(f"DROP INDEX {name}"))
    for table, name, _ in saved.keys:
        await connection.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {_quote(name)}"))
    # A table truncated in this transaction may be loaded with COPY FREEZE. Every referencing
    # table is empty (no person exists) and its foreign key is dropped for now.
    await connection.execute(text(f"TRUNCATE {', '.join(COPY_TABLES)}"))
    return saved


async def _rebuild(connection: AsyncConnection, saved: _SavedDefinitions) -> None:
    for table, name, definition in saved.keys:
        await connection.execute(
            text(f"ALTER TABLE {table} ADD CONSTRAINT {_quote(name)} {definition}")
        )
    for statement in saved.indexes:
        await connection.execute(text(statement))
    for table, name, definition in saved.foreign_keys:
        await connection.execute(
            text(f"ALTER TABLE {table} ADD CONSTRAINT {_quote(name)} {definition}")
        )


async def copy_seed(
    engine: AsyncEngine,
    vault: PersonVault,
    *,
    persons: int,
    seed: int,
    today: date,
    provinces: Sequence[str] | None = None,
    submitted_by: str = "seed",
    progress: Any = None,
) -> CopySeedStats:
    """Seed ``persons`` synthetic people with COPY in one transaction (see the module doc).

    Raises:
        CopySeedError: not PostgreSQL, or the database already holds people or households.
    """
    if engine.dialect.name != "postgresql":
        raise CopySeedError("--copy 仅支持 PostgreSQL; SQLite 请去掉 --copy")
    seconds: dict[str, float] = {}
    counts = WriteCounts()
    received_at = now_utc()
    batch_ids = {department: uuid.uuid4() for department in _SEED_DEPARTMENTS}
    context = multiprocessing.get_context("spawn")
    channel: Any = context.Queue(maxsize=_QUEUE_CHUNKS)
    producer = context.Process(
        target=_produce,
        args=(
            channel,
            persons,
            seed,
            today,
            list(provinces) if provinces else None,
            {k: str(v) for k, v in batch_ids.items()},
            received_at.isoformat(),
        ),
        name="relief-seed-producer",
        daemon=True,
    )
    producer.start()
    try:
        async with engine.connect() as connection, connection.begin():
            started = time.monotonic()
            await connection.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
            saved = await _prepare(connection)
            # Batches first, as RUNNING: the ordinary seed's rows point at them; the ones
            # no row used are removed again at the end.
            for department, batch_id in batch_ids.items():
                await connection.execute(
                    insert(IngestBatch).values(
                        id=batch_id,
                        department=department,
                        feed="synthetic",
                        channel="SEED",
                        file_name=None,
                        content_sha256=None,
                        region="",
                        submitted_by=submitted_by,
                        received_at=received_at,
                        status="RUNNING",
                    )
                )
            seconds["prepare"] = time.monotonic() - started
            started = time.monotonic()
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            finished = await _load(
                driver, channel, producer, vault, batch_ids, received_at, counts, progress
            )
            seconds["copy"] = time.monotonic() - started
            started = time.monotonic()
            await _rebuild(connection, saved)
            seconds["indexes"] = time.monotonic() - started
            started = time.monotonic()
            # identity and insured places (issue 14), set-based over everyone just loaded
            await refresh_places(connection, select(Person.id))
            seconds["places"] = time.monotonic() - started
            started = time.monotonic()
            await _finish_batches(connection, batch_ids, finished)
            for table in (*COPY_TABLES, "ingest_batch", "person_place"):
                await connection.execute(text(f"ANALYZE {table}"))
            seconds["analyze"] = time.monotonic() - started
        producer.join(timeout=30)
    finally:
        if producer.is_alive():
            producer.terminate()
            producer.join(timeout=10)
        channel.close()
    return CopySeedStats(counts=counts, person_sources=finished.person_sources, seconds=seconds)


async def _load(
    driver: Any,
    channel: Any,
    producer: Any,
    vault: PersonVault,
    batch_ids: dict[str, uuid.UUID],
    received_at: datetime,
    counts: WriteCounts,
    progress: Any,
) -> _Finished:
    received = received_at.isoformat()
    batches = {department: str(batch) for department, batch in batch_ids.items()}
    sources = 0
    while True:
        try:
            item = channel.get(timeout=1.0)
        except queue.Empty:
            if not producer.is_alive():
                raise CopySeedError(f"数据生成进程意外退出 (退出码 {producer.exitcode})") from None
            continue
        if isinstance(item, _Failed):
            raise CopySeedError(f"数据生成失败: {item.message}")
        if isinstance(item, _Finished):
            item.person_sources = sources
            return item
        sources += len(item.sources)
        person_text, source_text = _seal_persons(vault, item, batches, received)
        for table, payload in (
            ("household", item.households),
            ("person", person_text),
            ("person_source", source_text),
            ("relief_status", item.relief_statuses),
            ("enrollment", item.enrollments),
            ("cost_burden", item.cost_burdens),
        ):
            if payload:
                await driver.copy_to_table(
                    table,
                    source=_Source(payload.encode("utf-8")),
                    columns=list(_COLUMNS[table]),
                    format="text",
                    freeze=True,
                )
        households, people, statuses, enrollments, burdens = item.counts
        counts.households += households
        counts.persons += people
        counts.relief_statuses += statuses
        counts.enrollments += enrollments
        counts.cost_burdens += burdens
        if progress is not None:
            progress(counts)


class _Source:
    """An async iterable over one chunk's COPY payload (asyncpg streams it as it comes)."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> bytes:
        if not self._payload:
            raise StopAsyncIteration
        payload, self._payload = self._payload, b""
        return payload


async def _finish_batches(
    connection: AsyncConnection, batch_ids: dict[str, uuid.UUID], finished: _Finished
) -> None:
    for department, batch_id in batch_ids.items():
        if department not in finished.batch_rows:
            await connection.execute(
                text("DELETE FROM ingest_batch WHERE id = :id"), {"id": batch_id}
            )
            continue
        rows = finished.batch_rows[department]
        await connection.execute(
            text(
                "UPDATE ingest_batch SET status = 'COMPLETED', finished_at = :now,"
                " region = :region, rows_total = :rows, rows_accepted = :rows, added = :rows"
                " WHERE id = :id"
            ),
            {
                "now": now_utc(),
                "region": narrowest_jurisdiction(finished.batch_counties[department]),
                "rows": rows,
                "id": batch_id,
            },
        )
