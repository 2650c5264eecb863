"""Fixtures for the drop-in tests: a private redis-server (broker on db 1, results on db 0) and real workers.

Workers are session-scoped and started on first use; every test gets fresh client apps, and the drop-in's shared
cores are closed after each test so counts (subscriptions, connections) start from zero.
"""

from __future__ import annotations

import gc
import uuid
from typing import Any, Callable, Iterator, List

import celery
import pytest

import redisresults.celery
from tests.celery.workers import CeleryWorker, WorkerUnavailable
from tests.cluster import ClusterGroup
from tests.conftest import unavailable
from tests.servers import RedisServer, ServerUnavailable

AppFactory = Callable[..., celery.Celery]


@pytest.fixture(scope="session")
def celery_redis() -> Iterator[RedisServer]:
    """A redis-server of the Celery tests' own, so connection and channel counts see only them."""
    try:
        server = RedisServer()
    except (ServerUnavailable, OSError) as exc:
        unavailable(f"could not start redis-server: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def broker_url(celery_redis: RedisServer) -> str:
    return f"redis://127.0.0.1:{celery_redis.port}/1"


@pytest.fixture(scope="session")
def dropin_url(celery_redis: RedisServer) -> str:
    return f"redisresults+redis://127.0.0.1:{celery_redis.port}/0"


@pytest.fixture(scope="session")
def cluster_url(redis_cluster: ClusterGroup) -> str:
    """The drop-in on the suite's 3+3 Redis Cluster (the broker stays on ``celery_redis``)."""
    return "redisresults+" + redis_cluster.url


@pytest.fixture(scope="session")
def stock_url(celery_redis: RedisServer) -> str:
    return f"redis://127.0.0.1:{celery_redis.port}/0"


def client_app(backend: str, broker: str = "memory://", queue: str = "celery", **conf: Any) -> celery.Celery:
    """A client app of its own (never current): a backend URL, a broker, a default queue."""
    app = celery.Celery(f"rr-client-{uuid.uuid4().hex[:8]}", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        result_extended=True,
        **conf,
    )
    return app


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """``make_app(backend, broker=..., queue=..., **conf)``; the apps are closed, and every core, after the test."""
    apps: List[celery.Celery] = []

    def factory(backend: str, broker: str = "memory://", queue: str = "celery", **conf: Any) -> celery.Celery:
        app = client_app(backend, broker, queue, **conf)
        apps.append(app)
        return app

    yield factory
    gc.collect()  # AsyncResult.__del__ -> remove_pending_result while the cores are still there
    redisresults.celery.close_all()
    for app in apps:
        app.close()


def _worker(broker: str, backend: str, **kwargs: Any) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(broker=broker, backend=backend, **kwargs).start()
    pinger = client_app("cache+memory://", broker)
    try:
        worker.wait_ready(pinger)
    except WorkerUnavailable as exc:
        worker.stop()
        pinger.close()
        unavailable(str(exc))
    pinger.close()
    yield worker
    worker.stop()


def _worker_fixture(url_fixture: str, pool: str, doc: str) -> Any:
    """A session-scoped worker fixture: ``pool`` (prefork with 2 children, or 8 threads) storing into the
    backend that ``url_fixture`` names, started on first use."""
    concurrency = 2 if pool == "prefork" else 8

    @pytest.fixture(scope="session")
    def worker(request: pytest.FixtureRequest, broker_url: str) -> Iterator[CeleryWorker]:
        yield from _worker(broker_url, request.getfixturevalue(url_fixture), pool=pool, concurrency=concurrency)

    worker.__doc__ = doc
    return worker


dropin_prefork = _worker_fixture("dropin_url", "prefork", "A drop-in worker, prefork pool (results stored by forked "
                                 "children, each with its own core).")
dropin_threads = _worker_fixture("dropin_url", "threads", "A drop-in worker, threads pool (every thread shares the "
                                 "worker process's one core).")
stock_prefork = _worker_fixture("stock_url", "prefork", "A stock Celery worker (``redis://`` backend), prefork pool.")
cluster_prefork = _worker_fixture("cluster_url", "prefork", "A drop-in worker storing into the Redis Cluster.")
cluster_threads = _worker_fixture("cluster_url", "threads", "A drop-in worker storing into the Redis Cluster.")


#: (client backend URL fixture, worker fixture): every client path runs against each.
DEPLOYMENTS = {
    "dropin-client+dropin-prefork": ("dropin_url", "dropin_prefork"),
    "dropin-client+dropin-threads": ("dropin_url", "dropin_threads"),
    "dropin-client+stock-worker": ("dropin_url", "stock_prefork"),
    "stock-client+dropin-worker": ("stock_url", "dropin_prefork"),
    "cluster-client+cluster-prefork": ("cluster_url", "cluster_prefork"),
    "cluster-client+cluster-threads": ("cluster_url", "cluster_threads"),
}


@pytest.fixture(params=list(DEPLOYMENTS))
def deployment(
    request: pytest.FixtureRequest, make_app: AppFactory, broker_url: str
) -> tuple[celery.Celery, CeleryWorker]:
    """A client app and the worker serving its queue, for each mixed or pure deployment."""
    url_fixture, worker_fixture = DEPLOYMENTS[request.param]
    worker: CeleryWorker = request.getfixturevalue(worker_fixture)
    backend: str = request.getfixturevalue(url_fixture)
    return make_app(backend, broker_url, worker.queue), worker
