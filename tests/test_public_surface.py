"""Public surfaces are decisions: changing them should fail a test first."""

from __future__ import annotations

import gateway.crypto
import schema


def test_crypto_exports() -> None:
    # The cipher module is the only code that touches keys; this is all it offers.
    assert gateway.crypto.__all__ == ["DataKey", "FieldCipher", "IndexKey", "Keyring"]


def test_schema_exports() -> None:
    assert schema.__all__ == ["build_schema"]
