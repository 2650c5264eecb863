"""Exit codes (sysexits.h where one fits) and the one mapping from an expected error to a code and a line."""

from __future__ import annotations

import redis.exceptions as rex

from .. import (
    BackendStoreError,
    ConfigError,
    ConnectionUnavailable,
    ContentDisallowed,
    DecodeError,
    EncodeError,
    RedisResultsError,
    ResultTimeout,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

PROG = "redisresults"
ENV_URL = "REDISRESULTS_URL"


class Exit(Exception):
    """Leave ``main`` with ``code``, printing ``message`` (already one line) to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every ``finally`` (embedded server!) runs."""


def exit_code(error: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for an expected error."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, ConfigError):
        return EXIT_USAGE, str(error)
    if isinstance(error, ResultTimeout):
        return EXIT_TIMEOUT, str(error)
    if isinstance(error, (DecodeError, ContentDisallowed, EncodeError, BackendStoreError, rex.ResponseError)):
        return EXIT_DATAERR, text
    if isinstance(error, (ConnectionUnavailable, rex.ConnectionError, rex.TimeoutError, ConnectionError)):
        return EXIT_UNAVAILABLE, f"Redis unavailable: {text}"
    if isinstance(error, (TypeError, ValueError)) and not isinstance(error, RedisResultsError):
        return EXIT_USAGE, str(error)  # e.g. an empty task id
    return EXIT_SOFTWARE, f"internal error: {text}"
