"""Sent tickets: a caller waits until the drainer has sent the subscription change it just made.

Celery subscribes to a task's channel in the sending thread before it publishes the task, so once ``delay()``
returns the channel shows in ``PUBSUB CHANNELS`` (its own integration tests check that). Here the drainer sends
every SUBSCRIBE, so the drop-in waits for a ticket instead. The router numbers each ``take_changes()``; a change
made now is in the next one, and the drainer marks a number sent once the step that took it has flushed its
commands. Callers take tickets (an ``Event`` each, only when there is something to wait for); the drainer marks.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Optional


class Ticket:
    """Opens once the changes numbered ``generation`` (and all before) were sent, or nothing was left to send."""

    __slots__ = ("_event", "generation", "urgent")

    def __init__(self, generation: int, event: Optional[threading.Event], urgent: bool = False) -> None:
        self.generation = generation
        self._event = event
        self.urgent = urgent  # its step sends the lingering UNSUBSCRIBEs too (forget())

    def wait(self, timeout: float) -> bool:
        """True once sent; False after ``timeout`` seconds (the change is still applied later, just not yet)."""
        return self._event is None or self._event.wait(timeout)

    def open(self) -> None:
        if self._event is not None:
            self._event.set()


OPEN = Ticket(0, None)


class SentTickets:
    """The drainer's record of which change numbers it has sent, and the tickets waiting for later ones."""

    def __init__(self) -> None:
        self.sent = 0
        self._waiting: deque[Ticket] = deque()

    def ticket(self, generation: int, down: bool = False, urgent: bool = False) -> Ticket:
        """The ticket for change number ``generation``; an open one when the connection is ``down`` after a
        failure (nothing can be sent until it is back, and the key is read once the SUBSCRIBE is confirmed).
        ``urgent``: lingering UNSUBSCRIBEs go out in its step too, instead of within ``LINGER``."""
        if down or self.sent >= generation:
            return OPEN
        ticket = Ticket(generation, threading.Event(), urgent)
        self._waiting.append(ticket)
        if self.sent >= generation:  # marked meanwhile, possibly before mark() saw the append
            ticket.open()
        return ticket

    def urgent(self) -> bool:
        """An urgent ticket waits: the drainer sends lingering UNSUBSCRIBEs now rather than later."""
        return bool(self._waiting) and any(ticket.urgent for ticket in list(self._waiting))

    def mark(self, generation: int) -> None:
        """The drainer sent what ``take_changes()`` number ``generation`` held (and everything before it)."""
        if generation <= self.sent:
            return
        self.sent = generation
        waiting = self._waiting
        for _ in range(len(waiting)):
            ticket = waiting.popleft()
            if ticket.generation <= generation:
                ticket.open()
            else:
                waiting.append(ticket)

    def release_all(self) -> None:
        """The drainer stopped: nobody will mark any more, so nobody waits."""
        self.sent = 1 << 62
        while self._waiting:
            self._waiting.popleft().open()
