"""Per-wait futures: set once by the drainer, awaited by one caller with a deadline.

The router holds any ``Resolvable``: a ``ResultFuture`` (``get()``, ``then()``, result sets), or a
``LeanFuture`` subclass that resolves itself (``AsyncResult.as_future()``: one object per wait instead of
a ResultFuture, its listener and a ``concurrent.futures.Future``).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Optional, Protocol

from ._log import get_logger

log = get_logger()

Listener = Callable[["ResultFuture"], None]
Meta = dict[str, Any]
_RUNNING, _FINISHED = "RUNNING", "FINISHED"  # concurrent.futures' state names (its _base module's constants)


class Resolvable(Protocol):
    """What the router holds for one wait and the drainer resolves, exactly once."""

    @property
    def task_id(self) -> str: ...

    def resolve(self, meta: Optional[Meta], error: Optional[BaseException]) -> None:
        """Set it with ``meta`` (or fail it with ``error``) and hand it on; runs outside every lock."""


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

    def resolve(self, meta: Optional[Meta], error: Optional[BaseException]) -> None:
        self._meta, self._error = meta, error
        self.done = True
        self._gate.release()
        if self.listener is not None:
            self.listener(self)

    def wait(self, timeout: Optional[float]) -> bool:
        """True once set; False when ``timeout`` (seconds, None = no limit) passes first."""
        if self.done:
            return True
        # One waiter per future (its own wait_for): the gate is never released again once it opened for
        # it (``done`` answers any later call), which saves a release per result (a hub callback under gevent).
        if timeout is None:
            self._gate.acquire()
        elif timeout <= 0:
            return self.done
        else:
            self._gate.acquire(timeout=timeout)
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
    futures: list[Resolvable],
    meta: Optional[Meta] = None,
    error: Optional[BaseException] = None,
    on_listener_error: Optional[Callable[[BaseException], None]] = None,
) -> None:
    """Resolve each future with ``meta``, or fail it with ``error``.

    A listener only hands the future on (to a queue, a callback loop); if it raises anyway, the
    error goes to ``on_listener_error`` so the drainer that called this never dies of it.
    """
    for future in futures:
        try:
            future.resolve(meta, error)
        except Exception as exc:
            if on_listener_error is None:
                raise
            on_listener_error(exc)


class LeanFuture(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` that costs one lock until somebody blocks on it.

    The stdlib's Future builds a Condition (with its RLock, deque, dict and five bound methods) and two
    lists up front: eleven objects for the garbage collector to walk, times 10,000 in a burst of
    ``as_future()`` waits. Yet only ``result()``/``exception()`` ever block on the Condition; everything else
    (``wait``, ``as_completed``, ``add_done_callback``, ``cancel``, ``repr``) merely holds its lock. So here
    ``_condition``, the name the stdlib's code locks, is the bare RLock; the Condition is made on that lock
    by the first ``result()``/``exception()`` that has to block, and the waiter and callback lists when first
    used, under the lock. The stdlib's ``wait``/``as_completed``/``add_done_callback`` run unchanged on top;
    the methods that would notify or wait on the Condition (``set_result``, ``set_exception``, ``result``,
    ``exception``) are the stdlib's, rewritten on ``_settle`` and ``_wait`` with the same states and errors.

    The state starts RUNNING, as after ``set_running_or_notify_cancel()``: a wait cannot be cancelled.
    Subclasses implement ``resolve`` and call ``_settle`` once.
    """

    __slots__ = ("_callback_list", "_cond", "_condition", "_exception", "_result", "_state", "_waiter_list",
                 "task_id")

    def __init__(self, task_id: str) -> None:  # not the stdlib's __init__: it builds what this defers
        self.task_id = task_id
        self._condition: Any = threading.RLock()  # what the stdlib's code acquires: a lock, not a Condition
        self._cond: Optional[threading.Condition] = None  # on the same lock, for result()/exception() only
        self._waiter_list: Optional[list[Any]] = None
        self._callback_list: Optional[list[Any]] = None
        self._state = _RUNNING
        self._result: Any = None
        self._exception: Optional[BaseException] = None

    def resolve(self, meta: Optional[Meta], error: Optional[BaseException]) -> None:
        raise NotImplementedError

    def _settle(self, result: Any, error: Optional[BaseException]) -> None:
        """The stdlib's ``set_result``/``set_exception``: set, tell the waiters, then run the callbacks."""
        with self._condition:
            if self._state == _FINISHED:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception = result, error
            self._state = _FINISHED
            for waiter in self._waiter_list or ():  # installed by concurrent.futures.wait/as_completed
                if error is not None:
                    waiter.add_exception(self)
                else:
                    waiter.add_result(self)
            if self._cond is not None:
                self._cond.notify_all()
        for callback in self._callback_list or ():  # no longer changes: add_done_callback runs a late one itself
            try:
                callback(self)
            except Exception as exc:  # as the stdlib's: logged, the other callbacks still run
                log.error("done_callback_failed", callback=getattr(callback, "__qualname__", repr(callback)),
                          error=repr(exc))

    def _wait(self, timeout: Optional[float]) -> None:
        """Block until set or ``timeout`` passes (then ``concurrent.futures.TimeoutError``); under the lock."""
        if self._state == _FINISHED:
            return
        if self._cond is None:
            self._cond = threading.Condition(self._condition)
        self._cond.wait(timeout)
        if self._state != _FINISHED:
            raise concurrent.futures.TimeoutError()

    # ------------------------------------------------------------ the stdlib's methods that use a Condition

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        self._settle(None, exception)

    def result(self, timeout: Optional[float] = None) -> Any:
        with self._condition:
            self._wait(timeout)
            error = self._exception
            if error is None:
                return self._result
        try:
            raise error
        finally:
            del error, self  # the traceback keeps this frame: not the future too (the stdlib's cycle break)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        with self._condition:
            self._wait(timeout)
            return self._exception

    def done(self) -> bool:
        return self._state == _FINISHED  # only RUNNING or FINISHED: one attribute read, no lock

    # ------------------------------------------------------------ the stdlib's lists, made on first use

    @property
    def _waiters(self) -> list[Any]:
        # The stdlib reaches it only holding _condition (wait/as_completed install and remove waiters under
        # _AcquireFutures or ``with f._condition``), as _settle does: no lock of its own needed to make it.
        if self._waiter_list is None:
            self._waiter_list = []
        return self._waiter_list

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._waiter_list = value

    @property
    def _done_callbacks(self) -> list[Any]:
        with self._condition:
            if self._callback_list is None:
                self._callback_list = []
            return self._callback_list

    @_done_callbacks.setter
    def _done_callbacks(self, value: list[Any]) -> None:
        self._callback_list = value
