"""Throw-away SoftHSM2 tokens: the cipher machine of the tests (Debian's ``softhsm2``, installed
by scripts/test like postgresql and chromium).

Each token lives in its own directory with its own ``softhsm2.conf``; a process sees the tokens
of the configuration named by ``SOFTHSM2_CONF`` when it first loads the module, so the test
process uses one token for the whole session (:func:`session_token`) and "another machine" is
a subprocess with another ``SOFTHSM2_CONF``. The key-encryption key is generated through the
gateway's own binding (``gateway.crypto.generate_kek``: non-extractable, in the token).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.crypto import TokenSettings, generate_kek

# Debian's paths (multiarch first), then an explicit override.
MODULE_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/softhsm/libsofthsm2.so",
)


def find_module() -> Path | None:
    override = os.environ.get("RELIEF_TEST_SOFTHSM_MODULE")
    for candidate in (override, *MODULE_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def require_softhsm() -> Path:
    """The SoftHSM2 module, or a skip with the reason when this machine has none and cannot
    install it. CI installs it (scripts/test), so there a missing module is a failure."""
    module = find_module()
    if module is not None and shutil.which("softhsm2-util"):
        return module
    reason = "SoftHSM2 (Debian softhsm2) is not installed: scripts/test installs it with apt-get"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class SoftToken:
    """One initialised token: its directory, configuration, labels and PINs."""

    directory: Path
    module: Path
    label: str
    pin: str
    so_pin: str

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    def settings(self, kek_label: str, *, mechanism: str = "AES-GCM") -> TokenSettings:
        return TokenSettings(
            module=self.module,
            token_label=self.label,
            kek_label=kek_label,
            mechanism=mechanism,
            pin=self.pin,
            pin_source="test",
        )

    def env(self, kek_label: str, *, mechanism: str = "AES-GCM") -> dict[str, str]:
        """The variables a gateway process needs to use this token (PIN from the environment;
        tests that want a PIN file set RELIEF_PKCS11_PIN_FILE instead)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "RELIEF_PKCS11_MODULE": str(self.module),
            "RELIEF_PKCS11_TOKEN_LABEL": self.label,
            "RELIEF_PKCS11_KEY_LABEL": kek_label,
            "RELIEF_PKCS11_PIN": self.pin,
            "RELIEF_PKCS11_MECHANISM": mechanism,
        }

    def generate_kek(self, kek_label: str) -> str:
        """Generate a KEK in this token, from the current process (whose SOFTHSM2_CONF must be
        this token's: see :func:`session_token`)."""
        return generate_kek(self.settings(kek_label))


def make_token(directory: Path, module: Path, *, label: str, pin: str) -> SoftToken:
    """Create a token directory and configuration and initialise a token in it."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, mode=0o700)
    token = SoftToken(directory, module, label, pin, so_pin=secrets.token_hex(8))
    token.conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            token.so_pin,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(token.conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return token


def generate_kek_elsewhere(token: SoftToken, kek_label: str) -> None:
    """Generate a KEK in a token that is not the test process's (another machine's), in a
    subprocess through the same binding (the PIN passed in the environment, not argv)."""
    code = (
        "import os, sys; from pathlib import Path\n"
        "from gateway.crypto import TokenSettings, generate_kek\n"
        "generate_kek(TokenSettings(Path(sys.argv[1]), sys.argv[2], sys.argv[3], 'AES-GCM',"
        " os.environ['TEST_TOKEN_PIN'], 'test'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(token.module), token.label, kek_label],
        env={**os.environ, "SOFTHSM2_CONF": str(token.conf), "TEST_TOKEN_PIN": token.pin},
        check=True,
        capture_output=True,
        timeout=60,
    )
