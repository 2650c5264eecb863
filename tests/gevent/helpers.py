"""Shared pieces of the gevent tests: a hub heartbeat, server-side observations, subprocess runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Type

import gevent
import redis

from tests.polling import poll

ROOT = Path(__file__).resolve().parents[2]
TICK = 0.01


class Heartbeat:
    """A greenlet ticking every 10 ms; the longest gap between ticks shows whether anything blocked the hub."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._stop = False
        self._greenlet: Optional[gevent.Greenlet] = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop:
            gevent.sleep(TICK)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    def __enter__(self) -> Heartbeat:
        self._greenlet = gevent.spawn(self._run)
        gevent.sleep(0)
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self._stop = True
        assert self._greenlet is not None
        self._greenlet.join(timeout=5)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll server-observable state (never used to synchronise our own code) until truthy, or fail."""
    return poll(lambda: predicate() or None, timeout=timeout, what=what, interval=0.02)


def clients_named(client: redis.Redis, name: str, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    """CLIENT LIST entries carrying ``name`` (``kind="pubsub"`` for CLIENT LIST TYPE pubsub)."""
    return [entry for entry in client.client_list(_type=kind) if entry.get("name") == name]


def run_python(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh, *unpatched* interpreter with the checkout importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def channel(key_prefix: str, task_id: str) -> bytes:
    """The Pub/Sub channel (= key) of a task, per Celery's rule: the prefix already ends in ``:``."""
    return f"{key_prefix}celery-task-meta-{task_id}".encode()


def wait_subscribed(client: redis.Redis, name: str, channels: int, timeout: float = 30) -> List[Dict[str, Any]]:
    """Wait until Redis itself counts ``channels`` subscriptions on our Pub/Sub connection(s)."""

    def subscribers() -> List[Dict[str, Any]]:
        found = clients_named(client, name, "pubsub")
        return found if sum(int(entry["sub"]) for entry in found) == channels else []

    return wait_until(subscribers, timeout, f"{channels} subscriptions on the server")  # type: ignore[no-any-return]
