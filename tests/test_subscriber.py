"""The one module that relies on redis-py internals, checked against a real server: it fails loudly when
redis-py changes what ``RedisSubscriber`` leans on (the parser's read buffer, the socket, RESP2 replies)."""

from __future__ import annotations

import select
import uuid

import pytest
import redis

from redisresults._exceptions import AuthenticationFailed, ConnectionUnavailable, PermissionDenied
from redisresults._subscriber import RedisSubscriber, checkout
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(30)


def drainer_pool(server: RedisServer, **extra: object) -> redis.ConnectionPool:
    params = {**server.connection_kwargs(), "protocol": 2, "max_connections": 2, **extra}
    return redis.ConnectionPool(**params)


def readable(subscriber: RedisSubscriber, timeout: float = 5.0) -> bool:
    ready, _, _ = select.select([subscriber.selectable()], [], [], timeout)
    return bool(ready)


def test_redis_py_internals_we_rely_on_are_there(redis_server: RedisServer) -> None:
    pool = drainer_pool(redis_server)
    connection = checkout(pool)
    try:
        connection.connect()
        sock = getattr(connection, "_sock", None)
        assert sock is not None, "redis-py Connection._sock is gone: RedisSubscriber reads from it"
        assert callable(getattr(sock, "recv", None)) and callable(getattr(sock, "fileno", None))
        # after connect() redis-py has read every reply it asked for: nothing is left in its buffer for us to lose
        assert not connection.can_read(timeout=0)
    finally:
        pool.release(connection)
        pool.disconnect()


def test_subscribe_publish_ping_and_buffering(redis_server: RedisServer) -> None:
    pool = drainer_pool(redis_server)
    subscriber = RedisSubscriber(pool)
    channel = f"sub-{uuid.uuid4().hex}".encode()
    publisher = redis_server.client()
    try:
        assert subscriber.address == (redis_server.host, redis_server.port)
        subscriber.subscribe([channel])
        assert readable(subscriber)
        assert subscriber.read() == [b"subscribe", channel, 1]
        assert publisher.publish(channel, b"one") == 1
        assert publisher.publish(channel, b"two") == 1
        assert readable(subscriber)
        assert subscriber.read() == [b"message", channel, b"one"]
        if not subscriber.buffered():  # the second reply may not have arrived with the first
            assert readable(subscriber)
        assert subscriber.read() == [b"message", channel, b"two"]
        subscriber.ping(b"hello")
        assert readable(subscriber)
        assert subscriber.read() == [b"pong", b"hello"]
        subscriber.unsubscribe([channel])
        assert readable(subscriber)
        assert subscriber.read() == [b"unsubscribe", channel, 0]
        assert not subscriber.buffered()
    finally:
        subscriber.close()
        publisher.close()
        pool.disconnect()


def test_read_many_takes_a_burst_in_order(redis_server: RedisServer) -> None:
    """Replies already received come back together, in order, never more than asked; an error reply among them
    is a redisresults error in its place."""
    pool = drainer_pool(redis_server)
    subscriber = RedisSubscriber(pool)
    channel = f"many-{uuid.uuid4().hex}".encode()
    publisher = redis_server.client()
    try:
        subscriber.send_commands([("SUBSCRIBE", channel), ("SUBSCRIBE",), ("PING", b"last")])  # the middle refused
        got: list = []
        while len(got) < 3:
            assert subscriber.buffered() or readable(subscriber)
            got += subscriber.read_many(10)
        assert got[0] == [b"subscribe", channel, 1] and got[2] == [b"pong", b"last"]
        assert isinstance(got[1], Exception) and not isinstance(got[1], ConnectionUnavailable)
        pipe = publisher.pipeline(transaction=False)
        for n in range(50):
            pipe.publish(channel, b"%d" % n)
        assert pipe.execute() == [1] * 50
        got = []
        while len(got) < 50:
            assert subscriber.buffered() or readable(subscriber)
            batch = subscriber.read_many(7)
            assert 1 <= len(batch) <= 7
            got += batch
        assert got == [[b"message", channel, b"%d" % n] for n in range(50)] and not subscriber.buffered()
    finally:
        subscriber.close()
        publisher.close()
        pool.disconnect()


def test_errors_leave_as_redisresults_errors(redis_server: RedisServer) -> None:
    pool = drainer_pool(redis_server)
    subscriber = RedisSubscriber(pool)
    try:
        subscriber.subscribe([])  # wrong number of arguments: an error reply, returned in order
        assert readable(subscriber)
        reply = subscriber.read()
        assert isinstance(reply, Exception) and not isinstance(reply, ConnectionUnavailable)
        admin = redis_server.client()
        admin.client_kill_filter(_id=None, _type="pubsub")  # nothing subscribed: the kill finds our normal one
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        admin.close()
        with pytest.raises(ConnectionUnavailable):
            for _ in range(3):
                subscriber.ping(b"x")
                readable(subscriber)
                subscriber.read()
    finally:
        subscriber.close()
        pool.disconnect()


def test_connect_failures(redis_server: RedisServer) -> None:
    dead = redis.ConnectionPool(host="127.0.0.1", port=1, protocol=2, max_connections=2, socket_connect_timeout=1)
    with pytest.raises(ConnectionUnavailable):
        RedisSubscriber(dead)
    wrong = drainer_pool(redis_server, username="nobody", password="wrong")
    with pytest.raises(AuthenticationFailed):
        RedisSubscriber(wrong)
    assert issubclass(PermissionDenied, redis.exceptions.NoPermissionError)
