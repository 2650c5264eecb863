"""The library's logger. redisresults never configures logging: the application decides the output."""

from __future__ import annotations

from typing import Any

import structlog

LOGGER_NAME = "redisresults"


def get_logger(**initial: Any) -> Any:
    """A structlog logger named ``redisresults``; events have fixed names, never secrets."""
    return structlog.get_logger(LOGGER_NAME, **initial)
