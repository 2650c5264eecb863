"""How redisresults logs: stdlib ``logging`` under ``redisresults.*`` loggers, never configured here.

structlog is the API inside the library, but bound to a stdlib logger with the library's own
processors (an unconfigured structlog prints to stdout by design). Each record's message is the
fixed event name and the event's fields ride on the record as attributes (``extra``), so
``logging.basicConfig`` shows them and structlog applications pick them up with
``structlog.stdlib.ProcessorFormatter`` + ``ExtraAdder``. With nothing configured nothing is shown:
the package logger has a ``NullHandler``, as urllib3 does.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

LOGGER_NAME = "redisresults"

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

# Field names a LogRecord already uses; an event field of that name would make logging raise.
_RESERVED = (frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}) - {
    "exc_info",
    "stack_info",
}


def _rename_reserved(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in [k for k in event_dict if k in _RESERVED]:
        event_dict[f"field_{key}"] = event_dict.pop(key)
    return event_dict


def get_logger(name: str = LOGGER_NAME) -> Any:
    """A structlog logger writing to the stdlib logger ``name`` (cheap when the level is disabled)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[_rename_reserved, structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
