"""Feed mappings: how one department's file columns and labels become canonical records.

A feed is a TOML file (``adapters/mappings/*.toml``, plus any in ``RELIEF_MAPPINGS_DIR``)::

    [feed]
    department = "civil_affairs"     # DOMAIN.md department code
    name = "identities"              # the --feed name
    kind = "identities"              # which canonical records it yields (see KINDS)
    title = "民政救助对象名单"

    [columns]                        # canonical field = the headers departments use for it
    name = ["姓名", "name"]
    category = ["人员类别", "category"]

    [labels.category]                # the department's words → canonical values
    "低保对象" = "MINIMUM_LIVING"

    [changes]                        # categories that replace one another (身份变更)
    exclusive = [["MINIMUM_LIVING", "MINIMUM_LIVING_EDGE"]]

Adding a department (disabled federation, public security) is writing one of these, not code.
Mappings are validated when loaded: a typo in a field, kind or label fails at start-up with
the file named, never half-way through a county's monthly file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from adapters.readers import ColumnSpec, normalize_header
from gateway.domain.departments import RELIEF_CATEGORIES, Department
from gateway.domain.errors import ConfigurationError

# A label mapped to this is "known, but not a relief identity" (e.g. 残疾等级 三级): the
# person is recorded, no relief status is created.
NOT_A_CATEGORY = "-"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    required: bool
    labels: frozenset[str] = frozenset()  # canonical values a labelled field may take


_CATEGORY_VALUES = frozenset(RELIEF_CATEGORIES)

# kind → canonical field → whether a file must have it, and the values its labels map to.
KINDS: dict[str, dict[str, FieldSpec]] = {
    # Person facts, and the relief identity the row recognises or exits (when the feed has a
    # category column; a household-registration feed has none and yields people only).
    "identities": {
        "name": FieldSpec(required=True),
        "id_number": FieldSpec(required=True),
        "region_code": FieldSpec(required=True),
        "category": FieldSpec(required=False, labels=_CATEGORY_VALUES | {NOT_A_CATEGORY}),
        "recognized_on": FieldSpec(required=False),
        "exited_on": FieldSpec(required=False),
        "birth_date": FieldSpec(required=False),
        "phone": FieldSpec(required=False),
        "address": FieldSpec(required=False),
        "household_id": FieldSpec(required=False),
        "relation": FieldSpec(required=False),
    },
    "enrollments": {
        "name": FieldSpec(required=True),
        "id_number": FieldSpec(required=True),
        "year": FieldSpec(required=True),
        "insurance_type": FieldSpec(required=True, labels=frozenset({"RESIDENT", "EMPLOYEE"})),
        "status": FieldSpec(required=True, labels=frozenset({"ACTIVE", "SUSPENDED", "TERMINATED"})),
        "region_code": FieldSpec(required=True),
        "subsidy_category": FieldSpec(required=False, labels=_CATEGORY_VALUES),
        "subsidy_amount": FieldSpec(required=False),
    },
    "settlements": {
        "name": FieldSpec(required=True),
        "id_number": FieldSpec(required=True),
        "settled_on": FieldSpec(required=True),
        "visit_type": FieldSpec(required=True, labels=frozenset({"INPATIENT", "OUTPATIENT"})),
        "total_cost": FieldSpec(required=True),
        "basic_paid": FieldSpec(required=True),
        "critical_paid": FieldSpec(required=True),
        "assistance_paid": FieldSpec(required=True),
        "personal_burden": FieldSpec(required=True),
        "settlement_id": FieldSpec(required=True),
    },
    "vital_events": {
        "name": FieldSpec(required=True),
        "id_number": FieldSpec(required=True),
        "event": FieldSpec(required=True, labels=frozenset({"DEATH", "BIRTH"})),
        "event_date": FieldSpec(required=True),
    },
}

# Fields that become required once the feed maps them (a category needs its date).
_REQUIRED_WITH = {"category": ("recognized_on",)}

# The Chinese name of each canonical field, for reports ("缺少必需列：身份证号码").
FIELD_NAMES_ZH = {
    "name": "姓名",
    "id_number": "身份证号码",
    "region_code": "行政区划代码",
    "category": "人员类别",
    "recognized_on": "认定日期",
    "exited_on": "退出日期",
    "birth_date": "出生日期",
    "phone": "联系电话",
    "address": "家庭住址",
    "household_id": "户编号",
    "relation": "与户主关系",
    "year": "参保年度",
    "insurance_type": "险种类型",
    "status": "参保状态",
    "subsidy_category": "资助类别",
    "subsidy_amount": "资助金额",
    "settled_on": "结算日期",
    "visit_type": "就诊类型",
    "total_cost": "医疗总费用",
    "basic_paid": "基本医保支付",
    "critical_paid": "大病保险支付",
    "assistance_paid": "医疗救助支付",
    "personal_burden": "个人负担",
    "settlement_id": "结算流水号",
    "event": "事件类型",
    "event_date": "事件日期",
}


@dataclass(frozen=True, slots=True)
class Feed:
    """One department's feed: where its columns and labels go."""

    department: Department
    name: str
    kind: str
    title: str
    columns: tuple[ColumnSpec, ...]
    labels: Mapping[str, Mapping[str, str]]
    exclusive: tuple[frozenset[str], ...] = ()
    source: str = ""
    mapped: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> tuple[str, str]:
        return (self.department.value, self.name)

    def replaces(self, new: str, old: str) -> bool:
        """Whether recognising ``new`` ends ``old`` (身份变更) rather than adding to it."""
        return new != old and any(new in group and old in group for group in self.exclusive)


def parse_feed(document: Mapping[str, Any], *, source: str) -> Feed:
    """Validate one mapping document. Raises ConfigurationError naming ``source``."""

    def fail(reason: str) -> ConfigurationError:
        return ConfigurationError(f"数据源映射 {source} 无效：{reason}")

    head = document.get("feed")
    if not isinstance(head, dict):
        raise fail("缺少 [feed] 段")
    try:
        department = Department(str(head.get("department", "")))
    except ValueError:
        raise fail(f"未知部门 {head.get('department')!r}") from None
    name, kind, title = (str(head.get(key, "")) for key in ("name", "kind", "title"))
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise fail("feed.name 应为英文小写名称, 如 identities")
    if kind not in KINDS:
        raise fail(f"未知类型 kind={kind!r}, 应为 {', '.join(sorted(KINDS))} 之一")
    schema = KINDS[kind]

    raw_columns = document.get("columns")
    if not isinstance(raw_columns, dict) or not raw_columns:
        raise fail("缺少 [columns] 段")
    unknown = sorted(set(raw_columns) - schema.keys())
    if unknown:
        raise fail(f"{kind} 没有字段 {', '.join(unknown)}")
    missing = sorted(f for f, spec in schema.items() if spec.required and f not in raw_columns)
    if missing:
        raise fail(f"未映射必需字段 {', '.join(missing)}")
    mapped = frozenset(raw_columns)
    required = {f for f, spec in schema.items() if spec.required}
    for present, needs in _REQUIRED_WITH.items():
        if present in mapped:
            absent = [n for n in needs if n not in mapped]
            if absent:
                raise fail(f"映射了 {present} 就必须映射 {', '.join(absent)}")
            required.update(needs)
            required.add(present)
    columns: list[ColumnSpec] = []
    for field_name, headers in raw_columns.items():
        if isinstance(headers, str):
            headers = [headers]
        if (
            not isinstance(headers, list)
            or not headers
            or not all(isinstance(h, str) and h.strip() for h in headers)
        ):
            raise fail(f"columns.{field_name} 应为非空的表头名称列表")
        columns.append(ColumnSpec(field_name, tuple(headers), field_name in required))
    # One header for two fields would make every file of the feed ambiguous (the reader refuses
    # such specs with a ValueError): refuse it here, at start-up, with the file named.
    owners: dict[str, str] = {}
    for column in columns:
        for header in column.headers:
            owner = owners.setdefault(normalize_header(header), column.field)
            if owner != column.field:
                raise fail(f"表头 {header!r} 同时映射到 {owner} 和 {column.field}")

    raw_labels = document.get("labels", {})
    if not isinstance(raw_labels, dict):
        raise fail("[labels] 应为表")
    labels: dict[str, dict[str, str]] = {}
    for field_name, spec in schema.items():
        if not spec.labels or field_name not in mapped:
            continue
        table = raw_labels.get(field_name)
        if not isinstance(table, dict) or not table:
            raise fail(f"缺少 [labels.{field_name}]: 该字段的取值须逐一映射")
        bad = sorted(v for v in table.values() if v not in spec.labels)
        if bad:
            raise fail(f"labels.{field_name} 含未知取值 {', '.join(map(str, bad))}")
        labels[field_name] = {str(label): str(value) for label, value in table.items()}
    extra = sorted(set(raw_labels) - labels.keys())
    if extra:
        raise fail(f"labels 中的 {', '.join(extra)} 不是本类型需要映射取值的字段")

    changes = document.get("changes", {})
    groups = changes.get("exclusive", []) if isinstance(changes, dict) else None
    if not isinstance(groups, list):  # `changes = [...]` used to crash with AttributeError
        raise fail("changes.exclusive 应为救助类别列表的列表")
    exclusive: list[frozenset[str]] = []
    for group in groups:
        if not isinstance(group, list) or not set(group) <= _CATEGORY_VALUES:
            raise fail("changes.exclusive 应为救助类别列表的列表")
        exclusive.append(frozenset(group))

    return Feed(
        department=department,
        name=name,
        kind=kind,
        title=title or name,
        columns=tuple(columns),
        labels=labels,
        exclusive=tuple(exclusive),
        source=source,
        mapped=mapped,
    )


def _documents(extra_dirs: Iterable[Path]) -> Iterable[tuple[str, bytes]]:
    shipped = resources.files("adapters").joinpath("mappings")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            yield f"adapters/mappings/{entry.name}", entry.read_bytes()
    for directory in extra_dirs:
        for path in sorted(directory.glob("*.toml")):
            yield str(path), path.read_bytes()


def load_feeds(extra_dirs: Iterable[Path] = ()) -> dict[tuple[str, str], Feed]:
    """Every feed: the shipped mappings, then a deployment's own (which may replace one)."""
    feeds: dict[tuple[str, str], Feed] = {}
    for source, content in _documents(extra_dirs):
        try:
            document = tomllib.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"数据源映射 {source} 不是有效的 TOML：{exc}") from None
        feed = parse_feed(document, source=source)
        feeds[feed.key] = feed
    return feeds
