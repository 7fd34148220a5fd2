"""The HTTP shell: the Starlette application and everything that speaks HTTP.

- ``app``: routes and lifespan; ``asgi``: the app for ``uvicorn --workers``.
- ``graphql``: ``/graphql`` — token, purpose, limits, one policy decision, execute, audit.
- ``graphql_over_http``: media types and status codes of the GraphQL-over-HTTP spec.
- ``ops``: ``/healthz``, ``/readyz``, ``/metrics``, request logs, start-up while the database
  is not there yet; ``metrics``: the Prometheus registry (and the observer services report to).
- ``console`` and ``graphiql``: the security officers' console and GraphiQL, with ``static/``.
- ``logs``: JSON/text logging with numbers masked; ``serving``: how uvicorn runs one or several
  worker processes.
- The edge, outermost first: ``protocol`` (the server's connection handling: slow clients,
  header limits, its own refusals), ``cors`` (preflights), ``url_limit`` (414),
  ``request_json`` (client JSON within bounds), ``refusals`` (the one error shape with a
  request id, for 404, 405 and anything unexpected too).

May import every room below it (runtime, schema, authz, loop, adapters, storage, crypto,
domain); nothing below imports it.
"""
