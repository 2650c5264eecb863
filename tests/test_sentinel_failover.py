"""Never lose a result across a Sentinel failover: 1,000 pending waits, a producer storing throughout, and
``SENTINEL FAILOVER`` in the middle. Each test builds its own Sentinel group (a failover moves the master)."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Dict

import pytest

import redisresults
from tests.helpers import PATIENT_RETRY, Producer, value_for, wait_stats
from tests.logs import capture_logs
from tests.servers import SentinelGroup

PENDING = 1000
# the drainer asks Sentinel where the master is about once a second (MASTER_CHECK_INTERVAL); give it margin
SETTLE = 2.0

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_failover_loses_nothing(
    fresh_sentinel_group: Callable[..., SentinelGroup], key_prefix: str, tls: bool
) -> None:
    group = fresh_sentinel_group(tls=tls)
    options: Dict[str, Any] = {
        "transport_options": {
            "master_name": group.master_name,
            "global_keyprefix": key_prefix,
            "retry_policy": PATIENT_RETRY,
        },
    }
    if tls:
        options["ssl"] = {"ssl_cert_reqs": "required", "ssl_ca_certs": group.ca_path}
    ids = [f"f{i}" for i in range(PENDING)]
    old = group.master_address()
    with redisresults.SentinelBackend(group.sentinel_url, **options) as backend, capture_logs() as logs:
        futures = {task_id: backend.AsyncResult(task_id).as_future() for task_id in ids}
        wait_stats(backend, subscribed=PENDING)
        producer = Producer(backend, ids, every=20, pause=0.12)  # ~6 s of stores around the failover
        fail_over_now = producer.at(200)
        producer.start()
        try:
            assert fail_over_now.wait(20)
            new = group.failover()
            time.sleep(SETTLE)  # observation window: the drainer and the pool must follow within it
            settled = producer.stored
        finally:
            producer.finish(60)
        assert new != old
        assert settled < PENDING - 100, "producer finished too early to check where later stores went"

        done, not_done = concurrent.futures.wait(list(futures.values()), timeout=30)
        lost = sorted(task_id for task_id, future in futures.items() if future in not_done)
        assert not lost, f"{len(lost)} results lost, e.g. {lost[:5]}"
        assert all(futures[task_id].result() == value_for(task_id) for task_id in ids)
        stats = wait_stats(backend, pending=0, subscribed=0)
        assert stats["reconnects"] >= 1  # the drainer moved to the new master
        assert stats["drainer_alive"] and stats["failure"] is None
        assert not [entry for entry in logs if entry["event"] in ("callback_failed", "drainer_died")]

    new_master = group.node_at(new).client()
    try:
        assert new_master.info("replication")["role"] == "master"
        later = ids[settled + 1 :]
        keys = [f"{key_prefix}celery-task-meta-{task_id}" for task_id in later]
        assert new_master.exists(*keys) == len(keys), "stores after the failover did not reach the new master"
    finally:
        new_master.close()
