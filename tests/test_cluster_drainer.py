"""The cluster drainer's per-node logic on fakes: reply matching, a slot moving, a lost node — no server.

``FakeNodeConn`` answers SSUBSCRIBE/SUNSUBSCRIBE like a node that owns the slots ``FakeCluster`` says it owns
(MOVED otherwise); readiness is a real socket pair, so the drainer's ``select`` runs unchanged.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import pytest
import redis.exceptions as rex

from redisresults import _dispatch
from redisresults._cluster_drainer import ClusterDrainer
from redisresults._cluster_node import LEAVE, REFUSED, Node, NodeLost
from redisresults._cluster_subscriber import slot_of
from redisresults._exceptions import ConnectionUnavailable, PermissionDenied, ServerError
from redisresults._future import ResultFuture
from redisresults._link import Link
from redisresults._router import Changes, Router

Address = Tuple[str, int]
A, B = ("10.0.0.1", 7000), ("10.0.0.2", 7001)


def moved(slot: int, to: Address) -> ServerError:
    error = ServerError(f"{slot} {to[0]}:{to[1]}")
    error.__cause__ = rex.MovedError(f"{slot} {to[0]}:{to[1]}")
    return error


class FakeNodeConn:
    def __init__(self, cluster: FakeCluster, address: Address) -> None:
        self.cluster, self.address = cluster, address
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)
        self.replies: Deque[Any] = deque()
        self.sent: List[Tuple[str, bytes]] = []
        self.subscribed: set[bytes] = set()

    def push(self, reply: Any) -> None:
        self.replies.append(reply)
        self._theirs.send(b"r")

    def selectable(self) -> socket.socket:
        return self._ours

    def subscribe(self, channels: Sequence[bytes]) -> None:
        for channel in channels:
            self.sent.append(("SSUBSCRIBE", channel))
            owner = self.cluster.real_owner(channel)
            if owner != self.address:
                self.push(moved(slot_of(channel), owner))
            else:
                self.subscribed.add(channel)
                self.push([b"ssubscribe", channel, len(self.subscribed)])

    def unsubscribe(self, channels: Sequence[bytes]) -> None:
        for channel in channels:
            self.sent.append(("SUNSUBSCRIBE", channel))
            self.subscribed.discard(channel)
            self.push([b"sunsubscribe", channel, len(self.subscribed)])

    def ping(self, payload: bytes) -> None:
        self.push([b"pong", payload])

    def buffered(self) -> bool:
        return bool(self.replies)

    def read(self) -> Any:
        reply = self.replies.popleft()
        self._ours.recv(1)
        if isinstance(reply, ConnectionUnavailable):
            raise reply
        return reply

    def read_many(self, limit: int) -> List[Any]:
        """As the real one: the next reply, then those already here, stopping before a lost connection."""
        out = [self.read()]
        while len(out) < limit and self.replies and not isinstance(self.replies[0], ConnectionUnavailable):
            out.append(self.read())
        return out

    def close(self) -> None:
        self._ours.close()
        self._theirs.close()


class FakeCluster:
    """Two nodes; ``owners`` is the truth, ``view`` what the last refresh saw."""

    def __init__(self) -> None:
        self.moved_slots: Dict[int, Address] = {}
        self.view: Dict[int, Address] = {}
        self.store: Dict[bytes, bytes] = {}
        self.conns: Dict[Address, FakeNodeConn] = {}
        self.down: set[Address] = set()
        self.refreshes = 0
        self.reads: List[List[bytes]] = []

    def real_owner(self, channel: bytes) -> Address:
        slot = slot_of(channel)
        return self.moved_slots.get(slot, A if slot < 8192 else B)

    # TopologyLike
    def refresh(self) -> None:
        self.refreshes += 1
        self.view = dict(self.moved_slots)

    def owner(self, slot: int) -> Optional[Address]:
        if not self.refreshes:
            return None
        return self.view.get(slot, A if slot < 8192 else B)

    def open(self, address: Address) -> FakeNodeConn:
        if address in self.down:
            raise ConnectionUnavailable(f"{address} down")
        conn = self.conns[address] = FakeNodeConn(self, address)
        return conn

    def read_keys(self, keys: List[bytes]) -> List[Optional[bytes]]:
        self.reads.append(list(keys))
        return [self.store.get(key) for key in keys]

    def close(self) -> None:
        pass


def channel_on(node: Address, n: int = 0) -> bytes:
    """A channel whose slot the fake puts on ``node``."""
    found = 0
    for i in range(100000):
        channel = f"celery-task-meta-{i}".encode()
        if (slot_of(channel) < 8192) == (node == A):
            if found == n:
                return channel
            found += 1
    raise AssertionError


def doc(status: str = "SUCCESS", result: Any = 1) -> bytes:
    return json.dumps({"status": status, "result": result}).encode()


def make_drainer(linger: float, health_interval: float = 10.0) -> Tuple[ClusterDrainer, Router, FakeCluster]:
    cluster = FakeCluster()
    router = Router(0)
    link = Link(open_subscriber=lambda: None,  # type: ignore[arg-type,return-value]
                read_keys=lambda keys: [], decode_message=lambda c, d: json.loads(d),
                decode_stored=lambda c, raw: json.loads(raw), health_interval=health_interval)
    return ClusterDrainer(link, router, cluster, linger=linger), router, cluster


@pytest.fixture
def setup() -> Tuple[ClusterDrainer, Router, FakeCluster]:
    drainer, router, cluster = made = make_drainer(linger=0.0)
    yield made
    drainer.close_wakeup()


def wait_on(router: Router, channel: bytes) -> ResultFuture:
    future = ResultFuture(channel.decode())
    router.register(channel, channel.decode(), future)
    return future


def steps(drainer: ClusterDrainer, n: int = 6) -> None:
    for _ in range(n):
        drainer.drain_once(0.0)


def until(drainer: ClusterDrainer, done: Any, timeout: float = 5.0) -> None:
    """Drain (timers are real: refresh throttling, reconnect backoff) until ``done()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        drainer.drain_once(0.05)


def test_subscribes_each_channel_on_its_owner_then_reads(setup: Any) -> None:
    drainer, router, cluster = setup
    on_a, on_b = channel_on(A), channel_on(B)
    cluster.store[on_b] = doc(result="b")
    fa, fb = wait_on(router, on_a), wait_on(router, on_b)
    steps(drainer)
    assert cluster.conns[A].sent == [("SSUBSCRIBE", on_a)]
    assert cluster.conns[B].sent == [("SSUBSCRIBE", on_b), ("SUNSUBSCRIBE", on_b)]  # read, resolved, done
    assert fb.done and fb.meta()["result"] == "b" and not fa.done
    assert drainer.snapshot()["nodes"] == {"10.0.0.1:7000": 1, "10.0.0.2:7001": 0}
    cluster.conns[A].push([b"smessage", on_a, doc(result="a")])
    steps(drainer, 2)
    assert fa.meta()["result"] == "a"


def test_server_sunsubscribe_moves_the_channel_and_rereads(setup: Any) -> None:
    drainer, router, cluster = setup
    channel = channel_on(A)
    future = wait_on(router, channel)
    steps(drainer)
    assert cluster.conns[A].subscribed == {channel}
    cluster.moved_slots[slot_of(channel)] = B  # the slot migrates; a store meanwhile reached nobody
    cluster.store[channel] = doc(result="late")
    cluster.conns[A].push([b"sunsubscribe", channel, 0])
    until(drainer, lambda: future.done)
    assert ("SSUBSCRIBE", channel) in cluster.conns[B].sent
    assert future.done and future.meta()["result"] == "late"
    assert drainer.counters["recovered"] == 1 and drainer.counters["topology_refreshes"] >= 2


def test_moved_reply_refreshes_and_resubscribes(setup: Any) -> None:
    drainer, router, cluster = setup
    channel = channel_on(A, 1)
    steps(drainer)
    cluster.refresh()  # the drainer's view says A...
    cluster.moved_slots[slot_of(channel)] = B  # ...but B owns it already
    future = wait_on(router, channel)
    cluster.store[channel] = doc()
    until(drainer, lambda: future.done)
    assert future.done and ("SSUBSCRIBE", channel) in cluster.conns[B].sent


def test_lost_node_resubscribes_after_the_failover(setup: Any) -> None:
    drainer, router, cluster = setup
    channel = channel_on(A, 2)
    future = wait_on(router, channel)
    steps(drainer)
    cluster.conns[A].push(ConnectionUnavailable("gone"))
    cluster.down.add(A)
    cluster.moved_slots[slot_of(channel)] = B  # B was promoted
    cluster.store[channel] = doc(result="kept")
    until(drainer, lambda: future.done)
    assert future.done and future.meta()["result"] == "kept"
    assert drainer.counters["reconnects"] == 1


def test_refused_subscribe_fails_only_its_wait(setup: Any) -> None:
    drainer, router, cluster = setup
    bad, good = channel_on(A, 3), channel_on(A, 4)
    cluster.store[good] = doc()
    fbad = wait_on(router, bad)
    steps(drainer, 1)
    conn = cluster.conns[A]
    conn.replies.clear()
    node = Node(A)
    node.inflight.extend([("S", bad), ("S", good)])
    event = node.on_reply(PermissionDenied("NOPERM"), lambda c: True)
    assert event is not None and event.kind == REFUSED and event.channel == bad
    assert not fbad.done


def test_node_reply_matching() -> None:
    node = Node(A)
    channel = channel_on(A)
    node.inflight.append(("S", channel))
    with pytest.raises(NodeLost):
        node.on_reply([b"ssubscribe", b"other", 1], lambda c: True)
    assert node.on_reply([b"sunsubscribe", channel, 0], lambda c: True) == (LEAVE, channel, None)
    wrong = moved(slot_of(channel) ^ 1, B)
    with pytest.raises(NodeLost):
        node.on_reply(wrong, lambda c: True)
    node.inflight.append(("S", channel))
    assert node.on_reply(moved(slot_of(channel), B), lambda c: True) == (LEAVE, channel, None)
    with pytest.raises(NodeLost):
        node.on_reply([b"pong", b"x"], lambda c: True)


def test_changes_split_by_owner(setup: Any) -> None:
    drainer, router, cluster = setup
    cluster.refresh()
    a, b = channel_on(A, 5), channel_on(B, 5)
    drainer._apply(Changes({a: "a", b: "b"}, []))
    assert set(drainer._nodes) == {A, B}


def test_moved_parsed_from_a_plain_connection_reply() -> None:
    from redisresults._cluster_subscriber import moved_slot, retry_later

    plain = ServerError("MOVED 11657 127.0.0.1:7001")
    plain.__cause__ = rex.ResponseError("MOVED 11657 127.0.0.1:7001")  # RESP2 Connection: no MovedError
    assert moved_slot(plain) == 11657 and retry_later(plain)
    assert moved_slot(PermissionDenied("NOPERM")) is None and not retry_later(PermissionDenied("NOPERM"))


def test_a_burst_on_a_node_lets_its_waiters_run_every_yield_every(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pacing as the single-connection drainer: at the first settled future, then per YIELD_EVERY."""
    drainer, router, cluster = setup
    channels = [channel_on(A, n) for n in range(60)]
    futures = [wait_on(router, channel) for channel in channels]
    until(drainer, lambda: A in cluster.conns and len(cluster.conns[A].subscribed) == 60)
    until(drainer, lambda: not cluster.conns[A].replies)
    steps(drainer)
    settled_at: List[int] = []
    monkeypatch.setattr(_dispatch, "_yield_now", lambda: settled_at.append(sum(f.done for f in futures)))
    for channel in channels:
        cluster.conns[A].push([b"smessage", channel, doc()])
    until(drainer, lambda: all(f.done for f in futures))
    assert settled_at == [1, 1 + _dispatch.YIELD_EVERY]


@pytest.mark.timeout(30)
def test_sunsubscribes_linger_to_go_out_together() -> None:
    """As on one connection: a node's first SUNSUBSCRIBE after a quiet spell leaves at once, the next ones wait
    out ``linger`` and leave together (pipelined: the sharded command takes one slot's channels at a time)."""
    drainer, router, cluster = make_drainer(linger=0.2, health_interval=60.0)
    try:
        channels = [channel_on(A, n) for n in range(5)]
        futures = [wait_on(router, channel) for channel in channels]
        until(drainer, lambda: A in cluster.conns and len(cluster.conns[A].subscribed) == 5)
        for channel in channels:
            cluster.conns[A].push([b"smessage", channel, doc()])
            steps(drainer, 1)
        steps(drainer, 1)  # the last delivery's drop taken
        assert all(f.done for f in futures)
        unsubscribed = [channel for command, channel in cluster.conns[A].sent if command == "SUNSUBSCRIBE"]
        assert unsubscribed == channels[:1]  # the first at once, the others lingering
        # One step: its wait ends when the linger is over, not after 60 s (the test's timeout would fail it first)
        drainer.drain_once(60.0)
        unsubscribed = [channel for command, channel in cluster.conns[A].sent if command == "SUNSUBSCRIBE"]
        assert unsubscribed == channels
    finally:
        drainer.close_wakeup()


def test_a_hold_is_subscribed_without_a_peek_and_its_sent_ticket_opens(setup: Any) -> None:
    drainer, router, cluster = setup
    channel = channel_on(A)
    wake, number = router.hold(channel, channel.decode())
    ticket = router.sent.ticket(number)
    assert not ticket.wait(0)
    drainer.drain_once(0.0)
    assert ticket.wait(0) and cluster.conns[A].sent == [("SSUBSCRIBE", channel)]
    pending = router.sent.ticket(router.sent.sent + 1)
    drainer.stopping = True
    drainer.run()  # stops at once: nobody waits on a stopped drainer
    assert pending.wait(0)


def _sunsubscribed(cluster: FakeCluster, node: Address) -> List[bytes]:
    return [channel for command, channel in cluster.conns[node].sent if command == "SUNSUBSCRIBE"]


def test_a_lone_result_is_sunsubscribed_on_its_node_before_its_waiter_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on one connection (Celery's get() unsubscribes before it returns): the node sends the SUNSUBSCRIBE of a
    channel a ready result ended before the drainer lets the woken waiter run; within the linger it waits."""
    drainer, router, cluster = make_drainer(linger=0.2, health_interval=60.0)
    try:
        first, second = channel_on(A, 0), channel_on(A, 1)
        futures = [wait_on(router, first), wait_on(router, second)]
        until(drainer, lambda: A in cluster.conns and len(cluster.conns[A].subscribed) == 2)
        steps(drainer)
        at_yield: List[List[bytes]] = []
        monkeypatch.setattr(_dispatch, "_yield_now", lambda: at_yield.append(_sunsubscribed(cluster, A)))
        cluster.conns[A].push([b"smessage", first, doc()])
        drainer.drain_once(0.0)
        assert futures[0].done and at_yield == [[first]]
        cluster.conns[A].push([b"smessage", second, doc()])  # within the linger: not before the yield
        drainer.drain_once(0.0)
        assert futures[1].done and at_yield[1] == [first]
    finally:
        drainer.close_wakeup()


def test_a_result_found_by_the_read_is_sunsubscribed_before_its_waiter_runs(
    setup: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    drainer, router, cluster = setup
    channel = channel_on(B)
    cluster.store[channel] = doc(result="b")  # there before the SSUBSCRIBE is confirmed: the read finds it
    at_yield: List[List[bytes]] = []
    monkeypatch.setattr(_dispatch, "_yield_now", lambda: at_yield.append(_sunsubscribed(cluster, B)))
    future = wait_on(router, channel)
    until(drainer, lambda: future.done)
    assert at_yield == [[channel]]


def test_a_waiting_urgent_ticket_sends_a_nodes_lingering_sunsubscribes_at_once() -> None:
    """The drop-in's forget() waits on an urgent ticket: the SUNSUBSCRIBEs still lingering on a node go out in
    the step that opens it, instead of after the linger."""
    drainer, router, cluster = make_drainer(linger=60.0, health_interval=60.0)
    try:
        a, b = channel_on(A, 0), channel_on(A, 1)
        router.hold(a, a.decode())
        router.hold(b, b.decode())
        until(drainer, lambda: A in cluster.conns and len(cluster.conns[A].subscribed) == 2)
        router.release(a)
        steps(drainer)
        router.release(b)  # within the linger: it would wait a minute
        steps(drainer)
        assert _sunsubscribed(cluster, A) == [a]
        plain = router.sent.ticket(router.next_taken())
        drainer.drain_once(0.0)
        assert plain.wait(0) and _sunsubscribed(cluster, A) == [a]
        ticket = router.sent.ticket(router.next_taken(), urgent=True)
        drainer.drain_once(0.0)
        assert ticket.wait(0) and _sunsubscribed(cluster, A) == [a, b]
    finally:
        drainer.close_wakeup()


def test_a_failed_sunsubscribe_amid_a_delivery_resyncs_the_node_after_it(
    setup: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send that fails while the waiters of a node's replies are being woken: every reply already read is
    delivered, and the node is resynced after (not halfway through its replies)."""
    drainer, router, cluster = setup
    channels = [channel_on(A, n) for n in range(3)]
    futures = [wait_on(router, channel) for channel in channels]
    until(drainer, lambda: A in cluster.conns and len(cluster.conns[A].subscribed) == 3)
    steps(drainer)

    def broken(self: FakeNodeConn, channels: Sequence[bytes]) -> None:
        raise ConnectionUnavailable("the connection broke")

    monkeypatch.setattr(FakeNodeConn, "unsubscribe", broken)
    for channel in channels:
        cluster.conns[A].push([b"smessage", channel, doc()])
    drainer.drain_once(0.0)
    assert all(f.done and f.meta()["status"] == "SUCCESS" for f in futures)
    assert drainer.snapshot()["reconnects"] == 1
