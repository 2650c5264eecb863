"""Redis Cluster figures (only when a cluster URL is given: ``$REDISRESULTS_BENCH_CLUSTER_URL``).

Raw = redis-py at its best on the same cluster: one plain ``PubSub`` per primary (``SSUBSCRIBE`` of that
node's channels up front), each read by its own thread that sets the ``threading.Event`` the waiter blocks
on; stores are ``SET key val EX n`` + ``SPUBLISH`` in one MULTI on the key's primary. Ours = a
``ClusterBackend`` (one drainer, one shard Pub/Sub connection per primary, the atomic store script).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import uuid
from typing import Any, Optional

from redis.exceptions import RedisClusterException

import redisresults

from ._common import (
    IDLE,
    EndedChannels,
    Options,
    Progress,
    Row,
    block_ratios,
    median,
    no_progress,
    percentile,
    poll,
    row,
)

CLUSTER_URL_ENV = "REDISRESULTS_BENCH_CLUSTER_URL"
EXPIRES = 600
FAN_IN_TARGET = 0.9
FAN_IN_ROUNDS = 5
# ours; the careful raw client (SUNSUBSCRIBEs each channel once its result arrived, like ours); raw that never
# unsubscribes (less work, but it leaks a subscription per result: report only). See ``_fanin``.
FAN_IN_SIDES = ("ours", "raw", "raw-kept")


def cluster_url_from_env() -> Optional[str]:
    return os.environ.get(CLUSTER_URL_ENV) or None


class RawShards:
    """Raw waiting: one PubSub and one reader thread per primary; ``events[channel]`` is set on a message.

    With ``unsubscribe`` (the fan-in's careful client) each reader also SUNSUBSCRIBEs the channels whose
    results arrived, batched as ``RawFanout`` batches its UNSUBSCRIBEs (``EndedChannels``), and reads the
    confirmations."""

    def __init__(self, rc: Any, channels: list[bytes], unsubscribe: bool = False) -> None:
        self.events = {channel: threading.Event() for channel in channels}
        self.unsubscribe = unsubscribe
        by_node: dict[str, list[bytes]] = {}
        for channel in channels:
            by_node.setdefault(rc.get_node_from_key(channel).name, []).append(channel)
        self._stop = False
        self._pubsubs = []
        self._threads = []
        for name, mine in by_node.items():
            node = rc.get_node(node_name=name)
            pubsub = node.redis_connection.pubsub()
            for channel in mine:
                pubsub.ssubscribe(channel)
            confirmed, deadline = 0, time.monotonic() + 30
            while confirmed < len(mine) and time.monotonic() < deadline:  # all confirmed before measuring
                message = pubsub.get_message(timeout=1.0)
                confirmed += message is not None and message.get("type") == "ssubscribe"
            self._pubsubs.append((pubsub, len(mine)))
            thread = threading.Thread(target=self._read, args=(pubsub,), daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def _read(self, pubsub: Any) -> None:
        ended = EndedChannels()
        wait = 0.2
        while not self._stop:
            message = pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "smessage":
                event = self.events.get(message["channel"])
                if event is not None:
                    event.set()
                    if self.unsubscribe:
                        ended.channels.append(message["channel"])
            if ended.channels:
                now = time.monotonic()
                due = ended.take_due(now)
                if due:
                    # One command per channel (a SUNSUBSCRIBE's channels must share a slot), pipelined in one
                    # write, as our node connections send them; redis-py reads the confirmations as usual.
                    conn = pubsub.connection
                    conn.send_packed_command(conn.pack_commands([("SUNSUBSCRIBE", c) for c in due]))
                wait = ended.wait(now, 0.2)

    def close(self) -> None:
        self._stop = True
        for thread in self._threads:
            thread.join(2)
        for pubsub, _ in self._pubsubs:
            pubsub.close()


def _raw_store(rc: Any, key: bytes, payload: bytes) -> None:
    try:
        pipe = rc.pipeline(transaction=True)
    except RedisClusterException:  # redis-py < 6 has no cluster transactions: MULTI on the key's primary itself
        pipe = rc.get_node_from_key(key).redis_connection.pipeline(transaction=True)
    pipe.set(key, payload, ex=EXPIRES)
    pipe.execute_command("SPUBLISH", key, payload)
    pipe.execute()


def _payload(task_id: str) -> bytes:
    return json.dumps({"status": "SUCCESS", "result": task_id, "traceback": None, "children": [],
                       "date_done": None, "task_id": task_id}).encode()


def figure_cluster(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    """Drain latency (ours vs raw, interleaved) and a fan-in across every shard, with Pub/Sub connection counts."""
    name = f"rrbench-{uuid.uuid4().hex[:8]}"
    prefix = f"rrbench-{uuid.uuid4().hex[:8]}:"
    ours = redisresults.backend_from_url(url, client_name=name, transport_options={"global_keyprefix": prefix})
    writer = redisresults.backend_from_url(url, transport_options={"global_keyprefix": prefix})
    assert isinstance(ours, redisresults.ClusterBackend)
    rc = writer.client
    try:
        rows = _drain(ours, writer, rc, prefix, opts, progress)
        rows += _fan_in(ours, writer, rc, prefix, name, opts, progress)
    finally:
        ours.close()
        writer.close()
    return rows


def _key(prefix: str, task_id: str) -> bytes:
    return f"{prefix}celery-task-meta-{task_id}".encode()


def _drain(ours: Any, writer: Any, rc: Any, prefix: str, opts: Options, progress: Progress) -> list[Row]:
    samples = max(10, opts.samples // 2)
    raw_ids = [str(uuid.uuid4()) for _ in range(samples)]
    raw = RawShards(rc, [_key(prefix, i) for i in raw_ids])
    mine: list[float] = []
    theirs: list[float] = []
    try:
        for n in range(samples):
            progress(f"cluster drain latency {n + 1}/{samples}")
            task_id = str(uuid.uuid4())
            result = ours.AsyncResult(task_id)
            done = threading.Event()
            taken: list[float] = []

            def wait(r: Any = result, out: list[float] = taken, ev: threading.Event = done) -> None:
                r.get(timeout=10)
                out.append(time.perf_counter())
                ev.set()

            thread = threading.Thread(target=wait, daemon=True)
            thread.start()
            poll(lambda: ours.stats()["pending"] == 1 and ours.stats()["settling"] == 0, 10, "subscribed")
            time.sleep(IDLE)  # both sides blocked in their reads when the result arrives, as a waiter usually is
            start = time.perf_counter()
            writer.mark_as_done(task_id, task_id)
            assert done.wait(10)
            thread.join(10)
            mine.append(taken[0] - start)
            time.sleep(IDLE)
            key = _key(prefix, raw_ids[n])
            start = time.perf_counter()
            _raw_store(rc, key, _payload(raw_ids[n]))
            assert raw.events[key].wait(10)
            theirs.append(time.perf_counter() - start)
    finally:
        raw.close()
    ms = 1000.0
    p50 = block_ratios(mine, theirs, opts.blocks, median)
    p99 = block_ratios(mine, theirs, opts.blocks, lambda v: percentile(v, 0.99))
    return [
        row("cluster drain latency p50 (threads)", "ms", median(mine) * ms, median(theirs) * ms, "report", None, p50),
        row("cluster drain latency p99 (threads)", "ms", percentile(mine, 0.99) * ms, percentile(theirs, 0.99) * ms,
            "report", None, p99),
    ]


def _fan_in(ours: Any, writer: Any, rc: Any, prefix: str, name: str, opts: Options, progress: Progress
            ) -> list[Row]:
    """``FAN_IN_ROUNDS`` rounds per side in a rotated order (one round swings a lot on a busy VM); the median."""
    count = opts.fanin
    rates: dict[str, list[float]] = {side: [] for side in FAN_IN_SIDES}
    conns = 0
    for n in range(FAN_IN_ROUNDS):
        for side in FAN_IN_SIDES[n % 3:] + FAN_IN_SIDES[:n % 3]:
            progress(f"cluster fan-in {side}, {count} threads, round {n + 1}/{FAN_IN_ROUNDS}")
            if side == "ours":
                rate, conns = _fan_in_ours(ours, writer, rc, name, count)
            else:
                rate = _fan_in_raw(rc, prefix, count, unsubscribe=side == "raw")
            rates[side].append(rate)
    ours_rate, raw_rate, kept_rate = (median(rates[side]) for side in FAN_IN_SIDES)
    primaries = len(rc.get_primaries())
    return [
        row(f"cluster fan-in, {count} threads, {primaries} shards", "results/s", ours_rate, raw_rate,
            f">= {FAN_IN_TARGET:.2f}x raw", ours_rate >= FAN_IN_TARGET * raw_rate,
            [a / b for a, b in zip(rates["ours"], rates["raw"])]),
        row(f"cluster fan-in vs raw never unsubscribing, {count} threads", "results/s", ours_rate, kept_rate,
            "report", None, [a / b for a, b in zip(rates["ours"], rates["raw-kept"])]),
        row("cluster fan-in Pub/Sub connections", "conns", conns, primaries, "= 1 per primary", conns == primaries),
    ]


def _fan_in_ours(ours: Any, writer: Any, rc: Any, name: str, count: int) -> tuple[float, int]:
    """One round of ours: results/s, and the Pub/Sub connections our drainer holds meanwhile."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    finished: list[float] = []
    lock = threading.Lock()

    def wait(task_id: str) -> None:
        ours.AsyncResult(task_id).get(timeout=60)
        with lock:
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=wait, args=(task_id,), daemon=True) for task_id in ids]
    for thread in threads:
        thread.start()
    poll(lambda: ours.stats()["subscribed"] >= count and ours.stats()["settling"] == 0, 60, "fan-in subscribed")
    conns = _pubsub_connections(rc, name)
    gc.collect()  # the setup's garbage collected now, on every side (see ``_fanin``)
    start = time.perf_counter()
    for task_id in ids:
        writer.mark_as_done(task_id, task_id)
    for thread in threads:
        thread.join(60)
    poll(lambda: ours.stats()["subscribed"] == 0, 60, "fan-in unsubscribed")  # no round starts on the last one's
    return count / (max(finished) - start), conns


def _fan_in_raw(rc: Any, prefix: str, count: int, unsubscribe: bool) -> float:
    raw_ids = [str(uuid.uuid4()) for _ in range(count)]
    keys = [_key(prefix, i) for i in raw_ids]
    raw = RawShards(rc, keys, unsubscribe=unsubscribe)
    finished: list[float] = []
    lock = threading.Lock()

    def raw_wait(key: bytes) -> None:
        raw.events[key].wait(60)
        with lock:
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=raw_wait, args=(key,), daemon=True) for key in keys]
    for thread in threads:
        thread.start()
    try:
        gc.collect()
        start = time.perf_counter()
        for task_id, key in zip(raw_ids, keys):
            _raw_store(rc, key, _payload(task_id))
        for thread in threads:
            thread.join(60)
    finally:
        raw.close()
    return count / (max(finished) - start)


def _pubsub_connections(rc: Any, name: str) -> int:
    total = 0
    for node in rc.get_primaries():
        for client in node.redis_connection.client_list(_type="pubsub"):
            total += client.get("name") == name
    return total
