"""One core per process under load: 1,000 client threads each calling ``delay().get()`` against a real worker
hold one Pub/Sub connection and at most ``redis_max_connections`` + 2 others; many round trips (10,000 with
``REDISRESULTS_CELERY_ROUND_TRIPS=10000``) leave nothing subscribed and no objects behind."""

from __future__ import annotations

import gc
import os
import threading
import uuid
from typing import Any, Callable, Dict, List

import celery
import pytest
from celery.result import AsyncResult

from redisresults.celery import CeleryBackend
from tests.celery.workers import CeleryWorker
from tests.helpers import poll
from tests.servers import RedisServer

THREADS = 1000
MAX_CONNECTIONS = 10
#: 10,000 for the full soak (REDISRESULTS_CELERY_ROUND_TRIPS=10000, about a minute); a quicker 2,000 by default
ROUND_TRIPS = int(os.environ.get("REDISRESULTS_CELERY_ROUND_TRIPS", "2000"))


class ConnectionSampler(threading.Thread):
    """Samples ``CLIENT LIST`` for the connections named ``name`` until stopped; keeps the peaks."""

    def __init__(self, server: RedisServer, name: str) -> None:
        super().__init__(name="connection-sampler", daemon=True)
        self.client = server.client()
        self.name = name
        self.peaks: Dict[str, int] = {"pubsub": 0, "normal": 0}
        self.done = threading.Event()

    def sample(self) -> None:
        for kind in self.peaks:
            count = sum(1 for entry in self.client.client_list(_type=kind) if entry.get("name") == self.name)
            self.peaks[kind] = max(self.peaks[kind], count)

    def run(self) -> None:
        while not self.done.wait(0.02):  # nothing to wait on: the server's client list is only observable
            self.sample()
        self.sample()
        self.client.close()


def test_thousand_threads_share_one_pubsub_connection(
    make_app: Callable[..., celery.Celery],
    broker_url: str,
    dropin_url: str,
    dropin_threads: CeleryWorker,
    celery_redis: RedisServer,
) -> None:
    name = f"rr-scale-{uuid.uuid4().hex[:8]}"
    app = make_app(dropin_url, broker_url, dropin_threads.queue, redis_max_connections=MAX_CONNECTIONS,
                   redis_client_name=name)
    add = app.signature("rr.add")
    barrier = threading.Barrier(THREADS)
    results: List[Any] = [None] * THREADS
    errors: List[BaseException] = []

    def client(n: int) -> None:
        try:
            barrier.wait(60)
            results[n] = add.delay(n, n).get(timeout=30)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    sampler = ConnectionSampler(celery_redis, name)
    sampler.start()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    finally:
        sampler.done.set()
        sampler.join(10)
    assert errors == []
    assert results == [2 * n for n in range(THREADS)]
    assert sampler.peaks["pubsub"] == 1
    assert 1 <= sampler.peaks["normal"] <= MAX_CONNECTIONS + 2, sampler.peaks
    backend: CeleryBackend = app.backend

    def settled() -> Any:
        stats = backend.stats()
        return stats if stats["subscribed"] == stats["channels"] == stats["celery_pending"] == 0 else None

    poll(settled, timeout=10, what="every subscription to be dropped")


@pytest.mark.soak
def test_many_round_trips_leave_nothing_behind(
    make_app: Callable[..., celery.Celery], broker_url: str, dropin_url: str, dropin_threads: CeleryWorker
) -> None:
    app = make_app(dropin_url, broker_url, dropin_threads.queue)
    add = app.signature("rr.add")
    errors: List[BaseException] = []

    def client(first: int, count: int) -> None:
        try:
            for n in range(first, first + count):
                assert add.delay(n, 1).get(timeout=30) == n + 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def run(total: int, threads: int = 40) -> None:
        workers = [threading.Thread(target=client, args=(i * total // threads, total // threads))
                   for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert errors == []

    run(400)
    gc.collect()
    baseline = len(gc.get_objects())
    run(ROUND_TRIPS)
    backend: CeleryBackend = app.backend

    def settled() -> Any:
        stats = backend.stats()
        quiet = stats["subscribed"] == stats["channels"] == stats["pending"] == stats["celery_pending"] == 0
        return stats if quiet else None

    poll(settled, timeout=10, what="every subscription to be dropped")

    def no_result_objects() -> Any:
        # The core's callback loop may still be handing the last deliveries on when the counters settle: the
        # objects must be gone within the timeout, not at this very instant.
        gc.collect()
        return None if any(isinstance(obj, AsyncResult) for obj in gc.get_objects()) else True

    poll(no_result_objects, timeout=10, what="every AsyncResult to be freed")
    assert len(gc.get_objects()) - baseline < 2000  # flat: nothing per round trip survives
