"""SentinelBackend: a RedisBackend that finds the master through Redis Sentinel and follows failovers.

Both the shared pool and the drainer's own connections are Sentinel-managed; the drainer asks
where the master is about once a second and resubscribes there (then re-reads) when it moved.
"""

from __future__ import annotations

from typing import Any, Optional

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._exceptions import ConfigError, translate
from ._pool import REDIS_PY_DEFAULT_MAX, WaitingSentinelPool
from ._url import masked
from .backend import RedisBackend

# Without these a dead sentinel node costs redis-py's long defaults per lookup.
_SENTINEL_DEFAULTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


class SentinelBackend(RedisBackend):
    """A RedisBackend that finds the master through Redis Sentinel and follows failovers."""

    def _check_kind(self) -> None:
        if self._config.kind != "sentinel":
            raise ConfigError("SentinelBackend needs a sentinel:// URL (sentinel://h1:26379;sentinel://h2:26379)")

    def _make_pool(self, params: dict[str, Any], *, shared: bool) -> Any:
        hosts = self._config.connparams["hosts"]
        # No redis-py retries on sentinel queries either: ours are bounded by retry_policy (a dead node would
        # otherwise cost seconds of hidden backoff per lookup, and stall close() behind the drainer).
        sentinel_kwargs = {**_SENTINEL_DEFAULTS, "retry": Retry(NoBackoff(), 0), **self._config.sentinel_kwargs}
        make_sentinel: Any = redis.sentinel.Sentinel  # typed from redis-py 8.2 on, untyped before: no ignore fits both
        sentinel = make_sentinel(
            [(host["host"], host["port"]) for host in hosts],
            min_other_sentinels=self._config.min_other_sentinels,
            sentinel_kwargs=sentinel_kwargs,
        )
        params.setdefault("connection_class", redis.sentinel.SentinelManagedConnection)
        if shared:
            params["max_connections"] = params.get("max_connections") or REDIS_PY_DEFAULT_MAX
            return WaitingSentinelPool(
                self._config.master_name, sentinel, wait_timeout=self._config.retry_policy["timeout"] or None, **params
            )
        return redis.sentinel.SentinelConnectionPool(self._config.master_name, sentinel, **params)  # type: ignore[no-untyped-call]

    def _master_locator(self) -> Any:
        """Ask Sentinel for the master. When it moved, redis-py drops the shared pool's idle connections now
        and in-use ones on release, so stores stop going to a demoted master that still accepts writes."""
        pool = self._pool

        def locate() -> Optional[tuple[str, int]]:
            try:
                host, port = pool.get_master_address()
            except Exception as error:
                raise translate(error) from error
            return str(host), int(port)

        return locate

    def as_uri(self, include_password: bool = False) -> str:
        url = self._config.url or ""
        return url if include_password else masked(url)
