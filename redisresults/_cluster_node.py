"""One primary as the cluster drainer sees it: its shard Pub/Sub connection, its channels, its replies.

Every command sent on the connection is remembered in order (``inflight``), so each reply is matched
to the command it answers, and a ``sunsubscribe`` nobody asked for is recognised as the server dropping
the channel (its slot moved). What a reply means beyond this node's own bookkeeping is returned as an
event for the drainer; a reply that matches nothing raises ``NodeLost`` (the drainer resyncs the node
instead of guessing). Pure but for the connection's ``send``/``read``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, NamedTuple, Optional

from ._channels import ChannelTable
from ._cluster_subscriber import Address, moved_slot, retry_later, slot_of
from ._drainer import unsubscribes_due
from ._exceptions import ConnectionUnavailable
from ._link import Subscriber
from ._router import Changes

SUB, UNSUB, PING = "S", "U", "P"
MESSAGE, LEAVE, REFUSED = "message", "leave", "refused"


class NodeLost(Exception):
    """Internal event: this node's connection must be replaced (never leaves the drainer)."""


class Event(NamedTuple):
    """What a reply means for the drainer: a ``message``; ``leave`` (the channel is not served here any more:
    find its owner); ``refused`` (an SSUBSCRIBE refused for good, e.g. NOPERM: fail its waits)."""

    kind: str
    channel: bytes
    data: Any = None


class Node:
    """One primary: its connection (or None), its channels, and the commands awaiting replies, in order."""

    __slots__ = ("address", "attempts", "ever_connected", "idle_since", "inflight", "last_rx", "last_unsubscribe",
                 "ping_sent", "read_at", "retry_at", "strays", "subscriber", "table")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.table = ChannelTable()
        self.subscriber: Optional[Subscriber] = None
        self.inflight: deque[tuple[str, bytes]] = deque()
        self.strays: list[bytes] = []  # subscribed here but homed elsewhere now: SUNSUBSCRIBE them
        self.last_rx = 0.0
        self.last_unsubscribe = float("-inf")  # when SUNSUBSCRIBEs last went out (the drainer's linger)
        self.ping_sent: Optional[float] = None
        self.retry_at = 0.0  # no reconnect before
        self.read_at = 0.0  # no key reads before (a failed read backs off)
        self.attempts = 0
        self.ever_connected = False
        self.idle_since: Optional[float] = None

    @property
    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    @property
    def idle(self) -> bool:
        return not (self.table.wanted or self.inflight or self.strays)

    def connected(self, subscriber: Subscriber) -> None:
        """A new connection: everything wanted here is to be subscribed on it, and read once confirmed."""
        self.subscriber = subscriber
        self.inflight.clear()
        self.strays = []
        self.ping_sent = None
        self.last_rx = time.monotonic()
        self.attempts = 0
        self.table.connected(recovering=self.ever_connected)
        self.ever_connected = True

    def disconnected(self) -> Optional[Subscriber]:
        """Forget the connection (returned, for the caller to close); channels stay wanted here."""
        subscriber, self.subscriber = self.subscriber, None
        self.inflight.clear()
        self.strays = []
        self.ping_sent = None
        self.table.disconnected()
        return subscriber

    def flush(self, now: float, linger: float, urgent: bool = False) -> None:
        """Send the SSUBSCRIBEs due (one command per channel, pipelined), and the SUNSUBSCRIBEs once due: as on the
        one-connection drainer, the first after a quiet spell at once, then at most one batch per ``linger``
        unless LINGER_MAX wait (one send per result was a fan-in's largest cost), or at once when ``urgent`` (a
        caller waits for them: the drop-in's ``forget()``). Strays leave at once. ConnectionUnavailable."""
        subscriber = self.subscriber
        if subscriber is None:
            return
        backlog = self.table.unsubscribe_backlog()
        due = unsubscribes_due(backlog, now, self.last_unsubscribe, linger) or (urgent and bool(backlog))
        if due:
            self.last_unsubscribe = now
        subs, unsubs = self.table.take_commands(unsubscribe=due)
        unsubs += self.strays
        self.strays = []
        if subs:
            subscriber.subscribe(subs)
            for channel in subs:
                self.table.sent([channel])
                self.inflight.append((SUB, channel))
        if unsubs:
            subscriber.unsubscribe(unsubs)
            self.inflight.extend((UNSUB, channel) for channel in unsubs)

    def unsubscribe_ended(self, ended: list[bytes], now: float, linger: float) -> None:
        """Before the waiters that ready results woke may run: drop the channels those results ended, and send
        their SUNSUBSCRIBEs when due (after a quiet spell), so a lone ``get()`` returns with its channel already
        unsubscribed, as Celery's own does. In a stream they linger: the router's next changes drop them then.
        ConnectionUnavailable."""
        if self.subscriber is None or not unsubscribes_due(
                self.table.unsubscribe_backlog() + len(ended), now, self.last_unsubscribe, linger):
            return
        self.table.apply(Changes({}, ended), connected=True)
        self.flush(now, linger)

    def unsubscribe_due_in(self, now: float, linger: float) -> Optional[float]:
        """Seconds until the lingering SUNSUBSCRIBEs are due (0: now), None when none wait."""
        if self.subscriber is None or not self.table.unsubscribe_backlog():
            return None
        return max(0.0, self.last_unsubscribe + linger - now)

    def ping(self, payload: bytes, now: float) -> None:
        assert self.subscriber is not None
        self.subscriber.ping(payload)
        self.inflight.append((PING, b""))
        self.ping_sent = now

    def on_reply(self, reply: Any, homed: Callable[[bytes], bool]) -> Optional[Event]:
        """Match one reply to its command; ``homed(channel)``: does the channel belong on this node now?"""
        if isinstance(reply, list) and len(reply) == 3:
            kind, channel, data = reply
            if kind == b"smessage":
                return Event(MESSAGE, channel, data)
            head = self.inflight[0] if self.inflight else None
            if kind == b"ssubscribe":
                if head != (SUB, channel):
                    raise NodeLost("an ssubscribe confirmation that matches no SSUBSCRIBE")
                self.inflight.popleft()
                if homed(channel):
                    self.table.subscribed(channel)
                else:  # moved away while the SSUBSCRIBE was in flight
                    self.strays.append(channel)
                return None
            if kind == b"sunsubscribe":
                if head == (UNSUB, channel):
                    self.inflight.popleft()
                    self.table.unsubscribed(channel)
                    return None
                return Event(LEAVE, channel)  # the server dropped it: the slot is served elsewhere now
        elif isinstance(reply, list) and len(reply) == 2 and reply[0] == b"pong":
            if not self.inflight or self.inflight[0][0] != PING:
                raise NodeLost("a PONG that matches no PING")
            self.inflight.popleft()
            self.ping_sent = None
            return None
        elif isinstance(reply, BaseException):
            return self._on_error(reply, homed)
        raise NodeLost(f"unexpected reply on the shard Pub/Sub connection: {type(reply).__name__}")

    def _on_error(self, error: BaseException, homed: Callable[[bytes], bool]) -> Optional[Event]:
        """An error reply answers the oldest command in flight; when it cannot be that one, resync."""
        if not self.inflight or self.inflight[0][0] == PING:
            raise NodeLost(f"an error reply that matches no command: {str(error)[:200]}")
        kind, channel = self.inflight.popleft()
        slot = moved_slot(error)
        if slot is not None and slot != slot_of(channel):
            raise NodeLost(f"a MOVED reply for slot {slot} that matches no command in flight")
        if kind == UNSUB and not homed(channel):  # gone from this node either way
            self.table.lost(channel)
            return None
        if kind == UNSUB or retry_later(error):  # MOVED/ASK/TRYAGAIN/CLUSTERDOWN: subscribe where it lives now
            return Event(LEAVE, channel)
        return Event(REFUSED, channel, error) if homed(channel) else None


def unsubscribe_ended(nodes: dict[Address, Node], home: dict[bytes, Address], ended: list[bytes], now: float,
                      linger: float) -> list[tuple[Node, ConnectionUnavailable]]:
    """``Node.unsubscribe_ended`` on each channel's home node; the nodes whose send failed, with the error."""
    by_node: dict[Address, list[bytes]] = {}
    for channel in ended:
        address = home.get(channel)
        if address is not None and address in nodes:
            by_node.setdefault(address, []).append(channel)
    failed: list[tuple[Node, ConnectionUnavailable]] = []
    for address, channels in by_node.items():
        try:
            nodes[address].unsubscribe_ended(channels, now, linger)
        except ConnectionUnavailable as error:
            failed.append((nodes[address], error))
    return failed


def snapshot(nodes: list[Node], homeless: int) -> dict[str, Any]:
    """The drainer's subscription counts over ``nodes`` (``homeless``: wanted, owner not known yet), plus
    ``nodes``: subscribed channels per connected primary, and ``connected``. Racy but safe from any thread."""
    totals = dict.fromkeys(("subscribed", "settling", "unsubscribing"), 0)
    per_node: dict[str, int] = {}
    for node in nodes:
        counts = node.table.counts()
        totals = {key: total + counts[key] for key, total in totals.items()}
        if node.subscriber is not None:
            per_node[node.name] = counts["subscribed"]
    wanting = [node for node in nodes if node.table.wanted]
    connected = not homeless and all(node.subscriber is not None for node in wanting) and (
        bool(wanting) or any(node.subscriber is not None for node in nodes))
    return {**totals, "settling": totals["settling"] + homeless, "connected": connected, "nodes": per_node}
