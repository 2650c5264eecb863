"""The benchmark session: one Redis (``$REDISRESULTS_URL``, else a private embedded redis-server).

Sizes are the full run of ``redisresults bench`` unless ``REDISRESULTS_BENCH_QUICK=1`` (``Options.quick()``).
The embedded server also listens on a loopback TCP port, for the drain-latency figure's TCP variant.
Each figure is recorded in pytest-benchmark's ``extra_info`` and summed up as one table at the end.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from redisresults import ConnectionUnavailable, bench
from redisresults._embedded import EmbeddedServer

ROWS: List[Dict[str, Any]] = []


@pytest.fixture(scope="session")
def bench_server() -> Iterator[Tuple[str, Optional[str]]]:
    """``(url, tcp_url)``: the URL to measure on, and the same server over TCP when we started it."""
    url = os.environ.get("REDISRESULTS_URL")
    if url:
        yield url, None
        return
    try:
        server = EmbeddedServer(tcp=True).start()
    except ConnectionUnavailable as error:
        pytest.skip(str(error))
    try:
        yield server.url, server.tcp_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bench_url(bench_server: Tuple[str, Optional[str]]) -> str:
    return bench_server[0]


@pytest.fixture(scope="session")
def bench_tcp_url(bench_server: Tuple[str, Optional[str]]) -> Optional[str]:
    return bench_server[1]


@pytest.fixture(scope="session")
def bench_options() -> bench.Options:
    return bench.Options.from_env()


@pytest.fixture
def figure(benchmark: Any, bench_url: str, bench_options: bench.Options) -> Callable[..., List[Dict[str, Any]]]:
    """Run one figure of ``redisresults.bench`` once under pytest-benchmark; rows to ``extra_info`` and the summary."""

    def run(measure: Callable[..., List[Dict[str, Any]]], **kwargs: Any) -> List[Dict[str, Any]]:
        rows = benchmark.pedantic(measure, args=(bench_url, bench_options), kwargs=kwargs, rounds=1, iterations=1)
        for row in rows:
            benchmark.extra_info[row["figure"]] = {k: row[k] for k in ("ours", "raw", "ratio", "spread", "target",
                                                                       "pass")}
        ROWS.extend(rows)
        return rows

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ROWS:
        terminalreporter.section("redisresults vs raw redis-py (same server, same run)")
        terminalreporter.write_line(bench.format_table({"figures": ROWS}))
