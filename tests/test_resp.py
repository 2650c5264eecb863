"""The drainer's RESP2 parser: table tests and properties (any split of the bytes parses the same)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redisresults._resp import INCOMPLETE, ErrorReply, HiredisReplies, ProtocolError, PyReplies, pack, parse, replies

try:
    import hiredis  # noqa: F401 - only whether it is there
except ImportError:
    READERS: list[Any] = [PyReplies]
else:
    READERS = [PyReplies, HiredisReplies]


def encode(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)
    raise TypeError(value)


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\ndata\r\n", [b"message", b"ch", b"data"]),
        (b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", [b"subscribe", b"ch", 1]),
        (b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", [b"unsubscribe", None, 0]),
        (b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", [b"pong", b""]),
        (b"+PONG\r\n", b"PONG"),
        (b"-NOPERM no access\r\n", ErrorReply("NOPERM no access")),
        (b"$5\r\na\r\nb\r\r\n", b"a\r\nb\r"),  # a payload may hold CRLF
        (b"*0\r\n", []),
        (b"*-1\r\n", None),
    ],
)
def test_replies(wire: bytes, reply: Any) -> None:
    assert parse(wire) == (reply, len(wire))
    assert parse(wire + b"+x\r\n") == (reply, len(wire))  # the next reply is left alone
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is None  # partial: wait for more bytes


PUSH_KINDS = [b"message", b"subscribe", b"unsubscribe", b"smessage", b"ssubscribe", b"sunsubscribe"]


@given(st.sampled_from(PUSH_KINDS), st.binary(max_size=40), st.one_of(st.binary(max_size=80), st.integers(0, 10**12)))
def test_pushed_replies_parse_whatever_their_bytes(kind: bytes, channel: bytes, third: Any) -> None:
    """The subscribed connection's replies (read by a fast path of their own) parse as any array would, CRLFs
    and digits inside included; every prefix is incomplete, and what follows is left alone."""
    wire = encode([kind, channel, third])
    assert parse(wire) == ([kind, channel, third], len(wire))
    assert parse(b"+x\r\n" + wire, 4) == ([kind, channel, third], len(wire) + 4)
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is None


@pytest.mark.parametrize(
    "wire",
    [b"*3\r\n$7\r\nmessage\r\n$2\r\nchX\r\n$1\r\nd\r\n", b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\ndd\r\n",
     b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:x\r\n", b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-5\r\n",
     b"*3\r\n$7\r\nmessage\r\n$999999999999\r\n"],
)
def test_a_garbled_push_is_a_protocol_error_too(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(wire)


@pytest.mark.parametrize(
    "wire",
    [b"?x\r\n", b"$abc\r\n", b"$3\r\nabcd\r\n", b"*-5\r\n", b"$-7\r\n", b":1.5\r\n", b"$999999999999\r\n",
     # the same inside an array (its bulk strings and integers are read inline, not by a nested parse)
     b"*1\r\n?x\r\n", b"*2\r\n:1\r\n$abc\r\n", b"*1\r\n$3\r\nabcd\r\n", b"*1\r\n$-7\r\n", b"*1\r\n:1.5\r\n",
     b"*1\r\n$999999999999\r\n"],
)
def test_garbage_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(wire)


def test_nesting_is_bounded() -> None:
    with pytest.raises(ProtocolError):
        parse(b"*1\r\n" * 20 + b":1\r\n")


values = st.recursive(
    st.one_of(st.none(), st.binary(max_size=40), st.integers(-(2**63), 2**63 - 1)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(values, min_size=1, max_size=5), st.data())
def test_stream_of_replies_parses_back_whatever_the_chunking(replies: list, data: st.DataObject) -> None:
    wire = b"".join(encode(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    buf = bytearray()
    pos, got, start = 0, [], 0
    for cut in [*cuts, len(wire)]:
        buf += wire[start:cut]
        start = max(start, cut)
        while (parsed := parse(buf, pos)) is not None:
            reply, pos = parsed
            got.append(reply)
    assert got == replies and pos == len(wire)


@given(st.lists(values, min_size=1, max_size=5), st.data())
@pytest.mark.parametrize("reader", READERS)
def test_readers_give_the_same_replies_whatever_the_chunking(reader: Any, replies: list, data: st.DataObject) -> None:
    """The pure-Python reader and hiredis' (when installed) agree with ``parse`` on any split of the bytes."""
    wire = b"".join(encode(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    got, start, buf = [], 0, reader()
    for cut in [*cuts, len(wire)]:
        if cut > start:
            buf.feed(wire[start:cut])
        start = max(start, cut)
        while (reply := buf.next()) is not INCOMPLETE:
            got.append(reply)
    assert got == replies and not buf.has_data()


@given(st.lists(values, min_size=1, max_size=6), st.data())
@pytest.mark.parametrize("reader", READERS)
def test_take_gives_the_same_replies_as_next(reader: Any, replies: list, data: st.DataObject) -> None:
    """``take`` (a burst at once) returns what ``next`` would, in order, never more than ``limit``, whatever the
    chunking; then nothing is left."""
    wire = b"".join(encode(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    limit = data.draw(st.integers(1, 4))
    got, start, buf = [], 0, reader()
    for cut in [*cuts, len(wire)]:
        if cut > start:
            buf.feed(wire[start:cut])
        start = max(start, cut)
        while batch := buf.take(limit):
            assert len(batch) <= limit
            got += batch
    assert got == replies and not buf.has_data() and buf.take(limit) == []


@pytest.mark.parametrize("reader", READERS)
def test_take_stops_before_garbage_and_the_next_call_raises(reader: Any) -> None:
    buf = reader()
    buf.feed(b":1\r\n-ERR no\r\n?x\r\n")
    assert buf.take(10) == [1, ErrorReply("ERR no")]
    with pytest.raises(ProtocolError):
        buf.take(10)


@pytest.mark.parametrize("reader", READERS)
def test_readers_map_errors_alike(reader: Any) -> None:
    buf = reader()
    buf.feed(b"-NOPERM no access\r\n:1\r\n?x\r\n")
    assert buf.next() == ErrorReply("NOPERM no access")
    assert buf.next() == 1
    with pytest.raises(ProtocolError):
        buf.next()


def test_the_fastest_reader_is_chosen() -> None:
    assert isinstance(replies(), READERS[-1])


@given(st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=10)), min_size=1, max_size=8))
def test_pack_is_what_parse_reads_back(args: list) -> None:
    wire = pack(*args)
    assert parse(wire) == ([a.encode() if isinstance(a, str) else a for a in args], len(wire))


def test_pack_table() -> None:
    assert pack(b"SUBSCRIBE", b"a", b"bc") == b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\nbc\r\n"
    assert pack("PING", b"") == b"*2\r\n$4\r\nPING\r\n$0\r\n\r\n"
