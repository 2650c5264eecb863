"""Celery's two blocking calls on the shared core: ``wait_for_pending`` (``AsyncResult.get``) and ``iter_native``
(``ResultSet.join_native``/``iter_native``, chord joins in workers).

Both wait in slices of at most one second and call Celery's ``on_interval`` after every slice — including the one
that delivered, as Celery's own drainer does (chains re-raise a parent's error from it) — and raise Celery's
``TimeoutError`` as soon as the deadline passes. ``on_message`` sees every meta the core's drainer decodes on the
task's channel (``watch``), in order.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from celery.exceptions import TimeoutError as CeleryTimeoutError  # type: ignore  # untyped, or not installed
from celery.result import ResultSet  # type: ignore  # untyped, or not installed

from ._core import Core
from ._pending import READY_STATES, Pending, cache_of, is_ready, set_cache

SLICE = 1.0
#: After the result resolved, how long ``on_message`` may still wait for the drainer to hand over the final meta.
FINAL_MESSAGE_GRACE = 0.1
TIMED_OUT = "The operation timed out."
_META = "meta"

Decoder = Callable[[dict[str, Any]], dict[str, Any]]


class _Deadline:
    """One deadline, computed once; the remaining budget is handed down."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> Optional[float]:
        return None if self.end is None else self.end - time.monotonic()

    def step(self) -> float:
        left = self.remaining()
        if left is None:
            return SLICE
        if left <= 0:
            raise CeleryTimeoutError(TIMED_OUT)
        return min(SLICE, left)


def _take(sink: Any, timeout: float) -> list[Any]:
    """Everything in ``sink`` after waiting at most ``timeout`` for the first item."""
    items: list[Any] = []
    try:
        items.append(sink.get(timeout=timeout))
        while True:
            items.append(sink.get(block=False))
    except queue.Empty:
        pass
    return items


def _cache_of(node: Any, meta: dict[str, Any], decode: Decoder) -> Any:
    """The node's cache as Celery's iter_native yields it; decoded from ``meta`` if another thread still sets it."""
    return cache_of(node) if is_ready(node) else decode(dict(meta))


def wait_for(
    core: Core,
    entry: Pending,
    *,
    timeout: Optional[float],
    on_interval: Optional[Callable[[], Any]],
    on_message: Optional[Callable[[dict[str, Any]], Any]],
    decode: Decoder,
    read_once: Callable[[], Optional[dict[str, Any]]],
) -> None:
    """Block until ``entry``'s result object has its cache set; Celery's TimeoutError past ``timeout``."""
    future = entry.future
    assert future is not None
    if timeout is not None and timeout <= 0 and not future.done:
        meta = read_once()  # timeout=0 checks once, as Celery's backends do
        if meta is None or meta.get("status") not in READY_STATES:
            raise CeleryTimeoutError(TIMED_OUT)
        core.table.settle(entry, meta)
        return
    deadline = _Deadline(timeout)
    sink = core.new_queue()
    consumer = core.consumer()
    watch = None
    core.table.attach(entry, sink)
    try:
        if on_message is not None:
            watch = consumer.watch(entry.task_id, lambda meta: sink.put((_META, meta)))
        # With on_message the final meta is handed over too, unless the future resolved before the watch began.
        want_final = on_message is not None and not future.done
        waited = False
        grace_end: Optional[float] = None
        while not future.done or (want_final and not entry.failed()):
            if future.done:  # resolved: only the drainer's hand-over of the final meta is still to come
                if grace_end is None:
                    grace_end = time.monotonic() + FINAL_MESSAGE_GRACE
                step = grace_end - time.monotonic()
                if step <= 0:
                    break
            else:
                step = deadline.step()  # Celery's TimeoutError once the deadline has passed
            for item in _take(sink, step):
                if isinstance(item, tuple) and item[0] == _META:
                    assert on_message is not None
                    on_message(decode(dict(item[1])))
                    if item[1].get("status") in READY_STATES:
                        want_final = False
            waited = True
            if on_interval is not None and not future.done:
                on_interval()
        core.table.settle(entry, timeout=deadline.remaining())
        if waited and on_interval is not None:
            on_interval()  # after the slice that delivered too, as Celery's drainer does
    finally:
        core.table.detach(entry, sink)
        if watch is not None:
            consumer.unwatch(watch)


def iter_ready(
    core: Core,
    nodes: list[Any],
    *,
    timeout: Optional[float],
    on_interval: Optional[Callable[[], Any]],
    on_message: Optional[Callable[[dict[str, Any]], Any]],
    decode: Decoder,
    read_many: Callable[[list[str]], dict[str, dict[str, Any]]],
) -> Iterator[tuple[str, Any]]:
    """``(task_id, meta)`` for every node as it completes (completion order); nested sets yield their children."""
    waiting: list[Any] = []
    for node in nodes:
        if isinstance(node, ResultSet):  # a nested ResultSet/GroupResult
            yield node.id, node.children
        elif is_ready(node):
            yield node.id, cache_of(node)
        else:
            waiting.append(node)
    if not waiting:
        return
    table = core.table
    if timeout is not None and timeout <= 0:  # check once
        metas = read_many([node.id for node in waiting])
        missing = False
        for node in waiting:
            meta = metas.get(node.id)
            if meta is None:
                missing = True
                continue
            entry = table.entry_for(node)
            if entry is not None:
                table.settle(entry, meta)
            else:
                set_cache(node, dict(meta))
            yield node.id, _cache_of(node, meta, decode)
        if missing:
            raise CeleryTimeoutError(TIMED_OUT)
        return
    deadline = _Deadline(timeout)
    sink = core.new_queue()
    consumer = core.consumer()
    left: dict[Pending, Any] = {}
    watches = []
    try:
        for node in waiting:
            entry = table.track(node)
            if entry not in left:
                left[entry] = node
                table.attach(entry, sink)
        if on_message is not None:
            put: Callable[[dict[str, Any]], None] = lambda meta: sink.put((_META, meta))  # noqa: E731
            watches = [consumer.watch(entry.task_id, put) for entry in left]
        for entry in left:
            if entry.future is not None and entry.future.done:
                sink.put(entry)  # resolved before the sink was attached: its listener went to the loop
        while left:
            for item in _take(sink, deadline.step()):
                if isinstance(item, tuple) and item[0] == _META:
                    assert on_message is not None
                    on_message(decode(dict(item[1])))
                    continue
                node = left.pop(item, None)
                if node is None:
                    continue
                try:
                    table.settle(item, timeout=deadline.remaining())
                finally:
                    table.detach(item, sink)
                assert item.future is not None
                yield node.id, _cache_of(node, item.future.meta(), decode)
            if on_interval is not None:
                on_interval()
    finally:
        for entry in left:
            table.detach(entry, sink)
        for handle in watches:
            consumer.unwatch(handle)
