"""Connection pools whose full state is back-pressure: a call waits for a free connection.

redis-py's pools raise ``MaxConnectionsError`` the moment ``max_connections`` are checked out,
which callers would take for a lost connection. Here a checkout that finds the pool full waits
(cooperatively under gevent) until a connection is released, for at most the retry budget, then
raises ``PoolTimeout``: Redis itself is fine. The common case — a free connection — costs nothing
extra: the wait is entered only after redis-py said the pool is full.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any, Optional

import redis
import redis.exceptions as rex
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._exceptions import PoolTimeout

REDIS_PY_DEFAULT_MAX = 100


def checkout(pool: Any) -> Any:
    """A connection from ``pool``: redis-py 5.0 wants a command name, 5.3+ warns when given one."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("EVALSHA")


def pool_params(connparams: dict[str, Any]) -> dict[str, Any]:
    """redis-py pool kwargs from a backend's connparams."""
    params = dict(connparams)
    params.pop("hosts", None)
    # Retrying is ours (bounded, per retry_policy); redis-py's own retries would multiply it.
    params["retry"] = Retry(NoBackoff(), 0)
    if params.get("ssl_cert_reqs", ssl.CERT_NONE) != ssl.CERT_NONE:
        params.setdefault("ssl_check_hostname", True)  # redis-py < 6 does not check host names by default
    return params


def drainer_params(params: dict[str, Any]) -> dict[str, Any]:
    """The drainer's own two connections (Pub/Sub + key reads), outside ``max_connections``: RESP2 so
    subscribed replies are plain arrays, and no redis-py health check (the drainer PINGs itself)."""
    params = {**params, "max_connections": 2, "protocol": 2}
    params.pop("health_check_interval", None)
    return params


def _pool_full(error: BaseException) -> bool:
    """redis-py >= 5.3 raises MaxConnectionsError; older versions a ConnectionError with this text."""
    full = getattr(rex, "MaxConnectionsError", None)
    return (full is not None and isinstance(error, full)) or "Too many connections" in str(error)


class _WaitForFree:
    """Mixin for a redis-py pool: ``get_connection`` waits for a release instead of failing when full."""

    def __init__(self, *args: Any, wait_timeout: Optional[float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait_timeout = wait_timeout
        self._freed = threading.Condition(threading.Lock())
        self._releases = 0  # bumped on every release: a waiter that saw it change retries at once
        self._waiting = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        deadline = None if self._wait_timeout is None else time.monotonic() + self._wait_timeout
        while True:
            seen = self._releases
            try:
                return super().get_connection(*args, **kwargs)  # type: ignore[misc]
            except rex.ConnectionError as error:
                if not _pool_full(error):
                    raise
            with self._freed:
                self._waiting += 1
                try:
                    while self._releases == seen:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise PoolTimeout(
                                f"no free Redis connection within {self._wait_timeout}s: all "
                                f"{self.max_connections} are in use (raise max_connections, or make fewer "  # type: ignore[attr-defined]
                                "concurrent calls)"
                            ) from None
                        self._freed.wait(left)
                finally:
                    self._waiting -= 1

    def release(self, connection: Any) -> None:
        super().release(connection)  # type: ignore[misc]
        self._releases += 1
        if self._waiting:
            with self._freed:
                self._freed.notify()


class WaitingConnectionPool(_WaitForFree, redis.ConnectionPool):
    """``redis.ConnectionPool`` with back-pressure."""


class WaitingSentinelPool(_WaitForFree, redis.sentinel.SentinelConnectionPool):
    """``SentinelConnectionPool`` (follows the master) with back-pressure."""
