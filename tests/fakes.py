"""Fakes of redisresults' own I/O seam (``Link`` and ``Subscriber``), for server-free drainer tests.

Nothing here imitates Redis' behaviour beyond what the drainer's protocol needs: replies are
scripted by the test (acknowledgements can be held back, refused, or reordered), keys live in a
dict, and readiness is a real socket pair so the drainer's ``select`` works unchanged.
"""

from __future__ import annotations

import json
import socket
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from redisresults._exceptions import ConnectionUnavailable, PermissionDenied
from redisresults._link import Link

Command = Tuple[str, Tuple[bytes, ...]]


class FakeSubscriber:
    """One fake Pub/Sub connection: every reply pushed is one byte on a socket pair, so readiness is exact."""

    def __init__(self, server: FakeServer, address: Tuple[str, int]) -> None:
        self.server = server
        self.address = address
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)
        self._replies: Deque[Any] = deque()
        self.closed = False

    def push(self, reply: Any) -> None:
        self._replies.append(reply)
        self._theirs.send(b"r")

    def selectable(self) -> socket.socket:
        return self._ours

    def subscribe(self, channels: Sequence[bytes]) -> None:
        self._check()
        self.server.on_command(self, "SUBSCRIBE", tuple(channels))

    def unsubscribe(self, channels: Sequence[bytes]) -> None:
        self._check()
        self.server.on_command(self, "UNSUBSCRIBE", tuple(channels))

    def ping(self, payload: bytes) -> None:
        self._check()
        self.server.on_command(self, "PING", (payload,))

    def buffered(self) -> bool:
        return bool(self._replies)

    def read(self) -> Any:
        self._check()
        reply = self._replies.popleft()
        self._ours.recv(1)
        if isinstance(reply, ConnectionUnavailable):
            raise reply
        return reply

    def read_many(self, limit: int) -> List[Any]:
        """As the real one: the next reply, then those already here, stopping before a lost connection."""
        out = [self.read()]
        while len(out) < limit and self._replies and not isinstance(self._replies[0], ConnectionUnavailable):
            out.append(self.read())
        return out

    def close(self) -> None:
        self.closed = True
        self._ours.close()
        self._theirs.close()

    def _check(self) -> None:
        if self.closed:
            raise ConnectionUnavailable("fake connection closed")


class FakeServer:
    """Keys, subscribers and a command log; acknowledges at once unless ``hold_acks``."""

    def __init__(self) -> None:
        self.keys: Dict[bytes, bytes] = {}
        self.log: List[Command] = []
        self.reads: List[Tuple[bytes, ...]] = []
        self.subscribers: List[FakeSubscriber] = []
        self.held: List[Tuple[FakeSubscriber, Any]] = []
        self.hold_acks = False
        self.answer_pings = True
        self.refuse: Optional[Callable[[Tuple[bytes, ...]], bool]] = None
        self.down = False
        self.read_error: Optional[BaseException] = None
        self.master: Tuple[str, int] = ("127.0.0.1", 7000)

    # --------------------------------------------------------------- the link

    def link(self, health_interval: float = 10.0, follow_master: bool = False) -> Link:
        return Link(
            open_subscriber=self.connect,
            read_keys=self.read_keys,
            decode_message=decode_message,
            decode_stored=decode_stored,
            master_address=(lambda: self.master) if follow_master else None,
            health_interval=health_interval,
        )

    def connect(self) -> FakeSubscriber:
        if self.down:
            raise ConnectionUnavailable("fake server down")
        subscriber = FakeSubscriber(self, self.master)
        self.subscribers.append(subscriber)
        return subscriber

    def read_keys(self, keys: Sequence[bytes]) -> List[Optional[bytes]]:
        if self.read_error is not None:
            raise self.read_error
        self.reads.append(tuple(keys))
        self.log.append(("MGET", tuple(keys)))
        return [self.keys.get(key) for key in keys]

    # --------------------------------------------------------------- the "server"

    def on_command(self, subscriber: FakeSubscriber, name: str, args: Tuple[bytes, ...]) -> None:
        self.log.append((name, args))
        if name == "PING":
            if self.answer_pings:
                subscriber.push([b"pong", args[0]])
            return
        if name == "SUBSCRIBE" and self.refuse is not None and self.refuse(args):
            self._reply(subscriber, PermissionDenied("NOPERM this user has no permissions to access a channel"))
            return
        kind = b"subscribe" if name == "SUBSCRIBE" else b"unsubscribe"
        for count, channel in enumerate(args, 1):
            self._reply(subscriber, [kind, channel, count])

    def _reply(self, subscriber: FakeSubscriber, reply: Any) -> None:
        if self.hold_acks:
            self.held.append((subscriber, reply))
        else:
            subscriber.push(reply)

    def release_acks(self) -> None:
        held, self.held = self.held, []
        for subscriber, reply in held:
            if not subscriber.closed:
                subscriber.push(reply)

    def publish(self, channel: bytes, payload: bytes) -> None:
        for subscriber in self.subscribers:
            if not subscriber.closed:
                subscriber.push([b"message", channel, payload])

    def store(self, channel: bytes, meta: Dict[str, Any], publish: bool = True) -> None:
        payload = json.dumps(meta).encode()
        self.keys[channel] = payload
        if publish:
            self.publish(channel, payload)

    def drop(self, subscriber: Optional[FakeSubscriber] = None) -> None:
        """The connection fails: its next read raises."""
        (subscriber or self.subscribers[-1]).push(ConnectionUnavailable("fake connection reset"))

    def commands(self, name: str) -> List[Tuple[bytes, ...]]:
        return [args for command, args in self.log if command == name]


def decode_message(channel: bytes, data: bytes) -> Optional[Dict[str, Any]]:
    document = json.loads(data)
    if document.get("status") == "STORED":
        return None
    return dict(document)


def decode_stored(key: bytes, raw: bytes) -> Dict[str, Any]:
    return dict(json.loads(raw))


def success(task_id: str, value: Any = 1) -> Dict[str, Any]:
    return {"status": "SUCCESS", "result": value, "task_id": task_id}
