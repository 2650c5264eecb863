"""Soak: many round trips from 16 threads, with timeouts, cancellations and dropped handles; nothing leaks.

Size: ``REDISRESULTS_SOAK_N`` round trips, default 100,000 (about 25 s on 2 cores, ~4,000 round trips/s; lower it
on a slower machine).
"""

from __future__ import annotations

import gc
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis

from redisresults import RedisBackend, ResultTimeout
from tests.servers import RedisServer

pytestmark = pytest.mark.soak

THREADS = 16
ROUND_TRIPS = int(os.environ.get("REDISRESULTS_SOAK_N", "100000"))
RSS_GROWTH_LIMIT = 50 * 1024 * 1024


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def our_clients(raw: redis.Redis, name: str) -> list[dict[str, Any]]:
    return [c for c in raw.client_list() if c.get("name") == name]


def pubsub_clients(clients: list[dict[str, Any]]) -> int:
    return sum(1 for c in clients if int(c.get("sub", 0)) > 0 or "P" in str(c.get("flags", "")))


class Load:
    """The work of the 16 threads: each pushes its own id, stores someone's id, and waits for its own."""

    def __init__(self, backend: RedisBackend, total: int) -> None:
        self.backend = backend
        self.remaining = total
        self.lock = threading.Lock()
        self.to_store: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.counts = {"round_trips": 0, "cancelled": 0, "dropped": 0, "callbacks": 0}
        self.errors: list[BaseException] = []
        self.callbacks_done = threading.Semaphore(0)

    def take(self) -> bool:
        with self.lock:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while self.take():
                self.one(rng)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            self.errors.append(error)

    def one(self, rng: random.Random) -> None:
        backend = self.backend
        tid = uuid.uuid4().hex
        roll = rng.random()
        if roll < 0.1:  # a wait that gives up before the result exists
            try:
                backend.AsyncResult(tid).get(timeout=rng.uniform(0, 0.005))
            except ResultTimeout:
                self.count("cancelled")
            else:
                raise AssertionError(f"{tid} resolved before it was stored")
        self.to_store.put(tid)
        backend.mark_as_done(self.to_store.get(), tid)  # the id of whoever pushed first
        if roll > 0.95:  # a set waited on for one member, then dropped mid-iteration
            ghost = uuid.uuid4().hex
            completed = backend.ResultSet([tid, ghost]).as_completed(timeout=30)
            assert next(completed).get(timeout=0) == tid
            del completed
            self.count("dropped")
        elif roll > 0.92:  # a callback and a handle never waited on
            backend.AsyncResult(tid).then(lambda _result: self.callbacks_done.release())
            backend.AsyncResult(uuid.uuid4().hex)
            assert backend.AsyncResult(tid).get(timeout=30) == tid
            self.count("callbacks")
        else:
            assert backend.AsyncResult(tid).get(timeout=rng.uniform(10, 30)) == tid
        self.count("round_trips")


def run_threads(load: Load, raw: redis.Redis, name: str) -> int:
    """Run the load; meanwhile sample the server: most Pub/Sub connections of ours seen at once."""
    threads = [threading.Thread(target=load.run, args=(seed,), name=f"soak-{seed}") for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    most = 0
    while any(thread.is_alive() for thread in threads):
        most = max(most, pubsub_clients(our_clients(raw, name)))
        threads[0].join(0.2)
    for thread in threads:
        thread.join(120)
    return most


def wait_idle(backend: RedisBackend, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = backend.stats()
        if stats["pending"] == 0 and stats["subscribed"] == 0 and stats["channels"] == 0:
            return stats
        assert time.monotonic() < deadline, f"still busy after the load: {stats}"
        time.sleep(0.05)


def delete_prefix(raw: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in raw.scan_iter(match=f"{prefix}*", count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            raw.unlink(*batch)
            batch.clear()
    if batch:
        raw.unlink(*batch)


def test_soak_round_trips(redis_server: RedisServer, raw: redis.Redis, key_prefix: str) -> None:
    name = f"soak-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {
        "transport_options": {"global_keyprefix": key_prefix},
        "client_name": name,
        "expires": 300,
    }
    process = psutil.Process()
    try:
        with RedisBackend(redis_server.url, **options) as backend:
            warm_up = Load(backend, 2000)
            run_threads(warm_up, raw, name)
            assert not warm_up.errors, warm_up.errors[:3]
            wait_idle(backend)
            gc.collect()
            rss_before = process.memory_info().rss

            load = Load(backend, ROUND_TRIPS)
            start = time.monotonic()
            most_pubsub = run_threads(load, raw, name)
            elapsed = time.monotonic() - start
            assert not load.errors, load.errors[:3]
            assert load.counts["round_trips"] == ROUND_TRIPS
            assert load.counts["cancelled"] > 0 and load.counts["dropped"] > 0

            for _ in range(load.counts["callbacks"]):  # every then() callback ran
                assert load.callbacks_done.acquire(timeout=10)
            stats = wait_idle(backend)
            assert stats["drainer_alive"] is True and stats["failure"] is None
            assert stats["reconnects"] == 0

            gc.collect()
            growth = process.memory_info().rss - rss_before
            assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB"

            assert most_pubsub == 1, f"saw {most_pubsub} Pub/Sub connections of ours at once"
            clients = our_clients(raw, name)
            assert all(int(c.get("sub", 0)) == 0 for c in clients), clients
            print(
                f"soak: {ROUND_TRIPS} round trips in {elapsed:.1f}s ({ROUND_TRIPS / elapsed:.0f}/s), "
                f"{load.counts}, {len(clients)} connections, RSS +{growth / 2**20:.1f} MiB"
            )
    finally:
        delete_prefix(raw, key_prefix)
