"""Webhook signatures (issue 18 item 2): Standard Webhooks' HMAC-SHA-256 and our HMAC-SM3.

Vectors: the specification's published example (reproduced by every Standard Webhooks library:
a receiver's library must accept what we send) and an HMAC-SM3 value cross-checked against an
RFC 2104 HMAC built on gmssl's SM3 (docs/design/issue-18-brief.md §2; recomputed here when gmssl
is installed). The verifier refuses what a replaying or forging sender would try.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import InvalidWebhook, sign_webhook, verify_webhook, webhook_headers

# Standard Webhooks' test vector (spec and reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SM3_KEY = b"k" * 32
SM3_SIGNATURE = "k8rk/GzlCsZA1AUUPBBhTprzykmNNp5+nZcSokgyqv0="
NOW = 1_700_000_000


def test_sha256_reproduces_the_specifications_vector() -> None:
    signature = sign_webhook(
        SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, [SPEC_SECRET], algorithm="HMAC-SHA256"
    )
    assert signature == SPEC_SIGNATURE


def test_sha256_equals_the_standard_librarys_hmac() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, b"evt_9.123." + b'{"a":1}', hashlib.sha256).digest()
    header = sign_webhook("evt_9", 123, b'{"a":1}', [SPEC_SECRET], algorithm="HMAC-SHA256")
    assert header == "v1," + base64.b64encode(expected).decode()


def test_sm3_vector_cross_checked_with_gmssl() -> None:
    header = sign_webhook("evt_1", NOW, b"{}", [SM3_KEY], algorithm="HMAC-SM3")
    assert header == f"v1sm3,{SM3_SIGNATURE}"


def test_sm3_equals_an_rfc2104_hmac_on_gmssl_sm3() -> None:
    sm3 = pytest.importorskip("gmssl.sm3")
    func = pytest.importorskip("gmssl.func")

    def sm3_bytes(data: bytes) -> bytes:
        return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))

    key = SM3_KEY.ljust(64, b"\0")  # SM3's block is 64 bytes
    inner = sm3_bytes(bytes(b ^ 0x36 for b in key) + b"evt_1.1700000000.{}")
    outer = sm3_bytes(bytes(b ^ 0x5C for b in key) + inner)
    assert base64.b64encode(outer).decode() == SM3_SIGNATURE


def test_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    old, new = "whsec_" + base64.b64encode(b"o" * 32).decode(), SPEC_SECRET
    sent = webhook_headers("evt_2", NOW, b"{}", [new, old], algorithm="HMAC-SHA256")
    assert len(sent["webhook-signature"].split(" ")) == 2
    assert verify_webhook(b"{}", sent, new, now=NOW) == "evt_2"
    assert verify_webhook(b"{}", sent, old, now=NOW) == "evt_2"
    with pytest.raises(InvalidWebhook):
        verify_webhook(b"{}", sent, "whsec_" + base64.b64encode(b"x" * 32).decode(), now=NOW)


Headers = dict[str, str]


def _without_signature(h: Headers) -> Headers:
    return {k: v for k, v in h.items() if k != "webhook-signature"}


FORGERIES: dict[str, tuple[object, bytes]] = {
    "id altered (a different event)": ({"webhook-id": "evt_3"}, b""),
    "timestamp re-stamped without the key": ({"webhook-timestamp": str(NOW + 1)}, b""),
    "signature not base64": ({"webhook-signature": "v1,%%%"}, b""),
    "another scheme only": ({"webhook-signature": "v1a,AAAA"}, b""),
    "timestamp not a number": ({"webhook-timestamp": "1e9"}, b""),
    "body altered": ({}, b" "),
    "signature missing": (_without_signature, b""),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_forged_or_altered_delivery_is_refused(case: str) -> None:
    sent = webhook_headers("evt_2", NOW, b'{"x":1}', [SPEC_SECRET], algorithm="HMAC-SHA256")
    change, appended = FORGERIES[case]
    forged = change(sent) if callable(change) else {**sent, **change}  # type: ignore[dict-item]
    body = b'{"x":1}' + appended
    with pytest.raises(InvalidWebhook):
        verify_webhook(body, forged, SPEC_SECRET, now=NOW)


@pytest.mark.parametrize(
    ("skew", "accepted"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_replay_window_is_300_seconds(skew: int, accepted: bool) -> None:
    sent = webhook_headers("evt_4", NOW, b"{}", [SPEC_SECRET], algorithm="HMAC-SHA256")
    if accepted:
        assert verify_webhook(b"{}", sent, SPEC_SECRET, now=NOW + skew) == "evt_4"
    else:
        with pytest.raises(InvalidWebhook, match="防重放"):
            verify_webhook(b"{}", sent, SPEC_SECRET, now=NOW + skew)


def test_an_sm3_endpoint_gets_no_sha256_signature_and_vice_versa() -> None:
    sm3 = webhook_headers("evt_5", NOW, b"{}", [SM3_KEY], algorithm="HMAC-SM3")
    assert sm3["webhook-signature"].startswith("v1sm3,")
    assert verify_webhook(b"{}", sm3, SM3_KEY, algorithm="HMAC-SM3", now=NOW) == "evt_5"
    # A verifier expecting SHA-256 finds no v1 signature in an SM3 delivery, and the reverse.
    with pytest.raises(InvalidWebhook):
        verify_webhook(b"{}", sm3, SM3_KEY, algorithm="HMAC-SHA256", now=NOW)
    sha = webhook_headers("evt_5", NOW, b"{}", [SM3_KEY], algorithm="HMAC-SHA256")
    with pytest.raises(InvalidWebhook):
        verify_webhook(b"{}", sha, SM3_KEY, algorithm="HMAC-SM3", now=NOW)


def test_refusals_never_echo_the_secret() -> None:
    sent = webhook_headers("evt_6", NOW, b"{}", [SPEC_SECRET], algorithm="HMAC-SHA256")
    with pytest.raises(InvalidWebhook) as refused:
        verify_webhook(b"{}", sent, "whsec_" + base64.b64encode(b"y" * 32).decode(), now=NOW)
    assert SPEC_SECRET[6:] not in str(refused.value)
    assert sent["webhook-signature"][3:] not in str(refused.value)


def test_the_verifier_printed_in_the_integrators_guide_agrees() -> None:
    """docs/webhooks.md's 30-line verifier (what a department's integrator copies) accepts what
    the gateway signs, in both algorithms, and refuses an altered body."""
    guide = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", guide, re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)  # noqa: S102 - our own documentation's code
    verify = namespace["verify"]
    now = int(time.time())
    for algorithm in ("HMAC-SHA256", "HMAC-SM3"):
        sent = webhook_headers("evt_7", now, b'{"a":1}', [SPEC_SECRET], algorithm=algorithm)
        assert verify(b'{"a":1}', sent, SPEC_SECRET, algorithm) == "evt_7"
        with pytest.raises(ValueError, match="签名不符"):
            verify(b'{"a":2}', sent, SPEC_SECRET, algorithm)
        stale = webhook_headers("evt_7", now - 301, b"{}", [SPEC_SECRET], algorithm=algorithm)
        with pytest.raises(ValueError, match="防重放"):
            verify(b"{}", stale, SPEC_SECRET, algorithm)
