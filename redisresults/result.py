"""Handles on stored results: AsyncResult for one task, ResultSet/GroupResult for many.

Any number of handles, in any threads or greenlets, for the same or different ids, all resolve:
each wait registers its own future with the backend's one consumer.
"""

from __future__ import annotations

import concurrent.futures
import queue
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Callable, Optional, Protocol

from . import _meta
from ._callbacks import CallbackRunner
from ._consumer import ResultConsumer
from ._exceptions import ConfigError, ResultTimeout
from ._future import LeanFuture, ResultFuture
from ._keys import check_id
from ._runtime import simple_queue


class ResultBackend(Protocol):
    """What a result handle needs from its backend (``ResultBackend`` and its subclasses provide it)."""

    @property
    def mode(self) -> str: ...

    @property
    def result_consumer(self) -> ResultConsumer: ...

    @property
    def callbacks(self) -> CallbackRunner: ...

    def wait_for_meta(self, task_id: str, timeout: Optional[float]) -> dict[str, Any]: ...

    def get_task_meta(self, task_id: str) -> dict[str, Any]: ...

    def get_many_metas(self, task_ids: list[str]) -> list[dict[str, Any]]: ...

    def forget(self, task_id: str) -> None: ...

    def save_group(self, group_id: str, task_ids: Iterable[Any]) -> None: ...

    def delete_group(self, group_id: str) -> None: ...

    def restore_group(self, group_id: str) -> Optional[GroupResult]: ...


def _value(meta: dict[str, Any], of: AsyncResult, propagate: bool) -> Any:
    """The result a ready meta of ``of`` stands for; a stored failure is rebuilt (never imported)."""
    status = meta["status"]
    if _meta.carries_exception(meta):
        exc = _meta.rebuild_exception(meta["result"], key=of.label)
        if propagate and status in _meta.PROPAGATE_STATES:
            raise exc
        return exc
    return meta.get("result")


class AsyncResult:
    """A pending or finished task result, Celery's ``AsyncResult`` in spirit and names."""

    __slots__ = ("__weakref__", "_ready_meta", "backend", "id")  # thousands may be pending at once

    def __init__(self, id: str, backend: Optional[ResultBackend] = None) -> None:
        if backend is None:
            raise ConfigError("AsyncResult needs a backend: backend.AsyncResult(id) or AsyncResult(id, backend=...)")
        self.id = check_id("task", id)
        self.backend = backend
        self._ready_meta: Optional[dict[str, Any]] = None

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def as_tuple(self) -> tuple[tuple[str, None], None]:
        return (self.id, None), None

    def get(self, timeout: Optional[float] = None, propagate: bool = True, **_celery_compat: Any) -> Any:
        """Block until ready; the result, or the stored failure (raised when ``propagate``).

        ``timeout=None`` waits without limit; ``timeout=0`` checks once; past the deadline
        ResultTimeout is raised.
        """
        return _value(self._wait(timeout), self, propagate)

    wait = get

    @property
    def ready_meta(self) -> Optional[dict[str, Any]]:
        """The ready meta once this handle has seen it (then nothing is read again), else None."""
        return self._ready_meta

    def set_ready_meta(self, meta: dict[str, Any]) -> None:
        """Record a ready meta found by someone else (a ResultSet's read)."""
        self._ready_meta = meta

    def _wait(self, timeout: Optional[float]) -> dict[str, Any]:
        if self._ready_meta is None:
            self._ready_meta = self.backend.wait_for_meta(self.id, timeout)
        return self._ready_meta

    def _meta(self) -> dict[str, Any]:
        if self._ready_meta is not None:
            return self._ready_meta
        meta = self.backend.get_task_meta(self.id)
        if meta["status"] in _meta.READY_STATES:
            self._ready_meta = meta
        return meta

    @property
    def label(self) -> str:
        return f"task {self.id}"

    @property
    def state(self) -> str:
        return str(self._meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        """The value, the exception object for failures, or None while pending."""
        return _value(self._meta(), self, propagate=False)

    info = result

    @property
    def traceback(self) -> Optional[str]:
        return self._meta().get("traceback")

    @property
    def date_done(self) -> Optional[datetime]:
        return _meta.parse_date_done(self._meta().get("date_done"))

    def ready(self) -> bool:
        return self.state in _meta.READY_STATES

    def successful(self) -> bool:
        return self.state == _meta.SUCCESS

    def failed(self) -> bool:
        return self.state == _meta.FAILURE

    def forget(self) -> None:
        self._ready_meta = None
        self.backend.forget(self.id)

    def then(self, callback: Callable[[AsyncResult], Any]) -> None:
        """Call ``callback(self)`` once when ready, on the backend's callback loop (outside all locks)."""
        runner = self.backend.callbacks

        def on_ready(future: ResultFuture) -> None:
            try:
                self._ready_meta = future.meta()
            except Exception:  # noqa: S110 - the callback sees the failure through get()
                pass
            runner.submit(callback, self)

        self.backend.result_consumer.register(self.id, on_ready)

    def as_future(self) -> concurrent.futures.Future[Any]:
        """A ``concurrent.futures.Future`` for use with ``concurrent.futures.wait``/``as_completed``.

        The drainer settles it directly (no thread hop); its done-callbacks run on the backend's
        callback loop, never on the drainer.
        """
        result = _CallbackLoopFuture(self)
        self.backend.result_consumer.add(result)
        return result


class _CallbackLoopFuture(LeanFuture):
    """A Future whose done-callbacks (user code) run on the callback loop, so settling it is safe anywhere.

    It is its own entry in the router (no ResultFuture and listener beside it): a burst of 10,000 waits
    allocates as few objects per wait as can be for the garbage collector to walk."""

    __slots__ = ("_source",)

    def __init__(self, source: AsyncResult) -> None:
        super().__init__(source.id)
        self._source = source

    def resolve(self, meta: Optional[dict[str, Any]], error: Optional[BaseException]) -> None:
        if error is not None:
            # Without its traceback: the frames it holds (and their callers', holding this very Future) would
            # make every failed future garbage that only a full GC pass frees.
            self._settle(None, error.with_traceback(None))
            return
        assert meta is not None
        source = self._source
        source.set_ready_meta(meta)
        try:
            value = _value(meta, source, propagate=True)
        except BaseException as failure:
            self._settle(None, failure.with_traceback(None))
        else:
            self._settle(value, None)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        runner = self._source.backend.callbacks
        super().add_done_callback(lambda future: runner.submit(fn, future))


class ResultSet:
    """Many results awaited together under one deadline, push-driven (no polling, no sleeps)."""

    def __init__(self, results: Iterable[Any], backend: Optional[ResultBackend] = None) -> None:
        items = list(results)
        if backend is None:
            backend = next((r.backend for r in items if isinstance(r, AsyncResult)), None)
        if backend is None:
            raise ConfigError("ResultSet needs a backend")
        self.backend = backend
        self.results: list[AsyncResult] = []
        seen: set[str] = set()
        for item in items:
            result = item if isinstance(item, AsyncResult) else AsyncResult(item, backend=backend)
            if result.id not in seen:
                seen.add(result.id)
                self.results.append(result)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"

    def _refresh(self) -> list[dict[str, Any]]:
        """Every member's meta, with one MGET for those not already known to be ready."""
        unknown = [r for r in self.results if r.ready_meta is None]
        fresh = dict(zip((r.id for r in unknown), self.backend.get_many_metas([r.id for r in unknown])))
        for result in unknown:
            if fresh[result.id]["status"] in _meta.READY_STATES:
                result.set_ready_meta(fresh[result.id])
        return [r.ready_meta or fresh[r.id] for r in self.results]

    def ready(self) -> bool:
        return all(m["status"] in _meta.READY_STATES for m in self._refresh())

    def completed_count(self) -> int:
        return sum(1 for m in self._refresh() if m["status"] == _meta.SUCCESS)

    def successful(self) -> bool:
        return all(m["status"] == _meta.SUCCESS for m in self._refresh())

    def failed(self) -> bool:
        return any(m["status"] == _meta.FAILURE for m in self._refresh())

    def waiting(self) -> bool:
        return not self.ready()

    def as_completed(self, timeout: Optional[float] = None) -> Iterator[AsyncResult]:
        """Yield each member AsyncResult as it becomes ready (completion order), one deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._refresh()
        arrived: queue.SimpleQueue[ResultFuture] = simple_queue(self.backend.mode)
        by_id = {r.id: r for r in self.results}
        pending: dict[str, ResultFuture] = {}
        for result in self.results:
            if result.ready_meta is not None:
                yield result
        consumer = self.backend.result_consumer
        try:
            waiting = [result.id for result in self.results if result.ready_meta is None]
            for future in consumer.register_many(waiting, arrived.put, just_read=True):
                pending[future.task_id] = future
            while pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeout(f"{len(pending)} of {len(self.results)} results not ready after {timeout}s")
                try:
                    future = arrived.get(timeout=remaining)
                except queue.Empty:
                    continue
                if pending.pop(future.task_id, None) is None:
                    continue
                result = by_id[future.task_id]
                result.set_ready_meta(future.meta())
                yield result
        finally:
            for future in pending.values():
                consumer.discard(future)

    def iter_native(self, timeout: Optional[float] = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(task_id, meta)`` in completion order, as Celery's ``iter_native`` does."""
        for result in self.as_completed(timeout):
            meta = result.ready_meta
            assert meta is not None
            yield result.id, meta

    def join(self, timeout: Optional[float] = None, propagate: bool = True) -> list[Any]:
        """Every member's value, in member order, under one overall deadline."""
        for result in self.as_completed(timeout):
            meta = result.ready_meta
            assert meta is not None
            if propagate and meta["status"] in _meta.PROPAGATE_STATES:
                _value(meta, result, True)
        return [_value(r.ready_meta or {}, r, propagate) for r in self.results]

    join_native = join
    get = join


class GroupResult(ResultSet):
    """A ResultSet with an id, saved and restored in Celery's group document format."""

    def __init__(self, id: str, results: Iterable[Any] = (), backend: Optional[ResultBackend] = None) -> None:
        super().__init__(results, backend=backend)
        self.id = id

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def save(self) -> GroupResult:
        self.backend.save_group(self.id, [r.id for r in self.results])
        return self

    def delete(self) -> None:
        self.backend.delete_group(self.id)

    @classmethod
    def restore(cls, id: str, backend: ResultBackend) -> Optional[GroupResult]:
        return backend.restore_group(id)
