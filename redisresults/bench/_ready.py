"""``get()`` of a result that is already stored, on a fresh ``AsyncResult`` each time, with the cache off.

This is the common "the task finished long ago" read. Ours is ``backend.AsyncResult(id).get()`` on a
backend built with ``result_cache_max=0`` (every call reaches Redis); raw is
``json.loads(client.get(key))`` on a redis-py client of the same server. Calls alternate ours/raw
(the order flips each time) over 100 stored results, after an unmeasured warm-up.
"""

from __future__ import annotations

import json
import time

import redisresults

from ._common import (
    Options,
    Progress,
    Row,
    block_ratios,
    cleanup,
    make_backend,
    median,
    new_prefix,
    no_progress,
    raw_client,
    raw_store_many,
    row,
    task_key,
)

TARGET = 1.2
WARM_UP = 50
STORED = 100


def ready_get(url: str, calls: int, progress: Progress = no_progress) -> dict[str, list[float]]:
    """Seconds per call for ours and raw, in order."""
    prefix = new_prefix()
    backend = make_backend(url, prefix, "rrbench-ready", result_cache_max=0)
    raw = raw_client(backend, "rrbench-ready-raw")
    ids = [f"ready-{i}" for i in range(STORED)]
    keys = [task_key(prefix, task_id) for task_id in ids]
    ours_s: list[float] = []
    raw_s: list[float] = []
    try:
        raw_store_many(raw, prefix, ids)
        for i in range(-WARM_UP, calls):
            task_id, key = ids[i % STORED], keys[i % STORED]
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                if side == 0:
                    started = time.perf_counter()
                    value = backend.AsyncResult(task_id).get(timeout=10)
                    elapsed = time.perf_counter() - started
                    if value != {"id": task_id}:
                        raise redisresults.DecodeError(f"benchmark: {task_id} read back as {value!r}")
                    if i >= 0:
                        ours_s.append(elapsed)
                else:
                    started = time.perf_counter()
                    json.loads(raw.get(key))  # type: ignore[arg-type]
                    elapsed = time.perf_counter() - started
                    if i >= 0:
                        raw_s.append(elapsed)
            if i % 500 == 0:
                progress(f"get() of stored results {max(i, 0)}/{calls}")
        cleanup(raw, prefix)
    finally:
        backend.close()
        raw.close()
    return {"ours": ours_s, "raw": raw_s}


def figure_ready(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    calls = ready_get(url, opts.ready, progress)
    ours, raw = median(calls["ours"]) * 1e3, median(calls["raw"]) * 1e3
    return [row("get() of a stored result, fresh handle (p50)", "ms", ours, raw, f"<= {TARGET:.2f}x raw",
                ours <= TARGET * raw, block_ratios(calls["ours"], calls["raw"], opts.blocks, median))]
