"""Department adapters: read department files and pushes, map and validate them into
``gateway.domain.records``. Filled by the ingest work; adapters know nothing of GraphQL."""
