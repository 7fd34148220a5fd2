"""GraphQL's own error messages in Chinese (查询语句错误的中文说明).

graphql-core writes its parse, validation and value-coercion messages in English ("Cannot query
field 'nam' on type 'Person'. Did you mean 'name'?"). A clerk reads them in GraphiQL, in the
console's simulation or in a department system's log, so the edge (``gateway.http.graphql``)
and the policy simulation hand them out through :func:`chinese`:

    >>> chinese("Cannot query field 'nam' on type 'Person'. Did you mean 'name'?")
    "类型 'Person' 上没有字段 'nam'; 是否要找 'name'?"

Names stay as written (fields, types, arguments, variables, enum values, the caller's own
values): they are what the caller has to type. Each template below is one message family of
graphql-core 3.3 (``graphql/validation/rules``, ``language/lexer.py`` and ``parser.py``,
``execution/values.py``, ``utilities/validate_input_value.py``, the scalars and enums of
``type/``) or of strawberry's scalars; tests/test_graphql_messages.py triggers each family a
caller can reach. A message none of them knows (a newer graphql-core) keeps its English text
behind a Chinese lead, so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["chinese", "translated"]

UNKNOWN_LEAD = "查询语句有误"

# ---------------------------------------------------------------------------- pieces

_TOKEN_KINDS = {
    "Name": "名称",
    "Int": "整数",
    "Float": "浮点数",
    "String": "字符串",
    "BlockString": "块字符串",
    "Comment": "注释",
    "<EOF>": "文档结尾",
    "<SOF>": "文档开头",
}

_OPERATIONS = {
    "query": "查询 (query)",
    "mutation": "变更 (mutation)",
    "subscription": "订阅 (subscription)",
}

# Strawberry's scalars: what a valid value looks like (the Python parser's own English detail
# is left out; the value the caller sent is quoted).
_SCALAR_FORMS = {
    "Date": "日期, 格式 YYYY-MM-DD, 如 2026-01-31",
    "DateTime": "日期时间, ISO 8601 格式, 如 2026-01-31T08:00:00+08:00",
    "Time": "时间, 格式 HH:MM:SS",
    "Decimal": '十进制数, 如 "1234.50"',
    "UUID": "UUID",
    "JSON": "JSON 值",
    "GlobalID": "全局编号",
}


# graphql-core's DirectiveLocation values (where a directive may stand in a query).
_LOCATIONS = {
    "query": "查询操作 (query)",
    "mutation": "变更操作 (mutation)",
    "subscription": "订阅操作 (subscription)",
    "field": "字段",
    "fragment definition": "片段定义",
    "fragment spread": "片段展开",
    "inline fragment": "内联片段",
    "variable definition": "变量声明",
    "fragment variable definition": "片段变量声明",
}


def _token(text: str) -> str:
    """``Name 'foo'`` → ``名称 'foo'``; ``<EOF>`` → ``文档结尾``; punctuators stay."""
    kind, _, value = text.partition(" ")
    name = _TOKEN_KINDS.get(kind)
    if name is None:
        return text
    return f"{name} {value}" if value else name


def _names(listed: str) -> str:
    """``'a', 'b', or 'c'`` → ``'a'、'b' 或 'c'`` (graphql-core's or_list)."""
    names: list[str] = re.findall(r"'[^']*'", listed)
    if len(names) < 2:
        return listed
    return "、".join(names[:-1]) + " 或 " + names[-1]


_SUGGESTION = re.compile(
    r" Did you mean (?P<sub>to use an inline fragment on |the enum value )?(?P<names>'.*')\?\Z",
    re.S,
)


def _suggestion(text: str) -> str:
    """`` Did you mean 'a' or 'b'?`` (did_you_mean) → ``; 是否要找 'a' 或 'b'?``."""
    match = _SUGGESTION.fullmatch(text)
    if match is None:
        return text
    names = _names(match["names"])
    if match["sub"] == "to use an inline fragment on ":
        return f"; 是否要改用类型 {names} 上的内联片段 (... on 类型)?"
    if match["sub"] == "the enum value ":
        return f"; 是否要找枚举值 {names}?"
    return f"; 是否要找 {names}?"


def _path(text: str) -> str:
    """print_path_list's `` at .filter.regionPrefix[0]`` → `` (位置 filter.regionPrefix[0])``."""
    return f" (位置 {text.removeprefix(' at ').lstrip('.')})" if text else ""


def _definition(text: str) -> str:
    return "schema" if text == "schema" else text


def _subscription(text: str) -> str:
    return (
        "匿名订阅" if text == "Anonymous Subscription" else "订阅 " + text[len("Subscription ") :]
    )


def _operation(text: str) -> str:
    return _OPERATIONS.get(text, text)


def _scalar_form(text: str) -> str:
    form = _SCALAR_FORMS.get(text)
    return f" (应为{form})" if form else ""


def _reasons(text: str) -> str:
    """The reason of a field conflict; sub-field reasons are joined by " and "."""
    parts = re.split(r" and (?=subfields ')", text)
    return "; ".join(_translate(part) or part for part in parts)


# ---------------------------------------------------------------------------- templates

# Placeholder → (regex, rendering). A placeholder's name may end in a digit to use it twice.
_PLACEHOLDERS: dict[str, tuple[str, Callable[[str], str]]] = {
    "message": (r".+", lambda text: chinese(text)),
    "reason": (r".+?", _reasons),
    "suggestion": (r"(?: Did you mean .+?\?)?", _suggestion),
    "path": (r"(?: at (?:\.[_A-Za-z0-9]+|\[\d+\])+)?", _path),
    "token": (r".+?", _token),
    "kind": (r".+?", _token),
    "definition": (r"schema|'[^']*'", _definition),
    "subscription": (r"Anonymous Subscription|Subscription '[^']*'", _subscription),
    "operation": (r"query|mutation|subscription", _operation),
    "form": (r"[A-Za-z]+", _scalar_form),
    "location": (r"[a-z ]+", lambda text: _LOCATIONS.get(text, text)),
    "keyword": (r"Defer|Stream", lambda text: "@" + text.lower()),
}
_ANY = (r".*?", str)

# (English template, Chinese template). Order matters only where one template is a prefix of
# another (the longer one first). {placeholders} are the message's variable parts.
TEMPLATES: tuple[tuple[str, str], ...] = (
    # ---- language/lexer.py and parser.py: "Syntax Error: …"
    ("Syntax Error: {message}", "语法错误: {message}"),
    ("Expected {kind}, found {token}.", "此处应为 {kind}, 实际为 {token}"),
    ("Unexpected '..', did you mean '...'?", "意外的 '..': 片段展开要写三个点 '...'"),
    (
        "Unexpected single quote character ('), did you mean to use a double quote (\")?",
        "意外的单引号 ('): 字符串要用双引号 (\")",
    ),
    (
        "Unexpected description, descriptions are not supported on shorthand queries.",
        "意外的描述文字: 简写的查询 { … } 不能带描述",
    ),
    (
        "Unexpected description, only GraphQL definitions support descriptions.",
        "意外的描述文字: 只有定义才能带描述",
    ),
    ("Unexpected variable '${name}' in constant value.", "常量值中不能使用变量 '${name}'"),
    ("Unexpected character: {char}.", "意外的字符: {char}"),
    ("Unexpected {token}.", "意外的 {token}"),
    ("Invalid character: {char}.", "无效字符: {char}"),
    ("Invalid character within String: {char}.", "字符串中有无效字符: {char}"),
    (
        "Invalid number, expected digit before '.', did you mean '0.{digits}'?",
        "数字无效: '.' 之前要有数字, 是否要写 '0.{digits}'?",
    ),
    ("Invalid number, unexpected digit after 0: {char}.", "数字无效: 0 之后不能紧跟数字 {char}"),
    ("Invalid number, expected digit but got: {char}.", "数字无效: 此处应为数字, 实际为 {char}"),
    ("Invalid Unicode escape sequence: '{text}'.", "无效的 Unicode 转义序列: '{text}'"),
    ("Invalid character escape sequence: '{text}'.", "无效的字符转义序列: '{text}'"),
    ("Unterminated string.", "字符串缺少结尾的双引号"),
    (
        "{token} is reserved and cannot be used for an enum value.",
        "{token} 是保留字, 不能用作枚举值",
    ),
    (
        "Document contains more than {count} tokens. Parsing aborted.",
        "文档超过 {count} 个词法单元, 已停止解析",
    ),
    (
        "Document contains more than {count} comments. Parsing aborted.",
        "文档中的注释超过 {count} 条, 已停止解析",
    ),
    (
        "Source contains more than {count} code points. Parsing aborted.",
        "文档超过 {count} 个字符, 已停止解析",
    ),
    ("Document is nested too deeply. Parsing aborted.", "文档嵌套过深, 已停止解析"),
    # ---- validation/rules
    (
        "The {definition} definition is not executable.",
        "定义 {definition} 不可执行: 查询文档只能包含操作和片段",
    ),
    (
        "Cannot query field '{field}' on type '{type}'.{suggestion}",
        "类型 '{type}' 上没有字段 '{field}'{suggestion}",
    ),
    (
        "Fragment cannot condition on non composite type '{type}'.",
        "片段的类型条件 '{type}' 不是对象、接口或联合类型",
    ),
    (
        "Fragment '{fragment}' cannot condition on non composite type '{type}'.",
        "片段 '{fragment}' 的类型条件 '{type}' 不是对象、接口或联合类型",
    ),
    (
        "Unknown argument '{argument}' on directive '@{directive}'.{suggestion}",
        "指令 '@{directive}' 没有参数 '{argument}'{suggestion}",
    ),
    (
        "Unknown argument '{argument}' on fragment '{fragment}'.{suggestion}",
        "片段 '{fragment}' 没有参数 '{argument}'{suggestion}",
    ),
    (
        "Unknown argument '{argument}' on field '{field}'.{suggestion}",
        "字段 '{field}' 没有参数 '{argument}'{suggestion}",
    ),
    ("Unknown directive '@{directive}'.", "未知的指令 '@{directive}'"),
    (
        "Directive '@{directive}' may not be used on {location}.",
        "指令 '@{directive}' 不能用在{location}上",
    ),
    ("Unknown fragment '{fragment}'.", "未定义的片段 '{fragment}'"),
    ("The {operation} operation is not supported by the schema.", "本接口不支持{operation}操作"),
    ("Unknown type '{type}'.{suggestion}", "未知的类型 '{type}'{suggestion}"),
    (
        "This anonymous operation must be the only defined operation.",
        "文档中有多个操作时不能有匿名操作: 请为每个操作命名",
    ),
    ("Maximum introspection depth exceeded", "内省查询 (introspection) 嵌套过深"),
    (
        "Cannot spread fragment '{fragment}' within itself via {via}.",
        "片段 '{fragment}' 经由 {via} 展开了自身 (循环引用)",
    ),
    (
        "Cannot spread fragment '{fragment}' within itself.",
        "片段 '{fragment}' 展开了自身 (循环引用)",
    ),
    (
        "Variable '${name}' is not defined by operation '{operation_name}'.",
        "变量 '${name}' 未在操作 '{operation_name}' 中声明",
    ),
    ("Variable '${name}' is not defined.", "变量 '${name}' 未声明"),
    ("Fragment '{fragment}' is never used.", "片段 '{fragment}' 定义了但从未使用"),
    (
        "Variable '${name}' is never used in fragment '{fragment}'.",
        "变量 '${name}' 在片段 '{fragment}' 中声明了但从未使用",
    ),
    (
        "Variable '${name}' is never used in operation '{operation_name}'.",
        "变量 '${name}' 在操作 '{operation_name}' 中声明了但从未使用",
    ),
    ("Variable '${name}' is never used.", "变量 '${name}' 声明了但从未使用"),
    (
        "Fields '{alias}' conflict because {reason}. Use different aliases on the fields to fetch "
        "both if this was intentional.",
        "字段 '{alias}' 冲突: {reason}; 如需同时获取, 请给它们起不同的别名",
    ),
    ("'{field}' and '{field2}' are different fields", "'{field}' 和 '{field2}' 是不同的字段"),
    ("they have differing arguments", "两者的参数不同"),
    ("they have overlapping stream directives{detail}", "两者的 @stream 指令重叠"),
    (
        "they return conflicting types '{type}' and '{type2}'",
        "两者返回的类型 '{type}' 和 '{type2}' 不一致",
    ),
    ("subfields '{alias}' conflict because {reason}", "子字段 '{alias}' 冲突: {reason}"),
    (
        "Spreads '{fragment}' conflict because {spread} and {spread2} have different fragment "
        "arguments.",
        "片段展开 '{fragment}' 冲突: {spread} 与 {spread2} 的片段参数不同",
    ),
    (
        "Fragment cannot be spread here as objects of type '{type}' can never be of type "
        "'{type2}'.",
        "片段不能在此展开: 类型 '{type}' 的对象不可能是类型 '{type2}'",
    ),
    (
        "Fragment '{fragment}' cannot be spread here as objects of type '{type}' can never be of "
        "type '{type2}'.",
        "片段 '{fragment}' 不能在此展开: 类型 '{type}' 的对象不可能是类型 '{type2}'",
    ),
    (
        "Argument '@{directive}({argument}:)' of type '{type}' is required, but it was not "
        "provided.",
        "缺少指令 '@{directive}' 的必填参数 '{argument}' (类型 '{type}')",
    ),
    (
        "Argument '{field}({argument}:)' of type '{type}' is required, but it was not provided.",
        "缺少字段 '{field}' 的必填参数 '{argument}' (类型 '{type}')",
    ),
    (
        "Fragment '{fragment}' argument '{argument}' of type '{type}' is required, but it was not "
        "provided.",
        "缺少片段 '{fragment}' 的必填参数 '{argument}' (类型 '{type}')",
    ),
    (
        "Field '{field}' must not have a selection since type '{type}' has no subfields.",
        "字段 '{field}' 的类型 '{type}' 没有子字段, 其后不能跟 {{ … }}",
    ),
    (
        "Field '{field}' of type '{type}' must have a selection of subfields. Did you mean "
        "'{example}'?",
        "字段 '{field}' 的类型 '{type}' 是对象, 要选择其子字段, 如 '{example}'",
    ),
    (
        "Field '{field}' of type '{type}' must have at least one field selected.",
        "字段 '{field}' (类型 '{type}') 至少要选择一个子字段",
    ),
    (
        "{subscription} must not use `@skip` or `@include` directives in the top level selection.",
        "{subscription}的顶层字段不能使用 @skip 或 @include 指令",
    ),
    ("{subscription} must select one top level field.", "{subscription}要选择一个顶层字段"),
    ("{subscription} must select only one top level field.", "{subscription}只能选择一个顶层字段"),
    (
        "{subscription} must not select an introspection top level field.",
        "{subscription}的顶层字段不能是内省字段",
    ),
    ("There can be only one argument named '{argument}'.", "参数 '{argument}' 重复: 只能出现一次"),
    (
        "The directive '@{directive}' can only be used once at this location.",
        "指令 '@{directive}' 在同一位置只能使用一次",
    ),
    (
        "There can be only one fragment named '{fragment}'.",
        "片段名 '{fragment}' 重复: 只能定义一次",
    ),
    ("There can be only one input field named '{field}'.", "输入字段 '{field}' 重复: 只能出现一次"),
    (
        "There can be only one operation named '{operation_name}'.",
        "操作名 '{operation_name}' 重复: 只能定义一次",
    ),
    ("There can be only one variable named '${name}'.", "变量 '${name}' 重复声明"),
    (
        "Variable '${name}' cannot be non-input type '{type}'.",
        "变量 '${name}' 的类型 '{type}' 不是输入类型, 不能用于变量",
    ),
    (
        "Variable '${name}' of type '{type}' used in position expecting type '{type2}'.",
        "变量 '${name}' 的类型 '{type}' 与此处要求的类型 '{type2}' 不符",
    ),
    (
        "Variable '${name}' is of type '{type}' but must be non-nullable to be used for OneOf "
        "Input Object '{type2}'.",
        "变量 '${name}' 的类型 '{type}' 须为非空类型, 才能用于 OneOf 输入对象 '{type2}'",
    ),
    (
        "{keyword} directive label argument must be a static string.",
        "{keyword} 指令的 label 参数必须是常量字符串",
    ),
    (
        "Defer/Stream directive label argument must be unique.",
        "@defer/@stream 指令的 label 参数不能重复",
    ),
    (
        "Stream directive cannot be used on root {operation} type '{type}'.",
        "@stream 指令不能用于{operation}的根类型 '{type}'",
    ),
    (
        "Defer directive cannot be used on root {operation} type '{type}'.",
        "@defer 指令不能用于{operation}的根类型 '{type}'",
    ),
    (
        "Stream directive cannot be used on non-list field{field} on type '{type}'.",
        "@stream 指令不能用于类型 '{type}' 上的非列表字段{field}",
    ),
    (
        "GraphQL introspection has been disabled, but the requested query contained the field "
        "'{field}'.",
        "内省 (introspection) 已关闭, 查询中不能有字段 '{field}'",
    ),
    (
        "Too many validation errors, error limit reached. Validation aborted.",
        "查询错误过多, 已停止检查",
    ),
    # ---- execution/values.py and get_variable_signature.py
    (
        "Too many errors processing variables, error limit reached. Execution aborted.",
        "变量错误过多, 已停止执行",
    ),
    ("Variable values are nested too deeply.", "变量值嵌套过深"),
    (
        "Variable '${name}' has invalid default value{path}: {message}",
        "变量 '${name}' 的默认值{path}无效: {message}",
    ),
    (
        "Variable '${name}' has invalid value{path}: {message}",
        "变量 '${name}' 的值{path}无效: {message}",
    ),
    (
        "Variable '${name}' defined by fragment '{fragment}' has invalid default value{path}: "
        "{message}",
        "片段 '{fragment}' 的变量 '${name}' 的默认值{path}无效: {message}",
    ),
    (
        "Variable '${name}' defined by fragment '{fragment}' has invalid value{path}: {message}",
        "片段 '{fragment}' 的变量 '${name}' 的值{path}无效: {message}",
    ),
    (
        "Variable '${name}' defined by fragment '{fragment}' of required type '{type}' was not "
        "provided.",
        "缺少片段 '{fragment}' 的必填变量 '${name}' (类型 '{type}')",
    ),
    (
        "Argument '{argument}' has invalid default value{path}: {message}",
        "参数 '{argument}' 的默认值{path}无效: {message}",
    ),
    (
        "Argument '{argument}' has invalid value{path}: {message}",
        "参数 '{argument}' 的值{path}无效: {message}",
    ),
    (
        "Argument '{argument}' of required type '{type}' was not provided.",
        "缺少必填参数 '{argument}' (类型 '{type}')",
    ),
    (
        "Variable '${name}' expected value of type '{type}' which cannot be used as an input type.",
        "变量 '${name}' 的类型 '{type}' 不能用作输入类型",
    ),
    # ---- utilities/validate_input_value.py (literals in the query and variable values)
    ("Expected a value of non-null type '{type}' to be provided.", "缺少必填值 (类型 '{type}')"),
    ("Expected value of non-null type '{type}' not to be None.", "类型 '{type}' 的值不能为 null"),
    (
        "Expected value of type '{type}' to be an object, found: {value}.",
        "类型 '{type}' 的值应为对象 {{ … }}, 实际为: {value}",
    ),
    (
        "Expected value of type '{type}' to include required field '{field}', found: {value}.",
        "类型 '{type}' 的值缺少必填字段 '{field}', 实际为: {value}",
    ),
    (
        "Expected value of type '{type}' not to include unknown field '{field}'.{suggestion} "
        "Found: {value}.",
        "类型 '{type}' 没有字段 '{field}'{suggestion} 实际为: {value}",
    ),
    (
        "Expected value of type '{type}' not to include unknown field '{field}', found: {value}.",
        "类型 '{type}' 没有字段 '{field}', 实际为: {value}",
    ),
    (
        "Within OneOf Input Object type '{type}', exactly one field must be specified, and the "
        "value for that field must be non-null.",
        "OneOf 输入对象 '{type}' 必须恰好给出一个字段, 且其值不能为 null",
    ),
    (
        "Expected value of type '{type}', but encountered error '{detail}'; found: {value}.",
        "值不是有效的 '{type}': {value}",
    ),
    ("Expected value of type '{type}', found: {value}.", "值不是有效的 '{type}': {value}"),
    (
        "Expected variable '${name}' provided to type '{type}' to provide a runtime value.",
        "变量 '${name}' 用于类型 '{type}', 但请求中没有提供它的值",
    ),
    (
        "Expected variable '${name}' provided to non-null type '{type}' not to be None.",
        "变量 '${name}' 用于非空类型 '{type}', 其值不能为 null",
    ),
    (
        "Expected variable '${name}' provided to field '{field}' for OneOf Input Object type "
        "'{type}' to provide a runtime value.",
        "变量 '${name}' 用于 OneOf 输入对象 '{type}' 的字段 '{field}', 但请求中没有提供它的值",
    ),
    (
        "Expected variable '${name}' provided to field '{field}' for OneOf Input Object type "
        "'{type}' not to be None.",
        "变量 '${name}' 用于 OneOf 输入对象 '{type}' 的字段 '{field}', 其值不能为 null",
    ),
    # ---- type/scalars.py and type/definition.py (enums)
    ("Int cannot represent non-integer value: {value}", "Int (整数) 不能表示非整数值: {value}"),
    (
        "Int cannot represent non 32-bit signed integer value: {value}",
        "Int (整数) 只能表示 32 位有符号整数, 不能表示: {value}",
    ),
    ("Float cannot represent non numeric value: {value}", "Float (浮点数) 不能表示非数值: {value}"),
    (
        "String cannot represent a non string value: {value}",
        "String (字符串) 不能表示非字符串值: {value}",
    ),
    ("String cannot represent value: {value}", "String (字符串) 不能表示值: {value}"),
    (
        "Boolean cannot represent a non boolean value: {value}",
        "Boolean (布尔值) 只能是 true 或 false, 不能是: {value}",
    ),
    (
        "ID cannot represent a non-string and non-integer value: {value}",
        "ID (编号) 只能是字符串或整数, 不能是: {value}",
    ),
    ("ID cannot represent value: {value}", "ID (编号) 不能表示值: {value}"),
    (
        "Value '{value}' does not exist in '{type}' enum.{suggestion}",
        "枚举 '{type}' 中没有值 '{value}'{suggestion}",
    ),
    (
        "Enum '{type}' cannot represent non-string value: {value}.{suggestion}",
        "枚举 '{type}' 不能表示非字符串值: {value}{suggestion}",
    ),
    (
        "Enum '{type}' cannot represent non-enum value: {value}.{suggestion}",
        "枚举 '{type}' 的值要直接写枚举名 (不加引号), 不能是: {value}{suggestion}",
    ),
    # ---- strawberry's scalars (Date, DateTime, Decimal, …)
    (
        'Value cannot represent a {form}: "{value}". Expected a string.',
        '值 "{value}" 不是有效的 {form2}: 应为字符串{form}',
    ),
    (
        'Value cannot represent a {form}: "{value}".{detail}',
        '值 "{value}" 不是有效的 {form2}{form}',
    ),
)


def _compile(english: str) -> re.Pattern[str]:
    regex = ""
    for piece in re.split(r"(\{[a-z_]+\d?\})", english):
        placeholder = re.fullmatch(r"\{([a-z_]+?)(\d?)\}", piece)
        if placeholder is None:
            regex += re.escape(piece)
            continue
        name, number = placeholder.groups()
        pattern, _render = _PLACEHOLDERS.get(name, _ANY)
        if name not in _PLACEHOLDERS and regex.endswith(("'", r"'\$", "'@")):
            pattern = "[^']*"  # a quoted name never runs past its closing quote
        regex += f"(?P<{name}{number}>{pattern})"
    return re.compile(regex, re.S)


_COMPILED = tuple((_compile(english), chinese_text) for english, chinese_text in TEMPLATES)


def _render(template: str, groups: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, number = match.group(1), match.group(2)
        if name == "form" and number == "2":  # the scalar's own name, next to its form
            return groups["form"]
        raw = groups.get(name + number, "")
        _pattern, render = _PLACEHOLDERS.get(name, _ANY)
        return str(render(raw))

    text = re.sub(r"\{([a-z_]+?)(\d?)\}", value, template)
    return text.replace("{{", "{").replace("}}", "}")


def _translate(message: str) -> str | None:
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(message)
        if match is not None:
            return _render(template, {k: v or "" for k, v in match.groupdict().items()})
    return None


@lru_cache(maxsize=1024)
def translated(message: str) -> str | None:
    """The Chinese text of one of graphql-core's messages, or None if no template knows it."""
    return _translate(message)


def chinese(message: str) -> str:
    """A GraphQL message for a clerk: translated, or its English behind a Chinese lead."""
    text = translated(message)
    if text is not None:
        return text
    if re.search(r"[\u4e00-\u9fff]", message):
        return message  # the gateway's own messages are Chinese already
    return f"{UNKNOWN_LEAD}: {message}"
