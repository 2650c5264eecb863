"""``redisresults``: inspect a backend URL, read, store, wait on and forget results, and run the benchmarks.

The URL comes from ``--url`` or the ``REDISRESULTS_URL`` environment variable. Without one, ``bench`` and
``demo`` start a private throwaway ``redis-server`` on a Unix socket in a temporary directory and remove it
at exit (Ctrl-C and SIGTERM included); the other commands need a URL.

This is the only place in redisresults that configures logging, and only for its own process: while
``main`` runs, a handler on the ``redisresults`` logger writes to stderr (``--log-level``, ``--log-json``
for JSON lines). Passwords never appear in any output: not in ``inspect``, errors, logs or ``--help``.
Only the public API of redisresults is used.

Exit codes (sysexits.h where one fits):
  0   success
  1   a result is FAILURE or REVOKED (wait)
  2   timeout: a result was not ready in time (wait)
  64  usage error: bad arguments, URL or option
  65  bad data: a stored document that cannot be decoded, or a value that cannot be stored
  69  service unavailable: Redis unreachable, or no redis-server binary for the embedded server
  70  internal error
  130 interrupted (SIGINT); 143 terminated (SIGTERM)
"""

from __future__ import annotations

from ._args import build_parser
from ._commands import COMMANDS
from ._exits import (
    ENV_URL,
    EXIT_DATAERR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
)
from ._main import main

__all__ = [
    "COMMANDS",
    "ENV_URL",
    "EXIT_DATAERR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOFTWARE",
    "EXIT_TERMINATED",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "PROG",
    "build_parser",
    "main",
]
