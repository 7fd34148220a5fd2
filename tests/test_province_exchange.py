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

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from gateway.crypto import PeerKey, ProvinceKey
from gateway.domain.clock import now_utc
from gateway.runtime.peer_exchange import (
    KEY_HEADER,
    PATH,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    canonical,
    signed_payload,
)
from gateway.storage.models import ExchangeMessage, OutboxEvent
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
