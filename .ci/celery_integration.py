#!/usr/bin/env python3
"""Celery's own integration tests, run twice on a Redis broker: with the stock backend and with the drop-in.

Used by ``tox -e celery-integration``. It downloads the source distribution of the *installed* Celery version with
pip, copies its ``t/`` directory out (running in the sdist's root would import its ``celery/`` instead of the
installed one), starts a private ``redis-server`` (stopped by PID), and runs ``t/integration/test_tasks.py`` plus
the result-set, group, chain and chord tests of ``t/integration/test_canvas.py`` once with
``TEST_BACKEND=redis://...`` and once with ``TEST_BACKEND=redisresults+redis://...``. The backend uses db 0 (the
chord tests read chord keys through a helper connection on db 0), the broker db 1.

Exit status 0 when the drop-in run has no failure the stock run does not also have. Extra arguments go to pytest
(e.g. ``-k chord``). Needs pytest-timeout, pytest-rerunfailures, pytest-subtests and pydantic (the tox env
installs them).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Sequence

SELECTION = [
    "t/integration/test_tasks.py",
    "t/integration/test_canvas.py::test_result_set",
    "t/integration/test_canvas.py::test_group",
    "t/integration/test_canvas.py::test_chain",
    "t/integration/test_canvas.py::test_chord",
]
RUN_TIMEOUT = 3600
READY_TIMEOUT = 10.0


def say(message: str) -> None:
    print(f"celery-integration: {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port in a temp dir; stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("celery-integration: redis-server not found on PATH (apt-get install redis-server)")
        self.port = free_port()
        self.dir = directory
        config = directory / "redis.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n"
            f"dir {directory}\nlogfile {directory / 'redis.log'}\n"
        )
        self.proc = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL, cwd=directory)
        deadline = time.monotonic() + READY_TIMEOUT
        while self.command("PING") != "+PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"celery-integration: redis-server did not start (see {directory / 'redis.log'})")
            time.sleep(0.05)  # nothing to wait on but the server answering

    def command(self, *words: str) -> Optional[str]:
        """One inline command on a fresh connection; the first reply line, or None if unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall((" ".join(words) + "\r\n").encode())
                return sock.recv(4096).split(b"\r\n", 1)[0].decode()
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)


def fetch_tests(work: Path) -> str:
    """Download the installed Celery's sdist and copy ``t/`` (and its pytest settings) into ``work``."""
    version = importlib.metadata.version("celery")
    downloads = work / "sdist"
    say(f"downloading the celery=={version} source distribution")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", f"celery=={version}",
         "-d", str(downloads)],
        check=True, timeout=600,
    )
    archive = next(downloads.glob(f"celery-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/", 2)[1:2] in (["t"], ["pyproject.toml"])]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work / "src", members=members, **safe)  # noqa: S202 - filtered members (and paths)
    root = work / "src" / f"celery-{version}"
    shutil.copytree(root / "t", work / "run" / "t")
    # The sdist's pytest settings: its test classes are named test_* (pytest's default collects Test* only).
    shutil.copy(root / "pyproject.toml", work / "run" / "pyproject.toml")
    return version


def run(work: Path, server: RedisServer, label: str, backend: str, extra: Sequence[str]) -> Dict[str, str]:
    """One pytest run; returns ``{test id: outcome}`` from its JUnit report."""
    server.command("FLUSHALL")
    report = work / f"report-{label}.xml"
    env = dict(os.environ)
    env.update(
        TEST_BROKER=f"redis://127.0.0.1:{server.port}/1",
        TEST_BACKEND=backend,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(server.port),
        PYTHONPATH=str(work / "run"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    command = [sys.executable, "-m", "pytest", "-p", "celery.contrib.pytest", "-p", "no:cacheprovider",
               "-q", "-rfE", f"--junitxml={report}", *SELECTION, *extra]
    say(f"{label}: TEST_BACKEND={backend}")
    subprocess.run(command, cwd=work / "run", env=env, timeout=RUN_TIMEOUT, check=False)
    return outcomes(report)


def outcomes(report: Path) -> Dict[str, str]:
    results: Dict[str, str] = {}
    if not report.exists():
        return results
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - the report pytest just wrote
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                # xfail_strict: a test Celery expects to fail that passes is reported as a failure
                strict_xpass = (child.get("message") or "").startswith("[XPASS(strict)]")
                outcome = "xpassed" if strict_xpass else "failed"
            elif child.tag == "skipped":
                why = (child.get("type") or "") + (child.get("message") or "")
                outcome = "xfailed" if "xfail" in why else "skipped"
        results[name] = outcome
    return results


def counts(results: Dict[str, str]) -> str:
    tally: Dict[str, int] = {}
    for outcome in results.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items())) or "no tests ran"


def main(argv: List[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="redisresults-celery-integration-"))
    (work / "redis").mkdir()
    server: Optional[RedisServer] = None
    try:
        version = fetch_tests(work)
        server = RedisServer(work / "redis")
        stock = run(work, server, "stock", f"redis://127.0.0.1:{server.port}/0", argv)
        dropin = run(work, server, "drop-in", f"redisresults+redis://127.0.0.1:{server.port}/0", argv)
    finally:
        if server is not None:
            server.stop()
    say(f"Celery {version}: stock:   {counts(stock)}")
    say(f"Celery {version}: drop-in: {counts(dropin)}")
    if not stock or not dropin:
        say("a run produced no report")
        return 1
    # An expected failure is a failure: several xfail markers apply only when TEST_BACKEND starts with redis://,
    # so the same known Celery bug shows as xfailed with the stock backend and as failed with the drop-in.
    failing = ("failed", "xfailed")
    worse = sorted(name for name, outcome in dropin.items() if outcome == "failed" and stock.get(name) not in failing)
    for name in worse:
        say(f"fails only with the drop-in: {name}")
    both = sorted(name for name, outcome in dropin.items() if outcome == "failed" and stock.get(name) in failing)
    for name in both:
        say(f"fails with both backends ({'expected' if stock[name] == 'xfailed' else 'failed'} with stock): {name}")
    better = sorted(n for n, outcome in dropin.items() if outcome in ("passed", "xpassed") and stock.get(n) in failing)
    for name in better:
        say(f"passes only with the drop-in ({stock[name]} with stock): {name}")
    if worse:
        return 1
    shutil.rmtree(work, ignore_errors=True)
    say("the drop-in has no failure the stock backend does not also have")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
