"""A real Redis Cluster for the tests: 3 primaries + 3 replicas on loopback, each a :class:`RedisServer` (own
temp dir, stopped by PID), joined by ``redis-cli --cluster create``. Fixtures ``redis_cluster`` (shared by the
session: don't break it) and ``fresh_cluster`` (a factory for destructive tests: failover, kill, reshard).

Registered from ``tests/conftest.py`` by one import line.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from tests.polling import poll
from tests.servers import HOST, RedisServer, ServerUnavailable, find_binary, free_port

__all__ = ["ClusterGroup", "fresh_cluster", "redis_cluster"]

NODE_TIMEOUT_MS = 2000
CREATE_TIMEOUT = 60.0
READY_TIMEOUT = 30.0


def _node_config() -> List[str]:
    return [
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {NODE_TIMEOUT_MS}",
        f"cluster-port {free_port()}",  # the bus port, chosen free too (port + 10000 may be taken)
        "cluster-require-full-coverage yes",
        "appendonly no",
    ]


class ClusterGroup:
    """Six ``redis-server --cluster-enabled yes`` nodes, three primaries each with one replica."""

    def __init__(self, *, primaries: int = 3, replicas: int = 1) -> None:
        self.cli = find_binary("redis-cli")
        self.replicas = replicas
        self.nodes: List[RedisServer] = []
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(RedisServer(extra_config=_node_config()))
            addresses = [f"{HOST}:{node.port}" for node in self.nodes]
            self._redis_cli("--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                            "--cluster-yes", timeout=CREATE_TIMEOUT)
            self.wait_stable()
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1;redis+cluster://127.0.0.1:P2`` (two startup nodes)."""
        return ";".join(f"redis+cluster://{HOST}:{node.port}" for node in self.nodes[:2])

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def live(self) -> List[RedisServer]:
        return [node for node in self.nodes if node.running]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A plain ``RedisCluster`` for assertions and raw stores; the caller closes it."""
        startup = [redis.cluster.ClusterNode(HOST, node.port) for node in self.live()]
        options: Dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
        options.update(kwargs)
        return redis.cluster.RedisCluster(startup_nodes=startup, **options)

    def slots(self, via: Optional[RedisServer] = None) -> Dict[int, Tuple[int, List[int]]]:
        """``{start: (end, [primary port, replica ports...])}`` from CLUSTER SLOTS of one live node."""
        node = via or self.live()[0]
        reply = node.cli("CLUSTER", "SLOTS")
        return {int(r[0]): (int(r[1]), [int(n[1]) for n in r[2:]]) for r in reply}

    def primaries(self) -> List[int]:
        return sorted({ports[0] for _, ports in self.slots().values()})

    def owner(self, slot: int) -> int:
        for start, (end, ports) in self.slots().items():
            if start <= slot <= end:
                return ports[0]
        raise AssertionError(f"slot {slot} is not covered")

    def replica_of(self, primary: int) -> int:
        for _, ports in self.slots().values():
            if ports[0] == primary and len(ports) > 1:
                return ports[1]
        raise AssertionError(f"no replica of {primary}")

    def node_id(self, port: int) -> str:
        return str(self.node(port).cli("CLUSTER", "MYID"))

    # ------------------------------------------------------------------ state

    def _stable(self) -> Optional[bool]:
        """Every live node says ``cluster_state:ok`` and all agree on the slot map (all 16384 slots)."""
        views = []
        for node in self.live():
            info = node.cli("CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return None
            views.append(sorted((s, e, tuple(p[:1])) for s, (e, p) in self.slots(node).items()))
        if any(view != views[0] for view in views):
            return None
        covered = sum(end - start + 1 for start, end, _ in views[0])
        return True if covered == 16384 else None

    def wait_stable(self, timeout: float = READY_TIMEOUT) -> None:
        poll(self._stable, timeout=timeout, what="the cluster to agree on its slots", interval=0.05,
             tolerate=(redis.RedisError, OSError))

    def wait_replicas_synced(self, timeout: float = READY_TIMEOUT) -> None:
        """Every primary has a live replica in the slot map (of every node), and every replica's link is up."""
        def synced() -> Optional[bool]:
            live = {node.port for node in self.live()}
            for node in self.live():
                for _, ports in self.slots(node).values():
                    if len([port for port in ports[1:] if port in live]) < self.replicas:
                        return None
            for node in self.live():
                info = node.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return None
            return True

        poll(synced, timeout=timeout, what="replicas in sync", interval=0.05, tolerate=(redis.RedisError, OSError))

    # ------------------------------------------------------------------ topology changes

    def failover(self, primary: int, timeout: float = READY_TIMEOUT) -> int:
        """``CLUSTER FAILOVER`` on ``primary``'s replica; returns the new primary's port once all agree."""
        replica = self.replica_of(primary)
        self.wait_replicas_synced()
        self.node(replica).cli("CLUSTER", "FAILOVER")
        poll(lambda: True if primary not in self.primaries() and replica in self.primaries() else None,
             timeout=timeout, what="the failover", interval=0.02, tolerate=(redis.RedisError, OSError))
        self.wait_stable(timeout)
        return replica

    def kill(self, port: int) -> None:
        """SIGKILL the node's process (by its PID)."""
        self.node(port).kill()

    def reshard(self, source: int, target: int, count: int, timeout: float = CREATE_TIMEOUT) -> None:
        """``redis-cli --cluster reshard``: move ``count`` slots from ``source`` to ``target``."""
        self._redis_cli("--cluster", "reshard", f"{HOST}:{source}", "--cluster-from", self.node_id(source),
                        "--cluster-to", self.node_id(target), "--cluster-slots", str(count), "--cluster-yes",
                        timeout=timeout)
        self.wait_stable()

    def begin_migration(self, slot: int, source: int, target: int) -> None:
        """``CLUSTER SETSLOT`` IMPORTING on the target and MIGRATING on the source (keys not moved yet)."""
        self.node(target).cli("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        self.node(source).cli("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))

    def finish_migration(self, slot: int, source: int, target: int) -> None:
        """MIGRATE the slot's keys to the target, then ``SETSLOT NODE`` on both (the source drops its channels)."""
        src = self.node(source)
        while True:
            keys = src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1000)
            if not keys:
                break
            src.cli("MIGRATE", HOST, target, "", 0, 5000, "KEYS", *keys)
        target_id = self.node_id(target)
        self.node(target).cli("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.cli("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_stable()

    def pubsub_clients(self, port: int, name: Optional[str] = None) -> List[Dict[str, str]]:
        """``CLIENT LIST TYPE pubsub`` of one node (only those named ``name`` when given)."""
        text = self.node(port).cli("CLIENT", "LIST", "TYPE", "pubsub")
        rows = [dict(field.split("=", 1) for field in line.split(" ") if "=" in field)
                for line in text.splitlines() if line]
        return [row for row in rows if name is None or row.get("name") == name]

    # ------------------------------------------------------------------ life cycle

    def _redis_cli(self, *args: str, timeout: float) -> str:
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise ServerUnavailable(f"redis-cli {' '.join(args[:2])} failed ({proc.returncode}):\n"
                                    f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc.stdout

    def stop(self) -> None:
        for node in self.nodes:
            node.close()

    def __repr__(self) -> str:
        return f"<ClusterGroup {[node.port for node in self.nodes]}>"


def _start(factory: Callable[[], ClusterGroup]) -> ClusterGroup:
    from tests.conftest import unavailable

    try:
        return factory()
    except (ServerUnavailable, OSError, subprocess.SubprocessError, AssertionError) as exc:
        unavailable(f"could not start a Redis Cluster: {exc}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterGroup]:
    """3 primaries + 3 replicas shared by the session: never change its topology (use ``fresh_cluster``)."""
    group = _start(ClusterGroup)
    yield group
    group.stop()


@pytest.fixture
def fresh_cluster() -> Iterator[Callable[[], ClusterGroup]]:
    """A factory of private clusters for destructive tests, all stopped at the end of the test."""
    started: List[ClusterGroup] = []

    def factory() -> ClusterGroup:
        group = _start(ClusterGroup)
        started.append(group)
        return group

    yield factory
    for group in started:
        group.stop()


def wait_until(probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
    return poll(lambda: probe() or None, timeout=timeout, what=what, interval=0.02)


def elapsed(start: float) -> float:
    return time.monotonic() - start


def keys_on(group: ClusterGroup, keys: Sequence[bytes]) -> Dict[int, int]:
    """How many of ``keys`` each primary owns (port -> count)."""
    slots = group.slots()
    counts: Dict[int, int] = {}
    for key in keys:
        slot = key_slot(key)
        for start, (end, ports) in slots.items():
            if start <= slot <= end:
                counts[ports[0]] = counts.get(ports[0], 0) + 1
    return counts
