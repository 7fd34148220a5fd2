"""省际交换 (issue 18 item 5): this province's gateway and another's exchange the events about
people tied to both — insured in one province, identity recognised in the other (004 §3) —
as signed messages with signed receipts. No shared database: each side keeps a message log it
can prove (``gateway.storage.peers``), X-Road style.

    sender (37)                                   receiver (34)
    outbox_event about a person tied to 34
      → OUT row, PENDING: envelope (ID number,
        event) sealed at rest, message id stable
    POST /exchange/v1/messages  ───────────────▶  key id known? signature? to = 34? clock skew?
      X-Relief-Exchange-Key / -Signature /        one transaction: find the person by 34's own
      -Signed-At, body = the envelope's bytes     blind index, apply (outbox_event origin='37'),
                                                  sign the receipt, log IN + receipt, chain
    receipt verified (34's key, message id,   ◀──  200 + receipt (ACCEPTED | REJECTED + reason)
      digest of what was sent) → stored, chained  a duplicate: the STORED receipt, byte for byte
    failure → retried, back-off with jitter

Mutual authentication is by keys configured on both sides (the peers file,
RELIEF_EXCHANGE_PEERS_FILE: each peer's code, url and public keys; this side's key in the data
dir, created at the first start). Sending the same envelope again after a crash anywhere is
safe: the message id is derived from the event and the peer, the receiver keeps one row per
message and answers a repeat with the receipt it stored. Transport security (TLS, pinned) is
the deployment's, in front of the gateway; the signatures do not depend on it.

Peers file (TOML; JSON with the same shape also accepted)::

    [[peers]]
    code = "34"
    name = "安徽省"
    url = "https://exchange.ah.example/"
    kinds = ["task.pushed", "identity.recognised"]   # optional: the kinds agreed, both ways
    [[peers.keys]]
    id = "34-1f0c…"          # as the peer's GET /exchange/v1/keys shows it (derived, checked)
    alg = "ES256"            # default; or "SM2" with jwk = {kty = "EC", crv = "SM2", x, y}
    pem = "-----BEGIN PUBLIC KEY-----…"

This province's key follows the cipher suite when it is created: SM2 under the 国密 suite
(RELIEF_CIPHER_SUITE=sm4-gcm+hmac-sm3), else ES256; each side verifies the other's algorithm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import time
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto import (
    AnyPeerKey,
    AnyProvinceKey,
    AuditMac,
    generate_province_key,
    load_province_key,
    peer_key_from_entry,
)
from gateway.domain.clock import as_utc, now_utc
from gateway.domain.departments import Department
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import CipherSuite, Settings
from gateway.storage import peers as log_store
from gateway.storage.models import OutboxEvent, Person
from gateway.storage.outbox import EventKind, decode_facts, fan_out
from gateway.storage.setwise import dialect_insert
from gateway.storage.vault import PersonVault

log = logging.getLogger("gateway.exchange")

PATH = "/exchange/v1/messages"
KEYS_PATH = "/exchange/v1/keys"
KEY_HEADER = "X-Relief-Exchange-Key"
SIGNATURE_HEADER = "X-Relief-Exchange-Signature"
SIGNED_AT_HEADER = "X-Relief-Exchange-Signed-At"
MAX_MESSAGE_BYTES = 64_000
ES256 = "ES256"
SM2 = "SM2"
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
# Message ids are derived (uuid5) from the sending province, the peer and the event: the
# same event is the same message, however often it is enqueued or sent.
_NAMESPACE = uuid.UUID("5b0f7c58-3c5e-4f57-9a55-2f1c8d2f4e18")
_SEAL = {"table": "exchange_message", "column": "envelope"}
_BATCH = 100
_KINDS = frozenset(kind.value for kind in EventKind)
_DEPARTMENTS = frozenset(department.value for department in Department)
# The sender reads new events from a cursor (the greatest outbox id it has looked at); an event
# whose transaction commits after a later one's was passed by the cursor, so every so often
# the sender looks at every event again (those already logged are skipped in SQL).
FULL_SCAN_SECONDS = 300.0
VERIFY_CONCURRENCY = 2  # signature checks of received messages running at once


def canonical(value: Mapping[str, Any]) -> bytes:
    """The exact bytes signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def signed_payload(signed_at: str, envelope: bytes) -> bytes:
    """What a message's signature covers: the signing time (against replay) and the envelope."""
    return signed_at.encode("ascii") + b"\n" + envelope


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Peer:
    code: str  # the province's two-digit code
    name: str
    url: str  # the peer gateway's base URL
    keys: Mapping[str, AnyPeerKey]  # by key id: all verify (rotation), none signs here
    kinds: frozenset[str] | None = None  # the event kinds agreed; None: all

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + PATH


def load_peers(path: Path, own: str, *, production: bool = False) -> dict[str, Peer]:
    """The peers file, validated: a broken file stops the start (ConfigurationError).
    Production takes https URLs only (http is for loopback tests and development)."""
    where = f"省际交换对端配置 {path}"
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{where} 无法读取或格式错误: {type(exc).__name__}") from None
    found: dict[str, Peer] = {}
    entries = raw.get("peers") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f"{where} 应包含 peers 列表")
    for entry in entries:
        code = str(entry.get("code", "")) if isinstance(entry, dict) else ""
        if len(code) != 2 or not code.isdigit() or code == own or code in found:
            raise ConfigurationError(f"{where}: 对端省份代码 {code!r} 无效、重复或为本省")
        url = str(entry.get("url", ""))
        if not url.startswith(("https://",) if production else ("https://", "http://")):
            raise ConfigurationError(f"{where}: 对端 {code} 的 url 应以 https:// 开头")
        keys: dict[str, AnyPeerKey] = {}
        for item in entry.get("keys") or []:
            key_id = str(item.get("id", "")) if isinstance(item, dict) else ""
            try:
                key = peer_key_from_entry(code, item if isinstance(item, dict) else {})
            except ValueError:
                raise ConfigurationError(
                    f"{where}: 对端 {code} 的公钥 {key_id} 不是 P-256 (ES256) 或 SM2 公钥"
                ) from None
            if key.derived_key_id != key_id:
                derived = key.derived_key_id
                raise ConfigurationError(
                    f"{where}: 对端 {code} 的密钥编号 {key_id} 与公钥不符 (应为 {derived})"
                )
            keys[key_id] = key
        if not keys:
            raise ConfigurationError(f"{where}: 对端 {code} 没有配置公钥")
        kinds = entry.get("kinds")
        found[code] = Peer(
            code=code,
            name=str(entry.get("name") or code),
            url=url,
            keys=keys,
            kinds=None if kinds is None else frozenset(str(kind) for kind in kinds),
        )
    return found


def load_or_create_key(path: Path, province: str, algorithm: str = ES256) -> AnyProvinceKey:
    """This province's exchange key; created (mode 0600, ``algorithm``) when the file does
    not exist. An existing file keeps its own algorithm."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(generate_province_key(algorithm))
    try:
        return load_province_key(path.read_bytes(), province=province)
    except ValueError:
        raise ConfigurationError(f"省际交换签名密钥 {path} 不是 ES256 或 SM2 私钥") from None


# ---------------------------------------------------------------------------- refusals
class ExchangeRefused(Exception):
    """A message refused before anything is stored or applied (the sender retries)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Raced(Exception):
    """Another request stored the same message first; read its receipt instead."""


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    body: bytes
    signature: str
    key_id: str


# ---------------------------------------------------------------------------- the exchange
class PeerExchange:
    """Both halves of the exchange for one gateway process: ``receive`` (called by the HTTP
    route) and the sender loop (``start``/``close``, beside the policy listener)."""

    def __init__(
        self,
        *,
        own: str,
        key: AnyProvinceKey,
        peers: Mapping[str, Peer],
        engine: AsyncEngine,
        vault: PersonVault,
        macs: AuditMac | None,
        settings: Settings,
    ) -> None:
        self.own, self.key, self.peers = own, key, dict(peers)
        self.engine, self.vault, self.macs = engine, vault, macs
        self.max_skew = timedelta(seconds=settings.exchange_max_skew_seconds)
        self.retry_base = settings.exchange_retry_base_seconds
        self.retry_max = settings.exchange_retry_max_seconds
        self.poll_seconds = settings.exchange_poll_seconds
        self._keys = {key_id: peer for peer in self.peers.values() for key_id in peer.keys}
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._verifying = asyncio.Semaphore(VERIFY_CONCURRENCY)
        self._after: dict[str, int] = {}  # per peer: outbox ids up to here were looked at
        self._full_scan_due: dict[str, float] = {}  # per peer, time.monotonic()

    @classmethod
    def configure(
        cls,
        settings: Settings,
        *,
        own: str,
        engine: AsyncEngine,
        vault: PersonVault,
        macs: AuditMac | None,
    ) -> PeerExchange | None:
        """None without a peers file (no exchange)."""
        if settings.exchange_peers_file is None:
            return None
        peers = load_peers(settings.exchange_peers_file, own, production=settings.is_production)
        # A new key follows the cipher suite: SM2 under the 国密 suite, else ES256.
        algorithm = SM2 if settings.cipher_suite is CipherSuite.SM else ES256
        key = load_or_create_key(settings.exchange_key_path, own, algorithm)
        return cls(
            own=own, key=key, peers=peers, engine=engine, vault=vault, macs=macs, settings=settings
        )

    # ------------------------------------------------------------------------ receiving
    async def receive(
        self, body: bytes, key_id: str, signature: str, signed_at: str
    ) -> SignedReceipt:
        """Verify, then store, apply and sign the receipt in one transaction. Raises
        ``ExchangeRefused`` (nothing stored, nothing applied) for a message that fails."""
        peer = self._keys.get(key_id)
        if peer is None:
            raise ExchangeRefused(401, "UNKNOWN_KEY", "未知的签名密钥: 不属于任何已配置的对端省份")
        try:
            if len(signed_at) > 40:  # the log keeps it as signed, in 40 characters
                raise ValueError(signed_at[:8])
            moment = datetime.fromisoformat(signed_at)
        except ValueError:
            raise ExchangeRefused(400, "BAD_MESSAGE", "签名时间格式错误") from None
        if moment.tzinfo is None or abs(now_utc() - moment) > self.max_skew:
            seconds = int(self.max_skew.total_seconds())
            raise ExchangeRefused(
                401,
                "STALE_MESSAGE",
                f"消息签名时间与本机时间相差超过 {seconds} 秒 (重放的旧消息或时钟错误), 已拒绝",
            )
        # SM2 costs milliseconds of pure-Python CPU: off the event loop, and a bounded number
        # at a time (anyone can send a signature to check; a burst queues, the loop serves on).
        async with self._verifying:
            verified = await asyncio.to_thread(
                peer.keys[key_id].verify, "message", signed_payload(signed_at, body), signature
            )
        if not verified:
            raise ExchangeRefused(401, "BAD_SIGNATURE", "消息签名无效")
        envelope = _parse_envelope(body)
        if envelope["from"] != peer.code:
            raise ExchangeRefused(403, "WRONG_SENDER", "消息的发送省份与签名密钥所属省份不一致")
        if envelope["to"] != self.own:
            raise ExchangeRefused(
                403,
                "WRONG_RECIPIENT",
                f"消息的收件省份 ({envelope['to'][:8]}) 不是本省 ({self.own})",
            )
        message_id = envelope["message_id"]
        digest = _sha256(body)
        for _ in range(3):
            try:
                return await self._store(peer, envelope, body, digest, key_id, signature, signed_at)
            except (IntegrityError, _Raced):
                # The same message arriving twice at once: the other one stored it; its
                # receipt is read on the next round.
                log.info(
                    "duplicate exchange message %s from %s stored concurrently",
                    message_id,
                    peer.code,
                )
        raise ExchangeRefused(503, "BUSY", "消息暂时无法处理, 请重试")

    async def _store(
        self,
        peer: Peer,
        envelope: Mapping[str, Any],
        body: bytes,
        digest: str,
        key_id: str,
        signature: str,
        signed_at: str,
    ) -> SignedReceipt:
        message_id: uuid.UUID = envelope["message_id"]
        async with self.engine.begin() as connection:
            stored = await log_store.stored_inbound(connection, peer.code, message_id)
            if stored is not None:
                if stored.envelope_sha256 != digest:
                    raise ExchangeRefused(
                        409, "MESSAGE_ID_REUSED", "同一消息编号已用于不同内容的消息"
                    )
                return SignedReceipt(
                    stored.receipt, stored.receipt_signature, stored.receipt_key_id
                )
            now = now_utc()
            status, reason, person_id, event_id = ACCEPTED, None, None, None
            audience = envelope["event"].get("audience")
            if envelope["kind"] not in _KINDS:
                status, reason = REJECTED, "事件类型无法识别"
            elif peer.kinds is not None and envelope["kind"] not in peer.kinds:
                status, reason = REJECTED, "该事件类型不在两省约定的交换范围内"
            elif audience not in _DEPARTMENTS:
                status, reason = REJECTED, "受理部门无法识别"
            else:
                person = (
                    await connection.execute(
                        select(Person.id, Person.county_code).where(
                            Person.id_number_bidx
                            == self.vault.id_number_index(envelope["id_number"])
                        )
                    )
                ).first()
                if person is None:
                    status, reason = REJECTED, "本省没有该身份证号码的人员"
                else:
                    person_id = person.id
                    event_id = await self._apply(connection, peer, envelope, person)
            receipt = canonical(
                {
                    "v": 1,
                    "kind": "receipt",
                    "messageId": str(message_id),
                    "messageDigest": digest,
                    "from": self.own,
                    "to": peer.code,
                    "status": status,
                    "reason": reason,
                    "receivedAt": now.isoformat(),
                }
            )
            receipt_signature = await asyncio.to_thread(self.key.sign, "receipt", receipt)
            await log_store.insert_inbound(
                connection,
                self.macs,
                {
                    "peer": peer.code,
                    "message_id": message_id,
                    "ref": envelope["ref"],
                    "kind": envelope["kind"],
                    "event_id": event_id,
                    "person_id": person_id,
                    "envelope_ct": self._seal(message_id, body),
                    "envelope_sha256": digest,
                    "signed_at": signed_at,
                    "signature": signature,
                    "signer_key_id": key_id,
                    "receipt": receipt,
                    "receipt_signature": receipt_signature,
                    "receipt_key_id": self.key.key_id,
                    "receipt_status": status,
                    "created_at": now,
                    "received_at": now,
                    "receipted_at": now,
                },
            )
        log.info(
            "exchange message %s from %s: %s",
            message_id,
            peer.code,
            status,
            extra={"peer": peer.code, "message_id": str(message_id), "receipt_status": status},
        )
        return SignedReceipt(receipt, receipt_signature, self.key.key_id)

    async def _apply(
        self, connection: Any, peer: Peer, envelope: Mapping[str, Any], person: Any
    ) -> int:
        """The peer's event as a local outbox event (``origin`` = the peer), so this side's
        chain, webhooks and live lists see it; fanned out to matching endpoints."""
        event = envelope["event"]
        emit_id = uuid.uuid4()
        facts = {
            "originProvince": peer.code,
            "originCounty": event.get("countyCode"),
            "originSubject": event.get("subjectType"),
            "originOccurredAt": event.get("occurredAt"),
            **(event.get("facts") if isinstance(event.get("facts"), dict) else {}),
        }
        message_id = str(envelope["message_id"])
        statement = dialect_insert(connection.dialect.name, OutboxEvent).on_conflict_do_nothing(
            index_elements=["dedupe_key"]
        )
        await connection.execute(
            statement,
            [
                {
                    "event_id": uuid.uuid4(),
                    "kind": envelope["kind"],
                    "audience": str(event["audience"]),
                    "county_code": person.county_code,
                    "person_id": person.id,
                    "subject_type": "exchange",
                    "subject_id": message_id,
                    "dedupe_key": f"exchange:{peer.code}:{message_id}",
                    "facts": json.dumps(facts, ensure_ascii=False),
                    "occurred_at": now_utc(),
                    "emit_id": emit_id,
                    "origin": peer.code,
                }
            ],
        )
        event_id = (
            await connection.execute(select(OutboxEvent.id).where(OutboxEvent.emit_id == emit_id))
        ).scalar()
        if event_id is None:
            # The same message applied by a concurrent request that committed first (the
            # insert waited for it, then skipped): this transaction gives way.
            raise _Raced
        await fan_out(connection, emit_id)
        return int(event_id)

    def _seal(self, message_id: uuid.UUID, envelope: bytes) -> bytes:
        return self.vault.cipher.seal(envelope.decode("utf-8"), row_id=str(message_id), **_SEAL)

    def open_envelope(self, message_id: uuid.UUID, sealed: bytes) -> bytes:
        """The exact bytes of a logged envelope (for proof: its SHA-256 and signature)."""
        return self.vault.cipher.open(sealed, row_id=str(message_id), **_SEAL).encode("utf-8")

    # ------------------------------------------------------------------------ sending
    async def start(self) -> None:
        if self._task is None and self.peers:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
            self._task = asyncio.create_task(self._run(), name="peer-exchange")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.send_round()
            except Exception:  # the database away, say: logged, tried again at the next poll
                log.warning("exchange sender round failed", exc_info=True)
            await asyncio.sleep(self.poll_seconds)

    async def send_round(self) -> int:
        """Enqueue new events for every peer and send what is due; the number receipted."""
        receipted = 0
        for peer in self.peers.values():
            await self._enqueue(peer)
            receipted += await self._send_due(peer)
        return receipted

    async def _enqueue(self, peer: Peer) -> None:
        after = self._after.get(peer.code, 0)
        if time.monotonic() >= self._full_scan_due.get(peer.code, 0.0):
            after = 0
            self._full_scan_due[peer.code] = time.monotonic() + FULL_SCAN_SECONDS
        async with self.engine.begin() as connection:
            newest = await log_store.newest_event_id(connection)  # before the scan
            rows = await log_store.untold_events(
                connection, peer.code, kinds=peer.kinds, after=after, limit=_BATCH
            )
            next_after = rows[-1].id if len(rows) == _BATCH else max(after, newest)
            now = now_utc()
            messages = []
            for row in rows:
                message_id = uuid.uuid5(_NAMESPACE, f"{self.own}:{peer.code}:{row.event_id}")
                id_number = self.vault.open_sealed(row.id_number_ct, "id_number", row.person_id)
                envelope = canonical(
                    {
                        "v": 1,
                        "messageId": str(message_id),
                        "from": self.own,
                        "to": peer.code,
                        "kind": row.kind,
                        "ref": None,
                        "idNumber": id_number,
                        "createdAt": now.isoformat(),
                        "event": {
                            "eventId": str(row.event_id),
                            "audience": row.audience,
                            "countyCode": row.county_code,
                            "subjectType": row.subject_type,
                            "subjectId": row.subject_id,
                            "occurredAt": as_utc(row.occurred_at).isoformat(),
                            "facts": decode_facts(row.facts),
                        },
                    }
                )
                messages.append(
                    {
                        "direction": log_store.OUT,
                        "peer": peer.code,
                        "message_id": message_id,
                        "ref": None,
                        "kind": row.kind,
                        "event_id": row.id,
                        "person_id": row.person_id,
                        "envelope_ct": self._seal(message_id, envelope),
                        "envelope_sha256": _sha256(envelope),
                        "status": log_store.PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
            await log_store.enqueue(connection, messages)
        self._after[peer.code] = next_after  # committed: the cursor moves on

    async def _send_due(self, peer: Peer) -> int:
        async with self.engine.connect() as connection:
            queued = await log_store.pending_messages(connection, peer.code, limit=_BATCH)
        receipted = 0
        for row in queued:
            if row.next_attempt_at is not None and as_utc(row.next_attempt_at) > now_utc():
                break  # the oldest waits for its retry: those after it wait too (order)
            if await self._send(peer, row):
                receipted += 1
            else:
                break  # the peer is failing: keep the order, try again later
        return receipted

    async def _send(self, peer: Peer, row: Any) -> bool:
        # The loop's client; a round run by hand (tests, a CLI) has one of its own.
        client = self._client or httpx.AsyncClient(timeout=10.0)
        envelope = self.open_envelope(row.message_id, row.envelope_ct)
        sent_at = now_utc()
        signed_at = sent_at.isoformat()
        signature = await asyncio.to_thread(
            self.key.sign, "message", signed_payload(signed_at, envelope)
        )
        attempts = row.attempts + 1
        try:
            response = await client.post(
                peer.endpoint,
                content=envelope,
                headers={
                    "Content-Type": "application/json",
                    KEY_HEADER: self.key.key_id,
                    SIGNATURE_HEADER: signature,
                    SIGNED_AT_HEADER: signed_at,
                },
            )
            problem = None if response.status_code == 200 else _refusal_text(response)
        except httpx.HTTPError as exc:
            problem = f"无法连接对端: {type(exc).__name__}"
        finally:
            if client is not self._client:
                await client.aclose()
        receipt = None
        if problem is None:
            receipt, problem = await asyncio.to_thread(self._check_receipt, peer, row, response)
        if problem is not None or receipt is None:
            delay = min(self.retry_max, self.retry_base * 2 ** min(attempts - 1, 30))
            delay *= random.uniform(0.5, 1.0)  # jitter, not a secret
            async with self.engine.begin() as connection:
                await log_store.record_failure(
                    connection,
                    row.id,
                    attempts=attempts,
                    next_attempt_at=now_utc() + timedelta(seconds=delay),
                    error=problem or "回执无效",
                    sent_at=sent_at,
                )
            log.warning(
                "exchange message %s to %s not receipted (attempt %d): %s",
                row.message_id,
                peer.code,
                attempts,
                problem,
            )
            return False
        async with self.engine.begin() as connection:
            await log_store.complete_outbound(
                connection,
                self.macs,
                row.id,
                signed_at=signed_at,
                signature=signature,
                signer_key_id=self.key.key_id,
                receipt=response.content,
                receipt_signature=response.headers[SIGNATURE_HEADER],
                receipt_key_id=response.headers[KEY_HEADER],
                receipt_status=str(receipt["status"]),
                attempts=attempts,
                sent_at=sent_at,
                now=now_utc(),
            )
        return True

    def _check_receipt(
        self, peer: Peer, row: Any, response: httpx.Response
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The receipt, if signed by one of the peer's keys and about exactly what was sent."""
        key = peer.keys.get(response.headers.get(KEY_HEADER, ""))
        signature = response.headers.get(SIGNATURE_HEADER, "")
        if key is None or not key.verify("receipt", response.content, signature):
            return None, "回执签名无效或签名密钥未知"
        try:
            receipt = json.loads(response.content)
        except ValueError:
            return None, "回执不是合法的 JSON"
        expected = {
            "kind": "receipt",
            "messageId": str(row.message_id),
            "messageDigest": row.envelope_sha256,
            "from": peer.code,
            "to": self.own,
        }
        if not isinstance(receipt, dict) or any(receipt.get(k) != v for k, v in expected.items()):
            return None, "回执与所发消息不符"
        if receipt.get("status") not in (ACCEPTED, REJECTED):
            return None, "回执状态无法识别"
        return receipt, None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refusal_text(response: httpx.Response) -> str:
    try:
        message = response.json()["errors"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        message = ""
    return f"对端拒绝 (HTTP {response.status_code}) {str(message)[:200]}".strip()


def _parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
        event = raw["event"]
        if raw.get("v") != 1 or not isinstance(event, dict):
            raise ValueError("not an exchange envelope")
        parsed = {
            "message_id": uuid.UUID(str(raw["messageId"])),
            "from": str(raw["from"]),
            "to": str(raw["to"]),
            "kind": str(raw["kind"])[:32],
            "ref": None if raw.get("ref") is None else uuid.UUID(str(raw["ref"])),
            "id_number": str(raw["idNumber"]).strip().upper(),
            "event": event,
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ExchangeRefused(400, "BAD_MESSAGE", "消息格式错误") from None
    return parsed


__all__ = [
    "KEYS_PATH",
    "KEY_HEADER",
    "MAX_MESSAGE_BYTES",
    "PATH",
    "SIGNATURE_HEADER",
    "SIGNED_AT_HEADER",
    "ExchangeRefused",
    "Peer",
    "PeerExchange",
    "SignedReceipt",
    "canonical",
    "load_or_create_key",
    "load_peers",
    "signed_payload",
]
