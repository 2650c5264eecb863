"""The per-wait futures (no server): ResultFuture's resolve/settle, and LeanFuture, the concurrent.futures.Future
that makes its Condition and lists only when somebody blocks on it, driven through the stdlib's own functions."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
from typing import Any, List, Optional

import pytest

from redisresults._future import LeanFuture, ResultFuture, settle
from tests.logs import capture_logs
from tests.polling import poll


class Echo(LeanFuture):
    """The smallest subclass: a meta's ``value`` is the result, an error the exception."""

    __slots__ = ()

    def resolve(self, meta: Optional[dict[str, Any]], error: Optional[BaseException]) -> None:
        self._settle(None if meta is None else meta["value"], error)


def owned(future: object, kind: type) -> List[Any]:
    """What ``future`` holds of ``kind`` (its Condition, its lists): the objects the garbage collector walks."""
    return [obj for obj in gc.get_referents(future) if type(obj) is kind]


def test_a_future_set_before_anybody_waits_never_makes_a_condition() -> None:
    futures = [Echo(f"t{i}") for i in range(3)]
    settle(list(futures), meta={"value": 7})
    done, not_done = concurrent.futures.wait(futures, timeout=0)
    assert done == set(futures) and not not_done
    assert [f.result(timeout=0) for f in concurrent.futures.as_completed(futures, timeout=0)] == [7, 7, 7]
    assert all(f.done() and not f.running() and not f.cancelled() for f in futures)
    assert "state=finished returned int" in repr(futures[0])
    assert all(not owned(f, threading.Condition) for f in futures)


def test_state_starts_running_and_cannot_be_cancelled() -> None:
    future = Echo("t")
    assert future.running() and not future.done()
    assert future.cancel() is False
    with pytest.raises(RuntimeError):
        future.set_running_or_notify_cancel()
    assert not owned(future, list) and not owned(future, threading.Condition)  # polling made nothing either


def test_result_blocks_until_set_from_another_thread() -> None:
    future = Echo("t")
    got: List[Any] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=30)), daemon=True)
    waiter.start()
    poll(lambda: owned(future, threading.Condition) or None, timeout=10, what="the waiter blocking on its Condition")
    future.resolve({"value": "late"}, None)
    waiter.join(10)
    assert got == ["late"]


def test_result_and_exception_time_out_with_the_stdlib_error() -> None:
    future = Echo("t")
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0.01)
    future.resolve({"value": 1}, None)
    assert future.result(timeout=0) == 1 and future.exception(timeout=0) is None


def test_a_failed_future_raises_its_error() -> None:
    future = Echo("t")
    error = KeyError("nope")
    future.resolve(None, error)
    assert future.exception(timeout=0) is error
    with pytest.raises(KeyError) as raised:
        future.result(timeout=0)
    assert raised.value is error
    assert "raised KeyError" in repr(future)


def test_set_twice_is_refused() -> None:
    future = Echo("t")
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(ValueError("again"))
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.resolve({"value": 2}, None)
    assert future.result(timeout=0) == 1


def test_done_callbacks_before_and_after_set_run_once_and_a_broken_one_is_logged() -> None:
    future = Echo("t")
    calls: List[Any] = []

    def broken(_: concurrent.futures.Future[Any]) -> None:
        raise ValueError("callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: calls.append(("early", f.result(timeout=0))))
    with capture_logs() as logs:
        future.resolve({"value": 3}, None)
    assert calls == [("early", 3)]
    assert [e["event"] for e in logs] == ["done_callback_failed"] and "callback bug" in logs[0]["error"]
    future.add_done_callback(lambda f: calls.append(("late", f.result(timeout=0))))  # runs at once, in this thread
    assert calls == [("early", 3), ("late", 3)]


def test_wait_and_as_completed_see_futures_set_while_they_wait() -> None:
    futures = [Echo(f"t{i}") for i in range(200)]
    go = threading.Event()

    def setter() -> None:
        go.wait(10)
        for index, future in enumerate(futures):
            if index % 7:
                future.resolve({"value": index}, None)
            else:
                future.resolve(None, OSError(index))

    thread = threading.Thread(target=setter, daemon=True)
    thread.start()
    go.set()
    done, not_done = concurrent.futures.wait(futures[:100], timeout=30)
    assert len(done) == 100 and not not_done
    seen = {futures.index(f) for f in concurrent.futures.as_completed(futures, timeout=30)}
    thread.join(10)
    assert seen == set(range(200))
    assert [f.exception(timeout=0) is not None for f in futures] == [index % 7 == 0 for index in range(200)]
    assert all(not owned(f, threading.Condition) for f in futures)  # nobody blocked in result()


def test_every_waiter_of_a_race_is_woken() -> None:
    """Threads blocking in result(), in wait() and adding callbacks while another thread sets the futures: each
    one either finds its future set or is woken (the one lock decides, no lost wake-up)."""
    futures = [Echo(f"t{i}") for i in range(300)]
    called = [threading.Event() for _ in futures]
    results: List[Any] = [None] * len(futures)
    start = threading.Barrier(4)

    def by_result(index: int) -> None:
        results[index] = futures[index].result(timeout=30)

    def blocking() -> None:
        start.wait(10)
        for index in range(0, len(futures), 3):
            by_result(index)

    def waiting() -> None:
        start.wait(10)
        concurrent.futures.wait(futures[1::3], timeout=30)

    def callbacks() -> None:
        start.wait(10)
        for index in range(2, len(futures), 3):
            futures[index].add_done_callback(lambda _f, i=index: called[i].set())

    threads = [threading.Thread(target=t, daemon=True) for t in (blocking, waiting, callbacks)]
    for thread in threads:
        thread.start()
    start.wait(10)
    for index, future in enumerate(futures):
        future.resolve({"value": index}, None)
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert results[0::3] == list(range(0, len(futures), 3))
    assert all(f.done() for f in futures[1::3])
    assert all(event.is_set() for event in called[2::3])


def test_settle_resolves_result_futures_and_reports_a_listener_error() -> None:
    heard: List[ResultFuture] = []
    errors: List[BaseException] = []

    def broken(_: ResultFuture) -> None:
        raise ValueError("listener bug")

    first, second, third = ResultFuture("a", broken), ResultFuture("a", heard.append), ResultFuture("a")
    settle([first, second, third], meta={"status": "SUCCESS"}, on_listener_error=errors.append)
    assert [f.meta() for f in (first, second, third)] == [{"status": "SUCCESS"}] * 3
    assert heard == [second] and [str(e) for e in errors] == ["listener bug"]
    failed = ResultFuture("b", heard.append)
    settle([failed], error=OSError("gone"))
    assert failed.done and heard[-1] is failed
    with pytest.raises(OSError):
        failed.meta()
