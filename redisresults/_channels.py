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


class _Channel:
    __slots__ = ("recovering", "state")

    def __init__(self, state: State, recovering: bool = False) -> None:
        self.state = state
        self.recovering = recovering  # subscribed again after a resync: a read hit counts as recovered


class ChannelTable:
    """What the drainer knows: the channels wanted (as applied from the router) and their states."""

    def __init__(self) -> None:
        self.wanted: dict[bytes, str] = {}
        self._channels: dict[bytes, _Channel] = {}
        self._to_read: list[bytes] = []
        self._to_subscribe: list[bytes] = []
        self._to_unsubscribe: list[bytes] = []
        self._unconfirmed: deque[list[bytes]] = deque()  # SUBSCRIBE commands awaiting confirmations, in order

    # ---------------------------------------------------------------- inputs

    def apply(self, changes: Changes, connected: bool) -> None:
        """The router's changes: drop what nobody wants, subscribe (or re-read) what gained interest."""
        for channel in changes.dropped:
            self.wanted.pop(channel, None)
            record = self._channels.get(channel)
            if record is not None and record.state in (State.UNREAD, State.LIVE):
                record.state = State.UNSUBSCRIBING
                self._to_unsubscribe.append(channel)
        for channel, task_id in changes.fresh.items():
            self.wanted[channel] = task_id
            record = self._channels.get(channel)
            if record is None:
                if connected:
                    self._channels[channel] = _Channel(State.SUBSCRIBING)
                    self._to_subscribe.append(channel)
            elif record.state is State.LIVE:  # a new waiter after the last read: read again
                self.reread(channel)

    def connected(self, recovering: bool) -> None:
        """A new connection: everything wanted is to be subscribed on it, and read once confirmed."""
        self._channels = {channel: _Channel(State.SUBSCRIBING, recovering) for channel in self.wanted}
        self._to_subscribe = list(self.wanted)
        self._to_unsubscribe = []
        self._to_read = []
        self._unconfirmed.clear()

    def disconnected(self) -> None:
        self._channels = {}
        self._to_read = []
        self._to_subscribe = []
        self._to_unsubscribe = []
        self._unconfirmed.clear()

    def subscribed(self, channel: bytes) -> None:
        if self._unconfirmed and self._unconfirmed[0] and self._unconfirmed[0][-1] == channel:
            self._unconfirmed.popleft()  # the command's last confirmation
        record = self._channels.get(channel)
        if record is None or record.state is not State.SUBSCRIBING:
            return
        if channel in self.wanted:
            record.state = State.UNREAD
            self._to_read.append(channel)
        else:
            record.state = State.UNSUBSCRIBING
            self._to_unsubscribe.append(channel)

    def unsubscribed(self, channel: bytes) -> None:
        record = self._channels.get(channel)
        if record is None or record.state is not State.UNSUBSCRIBING:
            return
        if channel in self.wanted:  # wanted again meanwhile: only now can it be subscribed again
            record.state = State.SUBSCRIBING
            self._to_subscribe.append(channel)
        else:
            del self._channels[channel]

    def refused(self) -> list[bytes]:
        """An error reply refused the oldest unconfirmed SUBSCRIBE: its channels, now given up."""
        if not self._unconfirmed:
            return []
        refused = [c for c in self._unconfirmed.popleft() if c in self._channels]
        for channel in refused:
            if self._channels[channel].state is State.SUBSCRIBING:
                del self._channels[channel]
                self.wanted.pop(channel, None)
        return refused

    def reread(self, channel: bytes) -> None:
        """A confirmed channel whose key must be read again (a new waiter, a too-large-to-publish notice)."""
        record = self._channels.get(channel)
        if record is not None and record.state is State.LIVE:
            record.state = State.UNREAD
            self._to_read.append(channel)

    # ---------------------------------------------------------------- outputs

    def take_commands(self) -> tuple[list[bytes], list[bytes]]:
        """Channels to SUBSCRIBE and to UNSUBSCRIBE now; ``sent`` must follow for each SUBSCRIBE chunk."""
        subs, self._to_subscribe = self._to_subscribe, []
        unsubs, self._to_unsubscribe = self._to_unsubscribe, []
        return subs, unsubs

    def sent(self, subscribe_chunk: list[bytes]) -> None:
        self._unconfirmed.append(subscribe_chunk)

    def has_reads(self) -> bool:
        return bool(self._to_read)

    def take_reads(self) -> list[tuple[bytes, bool]]:
        """``(channel, recovering)`` for every key to read now; they count as read (LIVE) from here."""
        queued, self._to_read = self._to_read, []
        ready: list[tuple[bytes, bool]] = []
        for channel in queued:
            record = self._channels.get(channel)
            if record is not None and record.state is State.UNREAD and channel in self.wanted:
                record.state = State.LIVE
                ready.append((channel, record.recovering))
                record.recovering = False
        return ready

    def counts(self) -> dict[str, int]:
        """Racy but safe from other threads (dict copies are atomic under the GIL)."""
        channels = self._channels.copy()
        unsettled = sum(1 for c in channels.values() if c.state in (State.SUBSCRIBING, State.UNREAD))
        unsettled += sum(1 for channel in self.wanted.copy() if channel not in channels)
        subscribed = sum(1 for c in channels.values() if c.state is not State.UNSUBSCRIBING)
        return {"subscribed": subscribed, "settling": unsettled}

    def states(self, channels: Iterable[bytes]) -> list[State | None]:
        """For tests and diagnostics."""
        return [record.state if (record := self._channels.get(c)) else None for c in channels]
