"""A small RESP2 reply parser for the drainer's subscribed connection. Pure: bytes in, replies out.

A subscribed connection only ever carries arrays of bulk strings and integers (``message``,
``subscribe``, ``unsubscribe``, ``pong``), the odd simple string and error replies. redis-py's
general parser spends several Python calls per element; on the drainer's hot path that was the
largest cost per result (profiled: about half the drainer's time at 10,000 results/s), so this
reads those few shapes straight from one buffer.
"""

from __future__ import annotations

from typing import Any, Optional, Union

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
        items: list[Any] = []
        at = after
        for _ in range(count):
            parsed = parse(buf, at, depth + 1)
            if parsed is None:
                return None
            item, at = parsed
            items.append(item)
        return items, at
    if kind == 0x3A:  # : integer
        return _number(line), after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return ErrorReply(line.decode("utf-8", "replace")), after
    raise ProtocolError(f"unexpected reply type byte {kind!r}")


def _number(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError("bad number in reply header") from None
