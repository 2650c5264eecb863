"""The ``result_consumer`` Celery's RedisBackend expects, with no Pub/Sub connection of its own.

Celery's code and its tests call ``backend.result_consumer.consume_from/cancel_for/drain_events/on_after_fork`` and
``result_consumer.drainer.start/stop``. Here these forward to the process's shared core, whose background drainer
does the reading; nothing ever drains in the caller's thread.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Protocol

from celery.backends.asynchronous import BaseResultConsumer  # type: ignore  # untyped, or not installed

from ._core import Core

#: How long ``delay()`` waits for the drainer to send the task's SUBSCRIBE (see ``consume_from``).
SUBSCRIBE_WAIT = 1.0


class HasCore(Protocol):
    """What the shim needs of its backend (``CeleryBackend``)."""

    def core(self) -> Core: ...

    def existing_core(self) -> Optional[Core]: ...


class IdleDrainer:
    """Stands in for Celery's drainer (a greenlet under gevent): the core's drainer runs on its own."""

    def start(self) -> None:
        """Nothing to start: the core starts its drainer on first use."""

    def stop(self) -> None:
        """Nothing to stop here: ``redisresults.celery.close_all()`` closes the cores."""

    def drain_events_until(self, p: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        raise NotImplementedError("the redisresults drop-in waits on its own drainer; use AsyncResult.get()")


class ResultConsumer(BaseResultConsumer):  # type: ignore[misc]
    """Forwards subscription requests to the shared core (see the module docstring)."""

    backend: HasCore

    def __init__(self, backend: HasCore, *args: Any, **kwargs: Any) -> None:
        super().__init__(backend, *args, **kwargs)
        self.drainer = IdleDrainer()

    def start(self, initial_task_id: str, **kwargs: Any) -> None:
        self.consume_from(initial_task_id)

    def consume_from(self, task_id: str) -> None:
        """Subscribe to ``task_id`` ahead of a wait (Celery does this for every task it sends, before publishing
        it). Celery sends the SUBSCRIBE in the calling thread, so the channel is in PUBSUB CHANNELS once
        ``delay()`` returns; here the drainer sends it, and this waits until it has (at most ``SUBSCRIBE_WAIT``,
        not at all while Redis is unreachable). Before the publish, as Celery's: waiting after it instead (which
        would overlap the broker's round trip) lets a fast worker finish a chord's first header task before
        Celery resets the chord's counter ahead of publishing the last one (``test_reapplying_frozen_chord_...``)."""
        core = self.backend.core()
        core.table.flush()
        core.start_loop()  # so that dropping the last handle unsubscribes even if nothing else happens later
        core.consumer().consume_from(task_id).wait(SUBSCRIBE_WAIT)

    def cancel_for(self, task_id: str) -> None:
        """Drop the ``consume_from`` hold on ``task_id`` unless a result object still waits on it. Idempotent, and
        safe from a finalizer: it never blocks (the core's callback loop, or the next ordinary call, applies it)."""
        core = self.backend.existing_core()
        if core is not None:
            core.table.cancel(task_id)

    def drain_events(self, timeout: Optional[float] = None) -> None:
        """The core's drainer reads in the background: this only lets ``timeout`` pass, so loops built on it
        keep their pace."""
        if timeout:
            time.sleep(timeout)

    def stop(self) -> None:
        """Nothing to stop per backend object: the core is shared by the process."""

    def on_after_fork(self) -> None:
        """A forked child builds its own core on first use (the registry is keyed by pid)."""

    def on_state_change(self, meta: dict[str, Any], message: Any) -> None:
        """Not used: the core delivers results to the waiting objects itself."""
