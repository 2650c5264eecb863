"""The greenlet drainer: one greenlet owns the one Pub/Sub connection, waiters are greenlets, and
nothing blocks the hub (a 10 ms heartbeat greenlet keeps ticking while thousands wait).
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any, Callable, Iterator

import gevent
import gevent.event
import gevent.pool
import pytest

import redisresults
from tests.gevent.helpers import Heartbeat, channel, clients_named, wait_subscribed, wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.gevent

MAX_GAP = 0.2  # seconds between 10 ms ticks; generous for a loaded 2-core CI box


@pytest.fixture
def name(key_prefix: str) -> str:
    """A client name unique to this test, to pick our connections out of CLIENT LIST."""
    return f"gevent-{key_prefix.rstrip(':')}"


@pytest.fixture
def backend(redis_server: RedisServer, key_prefix: str, name: str) -> Iterator[redisresults.RedisBackend]:
    with redisresults.RedisBackend(
        redis_server.url, transport_options={"global_keyprefix": key_prefix}, client_name=name
    ) as backend:
        assert backend.stats()["mode"] == "gevent"
        yield backend


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


def _spawn_waiters(backend: redisresults.RedisBackend, ids: list[str], timeout: float) -> list[gevent.Greenlet]:
    return [gevent.spawn(backend.AsyncResult(task_id).get, timeout=timeout) for task_id in ids]


def _store_all(
    backend: redisresults.RedisBackend, ids: list[str], start: int = 0, stop: int = -1, workers: int = 4
) -> None:
    """Store ``ids[i] = i`` for ``i`` in ``[start, stop)`` from a few storer greenlets (pooled connections)."""
    stop = len(ids) if stop < 0 else stop
    pool = gevent.pool.Pool(workers)
    for first in range(start, start + workers):
        pool.spawn(lambda f: [backend.mark_as_done(ids[i], i) for i in range(f, stop, workers)], first)
    pool.join(timeout=60, raise_error=True)


def test_thousand_waiters_never_block_the_hub(backend: redisresults.RedisBackend, admin: Any, name: str) -> None:
    ids = [f"hb-{i}" for i in range(1000)]
    gc.collect()  # a full collection of what earlier tests left behind is a pause of its own, not a blocked hub
    with Heartbeat() as beat:
        waiters = _spawn_waiters(backend, ids, timeout=30)
        subscribers = wait_subscribed(admin, name, 1000)
        assert len(subscribers) == 1
        _store_all(backend, ids)
        gevent.joinall(waiters, timeout=30, raise_error=True)
    assert [w.value for w in waiters] == list(range(1000))
    assert beat.ticks > 0 and beat.max_gap < MAX_GAP, f"the hub was blocked for {beat.max_gap:.3f}s"
    stats = backend.stats()
    assert stats["pending"] == 0 and stats["drainer_alive"] and stats["reconnects"] == 0


def test_drain_latency_is_submillisecond_class(backend: redisresults.RedisBackend, admin: Any, name: str) -> None:
    """p50 from store to the waiting greenlet waking, over 200 sequential stores (the bound is loose)."""
    ids = [f"lat-{i}" for i in range(200)]
    woke: dict[str, float] = {}
    done = {task_id: gevent.event.Event() for task_id in ids}

    def wait(task_id: str) -> None:
        backend.AsyncResult(task_id).get(timeout=30)
        woke[task_id] = time.perf_counter()
        done[task_id].set()

    waiters = [gevent.spawn(wait, task_id) for task_id in ids]
    wait_subscribed(admin, name, 200)
    latencies = []
    for task_id in ids:
        start = time.perf_counter()
        backend.mark_as_done(task_id, "x")
        assert done[task_id].wait(timeout=5)
        latencies.append(woke[task_id] - start)
    gevent.joinall(waiters, timeout=5, raise_error=True)
    p50 = statistics.median(latencies)
    assert p50 < 0.020, f"p50 store->wake {p50 * 1000:.2f} ms"


def test_ten_thousand_greenlets_one_pubsub_connection(
    backend: redisresults.RedisBackend, admin: Any, name: str
) -> None:
    ids = [f"tenk-{i}" for i in range(10_000)]
    waiters = _spawn_waiters(backend, ids, timeout=60)
    subscribers = wait_subscribed(admin, name, 10_000)
    assert len(subscribers) == 1
    _store_all(backend, ids, workers=8)
    gevent.joinall(waiters, timeout=60, raise_error=True)
    assert all(w.value == i for i, w in enumerate(waiters))
    # Everything resolved, so the drainer unsubscribed: the connection may drop out of TYPE pubsub.
    assert len(clients_named(admin, name, "pubsub")) <= 1
    assert backend.stats()["pending"] == 0


# ---------------------------------------------------------------- bad input, as in thread mode


def _case_timeout(backend: redisresults.RedisBackend, **_: Any) -> None:
    """ResultTimeout promptly (tens of ms late at most), for 50 greenlets at once; timeout=0 checks once."""

    def late(task_id: str) -> float:
        start = time.monotonic()
        with pytest.raises(redisresults.ResultTimeout):
            backend.AsyncResult(task_id).get(timeout=0.2)
        return time.monotonic() - start

    with Heartbeat() as beat:
        waiters = [gevent.spawn(late, f"never-{i}") for i in range(50)]
        gevent.joinall(waiters, timeout=10, raise_error=True)
    assert all(0.2 <= w.value < 0.5 for w in waiters), sorted(w.value for w in waiters)[-3:]
    start = time.monotonic()
    with pytest.raises(redisresults.ResultTimeout):
        backend.AsyncResult("never-x").get(timeout=0)
    assert time.monotonic() - start < 0.2
    assert beat.max_gap < MAX_GAP
    assert wait_until(lambda: backend.stats()["pending"] == 0, 5, "no pending futures")


def _case_drainer_failure(
    backend: redisresults.RedisBackend,
    admin: Any,
    name: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    **_: Any,
) -> None:
    """A bug inside the drainer reaches every waiting greenlet as DrainerError, and later waits too."""
    ids = [f"df-{i}" for i in range(20)]
    waiters = _spawn_waiters(backend, ids, timeout=30)
    wait_subscribed(admin, name, 20)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("injected drainer bug")

    monkeypatch.setattr(redisresults._codec, "loads", broken)  # what the drainer's decoding calls
    # A bare PUBLISH (no key written), so only the broken message path can resolve anything.
    admin.publish(channel(key_prefix, ids[0]), b"{}")
    gevent.joinall(waiters, timeout=10)
    assert all(w.ready() for w in waiters)
    assert all(isinstance(w.exception, redisresults.DrainerError) for w in waiters), [w.exception for w in waiters]
    assert "ZeroDivisionError" in str(waiters[5].exception)
    monkeypatch.undo()  # the caller's own read decodes again
    with pytest.raises(redisresults.DrainerError):
        backend.AsyncResult("df-after").get(timeout=1)
    stats = backend.stats()
    assert stats["drainer_alive"] is False and "ZeroDivisionError" in stats["failure"]


def _case_reconnect(request: pytest.FixtureRequest, key_prefix: str, name: str, **_: Any) -> None:
    """CLIENT KILL TYPE pubsub with 500 waiting: stores before, during and after the reconnect all arrive."""
    server: RedisServer = request.getfixturevalue("fresh_server")()
    ids = [f"rc-{i}" for i in range(500)]
    admin = server.client()
    try:
        with redisresults.RedisBackend(
            server.url, transport_options={"global_keyprefix": key_prefix}, client_name=name
        ) as backend:
            waiters = _spawn_waiters(backend, ids, timeout=30)
            wait_subscribed(admin, name, 500)
            _store_all(backend, ids, 0, 100)
            assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            _store_all(backend, ids, 100, 300)  # while the drainer notices and reconnects
            wait_until(lambda: backend.stats()["reconnects"] >= 1, 10, "a reconnect")
            _store_all(backend, ids, 300)
            gevent.joinall(waiters, timeout=30, raise_error=True)
            assert [w.value for w in waiters] == list(range(500))
            stats = backend.stats()
            assert stats["pending"] == 0 and stats["drainer_alive"] and stats["connected"]
            assert len(admin.client_list(_type="pubsub")) <= 1
    finally:
        admin.close()


def _case_garbage(backend: redisresults.RedisBackend, admin: Any, name: str, key_prefix: str, **_: Any) -> None:
    """A message that is not a result document is skipped; the real result still arrives."""
    waiter = gevent.spawn(backend.AsyncResult("gb").get, timeout=10)
    wait_subscribed(admin, name, 1)
    admin.publish(channel(key_prefix, "gb"), b"\x00\xffnot json at all")
    admin.publish(channel(key_prefix, "gb"), b'{"status": "SUCCESS"')
    wait_until(lambda: backend.stats()["skipped_messages"] >= 2, 10, "skipped messages")
    assert not waiter.ready()
    backend.mark_as_done("gb", [1, 2])
    assert waiter.get(timeout=10) == [1, 2]
    assert backend.stats()["drainer_alive"]


CASES: dict[str, Callable[..., None]] = {
    "timeout": _case_timeout,
    "drainer_failure": _case_drainer_failure,
    "reconnect": _case_reconnect,
    "garbage": _case_garbage,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_parity(
    case: str,
    backend: redisresults.RedisBackend,
    admin: Any,
    name: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    CASES[case](
        backend=backend, admin=admin, name=name, key_prefix=key_prefix, monkeypatch=monkeypatch, request=request
    )
