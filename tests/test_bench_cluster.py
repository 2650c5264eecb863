"""The Redis Cluster figures of ``redisresults bench`` with tiny counts, on the suite's real cluster: every row
is there with its shape, the fan-in with a spread over its rounds and its report-only never-unsubscribing row."""

from __future__ import annotations

from redisresults.bench import _cluster
from redisresults.bench._common import Options
from tests.cluster import ClusterGroup


def test_cluster_figures_on_a_real_cluster(redis_cluster: ClusterGroup) -> None:
    rows = {row["figure"]: row for row in _cluster.figure_cluster(redis_cluster.url, Options(samples=10, fanin=20))}
    assert set(rows) == {
        "cluster drain latency p50 (threads)",
        "cluster drain latency p99 (threads)",
        "cluster fan-in, 20 threads, 3 shards",
        "cluster fan-in vs raw never unsubscribing, 20 threads",
        "cluster fan-in Pub/Sub connections",
    }
    fan_in = rows["cluster fan-in, 20 threads, 3 shards"]
    assert fan_in["ours"] > 0 and fan_in["raw"] > 0 and fan_in["pass"] in (True, False)
    assert fan_in["blocks"] == _cluster.FAN_IN_ROUNDS and 0 < fan_in["spread"][0] <= fan_in["spread"][1]
    assert rows["cluster fan-in vs raw never unsubscribing, 20 threads"]["pass"] is None  # report only
    connections = rows["cluster fan-in Pub/Sub connections"]
    assert connections["ours"] == connections["raw"] == 3 and connections["pass"] is True
