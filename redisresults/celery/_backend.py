"""``CeleryBackend``: Celery's own Redis result backend, waiting on redisresults' one drainer per process.

Everything Celery stores stays Celery's — URL and settings parsing, keys, documents, ``result_extended``,
``result_compression``, ``result_failure_expires``, chords and their Lua scripts, retries, pickling — because it
is inherited, so a drop-in worker writes exactly what a stock worker of the same Celery version writes. What
changes is where connections come from and how clients wait: every backend object of a process (per thread,
unpickled, per app) shares one core — one pool and one Pub/Sub connection read by one background drainer — and
``AsyncResult.get()``, ``then()``, ``ResultSet``/``GroupResult`` joins and chord joins wait on it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import redis
from celery._state import task_join_will_block  # type: ignore  # untyped, or not installed
from celery.backends.redis import RedisBackend, SentinelBackend  # type: ignore  # untyped, or not installed

from redisresults import ConfigError

from ._consumer import ResultConsumer
from ._core import Core, existing_core, shared_core
from ._pending import READY_STATES, is_ready
from ._settings import CoreSpec, core_spec
from ._waiting import iter_ready, wait_for

ALIAS = "redisresults"
_SCHEMES = {"redisresults": "redis", "redis+socket": "socket", "unix": "socket"}
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def inner_url(url: Optional[str]) -> Optional[str]:
    """The Redis URL behind the drop-in's forms: ``redisresults://`` (handed over unstripped by Celery) is
    ``redis://``; ``redis+socket://`` and ``unix://`` are Celery's ``socket://``; a leftover ``redisresults+``
    prefix is dropped. Every ``;``-separated Sentinel node is mapped the same way."""
    if not url or "://" not in url:
        return url
    return ";".join(_inner_node(node) for node in url.split(";"))


def _inner_node(node: str) -> str:
    scheme, sep, rest = node.partition("://")
    if not sep:
        return node
    lowered = scheme.lower()
    if lowered.startswith(ALIAS + "+"):
        scheme = scheme[len(ALIAS) + 1 :]
        lowered = scheme.lower()
    if lowered in _CLUSTER_SCHEMES:
        raise ConfigError(f"{scheme}:// (Redis Cluster) is not supported by the redisresults Celery drop-in yet")
    return f"{_SCHEMES.get(lowered, scheme)}://{rest}"


def _url_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[str]:
    url = kwargs.get("url")
    if not url and args and isinstance(args[0], str) and "://" in args[0]:
        url = args[0]  # Celery's RedisBackend also takes the URL as ``host``
    if not url and isinstance(kwargs.get("host"), str) and "://" in kwargs["host"]:
        url = kwargs["host"]
    return url if isinstance(url, str) else None


class CeleryBackend(RedisBackend):  # type: ignore[misc]
    """The drop-in result backend: ``app.conf.result_backend = "redisresults+redis://..."``.

    A ``sentinel://`` URL makes it a :class:`CelerySentinelBackend`. ``result_backend_thread_safe`` is moot: every
    object is thread-safe and shares the process's core anyway.
    """

    ResultConsumer = ResultConsumer

    def __new__(cls, *args: Any, **kwargs: Any) -> CeleryBackend:
        if cls is CeleryBackend:
            url = inner_url(_url_argument(args, kwargs))
            if url is not None and url.partition("://")[0].lower() == "sentinel":
                cls = CelerySentinelBackend
        instance: CeleryBackend = super().__new__(cls)
        return instance

    def __init__(
        self,
        host: Any = None,
        port: Any = None,
        db: Any = None,
        password: Any = None,
        max_connections: Any = None,
        url: Optional[str] = None,
        connection_pool: Any = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(host, str) and "://" in host:
            url, host = host, None
        super().__init__(
            host=host,
            port=port,
            db=db,
            password=password,
            max_connections=max_connections,
            url=inner_url(url),
            connection_pool=connection_pool,
            **kwargs,
        )
        self.thread_safe = True
        self._spec: CoreSpec = core_spec(
            self.connparams,
            serializer=self.serializer,
            accept=self.accept,
            transport_options=self._transport_options,
        )
        self._core: Core = shared_core(self._spec)

    # ---------------------------------------------------------------- the shared core

    def core(self) -> Core:
        """This process's core for these settings (a forked child, or a closed core, gets a new one)."""
        core = self._core
        if core.pid != os.getpid() or core.closed:
            core = self._core = shared_core(self._spec)
        return core

    def existing_core(self) -> Optional[Core]:
        """The core if this process has one, without building any (safe from a finalizer)."""
        core = self._core
        if core.pid == os.getpid() and not core.closed:
            return core
        return existing_core(self._spec)

    @property
    def client(self) -> redis.Redis:
        """The core's ``redis.Redis``: stores, reads, chord scripts and the drainer share one pool."""
        return self.core().backend.client

    def stats(self) -> dict[str, Any]:
        """The core's counters (``pending``, ``subscribed``, ``drainer_alive``, ...) plus ``celery_pending``."""
        return self.core().stats()

    # ---------------------------------------------------------------- Celery's client-side calls

    def on_task_call(self, producer: Any, task_id: str) -> dict[str, Any]:
        """Subscribe ahead, as Celery does for every task sent whose result is not ignored (``Signature.election``
        unpacks the return value, so it is a dict)."""
        if not task_join_will_block():
            self.result_consumer.consume_from(task_id)
        return {}

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        core = self.core()
        core.table.flush()
        if not is_ready(result):
            core.start_loop()
            core.table.track(result, weak=weak)
        return result

    def add_pending_results(self, results: Any, weak: bool = False) -> list[Any]:
        return [self.add_pending_result(result, weak=weak, start_drainer=False) for result in results]

    def remove_pending_result(self, result: Any) -> Any:
        """Called from ``AsyncResult.__del__`` too: never blocks, takes no lock, does no I/O (see ``_pending``)."""
        core = self.existing_core()
        if core is not None:
            core.table.untrack(result)
        return result

    def forget(self, task_id: str) -> None:
        """Celery's forget (DEL, drop from its cache, cancel the subscription), the unsubscribe applied at once."""
        super().forget(task_id)
        core = self.existing_core()
        if core is not None:
            core.table.flush()

    def on_result_fulfilled(self, result: Any) -> None:
        self.remove_pending_result(result)

    def wait_for_pending(
        self,
        result: Any,
        timeout: Optional[float] = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Optional[Callable[[dict[str, Any]], Any]] = None,
        on_interval: Optional[Callable[[], Any]] = None,
        callback: Optional[Callable[[str, Any], Any]] = None,
        propagate: bool = True,
        **kwargs: Any,
    ) -> Any:
        self._ensure_not_eager()
        core = self.core()
        core.table.flush()
        if not is_ready(result):
            core.start_loop()
            entry = core.table.track(result)
            wait_for(
                core,
                entry,
                timeout=timeout,
                on_interval=on_interval,
                on_message=on_message,
                decode=self.meta_from_decoded,
                read_once=lambda: self.get_task_meta(result.id),
            )
        return result.maybe_throw(callback=callback, propagate=propagate)

    def iter_native(
        self,
        result: Any,
        timeout: Optional[float] = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Optional[Callable[[dict[str, Any]], Any]] = None,
        on_interval: Optional[Callable[[], Any]] = None,
        **kwargs: Any,
    ) -> Any:
        self._ensure_not_eager()
        nodes = list(result.results or ())
        if not nodes:
            return
        core = self.core()
        core.table.flush()
        core.start_loop()
        yield from iter_ready(
            core,
            nodes,
            timeout=timeout,
            on_interval=on_interval,
            on_message=on_message,
            decode=self.meta_from_decoded,
            read_many=self._read_ready,
        )

    def _read_ready(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The ready metas among ``task_ids``, read once (one MGET)."""
        values = self.mget([self.get_key_for_task(task_id) for task_id in task_ids])
        metas: dict[str, dict[str, Any]] = {}
        for task_id, raw in zip(task_ids, values):
            if raw:
                meta = self.decode_result(raw)
                if meta.get("status") in READY_STATES:
                    metas[task_id] = meta
        return metas


class CelerySentinelBackend(CeleryBackend, SentinelBackend):  # type: ignore[misc]
    """The drop-in for ``redisresults+sentinel://h1:26379;sentinel://h2:26379/0`` (``master_name`` in
    ``result_backend_transport_options``)."""
