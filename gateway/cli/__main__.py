"""``python -m gateway.cli``: the same as the ``relief-gateway`` command."""

import sys

from gateway.cli.app import main

sys.exit(main())
