"""The drainer: the one loop that owns the Pub/Sub connection and its wake-up pair.

Confined to its thread (or greenlet): nothing here is touched by callers except ``wake()``
(a byte on a socket) and the read-only ``snapshot()``. Each channel on the connection has one
explicit state, and a channel's key is read only once its SUBSCRIBE is confirmed, so a result
stored before, during or after subscribing is never missed. A lost connection, a silent one, or
a moved master is a *resync*: new connection, re-subscribe everything first, re-read after.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Optional

from ._channels import ChannelTable
from ._dispatch import READ_KEY, Dispatch
from ._exceptions import ConnectionUnavailable, RedisResultsError
from ._link import Link, Subscriber
from ._log import get_logger
from ._retry import backoff
from ._router import Changes, Router
from ._wakeup import WakeUp

log = get_logger("redisresults.drainer")

BATCH = 2000
# At most one UNSUBSCRIBE command per LINGER (unless LINGER_MAX channels are due): the first after a quiet spell
# leaves at once (a lone get() leaves nothing subscribed behind it, as Celery's own tests check), the ones of a
# stream of results wait to go out together: one command per step (a syscall, Redis' work) per result was the
# drainer's largest cost after parsing. A message on a channel still subscribed meanwhile is just ignored.
LINGER = 0.01
LINGER_MAX = 1000


def unsubscribes_due(backlog: int, now: float, last_sent: float, linger: float) -> bool:
    """Whether ``backlog`` lingering UNSUBSCRIBEs go out now (the rule above; the cluster nodes' too)."""
    return bool(backlog) and (backlog >= LINGER_MAX or now >= last_sent + linger)
PING_PAYLOAD = b"redisresults-ping"
# Sentinel: how often the drainer asks where the master is, and how long it keeps reading the old
# master once it moved (stores already under way on old connections still publish there).
MASTER_CHECK_INTERVAL = 1.0
MASTER_MOVE_GRACE = 0.25
COUNTERS = ("reconnects", "recovered", "messages", "skipped_messages", "reads")
_RECONNECT_POLICY = {"interval_start": 0.05, "interval_step": 0.25, "interval_max": 2.0}


class Resync(Exception):
    """Internal event: the connection must be replaced (never leaves this module)."""

    def __init__(self, reason: str, error: Optional[BaseException] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Drainer:
    """Routes every message of one Pub/Sub connection to the router's futures and watchers."""

    def __init__(self, link: Link, router: Router, linger: float = LINGER) -> None:
        self._link = link
        self._linger = linger
        self._last_unsubscribe = -linger  # when the last UNSUBSCRIBE went out (the first one leaves at once)
        self._router = router
        self._wakeup = WakeUp()
        self.stopping = False
        self._subscriber: Optional[Subscriber] = None
        self._table = ChannelTable()
        self._ever_connected = False
        self._last_rx = 0.0
        self._ping_sent: Optional[float] = None
        self._next_master_check = 0.0
        self._broken: Optional[ConnectionUnavailable] = None  # a send failed inside a delivery (_unsubscribe_ended)
        self.last_error: Optional[str] = None
        self.failure: Optional[str] = None
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._dispatch = Dispatch(link, router, self.counters, before_yield=self._unsubscribe_ended)
        self._health = link.health_interval
        self._step_wait = self._health if link.master_address is None else min(self._health, MASTER_CHECK_INTERVAL)

    # ---------------------------------------------------------------- callable from any thread

    def wake(self) -> None:
        self._wakeup.wake()

    def snapshot(self) -> dict[str, Any]:
        """Racy but safe counters for ``stats()`` (dict copies are atomic under the GIL)."""
        return {
            **self._table.counts(),
            "connected": self._subscriber is not None,
            "last_error": self.last_error,
            **self.counters,
        }

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Drain until ``stopping``; a crash fails every waiter with DrainerError instead of hanging them."""
        attempt = 0
        try:
            while not self.stopping:
                if self.drain_once(self._step_wait):
                    attempt = 0
                else:
                    attempt += 1
                    self._pause(backoff(attempt, {**_RECONNECT_POLICY, "max_retries": 0, "timeout": 0}))
        except BaseException as error:
            self.failure = self._dispatch.crashed(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self._router.sent.release_all()
            self._drop_connection()
            self.close_wakeup()

    def close_wakeup(self) -> None:
        self._wakeup.close()

    def drain_once(self, max_wait: float) -> bool:
        """One step; False when the connection had to be dropped (the next step resyncs on a new one)."""
        try:
            self.step(max_wait)
        except Resync as event:
            self._resync(event)
            return False
        except ConnectionUnavailable as error:
            self._resync(Resync("connection lost", error))
            return False
        return True

    def step(self, max_wait: float) -> None:
        """Apply subscription changes, read what arrives within ``max_wait``, read confirmed keys."""
        changes = self._router.take_changes()
        if changes.fresh:
            changes = self._peek(changes)
        self._table.apply(changes, connected=self._subscriber is not None)
        if self._subscriber is None:
            if not self._table.wanted:
                self._router.sent.mark(changes.generation)  # nothing to send
                self._wait(None, max_wait)
                return
            self._connect()
        self._flush()
        self._router.sent.mark(changes.generation)
        wait = 0.0 if self._table.has_reads() else max_wait
        if self._table.unsubscribe_backlog():  # wake when the lingering UNSUBSCRIBEs are due
            wait = max(0.0, min(wait, self._last_unsubscribe + self._linger - time.monotonic()))
        self._pump(wait)
        self._check_broken()
        self._flush()
        self._read_keys()
        self._check_broken()
        self._check_health()
        self._check_master()

    # ---------------------------------------------------------------- subscriptions

    def _peek(self, changes: Changes) -> Changes:
        """Read the keys of brand-new channels before subscribing: a result already there is delivered with
        no SUBSCRIBE/UNSUBSCRIBE at all. The rest are subscribed and read again once confirmed (the rule)."""
        new = [c for c in changes.fresh if c not in self._table.wanted and c not in changes.read]
        if not new:
            return changes
        fresh = dict(changes.fresh)
        for start in range(0, len(new), BATCH):
            chunk = new[start : start + BATCH]
            try:
                values = self._link.read_keys(chunk)
            except RedisResultsError:  # the normal path reads (and reports) again after subscribing
                break
            for channel in self._dispatch.found(chunk, values, set()):
                del fresh[channel]
        return Changes(fresh, changes.dropped)

    def _flush(self) -> None:
        """Send the SUBSCRIBE commands collected so far, and the UNSUBSCRIBEs once due (``LINGER``), in batches."""
        subscriber = self._subscriber
        if subscriber is None:
            return
        backlog = self._table.unsubscribe_backlog()
        now = time.monotonic()
        due = unsubscribes_due(backlog, now, self._last_unsubscribe, self._linger) or (
            bool(backlog) and self._router.sent.urgent())  # a caller waits for them (the drop-in's forget())
        if due:
            self._last_unsubscribe = now
        subs, unsubs = self._table.take_commands(unsubscribe=due)
        for start in range(0, len(subs), BATCH):
            chunk = subs[start : start + BATCH]
            subscriber.subscribe(chunk)
            self._table.sent(chunk)
        for start in range(0, len(unsubs), BATCH):
            subscriber.unsubscribe(unsubs[start : start + BATCH])

    def _unsubscribe_ended(self, ended: list[bytes]) -> None:
        """Before the waiters that ready results woke can run: unsubscribe the channels those results ended,
        when due (``LINGER``), so a lone ``get()`` returns with its channel already unsubscribed, as Celery's
        own ``get()`` does (its integration tests check PUBSUB CHANNELS right after). The router reports the
        same channels as dropped on the next step, which is a no-op for the table by then."""
        backlog = self._table.unsubscribe_backlog() + len(ended)
        if self._subscriber is None or not unsubscribes_due(backlog, time.monotonic(), self._last_unsubscribe,
                                                            self._linger):
            return  # lingering anyway (a stream of results): the next step applies them, once
        self._table.apply(Changes({}, ended), connected=True)
        try:
            self._flush()
        except ConnectionUnavailable as error:  # a delivery may be half done here (a read's chunk): resync after it
            self._broken = error

    def _check_broken(self) -> None:
        if self._broken is not None:
            error, self._broken = self._broken, None
            raise Resync("connection lost", error)

    def _on_refused(self, error: BaseException) -> None:
        """An error reply: Redis refused the oldest unconfirmed SUBSCRIBE (e.g. an ACL without those
        channels). Only the waits on that command's channels fail; the drainer carries on."""
        refused = self._table.refused()
        log.warning("subscribe_refused", channels=len(refused), error=str(error)[:200])
        self._dispatch.fail(refused, error)

    # ---------------------------------------------------------------- reading

    def _pump(self, max_wait: float) -> None:
        """Handle every reply available now; when there is none, wait up to ``max_wait`` for one."""
        subscriber = self._subscriber
        assert subscriber is not None
        if not subscriber.buffered() and not self._wait(subscriber.selectable(), max_wait):
            return
        self._dispatch.new_batch()
        count = 0
        while count < BATCH:
            for reply in subscriber.read_many(BATCH - count):
                self._on_reply(reply)
                count += 1
            if not subscriber.buffered():
                break
        self._dispatch.end_batch()
        self._last_rx = time.monotonic()

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            kind, channel, data = reply
            if kind == b"message":
                if self._dispatch.message(channel, data) is READ_KEY:  # announces a result too large to publish
                    self._table.reread(channel)
            elif kind == b"subscribe":
                self._table.subscribed(channel)
            elif kind == b"unsubscribe" and channel is not None:
                self._table.unsubscribed(channel)
            return
        if isinstance(reply, BaseException):
            self._on_refused(reply)
            return
        if (isinstance(reply, list) and reply and reply[0] == b"pong") or reply in (PING_PAYLOAD, b"PONG"):
            self._ping_sent = None
            return
        raise Resync(f"unexpected reply on the Pub/Sub connection: {type(reply).__name__}")

    def _read_keys(self) -> None:
        """Read the keys of confirmed channels (the no-lost-wake-up rule), one MGET per batch."""
        reads = self._table.take_reads()
        if reads:
            self._dispatch.new_batch()  # a batch of its own: its first result unsubscribes and yields at once
        recovering = {channel for channel, again in reads if again}
        ready = [channel for channel, _ in reads]
        try:
            for start in range(0, len(ready), BATCH):
                chunk = ready[start : start + BATCH]
                try:
                    values = self._link.read_keys(chunk)
                except ConnectionUnavailable as error:
                    raise Resync("reading keys failed", error) from error
                except RedisResultsError as error:  # e.g. NOPERM on the keys: these waits fail, the drainer goes on
                    self._dispatch.fail(chunk, error)
                    continue
                self.counters["reads"] += 1
                self._dispatch.found(chunk, values, recovering)
            self._dispatch.end_batch()
        finally:
            self._table.reads_done()

    # ---------------------------------------------------------------- connection life cycle

    def _connect(self) -> None:
        try:
            subscriber = self._link.open_subscriber()
        except RedisResultsError as error:  # unreachable, or refused (auth, TLS): keep trying, say why
            raise Resync("connecting failed", error) from error
        self._subscriber = subscriber
        self._ping_sent = None
        self._last_rx = time.monotonic()
        self._table.connected(recovering=self._ever_connected)
        self._ever_connected = True
        self.last_error = None
        log.debug("pubsub_connected", channels=len(self._table.wanted))

    def _resync(self, event: Resync) -> None:
        cause = event.error if event.error is not None else event
        if self._subscriber is not None:
            self.counters["reconnects"] += 1
            log.warning("pubsub_connection_lost", reason=event.reason, error=type(cause).__name__)
        self.last_error = f"{event.reason}: {cause}"
        self._drop_connection()

    def _drop_connection(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        self._broken = None
        self._table.disconnected()
        if subscriber is not None:
            try:
                subscriber.close()
            except Exception as error:
                log.debug("pubsub_close_failed", error=repr(error))

    def _check_health(self) -> None:
        """PING when idle; no reply within the interval means the connection is dead."""
        now = time.monotonic()
        if self._ping_sent is not None:
            if now - self._ping_sent > self._health:
                raise Resync(f"no reply to PING within {self._health}s")
            return
        if now - self._last_rx >= self._health:
            assert self._subscriber is not None
            self._subscriber.ping(PING_PAYLOAD)
            self._ping_sent = now

    def _check_master(self) -> None:
        """Sentinel: after a failover, resubscribe on the new master (then re-read) within a second."""
        locate = self._link.master_address
        now = time.monotonic()
        if locate is None or now < self._next_master_check or self._subscriber is None:
            return
        self._next_master_check = now + MASTER_CHECK_INTERVAL
        try:
            address = locate()
        except RedisResultsError as error:  # sentinels unreachable: keep the connection we have
            log.debug("master_check_failed", error=repr(error))
            return
        where = self._subscriber.address
        if address is not None and where is not None and where != address:
            end = time.monotonic() + MASTER_MOVE_GRACE
            while (left := end - time.monotonic()) > 0 and self._subscriber is not None:
                self._pump(left)
            raise Resync(f"the master moved to {address[0]}:{address[1]}")

    # ---------------------------------------------------------------- waiting

    def _wait(self, sock: Optional[socket.socket], max_wait: float) -> bool:
        try:
            return self._wakeup.wait(sock, max_wait)
        except (OSError, ValueError) as error:  # the Pub/Sub socket was closed underneath
            if sock is None:
                raise
            raise Resync("the Pub/Sub socket failed", error) from error

    def _pause(self, delay: float) -> None:
        """Back off between reconnect attempts; only stopping cuts it short."""
        end = time.monotonic() + delay
        while not self.stopping and (left := end - time.monotonic()) > 0:
            self._wait(None, left)
