"""relief-gateway: 医疗救助对象信息共享网关.

A request walks gateway (HTTP, auth, context) → schema (types, thin resolvers) → authz (one
decision per request: visible fields and a row predicate) → storage (SQL with the predicate
inside, decryption at the edge) and back.
"""

__version__ = "0.1.0"
