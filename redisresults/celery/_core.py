"""One redisresults core per process and settings, shared by every Celery-side backend object.

Celery builds many backend objects: one per thread (``app.backend`` is thread-local unless thread-safe, and even
then the first access races), one per unpickled ``AsyncResult``, one per app. They all look up their core here by
``(pid, settings)``, so they share one connection pool, one Pub/Sub connection and one drainer. A forked child
(prefork workers, billiard) has another pid, so it builds its own on first use and never touches the parent's
sockets.

The registry is the one piece of process-wide mutable state in redisresults, on purpose: it is what makes the
objects Celery creates behind the user's back share their connections. It takes no lock: a core costs nothing until
it is used (no sockets, no threads), so two threads racing on first access may both build one, and
``dict.setdefault`` keeps exactly one.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from typing import Any, Callable, Optional, Union

import redisresults

from ._pending import Pending, Table
from ._settings import CoreSpec

log = logging.getLogger(__name__)

_CORES: dict[tuple[Any, ...], Core] = {}
_FLUSH = "flush"
_STOP = "stop"
_Item = Union[Pending, str]


def shared_core(spec: CoreSpec) -> Core:
    """The core of this process for ``spec``, built on first use."""
    key = (os.getpid(), spec.key())
    core = _CORES.get(key)
    if core is None:
        core = _CORES.setdefault(key, Core(spec))
    return core


def existing_core(spec: CoreSpec) -> Optional[Core]:
    """The core of this process for ``spec`` if one was built (GC-safe: a dict lookup only)."""
    return _CORES.get((os.getpid(), spec.key()))


def close_all() -> None:
    """Close every core of this process (tests, shutdown hooks): pending waits fail, connections are released."""
    pid = os.getpid()
    for key in [key for key in list(_CORES) if key[0] == pid]:
        core = _CORES.pop(key, None)
        if core is not None:
            core.close()


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


class Core:
    """A redisresults backend (pool, consumer, drainer) plus the Celery result objects waiting on it."""

    def __init__(self, spec: CoreSpec) -> None:
        self.spec = spec
        self.pid = os.getpid()
        self.backend = spec.build()
        mode = getattr(self.backend, "mode", None)
        self.mode: str = mode if isinstance(mode, str) else ("gevent" if _gevent_patched() else "thread")
        self._queue: Any = self.new_queue()
        self._loop_lock = threading.Lock()
        self._loop: Optional[Any] = None
        self.closed = False
        self._flush_requested = False
        self.table = Table(self._live_consumer, self._to_loop, self._kick)

    def __repr__(self) -> str:
        return f"<redisresults.celery core pid={self.pid} {self.backend!r}>"

    def consumer(self) -> redisresults.ResultConsumer:
        """The core's consumer; DrainerError once the core is closed (a closed backend must not build another)."""
        if self.closed:
            raise redisresults.DrainerError("the redisresults.celery core was closed")
        return self.backend.result_consumer

    def _live_consumer(self) -> Optional[redisresults.ResultConsumer]:
        return None if self.closed else self.backend.result_consumer

    def new_queue(self) -> Any:
        """A FIFO whose blocking ``get`` yields to the hub in gevent mode (a plain SimpleQueue otherwise)."""
        if self.mode == "gevent":
            from gevent.queue import SimpleQueue

            return SimpleQueue()
        return queue.SimpleQueue()

    # ---------------------------------------------------------------- the callback loop

    def start_loop(self) -> None:
        """Start the loop that delivers results nobody waits on (``then()``, barriers) and applies deferrals."""
        if self._loop is not None:
            return
        with self._loop_lock:
            if self._loop is None and not self.closed:
                self._loop = _spawn(self._run, "redisresults-celery-callbacks", self.mode)

    def _to_loop(self, entry: Pending) -> None:
        self._queue.put(entry)  # SimpleQueue.put is reentrant: safe from the drainer and from __del__

    def _kick(self) -> None:
        if not self._flush_requested:
            self._flush_requested = True
            self._queue.put(_FLUSH)

    def _run(self) -> None:
        while True:
            item: _Item = self._queue.get()
            if item == _STOP:
                return
            try:
                if item == _FLUSH:
                    self._flush_requested = False
                    self.table.flush()
                elif isinstance(item, Pending) and not item.removed:
                    self.table.settle(item)
            except redisresults.DrainerError as error:  # the core was closed, or its drainer died
                if not self.closed:
                    log.warning("celery_result_failed", extra={"error": repr(error)})
            except Exception as error:  # callbacks are the user's: log, never stop delivering
                log.warning("celery_callback_failed", extra={"error": repr(error)}, exc_info=error)
            del item  # not kept alive (with its result object) while blocked on the next get()

    # ---------------------------------------------------------------- lifecycle

    def stats(self) -> dict[str, Any]:
        stats = dict(self.backend.stats())
        stats["celery_pending"] = len(self.table)
        return stats

    def close(self, timeout: float = 5.0) -> None:
        """Stop the callback loop, then the backend (pending waits fail with DrainerError)."""
        with self._loop_lock:
            self.closed = True
            loop, self._loop = self._loop, None
        if self.pid != os.getpid():
            return
        if loop is not None:
            self._queue.put(_STOP)
            loop.join(timeout)
        self.backend.close()


def _spawn(target: Callable[[], None], name: str, mode: str) -> Any:
    """A started daemon thread, or a greenlet in gevent mode; both have ``join(timeout)``."""
    if mode == "gevent":
        import gevent

        greenlet = gevent.spawn(target)
        greenlet.name = name
        return greenlet
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
