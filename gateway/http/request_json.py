"""JSON from a client (a POST body, GET's ``variables`` and ``extensions``), parsed within bounds.

Python's ``json`` is made for trusted input: it recurses once per nesting level (1,000 levels of
``[[[…`` in a 2 KB body escape as ``RecursionError``), accepts ``NaN`` and ``Infinity`` (which a
JSON response cannot carry back), lets the last of two equal keys win silently (a proxy or
filter in front may have read the first), turns lone surrogates (``"\\ud800"``) into strings
that cannot be encoded again, and stops integers only at 4,300 digits, with a ``ValueError``
of its own. Each of these is refused here as ``BAD_USER_INPUT`` with a message for the clerk:

    check        how                                                        when
    UTF-8        strict decoding (a byte-order mark is skipped)             before parsing
    nesting      bracket depth outside strings, at most MAX_DEPTH           before (linear scan)
    numbers      at most MAX_NUMBER_CHARS characters                        before (same scan)
    syntax       ``json.loads``                                             —
    numbers      finite, no NaN or Infinity                                 while parsing
    keys         no key twice in one object                                 while parsing
    strings      no lone surrogate                                          after (only when
                                                                            ``\\uD8…`` occurs)

The scan costs about as much as parsing itself on a 4 MB body (tens of milliseconds), nothing
on an ordinary query.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from gateway.domain.errors import BadUserInput

# A GraphQL request is {query, variables, operationName, extensions}; the schema's inputs nest a
# few levels (records of submitRecords, simulateAccess variables). 32 is far beyond either and
# far below where the parser (or anything walking the value afterwards) could run out of stack.
MAX_DEPTH = 32
# 64-bit integers have 20 digits, a double 17 significant ones; longer is not a value.
MAX_NUMBER_CHARS = 64

# A JSON string (escapes included; unterminated: to the end), unrolled and possessive so the
# scan is linear and fast.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.?[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[-+.0-9eE]{%d}" % (MAX_NUMBER_CHARS + 1))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
_CHUNK = 65_536
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def outside_strings(data: bytes) -> bytes:
    """``data`` without its strings: brackets, separators, numbers and literals."""
    return _STRING.sub(b"", data)


def nests_deeper(structure: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``structure`` (``outside_strings``) nest deeper than
    ``limit``, valid JSON or not: linear, no recursion, and it stops at the first level over."""
    brackets = structure.translate(None, _NOT_BRACKETS)
    level = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = map(_STEP.__getitem__, brackets[start : start + _CHUNK])
        levels = list(accumulate(chunk, initial=level))
        if max(levels) > limit:
            return True
        level = levels[-1]
    return False


def loads(data: bytes, what: str) -> object:
    """``data`` parsed as JSON, or ``BadUserInput`` naming ``what`` (请求体, variables …)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadUserInput(f"{what}不是合法的 UTF-8 文本") from None
    structure = outside_strings(data)
    if nests_deeper(structure, MAX_DEPTH):
        raise BadUserInput(f"{what}的 JSON 嵌套过深: 超过 {MAX_DEPTH} 层")
    if _LONG_NUMBER.search(structure):
        raise BadUserInput(f"{what}中的数字过长: 上限 {MAX_NUMBER_CHARS} 个字符")
    try:
        value = json.loads(
            text, object_pairs_hook=_object, parse_float=_float, parse_constant=_constant
        )
    except _Refused as refused:
        raise BadUserInput(f"{what}{refused}") from None
    except ValueError:  # JSONDecodeError, or an integer past Python's own digit limit
        raise BadUserInput(f"{what}不是合法的 JSON") from None
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise BadUserInput(f"{what}含有不成对的 UTF-16 代理项 (\\uD800-\\uDFFF), 不是合法的文本")
    return value


class _Refused(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"中的 JSON 对象有重复的键 {key[:40]!r}")
            seen.add(key)
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"中的数字超出范围: {text}")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"中含有 {name}: 不是 JSON 的数值")


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False
