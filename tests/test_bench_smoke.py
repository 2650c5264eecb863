"""``redisresults bench`` with tiny counts: it runs end to end and its output has the promised shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List

import pytest

from tests.conftest import unavailable
from tests.servers import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--samples", "10", "--fanin", "10", "--fanin-greenlets", "20", "--burst", "100", "--reject-limit", "1048576",
        "--reject-max", "3145728", "--repeats", "1"]
ROW_KEYS = {"figure", "unit", "ours", "raw", "ratio", "target", "pass"}
FIGURES = (
    "drain latency p50 (threads)",
    "drain latency p99 (threads)",
    "fan-in, 10 threads",
    "fan-in Pub/Sub connections (threads)",
    "subscribe burst, 100 waits",
    "memory per pending get() wait",
    "memory per pending as_future() wait",
    "reject raw bytes",
    "reject raw str",
    "reject doc over limit once encoded",
    "bytes sent to Redis while rejecting",
    "get(timeout=0.05) overshoot",
    "get(timeout=0.1) overshoot",
    "get(timeout=0.5) overshoot",
)


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("REDISRESULTS_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redisresults", "bench", *TINY, *args], capture_output=True,
                          text=True, timeout=120, env=_env(), cwd=ROOT, check=False)


def _find(rows: List[Dict[str, object]], prefix: str) -> Dict[str, object]:
    matches = [row for row in rows if str(row["figure"]).startswith(prefix)]
    assert len(matches) == 1, (prefix, [row["figure"] for row in rows])
    return matches[0]


def test_bench_json_on_the_embedded_server() -> None:
    if shutil.which("redis-server") is None:
        unavailable("no redis-server on PATH")
    proc = bench("--json")
    assert proc.returncode == 0, proc.stderr
    assert "redisresults bench: drain latency" in proc.stderr  # progress goes to stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"environment", "options", "figures", "passed"}
    assert report["options"]["samples"] == 10
    assert report["environment"]["redis_server"] and report["environment"]["cpus"]
    rows = report["figures"]
    for row in rows:
        assert set(row) >= ROW_KEYS
        assert isinstance(row["ours"], (int, float)) and row["pass"] in (True, False, None)
        assert row["ratio"] is None or row["ratio"] == pytest.approx(row["ours"] / row["raw"])
    for prefix in FIGURES:
        _find(rows, prefix)
    try:
        import gevent  # noqa: F401
    except ImportError:
        pass
    else:
        _find(rows, "drain latency p50 (gevent)")
        _find(rows, "fan-in, 20 greenlets")
        assert _find(rows, "fan-in Pub/Sub connections (greenlets)")["ours"] == 1
    assert _find(rows, "fan-in Pub/Sub connections (threads)")["ours"] == 1
    assert _find(rows, "bytes sent to Redis while rejecting")["ours"] == 0
    for kind in ("bytes", "str"):
        assert _find(rows, f"reject raw {kind}")["pass"] is True


def test_bench_table_against_a_url(redis_server: RedisServer) -> None:
    proc = bench("--no-gevent", "--url", redis_server.url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("redisresults bench on ")
    assert [cell.strip() for cell in lines[1].strip("|").split("|")] == ["figure", "ours", "raw", "ratio", "target",
                                                                           "result"]
    body = lines[3:]
    assert len(body) == len(FIGURES)
    for line in body:
        assert line.startswith("| ") and line.rstrip().endswith("|")
        assert line.rstrip("| ").rsplit("|", 1)[-1].strip() in ("pass", "FAIL", "info")
    assert "(gevent)" not in proc.stdout
