"""ASGI entry point for multi-worker serving (``uvicorn gateway.asgi:app``): each worker
process builds its own runtime from the same ``RELIEF_*`` settings."""

from gateway.app import create_app
from gateway.logging_setup import configure_from_settings
from gateway.runtime import Runtime
from gateway.settings import load_settings

settings = load_settings()
configure_from_settings(settings)
app = create_app(Runtime.create(settings))
