"""The drainer's Pub/Sub connection: a lean reader over one redis-py connection.

redis-py connects (TLS, AUTH/ACL, SELECT, CLIENT SETNAME, Sentinel discovery) and sends the
commands; replies are read straight from the socket and parsed by ``_resp`` (RESP2, so
subscribed replies are plain arrays like ``[b"message", channel, data]``): no per-message
``PubSub`` or general-parser machinery runs on the hot path. This is the one module that relies
on redis-py internals (a connection's socket); ``tests/test_subscriber.py`` fails loudly when
they change. Errors leave here as redisresults errors.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, Callable, Optional

import redis.exceptions as rex

from ._exceptions import ConnectionUnavailable, translate
from ._pool import checkout
from ._resp import INCOMPLETE, ErrorReply, ProtocolError, pack, replies

# A lost, stalled or desynchronised connection: the drainer resyncs on a new one.
_LOST = (rex.ConnectionError, rex.TimeoutError, rex.InvalidResponse, OSError, socket.timeout)


def lost(error: BaseException) -> ConnectionUnavailable:
    mapped = ConnectionUnavailable(f"Pub/Sub connection lost ({type(error).__name__}: {error})")
    mapped.__cause__ = error
    return mapped


def _refused(reply: ErrorReply) -> BaseException:
    """An error reply as the redisresults error it stands for (the connection stays usable)."""
    message = reply.message
    foreign = rex.NoPermissionError if message.startswith("NOPERM") else rex.ResponseError
    return translate(foreign(message))


class _RawConnection:
    """One connection checked out of the drainer's private pool; commands packed and replies parsed here."""

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
            pool.release(conn)
            raise ConnectionUnavailable("the connection closed while connecting")
        self._sock: socket.socket = sock
        self._pending = getattr(sock, "pending", None)  # TLS: records decrypted but not yet read
        self._replies = replies()

    def buffered(self) -> bool:
        return self._replies.has_data() or (self._pending is not None and bool(self._pending()))

    def read(self) -> Any:
        """One reply (blocks until it is complete); an error reply is returned as a redisresults error."""
        replies = self._replies
        while True:
            try:
                reply = replies.next()
            except ProtocolError as error:
                raise lost(error) from error
            if reply is INCOMPLETE:
                self._fill()
                continue
            return _refused(reply) if isinstance(reply, ErrorReply) else reply

    def read_many(self, limit: int) -> list[Any]:
        """The next reply (blocks until it is complete) and every whole one already received after it, up to
        ``limit``: one call for a burst of replies instead of ``read`` and ``buffered`` per reply."""
        first = self.read()
        if limit <= 1:
            return [first]
        try:
            rest = self._replies.take(limit - 1)
        except ProtocolError:  # read() raises it on the next call
            rest = []
        out = [first]
        out += [_refused(reply) if isinstance(reply, ErrorReply) else reply for reply in rest]
        return out

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(65536)
        except OSError as error:  # socket.timeout included
            raise lost(error) from error
        if not chunk:
            raise ConnectionUnavailable("the server closed the connection")
        self._replies.feed(chunk)

    def send(self, packed: bytes) -> None:
        try:
            self._sock.sendall(packed)
        except OSError as error:
            raise lost(error) from error

    def close(self) -> None:
        try:
            self._conn.disconnect()
        finally:
            self._pool.release(self._conn)

    def release(self) -> None:
        """Back to the pool still connected; closed instead if anything is left unread on it."""
        if self.buffered():
            self.close()
        else:
            self._pool.release(self._conn)


class RedisSubscriber(_RawConnection):
    """The subscribed connection: SUBSCRIBE/UNSUBSCRIBE/PING out, pushed replies in."""

    @property
    def address(self) -> Optional[tuple[str, int]]:
        host, port = getattr(self._conn, "host", None), getattr(self._conn, "port", None)
        return (str(host), int(port)) if host is not None and port is not None else None

    def fileno(self) -> int:
        return self._sock.fileno()

    def selectable(self) -> socket.socket:
        return self._sock

    def subscribe(self, channels: Sequence[bytes]) -> None:
        self.send(pack(b"SUBSCRIBE", *channels))

    def unsubscribe(self, channels: Sequence[bytes]) -> None:
        self.send(pack(b"UNSUBSCRIBE", *channels))

    def ping(self, payload: bytes) -> None:
        self.send(pack(b"PING", payload))

    def send_commands(self, commands: Sequence[Sequence[Any]]) -> None:
        """Several commands in one write (pipelined); their replies come back in order."""
        self.send(b"".join(pack(*command) for command in commands))


def key_reader(pool: Any) -> Callable[[Sequence[bytes]], Sequence[Optional[bytes]]]:
    """MGET on the drainer's own pool (never the shared one), errors translated at this boundary.

    The connection goes back to the pool after each read, as with any redis-py call: a Sentinel pool resets its
    idle connections when the master moves, and a held one would keep reading the old master. After an error it
    is closed instead: a reply half read must never be taken for the next one's."""

    def read_keys(keys: Sequence[bytes]) -> Sequence[Optional[bytes]]:
        conn = _RawConnection(pool)
        try:
            conn.send(pack(b"MGET", *keys))
            reply = conn.read()
            if isinstance(reply, BaseException):
                raise reply
            if not isinstance(reply, list) or len(reply) != len(keys):
                raise ConnectionUnavailable(f"MGET of {len(keys)} keys got an unexpected reply")
        except BaseException:
            conn.close()
            raise
        conn.release()
        return reply

    return read_keys
