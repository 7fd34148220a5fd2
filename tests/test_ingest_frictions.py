"""Frictions a county clerk met with ``ingest`` (issue 15), each pinned at its boundary:

- a file refused whole (every row outside ``--region``) stored nothing, so it is no duplicate:
  the same file loads later with the right region; a file that stored rows still is one for
  its region and the regions within, and loads in another county it was sent to;
- a binary file renamed ``.csv`` (or ``.jsonl``) is said to be no text file, not "缺少必需列";
- ``ingest --json … | head -1`` ends quietly, no BrokenPipeError traceback;
- ``--json`` names its counts camelCase, like GraphQL's ``IngestCounts``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.pipeline import COUNT_FIELDS, IngestCounts, public_name
from adapters.readers import SourceFileError
from gateway.storage.models import IngestBatch, Person
from tests.ingest_support import (
    COUNTY,
    IDENTITY_HEADERS,
    NEIGHBOUR_COUNTY,
    OTHER_CITY_COUNTY,
    IngestDB,
    db_fixture,  # noqa: F401 - fixture
    identity_row,
    ingest_database_fixture,  # noqa: F401 - fixture
    someone,
)

A, B = someone(1), someone(2)  # both of COUNTY (济南市历下区)


# --------------------------------------------------------------------------- refused whole
async def test_a_file_refused_whole_loads_again_with_the_right_region(db: IngestDB) -> None:
    path = db.file([identity_row(A), identity_row(B)])

    wrong = await db.load_file("civil_affairs", "identities", path, scope=OTHER_CITY_COUNTY)
    assert (wrong.status, wrong.counts.rows_accepted, wrong.counts.rows_rejected) == (
        "COMPLETED",
        0,
        2,
    )
    right = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)

    assert (right.status, right.duplicate_of) == ("COMPLETED", None)
    assert (right.counts.rows_accepted, right.counts.added) == (2, 2)
    assert await db.count(Person) == 2
    assert await db.count(IngestBatch) == 2  # the refused run stays on record as it happened


async def test_a_file_that_stored_rows_is_still_a_duplicate(db: IngestDB) -> None:
    path = db.file([identity_row(A), identity_row(someone(3, OTHER_CITY_COUNTY))])
    first = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)
    assert (first.counts.rows_accepted, first.counts.rows_rejected) == (1, 1)

    again = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)

    assert (again.status, again.duplicate_of) == ("DUPLICATE", first.batch_id)
    assert await db.count(IngestBatch) == 1


async def test_a_file_sent_to_two_counties_loads_in_each(db: IngestDB) -> None:
    """Each county stores its own rows of one city-wide file; a county again, or a run without
    --region, is a duplicate of what was loaded for it."""
    ours, theirs = A, someone(4, NEIGHBOUR_COUNTY)
    path = db.file([identity_row(ours), identity_row(theirs)])
    first = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)
    assert (first.counts.added, first.counts.rows_rejected) == (1, 1)

    neighbour = await db.load_file("civil_affairs", "identities", path, scope=NEIGHBOUR_COUNTY)
    again = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)
    unscoped = await db.load_file("civil_affairs", "identities", path)

    assert (neighbour.status, neighbour.counts.added) == ("COMPLETED", 1)
    assert (again.status, again.duplicate_of) == ("DUPLICATE", first.batch_id)
    assert (unscoped.status, unscoped.duplicate_of) == ("DUPLICATE", first.batch_id)
    assert await db.person(theirs) is not None
    city = await db.load_file("civil_affairs", "identities", path, scope=COUNTY[:4])
    assert (city.status, city.counts.rows_unchanged) == ("COMPLETED", 2)  # nothing new
    in_city = await db.load_file("civil_affairs", "identities", path, scope=COUNTY)
    assert in_city.status == "DUPLICATE"


async def test_a_file_of_bad_rows_only_is_read_again(db: IngestDB) -> None:
    """Every row refused for a bad column leaves nothing stored either (not only --region)."""
    bad = [{**identity_row(A), "身份证号码": "123"}]
    path = db.file(bad, stem="坏文件")
    refused = await db.load_file("civil_affairs", "identities", path)
    assert refused.counts.rows_accepted == 0

    again = await db.load_file("civil_affairs", "identities", path)

    assert again.status == "COMPLETED"  # read again, refused again, row by row
    assert again.counts.rows_rejected == 1


# --------------------------------------------------------------------------- binary files
def _binary(size: int = 4096, *, with_nul: bool = True) -> bytes:
    data = random.Random(15).randbytes(size)
    return data if with_nul else data.replace(b"\x00", b"\x01")


@pytest.mark.parametrize(
    ("suffix", "content", "kind"),
    [
        (".csv", b"\x89PNG\r\n\x1a\n" + _binary(), "CSV"),  # a picture renamed
        (".csv", b"%PDF-1.7\n" + _binary(with_nul=False), "CSV"),  # no NUL, still no text
        (".txt", _binary(), "CSV"),
        (".jsonl", _binary(), "JSON Lines"),
    ],
)
async def test_a_binary_file_is_no_text_file(
    db: IngestDB, tmp_path: Path, suffix: str, content: bytes, kind: str
) -> None:
    path = tmp_path / f"名单{suffix}"
    path.write_bytes(content)

    with pytest.raises(SourceFileError) as refused:
        await db.load_file("civil_affairs", "identities", path)

    assert refused.value.message.startswith(f"文件“名单{suffix}”不是文本/{kind} 文件")
    assert "缺少必需列" not in refused.value.message
    assert await db.count(IngestBatch) == 0


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
async def test_text_files_are_still_read(db: IngestDB, encoding: str) -> None:
    """The boundary's other side: rosters in every supported encoding, with a damaged byte."""
    path = db.file([identity_row(A), identity_row(B)], encoding=encoding)
    path.write_bytes(path.read_bytes() + b"\xff\n")  # one stray byte at the end

    result = await db.load_file("civil_affairs", "identities", path)

    assert result.counts.added == 2


# --------------------------------------------------------------------------- the CLI
def _cli_environment(db: IngestDB, data_dir: Path) -> dict[str, str]:
    db.keyring.save(data_dir / "keyring.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        RELIEF_DATABASE_URL=db.url,
        RELIEF_DATA_DIR=str(data_dir),
        RELIEF_TODAY=os.environ.get("RELIEF_TODAY", "2026-11-23"),
    )
    return env


async def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a clerk's shell runs it (in a thread: the test's event
    loop keeps serving the database fixture meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("as_json", "reader"),
    [
        (True, "head -1"),
        # `true` reads nothing and is gone long before the summary: the pipe is surely closed
        # when it is written (head -1 may still be reading when a short output arrives).
        (True, "true"),
        (False, "true"),
    ],
)
async def test_output_cut_short_by_head_ends_quietly(
    db: IngestDB, tmp_path: Path, as_json: bool, reader: str
) -> None:
    rows = [identity_row(someone(n)) for n in range(1, 30)]
    path = db.file(rows, headers=IDENTITY_HEADERS)
    script = Path(sys.executable).with_name("relief-gateway")
    command = [str(script), "ingest", "--source", "civil_affairs", "--feed", "identities"]
    command += [str(path), "--report-dir", str(tmp_path / "reports")]
    if as_json:
        command.append("--json")
    shell = f"set -o pipefail; {shlex.join(command)} | {reader}"

    ran = await _run(["/bin/bash", "-c", shell], _cli_environment(db, tmp_path / "data"))

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    assert ran.stdout.count("\n") == (1 if reader == "head -1" else 0)
    assert await db.count(Person) == 29  # the file is loaded whatever became of the output


async def test_json_counts_are_camel_case(db: IngestDB, tmp_path: Path) -> None:
    path = db.file([identity_row(A), {**identity_row(B), "姓名": ""}])
    script = Path(sys.executable).with_name("relief-gateway")
    command = [str(script), "ingest", "--source", "civil_affairs", "--feed", "identities"]
    command += [str(path), "--json"]

    ran = await _run(command, _cli_environment(db, tmp_path / "data"))

    assert ran.returncode == 0, ran.stderr
    [result] = json.loads(ran.stdout)
    assert list(result["counts"]) == [
        "rowsTotal",
        "rowsAccepted",
        "rowsRejected",
        "rowsUnchanged",
        "added",
        "exited",
        "identityChanged",
        "updated",
        "unmatched",
        "anomaliesOpened",
    ]
    assert (result["counts"]["rowsAccepted"], result["counts"]["rowsRejected"]) == (1, 1)
    keys = set(result) - {"counts"}
    assert all("_" not in key for key in keys), keys


def test_public_count_names_match_graphql() -> None:
    """The same names as GraphQL's ``IngestCounts`` (tests/surface/schema.graphql)."""
    schema = Path(__file__).with_name("surface").joinpath("schema.graphql").read_text()
    block = schema.split("type IngestCounts", 1)[1].split("}", 1)[0]
    assert all(f"  {public_name(name)}:" in block for name in COUNT_FIELDS)
    assert IngestCounts(rows_total=3).as_public_dict()["rowsTotal"] == 3
