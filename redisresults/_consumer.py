"""The ResultConsumer: one Pub/Sub connection per backend, owned by one drainer.

Callers register futures in a lock-guarded table and leave subscription changes to the drainer,
which is the only code that touches the redis-py ``PubSub``. Every new interest is read once
*after* its SUBSCRIBE is confirmed, and every reconnect re-subscribes first and re-reads after,
so a result stored before, during or after subscribing is never missed.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

import cachetools
import redis.exceptions as rex
from redis.client import PubSub

from ._drainer import Runner
from ._exceptions import DecodeError, DrainerError, RedisResultsError, ResultTimeout, UsageError
from ._future import Listener, ResultFuture
from ._keys import task_key
from ._log import get_logger
from ._retry import backoff

if TYPE_CHECKING:
    from .backend import RedisBackend

log = get_logger()

READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
# A lost, stalled or desynchronised connection: reconnect, re-subscribe, re-read.
CONNECTION_ERRORS = (rex.ConnectionError, rex.TimeoutError, rex.InvalidResponse, OSError, socket.timeout)
BATCH = 2000
PING_MESSAGE = "redisresults-ping"
DEFAULT_HEALTH_INTERVAL = 10.0
# Sentinel: how often the drainer asks where the master is. After a manual failover the old master
# keeps accepting writes (and holding our subscription) until Sentinel reconfigures it, ~10 s later.
MASTER_CHECK_INTERVAL = 1.0
# ...and how long it keeps reading the old master's subscription once the pool has moved: stores already
# under way on an old connection still publish there, and the new master will never have those keys.
MASTER_MOVE_GRACE = 0.25
_RECONNECT_POLICY = {"interval_start": 0.05, "interval_step": 0.25, "interval_max": 2.0}


def _buffered(conn: Any) -> bool:
    """Data already read off the socket (redis-py's buffer, or TLS records decrypted but unread).

    ``select`` cannot see it, so the drainer checks before blocking; peeking at the buffer saves
    a syscall per message compared with ``can_read(timeout=0)``, which the fallback uses.
    """
    buffer = getattr(getattr(conn, "_parser", None), "_buffer", None)
    unread = getattr(buffer, "unread_bytes", None)
    if unread is None:
        return bool(conn.can_read(timeout=0))
    if unread():
        return True
    sock = getattr(conn, "_sock", None)
    pending = getattr(sock, "pending", None)
    return bool(pending()) if pending is not None else False


class _Entry:
    """Interest in one channel: the waiting futures and explicit ``consume_from`` holds."""

    __slots__ = ("futures", "holds", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.futures: list[ResultFuture] = []
        self.holds = 0


class ResultConsumer:
    """Routes published results to per-task futures. See the module docstring for the protocol."""

    def __init__(self, backend: RedisBackend, mode: str) -> None:
        self._backend = backend
        self._mode = mode
        self._prefix = backend._config.global_keyprefix
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        self._dirty: set[bytes] = set()
        self._fresh: set[bytes] = set()
        cache_max = backend._config.result_cache_max
        self._cache: Optional[cachetools.LRUCache[str, dict[str, Any]]] = (
            cachetools.LRUCache(maxsize=cache_max) if cache_max > 0 else None
        )
        self._runner: Optional[Runner] = None
        self._failure: Optional[BaseException] = None
        self._stopping = False
        self._wake_pending = False
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._last_error: Optional[str] = None
        self._counters = {"reconnects": 0, "recovered": 0, "messages": 0, "skipped_messages": 0, "reads": 0}
        hc = backend._config.connparams.get("health_check_interval")
        self._health_interval = float(hc) if hc else DEFAULT_HEALTH_INTERVAL
        timeout = backend._config.connparams.get("socket_timeout")
        self._read_timeout = float(timeout) if timeout else 30.0
        self._follows_master = backend._config.kind == "sentinel"
        self._next_master_check = 0.0
        self._step_wait = self._health_interval
        if self._follows_master:
            self._step_wait = min(self._health_interval, MASTER_CHECK_INTERVAL)
        # Drainer-only state (never touched by other threads).
        self._pubsub: Optional[PubSub] = None
        self._connected = False
        self._subscribed: set[bytes] = set()
        self._inflight: dict[bytes, int] = {}
        self._need_read: set[bytes] = set()
        self._recovering: set[bytes] = set()
        self._last_rx = 0.0
        self._ping_sent: Optional[float] = None
        self._reconnect_due = False
        self._yielded = False
        self._manual_owner: Optional[int] = None

    # ------------------------------------------------------------------ caller side

    def register(self, task_id: str, listener: Optional[Listener] = None) -> ResultFuture:
        """A future for ``task_id``'s ready meta; subscribes (via the drainer) when needed."""
        future = ResultFuture(task_id, listener)
        channel = task_key(self._prefix, task_id)
        cached = None
        with self._lock:
            if self._failure is not None:
                raise DrainerError(f"the result drainer stopped: {self._failure!r}") from self._failure
            if self._stopping:
                raise DrainerError("the backend was closed")
            if self._cache is not None:
                cached = self._cache.get(task_id)
            if cached is None:
                entry = self._entries.get(channel)
                if entry is None:
                    entry = self._entries[channel] = _Entry(task_id)
                    self._dirty.add(channel)
                    self._fresh.add(channel)
                entry.futures.append(future)
        if cached is not None:
            future.set_meta(cached)
            if listener is not None:
                listener(future)
            return future
        self._ensure_running()
        self._wake()
        return future

    def discard(self, future: ResultFuture) -> None:
        """Forget a future whose waiter gave up; the last one out unsubscribes the channel."""
        if future.done:
            return
        channel = task_key(self._prefix, future.task_id)
        with self._lock:
            entry = self._entries.get(channel)
            if entry is None or future not in entry.futures:
                return
            entry.futures.remove(future)
            changed = self._drop_if_idle(channel, entry)
        if changed:
            self._wake()

    def wait_for(self, task_id: str, timeout: Optional[float]) -> dict[str, Any]:
        """Block until ``task_id`` is ready; ResultTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        future = self.register(task_id)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not future.wait(remaining):
                raise ResultTimeout(self._timeout_message(task_id, timeout))
            return future.meta()
        finally:
            self.discard(future)

    def consume_from(self, task_id: str) -> None:
        """Subscribe ahead of a wait (e.g. before sending the task); ready results are cached."""
        channel = task_key(self._prefix, task_id)
        with self._lock:
            entry = self._entries.get(channel)
            if entry is None:
                entry = self._entries[channel] = _Entry(task_id)
                self._dirty.add(channel)
                self._fresh.add(channel)
            entry.holds += 1
        self._ensure_running()
        self._wake()

    def cancel_for(self, task_id: str) -> None:
        """Drop the ``consume_from`` holds on ``task_id``; waiting futures keep the subscription."""
        channel = task_key(self._prefix, task_id)
        with self._lock:
            entry = self._entries.get(channel)
            if entry is None:
                return
            entry.holds = 0
            changed = self._drop_if_idle(channel, entry)
        if changed:
            self._wake()

    def cached(self, task_id: str) -> Optional[dict[str, Any]]:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(task_id)

    def remember(self, task_id: str, meta: dict[str, Any]) -> None:
        if self._cache is not None and meta.get("status") in READY:
            with self._lock:
                self._cache[task_id] = meta

    def forget(self, task_id: str) -> None:
        if self._cache is not None:
            with self._lock:
                self._cache.pop(task_id, None)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            pending = sum(len(entry.futures) for entry in self._entries.values())
            stats: dict[str, Any] = {
                "pending": pending,
                "channels": len(self._entries),
                "subscribed": len(self._subscribed),
                "drainer_alive": self._runner is not None and self._runner.is_alive(),
                "connected": self._connected,
                "cached": len(self._cache) if self._cache is not None else 0,
                "mode": self._mode,
                "last_error": self._last_error,
                "failure": repr(self._failure) if self._failure is not None else None,
            }
            stats.update(self._counters)
        return stats

    def drain_events(self, timeout: Optional[float] = None) -> None:
        """Run one bounded drain step in the calling thread (only when no drainer runs)."""
        me = threading.get_ident()
        with self._lock:
            runner_alive = self._runner is not None and self._runner.is_alive()
            if runner_alive and not self._runner.is_current():  # type: ignore[union-attr]
                raise UsageError(
                    "drain_events() refused: the background drainer owns the Pub/Sub connection; "
                    "waiting with AsyncResult.get() needs no manual draining"
                )
            if self._manual_owner is not None and self._manual_owner != me:
                raise UsageError("drain_events() is already running in another thread")
            self._manual_owner = me
        try:
            self._step(0.0 if timeout is None else timeout)
        except CONNECTION_ERRORS as error:
            self._lost(error)
        finally:
            with self._lock:
                self._manual_owner = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join the drainer; pending waits fail with DrainerError('closed')."""
        with self._lock:
            self._stopping = True
            runner = self._runner
        self._wake(force=True)
        if runner is not None:
            runner.join(timeout)
        if runner is None or not runner.is_alive():
            self._close_pubsub()
        self._fail_all(DrainerError("the backend was closed"))
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    # ------------------------------------------------------------------ internals (caller side)

    def _drop_if_idle(self, channel: bytes, entry: _Entry) -> bool:
        if entry.futures or entry.holds:
            return False
        del self._entries[channel]
        self._dirty.add(channel)
        self._fresh.discard(channel)
        return True

    def _timeout_message(self, task_id: str, timeout: Optional[float]) -> str:
        message = f"result of task {task_id} not ready after {timeout}s"
        if not self._connected and self._last_error:
            message += f"; Redis was unreachable ({self._last_error})"
        return message

    def _ensure_running(self) -> None:
        with self._lock:
            if self._failure is not None:
                raise DrainerError(f"the result drainer stopped: {self._failure!r}") from self._failure
            if self._stopping:
                raise DrainerError("the backend was closed")
            if self._runner is not None or self._manual_owner is not None:
                return
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_w.setblocking(False)
            self._wake_r.setblocking(False)
            self._runner = Runner(self._run, "redisresults-drainer", self._mode)

    def _wake(self, force: bool = False) -> None:
        with self._lock:
            if self._wake_pending and not force:
                return
            self._wake_pending = True
            wake_w = self._wake_w
        if wake_w is not None:
            try:
                wake_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            self._dirty.clear()
            self._fresh.clear()
        for entry in entries:
            for future in entry.futures:
                self._resolve(future, error=error)

    def _resolve(
        self, future: ResultFuture, meta: Optional[dict[str, Any]] = None, error: Optional[BaseException] = None
    ) -> None:
        if error is not None:
            future.set_error(error)
        else:
            assert meta is not None
            future.set_meta(meta)
        if future.listener is not None:
            try:
                future.listener(future)
            except Exception as exc:  # a listener only enqueues; never let it kill the drainer
                log.error("listener_failed", error=repr(exc))

    # ------------------------------------------------------------------ the drainer

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping:
                try:
                    self._step(self._step_wait)
                    attempt = 0
                except CONNECTION_ERRORS as error:
                    self._lost(error)
                    attempt += 1
                    self._sleep(backoff(attempt, {**_RECONNECT_POLICY, "max_retries": 0, "timeout": 0}))
                except rex.ResponseError as error:
                    self._reject_pending_subscribes(error)
        except BaseException as error:
            with self._lock:
                self._failure = error
            log.error("drainer_died", error=repr(error))
            failure = DrainerError(f"the result drainer stopped: {error!r}")
            failure.__cause__ = error  # pending waiters see the cause, as later register() calls do
            self._fail_all(failure)
            if not isinstance(error, Exception):
                raise
        finally:
            self._close_pubsub()

    def _step(self, max_wait: float) -> None:
        """Apply subscription changes, read what arrived (waiting at most ``max_wait``), read keys."""
        with self._lock:
            has_work = bool(self._entries) or bool(self._dirty)
        if self._pubsub is None:
            if not has_work:
                self._wait_readable(None, max_wait)
                return
            self._connect()
        self._apply_changes()
        read = self._pump(max_wait)
        self._read_confirmed()
        self._check_health(read)
        self._check_master()
        if self._reconnect_due:
            self._reconnect_due = False
            raise rex.ConnectionError("the Pub/Sub connection was re-established underneath; resyncing")

    def _connect(self) -> None:
        pubsub = PubSub(self._backend._pool, ignore_subscribe_messages=False)
        try:
            pubsub.ping(PING_MESSAGE)  # forces the connection now, so errors surface here
        except BaseException:
            pubsub.reset()  # hand the half-made connection back to the pool
            raise
        conn = pubsub.connection
        assert conn is not None
        conn.register_connect_callback(self._on_reconnect)
        self._pubsub = pubsub
        self._ping_sent = time.monotonic()
        self._last_rx = time.monotonic()
        self._subscribed.clear()
        self._inflight.clear()
        with self._lock:
            was_connected_before = self._counters["reconnects"] > 0
            self._dirty.update(self._entries)
            channels = set(self._entries)
            self._connected = True
            self._last_error = None
        self._need_read.update(channels)
        if was_connected_before and channels:
            self._recovering.update(channels)
        log.debug("pubsub_connected", channels=len(channels))

    def _on_reconnect(self, connection: Any) -> None:
        # redis-py reconnected and re-subscribed by itself; what was published meanwhile is lost
        # unless we re-read, so treat it as a full reconnect.
        self._reconnect_due = True

    def _lost(self, error: BaseException) -> None:
        with self._lock:
            first = self._connected
            self._connected = False
            self._last_error = f"{type(error).__name__}: {error}"
            if first:
                self._counters["reconnects"] += 1
        if first:
            log.warning("pubsub_connection_lost", error=type(error).__name__)
        self._close_pubsub()

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()
        self._inflight.clear()
        if pubsub is not None:
            try:
                if pubsub.connection is not None:
                    pubsub.connection.deregister_connect_callback(self._on_reconnect)
                pubsub.reset()
            except Exception as error:
                log.debug("pubsub_close_failed", error=repr(error))

    def _apply_changes(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            fresh, self._fresh = self._fresh, set()
            wanted = {channel for channel in dirty if channel in self._entries}
        pubsub = self._pubsub
        assert pubsub is not None
        self._need_read.update(channel for channel in fresh if channel in wanted)
        to_sub = [channel for channel in wanted if channel not in self._subscribed]
        to_unsub = [channel for channel in dirty if channel not in wanted and channel in self._subscribed]
        for start in range(0, len(to_sub), BATCH):
            chunk = to_sub[start : start + BATCH]
            pubsub.subscribe(*chunk)
            self._subscribed.update(chunk)
            for channel in chunk:
                self._inflight[channel] = self._inflight.get(channel, 0) + 1
        for start in range(0, len(to_unsub), BATCH):
            chunk = to_unsub[start : start + BATCH]
            pubsub.unsubscribe(*chunk)  # type: ignore[no-untyped-call]
            self._subscribed.difference_update(chunk)
            for channel in chunk:
                self._inflight[channel] = self._inflight.get(channel, 0) + 1
                self._need_read.discard(channel)
                self._recovering.discard(channel)

    def _pump(self, max_wait: float) -> int:
        """Read every message available now; when none, wait up to ``max_wait`` for one."""
        pubsub = self._pubsub
        assert pubsub is not None
        conn = pubsub.connection
        assert conn is not None
        if self._ready_to_read() and not conn.can_read(timeout=0):
            return 0
        if not _buffered(conn):
            sock = getattr(conn, "_sock", None)
            if sock is None:
                raise rex.ConnectionError("the Pub/Sub connection is closed")
            if not self._wait_readable(sock, max_wait):
                return 0
        count = 0
        self._yielded = False
        while count < BATCH and conn.can_read(timeout=0):
            response = pubsub.parse_response(block=False, timeout=self._read_timeout)
            if response is None:
                break
            message = pubsub.handle_message(response)
            self._last_rx = time.monotonic()
            count += 1
            if message is not None:
                self._on_message(message)
        return count

    def _ready_to_read(self) -> bool:
        """Keys are waiting to be read: do not block on the socket before reading them."""
        return any(channel in self._subscribed and channel not in self._inflight for channel in self._need_read)

    def _wait_readable(self, sock: Optional[socket.socket], max_wait: float) -> bool:
        """Block until ``sock`` is readable or a wake-up arrives; True if the socket is readable."""
        wake_r = self._wake_r
        watch: list[Any] = [s for s in (sock, wake_r) if s is not None]
        if not watch:
            time.sleep(max_wait)  # manual drain_events with nothing to watch
            return False
        readable, _, _ = select.select(watch, [], [], max(0.0, max_wait))
        if wake_r is not None and wake_r in readable:
            # Drain first, then clear the flag: clearing first lets a wake-up sent in between be
            # swallowed while the flag stays set, which silences every later wake-up.
            try:
                while wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            with self._lock:
                self._wake_pending = False
        return sock is not None and sock in readable

    def _sleep(self, delay: float) -> None:
        """Back off between reconnect attempts; only ``close()`` cuts it short."""
        end = time.monotonic() + delay
        while not self._stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._wait_readable(None, left)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if kind == "message" and isinstance(channel, bytes):
            self._on_publish(channel, message.get("data"))
        elif kind in ("subscribe", "unsubscribe") and isinstance(channel, bytes):
            left = self._inflight.get(channel, 0) - 1
            if left > 0:
                self._inflight[channel] = left
            else:
                self._inflight.pop(channel, None)
        elif kind == "pong":
            self._ping_sent = None

    def _on_publish(self, channel: bytes, data: Any) -> None:
        try:
            meta = self._backend._decode_message(channel, data)
        except RedisResultsError as error:
            size = len(data) if isinstance(data, (bytes, str)) else 0
            with self._lock:
                self._counters["messages"] += 1
                self._counters["skipped_messages"] += 1
            log.warning("message_skipped", channel=channel.decode("utf-8", "replace"), size=size, reason=str(error))
            return
        if meta is None:  # a reference to a result too large to publish: read the key
            self._need_read.add(channel)
        else:
            self._deliver(channel, meta)  # waiters first; bookkeeping after
        with self._lock:
            self._counters["messages"] += 1

    def _deliver(self, channel: bytes, meta: dict[str, Any]) -> bool:
        """Resolve the channel's futures with a ready meta; a non-ready one (STARTED, ...) resolves nothing."""
        if meta.get("status") not in READY:
            return False
        with self._lock:
            entry = self._entries.pop(channel, None)
            if entry is not None:
                self._dirty.add(channel)
                self._fresh.discard(channel)
        if entry is not None:
            for future in entry.futures:
                self._resolve(future, meta=meta)
            if not self._yielded:
                # Let the waiters just woken run before our bookkeeping: under gevent this yields to
                # the hub, with threads it offers the GIL. Once per batch, not per message, so a
                # fan-in of thousands of results is not slowed down (see `redisresults bench`).
                self._yielded = True
                time.sleep(0)
        self._need_read.discard(channel)
        task_id = entry.task_id if entry is not None else meta.get("task_id")
        if self._cache is not None and isinstance(task_id, str):
            with self._lock:
                self._cache[task_id] = meta
        return entry is not None

    def _read_confirmed(self) -> None:
        """Read the keys of channels whose subscription is confirmed (the no-lost-wake-up rule)."""
        if not self._need_read:
            return
        ready = [c for c in self._need_read if c in self._subscribed and c not in self._inflight]
        if not ready:
            return
        with self._lock:
            wanted = [(c, self._entries[c].task_id) for c in ready if c in self._entries]
        self._need_read.difference_update(ready)
        client = self._backend._drainer_client()
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            try:
                values = client.mget([c for c, _ in chunk])
            except CONNECTION_ERRORS:
                self._need_read.update(c for c, _ in wanted[start:])
                raise
            except rex.ResponseError as error:  # e.g. NOPERM: these waits fail, the drainer goes on
                for channel, _ in chunk:
                    self._fail_channel(channel, error)
                continue
            with self._lock:
                self._counters["reads"] += 1
            for (channel, _task_id), raw in zip(chunk, values):
                recovering = channel in self._recovering
                self._recovering.discard(channel)
                if raw is None:
                    continue
                try:
                    meta = self._backend._decode_stored(channel, raw)
                except (DecodeError, RedisResultsError) as error:
                    self._fail_channel(channel, error)
                    continue
                if self._deliver(channel, meta) and recovering:
                    with self._lock:
                        self._counters["recovered"] += 1

    def _reject_pending_subscribes(self, error: rex.ResponseError) -> None:
        """Redis refused a SUBSCRIBE (e.g. an ACL without those channels): fail the waits it was for.

        The reply carries no channel name, so every subscription still awaiting confirmation is
        failed; the drainer and every confirmed subscription carry on.
        """
        refused = [channel for channel in self._inflight if channel in self._subscribed]
        log.warning("subscribe_refused", channels=len(refused), error=str(error)[:200])
        for channel in refused:
            self._inflight.pop(channel, None)
            self._subscribed.discard(channel)
            self._need_read.discard(channel)
            self._fail_channel(channel, error)

    def _fail_channel(self, channel: bytes, error: BaseException) -> None:
        with self._lock:
            entry = self._entries.pop(channel, None)
            if entry is not None:
                self._dirty.add(channel)
        if entry is not None:
            for future in entry.futures:
                self._resolve(future, error=error)

    def _check_master(self) -> None:
        """Sentinel: after a failover, resubscribe on the new master (then re-read) within a second."""
        now = time.monotonic()
        if not self._follows_master or now < self._next_master_check:
            return
        self._next_master_check = now + MASTER_CHECK_INTERVAL
        try:
            address = self._backend._master_address()
        except CONNECTION_ERRORS as error:  # sentinels unreachable: keep the connection we have
            log.debug("master_check_failed", error=repr(error))
            return
        conn = self._pubsub.connection if self._pubsub is not None else None
        where = (getattr(conn, "host", None), getattr(conn, "port", None))
        if address is not None and conn is not None and where != address:
            self._read_for(MASTER_MOVE_GRACE)
            raise rex.ConnectionError(f"the master moved to {address[0]}:{address[1]}; resubscribing there")

    def _read_for(self, seconds: float) -> None:
        """Deliver whatever arrives on the current connection during ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or self._pubsub is None or self._pubsub.connection is None:
                return
            conn = self._pubsub.connection
            if conn.can_read(timeout=0) or self._wait_readable(getattr(conn, "_sock", None), left):
                self._pump(0.0)

    def _check_health(self, read: int) -> None:
        """PING when idle; no reply within the interval means the connection is dead."""
        now = time.monotonic()
        if self._ping_sent is not None:
            if now - self._ping_sent > self._health_interval:
                raise rex.TimeoutError(f"no reply to PING within {self._health_interval}s: connection presumed dead")
            return
        if read == 0 and now - self._last_rx >= self._health_interval:
            assert self._pubsub is not None
            self._pubsub.ping(PING_MESSAGE)
            self._ping_sent = now

