"""The Celery figure of ``redisresults bench`` under pytest-benchmark: stock Celery's client against the drop-in.

One real ``celery worker`` (threads pool, stock ``redis://`` backend) on a broker in another db of the bench's
server serves both clients. The hard promise is asserted (the drop-in's connections stay within its pool's
bound, one Pub/Sub connection, no failed ``get()``); the ratios (round trip, fan-in rate, gevent fresh ``get()``)
depend on the machine's scheduling and are reported in the summary table, not asserted.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest

from redisresults import bench

pytest.importorskip("celery")

Figure = Callable[..., List[Dict[str, Any]]]


def _by_name(rows: List[Dict[str, Any]], prefix: str) -> Dict[str, Any]:
    return next(row for row in rows if row["figure"].startswith(prefix))


def test_celery_stock_vs_dropin(figure: Figure) -> None:
    rows = figure(bench.figure_celery)
    assert _by_name(rows, "Celery delay().get() p50")["ours"] > 0
    fan_in = _by_name(rows, "Celery fan-in, ")
    assert fan_in["errors"]["ours"] == 0 and fan_in["spread"]
    connections = _by_name(rows, "Celery fan-in result-backend connections")
    assert connections["pass"] is True and connections["pubsub_connections"]["ours"] == 1
