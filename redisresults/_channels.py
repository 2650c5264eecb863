"""The subscription life cycle of every channel on the drainer's connection: pure state, no I/O.

Each channel has one explicit state. At most one SUBSCRIBE or UNSUBSCRIBE per channel is ever
unconfirmed (a change of mind waits for the confirmation), so a confirmation always means what
the state says, and a key is queued for reading only once its SUBSCRIBE is confirmed. The
drainer feeds confirmations in and takes the commands to send and the keys to read out.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

from ._router import Changes


class State(enum.Enum):
    SUBSCRIBING = "subscribing"  # SUBSCRIBE sent, not confirmed yet
    UNREAD = "unread"  # confirmed; the key is still to be read
    LIVE = "live"  # confirmed and read: only messages bring news now
    UNSUBSCRIBING = "unsubscribing"  # UNSUBSCRIBE sent, not confirmed yet


class ChannelTable:
    """What the drainer knows: the channels wanted (as applied from the router) and their states."""

    def __init__(self) -> None:
        self.wanted: dict[bytes, str] = {}
        self._channels: dict[bytes, State] = {}
        self._recovering: set[bytes] = set()  # subscribed again after a resync: a read hit counts as recovered
        self._to_read: list[bytes] = []
        self._reading = 0  # taken by take_reads, not yet answered: still settling (a store now may be in the MGET)
        self._to_subscribe: list[bytes] = []
        self._to_unsubscribe: list[bytes] = []
        self._unconfirmed: deque[list[bytes]] = deque()  # SUBSCRIBE commands awaiting confirmations, in order

    # ---------------------------------------------------------------- inputs

    def apply(self, changes: Changes, connected: bool) -> None:
        """The router's changes: drop what nobody wants, subscribe (or re-read) what gained interest."""
        channels = self._channels
        for channel in changes.dropped:
            self.wanted.pop(channel, None)
            if channels.get(channel) in (State.UNREAD, State.LIVE):
                channels[channel] = State.UNSUBSCRIBING
                self._to_unsubscribe.append(channel)
        for channel, task_id in changes.fresh.items():
            self.wanted[channel] = task_id
            state = channels.get(channel)
            if state is None:
                if connected:
                    channels[channel] = State.SUBSCRIBING
                    self._to_subscribe.append(channel)
            elif state is State.LIVE:  # a new waiter after the last read: read again
                self.reread(channel)

    def connected(self, recovering: bool) -> None:
        """A new connection: everything wanted is to be subscribed on it, and read once confirmed."""
        self._channels = dict.fromkeys(self.wanted, State.SUBSCRIBING)
        self._recovering = set(self.wanted) if recovering else set()
        self._to_subscribe = list(self.wanted)
        self._to_unsubscribe = []
        self._to_read = []
        self._reading = 0
        self._unconfirmed.clear()

    def disconnected(self) -> None:
        self._channels = {}
        self._recovering = set()
        self._to_read = []
        self._reading = 0
        self._to_subscribe = []
        self._to_unsubscribe = []
        self._unconfirmed.clear()

    def subscribed(self, channel: bytes) -> None:
        if self._unconfirmed and self._unconfirmed[0] and self._unconfirmed[0][-1] == channel:
            self._unconfirmed.popleft()  # the command's last confirmation
        if self._channels.get(channel) is not State.SUBSCRIBING:
            return
        if channel in self.wanted:
            self._channels[channel] = State.UNREAD
            self._to_read.append(channel)
        else:
            self._channels[channel] = State.UNSUBSCRIBING
            self._to_unsubscribe.append(channel)

    def unsubscribed(self, channel: bytes) -> None:
        if self._channels.get(channel) is not State.UNSUBSCRIBING:
            return
        if channel in self.wanted:  # wanted again meanwhile: only now can it be subscribed again
            self._channels[channel] = State.SUBSCRIBING
            self._to_subscribe.append(channel)
        else:
            del self._channels[channel]

    def refused(self) -> list[bytes]:
        """An error reply refused the oldest unconfirmed SUBSCRIBE: its channels, now given up."""
        if not self._unconfirmed:
            return []
        refused = [c for c in self._unconfirmed.popleft() if c in self._channels]
        for channel in refused:
            if self._channels[channel] is State.SUBSCRIBING:
                del self._channels[channel]
                self.wanted.pop(channel, None)
        return refused

    def reread(self, channel: bytes) -> None:
        """A confirmed channel whose key must be read again (a new waiter, a too-large-to-publish notice)."""
        if self._channels.get(channel) is State.LIVE:
            self._channels[channel] = State.UNREAD
            self._to_read.append(channel)

    def lost(self, channel: bytes) -> None:
        """The channel left this connection without an UNSUBSCRIBE of ours (Redis Cluster: its slot moved to
        another node): forget it here, wanted or not; the caller subscribes it where it lives now."""
        self.wanted.pop(channel, None)
        self._channels.pop(channel, None)
        for pending in (self._to_read, self._to_subscribe, self._to_unsubscribe):
            while channel in pending:
                pending.remove(channel)
        alone = [channel]
        while alone in self._unconfirmed:
            self._unconfirmed.remove(alone)

    # ---------------------------------------------------------------- outputs

    def take_commands(self, unsubscribe: bool = True) -> tuple[list[bytes], list[bytes]]:
        """Channels to SUBSCRIBE and (unless ``unsubscribe`` is false: they may wait to be batched) to
        UNSUBSCRIBE now; ``sent`` must follow for each SUBSCRIBE chunk."""
        subs, self._to_subscribe = self._to_subscribe, []
        if not unsubscribe:
            return subs, []
        unsubs, self._to_unsubscribe = self._to_unsubscribe, []
        return subs, unsubs

    def unsubscribe_backlog(self) -> int:
        """UNSUBSCRIBEs not sent yet (the channel stays subscribed, and ignored, until they are)."""
        return len(self._to_unsubscribe)

    def sent(self, subscribe_chunk: list[bytes]) -> None:
        self._unconfirmed.append(subscribe_chunk)

    def has_reads(self) -> bool:
        return bool(self._to_read)

    def take_reads(self) -> list[tuple[bytes, bool]]:
        """``(channel, recovering)`` for every key to read now; they count as read (LIVE) from here, and as
        settling until ``reads_done``: a result stored while the MGET is on its way may be in its answer,
        delivered in key order, not publish order."""
        queued, self._to_read = self._to_read, []
        ready: list[tuple[bytes, bool]] = []
        for channel in queued:
            if self._channels.get(channel) is State.UNREAD and channel in self.wanted:
                self._channels[channel] = State.LIVE
                recovering = channel in self._recovering
                if recovering:
                    self._recovering.discard(channel)
                ready.append((channel, recovering))
        self._reading = len(ready)
        return ready

    def reads_done(self) -> None:
        """The keys taken by ``take_reads`` were read (or failed): only messages bring news of them now."""
        self._reading = 0

    def counts(self) -> dict[str, int]:
        """Racy but safe from other threads (dict copies are atomic under the GIL)."""
        channels = self._channels.copy()
        unsettled = sum(1 for state in channels.values() if state in (State.SUBSCRIBING, State.UNREAD))
        unsettled += sum(1 for channel in self.wanted.copy() if channel not in channels) + self._reading
        subscribed = sum(1 for state in channels.values() if state is not State.UNSUBSCRIBING)
        return {"subscribed": subscribed, "settling": unsettled, "unsubscribing": len(self._to_unsubscribe)}

    def states(self, channels: Iterable[bytes]) -> list[State | None]:
        """For tests and diagnostics."""
        return [self._channels.get(c) for c in channels]
