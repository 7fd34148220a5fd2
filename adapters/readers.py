"""Department files and pushes → a stream of :class:`SourceRow`, one per record, in bounded memory.

Departments send monthly exports as their own systems and clerks produce them, and a province's
file can hold a million rows, so everything here streams: a CSV or JSON Lines reader holds one
record (plus at most 21 rows while it looks for the header) and a 1 MB sample taken once to
detect the encoding.

    with open_source(path, feed.columns) as reader:
        for row in reader:              # SourceRow(line=3, values={"id_number": "3701…", …})
            ...
        reader.ignored_headers          # columns the clerk sent that nothing reads

What the reader does, and why:

* **Format** comes from the extension and is checked against the first bytes: an old binary
  ``.xls`` (or a password-protected workbook, which is the same container) is refused with what
  to do instead, and a workbook renamed to ``.csv`` is not read as garbled text.
* **CSV encoding** is detected, never asked: Excel on Chinese Windows saves "CSV" as GBK, "CSV
  UTF-8" with a byte-order mark, other systems plain UTF-8. GBK is read as GB18030, its superset,
  so a rare name character (``䶮``, ``𠀀``) from a GB18030-aware system survives. See
  :func:`_detect_encoding`.
* **Headers** are matched after :func:`normalize_header`, which forgives what spreadsheets do to
  header text (line breaks inside a cell, ``*`` required markers, ``（元）`` units, full-width
  letters). Government workbooks put a title row above the header and often a second header row
  under merged group cells; see :func:`_choose_header`.
* **XLSX** is read with openpyxl in read-only mode, row by row. It still holds the workbook's
  shared-strings table and about 90 bytes per row parsed, so a workbook costs memory in
  proportion to its size (a sheet tops out at 1,048,576 rows); inflated archives are refused.
* **Values are raw.** Strings are not stripped and numbers are not converted: an 18-digit ID
  that Excel stored as a number has lost its last digits, and only the value parsers downstream
  (:mod:`adapters.values`) can say so to the clerk. Empty and whitespace-only cells are ``None``.
* **Damaged rows** (undecodable bytes, a line that is not JSON, cells past the last header) come
  through as a :class:`SourceRow` with ``error`` set and the line number, so one bad row is
  reported and the rest of the file is still read. Whole-file problems raise
  :class:`SourceFileError`, whose message a county clerk can act on.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from openpyxl import load_workbook

from gateway.domain.errors import BadUserInput

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

__all__ = [
    "ColumnSpec",
    "SourceFileError",
    "SourceReader",
    "SourceRow",
    "file_format",
    "normalize_header",
    "open_source",
    "read_records",
]

FORMATS = {
    ".csv": "csv",
    ".txt": "csv",  # Excel's "文本文件(制表符分隔)": tab-separated, GBK
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# The header must start within the first rows, so a file without one fails fast instead of
# being scanned to the end; government title blocks are one to three rows.
HEADER_SEARCH_ROWS = 20
# Enough text to tell GBK from UTF-8 with certainty, small enough to hold once.
SAMPLE_BYTES = 1 << 20
# A JSON record is a few hundred bytes; a longer line is damage, and is not held in memory whole.
MAX_JSON_LINE_BYTES = 1 << 20
# Worksheet XML compresses 10-20 times (measured on rosters and on sheets of styled blank rows);
# a part inflating far beyond that is a zip bomb, which would exhaust memory: openpyxl loads
# the shared strings whole and keeps an emptied element for every row it has parsed.
MAX_INFLATION = 100
INFLATION_CHECKED_FROM = 16 << 20  # small parts (styles, themes) may compress better
EXCEL_MAX_ROWS = 1_048_576

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the compound file of .xls, and of encrypted .xlsx
_ENCRYPTED_MARK = "EncryptionInfo".encode("utf-16-le")  # stream name in an encrypted workbook
_REPLACEMENT = "\ufffd"

# Text files hold no NUL and no run of control characters; a few (a form feed, a stray byte)
# are damage in a text file, more than this share of the sample is a binary file renamed.
BINARY_SHARE = 0.05
# Control characters other than tab, line breaks, form feed and DOS's end of file; U+FFFD.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x19\x1b-\x1f\ufffd]")

_XLS_REFUSED = "不支持 .xls 格式，请在 Excel 中另存为 .xlsx 或 CSV 后再导入"
_UNDECODABLE_CSV = "含无法识别的字符（文件编码不一致）"
_UNDECODABLE_JSON = "含无法识别的字符（JSON Lines 文件应为 UTF-8 编码）"
_TOO_MANY_CELLS = "列数多于表头"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One field a feed reads, and the header texts departments use for it.

    The first header is the Chinese name shown to the clerk (in "缺少必需列：…").

        ColumnSpec("id_number", ("身份证号码", "公民身份号码", "id_number"), required=True)
    """

    field: str
    headers: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One record as the department sent it.

    ``line`` is what the clerk finds in their file: the physical line a CSV record starts on
    (the header line counts), the worksheet row number, the JSON Lines line, or a push's
    index + 1. ``values`` holds every field of the feed (``None`` when the column is absent or
    the cell empty), except for a record that could not be read at all, whose values are
    ``{}``. ``error`` is a Chinese reason when the row itself is unreadable; the values may
    then be partial and must not be used.
    """

    line: int
    values: dict[str, object]
    error: str | None = None


class SourceFileError(BadUserInput):
    """The file as a whole cannot be read: wrong format, no header, missing required columns.

    The message is for the county clerk who uploaded it: Chinese, what is wrong and what to do,
    naming the file but never a server path.
    """


_WHITESPACE = re.compile(r"\s+")
_TRAILING_NOTE = re.compile(r"(.+)\([^()]*\)")  # "医疗总费用(元)" after NFKC folds "（元）"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_header(text: str) -> str:
    """The form in which a header (or JSON key) is compared with a column's aliases.

        >>> normalize_header("*身份证\\n号码（必填）")
        '身份证号码'
        >>> normalize_header("医疗总费用（元）"), normalize_header(" ＩＤ_Number ")
        ('医疗总费用', 'id_number')

    NFKC folds full-width letters and brackets; all whitespace goes (Excel headers wrap with a
    line break inside the cell, and some exports pad with U+3000); ``*``/``＊`` required
    markers and trailing parenthesised units or notes (``(元)``, ``(必填)``) are dropped, as
    often as they are stacked; ASCII letters are lower-cased so ``ID_Number`` is ``id_number``.
    A header that is nothing but a parenthesis is kept as it is.
    """
    folded = _WHITESPACE.sub("", unicodedata.normalize("NFKC", text))
    folded = folded.replace("\ufeff", "").replace("\u200b", "")  # left by copy-paste
    while True:
        shorter = folded.strip("*")
        note = _TRAILING_NOTE.fullmatch(shorter)
        if note is not None:
            shorter = note.group(1)
        if shorter == folded:
            return folded.translate(_ASCII_LOWER)
        folded = shorter


class _Columns:
    """The feed's columns, indexed by normalised alias; shared by every format."""

    def __init__(self, specs: Sequence[ColumnSpec]) -> None:
        self.fields = tuple(spec.field for spec in specs)
        self.required = tuple(spec.field for spec in specs if spec.required)
        self._by_alias: dict[str, str] = {}
        self._cache: dict[str, str | None] = {}
        for spec in specs:
            if not spec.headers:
                raise ValueError(f"column {spec.field!r} has no header texts")
            for alias in spec.headers:
                key = normalize_header(alias)
                other = self._by_alias.setdefault(key, spec.field)
                if other != spec.field:
                    raise ValueError(
                        f"header {alias!r} is an alias of {other!r} and {spec.field!r}"
                    )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("a field appears twice in the column specs")
        self.labels = {spec.field: spec.headers[0] for spec in specs}

    def field_of(self, header: str) -> str | None:
        # Keys repeat on every JSON line; the cache is bounded so that a file of unique keys
        # cannot grow it.
        if header in self._cache:
            return self._cache[header]
        field = self._by_alias.get(normalize_header(header))
        if len(self._cache) < 1000:
            self._cache[header] = field
        return field


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each field sits in a CSV or XLSX row, decided once from the header."""

    index: dict[str, int]
    columns: dict[str, str]
    ignored: tuple[str, ...]
    width: int  # one past the last non-empty header cell

    def mapped(self) -> tuple[tuple[str, int], ...]:
        return tuple(self.index.items())


def _header_text(cell: object) -> str | None:
    if cell is None:
        return None
    text = cell if isinstance(cell, str) else str(cell)
    return None if text.isspace() or not text else text


def _shown(header: str) -> str:
    return _WHITESPACE.sub(" ", header).strip()


def _layout(headers: Sequence[str | None], columns: _Columns) -> _Layout:
    """Map header cells to fields, refusing a file that is ambiguous or lacks a required column.

    Two columns for one field (身份证号码 and 公民身份号码 side by side) would make us pick one
    silently, so the clerk is asked to remove one.
    """
    index: dict[str, int] = {}
    matched: dict[str, str] = {}
    ignored: list[str] = []
    width = 0
    for position, header in enumerate(headers):
        if header is None:
            continue
        width = position + 1
        field = columns.field_of(header)
        if field is None:
            ignored.append(header)
        elif field in index:
            raise SourceFileError(
                f"第{index[field] + 1}列“{_shown(matched[field])}”和第{position + 1}列"
                f"“{_shown(header)}”都是{columns.labels[field]}，请删除或改名其中一列后再导入"
            )
        else:
            index[field] = position
            matched[field] = header
    missing = [columns.labels[field] for field in columns.required if field not in index]
    if missing:
        raise SourceFileError("缺少必需列：" + "、".join(missing))
    return _Layout(index, matched, tuple(ignored), width)


@dataclass(frozen=True, slots=True)
class _HeaderChoice:
    headers: list[str | None]
    last: int  # position among the searched rows of the last header row; data starts after it
    score: int  # distinct fields matched


def _choose_header(rows: Sequence[Sequence[object]], columns: _Columns) -> _HeaderChoice | None:
    """Find the header among the first rows: the row (or pair of rows) matching most fields.

    A title row above the header (a merged "2026年11月低保对象花名册") matches nothing and loses.
    Government exports also use a two-level header: 姓名 and 身份证号码 merged down over two
    rows, "医疗费用(元)" merged across three columns above 医疗总费用, 基本医保支付, 个人负担.
    A merged cell's text sits only in its top-left cell, so neither row alone holds every
    header. A row that matches something, followed by a row that matches a field it does not,
    is therefore also scored as one header, column by column taking the lower row's text where
    it matches a field and the upper row's otherwise. Ties go to the earlier, single row.

    Returns ``None`` only when every row is empty; a choice matching nothing is the first
    non-empty row, so the caller's error can name the missing columns.
    """
    texts = [[_header_text(cell) for cell in row] for row in rows]
    fields = [[columns.field_of(text) if text else None for text in row] for row in texts]
    best: _HeaderChoice | None = None
    for i, row in enumerate(texts[:HEADER_SEARCH_ROWS]):
        if not any(row):
            continue
        matched = {field for field in fields[i] if field}
        if best is None or len(matched) > best.score:
            best = _HeaderChoice(row, i, len(matched))
        if not matched or i + 1 >= len(texts):
            continue
        below = {field for field in fields[i + 1] if field}
        if not below - matched:
            continue
        combined: list[str | None] = []
        for column in range(max(len(row), len(texts[i + 1]))):
            upper = row[column] if column < len(row) else None
            lower = texts[i + 1][column] if column < len(texts[i + 1]) else None
            lower_field = fields[i + 1][column] if column < len(fields[i + 1]) else None
            combined.append(lower if lower_field or upper is None else upper)
        score = len({columns.field_of(text) for text in combined if text} - {None})
        if score > best.score:
            best = _HeaderChoice(combined, i + 1, score)
    return best


def _cell(raw: object) -> object:
    """A cell's raw value, with empty and whitespace-only text as ``None``."""
    if isinstance(raw, str) and (not raw or raw.isspace()):
        return None
    return raw


class SourceReader:
    """An open department file: what was recognised in it, and its rows as an iterator.

    Returned by :func:`open_source`, which has already read the header, so ``columns``,
    ``ignored_headers`` and ``header_line`` are known before the first row. Use it as a
    context manager: an XLSX workbook keeps its file open until :meth:`close`.

    Attributes:
        format: ``"csv"``, ``"xlsx"`` or ``"jsonl"``.
        encoding: for CSV the encoding detected (``"utf-8"``, ``"utf-8-sig"`` or
            ``"gb18030"``), else ``None``.
        header_line: line (CSV) or row (XLSX) of the last header row; ``None`` for JSON Lines.
        columns: field → the header text that matched it. For JSON Lines, filled as keys are
            seen.
        ignored_headers: headers (or JSON keys) that matched no field, to show the clerk what
            was not read. For JSON Lines it is complete only after the last row.
    """

    def __init__(
        self,
        *,
        format: str,
        encoding: str | None,
        header_line: int | None,
        columns: dict[str, str],
        ignored: Callable[[], tuple[str, ...]],
        rows: Iterator[SourceRow],
        resources: ExitStack,
    ) -> None:
        self.format = format
        self.encoding = encoding
        self.header_line = header_line
        self.columns = columns
        self._ignored = ignored
        self._rows = rows
        self._resources = resources

    @property
    def ignored_headers(self) -> tuple[str, ...]:
        return self._ignored()

    def __iter__(self) -> Iterator[SourceRow]:
        return self

    def __next__(self) -> SourceRow:
        return next(self._rows)

    def close(self) -> None:
        """Stop reading and release the file; safe to call twice."""
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: Path, columns: Sequence[ColumnSpec]) -> SourceReader:
    """Open a department file, detect its format, encoding and header, ready to iterate.

    Raises:
        SourceFileError: the file cannot be opened, is empty, is in a format we do not read,
            has no recognisable header, lacks a required column or has one field twice.
        ValueError: ``columns`` itself is inconsistent (a programming error, not the clerk's).
    """
    path = Path(path)
    spec = _Columns(columns)
    chosen = file_format(path.name)
    with ExitStack() as stack:
        handle = _open_binary(path, stack)
        sample = _read(handle, SAMPLE_BYTES, path)
        handle.seek(0)
        _check_content(path, sample, chosen)
        if chosen == "csv":
            reader = _open_csv(path, handle, sample, spec, stack)
        elif chosen == "xlsx":
            reader = _open_xlsx(path, handle, spec, stack)
        else:
            reader = _open_jsonl(path, handle, sample, spec, stack)
    # Each opener hands its resources to the reader (stack.pop_all()); on an error before
    # that, leaving the `with` closes the file.
    return reader


def file_format(name: str) -> str:
    """``csv``, ``xlsx`` or ``jsonl``, from a file name's extension (before any byte is read:
    an upload is refused by its name before its body is taken).

    Raises:
        SourceFileError: an extension we do not read.
    """
    suffix = Path(name).suffix
    extension = suffix.lower()
    if extension == ".xls":
        return "xlsx"  # many systems name an .xlsx ".xls"; the magic bytes decide (_check_content)
    if extension in FORMATS:
        return FORMATS[extension]
    raise SourceFileError(f"不支持的文件类型“{suffix or name}”：请导入 .xlsx、.csv 或 .jsonl 文件")


def _open_binary(path: Path, stack: ExitStack) -> IO[bytes]:
    try:
        handle = stack.enter_context(path.open("rb"))
    except FileNotFoundError:
        raise SourceFileError(f"找不到文件“{path.name}”") from None
    except IsADirectoryError:
        raise SourceFileError(f"“{path.name}”是文件夹，不是文件") from None
    except PermissionError:
        raise SourceFileError(f"没有权限读取文件“{path.name}”") from None
    except OSError:
        raise SourceFileError(f"无法读取文件“{path.name}”") from None
    return handle


def _read(handle: IO[bytes], size: int, path: Path) -> bytes:
    try:
        return handle.read(size)
    except OSError:
        raise SourceFileError(f"读取文件“{path.name}”时出错，请重新上传") from None


def _check_content(path: Path, sample: bytes, chosen: str) -> None:
    """Refuse by content what the extension hides: empty files, .xls, renamed workbooks."""
    name = path.name
    if not sample.removeprefix(codecs.BOM_UTF8).strip():
        raise SourceFileError(f"文件“{name}”是空的")
    if sample.startswith(_OLE_MAGIC):
        if _ENCRYPTED_MARK in sample:
            raise SourceFileError(f"文件“{name}”设置了打开密码，请在 Excel 中取消密码后再导入")
        raise SourceFileError(_XLS_REFUSED)
    is_zip = sample.startswith(_ZIP_MAGIC)
    if path.suffix.lower() == ".xls" and not is_zip:
        raise SourceFileError(_XLS_REFUSED)  # also the HTML tables some systems export as .xls
    if chosen == "xlsx" and not is_zip:
        raise SourceFileError(f"文件“{name}”不是有效的 Excel 工作簿（.xlsx），可能已损坏")
    if chosen != "xlsx" and is_zip:
        raise SourceFileError(
            f"文件“{name}”的内容是 Excel 工作簿：请把扩展名改为 .xlsx，或在 Excel 中另存为 CSV"
        )
    if chosen != "xlsx" and sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode 文本" export; every byte would decode to nonsense as UTF-8 or GBK.
        raise SourceFileError(
            f"文件“{name}”是 UTF-16 编码（Excel“Unicode 文本”），"
            "请在 Excel 中另存为“CSV UTF-8（逗号分隔）”后再导入"
        )
    if chosen != "xlsx" and _looks_binary(sample):
        # A picture, a PDF or a database dump renamed .csv: said as such, not as "缺少必需列".
        kind = "CSV" if chosen == "csv" else "JSON Lines"
        raise SourceFileError(
            f"文件“{name}”不是文本/{kind} 文件（内容是二进制数据），"
            f"请确认选择的是导出的 {kind} 文件"
        )


def _looks_binary(sample: bytes) -> bool:
    """True for content no department export is: a NUL byte (UTF-16 is refused before this), or
    a sample that fails to decode, or decodes to control characters, in every encoding we read
    (UTF-8 and GB18030 — whichever :func:`_detect_encoding` picks is the likelier)."""
    if b"\x00" in sample:
        return True
    encoding = _detect_encoding(sample)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
    if not text:
        return False
    return len(_NOT_TEXT.findall(text)) > BINARY_SHARE * len(text)


# --- CSV ------------------------------------------------------------------------------------


def _detect_encoding(sample: bytes) -> str:
    """``utf-8-sig``, ``utf-8`` or ``gb18030``, from the first megabyte.

    A byte-order mark settles it. Otherwise the sample is decoded as UTF-8 incrementally
    (``final=False``: a character cut by the sample's end is not an error). If some bytes do
    not decode, the file is either GBK or UTF-8 with a few damaged bytes (a row pasted from a
    GBK file, a stray byte from a broken export). The two are told apart by how much survives:
    GBK read as UTF-8 breaks at nearly every Chinese character (on synthetic rosters, one
    character stays intact for five broken ones), while damaged UTF-8 keeps almost all of them.
    Damaged UTF-8 is read as UTF-8 so that the damaged rows, and only they, are reported.

    charset_normalizer is not consulted: it gives no answer at all for UTF-8 with one stray
    byte, and every other answer it gives for these files leads to GB18030 anyway.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(sample, final=False)
    damaged = text.count(_REPLACEMENT)
    if damaged == 0:
        return "utf-8"
    intact = len(text) - len(text.encode("ascii", "ignore")) - damaged
    return "utf-8" if intact >= 4 * damaged else "gb18030"


def _sniff_delimiter(sample: bytes, encoding: str) -> str:
    """Comma, or tab for Excel's tab-separated text, from the first lines (title and header).

    Whichever occurs more wins; the first lines are the header and its neighbours, where a
    tab file has a tab between every column and a comma file a comma.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    head = decoder.decode(sample[:65536], final=False).split("\n", HEADER_SEARCH_ROWS)
    lines = head[:HEADER_SEARCH_ROWS]
    tabs = sum(line.count("\t") for line in lines)
    commas = sum(line.count(",") for line in lines)
    return "\t" if tabs > commas else ","


def _open_csv(
    path: Path, handle: IO[bytes], sample: bytes, columns: _Columns, stack: ExitStack
) -> SourceReader:
    encoding = _detect_encoding(sample)
    delimiter = _sniff_delimiter(sample, encoding)
    # errors="replace": one undecodable byte marks its row (U+FFFD) instead of ending the file.
    # newline="": the csv module needs the line breaks inside quoted cells untranslated.
    text = io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline="")
    stack.callback(text.close)
    records = _csv_records(csv.reader(text, delimiter=delimiter), path)
    head = list(itertools.islice(records, HEADER_SEARCH_ROWS + 1))
    choice = _choose_header([cells for _, cells in head], columns)
    if choice is None:
        raise SourceFileError(f"文件“{path.name}”中没有内容")
    layout = _layout(choice.headers, columns)
    rows = _csv_rows(itertools.chain(head[choice.last + 1 :], records), layout, columns)
    return SourceReader(
        format="csv",
        encoding=encoding,
        header_line=head[choice.last][0],
        columns=layout.columns,
        ignored=lambda: layout.ignored,
        rows=rows,
        resources=stack.pop_all(),
    )


def _csv_records(reader: CsvReader, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each record with the physical line it starts on.

    ``reader.line_num`` counts the lines read so far, so a record starts one after where the
    previous one ended: a quoted cell spanning lines moves later records down correctly.
    """
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error:
        raise SourceFileError(
            f"文件“{path.name}”第{start}行起格式错误（可能有未成对的引号），无法继续读取"
        ) from None
    except OSError:
        raise SourceFileError(f"读取文件“{path.name}”时出错，请重新上传") from None


def _csv_rows(
    records: Iterator[tuple[int, list[str]]], layout: _Layout, columns: _Columns
) -> Iterator[SourceRow]:
    mapped = layout.mapped()
    template: dict[str, object] = dict.fromkeys(columns.fields)
    width = layout.width
    for line, cells in records:
        values = template.copy()
        filled = False
        count = len(cells)
        for field, position in mapped:
            if position < count:
                value = cells[position]
                if value and not value.isspace():
                    values[field] = value
                    filled = True
        # A value past the last header usually means an unquoted comma shifted the columns
        # (an address "济南市,历下区"), so the row's other values are suspect too.
        overflow = count > width and any(c and not c.isspace() for c in cells[width:])
        if not filled and not overflow:
            continue  # blank line, or a trailing ",,,," row Excel leaves behind
        error = None
        for cell in cells:  # a plain loop: this runs for every row of a million-row file
            if _REPLACEMENT in cell:
                error = _UNDECODABLE_CSV
                break
        if overflow:
            error = _TOO_MANY_CELLS if error is None else f"{error}；{_TOO_MANY_CELLS}"
        yield SourceRow(line, values, error)


# --- XLSX -----------------------------------------------------------------------------------


def _open_xlsx(path: Path, handle: IO[bytes], columns: _Columns, stack: ExitStack) -> SourceReader:
    """Open the workbook read-only and find the first worksheet with a header.

    The first sheet is often a cover or instructions ("填表说明"), so sheets are tried in
    order; a header needs at least two matching fields (one when the feed has one column), so
    a note that mentions "姓名" is not taken for it.
    """
    try:
        with zipfile.ZipFile(handle) as archive:  # leaves `handle` open
            parts = archive.infolist()
        handle.seek(0)
        for part in parts:
            if part.file_size > max(INFLATION_CHECKED_FROM, MAX_INFLATION * part.compress_size):
                raise SourceFileError(f"文件“{path.name}”解压后异常庞大，不是正常的 Excel 导出文件")
        workbook = load_workbook(handle, read_only=True, data_only=True, keep_links=False)
    except SourceFileError:
        raise
    # openpyxl reports a damaged workbook through a dozen unrelated exception types.
    except Exception:
        raise SourceFileError(f"文件“{path.name}”无法作为 Excel 工作簿打开，可能已损坏") from None
    stack.callback(workbook.close)
    enough = min(2, len(columns.fields))
    fallback: tuple[Any, _HeaderChoice] | None = None
    for sheet in workbook.worksheets:
        # Read-only sheets trust the size the exporting program wrote, and some write "A1" and
        # lose every other column, or pad to row 1048576. Reading what is there is safer.
        sheet.reset_dimensions()
        try:
            head = [
                list(row)
                for row in sheet.iter_rows(max_row=HEADER_SEARCH_ROWS + 1, values_only=True)
            ]
        except Exception:
            raise SourceFileError(f"文件“{path.name}”的工作表已损坏，无法读取") from None
        choice = _choose_header(head, columns)
        if choice is None:
            continue
        if choice.score >= enough:
            return _xlsx_reader(sheet, choice, columns, path, stack)
        if fallback is None or choice.score > fallback[1].score:
            fallback = (sheet, choice)
    if fallback is None:
        raise SourceFileError(f"文件“{path.name}”中没有内容")
    return _xlsx_reader(fallback[0], fallback[1], columns, path, stack)


def _xlsx_reader(
    sheet: Any, choice: _HeaderChoice, columns: _Columns, path: Path, stack: ExitStack
) -> SourceReader:
    layout = _layout(choice.headers, columns)
    header_row = choice.last + 1  # the searched rows are worksheet rows 1, 2, …
    return SourceReader(
        format="xlsx",
        encoding=None,
        header_line=header_row,
        columns=layout.columns,
        ignored=lambda: layout.ignored,
        rows=_xlsx_rows(sheet, layout, columns, header_row + 1, path),
        resources=stack.pop_all(),
    )


def _xlsx_rows(
    sheet: Any, layout: _Layout, columns: _Columns, first_row: int, path: Path
) -> Iterator[SourceRow]:
    """Rows after the header, keeping openpyxl's types (str, int, float, datetime, bool).

    Only cells up to the last mapped column are read (``max_col``): a styled row can have
    cells out to column XFD. Exports often end with thousands of styled but empty rows; those
    are skipped at C speed before any per-cell work.
    """
    mapped = layout.mapped()
    template: dict[str, object] = dict.fromkeys(columns.fields)
    last_column = max(layout.index.values(), default=0) + 1
    row_number = first_row - 1
    try:
        cells_by_row = sheet.iter_rows(min_row=first_row, max_col=last_column, values_only=True)
        for row_number, cells in enumerate(cells_by_row, start=first_row):
            if row_number > EXCEL_MAX_ROWS:
                break  # no genuine worksheet has more rows: damage, or a bomb
            if cells.count(None) == len(cells):
                continue
            values = template.copy()
            filled = False
            for field, position in mapped:
                value = _cell(cells[position])
                if value is not None:
                    values[field] = value
                    filled = True
            if filled:
                yield SourceRow(row_number, values)
    except Exception:
        raise SourceFileError(
            f"文件“{path.name}”在第{row_number + 1}行附近已损坏，无法继续读取"
        ) from None
    if row_number > EXCEL_MAX_ROWS:
        raise SourceFileError(f"文件“{path.name}”的行数超过 Excel 的上限，文件已损坏")


# --- JSON Lines and pushes ------------------------------------------------------------------


class _KeyMapper:
    """Maps one JSON object's keys to fields, remembering the keys nothing reads."""

    def __init__(self, columns: _Columns) -> None:
        self._columns = columns
        self._template: dict[str, object] = dict.fromkeys(columns.fields)
        self.matched: dict[str, str] = {}
        self._ignored: dict[str, None] = {}  # insertion-ordered set

    def ignored(self) -> tuple[str, ...]:
        return tuple(self._ignored)

    def values(self, record: Mapping[Any, object]) -> tuple[dict[str, object], str | None]:
        """The record's values and, if two keys name one field with different values, why not.

        A push may carry both "姓名" and "name"; equal values are fine, different ones are
        ambiguous and the record is refused rather than one picked silently.
        """
        values = self._template.copy()
        source: dict[str, str] = {}
        problems: list[str] = []
        for raw_key, raw in record.items():
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            field = self._columns.field_of(key)
            if field is None:
                if key not in self._ignored and len(self._ignored) < 100:
                    self._ignored[key] = None
                continue
            value = _cell(raw)
            self.matched.setdefault(field, key)
            if field not in source or values[field] is None:
                values[field] = value
                source[field] = key
            elif value is not None and value != values[field]:
                problems.append(f"“{source[field]}”和“{key}”的值不一致")
        return values, "；".join(problems) or None


def _open_jsonl(
    path: Path, handle: IO[bytes], sample: bytes, columns: _Columns, stack: ExitStack
) -> SourceReader:
    start = sample.removeprefix(codecs.BOM_UTF8).lstrip()
    if start.startswith(b"["):
        raise SourceFileError(
            f"文件“{path.name}”是一个 JSON 数组：请改为每行一个 JSON 对象（JSON Lines）"
        )
    if _detect_encoding(sample) == "gb18030":
        raise SourceFileError(f"文件“{path.name}”不是 UTF-8 编码：JSON Lines 文件须为 UTF-8")
    keys = _KeyMapper(columns)
    return SourceReader(
        format="jsonl",
        encoding=None,
        header_line=None,
        columns=keys.matched,
        ignored=keys.ignored,
        rows=_jsonl_rows(handle, keys, path),
        resources=stack.pop_all(),
    )


def _lines(handle: IO[bytes]) -> Iterator[bytes | None]:
    """The file's lines as bytes; ``None`` for a line too long to hold, which is skipped."""
    while True:
        line = handle.readline(MAX_JSON_LINE_BYTES)
        if not line:
            return
        if len(line) < MAX_JSON_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(MAX_JSON_LINE_BYTES)
        yield None


def _jsonl_rows(handle: IO[bytes], keys: _KeyMapper, path: Path) -> Iterator[SourceRow]:
    line_number = 0
    try:
        for line_number, line in enumerate(_lines(handle), start=1):
            if line is None:
                yield SourceRow(line_number, {}, f"第{line_number}行过长，已跳过")
                continue
            if line_number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            undecodable = False
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", errors="replace")
                undecodable = True
            try:
                record = json.loads(text)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                yield SourceRow(line_number, {}, f"第{line_number}行不是有效的 JSON 对象")
                continue
            values, problem = keys.values(record)
            if undecodable:
                problem = (
                    _UNDECODABLE_JSON if problem is None else f"{_UNDECODABLE_JSON}；{problem}"
                )
            yield SourceRow(line_number, values, problem)
    except OSError:
        raise SourceFileError(
            f"读取文件“{path.name}”第{line_number + 1}行时出错，请重新上传"
        ) from None


def read_records(
    records: Sequence[Mapping[str, object]], columns: Sequence[ColumnSpec]
) -> Iterator[SourceRow]:
    """Rows from a real-time push: each record a mapping with Chinese or English keys.

    Keys are matched like headers; ``line`` is the record's index + 1, which is how the
    pushing system finds it. Anything that is not a mapping becomes an error row.

    Raises:
        ValueError: ``columns`` is inconsistent (raised here, not at the first row).
    """
    keys = _KeyMapper(_Columns(columns))

    def rows() -> Iterator[SourceRow]:
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                yield SourceRow(index + 1, {}, f"第{index + 1}条记录不是 JSON 对象")
                continue
            values, problem = keys.values(record)
            yield SourceRow(index + 1, values, problem)

    return rows()
