"""The one polling loop of the suite: for state that has no event to wait on (server client lists, counters).

``time.sleep`` is cooperative in the monkey-patched gevent run, so the same loop serves both runs.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple, Type, TypeVar

T = TypeVar("T")


def poll(
    probe: Callable[[], Optional[T]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.01,
    tolerate: Tuple[Type[BaseException], ...] = (),
) -> T:
    """Call ``probe`` until it returns something other than None (errors in ``tolerate`` count as None);
    AssertionError naming ``what`` (and the last tolerated error) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = probe()
        except tolerate as error:
            value, last_error = None, error
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s waiting for {what}"
            raise AssertionError(message + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)
