"""The bench's raw baselines do the work they claim: the careful fan-in clients unsubscribe every channel whose
result arrived (so the fan-in target compares like with like), the others keep theirs subscribed."""

from __future__ import annotations

import json
import uuid
from typing import List

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from redisresults.bench._cluster import RawShards
from redisresults.bench._common import UNSUBSCRIBE_EVERY, UNSUBSCRIBE_MAX, EndedChannels, RawFanout
from tests.cluster import ClusterGroup
from tests.polling import poll
from tests.servers import RedisServer

COUNT = 50


def _channels(count: int = COUNT) -> List[bytes]:
    prefix = uuid.uuid4().hex[:8]
    return [f"rrtest-{prefix}-celery-task-meta-{n}".encode() for n in range(count)]


@pytest.mark.parametrize(
    ("queued", "now", "due", "wait"),
    [
        (0, 5.0, 0, 0.2),  # nothing ended: block as long as the reader likes
        (1, 0.0, 1, 0.2),  # the first after a quiet spell leaves at once
        (UNSUBSCRIBE_MAX, 0.0, UNSUBSCRIBE_MAX, 0.2),
    ],
)
def test_ended_channels_first_batch(queued: int, now: float, due: int, wait: float) -> None:
    ended = EndedChannels()
    ended.channels.extend(f"c{n}".encode() for n in range(queued))
    assert len(ended.take_due(now)) == due
    assert ended.wait(now, 0.2) == pytest.approx(wait)


def test_ended_channels_linger_after_a_batch_unless_the_cap_is_reached() -> None:
    ended = EndedChannels()
    ended.channels.append(b"a")
    assert ended.take_due(1.0) == [b"a"]
    ended.channels.append(b"b")
    assert ended.take_due(1.0 + UNSUBSCRIBE_EVERY / 2) == []  # within the linger
    assert ended.wait(1.0 + UNSUBSCRIBE_EVERY / 2, 0.2) == pytest.approx(UNSUBSCRIBE_EVERY / 2)
    assert ended.take_due(1.0 + UNSUBSCRIBE_EVERY) == [b"b"]
    ended.channels.extend(b"x" for _ in range(UNSUBSCRIBE_MAX))
    assert len(ended.take_due(1.0 + UNSUBSCRIBE_EVERY)) == UNSUBSCRIBE_MAX  # the cap: at once


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 0.05)), max_size=40))
def test_ended_channels_never_lose_a_channel_nor_send_twice_within_the_linger(
    steps: List[tuple[int, float]],
) -> None:
    ended, now, sent, queued = EndedChannels(), 0.0, [], 0
    last_batch = None
    for count, advance in steps:
        now += advance
        ended.channels.extend(f"c{queued + n}".encode() for n in range(count))
        queued += count
        due = ended.take_due(now)
        if due:
            assert last_batch is None or now >= last_batch + UNSUBSCRIBE_EVERY or len(due) >= UNSUBSCRIBE_MAX
            last_batch = now
        sent += due
        assert 0.0 <= ended.wait(now, 0.2) <= 0.2
    sent += ended.take_due(now + UNSUBSCRIBE_EVERY)
    assert sent == [f"c{n}".encode() for n in range(queued)]  # in order, each once


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
