"""Promises with absolute limits: oversized values refused before any byte is sent, and prompt timeouts.

Rejection: raw ``str``/``bytes`` values from 1 MiB over ``max_value_size`` up to ``reject_max`` are
refused in O(1) (before serializing), and a document that crosses the limit only once encoded is
refused after encoding; the server's ``total_net_input_bytes`` shows nothing was sent. Overshoot: how
late ``get(timeout)`` returns for a result that never comes, beside a bare ``Event.wait(timeout)``.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import redis

import redisresults

from ._common import MiB, Options, Progress, Row, make_backend, new_prefix, no_progress, raw_client, row


def _net_input(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_net_input_bytes"])


def reject_large(url: str, limit: int, largest: int, progress: Progress = no_progress) -> dict[str, Any]:
    """Milliseconds to refuse str/bytes values from 1 MiB over ``limit`` up to ``largest``, and bytes sent."""
    backend = make_backend(url, new_prefix(), "rrbench-reject", max_value_size=limit)
    admin = raw_client(backend, "rrbench-admin")
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


def _time_rejection(backend: redisresults.RedisBackend, value: Any, repeats: int = 5) -> float:
    elapsed = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            backend.store_result("too-large", value, "SUCCESS")
        except redisresults.BackendStoreError as error:
            elapsed.append(time.perf_counter() - started)
            if "value too large for Redis backend" not in str(error):
                raise
        else:
            raise redisresults.BackendStoreError("benchmark: an oversized value was stored")
    return statistics.median(elapsed)


def timeout_overshoot(url: str, timeouts: tuple[float, ...], repeats: int, progress: Progress = no_progress
                      ) -> dict[float, dict[str, float]]:
    """Worst ``elapsed - timeout`` (seconds) of ``get(timeout)`` on a result that never comes, and of Event.wait."""
    backend = make_backend(url, new_prefix(), "rrbench-timeout")
    out: dict[float, dict[str, float]] = {}
    try:
        for timeout in timeouts:
            progress(f"get(timeout={timeout}) overshoot")
            ours, raw = [], []
            for n in range(repeats):
                started = time.monotonic()
                try:
                    backend.AsyncResult(f"never-{timeout}-{n}").get(timeout=timeout)
                except redisresults.ResultTimeout:
                    pass
                ours.append(time.monotonic() - started - timeout)
                started = time.monotonic()
                threading.Event().wait(timeout)
                raw.append(time.monotonic() - started - timeout)
            out[timeout] = {"ours": max(ours), "raw": max(raw)}
    finally:
        backend.close()
    return out


def figure_reject(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    reject = reject_large(url, opts.reject_limit, opts.reject_max, progress)
    span = f"{reject['sizes'][0] // MiB}..{reject['sizes'][-1] // MiB} MiB"
    rows = []
    for kind in ("bytes", "str"):
        worst = max(reject["ms"][kind].values())
        rows.append(row(f"reject raw {kind} {span}", "ms", worst, None, "< 1 ms", worst < 1.0,
                        per_size={str(size): ms for size, ms in reject["ms"][kind].items()}))
    rows.append(row("reject doc over limit once encoded", "ms", reject["encoded_ms"], None, "rejected", True))
    rows.append(row("bytes sent to Redis while rejecting", "bytes", reject["bytes_sent"], None, "0",
                    reject["bytes_sent"] <= 0))
    return rows


def figure_overshoot(url: str, opts: Options, progress: Progress = no_progress) -> list[Row]:
    rows = []
    for timeout, values in timeout_overshoot(url, (0.05, 0.1, 0.5), opts.overshoot_repeats, progress).items():
        ours, raw = values["ours"] * 1e3, values["raw"] * 1e3
        rows.append(row(f"get(timeout={timeout}) overshoot (max)", "ms", ours, raw, "<= 50 ms", ours <= 50))
    return rows
