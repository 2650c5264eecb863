"""What every figure shares: run sizes, the raw redis-py baseline's pieces, polling, rows and block ratios.

Only the public API of redisresults is used here and in every bench module: names in
``redisresults.__all__``, ``backend.stats()``, ``backend.client``, ``backend.connparams`` and
``backend.config``. Keys are Celery's, computed inline (``<prefix>celery-task-meta-<id>``).
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional, cast

import redis

import redisresults

MiB = 1 << 20
EXPIRES = 600
IDLE = 0.002  # quiet time before each drain-latency store (both sides alike)
QUICK_ENV = "REDISRESULTS_BENCH_QUICK"
URL_ENV = "REDISRESULTS_URL"  # how a helper process gets the URL: never on its command line (ps shows those)
Progress = Callable[[str], None]
Row = dict[str, Any]


class BenchError(redisresults.RedisResultsError):
    """A benchmark run could not complete (a helper process failed, a figure's setup went wrong)."""


def no_progress(_message: str) -> None:
    """The default progress callback: say nothing."""


@dataclass(frozen=True)
class Options:
    """Sizes of a run. The defaults are the full run; ``Options.quick()`` is a run of seconds."""

    samples: int = 1000  # drain-latency samples per side and transport
    fanin: int = 1000  # waiting threads in the fan-in figure
    fanin_greenlets: int = 10_000  # waiting greenlets in the gevent fan-in figure
    burst: int = 10_000  # new waits in each subscribe-burst figure
    ready: int = 2000  # get() calls per side on already-stored results
    memory: int = 1000  # pending waits traced in the memory figures
    blocks: int = 5  # each ratio is also computed per block; the spread is printed
    reject_limit: int = 512 * MiB  # max_value_size for the rejection figure
    reject_max: int = 1024 * MiB  # largest value built for the rejection figure
    overshoot_repeats: int = 5
    gevent: bool = True  # also measure in gevent-patched subprocesses
    celery: bool = True  # the Celery figures (when Celery is installed)

    @classmethod
    def quick(cls, **changes: Any) -> Options:
        """Tiny sizes: every figure runs end to end in seconds (the numbers mean little)."""
        small = cls(samples=50, fanin=50, fanin_greenlets=200, burst=500, ready=200, memory=50,
                    reject_limit=1 * MiB, reject_max=4 * MiB, overshoot_repeats=1)
        return replace(small, **changes)

    @classmethod
    def from_env(cls, **changes: Any) -> Options:
        """``quick()`` when ``$REDISRESULTS_BENCH_QUICK`` is 1, else the full sizes."""
        base = cls.quick() if os.environ.get(QUICK_ENV) == "1" else cls()
        return replace(base, **changes)


# ---------------------------------------------------------------------------------------------- clients


def new_prefix() -> str:
    """A fresh ``global_keyprefix`` (ending in ``:``, so Celery's rule adds nothing to it)."""
    return f"rrbench-{uuid.uuid4().hex[:10]}:"


def task_key(prefix: str, task_id: str) -> bytes:
    """Celery's key (and channel) for ``task_id`` under ``prefix``."""
    return f"{prefix}celery-task-meta-{task_id}".encode()


def make_backend(url: str, prefix: str, name: str, **options: Any) -> redisresults.RedisBackend:
    transport = {"global_keyprefix": prefix}
    return redisresults.backend_from_url(url, transport_options=transport, expires=EXPIRES, client_name=name,
                                         **options)


def raw_client(backend: redisresults.RedisBackend, name: str) -> redis.Redis:
    """A plain redis-py client on the same server, from the backend's own pool kwargs."""
    params = backend.connparams
    params["client_name"] = name
    return redis.Redis(connection_pool=redis.ConnectionPool(**params))


def raw_payload(task_id: str, result: Any) -> bytes:
    """The JSON document Celery stores for a SUCCESS."""
    meta = {
        "status": "SUCCESS",
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": datetime.now(timezone.utc).isoformat(),
        "task_id": task_id,
    }
    return json.dumps(meta).encode()


def raw_store(client: redis.Redis, key: bytes, payload: bytes) -> None:
    """The raw store: ``SET key value EX n`` + ``PUBLISH`` in one MULTI pipeline."""
    pipe = client.pipeline(transaction=True)
    pipe.set(key, payload, ex=EXPIRES)
    pipe.publish(key, payload)
    pipe.execute()


def raw_store_many(client: redis.Redis, prefix: str, task_ids: list[str], publish: bool = False,
                   batch: int = 1000) -> None:
    """Store many results in pipelined batches of ``batch`` (setting up a figure; the fan-in's feed)."""
    for start in range(0, len(task_ids), batch):
        pipe = client.pipeline(transaction=False)
        for task_id in task_ids[start : start + batch]:
            key, payload = task_key(prefix, task_id), raw_payload(task_id, {"id": task_id})
            pipe.set(key, payload, ex=EXPIRES)
            if publish:
                pipe.publish(key, payload)
        pipe.execute()


def cleanup(client: redis.Redis, prefix: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def transport(backend: redisresults.RedisBackend) -> str:
    """``unix socket``, ``TCP`` or ``TLS``: how the backend reaches its server."""
    params = backend.connparams
    if "path" in params:
        return "unix socket"
    connection_class = params.get("connection_class")
    return "TLS" if connection_class is not None and "SSL" in connection_class.__name__ else "TCP"


# ---------------------------------------------------------------------------------------------- waiting


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.0002) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise redisresults.ResultTimeout(f"benchmark: {what} did not happen within {timeout}s")
        time.sleep(interval)


def settled(backend: redisresults.RedisBackend, count: int) -> bool:
    """At least ``count`` waits pending, subscribed, confirmed by the server and their keys read once."""
    stats = backend.stats()
    return bool(stats["pending"] >= count and stats["subscribed"] >= count and stats["settling"] == 0)


def server_counts(admin: redis.Redis) -> tuple[int, int]:
    """(channels with subscribers, key lookups so far): the server's side of subscribing and reading."""
    info = admin.info("stats")
    return int(info["pubsub_channels"]), int(info["keyspace_hits"]) + int(info["keyspace_misses"])


def wait_settled(backend: redisresults.RedisBackend, admin: redis.Redis, base: tuple[int, int], count: int,
                 timeout: float, what: str) -> None:
    """Until ``settled(backend, count)``, for ``count`` new waits started after ``base = server_counts(admin)``.

    ``stats()`` walks every pending wait (milliseconds at 10,000), so polling it all along would
    slow down the drainer being measured. The server's own counters are watched first (every
    channel subscribed, a key looked up per wait: a round trip of microseconds on another
    connection); then ``stats()`` confirms, at an interval of three times its own cost.
    """
    deadline = time.monotonic() + timeout
    channels, lookups = base
    while True:
        now_channels, now_lookups = server_counts(admin)
        if now_channels >= channels + count and now_lookups >= lookups + count:
            break
        if time.monotonic() > deadline:
            raise redisresults.ResultTimeout(f"benchmark: {what} did not happen within {timeout}s")
        time.sleep(0.0005)
    while True:
        started = time.perf_counter()
        done = settled(backend, count)
        cost = time.perf_counter() - started
        if done:
            return
        if time.monotonic() > deadline:
            raise redisresults.ResultTimeout(f"benchmark: {what} did not happen within {timeout}s")
        time.sleep(max(0.0005, 3 * cost))


# How often a careful raw client unsubscribes the channels whose results arrived: at most one UNSUBSCRIBE per
# this many seconds (or per UNSUBSCRIBE_MAX channels), the same rule as the drainer's own lingering UNSUBSCRIBEs.
UNSUBSCRIBE_EVERY = 0.01
UNSUBSCRIBE_MAX = 1000


class EndedChannels:
    """A careful raw reader's channels whose results arrived, to unsubscribe in batches (the rule above)."""

    def __init__(self) -> None:
        self.channels: list[bytes] = []
        self._last_sent = -UNSUBSCRIBE_EVERY

    def take_due(self, now: float) -> list[bytes]:
        """The channels to unsubscribe now; none while they may still linger."""
        if not self.channels or (len(self.channels) < UNSUBSCRIBE_MAX and now < self._last_sent + UNSUBSCRIBE_EVERY):
            return []
        due, self.channels, self._last_sent = self.channels, [], now
        return due

    def wait(self, now: float, idle: float) -> float:
        """How long the reader may block for its next message: until the lingering ones are due, else ``idle``."""
        return max(0.0, self._last_sent + UNSUBSCRIBE_EVERY - now) if self.channels else idle


class RawFanout:
    """The raw baseline's receiving side: one thread reads one PubSub and sets per-channel Events.

    With ``unsubscribe`` it is the careful client of the fan-in figures: each channel is unsubscribed once its
    result arrived (batched by ``UNSUBSCRIBE_EVERY``, confirmations read), so a long-lived connection does not
    collect dead subscriptions, as ours and Celery's own consumer do not. Without it (the other figures, and the
    fan-in's report-only row) channels stay subscribed until ``close``."""

    def __init__(self, client: redis.Redis, unsubscribe: bool = False) -> None:
        self.pubsub: Any = cast(Any, client).pubsub()
        self.events: dict[bytes, threading.Event] = {}
        self.unsubscribe = unsubscribe
        self.unsubscribed = 0  # confirmations read
        self._stop = False
        self._thread: Optional[threading.Thread] = None

    def subscribe(self, channels: list[bytes], timeout: float = 60.0) -> None:
        """SUBSCRIBE in batches of 2000 (as the drainer does) and read every confirmation."""
        for channel in channels:
            self.events[channel] = threading.Event()
        for start in range(0, len(channels), 2000):
            self.pubsub.subscribe(*channels[start : start + 2000])
        confirmed = 0
        deadline = time.monotonic() + timeout
        while confirmed < len(channels):
            if time.monotonic() > deadline:
                raise redisresults.ResultTimeout("benchmark: raw SUBSCRIBE confirmations did not arrive")
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="raw-pubsub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ended = EndedChannels()
        wait = 0.2
        while not self._stop:
            message = self.pubsub.get_message(timeout=wait)
            if message is not None:
                kind = message["type"]
                if kind == "message":
                    json.loads(message["data"])
                    event = self.events.get(message["channel"])
                    if event is not None:
                        event.set()
                        if self.unsubscribe:
                            ended.channels.append(message["channel"])
                elif kind == "unsubscribe":
                    self.unsubscribed += 1
            if ended.channels:
                now = time.monotonic()
                due = ended.take_due(now)
                if due:
                    self.pubsub.unsubscribe(*due)
                wait = ended.wait(now, 0.2)

    def close(self) -> None:
        self._stop = True
        for event in self.events.values():
            event.set()  # releases raw waiters left behind by an interrupted run
        if self._thread is not None:
            self._thread.join(5)
        self.pubsub.close()


class Waiter:
    """One persistent waiting thread (so thread start-up is never inside a measurement)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Optional[Callable[[], Any]]] = queue.SimpleQueue()
        self.done = threading.Event()
        self.finished = 0.0
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="bench-waiter", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException as error:  # reported by the measuring thread
                self.error = error
            self.finished = time.perf_counter()
            self.done.set()

    def submit(self, job: Callable[[], Any]) -> None:
        self.done.clear()
        self.jobs.put(job)

    def result(self, started: float, timeout: float = 10.0) -> float:
        if not self.done.wait(timeout):
            raise redisresults.ResultTimeout("benchmark: the waiter did not return")
        if self.error is not None:
            raise self.error
        return self.finished - started

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------- rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def block_ratios(ours: list[float], raw: list[float], blocks: int, stat: Callable[[list[float]], float]
                 ) -> list[float]:
    """``stat(ours) / stat(raw)`` over each of ``blocks`` consecutive slices of paired samples."""
    count = min(len(ours), len(raw))
    blocks = max(1, min(blocks, count))
    size = count // blocks
    ratios = []
    for n in range(blocks):
        low, high = n * size, count if n == blocks - 1 else (n + 1) * size
        base = stat(raw[low:high])
        if base > 0:
            ratios.append(stat(ours[low:high]) / base)
    return ratios


def row(figure: str, unit: str, ours: float, raw: Optional[float], target: str, ok: Optional[bool],
        spread: Optional[list[float]] = None, **extra: Any) -> Row:
    """One figure: ``ratio`` is ours / raw; ``spread`` the lowest and highest per-block ratio."""
    ratio = None if raw is None or raw == 0 else ours / raw
    low_high = [min(spread), max(spread)] if spread else None
    return {"figure": figure, "unit": unit, "ours": ours, "raw": raw, "ratio": ratio, "spread": low_high,
            "blocks": len(spread) if spread else None, "target": target, "pass": ok, **extra}


def child_env(url: str) -> dict[str, str]:
    """The environment of a helper process: this redisresults importable first, the URL in ``$REDISRESULTS_URL``."""
    env = dict(os.environ)
    env[URL_ENV] = url
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def gevent_available() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


def run_helper(url: str, args: list[str], timeout: float, gevent: bool = False) -> Any:
    """``python -m redisresults.bench ARGS`` on ``url`` (under ``gevent.monkey`` when asked); its last line as JSON."""
    command = [sys.executable, "-m", "redisresults.bench", *args]
    if gevent:
        command[1:3] = ["-m", "gevent.monkey", "--module", "redisresults.bench"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env(url), check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"bench helper {args[0]!r} failed (status {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(lines[-1])
