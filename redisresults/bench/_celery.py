"""Celery: stock Celery's client against the drop-in's, on one real worker, one broker, one Redis, one run.

One ``celery worker`` (threads pool, stock ``redis://`` result backend: see ``_celery_worker``) serves both
clients. "raw" in these rows is **stock Celery 5.x's client** (``redis://`` backend, ``result_backend_thread_safe``
left at Celery's default, False: one backend, pool and Pub/Sub connection per thread); "ours" is the drop-in
(``redisresults+redis://``). Samples and rounds alternate between the two, so drift hits both alike.

* ``delay().get()`` round trip of a trivial task, one thread;
* fan-in: N threads each doing ``delay().get()``, results/s, and the peak number of Redis connections the client
  held (CLIENT LIST sampled from an admin connection; every connection is named, so the worker's and the admin's
  are not counted);
* a fresh ``AsyncResult(id).get()`` in a new greenlet under gevent (helper process ``python -m gevent.monkey
  --module redisresults.bench celery-get N``): from the task's own end (``time.time()`` it returns) to ``get()``
  returning. Stock Celery's gevent drainer steps in one-second waits.

Celery is the optional ``bench-celery`` extra: imported inside the functions, and without it the figure is empty.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Optional

import redis

from ._celery_worker import CONCURRENCY, POOL, PREFIX_ENV, QUEUE_ENV, CeleryUrls, CeleryWorker, celery_urls
from ._common import (
    BenchError,
    Options,
    Progress,
    Row,
    block_ratios,
    child_env,
    cleanup,
    gevent_available,
    make_backend,
    median,
    new_prefix,
    no_progress,
    raw_client,
    row,
)

ROUND_TRIP_TARGET = 1.0  # p50 at most stock's
FAN_IN_TARGET = 1.0  # results/s at least stock's
GEVENT_TARGET_MS = 10.0
DEFAULT_MAX_CONNECTIONS = 100  # redis-py's pool default, which the drop-in keeps while redis_max_connections is unset
DRAINER_CONNECTIONS = 2  # the drainer's own Pub/Sub and key-read connections, outside max_connections
GET_TIMEOUT = 30.0
PAUSE = 0.05  # the gevent figure's task sleeps this long, so the fresh get() is already waiting
SAMPLE_EVERY = 0.05  # CLIENT LIST interval during a fan-in round
SIDES = ("ours", "raw")
ADMIN = "rrbench-celery-admin"


def celery_available() -> bool:
    """Whether Celery can be imported (looked up, not imported: ``import redisresults.bench`` stays Celery-free)."""
    return importlib.util.find_spec("celery") is not None


def client_app(urls: CeleryUrls, side: str, queue: str, prefix: str, name: str) -> Any:
    """A client app of its own (never current): the drop-in (``ours``) or stock (``raw``) backend, named connections."""
    from celery import Celery  # type: ignore  # untyped, or not installed

    backend = urls.dropin if side == "ours" else urls.stock
    app = Celery(f"rrbench-{name}", broker=urls.broker, backend=backend, set_as_current=False)
    keys = {"global_keyprefix": prefix}
    app.conf.update(
        task_default_queue=queue,
        redis_client_name=name,
        broker_transport_options={**keys, "client_name": f"{name}-broker"},
        result_backend_transport_options=keys,
        broker_connection_retry_on_startup=True,
    )  # result_backend_thread_safe stays Celery's default (False): what a stock deployment runs with
    return app


def close_apps(*apps: Any) -> None:
    """Close the apps and, for the drop-in, the shared cores (so the next round's connections start from zero)."""
    import redisresults.celery

    gc.collect()  # AsyncResult.__del__ -> remove_pending_result while the cores are still there
    redisresults.celery.close_all()
    for app in apps:
        app.close()


# ------------------------------------------------------------------------------------------- round trip


def round_trip(apps: dict[str, Any], samples: int, progress: Progress = no_progress) -> dict[str, list[float]]:
    """Seconds per ``delay().get()`` for each side, interleaved (the order flips every sample), after a warm-up."""
    sigs = {side: app.signature("rrbench.echo") for side, app in apps.items()}
    out: dict[str, list[float]] = {side: [] for side in SIDES}
    for side in SIDES:
        for i in range(5):
            sigs[side].delay(i).get(timeout=GET_TIMEOUT)
    for i in range(samples):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            started = time.perf_counter()
            sigs[side].delay(i).get(timeout=GET_TIMEOUT)
            out[side].append(time.perf_counter() - started)
        if i % 100 == 0:
            progress(f"Celery delay().get() round trip {i}/{samples}")
    return out


# ------------------------------------------------------------------------------------------- fan-in


class ConnectionSampler:
    """Peak connections named ``name`` (and ``name-broker``), and Pub/Sub among them, from CLIENT LIST."""

    def __init__(self, admin: redis.Redis, name: str) -> None:
        self.admin, self.name = admin, name
        self.peak = {"backend": 0, "pubsub": 0, "broker": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rrbench-celery-sampler", daemon=True)

    def sample(self) -> None:
        clients = self.admin.client_list()
        backend = [c for c in clients if c.get("name") == self.name]
        counts = {
            "backend": len(backend),
            "pubsub": sum(1 for c in backend if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0),
            "broker": sum(1 for c in clients if c.get("name") == f"{self.name}-broker"),
        }
        for key, value in counts.items():
            self.peak[key] = max(self.peak[key], value)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)
        self.sample()  # the pools' idle connections are still open: the last look sees them


def _fan_in_round(urls: CeleryUrls, queue: str, prefix: str, admin: redis.Redis, side: str, count: int,
                  number: int) -> dict[str, Any]:
    """``count`` threads, started before the clock, each ``delay(i).get()`` once; results/s and peak connections."""
    name = f"rrbench-celery-{side}-{number}"
    app = client_app(urls, side, queue, prefix, name)
    sig = app.signature("rrbench.echo")
    go = threading.Event()
    errors: list[BaseException] = []

    def wait(i: int) -> None:
        if not go.wait(60):
            return
        try:
            sig.delay(i).get(timeout=GET_TIMEOUT)
        except Exception as error:  # counted and reported; the other threads go on
            errors.append(error)

    threads = [threading.Thread(target=wait, args=(i,), name="rrbench-celery-client", daemon=True)
               for i in range(count)]
    sampler = ConnectionSampler(admin, name)
    try:
        for thread in threads:
            thread.start()
        sampler.start()
        started = time.perf_counter()
        go.set()
        deadline = time.monotonic() + GET_TIMEOUT + 60
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        elapsed = time.perf_counter() - started
        left = sum(1 for thread in threads if thread.is_alive())
        if left:
            raise BenchError(f"Celery fan-in ({side}): {left} of {count} client threads still waiting")
    finally:
        go.set()
        sampler.stop()
        close_apps(app)
    done = count - len(errors)
    return {"rate": done / elapsed, "seconds": elapsed, "errors": len(errors),
            "error": repr(errors[0])[:200] if errors else None, **sampler.peak}


def fan_in(urls: CeleryUrls, queue: str, prefix: str, admin: redis.Redis, count: int, rounds: int,
           progress: Progress = no_progress) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` alternating rounds per side (one round of 1,000 is seconds long, so scheduling noise is large)."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for n in range(rounds):
        for side in SIDES if n % 2 == 0 else SIDES[::-1]:
            progress(f"Celery fan-in {'drop-in' if side == 'ours' else 'stock'}: {count} threads, "
                     f"round {n + 1}/{rounds}")
            runs[side].append(_fan_in_round(urls, queue, prefix, admin, side, count, n))
    return runs


# ------------------------------------------------------------------------------------------- gevent


def celery_get(url: str, samples: int) -> dict[str, list[float]]:
    """The helper process (under ``gevent.monkey``): seconds from the task's end to a fresh greenlet's get() return.

    The worker's queue and key prefix come in ``$RRBENCH_CELERY_QUEUE`` / ``$RRBENCH_CELERY_PREFIX``.
    """
    import gevent

    urls = celery_urls(url)
    if urls is None:
        raise BenchError("the Celery figure needs a TCP or Unix-socket URL")
    queue, prefix = os.environ[QUEUE_ENV], os.environ[PREFIX_ENV]
    apps = {side: client_app(urls, side, queue, prefix, f"rrbench-celery-gevent-{side}") for side in SIDES}
    out: dict[str, list[float]] = {side: [] for side in SIDES}
    try:
        for i in range(samples + 1):  # the first of each side warms it up (connections, drainer), not kept
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                app = apps[side]
                result = app.signature("rrbench.stamp").delay(PAUSE)

                def fresh(task_id: str = result.id, app: Any = app) -> float:
                    finished = app.AsyncResult(task_id).get(timeout=GET_TIMEOUT)
                    return time.time() - float(finished)

                waiter = gevent.spawn(fresh)
                latency = float(waiter.get(timeout=GET_TIMEOUT + 5))
                if i:
                    out[side].append(latency)
                del result
    finally:
        close_apps(*apps.values())
    return out


def _gevent_helper(url: str, queue: str, prefix: str, samples: int) -> dict[str, list[float]]:
    env = child_env(url)
    env.update({QUEUE_ENV: queue, PREFIX_ENV: prefix})
    command = [sys.executable, "-m", "gevent.monkey", "--module", "redisresults.bench", "celery-get", str(samples)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60 + samples * 2 * (GET_TIMEOUT / 5),
                          env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"bench helper 'celery-get' failed (status {proc.returncode}): {proc.stderr.strip()[-500:]}")
    result: dict[str, list[float]] = json.loads(lines[-1])
    return result


# ------------------------------------------------------------------------------------------- the figure


def figure_celery(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    """Round trip, fan-in (rate and connections), gevent fresh get(): the drop-in against stock Celery.

    No rows when Celery is not installed or ``url`` is not a plain TCP / Unix-socket Redis (TLS, Sentinel, Cluster).
    """
    if not opts.celery:
        return []
    if not celery_available():
        progress("Celery figures skipped: celery is not installed (pip install 'redisresults[bench-celery]')")
        return []
    urls = celery_urls(url)
    if urls is None:
        progress("Celery figures skipped: they need a TCP or Unix-socket Redis (no TLS, Sentinel or Cluster)")
        return []
    prefix, queue = new_prefix(), f"rrbench-{uuid.uuid4().hex[:10]}"
    keys = make_backend(url, prefix, ADMIN)
    admin = raw_client(keys, ADMIN)
    broker_params = {**keys.connparams, "db": (int(keys.connparams.get("db") or 0) + 1) % 16, "client_name": ADMIN}
    broker_admin = redis.Redis(connection_pool=redis.ConnectionPool(**broker_params))
    worker = CeleryWorker(url, urls, queue, prefix)
    gevent_run: Optional[dict[str, list[float]]] = None
    try:
        progress("Celery: starting a worker (-P threads)")
        worker.start()
        apps = {side: client_app(urls, side, queue, prefix, f"rrbench-celery-trip-{side}") for side in SIDES}
        try:
            worker.wait_ready(apps["raw"])
            trip = round_trip(apps, opts.samples, progress)
        finally:
            close_apps(*apps.values())
        runs = fan_in(urls, queue, prefix, admin, opts.fanin, max(1, opts.blocks), progress)
        if opts.gevent and gevent_available():
            progress("Celery fresh get() under gevent (subprocess)")
            gevent_run = _gevent_helper(url, queue, prefix, max(3, min(20, opts.samples // 50)))
    finally:
        worker.stop()
        cleanup(admin, prefix)
        cleanup(broker_admin, prefix)
        broker_admin.close()
        admin.close()
        keys.close()
    return _rows(opts, trip, runs, gevent_run)


def _rows(opts: Options, trip: dict[str, list[float]], runs: dict[str, list[dict[str, Any]]],
          gevent_run: Optional[dict[str, list[float]]]) -> list[Row]:
    basis: dict[str, Any] = {
        "baseline": "stock Celery client, redis:// backend, result_backend_thread_safe=False (default)",
        "worker": f"celery worker -P {POOL} -c {CONCURRENCY}, stock redis:// backend",
    }
    ours, raw = median(trip["ours"]) * 1e3, median(trip["raw"]) * 1e3
    rows = [row("Celery delay().get() p50 (vs stock Celery)", "ms", ours, raw,
                f"<= {ROUND_TRIP_TARGET:.2f}x stock", ours <= ROUND_TRIP_TARGET * raw,
                block_ratios(trip["ours"], trip["raw"], opts.blocks, median), **basis)]
    rates = {side: [r["rate"] for r in runs[side]] for side in SIDES}
    errors = {side: sum(r["errors"] for r in runs[side]) for side in SIDES}
    peak = {side: {key: max(r[key] for r in runs[side]) for key in ("backend", "pubsub", "broker")} for side in SIDES}
    rate = median(rates["ours"])
    rounds = [a / b for a, b in zip(rates["ours"], rates["raw"]) if b > 0]
    first_error = {side: next((r["error"] for r in runs[side] if r["error"]), None) for side in SIDES}
    ok = rate >= FAN_IN_TARGET * median(rates["raw"]) and not errors["ours"]
    rows.append(row(f"Celery fan-in, {opts.fanin} threads (vs stock Celery)", "results/s", rate, median(rates["raw"]),
                    f">= {FAN_IN_TARGET:.2f}x stock", ok, rounds, errors=errors, first_error=first_error, **basis))
    bound = DEFAULT_MAX_CONNECTIONS + DRAINER_CONNECTIONS
    rows.append(row(f"Celery fan-in result-backend connections ({opts.fanin} threads)", "conns",
                    peak["ours"]["backend"], peak["raw"]["backend"],
                    f"<= {bound} (max_connections + drainer's 2)", peak["ours"]["backend"] <= bound,
                    pubsub_connections={s: peak[s]["pubsub"] for s in SIDES}, **basis))
    rows.append(row(f"Celery fan-in client connections, backend + broker ({opts.fanin} threads)", "conns",
                    peak["ours"]["backend"] + peak["ours"]["broker"], peak["raw"]["backend"] + peak["raw"]["broker"],
                    "report", None, broker_connections={s: peak[s]["broker"] for s in SIDES}, **basis))
    if gevent_run is not None:
        ours, raw = median(gevent_run["ours"]) * 1e3, median(gevent_run["raw"]) * 1e3
        rows.append(row("Celery fresh get() under gevent, p50 (vs stock Celery)", "ms", ours, raw,
                        f"<= {GEVENT_TARGET_MS:.0f} ms", ours <= GEVENT_TARGET_MS,
                        block_ratios(gevent_run["ours"], gevent_run["raw"], min(opts.blocks, 3), median),
                        samples=len(gevent_run["ours"]), **basis))
    return rows
