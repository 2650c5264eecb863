"""The narrow link between a backend and its drainer: exactly what the drainer needs, frozen.

The backend hands the drainer this value instead of itself, so the drainer never reaches into
the backend and tests can drive it with a fake link and a scripted fake subscriber.
Everything a link's callables raise is already a redisresults error (``ConnectionUnavailable``
for a lost connection, which makes the drainer resync; anything else fails only the waits it
was for).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

Meta = dict[str, Any]


class Subscriber(Protocol):
    """One Pub/Sub connection, used by the drainer alone (``RedisSubscriber``, or a test fake)."""

    @property
    def address(self) -> Optional[tuple[str, int]]: ...

    def selectable(self) -> socket.socket: ...

    def subscribe(self, channels: Sequence[bytes]) -> None: ...

    def unsubscribe(self, channels: Sequence[bytes]) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def buffered(self) -> bool: ...

    def read(self) -> Any: ...

    def read_many(self, limit: int) -> list[Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Link:
    """How the drainer opens its connection, reads keys, decodes, and finds the master."""

    #: A connected Pub/Sub connection (raises ConnectionUnavailable when Redis is unreachable).
    open_subscriber: Callable[[], Subscriber]
    #: MGET of the given keys on the drainer's own connection (outside the shared pool).
    read_keys: Callable[[Sequence[bytes]], Sequence[Optional[bytes]]]
    #: A published payload -> meta, or None for a reference to a result too large to publish.
    decode_message: Callable[[bytes, bytes], Optional[Meta]]
    #: A stored value -> meta.
    decode_stored: Callable[[bytes, bytes], Meta]
    #: Where the master is now (Sentinel); None for a backend that cannot fail over.
    master_address: Optional[Callable[[], Optional[tuple[str, int]]]] = None
    #: Seconds of silence before the drainer PINGs (and how long it waits for the PONG).
    health_interval: float = 10.0
