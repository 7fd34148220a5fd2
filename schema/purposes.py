"""Which requests the purpose check applies to (``authz.purpose`` decides what it refuses).

The check runs before execution, so it looks at the operation's root fields. A request whose
root fields all belong to the list below never reads person data, whatever its purpose: it is
served, and each field stays guarded as usual. Every other root field (present or future)
counts as a read of person data: a new root field is purpose-bound until listed here (fails
closed).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
    get_operation_ast,
    parse,
)

# Root fields that return no person data.
PURPOSE_FREE_ROOTS = frozenset(
    {
        "__typename",
        "__schema",
        "__type",
        "me",  # always allowed: a client discovers its grants (and the purposes) through it
        "batches",  # the department's own batches: counts, no people
        "submitRecords",  # pushes are governed by "call" lines
        "statistics",  # aggregates only, small cells suppressed
        # Security officers' fields: governed by the officer role, never by data-sharing
        # lines; simulateAccess returns shapes, never values.
        "policies",
        "policyVersions",
        "policyProposals",
        "policyProposal",
        "policyMatrix",
        "simulateAccess",
        "explainAccess",
        "auditLog",
        "auditChain",
        "proposePolicyChange",
        "proposePolicyRollback",
        "approvePolicyChange",
        "rejectPolicyChange",
    }
)


@lru_cache(maxsize=1)
def purpose_labels() -> dict[str, str]:
    """The known purposes (``gateway/data/purposes.json``): code → Chinese name."""
    text = resources.files("gateway").joinpath("data/purposes.json").read_text(encoding="utf-8")
    labels: dict[str, str] = json.loads(text)
    return labels


@lru_cache(maxsize=1024)
def reads_person_data(
    query: str, operation_name: str | None, max_tokens: int | None = None
) -> bool:
    """Whether the executed operation has a root field outside ``PURPOSE_FREE_ROOTS``.
    An unparsable query counts as no read: execution rejects it before any resolver runs.
    ``max_tokens`` (RELIEF_MAX_QUERY_TOKENS): an oversized document is not parsed whole here
    before the schema's token limit refuses it."""
    try:
        document = parse(query, max_tokens=max_tokens)
        operation = get_operation_ast(document, operation_name)
    except GraphQLError:
        return False
    if operation is None:
        return False
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return not root_fields(operation.selection_set, fragments) <= PURPOSE_FREE_ROOTS


def root_fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
    known: dict[str, set[str]] | None = None,
) -> set[str]:
    """Field names at the root of a selection set, through fragments (aliases do not hide a
    field; @skip/@include are ignored: a field that may run counts).

    Each fragment is walked once (``known``): a chain of fragments each spreading the next twice
    has 2^n paths, and this runs before validation on any caller's document."""
    known = {} if known is None else known
    names: set[str] = set()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= root_fields(selection.selection_set, fragments, seen, known)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in known:
                names |= known[name]
                continue
            fragment = fragments.get(name)
            if fragment is None or name in seen:
                names.add(f"...{name}")  # unknown: validation fails it; counted as a read
                continue
            known[name] = root_fields(fragment.selection_set, fragments, seen | {name}, known)
            names |= known[name]
    return names
