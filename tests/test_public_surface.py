"""Public surfaces are decisions: changing them should fail a test first."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway.crypto
import schema
from tests import surface


def test_crypto_exports() -> None:
    # The cipher module is the only code that touches keys; this is all it offers (issue 16:
    # audit MACs, the cipher machine, the service-account signing key).
    assert gateway.crypto.__all__ == [
        "AuditKey",
        "AuditMac",
        "DataKey",
        "FieldCipher",
        "IndexKey",
        "Keyring",
        "KeyringProtection",
        "PrivateKey",
        "PublicKey",
        "SigningKey",
        "TokenProtector",
        "TokenSettings",
        "certificate_sha256",
        "destroy_kek",
        "generate_kek",
        "open_keyring",
        "protector_from_settings",
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
