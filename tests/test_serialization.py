"""Serializers: byte-compatibility with kombu, the accept policy, and decoding that never escapes as another error."""

from __future__ import annotations

import bz2
import datetime as dt
import json
import math
import pickle
import sys
import uuid
import zlib
from decimal import Decimal

import kombu.serialization
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.utils.json import dumps as kombu_json_dumps
from kombu.utils.json import loads as kombu_json_loads

from redisresults._exceptions import ConfigError, ContentDisallowed, DecodeError, EncodeError, RedisResultsError
from redisresults._serialization import (
    DEFAULT_ACCEPT,
    Serializer,
    check_writable,
    dumps,
    get_serializer,
    loads,
    normalize_accept,
)

JSON = get_serializer("json")
MSGPACK = get_serializer("msgpack")
PICKLE = get_serializer("pickle")
ALL = frozenset({"json", "msgpack", "pickle"})
SECRET = "S3CRET-PAYLOAD-TOKEN"

hypothesis_settings = settings(deadline=None, database=None, max_examples=150)


class WithJSON:
    def __json__(self) -> object:
        return {"via": "__json__"}


class Plain:
    pass


TAGGED_VALUES = [
    dt.datetime(2020, 1, 2, 3, 4, 5, 6),
    dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    dt.datetime(2020, 1, 2, 3, 4, 5, 123, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    dt.date(2020, 1, 2),
    dt.time(1, 2, 3),
    dt.time(1, 2, 3, 4000),
    Decimal("1.5"),
    Decimal("-0.000000000000000000001"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"plain utf-8 bytes \xc3\xa9",
    b"\xff\x00\x80 not utf-8",
    b"",
]

PLAIN_VALUES = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "",
    "caf\u00e9 \u2603 \U0001f600",
    "\ud800 lone surrogate",
    [1, [2, [3, {"a": None}]]],
    {"k": "v", "n": {"x": [1.25, False]}},
    {"__type__": "not-a-tag"},  # a dict that only looks tagged (one key) stays a dict
]


@pytest.mark.parametrize("value", TAGGED_VALUES + PLAIN_VALUES, ids=repr)
def test_json_bytes_match_kombu_and_round_trip(value: object) -> None:
    encoded = dumps(value, JSON)
    assert encoded == kombu_json_dumps(value).encode("ascii")
    assert encoded.isascii()
    assert loads(encoded, JSON, DEFAULT_ACCEPT, key="k") == value
    assert kombu_json_loads(encoded) == value


def test_json_exact_tag_forms() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert dumps(u, JSON) == b'{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}'
    assert dumps(Decimal("1.5"), JSON) == b'{"__type__": "decimal", "__value__": "1.5"}'
    assert dumps(b"ab", JSON) == b'{"__type__": "bytes", "__value__": "ab"}'
    assert dumps(b"\xff", JSON) == b'{"__type__": "base64", "__value__": "/w=="}'
    assert dumps(dt.date(2020, 1, 2), JSON) == b'{"__type__": "date", "__value__": "2020-01-02"}'
    assert dumps({"a": (1, 2)}, JSON) == b'{"a": [1, 2]}'


def test_datetimes_keep_their_awareness() -> None:
    naive = loads(dumps(dt.datetime(2020, 1, 2), JSON), JSON, DEFAULT_ACCEPT, key="k")
    aware = loads(dumps(dt.datetime(2020, 1, 2, tzinfo=dt.timezone.utc), JSON), JSON, DEFAULT_ACCEPT, key="k")
    assert naive.tzinfo is None
    assert aware.utcoffset() == dt.timedelta(0)


def test_json_uses_dunder_json_like_kombu() -> None:
    assert dumps([WithJSON()], JSON) == kombu_json_dumps([WithJSON()]).encode() == b'[{"via": "__json__"}]'


@pytest.mark.parametrize(
    "value, type_name",
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (object(), "object"),
        (1j, "complex"),
        (bytearray(b"x"), "bytearray"),
        ({"nested": [Plain()]}, "tests.test_serialization.Plain"),
    ],
)
def test_json_unserializable_names_the_type(value: object, type_name: str) -> None:
    with pytest.raises(EncodeError, match=f"cannot serialize object of type '{type_name}' with json"):
        dumps(value, JSON)
    with pytest.raises(TypeError):  # kombu refuses the same values
        kombu_json_dumps(value)


def test_encode_error_is_a_type_error_and_a_library_error() -> None:
    assert issubclass(EncodeError, TypeError)
    assert issubclass(EncodeError, RedisResultsError)


def test_json_encode_failures_are_encode_errors() -> None:
    circular: list[object] = []
    circular.append(circular)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    for bad in (circular, {(1, 2): "tuple key"}, deep):
        with pytest.raises(EncodeError):
            dumps(bad, JSON)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_deep_json_decodes_and_absurd_nesting_is_a_decode_error() -> None:
    value = loads(_nested(200), JSON, DEFAULT_ACCEPT, key="k")
    for _ in range(199):
        value = value[0]
    assert value == []
    for payload in (_nested(100_000), b"[" * 100_000, b'{"a":' * 100_000):
        with pytest.raises(DecodeError, match="nesting too deep"):
            loads(payload, JSON, DEFAULT_ACCEPT, key="k")


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe" + SECRET.encode(), "invalid UTF-8"),
        (b'{"result": "' + SECRET.encode() + b'"', "invalid JSON"),
        (b"", "invalid JSON"),
        (b"NaN-" + SECRET.encode(), "invalid JSON"),
        (b"1" * 5000, "ValueError"),  # int digits limit
        (b'{"__type__": "' + SECRET.encode() + b'", "__value__": 1}', "unsupported __type__ tag"),
        (b'{"__type__": "datetime", "__value__": "' + SECRET.encode() + b'"}', "bad __value__ for type tag 'datetime'"),
        (b'{"__type__": "datetime", "__value__": 5}', "bad __value__ for type tag 'datetime'"),
        (b'{"__type__": "date", "__value__": "2020-13-45"}', "type tag 'date'"),
        (b'{"__type__": "time", "__value__": []}', "type tag 'time'"),
        (b'{"__type__": "decimal", "__value__": "' + SECRET.encode() + b'"}', "type tag 'decimal'"),
        (b'{"__type__": "decimal", "__value__": 1.5}', "type tag 'decimal'"),
        (b'{"__type__": "uuid", "__value__": {"hex": "' + SECRET.encode() + b'"}}', "type tag 'uuid'"),
        (b'{"__type__": "uuid", "__value__": {"int": 1}}', "type tag 'uuid'"),
        (b'{"__type__": "uuid", "__value__": "12345678123456781234567812345678"}', "type tag 'uuid'"),
        (b'{"__type__": "bytes", "__value__": "\\ud800"}', "type tag 'bytes'"),
        (b'{"__type__": "base64", "__value__": "abc"}', "type tag 'base64'"),
        (b'{"__type__": "base64", "__value__": null}', "type tag 'base64'"),
    ],
)
def test_json_decode_errors_name_key_and_reason_not_payload(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        loads(payload, JSON, DEFAULT_ACCEPT, key="celery-task-meta-abc")
    message = str(info.value)
    assert "celery-task-meta-abc" in message
    assert reason in message
    assert SECRET not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_payload_types() -> None:
    assert loads(bytearray(b"[1]"), JSON, DEFAULT_ACCEPT, key="k") == [1]
    assert loads(memoryview(b"[1]"), JSON, DEFAULT_ACCEPT, key="k") == [1]
    with pytest.raises(DecodeError, match="expected bytes"):
        loads("[1]", JSON, DEFAULT_ACCEPT, key="k")  # type: ignore[arg-type]


# -- pickle and the accept policy ------------------------------------------------------------------------------


_executed: list[str] = []


def _record(tag: str) -> None:
    _executed.append(tag)


class Boobytrap:
    def __reduce__(self) -> object:
        return (_record, ("unpickled",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_is_refused_unless_accepted(protocol: int) -> None:
    _executed.clear()
    payload = pickle.dumps(Boobytrap(), protocol=protocol)
    for serializer in (JSON, MSGPACK):
        with pytest.raises(ContentDisallowed) as info:
            loads(payload, serializer, frozenset({"json", "msgpack"}), key="celery-task-meta-x")
        assert "celery-task-meta-x" in str(info.value)
        assert "pickle is refused unless 'pickle' is in accept" in str(info.value)
    assert _executed == []


def test_pickle_accepted_round_trips_whatever_the_configured_serializer() -> None:
    value = {"a": {1, 2}, "b": dt.datetime(2020, 1, 1)}
    payload = dumps(value, PICKLE)
    assert payload == kombu.serialization.dumps(value, serializer="pickle")[2]
    assert loads(payload, PICKLE, frozenset({"pickle"}), key="k") == value
    assert loads(payload, JSON, frozenset({"json", "pickle"}), key="k") == value


def test_pickle_decode_errors() -> None:
    with pytest.raises(DecodeError, match="with pickle"):
        loads(b"\x80\x04garbage" + SECRET.encode(), PICKLE, frozenset({"pickle"}), key="k")
    with pytest.raises(DecodeError):
        loads(b"\x80\x04", JSON, frozenset({"json", "pickle"}), key="k")


def test_configured_serializer_outside_accept_is_refused_like_celery() -> None:
    with pytest.raises(ContentDisallowed) as info:
        loads(b'{"status": "SUCCESS"}', JSON, frozenset({"msgpack"}), key="celery-task-meta-y")
    message = str(info.value)
    assert "Refusing to deserialize untrusted content of type json (application/json)" in message
    assert "celery-task-meta-y" in message


def test_json_reader_of_msgpack_data_gets_decode_error() -> None:
    with pytest.raises(DecodeError):
        loads(dumps({"a": 1}, MSGPACK), JSON, ALL, key="k")


# -- msgpack ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 1, -(2**63), "caf\u00e9", b"\xff\x00", [1, [2]], {"a": {"b": b"x"}}])
def test_msgpack_bytes_match_kombu_and_round_trip(value: object) -> None:
    encoded = dumps(value, MSGPACK)
    assert encoded == kombu.serialization.dumps(value, serializer="msgpack")[2]
    assert loads(encoded, MSGPACK, frozenset({"msgpack"}), key="k") == value


def test_msgpack_errors() -> None:
    with pytest.raises(EncodeError, match="cannot serialize object of type 'datetime.datetime' with msgpack"):
        dumps({"when": dt.datetime(2020, 1, 1)}, MSGPACK)
    with pytest.raises(EncodeError, match="with msgpack"):
        dumps(2**70, MSGPACK)
    accept = frozenset({"msgpack"})
    for payload in (b"\xc1", b"\x92\x01", b"\x91" * 100_000 + b"\xc0", b"\xa1a" + SECRET.encode()):
        with pytest.raises(DecodeError) as info:
            loads(payload, MSGPACK, accept, key="k")
        assert SECRET not in str(info.value)
    assert loads(b"\x80", MSGPACK, accept, key="k") == {}  # an empty map is not mistaken for pickle


def test_msgpack_missing_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ConfigError, match=r"pip install redisresults\[msgpack\]"):
        get_serializer("msgpack")


# -- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("json", "json"),
        ("application/json", "json"),
        ("pickle", "pickle"),
        ("application/x-python-serialize", "pickle"),
        ("msgpack", "msgpack"),
        ("application/x-msgpack", "msgpack"),
    ],
)
def test_get_serializer(name: str, expected: str) -> None:
    serializer = get_serializer(name)
    assert isinstance(serializer, Serializer)
    assert serializer.name == expected
    assert serializer.content_type == kombu.serialization.registry.name_to_type[expected]


@pytest.mark.parametrize("name", ["yaml", "JSON", "", "application/x-yaml", None, 3])
def test_get_serializer_unknown(name: object) -> None:
    with pytest.raises(ConfigError) as info:
        get_serializer(name)  # type: ignore[arg-type]
    assert repr(name) in str(info.value)
    assert "json, msgpack, pickle" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, {"json"}),
        ("json", {"json"}),
        ("json, pickle", {"json", "pickle"}),
        (["json"], {"json"}),
        (("application/json", "application/x-python-serialize"), {"json", "pickle"}),
        ({"msgpack", "application/x-msgpack"}, {"msgpack"}),
        (iter(["pickle"]), {"pickle"}),
    ],
)
def test_normalize_accept(accept: object, expected: set[str]) -> None:
    assert normalize_accept(accept) == frozenset(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "accept, fragment", [(["json", "yaml"], "'yaml'"), ([], "empty"), ("", "''"), ([1], "1"), (5, "int")]
)
def test_normalize_accept_rejects(accept: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_accept(accept)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_check_writable() -> None:
    check_writable("json", frozenset({"json"}))
    check_writable("pickle", frozenset({"json", "pickle"}))
    check_writable("application/x-msgpack", frozenset({"msgpack"}))
    with pytest.raises(ConfigError, match="add 'pickle' to accept"):
        check_writable("pickle", frozenset({"json"}))
    with pytest.raises(ConfigError, match="unknown serializer 'yaml'"):
        check_writable("yaml", frozenset({"json"}))


# -- properties ------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
tagged = st.sampled_from(TAGGED_VALUES) | st.binary(max_size=20) | st.uuids() | st.decimals(allow_nan=False)


@hypothesis_settings
@given(st.recursive(json_values | tagged, lambda inner: st.lists(inner, max_size=3), max_leaves=10))
def test_json_matches_kombu_for_generated_values(value: object) -> None:
    encoded = dumps(value, JSON)
    assert encoded == kombu_json_dumps(value).encode()
    assert loads(encoded, JSON, DEFAULT_ACCEPT, key="k") == kombu_json_loads(encoded)


@hypothesis_settings
@given(st.binary(max_size=300) | json_values.map(lambda v: kombu_json_dumps(v).encode()))
def test_loads_of_any_bytes_is_a_value_or_a_library_error(data: bytes) -> None:
    for serializer in (JSON, MSGPACK):
        for accept in (DEFAULT_ACCEPT, frozenset({"json", "msgpack"})):
            try:
                loads(data, serializer, accept, key="k")
            except RedisResultsError:
                pass


@hypothesis_settings
@given(st.binary(max_size=100).map(lambda b: b'{"__type__": ' + b + b', "__value__": ' + b + b"}"))
def test_hostile_tags_never_escape(data: bytes) -> None:
    try:
        loads(data, JSON, DEFAULT_ACCEPT, key="k")
    except DecodeError:
        pass


# -- Celery's result_compression (decoded on the way in) -------------------------------------------------------------


def celery_compressed(document: bytes, method: str) -> bytes:
    """What Celery's ``Backend.encode`` stores with ``result_compression=method`` (celery.backends.base)."""
    from celery.backends.base import compress_payload

    return compress_payload(document, method)


@pytest.mark.parametrize("method", ["gzip", "zlib", "bzip2", "lzma"])
def test_loads_decompresses_what_celery_compressed(method: str) -> None:
    document = JSON.dumps({"status": "SUCCESS", "result": "x" * 5000, "task_id": "t"})
    stored = celery_compressed(document, method)
    assert stored.startswith(b"\x00celery-compressed\x00") and len(stored) < len(document)
    assert loads(stored, JSON, DEFAULT_ACCEPT, key="k")["result"] == "x" * 5000


def test_decompressed_pickle_is_still_refused_unless_accepted() -> None:
    stored = celery_compressed(pickle.dumps({"status": "SUCCESS"}, protocol=4), "zlib")
    with pytest.raises(ContentDisallowed, match="pickle"):
        loads(stored, JSON, DEFAULT_ACCEPT, key="k")
    assert loads(stored, PICKLE, ALL, key="k") == {"status": "SUCCESS"}


def test_decompressed_msgpack() -> None:
    stored = celery_compressed(MSGPACK.dumps({"status": "SUCCESS", "result": [1, 2]}), "lzma")
    assert loads(stored, MSGPACK, ALL, key="k") == {"status": "SUCCESS", "result": [1, 2]}


@pytest.mark.parametrize(
    ("stored", "fragment"),
    [
        (b"\x00celery-compressed\x00application/x-rr-unknown\x00body", "unknown compression 'application/x-rr-unkno"),
        (b"\x00celery-compressed\x00no-separator", "unknown compression"),
        (b"\x00celery-compressed\x00application/x-gzip\x00not zlib " + SECRET.encode(), "with application/x-gzip"),
        (b"\x00celery-compressed\x00application/x-gzip\x00" + zlib.compress(b'{"a": 1}')[:-4], "truncated"),
        (b"\x00celery-compressed\x00" + b"\xff" * 300 + b"\x00", "a 300-byte name"),
    ],
)
def test_bad_compressed_values_are_decode_errors_without_payload(stored: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match="key 'k'") as caught:
        loads(stored, JSON, DEFAULT_ACCEPT, key="k")
    assert fragment in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_decompression_bomb_is_refused() -> None:
    from redisresults._compression import decompress as _decompress

    stored = b"\x00celery-compressed\x00application/x-bz2\x00" + bz2.compress(b"\0" * 2_000_000)
    with pytest.raises(DecodeError, match="expands past 1000000 bytes"):
        _decompress(stored, "k", limit=1_000_000)
    assert len(_decompress(stored, "k", limit=2_000_000)) == 2_000_000


def test_an_uncompressed_value_is_untouched() -> None:
    assert loads(b'{"status": "SUCCESS"}', JSON, DEFAULT_ACCEPT, key="k") == {"status": "SUCCESS"}


WHITESPACE = st.sampled_from(["", " ", "\n", "\t \r\n"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": 1}', {"a": 1}),  # leading whitespace: the scanner alone refuses it, the full decoder does not
        ('{"a": 1}\n', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ('"s"', "s"),
        ("Infinity", float("inf")),
    ],
)
def test_json_decoding_around_the_scanner(text: str, expected: object) -> None:
    assert loads(text.encode(), JSON, DEFAULT_ACCEPT, key="k") == expected


def test_json_nan_decodes_as_json_loads_does() -> None:
    assert math.isnan(loads(b"NaN", JSON, DEFAULT_ACCEPT, key="k"))


@pytest.mark.parametrize("text", ['{"a": 1} x', '{"a": 1}{}', "", " ", "{", "[1,]", '{"a": 1}\x00'])
def test_json_extra_or_missing_text_is_a_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match="invalid JSON"):
        loads(text.encode(), JSON, DEFAULT_ACCEPT, key="k")


@hypothesis_settings
@given(WHITESPACE, json_values.map(kombu_json_dumps).filter(lambda d: "__type__" not in d), WHITESPACE,
       st.sampled_from(["", "x", "{}", "0", '"']))
def test_json_decoding_agrees_with_json_loads(before: str, document: str, after: str, extra: str) -> None:
    """Decoding (the C scanner first, the full decoder only when the scanner cannot decide) takes and refuses
    exactly what ``json.loads`` does."""
    text = before + document + after + extra
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(DecodeError):
            loads(text.encode(), JSON, DEFAULT_ACCEPT, key="k")
        return
    assert loads(text.encode(), JSON, DEFAULT_ACCEPT, key="k") == expected
