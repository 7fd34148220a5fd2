"""ASGI entry point for multi-worker serving (``relief-gateway serve --workers N``): each worker
process builds its own runtime from the same ``RELIEF_*`` settings. Run by hand, give uvicorn
the gateway's protocol too (slow clients, header limits, refusals in the error shape)::

    uvicorn --http gateway.http.protocol:GatewayHttpProtocol gateway.http.asgi:app
"""

from gateway.domain.settings import load_settings
from gateway.http.app import create_app
from gateway.http.logs import configure_from_settings
from gateway.runtime.parts import Runtime

settings = load_settings()
configure_from_settings(settings)
app = create_app(Runtime.create(settings))
