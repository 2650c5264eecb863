"""The router: who waits on which channel, and the cache of ready metas. Pure data, one lock.

Every method only edits the table under the lock and *returns* the work to do (futures to
resolve, watchers to call, whether the drainer must be woken); the caller does that work after
the lock is released (httpcore's pool is the model). No I/O and no callback ever runs under it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple, Optional, Union

import cachetools

from ._exceptions import DrainerError
from ._future import Resolvable
from ._meta import READY_STATES
from ._sent import SentTickets

Meta = dict[str, Any]
Watcher = Callable[[Meta], None]


class _Interest:
    """Interest in one channel: waiting futures, ``consume_from`` holds and every-message watchers."""

    __slots__ = ("_futures", "holds", "task_id", "watchers")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        # One waiter is the common case: held bare, a list only from the second on (thousands may be pending).
        self._futures: Union[Resolvable, list[Resolvable], None] = None
        self.holds = 0
        self.watchers: tuple[Watcher, ...] = ()  # rare: a tuple, so a plain wait pays for no list

    def add(self, future: Resolvable) -> None:
        if self._futures is None:
            self._futures = future
        elif isinstance(self._futures, list):
            self._futures.append(future)
        else:
            self._futures = [self._futures, future]

    def remove(self, future: Resolvable) -> bool:
        if self._futures is future:
            self._futures = None
            return True
        if isinstance(self._futures, list) and future in self._futures:
            self._futures.remove(future)
            return True
        return False

    def futures(self) -> list[Resolvable]:
        if self._futures is None:
            return []
        return list(self._futures) if isinstance(self._futures, list) else [self._futures]

    def idle(self) -> bool:
        return not (self._futures or self.holds or self.watchers)


class Delivery(NamedTuple):
    """What a published or read meta resolves: the futures to set and the watchers to call; ``ended``: the meta
    was ready and ended the channel's interest (the drainer may unsubscribe before the futures' waiters run)."""

    futures: list[Resolvable]
    watchers: tuple[Watcher, ...]
    ended: bool = False


class Changes(NamedTuple):
    """Subscription work since the drainer last asked.

    ``fresh``: channels that gained a new interest (subscribe, or re-read if already subscribed);
    ``dropped``: channels nobody is interested in any more (unsubscribe).
    """

    fresh: dict[bytes, str]
    dropped: list[bytes]
    read: frozenset[bytes] = frozenset()  # fresh channels whose caller read the key just before: no peek
    generation: int = 0  # numbers every take_changes(), for the callers' sent tickets (_sent)


NO_DELIVERY = Delivery([], ())
CHANGED, FRESH, READ_BY_CALLER = 0, 1, 2


class Router:
    """The interest table and ready-meta cache, shared by callers and the drainer."""

    def __init__(self, cache_max: int, lock: Optional[Any] = None) -> None:
        # Held only around the table, never across I/O or callbacks: under gevent, the OS lock (_runtime.data_lock)
        self._lock = threading.Lock() if lock is None else lock
        self._interests: dict[bytes, _Interest] = {}
        # channel -> CHANGED, FRESH (a new interest since the last take_changes()) or READ_BY_CALLER
        self._changed: dict[bytes, int] = {}
        self._cache: Optional[cachetools.LRUCache[str, Meta]] = (
            cachetools.LRUCache(maxsize=cache_max) if cache_max > 0 else None
        )
        # Ready metas the drainer delivered, newest last, not yet in the LRU: folded in (in order) by the next
        # caller that looks at the cache. A burst of results between two looks costs an append each instead of
        # an LRU insert and eviction each (~0.6 us); only the newest cache_max can ever reach the LRU.
        self._arrived: deque[tuple[str, Meta]] = deque(maxlen=max(cache_max, 1))
        self._closed: Optional[DrainerError] = None
        self._pending = 0  # futures in the table, kept as a count so stats() is O(1)
        # A caller's change since the last take_changes() has woken the drainer already. The drainer's own
        # changes (deliver, fail) never count: it takes them on its next step, and must not make a caller
        # skip the wake-up while it blocks.
        self._wake_pending = False
        self._taken = 0  # take_changes() calls so far: a change made now is in number _taken + 1
        self.sent = SentTickets()  # the drainer marks each number once it has sent that step's commands

    # ---------------------------------------------------------------- callers

    def register(
        self, channel: bytes, task_id: str, future: Resolvable, *, just_read: bool = False
    ) -> tuple[Optional[Meta], bool]:
        """Add a waiting future (``just_read``: the caller read the key a moment ago and found nothing).
        Returns ``(cached ready meta or None, wake the drainer)``."""
        with self._lock:
            if self._closed is not None:
                self._check_open()
            cache = self._folded()
            if cache is not None:
                cached = cache.get(task_id)
                if cached is not None:
                    return cached, False
            interest, wake = self._interest(channel, task_id, READ_BY_CALLER if just_read else FRESH)
            interest.add(future)
            self._pending += 1
        return None, wake

    def register_many(
        self, entries: list[tuple[bytes, Resolvable]], *, just_read: bool = False
    ) -> tuple[list[tuple[Resolvable, Meta]], bool]:
        """``register`` for many ``(channel, future)`` under one lock (a ResultSet's burst of waits).
        Returns ``(the futures whose meta is cached, with it; wake the drainer)``."""
        cached_ones: list[tuple[Resolvable, Meta]] = []
        wake = False
        mark = READ_BY_CALLER if just_read else FRESH
        with self._lock:
            self._check_open()
            cache = self._folded()
            for channel, future in entries:
                if cache is not None:
                    cached = cache.get(future.task_id)
                    if cached is not None:
                        cached_ones.append((future, cached))
                        continue
                interest, woke = self._interest(channel, future.task_id, mark)
                interest.add(future)
                wake = wake or woke
            self._pending += len(entries) - len(cached_ones)
        return cached_ones, wake

    def discard(self, channel: bytes, future: Resolvable) -> bool:
        """Remove a future whose waiter gave up; True when the drainer must be woken."""
        with self._lock:
            interest = self._interests.get(channel)
            if interest is None or not interest.remove(future):
                return False
            self._pending -= 1
            return self._drop_if_idle(channel, interest)

    def hold(self, channel: bytes, task_id: str) -> tuple[bool, int]:
        """Keep ``channel`` subscribed without a waiter (Celery's ``consume_from``, before the task is even
        sent): no peek at the key first, the SUBSCRIBE goes out at once (its key is read once it is confirmed).
        Returns ``(wake the drainer, the number of the take_changes() that carries it)``."""
        with self._lock:
            self._check_open()
            interest, wake = self._interest(channel, task_id, READ_BY_CALLER)
            interest.holds += 1
            return wake, self._taken + 1

    def release(self, channel: bytes) -> bool:
        """Drop every hold on ``channel`` (idempotent); waiters and watchers keep it."""
        with self._lock:
            interest = self._interests.get(channel)
            if interest is None or not interest.holds:
                return False
            interest.holds = 0
            return self._drop_if_idle(channel, interest)

    def next_taken(self) -> int:
        """The number of the next ``take_changes()``: it carries every change made so far, and the step that takes
        it also sends what an earlier one left lingering (while a ticket waits for it)."""
        with self._lock:
            return self._taken + 1

    def watch(self, channel: bytes, task_id: str, watcher: Watcher) -> bool:
        """Call ``watcher`` with every meta published on ``channel`` until ``unwatch``."""
        with self._lock:
            self._check_open()
            interest, wake = self._interest(channel, task_id)
            interest.watchers = (*interest.watchers, watcher)
        return wake

    def unwatch(self, channel: bytes, watcher: Watcher) -> bool:
        with self._lock:
            interest = self._interests.get(channel)
            if interest is None or watcher not in interest.watchers:
                return False
            kept = list(interest.watchers)
            kept.remove(watcher)
            interest.watchers = tuple(kept)
            return self._drop_if_idle(channel, interest)

    def cached(self, task_id: str) -> Optional[Meta]:
        if self._cache is None:
            return None
        with self._lock:
            cache = self._folded()
            return cache.get(task_id) if cache is not None else None

    def remember(self, task_id: str, meta: Meta) -> None:
        if self._cache is not None and meta.get("status") in READY_STATES:
            with self._lock:
                cache = self._folded()
                if cache is not None:
                    cache[task_id] = meta

    def forget(self, task_id: str) -> None:
        if self._cache is not None:
            with self._lock:
                cache = self._folded()  # first: a delivery still to fold in must not bring it back later
                if cache is not None:
                    cache.pop(task_id, None)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "pending": self._pending,
                "channels": len(self._interests),
                "cached": len(cache) if (cache := self._folded()) is not None else 0,
                "unapplied": len(self._changed),
            }

    # ---------------------------------------------------------------- the drainer

    def take_changes(self) -> Changes:
        """The subscription work accumulated since the last call (and reset it)."""
        with self._lock:
            changed, self._changed = self._changed, {}
            self._wake_pending = False
            self._taken += 1
            generation = self._taken
            fresh: dict[bytes, str] = {}
            dropped: list[bytes] = []
            read: list[bytes] = []
            for channel, mark in changed.items():
                interest = self._interests.get(channel)
                if interest is None:
                    dropped.append(channel)
                elif mark:
                    fresh[channel] = interest.task_id
                    if mark == READ_BY_CALLER:
                        read.append(channel)
        return Changes(fresh, dropped, frozenset(read), generation)

    def deliver(self, channel: bytes, meta: Meta) -> Delivery:
        """A meta arrived for ``channel``: watchers see every one; a ready one resolves and ends the interest."""
        with self._lock:
            return self._deliver(channel, meta)

    def deliver_many(self, channels: list[bytes], metas: list[Meta]) -> list[Delivery]:
        """``deliver`` for each ``channels[i]``, ``metas[i]`` (the keys one MGET read) under one lock."""
        with self._lock:
            return [self._deliver(channel, meta) for channel, meta in zip(channels, metas)]

    def fail(self, channels: Iterable[bytes]) -> list[Resolvable]:
        """End the interest in ``channels`` (e.g. a refused SUBSCRIBE); returns the futures to fail."""
        failed: list[Resolvable] = []
        with self._lock:
            for channel in channels:
                interest = self._interests.pop(channel, None)
                if interest is not None:
                    self._changed.setdefault(channel, CHANGED)
                    failed.extend(interest.futures())
            self._pending -= len(failed)
        return failed

    def close(self, error: DrainerError) -> list[Resolvable]:
        """Refuse new interest from now on; returns every pending future, to fail with ``error``."""
        with self._lock:
            if self._closed is None:
                self._closed = error
            interests, self._interests = self._interests, {}
            self._changed = {}
            self._pending = 0
        return [future for interest in interests.values() for future in interest.futures()]

    # ---------------------------------------------------------------- under the lock

    def _check_open(self) -> None:
        if self._closed is not None:
            error = DrainerError(str(self._closed))
            error.__cause__ = self._closed.__cause__
            raise error

    def _interest(self, channel: bytes, task_id: str, mark: int = 1) -> tuple[_Interest, bool]:
        interest = self._interests.get(channel)
        if interest is not None:
            return interest, False
        interest = self._interests[channel] = _Interest(task_id)
        wake, self._wake_pending = not self._wake_pending, True
        self._changed[channel] = mark
        return interest, wake

    def _deliver(self, channel: bytes, meta: Meta) -> Delivery:
        ready = meta.get("status") in READY_STATES
        interest = self._interests.get(channel)
        if ready:
            if interest is not None:
                del self._interests[channel]
                self._changed.setdefault(channel, CHANGED)
            task_id = interest.task_id if interest is not None else meta.get("task_id")
            if self._cache is not None and isinstance(task_id, str):
                arrived = self._arrived
                if len(arrived) == arrived.maxlen and self._cache:  # folding would evict all it holds: drop it now
                    self._cache = cachetools.LRUCache(maxsize=self._cache.maxsize)
                arrived.append((task_id, meta))
        if interest is None:
            return NO_DELIVERY
        futures = interest.futures() if ready else []
        self._pending -= len(futures)
        return Delivery(futures, interest.watchers, ready)

    def _folded(self) -> Optional[cachetools.LRUCache[str, Meta]]:
        """The LRU with every delivered meta folded in, oldest first (so the newest is the most recent)."""
        cache, arrived = self._cache, self._arrived
        if cache is not None and arrived:
            for task_id, meta in arrived:
                cache[task_id] = meta
            arrived.clear()
        return cache

    def _drop_if_idle(self, channel: bytes, interest: _Interest) -> bool:
        if not interest.idle():
            return False
        del self._interests[channel]
        wake, self._wake_pending = not self._wake_pending, True
        self._changed.setdefault(channel, CHANGED)
        return wake
