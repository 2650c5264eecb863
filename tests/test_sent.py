"""Sent tickets (``_sent``): pure bookkeeping between callers and the drainer; no server."""

from __future__ import annotations

import threading
from typing import List, Tuple

from hypothesis import given
from hypothesis import strategies as st

from redisresults._sent import OPEN, SentTickets


def test_a_ticket_opens_once_its_generation_or_a_later_one_is_marked() -> None:
    tickets = SentTickets()
    assert tickets.ticket(0) is OPEN and OPEN.wait(0)  # nothing ever taken: nothing to wait for
    first, second = tickets.ticket(1), tickets.ticket(3)
    assert not first.wait(0) and not second.wait(0)
    tickets.mark(2)
    assert first.wait(0) and not second.wait(0)
    tickets.mark(1)  # an older number changes nothing
    assert not second.wait(0) and tickets.sent == 2
    tickets.mark(3)
    assert second.wait(0)
    assert tickets.ticket(3) is OPEN


def test_only_an_urgent_ticket_hurries_the_lingering_unsubscribes() -> None:
    tickets = SentTickets()
    plain = tickets.ticket(1)
    assert not tickets.urgent()  # a delay()'s SUBSCRIBE: the lingering UNSUBSCRIBEs keep their pace
    urgent = tickets.ticket(2, urgent=True)  # forget()
    assert tickets.urgent()
    tickets.mark(1)
    assert plain.wait(0) and tickets.urgent()
    tickets.mark(2)
    assert urgent.wait(0) and not tickets.urgent()


def test_down_and_stopped_never_wait() -> None:
    tickets = SentTickets()
    assert tickets.ticket(5, down=True) is OPEN  # the connection is down after a failure: nothing can be sent
    pending = tickets.ticket(5)
    tickets.release_all()  # the drainer stopped
    assert pending.wait(0) and tickets.ticket(10**6).wait(0)


def test_a_waiting_thread_is_released_by_the_mark() -> None:
    tickets = SentTickets()
    ticket = tickets.ticket(1)
    opened: List[bool] = []
    waiter = threading.Thread(target=lambda: opened.append(ticket.wait(10)))
    waiter.start()
    tickets.mark(1)
    waiter.join(10)
    assert opened == [True]


@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=8)), max_size=40))
def test_open_exactly_when_a_mark_reached_it(ops: List[Tuple[bool, int]]) -> None:
    """Any interleaving of tickets and marks: a ticket is open iff some mark (before or after it) was >= its
    number, or its number was 0."""
    tickets = SentTickets()
    taken = []
    highest = 0
    for is_mark, number in ops:
        if is_mark:
            tickets.mark(number)
            highest = max(highest, number)
        else:
            taken.append((number, tickets.ticket(number)))
    for number, ticket in taken:
        assert ticket.wait(0) == (number <= highest)
