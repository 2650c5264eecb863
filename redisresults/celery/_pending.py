"""Celery result objects waiting on the shared core: one entry per object, delivered exactly once.

Celery keeps every ``AsyncResult`` that ``get()``, ``then()`` or a ``ResultSet``'s barrier is waiting on, and sets
its cache (``_maybe_set_cache``, which fires its ``on_ready`` promise and so ``then()`` callbacks and barriers) when
the result arrives. Here each such object has an entry holding one future registered with the core's consumer.
Whoever sees the future done first — the waiting thread itself, or the callback loop for objects nobody waits on —
claims the entry and delivers; a thread that loses the claim waits until the winner has set the cache. vine's
promises are not thread-safe, so they must never be fired twice at once.

``untrack`` runs from ``AsyncResult.__del__`` (the garbage collector, on any thread, possibly in the middle of a
subscribe or while this very thread holds a lock): it only pops from dicts and appends to a deque — no lock, no
I/O, no blocking. The consumer calls it implies (``discard``, ``cancel_for``) are applied later by ``flush``, from
the next ordinary call or from the callback loop.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any, Callable, Optional

from redisresults import DrainerError, ResultConsumer
from redisresults._future import ResultFuture

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


# Celery's result objects offer their backend two private names, and Celery's own backends use them: ``_cache``
# (the ready meta, or None) and ``_maybe_set_cache(meta)``. These three functions are the only place the drop-in
# touches them.
_CACHE = "_cache"
_SET_CACHE = "_maybe_set_cache"


def cache_of(result: Any) -> Any:
    """The result object's cached meta (None while it is not ready)."""
    return getattr(result, _CACHE, None)


def is_ready(result: Any) -> bool:
    """Celery's own test: the object's cache holds a ready meta."""
    cache = cache_of(result)
    return isinstance(cache, dict) and cache.get("status") in READY_STATES


def set_cache(result: Any, meta: dict[str, Any]) -> None:
    """Hand a ready meta to a result object as Celery's backends do: it converts exceptions and children, sets
    its cache and fires its ``on_ready`` promise (``then()`` callbacks, barriers, ``remove_pending_result``)."""
    getattr(result, _SET_CACHE)(meta)


class Pending:
    """One Celery result object waiting on one registered future."""

    __slots__ = (
        "_claim", "_finished_events", "_target", "finished", "future", "removed", "sinks", "task_id", "to_loop",
    )

    def __init__(self, result: Any, weak: bool, to_loop: Callable[[Pending], None]) -> None:
        self.task_id: str = result.id
        self._target: Any = weakref.ref(result) if weak else result
        self.future: Optional[ResultFuture] = None
        self.to_loop = to_loop
        #: queues of the threads waiting on this entry right now; the future's listener wakes them, else the loop
        self.sinks: list[Any] = []
        self.removed = False
        self.finished = False
        self._claim = [True]  # list.pop is atomic: exactly one party gets the token
        self._finished_events: list[threading.Event] = []

    def target(self) -> Any:
        """The result object, or None when a weakly held one was collected."""
        target = self._target
        return target() if isinstance(target, weakref.ref) else target

    def failed(self) -> bool:
        """The future was failed (drainer stopped, subscription refused): this entry can never deliver."""
        future = self.future
        if future is None or not future.done:
            return False
        try:
            future.meta()
        except BaseException:
            return True
        return False

    def on_ready(self, future: ResultFuture) -> None:
        """The future's listener, on the drainer: hand the entry to its waiters, or to the callback loop. Never
        blocks (queue puts only)."""
        self.future = future
        sinks = list(self.sinks)
        if sinks:
            for sink in sinks:
                sink.put(self)
        else:
            self.to_loop(self)

    def claim(self) -> bool:
        try:
            self._claim.pop()
        except IndexError:
            return False
        return True

    def finish(self) -> None:
        """The result object's cache is set (or never will be from here): release threads that lost the claim."""
        self.finished = True
        for event in list(self._finished_events):
            event.set()

    def wait_finished(self, timeout: Optional[float]) -> None:
        if self.finished:
            return
        event = threading.Event()
        self._finished_events.append(event)
        if not self.finished:
            event.wait(timeout)


class Table:
    """The entries of one process's core, by task id and object identity."""

    def __init__(self, consumer: Callable[[], Optional[ResultConsumer]], to_loop: Callable[[Pending], None],
                 kick: Callable[[], None]) -> None:
        self._consumer = consumer
        self._to_loop = to_loop
        self._kick = kick
        self._lock = threading.Lock()  # guards adding and pruning task ids; never taken by untrack
        self._by_id: dict[str, dict[int, Pending]] = {}
        self._removed: deque[tuple[str, Optional[Pending]]] = deque()

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in list(self._by_id.values()))

    def entry_for(self, result: Any) -> Optional[Pending]:
        waiters = self._by_id.get(result.id)
        entry = waiters.get(id(result)) if waiters is not None else None
        if entry is None or entry.target() is not result:
            return None
        return entry

    def track(self, result: Any, weak: bool = False) -> Pending:
        """The entry of ``result``, registering a future for it unless one is registered already.

        The entry is in the table before its future can resolve, so the ``remove_pending_result`` that delivering
        it triggers always finds it. Registering under the table's lock is safe: the consumer never calls back
        into the table, and its listeners only enqueue.
        """
        existing = self.entry_for(result)
        if existing is not None and existing.future is not None and not existing.failed():
            return existing
        consumer = self._consumer()
        if consumer is None:
            raise DrainerError("the redisresults.celery core was closed")
        with self._lock:
            waiters = self._by_id.setdefault(result.id, {})
            current = waiters.get(id(result))
            if current is not None and current.target() is result and not current.failed():
                return current  # another thread tracked the same object meanwhile
            entry = waiters[id(result)] = Pending(result, weak, self._to_loop)
            try:
                future = consumer.register(result.id, entry.on_ready)
            except BaseException:
                del waiters[id(result)]
                raise
            if entry.future is None:
                entry.future = future
        if current is not None:
            self._drop(current)
        return entry

    def attach(self, entry: Pending, sink: Any) -> None:
        """``sink`` gets the entry when its future resolves (instead of the callback loop), until ``detach``."""
        entry.sinks.append(sink)

    def detach(self, entry: Pending, sink: Any) -> None:
        """Stop handing ``entry`` to ``sink``. If it resolved meanwhile and nobody delivered it (the listener may
        have put it in this very sink), the callback loop delivers it, so ``then()`` callbacks still fire."""
        if sink in entry.sinks:
            entry.sinks.remove(sink)
        future = entry.future
        if future is not None and future.done and not entry.finished and not entry.removed:
            self._to_loop(entry)

    def untrack(self, result: Any) -> None:
        """Stop tracking ``result`` (GC-safe, see the module docstring); its task is unsubscribed later unless
        another object still waits on it."""
        task_id = result.id
        if not isinstance(task_id, str) or not task_id:
            return  # e.g. a GroupResult without an id: nothing was tracked or subscribed for it
        waiters = self._by_id.get(task_id)
        entry = waiters.pop(id(result), None) if waiters is not None else None
        if entry is not None:
            entry.removed = True
            entry.finish()
        self._removed.append((task_id, entry))
        self._kick()

    def cancel(self, task_id: str) -> None:
        """Drop ``consume_from`` holds on ``task_id`` once nothing tracks it (deferred like ``untrack``)."""
        if not isinstance(task_id, str) or not task_id:
            return
        self._removed.append((task_id, None))
        self._kick()

    def flush(self) -> None:
        """Apply what ``untrack`` and ``cancel`` deferred: discard futures, unsubscribe idle tasks."""
        if not self._removed:
            return
        consumer = self._consumer()
        if consumer is None:  # closed: the consumer and its subscriptions are gone already
            self._removed.clear()
            return
        idle: dict[str, None] = {}
        while True:
            try:
                task_id, entry = self._removed.popleft()
            except IndexError:
                break
            if entry is not None and entry.future is not None:
                consumer.discard(entry.future)
            idle[task_id] = None
        for task_id in idle:
            with self._lock:
                waiters = self._by_id.get(task_id)
                tracked = bool(waiters)
                if waiters is not None and not tracked:
                    del self._by_id[task_id]
            if not tracked:
                consumer.cancel_for(task_id)

    def settle(self, entry: Pending, meta: Optional[dict[str, Any]] = None,
               timeout: Optional[float] = None) -> None:
        """Deliver ``meta`` (default: the future's) to the entry's result object, once; raise the future's error.

        A thread that loses the claim waits (at most ``timeout``) until the winner has set the object's cache.
        """
        if not entry.claim():
            entry.wait_finished(timeout)
            return
        try:
            target = entry.target()
            if meta is None:
                assert entry.future is not None
                try:
                    meta = entry.future.meta()
                except BaseException:
                    self._drop(entry)
                    raise
            if target is None:
                self._drop(entry)
                return
            # A copy: Celery converts exceptions and children in place, and the core may share one meta between
            # every future of a channel. Its on_ready fires remove_pending_result -> untrack.
            set_cache(target, dict(meta))
        finally:
            entry.finish()

    def _drop(self, entry: Pending) -> None:
        """Remove an entry that can never deliver (its object is gone, or its future failed)."""
        with self._lock:
            waiters = self._by_id.get(entry.task_id)
            if waiters is not None:
                for oid, candidate in list(waiters.items()):
                    if candidate is entry:
                        del waiters[oid]
        entry.removed = True
        self._removed.append((entry.task_id, entry))
        self._kick()
