"""The tasks the test workers run (``celery -A tests.celery.tasks worker``), configured from the environment.

Clients in the test process do not import this app: they send by name (``app.signature("rr.add", ...)``), so one
process can hold drop-in and stock client apps side by side. ``TaskFailure`` is importable by both sides, so a
failure is rebuilt with its own class.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

app = Celery(
    "rrtests",
    broker=os.environ.get("RR_CELERY_BROKER", "memory://"),
    backend=os.environ.get("RR_CELERY_BACKEND") or None,
)
app.conf.update(
    task_default_queue=os.environ.get("RR_CELERY_QUEUE", "celery"),
    result_extended=True,
    result_compression=os.environ.get("RR_CELERY_COMPRESSION") or None,
    redis_client_name=os.environ.get("RR_CELERY_CLIENT_NAME") or None,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_chord_join_timeout=10.0,
)


class TaskFailure(Exception):
    """Raised by ``rr.fail``; the client rebuilds it as this class (its module is imported there)."""


@app.task(name="rr.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="rr.xsum")
def xsum(values: Any) -> int:
    """Sums nested lists (a nested chord's header hands the body a list of lists)."""
    if isinstance(values, (list, tuple)):
        return sum(xsum(value) for value in values)
    return int(values)


@app.task(name="rr.fail")
def fail(message: str) -> None:
    raise TaskFailure(message)


@app.task(name="rr.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="rr.progress", bind=True)
def progress(self: Any, steps: int, pause: float = 0.0, first_pause: float = 0.3) -> int:
    """``update_state(PROGRESS)`` ``steps`` times (after ``first_pause``, so the client is waiting), then return."""
    time.sleep(first_pause)
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"step": step})
        time.sleep(pause)
    return steps


@app.task(name="rr.retry_once", bind=True, max_retries=3)
def retry_once(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=0.05)
    return int(self.request.retries)


@app.task(name="rr.big")
def big(size: int) -> str:
    return "x" * size


@app.task(name="rr.ignored", ignore_result=True)
def ignored() -> int:
    return 1
