"""Each figure of ``redisresults bench``, side by side with raw redis-py, as pytest-benchmark tests.

Hard promises are asserted (one Pub/Sub connection, nothing sent for an oversized value, rejection in
under a millisecond, get(timeout) within 50 ms); ratio targets that depend on the machine's scheduling
(drain latency, fan-in rate) are reported in the summary table, not asserted.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from redisresults import _bench

Figure = Callable[..., List[Dict[str, Any]]]


def _by_name(rows: List[Dict[str, Any]], prefix: str) -> Dict[str, Any]:
    return next(row for row in rows if row["figure"].startswith(prefix))


def test_drain_latency(figure: Figure) -> None:
    rows = figure(_bench.figure_drain)
    assert _by_name(rows, "drain latency p50 (threads)")["ours"] > 0


def test_fan_in(figure: Figure) -> None:
    rows = figure(_bench.figure_fan_in)
    connection_rows = [row for row in rows if row["figure"].startswith("fan-in Pub/Sub connections")]
    assert connection_rows and all(row["ours"] == 1 for row in connection_rows)


def test_subscribe_burst_and_memory(figure: Figure) -> None:
    rows = figure(_bench.figure_burst)
    assert _by_name(rows, "memory per pending get() wait")["pass"]


def test_large_value_rejection(figure: Figure) -> None:
    rows = figure(_bench.figure_reject)
    assert _by_name(rows, "bytes sent to Redis while rejecting")["ours"] == 0
    assert _by_name(rows, "reject raw bytes")["pass"] and _by_name(rows, "reject raw str")["pass"]


def test_get_timeout_overshoot(figure: Figure) -> None:
    rows = figure(_bench.figure_overshoot)
    assert all(row["pass"] for row in rows)
