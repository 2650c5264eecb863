"""The Celery drop-in in a gevent monkey-patched process (gunicorn ``-k gevent``, ``celery -P gevent``).

The drainer and the callback loop are greenlets; 2,000 greenlets calling ``delay().get()`` against a real worker
need one Pub/Sub connection and at most ``redis_max_connections`` + 2 others; a fresh ``get()`` returns within
milliseconds of the store, not after Celery's 1-second drain step.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, Iterator, List

import celery
import gevent
import gevent.event
import pytest

import redisresults.celery
from tests.celery.workers import CeleryWorker, WorkerUnavailable
from tests.conftest import unavailable
from tests.helpers import poll
from tests.servers import RedisServer

pytestmark = pytest.mark.gevent

GREENLETS = 2000
MAX_CONNECTIONS = 10


def client_app(backend: str, broker: str = "memory://", **conf: Any) -> celery.Celery:
    app = celery.Celery(f"rr-gevent-{uuid.uuid4().hex[:8]}", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, **conf)
    return app


@pytest.fixture
def apps() -> Iterator[List[celery.Celery]]:
    made: List[celery.Celery] = []
    yield made
    redisresults.celery.close_all()
    for app in made:
        app.close()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer) -> Iterator[CeleryWorker]:
    broker = f"redis://127.0.0.1:{redis_server.port}/2"
    started = CeleryWorker(broker=broker, backend=f"redisresults+redis://127.0.0.1:{redis_server.port}/0",
                           pool="threads", concurrency=16).start()
    pinger = client_app("cache+memory://", broker)
    try:
        started.wait_ready(pinger)
    except WorkerUnavailable as exc:
        started.stop()
        unavailable(str(exc))
    finally:
        pinger.close()
    yield started
    started.stop()


def test_the_drainer_is_a_greenlet(apps: List[celery.Celery], redis_server: RedisServer) -> None:
    app = client_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0")
    apps.append(app)
    assert app.backend.core().mode == "gevent"


def test_two_thousand_greenlets_share_one_pubsub_connection(
    apps: List[celery.Celery], redis_server: RedisServer, worker: CeleryWorker
) -> None:
    name = f"rr-gevent-{uuid.uuid4().hex[:8]}"
    app = client_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0", worker.broker,
                     task_default_queue=worker.queue, redis_max_connections=MAX_CONNECTIONS, redis_client_name=name)
    apps.append(app)
    add = app.signature("rr.add")
    peaks = {"pubsub": 0, "normal": 0}
    admin = redis_server.client()
    sampling = True

    def sample() -> None:
        while sampling:
            for kind in peaks:
                count = sum(1 for entry in admin.client_list(_type=kind) if entry.get("name") == name)
                peaks[kind] = max(peaks[kind], count)
            gevent.sleep(0.02)  # the server's client list can only be observed

    sampler = gevent.spawn(sample)
    clients = [gevent.spawn(lambda n=n: add.delay(n, n).get(timeout=60)) for n in range(GREENLETS)]
    try:
        gevent.joinall(clients, timeout=120, raise_error=True)
    finally:
        sampling = False
        sampler.join(5)
        admin.close()
    assert [client.value for client in clients] == [2 * n for n in range(GREENLETS)]
    assert peaks["pubsub"] == 1
    assert 1 <= peaks["normal"] <= MAX_CONNECTIONS + 2, peaks
    backend = app.backend
    poll(lambda: True if backend.stats()["subscribed"] == 0 else None, timeout=10, what="no subscriptions left")


def test_a_fresh_get_returns_within_milliseconds_of_the_store(
    apps: List[celery.Celery], redis_server: RedisServer, key_prefix: str
) -> None:
    options = {"result_backend_transport_options": {"global_keyprefix": key_prefix}}
    dropin = client_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0", **options)
    stock = client_app(f"redis://127.0.0.1:{redis_server.port}/0", **options)
    apps.extend([dropin, stock])
    core = dropin.backend.core()
    latencies: List[float] = []
    for n in range(20):
        task_id = str(uuid.uuid4())
        waiter = gevent.spawn(dropin.AsyncResult(task_id).get, timeout=10)
        poll(lambda: True if core.stats()["subscribed"] >= 1 else None, timeout=5, what="the waiter subscribed",
             interval=0.001)
        stored = time.monotonic()
        stock.backend.mark_as_done(task_id, n)
        assert waiter.get(timeout=10) == n
        latencies.append(time.monotonic() - stored)
        poll(lambda: True if core.stats()["subscribed"] == 0 else None, timeout=5, what="unsubscribed",
             interval=0.001)
    assert statistics.median(latencies) < 0.01, latencies
    assert max(latencies) < 0.2, latencies


def test_then_callbacks_run_on_a_greenlet(apps: List[celery.Celery], redis_server: RedisServer,
                                          key_prefix: str) -> None:
    options = {"result_backend_transport_options": {"global_keyprefix": key_prefix}}
    dropin = client_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0", **options)
    stock = client_app(f"redis://127.0.0.1:{redis_server.port}/0", **options)
    apps.extend([dropin, stock])
    fired = gevent.event.Event()
    result = dropin.AsyncResult(str(uuid.uuid4()))
    result.then(lambda res: fired.set())
    stock.backend.mark_as_done(result.id, "ok")
    assert fired.wait(5) and result.result == "ok"
