"""The ``relief-gateway`` command: ``main`` builds the parser and dispatches; one module per
command group. Messages are Chinese; exit 2 on bad input, no traceback.

The top of the house: may import every room; nothing imports it.
"""

from gateway.cli.main import main

__all__ = ["main"]
