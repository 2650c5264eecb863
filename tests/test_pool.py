"""A full pool is back-pressure: calls wait for a free connection, the drainer never notices (real server)."""

from __future__ import annotations

import threading
import uuid
from typing import List

import pytest
import redis

import redisresults
from redisresults._subscriber import checkout
from tests.helpers import clients_named, value_for
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(60)


def test_tiny_pool_under_load_is_back_pressure_not_reconnects(redis_server: RedisServer, key_prefix: str) -> None:
    name = f"rr-pool-{uuid.uuid4().hex[:8]}"
    backend = redisresults.RedisBackend(
        redis_server.url, max_connections=1, client_name=name, transport_options={"global_keyprefix": key_prefix}
    )
    admin = redis_server.client()
    ids = [f"bp-{i}" for i in range(300)]
    futures = [backend.AsyncResult(task_id).as_future() for task_id in ids]
    errors: List[BaseException] = []

    def store(mine: List[str]) -> None:
        try:
            for task_id in mine:
                backend.mark_as_done(task_id, value_for(task_id))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    try:
        storers = [threading.Thread(target=store, args=(ids[i::16],)) for i in range(16)]
        for thread in storers:
            thread.start()
        for thread in storers:
            thread.join(30)
        assert errors == []
        assert [f.result(timeout=20) for f in futures] == [value_for(t) for t in ids]
        stats = backend.stats()
        assert stats["reconnects"] == 0 and stats["last_error"] is None
        # one pooled connection plus the drainer's Pub/Sub and key-reading ones: max_connections + 2
        assert len(clients_named(admin, name)) <= 3
    finally:
        backend.close()
        admin.close()


def test_pool_timeout_is_not_a_connection_error(redis_server: RedisServer) -> None:
    backend = redisresults.RedisBackend(
        redis_server.url, max_connections=1, transport_options={"retry_policy": {"timeout": 0.2}}
    )
    try:
        held = checkout(backend.client.connection_pool)  # the only connection, checked out
        try:
            with pytest.raises(redisresults.PoolTimeout, match="no free Redis connection") as caught:
                backend.mark_as_done("t", 1)
            assert not isinstance(caught.value, (ConnectionError, redis.exceptions.ConnectionError))
        finally:
            backend.client.connection_pool.release(held)
        backend.mark_as_done("t", 1)  # once it is free again, the call goes through
        assert backend.AsyncResult("t").get(timeout=5) == 1
        assert backend.stats()["reconnects"] == 0
    finally:
        backend.close()
