"""Redis Cluster under gevent: the per-primary drainer is a greenlet and 300 greenlets' waits all resolve."""

from __future__ import annotations

import gevent
import pytest

import redisresults
from tests.cluster import ClusterGroup, redis_cluster  # noqa: F401 - the session cluster fixture
from tests.gevent.helpers import Heartbeat

pytestmark = [pytest.mark.gevent, pytest.mark.timeout(120)]


def test_greenlets_wait_on_every_shard(redis_cluster: ClusterGroup, key_prefix: str) -> None:  # noqa: F811
    ids = [f"gc-{i}" for i in range(300)]
    backend = redisresults.backend_from_url(redis_cluster.url, transport_options={"global_keyprefix": key_prefix})
    try:
        assert isinstance(backend, redisresults.ClusterBackend) and backend.mode == "gevent"
        with Heartbeat() as heartbeat:  # the hub keeps running: nothing blocks it
            waiters = [gevent.spawn(backend.AsyncResult(task_id).get, timeout=60) for task_id in ids]
            deadline = gevent.Timeout(30)
            with deadline:
                while backend.stats()["pending"] < len(ids) or backend.stats()["settling"]:
                    gevent.sleep(0.01)
            nodes = backend.stats()["nodes"]
            assert len([node for node, channels in nodes.items() if channels]) == 3, nodes  # every shard
            for task_id in ids:
                backend.mark_as_done(task_id, {"id": task_id})
            gevent.joinall(waiters, timeout=60, raise_error=True)
        assert [w.value for w in waiters] == [{"id": t} for t in ids]
        assert heartbeat.max_gap < 1.0
    finally:
        backend.close()


def test_celery_drop_in_greenlets_on_every_shard(redis_cluster: ClusterGroup) -> None:  # noqa: F811
    """The Celery drop-in on a cluster under gevent: Celery's own store path (SET + SPUBLISH) wakes 300 greenlets
    waiting in ``AsyncResult.get()``, through the drainer greenlet's one connection per primary."""
    import celery

    import redisresults.celery

    app = celery.Celery("rr-gevent-cluster", backend="redisresults+" + redis_cluster.url, set_as_current=False)
    ids = [f"gcc-{i}-{id(app)}" for i in range(300)]
    try:
        core = app.backend.core()
        assert core.mode == "gevent" and isinstance(core.backend, redisresults.ClusterBackend)
        with Heartbeat() as heartbeat:
            waiters = [gevent.spawn(app.AsyncResult(task_id).get, timeout=60) for task_id in ids]
            with gevent.Timeout(30):
                while core.stats()["subscribed"] < len(ids) or core.stats()["settling"]:
                    gevent.sleep(0.01)
            assert len([node for node, channels in core.stats()["nodes"].items() if channels]) == 3
            for task_id in ids:
                app.backend.mark_as_done(task_id, task_id)
            gevent.joinall(waiters, timeout=60, raise_error=True)
        assert [w.value for w in waiters] == ids
        assert heartbeat.max_gap < 1.0
    finally:
        redisresults.celery.close_all()
        app.close()
