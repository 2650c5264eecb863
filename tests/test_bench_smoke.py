"""``redisresults bench`` with tiny counts: it runs end to end and its output has the promised shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List

import pytest

from redisresults import bench
from redisresults.cli import build_parser
from redisresults.cli._bench_command import bench_options
from tests.conftest import unavailable
from tests.servers import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--quick", "--samples", "10", "--fanin", "10", "--fanin-greenlets", "20", "--burst", "100", "--ready", "20",
        "--memory", "20", "--reject-limit", "1048576", "--reject-max", "3145728", "--repeats", "1"]
ROW_KEYS = {"figure", "unit", "ours", "raw", "ratio", "spread", "blocks", "target", "pass"}
FIGURES = (
    "drain latency p50 (threads, TCP)",
    "drain latency p99 (threads, TCP)",
    "get() of a stored result, fresh handle (p50)",
    "fan-in, 10 threads",
    "fan-in vs raw never unsubscribing, 10 threads",
    "fan-in CPU per result (threads)",
    "fan-in Pub/Sub connections (threads)",
    "burst, 100 waits, stored, as_future()",
    "burst, 100 waits, stored, ResultSet.join",
    "burst, 100 waits, not stored, as_future()",
    "burst, 100 waits, not stored, ResultSet.join",
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
CELERY_FIGURES = (
    "Celery delay().get() p50 (vs stock Celery)",
    "Celery fan-in, 10 threads (vs stock Celery)",
    "Celery fan-in result-backend connections (10 threads)",
    "Celery fan-in client connections, backend + broker (10 threads)",
)
#: Rows whose ratio comes with the spread over blocks.
WITH_SPREAD = ("drain latency", "get() of a stored", "fan-in, ", "burst, ")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("REDISRESULTS_URL", None)
    env.pop(bench.QUICK_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redisresults", "bench", *TINY, *args], capture_output=True,
                          text=True, timeout=180, env=_env(), cwd=ROOT, check=False)


def _find(rows: List[Dict[str, object]], prefix: str) -> Dict[str, object]:
    matches = [row for row in rows if str(row["figure"]).startswith(prefix)]
    assert len(matches) == 1, (prefix, [row["figure"] for row in rows])
    return matches[0]


def _celery() -> bool:
    try:
        import celery  # noqa: F401
    except ImportError:
        return False
    return True


def _gevent() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_json_on_the_embedded_server() -> None:
    if shutil.which("redis-server") is None:
        unavailable("no redis-server on PATH")
    proc = run_bench("--json")
    assert proc.returncode == 0, proc.stderr
    assert "redisresults bench: drain latency" in proc.stderr  # progress goes to stderr
    assert "127.0.0.1:" in proc.stderr.splitlines()[0]  # the embedded server also listens on loopback TCP
    report = json.loads(proc.stdout)
    assert set(report) >= {"environment", "options", "figures", "passed"}
    assert report["options"]["samples"] == 10 and report["options"]["blocks"] == 5
    assert report["environment"]["redis_server"] and report["environment"]["cpus"]
    assert ":**@" in report["environment"]["server"]  # the embedded server's password, masked
    rows = report["figures"]
    for row in rows:
        assert set(row) >= ROW_KEYS
        assert isinstance(row["ours"], (int, float)) and row["pass"] in (True, False, None)
        assert row["ratio"] is None or row["ratio"] == pytest.approx(row["ours"] / row["raw"])
        if str(row["figure"]).startswith(WITH_SPREAD):
            low, high = row["spread"]
            assert 0 < low <= high and row["blocks"] >= 3, row
    for prefix in FIGURES:
        _find(rows, prefix)
    for mode in ("threads, unix socket", "threads, TCP"):
        for label in ("p50", "p99"):
            assert _find(rows, f"drain latency {label} ({mode})")["unit"] == "ms"
    if _celery():
        for prefix in CELERY_FIGURES:
            _find(rows, prefix)
        assert _find(rows, "Celery fan-in result-backend connections (10 threads)")["pass"] is True
    if _gevent():
        _find(rows, "drain latency p50 (gevent, unix socket)")
        _find(rows, "fan-in, 20 greenlets")
        assert _find(rows, "fan-in Pub/Sub connections (greenlets)")["ours"] == 1
        assert _find(rows, "fan-in CPU per result (greenlets)")["raw"] > 0
    assert _find(rows, "fan-in Pub/Sub connections (threads)")["ours"] == 1
    feed = _find(rows, "fan-in, 10 threads")["feed_rate"]  # the storing process says how fast it stored
    assert feed["ours"] > 0 and feed["raw"] > 0
    cpu = _find(rows, "fan-in CPU per result (threads)")  # the waiting process's CPU time while results arrive
    assert cpu["ours"] > 0 and cpu["raw"] > 0 and cpu["pass"] is None and cpu["never_unsubscribing_us"] > 0
    assert _find(rows, "fan-in vs raw never unsubscribing, 10 threads")["pass"] is None  # report only
    assert _find(rows, "bytes sent to Redis while rejecting")["ours"] == 0
    for kind in ("bytes", "str"):
        assert _find(rows, f"reject raw {kind}")["pass"] is True
    assert "Traceback" not in proc.stderr


def test_bench_table_against_a_url(redis_server: RedisServer) -> None:
    proc = run_bench("--no-gevent", "--no-celery", "--url", redis_server.url)
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
    drain = next(line for line in body if "drain latency p50" in line)
    ratio = drain.split("|")[4].strip()
    assert ratio.endswith(")") and "x (" in ratio  # e.g. "1.04x (1.01-1.09)"
    assert "(gevent" not in proc.stdout and "unix socket" not in proc.stdout


def test_quick_sizes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bench.QUICK_ENV, raising=False)
    parser = build_parser()
    assert bench_options(parser.parse_args(["bench"])) == bench.Options()
    quick = bench_options(parser.parse_args(["bench", "--quick", "--samples", "7", "--no-gevent"]))
    assert quick == bench.Options.quick(samples=7, gevent=False)
    assert quick.burst < bench.Options().burst and quick.reject_max < bench.Options().reject_max
    monkeypatch.setenv(bench.QUICK_ENV, "1")
    assert bench_options(parser.parse_args(["bench"])) == bench.Options.quick()
    assert bench.Options.from_env() == bench.Options.quick()


def test_helper_process_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "redisresults.bench", "nonsense"], capture_output=True, text=True,
                          timeout=60, env=_env(), cwd=ROOT, check=False)
    assert proc.returncode == 64 and "python -m redisresults.bench store" in proc.stderr


def test_format_table_prints_the_spread() -> None:
    rows = [
        {"figure": "a", "unit": "ms", "ours": 1.04, "raw": 1.0, "ratio": 1.04, "spread": [1.01, 1.09], "target": "t",
         "pass": True},
        {"figure": "b", "unit": "bytes", "ours": 0, "raw": None, "ratio": None, "spread": None, "target": "0",
         "pass": None},
    ]
    table = bench.format_table({"figures": rows}).splitlines()
    assert "1.04x (1.01-1.09)" in table[2] and "pass" in table[2]
    assert "| -" in table[3] and "info" in table[3]
