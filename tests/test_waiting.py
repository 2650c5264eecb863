"""The waiting side (API.md §3) against a real redis-server: many waiters, one Pub/Sub connection, no lost
wake-ups, prompt timeouts, callbacks off the drainer, loud drainer failures, fork safety, bounded memory."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import redis

import redisresults
from redisresults import DrainerError, ResultTimeout, UsageError
from tests.helpers import (
    clients_named,
    poll,
    produce_in_process,
    pubsub_subscribers,
    store_all,
    value_for,
    wait_stats,
    wait_stats_at_least,
)
from tests.logs import capture_logs
from tests.servers import RedisServer

THREADS = 64
WAITS_PER_THREAD = 500


@pytest.fixture
def backend(redis_server: RedisServer, key_prefix: str, name: str) -> Iterator[redisresults.RedisBackend]:
    with redisresults.RedisBackend(
        redis_server.url, client_name=name, transport_options={"global_keyprefix": key_prefix}
    ) as backend:
        yield backend


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _channel(key_prefix: str, task_id: str) -> str:
    return f"{key_prefix}celery-task-meta-{task_id}"


# ---------------------------------------------------------------------------------------------- many waiters


def test_many_threads_one_subscriber(redis_server: RedisServer, raw: redis.Redis, key_prefix: str, name: str) -> None:
    """64 threads x 500 waits, results stored by another process: all right, over one Pub/Sub connection,
    and never more than max_connections pooled connections plus the drainer's two."""
    backend = redisresults.RedisBackend(
        redis_server.url, client_name=name, max_connections=4, transport_options={"global_keyprefix": key_prefix}
    )
    ids = [[f"m{t}-{i}" for i in range(WAITS_PER_THREAD)] for t in range(THREADS)]
    order = [ids[t][i] for i in range(WAITS_PER_THREAD) for t in range(THREADS)]  # keeps pace with the waiters
    errors: List[str] = []
    done = threading.Event()
    finished = [0]
    lock = threading.Lock()

    def waiter(mine: List[str]) -> None:
        try:
            for task_id in mine:
                value = backend.AsyncResult(task_id).get(timeout=30)
                if value != value_for(task_id):
                    errors.append(f"{task_id}: {value!r}")
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{mine[0]}..: {error!r}")
        finally:
            with lock:
                finished[0] += 1
                if finished[0] == THREADS:
                    done.set()

    threads = [threading.Thread(target=waiter, args=(mine,), daemon=True) for mine in ids]
    for thread in threads:
        thread.start()
    context = multiprocessing.get_context("spawn")
    producer = context.Process(
        target=produce_in_process,
        args=(redis_server.url, {"client_name": f"{name}-producer",
                                 "transport_options": {"global_keyprefix": key_prefix}}, order),
    )
    producer.start()
    subscriber_counts: List[int] = []
    connection_counts: List[int] = []
    try:
        while not done.wait(0.05):
            if backend.stats()["pending"] > 0:
                subscriber_counts.append(len(pubsub_subscribers(raw, name)))
                connection_counts.append(len(clients_named(raw, name)))
        assert done.is_set()
    finally:
        producer.join(60)
        for thread in threads:
            thread.join(5)
    assert producer.exitcode == 0
    assert errors == []
    assert subscriber_counts, "never saw a pending wait"
    assert max(subscriber_counts) == 1 and 1 in subscriber_counts, subscriber_counts
    # max_connections pooled ones plus the drainer's Pub/Sub and key-reading connections, not one per thread
    assert max(connection_counts) <= 4 + 2, connection_counts
    wait_stats(backend, pending=0, subscribed=0, channels=0)
    backend.close()


# ---------------------------------------------------------------------------------------------- races


@pytest.mark.parametrize("when", ["before", "during", "after"])
def test_store_race_delivers_exactly_once(
    backend: redisresults.RedisBackend, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A result stored before the wait subscribes, while it subscribes, or after: each delivered exactly once."""
    iterations = 300
    consumer = backend.result_consumer
    registered: Dict[str, threading.Event] = {}
    original = consumer.register

    def register(task_id: str, listener: Any = None, **options: Any) -> Any:
        future = original(task_id, listener, **options)
        event = registered.get(task_id)
        if event is not None and listener is None:  # the get(), not the then() callback
            event.set()
        return future

    monkeypatch.setattr(consumer, "register", register)
    calls: Dict[str, int] = {}
    calls_lock = threading.Lock()

    def on_ready(result: redisresults.AsyncResult) -> None:
        with calls_lock:
            calls[result.id] = calls.get(result.id, 0) + 1

    ids = [f"race-{when}-{i}" for i in range(iterations)]
    for task_id in ids:
        registered[task_id] = threading.Event()
    storer_error: List[BaseException] = []

    def storer() -> None:
        try:
            for task_id in ids:
                assert registered[task_id].wait(10), f"{task_id} never registered"
                if when == "after":
                    wait_stats_at_least(backend, subscribed=1)
                backend.mark_as_done(task_id, value_for(task_id))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            storer_error.append(error)

    thread = None
    if when != "before":
        thread = threading.Thread(target=storer, daemon=True)
        thread.start()
    for task_id in ids:
        if when == "before":
            backend.mark_as_done(task_id, value_for(task_id))
        else:
            backend.AsyncResult(task_id).then(on_ready)
        assert backend.AsyncResult(task_id).get(timeout=10) == value_for(task_id)
        if when == "before":
            backend.AsyncResult(task_id).then(on_ready)
    if thread is not None:
        thread.join(10)
    assert storer_error == []
    poll(lambda: True if sum(calls.values()) >= iterations else None, timeout=10, what="every then() callback")
    assert calls == {task_id: 1 for task_id in ids}
    stats = wait_stats(backend, pending=0, subscribed=0, channels=0)
    assert stats["failure"] is None
    # a result already stored is read with one GET: no subscription, so no drainer either
    assert stats["drainer_alive"] is (when != "before")


# ---------------------------------------------------------------------------------------------- several handles


def test_many_handles_one_id_and_non_ready_states(backend: redisresults.RedisBackend) -> None:
    """10 gets in 10 threads + then + as_future on one id: non-ready states resolve nothing; SUCCESS resolves all."""
    task_id = "shared"
    got: List[Any] = []
    errors: List[BaseException] = []

    def waiter() -> None:
        try:
            got.append(backend.AsyncResult(task_id).get(timeout=20))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(10)]
    for thread in threads:
        thread.start()
    then_values: List[Any] = []
    then_called = threading.Event()

    def on_ready(result: redisresults.AsyncResult) -> None:
        then_values.append(result.get(timeout=0))
        then_called.set()

    backend.AsyncResult(task_id).then(on_ready)
    future = backend.AsyncResult(task_id).as_future()
    wait_stats(backend, pending=12, subscribed=1)

    handle = backend.AsyncResult(task_id)
    assert handle.state == "PENDING"
    steps = [
        ("STARTED", lambda: backend.mark_as_started(task_id, pid=1)),
        ("RETRY", lambda: backend.mark_as_retry(task_id, ValueError("again"))),
        ("PROGRESS", lambda: backend.store_result(task_id, {"done": 5}, "PROGRESS")),
    ]
    for count, (state, store) in enumerate(steps, 1):
        store()
        wait_stats_at_least(backend, messages=count)
        assert handle.state == state
        assert not handle.ready()
        assert not future.done() and not then_called.is_set()
        assert backend.stats()["pending"] == 12
    assert handle.result == {"done": 5}

    backend.mark_as_done(task_id, [1, 2, 3])
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert got == [[1, 2, 3]] * 10
    assert future.result(timeout=10) == [1, 2, 3]
    assert then_called.wait(10) and then_values == [[1, 2, 3]]
    assert handle.state == "SUCCESS" and handle.get(timeout=1) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------- timeouts


def test_timeout_is_prompt_and_releases_subscription(backend: redisresults.RedisBackend) -> None:
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as info:
        backend.AsyncResult("never").get(timeout=0.2)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert 0.2 <= elapsed < 1.0, elapsed
    assert "never" in str(info.value)
    wait_stats(backend, pending=0, subscribed=0, channels=0)


def test_timeout_zero_checks_once(backend: redisresults.RedisBackend) -> None:
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        backend.AsyncResult("not-yet").get(timeout=0)
    assert time.monotonic() - started < 0.5
    backend.mark_as_done("ready-now", 7)
    assert backend.AsyncResult("ready-now").get(timeout=0) == 7
    assert backend.stats()["pending"] == 0


# ---------------------------------------------------------------------------------------------- callbacks


def test_then_runs_off_the_drainer_and_survives_exceptions(backend: redisresults.RedisBackend) -> None:
    seen: List[str] = []
    good = threading.Event()

    def broken(result: redisresults.AsyncResult) -> None:
        raise ValueError("callback bug")

    def record(result: redisresults.AsyncResult) -> None:
        seen.append(threading.current_thread().name)
        good.set()

    with capture_logs() as logs:
        backend.AsyncResult("cb").then(broken)
        backend.AsyncResult("cb").then(record)
        wait_stats(backend, pending=2, subscribed=1)
        backend.mark_as_done("cb", 1)
        assert good.wait(10)
        poll(lambda: True if any(e["event"] == "callback_failed" for e in logs) else None,
             timeout=5, what="callback_failed logged")
    assert seen and seen[0] != "redisresults-drainer"
    failed = [e for e in logs if e["event"] == "callback_failed"]
    assert "callback bug" in failed[0]["error"]
    assert backend.stats()["drainer_alive"]
    backend.mark_as_done("cb2", 2)
    assert backend.AsyncResult("cb2").get(timeout=5) == 2


def test_as_future_with_concurrent_futures(backend: redisresults.RedisBackend) -> None:
    ids = [f"f{i}" for i in range(20)]
    futures = {backend.AsyncResult(task_id).as_future(): task_id for task_id in ids}
    wait_stats(backend, subscribed=20)
    first = [future for future, task_id in futures.items() if task_id in ids[:10]]
    thread = threading.Thread(target=store_all, args=(backend, ids[:10]), daemon=True)
    thread.start()
    done, not_done = concurrent.futures.wait(first, timeout=10)
    thread.join(10)
    assert len(done) == 10 and not not_done
    done, not_done = concurrent.futures.wait(futures, timeout=0.1)
    assert len(not_done) == 10
    store_all(backend, ids[10:])
    seen = []
    for future in concurrent.futures.as_completed(futures, timeout=10):
        assert future.result() == value_for(futures[future])
        seen.append(futures[future])
    assert sorted(seen) == sorted(ids)
    backend.mark_as_failure("ff", KeyError("nope"))
    with pytest.raises(KeyError):
        backend.AsyncResult("ff").as_future().result(timeout=5)


def test_as_future_done_callbacks_run_on_the_callback_loop(backend: redisresults.RedisBackend) -> None:
    """Added before and after the result arrives, a done-callback runs once, on the backend's callback loop:
    never on the drainer, nor inline in the thread that adds it late."""
    ran: List[Any] = []
    both = threading.Event()

    def record(future: concurrent.futures.Future[Any]) -> None:
        ran.append((threading.current_thread().name, future.result(timeout=0)))
        if len(ran) == 2:
            both.set()

    future = backend.AsyncResult("cbf").as_future()
    future.add_done_callback(record)
    wait_stats(backend, subscribed=1)
    backend.mark_as_done("cbf", 5)
    assert future.result(timeout=10) == 5
    future.add_done_callback(record)
    assert both.wait(10)
    assert ran == [("redisresults-callbacks", 5)] * 2


# ---------------------------------------------------------------------------------------------- failures


def test_drainer_crash_reaches_every_waiter(
    backend: redisresults.RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the drainer fails every pending and later wait with DrainerError; nothing hangs."""
    errors: List[Optional[BaseException]] = []

    def waiter(task_id: str) -> None:
        try:
            backend.AsyncResult(task_id).get(timeout=30)
            errors.append(None)
        except BaseException as error:  # noqa: BLE001 - inspected below
            errors.append(error)

    threads = [threading.Thread(target=waiter, args=(f"c{i}",), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    consumer = backend.result_consumer
    wait_stats(backend, pending=8, subscribed=8, settling=0)

    def broken_step(max_wait: float) -> None:
        raise RuntimeError("injected drainer bug")

    with capture_logs() as logs:
        monkeypatch.setattr(consumer._drainer, "step", broken_step)
        started = time.monotonic()
        backend.mark_as_done("unrelated", 1)  # not waited on...
        with contextlib.suppress(DrainerError):  # (unless the drainer already took its next step and died)
            consumer.consume_from("wake-up")  # ...so wake the drainer into its next step
        for thread in threads:
            thread.join(5)
        assert time.monotonic() - started < 5
    assert len(errors) == 8
    for error in errors:
        assert isinstance(error, DrainerError), error
        assert "injected drainer bug" in str(error)
        assert isinstance(error.__cause__, RuntimeError)
    assert any(entry["event"] == "drainer_died" for entry in logs)
    stats = wait_stats(backend, drainer_alive=False)  # waiters hear first; the thread then exits
    assert "injected drainer bug" in stats["failure"]
    started = time.monotonic()
    with pytest.raises(DrainerError) as later:
        backend.AsyncResult("later").get(timeout=10)
    assert time.monotonic() - started < 1
    assert isinstance(later.value.__cause__, RuntimeError)


def test_garbage_message_is_skipped(
    backend: redisresults.RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    secret = "not-json-" + "s3cr3t" * 10
    future = backend.AsyncResult("g").as_future()
    wait_stats(backend, subscribed=1)
    with capture_logs() as logs:
        assert raw.publish(_channel(key_prefix, "g"), secret) == 1
        wait_stats_at_least(backend, skipped_messages=1)
    skipped = [entry for entry in logs if entry["event"] == "message_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["channel"] == _channel(key_prefix, "g")
    assert skipped[0]["size"] == len(secret)
    assert "s3cr3t" not in repr(skipped[0])
    assert not future.done()
    backend.mark_as_done("g", "real")
    assert future.result(timeout=10) == "real"
    assert backend.stats()["drainer_alive"]


def test_manual_drain_refused_and_consume_from(backend: redisresults.RedisBackend) -> None:
    consumer = backend.result_consumer
    consumer.consume_from("held")
    wait_stats(backend, subscribed=1, drainer_alive=True)
    with pytest.raises(UsageError):
        consumer.drain_events(timeout=0.1)
    consumer.consume_from("held2")
    wait_stats(backend, subscribed=2)
    backend.mark_as_done("held", "h")
    wait_stats(backend, subscribed=1)  # a ready result ends the hold's subscription (and is cached)
    assert backend.AsyncResult("held").get(timeout=0) == "h"
    consumer.cancel_for("held2")
    wait_stats(backend, subscribed=0, channels=0)


# ---------------------------------------------------------------------------------------------- fork


def _child(backend: redisresults.RedisBackend, conn: Any, parent_pending: str) -> None:
    """In a forked child: use the inherited backend (fresh pool, consumer, drainer)."""
    try:
        assert backend.stats()["drainer_alive"] is False  # the parent's drainer thread did not survive the fork
        backend.mark_as_done("child-own", "mine")
        value = backend.AsyncResult("child-own").get(timeout=10)
        pushed = backend.AsyncResult("child-pushed").as_future()
        conn.send(("waiting", None))
        pushed_value = pushed.result(timeout=10)
        stats = backend.stats()
        conn.send(("ok", (value, pushed_value, stats["drainer_alive"], parent_pending)))
    except BaseException as error:  # noqa: BLE001 - sent to the parent
        conn.send(("error", repr(error)))
    finally:
        backend.close()


def test_fork_child_gets_fresh_drainer(backend: redisresults.RedisBackend, raw: redis.Redis, name: str) -> None:
    parent_future = backend.AsyncResult("parent-pending").as_future()
    wait_stats(backend, subscribed=1, drainer_alive=True)
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_child, args=(backend, theirs, "parent-pending"))
    child.start()
    try:
        assert ours.poll(15), "child did not report"
        kind, detail = ours.recv()
        assert kind == "waiting", detail
        # two processes, two Pub/Sub connections (the child never shares the parent's)
        poll(lambda: True if len(pubsub_subscribers(raw, name)) == 2 else None, timeout=5, what="two subscribers")
        backend.mark_as_done("child-pushed", "from-parent")
        assert ours.poll(15), "child did not finish"
        kind, detail = ours.recv()
        assert kind == "ok", detail
        assert detail == ("mine", "from-parent", True, "parent-pending")
    finally:
        child.join(10)
    assert child.exitcode == 0
    assert not parent_future.done()
    backend.mark_as_done("parent-pending", "still-mine")
    assert parent_future.result(timeout=10) == "still-mine"
    stats = backend.stats()
    assert stats["drainer_alive"] and stats["reconnects"] == 0 and stats["failure"] is None


# ---------------------------------------------------------------------------------------------- memory


SEQUENTIAL_GETS = 20_000  # 100,000 took ~38 s on 2 cores; the leak check needs volume, not time


@pytest.mark.slow
def test_sequential_gets_leave_nothing_behind(backend: redisresults.RedisBackend) -> None:
    for i in range(SEQUENTIAL_GETS):
        task_id = f"s{i}"
        backend.mark_as_done(task_id, i)
        assert backend.AsyncResult(task_id).get(timeout=10) == i
    stats = wait_stats(backend, pending=0, subscribed=0, channels=0)
    assert stats["cached"] <= 1024


def test_concurrent_gets_leave_nothing_behind(backend: redisresults.RedisBackend) -> None:
    ids = [f"k{i}" for i in range(10_000)]
    result_set = backend.ResultSet(ids)
    producer = threading.Thread(target=store_all, args=(backend, ids), daemon=True)
    producer.start()
    values = result_set.join(timeout=60)
    producer.join(10)
    assert values == [value_for(task_id) for task_id in ids]
    wait_stats(backend, pending=0, subscribed=0, channels=0)
