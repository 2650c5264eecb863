"""Stored values and published messages to validated metas, and back: one serializer, one ``accept``.

No content type is stored with a value (Celery's format), so the reader decodes with its own
serializer; ``accept`` decides what it may decode (pickle is refused unless listed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from . import _meta
from ._exceptions import DecodeError
from ._serialization import dumps, get_serializer, loads
from ._store import REF_FIELD


def _as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


class Codec:
    """Encoding and decoding for one backend."""

    def __init__(self, serializer: str, accept: Iterable[str]) -> None:
        self.serializer = get_serializer(serializer)
        self._accept = frozenset(accept)

    def encode(self, document: Any) -> bytes:
        return dumps(document, self.serializer)

    def stored(self, key: bytes, raw: bytes | str) -> dict[str, Any]:
        """A stored task document as a meta (exceptions stay in their stored dict form)."""
        label = key.decode("utf-8", "replace")
        return _meta.validate_meta(loads(_as_bytes(raw), self.serializer, self._accept, key=label), key=label)

    def message(self, channel: bytes, data: Any) -> Optional[dict[str, Any]]:
        """A published meta, or None for a reference to a result too large to publish (read the key)."""
        label = channel.decode("utf-8", "replace")
        if not isinstance(data, bytes):
            raise DecodeError(f"message on {label} is not bytes")
        document = loads(data, self.serializer, self._accept, key=label)
        if isinstance(document, dict) and REF_FIELD in document and isinstance(document[REF_FIELD], Mapping):
            return None
        return _meta.validate_meta(document, key=label)

    def group(self, key: bytes, raw: bytes | str) -> tuple[str, list[str]]:
        label = key.decode("utf-8", "replace")
        return _meta.parse_group_meta(loads(_as_bytes(raw), self.serializer, self._accept, key=label), key=label)
