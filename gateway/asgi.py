"""ASGI entry point for multi-worker serving (``uvicorn gateway.asgi:app``): each worker
process builds its own runtime from the same ``RELIEF_*`` settings."""

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import load_settings

app = create_app(Runtime.create(load_settings()))
