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
from functools import cached_property
from typing import Any, Callable, Optional

import redis
from celery._state import task_join_will_block  # type: ignore  # untyped, or not installed
from celery.backends.redis import RedisBackend, SentinelBackend  # type: ignore  # untyped, or not installed

from redisresults import ConfigError
from redisresults._store import SHARDED_STORE_SCRIPT
from redisresults._url import masked

from ._consumer import SUBSCRIBE_WAIT, ResultConsumer
from ._core import Core, existing_core, shared_core
from ._pending import READY_STATES, is_ready
from ._settings import CoreSpec, cluster_spec, core_spec
from ._sharded import SLOT_ERRORS, celery_url, is_cluster_url, tagged_group_key
from ._waiting import iter_ready, wait_for

ALIAS = "redisresults"
_SCHEMES = {"redisresults": "redis", "redis+socket": "socket", "unix": "socket"}


def inner_url(url: Optional[str]) -> Optional[str]:
    """The Redis URL behind the drop-in's forms: ``redisresults://`` (handed over unstripped by Celery) is
    ``redis://``; ``redis+socket://`` and ``unix://`` are Celery's ``socket://``; a leftover ``redisresults+``
    prefix is dropped. Every ``;``-separated Sentinel (or cluster) node is mapped the same way."""
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

    A ``sentinel://`` URL makes it a :class:`CelerySentinelBackend`, a ``redis+cluster://`` URL a
    :class:`CeleryClusterBackend`. ``result_backend_thread_safe`` is moot: every object is thread-safe and shares
    the process's core anyway.
    """

    ResultConsumer = ResultConsumer

    def __new__(cls, *args: Any, **kwargs: Any) -> CeleryBackend:
        if cls is CeleryBackend:
            url = inner_url(_url_argument(args, kwargs))
            if url is not None and url.partition("://")[0].lower() == "sentinel":
                cls = CelerySentinelBackend
            elif is_cluster_url(url):
                cls = CeleryClusterBackend
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
        url = inner_url(url)
        super().__init__(
            host=host,
            port=port,
            db=db,
            password=password,
            max_connections=max_connections,
            url=self._celery_url(url),
            connection_pool=connection_pool,
            **kwargs,
        )
        self.thread_safe = True
        self._spec: CoreSpec = self._core_spec(url)
        self._core: Core = shared_core(self._spec)

    def _celery_url(self, url: Optional[str]) -> Optional[str]:
        """The URL Celery's own parser reads (the same URL, except on a cluster)."""
        return url

    def _core_spec(self, url: Optional[str]) -> CoreSpec:
        return core_spec(
            self.connparams,
            serializer=self.serializer,
            accept=self.accept,
            transport_options=self._transport_options,
        )

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
        """Celery's forget (DEL, drop from its cache, cancel the subscription), the UNSUBSCRIBE sent before it
        returns, as Celery's own (bounded by ``SUBSCRIBE_WAIT``)."""
        super().forget(task_id)
        core = self.existing_core()
        if core is not None:
            core.table.flush()
            core.consumer().sent().wait(SUBSCRIBE_WAIT)

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


class CeleryClusterBackend(CeleryBackend):
    """The drop-in for ``redisresults+redis+cluster://h1:7000;redis+cluster://h2:7001`` (``rediss+cluster://``).

    Celery parses the first startup node's URL as usual (settings, TLS rules, warnings); the core is a
    ``redisresults.ClusterBackend`` with one shard Pub/Sub connection per primary. Stores, multi-key reads and
    chord keys change as ``_sharded`` explains; everything else is Celery's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        celery_errors: tuple[type[BaseException], ...] = tuple(self.connection_errors)  # type: ignore[has-type]
        self.connection_errors = celery_errors + SLOT_ERRORS

    def _celery_url(self, url: Optional[str]) -> Optional[str]:
        self._cluster_url = url
        return celery_url(url) if url else url

    def _core_spec(self, url: Optional[str]) -> CoreSpec:
        if not url:
            raise ConfigError("a Redis Cluster result backend needs its startup nodes in the URL")
        self.url = url  # pickled results rebuild a cluster backend
        return cluster_spec(
            url,
            self.connparams,
            serializer=self.serializer,
            accept=self.accept,
            transport_options=self._transport_options,
        )

    def as_uri(self, include_password: bool = False) -> str:
        url = self._cluster_url or ""
        return url if include_password else masked(url)

    @cached_property
    def _store_script(self) -> Any:
        return self.client.register_script(SHARDED_STORE_SCRIPT)

    def _set(self, key: Any, value: Any, expires: Optional[int] = None) -> None:
        if expires is None:
            expires = self.expires
        self._store_script(keys=[key], args=[value, int(expires or 0), b""], client=self.client)

    def mget(self, keys: Any) -> Any:
        cluster: Any = self.client  # a redis.cluster.RedisCluster here
        return cluster.mget_nonatomic(list(keys))

    def get_key_for_group(self, group_id: str, key: str = "") -> bytes:
        group_key: bytes = super().get_key_for_group(group_id)
        return tagged_group_key(group_key, self.key_t(key))
