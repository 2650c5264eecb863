"""Celery's ``result_compression`` framing, undone with a bound so a small value cannot expand without limit.

A compressed value is the marker, kombu's compression content type, a NUL, then the compressed
document; what it holds is decoded under the same ``accept`` policy as any other value.
"""

from __future__ import annotations

import bz2
import importlib
import lzma
import zlib
from typing import Any, Callable, Dict

from ._exceptions import DecodeError

#: Celery's ``result_compression`` framing (``celery.backends.base.compress_payload``): this marker, the kombu
#: compression content type, a NUL, then the compressed document. No JSON, msgpack or pickle value starts with NUL.
COMPRESSED_MAGIC = b"\x00celery-compressed\x00"
#: The most a compressed value may expand to (1 GiB): beyond it, it is refused as a decompression bomb.
DECOMPRESSED_LIMIT = 1024 * 1024 * 1024
_REASON_LIMIT = 100


def _short(text: str) -> str:
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


def _bounded(decompressor: Any, body: bytes, limit: int) -> bytes:
    """Run a zlib/bz2/lzma decompressor object over ``body``, refusing output past ``limit`` or a truncated stream."""
    out = decompressor.decompress(body, limit + 1)
    if len(out) > limit:
        raise _TooLarge(f"expands past {limit} bytes")
    finished = decompressor.eof
    if not finished:
        raise ValueError("the compressed stream is truncated")
    return bytes(out)


class _TooLarge(ValueError):
    """A compressed value that would expand past the limit; the message is payload-free."""


def _zlib(body: bytes, limit: int) -> bytes:
    return _bounded(zlib.decompressobj(), body, limit)


def _bz2(body: bytes, limit: int) -> bytes:
    return _bounded(bz2.BZ2Decompressor(), body, limit)


def _lzma(body: bytes, limit: int) -> bytes:
    return _bounded(lzma.LZMADecompressor(), body, limit)


def _optional(*names: str) -> Any:
    """The first of ``names`` that imports (optional compression modules, as kombu looks for them)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise _Unavailable(names[-1])


def _brotli(body: bytes, limit: int) -> bytes:
    out = bytes(_optional("brotli", "brotlicffi").decompress(body))
    if len(out) > limit:
        raise _TooLarge(f"expands past {limit} bytes")
    return out


def _zstd(body: bytes, limit: int) -> bytes:
    zstd = _optional("compression.zstd", "backports.zstd")  # the standard library's from Python 3.14
    return _bounded(zstd.ZstdDecompressor(), body, limit)


class _Unavailable(ValueError):
    """The module a compression method needs is not installed; carries its name."""


#: kombu's compression content types (``kombu.compression``) -> a bounded decompressor.
_DECOMPRESSORS: Dict[str, Callable[[bytes, int], bytes]] = {
    "application/x-gzip": _zlib,  # kombu's "gzip"/"zlib": a zlib stream
    "application/x-bz2": _bz2,
    "application/x-lzma": _lzma,  # kombu's "lzma"/"xz"
    "application/x-brotli": _brotli,
    "application/zstd": _zstd,
}


def decompress(raw: bytes, key: str, limit: int = DECOMPRESSED_LIMIT) -> bytes:
    """The document inside a value Celery stored with ``result_compression``; DecodeError naming the method."""
    content_type, sep, body = raw[len(COMPRESSED_MAGIC) :].partition(b"\x00")
    method = content_type.decode("ascii", "replace")
    shown = method if len(method) <= 40 and method.isprintable() else f"a {len(content_type)}-byte name"
    decompress = _DECOMPRESSORS.get(method) if sep else None
    if decompress is None:
        known = ", ".join(sorted(_DECOMPRESSORS))
        raise DecodeError(f"cannot decompress value at key {key!r}: unknown compression {shown!r} (known: {known})")
    try:
        return decompress(body, limit)
    except _Unavailable as exc:
        raise DecodeError(f"cannot decompress value at key {key!r} ({shown}): needs the {exc} package") from None
    except _TooLarge as exc:
        raise DecodeError(f"refusing to decompress value at key {key!r} ({shown}): it {exc}") from None
    except Exception as exc:
        reason = _short(f"{type(exc).__name__}: {exc}")
        raise DecodeError(f"cannot decompress {len(body)} bytes at key {key!r} with {shown}: {reason}") from None
