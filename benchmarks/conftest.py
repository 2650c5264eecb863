"""The benchmark session: one Redis (``$REDISRESULTS_URL``, else a private embedded redis-server).

Sizes are the full run of ``redisresults bench`` unless ``REDISRESULTS_BENCH_QUICK=1`` (tiny counts).
Each figure is recorded in pytest-benchmark's ``extra_info`` and summed up as one table at the end.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List

import pytest

from redisresults import _bench
from redisresults._embedded import EmbeddedServer
from redisresults._exceptions import ConnectionUnavailable

ROWS: List[Dict[str, Any]] = []


@pytest.fixture(scope="session")
def bench_url() -> Iterator[str]:
    url = os.environ.get("REDISRESULTS_URL")
    if url:
        yield url
        return
    try:
        server = EmbeddedServer().start()
    except ConnectionUnavailable as error:
        pytest.skip(str(error))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bench_options() -> _bench.Options:
    if os.environ.get("REDISRESULTS_BENCH_QUICK") == "1":
        return _bench.Options(samples=50, fanin=50, fanin_greenlets=100, burst=500, reject_limit=1 << 20,
                              reject_max=4 << 20, overshoot_repeats=1)
    return _bench.Options()


@pytest.fixture
def figure(benchmark: Any, bench_url: str, bench_options: _bench.Options) -> Callable[..., List[Dict[str, Any]]]:
    """Run one figure of ``_bench`` once under pytest-benchmark; its rows go to ``extra_info`` and the summary."""

    def run(measure: Callable[..., List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
        rows = benchmark.pedantic(measure, args=(bench_url, bench_options), rounds=1, iterations=1)
        for row in rows:
            benchmark.extra_info[row["figure"]] = {k: row[k] for k in ("ours", "raw", "ratio", "target", "pass")}
        ROWS.extend(rows)
        return rows

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ROWS:
        terminalreporter.section("redisresults vs raw redis-py (same server, same run)")
        terminalreporter.write_line(_bench.format_table({"figures": ROWS}))
