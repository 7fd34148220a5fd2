"""The composition root, shared by both shells (HTTP and CLI): what one gateway process is
made of, wired once from the settings.

- ``parts``: ``Runtime`` — engine, keyring and vault, tokens, policies, schema, audit writer,
  feeds, province rules, request limits, the policy listener.
- ``tokens``: minting and verifying bearer tokens.
- ``rate_limit``: per-subject and per-department request budgets.
- ``trusted_documents``: departments pinned to documents known by hash.
- ``production``: what production refuses to start with.

May import schema and every room below it; never the shells (``http``, ``cli``).
"""
