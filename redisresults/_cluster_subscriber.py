"""Redis Cluster seen from the drainer: the slot map, one shard Pub/Sub connection per node, key reads.

Everything that touches ``redis.cluster`` for the drainer lives here (the slot map of a private
``RedisCluster``, refreshed with ``nodes_manager.initialize()``; ``mget_nonatomic`` for key reads),
and the per-node connection reuses ``RedisSubscriber`` (the one module reading redis-py's
connection internals). Errors leave here as redisresults errors.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Protocol

import redis
import redis.cluster
from redis.crc import key_slot

from ._exceptions import ConnectionUnavailable, translate
from ._link import Subscriber
from ._retry import is_transient
from ._subscriber import RedisSubscriber

Address = tuple[str, int]
PIPELINE = 2000  # commands per write when (re)subscribing many channels


def slot_of(channel: bytes) -> int:
    """The cluster slot of a key or shard channel (the hash tag rule included)."""
    return int(key_slot(channel))


def moved_slot(error: BaseException) -> Optional[int]:
    """The slot a MOVED/ASK reply names (the redis-py error is the cause of ours), or None."""
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, redis.exceptions.AskError):  # MovedError is an AskError (redis-py's cluster parser)
        return int(cause.slot_id)
    words = str(cause).split(" ")  # a plain connection's parser leaves "MOVED <slot> <host:port>" as it is
    if len(words) == 3 and words[0] in ("MOVED", "ASK") and words[1].isdigit():
        return int(words[1])
    return None


def retry_later(error: BaseException) -> bool:
    """An error reply to SSUBSCRIBE that a later attempt (elsewhere) can cure: MOVED, ASK, TRYAGAIN, CLUSTERDOWN."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return moved_slot(error) is not None or is_transient(cause)


class ShardSubscriber:
    """One node's shard Pub/Sub connection: one SSUBSCRIBE/SUNSUBSCRIBE per channel, pipelined in one write.

    Channels of different slots cannot share an SSUBSCRIBE (CROSSSLOT), and random task ids almost never
    share a slot, so one command per channel is the only batching there is.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        try:
            self._sub = RedisSubscriber(pool)
        except BaseException:
            pool.disconnect()
            raise

    @property
    def address(self) -> Optional[Address]:
        return self._sub.address

    def selectable(self) -> socket.socket:
        return self._sub.selectable()

    def subscribe(self, channels: Sequence[bytes]) -> None:
        self._many("SSUBSCRIBE", channels)

    def unsubscribe(self, channels: Sequence[bytes]) -> None:
        self._many("SUNSUBSCRIBE", channels)

    def ping(self, payload: bytes) -> None:
        self._sub.ping(payload)

    def buffered(self) -> bool:
        return self._sub.buffered()

    def read(self) -> Any:
        return self._sub.read()

    def read_many(self, limit: int) -> list[Any]:
        return self._sub.read_many(limit)

    def close(self) -> None:
        try:
            self._sub.close()
        finally:
            self._pool.disconnect()

    def _many(self, command: str, channels: Sequence[bytes]) -> None:
        for start in range(0, len(channels), PIPELINE):
            self._sub.send_commands([(command, channel) for channel in channels[start : start + PIPELINE]])


class TopologyLike(Protocol):
    """What the drainer needs of the cluster (``Topology`` below, or a test fake)."""

    def refresh(self) -> None: ...

    def owner(self, slot: int) -> Optional[Address]: ...

    def open(self, address: Address) -> Subscriber: ...

    def read_keys(self, keys: list[bytes]) -> Any: ...

    def close(self) -> None: ...


class Topology:
    """The drainer's own view of the cluster (outside the backend's pools): who owns a slot, node connections.

    ``cluster_kwargs`` build the private ``RedisCluster`` (created on the first refresh, in the drainer's
    thread); ``node_params`` are the kwargs of each node's one-connection Pub/Sub pool (RESP2).
    """

    def __init__(self, cluster_kwargs: Mapping[str, Any], node_params: Mapping[str, Any],
                 make_cluster: Callable[..., Any] = redis.cluster.RedisCluster) -> None:
        self._cluster_kwargs = dict(cluster_kwargs)
        self._node_params = dict(node_params)
        self._make_cluster = make_cluster
        self._cluster: Any = None

    def refresh(self) -> None:
        """Read the slot map again (CLUSTER SLOTS from a known node); ConnectionUnavailable when none answers."""
        try:
            if self._cluster is None:
                self._cluster = self._make_cluster(**self._cluster_kwargs)
            else:
                self._cluster.nodes_manager.initialize()
        except Exception as error:
            raise _mapped(error) from error

    def owner(self, slot: int) -> Optional[Address]:
        """The primary serving ``slot`` in the last map read; None before the first refresh or when uncovered."""
        cluster = self._cluster
        if cluster is None:
            return None
        try:
            node = cluster.nodes_manager.get_node_from_slot(slot)
        except (redis.exceptions.SlotNotCoveredError, IndexError, KeyError):
            return None
        return str(node.host), int(node.port)

    def open(self, address: Address) -> ShardSubscriber:
        """A connected shard Pub/Sub connection to the node at ``address``."""
        pool = redis.ConnectionPool(host=address[0], port=address[1], **self._node_params)
        return ShardSubscriber(pool)

    def read_keys(self, keys: Sequence[bytes]) -> Sequence[Optional[bytes]]:
        """GET of many keys across slots (one MGET per slot, pipelined per node)."""
        cluster = self._cluster
        if cluster is None:
            raise ConnectionUnavailable("the cluster's slot map is not known yet")
        try:
            return list(cluster.mget_nonatomic(list(keys)))
        except Exception as error:
            raise _mapped(error) from error

    def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()


def _mapped(error: Exception) -> BaseException:
    """Transient cluster trouble (a node down, a slot moving) is 'unreachable for now'; the rest is translated."""
    if is_transient(error):
        unavailable = ConnectionUnavailable(f"Redis Cluster unavailable ({type(error).__name__}: {error})")
        unavailable.__cause__ = error
        return unavailable
    return translate(error)
