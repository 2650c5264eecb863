"""A whole run: every figure in order, the environment it ran in, and the table ``redisresults bench`` prints."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from typing import Any, Optional

import redis

import redisresults

from ._burst import figure_burst
from ._celery import figure_celery
from ._cluster import cluster_url_from_env, figure_cluster
from ._common import Options, Progress, Row, no_progress
from ._drain import figure_drain
from ._fanin import figure_fan_in
from ._limits import figure_overshoot, figure_reject
from ._memory import figure_memory
from ._ready import figure_ready

#: The figures after drain latency (which also takes the TCP URL), in the order they run and print. The Celery
#: figure is empty when Celery (the ``bench-celery`` extra) is not installed.
FIGURES = (figure_ready, figure_fan_in, figure_burst, figure_memory, figure_reject, figure_overshoot, figure_celery)


def environment(url: str) -> dict[str, Any]:
    backend = redisresults.backend_from_url(url)
    try:
        info = backend.client.info("server")
        server = backend.as_uri()
    finally:
        backend.close()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "redis_server": info.get("redis_version"),
        "server": server,
    }


def run(url: str, options: Optional[Options] = None, progress: Progress = no_progress,
        tcp_url: Optional[str] = None, cluster_url: Optional[str] = None) -> dict[str, Any]:
    """Every figure, as rows ``{figure, unit, ours, raw, ratio, spread, target, pass}``, and the environment.

    ``tcp_url``: the same server over TCP, for the drain-latency figure's TCP variant (when ``url`` is a
    Unix socket). Passwords in either URL show only as ``**`` in the report. ``cluster_url`` (default
    ``$REDISRESULTS_BENCH_CLUSTER_URL``): a Redis Cluster for the cluster figures; none, none run.
    """
    opts = options or Options()
    rows: list[Row] = figure_drain(url, opts, progress, tcp_url=tcp_url)
    for figure in FIGURES:
        rows.extend(figure(url, opts, progress))
    cluster_url = cluster_url or cluster_url_from_env()
    if cluster_url:
        rows.extend(figure_cluster(cluster_url, opts, progress))
    return {
        "environment": environment(url),
        "options": asdict(opts),
        "figures": rows,
        "passed": all(row["pass"] is not False for row in rows),
    }


def format_table(report: dict[str, Any]) -> str:
    """The rows as an aligned text table (also valid Markdown); ratios with their per-block spread."""
    header = ["figure", "ours", "raw", "ratio", "target", "result"]
    lines = [header]
    for row in report["figures"]:
        unit = row["unit"]
        lines.append([
            row["figure"],
            _fmt(row["ours"], unit),
            "-" if row["raw"] is None else _fmt(row["raw"], unit),
            _ratio(row),
            row["target"],
            {True: "pass", False: "FAIL", None: "info"}[row["pass"]],
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _ratio(row: Row) -> str:
    if row["ratio"] is None:
        return "-"
    spread = row.get("spread")
    if not spread:
        return f"{row['ratio']:.2f}x"
    return f"{row['ratio']:.2f}x ({spread[0]:.2f}-{spread[1]:.2f})"


def _fmt(value: float, unit: str) -> str:
    if unit in ("conns", "bytes") and float(value).is_integer():
        return f"{int(value)} {unit}" if unit == "bytes" else str(int(value))
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "results/s":
        return f"{value:,.0f}/s"
    if unit == "bytes":
        return f"{value:,.0f} bytes"
    return f"{value:.3f} {unit}"
