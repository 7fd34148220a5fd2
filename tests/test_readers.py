"""Department files → SourceRow: formats, encodings, headers, line numbers, bounded memory.

Every fixture file is written here, in ``tmp_path``, the way the departments' tools write them:
openpyxl for workbooks (merged title rows, two-level headers, styled blank rows), raw bytes for
CSV in each encoding Excel and other systems produce.
"""

from __future__ import annotations

import codecs
import os
import tracemalloc
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from openpyxl.styles import Border, Side

from adapters.readers import (
    SAMPLE_BYTES,
    ColumnSpec,
    SourceFileError,
    SourceReader,
    SourceRow,
    normalize_header,
    open_source,
    read_records,
)

COLUMNS = (
    ColumnSpec("id_number", ("身份证号码", "公民身份号码", "身份证号", "id_number"), required=True),
    ColumnSpec("name", ("姓名", "name"), required=True),
    ColumnSpec("region_code", ("行政区划代码", "区划代码", "region_code")),
    ColumnSpec("category", ("人员类别", "category")),
    ColumnSpec("recognized_on", ("认定日期", "recognized_on")),
    ColumnSpec("address", ("家庭住址", "address")),
    ColumnSpec("total_cost", ("医疗总费用", "total_cost")),
    ColumnSpec("basic_paid", ("基本医保支付", "basic_paid")),
    ColumnSpec("personal_burden", ("个人负担", "personal_burden")),
)
FIELDS = [spec.field for spec in COLUMNS]
ID1, ID2, ID3 = "370102199001011234", "370102198502023456", "37010219700303789X"
XLS_REFUSED = "不支持 .xls 格式，请在 Excel 中另存为 .xlsx 或 CSV 后再导入"


def read(path: Path) -> tuple[SourceReader, list[SourceRow]]:
    with open_source(path, COLUMNS) as reader:
        rows = list(reader)
    return reader, rows


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def picked(rows: list[SourceRow], *fields: str) -> list[tuple[object, ...]]:
    return [(row.line, *(row.values[f] for f in fields)) for row in rows]


# --- header normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("身份证\n号码", "身份证号码"),  # Excel wraps long headers inside the cell
        ("身份证\r\n号码", "身份证号码"),
        (" 姓\u3000名 ", "姓名"),
        ("*姓名", "姓名"),
        ("＊姓名", "姓名"),
        ("姓名*", "姓名"),
        ("医疗总费用（元）", "医疗总费用"),
        ("医疗总费用(元)", "医疗总费用"),
        ("身份证号码(必填)*", "身份证号码"),
        ("*个人负担（元）（必填）", "个人负担"),
        ("ID_Number", "id_number"),
        ("ＩＤ＿Ｎｕｍｂｅｒ", "id_number"),
        ("\ufeff姓名", "姓名"),
        ("(元)", "(元)"),  # nothing left to be the header: kept
        ("Ä", "Ä"),  # only ASCII is lower-cased
    ],
)
def test_normalize_header(header: str, expected: str) -> None:
    assert normalize_header(header) == expected


def test_column_specs_with_a_shared_alias_are_a_programming_error() -> None:
    columns = [ColumnSpec("a", ("姓名",)), ColumnSpec("b", ("姓名(全称)",))]
    with pytest.raises(ValueError, match="alias"):
        read_records([], columns)


# --- CSV: encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "names", "detected"),
    [
        ("utf-8", ["张三", "刘䶮", "𠀀明"], "utf-8"),
        ("utf-8-sig", ["张三", "刘䶮", "𠀀明"], "utf-8-sig"),  # Excel "CSV UTF-8"
        ("gbk", ["张三", "欧阳娜娜", "李四"], "gb18030"),  # Excel "CSV" on Chinese Windows
        ("gb18030", ["张三", "刘䶮", "𠀀明"], "gb18030"),  # 䶮 and 𠀀 are not in GBK
    ],
)
def test_csv_encoding_is_detected(
    tmp_path: Path, encoding: str, names: list[str], detected: str
) -> None:
    lines = ["姓名,身份证号码,人员类别"] + [
        f"{n},{i},低保对象" for n, i in zip(names, (ID1, ID2, ID3), strict=True)
    ]
    path = write(tmp_path, "名单.csv", ("\n".join(lines) + "\n").encode(encoding))
    reader, rows = read(path)
    assert reader.format == "csv"
    assert reader.encoding == detected
    assert picked(rows, "name", "id_number", "category") == [
        (2, names[0], ID1, "低保对象"),
        (3, names[1], ID2, "低保对象"),
        (4, names[2], ID3, "低保对象"),
    ]
    assert all(row.error is None for row in rows)


def test_utf8_character_cut_by_the_sample_boundary_is_still_utf8(tmp_path: Path) -> None:
    header = "姓名,身份证号码\n".encode()
    row = f"欧阳娜娜,{ID1}\n".encode()
    body = header + row * (SAMPLE_BYTES // len(row) + 10)
    # Pad the header until byte SAMPLE_BYTES falls inside a three-byte character.
    pad = next(n for n in range(3) if (body[SAMPLE_BYTES - n] & 0xC0) == 0x80)
    content = header.replace(b"\n", b"," + b"x" * pad + b"\n") + body[len(header) :]
    assert (content[SAMPLE_BYTES] & 0xC0) == 0x80
    with open_source(write(tmp_path, "big.csv", content), COLUMNS) as reader:
        assert reader.encoding == "utf-8"
        first = next(reader)
    assert first.values["name"] == "欧阳娜娜"


def test_a_stray_byte_in_utf8_marks_its_row_and_the_others_are_read(tmp_path: Path) -> None:
    content = (
        "姓名,身份证号码,家庭住址\n".encode()
        + f"张三,{ID1},济南市历下区\n".encode()
        + b"\xe6\x9d\x8e\xff,"
        + ID2.encode()
        + "，济南市\n".encode()  # 李 + a stray byte
        + f"王五,{ID3},济南市市中区\n".encode()
    )
    reader, rows = read(write(tmp_path, "名单.csv", content))
    assert reader.encoding == "utf-8"
    assert [(row.line, row.error) for row in rows] == [
        (2, None),
        (3, "含无法识别的字符（文件编码不一致）"),
        (4, None),
    ]
    assert rows[2].values["name"] == "王五"


def test_utf16_text_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path, "名单.txt", "姓名\t身份证号码\r\n".encode("utf-16"))
    with pytest.raises(SourceFileError, match="UTF-16"):
        open_source(path, COLUMNS)


# --- CSV: layout ----------------------------------------------------------------------------


def test_tab_separated_gbk_text_with_crlf(tmp_path: Path) -> None:
    # Excel's "文本文件(制表符分隔)" on Chinese Windows.
    content = f"姓名\t身份证号码\t家庭住址\r\n张三\t{ID1}\t济南市, 历下区\r\n".encode("gbk")
    reader, rows = read(write(tmp_path, "名单.txt", content))
    assert (reader.encoding, reader.header_line) == ("gb18030", 1)
    assert picked(rows, "name", "id_number", "address") == [(2, "张三", ID1, "济南市, 历下区")]


def test_line_numbers_are_physical_lines_where_records_start(tmp_path: Path) -> None:
    content = (
        "姓名,身份证号码,家庭住址\r\n"  # 1
        f'张三,{ID1},"济南市\r\n历下区"\r\n'  # 2-3: a line break inside a quoted cell
        f"李四,{ID2},\r\n"  # 4
        "\r\n"  # 5: blank
        ",,\r\n"  # 6: what Excel leaves after the last row
        " , ,\t\r\n"  # 7: only whitespace
        f'王五,{ID3},"说 ""在家"""\r\n'  # 8
    )
    _, rows = read(write(tmp_path, "名单.csv", content.encode()))
    assert picked(rows, "name", "address") == [
        (2, "张三", "济南市\r\n历下区"),
        (4, "李四", None),
        (8, "王五", '说 "在家"'),
    ]
    assert rows[0].values == {**dict.fromkeys(FIELDS), "name": "张三", "id_number": ID1,
                              "address": "济南市\r\n历下区"}  # fmt: skip


def test_csv_values_are_not_stripped(tmp_path: Path) -> None:
    content = f"姓名,身份证号码,人员类别\n 张三 ,{ID1}, \n"
    _, rows = read(write(tmp_path, "名单.csv", content.encode()))
    assert rows[0].values["name"] == " 张三 "
    assert rows[0].values["category"] is None


def test_title_row_above_the_csv_header_is_skipped(tmp_path: Path) -> None:
    content = f"2026年11月低保对象花名册,,\n姓名,身份证号码,序号\n张三,{ID1},1\n"
    reader, rows = read(write(tmp_path, "名单.csv", content.encode()))
    assert reader.header_line == 2
    assert picked(rows, "name") == [(3, "张三")]


def test_headers_match_aliases_english_names_and_decorated_text(tmp_path: Path) -> None:
    content = f'"身份证\n号码",*姓名,医疗总费用（元）,region_code,序号\n{ID1},张三,12.50,370102,1\n'
    reader, rows = read(write(tmp_path, "名单.csv", content.encode()))
    assert reader.columns == {
        "id_number": "身份证\n号码",
        "name": "*姓名",
        "total_cost": "医疗总费用（元）",
        "region_code": "region_code",
    }
    assert reader.ignored_headers == ("序号",)
    assert reader.header_line == 1  # where the header record starts
    assert picked(rows, "id_number", "total_cost", "region_code") == [(3, ID1, "12.50", "370102")]


def test_cells_past_the_last_header_are_a_row_error(tmp_path: Path) -> None:
    content = f"姓名,身份证号码\n张三,{ID1},济南市,历下区\n李四,{ID2},,,\n"
    _, rows = read(write(tmp_path, "名单.csv", content.encode()))
    assert [(row.line, row.error) for row in rows] == [(2, "列数多于表头"), (3, None)]


def test_an_unclosed_quote_stops_the_file_with_its_line(tmp_path: Path) -> None:
    # Past the header search, so the reader is open when the runaway quoted cell hits csv's
    # field size limit.
    good = f"张三,{ID1}\n" * 30
    content = f'姓名,身份证号码\n{good}李四,"{ID2}\n' + "王五,1\n" * 30_000
    with (
        open_source(write(tmp_path, "名单.csv", content.encode()), COLUMNS) as reader,
        pytest.raises(SourceFileError, match="第32行起格式错误"),
    ):
        list(reader)


# --- header errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("姓名,联系电话", "缺少必需列：身份证号码"),
        ("序号,联系电话", "缺少必需列：身份证号码、姓名"),
    ],
)
def test_missing_required_columns_are_named(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path, "名单.csv", f"{header}\n1,2\n".encode())
    with pytest.raises(SourceFileError) as caught:
        open_source(path, COLUMNS)
    assert caught.value.message == message
    assert caught.value.code == "BAD_USER_INPUT"


def test_two_columns_for_one_field_are_refused_naming_both(tmp_path: Path) -> None:
    path = write(tmp_path, "名单.csv", f"姓名,身份证号码,公民身份号码\n张三,{ID1},{ID1}\n".encode())
    with pytest.raises(SourceFileError) as caught:
        open_source(path, COLUMNS)
    assert "“身份证号码”" in caught.value.message
    assert "“公民身份号码”" in caught.value.message


# --- whole-file errors ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.xls", "a.xlsx"])
def test_binary_xls_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048))
    with pytest.raises(SourceFileError) as caught:
        open_source(path, COLUMNS)
    assert caught.value.message == XLS_REFUSED


def test_password_protected_workbook_is_named_as_such(tmp_path: Path) -> None:
    content = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512) + "EncryptionInfo".encode("utf-16-le")
    )
    with pytest.raises(SourceFileError, match="设置了打开密码"):
        open_source(write(tmp_path, "a.xlsx", content), COLUMNS)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("名单.csv", b"", "文件“名单.csv”是空的"),
        ("名单.csv", codecs.BOM_UTF8 + b"\r\n", "文件“名单.csv”是空的"),
        ("名单.xlsx", b"", "文件“名单.xlsx”是空的"),
        ("名单.jsonl", b"\n\n", "文件“名单.jsonl”是空的"),
        ("名单.xls", b"<html><table><tr><td>", XLS_REFUSED),  # what some systems call .xls
        ("名单.pdf", b"%PDF", "不支持的文件类型“.pdf”：请导入 .xlsx、.csv 或 .jsonl 文件"),
        ("名单.xlsx", b"name,id\n", "文件“名单.xlsx”不是有效的 Excel 工作簿（.xlsx），可能已损坏"),
        ("名单.csv", b"PK\x03\x04rest", "文件“名单.csv”的内容是 Excel 工作簿"),
        ("名单.json", b'[{"name": 1}]', "文件“名单.json”是一个 JSON 数组"),
        ("名单.jsonl", '{"姓名": "张三"}\n'.encode("gbk"), "文件“名单.jsonl”不是 UTF-8 编码"),
        ("名单.csv", b",,,\n\n", "文件“名单.csv”中没有内容"),
    ],
)
def test_whole_file_problems_are_explained(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    with pytest.raises(SourceFileError) as caught:
        open_source(write(tmp_path, name, content), COLUMNS)
    assert caught.value.message.startswith(message)
    assert str(tmp_path) not in caught.value.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match=r"^找不到文件“不存在\.csv”$"):
        open_source(tmp_path / "不存在.csv", COLUMNS)
    (tmp_path / "目录.csv").mkdir()
    with pytest.raises(SourceFileError, match="是文件夹"):
        open_source(tmp_path / "目录.csv", COLUMNS)


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "名单.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    with pytest.raises(SourceFileError, match="无法作为 Excel 工作簿打开"):
        open_source(path, COLUMNS)


def test_zip_bomb_is_refused_before_openpyxl_inflates_it(tmp_path: Path) -> None:
    path = tmp_path / "名单.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"<row/>" * 3_000_000)
    with pytest.raises(SourceFileError, match="解压后异常庞大"):
        open_source(path, COLUMNS)


# --- XLSX -----------------------------------------------------------------------------------


def government_workbook(path: Path, blank_rows: int = 5000) -> None:
    """A roster as county systems export it: an instructions sheet first, then a title row,
    a two-level merged header, and thousands of styled but empty rows at the end."""
    workbook = Workbook()
    notes = workbook.active
    assert notes is not None
    notes.title = "填表说明"
    notes.append(["请按模板填写，姓名须与身份证一致"])
    notes.append(["带*的列为必填"])
    sheet = workbook.create_sheet("花名册")
    sheet.append(["2026年11月低保对象花名册"])
    sheet.merge_cells("A1:H1")
    sheet.append(["序号", "姓名", "身份证\n号码", "认定日期", "医疗费用（元）", None, None, "备注"])
    sheet.append([None, None, None, None, "医疗总费用", "基本医保支付", "个人负担（元）", None])
    for column in "ABCDH":
        sheet.merge_cells(f"{column}2:{column}3")
    sheet.merge_cells("E2:G2")
    sheet.append([1, " 张三 ", ID1, datetime(2026, 3, 1), 1234.5, 1000, 234.5, None])
    sheet.append([2, "李四", 3.70102198502023e17, date(2026, 3, 2), 0, 0, 0, "   "])
    sheet.append([None] * 8)
    sheet.append([3, "王五", 3.70102197003037e17, "2026-03-03", "  ", None, 10, "补录"])
    border = Border(bottom=Side(style="thin"))
    for row in range(8, 8 + blank_rows):
        sheet.cell(row=row, column=1).border = border
        sheet.cell(row=row, column=8).border = border
    workbook.save(path)


def test_government_workbook_title_two_level_header_and_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "花名册.xlsx"
    government_workbook(path)
    reader, rows = read(path)
    assert (reader.format, reader.encoding, reader.header_line) == ("xlsx", None, 3)
    assert reader.columns == {
        "name": "姓名",
        "id_number": "身份证\n号码",
        "recognized_on": "认定日期",
        "total_cost": "医疗总费用",
        "basic_paid": "基本医保支付",
        "personal_burden": "个人负担（元）",
    }
    assert reader.ignored_headers == ("序号", "备注")
    fields = ("name", "id_number", "recognized_on", "total_cost", "basic_paid", "personal_burden")
    assert picked(rows, *fields) == [
        (4, " 张三 ", ID1, datetime(2026, 3, 1), 1234.5, 1000, 234.5),
        (5, "李四", 3.70102198502023e17, datetime(2026, 3, 2), 0, 0, 0),
        (7, "王五", 3.70102197003037e17, "2026-03-03", None, None, 10),
    ]
    # Types are openpyxl's: an ID Excel stored as a number (its last digits already lost)
    # stays a number, for the value parser to refuse with instructions.
    assert type(rows[1].values["id_number"]) is float
    assert type(rows[0].values["basic_paid"]) is int
    assert all(row.error is None for row in rows)


def test_single_header_row_with_no_title(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "id_number", "category"])
    sheet.append(["张三", ID1, "特困人员"])
    workbook.save(tmp_path / "a.xlsx")
    reader, rows = read(tmp_path / "a.xlsx")
    assert reader.header_line == 1
    assert picked(rows, "name", "category") == [(2, "张三", "特困人员")]


def test_workbook_named_xls_but_really_xlsx_is_read(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["姓名", "身份证号码"])
    sheet.append(["张三", ID1])
    workbook.save(tmp_path / "a.xls")
    reader, rows = read(tmp_path / "a.xls")
    assert reader.format == "xlsx"
    assert picked(rows, "name") == [(2, "张三")]


def test_workbook_without_header_names_the_missing_columns(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["2026年11月低保对象花名册"])
    sheet.append(["名字", "证件"])
    workbook.save(tmp_path / "a.xlsx")
    with pytest.raises(SourceFileError, match=r"^缺少必需列：身份证号码、姓名$"):
        open_source(tmp_path / "a.xlsx", COLUMNS)


def test_empty_workbook(tmp_path: Path) -> None:
    Workbook().save(tmp_path / "a.xlsx")
    with pytest.raises(SourceFileError, match="没有内容"):
        open_source(tmp_path / "a.xlsx", COLUMNS)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors via /proc")
def test_closing_releases_the_workbook_file(tmp_path: Path) -> None:
    path = tmp_path / "花名册.xlsx"
    government_workbook(path, blank_rows=10)
    before = len(os.listdir("/proc/self/fd"))
    with open_source(path, COLUMNS) as reader:
        next(reader)
        assert len(os.listdir("/proc/self/fd")) > before
    assert len(os.listdir("/proc/self/fd")) == before
    reader.close()  # a second close is harmless
    assert list(reader) == []


# --- JSON Lines and pushes ------------------------------------------------------------------


def test_jsonl_rows_errors_and_ignored_keys(tmp_path: Path) -> None:
    content = (
        codecs.BOM_UTF8
        + f'{{"姓名": "张三", "身份证号码": "{ID1}", "备注": "x"}}\n'.encode()  # 1
        + b"\n"  # 2: blank
        + b'{"name": "broken\n'  # 3
        + b"[1, 2]\n"  # 4
        + f'{{"name": "李四", "id_number": {ID2}, "extra": 1, "category": " "}}\r\n'.encode()  # 5
        + b'{"name": "\xe7\x8e\x8b\xff", "id_number": "x"}'  # 6: no final newline
    )
    with open_source(write(tmp_path, "推送.jsonl", content), COLUMNS) as reader:
        rows = list(reader)
    assert (reader.format, reader.encoding, reader.header_line) == ("jsonl", None, None)
    assert [(row.line, row.error) for row in rows] == [
        (1, None),
        (3, "第3行不是有效的 JSON 对象"),
        (4, "第4行不是有效的 JSON 对象"),
        (5, None),
        (6, "含无法识别的字符（JSON Lines 文件应为 UTF-8 编码）"),
    ]
    assert rows[0].values == {**dict.fromkeys(FIELDS), "name": "张三", "id_number": ID1}
    assert rows[1].values == {}
    assert picked(rows[3:4], "name", "id_number", "category") == [(5, "李四", int(ID2), None)]
    assert reader.columns == {"name": "姓名", "id_number": "身份证号码", "category": "category"}
    assert reader.ignored_headers == ("备注", "extra")


def test_an_overlong_jsonl_line_is_skipped_and_reading_goes_on(tmp_path: Path) -> None:
    content = (
        f'{{"姓名": "张三", "身份证号码": "{ID1}"}}\n'
        + '{"姓名": "'
        + "长" * 400_000
        + '"}\n'
        + f'{{"姓名": "李四", "身份证号码": "{ID2}"}}\n'
    ).encode()
    _, rows = read(write(tmp_path, "推送.jsonl", content))
    assert [(row.line, row.error) for row in rows] == [
        (1, None),
        (2, "第2行过长，已跳过"),
        (3, None),
    ]
    assert rows[2].values["name"] == "李四"


def test_two_keys_for_one_field_must_agree(tmp_path: Path) -> None:
    records = [
        {"姓名": "张三", "name": "张三", "身份证号码": ID1},
        {"姓名": "张三", "name": "李四", "身份证号码": ID1},
        {"姓名": "", "name": "王五", "身份证号码": ID1},
    ]
    rows = list(read_records(records, COLUMNS))
    assert [(row.values["name"], row.error) for row in rows] == [
        ("张三", None),
        ("张三", "“姓名”和“name”的值不一致"),
        ("王五", None),
    ]


def test_pushed_records_are_numbered_from_one() -> None:
    records: list[object] = [
        {"姓名": "张三", "身份证号码": ID1, "行政区划代码": 370102},
        "not an object",
        {"name": " ", "id_number": "", "unknown": 1},
    ]
    rows = list(read_records(records, COLUMNS))  # type: ignore[arg-type]
    assert [(row.line, row.error) for row in rows] == [
        (1, None),
        (2, "第2条记录不是 JSON 对象"),
        (3, None),
    ]
    assert rows[0].values["region_code"] == 370102
    assert rows[1].values == {}
    assert rows[2].values == dict.fromkeys(FIELDS)


# --- bounded memory -------------------------------------------------------------------------


def test_csv_streams_in_bounded_memory(tmp_path: Path) -> None:
    # Few cells per row keep tracemalloc's per-allocation cost (and the test) short; the long
    # address makes the file larger than the bound.
    path = tmp_path / "大文件.csv"
    row = f"欧阳娜娜,{ID1},山东省济南市历下区解放路100号{'院' * 30}\n"
    with path.open("w", encoding="utf-8") as out:
        out.write("姓名,身份证号码,家庭住址\n")
        for _ in range(20):
            out.write(row * 10_000)
    assert path.stat().st_size > 30_000_000
    tracemalloc.start()
    try:
        count = 0
        with open_source(path, COLUMNS) as reader:
            for count, _ in enumerate(reader, start=1):  # noqa: B007 - counting is the point
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 20_000_000, (
        f"peak {peak / 1e6:.1f} MB while reading a {path.stat().st_size / 1e6:.0f} MB file"
    )
