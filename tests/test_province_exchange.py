"""Province to province (issue 18 item 5): two gateways, two PostgreSQL databases, two
``serve`` processes on loopback exchanging signed messages and signed receipts.

Rules under test, each a test below:
- a push in Shandong (37) about a person tied to Anhui (34) reaches 34 as a signed message; 34
  applies it (an outbox event with origin 37, in the person's reliefChain) and answers with a
  signed receipt that 37 verifies and stores; each side can prove the other's signature;
- a person 34 does not hold: receipt REJECTED with the reason, logged on both sides, nothing
  applied;
- the receiver dies with the message in flight, the sender dies after the receiver committed:
  after the restart each message is once in each log and once in 34's outbox, and the receipt
  37 stores is byte for byte the one 34 stored;
- refusals (nothing stored, nothing applied): a forged signature, an unknown key, a message for
  another province, an old message replayed; a repeat inside the window gets the stored receipt;
- both message logs verify (hash chain, MACs) and a changed entry is found.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from gateway.crypto import AnyProvinceKey, ProvinceKey, Sm2ProvinceKey, peer_key_from_entry
from gateway.domain.clock import now_utc
from gateway.domain.errors import ConfigurationError
from gateway.runtime.peer_exchange import (
    KEY_HEADER,
    KEYS_PATH,
    PATH,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    canonical,
    load_peers,
    signed_payload,
)
from gateway.storage.deliveries import NewEndpoint, create_endpoint
from gateway.storage.models import ExchangeHead, ExchangeMessage, OutboxEvent, WebhookDelivery
from gateway.storage.outbox import EventKind
from gateway.storage.peers import verify_log
from tests.pgcluster import ThrowawayCluster
from tests.province_support import (
    Gateway,
    Pair,
    build_pair,
    eventually,
    outbound_for,
    push_task,
    receipt_of,
    tie_to_anhui,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHAIN = """
query Chain($id: String!) {
  reliefChain(idNumber: $id) { events { kind date summary department originProvince } }
}
"""


@pytest.fixture(scope="module")
async def pair(
    postgres_cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    built = await build_pair(postgres_cluster, tmp_path_factory.mktemp("provinces"))
    try:
        yield built
    finally:
        built.close()
        await built.shandong.harness.close()
        await built.anhui.harness.close()


async def delivered(shandong: Gateway, event_id: uuid.UUID) -> Any:
    async def done() -> Any:
        row = await outbound_for(shandong, event_id)
        return row if row is not None and row.status == "DONE" else None

    return await eventually(done)


def open_envelope(gateway: Gateway, row: Any) -> bytes:
    cipher = gateway.harness.runtime.vault.cipher
    sealed = cipher.open(
        row.envelope_ct, table="exchange_message", column="envelope", row_id=str(row.message_id)
    )
    return sealed.encode("utf-8")


# --------------------------------------------------------------------------- the exchange
async def test_a_push_reaches_the_other_province_with_a_signed_receipt(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    # A medical-insurance system of the county in 34 takes pushes by webhook.
    endpoint, _secret = await create_endpoint(
        anhui.harness.runtime.engine,
        anhui.harness.runtime.vault.cipher,
        NewEndpoint(
            name="瑶海区医保系统",
            department="medical_insurance",
            level="county",
            region="340102",
            url="http://127.0.0.1:9/hooks",
            algorithm="HMAC-SHA256",
            kinds=(EventKind.TASK_PUSHED,),
        ),
        created_by="test",
        production=False,
    )
    event_id = await push_task(shandong, pair.shared.person_id, department="medical_insurance")
    sent = await delivered(shandong, event_id)

    received = await anhui.log_rows("IN", sent.message_id)
    assert len(received) == 1
    entry = received[0]
    # The receipt 37 stored is the one 34 signed and stored, byte for byte; ACCEPTED, about
    # exactly the envelope 37 sent.
    assert bytes(sent.receipt) == bytes(entry.receipt)
    receipt = receipt_of(sent)
    envelope = open_envelope(shandong, sent)
    assert receipt["status"] == "ACCEPTED"
    assert receipt["messageDigest"] == hashlib.sha256(envelope).hexdigest() == sent.envelope_sha256
    assert (receipt["from"], receipt["to"], receipt["messageId"]) == (
        "34",
        "37",
        str(sent.message_id),
    )
    # Each side proves the other's signature with the other's public key: 37 the receipt,
    # 34 the message (the envelope as 34 logged it, sealed under 34's own keys).
    assert anhui.peer_key().verify("receipt", bytes(sent.receipt), sent.receipt_signature)
    assert sent.receipt_key_id == anhui.key.key_id
    assert open_envelope(anhui, entry) == envelope
    assert shandong.peer_key().verify(
        "message", signed_payload(entry.signed_at, envelope), entry.signature
    )
    assert entry.signer_key_id == shandong.key.key_id
    # The envelope carries the join key; at rest it is sealed, nowhere in clear.
    assert json.loads(envelope)["idNumber"] == pair.shared.id_number
    assert pair.shared.id_number.encode() not in bytes(entry.envelope_ct)
    # Applied once in 34: an outbox event of origin 37 for 34's own row of the person.
    events = await anhui.events_from("37", pair.anhui_person_id)
    assert [(e.kind, e.audience, e.county_code) for e in events] == [
        ("task.pushed", "medical_insurance", "340102")
    ]
    assert entry.event_id == events[0].id
    # ... and fanned out like a local event: the county's webhook has its delivery.
    deliveries = await anhui.rows(
        select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == events[0].id)
    )
    assert [row.endpoint_id for row in deliveries] == [endpoint.id]
    # The person's chain in 34 shows it, to a medical-insurance clerk of the county.
    token = anhui.harness.token("medical_insurance", "county", "340102")
    async with httpx.AsyncClient(base_url=anhui.url, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={"query": CHAIN, "variables": {"id": pair.shared.id_number}},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": "supervision"},
        )
    body = response.json()
    assert "errors" not in body, body
    from_37 = [e for e in body["data"]["reliefChain"]["events"] if e["originProvince"] == "37"]
    assert len(from_37) == 1
    assert from_37[0]["kind"] == "TASK_PUSHED"
    assert from_37[0]["department"] == "MEDICAL_INSURANCE"
    assert "山东省" in from_37[0]["summary"]
    # Both logs verify.
    for gateway in (shandong, anhui):
        async with gateway.harness.runtime.engine.connect() as connection:
            check = await verify_log(connection, gateway.harness.runtime.audit.macs)
        assert check.ok, check
        assert check.entries >= 1


async def test_a_person_the_other_province_does_not_hold_is_rejected_with_a_reason(
    pair: Pair,
) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    stranger = next(p for p in shandong.harness.persons if p.id_number != pair.shared.id_number)
    await tie_to_anhui(shandong, stranger.person_id)  # tied to 34, but 34 never heard of them
    event_id = await push_task(shandong, stranger.person_id, department="civil_affairs")
    sent = await delivered(shandong, event_id)

    receipt = receipt_of(sent)
    assert receipt["status"] == "REJECTED"
    assert receipt["reason"] == "本省没有该身份证号码的人员"
    assert sent.receipt_status == "REJECTED"
    assert anhui.peer_key().verify("receipt", bytes(sent.receipt), sent.receipt_signature)
    [entry] = await anhui.log_rows("IN", sent.message_id)  # logged, provable, not applied
    assert (entry.receipt_status, entry.person_id, entry.event_id) == ("REJECTED", None, None)
    assert bytes(entry.receipt) == bytes(sent.receipt)
    assert await count_events(anhui, sent.message_id) == 0


# --------------------------------------------------------------------------- restarts
async def lock_head(gateway: Gateway) -> Any:
    """Hold the log head's row lock from outside: whoever chains an entry waits."""
    connection = await gateway.harness.runtime.engine.connect()
    await connection.begin()
    await connection.execute(select(ExchangeHead.seq).where(ExchangeHead.id == 1).with_for_update())
    return connection


async def waiting_on_a_lock(gateway: Gateway) -> bool:
    waiting = await gateway.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )
    return bool(waiting)


async def count_events(gateway: Gateway, message_id: uuid.UUID) -> int:
    rows = await gateway.rows(
        select(OutboxEvent.id).where(OutboxEvent.dedupe_key == f"exchange:37:{message_id}")
    )
    return len(rows)


async def test_receiver_dies_with_the_message_in_flight(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    lock = await lock_head(anhui)
    try:
        event_id = await push_task(shandong, pair.shared.person_id, department="civil_affairs")
        # 34 has verified and applied the message and waits to chain it: it dies right there.
        await eventually(lambda: waiting_on_a_lock(anhui))
        anhui.kill()
    finally:
        await lock.rollback()
        await lock.close()
    pending = await eventually(lambda: failed_once(shandong, event_id))
    assert pending.status == "PENDING"
    assert pending.receipt is None
    # Meanwhile the same person's next event: it waits behind the first (order per peer).
    later_id = await push_task(shandong, pair.shared.person_id, department="medical_insurance")
    assert await anhui.log_rows("IN", pending.message_id) == []  # nothing committed in 34
    assert await count_events(anhui, pending.message_id) == 0

    anhui.start()
    await anhui.ready()
    sent = await delivered(shandong, event_id)
    assert sent.attempts >= 2
    assert len(await anhui.log_rows("IN", sent.message_id)) == 1
    assert await count_events(anhui, sent.message_id) == 1
    [entry] = await anhui.log_rows("IN", sent.message_id)
    assert bytes(entry.receipt) == bytes(sent.receipt)
    assert receipt_of(sent)["status"] == "ACCEPTED"
    later = await delivered(shandong, later_id)
    [later_entry] = await anhui.log_rows("IN", later.message_id)
    assert entry.seq < later_entry.seq  # received in the order they happened


async def failed_once(shandong: Gateway, event_id: uuid.UUID) -> Any:
    row = await outbound_for(shandong, event_id)
    return row if row is not None and row.attempts >= 1 and row.last_error else None


async def test_sender_dies_after_the_receiver_committed(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    lock = await lock_head(shandong)
    try:
        event_id = await push_task(
            shandong, pair.shared.person_id, department="rural_revitalization"
        )
        # 34 committed the message and its receipt; 37 waits to store the receipt and dies.
        queued = await eventually(lambda: outbound_for(shandong, event_id))
        await eventually(lambda: anhui.log_rows("IN", queued.message_id))
        await eventually(lambda: waiting_on_a_lock(shandong))
        shandong.kill()
    finally:
        await lock.rollback()
        await lock.close()
    unreceipted = await outbound_for(shandong, event_id)
    assert unreceipted.status == "PENDING"
    assert unreceipted.receipt is None
    [first] = await anhui.log_rows("IN", queued.message_id)

    shandong.start()
    await shandong.ready()
    sent = await delivered(shandong, event_id)
    # The same message again: 34 answered with the receipt it had stored, byte for byte, and
    # applied nothing twice.
    assert bytes(sent.receipt) == bytes(first.receipt)
    assert sent.receipt_signature == first.receipt_signature
    assert await anhui.log_rows("IN", sent.message_id) == [first]
    assert await count_events(anhui, sent.message_id) == 1
    assert len(await shandong.log_rows("OUT", sent.message_id)) == 1


# --------------------------------------------------------------------------- refusals
def envelope_for(pair: Pair, **changes: Any) -> bytes:
    message = {
        "v": 1,
        "messageId": str(uuid.uuid4()),
        "from": "37",
        "to": "34",
        "kind": "task.pushed",
        "ref": None,
        "idNumber": pair.shared.id_number,
        "createdAt": now_utc().isoformat(),
        "event": {"audience": "medical_insurance", "countyCode": "370102", "facts": {}},
    }
    message.update(changes)
    return canonical(message)


async def post(
    gateway: Gateway,
    envelope: bytes,
    key: AnyProvinceKey,
    *,
    signed_at: str | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    signed_at = signed_at or now_utc().isoformat()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        return await client.post(
            PATH,
            content=envelope if body is None else body,
            headers={
                KEY_HEADER: key.key_id,
                SIGNATURE_HEADER: key.sign("message", signed_payload(signed_at, envelope)),
                SIGNED_AT_HEADER: signed_at,
            },
        )


def refused(response: httpx.Response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["X-Relief-Exchange-Refusal"] == code
    [error] = response.json()["errors"]
    assert words in error["message"]
    assert "Traceback" not in response.text


async def test_forged_unknown_misaddressed_and_replayed_messages_are_refused(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    before = await anhui_state(anhui)
    genuine = envelope_for(pair)
    # A body changed after signing.
    forged = genuine.replace(b"medical_insurance", b"civil_affairs___")
    refused(await post(anhui, genuine, shandong.key, body=forged), 401, "BAD_SIGNATURE", "签名无效")
    # A key 34 was never given (calling itself 37's).
    stranger = ProvinceKey.from_pem(ProvinceKey.generate_pem(), province="37")
    refused(await post(anhui, genuine, stranger), 401, "UNKNOWN_KEY", "未知的签名密钥")
    # 37's own key, a message for Shanxi (14); one claiming to come from Shanxi.
    elsewhere = envelope_for(pair, to="14")
    refused(await post(anhui, elsewhere, shandong.key), 403, "WRONG_RECIPIENT", "不是本省")
    posing = envelope_for(pair, **{"from": "14"})
    refused(await post(anhui, posing, shandong.key), 403, "WRONG_SENDER", "发送省份")
    # A genuine message captured an hour ago and sent again now.
    an_hour_ago = (now_utc() - timedelta(hours=1)).isoformat()
    replayed = await post(anhui, genuine, shandong.key, signed_at=an_hour_ago)
    refused(replayed, 401, "STALE_MESSAGE", "重放")
    # 34 answered its own key's message as if from a peer: not a peer.
    refused(await post(anhui, genuine, anhui.key), 401, "UNKNOWN_KEY", "未知的签名密钥")
    assert await anhui_state(anhui) == before  # nothing stored, nothing applied

    # A message 34 has received, sent again inside the window: the stored receipt, nothing new.
    event_id = await push_task(shandong, pair.shared.person_id, department="medical_insurance")
    sent = await delivered(shandong, event_id)
    after_delivery = await anhui_state(anhui)
    again = await post(anhui, open_envelope(shandong, sent), shandong.key)
    assert again.status_code == 200
    assert again.content == bytes(sent.receipt)
    assert again.headers[SIGNATURE_HEADER] == sent.receipt_signature
    assert await anhui_state(anhui) == after_delivery


async def anhui_state(anhui: Gateway) -> tuple[int, int]:
    messages = await anhui.rows(select(ExchangeMessage.id))
    events = await anhui.rows(select(OutboxEvent.id).where(OutboxEvent.origin.is_not(None)))
    return len(messages), len(events)


# --------------------------------------------------------------------------- proof
async def test_both_logs_verify_and_a_changed_entry_is_found(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    event_id = await push_task(shandong, pair.shared.person_id, department="civil_affairs")
    sent = await delivered(shandong, event_id)
    for gateway in (shandong, anhui):
        macs = gateway.harness.runtime.audit.macs
        async with gateway.harness.runtime.engine.connect() as connection:
            check = await verify_log(connection, macs)
            assert check.ok, check
            # Every OUT entry's receipt verifies with the peer's key, every IN entry's message
            # with the sender's: what each side can prove of the other.
            other = anhui if gateway is shandong else shandong
            for row in await connection.execute(
                select(ExchangeMessage.__table__).where(ExchangeMessage.seq.is_not(None))
            ):
                if row.direction == "OUT":
                    assert other.peer_key().verify("receipt", row.receipt, row.receipt_signature)
                else:
                    envelope = open_envelope(gateway, row)
                    payload = signed_payload(row.signed_at, envelope)
                    assert other.peer_key().verify("message", payload, row.signature)
        # A receipt status changed in place is found at its entry (rolled back after).
        async with gateway.harness.runtime.engine.connect() as connection:
            await connection.execute(
                update(ExchangeMessage)
                .where(ExchangeMessage.message_id == sent.message_id)
                .values(receipt_status="REJECTED")
            )
            broken = await verify_log(connection, macs)
            await connection.rollback()
        assert not broken.ok
        assert broken.problem == "条目内容与其哈希不符 (被修改)"


# --------------------------------------------------------------------------- configuration
async def test_each_gateway_shows_its_public_key_for_the_peers_configuration(pair: Pair) -> None:
    for gateway in (pair.shandong, pair.anhui):
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            shown = (await client.get(KEYS_PATH)).json()
        assert shown["province"] == gateway.code
        [key] = shown["keys"]
        assert key["id"] == gateway.key.key_id
        assert key["alg"] == gateway.key.algorithm
        assert peer_key_from_entry(gateway.code, key).derived_key_id == key["id"]
        assert "PRIVATE" not in json.dumps(shown)


def peers_toml(code: str, key_id: str, pem: str, url: str = "https://peer.example/") -> str:
    return (
        f'[[peers]]\ncode = "{code}"\nurl = "{url}"\n'
        f'[[peers.keys]]\nid = "{key_id}"\npem = """{pem}"""\n'
    )


def test_a_broken_peers_file_stops_the_start(tmp_path: Path) -> None:
    key = ProvinceKey.from_pem(ProvinceKey.generate_pem(), province="34")
    other = ProvinceKey.from_pem(ProvinceKey.generate_pem(), province="34")
    path = tmp_path / "peers.toml"
    path.write_text(peers_toml("34", key.key_id, key.public_pem()), encoding="utf-8")
    assert list(load_peers(path, "37")) == ["34"]
    path.write_text(peers_toml("34", key.key_id, key.public_pem(), "http://x/"), encoding="utf-8")
    assert list(load_peers(path, "37")) == ["34"]  # development: loopback tests
    with pytest.raises(ConfigurationError):
        load_peers(path, "37", production=True)
    cases = {
        "密钥编号": peers_toml("34", other.key_id, key.public_pem()),  # id of another key
        "为本省": peers_toml("37", key.key_id, key.public_pem()),  # itself as a peer
        "https://": peers_toml("34", key.key_id, key.public_pem(), url="ftp://x/"),
        "或 SM2 公钥": peers_toml("34", key.key_id, "not a key"),
        "格式错误": "[[peers]\n",
    }
    for words, text_ in cases.items():
        path.write_text(text_, encoding="utf-8")
        with pytest.raises(ConfigurationError) as caught:
            load_peers(path, "37")
        assert words in caught.value.message, (words, caught.value.message)


async def test_a_signed_message_34_cannot_apply_is_receipted_rejected(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    messages, events = await anhui_state(anhui)
    cases = {
        "事件类型无法识别": envelope_for(pair, kind="task.deleted"),
        "受理部门无法识别": envelope_for(
            pair, event={"audience": "x" * 40, "countyCode": "370102", "facts": {}}
        ),
    }
    for reason, envelope in cases.items():
        response = await post(anhui, envelope, shandong.key)
        assert response.status_code == 200, response.text
        assert anhui.peer_key().verify(
            "receipt", response.content, response.headers[SIGNATURE_HEADER]
        )
        receipt = json.loads(response.content)
        assert (receipt["status"], receipt["reason"]) == ("REJECTED", reason)
    assert await anhui_state(anhui) == (messages + 2, events)  # logged, nothing applied


async def test_the_same_message_arriving_five_times_at_once_is_applied_once(pair: Pair) -> None:
    shandong, anhui = pair.shandong, pair.anhui
    envelope = envelope_for(pair)
    message_id = uuid.UUID(json.loads(envelope)["messageId"])
    responses = await asyncio.gather(*(post(anhui, envelope, shandong.key) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # one receipt, byte for byte
    assert len(await anhui.log_rows("IN", message_id)) == 1
    assert await count_events(anhui, message_id) == 1


# --------------------------------------------------------------------------- SM2 (国密)
def signing_input(domain: str, payload: bytes) -> bytes:
    """The bytes a province key signs (the protocol, written out independently)."""
    return f"relief-gateway exchange/1 {domain}\n".encode() + payload


def gmssl_key() -> tuple[Any, str, str]:
    """A gmssl signer (an implementation independent of the gateway's pysmx) and its keys."""
    from gmssl import sm2  # type: ignore[import-untyped]

    order = int(sm2.default_ecc_table["n"], 16)
    while True:
        private = f"{secrets.randbelow(order - 1) + 1:064x}"
        public = sm2.CryptSM2(private_key=private, public_key="")._kg(
            int(private, 16), sm2.default_ecc_table["g"]
        )
        if public[0] not in "04":  # gmssl's lstrip("04") would eat leading digits
            return sm2.CryptSM2(private_key=private, public_key=public), private, public


def test_sm2_province_signatures_agree_with_gmssl_both_ways() -> None:
    from gmssl import sm2

    payload = b'{"v":1,"kind":"receipt"}'
    # gmssl signs what the gateway verifies.
    signer, _private, public = gmssl_key()
    order = int(sm2.default_ecc_table["n"], 16)
    signature = None
    while signature is None:
        nonce = f"{secrets.randbelow(order - 1) + 1:064x}"
        signature = signer.sign_with_sm3(signing_input("receipt", payload), nonce)
    entry: dict[str, Any] = {
        "id": "",
        "alg": "SM2",
        "jwk": {
            "kty": "EC",
            "crv": "SM2",
            "x": b64url(bytes.fromhex(public[:64])),
            "y": b64url(bytes.fromhex(public[64:])),
        },
    }
    peer = peer_key_from_entry("34", entry)
    encoded = b64url(bytes.fromhex(signature))
    assert peer.verify("receipt", payload, encoded)
    assert not peer.verify("message", payload, encoded)  # another domain
    assert not peer.verify("receipt", payload + b" ", encoded)
    # The gateway signs what gmssl verifies.
    while True:
        key = Sm2ProvinceKey.from_text(Sm2ProvinceKey.generate_text(), province="34")
        if key.point.hex()[0] not in "04":
            break
    ours = base64.urlsafe_b64decode(key.sign("message", payload) + "==")
    checker = sm2.CryptSM2(private_key="", public_key=key.point.hex())
    assert checker.verify_with_sm3(ours.hex(), signing_input("message", payload))
    assert not checker.verify_with_sm3(ours.hex(), signing_input("receipt", payload))
    # A point off the curve is no key; an out-of-range r or s no signature.
    off = dict(entry, jwk=dict(entry["jwk"], y=b64url(bytes(31) + b"\x01")))
    with pytest.raises(ValueError, match="curve"):
        peer_key_from_entry("34", off)
    assert not peer.verify("receipt", payload, b64url(bytes(64)))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
