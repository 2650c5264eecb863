"""Capturing redisresults' log events from stdlib ``logging``, the way an application would see them."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, List

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def event_of(record: logging.LogRecord) -> Dict[str, Any]:
    """A record as ``{"event", "log_level", **fields}``: the fields are the attributes ``extra`` added."""
    fields = {key: value for key, value in vars(record).items() if key not in _STANDARD}
    return {"event": record.getMessage(), "log_level": record.levelname.lower(), "logger": record.name, **fields}


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.events: List[Dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(event_of(record))


@contextlib.contextmanager
def capture_logs() -> Iterator[List[Dict[str, Any]]]:
    """Every event logged under ``redisresults`` inside the block, debug included."""
    logger = logging.getLogger("redisresults")
    collector = _Collector()
    previous = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    try:
        yield collector.events
    finally:
        logger.removeHandler(collector)
        logger.setLevel(previous)
