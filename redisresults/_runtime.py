"""The runtime background loops run on: a daemon thread, or a greenlet when gevent has patched the process.

The choice is made when a backend is built (never cached at import), and ``import redisresults``
never imports gevent.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any, Callable, Optional

from ._exceptions import ConfigError

GEVENT_HINT = "pip install 'redisresults[gevent]'"


# What the drainer blocks on: locks (threading), the Pub/Sub socket and its wake-up pair (socket),
# and select.select over both. Unpatched, any of them would freeze the whole hub.
_NEEDED_PATCHES = ("threading", "socket", "select")


def gevent_patched() -> bool:
    """True when gevent is loaded and has monkey-patched threading, socket and select in this process."""
    if "gevent" not in sys.modules:
        return False
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    return all(monkey.is_module_patched(name) for name in _NEEDED_PATCHES)


def simple_queue(mode: str) -> queue.SimpleQueue[Any]:
    """A FIFO whose blocking ``get`` yields to the hub in gevent mode.

    ``patch_all()`` patches ``queue`` too, but a process that patched only threading/socket/select
    would otherwise get the C ``SimpleQueue``, whose ``get`` blocks the hub (and so the drainer
    that would fill it).
    """
    if mode == "gevent":
        from gevent.queue import SimpleQueue

        return SimpleQueue()  # type: ignore[no-any-return]
    return queue.SimpleQueue()


def data_lock(mode: str) -> Any:
    """A lock for a table that is only ever held around pure data work: never across I/O, a callback, or
    anything else that could switch greenlets (the router's).

    In gevent mode that is the unpatched OS lock: gevent's own costs a few Python calls per acquire, paid per
    result delivered (about 5% of a greenlet fan-in's CPU per result), and it can never block the hub, since no
    greenlet gives up the thread while holding it. It also excludes real threads, which gevent's lock was never
    meant to."""
    if mode == "gevent":
        import gevent.monkey

        return gevent.monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()


def resolve_mode(concurrency: str) -> str:
    """``thread`` or ``gevent`` for a backend's ``concurrency`` option."""
    if concurrency == "thread":
        return "thread"
    if concurrency == "gevent":
        try:
            import gevent  # noqa: F401
        except ImportError:
            raise ConfigError(f"concurrency='gevent' needs gevent: {GEVENT_HINT}") from None
        if not gevent_patched():
            raise ConfigError(
                "concurrency='gevent' needs a monkey-patched process (threading, socket and select): call "
                "gevent.monkey.patch_all() before "
                "importing redis/redisresults (or run under gunicorn -k gevent). redis-py uses blocking sockets, "
                "which would freeze the gevent hub otherwise."
            )
        return "gevent"
    return "gevent" if gevent_patched() else "thread"


class Runner:
    """A started background loop: a named daemon thread, or a greenlet (``mode`` decides)."""

    def __init__(self, target: Callable[[], None], name: str, mode: str) -> None:
        self.name = name
        self.mode = mode
        self._thread: Optional[threading.Thread] = None
        self._greenlet: Any = None
        if mode == "gevent":
            import gevent

            self._greenlet = gevent.spawn(target)
            self._greenlet.name = name
        else:
            self._thread = threading.Thread(target=target, name=name, daemon=True)
            self._thread.start()

    def is_alive(self) -> bool:
        if self._greenlet is not None:
            return not self._greenlet.dead
        assert self._thread is not None
        return self._thread.is_alive()

    def is_current(self) -> bool:
        if self._greenlet is not None:
            import gevent

            return bool(gevent.getcurrent() is self._greenlet)
        return threading.current_thread() is self._thread

    def join(self, timeout: float) -> None:
        if self.is_current():
            return
        if self._greenlet is not None:
            self._greenlet.join(timeout=timeout)
        elif self._thread is not None:
            self._thread.join(timeout)
