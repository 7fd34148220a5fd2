"""ASGI entry point for multi-worker serving (``uvicorn gateway.http.asgi:app``): each worker
process builds its own runtime from the same ``RELIEF_*`` settings."""

from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.logs import configure_from_settings
from gateway.runtime.parts import Runtime

settings = load_settings()
configure_from_settings(settings)
app = create_app(Runtime.create(settings))
