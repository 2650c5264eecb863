"""Real Celery and redisresults on one server: each reads what the other writes, and wakes the other's waiters.

Celery's ``app.backend`` writes and reads Redis directly, so no broker or worker is needed. Both sides use the
same ``global_keyprefix``.
"""

from __future__ import annotations

import gc
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import celery
import pytest
import redis
from celery.exceptions import TaskRevokedError
from celery.result import GroupResult as CeleryGroupResult

from redisresults import RedisBackend
from tests.servers import RedisServer


class InteropCustomError(Exception):
    """A user exception: its module is loaded, so both sides rebuild the real class."""


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def app(redis_server: RedisServer, key_prefix: str) -> Iterator[celery.Celery]:
    application = celery.Celery("t", backend=redis_server.url, set_as_current=False)
    application.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    yield application
    close_celery_backend(application)
    application.close()


def close_celery_backend(app: celery.Celery) -> None:
    """Close the calling thread's Celery backend (``app.backend`` is per thread): Pub/Sub and pool."""
    gc.collect()  # Celery's AsyncResult.__del__ unsubscribes: let it run while the connections are open
    backend = app.backend
    consumer = backend.result_consumer
    consumer.stop()
    # Handles collected later (Celery's AsyncResult.__del__) would reopen a connection just to UNSUBSCRIBE.
    consumer.subscribed_to.clear()
    consumer._pubsub = None
    backend.client.connection_pool.disconnect()


def celery_get(app: celery.Celery, task_id: str) -> Any:
    """``AsyncResult.get`` in a waiter thread, closing that thread's own backend afterwards."""
    try:
        return app.AsyncResult(task_id).get(timeout=10)
    finally:
        close_celery_backend(app)


@pytest.fixture
def ours(redis_server: RedisServer, key_prefix: str) -> Iterator[RedisBackend]:
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}) as backend:
        yield backend


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def wait_subscribed(raw: redis.Redis, channel: str, timeout: float = 5.0) -> None:
    """Poll the server until someone is subscribed to ``channel`` (observing server state only)."""
    deadline = time.monotonic() + timeout
    while dict(raw.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        assert time.monotonic() < deadline, f"nobody subscribed to {channel}"
        time.sleep(0.01)


# -- Celery writes, redisresults reads -----------------------------------------------------------------------------

VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, "x"]},
    datetime(2024, 3, 4, 5, 6, 7, 89, tzinfo=timezone.utc),
    Decimal("12.3400"),
    uuid.UUID("87654321-4321-8765-4321-876543218765"),
    [b"bytes", {"n": Decimal("1")}],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_celery_success_read_by_redisresults(app: celery.Celery, ours: RedisBackend, value: Any) -> None:
    tid = new_id()
    app.backend.store_result(tid, value, "SUCCESS")
    assert ours.AsyncResult(tid).get(timeout=5) == value
    assert ours.get_task_meta(tid)["status"] == "SUCCESS"


def test_celery_failure_builtin_exception(app: celery.Celery, ours: RedisBackend) -> None:
    tid = new_id()
    app.backend.mark_as_failure(tid, KeyError("missing"), traceback="Traceback: boom")
    result = ours.AsyncResult(tid)
    with pytest.raises(KeyError) as info:
        result.get(timeout=5)
    assert type(info.value) is KeyError and info.value.args == ("missing",)
    assert result.traceback == "Traceback: boom"


def test_celery_failure_custom_exception(app: celery.Celery, ours: RedisBackend) -> None:
    tid = new_id()
    app.backend.mark_as_failure(tid, InteropCustomError("custom", 7))
    with pytest.raises(InteropCustomError) as info:
        ours.AsyncResult(tid).get(timeout=5)
    assert type(info.value) is InteropCustomError and info.value.args == ("custom", 7)


def test_celery_revoked(app: celery.Celery, ours: RedisBackend) -> None:
    tid = new_id()
    app.backend.mark_as_revoked(tid, reason="terminated")
    result = ours.AsyncResult(tid)
    assert result.state == "REVOKED"
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5)


def test_celery_group_restored_by_redisresults(app: celery.Celery, ours: RedisBackend) -> None:
    ids = [new_id() for _ in range(3)]
    for i, tid in enumerate(ids):
        app.backend.store_result(tid, i, "SUCCESS")
    gid = new_id()
    app.GroupResult(gid, [app.AsyncResult(tid) for tid in ids]).save()
    group = ours.restore_group(gid)
    assert group is not None and group.id == gid
    assert [r.id for r in group.results] == ids
    assert group.join(timeout=5) == [0, 1, 2]


# -- redisresults writes, Celery reads -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_redisresults_success_read_by_celery(app: celery.Celery, ours: RedisBackend, value: Any) -> None:
    tid = new_id()
    ours.store_result(tid, value, "SUCCESS")
    assert app.AsyncResult(tid).get(timeout=5) == value
    meta = app.backend.get_task_meta(tid)
    assert meta["status"] == "SUCCESS" and meta["result"] == value


def test_redisresults_failures_read_by_celery(app: celery.Celery, ours: RedisBackend) -> None:
    builtin, custom, revoked = new_id(), new_id(), new_id()
    ours.mark_as_failure(builtin, KeyError("k"))
    ours.mark_as_failure(custom, InteropCustomError("c"))
    ours.mark_as_revoked(revoked, reason="because")
    with pytest.raises(KeyError):
        app.AsyncResult(builtin).get(timeout=5)
    with pytest.raises(InteropCustomError) as info:
        app.AsyncResult(custom).get(timeout=5)
    assert info.value.args == ("c",)
    with pytest.raises(TaskRevokedError):
        app.AsyncResult(revoked).get(timeout=5)
    assert app.backend.get_task_meta(builtin)["status"] == "FAILURE"


def test_redisresults_group_restored_by_celery(app: celery.Celery, ours: RedisBackend) -> None:
    ids = [new_id() for _ in range(3)]
    for i, tid in enumerate(ids):
        ours.mark_as_done(tid, i * 10)
    gid = new_id()
    ours.save_group(gid, ids)
    group = CeleryGroupResult.restore(gid, app=app)
    assert group is not None and group.id == gid
    assert [r.id for r in group.results] == ids
    assert group.join(timeout=5) == [0, 10, 20]


def test_missing_key_is_pending_on_both(app: celery.Celery, ours: RedisBackend) -> None:
    tid = new_id()
    assert app.AsyncResult(tid).state == "PENDING"
    assert ours.AsyncResult(tid).state == "PENDING"
    assert app.backend.get_task_meta(tid)["status"] == ours.get_task_meta(tid)["status"] == "PENDING"


# -- waking each other's waiters -----------------------------------------------------------------------------------


def _in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = error
        finally:
            done.set()

    thread = threading.Thread(target=run, name="interop-waiter", daemon=True)
    thread.start()
    return thread, outcome, done


def test_celery_waiter_woken_by_redisresults_store(
    app: celery.Celery, ours: RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    tid = new_id()
    thread, outcome, done = _in_thread(lambda: celery_get(app, tid))
    wait_subscribed(raw, f"{key_prefix}celery-task-meta-{tid}")
    ours.mark_as_done(tid, {"woken": "celery"})
    assert done.wait(10)
    thread.join(5)
    assert outcome == {"value": {"woken": "celery"}}


def test_celery_waiter_gets_redisresults_failure(
    app: celery.Celery, ours: RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    tid = new_id()
    thread, outcome, done = _in_thread(lambda: celery_get(app, tid))
    wait_subscribed(raw, f"{key_prefix}celery-task-meta-{tid}")
    ours.mark_as_failure(tid, InteropCustomError("from redisresults"))
    assert done.wait(10)
    thread.join(5)
    assert isinstance(outcome.get("error"), InteropCustomError)


def test_redisresults_waiter_woken_by_celery_store(
    app: celery.Celery, ours: RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    tid = new_id()
    thread, outcome, done = _in_thread(lambda: ours.AsyncResult(tid).get(timeout=10))
    wait_subscribed(raw, f"{key_prefix}celery-task-meta-{tid}")
    app.backend.store_result(tid, {"woken": "redisresults"}, "SUCCESS")
    assert done.wait(10)
    thread.join(5)
    assert outcome == {"value": {"woken": "redisresults"}}


# -- byte-level equality -------------------------------------------------------------------------------------------

_DATE_DONE = re.compile(rb'"date_done": "[^"]+"')


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True, "x\u00e9"]}, [Decimal("1.5"), uuid.UUID(int=1)]])
def test_success_document_is_byte_identical_modulo_date_done(
    app: celery.Celery, ours: RedisBackend, raw: redis.Redis, key_prefix: str, value: Any
) -> None:
    """The same SUCCESS stored by both is the same bytes, except the moment in date_done."""
    tid_celery, tid_ours = new_id(), new_id()
    app.backend.store_result(tid_celery, value, "SUCCESS")
    ours.store_result(tid_ours, value, "SUCCESS")
    theirs = raw.get(f"{key_prefix}celery-task-meta-{tid_celery}") or b""
    mine = raw.get(f"{key_prefix}celery-task-meta-{tid_ours}") or b""
    assert _DATE_DONE.sub(b"", theirs).replace(tid_celery.encode(), b"ID") == _DATE_DONE.sub(b"", mine).replace(
        tid_ours.encode(), b"ID"
    )
    # both dates are ISO-8601 with an offset
    for document in (theirs, mine):
        assert datetime.fromisoformat(json.loads(document)["date_done"]).utcoffset() is not None


def test_failure_document_is_byte_identical_modulo_date_done(
    app: celery.Celery, ours: RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    tid_celery, tid_ours = new_id(), new_id()
    app.backend.mark_as_failure(tid_celery, KeyError("k"))
    ours.mark_as_failure(tid_ours, KeyError("k"))
    theirs = raw.get(f"{key_prefix}celery-task-meta-{tid_celery}") or b""
    mine = raw.get(f"{key_prefix}celery-task-meta-{tid_ours}") or b""
    assert _DATE_DONE.sub(b"", theirs).replace(tid_celery.encode(), b"ID") == _DATE_DONE.sub(b"", mine).replace(
        tid_ours.encode(), b"ID"
    )
