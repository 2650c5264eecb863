"""Which drainer a backend gets: a greenlet when gevent has patched the process, a thread otherwise.

The subprocess checks run in fresh, unpatched interpreters: that is what "import redisresults never
imports gevent" and "gevent mode refused without monkey-patching" are about.
"""

from __future__ import annotations

import concurrent.futures
import textwrap
import threading
from typing import Any, Callable, Iterator

import gevent
import gevent.event
import gevent.monkey
import pytest

import redisresults
from tests.gevent.helpers import Heartbeat, run_python
from tests.servers import RedisServer

pytestmark = pytest.mark.gevent


@pytest.fixture
def make_backend(redis_server: RedisServer, key_prefix: str) -> Iterator[Callable[[str], redisresults.RedisBackend]]:
    made: list[redisresults.RedisBackend] = []

    def factory(concurrency: str) -> redisresults.RedisBackend:
        backend = redisresults.RedisBackend(
            redis_server.url, transport_options={"global_keyprefix": key_prefix}, concurrency=concurrency
        )
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def _roundtrip(backend: redisresults.RedisBackend) -> None:
    """A waiter greenlet resolves from a store made after it started waiting."""
    waiter = gevent.spawn(backend.AsyncResult("mode-task").get, timeout=10)
    gevent.sleep(0.05)
    backend.mark_as_done("mode-task", {"ok": True})
    assert waiter.get(timeout=10) == {"ok": True}


def test_auto_picks_greenlet_drainer(make_backend) -> None:
    backend = make_backend("auto")
    assert backend.stats()["mode"] == "gevent"
    _roundtrip(backend)
    runner = backend.result_consumer._runner
    assert runner is not None and runner.mode == "gevent"
    assert isinstance(runner._greenlet, gevent.Greenlet) and runner._thread is None
    assert backend.stats()["drainer_alive"] is True


def test_explicit_gevent(make_backend) -> None:
    backend = make_backend("gevent")
    assert backend.stats()["mode"] == "gevent"
    _roundtrip(backend)
    assert isinstance(backend.result_consumer._runner._greenlet, gevent.Greenlet)


def test_thread_forces_a_thread(make_backend) -> None:
    backend = make_backend("thread")
    assert backend.stats()["mode"] == "thread"
    _roundtrip(backend)
    runner = backend.result_consumer._runner
    assert runner is not None and runner._greenlet is None and runner._thread is not None


def store_in_order(backend: Any, ids: list) -> None:
    """After a moment (the waits are blocked by then), result ``i`` for ``ids[i]``."""
    gevent.sleep(0.05)
    for i, task_id in enumerate(ids):
        backend.mark_as_done(task_id, i)


def test_callbacks_and_result_sets_under_gevent(make_backend) -> None:
    """then() and ResultSet.join() block on queues: they must yield to the hub, not freeze it."""
    backend = make_backend("auto")
    ids = [f"set-{i}" for i in range(20)]
    seen = gevent.event.AsyncResult()
    backend.AsyncResult(ids[0]).then(lambda r: seen.set(r.get(timeout=1)))

    with Heartbeat() as beat:
        storer = gevent.spawn(store_in_order, backend, ids)
        assert backend.ResultSet(ids).join(timeout=10) == list(range(20))
        assert seen.get(timeout=5) == 0
        storer.get(timeout=5)
    assert beat.max_gap < 0.2


def test_as_future_under_gevent(make_backend) -> None:
    """Greenlets blocking in as_future().result() and in concurrent.futures.wait yield to the hub; the drainer
    greenlet sets them, and their done-callbacks run on the callback greenlet."""
    backend = make_backend("auto")
    ids = [f"fut-{i}" for i in range(50)]
    futures = [backend.AsyncResult(task_id).as_future() for task_id in ids]
    called = gevent.event.Event()
    futures[-1].add_done_callback(lambda f: called.set())
    blocked = gevent.spawn(futures[0].result, timeout=10)

    with Heartbeat() as beat:
        storer = gevent.spawn(store_in_order, backend, ids)
        done, not_done = concurrent.futures.wait(futures, timeout=10)
        assert len(done) == len(ids) and not not_done
        assert blocked.get(timeout=5) == 0
        assert called.wait(5)
        storer.get(timeout=5)
    assert [f.result(timeout=0) for f in futures] == list(range(50))
    assert beat.max_gap < 0.2


def test_the_routers_lock_is_the_os_lock_under_gevent() -> None:
    """Under gevent the router's table lock is the unpatched OS lock (gevent's costs a few Python calls per
    acquire, paid per result); greenlets take it in turn without ever blocking the hub."""
    from redisresults._runtime import data_lock

    os_lock = gevent.monkey.get_original("_thread", "LockType")
    assert isinstance(data_lock("gevent"), os_lock)
    assert not isinstance(threading.Lock(), os_lock)  # this process is patched: thread mode's would be gevent's
    lock = data_lock("gevent")

    def take_turns() -> None:
        for _ in range(200):
            with lock:
                pass
            gevent.sleep(0)

    with Heartbeat() as beat:
        workers = [gevent.spawn(take_turns) for _ in range(5)]
        gevent.joinall(workers, timeout=10, raise_error=True)
    assert all(worker.successful() for worker in workers) and not lock.locked() and beat.max_gap < 0.2


def test_import_never_imports_gevent() -> None:
    proc = run_python(
        "import redisresults, sys; assert 'gevent' not in sys.modules;"
        "b = redisresults.RedisBackend('redis://127.0.0.1:1/0'); assert b.stats()['mode'] == 'thread';"
        "assert 'gevent' not in sys.modules, 'building an auto backend imported gevent'"
    )
    assert proc.returncode == 0, proc.stderr


def test_gevent_refused_without_monkey_patching() -> None:
    """Unpatched, redis-py's blocking sockets would freeze the hub: refuse at construction, say how to fix."""
    proc = run_python(
        textwrap.dedent(
            """
            import redisresults
            try:
                redisresults.RedisBackend('redis://127.0.0.1:1/0', concurrency='gevent')
            except redisresults.ConfigError as error:
                assert isinstance(error, ValueError)
                print(error)
            else:
                raise SystemExit('concurrency=gevent was accepted in an unpatched process')
            import gevent  # loaded but not patched: auto still means a thread
            assert redisresults.RedisBackend('redis://127.0.0.1:1/0').stats()['mode'] == 'thread'
            """
        )
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "monkey-patched" in proc.stdout and "patch_all" in proc.stdout


def test_partial_patching_is_not_gevent_mode() -> None:
    """select unpatched: the drainer's select() would block the hub, so gevent mode is refused."""
    proc = run_python(
        textwrap.dedent(
            """
            from gevent import monkey
            monkey.patch_socket(); monkey.patch_thread()
            import redisresults
            try:
                redisresults.RedisBackend('redis://127.0.0.1:1/0', concurrency='gevent')
            except redisresults.ConfigError as error:
                print(error)
            else:
                raise SystemExit('accepted with select unpatched')
            assert redisresults.RedisBackend('redis://127.0.0.1:1/0').stats()['mode'] == 'thread'
            """
        )
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "select" in proc.stdout


def test_unpatched_queue_module_still_cooperative(redis_server: RedisServer, key_prefix: str) -> None:
    """patch_all(queue=False): ResultSet and then() use gevent's queue themselves, so nothing hangs."""
    proc = run_python(
        textwrap.dedent(
            """
            from gevent import monkey
            monkey.patch_all(queue=False)
            import sys, gevent, gevent.event, redisresults
            assert not monkey.is_module_patched('queue')
            url, prefix = sys.argv[1:3]
            backend = redisresults.RedisBackend(url, transport_options={'global_keyprefix': prefix})
            assert backend.stats()['mode'] == 'gevent'
            ids = ['q-%d' % i for i in range(10)]
            seen = gevent.event.AsyncResult()
            backend.AsyncResult(ids[0]).then(lambda r: seen.set(r.get(timeout=1)))
            def store():
                gevent.sleep(0.05)
                for i, task_id in enumerate(ids):
                    backend.mark_as_done(task_id, i)
            gevent.spawn(store)
            assert backend.ResultSet(ids).join(timeout=5) == list(range(10))
            assert seen.get(timeout=5) == 0
            backend.close()
            print('ok')
            """
        ),
        redis_server.url,
        key_prefix,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip().endswith("ok")
