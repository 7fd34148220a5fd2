"""Re-vendor the oversight dashboard's third-party scripts from the npm registry.

    .venv/bin/python scripts/vendor_dashboard.py

The dashboard (``/dashboard``) must work on a provincial network without internet, so the
browser builds it needs are checked in under ``gateway/http/static/dashboard/vendor/``,
byte-identical to the npm releases pinned below. This script ``npm pack``s each pinned release,
checks the tarball against the registry's recorded integrity, copies the one file the page
loads, writes ``LICENSES.md`` (versions, SHA-384 hashes, licence texts) and puts the hashes
into ``index.html``'s ``integrity`` attributes, which the browser checks on every load.
Bump a version here, run the script, run ``tests/test_dashboard.py`` and the browser test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "gateway" / "http" / "static" / "dashboard"
VENDOR = DASHBOARD / "vendor"


@dataclass(frozen=True)
class Release:
    package: str
    version: str
    file: str  # path inside the package tarball ("" = licence only: bundled into another file)
    licence_files: tuple[str, ...]
    note: str


RELEASES = (
    Release(
        "echarts",
        "6.1.0",
        "dist/echarts.common.min.js",  # bar/line/pie + markLine, no geoJSON parser (no eval)
        ("LICENSE", "NOTICE"),
        "Apache ECharts, the charts (common build: bar, line, pie and the usual components)",
    ),
    Release(
        "write-excel-file",
        "4.1.1",
        "bundle/write-excel-file.min.js",
        ("LICENSE",),
        "XLSX export in the browser (UMD bundle, global writeXlsxFile)",
    ),
    Release(
        "fflate",
        "0.8.2",
        "",
        ("LICENSE",),
        "ZIP compression, bundled inside write-excel-file.min.js",
    ),
)


def sha384(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def npm() -> str:
    path = shutil.which("npm")
    if path is None:
        sys.exit("npm is needed (apt-get install npm)")
    return path


def pack(release: Release, workdir: Path) -> tarfile.TarFile:
    spec = f"{release.package}@{release.version}"
    # Fixed argument lists, no shell; the specs are the constants above.
    out = subprocess.run(  # noqa: S603
        [npm(), "pack", spec, "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(out.stdout)[0]
    expected = subprocess.run(  # noqa: S603
        [npm(), "view", spec, "dist.integrity"], check=True, capture_output=True, text=True
    ).stdout.strip()
    tarball = workdir / info["filename"]
    algorithm, _, digest = expected.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if actual != digest:
        sys.exit(f"{spec}: tarball does not match the registry's integrity {expected}")
    return tarfile.open(tarball)


def member(archive: tarfile.TarFile, path: str) -> bytes:
    extracted = archive.extractfile(f"package/{path}")
    if extracted is None:
        sys.exit(f"{path} missing from the tarball")
    return extracted.read()


def main() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    licences: list[str] = []
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for release in RELEASES:
            with pack(release, Path(tmp)) as archive:
                if release.file:
                    data = member(archive, release.file)
                    name = Path(release.file).name
                    (VENDOR / name).write_bytes(data)
                    hashes[name] = sha384(data)
                    rows.append(
                        f"| vendor/{name} | {release.package}@{release.version} "
                        f"`{release.file}` | `{hashes[name]}` | {release.note} |"
                    )
                else:
                    rows.append(
                        f"| (inside another file) | {release.package}@{release.version} | — "
                        f"| {release.note} |"
                    )
                for licence in release.licence_files:
                    text = member(archive, licence).decode("utf-8").strip()
                    licences.append(
                        f"## {release.package}-{release.version} {licence}\n\n```\n{text}\n```\n"
                    )
    header = (
        "# Vendored dashboard assets\n\n"
        "Byte-identical files from the npm releases below, served by the gateway under\n"
        "`/dashboard/vendor/` so the dashboard works on networks without internet access. The\n"
        "page loads each with `<script src integrity>`: the browser refuses a file whose SHA-384\n"
        "differs from the hash recorded here and in `index.html`. Regenerate with\n"
        "`python scripts/vendor_dashboard.py`. Licences: Apache-2.0 (ECharts), MIT (the rest).\n\n"
        "| file | npm release | SHA-384 | what |\n|---|---|---|---|\n"
    )
    (DASHBOARD / "LICENSES.md").write_text(
        header + "\n".join(rows) + "\n\n" + "\n".join(licences), encoding="utf-8"
    )
    index = DASHBOARD / "index.html"
    html = index.read_text(encoding="utf-8")
    for name, digest in hashes.items():
        html = re.sub(
            rf'(src="/dashboard/vendor/{re.escape(name)}"\s+integrity=")[^"]*(")',
            rf"\g<1>{digest}\g<2>",
            html,
        )
    index.write_text(html, encoding="utf-8")
    for name, digest in hashes.items():
        print(f"{name}: {digest}")


if __name__ == "__main__":
    main()
