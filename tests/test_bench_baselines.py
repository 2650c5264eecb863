"""The bench's raw baselines do the work they claim: the careful fan-in clients unsubscribe every channel whose
result arrived (so the fan-in target compares like with like), the others keep theirs subscribed."""

from __future__ import annotations

import json
import uuid
from typing import List

import redis

from redisresults.bench._cluster import RawShards
from redisresults.bench._common import RawFanout
from tests.cluster import ClusterGroup
from tests.polling import poll
from tests.servers import RedisServer

COUNT = 50


def _channels(count: int = COUNT) -> List[bytes]:
    prefix = uuid.uuid4().hex[:8]
    return [f"rrtest-{prefix}-celery-task-meta-{n}".encode() for n in range(count)]


def _numsub(client: redis.Redis, channels: List[bytes]) -> int:
    return sum(int(n) for _, n in client.pubsub_numsub(*channels))


def _run_fanout(raw: redis.Redis, unsubscribe: bool) -> tuple[RawFanout, List[bytes]]:
    channels = _channels()
    fanout = RawFanout(raw, unsubscribe=unsubscribe)
    fanout.subscribe(channels)
    fanout.start()
    assert _numsub(raw, channels) == COUNT
    for channel in channels:
        raw.publish(channel, json.dumps({"status": "SUCCESS", "result": 1}))
    for channel in channels:
        assert fanout.events[channel].wait(10), channel
    return fanout, channels


def test_careful_raw_fanout_unsubscribes_every_channel_whose_result_arrived(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    fanout, channels = _run_fanout(raw, unsubscribe=True)
    try:
        poll(lambda: fanout.unsubscribed == COUNT or None, timeout=10, what="UNSUBSCRIBE confirmations read")
        assert _numsub(raw, channels) == 0  # confirmed, so Redis dropped them all
    finally:
        fanout.close()
        raw.close()


def test_raw_fanout_without_unsubscribe_keeps_its_channels(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    fanout, channels = _run_fanout(raw, unsubscribe=False)
    try:
        assert _numsub(raw, channels) == COUNT and fanout.unsubscribed == 0
    finally:
        fanout.close()
        raw.close()


def test_careful_raw_shards_sunsubscribe_on_every_node(redis_cluster: ClusterGroup) -> None:
    rc = redis_cluster.client()
    channels = _channels()
    shards = RawShards(rc, channels, unsubscribe=True)

    def subscribed() -> int:
        """Subscribers of each channel on the primary that owns it (PUBSUB SHARDNUMSUB: ``[channel, n]``)."""
        owners = [rc.get_node_from_key(channel).redis_connection for channel in channels]
        return sum(int(owner.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])
                   for owner, channel in zip(owners, channels))

    try:
        assert len({rc.get_node_from_key(channel).name for channel in channels}) == 3  # every shard has some
        assert subscribed() == COUNT
        for channel in channels:
            rc.execute_command("SPUBLISH", channel, b"{}", target_nodes=rc.get_node_from_key(channel))
        for channel in channels:
            assert shards.events[channel].wait(10), channel
        poll(lambda: subscribed() == 0 or None, timeout=10, what="SUNSUBSCRIBE on every node")
    finally:
        shards.close()
        rc.close()
