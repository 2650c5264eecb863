"""The tasks of the Celery figures' worker (``celery -A`` this module ``worker``, started by ``_celery_worker``).

Imported only by that worker process, never by ``redisresults.bench``: it needs Celery, and it holds the one
module-level object a Celery worker needs (its app). Configured from the environment set by
``_celery_worker.CeleryWorker`` (broker and backend URLs are never on a command line). Clients send by name
(``app.signature("rrbench.echo")``), so the bench process never imports this module.
"""

from __future__ import annotations

import os
import time

from celery import Celery  # type: ignore  # untyped, or not installed

from ._celery_worker import BACKEND_ENV, BROKER_ENV, NAME_ENV, PREFIX_ENV, QUEUE_ENV

_NAME = os.environ.get(NAME_ENV) or None
_PREFIX = {"global_keyprefix": os.environ[PREFIX_ENV]} if os.environ.get(PREFIX_ENV) else {}

app = Celery("rrbench", broker=os.environ.get(BROKER_ENV, "memory://"), backend=os.environ.get(BACKEND_ENV) or None)
app.conf.update(
    task_default_queue=os.environ.get(QUEUE_ENV, "celery"),
    redis_client_name=_NAME,
    broker_transport_options={**_PREFIX, "client_name": _NAME},
    result_backend_transport_options=_PREFIX,
    result_expires=600,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="rrbench.echo")  # type: ignore  # untyped decorator
def echo(value: int) -> int:
    """The trivial task of the round-trip and fan-in figures."""
    return value


@app.task(name="rrbench.stamp")  # type: ignore  # untyped decorator
def stamp(seconds: float) -> float:
    """Sleeps (so the client is already waiting), then returns the wall clock at its end: the gevent figure
    subtracts it from the moment ``get()`` returned (same machine, same clock)."""
    time.sleep(seconds)
    return time.time()
