"""The benchmark figures, each measured side by side against raw redis-py on the same server.

The raw baseline is what a careful hand-written client would do: one thread stores with
``SET key value EX n`` + ``PUBLISH`` in a MULTI pipeline, and one thread reads a redis-py ``PubSub``
and sets the ``threading.Event`` a waiter blocks on (after ``json.loads``, as any real client must).
Ours and raw samples are interleaved so drift (CPU frequency, other load) hits both alike.

Used by ``redisresults bench`` (a table or JSON) and by the pytest-benchmark files in ``benchmarks/``.
``python -m redisresults._bench store ...`` is the storing process of the fan-in figure, and
``python -m gevent.monkey --module redisresults._bench drain ...`` the gevent drain-latency run.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional, cast

import redis

from ._exceptions import BackendStoreError, ResultTimeout
from ._keys import task_key
from .backend import RedisBackend

MiB = 1 << 20
EXPIRES = 600
SETTLE = 0.001  # lets a waiter block before the clock starts (both sides alike)
Progress = Callable[[str], None]


@dataclass
class Options:
    """Sizes of a run. The defaults are the full run; the smoke test passes tiny ones."""

    samples: int = 1000  # drain-latency samples per side
    fanin: int = 1000  # waiting threads in the fan-in figure
    fanin_greenlets: int = 10_000  # waiting greenlets in the gevent fan-in figure
    burst: int = 10_000  # new waits in the subscribe-burst figure
    reject_limit: int = 512 * MiB  # max_value_size for the rejection figure
    reject_max: int = 1024 * MiB  # largest value built for the rejection figure
    overshoot_repeats: int = 5
    gevent: bool = True  # also measure drain latency in a gevent-patched subprocess


# ---------------------------------------------------------------------------------------------- helpers


def _prefix() -> str:
    return f"rrbench-{uuid.uuid4().hex[:10]}:"


def _backend(url: str, prefix: str, name: str, **options: Any) -> RedisBackend:
    transport = {"global_keyprefix": prefix}
    return RedisBackend(url, transport_options=transport, expires=EXPIRES, client_name=name, **options)


def _raw_client(backend: RedisBackend, name: str) -> redis.Redis:
    """A plain redis-py client on the same server, from the backend's own pool kwargs."""
    params = backend.connparams
    params["client_name"] = name
    return redis.Redis(connection_pool=redis.ConnectionPool(**params))


def _raw_payload(task_id: str, result: Any) -> bytes:
    meta = {
        "status": "SUCCESS",
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": datetime.now(timezone.utc).isoformat(),
        "task_id": task_id,
    }
    return json.dumps(meta).encode()


def _raw_store(client: redis.Redis, key: bytes, payload: bytes) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set(key, payload, ex=EXPIRES)
    pipe.publish(key, payload)
    pipe.execute()


def _poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.0002) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ResultTimeout(f"benchmark: {what} did not happen within {timeout}s")
        time.sleep(interval)


def _confirmed(backend: RedisBackend, count: int) -> bool:
    """All ``count`` waits subscribed, confirmed by the server, and their keys read once."""
    stats = backend.stats()
    if stats["pending"] < count or stats["subscribed"] < count:
        return False
    consumer = backend.result_consumer
    return not getattr(consumer, "_inflight", None) and not getattr(consumer, "_need_read", None)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _cleanup(client: redis.Redis, prefix: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def _row(
    figure: str, unit: str, ours: float, raw: Optional[float], target: str, ok: Optional[bool], **extra: Any
) -> dict[str, Any]:
    ratio = None if raw is None or raw == 0 else ours / raw
    return {"figure": figure, "unit": unit, "ours": ours, "raw": raw, "ratio": ratio, "target": target, "pass": ok,
            **extra}


class RawFanout:
    """The raw baseline's receiving side: one thread reads one PubSub and sets per-channel Events."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub: Any = cast(Any, client).pubsub()
        self.events: dict[bytes, threading.Event] = {}
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
                raise ResultTimeout("benchmark: raw SUBSCRIBE confirmations did not arrive")
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="raw-pubsub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            message = self.pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                json.loads(message["data"])
                event = self.events.get(message["channel"])
                if event is not None:
                    event.set()

    def close(self) -> None:
        self._stop = True
        for event in self.events.values():
            event.set()  # releases raw waiters left behind by an interrupted run
        if self._thread is not None:
            self._thread.join(5)
        self.pubsub.close()


class _Waiter:
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
            raise ResultTimeout("benchmark: the waiter did not return")
        if self.error is not None:
            raise self.error
        return self.finished - started

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------- figures


def drain_latency(url: str, samples: int, progress: Progress = lambda _: None) -> dict[str, list[float]]:
    """Store -> ``get()`` returns, one at a time; seconds per sample for ours and raw, interleaved."""
    prefix = _prefix()
    backend = _backend(url, prefix, "rrbench-drain")
    raw = _raw_client(backend, "rrbench-drain-raw")
    fanout = RawFanout(raw)
    waiter = _Waiter()
    ours_s: list[float] = []
    raw_s: list[float] = []
    try:
        raw_keys = [f"{prefix}raw-{i}".encode() for i in range(samples)]
        fanout.subscribe(raw_keys)
        fanout.start()
        for i in range(samples):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for side in order:
                if side == 0:
                    task_id = f"drain-{i}"
                    reads = backend.stats()["reads"]
                    waiter.submit(functools.partial(_get, backend, task_id))
                    _poll(functools.partial(_reads_above, backend, reads), 10, "the subscription")
                    time.sleep(SETTLE)
                    started = time.perf_counter()
                    backend.mark_as_done(task_id, {"i": i})
                    ours_s.append(waiter.result(started))
                else:
                    key = raw_keys[i]
                    event = fanout.events[key]
                    waiter.submit(functools.partial(_wait_event, event))
                    time.sleep(SETTLE)
                    started = time.perf_counter()
                    _raw_store(raw, key, _raw_payload(f"raw-{i}", {"i": i}))
                    raw_s.append(waiter.result(started))
            if i % 50 == 0:
                progress(f"drain latency {i}/{samples}")
        _cleanup(raw, prefix)
    finally:
        backend.close()  # a waiter still in get() (Ctrl-C) fails at once instead of holding up the exit
        fanout.close()
        waiter.close()
        raw.close()
    return {"ours": ours_s, "raw": raw_s}


def _get(backend: RedisBackend, task_id: str) -> None:
    backend.AsyncResult(task_id).get(timeout=10)


def _reads_above(backend: RedisBackend, reads: int) -> bool:
    return bool(backend.stats()["reads"] > reads)


def _wait_event(event: threading.Event) -> None:
    if not event.wait(10):
        raise ResultTimeout("benchmark: raw event not set")


def drain_latency_gevent(url: str, samples: int) -> dict[str, list[float]]:
    """The drain-latency figure in a ``python -m gevent.monkey`` subprocess (greenlet drainer)."""
    command = [sys.executable, "-m", "gevent.monkey", "--module", "redisresults._bench", "drain", url, str(samples)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_child_env(), check=False)
    if proc.returncode != 0:
        raise BackendStoreError(f"gevent drain run failed (status {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fan_in_gevent(url: str, count: int, rounds: int = 3) -> dict[str, Any]:
    """The fan-in figure in a ``python -m gevent.monkey`` subprocess: every waiter is a greenlet.

    The same code as ``fan_in``: once gevent has patched the process, its threads and Events are
    greenlets and gevent Events, on both sides (our drainer greenlet, the raw PubSub greenlet).
    """
    command = [sys.executable, "-m", "gevent.monkey", "--module", "redisresults._bench", "fanin", url, str(count),
               str(rounds)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=_child_env(), check=False)
    if proc.returncode != 0:
        raise BackendStoreError(f"gevent fan-in run failed (status {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _client_counts(admin: redis.Redis, name: str) -> tuple[int, int]:
    """(connections named ``name``, those in Pub/Sub mode) from CLIENT LIST."""
    clients = [c for c in admin.client_list() if c.get("name") == name]
    pubsub = [c for c in clients if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0]
    return len(clients), len(pubsub)


def fan_in(url: str, count: int, progress: Progress = lambda _: None, rounds: int = 5) -> dict[str, Any]:
    """``count`` threads each wait on a distinct id while another process stores them: results/s.

    One round lasts ~0.1 s for 1000 results, so scheduling noise is large: ``rounds`` alternating
    rounds per side, and the median round (by rate) is reported.
    """
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "raw": []}
    for n in range(rounds):
        for side in ("ours", "raw") if n % 2 == 0 else ("raw", "ours"):
            progress(f"fan-in {side}: {count} waiting threads, round {n + 1}/{rounds}")
            runs[side].append(_fan_in_side(url, count, side))
    out: dict[str, Any] = {}
    for side, results in runs.items():
        ordered = sorted(results, key=lambda r: r["rate"])
        out[side] = {**ordered[len(ordered) // 2], "rates": [r["rate"] for r in results],
                     "pubsub_connections": max(r["pubsub_connections"] for r in results)}
    return out


def _fan_in_side(url: str, count: int, side: str) -> dict[str, Any]:
    prefix = _prefix()
    name = f"rrbench-fanin-{side}"
    backend = _backend(url, prefix, name)
    admin = _raw_client(backend, "rrbench-admin")
    raw = _raw_client(backend, name)
    fanout: Optional[RawFanout] = None
    remaining = [count]
    lock = threading.Lock()
    all_done = threading.Event()
    errors: list[BaseException] = []

    def finish() -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                all_done.set()

    def wait_ours(task_id: str) -> None:
        try:
            backend.AsyncResult(task_id).get(timeout=120)
        except BaseException as error:
            errors.append(error)
        finish()

    def wait_raw(event: threading.Event) -> None:
        if not event.wait(120):
            errors.append(ResultTimeout("raw fan-in wait"))
        finish()

    storer = subprocess.Popen(
        [sys.executable, "-m", "redisresults._bench", "store", side, url, prefix, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env(),
    )
    threads: list[threading.Thread] = []
    try:
        ids = [f"fanin-{i}" for i in range(count)]
        if side == "ours":
            threads = [threading.Thread(target=wait_ours, args=(tid,), daemon=True) for tid in ids]
        else:
            fanout = RawFanout(raw)
            fanout.subscribe([task_key(prefix, tid) for tid in ids])
            fanout.start()
            threads = [threading.Thread(target=wait_raw, args=(ev,), daemon=True) for ev in fanout.events.values()]
        for thread in threads:
            thread.start()
        if side == "ours":
            _poll(lambda: _confirmed(backend, count), 60, "fan-in subscriptions", interval=0.005)
        assert storer.stdout is not None and storer.stdin is not None
        if storer.stdout.readline().strip() != "ready":
            raise BackendStoreError("the fan-in storing process did not start")
        connections, pubsub = _client_counts(admin, name)
        started = time.perf_counter()
        storer.stdin.write("go\n")
        storer.stdin.flush()
        if not all_done.wait(300):
            raise ResultTimeout(f"fan-in ({side}): {remaining[0]} of {count} waits still pending")
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        storer.wait(30)
        _cleanup(admin, prefix)
        return {"rate": count / elapsed, "seconds": elapsed, "connections": connections, "pubsub_connections": pubsub}
    finally:
        if storer.poll() is None:
            storer.kill()
            storer.wait(10)
        for stream in (storer.stdin, storer.stdout):
            if stream is not None:
                stream.close()
        if fanout is not None:
            fanout.close()
        backend.close()
        for thread in threads:
            thread.join(1)
        raw.close()
        admin.close()


def _store_process(side: str, url: str, prefix: str, count: int, workers: int = 4) -> None:
    """The other process of the fan-in figure: store ``count`` results as fast as ``workers`` threads can.

    Both sides are fed by the same raw SET+PUBLISH (the same bytes Celery writes), so the figure
    compares only the waiting side: our drainer and futures against one PubSub thread and Events.
    """
    backend = _backend(url, prefix, "rrbench-storer")
    raw = _raw_client(backend, "rrbench-storer-raw")
    backend.client.ping()
    raw.ping()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return

    def work(start: int) -> None:
        for i in range(start, count, workers):
            task_id = f"fanin-{i}"
            _raw_store(raw, task_key(prefix, task_id), _raw_payload(task_id, {"i": i}))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.close()
    raw.close()


def subscribe_burst(url: str, count: int, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Seconds until ``count`` new waits are all subscribed (confirmed), and traced bytes per pending wait.

    Ours is measured twice for memory: the bare wait a blocked ``get()`` holds (``consumer.register``),
    and ``as_future()``, whose stdlib ``concurrent.futures.Future`` (a Condition and a deque) adds ~1.3 KB.
    """
    out: dict[str, Any] = {}
    for what, kind in (("seconds", "future"), ("bytes", "register"), ("bytes", "future")):
        for side in ("ours", "raw"):
            if side == "raw" and kind == "register":
                continue
            progress(f"subscribe burst {side} ({what}, {kind}): {count} waits")
            key = f"{side}_{what}" if side == "raw" or kind == "future" else f"{side}_{kind}_{what}"
            out[key] = _burst_side(url, count, side, what == "bytes", kind)
    return out


def _burst_side(url: str, count: int, side: str, measure_memory: bool, kind: str = "future") -> float:
    prefix = _prefix()
    backend = _backend(url, prefix, f"rrbench-burst-{side}")
    raw = _raw_client(backend, f"rrbench-burst-{side}")
    keep: list[Any] = []
    fanout: Optional[RawFanout] = None
    try:
        backend.client.ping()
        consumer = backend.result_consumer
        gc.collect()
        if measure_memory:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if measure_memory else 0
        started = time.perf_counter()
        if side == "ours":
            if kind == "register":
                keep = [consumer.register(f"burst-{i}") for i in range(count)]
            else:
                keep = [backend.AsyncResult(f"burst-{i}").as_future() for i in range(count)]
            _poll(lambda: _confirmed(backend, count), 120, "burst subscriptions", interval=0.001)
        else:
            fanout = RawFanout(raw)
            fanout.subscribe([task_key(prefix, f"burst-{i}") for i in range(count)])
        elapsed = time.perf_counter() - started
        if measure_memory:
            used = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            return used / count
        return elapsed
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        if fanout is not None:
            fanout.close()
        backend.close()
        raw.close()
        del keep


def _net_input(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_net_input_bytes"])


def reject_large(url: str, limit: int, largest: int, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Milliseconds to refuse str/bytes values from 1 MiB over ``limit`` up to ``largest``, and bytes sent."""
    prefix = _prefix()
    backend = _backend(url, prefix, "rrbench-reject", max_value_size=limit)
    admin = _raw_client(backend, "rrbench-admin")
    first = limit + MiB
    last = max(first, largest)
    sizes = sorted({first, (first + last) // 2, last})
    times: dict[str, dict[int, float]] = {"bytes": {}, "str": {}}
    try:
        backend.client.ping()
        one = _net_input(admin)
        overhead = _net_input(admin) - one  # what one INFO itself costs
        before = _net_input(admin)
        for kind in ("bytes", "str"):
            for size in sizes:
                progress(f"rejecting {kind} of {size // MiB} MiB (limit {limit // MiB} MiB)")
                value: Any = b"\0" * size if kind == "bytes" else "x" * size
                times[kind][size] = _time_rejection(backend, value) * 1e3
                del value
        progress("rejecting a document over the limit only once encoded")
        # "\n" encodes as two bytes: the raw check passes, the encoded document does not.
        document = {"text": "\n" * (limit // 2 + MiB)}
        encoded_ms = _time_rejection(backend, document, repeats=1) * 1e3
        del document
        sent = _net_input(admin) - before - overhead
        return {"sizes": sizes, "ms": times, "encoded_ms": encoded_ms, "bytes_sent": sent, "limit": limit}
    finally:
        backend.close()
        admin.close()


def _time_rejection(backend: RedisBackend, value: Any, repeats: int = 5) -> float:
    elapsed = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            backend.store_result("too-large", value, "SUCCESS")
        except BackendStoreError as error:
            elapsed.append(time.perf_counter() - started)
            if "value too large for Redis backend" not in str(error):
                raise
        else:
            raise BackendStoreError("benchmark: an oversized value was stored")
    return statistics.median(elapsed)


def timeout_overshoot(url: str, timeouts: tuple[float, ...], repeats: int, progress: Progress = lambda _: None
                      ) -> dict[float, dict[str, float]]:
    """Worst ``elapsed - timeout`` (seconds) of ``get(timeout)`` on a result that never comes, and of Event.wait."""
    backend = _backend(url, _prefix(), "rrbench-timeout")
    out: dict[float, dict[str, float]] = {}
    try:
        for timeout in timeouts:
            progress(f"get(timeout={timeout}) overshoot")
            ours, raw = [], []
            for n in range(repeats):
                started = time.monotonic()
                try:
                    backend.AsyncResult(f"never-{timeout}-{n}").get(timeout=timeout)
                except ResultTimeout:
                    pass
                ours.append(time.monotonic() - started - timeout)
                started = time.monotonic()
                threading.Event().wait(timeout)
                raw.append(time.monotonic() - started - timeout)
            out[timeout] = {"ours": max(ours), "raw": max(raw)}
    finally:
        backend.close()
    return out


# ---------------------------------------------------------------------------------------------- the run


def environment(url: str) -> dict[str, Any]:
    backend = RedisBackend(url)
    try:
        info = backend.client.info("server")
    finally:
        backend.close()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "redis_server": info.get("redis_version"),
        "server": backend.as_uri(),
    }


def figure_drain(url: str, opts: Options, progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    drains = {"threads": drain_latency(url, opts.samples, progress)}
    if opts.gevent and _gevent_available():
        progress("drain latency under gevent (subprocess)")
        drains["gevent"] = drain_latency_gevent(url, opts.samples)
    rows = []
    for mode, drain in drains.items():
        for label, q, limit in (("p50", 0.5, 1.10), ("p99", 0.99, 1.5)):
            ours, raw = _percentile(drain["ours"], q) * 1e3, _percentile(drain["raw"], q) * 1e3
            rows.append(_row(f"drain latency {label} ({mode})", "ms", ours, raw, f"<= {limit:.2f}x raw",
                             ours <= limit * raw))
    return rows


def figure_fan_in(url: str, opts: Options, progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    fans = {f"{opts.fanin} threads": fan_in(url, opts.fanin, progress)}
    if opts.gevent and _gevent_available():
        progress(f"fan-in under gevent: {opts.fanin_greenlets} waiting greenlets (subprocess)")
        fans[f"{opts.fanin_greenlets} greenlets"] = fan_in_gevent(url, opts.fanin_greenlets)
    rows = []
    for waiters, fan in fans.items():
        ours, raw = fan["ours"], fan["raw"]
        rows.append(_row(f"fan-in, {waiters}", "results/s", ours["rate"], raw["rate"], ">= 0.90x raw",
                         ours["rate"] >= 0.9 * raw["rate"]))
        rows.append(_row(f"fan-in Pub/Sub connections ({waiters.split()[1]})", "conns", ours["pubsub_connections"],
                         raw["pubsub_connections"], "= 1", ours["pubsub_connections"] == 1,
                         total_connections=ours["connections"]))
    return rows


def figure_burst(url: str, opts: Options, progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    burst = subscribe_burst(url, opts.burst, progress)
    return [
        _row(f"subscribe burst, {opts.burst} waits", "ms", burst["ours_seconds"] * 1e3, burst["raw_seconds"] * 1e3,
             "report", None),
        _row("memory per pending get() wait", "bytes", burst["ours_register_bytes"], burst["raw_bytes"],
             "<= 2048 B", burst["ours_register_bytes"] <= 2048),
        _row("memory per pending as_future() wait", "bytes", burst["ours_bytes"], burst["raw_bytes"], "report", None),
    ]


def figure_reject(url: str, opts: Options, progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    reject = reject_large(url, opts.reject_limit, opts.reject_max, progress)
    span = f"{reject['sizes'][0] // MiB}..{reject['sizes'][-1] // MiB} MiB"
    rows = []
    for kind in ("bytes", "str"):
        worst = max(reject["ms"][kind].values())
        rows.append(_row(f"reject raw {kind} {span}", "ms", worst, None, "< 1 ms", worst < 1.0,
                         per_size={str(size): ms for size, ms in reject["ms"][kind].items()}))
    rows.append(_row("reject doc over limit once encoded", "ms", reject["encoded_ms"], None, "rejected", True))
    rows.append(_row("bytes sent to Redis while rejecting", "bytes", reject["bytes_sent"], None, "0",
                     reject["bytes_sent"] <= 0))
    return rows


def figure_overshoot(url: str, opts: Options, progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    rows = []
    for timeout, values in timeout_overshoot(url, (0.05, 0.1, 0.5), opts.overshoot_repeats, progress).items():
        ours, raw = values["ours"] * 1e3, values["raw"] * 1e3
        rows.append(_row(f"get(timeout={timeout}) overshoot (max)", "ms", ours, raw, "<= 50 ms", ours <= 50))
    return rows


FIGURES = (figure_drain, figure_fan_in, figure_burst, figure_reject, figure_overshoot)


def run(url: str, options: Optional[Options] = None, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Every figure, as rows ``{figure, unit, ours, raw, ratio, target, pass}``, and the environment."""
    opts = options or Options()
    rows = [row for figure in FIGURES for row in figure(url, opts, progress)]
    return {
        "environment": environment(url),
        "options": asdict(opts),
        "figures": rows,
        "passed": all(row["pass"] is not False for row in rows),
    }


def _gevent_available() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


def format_table(report: dict[str, Any]) -> str:
    """The rows as an aligned text table (also valid Markdown)."""
    header = ["figure", "ours", "raw", "ratio", "target", "result"]
    lines = [header]
    for row in report["figures"]:
        unit = row["unit"]
        lines.append([
            row["figure"],
            _fmt(row["ours"], unit),
            "-" if row["raw"] is None else _fmt(row["raw"], unit),
            "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
            row["target"],
            {True: "pass", False: "FAIL", None: "info"}[row["pass"]],
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _fmt(value: float, unit: str) -> str:
    if unit in ("conns", "bytes") and float(value).is_integer():
        return f"{int(value)} {unit}" if unit == "bytes" else str(int(value))
    if unit == "results/s":
        return f"{value:,.0f}/s"
    if unit == "bytes":
        return f"{value:,.0f} bytes"
    return f"{value:.3f} {unit}"


def _main(argv: list[str]) -> int:
    """Entry points for the helper processes (see the module docstring)."""
    import logging

    import structlog

    # stdout carries the protocol ("ready", the JSON figures): library logs go to stderr, warnings only.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    if argv[:1] == ["store"]:
        side, url, prefix, count = argv[1:5]
        _store_process(side, url, prefix, int(count))
        return 0
    if argv[:1] == ["fanin"]:
        url, count, rounds = argv[1:4]
        print(json.dumps(fan_in(url, int(count), rounds=int(rounds))))
        return 0
    if argv[:1] == ["drain"]:
        url, samples = argv[1:3]
        print(json.dumps(drain_latency(url, int(samples))))
        return 0
    print("usage: python -m redisresults._bench store|drain|fanin ...", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
