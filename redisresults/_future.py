"""A per-wait future: set once by the drainer, awaited by one caller with a deadline."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

Listener = Callable[["ResultFuture"], None]


class ResultFuture:
    """Holds one meta (or an error) for one waiter. Small on purpose: thousands may be pending.

    Only the party that removed the future from the consumer's table sets it, so it is set
    exactly once without a lock of its own; waiting blocks on a pre-acquired lock (which
    gevent's monkey-patching makes cooperative).
    """

    __slots__ = ("_error", "_gate", "_meta", "done", "listener", "task_id")

    def __init__(self, task_id: str, listener: Optional[Listener] = None) -> None:
        self.task_id = task_id
        self.listener = listener
        self.done = False
        self._meta: Optional[dict[str, Any]] = None
        self._error: Optional[BaseException] = None
        self._gate = threading.Lock()
        self._gate.acquire()

    def set_meta(self, meta: dict[str, Any]) -> None:
        self._meta = meta
        self._finish()

    def set_error(self, error: BaseException) -> None:
        self._error = error
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self._gate.release()

    def wait(self, timeout: Optional[float]) -> bool:
        """True once set; False when ``timeout`` (seconds, None = no limit) passes first."""
        if self.done:
            return True
        if timeout is None:
            acquired = self._gate.acquire()
        elif timeout <= 0:
            return self.done
        else:
            acquired = self._gate.acquire(timeout=timeout)
        if acquired:
            self._gate.release()
        return self.done

    def meta(self) -> dict[str, Any]:
        """The meta it was set with; re-raises the error it was failed with."""
        if self._error is not None:
            # One error object may fail thousands of futures (a closed backend): raised as is, each raise would
            # prepend this frame to its shared traceback, keeping every waiter's frame alive through it.
            raise self._error.with_traceback(None)
        assert self._meta is not None
        return self._meta


def settle(
    futures: list[ResultFuture],
    meta: Optional[dict[str, Any]] = None,
    error: Optional[BaseException] = None,
    on_listener_error: Optional[Callable[[BaseException], None]] = None,
) -> None:
    """Set each future (with ``meta``, or failed with ``error``) and run its listener.

    A listener only hands the future on (to a queue, a callback loop); if it raises anyway, the
    error goes to ``on_listener_error`` so the drainer that called this never dies of it.
    """
    for future in futures:
        if error is not None:
            future.set_error(error)
        else:
            assert meta is not None
            future.set_meta(meta)
        if future.listener is not None:
            try:
                future.listener(future)
            except Exception as exc:
                if on_listener_error is None:
                    raise
                on_listener_error(exc)
