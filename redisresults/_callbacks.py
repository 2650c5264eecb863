"""Runs user callbacks (``then``, ``as_future``) off the drainer's read path, outside every lock."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

from ._log import get_logger
from ._runtime import Runner, simple_queue

log = get_logger()
_STOP = object()


class CallbackRunner:
    """One background loop per backend, started on first use; an exception in a callback is logged."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._queue: queue.SimpleQueue[Any] = simple_queue(mode)
        self._lock = threading.Lock()
        self._runner: Optional[Runner] = None

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            start = self._runner is None
            if start:
                self._runner = Runner(self._run, "redisresults-callbacks", self._mode)
        self._queue.put((func, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            func, args = item
            try:
                func(*args)
            except Exception as error:
                log.error("callback_failed", callback=getattr(func, "__qualname__", repr(func)), error=repr(error))
            del item, func, args  # not kept alive (with the result they hold) while blocked on the next get()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            self._queue.put(_STOP)
            runner.join(timeout)
