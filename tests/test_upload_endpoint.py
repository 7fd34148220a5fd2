"""``POST /ingest/upload`` and ``GET /ingest/batches/<id>/report`` (issue 15), as the
departments' workbench calls them: a GBK roster with bad rows answers progress lines and the
summary, and leaves a report to download; the same file again changes nothing; another
department's feed, another county's rows, an oversize body, a form post, another site's page
and a missing token are refused; the report is its department's and jurisdiction's alone.

Every test runs on SQLite and on the throw-away PostgreSQL (``exchange_gateway``); the people
are synthetic (``tests.exchange_support.someone``).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import adapters.pipeline
from adapters.apply import ChunkApplier
from adapters.samples import write_jsonl, write_xlsx
from gateway.http import upload
from gateway.storage.models import IngestBatch
from tests.exchange_support import (
    COUNTY,
    NEIGHBOUR,
    Someone,
    audit_entries,
    county_token,
    exchange_gateway,  # noqa: F401 - fixture
    last_audit_id,
    person_id,
    row_counts,
    someone,
)
from tests.harness import Harness

HEADERS = ("姓名", "身份证号码", "行政区划代码", "人员类别", "认定日期")
REJECTION_KEYS = {"line", "column", "value", "reason"}
COUNT_KEYS = [
    "rowsTotal", "rowsAccepted", "rowsRejected", "rowsUnchanged", "added", "exited",
    "identityChanged", "updated", "unmatched", "anomaliesOpened",
]  # fmt: skip
BATCH_KEYS = {
    "id", "department", "feed", "channel", "fileName", "region", "status", "receivedAt",
    "finishedAt",
}  # fmt: skip


@pytest.fixture(name="gw", scope="module")
def gw_fixture(exchange_gateway: Harness) -> Harness:  # noqa: F811
    return exchange_gateway


# ---------------------------------------------------------------------------- files
def row(person: Someone, category: str = "低保对象", **changed: str) -> dict[str, str]:
    values = {
        "姓名": person.name,
        "身份证号码": person.id_number,
        "行政区划代码": person.region,
        "人员类别": category,
        "认定日期": "2026-03-01",
    }
    return {**values, **changed}


def roster(rows: list[dict[str, str]], *, encoding: str = "gbk") -> bytes:
    """A roster as Excel on a Chinese Windows desktop saves "CSV": GBK, CRLF."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADERS)
    for values in rows:
        writer.writerow([values.get(header, "") for header in HEADERS])
    return text.getvalue().encode(encoding)


# ---------------------------------------------------------------------------- requests
async def post(
    gw: Harness,
    token: str | None,
    body: bytes | AsyncIterator[bytes],
    *,
    feed: str = "identities",
    name: str = "低保名单202611.csv",
    dry_run: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/octet-stream", "X-Relief-Filename": quote(name)}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    params = {"feed": feed, "dryRun": "1" if dry_run else "0"}
    return await gw.client.post(upload.UPLOAD_PATH, params=params, content=body, headers=sent)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["cache-control"] == "no-store"
    return [json.loads(line) for line in response.text.splitlines()]


def result_of(response: httpx.Response) -> dict[str, Any]:
    *_, last = lines(response)
    assert last["type"] == "result", last
    return last


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The one error shape; returns the message (Chinese)."""
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == code
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    message: str = error["message"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message), message
    return message


async def report(gw: Harness, token: str | None, url: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await gw.client.get(url, headers=headers)


def uploads_left(gw: Harness) -> list[Path]:
    directory = gw.runtime.settings.data_dir / "uploads"
    return list(directory.iterdir()) if directory.exists() else []


# ---------------------------------------------------------------------------- a roster
async def test_a_gbk_roster_with_bad_rows_answers_progress_summary_and_report(
    gw: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters.pipeline, "CHUNK_ROWS", 2)  # a progress line every two rows
    people = [someone(n) for n in range(100, 104)]
    outsider = someone(104, NEIGHBOUR)
    rows = [
        row(people[0]),
        row(people[1], 姓名=""),  # line 3
        row(people[2]),
        row(outsider),  # line 5: another county's
        row(people[3], 身份证号码="37010219500101123"),  # line 6: 17 digits
        row(someone(105), 人员类别="五保户"),  # line 7
    ]
    clerk = county_token(gw, "civil_affairs", COUNTY, "ca-clerk-upload")

    response = await post(gw, clerk, roster(rows))

    events = lines(response)
    assert [e for e in events if e["type"] == "progress"] == [
        {"type": "progress", "rows": 2},
        {"type": "progress", "rows": 4},
        {"type": "progress", "rows": 6},
    ]
    result = events[-1]
    assert (result["type"], result["status"], result["duplicateOf"]) == (
        "result",
        "COMPLETED",
        None,
    )
    assert list(result["counts"]) == COUNT_KEYS
    assert result["counts"] | {} == {
        **dict.fromkeys(COUNT_KEYS, 0),
        "rowsTotal": 6, "rowsAccepted": 2, "rowsRejected": 4, "added": 2,
    }  # fmt: skip
    batch = result["batch"]
    assert set(batch) == BATCH_KEYS
    assert (batch["department"], batch["feed"], batch["channel"], batch["status"]) == (
        "civil_affairs",
        "identities",
        "FILE",
        "COMPLETED",
    )
    assert (batch["fileName"], batch["region"]) == ("低保名单202611.csv", COUNTY)
    assert batch["receivedAt"].endswith("+00:00")
    assert batch["finishedAt"] is not None
    assert (result["format"], result["encoding"]) == ("csv", "gb18030")
    rejections = result["rejections"]
    assert all(set(r) == REJECTION_KEYS for r in rejections)
    assert [(r["line"], r["column"]) for r in rejections] == [
        (3, "姓名"),
        (5, "行政区划代码"),
        (6, "身份证号码"),
        (7, "人员类别"),
    ]
    assert rejections[1]["reason"] == "行政区划代码不在本部门辖区内"
    assert result["reportUrl"] == f"/ingest/batches/{batch['id']}/report"

    # the batch records who sent it, as a push's does
    stored_batch = select(IngestBatch).where(IngestBatch.id == uuid.UUID(batch["id"]))
    async with gw.runtime.engine.connect() as connection:
        stored = (await connection.execute(stored_batch)).one()
    assert stored.submitted_by == "ca-clerk-upload"
    await person_id(gw, people[0].id_number)  # stored
    assert uploads_left(gw) == []  # the uploaded bytes do not outlive the import

    download = await report(gw, clerk, result["reportUrl"])

    assert download.status_code == 200, download.text
    assert download.headers["cache-control"] == "no-store"
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["content-disposition"] == (
        "attachment; filename*=utf-8''" + quote("低保名单202611.拒收报告.csv")
    )
    assert download.content.startswith(b"\xef\xbb\xbf")  # Excel shows the Chinese
    table = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert table[0] == ["行号", "列", "值", "原因"]
    assert table[1:] == [[str(r["line"]), r["column"], r["value"], r["reason"]] for r in rejections]


async def test_the_same_file_again_changes_nothing(gw: Harness) -> None:
    body = roster([row(someone(n)) for n in range(110, 113)])
    clerk = county_token(gw, "civil_affairs", COUNTY)
    first = result_of(await post(gw, clerk, body))
    assert first["counts"]["added"] == 3
    before = await row_counts(gw)

    again = result_of(await post(gw, clerk, body, name="另存为.csv"))

    assert (again["status"], again["duplicateOf"]) == ("DUPLICATE", first["batch"]["id"])
    assert again["batch"]["id"] == first["batch"]["id"]
    assert again["counts"] == dict.fromkeys(COUNT_KEYS, 0)
    assert again["reportUrl"] is None  # the first load rejected nothing
    assert await row_counts(gw) == before


@pytest.mark.parametrize("kind", ["xlsx", "jsonl"])
async def test_workbooks_and_json_lines_are_read_by_their_extension(
    gw: Harness, tmp_path: Path, kind: str
) -> None:
    n = 120 if kind == "xlsx" else 125
    rows = [row(someone(n)), row(someone(n + 1))]
    path = tmp_path / f"名单.{kind}"
    if kind == "xlsx":
        write_xlsx(path, HEADERS, rows, title="历下区低保对象名单")
    else:
        write_jsonl(path, rows)

    result = result_of(
        await post(gw, county_token(gw, "civil_affairs", COUNTY), path.read_bytes(), name=path.name)
    )

    assert (result["format"], result["counts"]["added"]) == (kind, 2)
    assert result["batch"]["fileName"] == f"名单.{kind}"


async def test_a_dry_run_stores_nothing(gw: Harness) -> None:
    before = await row_counts(gw)
    body = roster([row(someone(130)), row(someone(131), 姓名="")])

    result = result_of(
        await post(gw, county_token(gw, "civil_affairs", COUNTY), body, dry_run=True)
    )

    assert (result["status"], result["batch"], result["reportUrl"]) == ("DRY_RUN", None, None)
    assert (result["counts"]["added"], result["counts"]["rowsRejected"]) == (1, 1)
    assert len(result["rejections"]) == 1
    assert await row_counts(gw) == before


# ---------------------------------------------------------------------------- jurisdiction
async def test_another_countys_rows_are_rejected_row_by_row_and_load_there(gw: Harness) -> None:
    theirs = [row(someone(n, NEIGHBOUR)) for n in range(140, 143)]
    body = roster(theirs)

    ours = result_of(await post(gw, county_token(gw, "civil_affairs", COUNTY), body))

    assert ours["status"] == "COMPLETED"
    assert (ours["counts"]["rowsTotal"], ours["counts"]["rowsRejected"]) == (3, 3)
    assert {r["reason"] for r in ours["rejections"]} == {"行政区划代码不在本部门辖区内"}
    # it stored nothing, so the county the rows belong to loads the same file
    loaded = result_of(await post(gw, county_token(gw, "civil_affairs", NEIGHBOUR), body))
    assert (loaded["status"], loaded["counts"]["added"]) == ("COMPLETED", 3)
    assert loaded["batch"]["region"] == NEIGHBOUR


async def test_another_departments_feed_is_forbidden(gw: Harness) -> None:
    before = await row_counts(gw)
    insurer = county_token(gw, "medical_insurance", COUNTY)

    response = await post(gw, insurer, roster([row(someone(150))]), feed="identities")

    message = refused(response, 403, "FORBIDDEN")
    assert "其他部门" in message
    assert await row_counts(gw) == before
    unknown = await post(gw, insurer, roster([row(someone(150))]), feed="roster")
    assert "可导入: enrollments、settlements" in refused(unknown, 400, "BAD_USER_INPUT")


async def test_a_department_without_the_grant_is_forbidden(gw: Harness) -> None:
    response = await post(gw, county_token(gw, "big_data", COUNTY), roster([row(someone(151))]))

    assert "Ingest.submitRecords" in refused(response, 403, "FORBIDDEN")


# ---------------------------------------------------------------------------- the request
async def test_a_missing_or_bad_token_is_unauthenticated(gw: Harness) -> None:
    body = roster([row(someone(152))])
    refused(await post(gw, None, body), 401, "UNAUTHENTICATED")
    refused(await post(gw, "not-a-token", body), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain;charset=UTF-8"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://gateway.test.evil.example"},
        {"Origin": "null"},
    ],
)
async def test_a_form_post_or_another_sites_page_is_forbidden(
    gw: Harness, headers: dict[str, str]
) -> None:
    before = await row_counts(gw)
    clerk = county_token(gw, "civil_affairs", COUNTY)

    response = await post(gw, clerk, roster([row(someone(153))]), headers=headers)

    refused(response, 403, "FORBIDDEN")
    assert await row_counts(gw) == before


async def test_this_sites_own_page_may_upload(gw: Harness) -> None:
    clerk = county_token(gw, "civil_affairs", COUNTY)
    response = await post(
        gw, clerk, roster([row(someone(154))]), headers={"Origin": "http://gateway.test"}
    )
    assert result_of(response)["counts"]["added"] == 1


async def test_an_oversize_body_is_refused_as_soon_as_it_passes_the_limit(
    gw: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "MAX_UPLOAD_BYTES", 4096)
    clerk = county_token(gw, "civil_affairs", COUNTY)
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield roster([row(someone(155))])
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1024

    declared = await post(gw, clerk, b"x" * 5000)
    streamed = await post(gw, clerk, endless())

    assert "上限 0.00390625 MB" in refused(declared, 413, "BAD_USER_INPUT")
    refused(streamed, 413, "BAD_USER_INPUT")
    assert len(sent) < 10  # refused after the limit, not after the whole body
    assert uploads_left(gw) == []


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        (
            "照片.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
            "不是文本/CSV",
        ),
        ("名单.csv", "姓名,电话\n测试甲,1\n".encode(), "缺少必需列"),
        ("名单.pdf", b"%PDF-1.7", "不支持的文件类型"),
        ("空.csv", b"", "是空的"),
    ],
)
async def test_a_file_that_cannot_be_read_is_refused_before_any_answer(
    gw: Harness, name: str, content: bytes, says: str
) -> None:
    response = await post(gw, county_token(gw, "civil_affairs", COUNTY), content, name=name)

    assert says in refused(response, 400, "BAD_USER_INPUT")
    assert uploads_left(gw) == []


async def test_the_file_name_header_is_required_and_percent_encoded(gw: Harness) -> None:
    clerk = county_token(gw, "civil_affairs", COUNTY)
    body = roster([row(someone(156))])
    sent = {"Authorization": f"Bearer {clerk}", "Content-Type": "application/octet-stream"}
    missing = await gw.client.post(upload.UPLOAD_PATH, params={"feed": "identities"},
                                   content=body, headers=sent)  # fmt: skip
    assert "X-Relief-Filename" in refused(missing, 400, "BAD_USER_INPUT")

    path_like = result_of(await post(gw, clerk, body, name="C:\\fakepath\\..\\名单.csv"))
    assert path_like["batch"]["fileName"] == "名单.csv"


async def test_a_database_failure_after_the_answer_began_is_an_error_line(
    gw: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters.pipeline, "CHUNK_ROWS", 1)
    applied = ChunkApplier.apply
    calls: list[int] = []

    async def failing(self: ChunkApplier, chunk: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("INSERT INTO person VALUES (secret)", {}, OSError("gone"))
        return await applied(self, chunk)

    monkeypatch.setattr(ChunkApplier, "apply", failing)
    clerk = county_token(gw, "civil_affairs", COUNTY)

    events = lines(await post(gw, clerk, roster([row(someone(n)) for n in range(160, 163)])))

    assert events[0] == {"type": "progress", "rows": 1}
    error = events[-1]
    assert error["type"] == "error"
    assert error["error"]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "已提交的 1 行已保存" in error["error"]["message"]
    assert "INSERT" not in json.dumps(events)
    assert "Traceback" not in json.dumps(events)
    assert uploads_left(gw) == []


# ---------------------------------------------------------------------------- the report
async def test_the_report_is_its_departments_and_jurisdictions_alone(gw: Harness) -> None:
    clerk = county_token(gw, "civil_affairs", COUNTY)
    result = result_of(await post(gw, clerk, roster([row(someone(170), 姓名="")])))
    url = result["reportUrl"]
    assert url is not None

    city = gw.token("civil_affairs", "city", COUNTY[:4])
    assert (await report(gw, city, url)).status_code == 200  # its jurisdiction holds the county
    for other in (
        county_token(gw, "civil_affairs", NEIGHBOUR),  # another county
        county_token(gw, "medical_insurance", COUNTY),  # another department
        county_token(gw, "rural_revitalization", COUNTY),
    ):
        refused(await report(gw, other, url), 404, "NOT_FOUND")
    refused(await report(gw, None, url), 401, "UNAUTHENTICATED")
    refused(await report(gw, clerk, "/ingest/batches/not-a-batch/report"), 404, "NOT_FOUND")
    unknown = "/ingest/batches/00000000-0000-4000-8000-000000000000/report"
    refused(await report(gw, clerk, unknown), 404, "NOT_FOUND")


async def test_an_upload_and_a_report_download_are_in_the_audit_chain(gw: Harness) -> None:
    """Who sent which file, and who read a report of rejected rows (names and ID numbers as
    sent): each an entry of the hash-chained audit log, like every read."""
    after = await last_audit_id(gw)
    clerk = county_token(gw, "civil_affairs", COUNTY, "ca-clerk-audited")
    result = result_of(
        await post(gw, clerk, roster([row(someone(130)), row(someone(131), 姓名="")]))
    )

    download = await report(gw, clerk, result["reportUrl"])
    assert download.status_code == 200

    entries = [e for e in await audit_entries(gw, after) if e.subject == "ca-clerk-audited"]
    assert [(e.operation, json.loads(e.fields)) for e in entries] == [
        ("uploadFile", {"Ingest.submitRecords": "write"}),
        ("downloadRejectionReport", {"IngestBatch.rejectionReport": "read"}),
    ]
    assert all(e.department == "civil_affairs" and e.region == COUNTY for e in entries)
