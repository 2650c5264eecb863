"""Shared helpers for the waiting/reconnect tests: server-side observations and producers.

Everything here observes real servers (``CLIENT LIST``) or stores real results; nothing mocks Redis.
Polling is used only to observe state that has no event to wait on (server client lists, stats counters).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

import redis

import redisresults
from tests.polling import poll

T = TypeVar("T")

#: the retry policy the outage/failover tests give their producers: keep retrying for up to 30 s
PATIENT_RETRY: Dict[str, float] = {
    "max_retries": 100,
    "interval_start": 0.1,
    "interval_step": 0.1,
    "interval_max": 0.3,
    "timeout": 30,
}


def wait_in_thread(
    backend: redisresults.RedisBackend, task_id: str, *, timeout: float = 10.0, name: str = "test-waiter"
) -> tuple[threading.Thread, Dict[str, Any], threading.Event]:
    """Start ``get(timeout)`` in a thread; the outcome dict gets "value" or "error", then the event is set."""
    outcome: Dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = backend.AsyncResult(task_id).get(timeout=timeout)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = error
        finally:
            done.set()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, outcome, done


def value_for(task_id: str) -> Dict[str, Any]:
    """The result a producer stores for ``task_id``: derived from the id so every waiter can check it."""
    return {"id": task_id, "n": sum(map(ord, task_id))}


def wait_stats(
    backend: redisresults.RedisBackend, timeout: float = 10.0, **expected: Any
) -> Dict[str, Any]:
    """Poll ``backend.stats()`` until every ``name=value`` holds (unsubscribing is asynchronous)."""
    last: Dict[str, Any] = {}

    def probe() -> Optional[Dict[str, Any]]:
        nonlocal last
        last = backend.stats()
        return last if all(last.get(k) == v for k, v in expected.items()) else None

    try:
        return poll(probe, timeout=timeout, what=f"stats {expected}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last stats: {last}") from None


def wait_stats_at_least(backend: redisresults.RedisBackend, timeout: float = 10.0, **minimum: int) -> Dict[str, Any]:
    """Poll ``backend.stats()`` until every counter ``name`` is at least ``value``."""
    last: Dict[str, Any] = {}

    def probe() -> Optional[Dict[str, Any]]:
        nonlocal last
        last = backend.stats()
        return last if all(last.get(k, 0) >= v for k, v in minimum.items()) else None

    try:
        return poll(probe, timeout=timeout, what=f"stats at least {minimum}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last stats: {last}") from None


def clients_named(client: redis.Redis, name: str, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    """``CLIENT LIST [TYPE kind]`` entries whose connection name is ``name`` (set with ``client_name``)."""
    entries = client.client_list(_type=kind) if kind else client.client_list()
    return [entry for entry in entries if entry.get("name") == name]


def pubsub_subscribers(client: redis.Redis, name: str) -> List[Dict[str, Any]]:
    """The ``CLIENT LIST TYPE pubsub`` entries of connections named ``name``."""
    return clients_named(client, name, "pubsub")


def kill_pubsub(client: redis.Redis, name: str) -> int:
    """``CLIENT KILL TYPE pubsub ID <id>`` for each Pub/Sub connection named ``name``: only ours, on shared servers."""
    killed = 0
    for entry in pubsub_subscribers(client, name):
        killed += int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ID", entry["id"]))
    return killed


def store_all(
    backend: redisresults.RedisBackend,
    task_ids: Iterable[str],
    *,
    every: int = 0,
    pause: float = 0.0,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Store ``value_for(id)`` for each id in order; sleep ``pause`` after every ``every`` stores (pacing)."""
    for count, task_id in enumerate(task_ids, 1):
        backend.mark_as_done(task_id, value_for(task_id))
        if progress is not None:
            progress(count)
        if every and pause and count % every == 0:
            time.sleep(pause)


def produce_in_process(url: str, options: Dict[str, Any], task_ids: Sequence[str]) -> None:
    """Process target: build a backend of its own from ``url`` and store every id, in order."""
    with redisresults.backend_from_url(url, **options) as backend:
        store_all(backend, task_ids)


class Producer(threading.Thread):
    """A thread storing results in order, recording errors instead of dying silently."""

    def __init__(self, backend: redisresults.RedisBackend, task_ids: Sequence[str], *, every: int = 0,
                 pause: float = 0.0) -> None:
        super().__init__(name="test-producer", daemon=True)
        self.backend = backend
        self.task_ids = list(task_ids)
        self.every = every
        self.pause = pause
        self.stored = 0
        self.error: Optional[BaseException] = None
        self.milestones: Dict[int, threading.Event] = {}

    def at(self, count: int) -> threading.Event:
        """An event set once ``count`` results are stored (create before ``start``)."""
        return self.milestones.setdefault(count, threading.Event())

    def _progress(self, count: int) -> None:
        self.stored = count
        event = self.milestones.get(count)
        if event is not None:
            event.set()

    def run(self) -> None:
        try:
            store_all(self.backend, self.task_ids, every=self.every, pause=self.pause, progress=self._progress)
        except BaseException as error:  # reported by finish()
            self.error = error
        finally:
            for event in self.milestones.values():
                event.set()

    def finish(self, timeout: float) -> None:
        """Join, and re-raise whatever the producer failed with."""
        self.join(timeout)
        assert not self.is_alive(), f"producer still running after {timeout}s ({self.stored} stored)"
        if self.error is not None:
            raise AssertionError(f"producer failed after {self.stored} stores: {self.error!r}") from self.error
