"""The drainer's wake-up pair: callers write a byte, the drainer's ``select`` returns.

One ``select`` watches the Pub/Sub socket and this pair, so a new wait is subscribed at once
instead of after the drainer's next timeout, and ``close()`` interrupts any wait or backoff.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Sequence
from typing import Any, Optional


class WakeUp:
    """A non-blocking socket pair; ``wake`` is safe from any thread or greenlet."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def wake(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopping)
            pass

    def wait(self, sock: Optional[socket.socket], timeout: float) -> bool:
        """Block until ``sock`` is readable or a wake-up arrives (at most ``timeout`` s); True if ``sock`` is.

        ``OSError``/``ValueError`` from a socket closed underneath propagate to the caller.
        """
        watch: list[Any] = [self._r] if sock is None else [sock, self._r]
        readable, _, _ = select.select(watch, [], [], max(0.0, timeout))
        if self._r in readable:
            try:
                while self._r.recv(4096):
                    pass
            except OSError:
                pass
        return sock is not None and sock in readable

    def wait_many(self, socks: Sequence[socket.socket], timeout: float) -> list[socket.socket]:
        """Like ``wait`` over several sockets at once (Redis Cluster: one per node); the readable ones."""
        readable, _, _ = select.select([*socks, self._r], [], [], max(0.0, timeout))
        if self._r in readable:
            readable.remove(self._r)
            try:
                while self._r.recv(4096):
                    pass
            except OSError:
                pass
        return readable

    def close(self) -> None:
        self._r.close()
        self._w.close()
