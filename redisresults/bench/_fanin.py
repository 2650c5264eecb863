"""Fan-in: many waiters, each on its own id, while another process stores all the results as fast as it can.

Every side is fed by the same raw ``SET`` + ``PUBLISH`` from the storing process (the bytes Celery
writes), so the figure compares only the waiting side: our drainer and futures against one thread
reading a redis-py ``PubSub`` and setting Events. Under gevent (a ``python -m gevent.monkey``
subprocess) the same code runs with every waiter a greenlet.

Two raw sides: ``raw`` is the careful client the target is measured against. Like ours (and Celery's own
consumer) it unsubscribes each channel once its result arrived, batched the way our drainer batches, so a
long-lived connection does not collect a dead subscription per result. ``raw-kept`` never unsubscribes:
its 10,000 channels stay subscribed until the connection closes. That is less work, but it leaks, so its
row is report-only.

The feed must outrun both waiting sides, or the figure measures the storer: with one round trip per
store, the storing process alone managed ~2,600 results/s on a 2-vCPU VM, the very rate both sides
"reached". So it pipelines its stores (``STORE_BATCH`` per round trip, like many workers finishing at
once; alone, ~11,700 results/s there), outruns both waiting sides, and says how long storing took: the
row carries the feed's own rate beside the waiters'.
"""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Optional

import redis

import redisresults

from ._common import (
    BenchError,
    Options,
    Progress,
    RawFanout,
    Row,
    child_env,
    cleanup,
    gevent_available,
    make_backend,
    median,
    new_prefix,
    no_progress,
    poll,
    raw_client,
    raw_store_many,
    row,
    run_helper,
    settled,
    task_key,
)

TARGET = 1.0  # results/s at least raw's
ROUNDS = 11  # alternating rounds per side with threads (single rounds swing 2x)
GREENLET_ROUNDS = 5  # with 10,000 greenlets (each round takes seconds, and swings less)
STORE_BATCH = 100  # stores per pipeline in the storing process: past ~50 its rate no longer grows


SIDES = ("ours", "raw", "raw-kept")


def fan_in(url: str, count: int, progress: Progress = no_progress, rounds: int = ROUNDS) -> dict[str, Any]:
    """``count`` waiters on distinct ids while another process stores them: results/s per round and side.

    One round lasts ~0.1-0.3 s for 1000 results, so scheduling noise is large (single rounds of either side
    swing 2x on a busy 2-vCPU VM): ``rounds`` rounds per side, in a rotated order, and the median round (by rate)
    is reported.
    """
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for n in range(rounds):
        for side in SIDES[n % len(SIDES):] + SIDES[:n % len(SIDES)]:
            progress(f"fan-in {side}: {count} waiting threads, round {n + 1}/{rounds}")
            runs[side].append(_fan_in_side(url, count, side))
    out: dict[str, Any] = {}
    for side, results in runs.items():
        ordered = sorted(results, key=lambda r: r["rate"])
        out[side] = {**ordered[len(ordered) // 2], "rates": [r["rate"] for r in results],
                     "cpu_us": median([r["cpu_us"] for r in results]),
                     "pubsub_connections": max(r["pubsub_connections"] for r in results)}
    return out


def _cpu_seconds() -> float:
    """CPU time of this whole process so far (every thread, user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client_counts(admin: redis.Redis, name: str) -> tuple[int, int]:
    """(connections named ``name``, those in Pub/Sub mode) from CLIENT LIST."""
    clients = [c for c in admin.client_list() if c.get("name") == name]
    pubsub = [c for c in clients if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0]
    return len(clients), len(pubsub)


def _fan_in_side(url: str, count: int, side: str) -> dict[str, Any]:
    prefix = new_prefix()
    name = f"rrbench-fanin-{side}"
    backend = make_backend(url, prefix, name)
    admin = raw_client(backend, "rrbench-admin")
    raw = raw_client(backend, name)
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
            errors.append(redisresults.ResultTimeout("raw fan-in wait"))
        finish()

    storer = subprocess.Popen(
        [sys.executable, "-m", "redisresults.bench", "store", prefix, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(url),
    )
    threads: list[threading.Thread] = []
    try:
        ids = [f"fanin-{i}" for i in range(count)]
        if side == "ours":
            threads = [threading.Thread(target=wait_ours, args=(tid,), daemon=True) for tid in ids]
        else:
            fanout = RawFanout(raw, unsubscribe=side == "raw")
            fanout.subscribe([task_key(prefix, tid) for tid in ids])
            fanout.start()
            threads = [threading.Thread(target=wait_raw, args=(ev,), daemon=True) for ev in fanout.events.values()]
        for thread in threads:
            thread.start()
        if side == "ours":
            poll(lambda: settled(backend, count), 60, "fan-in subscriptions", interval=0.005)
        assert storer.stdout is not None and storer.stdin is not None
        if storer.stdout.readline().strip() != "ready":
            raise BenchError("the fan-in storing process did not start")
        connections, pubsub = _client_counts(admin, name)
        gc.collect()  # the setup's garbage is collected now, on both sides, not by whichever store trips it first
        cpu = _cpu_seconds()
        started = time.perf_counter()
        storer.stdin.write("go\n")
        storer.stdin.flush()
        if not all_done.wait(300):
            raise redisresults.ResultTimeout(f"fan-in ({side}): {remaining[0]} of {count} waits still pending")
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        if errors:
            raise errors[0]
        stored = storer.stdout.readline().split()  # "stored SECONDS"
        storer.wait(30)
        if len(stored) != 2 or stored[0] != "stored":
            raise BenchError("the fan-in storing process did not say how long storing took")
        cleanup(admin, prefix)
        return {"rate": count / elapsed, "seconds": elapsed, "connections": connections, "pubsub_connections": pubsub,
                "feed_rate": count / max(float(stored[1]), 1e-9), "cpu_us": cpu / count * 1e6}
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


def store_process(url: str, prefix: str, count: int, workers: int = 4, batch: int = STORE_BATCH) -> None:
    """The other process of the fan-in figure: says ``ready``, waits for ``go``, stores ``count`` results
    (``SET`` then ``PUBLISH`` each, ``batch`` results per pipeline), then says ``stored SECONDS``."""
    backend = make_backend(url, prefix, "rrbench-storer")
    raw = raw_client(backend, "rrbench-storer-raw")
    backend.close()
    raw.ping()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return

    def work(start: int) -> None:
        raw_store_many(raw, prefix, [f"fanin-{i}" for i in range(start, count, workers)], publish=True, batch=batch)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"stored {time.perf_counter() - started:.6f}", flush=True)
    raw.close()


def figure_fan_in(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    fans = {f"{opts.fanin} threads": fan_in(url, opts.fanin, progress)}
    if opts.gevent and gevent_available():
        progress(f"fan-in under gevent: {opts.fanin_greenlets} waiting greenlets (subprocess)")
        helper = ["fanin", str(opts.fanin_greenlets), str(GREENLET_ROUNDS)]
        fans[f"{opts.fanin_greenlets} greenlets"] = run_helper(url, helper, timeout=900, gevent=True)
    rows = []
    for waiters, fan in fans.items():
        ours, raw, kept = fan["ours"], fan["raw"], fan["raw-kept"]
        rounds = [a / b for a, b in zip(ours["rates"], raw["rates"]) if b > 0]  # round n of each side
        rate = median(ours["rates"])
        rows.append(row(f"fan-in, {waiters}", "results/s", rate, median(raw["rates"]), f">= {TARGET:.2f}x raw",
                        rate >= TARGET * median(raw["rates"]), rounds,
                        feed_rate={"ours": ours["feed_rate"], "raw": raw["feed_rate"]}))
        kept_rounds = [a / b for a, b in zip(ours["rates"], kept["rates"]) if b > 0]
        rows.append(row(f"fan-in vs raw never unsubscribing, {waiters}", "results/s", rate, median(kept["rates"]),
                        "report", None, kept_rounds))
        kind = waiters.split()[1]
        rows.append(row(f"fan-in CPU per result ({kind})", "us", ours["cpu_us"], raw["cpu_us"], "report", None,
                        never_unsubscribing_us=kept["cpu_us"]))
        rows.append(row(f"fan-in Pub/Sub connections ({kind})", "conns", ours["pubsub_connections"],
                        raw["pubsub_connections"], "= 1", ours["pubsub_connections"] == 1,
                        total_connections=ours["connections"]))
    return rows
