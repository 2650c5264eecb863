"""The drainer's protocol rules, driven step by step on a fake link and a scripted fake Pub/Sub (no server)."""

from __future__ import annotations

import time
from typing import List, Optional, Sequence, Tuple

import pytest

from redisresults import _dispatch
from redisresults._drainer import Drainer
from redisresults._exceptions import ConnectionUnavailable, DrainerError, PermissionDenied
from redisresults._future import ResultFuture
from redisresults._router import Router
from tests.fakes import FakeServer, FakeSubscriber, success

pytestmark = pytest.mark.timeout(30)


def chan(task_id: str) -> bytes:
    return b"celery-task-meta-" + task_id.encode()


def setup(**link: object) -> Tuple[FakeServer, Router, Drainer]:
    server = FakeServer()
    router = Router(cache_max=0)
    drainer = Drainer(server.link(**link), router, linger=0.0)  # type: ignore[arg-type]
    return server, router, drainer


def wait_on(router: Router, *task_ids: str) -> List[ResultFuture]:
    futures = []
    for task_id in task_ids:
        future = ResultFuture(task_id)
        cached, _ = router.register(chan(task_id), task_id, future)
        assert cached is None
        futures.append(future)
    return futures


def steps(drainer: Drainer, count: int = 3) -> None:
    for _ in range(count):
        assert drainer.drain_once(0.0)


def test_key_is_read_again_only_after_the_subscribe_is_confirmed() -> None:
    server, router, drainer = setup()
    server.hold_acks = True
    (future,) = wait_on(router, "a")
    steps(drainer)
    assert server.reads == [(chan("a"),)]  # the peek before subscribing: nothing there yet
    assert server.commands("SUBSCRIBE") == [(chan("a"),)]
    server.store(chan("a"), success("a"), publish=False)  # stored while the SUBSCRIBE is unconfirmed: missed
    steps(drainer)
    assert len(server.reads) == 1 and not future.done  # unconfirmed: a read now could miss a publish
    server.release_acks()
    steps(drainer)
    assert server.reads[-1] == (chan("a"),) and len(server.reads) == 2
    assert future.done and future.meta()["result"] == 1


def test_a_channel_settles_only_once_its_confirmation_read_is_answered() -> None:
    """``settling`` covers the MGET in flight: a result stored before its answer may come back in key order,
    so only ``settling == 0`` means that what is stored from now on arrives in publish order."""
    server = FakeServer()
    seen: List[int] = []
    plain_read = server.read_keys

    def read_keys(keys: Sequence[bytes]) -> List[Optional[bytes]]:
        seen.append(drainer.snapshot()["settling"])
        return plain_read(keys)

    server.read_keys = read_keys  # type: ignore[method-assign]
    router = Router(cache_max=0)
    drainer = Drainer(server.link(), router, linger=0.0)
    wait_on(router, "a", "b")
    steps(drainer)
    assert len(seen) == 2  # the peek (before subscribing), then the read after the confirmations
    assert seen[1] == 2  # both still settling while that read is on its way
    assert drainer.snapshot()["settling"] == 0 and drainer.snapshot()["subscribed"] == 2


def test_results_already_stored_need_no_subscription() -> None:
    server, router, drainer = setup()
    ids = [f"s{i}" for i in range(20)]
    for task_id in ids:
        server.store(chan(task_id), success(task_id), publish=False)
    futures = wait_on(router, *ids)
    steps(drainer)
    assert all(f.done for f in futures)
    assert server.commands("SUBSCRIBE") == [] and server.commands("UNSUBSCRIBE") == []
    assert len(server.reads) == 1  # one MGET for all


def test_many_waits_are_one_subscribe_and_two_reads() -> None:
    server, router, drainer = setup()
    ids = [f"t{i}" for i in range(50)]
    futures = wait_on(router, *ids)
    for task_id in ids[:10]:
        server.store(chan(task_id), success(task_id), publish=False)
    steps(drainer)
    assert len(server.commands("SUBSCRIBE")) == 1 and len(server.reads) == 2  # the peek, then after the ack
    assert [f.done for f in futures] == [True] * 10 + [False] * 40
    assert set(server.commands("SUBSCRIBE")[0]) == set(map(chan, ids[10:]))
    for task_id in ids[10:]:
        server.store(chan(task_id), success(task_id))
    steps(drainer)
    assert all(f.done for f in futures)
    unsubscribed = [channel for args in server.commands("UNSUBSCRIBE") for channel in args]
    assert sorted(unsubscribed) == sorted(map(chan, ids[10:]))


def test_published_result_wakes_every_waiter_of_the_channel_once() -> None:
    server, router, drainer = setup()
    futures = wait_on(router, "a", "a", "a")
    steps(drainer)
    server.store(chan("a"), success("a"))
    server.publish(chan("a"), b'{"status": "SUCCESS", "result": 2, "task_id": "a"}')  # a late duplicate
    steps(drainer)
    assert all(f.done and f.meta()["result"] == 1 for f in futures)


def test_non_ready_states_go_to_watchers_only() -> None:
    server, router, drainer = setup()
    seen: List[str] = []
    router.watch(chan("p"), "p", lambda meta: seen.append(meta["status"]))
    (future,) = wait_on(router, "p")
    steps(drainer)
    for state in ("STARTED", "PROGRESS", "PROGRESS"):
        server.store(chan("p"), {"status": state, "result": None, "task_id": "p"})
    steps(drainer)
    assert seen == ["STARTED", "PROGRESS", "PROGRESS"] and not future.done
    server.store(chan("p"), success("p"))
    steps(drainer)
    assert seen[-1] == "SUCCESS" and future.done


def test_lost_connection_resubscribes_first_and_rereads_after() -> None:
    server, router, drainer = setup()
    futures = wait_on(router, "a", "b")
    steps(drainer)
    server.hold_acks = True
    server.drop()
    assert not drainer.drain_once(0.0)  # the read fails: a resync, not a crash
    server.store(chan("a"), success("a"), publish=False)  # published while nobody listened: lost
    assert drainer.snapshot()["reconnects"] == 1
    log_before = len(server.log)
    steps(drainer)
    after = server.log[log_before:]
    assert after[0][0] == "SUBSCRIBE" and set(after[0][1]) == {chan("a"), chan("b")}
    assert all(command != "MGET" for command, _ in after)  # nothing read before the confirmation
    server.release_acks()
    steps(drainer)
    assert futures[0].done and futures[0].meta()["result"] == 1 and not futures[1].done
    assert drainer.snapshot()["recovered"] == 1


def test_unreachable_server_keeps_the_waits_and_says_why() -> None:
    server, router, drainer = setup()
    server.down = True
    (future,) = wait_on(router, "a")
    assert not drainer.drain_once(0.0)
    snapshot = drainer.snapshot()
    assert not snapshot["connected"] and "fake server down" in snapshot["last_error"]
    server.down = False
    server.store(chan("a"), success("a"), publish=False)
    steps(drainer)
    assert future.done


def test_refused_subscribe_fails_only_its_own_waits() -> None:
    server, router, drainer = setup()
    (allowed,) = wait_on(router, "ok")
    steps(drainer)
    server.refuse = lambda channels: chan("secret") in channels
    (denied,) = wait_on(router, "secret")
    steps(drainer)
    with pytest.raises(PermissionDenied):
        denied.meta()
    assert not allowed.done  # its subscription was confirmed before: untouched
    server.refuse = None
    server.store(chan("ok"), success("ok"))
    steps(drainer)
    assert allowed.done and drainer.snapshot()["connected"]


def test_refused_subscribe_between_accepted_ones_is_attributed_to_its_command() -> None:
    server, router, drainer = setup()
    server.hold_acks = True
    (first,) = wait_on(router, "one")
    steps(drainer, 1)
    server.refuse = lambda channels: chan("two") in channels
    (second,) = wait_on(router, "two")
    steps(drainer, 1)
    server.refuse = None
    (third,) = wait_on(router, "three")
    steps(drainer, 1)
    assert len(server.commands("SUBSCRIBE")) == 3
    server.release_acks()
    steps(drainer)
    assert second.done and not first.done and not third.done
    with pytest.raises(PermissionDenied):
        second.meta()


def test_a_channel_wanted_again_while_unsubscribing_is_resubscribed_after_the_ack() -> None:
    server, router, drainer = setup()
    (future,) = wait_on(router, "a")
    steps(drainer)
    server.hold_acks = True
    router.discard(chan("a"), future)
    steps(drainer, 1)  # UNSUBSCRIBE sent, not confirmed
    (again,) = wait_on(router, "a")
    steps(drainer, 1)
    assert server.commands("SUBSCRIBE") == [(chan("a"),)]  # not re-sent before the UNSUBSCRIBE is confirmed
    server.store(chan("a"), success("a"), publish=False)
    server.release_acks()
    steps(drainer)
    server.release_acks()
    steps(drainer)
    assert server.commands("SUBSCRIBE") == [(chan("a"),), (chan("a"),)]
    assert again.done


def test_a_new_waiter_on_a_live_channel_rereads_the_key() -> None:
    """Without the cache a second wait after a delivery must not wait for a publish that already happened."""
    server, router, drainer = setup()
    (first,) = wait_on(router, "a")
    steps(drainer)
    server.store(chan("a"), success("a"))
    (second,) = wait_on(router, "a")  # registered before the drainer took the delivery's unsubscribe
    steps(drainer)
    assert first.done and second.done


def test_reference_message_makes_the_drainer_read_the_key() -> None:
    server, router, drainer = setup()
    (future,) = wait_on(router, "big")
    steps(drainer)
    server.keys[chan("big")] = b'{"status": "SUCCESS", "result": "x", "task_id": "big"}'
    server.publish(chan("big"), b'{"status": "STORED", "task_id": "big"}')
    steps(drainer)
    assert future.done and future.meta()["result"] == "x"


def test_key_read_failures() -> None:
    server, router, drainer = setup()
    server.read_error = PermissionDenied("NOPERM no access to the key")
    (denied,) = wait_on(router, "a")
    steps(drainer)
    with pytest.raises(PermissionDenied):
        denied.meta()
    server.read_error = ConnectionUnavailable("read connection reset")
    (later,) = wait_on(router, "b")
    assert not drainer.drain_once(0.0)  # subscribed, confirmed, and the read fails: a resync
    assert drainer.snapshot()["reconnects"] == 1
    server.read_error = None
    server.store(chan("b"), success("b"), publish=False)
    steps(drainer)
    assert later.done


def test_silent_connection_is_replaced() -> None:
    server, router, drainer = setup(health_interval=0.05)
    wait_on(router, "a")
    steps(drainer)
    server.answer_pings = False
    deadline = time.monotonic() + 5
    while drainer.drain_once(0.02):
        assert time.monotonic() < deadline, "a PING without reply never counted as a dead connection"
    assert "no reply to PING" in drainer.snapshot()["last_error"]
    assert server.commands("PING")


def test_moved_master_means_resubscribe_there() -> None:
    server, router, drainer = setup(follow_master=True)
    (future,) = wait_on(router, "a")
    steps(drainer)
    server.master = ("127.0.0.1", 7001)
    server.store(chan("a"), success("a"), publish=False)  # written on the new master only
    deadline = time.monotonic() + 5
    while drainer.drain_once(0.05):
        assert time.monotonic() < deadline
    steps(drainer)
    assert server.subscribers[-1].address == ("127.0.0.1", 7001)
    assert future.done


def test_crash_fails_every_waiter_and_later_waits() -> None:
    server, router, drainer = setup()
    futures = wait_on(router, "a", "b")
    steps(drainer)
    server.publish(chan("a"), b"not json at all")  # the fake decoder raises a non-redisresults error
    drainer.run()  # returns: the failure went to the waiters, not into a silent hang
    for future in futures:
        with pytest.raises(DrainerError, match="JSONDecodeError"):
            future.meta()
    assert "JSONDecodeError" in (drainer.failure or "")
    with pytest.raises(DrainerError):
        wait_on(router, "c")


def test_unsubscribes_linger_to_go_out_together() -> None:
    """Results delivered one after another: the first UNSUBSCRIBE leaves at once, the next ones wait out ``linger``
    and leave as one command."""
    server = FakeServer()
    router = Router(cache_max=0)
    drainer = Drainer(server.link(), router, linger=0.2)  # type: ignore[arg-type]
    ids = [f"l{i}" for i in range(5)]
    futures = wait_on(router, *ids)
    steps(drainer)
    for task_id in ids:
        server.store(chan(task_id), success(task_id))
        steps(drainer, 1)
    steps(drainer, 1)  # the last delivery's drop taken
    assert all(f.done for f in futures)
    assert server.commands("UNSUBSCRIBE") == [(chan(ids[0]),)]  # the first at once, the others lingering
    assert drainer.snapshot()["subscribed"] == 0  # not counted as subscribed meanwhile...
    assert drainer.snapshot()["unsubscribing"] == len(ids) - 1  # ...but as lingering
    # One step: its wait ends when the linger is over, not after 60 s (the test's timeout would fail it first)
    assert drainer.drain_once(60.0)
    assert [sorted(args) for args in server.commands("UNSUBSCRIBE")[1:]] == [sorted(map(chan, ids[1:]))]


def test_a_wait_during_the_linger_is_served_once_the_unsubscribe_is_confirmed() -> None:
    server = FakeServer()
    router = Router(cache_max=0)
    drainer = Drainer(server.link(), router, linger=0.2)  # type: ignore[arg-type]
    (first,) = wait_on(router, "a")
    steps(drainer)
    (other,) = wait_on(router, "b")
    steps(drainer)
    server.store(chan("b"), success("b"))  # its UNSUBSCRIBE leaves at once: the next one lingers
    steps(drainer)
    server.publish(chan("a"), b'{"status": "SUCCESS", "result": 1, "task_id": "a"}')  # published, not stored
    steps(drainer)
    assert other.done and first.done and server.commands("UNSUBSCRIBE") == [(chan("b"),)]
    (again,) = wait_on(router, "a")  # the channel is still subscribed, with its UNSUBSCRIBE still to go out
    started = time.monotonic()
    while len(server.commands("SUBSCRIBE")) < 3 and time.monotonic() - started < 5:
        assert drainer.drain_once(0.5)
    # UNSUBSCRIBE, its ack, then SUBSCRIBE again (and a read once confirmed): a store from now on is not missed
    assert server.commands("UNSUBSCRIBE")[-1] == (chan("a"),) and server.commands("SUBSCRIBE")[-1] == (chan("a"),)
    steps(drainer)
    assert not again.done
    server.store(chan("a"), success("a"))
    steps(drainer)
    assert again.done and again.meta()["result"] == 1


def test_a_burst_lets_the_waiters_it_woke_run_at_the_first_result_then_every_yield_every(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Waiters get the CPU (GIL or hub) at the first settled future of a burst and then once per YIELD_EVERY
    settled futures, counted in futures, not replies: a channel's two waiters count two, a progress state none."""
    server, router, drainer = setup()
    ids = [f"t{n}" for n in range(120)]
    futures = wait_on(router, *ids, "t0")  # t0 has two waiters
    steps(drainer)
    assert not any(f.done for f in futures)
    settled_at: List[int] = []
    monkeypatch.setattr(_dispatch, "_yield_now", lambda: settled_at.append(sum(f.done for f in futures)))
    server.publish(chan("t1"), b'{"status": "STARTED", "task_id": "t1"}')
    for task_id in ids:
        server.store(chan(task_id), success(task_id))
    steps(drainer, 1)
    assert all(f.done for f in futures)
    every = _dispatch.YIELD_EVERY
    assert settled_at == [2, 2 + every, 2 + 2 * every]  # t0's two, then 50 more, then 50 more; none for STARTED
    settled_at.clear()
    server.store(chan("t0"), success("t0"))  # a new batch: nobody waits, nobody to yield to
    steps(drainer, 1)
    assert settled_at == []


def test_a_lone_result_is_unsubscribed_before_its_waiter_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's get() unsubscribes before it returns (its tests look at PUBSUB CHANNELS right after): the drainer
    sends the UNSUBSCRIBE of a channel a ready result ended before it lets the woken waiters run."""
    server = FakeServer()
    router = Router(cache_max=0)
    drainer = Drainer(server.link(), router, linger=0.2)  # type: ignore[arg-type]
    (future,) = wait_on(router, "a")
    steps(drainer)
    at_yield: List[List[Tuple[bytes, ...]]] = []
    monkeypatch.setattr(_dispatch, "_yield_now", lambda: at_yield.append(server.commands("UNSUBSCRIBE")))
    server.store(chan("a"), success("a"))
    assert drainer.drain_once(0.0)
    assert future.done and at_yield == [[(chan("a"),)]]
    (later,) = wait_on(router, "b")
    steps(drainer)
    server.store(chan("b"), success("b"))  # within the linger: left to go out with others, not before the yield
    assert drainer.drain_once(0.0)
    assert later.done and at_yield[1] == [(chan("a"),)]


def test_a_hold_subscribes_without_a_peek_and_its_result_unsubscribes_in_the_same_step() -> None:
    server, router, drainer = setup()
    wake, number = router.hold(chan("h"), "h")
    ticket = router.sent.ticket(number)
    assert wake and not ticket.wait(0)
    assert drainer.drain_once(0.0)
    assert ticket.wait(0) and server.commands("SUBSCRIBE") == [(chan("h"),)]
    steps(drainer)
    assert server.reads == [(chan("h"),)]  # only the read after the confirmation (a peek would be a second)
    server.store(chan("h"), success("h"))  # nobody waits on it yet: the hold alone ends
    assert drainer.drain_once(0.0)
    assert server.commands("UNSUBSCRIBE") == [(chan("h"),)]


def test_sent_tickets_do_not_wait_on_a_stopped_drainer() -> None:
    server, router, drainer = setup()
    _, number = router.hold(chan("h"), "h")
    ticket = router.sent.ticket(number)
    drainer.stopping = True
    drainer.run()
    assert ticket.wait(0)


def test_a_waiting_sent_ticket_sends_lingering_unsubscribes_at_once() -> None:
    server = FakeServer()
    router = Router(cache_max=0)
    drainer = Drainer(server.link(), router, linger=60.0)  # type: ignore[arg-type]
    router.hold(chan("a"), "a")
    router.hold(chan("b"), "b")
    steps(drainer)
    router.release(chan("a"))
    steps(drainer)
    router.release(chan("b"))  # within the linger: it would wait a minute
    steps(drainer)
    assert server.commands("UNSUBSCRIBE") == [(chan("a"),)]
    plain = router.sent.ticket(router.next_taken())  # a SUBSCRIBE's ticket: the linger holds
    assert drainer.drain_once(0.0)
    assert plain.wait(0) and server.commands("UNSUBSCRIBE") == [(chan("a"),)]
    ticket = router.sent.ticket(router.next_taken(), urgent=True)  # forget()'s: nothing new, only the lingering one
    assert drainer.drain_once(0.0)
    assert ticket.wait(0) and server.commands("UNSUBSCRIBE") == [(chan("a"),), (chan("b"),)]


def test_a_failed_unsubscribe_amid_a_read_settles_the_whole_read_then_resyncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UNSUBSCRIBE sent before the first woken waiter runs can fail in the middle of delivering a read's
    results: every result of that read is still delivered, and the lost connection is a resync after it."""
    server, router, drainer = setup()
    futures = wait_on(router, "a", "b", "c")
    server.hold_acks = True
    steps(drainer, 1)  # peeked (nothing there yet), subscribed, confirmations held back
    for task_id in ("a", "b", "c"):
        server.store(chan(task_id), success(task_id), publish=False)

    def broken(self: FakeSubscriber, channels: Sequence[bytes]) -> None:
        raise ConnectionUnavailable("the connection broke")

    monkeypatch.setattr(FakeSubscriber, "unsubscribe", broken)
    server.release_acks()
    assert not drainer.drain_once(0.0)  # the read delivered all three, then the resync
    assert all(f.done and f.meta()["status"] == "SUCCESS" for f in futures)
    assert drainer.snapshot()["reconnects"] == 1


def test_a_result_found_by_the_read_after_the_confirmation_is_unsubscribed_before_its_waiter_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, router, drainer = setup()
    (future,) = wait_on(router, "a")
    server.hold_acks = True
    steps(drainer, 1)  # peeked: nothing yet; subscribed, confirmation held back
    server.store(chan("a"), success("a"), publish=False)  # stored before the confirmation: found by the read
    at_yield: List[List[Tuple[bytes, ...]]] = []
    monkeypatch.setattr(_dispatch, "_yield_now", lambda: at_yield.append(server.commands("UNSUBSCRIBE")))
    server.release_acks()
    steps(drainer, 1)
    assert future.done and at_yield == [[(chan("a"),)]]
