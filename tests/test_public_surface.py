"""Public surfaces are decisions: changing them should fail a test first."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway.crypto
import schema
from tests import surface


def test_crypto_exports() -> None:
    # The cipher module is the only code that touches keys; this is all it offers (issue 16:
    # audit MACs, the cipher machine, the service-account signing key; issue 18: webhook
    # signatures, province keys and the exchange log's MACs).
    assert gateway.crypto.__all__ == [
        "AnyPeerKey",
        "AnyProvinceKey",
        "AuditKey",
        "AuditMac",
        "DataKey",
        "FieldCipher",
        "IndexKey",
        "InvalidWebhook",
        "Keyring",
        "KeyringProtection",
        "PeerKey",
        "PrivateKey",
        "ProvinceKey",
        "PublicKey",
        "SigningKey",
        "Sm2PeerKey",
        "Sm2ProvinceKey",
        "TokenProtector",
        "TokenSettings",
        "certificate_sha256",
        "check_log_mac",
        "destroy_kek",
        "generate_kek",
        "generate_province_key",
        "load_province_key",
        "log_mac",
        "open_keyring",
        "peer_key_from_entry",
        "protector_from_settings",
        "sign_webhook",
        "verify_webhook",
        "webhook_headers",
        "webhook_secret_key",
    ]


def test_schema_exports() -> None:
    assert schema.__all__ == ["build_schema"]


# ---------------------------------------------------------------- the published surface
# tests/surface/ holds the surface as departments, integrators and operators rely on it: the
# schema SDL, every `relief-gateway ... --help`, the HTTP routes and the RELIEF_* settings. A
# change to any of them is a decision: regenerate with `.venv/bin/python -m tests.surface` and
# say why in the commit.
SURFACE = Path(__file__).parent / "surface"


@pytest.mark.parametrize("name", surface.NAMES)
def test_public_surface_unchanged(name: str, tmp_path: Path) -> None:
    expected = (SURFACE / name).read_text(encoding="utf-8")
    actual = surface.render(name, tmp_path)
    assert actual == expected, (
        f"{name} differs from tests/surface/{name}: the public surface changed "
        "(regenerate with `.venv/bin/python -m tests.surface` if that is intended)"
    )
