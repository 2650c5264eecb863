"""Each figure of ``redisresults bench``, side by side with raw redis-py, as pytest-benchmark tests.

Hard promises are asserted (one Pub/Sub connection, nothing sent for an oversized value, rejection in
under a millisecond, get(timeout) within 50 ms); ratio targets that depend on the machine's scheduling
(drain latency, ready get, fan-in rate, burst, memory) are reported in the summary table, not asserted.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from redisresults import bench

Figure = Callable[..., List[Dict[str, Any]]]


def _by_name(rows: List[Dict[str, Any]], prefix: str) -> Dict[str, Any]:
    return next(row for row in rows if row["figure"].startswith(prefix))


def test_drain_latency(figure: Figure, bench_tcp_url: Optional[str]) -> None:
    rows = figure(bench.figure_drain, tcp_url=bench_tcp_url)
    assert _by_name(rows, "drain latency p50 (threads")["ours"] > 0
    if bench_tcp_url is not None:
        assert _by_name(rows, "drain latency p50 (threads, TCP)")["spread"]


def test_ready_get(figure: Figure) -> None:
    rows = figure(bench.figure_ready)
    assert _by_name(rows, "get() of a stored result")["ours"] > 0


def test_fan_in(figure: Figure) -> None:
    rows = figure(bench.figure_fan_in)
    connection_rows = [row for row in rows if row["figure"].startswith("fan-in Pub/Sub connections")]
    assert connection_rows and all(row["ours"] == 1 for row in connection_rows)
    rates = [row for row in rows if "feed_rate" in row]
    assert rates and all(min(row["feed_rate"].values()) > 0 for row in rates)
    cpu = [row for row in rows if row["figure"].startswith("fan-in CPU per result")]
    assert cpu and all(row["ours"] > 0 and row["raw"] > 0 for row in cpu)


def test_subscribe_burst(figure: Figure) -> None:
    rows = figure(bench.figure_burst)
    assert len(rows) == 4 and all(row["ours"] > 0 and row["spread"] for row in rows)


def test_memory_per_wait(figure: Figure) -> None:
    rows = figure(bench.figure_memory)
    assert _by_name(rows, "memory per pending get() wait")["ours"] > 0


def test_large_value_rejection(figure: Figure) -> None:
    rows = figure(bench.figure_reject)
    assert _by_name(rows, "bytes sent to Redis while rejecting")["ours"] == 0
    assert _by_name(rows, "reject raw bytes")["pass"] and _by_name(rows, "reject raw str")["pass"]


def test_get_timeout_overshoot(figure: Figure) -> None:
    rows = figure(bench.figure_overshoot)
    assert all(row["pass"] for row in rows)
