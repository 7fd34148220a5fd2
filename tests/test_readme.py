"""README.md is the front door: its map of rooms and every link in it and in docs/ stay true.

- The rooms table (README "Rooms") has a row for every package a newcomer can open, and each
  row names a path that exists.
- Every relative link in README.md and docs/*.md reaches an existing file, and its ``#anchor``
  (if any) a heading of that file, slugged as GitHub does.
- README.md stays a front door (a few KB) and links every doc.

A failure names the room or the link to fix.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# A front door, not a manual: reference text belongs in docs/.
README_MAX_BYTES = 12_000
ROOMS_HEADING = "Rooms"
TOP_LEVEL_PACKAGES = ("gateway", "schema", "authz", "adapters")

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Line:
    number: int
    text: str


def prose(text: str) -> list[Line]:
    """The lines outside fenced code blocks, numbered from 1 as an editor shows them."""
    lines: list[Line] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        elif fence is None:
            lines.append(Line(number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.

    ``运维 / Operations`` → ``运维--operations``; ``Configuration (`RELIEF_*`)`` →
    ``configuration-relief_`` (``\\w`` keeps CJK characters and underscores).
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get ``-1``, ``-2``…"""
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")):
        match = HEADING.match(line.text)
        if match:
            base = slug(match.group(2))
            found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def links(path: Path) -> list[tuple[Line, str]]:
    """Each link target in the prose of a Markdown file (code spans and blocks left out)."""
    found: list[tuple[Line, str]] = []
    for line in prose(path.read_text(encoding="utf-8")):
        # a code span inside link text ([`gateway/`](gateway/)) still leaves a link behind
        for match in LINK.finditer(CODE_SPAN.sub("code", line.text)):
            found.append((line, match.group(1)))
    return found


def rooms() -> list[tuple[Line, str]]:
    """The rooms table of README.md: (line, path in the row's first cell) per row."""
    lines = prose(README.read_text(encoding="utf-8"))
    starts = [
        i
        for i, line in enumerate(lines)
        if (match := HEADING.match(line.text)) and match.group(2) == ROOMS_HEADING
    ]
    assert starts, f'README.md has no "## {ROOMS_HEADING}" heading above the map of rooms'
    rows: list[tuple[Line, str]] = []
    in_table = False
    for line in lines[starts[0] + 1 :]:
        if HEADING.match(line.text):
            break
        if not line.text.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        first_cell = line.text.strip("|").split("|", 1)[0]
        path = re.search(r"`([^`]+)`", first_cell)
        if path:  # the header row and the |---| separator name no path
            rows.append((line, path.group(1)))
    assert rows, f'README.md "{ROOMS_HEADING}": no table with a `path` in its first column'
    return rows


def package_rooms() -> set[str]:
    """The rooms the map must show: top-level packages and every package inside ``gateway/``."""
    wings = {
        f"gateway/{child.name}"
        for child in (ROOT / "gateway").iterdir()
        if (child / "__init__.py").is_file()
    }
    return wings | set(TOP_LEVEL_PACKAGES)


MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]


def test_every_room_in_the_map_exists() -> None:
    missing = [
        f"README.md:{line.number}: room `{path}` does not exist"
        for line, path in rooms()
        if not (ROOT / path).exists()
    ]
    assert not missing, "\n".join(missing)


def test_every_package_has_a_room() -> None:
    listed = {path.rstrip("/") for _, path in rooms()}
    missing = sorted(package_rooms() - listed)
    assert not missing, "\n".join(
        f'README.md "{ROOMS_HEADING}" has no row for `{room}/` (a package): '
        "add what lives there and what it may import"
        for room in missing
    )


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(markdown: Path) -> None:
    name = markdown.relative_to(ROOT)
    broken: list[str] = []
    for line, target in links(markdown):
        if URL_SCHEME.match(target):
            continue  # http(s), mailto: not ours to check offline
        path_part, _, anchor = target.partition("#")
        destination = (markdown.parent / unquote(path_part)).resolve() if path_part else markdown
        if not destination.exists():
            broken.append(f"{name}:{line.number}: link ({target}) points to a missing file")
        elif anchor and destination.suffix == ".md" and unquote(anchor) not in anchors(destination):
            broken.append(f"{name}:{line.number}: link ({target}): no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_readme_links_every_doc() -> None:
    linked = {
        (README.parent / unquote(target.partition("#")[0])).resolve()
        for _, target in links(README)
        if not URL_SCHEME.match(target)
    }
    unlinked = [
        str(doc.relative_to(ROOT)) for doc in sorted(DOCS.glob("*.md")) if doc not in linked
    ]
    assert not unlinked, f"README.md links none of: {', '.join(unlinked)}"


def test_readme_stays_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, (
        f"README.md is {size:,} bytes (limit {README_MAX_BYTES:,}): "
        "move reference text into docs/ and link it"
    )


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Two commands", "two-commands"),
        ("运维 / Operations", "运维--operations"),
        ("Configuration (`RELIEF_*`)", "configuration-relief_"),
        (
            "Default data-sharing lists (`authz/default_policy.csv`)",
            "default-data-sharing-lists-authzdefault_policycsv",
        ),
    ],
)
def test_anchors_are_slugged_as_github_does(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
