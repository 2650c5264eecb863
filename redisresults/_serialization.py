"""Result serializers, byte-compatible with kombu's as Celery's Redis backend uses them.

No content type travels with a stored value, so a reader decodes with its configured serializer; the one exception
is pickle, which is recognised by its header and refused unless ``accept`` lists it. Decoding json or msgpack never
executes code, and every decoding failure is a :class:`DecodeError` that names the key and the reason but never
echoes the payload (values can be large, and they are often secrets).
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Callable, Dict, Iterable, cast

from ._compression import COMPRESSED_MAGIC, DECOMPRESSED_LIMIT, decompress
from ._exceptions import ConfigError, ContentDisallowed, DecodeError, EncodeError

__all__ = [
    "COMPRESSED_MAGIC",
    "CONTENT_TYPES",
    "DECOMPRESSED_LIMIT",
    "DEFAULT_ACCEPT",
    "Serializer",
    "check_writable",
    "dumps",
    "get_serializer",
    "loads",
    "normalize_accept",
]

JSON = "json"
MSGPACK = "msgpack"
PICKLE = "pickle"

#: Serializer name -> the content type kombu registers for it.
CONTENT_TYPES: Dict[str, str] = {
    JSON: "application/json",
    MSGPACK: "application/x-msgpack",
    PICKLE: "application/x-python-serialize",
}
_NAMES_BY_CONTENT_TYPE = {content_type: name for name, content_type in CONTENT_TYPES.items()}
_KNOWN = "json, msgpack, pickle (or application/json, application/x-msgpack, application/x-python-serialize)"

DEFAULT_ACCEPT = frozenset({JSON})
MSGPACK_INSTALL_HINT = "pip install redisresults[msgpack]"

#: kombu's default protocol, so pickled results match what Celery workers write.
PICKLE_PROTOCOL = 4

_REASON_LIMIT = 100  # characters of a decoder's own message kept in a DecodeError



@dataclass(frozen=True)
class Serializer:
    """A named codec. ``dumps``/``loads`` here are raw: use the module functions for policy and error mapping."""

    name: str
    content_type: str
    _encode: Callable[[Any], bytes] = field(repr=False, compare=False)
    _decode: Callable[[bytes], Any] = field(repr=False, compare=False)

    def dumps(self, obj: Any) -> bytes:
        return self._encode(obj)

    def loads(self, data: bytes) -> Any:
        return self._decode(data)


class _Unserializable(TypeError):
    """Raised inside an encoder for a value of a type the format cannot hold; carries the type's name."""

    def __init__(self, obj: Any) -> None:
        cls = type(obj)
        name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        super().__init__(name)
        self.type_name = name


class _BadTag(ValueError):
    """A kombu ``{"__type__", "__value__"}`` object that cannot be decoded; the message is payload-free."""


# -- json: kombu.utils.json, tag for tag ---------------------------------------------------------------------------


def _tag(marker: str, value: Any) -> Dict[str, Any]:
    return {"__type__": marker, "__value__": value}


class _KombuJSONEncoder(json.JSONEncoder):
    """kombu's encoder: ``__json__()`` first, then the type tags (datetime before date, as a datetime is a date)."""

    def default(self, o: Any) -> Any:
        reducer = getattr(o, "__json__", None)
        if reducer is not None:
            return reducer()
        if isinstance(o, datetime):
            return _tag("datetime", o.isoformat())
        if isinstance(o, date):
            return _tag("date", o.isoformat())
        if isinstance(o, time):
            return _tag("time", o.isoformat())
        if isinstance(o, Decimal):
            return _tag("decimal", str(o))
        if isinstance(o, uuid.UUID):
            return _tag("uuid", {"hex": o.hex})
        if isinstance(o, bytes):
            try:
                return _tag("bytes", o.decode("utf-8"))
            except UnicodeDecodeError:
                return _tag("base64", base64.b64encode(o).decode("ascii"))
        raise _Unserializable(o)


def _require_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _decode_uuid(value: Any) -> uuid.UUID:
    # kombu calls uuid.UUID(**value); only the form it writes is accepted here.
    if not isinstance(value, dict) or set(value) != {"hex"}:
        raise TypeError("expected {'hex': ...}")
    return uuid.UUID(hex=_require_str(value["hex"]))


_TAG_DECODERS: Dict[str, Callable[[Any], Any]] = {
    "datetime": lambda v: datetime.fromisoformat(_require_str(v)),
    "date": lambda v: datetime.fromisoformat(_require_str(v)).date(),
    "time": lambda v: time.fromisoformat(_require_str(v)),
    "decimal": lambda v: Decimal(_require_str(v)),
    "uuid": _decode_uuid,
    "bytes": lambda v: _require_str(v).encode("utf-8"),
    "base64": lambda v: base64.b64decode(_require_str(v).encode("utf-8")),
}


def _object_hook(obj: Dict[str, Any]) -> Any:
    if len(obj) != 2 or "__type__" not in obj or "__value__" not in obj:
        return obj
    tag = obj["__type__"]
    decoder = _TAG_DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise _BadTag("unsupported __type__ tag")  # kombu raises too
    try:
        return decoder(obj["__value__"])
    except Exception:
        raise _BadTag(f"bad __value__ for type tag {tag!r}") from None


def _json_dumps(obj: Any) -> bytes:
    # ensure_ascii (the default) makes the text pure ASCII, so characters == bytes, as with kombu.
    return json.dumps(obj, cls=_KombuJSONEncoder).encode("ascii")


_PLAIN_JSON = json.JSONDecoder()  # json.loads(text) without its per-call checks: every published result
_TAGGED_JSON = json.JSONDecoder(object_hook=_object_hook)
# The C scanner under JSONDecoder.decode, without decode's two whitespace regexes (typeshed omits the attribute).
_scan_plain: Callable[[str, int], tuple[Any, int]] = cast(Any, _PLAIN_JSON).scan_once


def _json_loads(data: bytes) -> Any:
    text = data.decode("utf-8")
    if "__type__" in text:  # a kombu type tag somewhere: only then is the per-object hook worth its cost
        return _TAGGED_JSON.decode(text)
    try:
        document, end = _scan_plain(text, 0)
    except (StopIteration, ValueError):  # empty, leading whitespace, or not JSON: decode() decides and says why
        return _PLAIN_JSON.decode(text)
    if end != len(text):  # trailing whitespace is fine, anything else is an error: decode() tells which
        return _PLAIN_JSON.decode(text)
    return document


# -- msgpack: kombu's settings (no type tags; kombu has none for msgpack) ------------------------------------------


def _refuse(obj: Any) -> Any:
    raise _Unserializable(obj)


def _msgpack_serializer() -> Serializer:
    try:
        import msgpack
    except ImportError:
        raise ConfigError(f"the msgpack serializer needs the msgpack package: {MSGPACK_INSTALL_HINT}") from None

    def encode(obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, use_bin_type=True, default=_refuse)
        return data

    def decode(data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False)

    return Serializer(MSGPACK, CONTENT_TYPES[MSGPACK], encode, decode)


# -- pickle --------------------------------------------------------------------------------------------------------


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


def _looks_like_pickle(data: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO and a version; no JSON text nor single msgpack value does."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


_JSON_SERIALIZER = Serializer(JSON, CONTENT_TYPES[JSON], _json_dumps, _json_loads)
_PICKLE_SERIALIZER = Serializer(PICKLE, CONTENT_TYPES[PICKLE], _pickle_dumps, pickle.loads)


# -- configuration -------------------------------------------------------------------------------------------------


def _canonical_name(name: Any, what: str) -> str:
    if isinstance(name, str):
        canonical = _NAMES_BY_CONTENT_TYPE.get(name, name)
        if canonical in CONTENT_TYPES:
            return canonical
    raise ConfigError(f"unknown {what} {name!r}; known: {_KNOWN}")


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name`` (or registered for that content type); msgpack is imported only here."""
    canonical = _canonical_name(name, "serializer")
    if canonical == MSGPACK:
        return _msgpack_serializer()
    return _PICKLE_SERIALIZER if canonical == PICKLE else _JSON_SERIALIZER


def normalize_accept(accept: Iterable[str] | str | None) -> frozenset[str]:
    """Serializer names from names or content types (a string may list several, comma-separated)."""
    if accept is None:
        return DEFAULT_ACCEPT
    entries: Iterable[Any] = accept.split(",") if isinstance(accept, str) else accept
    try:
        items = list(entries)
    except TypeError:
        raise ConfigError(f"accept must be a list of serializer names, got {type(accept).__name__}") from None
    names = {_canonical_name(item.strip() if isinstance(item, str) else item, "accept entry") for item in items}
    if not names:
        raise ConfigError(f"accept is empty, so no result could ever be read; list at least one of: {_KNOWN}")
    return frozenset(names)


def check_writable(serializer: str, accept: frozenset[str]) -> None:
    """Refuse a write serializer the reader would refuse: results stored with it could never be read back."""
    name = _canonical_name(serializer, "serializer")
    if name not in accept:
        allowed = ", ".join(sorted(accept)) or "nothing"
        raise ConfigError(
            f"serializer {name!r} is not in accept (which allows {allowed}); "
            f"add {name!r} to accept to store results with it"
        )


# -- encoding and decoding -----------------------------------------------------------------------------------------


def _short(text: str) -> str:
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


def dumps(obj: Any, serializer: Serializer) -> bytes:
    """Encode ``obj``; anything the format cannot hold is an EncodeError naming the offending type."""
    try:
        return serializer.dumps(obj)
    except _Unserializable as exc:
        raise EncodeError(f"cannot serialize object of type {exc.type_name!r} with {serializer.name}") from None
    except RecursionError:
        raise EncodeError(f"cannot serialize result with {serializer.name}: nesting too deep") from None
    except Exception as exc:
        reason = _short(f"{type(exc).__name__}: {exc}")
        raise EncodeError(f"cannot serialize result with {serializer.name}: {reason}") from exc


def _decode_reason(exc: Exception, codec: str) -> str:
    """Why decoding failed, in words that cannot carry more than a few bytes of the payload."""
    if isinstance(exc, _BadTag):
        return str(exc)
    if isinstance(exc, RecursionError) or type(exc).__name__ == "StackError":
        return "nesting too deep"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if codec == MSGPACK or isinstance(exc, (pickle.UnpicklingError, EOFError)):
        # Fixed templates from msgpack's and pickle's own decoders: at most a byte or two of data.
        return _short(f"{type(exc).__name__}: {exc}")
    # Anything else (e.g. raised by a pickled object's constructor) may quote the data: the type only.
    return type(exc).__name__


def loads(data: bytes, serializer: Serializer, accept: frozenset[str], *, key: str) -> Any:
    """Decode a stored or published value under the ``accept`` policy.

    Pickle data (recognised by its header) is refused unless ``accept`` lists pickle, whatever the configured
    serializer; anything else is decoded with ``serializer`` if ``accept`` allows it. A value Celery stored with
    ``result_compression`` is decompressed first (bounded by ``DECOMPRESSED_LIMIT``), so the same policy applies to
    what it holds. Every failure is a ContentDisallowed or DecodeError naming ``key``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"cannot decode value at key {key!r}: got {type(data).__name__}, expected bytes")
    raw = data if type(data) is bytes else bytes(data)
    if raw.startswith(COMPRESSED_MAGIC):
        raw = decompress(raw, key)
    if _looks_like_pickle(raw):
        if PICKLE not in accept:
            raise ContentDisallowed(
                f"refusing to deserialize pickle data ({len(raw)} bytes) at key {key!r}: "
                "pickle is refused unless 'pickle' is in accept"
            )
        codec = _PICKLE_SERIALIZER
    elif serializer.name not in accept:
        raise ContentDisallowed(
            f"Refusing to deserialize untrusted content of type {serializer.name} "
            f"({serializer.content_type}) at key {key!r}"
        )
    else:
        codec = serializer
    try:
        return codec.loads(raw)
    except Exception as exc:
        reason = _decode_reason(exc, codec.name)
        raise DecodeError(f"cannot decode {len(raw)} bytes at key {key!r} with {codec.name}: {reason}") from None
