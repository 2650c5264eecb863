"""Never lose a result: 1,000 pending waits survive a killed Pub/Sub connection, a server restart, a result too
big to publish, and a connection that silently stops answering. Each value right, none resolved twice."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Dict, List, Sequence

import pytest
import redis

import redisresults
from redisresults import ResultTimeout
from tests.helpers import (
    PATIENT_RETRY,
    Producer,
    kill_pubsub,
    poll,
    store_all,
    value_for,
    wait_stats,
    wait_stats_at_least,
)
from tests.logs import capture_logs
from tests.servers import RedisServer

PENDING = 1000
BIG = 40 * 1024 * 1024


def _backend(url: str, key_prefix: str, name: str, **options: Any) -> redisresults.RedisBackend:
    transport: Dict[str, Any] = {"global_keyprefix": key_prefix, "retry_policy": PATIENT_RETRY}
    return redisresults.RedisBackend(url, client_name=name, transport_options=transport, **options)


def _futures(backend: redisresults.RedisBackend, ids: Sequence[str]) -> Dict[str, concurrent.futures.Future[Any]]:
    """One ``as_future()`` per id: 1,000 pending waits without 1,000 OS threads."""
    return {task_id: backend.AsyncResult(task_id).as_future() for task_id in ids}


def _check_all(futures: Dict[str, concurrent.futures.Future[Any]], timeout: float,
               expected: Callable[[str], Any] = value_for) -> None:
    done, not_done = concurrent.futures.wait(list(futures.values()), timeout=timeout)
    missing = sorted(task_id for task_id, future in futures.items() if future in not_done)
    assert not missing, f"{len(missing)} results lost, e.g. {missing[:5]}"
    wrong = [task_id for task_id, future in futures.items() if future.result() != expected(task_id)]
    assert not wrong, f"wrong values for {wrong[:5]}"


def _no_double_delivery(logs: List[Dict[str, Any]], backend: redisresults.RedisBackend) -> None:
    """A second delivery would fail a callback (Future set twice) or kill the drainer (gate released twice)."""
    bad = [entry for entry in logs if entry["event"] in ("callback_failed", "listener_failed", "drainer_died")]
    assert bad == []
    stats = backend.stats()
    assert stats["drainer_alive"] and stats["failure"] is None


@pytest.fixture(params=["tcp", "tls"])
def server(request: pytest.FixtureRequest) -> RedisServer:
    fixture = "redis_server" if request.param == "tcp" else "tls_server"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


def test_killed_pubsub_connection_loses_nothing(server: RedisServer, key_prefix: str, name: str) -> None:
    ids = [f"k{i}" for i in range(PENDING)]
    raw = server.client()
    with _backend(server.url, key_prefix, name) as backend, capture_logs() as logs:
        futures = _futures(backend, ids)
        wait_stats(backend, subscribed=PENDING)
        producer = Producer(backend, ids, every=50, pause=0.02)
        kill_now = producer.at(300)
        producer.start()
        try:
            assert kill_now.wait(10)
            assert kill_pubsub(raw, name) == 1
        finally:
            producer.finish(30)
        _check_all(futures, timeout=30)
        stats = wait_stats(backend, pending=0, subscribed=0)
        assert stats["reconnects"] >= 1
        _no_double_delivery(logs, backend)
    raw.close()


@pytest.mark.slow
def test_server_restart_loses_nothing(fresh_server: Callable[..., RedisServer], key_prefix: str, name: str) -> None:
    """Stored before, during (producer retrying) and after the outage: all resolve; re-reads are counted."""
    server = fresh_server(appendonly=True)
    before = [f"b{i}" for i in range(200)]
    during = [f"d{i}" for i in range(400)]
    after = [f"a{i}" for i in range(400)]
    stored_early = [f"e{i}" for i in range(100)]  # stored before the outage, first waited on during it
    with _backend(server.url, key_prefix, name, socket_connect_timeout=1) as backend, capture_logs() as logs:
        futures = _futures(backend, before + during + after)
        wait_stats(backend, subscribed=PENDING)
        store_all(backend, before + stored_early)
        _check_all({task_id: futures[task_id] for task_id in before}, timeout=10)

        server.stop()
        wait_stats(backend, connected=False)
        producer = Producer(backend, during)  # retries (retry_policy) until the server is back
        producer.start()
        started = time.monotonic()
        with pytest.raises(ResultTimeout) as info:
            backend.AsyncResult(after[0]).get(timeout=1)
        assert time.monotonic() - started >= 1
        assert "Redis was unreachable" in str(info.value)
        futures.update(_futures(backend, stored_early))
        # Taken by the drainer while Redis is down (it may be pausing between reconnect attempts): they are then
        # wanted when the connection comes back, so re-read (and counted) after the resync, not peeked at first.
        router = backend.result_consumer._router
        poll(lambda: router.counts()["unapplied"] == 0 or None, timeout=10, what="the drainer taking the new waits")

        server.start()
        server.wait_ready()
        producer.finish(40)
        store_all(backend, after)
        _check_all(futures, timeout=30)
        stats = wait_stats(backend, pending=0, subscribed=0)
        assert stats["reconnects"] >= 1
        assert stats["recovered"] >= len(stored_early)
        _no_double_delivery(logs, backend)


@pytest.mark.parametrize("publish_limit", ["default", "none"])
def test_big_result_with_other_waits(
    publish_limit: str, redis_server: RedisServer, fresh_server: Callable[..., RedisServer], key_prefix: str,
    name: str,
) -> None:
    """A 40 MB result: announced by reference (default), or published in full until Redis drops the subscriber
    for its output buffer (``max_publish_size=None``). Either way every waiter gets its result."""
    options: Dict[str, Any] = {}
    if publish_limit == "none":
        options["max_publish_size"] = None
        server = fresh_server()  # default client-output-buffer-limit pubsub 32mb 8mb 60
    else:
        server = redis_server
    big_value = "x" * BIG
    small = [f"s{i}" for i in range(100)]
    with _backend(server.url, key_prefix, name, **options) as backend, capture_logs() as logs:
        futures = _futures(backend, small)
        big = backend.AsyncResult("big").as_future()
        wait_stats(backend, subscribed=len(small) + 1)
        backend.mark_as_done("big", big_value)
        store_all(backend, small)
        assert big.result(timeout=30) == big_value
        _check_all(futures, timeout=30)
        stats = wait_stats(backend, pending=0, subscribed=0)
        if publish_limit == "none":
            assert stats["reconnects"] >= 1
        else:
            assert stats["reconnects"] == 0
        _no_double_delivery(logs, backend)


@pytest.mark.slow
def test_silently_stalled_connection_is_detected(
    fresh_server: Callable[..., RedisServer], key_prefix: str, name: str
) -> None:
    """``CLIENT PAUSE 3000 ALL``: the connection stays open but nothing answers; the health check notices."""
    server = fresh_server()
    ids = [f"p{i}" for i in range(200)]
    with _backend(server.url, key_prefix, name, health_check_interval=0.5) as backend, capture_logs() as logs:
        futures = _futures(backend, ids)
        wait_stats(backend, subscribed=len(ids))
        store_all(backend, ids[:50])
        _check_all({task_id: futures[task_id] for task_id in ids[:50]}, timeout=10)
        raw = server.client()
        try:
            assert raw.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        finally:
            raw.close()
        paused_at = time.monotonic()
        producer = Producer(backend, ids[50:])  # blocks until the pause ends
        producer.start()
        wait_stats_at_least(backend, timeout=10, reconnects=1)
        producer.finish(30)
        _check_all(futures, timeout=30)
        assert time.monotonic() - paused_at >= 2.5
        wait_stats(backend, pending=0, subscribed=0)
        _no_double_delivery(logs, backend)
        assert any(entry["event"] == "pubsub_connection_lost" for entry in logs)


def test_raw_client_sees_stored_keys(redis_server: RedisServer, key_prefix: str, name: str) -> None:
    """Sanity for the helpers above: a store is visible under the prefixed Celery key."""
    with _backend(redis_server.url, key_prefix, name) as backend:
        store_all(backend, ["seen"])
    raw: redis.Redis = redis_server.client()
    try:
        assert raw.exists(f"{key_prefix}celery-task-meta-seen") == 1
    finally:
        raw.close()
