"""relief-gateway: 医疗救助对象信息共享网关.

A request walks the shell (``gateway.http``: token, limits, ``/graphql``) → ``schema`` (types,
thin resolvers) → ``authz`` (one decision per request: visible fields and a row predicate) →
``gateway.storage`` (SQL with the predicate inside, decryption at the edge through
``gateway.crypto``) and back. Ingest walks ``adapters`` (read, map, validate) → storage. The
closed loop (``gateway.loop``: warnings, tasks, deadlines, coverage) is a set of services with
no HTTP in them.

The wings of ``gateway``, top to bottom; a wing imports only the wings below it (checked by
``scripts/lint`` with import-linter, contracts in ``pyproject.toml``):

    cli        one module per command group of ``relief-gateway``
    http       the Starlette app, /graphql, operations endpoints, console, GraphiQL, metrics
    runtime    the composition root: one process's parts wired from the settings, tokens,
               request limits, what production refuses to start with
    (schema, then authz and loop side by side, then adapters — top-level packages)
    storage    tables, engines, scoped queries, the vault, the audit chain, policy notices
    crypto     the only code that touches key material
    domain     the words: departments, categories, ID numbers, regions, working days, the
               clock, errors, settings, records, the caller, observers
"""

__version__ = "0.1.0"
