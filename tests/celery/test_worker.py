"""Every client path of a Celery app against real ``celery worker`` processes, in each deployment:
drop-in client with a drop-in worker (prefork and threads pools), with a stock worker, and a stock client with a
drop-in worker. Whatever the mix, Celery's semantics and wire format hold.
"""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from typing import Any, List

import celery
import pytest
from celery import chain, chord, group
from celery.exceptions import TaskRevokedError
from celery.result import GroupResult, ResultSet

from redisresults._drainer import LINGER
from redisresults.celery import CeleryBackend
from tests.celery.tasks import TaskFailure
from tests.celery.workers import CeleryWorker

TIMEOUT = 20.0
TASK_TIME = 0.2  # a task still running while a test looks at its subscription
Deployment = tuple[celery.Celery, CeleryWorker]


def s(app: celery.Celery, name: str, *args: Any, **options: Any) -> Any:
    return app.signature(f"rr.{name}", args=args, **options)


def test_delay_get_and_state(deployment: Deployment) -> None:
    app, worker = deployment
    result = s(app, "add").delay(2, 3)
    assert result.get(timeout=TIMEOUT) == 5
    assert result.state == "SUCCESS" and result.status == "SUCCESS"
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == 5 and result.info == 5
    assert result.date_done is not None
    assert result.name == "rr.add" and result.args == [2, 3]  # result_extended fields, written by the worker
    assert result.worker == worker.nodename


def test_failure_keeps_its_exception_type(deployment: Deployment) -> None:
    app, _ = deployment
    result = s(app, "fail").delay("boom")
    with pytest.raises(TaskFailure, match="boom"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE" and result.failed()
    assert isinstance(result.get(timeout=TIMEOUT, propagate=False), TaskFailure)
    assert "TaskFailure" in (result.traceback or "")


def test_on_message_sees_every_state_in_order(deployment: Deployment) -> None:
    app, _ = deployment
    seen: List[Any] = []
    result = s(app, "progress").delay(3, 0.02)
    assert result.get(timeout=TIMEOUT, on_message=lambda meta: seen.append((meta["status"], meta["result"]))) == 3
    assert seen == [("PROGRESS", {"step": 0}), ("PROGRESS", {"step": 1}), ("PROGRESS", {"step": 2}), ("SUCCESS", 3)]


def test_then_fires_once_ready(deployment: Deployment) -> None:
    app, _ = deployment
    fired = threading.Event()
    values: List[Any] = []
    result = s(app, "add").delay(20, 22)
    result.then(lambda res: (values.append(res.result), fired.set()))
    if not isinstance(app.backend, CeleryBackend):
        result.get(timeout=TIMEOUT)  # stock Celery fires callbacks only while some thread drains
    assert fired.wait(TIMEOUT)  # the drop-in's callback loop fires them on its own
    assert values == [42]


def test_group_get_join_and_iter_native(deployment: Deployment) -> None:
    app, _ = deployment
    res = group(s(app, "add", i, i) for i in range(8))()
    assert res.get(timeout=TIMEOUT) == [2 * i for i in range(8)]
    assert res.join(timeout=TIMEOUT) == [2 * i for i in range(8)]
    assert res.join_native(timeout=TIMEOUT) == [2 * i for i in range(8)]
    assert res.ready() and res.successful() and res.completed_count() == 8
    assert sorted(meta["result"] for _, meta in res.iter_native(timeout=TIMEOUT)) == [2 * i for i in range(8)]


def test_result_set_with_a_failure(deployment: Deployment) -> None:
    app, _ = deployment
    rs = ResultSet([s(app, "fail").delay("one"), s(app, "add").delay(1, 1)], app=app)
    with pytest.raises(TaskFailure):
        rs.get(timeout=TIMEOUT)
    values = rs.get(timeout=TIMEOUT, propagate=False)
    assert isinstance(values[0], TaskFailure) and values[1] == 2
    assert rs.failed() and rs.completed_count() == 1


def test_chain(deployment: Deployment) -> None:
    app, _ = deployment
    assert chain(s(app, "add", 1, 1), s(app, "add", 2), s(app, "add", 3))().get(timeout=TIMEOUT) == 7


def test_chain_with_a_failing_parent(deployment: Deployment) -> None:
    app, _ = deployment
    result = chain(s(app, "add", 1, 1), s(app, "fail"), s(app, "add", 3))()
    with pytest.raises(TaskFailure):
        result.get(timeout=TIMEOUT)


def test_chord(deployment: Deployment) -> None:
    app, _ = deployment
    assert chord(s(app, "add", i, i) for i in range(5))(s(app, "xsum")).get(timeout=TIMEOUT) == 20


def test_chord_with_a_group_in_its_header(deployment: Deployment) -> None:
    """A header member that is itself a group: the client saves the header and the worker joins it natively."""
    app, _ = deployment
    header = [group(s(app, "add", 1, 1), s(app, "add", 2, 2)), s(app, "add", 3, 3)]
    assert chord(header)(s(app, "xsum")).get(timeout=TIMEOUT) == 12


def test_nested_chords(deployment: Deployment) -> None:
    app, _ = deployment
    inner = chord([s(app, "add", 1, 1), s(app, "add", 2, 2)], s(app, "xsum"))
    assert chord([inner, s(app, "add", 3, 3)])(s(app, "xsum")).get(timeout=TIMEOUT) == 12


def test_chord_with_a_failing_header_task(deployment: Deployment) -> None:
    app, _ = deployment
    result = chord([s(app, "add", 1, 1), s(app, "fail", "header")])(s(app, "xsum"))
    with pytest.raises(Exception, match="header"):
        result.get(timeout=TIMEOUT)


def test_group_result_save_and_restore(deployment: Deployment) -> None:
    app, _ = deployment
    res = group(s(app, "add", i, 1) for i in range(3))()
    res.save()
    restored = GroupResult.restore(res.id, app=app)
    assert restored is not None and [r.id for r in restored.results] == [r.id for r in res.results]
    assert restored.get(timeout=TIMEOUT) == [1, 2, 3]
    restored.delete()
    assert GroupResult.restore(res.id, app=app) is None


def test_revoked_before_it_runs(deployment: Deployment) -> None:
    app, worker = deployment
    task_id = str(uuid.uuid4())
    app.control.revoke(task_id, reply=True, timeout=5, destination=[worker.nodename])
    result = s(app, "add").apply_async((1, 1), task_id=task_id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"


def test_retry_then_success(deployment: Deployment) -> None:
    app, _ = deployment
    assert s(app, "retry_once").delay().get(timeout=TIMEOUT) == 1


def test_pickled_result_waits_through_the_shared_core(deployment: Deployment) -> None:
    app, _ = deployment
    result = s(app, "add").delay(4, 4)
    clone = pickle.loads(pickle.dumps(result))
    assert clone.get(timeout=TIMEOUT) == 8
    if isinstance(app.backend, CeleryBackend):
        assert type(clone.backend) is type(app.backend)
        assert clone.backend.core() is app.backend.core()


def test_forget(deployment: Deployment) -> None:
    app, _ = deployment
    result = s(app, "add").delay(1, 2)
    assert result.get(timeout=TIMEOUT) == 3
    result.forget()
    assert app.backend.client.get(app.backend.get_key_for_task(result.id)) is None
    assert app.AsyncResult(result.id).state == "PENDING"


def test_ignore_result_takes_no_subscription(deployment: Deployment) -> None:
    app, _ = deployment
    before = set(app.backend.client.pubsub_channels())
    result = s(app, "ignored").delay()
    assert result.ignored and result.get(timeout=TIMEOUT) is None
    if isinstance(app.backend, CeleryBackend):
        assert app.backend.stats()["channels"] == 0  # the drop-in asks its drainer to subscribe synchronously
    assert set(app.backend.client.pubsub_channels()) - before == set()


@pytest.mark.parametrize("worker_fixture", ["dropin_prefork", "stock_prefork"])
def test_subscribed_from_delay_until_get_or_forget_returns(
    request: pytest.FixtureRequest, make_app: Any, broker_url: str, dropin_url: str, worker_fixture: str
) -> None:
    """What Celery's own integration tests check of its Redis backend (test_asyncresult_get/forget_cancels_
    subscription): the channel is in PUBSUB CHANNELS once delay() returns (its SUBSCRIBE went out before the
    task), and unsubscribed once get() or forget() has returned. The drainer sends that UNSUBSCRIBE, so what is
    checked is that it is on the wire: Redis may still run a command of another connection first when both arrive
    in one turn of its event loop. get() has it after a quiet LINGER (a stream's leave within LINGER)."""
    worker = request.getfixturevalue(worker_fixture)
    app = make_app(dropin_url, broker_url, worker.queue)
    before = set(app.backend.client.pubsub_channels())

    def left_subscribed() -> tuple[int, int]:
        stats = app.backend.stats()
        return stats["subscribed"], stats["unsubscribing"]  # neither subscribed nor lingering: sent

    for attempt in range(5):
        time.sleep(2 * LINGER)  # the precondition, not a synchronisation: no UNSUBSCRIBE went out just before
        result = s(app, "sleep").delay(TASK_TIME)  # still running when checked: its result would end the hold
        assert set(app.backend.client.pubsub_channels()) - before == {app.backend.get_key_for_task(result.id)}
        assert result.get(timeout=TIMEOUT) == TASK_TIME
        assert left_subscribed() == (0, 0), attempt
        forgotten = s(app, "sleep").delay(TASK_TIME)
        assert set(app.backend.client.pubsub_channels()) - before == {app.backend.get_key_for_task(forgotten.id)}
        forgotten.forget()
        assert left_subscribed() == (0, 0), attempt
