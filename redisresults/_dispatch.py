"""Handing what a drainer received to the router: decode, deliver to futures and watchers, count.

Shared by both drainers (one connection, or one per cluster primary): a published message or a
key read becomes a meta, the router says who waits for it, and the futures are settled outside
every lock. Confined to the drainer's thread, like the drainer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ._exceptions import DecodeError, DrainerError, RedisResultsError
from ._future import Resolvable, settle
from ._link import Link, Meta
from ._log import get_logger
from ._meta import READY_STATES
from ._router import NO_DELIVERY, Delivery, Router

log = get_logger("redisresults.drainer")

#: ``message`` returns this for a reference to a result too large to publish: read the key instead.
READ_KEY = object()
# In a burst, the drainer lets the waiters it woke run at the first settled future and then once YIELD_EVERY
# more futures were settled. Woken threads that pile up behind the drainer each wait for the GIL (a forced
# switch every 5 ms), and that system time competes with the stores: see README, "Benchmarks".
YIELD_EVERY = 50


def _yield_now() -> None:
    """Give up the GIL (threads) or switch to the hub (gevent) for a moment."""
    time.sleep(0)


class Dispatch:
    """Decodes and delivers for a drainer; ``counters`` is the drainer's own dict (messages, reads...)."""

    def __init__(
        self,
        link: Link,
        router: Router,
        counters: dict[str, int],
        before_yield: Optional[Callable[[list[bytes]], None]] = None,
    ) -> None:
        self._link = link
        self._router = router
        self.counters = counters
        self._yielded = False  # since new_batch(): the first settled future yields at once
        self._unyielded = 0  # futures settled since the last yield
        # Called with the channels whose interest ready metas ended before the batch's first yield, right before
        # it (the one-connection drainer unsubscribes them then, when due: after a quiet spell). Later in a batch
        # the UNSUBSCRIBEs linger anyway, so nothing is collected: a stream pays one flag test per result.
        self._before_yield = before_yield
        self._ended: list[bytes] = []

    def message(self, channel: bytes, data: Any) -> Optional[object]:
        """A published payload; ``READ_KEY`` when it only announces a stored result too large to publish."""
        self.counters["messages"] += 1
        try:
            meta = self._link.decode_message(channel, data)
        except RedisResultsError as error:
            self.counters["skipped_messages"] += 1
            size = len(data) if isinstance(data, (bytes, str)) else 0
            log.warning("message_skipped", channel=channel.decode("utf-8", "replace"), size=size, reason=str(error))
            return None
        if meta is None:
            return READ_KEY
        delivery = self._router.deliver(channel, meta)
        if not self._yielded and delivery.ended and self._before_yield is not None:
            self._ended.append(channel)
        self.woke(self.deliver(delivery, meta))
        return None

    def found(self, chunk: Sequence[bytes], values: Sequence[Optional[bytes]], recovering: set[bytes]) -> list[bytes]:
        """Stored values read for ``chunk``; returns the channels whose waiters got a ready result."""
        channels: list[bytes] = []
        metas: list[Meta] = []
        for channel, raw in zip(chunk, values):
            if raw is None:
                continue
            try:
                meta = self._link.decode_stored(channel, raw)
            except (DecodeError, RedisResultsError) as error:
                self.fail([channel], error)
                continue
            if meta.get("status") in READY_STATES:
                channels.append(channel)
                metas.append(meta)
        if not channels:
            return []
        deliveries = self._router.deliver_many(channels, metas)  # one lock for the whole read
        resolved: list[bytes] = []
        for index, channel in enumerate(channels):
            delivery, deliveries[index] = deliveries[index], NO_DELIVERY  # not held here once settled
            if not self._yielded and delivery.ended and self._before_yield is not None:
                self._ended.append(channel)
            if delivery.futures:
                resolved.append(channel)
                if channel in recovering:
                    self.counters["recovered"] += 1
            settled = self.deliver(delivery, metas[index])
            del delivery
            self.woke(settled)
        return resolved

    def crashed(self, error: BaseException) -> str:
        """The drainer died of ``error``: every waiter (and every later wait) gets a DrainerError with the cause,
        instead of hanging. Returns the failure as ``stats()`` reports it."""
        log.error("drainer_died", error=repr(error))
        failure = DrainerError(f"the result drainer stopped: {error!r}")
        failure.__cause__ = error
        self.settle(self._router.close(failure), error=failure)
        return repr(error)

    def fail(self, channels: Sequence[bytes], error: BaseException) -> None:
        self.settle(self._router.fail(channels), error=error)

    def deliver(self, delivery: Delivery, meta: Meta) -> int:
        """Watchers, then futures; returns how many futures were settled (the caller then calls ``woke``)."""
        # Watchers first, as Celery calls on_message before it resolves: a waiter woken by this meta finds
        # its on_message already handed the same meta.
        for watcher in delivery.watchers:
            try:
                watcher(meta)
            except Exception as error:  # a watcher only enqueues; it must never stop the drainer
                log.error("watcher_failed", error=repr(error))
        if delivery.futures:
            settle(delivery.futures, meta, None, self._listener_failed)
        return len(delivery.futures)

    def new_batch(self) -> None:
        """A drainer starts handling what became readable: the first future it settles yields at once."""
        self._yielded = False
        self._unyielded = 0
        self._ended.clear()  # any left reach the drainer as the router's changes on its next step

    def end_batch(self) -> None:
        """The drainer handled what was readable: channels ended since the last yield go to ``before_yield``
        now (a result that arrived before anyone waited on it leaves nothing subscribed behind it either)."""
        if self._ended:
            assert self._before_yield is not None
            ended, self._ended = self._ended, []
            self._before_yield(ended)

    def woke(self, settled: int) -> None:
        """``settled`` futures were just settled: let their waiters run (gevent: yield to the hub) at the first
        of a batch and every ``YIELD_EVERY`` after. Called with no frame of this drainer holding the settled
        futures: what their waiters drop meanwhile is freed at once."""
        if not settled:
            return
        self._unyielded += settled
        if not self._yielded or self._unyielded >= YIELD_EVERY:
            self._yielded = True
            self._unyielded = 0
            self.end_batch()
            _yield_now()

    def settle(
        self, futures: list[Resolvable], meta: Optional[Meta] = None, error: Optional[BaseException] = None
    ) -> None:
        settle(futures, meta, error, on_listener_error=self._listener_failed)

    def _listener_failed(self, error: BaseException) -> None:
        log.error("listener_failed", error=repr(error))
