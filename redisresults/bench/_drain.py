"""Drain latency: store -> ``get()`` returns, one result at a time, ours against raw redis-py.

One persistent waiting thread blocks in ``AsyncResult.get()`` (raw: in ``Event.wait()`` set by one thread
reading a redis-py ``PubSub``); the calling thread stores, after ``IDLE`` (2 ms) of quiet so both sides
are blocked in their reads when the result arrives, as a waiter usually is. Ours waits for its
subscription to be confirmed and its key read (``stats()["settling"] == 0``) before the quiet time;
raw subscribed to all its channels up front. Samples alternate ours/raw (the order flips each time).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any, Optional

import redis

import redisresults

from ._common import (
    IDLE,
    Options,
    Progress,
    RawFanout,
    Row,
    Waiter,
    block_ratios,
    cleanup,
    gevent_available,
    make_backend,
    new_prefix,
    no_progress,
    percentile,
    poll,
    raw_client,
    raw_payload,
    raw_store,
    row,
    run_helper,
    settled,
    task_key,
    transport,
)

TARGETS = (("p50", 0.5, 1.05), ("p99", 0.99, 1.3))


def drain_latency(url: str, samples: int, progress: Progress = no_progress, idle: float = IDLE) -> dict[str, Any]:
    """Seconds per sample for ours and raw (interleaved, in order) and the transport's name."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-drain")
    raw = raw_client(backend, "rrbench-drain-raw")
    fanout = RawFanout(raw)
    waiter = Waiter()
    label = transport(backend)
    ours_s: list[float] = []
    raw_s: list[float] = []
    try:
        raw_ids = [f"raw-{i}" for i in range(samples + 1)]
        fanout.subscribe([task_key(prefix, task_id) for task_id in raw_ids])
        fanout.start()
        # Warm-up, not measured: the drainer running and connected, both pools holding a connection.
        _ours_once(backend, waiter, "warm-up", idle)
        _raw_once(raw, fanout, waiter, prefix, raw_ids[samples], idle)
        for i in range(samples):
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                if side == 0:
                    ours_s.append(_ours_once(backend, waiter, f"drain-{i}", idle))
                else:
                    raw_s.append(_raw_once(raw, fanout, waiter, prefix, raw_ids[i], idle))
            if i % 50 == 0:
                progress(f"drain latency ({label}) {i}/{samples}")
        cleanup(raw, prefix)
    finally:
        backend.close()  # a waiter still in get() (Ctrl-C) fails at once instead of holding up the exit
        fanout.close()
        waiter.close()
        raw.close()
    return {"ours": ours_s, "raw": raw_s, "transport": label}


def _ours_once(backend: redisresults.RedisBackend, waiter: Waiter, task_id: str, idle: float) -> float:
    waiter.submit(functools.partial(_get, backend, task_id))
    poll(functools.partial(settled, backend, 1), 10, "the subscription")
    time.sleep(idle)
    started = time.perf_counter()
    backend.mark_as_done(task_id, {"id": task_id})
    return waiter.result(started)


def _raw_once(raw: redis.Redis, fanout: RawFanout, waiter: Waiter, prefix: str, task_id: str, idle: float
              ) -> float:
    key = task_key(prefix, task_id)
    waiter.submit(functools.partial(_wait_event, fanout.events[key]))
    time.sleep(idle)
    started = time.perf_counter()
    raw_store(raw, key, raw_payload(task_id, {"id": task_id}))
    return waiter.result(started)


def _get(backend: redisresults.RedisBackend, task_id: str) -> None:
    backend.AsyncResult(task_id).get(timeout=10)


def _wait_event(event: threading.Event) -> None:
    if not event.wait(10):
        raise redisresults.ResultTimeout("benchmark: raw event not set")


def figure_drain(url: str, opts: Options, progress: Progress = no_progress, tcp_url: Optional[str] = None
                 ) -> list[Row]:
    """p50 and p99 per transport (``url``, and ``tcp_url`` when given), threads; gevent on ``url``."""
    runs: list[tuple[str, dict[str, Any]]] = []
    for target in dict.fromkeys(u for u in (url, tcp_url) if u):
        drain = drain_latency(target, opts.samples, progress)
        runs.append((f"threads, {drain['transport']}", drain))
    if opts.gevent and gevent_available():
        progress("drain latency under gevent (subprocess)")
        drain = run_helper(url, ["drain", str(opts.samples)], timeout=600, gevent=True)
        runs.append((f"gevent, {drain['transport']}", drain))
    rows = []
    for mode, drain in runs:
        for label, q, limit in TARGETS:
            stat = functools.partial(percentile, q=q)
            ours, raw = stat(drain["ours"]) * 1e3, stat(drain["raw"]) * 1e3
            rows.append(row(f"drain latency {label} ({mode})", "ms", ours, raw, f"<= {limit:.2f}x raw",
                            ours <= limit * raw, block_ratios(drain["ours"], drain["raw"], opts.blocks, stat)))
    return rows
