"""Subscribe burst: ``count`` new waits at once, on results already stored and on results not stored yet.

Ours starts the waits with ``AsyncResult.as_future()`` or one ``ResultSet.join``. Done means: for
stored results, every future resolved / ``join`` returned; for results not stored yet, every wait
subscribed, confirmed by the server and its key read (``stats()["settling"] == 0``, watched as
``wait_settled`` explains), as the no-lost-wake-up rule requires. The raw baseline is a hand-written
client doing exactly that and no more: SUBSCRIBE to every channel (batches of 2000), read every
confirmation, one MGET of all keys, ``json.loads`` what is there. Both sides have their connections up
before the clock starts (ours: a drainer that already subscribed, read and was published to, and
unsubscribed again). Each block runs every variant once, in a rotated order; the figure is the median block.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import threading
import time
from typing import Optional

import redis

import redisresults

from ._common import (
    BenchError,
    Options,
    Progress,
    RawFanout,
    Row,
    block_ratios,
    cleanup,
    make_backend,
    median,
    new_prefix,
    no_progress,
    poll,
    raw_client,
    raw_store_many,
    row,
    server_counts,
    settled,
    task_key,
    wait_settled,
)

TARGET = 1.5
OURS = ("as_future()", "ResultSet.join")
STATES = ("stored", "not stored")


def subscribe_burst(url: str, count: int, blocks: int, progress: Progress = no_progress) -> dict[str, list[float]]:
    """Seconds per block, keyed ``"<how>, <state>"`` (``how`` is ``raw`` or one of ``OURS``)."""
    variants = [(how, state) for state in STATES for how in ("raw", *OURS)]
    times: dict[str, list[float]] = {f"{how}, {state}": [] for how, state in variants}
    for block in range(blocks):
        shift = block % len(variants)
        for how, state in variants[shift:] + variants[:shift]:
            progress(f"subscribe burst {block + 1}/{blocks}: {count} waits, {how}, {state}")
            times[f"{how}, {state}"].append(_burst_once(url, count, how, state == "stored"))
    return times


def _burst_once(url: str, count: int, how: str, stored: bool) -> float:
    gc.collect()  # every variant starts on a heap without the previous one's garbage
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-burst")
    raw = raw_client(backend, "rrbench-burst-raw")
    ids = [f"burst-{i}" for i in range(count)]
    fanout: Optional[RawFanout] = None
    joiner: Optional[threading.Thread] = None
    try:
        raw_store_many(raw, prefix, ids if stored else [])
        if how == "raw":
            raw_store_many(raw, prefix, ["warm-up"])
            fanout = RawFanout(raw)
            fanout.subscribe([task_key(prefix, "warm-up")])
            raw.ping()
            started = time.perf_counter()
            _raw_burst(raw, fanout, prefix, ids, stored)
            return time.perf_counter() - started
        _warm_up(backend, raw, prefix)
        base = server_counts(raw)
        started = time.perf_counter()
        if how == "as_future()":
            futures = [backend.AsyncResult(task_id).as_future() for task_id in ids]
            if stored:
                _, not_done = concurrent.futures.wait(futures, timeout=120)
                if not_done:
                    raise BenchError(f"burst: {len(not_done)} of {count} stored results never arrived")
        else:
            results = backend.ResultSet(ids)
            if stored:
                results.join(timeout=120)
            else:
                joiner = threading.Thread(target=_join_until_closed, args=(results,), name="bench-join", daemon=True)
                joiner.start()
        if not stored:
            wait_settled(backend, raw, base, count, 120, "burst subscriptions")
        return time.perf_counter() - started
    finally:
        backend.close()  # fails the waits left pending (the not-stored runs), ending the join thread
        if joiner is not None:
            joiner.join(10)
        if fanout is not None:
            fanout.close()
        cleanup(raw, prefix)
        raw.close()


def _warm_up(backend: redisresults.RedisBackend, raw: redis.Redis, prefix: str) -> None:
    """A wait that subscribes, reads, then gets its result published: the drainer's Pub/Sub and key-read
    connections are both up (a ready ``get()`` would touch neither), as the raw side's are."""
    waiting = backend.AsyncResult("warm-up").as_future()
    poll(lambda: settled(backend, 1), 10, "warm-up subscription")
    raw_store_many(raw, prefix, ["warm-up"], publish=True)
    waiting.result(timeout=10)
    key = task_key(prefix, "warm-up")
    # Until the server dropped it (the UNSUBSCRIBE lingers a few ms): the burst counts the server's channels.
    poll(lambda: int(dict(raw.pubsub_numsub(key)).get(key, 0)) == 0, 10, "warm-up unsubscribe")


def _join_until_closed(results: redisresults.ResultSet) -> None:
    try:
        results.join(timeout=300)
    except redisresults.RedisResultsError:
        pass  # the backend was closed under the pending join: expected once the figure is measured


def _raw_burst(raw: redis.Redis, fanout: RawFanout, prefix: str, ids: list[str], stored: bool) -> None:
    keys = [task_key(prefix, task_id) for task_id in ids]
    fanout.subscribe(keys)
    found = 0
    for key, value in zip(keys, raw.mget(keys)):
        if value is not None:
            json.loads(value)
            fanout.events[key].set()
            found += 1
    if found != (len(keys) if stored else 0):
        raise BenchError(f"raw burst: {found} of {len(keys)} keys found (stored={stored})")


def figure_burst(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    times = subscribe_burst(url, opts.burst, opts.blocks, progress)
    rows = []
    for state in STATES:
        raw = times[f"raw, {state}"]
        for how in OURS:
            ours = times[f"{how}, {state}"]
            spread = block_ratios(ours, raw, len(ours), median)
            rows.append(row(f"burst, {opts.burst} waits, {state}, {how}", "ms", median(ours) * 1e3,
                            median(raw) * 1e3, f"<= {TARGET:.2f}x raw", median(ours) <= TARGET * median(raw),
                            spread))
    return rows
