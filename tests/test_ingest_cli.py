"""``relief-gateway ingest`` as a county clerk runs it: the summary in Chinese, ``--json`` for
scripts, ``--dry-run`` that stores nothing, the rejection report next to the file, and one clear
line with exit code 2 (never a traceback) when the command or the file cannot be used.

The command runs in-process (``gateway.cli.main``, in a thread, since it runs its own event
loop) against this module's database, with the test's keyring in the data directory so the
stored rows can be decrypted and checked.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

from adapters.apply import ChunkApplier
from gateway.cli import main
from gateway.storage.models import IngestBatch, Person, ReliefStatus
from tests.ingest_support import (
    COUNTY,
    IDENTITY_HEADERS,
    NEIGHBOUR_COUNTY,
    OTHER_CITY_COUNTY,
    IngestDB,
    db_fixture,  # noqa: F401 - fixture
    enrollment_row,
    identity_row,
    ingest_database_fixture,  # noqa: F401 - fixture
    read_report,
    someone,
)

A, B, C = someone(1), someone(2), someone(3)
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = json.loads(self.out)
        return parsed


@dataclass
class Cli:
    db: IngestDB
    data_dir: Path
    capsys: pytest.CaptureFixture[str]

    async def __call__(self, *args: str | Path) -> Ran:
        argv = ["ingest", *map(str, args), "--data-dir", str(self.data_dir)]
        try:
            code = await asyncio.to_thread(main, argv)
        except SystemExit as exited:  # argparse refused an argument (as the script exits)
            code = int(exited.code or 0)
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err
        return Ran(code, captured.out, captured.err)


@pytest.fixture
def cli(
    db: IngestDB,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    data_dir = tmp_path / "data"
    db.keyring.save(data_dir / "keyring.json")  # the command seals with the test's keys
    monkeypatch.setenv("RELIEF_DATABASE_URL", db.url)
    for name in ("RELIEF_MAPPINGS_DIR", "RELIEF_ENV", "RELIEF_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return Cli(db, data_dir, capsys)


def _roster(db: IngestDB, *, bad: bool = True, stem: str = "民政名单") -> Path:
    rows = [identity_row(A), identity_row(B, "低保边缘家庭成员", "2024-01-01")]
    if bad:
        rows.append({**identity_row(C), "姓名": ""})
    return db.file(rows, headers=IDENTITY_HEADERS, stem=stem)


# --------------------------------------------------------------------------- the summary


async def test_summary_in_chinese_with_the_counts(cli: Cli, db: IngestDB) -> None:
    path = _roster(db)

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path)

    assert ran.code == 0, ran.err
    [batch] = await db.batches()
    lines = ran.out.splitlines()
    assert lines[0] == f"{path.name} (CSV, utf-8 编码) → 批次 {batch.id}"
    assert lines[1] == "  总行数 3, 接收 2, 拒收 1, 无变化 0"
    assert lines[2] == "  新增 2, 退出 0, 身份变更 0, 信息更新 0, 未匹配 0, 新开异常 0"
    report = path.with_name("民政名单.拒收报告.csv")
    assert f"  拒收明细: {report}" in lines
    assert "    第 4 行 姓名 '': 姓名不能为空" in lines
    assert read_report(report) == [("行号", "列", "值", "原因"), ("4", "姓名", "", "姓名不能为空")]
    assert (batch.status, batch.rows_total, batch.added, batch.submitted_by) == (
        "COMPLETED",
        3,
        2,
        f"cli:{batch.submitted_by.removeprefix('cli:')}",
    )
    assert await db.count(Person) == 2


async def test_json_output_parses_and_has_the_counts(cli: Cli, db: IngestDB) -> None:
    path = _roster(db)

    ran = await cli(
        "--source", "civil_affairs", "--feed", "identities", path, "--json",
        "--submitted-by", "county-clerk-1",
    )  # fmt: skip

    assert ran.code == 0, ran.err
    [result] = ran.json()
    [batch] = await db.batches()
    assert result["status"] == "COMPLETED"
    assert uuid.UUID(result["batchId"]) == batch.id
    assert (result["department"], result["feed"], result["format"]) == (
        "civil_affairs",
        "identities",
        "csv",
    )
    assert result["counts"] == {
        "rowsTotal": 3,
        "rowsAccepted": 2,
        "rowsRejected": 1,
        "rowsUnchanged": 0,
        "added": 2,
        "exited": 0,
        "identityChanged": 0,
        "updated": 0,
        "unmatched": 0,
        "anomaliesOpened": 0,
    }
    assert result["rejections"] == [
        {"line": 4, "column": "姓名", "value": "", "reason": "姓名不能为空"}
    ]
    assert result["rejectionReport"] == str(path.with_name("民政名单.拒收报告.csv"))
    assert read_report(Path(result["rejectionReport"]))[1] == ("4", "姓名", "", "姓名不能为空")
    assert result["region"] == COUNTY
    assert batch.submitted_by == "county-clerk-1"


async def test_dry_run_stores_nothing_yet_reports_what_would_change(cli: Cli, db: IngestDB) -> None:
    path = _roster(db, bad=False)
    before = await db.counts()

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path, "--dry-run")

    assert ran.code == 0, ran.err
    assert "校验 (未写入)" in ran.out
    assert "  新增 2, 退出 0, 身份变更 0, 信息更新 0, 未匹配 0, 新开异常 0" in ran.out
    assert await db.counts() == before  # not a person, not a batch

    dry = await cli(
        "--source", "civil_affairs", "--feed", "identities", path, "--dry-run", "--json"
    )
    [result] = dry.json()
    assert (result["status"], result["batchId"], result["counts"]["added"]) == ("DRY_RUN", None, 2)

    # a dry run is no reason to treat the real load as a duplicate
    real = await cli("--source", "civil_affairs", "--feed", "identities", path, "--json")
    [loaded] = real.json()
    assert (loaded["status"], loaded["counts"]["added"]) == ("COMPLETED", 2)
    assert await db.count(Person) == 2


async def test_dry_run_sees_earlier_rows_of_the_same_file(cli: Cli, db: IngestDB) -> None:
    """The dry run classifies like the real load, row after row (身份变更 within one file)."""
    rows = [
        identity_row(A, "低保边缘家庭成员", "2024-01-01"),
        identity_row(A, "低保对象", "2026-05-01"),
    ]
    path = db.file(rows)
    ran = await cli(
        "--source", "civil_affairs", "--feed", "identities", path, "--dry-run", "--json"
    )
    [result] = ran.json()
    assert (result["counts"]["added"], result["counts"]["identityChanged"]) == (1, 1)
    assert await db.count(ReliefStatus) == 0


async def test_no_report_file_is_left_when_nothing_is_rejected(cli: Cli, db: IngestDB) -> None:
    path = _roster(db, bad=False)

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path)

    assert ran.code == 0, ran.err
    assert "拒收明细" not in ran.out
    assert not path.with_name(f"{path.stem}.拒收报告.csv").exists()
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".csv") == [path.name]


async def test_report_dir_holds_the_rejection_report(cli: Cli, db: IngestDB) -> None:
    path = _roster(db)
    reports = db.tmp / "reports"

    ran = await cli(
        "--source", "civil_affairs", "--feed", "identities", path, "--report-dir", reports
    )

    report = reports / "民政名单.拒收报告.csv"
    assert f"拒收明细: {report}" in ran.out
    assert read_report(report)[1] == ("4", "姓名", "", "姓名不能为空")
    assert not path.with_name("民政名单.拒收报告.csv").exists()


async def test_same_file_again_is_recognised(cli: Cli, db: IngestDB) -> None:
    path = _roster(db, bad=False)
    await cli("--source", "civil_affairs", "--feed", "identities", path)
    [batch] = await db.batches()

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path)

    assert ran.code == 0
    assert ran.out.strip() == f"{path.name}: 与已导入的批次 {batch.id} 内容相同, 本次未做任何更改"
    assert await db.count(IngestBatch) == 1


async def test_several_files_in_one_command(cli: Cli, db: IngestDB) -> None:
    first = db.file([identity_row(A)], stem="一月")
    second = db.file([identity_row(A, exited="2026-10-31"), enrollment_row(B)], stem="二月")

    ran = await cli("--source", "civil_affairs", "--feed", "identities", first, second, "--json")

    assert ran.code == 0, ran.err
    results = ran.json()
    assert [r["file"] for r in results] == ["一月.csv", "二月.csv"]
    assert [r["counts"]["added"] for r in results] == [1, 0]
    assert [r["counts"]["exited"] for r in results] == [0, 1]
    assert results[1]["counts"]["rowsRejected"] == 1  # an enrollment row is no roster row
    assert results[1]["ignoredColumns"] == [
        "参保年度", "险种类型", "参保状态", "参保地行政区划代码", "资助类别", "资助金额"
    ]  # fmt: skip


async def test_region_limits_the_rows_a_submitter_may_send(cli: Cli, db: IngestDB) -> None:
    outsider = someone(7, OTHER_CITY_COUNTY)
    path = db.file(
        [identity_row(A), identity_row(outsider), identity_row(someone(8, NEIGHBOUR_COUNTY))]
    )

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path, "--region", "3701",
                    "--json")  # fmt: skip

    [result] = ran.json()
    assert (result["counts"]["rowsAccepted"], result["counts"]["rowsRejected"]) == (2, 1)
    assert result["rejections"][0]["reason"] == "行政区划代码不在本部门辖区内"
    assert result["region"] == "3701"
    assert await db.person(outsider) is None


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "police", "--feed", "identities"],
         "错误: 未知部门 'police'; 可用: medical_insurance、civil_affairs、rural_revitalization、"
         "health、public_security、disabled_federation、human_resources、big_data"),
        (["--source", "civil_affairs", "--feed", "roster"],
         "错误: 民政没有数据类别 'roster'; 可用: identities"),
        (["--source", "medical_insurance", "--feed", "identities"],
         "错误: 医保没有数据类别 'identities'; 可用: enrollments、settlements"),
        (["--source", "human_resources", "--feed", "pensions"],
         "错误: 人社没有数据类别 'pensions'; 可用: 无"),
        (["--source", "civil_affairs", "--feed", "identities", "--region", "37010"],
         "relief-gateway ingest: 错误: 参数 --region: 行政区划代码应为 2 位 (省)、4 位 (市) 或 6 位"
         " (县) 数字, 收到 '37010'"),
    ],
    ids=["unknown-source", "unknown-feed", "feed-of-another-department", "no-feeds", "bad-region"],
)  # fmt: skip
async def test_unusable_command_exits_2_naming_what_is_available(
    cli: Cli, db: IngestDB, args: list[str], message: str
) -> None:
    path = _roster(db)
    before = await db.counts()

    ran = await cli(*args, path)

    assert ran.code == 2
    # the last line says why (argparse's refusals come after the usage)
    assert ran.err.strip().splitlines()[-1] == _with_department_names(message)
    assert ran.out == ""
    assert await db.counts() == before


def _with_department_names(message: str) -> str:
    """The message with the department names the gateway uses (gateway.domain.departments)."""
    from gateway.domain.departments import DEPARTMENT_NAMES_ZH, Department

    for short, department in (
        ("民政", Department.CIVIL_AFFAIRS),
        ("医保", Department.MEDICAL_INSURANCE),
        ("人社", Department.HUMAN_RESOURCES),
    ):
        if message.startswith(f"错误: {short}没有"):
            return message.replace(short, DEPARTMENT_NAMES_ZH[department], 1)
    return message


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda db: db.file([{k: v for k, v in identity_row(A).items() if k != "身份证号码"}]),
         "错误: 缺少必需列：身份证号码"),
        (lambda db: db.tmp / "不存在.csv", "错误: 找不到文件"),
        (lambda db: _written(db.tmp / "名单.xls", b"\xd0\xcf\x11\xe0" + b"\0" * 64),
         "错误: 不支持 .xls 格式，请在 Excel 中另存为 .xlsx 或 CSV 后再导入"),
        (lambda db: _written(db.tmp / "空.csv", b""), "错误: 文件“空.csv”是空的"),
    ],
    ids=["missing-column", "missing-file", "old-excel", "empty-file"],
)  # fmt: skip
async def test_unusable_file_exits_2_with_a_chinese_message(
    cli: Cli, db: IngestDB, write: Any, message: str
) -> None:
    path = write(db)

    ran = await cli("--source", "civil_affairs", "--feed", "identities", path)

    assert ran.code == 2
    assert ran.err.startswith(message), ran.err
    assert CHINESE.search(ran.err)
    assert await db.count(Person) == 0
    assert await db.count(IngestBatch) == 0


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


async def test_database_failure_mid_file_exits_2_and_says_what_was_kept(
    cli: Cli, db: IngestDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _roster(db, bad=False)

    async def fail(self: ChunkApplier) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT …", {}, Exception("connection lost"))

    monkeypatch.setattr(ChunkApplier, "_flush", fail)
    ran = await cli("--source", "civil_affairs", "--feed", "identities", path)

    assert ran.code == 2
    assert ran.err.startswith("错误: 导入中断（数据库错误 OperationalError）"), ran.err
    assert "INSERT" not in ran.err  # no SQL in what the clerk reads
    [batch] = await db.batches()
    assert batch.status == "FAILED"
    assert await db.count(Person) == 0
