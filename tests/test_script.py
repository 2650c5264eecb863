"""The store script's lean call path (``_script.PooledScript``) and the command packing it sends (``_resp.packed``).

Packing is checked against redis-py's own ``pack_command`` (tables and a property); the call path against a real
server: the first call on a server without the script loads it (SCRIPT LOAD, as a minimal ACL allows), an error
reply leaves the connection usable, a connection killed while idle is replaced at checkout, and every connection
goes back to the pool. A server restarting under a store, and one refusing a big document, are ``test_store``'s.
"""

from __future__ import annotations

from typing import Any, Iterator, Union

import pytest
import redis
import redis.exceptions as rex
from hypothesis import given
from hypothesis import strategies as st

from redisresults._resp import pack, packed
from redisresults._script import PooledScript
from tests.servers import RedisServer

ECHO_KEYS = "return {KEYS[1], ARGV[1], ARGV[2]}"


def redis_py_packing(*args: Union[bytes, str, int]) -> bytes:
    return b"".join(redis.connection.PythonRespSerializer(6000, redis.connection.Encoder("utf-8", "strict", False)
                                                         .encode).pack(*args))


@pytest.mark.parametrize(
    "args",
    [
        (b"EVALSHA", b"abc", 1, b"key", b"doc", 0, b""),
        (b"SUBSCRIBE", *[b"ch%d" % i for i in range(5)]),
        (b"SET", "k\u00e9", b"x" * 6001),
        (b"SET", b"k", b"x" * 6000),
        (b"PING",),
    ],
)
def test_packed_matches_redis_py(args: tuple[Any, ...]) -> None:
    assert b"".join(packed(*args)) == redis_py_packing(*args) == pack(*args)


@given(st.lists(st.one_of(st.binary(max_size=7000), st.text(max_size=50), st.integers(-(2**63), 2**63 - 1)),
                max_size=8))
def test_packed_matches_redis_py_for_any_arguments(args: list[Any]) -> None:
    assert b"".join(packed(b"ECHO", *args)) == redis_py_packing(b"ECHO", *args)


def test_a_big_argument_is_sent_as_it_is() -> None:
    document = b"d" * 100_000
    pieces = packed(b"EVALSHA", b"sha", 1, b"key", document, 0)
    assert any(piece is document for piece in pieces) and len(pieces) == 3


@pytest.fixture
def pool(redis_server: RedisServer) -> Iterator[redis.ConnectionPool]:
    made = redis.ConnectionPool(**redis_server.connection_kwargs())
    yield made
    made.disconnect()


def test_first_call_loads_the_script(pool: redis.ConnectionPool, redis_server: RedisServer) -> None:
    script = PooledScript(pool, ECHO_KEYS)
    redis_server.cli("SCRIPT", "FLUSH")
    assert script(keys=[b"k"], args=[b"v", 7]) == [b"k", b"v", b"7"]
    assert redis_server.cli("SCRIPT", "EXISTS", script.sha.decode()) == [1]
    assert script(keys=[b"k2"], args=["w", b""]) == [b"k2", b"w", b""]


def test_an_error_reply_leaves_the_connection_usable(pool: redis.ConnectionPool) -> None:
    script = PooledScript(pool, "return redis.call('INCR', KEYS[1])")
    client = redis.Redis(connection_pool=pool)
    client.set(b"rr-script-text", b"not a number")
    with pytest.raises(rex.ResponseError, match="not an integer"):
        script(keys=[b"rr-script-text"], args=[])
    assert script(keys=[b"rr-script-counter"], args=[]) >= 1
    assert len(pool._in_use_connections) == 0  # noqa: SLF001 - redis-py's pool: every connection came back
    client.delete(b"rr-script-text", b"rr-script-counter")


def test_a_connection_killed_while_idle_is_replaced(redis_server: RedisServer) -> None:
    """The pool's checkout notices the dead socket and connects again (redis-py's own check, kept)."""
    pool = redis.ConnectionPool(client_name="rr-script-kill", **redis_server.connection_kwargs())
    script = PooledScript(pool, "return ARGV[1]")
    admin = redis_server.client()

    def ours() -> list[str]:
        return [entry["id"] for entry in admin.client_list() if entry.get("name") == "rr-script-kill"]

    try:
        assert script(keys=[b"k"], args=[b"before"]) == b"before"
        (first,) = ours()
        assert admin.client_kill_filter(_id=first) == 1
        assert script(keys=[b"k"], args=[b"after"]) == b"after"
        assert len(ours()) == 1 and ours() != [first]
        assert len(pool._in_use_connections) == 0  # noqa: SLF001 - redis-py's pool: every connection came back
    finally:
        admin.close()
        pool.disconnect()
