"""Per-call costs with pytest-benchmark's own statistics: ours and raw redis-py in the same group."""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import pytest
import redis

from redisresults import RedisBackend, _bench


@pytest.fixture(scope="module")
def pair(bench_url: str) -> Iterator[tuple[RedisBackend, redis.Redis, str]]:
    prefix = _bench._prefix()
    backend = _bench._backend(bench_url, prefix, "rrbench-micro")
    raw = _bench._raw_client(backend, "rrbench-micro-raw")
    yield backend, raw, prefix
    _bench._cleanup(raw, prefix)
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
        _bench._raw_store(raw, f"{prefix}celery-task-meta-{task_id}".encode(), _bench._raw_payload(task_id, 42))

    benchmark(store)


@pytest.mark.benchmark(group="read: one stored result")
def test_read_ours(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    backend, _, _ = pair
    backend.mark_as_done("read-me", {"answer": 42})
    backend.result_consumer.forget("read-me")
    benchmark(lambda: backend.get_many_metas(["read-me"]))  # uncached: one GET + decode + validation


@pytest.mark.benchmark(group="read: one stored result")
def test_read_raw(benchmark: Any, pair: tuple[RedisBackend, redis.Redis, str]) -> None:
    import json

    _, raw, prefix = pair
    key = f"{prefix}celery-task-meta-read-me-raw".encode()
    raw.set(key, _bench._raw_payload("read-me-raw", 42), ex=600)
    benchmark(lambda: json.loads(raw.get(key)))  # type: ignore[arg-type]
