"""Memory per pending wait, traced with ``tracemalloc``: what one more waiter costs the process.

``get()``: ``count`` threads, started and parked before tracing begins (thread stacks are not what
is measured, and raw pays the same), are released one after the other into ``AsyncResult(id).get()``
(released all at once, their first reads would grow the shared connection pool, which is not a cost
of a pending wait); traced once every wait is subscribed and read. Raw: the same parked threads are
released into ``Event.wait()`` on Events a raw ``PubSub`` subscriber created (its channel table
included) while tracing.
``as_future()``: ``count`` futures from the calling thread, no threads at all; its stdlib
``concurrent.futures.Future`` (a Condition and a deque) is part of what it costs.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
import tracemalloc
from typing import Any, Callable

import redis

import redisresults

from ._common import (
    Options,
    Progress,
    RawFanout,
    Row,
    cleanup,
    make_backend,
    new_prefix,
    no_progress,
    poll,
    raw_client,
    raw_store_many,
    row,
    settled,
    task_key,
)

GET_LIMIT = 1024  # bytes per pending get()


class _Parked:
    """``count`` threads, each blocked on its own gate, then running ``job(i)`` once."""

    def __init__(self, count: int, job: Callable[[int], Any]) -> None:
        self.gates = [threading.Event() for _ in range(count)]
        self.arrived = 0
        self.entered = 0
        self._lock = threading.Lock()
        self._job = job
        self.threads = [threading.Thread(target=self._run, args=(i,), name="bench-parked", daemon=True)
                        for i in range(count)]
        for thread in self.threads:
            thread.start()
        poll(lambda: self.arrived == count, 60, "parking the waiting threads", interval=0.005)
        time.sleep(0.05)  # the last ones from "arrived" into their gate's wait

    def _run(self, i: int) -> None:
        with self._lock:
            self.arrived += 1
        self.gates[i].wait()
        with self._lock:
            self.entered += 1
        try:
            self._job(i)
        except redisresults.RedisResultsError:
            pass  # the backend was closed under the wait: the figure is measured by then

    def release(self, waiting: Callable[[int], bool]) -> None:
        """Open the gates in order, each once ``waiting(n)`` says the ``n`` released so far are waiting."""
        for n, gate in enumerate(self.gates, 1):
            gate.set()
            poll(functools.partial(waiting, n), 60, "a released thread's wait")

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()

    def join(self) -> None:
        self.open_all()
        for thread in self.threads:
            thread.join(10)


def _traced(start: Callable[[], Any], ready: Callable[[], bool], count: int) -> float:
    """Traced bytes per wait between before ``start()`` and ``ready()`` becoming true."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        start()
        poll(ready, 120, "the pending waits", interval=0.005)
        time.sleep(0.05)  # threads counted as entered are inside their wait by now
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()


def memory_get(url: str, count: int) -> float:
    """Bytes per ``get()`` blocked in a thread."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-memory")
    raw = raw_client(backend, "rrbench-memory-raw")
    parked: list[_Parked] = []
    try:
        _warm_up(backend, raw, prefix)
        threads = _Parked(count, lambda i: backend.AsyncResult(f"memory-{i}").get(timeout=300))
        parked.append(threads)
        release = functools.partial(threads.release, lambda n: bool(backend.stats()["pending"] >= n))
        return _traced(release, lambda: settled(backend, count), count)
    finally:
        backend.close()
        for group in parked:
            group.join()
        cleanup(raw, prefix)
        raw.close()


def _warm_up(backend: redisresults.RedisBackend, raw: redis.Redis, prefix: str) -> None:
    """One wait served before tracing: the drainer, its Pub/Sub connection and the pool exist."""
    raw_store_many(raw, prefix, ["warm-up"])
    backend.AsyncResult("warm-up").get(timeout=10)


def memory_get_raw(url: str, count: int) -> float:
    """Bytes per raw ``Event.wait()`` blocked in a thread, its PubSub subscription included."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-memory")
    raw = raw_client(backend, "rrbench-memory-raw")
    fanout = RawFanout(raw)
    keys: list[bytes] = []  # made while tracing, as ours makes its channel names
    parked: list[_Parked] = []
    try:
        fanout.subscribe([task_key(prefix, "warm-up")])
        threads = _Parked(count, lambda i: fanout.events[keys[i]].wait(300))
        parked.append(threads)

        def start() -> None:
            keys.extend(task_key(prefix, f"memory-{i}") for i in range(count))
            fanout.subscribe(keys)
            threads.release(lambda n: threads.entered >= n)

        return _traced(start, lambda: threads.entered == count, count)
    finally:
        fanout.close()  # sets every Event: the parked threads return
        for group in parked:
            group.join()
        backend.close()
        raw.close()


def memory_as_future(url: str, count: int) -> float:
    """Bytes per pending ``as_future()``, made in the calling thread."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-memory")
    raw = raw_client(backend, "rrbench-memory-raw")
    keep: list[Any] = []
    try:
        _warm_up(backend, raw, prefix)

        def start() -> None:
            keep.extend(backend.AsyncResult(f"memory-{i}").as_future() for i in range(count))

        return _traced(start, lambda: settled(backend, count), count)
    finally:
        backend.close()
        keep.clear()
        cleanup(raw, prefix)
        raw.close()


def memory_as_future_raw(url: str, count: int) -> float:
    """Bytes per raw subscription with its Event, made in the calling thread."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-memory")
    raw = raw_client(backend, "rrbench-memory-raw")
    fanout = RawFanout(raw)
    try:
        fanout.subscribe([task_key(prefix, "warm-up")])

        def start() -> None:
            fanout.subscribe([task_key(prefix, f"memory-{i}") for i in range(count)])

        return _traced(start, lambda: True, count)
    finally:
        fanout.close()
        backend.close()
        raw.close()


def figure_memory(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    progress(f"memory: {opts.memory} pending get() in threads")
    ours_get = memory_get(url, opts.memory)
    progress(f"memory: {opts.memory} pending raw Event waits in threads")
    raw_get = memory_get_raw(url, opts.memory)
    progress(f"memory: {opts.memory} pending as_future()")
    ours_future = memory_as_future(url, opts.memory)
    raw_future = memory_as_future_raw(url, opts.memory)
    return [
        row("memory per pending get() wait", "bytes", ours_get, raw_get, f"<= {GET_LIMIT} B", ours_get <= GET_LIMIT),
        row("memory per pending as_future() wait", "bytes", ours_future, raw_future, "report", None),
    ]
