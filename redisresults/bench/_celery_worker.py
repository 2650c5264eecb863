"""The Celery figures' deployment: URLs derived from the bench's own, and one real ``celery worker`` process.

The worker runs the tasks of the ``_celery_tasks`` module with the **stock** ``redis://`` result backend, so both
clients measured against it (stock and drop-in) face the same, unmodified Celery worker (the wire format is
the same). Broker and backend URLs reach it in environment variables, never on its command line (``ps`` shows
those). It runs in a session of its own (a Ctrl-C at the terminal is ours to handle) and is stopped by its PID
(SIGTERM, a bounded wait, SIGKILL; a threads pool forks no children), also at interpreter exit. Nothing is
looked up or killed by name. Importing this module does not import Celery.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import redisresults
from redisresults._process import terminate

from ._common import BenchError, child_env, transport

BROKER_ENV = "RRBENCH_CELERY_BROKER"
BACKEND_ENV = "RRBENCH_CELERY_BACKEND"
QUEUE_ENV = "RRBENCH_CELERY_QUEUE"
PREFIX_ENV = "RRBENCH_CELERY_PREFIX"
NAME_ENV = "RRBENCH_CELERY_CLIENT_NAME"
WORKER_NAME = "rrbench-celery-worker"  # CLIENT SETNAME of every worker connection (broker and backend)
POOL, CONCURRENCY = "threads", 16
TASKS_MODULE = f"{__package__}._celery_tasks"  # imported by the worker process only (it imports Celery)
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

_LIVE: list[CeleryWorker] = []  # started and not yet stopped: the atexit hook stops these by PID


@dataclass(frozen=True)
class CeleryUrls:
    """Broker (another db of the bench's server), the stock backend URL, and the drop-in's (``redisresults+``)."""

    broker: str
    stock: str
    dropin: str


def celery_urls(url: str) -> Optional[CeleryUrls]:
    """Celery's URLs for the server behind ``url`` (TCP or Unix socket); None for what the figure does not cover.

    TLS, Sentinel and Cluster deployments need more Celery settings than a URL: the figure skips them.
    """
    if url.partition("://")[0] not in ("redis", "socket", "unix"):
        return None  # rediss://, sentinel://, a cluster
    backend = redisresults.backend_from_url(url)
    try:
        if transport(backend) == "TLS":
            return None
        params = backend.connparams
    finally:
        backend.close()
    db = int(params.get("db") or 0)
    broker_db = (db + 1) % 16
    user, password = params.get("username"), params.get("password")
    auth = ""
    if user or password:
        auth = f"{quote(str(user or ''), safe='')}:{quote(str(password or ''), safe='')}@"
    if "path" in params:
        where = f"socket://{auth}{params['path']}?virtual_host="
        return CeleryUrls(f"redis+{where}{broker_db}", f"redis+{where}{db}", f"redisresults+{where}{db}")
    if "host" not in params:
        return None
    host = f"{auth}{params['host']}:{params.get('port') or 6379}"
    return CeleryUrls(f"redis://{host}/{broker_db}", f"redis://{host}/{db}", f"redisresults+redis://{host}/{db}")


class CeleryWorker:
    """``celery -A TASKS_MODULE worker -P threads -c 16 -Q QUEUE``, stock backend, stopped by PID."""

    def __init__(self, bench_url: str, urls: CeleryUrls, queue: str, prefix: str) -> None:
        self.queue = queue
        self.nodename = f"{queue}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="redisresults-bench-celery-"))
        self.env = child_env(bench_url)
        self.env.update({BROKER_ENV: urls.broker, BACKEND_ENV: urls.stock, QUEUE_ENV: queue, PREFIX_ENV: prefix,
                         NAME_ENV: WORKER_NAME})
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> CeleryWorker:
        command = [
            sys.executable, "-m", "celery", "-A", TASKS_MODULE, "worker",
            "-P", POOL, "-c", str(CONCURRENCY), "-Q", self.queue, "-n", self.nodename,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
            "--logfile", str(self.dir / "worker.log"),
        ]
        _LIVE.append(self)
        with open(self.dir / "stdio.log", "ab") as stdio:  # never our stdout: that is the bench's table
            self.proc = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=stdio,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, app: Any, timeout: float = READY_TIMEOUT) -> None:
        """Until one task sent through ``app`` comes back (the worker is another process: nothing to wait on)."""
        from celery.exceptions import TimeoutError as CeleryTimeout  # type: ignore  # untyped, or not installed

        deadline = time.monotonic() + timeout
        result = app.signature("rrbench.echo", args=(0,)).delay()
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"the Celery worker exited\n{self.log_tail()}")
            try:
                result.get(timeout=1.0)
                return
            except CeleryTimeout:
                if time.monotonic() > deadline:
                    raise BenchError(f"the Celery worker ran no task within {timeout}s\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in (self.dir / "stdio.log", self.dir / "worker.log"):
            try:
                out.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                continue
        return "\n".join(out)[-3000:]

    def stop(self) -> None:
        """SIGTERM to our PID (a warm shutdown), SIGKILL after ``STOP_TIMEOUT`` (a threads pool has no children)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)


@atexit.register
def _stop_all() -> None:
    for worker in list(_LIVE):
        worker.stop()
