"""Authorization: casbin decides, once per request, which fields and which rows a caller gets.

- ``resources``: the catalogue of policy objects (every guarded field) and what can be masked.
- ``conditions``: the row-scope vocabulary of policies (``Person(all)``, ``Person(category: …)``).
- ``decision``: one ``AccessDecision`` per subject, purpose and policy version (cached).
- ``compiler``: the only code that turns a decision into SQL (a row predicate).
- ``guard``: the only code that nulls, masks or forbids a field.
- ``store``: policy lines in the database, versions, the casbin enforcer.
- ``purpose``: purpose-bound access: a read under a purpose that grants nothing is refused.
- ``simulate``: a query's outcome under two policies, redacted to its shape, compared.
- ``explain``: why an audited request got each field and row scope (lines and reasons).
"""
