"""The Redis Cluster drainer: one loop, one shard Pub/Sub connection per primary, one ``select`` over all.

Each channel lives on the node that owns its slot, in that node's ``ChannelTable`` (the same
explicit per-channel states as the single-server drainer: a key is read only once its SSUBSCRIBE
is confirmed). Every command sent on a node connection is remembered in order (``inflight``), so
each reply is matched to its command and a ``sunsubscribe`` nobody asked for is recognised: the
server dropped the channel because its slot moved (migration, or this node lost a failover).
Then — and on a MOVED reply, a lost node, or a PING left unanswered — the drainer refreshes the
slot map, subscribes the channels on their new owner first and reads their keys after the
confirmation. A reply that cannot be matched makes that node resync (new connection, everything
subscribed again, then re-read): never a guess. Idle node connections are closed.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Optional

from ._cluster_node import LEAVE, MESSAGE, Node, NodeLost, snapshot, unsubscribe_ended
from ._cluster_subscriber import Address, TopologyLike, slot_of
from ._dispatch import READ_KEY, Dispatch
from ._drainer import COUNTERS, LINGER, PING_PAYLOAD
from ._exceptions import ConnectionUnavailable, RedisResultsError
from ._link import Link
from ._log import get_logger
from ._retry import backoff
from ._router import Changes, Router
from ._wakeup import WakeUp

log = get_logger("redisresults.drainer")

BATCH = 2000
IDLE_CLOSE = 10.0  # seconds a node connection with nothing subscribed stays open
REFRESH_MIN_INTERVAL = 0.1  # a failover pushes thousands of sunsubscribes: one slot-map read per 0.1 s at most
REFRESH_SETTLE = 0.5  # after channels moved, read the map once more: nodes learn a new owner one by one
TIMER_TICK = 0.05  # the longest wait while a retry (connect, read, refresh) is due
CLUSTER_COUNTERS = (*COUNTERS, "topology_refreshes")
_POLICY = {"interval_start": 0.05, "interval_step": 0.25, "interval_max": 2.0, "max_retries": 0, "timeout": 0}


class ClusterDrainer:
    """Routes every shard message of every primary's connection to the router's futures and watchers."""

    def __init__(self, link: Link, router: Router, topology: TopologyLike, linger: float = LINGER) -> None:
        self._link = link
        self._linger = linger  # SUNSUBSCRIBEs per node at most once per linger, as the one-connection drainer
        self._router = router
        self._topology = topology
        self._wakeup = WakeUp()
        self.stopping = False
        self.failure: Optional[str] = None
        self.last_error: Optional[str] = None
        self.counters = dict.fromkeys(CLUSTER_COUNTERS, 0)
        self._dispatch = Dispatch(link, router, self.counters, before_yield=self._unsubscribe_ended)
        self._broken: list[tuple[Node, ConnectionUnavailable]] = []  # a send failed inside a delivery
        self.idle_close = IDLE_CLOSE
        self._health = link.health_interval
        self._nodes: dict[Address, Node] = {}
        self._home: dict[bytes, Address] = {}  # wanted channel -> the node whose table holds it
        self._homeless: dict[bytes, str] = {}  # wanted, owner not known yet (no slot map, or uncovered)
        self._moved: set[bytes] = set()  # re-homed channels: a read that finds the result counts as recovered
        self._refresh_due = False
        self._refresh_at = 0.0
        self._refresh_attempts = 0

    # ---------------------------------------------------------------- callable from any thread

    def wake(self) -> None:
        self._wakeup.wake()

    def snapshot(self) -> dict[str, Any]:
        """Racy but safe counters for ``stats()``, plus ``nodes``: subscribed channels per connected primary."""
        return {**snapshot(list(self._nodes.values()), len(self._homeless)), "last_error": self.last_error,
                **self.counters}

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Drain until ``stopping``; a crash fails every waiter with DrainerError instead of hanging them."""
        try:
            while not self.stopping:
                self.drain_once(self._health)
        except BaseException as error:
            self.failure = self._dispatch.crashed(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self._router.sent.release_all()
            for node in list(self._nodes.values()):
                self._disconnect(node)
            self._nodes.clear()
            self._topology.close()
            self.close_wakeup()

    def close_wakeup(self) -> None:
        self._wakeup.close()

    def drain_once(self, max_wait: float) -> bool:
        """One step over every node; node failures are handled per node, so this is True unless none is known."""
        changes = self._router.take_changes()
        self._apply(changes)
        now = time.monotonic()
        if self._refresh_due and now >= self._refresh_at:
            self._refresh()
        for node in list(self._nodes.values()):
            if node.subscriber is None and node.table.wanted and now >= node.retry_at:
                self._connect(node)
        self._flush()
        self._router.sent.mark(changes.generation)
        self._pump(self._wait_budget(max_wait))
        self._check_broken()
        self._flush()
        self._read_keys()
        self._check_broken()
        self._check_health()
        self._close_idle()
        return not (self._refresh_due and self._refresh_attempts > 0)

    def _wait_budget(self, max_wait: float) -> float:
        now = time.monotonic()
        if any(node.table.has_reads() and now >= node.read_at for node in self._nodes.values()):
            return 0.0
        timers = self._refresh_due or any(
            (node.subscriber is None and node.table.wanted) or node.table.has_reads() for node in self._nodes.values())
        if timers:
            return min(max_wait, TIMER_TICK)
        closing = [node.idle_since + self.idle_close - now for node in self._nodes.values()
                   if node.idle_since is not None]
        lingering = [node.unsubscribe_due_in(now, self._linger) for node in self._nodes.values()]
        return min([max_wait, *closing, *(due for due in lingering if due is not None)])

    # ---------------------------------------------------------------- where channels live

    def _node(self, address: Address) -> Node:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = Node(address)
        node.idle_since = None
        return node

    def _apply(self, changes: Changes) -> None:
        """The router's changes, split by the node owning each channel's slot."""
        dropped: dict[Address, list[bytes]] = {}
        for channel in changes.dropped:
            address = self._home.pop(channel, None)
            self._moved.discard(channel)
            if address is None:
                self._homeless.pop(channel, None)
            else:
                dropped.setdefault(address, []).append(channel)
        fresh: dict[Address, dict[bytes, str]] = {}
        for channel, task_id in changes.fresh.items():
            address = self._home.get(channel) or self._topology.owner(slot_of(channel))
            if address is None:
                self._homeless[channel] = task_id
                self._refresh_due = True
                continue
            self._home[channel] = address
            fresh.setdefault(address, {})[channel] = task_id
        for address in {*dropped, *fresh}:
            node = self._node(address)
            node.table.apply(Changes(fresh.get(address, {}), dropped.get(address, [])),
                             connected=node.subscriber is not None)

    def _leave(self, node: Node, channel: bytes) -> None:
        """``channel`` is no longer subscribed on ``node``: forget it there and find its owner (after a refresh)."""
        if self._home.get(channel) != node.address:
            return
        task_id = node.table.wanted.get(channel)
        node.table.lost(channel)
        del self._home[channel]
        if task_id is not None:
            self._homeless[channel] = task_id
            self._moved.add(channel)
        self._refresh_due = True

    def _refresh(self) -> None:
        """Read the slot map, then move every channel whose owner changed (subscribe there first, read after)."""
        now = time.monotonic()
        try:
            self._topology.refresh()
        except RedisResultsError as error:
            self._refresh_attempts += 1
            self._refresh_at = now + backoff(self._refresh_attempts, _POLICY)
            self.last_error = f"reading the cluster's slot map failed: {error}"
            log.warning("cluster_refresh_failed", error=str(error)[:200], attempt=self._refresh_attempts)
            return
        self.counters["topology_refreshes"] += 1
        self._refresh_due = False
        self._refresh_attempts = 0
        self._refresh_at = now + REFRESH_MIN_INTERVAL
        moving: dict[bytes, str] = dict(self._homeless)
        self._homeless = {}
        homeless = len(moving)
        for node in list(self._nodes.values()):
            for channel in [c for c in node.table.wanted if self._topology.owner(slot_of(c)) != node.address]:
                moving[channel] = node.table.wanted[channel]
                if node.subscriber is not None and node.table.states([channel])[0] is not None:
                    node.strays.append(channel)  # still subscribed there: stop it (no duplicates for watchers)
                node.table.lost(channel)
                self._home.pop(channel, None)
                self._moved.add(channel)
        if moving:
            log.info("cluster_channels_moved", channels=len(moving))
            self._apply(Changes(moving, []))
        if len(moving) > homeless:  # owners changed: once more a little later, until a refresh moves nothing
            self._refresh_due = True
            self._refresh_at = now + REFRESH_SETTLE

    # ---------------------------------------------------------------- node connections

    def _connect(self, node: Node) -> None:
        try:
            subscriber = self._topology.open(node.address)
        except RedisResultsError as error:
            node.attempts += 1
            node.retry_at = time.monotonic() + backoff(node.attempts, _POLICY)
            self.last_error = f"connecting to {node.name} failed: {error}"
            self._refresh_due = True  # a node that does not answer may have been failed over
            return
        node.connected(subscriber)
        log.debug("pubsub_connected", node=node.name, channels=len(node.table.wanted))

    def _lost(self, node: Node, reason: str, error: Optional[BaseException] = None) -> None:
        """Drop the node's connection; its channels stay wanted there until a refresh says where they live."""
        if node.subscriber is not None:
            self.counters["reconnects"] += 1
            log.warning("pubsub_connection_lost", node=node.name, reason=reason,
                        error=type(error).__name__ if error else "")
        self.last_error = f"{node.name}: {reason}" + (f": {error}" if error else "")
        self._disconnect(node)
        node.attempts += 1
        node.retry_at = time.monotonic() + backoff(node.attempts, _POLICY)
        self._refresh_due = True

    def _disconnect(self, node: Node) -> None:
        subscriber = node.disconnected()
        if subscriber is not None:
            try:
                subscriber.close()
            except Exception as error:
                log.debug("pubsub_close_failed", error=repr(error))

    def _close_idle(self) -> None:
        now = time.monotonic()
        for address, node in list(self._nodes.items()):
            if not node.idle:
                node.idle_since = None
                continue
            if node.subscriber is None:
                del self._nodes[address]
            elif node.idle_since is None:
                node.idle_since = now
            elif now - node.idle_since >= self.idle_close:
                self._disconnect(node)
                del self._nodes[address]
                log.debug("pubsub_idle_closed", node=node.name)

    def _check_health(self) -> None:
        """PING an idle node; no reply within the interval means its connection is dead."""
        now = time.monotonic()
        for node in list(self._nodes.values()):
            if node.subscriber is None:
                continue
            if node.ping_sent is not None:
                if now - node.ping_sent > self._health:
                    self._lost(node, f"no reply to PING within {self._health}s")
                continue
            if now - node.last_rx >= self._health:
                try:
                    node.ping(PING_PAYLOAD, now)
                except ConnectionUnavailable as error:
                    self._lost(node, "connection lost", error)

    # ---------------------------------------------------------------- commands

    def _flush(self) -> None:
        now, urgent = time.monotonic(), self._router.sent.urgent()
        for node in list(self._nodes.values()):
            try:
                node.flush(now, self._linger, urgent)
            except ConnectionUnavailable as error:
                self._lost(node, "connection lost", error)

    def _unsubscribe_ended(self, ended: list[bytes]) -> None:
        """Before woken waiters run, each node unsubscribes the channels ready results ended, when due; a failed
        send comes mid-delivery (a read's chunk), so that node resyncs after it (``_check_broken``)."""
        self._broken += unsubscribe_ended(self._nodes, self._home, ended, time.monotonic(), self._linger)

    def _check_broken(self) -> None:
        broken, self._broken = self._broken, []
        for node, error in broken:
            if node.subscriber is not None:
                self._lost(node, "connection lost", error)

    # ---------------------------------------------------------------- reading

    def _pump(self, max_wait: float) -> None:
        """Wait on every node socket and the wake-up pair at once; handle what every node has to say."""
        connected = [node for node in self._nodes.values() if node.subscriber is not None]
        ready = [node for node in connected if node.subscriber is not None and node.subscriber.buffered()]
        if not ready:
            socks: dict[socket.socket, Node] = {}
            for node in connected:
                assert node.subscriber is not None
                socks[node.subscriber.selectable()] = node
            try:
                readable = self._wakeup.wait_many(list(socks), max_wait)
            except (OSError, ValueError):  # a node socket closed underneath: find it, resync it
                for sock, node in socks.items():
                    if sock.fileno() < 0:
                        self._lost(node, "the Pub/Sub socket failed")
                return
            ready = [socks[sock] for sock in readable]
        self._dispatch.new_batch()
        for node in ready:
            try:
                self._drain_node(node)
            except ConnectionUnavailable as error:
                self._lost(node, "connection lost", error)
            except NodeLost as event:
                self._lost(node, str(event))
        self._dispatch.end_batch()

    def _drain_node(self, node: Node) -> None:
        """Every reply the node has sent so far (up to BATCH), read in bursts rather than one call each."""
        home, address = self._home, node.address

        def homed(channel: bytes) -> bool:
            return home.get(channel) == address

        count = 0
        while count < BATCH:
            subscriber = node.subscriber
            if subscriber is None:
                return
            for reply in subscriber.read_many(BATCH - count):
                count += 1
                self._on_reply(node, reply, homed)
                if node.subscriber is not subscriber:  # lost or replaced: the rest of this read is stale
                    return
            if not subscriber.buffered():
                break
        node.last_rx = time.monotonic()

    def _on_reply(self, node: Node, reply: Any, homed: Callable[[bytes], bool]) -> None:
        event = node.on_reply(reply, homed)
        if event is None:
            return
        if event.kind == MESSAGE:
            self._on_message(event.channel, event.data)
        elif event.kind == LEAVE:
            self._leave(node, event.channel)
        elif self._home.get(event.channel) == node.address:  # REFUSED (e.g. NOPERM): only these waits fail
            del self._home[event.channel]
            node.table.lost(event.channel)
            log.warning("subscribe_refused", channels=1, node=node.name, error=str(event.data)[:200])
            self._dispatch.fail([event.channel], event.data)

    def _on_message(self, channel: bytes, data: Any) -> None:
        if self._dispatch.message(channel, data) is READ_KEY:
            address = self._home.get(channel)
            if address is not None and address in self._nodes:
                self._nodes[address].table.reread(channel)

    def _read_keys(self) -> None:
        """Read the keys of confirmed channels, per node (a node that is down delays only its own reads)."""
        now = time.monotonic()
        for node in list(self._nodes.values()):
            if now < node.read_at or not node.table.has_reads():
                continue
            reads = node.table.take_reads()
            self._dispatch.new_batch()  # a batch of its own: its first result unsubscribes and yields at once
            recovering = {channel for channel, again in reads if again or channel in self._moved}
            ready = [channel for channel, _ in reads]
            try:
                for start in range(0, len(ready), BATCH):
                    chunk = ready[start : start + BATCH]
                    try:
                        values = self._topology.read_keys(chunk)
                    except ConnectionUnavailable as error:  # read again later; the map may be stale too
                        for channel in ready[start:]:
                            node.table.reread(channel)
                        node.read_at = time.monotonic() + backoff(1, _POLICY)
                        self.last_error = f"reading keys failed: {error}"
                        self._refresh_due = True
                        break
                    except RedisResultsError as error:  # e.g. NOPERM on the keys: these waits fail, the drainer goes on
                        self._dispatch.fail(chunk, error)
                        continue
                    self.counters["reads"] += 1
                    self._moved.difference_update(self._dispatch.found(chunk, values, recovering))
                self._dispatch.end_batch()
            finally:
                node.table.reads_done()
