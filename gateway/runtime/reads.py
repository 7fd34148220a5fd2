"""Which GraphQL requests may read from the streaming replica (issue 17 item 4).

A request runs on the replica only when it is a query whose root fields are ALL in
``LAG_TOLERANT`` (fragments and inline fragments at the root are followed); everything else —
mutations, unknown or invalid documents, fields added later until someone decides — runs on
the primary. The database mechanics (health, lag, back-off, read-your-writes) are
``gateway.storage.replica``'s.

Lag-tolerant (the answer may be a replay delay old, typically milliseconds, at most
RELIEF_DATABASE_REPLICA_MAX_LAG_SECONDS):

==============  ===========================================================================
``me``          the token and the policy decision; reads no table
``person``      person data loaded by ingest and feeds: a caller that just wrote through
``persons``     ``submitRecords`` reads on the primary until the replica has replayed it
``reliefChain`` (read your writes); anyone else sees the load a moment later, as they would
``coverage``    had they asked a moment earlier
``statistics``  aggregates over the same data, recomputed by every request
``warnings``    produced by the monthly run (a batch); a late view of a month-old run
``__typename``  no data; ``__schema`` / ``__type`` (introspection, development) likewise
==============  ===========================================================================

On the primary, on purpose:

- ``policies``, ``policyVersions``, ``policyProposals``, ``policyProposal``, ``policyMatrix``,
  ``simulateAccess``, ``explainAccess``: the four-eyes workflow reads what another officer
  approved a second ago, and a simulation must compare against the version in force.
- ``auditLog``, ``auditChain``: the audit administrator's evidence (the chain is verified up
  to its head; a replica would show a shorter, older chain).
- ``tasks``, ``anomalies``, ``batches``: work queues answered by colleagues and uploads that
  bypass GraphQL (``POST /upload``): a stale queue shows work already done, a stale batch list
  hides the upload just made.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from functools import lru_cache

from graphql import FragmentDefinitionNode, GraphQLError, get_operation_ast, parse
from sqlalchemy.ext.asyncio import AsyncConnection

from authz.store import Authorizer
from gateway.domain.principal import Principal, canonical_subject
from gateway.storage.replica import ReplicaRouter
from schema.purposes import root_fields

LAG_TOLERANT = frozenset(
    {
        "me",
        "person",
        "persons",
        "reliefChain",
        "coverage",
        "statistics",
        "warnings",
        "__typename",
        "__schema",
        "__type",
    }
)


@lru_cache(maxsize=1024)
def classify(
    query: str | None, operation_name: str | None, max_tokens: int | None = None
) -> tuple[bool, bool]:
    """(lag_tolerant, writes) of the operation a request executes. An unparsable document, or
    one whose operation cannot be told, is neither: it runs on the primary and fails there.
    ``max_tokens`` (RELIEF_MAX_QUERY_TOKENS): an oversized document is not parsed whole here
    before the schema's token limit refuses it."""
    if not query:
        return False, False
    try:
        document = parse(query, max_tokens=max_tokens)
        operation = get_operation_ast(document, operation_name)
    except GraphQLError:
        return False, False
    if operation is None:
        return False, False
    kind = operation.operation.value
    if kind != "query":
        return False, kind == "mutation"
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    # an unknown or cyclic fragment is named "...<name>": never tolerant (validation fails it)
    names = root_fields(operation.selection_set, fragments)
    return bool(names) and names <= LAG_TOLERANT, False


class GraphQLReads:
    """What ``gateway.http.graphql`` asks: the connection one request runs on."""

    def __init__(self, router: ReplicaRouter, *, max_tokens: int | None = None) -> None:
        self.router = router
        self.max_tokens = max_tokens

    def connect(
        self, principal: Principal, query: str | None, operation_name: str | None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        if not self.router.configured:  # no replica: the primary, no document to look at
            return self.router.connect(lag_tolerant=False, writes=False, subject="")
        lag_tolerant, writes = classify(query, operation_name, self.max_tokens)
        return self.router.connect(
            lag_tolerant=lag_tolerant,
            writes=writes,
            subject=canonical_subject(principal.subject),
        )

    async def refresh_policy(self, authorizer: Authorizer, connection: AsyncConnection) -> None:
        """The policy in force, always from the primary (``ReplicaRouter.refresh_policy``)."""
        await self.router.refresh_policy(authorizer, connection)

    def failed_on_replica(self, exc: BaseException) -> bool:
        return self.router.failed_on_replica(exc)
