"""The audit log: who read which people's which fields, when, why, under which policy.

Entries form a hash chain: ``entry_hash = SHA-256(prev_hash ‖ canonical entry)``. The
application only appends; ``verify_chain`` finds the first entry that was changed, deleted or
re-ordered.

No forks, and no lock held across round trips: ``audit_head`` (migration 0012) holds the hash
of the last entry, and an append moves it only if it still holds the hash the group was chained
from (compare-and-swap), together with the insert. On PostgreSQL that is one autocommitted
statement per group (``_APPEND``, a data-modifying CTE); when another process appended in
between, it writes nothing and returns the head, the group is re-chained (hashes and MACs)
from there and sent again; after ``MAX_ATTEMPTS`` misses it waits for the head row's lock in a
transaction instead (compare-and-swap alone can starve a process). Each process caches the
head it last wrote, so a group costs one round trip unless another process wrote since. On
SQLite (one writer anyway) the head row and the entries change in one transaction under a
process lock.

Every writer of ``audit_log`` goes through ``append_entries``: one that bypassed the head would
fork the chain, and the next append would link to the head, not to it (a LINK failure).

The chain alone is unkeyed: whoever can write the database can change an entry and recompute
every hash after it. So each entry also carries ``entry_mac``, an HMAC of its hash with an
audit key of the keyring (``gateway.crypto.AuditMac``; HMAC-SM3 under the 国密 suite) and the
key's id. The key never enters the database: a rewritten chain fails at its first rewritten
entry. Stripping the MACs does not help a forger either: from the first MAC'd entry on (the
``mac_start`` anchor, written with it, itself MAC'd) and for every entry dated after the
keyring's ``audit_since``, a missing MAC is reported like a wrong one.

Old months leave the online log for signed archive files (``gateway.storage.audit_archive``);
an ``archive`` anchor then records the last archived entry, and the online chain starts from
its hash instead of the genesis hash. The head row stays where it is: an online log emptied by
an archive goes on from the last archived entry.

What a chain cannot show: deleting the LAST entries (or rolling the whole table back to an
earlier state) leaves a shorter chain that is intact. Only a copy of the head kept outside the
database reveals it: ``relief-gateway audit verify`` prints the head hash for an operator to
record elsewhere (a ticket, a signed log, another system), and ``--anchor HASH`` later checks
that the recorded head is still in the chain. (A deleted tail with the head row left in place
shows at the next append: that entry links to the deleted head.)

``AuditWriter`` group-commits: a request hands over its entry and waits until the entry is
committed (no response leaves before its audit entry is durable), while entries that arrive
during a write go into the next one, so under load one statement serves many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import URL, Engine, inspect, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import load_only

from gateway.crypto import AuditMac
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.principal import Principal
from gateway.storage.models import AuditAnchor, AuditEntry, AuditHead

log = logging.getLogger("gateway.audit")

GENESIS = "0" * 64


def _entry_digest(prev_hash: str, fields: Mapping[str, object]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _naive_utc_text(moment: datetime) -> str:
    if moment.tzinfo is not None:  # PostgreSQL returns aware UTC, SQLite naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def _hashed_fields(entry: AuditEntry) -> dict[str, object]:
    return {
        "occurred_at": _naive_utc_text(entry.occurred_at),
        "request_id": entry.request_id,
        "subject": entry.subject,
        "department": entry.department,
        "level": entry.level,
        "region": entry.region,
        "purpose": entry.purpose,
        "operation": entry.operation,
        "policy_version": entry.policy_version,
        "person_ids": entry.person_ids,
        "fields": entry.fields,
    }


def read_entry(
    *,
    principal: Principal,
    purpose: str,
    request_id: str,
    operation: str,
    policy_version: int,
    person_ids: Iterable[uuid.UUID],
    fields: Mapping[str, str],
) -> AuditEntry:
    """An entry for one request that read person data (not yet chained or stored)."""
    return AuditEntry(
        occurred_at=now_utc(),
        request_id=request_id,
        subject=principal.subject,
        department=principal.department.value,
        level=principal.level.value,
        region=principal.region,
        purpose=purpose,
        operation=operation[:128],
        policy_version=policy_version,
        person_ids=json.dumps(sorted(str(pid) for pid in person_ids)),
        fields=json.dumps(dict(sorted(fields.items())), ensure_ascii=False),
    )


def anchor_message(anchor: AuditAnchor) -> bytes:
    """What an anchor's MAC covers: every field but its own id and MAC."""
    fields = {
        "kind": anchor.kind,
        "created_at": _naive_utc_text(anchor.created_at),
        "operator": anchor.operator,
        "month": anchor.month,
        "entries": anchor.entries,
        "first_prev_hash": anchor.first_prev_hash,
        "last_entry_id": anchor.last_entry_id,
        "last_entry_hash": anchor.last_entry_hash,
        "file_name": anchor.file_name,
        "file_digest": anchor.file_digest,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def seal_anchor(anchor: AuditAnchor, macs: AuditMac) -> AuditAnchor:
    anchor.mac_key_id, anchor.anchor_mac = macs.sign("anchor", anchor_message(anchor))
    return anchor


async def _keyed_schema(session: AsyncSession) -> bool:
    """Whether the database has the evidence tables of migration 0011 (a database at an
    earlier revision, mid-upgrade or downgraded, still has a chain to verify)."""
    connection = await session.connection()
    return await connection.run_sync(lambda sync: inspect(sync).has_table("audit_anchor"))


# Databases (by URL) where this process has seen the mac_start anchor: one look-up per process,
# not one per append.
_mac_start_known: set[URL] = set()

# The head this process last wrote or saw, per engine (an engine stands for a process's pool):
# the hash the next group is chained from, right unless another process appended since.
_cached_heads: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()

# One append at a time per engine on PostgreSQL (the compare-and-swap orders engines and
# processes); one per process on SQLite, which has a single writer per database anyway.
_engine_locks: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()
_sqlite_lock = asyncio.Lock()


def _lock_of(engine: Engine) -> asyncio.Lock:
    if engine.dialect.name != "postgresql":
        return _sqlite_lock
    return _engine_locks.setdefault(engine, asyncio.Lock())


@dataclass
class AppendCounts:
    """What the PostgreSQL appends of this process cost (the bench and the tests read it):
    groups written by the one statement, statements sent, how many of those found the head
    moved, and groups that then took the head row's lock."""

    groups: int = 0
    statements: int = 0
    head_moved: int = 0
    locked: int = 0


counts = AppendCounts()

# A group whose head keeps moving (other processes appending in between) is sent at most this
# many times as the one statement; then it takes the head row's lock in a transaction and waits
# its turn there. Compare-and-swap alone is not fair: under load the process that just wrote
# chains its next group from its own head before a loser has learnt it, and a loser can lose
# again and again (measured: 12 misses in a row, two processes, c=8, a busy machine). The lock
# queue is first come, first served.
MAX_ATTEMPTS = 3

_INSERTED = (
    "occurred_at",
    "request_id",
    "subject",
    "department",
    "level",
    "region",
    "purpose",
    "operation",
    "policy_version",
    "person_ids",
    "fields",
    "prev_hash",
    "entry_hash",
    "mac_key_id",
    "entry_mac",
)
_ARRAY_TYPES = {"occurred_at": "timestamptz[]", "policy_version": "integer[]"}

# PostgreSQL: one statement per group. ``head`` locks the head row and reads its newest
# version; ``moved`` replaces it only if it is still the hash the group was chained from
# (compare-and-swap); ``added`` inserts the group (routed to its month partitions) only if the
# head moved. Returned: the head before the statement (the hash to re-chain from when it did
# not move) and the new entries' ids. Table locks are taken before the row lock, as in the
# archive (``audit_archive._record``): audit_log, then the head row, never the other way round.
_COLUMNS = ", ".join(_INSERTED)
_ARRAYS = ", ".join(f"CAST(:{name} AS {_ARRAY_TYPES.get(name, 'text[]')})" for name in _INSERTED)
_APPEND = text(
    # S608: built from the constant column names above, no input; values are bound.
    "WITH head AS (SELECT entry_hash FROM audit_head WHERE id = 1 FOR UPDATE),"  # noqa: S608
    " moved AS (UPDATE audit_head SET entry_hash = :new_head FROM head"
    " WHERE audit_head.id = 1 AND head.entry_hash = :expected RETURNING 1),"
    f" added AS (INSERT INTO audit_log ({_COLUMNS}) SELECT {_COLUMNS}"
    f" FROM unnest({_ARRAYS}) WITH ORDINALITY AS group_entries({_COLUMNS}, position)"
    " WHERE EXISTS (SELECT 1 FROM moved) ORDER BY position RETURNING id, entry_hash)"
    " SELECT (SELECT entry_hash FROM head) AS head,"
    " (SELECT array_agg(id ORDER BY id) FROM added) AS ids,"
    " (SELECT array_agg(entry_hash ORDER BY id) FROM added) AS hashes"
)


class ChainHeadMoved(RuntimeError):
    """The chain head moved while a transaction held it (SQLite: another process wrote between
    the read and the write); the group was not written."""


def _chain(entries: Sequence[AuditEntry], head: str, macs: AuditMac | None) -> None:
    """Link ``entries`` after ``head`` (hashes, and MACs with ``macs``), in order."""
    previous = head
    key_id = macs.key_id if macs is not None else None
    for entry in entries:
        entry.prev_hash = previous
        entry.entry_hash = previous = _entry_digest(previous, _hashed_fields(entry))
        if macs is not None and key_id is not None:
            entry.mac_key_id, entry.entry_mac = macs.sign("entry", previous.encode())


async def append_entries(
    session: AsyncSession, entries: Sequence[AuditEntry], *, macs: AuditMac | None = None
) -> None:
    """Chain, MAC (with ``macs``) and commit entries in order; on return each has its id.

    An idle ``session`` on PostgreSQL: one autocommitted statement (``_APPEND``), re-chained and
    sent again when another process moved the head, at most ``MAX_ATTEMPTS`` times. SQLite, the
    first keyed append of a process (which anchors ``mac_start``), a session already in a
    transaction (the archive's, which holds the locks), and a group whose head kept moving: one
    transaction that locks the head row; it commits the session. Any error propagates, nothing
    of the group written (fail-closed)."""
    bind = session.get_bind()
    async with _lock_of(bind.engine):
        keyed = macs is not None and macs.key_id is not None and bool(entries)
        database = bind.engine.url if keyed else None
        mac_start = database is not None and database not in _mac_start_known
        in_transaction = session.in_transaction()
        if not entries and not in_transaction:
            return
        one_statement = bind.dialect.name == "postgresql" and not mac_start and not in_transaction
        if one_statement:
            if await _append_statement(session, entries, macs):
                return
            counts.locked += 1
        await _append_transaction(session, entries, macs, mac_start=mac_start)
        if database is not None:
            _mac_start_known.add(database)


async def _append_statement(
    session: AsyncSession, entries: Sequence[AuditEntry], macs: AuditMac | None
) -> bool:
    """PostgreSQL: the group in one round trip (the common case), autocommitted: no BEGIN, no
    COMMIT, no lock held between statements. False, with nothing written, when the head kept
    moving or the database has no head row (``_append_transaction`` takes it, or restores it)."""
    engine = session.get_bind().engine
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    # A miss costs one statement that changes nothing and returns the head to chain from.
    head = _cached_heads.get(engine, "")
    try:
        for _attempt in range(MAX_ATTEMPTS):
            _chain(entries, head or GENESIS, macs)
            counts.statements += 1
            row = (
                await connection.execute(_APPEND, _statement_parameters(entries, expected=head))
            ).one()
            if row.head is None:
                await session.commit()
                return False
            if row.ids is not None:
                ids = dict(zip(row.hashes, row.ids, strict=True))
                for entry in entries:
                    entry.id = ids[entry.entry_hash]
                _cached_heads[engine] = entries[-1].entry_hash
                counts.groups += 1
                await session.commit()  # autocommit: ends the session's transaction, no round trip
                return True
            counts.head_moved += 1
            head = row.head  # another process appended: chain after its last entry
        await session.commit()
        return False
    except BaseException:
        _cached_heads.pop(engine, None)
        with contextlib.suppress(Exception):
            await session.rollback()
        raise


def _statement_parameters(entries: Sequence[AuditEntry], *, expected: str) -> dict[str, object]:
    """One array per column (the statement's text, hence its prepared plan, is the same for
    every group size), the expected head and the new one."""
    columns: dict[str, list[object]] = {name: [] for name in _INSERTED}
    for entry in entries:
        for name, values in columns.items():
            value = getattr(entry, name)
            values.append(as_utc(value) if name == "occurred_at" else value)
    return {**columns, "expected": expected, "new_head": entries[-1].entry_hash}


async def _append_transaction(
    session: AsyncSession,
    entries: Sequence[AuditEntry],
    macs: AuditMac | None,
    *,
    mac_start: bool,
) -> None:
    """The group in one transaction that holds the head row (SQLite: under the process lock,
    SQLite having one writer; PostgreSQL: the table lock, then the row lock, in that order
    everywhere)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE audit_log IN ROW EXCLUSIVE MODE"))
    head = await _locked_head(session) or await _restore_head(session)
    if entries:
        _chain(entries, head, macs)
        session.add_all(entries)
        moved = await session.execute(
            update(AuditHead)
            .where(AuditHead.id == 1, AuditHead.entry_hash == head)
            .values(entry_hash=entries[-1].entry_hash)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]  # another SQLite process
            raise ChainHeadMoved("审计链头在写入期间被其他进程移动, 记录未写入")
        if macs is not None and mac_start:
            await _record_mac_start(session, entries[0], macs)
    await session.commit()
    if entries:
        _cached_heads[bind.engine] = entries[-1].entry_hash


async def _locked_head(session: AsyncSession) -> str | None:
    locked = select(AuditHead.entry_hash).where(AuditHead.id == 1).with_for_update()
    return (await session.execute(locked)).scalar()


async def _restore_head(session: AsyncSession) -> str:
    """A database without its head row (emptied table by table, or the row deleted) gets it
    back as migration 0012 seeds it: the last entry's hash, else the last archived entry's,
    else the genesis hash. Whoever could delete the row could as well have set it to any
    hash in the log; the links and MACs still show any change to the entries."""
    last = (
        await session.execute(select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1))
    ).scalar()
    if last is None:
        archived = (
            select(AuditAnchor.last_entry_hash)
            .where(AuditAnchor.kind == "archive")
            .order_by(AuditAnchor.id.desc())
            .limit(1)
        )
        last = (await session.execute(archived)).scalar()
    log.warning("审计链头 (audit_head) 缺失, 已按日志末尾重建: %s", last or GENESIS)
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    seed = insert(AuditHead).values(id=1, entry_hash=last or GENESIS).on_conflict_do_nothing()
    await session.execute(seed)
    head = await _locked_head(session)  # a concurrent restorer's row, if it came first
    if head is None:
        raise RuntimeError("audit_head")  # unreachable: the row was just inserted
    return head


async def _record_mac_start(session: AsyncSession, first: AuditEntry, macs: AuditMac) -> None:
    """The first MAC'd entry ever, anchored in the same transaction (holding the head row):
    from it on a missing MAC is tampering, not an entry older than the MACs."""
    found = await session.execute(
        select(AuditAnchor.id).where(AuditAnchor.kind == "mac_start").limit(1)
    )
    if found.scalar() is not None:
        return
    await session.flush()  # the entry's id
    anchor = AuditAnchor(
        kind="mac_start",
        created_at=now_utc(),
        operator="relief-gateway",
        month=None,
        entries=0,
        first_prev_hash=first.prev_hash,
        last_entry_id=first.id,
        last_entry_hash=first.entry_hash,
        file_name=None,
        file_digest=None,
    )
    session.add(seal_anchor(anchor, macs))


class AuditWriter:
    """Group commit of audit entries for one process (see the module docstring). With
    ``macs`` every entry is MAC'd with the keyring's current audit key: one HMAC of 64 bytes
    per entry, from a keyed state prepared once."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, macs: AuditMac | None = None
    ) -> None:
        self._sessions = sessions
        self.macs = macs
        if macs is not None and macs.key_id is None:
            log.warning(
                "密钥环中没有审计密钥: 审计记录不带 MAC, 改写整条哈希链将无法发现; "
                "请运行 relief-gateway audit rotate-key"
            )
        self._pending: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, entry: AuditEntry) -> None:
        """Return once ``entry`` is committed; raise if it could not be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # shield: a caller that goes away does not cancel the write others wait for.
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._sessions() as session:
                    await append_entries(session, [entry for entry, _ in batch], macs=self.macs)
            except Exception as exc:  # every waiter learns its entry was not written
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


ANCHOR_MISSING = "记录过的链头哈希不在日志中 (其后的记录被删除, 或日志被整体回退)"

# What failed, for the operator: the chain (links, hashes) or the MAC.
LINK, HASH, MAC, MAC_MISSING, MAC_KEY, ANCHOR = (
    "link",
    "hash",
    "mac",
    "mac_missing",
    "mac_key",
    "anchor",
)
REASONS = {
    LINK: "前一条记录的哈希不符(记录被删除或重排)",
    HASH: "记录内容与其哈希不符(记录被修改)",
    MAC: "MAC 校验失败(记录被改写后重新计算了哈希, 或 MAC 被篡改)",
    MAC_MISSING: "缺少 MAC(自启用 MAC 起每条记录都必须有, MAC 被剥离)",
}


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int  # intact entries (before the first bad one)
    first_bad_id: int | None
    reason: str | None
    # entry_hash of the last intact entry (GENESIS for an empty log): the head of an intact
    # chain, to be recorded outside the database (see the module docstring).
    head_hash: str = GENESIS
    anchor_missing: bool = False  # an ``anchor`` was given and is not in the intact chain
    failure: str | None = None  # LINK, HASH, MAC, MAC_MISSING, MAC_KEY or ANCHOR
    macs_verified: bool = False  # whether MACs were checked (a keyring was given)
    mac_entries: int = 0  # entries whose MAC was checked and holds
    pre_mac_entries: int = 0  # entries from before MACs began (no MAC required)
    # Where the online chain starts: the latest archive anchor (GENESIS without archives).
    start_hash: str = GENESIS
    archive_anchors: int = 0
    # When the first bad entry failed its MAC: the first entry where the hash chain itself
    # breaks, if it does (a forger who did not recompute every hash), else None.
    chain_bad_id: int | None = None
    chain_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None and not self.anchor_missing and self.failure is None


@dataclass
class _Walk:
    """What ``verify_chain`` knows while it walks."""

    macs: AuditMac | None
    required_from: int | None  # the mac_start anchor's entry id
    since: datetime | None  # the keyring's audit_since
    mac_seen: bool = False
    mac_entries: int = 0
    pre_mac_entries: int = 0

    def mac_problem(self, entry: AuditEntry) -> tuple[str, str] | None:
        if self.macs is None:
            return None
        if entry.entry_mac is None or entry.mac_key_id is None:
            required = (
                self.mac_seen
                or (self.required_from is not None and entry.id >= self.required_from)
                or (self.since is not None and as_utc(entry.occurred_at) >= self.since)
            )
            if required:
                return MAC_MISSING, REASONS[MAC_MISSING]
            self.pre_mac_entries += 1
            return None
        holds = self.macs.check(
            entry.mac_key_id, "entry", entry.entry_hash.encode(), entry.entry_mac
        )
        if holds is None:
            return MAC_KEY, f"MAC 使用了密钥环中没有的审计密钥 {entry.mac_key_id[:32]!r}"
        if not holds:
            return MAC, REASONS[MAC]
        self.mac_seen = True
        self.mac_entries += 1
        return None


@dataclass(frozen=True, slots=True)
class _Anchors:
    start_hash: str
    archive_hashes: frozenset[str]
    archives: int
    required_from: int | None
    problem: tuple[str, str] | None  # (failure, reason)


async def _read_anchors(session: AsyncSession, macs: AuditMac | None) -> _Anchors:
    """The anchors, checked: each MAC (with a keyring), and the archives one after another
    from the genesis hash (each archive takes the next prefix of the chain)."""
    rows = list((await session.execute(select(AuditAnchor).order_by(AuditAnchor.id))).scalars())
    problem: tuple[str, str] | None = None
    expected = GENESIS
    archives = [row for row in rows if row.kind == "archive"]
    starts = [row for row in rows if row.kind == "mac_start"]
    for row in rows:
        if macs is None or problem is not None:
            break
        holds = macs.check(row.mac_key_id, "anchor", anchor_message(row), row.anchor_mac)
        if holds is None:
            reason = f"锚点 {row.id} 的 MAC 使用了密钥环中没有的审计密钥 {row.mac_key_id[:32]!r}"
            problem = MAC_KEY, reason
        elif not holds:
            problem = ANCHOR, f"锚点 {row.id} 的 MAC 不符 (锚点被伪造或修改)"
    for row in archives:
        if problem is None and row.first_prev_hash != expected:
            problem = ANCHOR, f"归档锚点 {row.id} 与前一次归档不衔接 (归档锚点被删除或伪造)"
        expected = row.last_entry_hash
    return _Anchors(
        start_hash=expected,
        archive_hashes=frozenset(row.last_entry_hash for row in archives),
        archives=len(archives),
        required_from=min((row.last_entry_id for row in starts), default=None),
        problem=problem,
    )


async def verify_chain(
    session: AsyncSession,
    *,
    batch: int = 5000,
    anchor: str | None = None,
    macs: AuditMac | None = None,
    archived_hashes: Iterable[str] = (),
) -> ChainReport:
    """Walk the online chain in id order from the latest archive anchor; report the first
    entry whose link, digest or (with ``macs``) MAC does not hold.

    ``anchor``: a head hash recorded earlier; the chain must still contain it, else the entries
    after it were deleted (which the links alone cannot show). A head that has since been
    archived counts when it is an archive anchor's hash or in ``archived_hashes`` (the hashes
    of archive files the caller verified)."""
    keyed = await _keyed_schema(session)
    unkeyed = ("mac_key_id", "entry_mac")  # added by 0011
    columns = [c for c in AuditEntry.__table__.columns if keyed or c.key not in unkeyed]
    if not keyed:  # before 0011: no MACs, no anchors; only the chain can be checked
        macs = None
    anchors = (
        await _read_anchors(session, macs)
        if keyed
        else _Anchors(GENESIS, frozenset(), 0, None, None)
    )
    since = None
    if macs is not None and macs.since:
        since = as_utc(datetime.fromisoformat(macs.since))
    walk = _Walk(macs, anchors.required_from, since)
    base = ChainReport(
        0,
        None,
        None,
        anchors.start_hash,
        macs_verified=macs is not None,
        start_hash=anchors.start_hash,
        archive_anchors=anchors.archives,
    )
    if anchors.problem is not None:
        return replace(base, failure=anchors.problem[0], reason=anchors.problem[1])
    known = {*anchors.archive_hashes, *archived_hashes, GENESIS}
    anchor_seen = anchor is None or anchor in known
    expected_prev = anchors.start_hash
    count = 0
    last_id = 0
    mac_failure: ChainReport | None = None  # the first entry whose MAC fails, as a report

    def report(chain_bad_id: int | None = None, failure: str | None = None) -> ChainReport:
        """The first failure (a MAC failure comes before the chain's, which it may explain)."""
        walked = replace(
            base,
            entries=count,
            head_hash=expected_prev,
            mac_entries=walk.mac_entries,
            pre_mac_entries=walk.pre_mac_entries,
        )
        if mac_failure is not None:
            chain_reason = None if failure is None else REASONS[failure]
            return replace(
                mac_failure,
                mac_entries=walk.mac_entries,
                pre_mac_entries=walk.pre_mac_entries,
                chain_bad_id=chain_bad_id,
                chain_reason=chain_reason,
            )
        if failure is not None:
            return replace(
                walked, first_bad_id=chain_bad_id, reason=REASONS[failure], failure=failure
            )
        if macs is not None and walk.mac_seen and anchors.required_from is None:
            return replace(walked, reason="MAC 起点锚点缺失 (锚点被删除)", failure=ANCHOR)
        if not anchor_seen:
            return replace(walked, reason=ANCHOR_MISSING, anchor_missing=True)
        return walked

    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEntry)
                    .options(load_only(*(getattr(AuditEntry, c.key) for c in columns)))
                    .where(AuditEntry.id > last_id)
                    .order_by(AuditEntry.id)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return report()
        for entry in rows:
            if entry.prev_hash != expected_prev:
                return report(entry.id, LINK)
            if _entry_digest(entry.prev_hash, _hashed_fields(entry)) != entry.entry_hash:
                return report(entry.id, HASH)
            if mac_failure is None:
                problem = walk.mac_problem(entry)
                if problem is not None:
                    mac_failure = replace(
                        base,
                        entries=count,
                        first_bad_id=entry.id,
                        reason=problem[1],
                        head_hash=expected_prev,
                        failure=problem[0],
                    )
            expected_prev = entry.entry_hash
            anchor_seen = anchor_seen or entry.entry_hash == anchor
            count += 1
            last_id = entry.id
        session.expunge_all()
