"""Connection pools whose full state is back-pressure: a call waits for a free connection.

redis-py's pools raise ``MaxConnectionsError`` the moment ``max_connections`` are checked out,
which callers would take for a lost connection. Here a checkout waits (a semaphore, cooperative
under gevent) for at most the retry budget, then raises ``PoolTimeout``: Redis itself is fine.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import redis
import redis.sentinel

from ._exceptions import PoolTimeout

REDIS_PY_DEFAULT_MAX = 100


class _WaitForFree:
    """Mixin for a redis-py pool: ``get_connection`` waits for a free slot instead of failing."""

    def __init__(self, *args: Any, wait_timeout: Optional[float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait_timeout = wait_timeout
        self._slots = threading.Semaphore(self.max_connections)  # type: ignore[attr-defined]
        self._held: set[int] = set()
        self._held_lock = threading.Lock()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._slots.acquire(timeout=self._wait_timeout):
            raise PoolTimeout(
                f"no free Redis connection within {self._wait_timeout or 'unlimited '}s: all "
                f"{self.max_connections} are in use (raise max_connections, or fewer concurrent calls)"  # type: ignore[attr-defined]
            )
        try:
            connection = super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            self._slots.release()
            raise
        with self._held_lock:
            self._held.add(id(connection))
        return connection

    def release(self, connection: Any) -> None:
        super().release(connection)  # type: ignore[misc]
        with self._held_lock:
            held = id(connection) in self._held
            self._held.discard(id(connection))
        if held:
            self._slots.release()


class WaitingConnectionPool(_WaitForFree, redis.ConnectionPool):
    """``redis.ConnectionPool`` with back-pressure."""


class WaitingSentinelPool(_WaitForFree, redis.sentinel.SentinelConnectionPool):
    """``SentinelConnectionPool`` (follows the master) with back-pressure."""
