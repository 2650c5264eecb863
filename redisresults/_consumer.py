"""ResultConsumer: the public face of waiting, a thin facade over the router and the drainer.

Callers register futures with the router (a lock-guarded table) and wake the drainer, which is
the only code that touches the Pub/Sub connection. The drainer starts lazily on the runtime the
backend was built for (a daemon thread, or a greenlet under gevent).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Protocol

from ._drainer import COUNTERS, Drainer
from ._exceptions import DrainerError, ResultTimeout, UsageError
from ._future import Listener, Resolvable, ResultFuture, settle
from ._keys import task_key
from ._link import Link, Meta
from ._router import Router
from ._runtime import Runner, data_lock
from ._sent import OPEN, Ticket


def idle_stats(mode: str) -> dict[str, Any]:
    """``stats()`` of a backend whose consumer was never started (same keys, all at rest)."""
    return {
        "pending": 0,
        "channels": 0,
        "subscribed": 0,
        "settling": 0,
        "unsubscribing": 0,
        "drainer_alive": False,
        "connected": False,
        "cached": 0,
        "mode": mode,
        "last_error": None,
        "failure": None,
        **dict.fromkeys(COUNTERS, 0),
    }


class DrainerLike(Protocol):
    """What the facade needs of a drainer: ``Drainer`` (one connection) or a per-node one (Redis Cluster)."""

    stopping: bool
    failure: Optional[str]
    last_error: Optional[str]  # None while connected (or not yet tried): no sent ticket waits while it is set

    def run(self) -> None: ...

    def drain_once(self, max_wait: float) -> bool: ...

    def wake(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def close_wakeup(self) -> None: ...


class Watch:
    """A handle for ``unwatch``: every meta published on one task's channel goes to ``on_meta``."""

    __slots__ = ("channel", "on_meta", "task_id")

    def __init__(self, task_id: str, channel: bytes, on_meta: Callable[[Meta], None]) -> None:
        self.task_id = task_id
        self.channel = channel
        self.on_meta = on_meta


class ResultConsumer:
    """Routes published results to per-task futures over one Pub/Sub connection per backend."""

    def __init__(
        self,
        link: Link,
        *,
        keyprefix: str,
        mode: str,
        cache_max: int,
        drainer: Callable[[Link, Router], DrainerLike] = Drainer,
    ) -> None:
        self._prefix = keyprefix
        self.mode = mode
        self._router = Router(cache_max, lock=data_lock(mode))
        self._drainer = drainer(link, self._router)
        self._lock = threading.Lock()  # guards starting/stopping the runner and the manual-drain owner
        self._runner: Optional[Runner] = None
        self._manual_owner: Optional[int] = None

    def __repr__(self) -> str:
        return f"<ResultConsumer mode={self.mode}>"

    # ---------------------------------------------------------------- waiting

    def register(self, task_id: str, listener: Optional[Listener] = None, *, just_read: bool = False) -> ResultFuture:
        """A future for ``task_id``'s ready meta; ``listener(future)`` runs on the drainer once it is set.

        ``just_read``: the caller read the key a moment ago and found it not ready, so the drainer need not
        peek at it before subscribing (it still reads it once the SUBSCRIBE is confirmed)."""
        future = ResultFuture(task_id, listener)
        self.add(future, just_read=just_read)
        return future

    def add(self, future: Resolvable, *, just_read: bool = False) -> None:
        """``register`` for a future of the caller's own (``AsyncResult.as_future``): resolved once, by the
        drainer, or here at once from the ready-meta cache."""
        task_id = future.task_id
        cached, wake = self._router.register(task_key(self._prefix, task_id), task_id, future, just_read=just_read)
        if cached is not None:
            future.resolve(cached, None)
        elif wake or self._runner is None:
            self._started(wake)

    def register_many(
        self, task_ids: list[str], listener: Optional[Listener] = None, *, just_read: bool = False
    ) -> list[ResultFuture]:
        """``register`` for many tasks at once: one lock and at most one wake-up for the whole burst."""
        if not task_ids:
            return []  # nothing to wait for: no drainer either
        futures = [ResultFuture(task_id, listener) for task_id in task_ids]
        prefix = self._prefix
        entries: list[tuple[bytes, Resolvable]] = [(task_key(prefix, f.task_id), f) for f in futures]
        cached, wake = self._router.register_many(entries, just_read=just_read)
        self._started(wake)
        for future, meta in cached:
            future.resolve(meta, None)
        return futures

    def discard(self, future: ResultFuture) -> None:
        """Forget a future whose waiter gave up; the last one out unsubscribes the channel."""
        if not future.done and self._router.discard(self._channel(future.task_id), future):
            self._drainer.wake()

    def wait_for(
        self, task_id: str, timeout: Optional[float], *, just_read: bool = False, deadline: Optional[float] = None
    ) -> Meta:
        """Block until ``task_id`` is ready; ResultTimeout after ``timeout`` seconds (None = no limit), or at
        ``deadline`` (``time.monotonic()``) when the caller's budget started earlier."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        future = self.register(task_id, just_read=just_read)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not future.wait(remaining):
                raise ResultTimeout(self._timeout_message(task_id, timeout))
            return future.meta()
        finally:
            self.discard(future)

    def consume_from(self, task_id: str) -> Ticket:
        """Subscribe ahead of a wait (e.g. before sending the task). Nobody needs to wait on the ticket: it opens
        (``ticket.wait(timeout)``) once the drainer has sent the SUBSCRIBE, for callers that promise the channel
        is subscribed on the server when they return (the Celery drop-in's ``delay()``)."""
        wake, generation = self._router.hold(self._channel(task_id), task_id)
        self._started(wake)
        return self._router.sent.ticket(generation, down=self._drainer.last_error is not None)

    def cancel_for(self, task_id: str) -> None:
        """Drop the ``consume_from`` holds on ``task_id`` (idempotent); waiters keep the subscription."""
        if self._router.release(self._channel(task_id)):
            self._drainer.wake()

    def sent(self) -> Ticket:
        """A ticket that opens once the drainer has sent every subscription change made before this call: while
        one waits, the one-connection drainer sends lingering UNSUBSCRIBEs at once (a cluster node's may still
        linger, up to ``LINGER``). The drop-in's ``forget()`` waits on it: Celery's unsubscribes before it returns."""
        if self._runner is None:
            return OPEN  # no drainer, no connection: nothing to send
        ticket = self._router.sent.ticket(
            self._router.next_taken(), down=self._drainer.last_error is not None, urgent=True)
        self._drainer.wake()
        return ticket

    def watch(self, task_id: str, on_meta: Callable[[Meta], None]) -> Watch:
        """Call ``on_meta(meta)`` from the drainer with every meta published for ``task_id`` (any state,
        in order) until ``unwatch``; it must only hand the meta on, never block."""
        handle = Watch(task_id, self._channel(task_id), on_meta)
        self._started(self._router.watch(handle.channel, task_id, on_meta))
        return handle

    def unwatch(self, handle: Watch) -> None:
        if self._router.unwatch(handle.channel, handle.on_meta):
            self._drainer.wake()

    # ---------------------------------------------------------------- the ready-meta cache

    def cached(self, task_id: str) -> Optional[Meta]:
        return self._router.cached(task_id)

    def remember(self, task_id: str, meta: Meta) -> None:
        self._router.remember(task_id, meta)

    def forget(self, task_id: str) -> None:
        self._router.forget(task_id)

    # ---------------------------------------------------------------- operating

    def stats(self) -> dict[str, Any]:
        counts = self._router.counts()
        snapshot = self._drainer.snapshot()
        runner = self._runner
        failure = self._failure()
        return {
            "pending": counts["pending"],
            "channels": counts["channels"],
            "subscribed": snapshot["subscribed"],
            "settling": snapshot["settling"] + counts["unapplied"],
            "unsubscribing": snapshot["unsubscribing"],
            "drainer_alive": runner is not None and runner.is_alive(),
            "connected": snapshot["connected"],
            "cached": counts["cached"],
            "mode": self.mode,
            "last_error": snapshot["last_error"],
            "failure": failure,
            **{key: snapshot[key] for key in COUNTERS},
        }

    def drain_events(self, timeout: Optional[float] = None) -> None:
        """Run one bounded drain step in the calling thread; refused while the background drainer runs."""
        me = threading.get_ident()
        with self._lock:
            runner = self._runner
            if runner is not None and runner.is_alive() and not runner.is_current():
                raise UsageError(
                    "drain_events() refused: the background drainer owns the Pub/Sub connection; "
                    "waiting with AsyncResult.get() needs no manual draining"
                )
            if self._manual_owner is not None and self._manual_owner != me:
                raise UsageError("drain_events() is already running in another thread")
            self._manual_owner = me
        try:
            self._drainer.drain_once(0.0 if timeout is None else timeout)
        finally:
            with self._lock:
                self._manual_owner = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join the drainer; pending and later waits fail with DrainerError."""
        closed = DrainerError("the backend was closed")
        pending = self._router.close(closed)
        with self._lock:
            runner = self._runner
            self._drainer.stopping = True
        self._drainer.wake()
        if runner is not None:
            runner.join(timeout)
        else:
            self._drainer.close_wakeup()
        settle(pending, error=closed)

    # ---------------------------------------------------------------- internals

    def _channel(self, task_id: str) -> bytes:
        return task_key(self._prefix, task_id)

    def _started(self, wake: bool) -> None:
        if self._runner is None:
            with self._lock:
                if self._runner is None and self._manual_owner is None and not self._drainer.stopping:
                    self._runner = Runner(self._drainer.run, "redisresults-drainer", self.mode)
        if wake:
            self._drainer.wake()

    def _failure(self) -> Optional[str]:
        return self._drainer.failure

    def _timeout_message(self, task_id: str, timeout: Optional[float]) -> str:
        message = f"result of task {task_id} not ready after {timeout}s"
        snapshot = self._drainer.snapshot()
        if not snapshot["connected"] and snapshot["last_error"]:
            message += f"; Redis was unreachable ({snapshot['last_error']})"
        return message
