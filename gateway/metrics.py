"""Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "relief_graphql_requests", "GraphQL requests by outcome", ["outcome"], registry=REGISTRY
)
LATENCY = Histogram("relief_graphql_seconds", "GraphQL request latency", registry=REGISTRY)
DENIALS = Counter(
    "relief_authz_denials", "Fields or arguments refused by policy", registry=REGISTRY
)
