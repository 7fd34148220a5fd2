"""GraphQL's own messages reach the caller in Chinese (schema.messages), with the names kept.

Two tables: every message family a caller can provoke, sent over ``POST /graphql`` and over
GraphQL-over-HTTP ``GET`` (``application/graphql-response+json``: 400, no data) with the same
``extensions.code`` as before; and one English sample of every template graphql-core 3.3 and
strawberry can produce, including those this schema cannot reach over HTTP (subscriptions,
@defer/@stream, OneOf inputs, fragment arguments, production's disabled introspection).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from schema.messages import TEMPLATES, UNKNOWN_LEAD, chinese, translated
from tests.harness import Harness

GRAPHQL_RESPONSE = "application/graphql-response+json"

# Words a translated message may still hold: GraphQL's own type and keyword names and what the
# caller typed (quoted names and values are removed before the check).
KEPT_WORDS = {"Int", "Float", "String", "Boolean", "ID", "OneOf", "Unicode", "GraphQL", "UUID"}
KEPT_WORDS |= {"null", "true", "false", "label", "schema", "query", "mutation", "subscription"}
KEPT_WORDS |= {"introspection", "inline", "fragment", "on", "Date", "DateTime", "Decimal", "JSON"}
KEPT_WORDS |= {"Time", "YYYY", "MM", "DD", "HH", "SS", "ISO", "T08", "skip", "include", "defer"}
KEPT_WORDS |= {"stream", "Name", "GlobalID"}


def english_left(message: str) -> list[str]:
    """English words of a message outside quotes, values, names and GraphQL's vocabulary."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\{[^{}]*\}|\$\w+|@\w+|\w*\([^()]*\)", " ", message)
    text = re.sub(r"\bU\+[0-9A-F]{4,6}\b", " ", text)  # a character, as graphql-core names it
    text = re.sub(r"\b[A-Z][A-Za-z]*\.[a-z]\w*\b", " ", text)  # Type.field
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*", text)
    return [w for w in words if w not in KEPT_WORDS and not re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*", w)]


# --------------------------------------------------------------------------- over HTTP

# (id, query, variables, code, words the Chinese message holds)
FAMILIES: list[tuple[str, str, dict[str, Any] | None, str, tuple[str, ...]]] = [
    (
        "unknown-field-with-suggestion",
        "{ persons { edges { node { nam } } } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("类型 'Person' 上没有字段 'nam'", "是否要找 'name'"),
    ),
    (
        "unknown-root-field-suggestions",
        "{ persn { id } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("没有字段 'persn'", "'person' 或 'persons'"),
    ),
    (
        "unknown-argument",
        "{ persons(frist: 1) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("字段 'Query.persons' 没有参数 'frist'", "'first'"),
    ),
    (
        "missing-required-argument",
        "{ person { name } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("缺少字段 'Query.person' 的必填参数 'idNumber'", "'String!'"),
    ),
    (
        "required-variable-not-provided",
        "query Q($id: String!) { person(idNumber: $id) { name } }",
        {},
        "BAD_USER_INPUT",
        ("变量 '$id'", "缺少必填值", "'String!'"),
    ),
    (
        "variable-of-wrong-type",
        "query Q($n: Int) { persons(first: $n) { totalCount } }",
        {"n": "ten"},
        "BAD_USER_INPUT",
        ("变量 '$n' 的值无效", "Int (整数) 不能表示非整数值", "'ten'"),
    ),
    (
        "variable-int-out-of-range",
        "query Q($n: Int) { persons(first: $n) { totalCount } }",
        {"n": 99999999999},
        "BAD_USER_INPUT",
        ("32 位有符号整数", "99999999999"),
    ),
    (
        "variable-unknown-input-field",
        "query Q($f: PersonFilter) { persons(filter: $f) { totalCount } }",
        {"f": {"regionPrefx": "37"}},
        "BAD_USER_INPUT",
        ("类型 'PersonFilter' 没有字段 'regionPrefx'", "是否要找 'regionPrefix'"),
    ),
    (
        "variable-not-an-object",
        "query Q($f: PersonFilter) { persons(filter: $f) { totalCount } }",
        {"f": "x"},
        "BAD_USER_INPUT",
        ("类型 'PersonFilter' 的值应为对象",),
    ),
    (
        "variable-bad-enum",
        "query Q($c: ReliefCategory) { persons(filter: {category: $c}) { totalCount } }",
        {"c": "POOR"},
        "BAD_USER_INPUT",
        ("枚举 'ReliefCategory' 中没有值 'POOR'",),
    ),
    (
        "variable-bad-date",
        "query Q($d: Date) { persons(filter: {activeOn: $d}) { totalCount } }",
        {"d": "2026-13-01"},
        "BAD_USER_INPUT",
        ('值 "2026-13-01" 不是有效的 Date', "YYYY-MM-DD"),
    ),
    (
        "literal-of-wrong-type",
        '{ persons(first: "a") { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("Int (整数) 不能表示非整数值",),
    ),
    (
        "literal-enum-quoted",
        '{ persons(filter: {category: "ORPHAN"}) { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("枚举 'ReliefCategory'", "ORPHAN"),
    ),
    (
        "literal-enum-typo",
        "{ persons(filter: {category: ORPHN}) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("枚举 'ReliefCategory' 中没有值 'ORPHN'", "是否要找枚举值 'ORPHAN'"),
    ),
    (
        "literal-unknown-input-field",
        '{ persons(filter: {regionPrefx: "37"}) { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("类型 'PersonFilter' 没有字段 'regionPrefx'",),
    ),
    (
        "literal-bad-date",
        '{ persons(filter: {activeOn: "x"}) { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ('值 "x" 不是有效的 Date',),
    ),
    (
        "syntax-expected-name",
        "{ persons(first: 1) { totalCount }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("语法错误", "此处应为 名称, 实际为 文档结尾"),
    ),
    (
        "syntax-unexpected-token",
        "{ persons(first: 1) { totalCount } } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("语法错误: 意外的 '}'",),
    ),
    (
        "syntax-single-quote",
        "{ person(idNumber: 'x') { name } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("语法错误", "双引号"),
    ),
    (
        "syntax-unterminated-string",
        '{ person(idNumber: "x) { name } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("语法错误: 字符串缺少结尾的双引号",),
    ),
    (
        "leaf-needs-selection",
        "{ persons }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("字段 'persons' 的类型 'PersonConnection!' 是对象", "'persons { ... }'"),
    ),
    (
        "scalar-has-no-selection",
        "{ me { region { x } } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("字段 'region' 的类型 'String!' 没有子字段",),
    ),
    (
        "unused-variable",
        "query Q($x: Int) { me { region } }",
        None,
        "BAD_USER_INPUT",  # graphql-core's text starts "Variable '$": the code stays as it was
        ("变量 '$x' 在操作 'Q' 中声明了但从未使用",),
    ),
    (
        "undefined-variable",
        "query Q { persons(first: $n) { totalCount } }",
        None,
        "BAD_USER_INPUT",
        ("变量 '$n' 未在操作 'Q' 中声明",),
    ),
    (
        "variable-in-wrong-position",
        "query Q($n: String) { persons(first: $n) { totalCount } }",
        None,
        "BAD_USER_INPUT",
        ("变量 '$n' 的类型 'String' 与此处要求的类型 'Int!' 不符",),
    ),
    (
        "unknown-directive",
        "{ me { region @foo } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("未知的指令 '@foo'",),
    ),
    (
        "directive-missing-argument",
        "{ me { region @skip } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("缺少指令 '@skip' 的必填参数 'if'",),
    ),
    (
        "directive-wrong-location",
        "query Q @skip(if: true) { me { region } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("指令 '@skip' 不能用在查询操作 (query)上",),
    ),
    (
        "conflicting-aliases",
        "{ a: me { region } a: persons { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("字段 'a' 冲突: 'me' 和 'persons' 是不同的字段", "别名"),
    ),
    (
        "conflicting-arguments",
        "{ persons(first: 1) { totalCount } persons(first: 2) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("字段 'persons' 冲突: 两者的参数不同",),
    ),
    (
        "duplicate-operation-name",
        "query A { me { region } } query A { me { region } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("操作名 'A' 重复",),
    ),
    (
        "anonymous-among-several",
        "{ me { region } } query A { me { region } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("不能有匿名操作",),
    ),
    (
        "unknown-fragment",
        "{ ...F }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("未定义的片段 'F'",),
    ),
    (
        "unused-fragment-unknown-type",
        "{ me { region } } fragment F on Me { x }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("未知的类型 'Me'",),
    ),
    (
        "impossible-fragment-spread",
        "{ me { ... on Person { id } } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("类型 'Principal' 的对象不可能是类型 'Person'",),
    ),
    (
        "fragment-cycle",
        "{ me { ...A } } fragment A on Principal { ...B } fragment B on Principal { ...A }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("展开了自身 (循环引用)",),
    ),
    (
        "duplicate-argument",
        "{ persons(first: 1, first: 2) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("参数 'first' 重复",),
    ),
    (
        "subscription-not-supported",
        "subscription S { me { region } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("本接口不支持订阅 (subscription)操作",),
    ),
    (
        "not-executable-definition",
        "{ me { region } } type Extra { id: ID }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        ("定义 'Extra' 不可执行",),
    ),
]


def _token(harness: Harness) -> str:
    return harness.token("civil_affairs", "county", harness.busiest_county())


def _check(body: dict[str, Any], code: str, words: tuple[str, ...]) -> None:
    errors = body["errors"]
    assert errors, body
    assert {e["extensions"]["code"] for e in errors} == {code}, errors
    message = " | ".join(e["message"] for e in errors)
    for word in words:
        assert word in message, message
    for error in errors:
        # The one error shape: message, extensions {code, requestId}, locations where known.
        assert set(error) <= {"message", "locations", "path", "extensions"}, error
        assert set(error["extensions"]) == {"code", "requestId"}, error
        assert english_left(error["message"]) == [], error["message"]


@pytest.mark.parametrize(
    ("query", "variables", "code", "words"),
    [case[1:] for case in FAMILIES],
    ids=[case[0] for case in FAMILIES],
)
async def test_over_post(
    harness: Harness,
    query: str,
    variables: dict[str, Any] | None,
    code: str,
    words: tuple[str, ...],
) -> None:
    response = await harness.post(_token(harness), query, variables)
    assert response.status_code == 200
    _check(response.json(), code, words)


# GET runs queries only: a subscription document is refused 405 before it is validated.
QUERIES = [case for case in FAMILIES if not case[1].startswith("subscription")]


@pytest.mark.parametrize(
    ("query", "variables", "code", "words"),
    [case[1:] for case in QUERIES],
    ids=[case[0] for case in QUERIES],
)
async def test_over_graphql_over_http_get(
    harness: Harness,
    query: str,
    variables: dict[str, Any] | None,
    code: str,
    words: tuple[str, ...],
) -> None:
    """GraphQL over HTTP: nothing executed, 400 under the new media type, same Chinese text."""
    params = {"query": query}
    if variables is not None:
        params["variables"] = json.dumps(variables)
    response = await harness.client.get(
        "/graphql",
        params=params,
        headers={
            "Authorization": f"Bearer {_token(harness)}",
            "X-Purpose": "supervision",
            "Accept": GRAPHQL_RESPONSE,
        },
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    _check(body, code, words)


# --------------------------------------------------------------------------- every template

# One English sample per template (as graphql-core / strawberry write it) → words of its text.
SAMPLES: list[tuple[str, tuple[str, ...]]] = [
    ("Syntax Error: Expected Name, found <EOF>.", ("语法错误", "名称", "文档结尾")),
    ("Syntax Error: Expected 'on', found Name 'Person'.", ("'on'", "名称 'Person'")),
    ("Syntax Error: Unexpected '..', did you mean '...'?", ("'...'",)),
    (
        "Syntax Error: Unexpected single quote character ('), did you mean to use a double "
        'quote (")?',
        ("双引号",),
    ),
    (
        "Syntax Error: Unexpected description, descriptions are not supported on shorthand "
        "queries.",
        ("描述",),
    ),
    (
        "Syntax Error: Unexpected description, only GraphQL definitions support descriptions.",
        ("描述",),
    ),
    ("Syntax Error: Unexpected variable '$x' in constant value.", ("'$x'",)),
    ("Syntax Error: Unexpected character: U+0007.", ("意外的字符: U+0007",)),
    ("Syntax Error: Unexpected Int '1'.", ("意外的 整数 '1'",)),
    ("Syntax Error: Invalid character: U+D800.", ("无效字符",)),
    ("Syntax Error: Invalid character within String: U+0007.", ("字符串中有无效字符",)),
    ("Syntax Error: Invalid number, expected digit before '.', did you mean '0.5'?", ("'0.5'",)),
    ("Syntax Error: Invalid number, unexpected digit after 0: '1'.", ("0 之后",)),
    ("Syntax Error: Invalid number, expected digit but got: 'x'.", ("应为数字",)),
    ("Syntax Error: Invalid Unicode escape sequence: '\\u12'.", ("Unicode 转义序列",)),
    ("Syntax Error: Invalid character escape sequence: '\\q'.", ("字符转义序列",)),
    ("Syntax Error: Unterminated string.", ("双引号",)),
    ("Syntax Error: Name 'true' is reserved and cannot be used for an enum value.", ("保留字",)),
    ("Syntax Error: Document contains more than 100 tokens. Parsing aborted.", ("100",)),
    ("Syntax Error: Document contains more than 10 comments. Parsing aborted.", ("注释",)),
    ("Syntax Error: Source contains more than 10 code points. Parsing aborted.", ("字符",)),
    ("Syntax Error: Document is nested too deeply. Parsing aborted.", ("嵌套过深",)),
    ("The 'Extra' definition is not executable.", ("'Extra'",)),
    ("The schema definition is not executable.", ("schema",)),
    ("Cannot query field 'x' on type 'Y'.", ("类型 'Y' 上没有字段 'x'",)),
    (
        "Cannot query field 'x' on type 'Node'. Did you mean to use an inline fragment on 'A' or "
        "'B'?",
        ("内联片段", "'A' 或 'B'"),
    ),
    ("Cannot query field 'x' on type 'Y'. Did you mean 'a', 'b', or 'c'?", ("'a'、'b' 或 'c'",)),
    ("Fragment cannot condition on non composite type 'String'.", ("'String'",)),
    ("Fragment 'F' cannot condition on non composite type 'String'.", ("片段 'F'",)),
    ("Unknown argument 'x' on directive '@skip'.", ("指令 '@skip' 没有参数 'x'",)),
    ("Unknown argument 'x' on fragment 'F'.", ("片段 'F' 没有参数 'x'",)),
    ("Unknown argument 'x' on field 'Query.me'. Did you mean 'y'?", ("'Query.me'", "'y'")),
    ("Unknown directive '@foo'.", ("'@foo'",)),
    ("Directive '@skip' may not be used on query.", ("查询操作",)),
    ("Directive '@include' may not be used on fragment definition.", ("片段定义",)),
    ("Unknown fragment 'F'.", ("'F'",)),
    ("The mutation operation is not supported by the schema.", ("变更 (mutation)",)),
    ("Unknown type 'Persn'. Did you mean 'Person'?", ("'Person'",)),
    ("This anonymous operation must be the only defined operation.", ("匿名",)),
    ("Maximum introspection depth exceeded", ("嵌套过深",)),
    ("Cannot spread fragment 'A' within itself via 'B', 'C'.", ("'B', 'C'",)),
    ("Cannot spread fragment 'A' within itself.", ("'A'",)),
    ("Variable '$x' is not defined by operation 'Q'.", ("'Q'",)),
    ("Variable '$x' is not defined.", ("未声明",)),
    ("Fragment 'F' is never used.", ("从未使用",)),
    ("Variable '$x' is never used in fragment 'F'.", ("片段 'F'",)),
    ("Variable '$x' is never used in operation 'Q'.", ("操作 'Q'",)),
    ("Variable '$x' is never used.", ("从未使用",)),
    (
        "Fields 'a' conflict because 'b' and 'c' are different fields. Use different aliases on "
        "the fields to fetch both if this was intentional.",
        ("'b' 和 'c'",),
    ),
    (
        "Fields 'a' conflict because they have differing arguments. Use different aliases on the "
        "fields to fetch both if this was intentional.",
        ("参数不同",),
    ),
    (
        "Fields 'a' conflict because they have overlapping stream directives. Use different "
        "aliases on the fields to fetch both if this was intentional.",
        ("@stream",),
    ),
    (
        "Fields 'a' conflict because they return conflicting types 'Int' and 'String'. Use "
        "different aliases on the fields to fetch both if this was intentional.",
        ("不一致",),
    ),
    (
        "Fields 'a' conflict because subfields 'b' conflict because they have differing arguments "
        "and subfields 'c' conflict because 'd' and 'e' are different fields. Use different "
        "aliases on the fields to fetch both if this was intentional.",
        ("子字段 'b'", "子字段 'c'"),
    ),
    (
        "Spreads 'F' conflict because F(a: 1) and F(a: 2) have different fragment arguments.",
        ("片段参数",),
    ),
    (
        "Fragment cannot be spread here as objects of type 'A' can never be of type 'B'.",
        ("'A'", "'B'"),
    ),
    (
        "Fragment 'F' cannot be spread here as objects of type 'A' can never be of type 'B'.",
        ("片段 'F'",),
    ),
    (
        "Argument '@skip(if:)' of type 'Boolean!' is required, but it was not provided.",
        ("'@skip'", "'if'"),
    ),
    (
        "Argument 'Query.person(idNumber:)' of type 'String!' is required, but it was not "
        "provided.",
        ("'Query.person'", "'idNumber'"),
    ),
    (
        "Fragment 'F' argument 'a' of type 'Int!' is required, but it was not provided.",
        ("片段 'F'",),
    ),
    (
        "Field 'region' must not have a selection since type 'String!' has no subfields.",
        ("没有子字段",),
    ),
    (
        "Field 'me' of type 'Principal!' must have a selection of subfields. Did you mean "
        "'me { ... }'?",
        ("'me { ... }'",),
    ),
    ("Field 'me' of type 'Principal!' must have at least one field selected.", ("至少",)),
    (
        "Anonymous Subscription must not use `@skip` or `@include` directives in the top level "
        "selection.",
        ("匿名订阅",),
    ),
    ("Subscription 'S' must select one top level field.", ("订阅 'S'",)),
    ("Subscription 'S' must select only one top level field.", ("只能选择一个",)),
    ("Anonymous Subscription must not select an introspection top level field.", ("内省",)),
    ("There can be only one argument named 'a'.", ("'a'",)),
    ("The directive '@skip' can only be used once at this location.", ("只能使用一次",)),
    ("There can be only one fragment named 'F'.", ("'F'",)),
    ("There can be only one input field named 'f'.", ("'f'",)),
    ("There can be only one operation named 'Q'.", ("'Q'",)),
    ("There can be only one variable named '$x'.", ("'$x'",)),
    ("Variable '$x' cannot be non-input type 'Person'.", ("不是输入类型",)),
    ("Variable '$x' of type 'String' used in position expecting type 'Int'.", ("不符",)),
    (
        "Variable '$x' is of type 'String' but must be non-nullable to be used for OneOf Input "
        "Object 'In'.",
        ("OneOf",),
    ),
    ("Defer directive label argument must be a static string.", ("label",)),
    ("Defer/Stream directive label argument must be unique.", ("label",)),
    ("Stream directive cannot be used on root subscription type 'Subscription'.", ("@stream",)),
    ("Defer directive cannot be used on root mutation type 'Mutation'.", ("@defer",)),
    ("Stream directive cannot be used on non-list field 'me' on type 'Query'.", ("非列表字段",)),
    (
        "GraphQL introspection has been disabled, but the requested query contained the field "
        "'__schema'.",
        ("'__schema'",),
    ),
    ("Too many validation errors, error limit reached. Validation aborted.", ("错误过多",)),
    (
        "Too many errors processing variables, error limit reached. Execution aborted.",
        ("变量错误过多",),
    ),
    ("Variable values are nested too deeply.", ("嵌套过深",)),
    (
        "Variable '$f' has invalid default value at .regionPrefix: String cannot represent a non "
        "string value: 1",
        ("默认值 (位置 regionPrefix)", "String (字符串)"),
    ),
    (
        "Variable '$f' has invalid value at .a[0]: Expected value of non-null type 'Int!' not "
        "to be None.",
        ("(位置 a[0])", "不能为 null"),
    ),
    (
        "Variable '$x' defined by fragment 'F' has invalid default value: Int cannot represent "
        "non-integer value: 'a'",
        ("片段 'F'",),
    ),
    (
        "Variable '$x' defined by fragment 'F' has invalid value: Int cannot represent non-integer "
        "value: 'a'",
        ("片段 'F'",),
    ),
    (
        "Variable '$x' defined by fragment 'F' of required type 'Int!' was not provided.",
        ("片段 'F'",),
    ),
    (
        "Argument 'first' has invalid default value: Int cannot represent non-integer value: 'a'",
        ("参数 'first'",),
    ),
    (
        "Argument 'first' has invalid value: Int cannot represent non-integer value: 'a'",
        ("参数 'first'",),
    ),
    ("Argument 'first' of required type 'Int!' was not provided.", ("缺少必填参数 'first'",)),
    (
        "Variable '$x' expected value of type 'Person' which cannot be used as an input type.",
        ("不能用作输入类型",),
    ),
    ("Expected a value of non-null type 'Int!' to be provided.", ("缺少必填值",)),
    ("Expected value of non-null type 'Int!' not to be None.", ("null",)),
    ("Expected value of type 'PersonFilter' to be an object, found: 1.", ("对象",)),
    ("Expected value of type 'In' to include required field 'a', found: {}.", ("必填字段 'a'",)),
    (
        "Expected value of type 'In' not to include unknown field 'b'. Did you mean 'a'? Found: "
        "{b: 1}.",
        ("是否要找 'a'",),
    ),
    ("Expected value of type 'In' not to include unknown field 'b', found: {b: 1}.", ("'b'",)),
    (
        "Within OneOf Input Object type 'In', exactly one field must be specified, and the value "
        "for that field must be non-null.",
        ("恰好",),
    ),
    ("Expected value of type 'Date', but encountered error 'bad'; found: \"x\".", ("'Date'",)),
    ("Expected value of type 'Date', found: \"x\".", ("'Date'",)),
    ("Expected variable '$x' provided to type 'Int' to provide a runtime value.", ("没有提供",)),
    ("Expected variable '$x' provided to non-null type 'Int!' not to be None.", ("null",)),
    (
        "Expected variable '$x' provided to field 'a' for OneOf Input Object type 'In' to "
        "provide a runtime value.",
        ("OneOf",),
    ),
    (
        "Expected variable '$x' provided to field 'a' for OneOf Input Object type 'In' not to be "
        "None.",
        ("OneOf",),
    ),
    ("Int cannot represent non-integer value: 'a'", ("整数",)),
    ("Int cannot represent non 32-bit signed integer value: 2147483648", ("32 位",)),
    ("Float cannot represent non numeric value: 'a'", ("浮点数",)),
    ("String cannot represent a non string value: 1", ("字符串",)),
    ("String cannot represent value: {}", ("字符串",)),
    ("Boolean cannot represent a non boolean value: 'yes'", ("true 或 false",)),
    ("ID cannot represent a non-string and non-integer value: 1.5", ("编号",)),
    ("ID cannot represent value: []", ("编号",)),
    ("Value 'POOR' does not exist in 'ReliefCategory' enum.", ("'POOR'",)),
    (
        "Value 'ORPHN' does not exist in 'ReliefCategory' enum. Did you mean the enum value "
        "'ORPHAN'?",
        ("枚举值 'ORPHAN'",),
    ),
    ("Enum 'Level' cannot represent non-string value: 1.", ("非字符串",)),
    (
        "Enum 'Level' cannot represent non-enum value: \"CITY\". Did you mean the enum value "
        "'CITY'?",
        ("不加引号", "'CITY'"),
    ),
    ('Value cannot represent a Decimal: "1". Expected a string.', ("Decimal", "应为字符串")),
    ("Value cannot represent a Date: \"x\". Invalid isoformat string: 'x'", ("YYYY-MM-DD",)),
    ('Value cannot represent a DateTime: "x".', ("ISO 8601",)),
]


@pytest.mark.parametrize(("english", "words"), SAMPLES, ids=[s[0][:60] for s in SAMPLES])
def test_every_template_reads_in_chinese(english: str, words: tuple[str, ...]) -> None:
    text = translated(english)
    assert text is not None, english
    for word in words:
        assert word in text, text
    assert english_left(text) == [], text


def test_every_template_has_a_sample() -> None:
    """A template nobody exercises is a template nobody has read in Chinese."""
    from schema.messages import _COMPILED

    # Templates matched only inside another message (conflict reasons, "Syntax Error: …").
    unmatched = []
    for (english, _chinese), (pattern, _template) in zip(TEMPLATES, _COMPILED, strict=True):
        samples = [s for s, _ in SAMPLES] + [s.removeprefix("Syntax Error: ") for s, _ in SAMPLES]
        reasons = [
            r
            for s, _ in SAMPLES
            for r in re.findall(r"because (.+?)(?:\. Use| and subfields|$)", s)
        ]
        if not any(pattern.fullmatch(s) for s in samples + reasons):
            unmatched.append(english)
    assert unmatched == []


def test_names_and_values_are_kept_as_written() -> None:
    text = chinese("Cannot query field 'idNumbr' on type 'Person'. Did you mean 'idNumber'?")
    assert text == "类型 'Person' 上没有字段 'idNumbr'; 是否要找 'idNumber'?"


def test_unknown_messages_keep_their_text_behind_a_chinese_lead() -> None:
    assert chinese("Something new from graphql-core.") == (
        f"{UNKNOWN_LEAD}: Something new from graphql-core."
    )
    assert chinese("无权读取字段 Person.phone") == "无权读取字段 Person.phone"
