"""ResultSet and GroupResult against a real redis-server: one deadline, completion order, one MGET."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List

import pytest

import redisresults
from redisresults import ResultTimeout
from tests.helpers import store_all, value_for, wait_stats
from tests.servers import RedisServer


@pytest.fixture
def backend(redis_server: RedisServer, key_prefix: str) -> Iterator[redisresults.RedisBackend]:
    with redisresults.RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}) as backend:
        yield backend


def test_join_has_one_overall_deadline(backend: redisresults.RedisBackend) -> None:
    ids = [f"j{i}" for i in range(5)]
    store_all(backend, ids[:3])
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as info:
        backend.ResultSet(ids).join(timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5, elapsed
    assert "2 of 5" in str(info.value)
    wait_stats(backend, pending=0, subscribed=0, channels=0)


def test_join_returns_values_in_member_order(backend: redisresults.RedisBackend) -> None:
    ids = [f"o{i}" for i in range(50)]
    result_set = backend.ResultSet(ids)
    producer = threading.Thread(target=store_all, args=(backend, list(reversed(ids))), daemon=True)
    producer.start()
    assert result_set.join(timeout=10) == [value_for(task_id) for task_id in ids]
    producer.join(10)


@pytest.mark.parametrize("method", ["as_completed", "iter_native"])
def test_results_arrive_in_completion_order(backend: redisresults.RedisBackend, method: str) -> None:
    ids = [f"c{i}" for i in range(6)]
    order = ["c3", "c0", "c5", "c1", "c4", "c2"]
    result_set = backend.ResultSet(ids)
    failures: List[BaseException] = []

    def producer() -> None:
        try:
            # store only once every member is subscribed and its key read (``settling`` counts the read in
            # flight): a result stored before the confirmation read is answered comes back in key order
            wait_stats(backend, subscribed=len(ids), settling=0)
            store_all(backend, order)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    if method == "as_completed":
        seen = [(r.id, r.get(timeout=0)) for r in result_set.as_completed(timeout=10)]
    else:
        seen = [(tid, meta["result"]) for tid, meta in result_set.iter_native(timeout=10)]
    thread.join(10)
    assert failures == []
    assert seen == [(task_id, value_for(task_id)) for task_id in order]


def test_counts_and_states(backend: redisresults.RedisBackend) -> None:
    result_set = backend.ResultSet(["a", "b", "c"])
    assert not result_set.ready() and result_set.completed_count() == 0
    assert not result_set.failed() and not result_set.successful()
    backend.mark_as_done("a", 1)
    backend.mark_as_started("b")
    assert result_set.completed_count() == 1 and not result_set.ready()
    backend.mark_as_failure("b", ValueError("bad"))
    assert result_set.failed() and not result_set.ready()
    backend.mark_as_done("c", 3)
    assert result_set.ready() and result_set.completed_count() == 2
    assert result_set.failed() and not result_set.successful()
    with pytest.raises(ValueError, match="bad"):
        result_set.join(timeout=5)
    values = result_set.join(timeout=5, propagate=False)
    assert values[0] == 1 and isinstance(values[1], ValueError) and values[2] == 3


def test_already_stored_members_need_no_subscription(backend: redisresults.RedisBackend) -> None:
    """Members stored before the join are read with one MGET: no drainer, no subscribe, no key reads by it."""
    ids = [f"s{i}" for i in range(200)]
    store_all(backend, ids)
    assert backend.ResultSet(ids).join(timeout=5) == [value_for(task_id) for task_id in ids]
    stats = backend.stats()
    assert stats["drainer_alive"] is False
    assert stats["reads"] == 0 and stats["messages"] == 0 and stats["subscribed"] == 0


def test_group_save_and_restore(backend: redisresults.RedisBackend) -> None:
    ids = [f"g{i}" for i in range(10)]
    group = backend.GroupResult("grp", ids).save()
    restored = backend.restore_group("grp")
    assert restored is not None
    assert restored.id == "grp" and [r.id for r in restored.results] == ids
    store_all(backend, ids)
    assert restored.join(timeout=5) == [value_for(task_id) for task_id in ids]
    assert group.successful() and group.completed_count() == 10
    group.delete()
    assert backend.restore_group("grp") is None
    assert backend.restore_group("never-saved") is None
