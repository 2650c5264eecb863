"""A small RESP2 reply parser for the drainer's subscribed connection. Pure: bytes in, replies out.

A subscribed connection only ever carries arrays of bulk strings and integers (``message``,
``subscribe``, ``unsubscribe``, ``pong``), the odd simple string and error replies. redis-py's
general parser spends several Python calls per element; on the drainer's hot path that was the
largest cost per result (profiled: about half the drainer's time at 10,000 results/s), so this
reads those few shapes straight from one buffer. With ``hiredis`` installed its C reader is used
instead (the same replies, a fraction of the cost).
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Protocol, Union


def _load_hiredis() -> Any:
    """The C parser, when installed (the ``hiredis`` extra): several times faster per reply."""
    try:
        return importlib.import_module("hiredis")
    except ImportError:  # pragma: no cover - depends on the environment
        return None


_hiredis: Any = _load_hiredis()

Reply = Union[bytes, int, None, list[Any], "ErrorReply"]
_CRLF = b"\r\n"
MAX_BULK = 512 * 1024 * 1024 + 1024  # Redis' own limit for a string, plus room; larger is a protocol error
MAX_DEPTH = 8


class ErrorReply:
    """An error reply (``-NOPERM ...``); it belongs to one command, the connection stays usable."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ErrorReply({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorReply) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)


class ProtocolError(Exception):
    """The bytes are not RESP2: the connection is desynchronised and must be replaced."""


def parse(buf: Union[bytes, bytearray], pos: int = 0, depth: int = 0) -> Optional[tuple[Reply, int]]:
    """One reply starting at ``pos``: ``(reply, next position)``, or None if the buffer holds only part of it."""
    if depth == 0 and buf.startswith(b"*3\r\n$", pos):
        pushed = _push(buf, pos)
        if pushed is not None:
            return pushed
    end = buf.find(_CRLF, pos)
    if end == -1:
        return None
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    after = end + 2
    if kind == 0x24:  # $ bulk string
        length = _number(line)
        if length == -1:
            return None, after
        if not 0 <= length <= MAX_BULK:
            raise ProtocolError(f"bulk length {length} out of range")
        stop = after + length
        if len(buf) < stop + 2:
            return None
        if buf[stop : stop + 2] != _CRLF:
            raise ProtocolError("bulk string not terminated by CRLF")
        return bytes(buf[after:stop]), stop + 2
    if kind == 0x2A:  # * array
        count = _number(line)
        if count == -1:
            return None, after
        if count < 0 or depth >= MAX_DEPTH:
            raise ProtocolError("bad array")
        return _array(buf, after, count, depth)
    if kind == 0x3A:  # : integer
        return _number(line), after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return ErrorReply(line.decode("utf-8", "replace")), after
    raise ProtocolError(f"unexpected reply type byte {kind!r}")


# The replies of a subscribed connection, by their fixed first bytes: kind, then whether the third item is a
# bulk string (a message's data) or an integer (the subscription count).
_PUSHES = (
    (b"*3\r\n$7\r\nmessage\r\n$", b"message", True),
    (b"*3\r\n$11\r\nunsubscribe\r\n$", b"unsubscribe", False),
    (b"*3\r\n$9\r\nsubscribe\r\n$", b"subscribe", False),
    (b"*3\r\n$8\r\nsmessage\r\n$", b"smessage", True),  # Redis Cluster's sharded Pub/Sub
    (b"*3\r\n$12\r\nsunsubscribe\r\n$", b"sunsubscribe", False),
    (b"*3\r\n$10\r\nssubscribe\r\n$", b"ssubscribe", False),
)


def _push(buf: Union[bytes, bytearray], pos: int) -> Optional[tuple[Reply, int]]:
    """``message``, ``subscribe`` and ``unsubscribe`` replies read in one go: two replies of these per result
    are most of what the drainer parses. None for anything else, incomplete or odd (a nil channel, garbage):
    the general parser then decides, and raises for garbage."""
    for head, kind, bulk in _PUSHES:
        if buf.startswith(head, pos):
            return _push_items(buf, pos + len(head), kind, bulk)
    return None


def _push_items(buf: Union[bytes, bytearray], at: int, kind: bytes, bulk: bool) -> Optional[tuple[Reply, int]]:
    """The channel and third item of a ``_push`` reply, ``at`` just after the channel's ``$``."""
    end = buf.find(_CRLF, at, at + 12)  # a length of up to 10 digits
    if end == -1 or not (line := buf[at:end]).isdigit():
        return None
    start = end + 2
    stop = start + int(line)
    if buf[stop : stop + 2] != _CRLF:
        return None
    channel = bytes(buf[start:stop])
    at = stop + 3
    if buf[stop + 2 : at] != (b"$" if bulk else b":"):
        return None
    end = buf.find(_CRLF, at, at + 12)
    if end == -1 or not (line := buf[at:end]).isdigit():
        return None
    if not bulk:
        return [kind, channel, int(line)], end + 2
    start = end + 2
    stop = start + int(line)
    if stop > start + MAX_BULK or buf[stop : stop + 2] != _CRLF:
        return None
    return [kind, channel, bytes(buf[start:stop])], stop + 2


def _array(buf: Union[bytes, bytearray], at: int, count: int, depth: int) -> Optional[tuple[Reply, int]]:
    """The elements of an array; bulk strings and integers (every subscribed reply, MGET) are read inline
    rather than by a call each: a burst of 10,000 confirmations or a 10,000-key MGET is one loop."""
    items: list[Any] = []
    size = len(buf)
    find = buf.find
    for _ in range(count):
        if at >= size:
            return None
        kind = buf[at]
        if kind == 0x24 or kind == 0x3A:
            end = find(_CRLF, at)
            if end == -1:
                return None
            number = _number(buf[at + 1 : end])
            at = end + 2
            if kind == 0x3A:
                items.append(number)
                continue
            if number == -1:
                items.append(None)
                continue
            if not 0 <= number <= MAX_BULK:
                raise ProtocolError(f"bulk length {number} out of range")
            stop = at + number
            if size < stop + 2:
                return None
            if buf[stop : stop + 2] != _CRLF:
                raise ProtocolError("bulk string not terminated by CRLF")
            items.append(bytes(buf[at:stop]))
            at = stop + 2
            continue
        parsed = parse(buf, at, depth + 1)
        if parsed is None:
            return None
        item, at = parsed
        items.append(item)
    return items, at


Arg = Union[bytes, str, int]
# Arguments longer than this go to the socket as they are, never copied into the packed command.
_COPY_LIMIT = 6000


def packed(*args: Arg) -> list[bytes]:
    """One command as a RESP2 array of bulk strings, in as few pieces as possible: small arguments packed in one
    pass (SUBSCRIBE with 2,000 channels, MGET of 2,000 keys), a big document left as its own piece, never copied."""
    pieces: list[bytes] = []
    head = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else (arg.encode() if isinstance(arg, str) else b"%d" % arg)
        if len(data) > _COPY_LIMIT:
            head.append(b"$%d\r\n" % len(data))
            pieces += [b"".join(head), data]
            head = [b"\r\n"]
        else:
            head.append(b"$%d\r\n%s\r\n" % (len(data), data))
    pieces.append(b"".join(head))
    return pieces


def pack(*args: Arg) -> bytes:
    """``packed`` as one bytes object (for commands without big arguments)."""
    return b"".join(packed(*args))


def _number(line: Union[bytes, bytearray]) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError("bad number in reply header") from None


INCOMPLETE = object()  # ``Replies.next``: the buffer holds no whole reply yet


class Replies(Protocol):
    """A reply reader: bytes in (``feed``), whole replies out (``next``, else ``INCOMPLETE``)."""

    def feed(self, data: bytes) -> None: ...

    def has_data(self) -> bool: ...

    def next(self) -> Any: ...

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` whole replies already fed, in order (empty when there is none; a ProtocolError is raised
        only when it is the first: the replies before it are returned, and the next call raises)."""


class PyReplies:
    """``parse`` over one growing buffer."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def has_data(self) -> bool:
        return self._pos < len(self._buf)

    def next(self) -> Any:
        if self._pos >= len(self._buf):
            return INCOMPLETE
        parsed = parse(self._buf, self._pos)
        if parsed is None:
            return INCOMPLETE
        reply, self._pos = parsed
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return reply

    def take(self, limit: int) -> list[Any]:
        buf, pos, size = self._buf, self._pos, len(self._buf)
        out: list[Any] = []
        while pos < size and len(out) < limit:
            try:
                parsed = parse(buf, pos)
            except ProtocolError:
                if not out:
                    raise
                break
            if parsed is None:
                break
            reply, pos = parsed
            out.append(reply)
        if pos == size:
            buf.clear()
            pos = 0
        self._pos = pos
        return out


class HiredisReplies:
    """hiredis' reader, giving the same replies (errors as ``ErrorReply``, garbage as ``ProtocolError``)."""

    def __init__(self) -> None:
        self._reader = _hiredis.Reader(protocolError=ProtocolError, replyError=ErrorReply)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def has_data(self) -> bool:
        return bool(self._reader.has_data())

    def next(self) -> Any:
        reply = self._reader.gets()
        return INCOMPLETE if reply is False else reply

    def take(self, limit: int) -> list[Any]:
        gets = self._reader.gets
        out: list[Any] = []
        while len(out) < limit:
            try:
                reply = gets()
            except ProtocolError:
                if not out:
                    raise
                break
            if reply is False:
                break
            out.append(reply)
        return out


def replies() -> Replies:
    """The fastest reader available here."""
    return HiredisReplies() if _hiredis is not None else PyReplies()
