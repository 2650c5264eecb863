"""The drainer's Pub/Sub connection: a lean reader over one redis-py connection.

redis-py connects (TLS, AUTH/ACL, SELECT, CLIENT SETNAME, Sentinel discovery) and sends the
commands; replies are read straight from the socket and parsed by ``_resp.parse`` (RESP2, so
subscribed replies are plain arrays like ``[b"message", channel, data]``): no per-message
``PubSub`` or general-parser machinery runs on the hot path. This is the one module that relies
on redis-py internals (a connection's socket); ``tests/test_subscriber.py`` fails loudly when
they change. Errors leave here as redisresults errors.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, Callable, Optional

import redis
import redis.exceptions as rex

from ._exceptions import ConnectionUnavailable, translate
from ._resp import ErrorReply, ProtocolError, parse

# A lost, stalled or desynchronised connection: the drainer resyncs on a new one.
_LOST = (rex.ConnectionError, rex.TimeoutError, rex.InvalidResponse, OSError, socket.timeout)


def checkout(pool: Any) -> Any:
    """A connection from ``pool``: redis-py 5.0 wants a command name, 5.3+ warns when given one."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("SUBSCRIBE")


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
        self._pending = getattr(sock, "pending", None)  # TLS: records decrypted but not yet read
        self._buf = bytearray()
        self._pos = 0

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
        return self._pos < len(self._buf) or (self._pending is not None and bool(self._pending()))

    def read(self) -> Any:
        """One reply (the socket is readable or buffered); an error reply is returned, not raised."""
        while True:
            if self._pos < len(self._buf):
                try:
                    parsed = parse(self._buf, self._pos)
                except ProtocolError as error:
                    raise lost(error) from error
                if parsed is not None:
                    reply, self._pos = parsed
                    if self._pos == len(self._buf):
                        self._buf.clear()
                        self._pos = 0
                    if isinstance(reply, ErrorReply):
                        message = reply.message
                        foreign = rex.NoPermissionError if message.startswith("NOPERM") else rex.ResponseError
                        return translate(foreign(message))
                    return reply
            self._fill()

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(65536)
        except OSError as error:  # socket.timeout included
            raise lost(error) from error
        if not chunk:
            raise ConnectionUnavailable("the server closed the Pub/Sub connection")
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += chunk

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
