"""RedisBackend: one thread-safe object, one connection pool, one drainer.

Storing goes through the shared pool (one atomic script per store); waiting goes through the
backend's single ResultConsumer. A forked child builds its own pool and consumer on first use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import redis
import redis.sentinel

from . import _meta
from ._callbacks import CallbackRunner
from ._codec import Codec
from ._config import Config, build_config
from ._connparams import uri_of
from ._consumer import ResultConsumer, idle_stats
from ._exceptions import (
    AuthenticationFailed,
    CertificateRejected,
    ConfigError,
    ConnectionUnavailable,
    ResultTimeout,
    translate,
)
from ._keys import check_id, group_key, task_key
from ._link import Link
from ._log import get_logger
from ._pool import REDIS_PY_DEFAULT_MAX, WaitingConnectionPool, drainer_params, pool_params
from ._retry import call_with_retry
from ._runtime import resolve_mode
from ._script import PooledScript
from ._store import STORE_SCRIPT, ServerLimit, check_raw_size, store
from ._subscriber import RedisSubscriber, key_reader
from ._url import masked
from .result import AsyncResult, GroupResult, ResultSet

log = get_logger()

_EXTENDED_KEYS = ("group_id", "parent_id", "name", "args", "kwargs", "worker", "retries", "queue")
DEFAULT_HEALTH_INTERVAL = 10.0


class RedisBackend:
    """Stores task results in Redis and waits on them without polling.

    ``RedisBackend(url, **options)``: explicit options beat URL values, which beat defaults.
    Safe to share between any number of threads (or greenlets under gevent).
    """

    def __init__(self, url: Optional[str] = None, **options: Any) -> None:
        self._config: Config = build_config(url, **options)
        self._check_kind()
        for warning in self._config.warnings:
            log.warning("insecure_tls_setting", warning=warning)
        self._codec = Codec(self._config.serializer, self._config.accept)
        self._mode = resolve_mode(self._config.concurrency)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pool: Any = None
        self._client: Optional[redis.Redis] = None
        self._script: Any = None
        self._consumer: Optional[ResultConsumer] = None
        self._drainer_pool: Any = None
        self._callbacks: Optional[CallbackRunner] = None
        self._server_limit = ServerLimit()

    def _check_kind(self) -> None:
        if self._config.kind != "redis":
            which = "ClusterBackend" if self._config.kind == "cluster" else "SentinelBackend"
            raise ConfigError(f"{self._config.kind} URLs need {which} (backend_from_url picks it for you)")

    # ------------------------------------------------------------------ connection

    @property
    def config(self) -> Config:
        """The validated configuration (frozen; ``repr`` hides secrets)."""
        return self._config

    @property
    def mode(self) -> str:
        """``"thread"`` or ``"gevent"``: what the drainer and callback loop run on (decided when built)."""
        return self._mode

    @property
    def connparams(self) -> dict[str, Any]:
        """The keyword arguments handed to redis-py's connection pool (a copy)."""
        params = dict(self._config.connparams)
        if "hosts" in params:
            params["hosts"] = [dict(host) for host in params["hosts"]]
        return params

    @property
    def client(self) -> redis.Redis:
        """A ``redis.Redis`` on the backend's one shared pool; safe from any thread."""
        self._check_fork()
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._pool = self._make_pool(self._pool_params(), shared=True)
                    self._client = redis.Redis(connection_pool=self._pool)
                    self._script = PooledScript(self._pool, STORE_SCRIPT)
                client = self._client
        return client

    def _pool_params(self) -> dict[str, Any]:
        return pool_params(self.connparams)

    def _make_pool(self, params: dict[str, Any], *, shared: bool) -> Any:
        """The shared pool waits for a free connection (back-pressure); the drainer's has exactly two."""
        if shared:
            params["max_connections"] = params.get("max_connections") or REDIS_PY_DEFAULT_MAX
            return WaitingConnectionPool(wait_timeout=self._config.retry_policy["timeout"] or None, **params)
        return redis.ConnectionPool(**params)

    def _drainer_params(self) -> dict[str, Any]:
        return drainer_params(self._pool_params())

    def _link(self) -> Link:
        """What the drainer needs, and nothing of the backend itself."""
        pool = self._make_pool(self._drainer_params(), shared=False)
        self._drainer_pool = pool
        hc = self._config.connparams.get("health_check_interval")
        return Link(
            open_subscriber=lambda: RedisSubscriber(pool),
            read_keys=key_reader(pool),
            decode_message=self._codec.message,  # bound: two frames fewer per published result
            decode_stored=self._codec.stored,
            master_address=self._master_locator(),
            health_interval=float(hc) if hc else DEFAULT_HEALTH_INTERVAL,
        )

    def _master_locator(self) -> Any:
        """Where writes go now, for backends that can fail over (Sentinel); None for one server."""
        return None

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # A forked child must never read the parent's sockets: start over, leave theirs alone.
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._pool = None
            self._client = None
            self._script = None
            self._consumer = None
            self._drainer_pool = None
            self._callbacks = None

    @property
    def result_consumer(self) -> ResultConsumer:
        """The backend's one ResultConsumer (created on first use)."""
        self._check_fork()
        consumer = self._consumer
        if consumer is None:
            self.client  # noqa: B018 - the pool must exist before the drainer starts
            with self._lock:
                if self._consumer is None:
                    self._consumer = self._new_consumer()
                consumer = self._consumer
        return consumer

    def _new_consumer(self) -> ResultConsumer:
        """The consumer over this backend's link (a subclass may bring its own drainer)."""
        return ResultConsumer(
            self._link(),
            keyprefix=self._config.global_keyprefix,
            mode=self._mode,
            cache_max=self._config.result_cache_max,
        )

    @property
    def callbacks(self) -> CallbackRunner:
        """The loop that runs ``then()`` and ``as_future()`` callbacks, outside every lock."""
        self._check_fork()
        runner = self._callbacks
        if runner is None:
            with self._lock:
                if self._callbacks is None:
                    self._callbacks = CallbackRunner(self._mode)
                runner = self._callbacks
        return runner

    def as_uri(self, include_password: bool = False) -> str:
        """The backend URL; the password shows as ``**`` unless asked for."""
        url = self._config.url
        if url is None:
            return uri_of(self._config.connparams, include_password)
        return url if include_password else masked(url)

    def stats(self) -> dict[str, Any]:
        """Counters for operators: pending futures, subscribed channels, drainer, reconnects."""
        consumer = self._consumer
        if consumer is None or self._pid != os.getpid():
            return idle_stats(self._mode)
        return consumer.stats()

    def close(self) -> None:
        """Stop the drainer and callback loop and disconnect the pools. Pending waits fail."""
        with self._lock:
            consumer, self._consumer = self._consumer, None
            callbacks, self._callbacks = self._callbacks, None
            pool, self._pool = self._pool, None
            drainer_pool, self._drainer_pool = self._drainer_pool, None
            self._client = None
            self._script = None
        if self._pid != os.getpid():
            return
        if consumer is not None:
            consumer.close()
        if callbacks is not None:
            callbacks.close()
        for each in (pool, drainer_pool):
            if each is not None:
                each.disconnect()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.as_uri()}>"

    # ------------------------------------------------------------------ storing

    def store_result(
        self, task_id: str, result: Any, state: str, traceback: Optional[str] = None, **extended: Any
    ) -> Any:
        """Store and publish ``result`` in ``state``, atomically; a stored SUCCESS is never replaced."""
        task_id = check_id("task", task_id)
        children = extended.pop("children", None)
        unknown = sorted(set(extended) - set(_EXTENDED_KEYS))
        if unknown:
            raise TypeError(f"store_result() got unexpected field(s): {', '.join(unknown)}")
        check_raw_size(result, self._config.max_value_size, task_id=task_id, state=state)
        meta = _meta.make_meta(task_id, result, state, traceback, children=children, extended=extended or None,
                               serializer=self._codec.serializer)
        payload = self._codec.encode(meta)
        self._write(task_key(self._config.global_keyprefix, task_id), payload, task_id=task_id, state=state)
        return result

    def mark_as_started(self, task_id: str, **meta: Any) -> Any:
        return self.store_result(task_id, meta, _meta.STARTED)

    def mark_as_done(self, task_id: str, result: Any) -> Any:
        return self.store_result(task_id, result, _meta.SUCCESS)

    def mark_as_failure(self, task_id: str, exc: BaseException, traceback: Optional[str] = None) -> Any:
        return self.store_result(task_id, self._encode_exc(exc), _meta.FAILURE, traceback)

    def mark_as_retry(self, task_id: str, exc: BaseException, traceback: Optional[str] = None) -> Any:
        return self.store_result(task_id, self._encode_exc(exc), _meta.RETRY, traceback)

    def _encode_exc(self, exc: BaseException) -> dict[str, Any]:
        return _meta.encode_exception(exc, serializer=self._codec.serializer)

    def mark_as_revoked(self, task_id: str, reason: str = "") -> Any:
        revoked = {"exc_type": "TaskRevokedError", "exc_message": [reason], "exc_module": "celery.exceptions"}
        return self.store_result(task_id, revoked, _meta.REVOKED)

    def _write(self, key: bytes, payload: bytes, *, task_id: Optional[str], state: Optional[str]) -> bool:
        """One script call (SET with expiry + PUBLISH unless a SUCCESS is stored), retried if transient."""
        client = self.client
        written = store(client, self._script, key, payload, self._config, self._server_limit, task_id=task_id,
                        state=state)
        if not written:
            log.info("store_skipped_success_exists", task_id=task_id, state=state)
        elif task_id is not None and state is not None:
            consumer = self._consumer
            if consumer is not None:
                consumer.forget(task_id)
        return written

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        """The stored document as a dict (exceptions stay in their stored dict form); PENDING if missing."""
        return self._read_meta(check_id("task", task_id))

    def _read_meta(self, task_id: str, *, once: bool = False) -> dict[str, Any]:
        """Cache, else one GET (``once``: a single attempt, no retries — the caller has a fallback)."""
        consumer = self._consumer
        if consumer is not None:
            cached = consumer.cached(task_id)
            if cached is not None:
                return cached
        key = task_key(self._config.global_keyprefix, task_id)
        client = self.client
        if once:
            try:
                raw = client.get(key)
            except Exception as error:
                raise translate(error) from error
        else:
            raw = call_with_retry(lambda: client.get(key), self._config.retry_policy, what="reading a result")
        if raw is None:
            return _meta.pending_meta(task_id)
        meta = self._decode_stored(key, raw)
        if consumer is not None:
            consumer.remember(task_id, meta)
        return meta

    def get_many_metas(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """One MGET for many ids; missing keys read as PENDING."""
        if not task_ids:
            return []
        task_ids = [check_id("task", tid) for tid in task_ids]
        keys = [task_key(self._config.global_keyprefix, tid) for tid in task_ids]
        values = call_with_retry(lambda: self._mget(keys), self._config.retry_policy, what="reading results")
        return [
            _meta.pending_meta(tid) if raw is None else self._decode_stored(key, raw)
            for tid, key, raw in zip(task_ids, keys, values)
        ]

    def _mget(self, keys: list[bytes]) -> Sequence[Optional[bytes]]:
        """One MGET (a cluster backend reads one MGET per slot instead)."""
        return self.client.mget(keys)  # type: ignore[return-value]  # bytes: decode_responses is off

    def forget(self, task_id: str) -> None:
        task_id = check_id("task", task_id)
        key = task_key(self._config.global_keyprefix, task_id)
        client = self.client
        call_with_retry(lambda: client.delete(key), self._config.retry_policy, what="forgetting a result")
        consumer = self._consumer
        if consumer is not None:
            consumer.forget(task_id)

    def save_group(self, group_id: str, task_ids: Iterable[Any]) -> None:
        """Store a group document (Celery's format) so ``restore_group`` can rebuild it anywhere."""
        group_id = check_id("group", group_id)
        ids = [check_id("task", getattr(item, "id", item)) for item in task_ids]
        payload = self._codec.encode(_meta.make_group_meta(group_id, ids))
        self._write(group_key(self._config.global_keyprefix, group_id), payload, task_id=group_id, state=None)

    def restore_group(self, group_id: str) -> Optional[GroupResult]:
        group_id = check_id("group", group_id)
        key = group_key(self._config.global_keyprefix, group_id)
        client = self.client
        raw = call_with_retry(lambda: client.get(key), self._config.retry_policy, what="reading a group")
        if raw is None:
            return None
        gid, ids = self._codec.group(key, raw)
        return GroupResult(gid, ids, backend=self)

    def delete_group(self, group_id: str) -> None:
        group_id = check_id("group", group_id)
        key = group_key(self._config.global_keyprefix, group_id)
        client = self.client
        call_with_retry(lambda: client.delete(key), self._config.retry_policy, what="deleting a group")

    # ------------------------------------------------------------------ decoding

    def _decode_stored(self, key: bytes, raw: bytes | str) -> dict[str, Any]:
        return self._codec.stored(key, raw)

    # ------------------------------------------------------------------ waiting

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, backend=self)

    def ResultSet(self, results: Iterable[Any]) -> ResultSet:
        return ResultSet(results, backend=self)

    def GroupResult(self, group_id: str, results: Iterable[Any]) -> GroupResult:
        return GroupResult(group_id, results, backend=self)

    def wait_for_meta(self, task_id: str, timeout: Optional[float]) -> dict[str, Any]:
        """Block until ``task_id`` is ready; ResultTimeout past ``timeout``.

        One read first (cache, else GET): a finished task costs one round trip and no subscription.
        A wait that finds nothing subscribes and reads again once the SUBSCRIBE is confirmed, so a
        result stored in between is not missed.
        """
        task_id = check_id("task", task_id)
        deadline = None if timeout is None else time.monotonic() + timeout  # the first read counts too
        try:
            meta = self._read_meta(task_id, once=True)
        except (ConnectionUnavailable, AuthenticationFailed, CertificateRejected):
            # Not reachable now: the drainer keeps trying (and reads once subscribed) within the deadline,
            # and a timeout then says why.
            meta = _meta.pending_meta(task_id)
        if meta["status"] in _meta.READY_STATES:
            return meta
        del meta  # a pending wait holds nothing it does not need (thousands may be pending)
        if timeout is not None and timeout <= 0:
            raise ResultTimeout(f"result of task {task_id} not ready (timeout=0 checks once)")
        return self.result_consumer.wait_for(task_id, timeout, just_read=True, deadline=deadline)
