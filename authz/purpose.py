"""Purpose-bound access (用途限定, issue 5; CONTRACT.md ``X-Purpose``).

A data-sharing list may grant a department its reads only for listed purposes: lines whose
purpose is not ``*`` (``health:*, Person.enrollments, read, enrollment_verification``). A
request whose declared purpose grants the caller no person data, while another purpose would,
is refused as a whole with the purposes that would serve it named, instead of answering with
a response full of FORBIDDEN fields and no hint why.

"Reads person data" means: some rows are visible AND some guarded field is released (in clear
or masked). Rows alone show only ids and region codes, fields alone show nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from authz.decision import AccessDecision, Effect

ANY_PURPOSE = "*"


def named_purposes(lines: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The purposes lines are limited to (``*`` excluded), sorted."""
    return tuple(sorted({line[3] for line in lines if line[3] != ANY_PURPOSE}))


def reads_person_data(decision: AccessDecision) -> bool:
    return decision.sees_rows and any(
        effect is not Effect.DENY for effect in decision.fields.values()
    )


def allowed_purposes(decide: Callable[[str], AccessDecision], purposes: Iterable[str]) -> list[str]:
    """Of ``purposes``, those under which the caller (``decide(purpose)``) reads person data."""
    return [purpose for purpose in purposes if reads_person_data(decide(purpose))]


def refusal_message(declared: str, allowed: Sequence[str], labels: Mapping[str, str]) -> str:
    """``本部门读取人员数据须声明用途: 参保核查 (enrollment_verification); …``"""
    named = "、".join(f"{labels.get(code, code)} ({code})" for code in allowed)
    stated = f"{labels.get(declared, declared)} ({declared})" if declared else "未声明"
    return (
        f"本部门读取人员数据须声明用途: {named}; 本次请求的用途为 {stated}, 策略不允许. "
        "请在请求头 X-Purpose 中声明允许的用途"
    )


def purpose_refusal(
    decision: AccessDecision,
    decide: Callable[[str], AccessDecision],
    purposes: Iterable[str],
    labels: Mapping[str, str],
) -> str | None:
    """The refusal message when ``decision`` (the declared purpose) reads no person data but
    another purpose would; ``None`` when the request may proceed (deny by default then still
    applies field by field)."""
    if reads_person_data(decision):
        return None
    allowed = allowed_purposes(decide, (p for p in purposes if p != decision.purpose))
    if not allowed:
        return None
    return refusal_message(decision.purpose, allowed, labels)
