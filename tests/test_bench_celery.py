"""The Celery figure of ``redisresults bench`` with tiny counts: a real worker, both clients, rows well formed.

No wall-clock or ratio assertion (those depend on the machine); what is asserted is the shape of the rows, the
drop-in's connection bound (one Pub/Sub connection), that the worker is gone and its keys cleaned up afterwards,
and that ``import redisresults.bench`` does not import Celery.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

import pytest

from redisresults import bench
from redisresults.bench import _celery
from tests.polling import poll
from tests.servers import RedisServer

pytest.importorskip("celery")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_KEYS = {"figure", "unit", "ours", "raw", "ratio", "spread", "blocks", "target", "pass"}
FIGURES = {
    "Celery delay().get() p50 (vs stock Celery)": "ms",
    "Celery fan-in, 20 threads (vs stock Celery)": "results/s",
    "Celery fan-in result-backend connections (20 threads)": "conns",
    "Celery fan-in client connections, backend + broker (20 threads)": "conns",
}
GEVENT_FIGURE = "Celery fresh get() under gevent, p50 (vs stock Celery)"


def _gevent() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_celery_figure_quick(redis_server: RedisServer) -> None:
    opts = bench.Options.quick(samples=20, fanin=20, blocks=3, gevent=_gevent())
    messages: List[str] = []
    rows = bench.figure_celery(redis_server.url, opts, messages.append)
    expected = dict(FIGURES, **({GEVENT_FIGURE: "ms"} if opts.gevent else {}))
    by_name: Dict[str, Dict[str, Any]] = {row["figure"]: row for row in rows}
    assert {name: row["unit"] for name, row in by_name.items()} == expected
    for row in rows:
        assert set(row) >= ROW_KEYS and row["pass"] in (True, False, None), row
        assert isinstance(row["ours"], (int, float)) and isinstance(row["raw"], (int, float)), row
        assert row["ratio"] is None or row["ratio"] == pytest.approx(row["ours"] / row["raw"])
        assert "stock" in row["baseline"] and "threads" in row["worker"]
    for name in ("Celery delay().get() p50", "Celery fan-in, 20 threads"):
        low, high = by_name[next(n for n in by_name if n.startswith(name))]["spread"]
        assert 0 < low <= high
    fan_in = by_name["Celery fan-in, 20 threads (vs stock Celery)"]
    assert fan_in["errors"] == {"ours": 0, "raw": 0}, fan_in["first_error"]
    connections = by_name["Celery fan-in result-backend connections (20 threads)"]
    assert 1 <= connections["ours"] <= _celery.DEFAULT_MAX_CONNECTIONS + _celery.DRAINER_CONNECTIONS
    assert connections["pass"] is True and connections["pubsub_connections"]["ours"] == 1
    assert connections["raw"] >= 1  # stock Celery's per-thread backends were seen too
    if opts.gevent:
        assert by_name[GEVENT_FIGURE]["samples"] >= 3 and by_name[GEVENT_FIGURE]["ours"] > 0
    assert any("worker" in message for message in messages)

    client = redis_server.client()
    try:
        def worker_gone() -> Optional[bool]:
            names = {c.get("name") for c in client.client_list()}
            return None if "rrbench-celery-worker" in names else True

        poll(worker_gone, timeout=10, what="the worker's connections to close")
        for db in (0, 1):
            client.execute_command("SELECT", db)
            assert list(client.scan_iter(match="rrbench-*", count=1000)) == [], f"keys left in db {db}"
    finally:
        client.close()


def test_celery_figure_is_empty_without_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_celery, "celery_available", lambda: False)
    messages: List[str] = []
    assert bench.figure_celery("redis://127.0.0.1:1/0", bench.Options.quick(), messages.append) == []
    assert messages and "skipped" in messages[0]


def test_importing_the_bench_does_not_import_celery() -> None:
    code = "import sys, redisresults.bench; assert 'celery' not in sys.modules and 'kombu' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
