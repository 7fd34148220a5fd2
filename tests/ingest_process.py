"""``relief-gateway`` as the fault tests run it in a process of its own (``test_faults_ingest``).

    python -m tests.ingest_process --chunk-rows 500 [--refused-copy N] -- ingest --source …

It is the console script's ``gateway.cli.main`` with two test-only changes:

``--chunk-rows``   chunks of that many rows instead of 10,000, so that a file of a few thousand
                   rows spans a dozen chunk transactions and can be stopped between and inside
                   them (``adapters.pipeline.CHUNK_ROWS``, read when the ingestor is made).
``--refused-copy`` the N-th bulk write (``COPY``) of the run meets what asyncpg does when the
                   server's FATAL (a shutdown, ``pg_terminate_backend``) arrives between two
                   statements of a chunk: ``copy_in`` makes the waiter of the ``COPY``, the
                   protocol, still consuming the error, refuses the statement
                   (``InternalClientError: cannot switch to state 21``), and the waiter is never
                   awaited; the server then closes the connection, which fails the waiter, and
                   asyncio would report "Future exception was never retrieved" when it is
                   collected. The race is real (seen when killing the server under an ingest)
                   but rare; this makes it happen every time, at the place it happens.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _refuse_copy(number: int) -> None:
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    original = asyncpg.Connection.copy_records_to_table
    copies = 0
    orphans: list[asyncio.Future[Any]] = []

    async def copy_records_to_table(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal copies
        copies += 1
        if copies != number:
            return await original(self, *args, **kwargs)
        waiter = asyncio.get_running_loop().create_future()  # made before the statement …
        orphans.append(waiter)
        self.terminate()  # … the connection goes …
        waiter.set_exception(  # … and fails the waiter nobody awaits
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        )
        orphans.clear()  # collected: asyncio reports it unless the CLI is told it is expected
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 21; another operation (2) is in progress"
        )

    asyncpg.Connection.copy_records_to_table = copy_records_to_table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ingest_process")
    parser.add_argument("--chunk-rows", type=int, required=True)
    parser.add_argument("--refused-copy", type=int, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    import adapters.pipeline
    from gateway.cli import main as relief_gateway

    adapters.pipeline.CHUNK_ROWS = args.chunk_rows
    if args.refused_copy is not None:
        _refuse_copy(args.refused_copy)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return relief_gateway(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
