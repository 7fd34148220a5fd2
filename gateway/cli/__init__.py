"""The ``relief-gateway`` command: ``main`` (in ``gateway.cli.app``: the parser, the shared
options, settings and error handling) dispatches to one module per command group (``serving``,
``database``, ``tokens``, ``policy``, ``ingest``, ``warn``, ``keys``, ``partitions``, ``audit``).
Messages are Chinese; exit 2 on bad input, no traceback.

The top of the house: may import every room; nothing imports it.
"""

from gateway.cli.app import main

__all__ = ["main"]
