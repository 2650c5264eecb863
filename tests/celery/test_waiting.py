"""Waiting through the drop-in, in-process: the "worker" is a second Celery backend storing in a thread.

Deadlines, ``on_interval``/``on_message``, ``then()`` from the callback loop, GC safety of
``remove_pending_result``, leaks after many round trips, compressed results, and mixed stock/drop-in/redisresults
readers of the same results.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
import uuid
from typing import Any, Callable, List

import celery
import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet

import redisresults
from redisresults.celery import CeleryBackend
from tests.celery.tasks import TaskFailure
from tests.helpers import poll
from tests.servers import RedisServer

AppFactory = Callable[..., celery.Celery]


@pytest.fixture
def dropin(make_app: AppFactory, redis_server: RedisServer, key_prefix: str) -> celery.Celery:
    app = make_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0")
    app.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    return app


@pytest.fixture
def stock(make_app: AppFactory, redis_server: RedisServer, key_prefix: str) -> celery.Celery:
    app = make_app(f"redis://127.0.0.1:{redis_server.port}/0")
    app.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    return app


def new_id() -> str:
    return str(uuid.uuid4())


def later(delay: float, action: Callable[[], Any]) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` seconds (a stand-in for a worker finishing a task)."""
    thread = threading.Timer(delay, action)
    thread.start()
    return thread


def settled(app: celery.Celery) -> dict[str, Any]:
    """The core's stats once nothing is subscribed or pending any more (unsubscribing is asynchronous)."""
    backend: CeleryBackend = app.backend

    def probe() -> Any:
        stats = backend.stats()
        quiet = stats["subscribed"] == 0 and stats["channels"] == 0 and stats["celery_pending"] == 0
        return stats if quiet and stats["pending"] == 0 else None

    try:
        return poll(probe, timeout=10, what="the drop-in's core to settle")  # type: ignore[no-any-return]
    except AssertionError as error:
        table = backend.core().table
        entries = [
            (tid, type(e._target).__name__, e.target() is not None, e.future.done if e.future else None, e.removed,
             e.finished, list(e._claim))
            for tid, waiters in list(table._by_id.items()) for e in list(waiters.values())
        ]
        raise AssertionError(f"{error}; last stats: {backend.stats()}; entries {entries}; "
                             f"deferred {len(table._removed)}") from None


def test_get_times_out_promptly_with_celerys_error(dropin: celery.Celery) -> None:
    for timeout in (0.05, 0.3):
        start = time.monotonic()
        with pytest.raises(CeleryTimeoutError, match="The operation timed out."):
            dropin.AsyncResult(new_id()).get(timeout=timeout)
        assert timeout <= time.monotonic() - start < timeout + 0.25  # tens of ms late at most, not a 1 s step


def test_timeout_zero_checks_once(dropin: celery.Celery, stock: celery.Celery) -> None:
    task_id = new_id()
    with pytest.raises(CeleryTimeoutError):
        dropin.AsyncResult(task_id).get(timeout=0)
    stock.backend.mark_as_done(task_id, 7)
    assert dropin.AsyncResult(task_id).get(timeout=0) == 7


def test_result_stored_before_the_wait(dropin: celery.Celery, stock: celery.Celery) -> None:
    task_id = new_id()
    stock.backend.mark_as_done(task_id, {"early": True})
    assert dropin.AsyncResult(task_id).get(timeout=5) == {"early": True}


def test_on_interval_after_every_slice_including_the_delivering_one(
    dropin: celery.Celery, stock: celery.Celery
) -> None:
    """Called by the backend as Celery's drainer calls it (``AsyncResult.get`` wraps it in a one-shot promise)."""
    result = dropin.AsyncResult(new_id())
    calls: List[float] = []
    start = time.monotonic()
    later(1.2, lambda: stock.backend.mark_as_done(result.id, 1))
    dropin.backend.add_pending_result(result)
    def on_interval() -> None:
        calls.append(time.monotonic() - start)

    assert dropin.backend.wait_for_pending(result, timeout=5, on_interval=on_interval) == 1
    assert len(calls) == 2 and 0.9 < calls[0] < 1.15 and calls[1] >= 1.2


def test_on_message_sees_custom_states_in_order(dropin: celery.Celery, stock: celery.Celery) -> None:
    task_id = new_id()
    seen: List[Any] = []
    result = dropin.AsyncResult(task_id)

    def work() -> None:
        for step in range(3):
            stock.backend.store_result(task_id, {"step": step}, "PROGRESS")
        stock.backend.mark_as_failure(task_id, TaskFailure("late"))

    later(0.2, work)
    with pytest.raises(TaskFailure, match="late"):
        result.get(timeout=5, on_message=lambda meta: seen.append((meta["status"], meta["result"])))
    assert [status for status, _ in seen] == ["PROGRESS", "PROGRESS", "PROGRESS", "FAILURE"]
    assert isinstance(seen[-1][1], TaskFailure)  # on_message gets the meta as Celery decodes it


def test_then_fires_from_the_callback_loop(dropin: celery.Celery, stock: celery.Celery) -> None:
    fired = threading.Event()
    where: List[str] = []
    result = dropin.AsyncResult(new_id())
    result.then(lambda res: (where.append(threading.current_thread().name), fired.set()))
    stock.backend.mark_as_done(result.id, "done")
    assert fired.wait(5) and where == ["redisresults-celery-callbacks"]
    assert result.result == "done"


def test_result_set_barrier_and_join_native(dropin: celery.Celery, stock: celery.Celery) -> None:
    ids = [new_id() for _ in range(20)]
    rs = ResultSet([dropin.AsyncResult(task_id) for task_id in ids], app=dropin)
    ready = threading.Event()
    rs.then(lambda _: ready.set())
    later(0.1, lambda: [stock.backend.mark_as_done(task_id, n) for n, task_id in enumerate(ids)])
    assert rs.join_native(timeout=5) == list(range(20))
    assert ready.wait(5) and rs.completed_count() == 20
    del rs
    settled(dropin)


def test_join_native_timeout_zero(dropin: celery.Celery, stock: celery.Celery) -> None:
    ids = [new_id() for _ in range(3)]
    stock.backend.mark_as_done(ids[0], 0)
    rs = ResultSet([dropin.AsyncResult(task_id) for task_id in ids], app=dropin)
    start = time.monotonic()
    with pytest.raises(CeleryTimeoutError):
        rs.join_native(timeout=0, interval=30)
    assert time.monotonic() - start < 1
    assert ResultSet([], app=dropin).join_native(timeout=1) == []


def test_remove_pending_result_never_takes_a_lock(dropin: celery.Celery) -> None:
    """From a finalizer it may run while this very thread holds the table's lock: it must not wait for it."""
    backend: CeleryBackend = dropin.backend
    result = dropin.AsyncResult(new_id())
    result.then(lambda _: None)
    table = backend.core().table
    done = threading.Event()

    def finalize_under_lock() -> None:
        with table._lock:
            backend.remove_pending_result(result)
            backend.result_consumer.cancel_for("another")
        done.set()

    thread = threading.Thread(target=finalize_under_lock, daemon=True)
    thread.start()
    assert done.wait(5), "remove_pending_result blocked on a lock"
    settled(dropin)


def test_gc_during_a_subscribe_storm(dropin: celery.Celery, stock: celery.Celery) -> None:
    """Result objects in reference cycles die in whatever thread the collector runs, mid-register or mid-wait."""
    backend: CeleryBackend = dropin.backend
    rounds, threads = 40, 16
    errors: List[BaseException] = []
    thresholds = gc.get_threshold()
    gc.set_threshold(50, 1, 1)  # collect all the time

    def storm(n: int) -> None:
        try:
            for _ in range(rounds):
                doomed = dropin.AsyncResult(new_id())
                doomed.cycle = doomed  # type: ignore[attr-defined]  # only the cycle collector frees it
                doomed.then(lambda _: None, weak=True)
                backend.on_task_call(None, doomed.id)
                kept = dropin.AsyncResult(new_id())
                kept.then(lambda _: None)
                stock.backend.mark_as_done(kept.id, n)
                assert kept.get(timeout=10) == n
                del doomed
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    unraisable: List[str] = []
    previous_hook = sys.unraisablehook
    # Only a description: keeping the exception would keep its frames, and so result objects, alive.
    sys.unraisablehook = lambda info: unraisable.append(f"{info.exc_type.__name__}: {info.exc_value}")
    workers = [threading.Thread(target=storm, args=(n,)) for n in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert not worker.is_alive(), "a thread hung: deadlock in remove_pending_result?"
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()
        sys.unraisablehook = previous_hook
    assert errors == []
    assert unraisable == []
    gc.collect()
    settled(dropin)


def test_no_leak_after_many_round_trips(dropin: celery.Celery, stock: celery.Celery) -> None:
    backend: CeleryBackend = dropin.backend

    def round_trips(count: int) -> None:
        for n in range(count):
            task_id = new_id()
            backend.on_task_call(None, task_id)  # what apply_async does before publishing
            stock.backend.mark_as_done(task_id, n)
            assert dropin.AsyncResult(task_id).get(timeout=10) == n

    round_trips(300)
    settled(dropin)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        round_trips(2000)
        settled(dropin)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 200_000, f"memory grew by {grown} bytes over 2000 round trips"


def test_compressed_results_are_read_by_every_side(
    make_app: AppFactory, redis_server: RedisServer, key_prefix: str
) -> None:
    url = f"127.0.0.1:{redis_server.port}/0"
    options = {"result_backend_transport_options": {"global_keyprefix": key_prefix}, "result_compression": "gzip"}
    stock_writer = make_app(f"redis://{url}", **options)
    dropin_writer = make_app(f"redisresults+redis://{url}", **options)
    dropin_reader = make_app(f"redisresults+redis://{url}")
    dropin_reader.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    ours = redisresults.backend_from_url(f"redis://{url}", transport_options={"global_keyprefix": key_prefix})
    try:
        stored = new_id()
        stock_writer.backend.mark_as_done(stored, "x" * 10_000)
        raw = ours.client.get(stock_writer.backend.get_key_for_task(stored))
        assert raw.startswith(b"\x00celery-compressed\x00")
        assert ours.AsyncResult(stored).get(timeout=5) == "x" * 10_000  # read from the key
        for writer in (stock_writer, dropin_writer):
            published = new_id()
            later(0.1, lambda w=writer, tid=published: w.backend.mark_as_done(tid, {"z": tid}))  # type: ignore
            assert ours.AsyncResult(published).get(timeout=5) == {"z": published}  # decoded by our drainer
            again = new_id()
            later(0.1, lambda w=writer, tid=again: w.backend.mark_as_done(tid, [tid]))  # type: ignore
            assert dropin_reader.AsyncResult(again).get(timeout=5) == [again]
    finally:
        ours.close()


def test_a_large_result_reaches_a_stock_waiter(dropin: celery.Celery, stock: celery.Celery) -> None:
    """The drop-in publishes in full: no redisresults reference message ever leaves a Celery waiter waiting."""
    assert dropin.backend.core().backend.config.max_publish_size is None
    task_id = new_id()
    value = "y" * (2 * 1024 * 1024)
    later(0.2, lambda: dropin.backend.mark_as_done(task_id, value))
    assert stock.AsyncResult(task_id).get(timeout=10) == value


def test_redisresults_reads_what_the_drop_in_writes(dropin: celery.Celery, redis_server: RedisServer,
                                                    key_prefix: str) -> None:
    ours = redisresults.backend_from_url(redis_server.url, transport_options={"global_keyprefix": key_prefix})
    try:
        task_id = new_id()
        dropin.backend.mark_as_failure(task_id, TaskFailure("ours too"))
        with pytest.raises(TaskFailure, match="ours too"):
            ours.AsyncResult(task_id).get(timeout=5)
        other = new_id()
        ours.mark_as_done(other, {"from": "redisresults"})
        assert dropin.AsyncResult(other).get(timeout=5) == {"from": "redisresults"}
    finally:
        ours.close()


def test_get_callback_and_exists(dropin: celery.Celery, stock: celery.Celery) -> None:
    task_id = new_id()
    assert not dropin.AsyncResult(task_id).exists()
    later(0.1, lambda: stock.backend.mark_as_done(task_id, "v"))
    seen: List[Any] = []
    dropin.AsyncResult(task_id).get(timeout=5, interval=0.01, no_ack=False, callback=lambda *args: seen.append(args))
    assert seen == [(task_id, "v")]
    assert dropin.AsyncResult(task_id).exists()


def test_dropping_the_last_handle_drops_the_subscription(dropin: celery.Celery) -> None:
    """``apply_async`` subscribes ahead (``on_task_call``); a result nobody waits on is unsubscribed when its last
    handle is collected, with no later call needed."""
    result = dropin.AsyncResult(new_id())
    dropin.backend.on_task_call(None, result.id)
    poll(lambda: True if dropin.backend.stats()["subscribed"] == 1 else None, timeout=5, what="the subscription")
    del result
    gc.collect()
    settled(dropin)
