"""The store script, run by EVALSHA straight on a connection of the shared pool.

redis-py still connects (TLS, AUTH/ACL, SELECT, Sentinel discovery, health checks), sends and parses, and raises
its own errors (so the retry rules and the one translation boundary see what they always saw); what is skipped is
the client's command layer around them — argument filtering, observability hooks, the retry wrapper, the response
callbacks — about a third of a store's Python time. A store is on the wake-up's critical path twice: before the
document is on the wire, and after the reply, while the storing thread still holds the GIL a local drainer needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rex

from ._pool import checkout
from ._resp import Arg, packed


class PooledScript:
    """A Lua script called like redis-py's ``Script`` (``script(keys=..., args=...)``), on ``pool``."""

    def __init__(self, pool: Any, source: str) -> None:
        self._pool = pool
        self._source = source.encode()
        self.sha = hashlib.sha1(self._source, usedforsecurity=False).hexdigest().encode()  # the script's name in Redis

    def __call__(self, keys: Sequence[bytes], args: Sequence[Arg], client: Any = None) -> Any:
        conn = checkout(self._pool)
        try:
            try:
                conn.send_packed_command(packed(b"EVALSHA", self.sha, len(keys), *keys, *args))
                return conn.read_response()
            except rex.NoScriptError:  # a new, restarted or flushed server: load it (the ACL allows
                conn.send_packed_command(packed(b"SCRIPT", b"LOAD", self._source))  # SCRIPT LOAD, not EVAL)
                conn.read_response()
                conn.send_packed_command(packed(b"EVALSHA", self.sha, len(keys), *keys, *args))
                return conn.read_response()
        finally:
            self._pool.release(conn)  # redis-py disconnected it first if the error left it unusable
