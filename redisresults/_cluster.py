"""ClusterBackend: a RedisBackend over Redis Cluster — results spread over the shards, waiters woken by
sharded Pub/Sub, one drainer holding one Pub/Sub connection per primary.

Keys and documents are the same as on one server. A store is the same atomic script with SPUBLISH
instead of PUBLISH (the channel is the key, so it is in the key's slot), run on the key's primary by
``redis.cluster.RedisCluster``, which follows MOVED/ASK itself; TRYAGAIN, CLUSTERDOWN and lost nodes are
retried within ``retry_policy``. Waiting is ``_cluster_drainer.ClusterDrainer``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Optional

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._cluster_drainer import ClusterDrainer
from ._cluster_subscriber import Topology
from ._consumer import ResultConsumer, idle_stats
from ._exceptions import ConfigError, UsageError
from ._link import Link, Subscriber
from ._log import get_logger
from ._pool import REDIS_PY_DEFAULT_MAX
from ._retry import call_with_retry
from ._router import Router
from ._store import SHARDED_STORE_SCRIPT
from ._url import masked
from .backend import DEFAULT_HEALTH_INTERVAL, RedisBackend

log = get_logger()

_HASH_TAG = re.compile(r"\{[^{}]+\}")
W_CLUSTER_HASH_TAG_PREFIX = (
    "global_keyprefix contains a hash tag ({...}): every key and channel hashes to the same slot, so all "
    "results and all Pub/Sub traffic go to one shard and nothing scales out"
)
DRAINER_READ_CONNECTIONS = 2  # per node, for the drainer's key reads (outside max_connections)
_BUILD_WAIT = 1.0  # how long a caller waits on another's client build before it looks again


class _ClusterCloser:
    """Lets the base backend's ``close()`` disconnect a RedisCluster like a pool."""

    def __init__(self, cluster: redis.cluster.RedisCluster) -> None:
        self._cluster = cluster

    def disconnect(self) -> None:
        self._cluster.close()


def _no_single_subscriber() -> Subscriber:
    raise UsageError("a cluster drainer opens one shard Pub/Sub connection per node, never a single one")


class ClusterBackend(RedisBackend):
    """A RedisBackend on Redis Cluster: ``redis+cluster://h1:7000;redis+cluster://h2:7001`` (TLS: ``rediss+cluster``).

    ``client`` is a ``redis.cluster.RedisCluster`` on the backend's per-node pools.
    """

    def __init__(self, url: Optional[str] = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._cluster_drainer: Optional[ClusterDrainer] = None
        self._building: Optional[tuple[int, threading.Event]] = None  # (pid, set once built or failed)
        if _HASH_TAG.search(self._config.global_keyprefix):
            log.warning("cluster_keyprefix_hash_tag", global_keyprefix=self._config.global_keyprefix,
                        warning=W_CLUSTER_HASH_TAG_PREFIX)

    def _check_kind(self) -> None:
        if self._config.kind != "cluster":
            raise ConfigError("ClusterBackend needs a redis+cluster:// URL (redis+cluster://h1:7000;redis+cluster://h2:7001)")

    # ------------------------------------------------------------------ connections

    @property
    def client(self) -> redis.cluster.RedisCluster:  # type: ignore[override]  # a cluster client, not redis.Redis
        """A ``redis.cluster.RedisCluster`` on the backend's per-node pools; safe from any thread.

        Building one reads the slot map and the command table (network I/O, and ~50 ms of parsing): the first
        caller builds it, outside the lock, and callers arriving meanwhile wait for that one instead of each
        building their own (300 greenlets' first get() took 16 s that way, the hub starved for up to 1 s)."""
        self._check_fork()
        pid = os.getpid()
        while True:
            with self._lock:
                client = self._client
                if client is not None:
                    return client  # type: ignore[return-value]
                building = self._building
                mine = building is None or building[0] != pid  # a build under way in the parent is not ours
                if mine:
                    building = self._building = (pid, threading.Event())
            assert building is not None
            if not mine:
                building[1].wait(_BUILD_WAIT)  # then look again: built, or failed (the next caller tries)
                continue
            try:
                cluster = self._build_client()
            finally:
                with self._lock:
                    self._building = None
                building[1].set()
            return cluster

    def _build_client(self) -> redis.cluster.RedisCluster:
        # Retried within the budget: a failover in progress leaves slots uncovered for a few seconds.
        kwargs = self._cluster_kwargs(shared=True)
        cluster = call_with_retry(lambda: redis.cluster.RedisCluster(**kwargs), self._config.retry_policy,
                                  what="connecting to the cluster")
        with self._lock:
            self._pool = _ClusterCloser(cluster)
            self._client = cluster  # type: ignore[assignment]
            self._script = cluster.register_script(SHARDED_STORE_SCRIPT)
        return cluster

    def _cluster_kwargs(self, *, shared: bool) -> dict[str, Any]:
        """RedisCluster kwargs: the startup nodes, the per-node connection kwargs, no redis-py retries (ours)."""
        params = self.connparams
        startup = params.pop("startup_nodes")
        if params.pop("connection_class", None) is redis.SSLConnection:
            params["ssl"] = True
        params.pop("health_check_interval", None)  # not a RedisCluster argument
        params.pop("retry_on_timeout", None)  # deprecated there; timeouts are retried by our retry_policy anyway
        params["retry"] = Retry(NoBackoff(), 0)
        if shared:  # per node; a full node pool raises MaxConnectionsError, retried within the budget
            params["max_connections"] = params.get("max_connections") or REDIS_PY_DEFAULT_MAX
        else:
            params["max_connections"] = DRAINER_READ_CONNECTIONS
        nodes = [redis.cluster.ClusterNode(n["host"], n["port"]) for n in startup]  # type: ignore[no-untyped-call]
        return {"startup_nodes": nodes, **params}

    def _node_params(self) -> dict[str, Any]:
        """Each node's shard Pub/Sub connection: RESP2, one connection, no redis-py retries or health checks."""
        params = self.connparams
        params.pop("startup_nodes")
        params.pop("health_check_interval", None)
        params.update(retry=Retry(NoBackoff(), 0), max_connections=1, protocol=2)
        return params

    def _new_consumer(self) -> ResultConsumer:
        topology = Topology(self._cluster_kwargs(shared=False), self._node_params())
        hc = self._config.connparams.get("health_check_interval")
        link = Link(
            open_subscriber=_no_single_subscriber,
            read_keys=topology.read_keys,
            decode_message=self._codec.message,
            decode_stored=self._codec.stored,
            health_interval=float(hc) if hc else DEFAULT_HEALTH_INTERVAL,
        )

        def drainer(link: Link, router: Router) -> ClusterDrainer:
            self._cluster_drainer = ClusterDrainer(link, router, topology)
            return self._cluster_drainer

        return ResultConsumer(link, keyprefix=self._config.global_keyprefix, mode=self._mode,
                              cache_max=self._config.result_cache_max, drainer=drainer)

    def _check_fork(self) -> None:
        super()._check_fork()
        if self._consumer is None:
            self._cluster_drainer = None

    # ------------------------------------------------------------------ reading

    def _mget(self, keys: list[bytes]) -> Sequence[Optional[bytes]]:
        """Keys across slots: one MGET per slot, pipelined per node."""
        return self.client.mget_nonatomic(keys)

    # ------------------------------------------------------------------ operating

    def stats(self) -> dict[str, Any]:
        """As ``RedisBackend.stats()``, plus ``nodes`` (subscribed channels per primary connection) and
        ``topology_refreshes`` (slot-map reads after a move, a failover or a lost node)."""
        stats = super().stats()
        drainer = self._cluster_drainer
        if drainer is None or self._consumer is None:
            return {**idle_stats(self._mode), **stats, "nodes": {}, "topology_refreshes": 0}
        snapshot = drainer.snapshot()
        return {**stats, "nodes": snapshot["nodes"], "topology_refreshes": snapshot["topology_refreshes"]}

    def as_uri(self, include_password: bool = False) -> str:
        url = self._config.url or ""
        return url if include_password else masked(url)
