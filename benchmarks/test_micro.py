"""Per-call costs with pytest-benchmark's own statistics: ours and raw redis-py in the same group.

The raw side is the bench's own baseline (``redisresults.bench._common``): the same SET+PUBLISH and
the same documents the figures compare against.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Iterator

import pytest
import redis

from redisresults import RedisBackend
from redisresults.bench._common import cleanup, make_backend, new_prefix, raw_client, raw_payload, raw_store, task_key


@pytest.fixture(scope="module")
def pair(bench_url: str) -> Iterator[tuple[RedisBackend, redis.Redis, str]]:
    """A backend without a result cache (every read reaches Redis) and a raw client on the same server."""
    prefix = new_prefix()
    backend = make_backend(bench_url, prefix, "rrbench-micro", result_cache_max=0)
    raw = raw_client(backend, "rrbench-micro-raw")
    yield backend, raw, prefix
    cleanup(raw, prefix)
    backend.close()
    raw.close()


@pytest.mark.benchmark(group="store: SET+PUBLISH of a small result")
def test_store_ours(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    backend, _, _ = pair
    counter = itertools.count()
    benchmark(lambda: backend.mark_as_done(f"store-{next(counter)}", {"answer": 42}))


@pytest.mark.benchmark(group="store: SET+PUBLISH of a small result")
def test_store_raw(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    _, raw, prefix = pair
    counter = itertools.count()

    def store() -> None:
        task_id = f"raw-{next(counter)}"
        raw_store(raw, task_key(prefix, task_id), raw_payload(task_id, 42))

    benchmark(store)


@pytest.mark.benchmark(group="read: get() of one stored result")
def test_read_ours(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    backend, _, _ = pair
    backend.mark_as_done("read-me", {"answer": 42})
    benchmark(lambda: backend.AsyncResult("read-me").get(timeout=10))  # a fresh handle, no cache


@pytest.mark.benchmark(group="read: get() of one stored result")
def test_read_raw(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    _, raw, prefix = pair
    key = task_key(prefix, "read-me-raw")
    raw.set(key, raw_payload("read-me-raw", 42), ex=600)
    benchmark(lambda: json.loads(raw.get(key)))  # type: ignore[arg-type]
