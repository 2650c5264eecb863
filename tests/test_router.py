"""The router is pure data: every method edits the table and returns the work; these tests need no server."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisresults._exceptions import DrainerError
from redisresults._future import ResultFuture
from redisresults._router import Router


def chan(task_id: str) -> bytes:
    return b"k-" + task_id.encode()


def ready(task_id: str, value: int = 1) -> Dict[str, object]:
    return {"status": "SUCCESS", "result": value, "task_id": task_id}


def waiting(router: Router, *task_ids: str) -> List[ResultFuture]:
    """A registered future for each id, in order."""
    futures = [ResultFuture(task_id) for task_id in task_ids]
    for future in futures:
        router.register(chan(future.task_id), future.task_id, future)
    return futures


def test_only_the_first_change_wakes_the_drainer() -> None:
    router = Router(cache_max=0)
    assert router.register(chan("a"), "a", ResultFuture("a")) == (None, True)
    assert router.register(chan("b"), "b", ResultFuture("b")) == (None, False)  # a wake-up is already pending
    assert router.register(chan("a"), "a", ResultFuture("a")) == (None, False)  # no new channel
    changes = router.take_changes()
    assert changes.fresh == {chan("a"): "a", chan("b"): "b"} and changes.dropped == []
    assert router.register(chan("c"), "c", ResultFuture("c")) == (None, True)


def test_last_waiter_out_drops_the_channel() -> None:
    router = Router(cache_max=0)
    first, second = ResultFuture("a"), ResultFuture("a")
    router.register(chan("a"), "a", first)
    router.register(chan("a"), "a", second)
    router.take_changes()
    assert router.discard(chan("a"), first) is False
    assert router.take_changes().dropped == []
    assert router.discard(chan("a"), second) is True
    assert router.discard(chan("a"), second) is False  # idempotent
    assert router.take_changes().dropped == [chan("a")]


def test_holds_and_watchers_keep_a_channel() -> None:
    router = Router(cache_max=0)
    router.hold(chan("a"), "a")
    router.hold(chan("a"), "a")

    def watcher(meta: Dict[str, object]) -> None:
        pass

    router.watch(chan("a"), "a", watcher)
    router.take_changes()
    assert router.release(chan("a")) is False  # the watcher still wants it
    assert router.release(chan("a")) is False  # idempotent, even from a finalizer
    assert router.unwatch(chan("a"), watcher) is True
    assert router.take_changes().dropped == [chan("a")]
    assert router.release(chan("never")) is False


def test_deliver_ready_resolves_all_and_ends_the_interest() -> None:
    router = Router(cache_max=10)
    futures = [ResultFuture("a") for _ in range(3)]
    for future in futures:
        router.register(chan("a"), "a", future)
    seen: List[Dict[str, object]] = []
    router.watch(chan("a"), "a", seen.append)
    router.take_changes()
    progress = {"status": "PROGRESS", "result": 5, "task_id": "a"}
    delivery = router.deliver(chan("a"), progress)
    assert delivery.futures == [] and len(delivery.watchers) == 1
    delivery = router.deliver(chan("a"), ready("a"))
    assert delivery.futures == futures and len(delivery.watchers) == 1
    assert router.deliver(chan("a"), ready("a")).futures == []  # a duplicate resolves nothing
    assert router.take_changes().dropped == [chan("a")]
    assert router.counts()["pending"] == 0
    cached, wake = router.register(chan("a"), "a", ResultFuture("a"))  # the cache answers a later wait
    assert cached == ready("a") and wake is False


def test_nobody_waiting_still_fills_the_cache() -> None:
    router = Router(cache_max=10)
    assert router.deliver(chan("z"), ready("z")).futures == []
    assert router.cached("z") == ready("z")
    router.forget("z")
    assert router.cached("z") is None


def test_the_cache_keeps_the_most_recently_used() -> None:
    router = Router(cache_max=3)
    for task_id in "abc":
        router.deliver(chan(task_id), ready(task_id))
    assert router.cached("a") == ready("a")  # a read counts as a use: "b" is now the oldest
    router.remember("d", ready("d"))
    assert [router.cached(t) is not None for t in "abcd"] == [True, False, True, True]
    router.remember("c", ready("c", 2))  # a new meta for a cached id replaces it and counts as a use
    router.deliver(chan("e"), ready("e"))
    assert [router.cached(t) is not None for t in "acde"] == [False, True, True, True]
    assert router.cached("c") == ready("c", 2) and router.counts()["cached"] == 3
    router.forget("c")
    router.forget("c")  # idempotent
    assert router.cached("c") is None and router.counts()["cached"] == 2


def test_deliver_many_is_deliver_for_each() -> None:
    router = Router(cache_max=10)
    a, b = waiting(router, "a", "b")
    router.take_changes()
    progress = {"status": "STARTED", "task_id": "b"}
    deliveries = router.deliver_many([chan("a"), chan("b"), chan("z")], [ready("a"), progress, ready("z")])
    assert [d.futures for d in deliveries] == [[a], [], []]
    assert router.counts()["pending"] == 1 and router.take_changes().dropped == [chan("a")]
    assert router.cached("z") == ready("z") and router.cached("b") is None


def test_cache_disabled() -> None:
    router = Router(cache_max=0)
    router.remember("a", ready("a"))
    router.deliver(chan("a"), ready("a"))
    assert router.cached("a") is None and router.counts()["cached"] == 0


def test_fail_and_close() -> None:
    router = Router(cache_max=0)
    a, b = waiting(router, "a", "b")
    assert router.fail([chan("a"), chan("nobody")]) == [a]
    error = DrainerError("stopped")
    assert router.close(error) == [b]
    with pytest.raises(DrainerError, match="stopped"):
        router.register(chan("c"), "c", ResultFuture("c"))
    with pytest.raises(DrainerError):
        router.hold(chan("c"), "c")
    assert router.take_changes().fresh == {}


OPS = st.lists(
    st.tuples(st.sampled_from(["register", "discard", "deliver", "take"]), st.sampled_from(["a", "b", "c"])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_every_future_is_returned_once_and_changes_match_the_table(ops: List[tuple]) -> None:
    """Under any interleaving: a future is handed out for resolving at most once, and the drainer's view
    (built only from take_changes) ends up wanting exactly the channels the table holds."""
    router = Router(cache_max=0)
    live: Dict[str, List[ResultFuture]] = {}
    handed: List[ResultFuture] = []
    wanted: Dict[bytes, str] = {}

    def take() -> None:
        changes = router.take_changes()
        for channel in changes.dropped:
            wanted.pop(channel, None)
        wanted.update(changes.fresh)

    for op, task_id in ops:
        if op == "register":
            future = ResultFuture(task_id)
            router.register(chan(task_id), task_id, future)
            live.setdefault(task_id, []).append(future)
        elif op == "discard" and live.get(task_id):
            router.discard(chan(task_id), live[task_id].pop(0))
        elif op == "deliver":
            handed.extend(router.deliver(chan(task_id), ready(task_id)).futures)
            live.pop(task_id, None)
        elif op == "take":
            take()
    take()
    assert len(handed) == len(set(map(id, handed)))
    assert set(wanted) == {chan(t) for t, futures in live.items() if futures}
    assert router.counts()["pending"] == sum(len(f) for f in live.values())


def test_the_drainers_own_changes_never_swallow_a_callers_wake_up() -> None:
    """A delivery (by the drainer) leaves a change behind; a wait registered after it must still wake the
    drainer, which may block before it takes changes again (found by the race tests: a 10 s stall)."""
    router = Router(cache_max=0)
    router.register(chan("a"), "a", ResultFuture("a"))
    router.take_changes()
    router.deliver(chan("a"), ready("a"))  # the drainer's own change: the interest ended
    assert router.register(chan("a"), "a", ResultFuture("a")) == (None, True)
    assert router.register(chan("b"), "b", ResultFuture("b")) == (None, False)  # one wake-up per batch
    changes = router.take_changes()
    assert set(changes.fresh) == {chan("a"), chan("b")}


def test_just_read_channels_are_not_peeked() -> None:
    router = Router(cache_max=0)
    router.register(chan("a"), "a", ResultFuture("a"), just_read=True)
    router.register(chan("b"), "b", ResultFuture("b"))
    changes = router.take_changes()
    assert set(changes.fresh) == {chan("a"), chan("b")} and changes.read == frozenset({chan("a")})


def test_a_burst_of_deliveries_leaves_the_newest_in_the_cache() -> None:
    router = Router(cache_max=4)
    router.remember("old", ready("old"))
    for n in range(10):  # no look at the cache in between: the drainer's burst
        router.deliver(chan(f"t{n}"), ready(f"t{n}", n))
    assert [router.cached(f"t{n}") is not None for n in range(10)] == [False] * 6 + [True] * 4
    assert router.cached("old") is None and router.counts()["cached"] == 4
    assert router.cached("t9") == ready("t9", 9)


def test_forget_wins_over_a_delivery_not_yet_in_the_cache() -> None:
    router = Router(cache_max=4)
    router.deliver(chan("a"), ready("a"))
    router.forget("a")  # before any look folded the delivery in
    assert router.cached("a") is None
    router.deliver(chan("a"), ready("a", 2))  # a new result after the forget is cached again
    assert router.cached("a") == ready("a", 2)


_CACHE_OPS = st.lists(
    st.tuples(st.sampled_from(["deliver", "remember", "forget", "cached"]), st.sampled_from("abcdef"),
              st.integers(0, 3)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(cache_max=st.integers(1, 4), ops=_CACHE_OPS)
def test_the_cache_only_ever_answers_the_latest_meta(cache_max: int, ops: List[tuple]) -> None:
    """Whatever the order of deliveries (bursts between looks included), remembers, looks and forgets: a hit is
    the newest meta given for that id since its last forget, the newest one given is a hit, and the cache
    never holds more than cache_max."""
    router = Router(cache_max=cache_max)
    latest: Dict[str, Dict[str, object]] = {}
    newest: Optional[str] = None
    for op, task_id, value in ops:
        if op == "deliver":
            router.deliver(chan(task_id), ready(task_id, value))
        elif op == "remember":
            router.remember(task_id, ready(task_id, value))
        elif op == "forget":
            router.forget(task_id)
            latest.pop(task_id, None)
            newest = None if newest == task_id else newest
            continue
        else:
            hit = router.cached(task_id)
            assert hit is None or hit == latest.get(task_id)
            assert router.counts()["cached"] <= cache_max
            continue
        latest[task_id], newest = ready(task_id, value), task_id
    if newest is not None:
        assert router.cached(newest) == latest[newest]
    assert router.counts()["cached"] <= cache_max


def test_holds_are_not_peeked_and_say_which_take_carries_them() -> None:
    """A hold comes before its task is even sent: no read of the key before subscribing. Its number is the
    take_changes() that carries it, so a caller's sent ticket waits for exactly that step."""
    router = Router(cache_max=0)
    assert router.next_taken() == 1
    wake, number = router.hold(chan("a"), "a")
    assert wake and number == 1 and router.next_taken() == 1
    changes = router.take_changes()
    assert changes.generation == 1 and changes.fresh == {chan("a"): "a"} and changes.read == frozenset({chan("a")})
    assert router.next_taken() == 2  # the next one, even with nothing new: lingering commands go out in it
    assert router.hold(chan("a"), "a") == (False, 2)  # held already: no change, the next take is number 2
    assert router.take_changes().generation == 2


def test_a_ready_delivery_says_it_ended_the_interest() -> None:
    router = Router(cache_max=0)
    (future,) = waiting(router, "a")
    router.hold(chan("b"), "b")
    router.take_changes()
    assert router.deliver(chan("a"), {"status": "STARTED"}).ended is False
    done = router.deliver(chan("a"), ready("a"))
    assert done.ended and done.futures == [future]
    assert router.deliver(chan("b"), ready("b")).ended  # a hold alone ends too
    assert router.deliver(chan("nobody"), ready("nobody")).ended is False
    assert sorted(router.take_changes().dropped) == [chan("a"), chan("b")]
