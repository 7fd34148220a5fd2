"""Department files made from the synthetic population (``gateway.synthetic``): what a civil
affairs bureau's monthly export or MIB's enrollment file looks like, for the demo, the tests
and ``bench/ingest_bench.py``. Never real people.

Rows are dictionaries keyed by the Chinese headers departments use (CONTRACT.md); writers put
them in CSV (any encoding), XLSX (with a title row, as government exports have) or JSON Lines.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.domain import CATEGORY_NAMES_ZH
from gateway.records import HouseholdBundle

CIVIL_AFFAIRS_CATEGORIES = frozenset(
    {
        "EXTREME_POVERTY",
        "MINIMUM_LIVING",
        "MINIMUM_LIVING_EDGE",
        "RIGID_EXPENDITURE",
        "SERIOUS_ILLNESS",
        "ORPHAN",
        "UNSUPPORTED_CHILD",
    }
)
IDENTITY_HEADERS = (
    "姓名",
    "身份证号码",
    "行政区划代码",
    "人员类别",
    "认定日期",
    "退出日期",
    "联系电话",
    "家庭住址",
    "户编号",
    "与户主关系",
)
ENROLLMENT_HEADERS = (
    "姓名",
    "身份证号码",
    "参保年度",
    "险种类型",
    "参保状态",
    "参保地行政区划代码",
    "资助类别",
    "资助金额",
)
_INSURANCE_ZH = {"RESIDENT": "城乡居民", "EMPLOYEE": "职工"}
_STATUS_ZH = {"ACTIVE": "正常参保", "SUSPENDED": "暂停参保", "TERMINATED": "终止参保"}


def identity_rows(
    bundles: Iterable[HouseholdBundle], department: str = "civil_affairs"
) -> Iterator[dict[str, str]]:
    """One row per relief status the department recognised (a person with two identities
    has two rows), as its monthly roster lists them."""
    for bundle in bundles:
        members = {m.person_id: m for m in bundle.members}
        number = f"H{bundle.household.household_id.hex[:16].upper()}"
        for status in bundle.relief_statuses:
            if status.source_department != department:
                continue
            person = members[status.person_id]
            yield {
                "姓名": person.name,
                "身份证号码": person.id_number,
                "行政区划代码": person.region_code,
                "人员类别": CATEGORY_NAMES_ZH[status.category],
                "认定日期": status.recognized_on.isoformat(),
                "退出日期": status.valid_to.isoformat() if status.valid_to else "",
                "联系电话": person.phone or "",
                "家庭住址": person.address or "",
                "户编号": number,
                "与户主关系": person.relation or "",
            }


def enrollment_rows(bundles: Iterable[HouseholdBundle]) -> Iterator[dict[str, str]]:
    for bundle in bundles:
        members = {m.person_id: m for m in bundle.members}
        for enrollment in bundle.enrollments:
            person = members[enrollment.person_id]
            yield {
                "姓名": person.name,
                "身份证号码": person.id_number,
                "参保年度": str(enrollment.year),
                "险种类型": _INSURANCE_ZH[enrollment.insurance_type],
                "参保状态": _STATUS_ZH[enrollment.status],
                "参保地行政区划代码": enrollment.region_code,
                "资助类别": CATEGORY_NAMES_ZH[enrollment.subsidy_category]
                if enrollment.subsidy_category
                else "",
                "资助金额": str(enrollment.subsidy_amount) if enrollment.subsidy_amount else "",
            }


def write_csv(
    path: Path,
    headers: Iterable[str],
    rows: Iterable[dict[str, str]],
    *,
    encoding: str = "utf-8",
) -> int:
    count = 0
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        columns = list(headers)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
            count += 1
    return count


def write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_xlsx(
    path: Path, headers: Iterable[str], rows: Iterable[dict[str, str]], title: str
) -> int:
    """An export as government offices make them: a merged title row above the header."""
    from openpyxl import Workbook

    columns = list(headers)
    workbook = Workbook(write_only=False)
    sheet = workbook.active
    sheet.append([title])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(columns))
    sheet.append(columns)
    count = 0
    for row in rows:
        sheet.append([row.get(c, "") for c in columns])
        count += 1
    workbook.save(path)
    return count
