"""Feed mappings (``adapters/mappings/*.toml`` and a deployment's ``RELIEF_MAPPINGS_DIR``):
every shipped mapping loads and speaks the contract's headers, a malformed one fails at start-up
naming its file, and a new department's feed is a mapping file, not code.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest

from adapters.mapping import KINDS, NOT_A_CATEGORY, load_feeds, parse_feed
from adapters.readers import read_records
from adapters.samples import CIVIL_AFFAIRS_CATEGORIES
from gateway.cli import main
from gateway.domain.departments import CATEGORY_NAMES_ZH, RELIEF_CATEGORIES
from gateway.domain.errors import ConfigurationError
from tests.ingest_support import (
    COUNTY,
    IngestDB,
    db_fixture,  # noqa: F401 - fixture
    ingest_database_fixture,  # noqa: F401 - fixture
    nonzero,
    someone,
)

SHIPPED = {
    ("civil_affairs", "identities"),
    ("rural_revitalization", "identities"),
    ("medical_insurance", "enrollments"),
    ("medical_insurance", "settlements"),
    ("health", "vital_events"),
    ("public_security", "household_registration"),
    ("disabled_federation", "certificates"),
}

# CONTRACT.md "Department files": each column by its Chinese header and its English name.
CONTRACT_COLUMNS = {
    ("civil_affairs", "identities"): {
        "name": "姓名", "id_number": "身份证号码", "region_code": "行政区划代码",
        "category": "人员类别", "recognized_on": "认定日期", "exited_on": "退出日期",
        "phone": "联系电话", "address": "家庭住址", "household_id": "户编号",
        "relation": "与户主关系",
    },
    ("medical_insurance", "enrollments"): {
        "name": "姓名", "id_number": "身份证号码", "year": "参保年度",
        "insurance_type": "险种类型", "status": "参保状态", "region_code": "参保地行政区划代码",
        "subsidy_category": "资助类别", "subsidy_amount": "资助金额",
    },
    ("medical_insurance", "settlements"): {
        "name": "姓名", "id_number": "身份证号码", "settled_on": "结算日期",
        "visit_type": "就诊类型", "total_cost": "医疗总费用", "basic_paid": "基本医保支付",
        "critical_paid": "大病保险支付", "assistance_paid": "医疗救助支付",
        "personal_burden": "个人负担", "settlement_id": "结算流水号",
    },
    ("health", "vital_events"): {
        "name": "姓名", "id_number": "身份证号码", "event": "事件类型", "event_date": "事件日期",
    },
}  # fmt: skip
CONTRACT_COLUMNS[("rural_revitalization", "identities")] = CONTRACT_COLUMNS[
    ("civil_affairs", "identities")
]
CONTRACT_LABELS = {
    ("medical_insurance", "enrollments"): {
        "insurance_type": {"城乡居民": "RESIDENT", "职工": "EMPLOYEE"},
        "status": {"正常参保": "ACTIVE", "暂停参保": "SUSPENDED", "终止参保": "TERMINATED"},
    },
    ("medical_insurance", "settlements"): {
        "visit_type": {"住院": "INPATIENT", "门诊": "OUTPATIENT"}
    },
    ("health", "vital_events"): {"event": {"死亡": "DEATH", "出生": "BIRTH"}},
}


# --------------------------------------------------------------------------- shipped mappings


def test_every_shipped_mapping_loads() -> None:
    feeds = load_feeds()
    assert set(feeds) == SHIPPED
    for key, feed in feeds.items():
        assert feed.key == key
        assert feed.source == f"adapters/mappings/{key[0]}_{key[1]}.toml"
        assert feed.kind in KINDS
        required = {f for f, spec in KINDS[feed.kind].items() if spec.required}
        assert required <= feed.mapped
        assert {c.field for c in feed.columns if c.required} >= required
        read_records([], feed.columns)  # the reader accepts the column specs (no alias clash)


@pytest.mark.parametrize("key", sorted(CONTRACT_COLUMNS), ids="/".join)
def test_shipped_mapping_reads_the_contract_headers(key: tuple[str, str]) -> None:
    feed = load_feeds()[key]
    headers = {c.field: c.headers for c in feed.columns}
    for field, chinese in CONTRACT_COLUMNS[key].items():
        assert chinese in headers[field], (field, chinese)
        assert field in headers[field], field  # "the English names are accepted too"
    for field, labels in CONTRACT_LABELS.get(key, {}).items():
        for label, value in labels.items():
            assert feed.labels[field][label] == value


def test_every_category_name_is_a_label_where_departments_write_it() -> None:
    """Files written from the gateway's own words (adapters.samples) read back."""
    feeds = load_feeds()
    civil = feeds[("civil_affairs", "identities")].labels["category"]
    assert {
        civil[CATEGORY_NAMES_ZH[c]] for c in CIVIL_AFFAIRS_CATEGORIES
    } == CIVIL_AFFAIRS_CATEGORIES
    subsidy = feeds[("medical_insurance", "enrollments")].labels["subsidy_category"]
    assert {subsidy[CATEGORY_NAMES_ZH[c]] for c in RELIEF_CATEGORIES} == set(RELIEF_CATEGORIES)


@pytest.mark.parametrize(
    ("new", "old", "replaces"),
    [
        ("MINIMUM_LIVING", "MINIMUM_LIVING_EDGE", True),
        ("MINIMUM_LIVING_EDGE", "MINIMUM_LIVING", True),
        ("EXTREME_POVERTY", "RIGID_EXPENDITURE", True),
        ("MINIMUM_LIVING", "MINIMUM_LIVING", False),  # the same category is no 身份变更
        ("ORPHAN", "MINIMUM_LIVING", False),  # held alongside
        ("SERIOUS_ILLNESS", "MINIMUM_LIVING", False),
    ],
)
def test_identity_change_groups_of_civil_affairs(new: str, old: str, replaces: bool) -> None:
    assert load_feeds()[("civil_affairs", "identities")].replaces(new, old) is replaces


# --------------------------------------------------------------------------- malformed mappings

VALID = """\
[feed]
department = "civil_affairs"
name = "roster"
kind = "identities"
title = "测试名单"

[columns]
name = ["姓名"]
id_number = ["身份证号码"]
region_code = ["行政区划代码"]
category = ["人员类别"]
recognized_on = ["认定日期"]

[labels.category]
"低保" = "MINIMUM_LIVING"
"""

MALFORMED = [
    ("unknown kind", VALID.replace('kind = "identities"', 'kind = "pensions"'), "未知类型"),
    ("unknown department", VALID.replace('"civil_affairs"', '"police"'), "未知部门"),
    ("unknown field", VALID + '\n[columns.salary]\n', "identities 没有字段 salary"),
    ("unknown field in columns",
     VALID.replace('name = ["姓名"]', 'name = ["姓名"]\nsalary = ["工资"]'),
     "identities 没有字段 salary"),
    ("missing required field", VALID.replace('id_number = ["身份证号码"]\n', ""),
     "未映射必需字段 id_number"),
    ("label to an unknown value", VALID.replace('= "MINIMUM_LIVING"', '= "MIN_LIVING"'),
     "labels.category 含未知取值 MIN_LIVING"),
    ("category without recognized_on", VALID.replace('recognized_on = ["认定日期"]\n', ""),
     "映射了 category 就必须映射 recognized_on"),
    ("labelled field without labels", VALID.split("[labels.category]")[0],
     "缺少 [labels.category]"),
    ("labels for a field that takes none", VALID + '\n[labels.name]\n"张三" = "李四"\n',
     "labels 中的 name 不是本类型需要映射取值的字段"),
    ("empty header list", VALID.replace('region_code = ["行政区划代码"]', "region_code = []"),
     "columns.region_code 应为非空的表头名称列表"),
    ("one header for two fields", VALID.replace('region_code = ["行政区划代码"]',
                                                'region_code = ["身份证号码"]'),
     "同时映射到 id_number 和 region_code"),
    ("feed name in Chinese", VALID.replace('name = "roster"', 'name = "名单"'),
     "feed.name 应为英文小写名称"),
    ("no [feed] section", VALID.replace("[feed]", "[fed]"), "缺少 [feed] 段"),
    ("no [columns] section", VALID.replace("[columns]", "[cols]").split("[labels")[0],
     "缺少 [columns] 段"),
    ("unknown category in an exclusive group",
     VALID + '\n[changes]\nexclusive = [["MINIMUM_LIVING", "RICH"]]\n',
     "changes.exclusive 应为救助类别列表的列表"),
    ("changes that is not a table", 'changes = [1]\n' + VALID,
     "changes.exclusive 应为救助类别列表的列表"),
    ("bad TOML", VALID.replace('"低保" = ', '"低保" == '), "不是有效的 TOML"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_mapping_fails_at_load_naming_the_file(
    tmp_path: Path, text: str, reason: str
) -> None:
    (tmp_path / "a_good_one.toml").write_text(VALID, encoding="utf-8")
    broken = tmp_path / "县民政_roster.toml"
    broken.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigurationError) as raised:
        load_feeds([tmp_path])

    assert str(broken) in raised.value.message
    assert reason in raised.value.message
    assert raised.value.code == "CONFIGURATION"


def test_mapping_that_is_not_utf8_fails_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "gbk.toml"
    broken.write_bytes(VALID.encode("gbk"))
    with pytest.raises(ConfigurationError, match=r"gbk\.toml 不是有效的 TOML"):
        load_feeds([tmp_path])


def test_valid_mapping_document_parses() -> None:
    """The base of the malformed cases is itself fine: each case breaks exactly one thing."""
    import tomllib

    feed = parse_feed(tomllib.loads(VALID), source="test")
    assert feed.key == ("civil_affairs", "roster")
    assert feed.labels == {"category": {"低保": "MINIMUM_LIVING"}}


# --------------------------------------------------------------------------- a new feed

# A fictional 人社 feed: people whose pension contribution the government pays (代缴), by the
# relief identity that entitles them. Written as a deployment would, nothing else changes.
PENSION_MAPPING = """\
[feed]
department = "human_resources"
name = "pension_subsidies"
kind = "identities"
title = "城乡居民养老保险代缴对象"

[columns]
name = ["姓名"]
id_number = ["证件号码"]
region_code = ["参保地区划"]
category = ["代缴类别"]
recognized_on = ["代缴开始日期"]
exited_on = ["代缴终止日期"]

[labels.category]
"特困" = "EXTREME_POVERTY"
"低保" = "MINIMUM_LIVING"
"其他" = "-"
"""


def _pension_rows() -> list[dict[str, str]]:
    a, b, c = someone(1), someone(2), someone(3)
    return [
        {"姓名": a.name, "证件号码": a.id_number, "参保地区划": COUNTY, "代缴类别": "特困",
         "代缴开始日期": "2024年1月1日"},
        {"姓名": b.name, "证件号码": b.id_number, "参保地区划": COUNTY, "代缴类别": "低保",
         "代缴开始日期": "2024-01-01", "代缴终止日期": "2026-06-30"},
        {"姓名": c.name, "证件号码": c.id_number, "参保地区划": COUNTY, "代缴类别": "其他",
         "代缴开始日期": "2024-01-01"},
        {"姓名": c.name, "证件号码": c.id_number, "参保地区划": COUNTY, "代缴类别": "残疾",
         "代缴开始日期": "2024-01-01"},
    ]  # fmt: skip


@pytest.fixture
def mappings_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    directory.mkdir()
    (directory / "human_resources_pension_subsidies.toml").write_text(
        PENSION_MAPPING, encoding="utf-8"
    )
    return directory


async def test_mapping_in_an_extra_directory_adds_a_feed_the_pipeline_ingests(
    db: IngestDB, mappings_dir: Path
) -> None:
    feeds = load_feeds([mappings_dir])
    assert set(feeds) == SHIPPED | {("human_resources", "pension_subsidies")}
    a, b, c = someone(1), someone(2), someone(3)
    path = db.file(_pension_rows())

    result = await db.load_file("human_resources", "pension_subsidies", path, feeds=feeds)

    assert nonzero(result) == {
        "rows_total": 4, "rows_accepted": 3, "rows_rejected": 1, "added": 2, "exited": 1,
    }  # fmt: skip
    assert [(r.line, r.column, r.reason) for r in result.rejections] == [
        (5, "代缴类别", "未知的人员类别：残疾")
    ]
    assert await db.status_periods(a) == [
        ("EXTREME_POVERTY", "human_resources", date(2024, 1, 1), None)
    ]
    assert await db.status_periods(b) == [
        ("MINIMUM_LIVING", "human_resources", date(2024, 1, 1), date(2026, 6, 30))
    ]
    assert await db.status_periods(c) == []  # "其他" is known, but not an identity
    assert (await db.batch(result.batch_id)).department == "human_resources"

    again = db.file(_pension_rows(), encoding="gbk")
    reloaded = await db.load_file("human_resources", "pension_subsidies", again, feeds=feeds)
    assert nonzero(reloaded) == {
        "rows_total": 4, "rows_accepted": 3, "rows_rejected": 1, "rows_unchanged": 3,
    }  # fmt: skip


async def test_cli_reads_the_deployments_mappings_dir(
    db: IngestDB, mappings_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data_dir = db.tmp / "data"
    db.keyring.save(data_dir / "keyring.json")
    monkeypatch.setenv("RELIEF_DATABASE_URL", db.url)
    monkeypatch.setenv("RELIEF_MAPPINGS_DIR", str(mappings_dir))
    path = db.file(_pension_rows())
    argv = ["ingest", "--source", "human_resources", "--feed", "pension_subsidies", str(path),
            "--json", "--data-dir", str(data_dir)]  # fmt: skip

    code = await asyncio.to_thread(main, argv)

    out = capsys.readouterr().out
    assert code == 0
    [result] = json.loads(out)
    assert (result["department"], result["feed"], result["status"]) == (
        "human_resources",
        "pension_subsidies",
        "COMPLETED",
    )
    assert (result["counts"]["added"], result["counts"]["exited"]) == (2, 1)
    assert await db.status_periods(someone(1)) == [
        ("EXTREME_POVERTY", "human_resources", date(2024, 1, 1), None)
    ]


def test_deployment_mapping_replaces_a_shipped_one(tmp_path: Path) -> None:
    county_variant = VALID.replace('name = "roster"', 'name = "identities"').replace(
        'category = ["人员类别"]', 'category = ["人员类别", "救助对象类型"]'
    )
    (tmp_path / "civil_affairs_identities.toml").write_text(county_variant, encoding="utf-8")

    feeds = load_feeds([tmp_path])

    assert set(feeds) == SHIPPED
    feed = feeds[("civil_affairs", "identities")]
    assert feed.source == str(tmp_path / "civil_affairs_identities.toml")
    assert "救助对象类型" in {h for c in feed.columns for h in c.headers}
    assert feed.labels["category"] == {"低保": "MINIMUM_LIVING"}
    assert NOT_A_CATEGORY not in feed.labels["category"].values()
