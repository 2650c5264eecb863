"""Real ``celery worker`` processes for the tests, started with :class:`subprocess.Popen` and stopped by PID.

Each worker runs ``tests.celery.tasks`` on one queue with a Redis broker, in its own session (so its prefork
children can be reached through its process group if the worker itself is gone). ``stop()`` sends SIGTERM to the
worker's PID (a warm shutdown that also ends its pool children), waits, then SIGKILL to the same PID and to its own
process group. Nothing is looked up or killed by name.
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
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import celery

from redisresults._process import terminate

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

_LIVE: List[CeleryWorker] = []


class WorkerUnavailable(Exception):
    """The worker did not come up (its log tail is in the message)."""


class CeleryWorker:
    """``celery -A tests.celery.tasks worker -P <pool> -c <n> -Q <queue>`` with the given backend URL."""

    def __init__(
        self,
        *,
        broker: str,
        backend: str,
        pool: str = "prefork",
        concurrency: int = 2,
        queue: Optional[str] = None,
        compression: Optional[str] = None,
        client_name: Optional[str] = None,
    ) -> None:
        self.broker = broker
        self.backend = backend
        self.pool = pool
        self.concurrency = concurrency
        self.queue = queue or f"rr-{pool}-{uuid.uuid4().hex[:8]}"
        self.nodename = f"{self.queue}@localhost"
        self.client_name = client_name or f"rr-worker-{uuid.uuid4().hex[:8]}"
        self.dir = Path(tempfile.mkdtemp(prefix="redisresults-celery-worker-"))
        self.log_path = self.dir / "worker.log"
        self._env: Dict[str, str] = {
            "RR_CELERY_BROKER": broker,
            "RR_CELERY_BACKEND": backend,
            "RR_CELERY_QUEUE": self.queue,
            "RR_CELERY_CLIENT_NAME": self.client_name,
            "RR_CELERY_COMPRESSION": compression or "",
        }
        self._proc: Optional[subprocess.Popen[bytes]] = None
        _LIVE.append(self)

    def __repr__(self) -> str:
        return f"<CeleryWorker {self.nodename} pool={self.pool} backend={self.backend.split('://')[0]} pid={self.pid}>"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> CeleryWorker:
        env = dict(os.environ, **self._env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        env.pop("PYTEST_CURRENT_TEST", None)
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery.tasks", "worker",
            "-P", self.pool, "-c", str(self.concurrency), "-Q", self.queue, "-n", self.nodename,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
            "--logfile", str(self.log_path),
        ]
        with open(self.dir / "stdio.log", "ab") as stdio:
            self._proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdio, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, app: celery.Celery, timeout: float = READY_TIMEOUT) -> None:
        """Until the worker answers a ``ping`` control message (no event to wait on: it is another process)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise WorkerUnavailable(f"{self!r} exited\n{self.log_tail()}")
            replies = app.control.ping(destination=[self.nodename], timeout=0.5)
            if replies:
                return
        raise WorkerUnavailable(f"{self!r} did not answer ping within {timeout}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.dir / "stdio.log", self.log_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            out.append(f"--- {path} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, STOP_TIMEOUT)
            try:  # pool children of a worker that was killed: the group is the session we started
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)


@atexit.register
def _stop_all() -> None:
    for worker in list(_LIVE):
        worker.stop()
