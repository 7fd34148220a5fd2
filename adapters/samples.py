"""Department files made from the synthetic population (``gateway.domain.synthetic``): what a civil
affairs bureau's monthly export or MIB's enrollment file looks like, for the demo, the tests
and ``bench/ingest_bench.py``. Never real people.

Rows are dictionaries keyed by the Chinese headers departments use (CONTRACT.md); writers put
them in CSV (any encoding), XLSX (with a title row, as government exports have) or JSON Lines.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

from gateway.domain.departments import CATEGORY_NAMES_ZH
from gateway.domain.id_numbers import make_id_number
from gateway.domain.records import HouseholdBundle
from gateway.domain.synthetic import household_number

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
        number = household_number(bundle.household.household_id)
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


def monthly_civil_affairs(
    bundles: Iterable[HouseholdBundle], county: str, today: date, *, seed: int = 1
) -> list[dict[str, str]]:
    """A civil affairs bureau's monthly roster for one county, as the demo hands it to a clerk:
    mostly people already on record (无变化), a few exits (退出) and tier changes
    (身份变更), new people (新增), a name that differs from the one on record (an anomaly to
    verify), and three rows with mistakes clerks make (rejected with reasons)."""
    rng = random.Random(seed)
    rows = [row for row in identity_rows(bundles) if row["行政区划代码"].startswith(county)]
    active = [row for row in rows if not row["退出日期"]]
    rng.shuffle(active)
    month_start = today.replace(day=1)
    roster: list[dict[str, str]] = []
    for row in active[:3]:  # 退出 at the end of last month
        roster.append({**row, "退出日期": (month_start - timedelta(days=1)).isoformat()})
    changed = 0
    for row in active[3:]:
        if changed < 2 and row["人员类别"] == CATEGORY_NAMES_ZH["MINIMUM_LIVING_EDGE"]:
            roster.append(
                {
                    **row,
                    "人员类别": CATEGORY_NAMES_ZH["MINIMUM_LIVING"],
                    "认定日期": str(month_start),
                }
            )
            changed += 1
        else:
            roster.append(row)
    if len(roster) > 3:  # the same ID under another name: sent back for verification
        roster[3] = {**roster[3], "姓名": roster[3]["姓名"][0] + "测试"}
    for sequence in range(5):  # 新增
        number = make_id_number(county, date(1960 + 7 * sequence, 3, 1 + sequence), 900 + sequence)
        roster.append(
            {
                "姓名": f"样例{'甲乙丙丁戊'[sequence]}",
                "身份证号码": number,
                "行政区划代码": county,
                "人员类别": CATEGORY_NAMES_ZH["MINIMUM_LIVING"],
                "认定日期": f"{month_start.year}年{month_start.month}月{1 + sequence}日",
                "退出日期": "",
                "联系电话": f"1380000{1000 + sequence}",
                "家庭住址": "样例村 1 号",
                "户编号": f"DEMO{sequence:04d}",
                "与户主关系": "户主",
            }
        )
    bad = dict(roster[-1])
    roster.append(
        {
            **bad,
            "身份证号码": bad["身份证号码"][:-1] + ("0" if bad["身份证号码"][-1] != "0" else "1"),
        }
    )
    roster.append(
        {**bad, "身份证号码": make_id_number(county, date(1970, 1, 1), 990), "人员类别": "五保户"}
    )
    roster.append(
        {
            **bad,
            "身份证号码": make_id_number(county, date(1971, 1, 1), 992),
            "认定日期": "2026年13月1日",
        }
    )
    return roster
