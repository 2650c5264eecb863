"""The drainer's Pub/Sub connection: a lean reader over one redis-py connection.

This is the one module that relies on redis-py internals (a connection's socket and its
parser's read buffer); ``tests/test_subscriber.py`` fails loudly when they change. The
connection speaks RESP2, so subscribed replies are plain arrays (``[b"message", channel,
data]``) and no per-message ``PubSub`` machinery runs. Errors leave here as redisresults errors.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, Callable, Optional

import redis
import redis.exceptions as rex

from ._exceptions import ConnectionUnavailable, translate

# A lost, stalled or desynchronised connection: the drainer resyncs on a new one.
_LOST = (rex.ConnectionError, rex.TimeoutError, rex.InvalidResponse, OSError, socket.timeout)


def checkout(pool: Any) -> Any:
    """A connection from ``pool``: redis-py 5.0 wants a command name, 5.3+ warns when given one."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("SUBSCRIBE")


def buffered(conn: Any) -> bool:
    """Replies already read off the socket (redis-py's buffer, or decrypted TLS records).

    ``select`` cannot see them, so the drainer asks before blocking. Peeking at the buffer saves
    a syscall per message; parsers without one (hiredis) fall back to ``can_read``.
    """
    buffer = getattr(getattr(conn, "_parser", None), "_buffer", None)
    unread = getattr(buffer, "unread_bytes", None)
    if unread is None:
        return bool(conn.can_read(timeout=0))
    if unread():
        return True
    pending = getattr(getattr(conn, "_sock", None), "pending", None)
    return bool(pending()) if pending is not None else False


def lost(error: BaseException) -> ConnectionUnavailable:
    mapped = ConnectionUnavailable(f"Pub/Sub connection lost ({type(error).__name__}: {error})")
    mapped.__cause__ = error
    return mapped


class RedisSubscriber:
    """One subscribed connection, checked out of the drainer's private pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        conn = None
        try:
            conn = checkout(pool)  # redis-py >= 5.3 connects here already
            conn.connect()
        except BaseException as error:
            if conn is not None:
                pool.release(conn)
            mapped = translate(error)  # refused (auth, TLS) stays distinct from unreachable
            if isinstance(mapped, ConnectionUnavailable) or (mapped is error and isinstance(error, _LOST)):
                raise lost(error) from error
            raise mapped from error
        self._conn = conn
        sock = getattr(conn, "_sock", None)
        if sock is None:
            raise ConnectionUnavailable("the Pub/Sub connection closed while connecting")
        self._sock: socket.socket = sock

    @property
    def address(self) -> Optional[tuple[str, int]]:
        host, port = getattr(self._conn, "host", None), getattr(self._conn, "port", None)
        return (str(host), int(port)) if host is not None and port is not None else None

    def fileno(self) -> int:
        return self._sock.fileno()

    def selectable(self) -> socket.socket:
        return self._sock

    def subscribe(self, channels: Sequence[bytes]) -> None:
        self._send("SUBSCRIBE", *channels)

    def unsubscribe(self, channels: Sequence[bytes]) -> None:
        self._send("UNSUBSCRIBE", *channels)

    def ping(self, payload: bytes) -> None:
        self._send("PING", payload)

    def buffered(self) -> bool:
        return buffered(self._conn)

    def read(self) -> Any:
        """One reply (the socket is readable or buffered); an error reply is returned, not raised."""
        try:
            return self._conn.read_response()
        except rex.ResponseError as error:
            return translate(error)
        except _LOST as error:
            raise lost(error) from error

    def close(self) -> None:
        try:
            self._conn.disconnect()
        finally:
            self._pool.release(self._conn)

    def send_commands(self, commands: Sequence[Sequence[Any]]) -> None:
        """Several commands in one write (pipelined); their replies come back in order."""
        try:
            self._conn.send_packed_command(self._conn.pack_commands(commands), check_health=False)
        except _LOST as error:
            raise lost(error) from error

    def _send(self, *args: Any) -> None:
        try:
            self._conn.send_command(*args, check_health=False)
        except _LOST as error:
            raise lost(error) from error


def key_reader(pool: Any) -> Callable[[Sequence[bytes]], Sequence[Optional[bytes]]]:
    """MGET on the drainer's own pool (never the shared one), errors translated at this boundary."""
    reader = redis.Redis(connection_pool=pool)

    def read_keys(keys: Sequence[bytes]) -> Sequence[Optional[bytes]]:
        try:
            return reader.mget(keys)  # type: ignore[return-value]  # bytes: decode_responses is off
        except Exception as error:
            raise translate(error) from error

    return read_keys
