"""Logging for the CLI's own process: a handler on the ``redisresults`` logger for as long as ``main`` runs.

The library logs through stdlib ``logging`` (a record's message is the fixed event name, its fields
are record attributes) and never configures it; the CLI is an application, so it attaches one
handler rendering those records with structlog's ``ProcessorFormatter`` -- console lines, or JSON
lines with ``--log-json`` -- to the current ``sys.stderr``, secrets redacted. Nothing global is
configured (no ``structlog.configure``, no root handler), and ``main`` removes the handler and
restores the logger's level on the way out, so calling ``main`` in-process leaves no trace.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from ._output import Redactor

LOGGER_NAME = "redisresults"
LEVELS = ("debug", "info", "warning", "error")


class StderrHandler(logging.Handler):
    """Each formatted record as one line on the *current* ``sys.stderr``, secrets redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            sys.stderr.write(self._redact(text) + "\n")
            sys.stderr.flush()
        except Exception:  # logging's contract: a failing handler reports, never raises into the caller
            self.handleError(record)


def formatter(json_lines: bool) -> logging.Formatter:
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.ExtraAdder(),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


@contextmanager
def log_to_stderr(json_lines: bool, level: str, redact: Redactor) -> Iterator[StderrHandler]:
    """The ``redisresults`` logger at ``level``, rendered to stderr; undone when the block exits."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = StderrHandler(redact)
    handler.setFormatter(formatter(json_lines))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper()))
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()
