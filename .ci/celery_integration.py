#!/usr/bin/env python3
"""Celery's own integration tests, run twice on a Redis broker: with the stock backend and with the drop-in.

Used by ``tox -e celery-integration``. It downloads the source distribution of the *installed* Celery version with
pip, copies its ``t/`` directory out (running in the sdist's root would import its ``celery/`` instead of the
installed one), and runs ``t/integration/test_tasks.py`` plus the result-set, group, chain and chord tests of
``t/integration/test_canvas.py`` once with ``TEST_BACKEND=redis://...`` and once with
``TEST_BACKEND=redisresults+redis://...``. Each run has a private ``redis-server`` of its own (stopped by PID): the
backend uses its db 0 (the chord tests read chord keys through a helper connection on db 0, pointed at that server
by REDIS_HOST/REDIS_PORT), the broker its db 1. The two runs are mostly idle (each test's worker fixture waits out
a 1 s inspect broadcast), so they run at the same time, each pytest in its own session (stopped by process group on
a timeout), its output going to ``pytest-<run>.log`` in the work dir and printed, every line prefixed with the
run's name, when it has finished. ``--sequential`` gives the old behaviour for debugging: one server shared by the
two runs, one after the other, their output streamed.

Exit status 0 when the drop-in run has no failure the stock run does not also have. Extra arguments go to pytest
(e.g. ``-k chord``). Needs pytest-timeout, pytest-rerunfailures, pytest-subtests and pydantic (the tox env
installs them). The work dir (reports, logs, server logs) is kept when the exit status is not 0.

``--subset`` (``tox -e celery-subset``, under a minute) runs only ``SUBSET``, a fixed list of fast tests
that cover the drop-in's client paths, with the same comparison and one more rule: every test the list names must
exist in the installed Celery and must have run (not skipped) with both backends, so a Celery release that renames
or drops one fails loudly instead of shrinking the subset. Narrowing it further with ``-k`` therefore fails too.
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
from typing import IO, Collection, Dict, List, Optional, Sequence, Tuple

SELECTION = [
    "t/integration/test_tasks.py",
    "t/integration/test_canvas.py::test_result_set",
    "t/integration/test_canvas.py::test_group",
    "t/integration/test_canvas.py::test_chain",
    "t/integration/test_canvas.py::test_chord",
]
# --subset: pytest node ids (a parametrized test without its [id] would mean all of its cases), picked by their
# durations in a full stock run (Celery 5.7.0): about a second each, which is mostly the manager fixture's teardown
# (an inspect broadcast that waits its 1 s timeout), none xfail-marked, none known to fail. Left out for time:
# test_timeout (11 s: a 10 s task), test_revoked (9 s of sleeping tasks), and the only update_state/PROGRESS
# test, test_revoke_keeps_state_of_task_started_elsewhere (10 s per case: a revoke broadcast waiting out its timeout).
TASKS = "t/integration/test_tasks.py::"
CANVAS = "t/integration/test_canvas.py::"
SUBSET = [
    # AsyncResult.get: values, a raised exception, bad arguments, a rejected task, revoked by stamped headers
    TASKS + "test_tasks::test_basic_task",
    TASKS + "test_tasks::test_fail",
    TASKS + "test_tasks::test_wrong_arguments",
    TASKS + "test_tasks::test_reject_without_requeue_stores_failure",
    TASKS + "test_tasks::test_revoked_by_headers_simple_canvas",
    # ignore_result, and the stored meta a worker writes
    TASKS + "test_tasks::test_ignore_result",
    TASKS + "test_tasks::test_send_task_without_ignore_result_stores_result",
    TASKS + "test_task_redis_result_backend::test_ignoring_result_no_subscriptions",
    TASKS + "test_task_redis_result_backend::test_asyncresult_get_cancels_subscription",
    # ResultSet.join with a spent timeout, join_native with timeout=0 (nothing ready, and all ready)
    CANVAS + "test_result_set::test_join_exhausted_timeout",
    CANVAS + "test_result_set::test_join_native_timeout_zero_gives_up_on_pending_results",
    CANVAS + "test_result_set::test_join_native_timeout_zero_returns_results_that_are_ready",
    # groups: a failed member, an empty group, nested groups
    CANVAS + "test_group::test_ready_with_exception",
    CANVAS + "test_group::test_empty_group_result",
    CANVAS + "test_group::test_nested_group_group",
    # chains: simple, failing, a group result inside a chain
    CANVAS + "test_chain::test_simple_chain",
    CANVAS + "test_chain::test_chain_on_error",
    CANVAS + "test_chain::test_group_results_in_chain",
    # chords: result order, nested, a failing body, a failing header, a header failure failing the chords after it
    CANVAS + "test_chord::test_chord_order",
    CANVAS + "test_chord::test_nested_chord",
    CANVAS + "test_chord::test_chord_on_error",
    CANVAS + "test_chord::test_error_propagates_from_chord2",
    CANVAS + "test_chain::test_header_failure_fails_the_chords_after_it[1]",
    # a frozen chord applied twice: its body runs twice (a wait between a header publish and the next one breaks it)
    CANVAS + "test_chord::test_reapplying_frozen_chord_dispatches_body_again",
]
RUN_TIMEOUT = 3600
SUBSET_RUN_TIMEOUT = 600
SUBSET_TEST_TIMEOUT = 60  # pytest-timeout for tests without a timeout marker of their own (@flaky has 300 s)
READY_TIMEOUT = 10.0
HEARTBEAT = 60.0  # a line this often while concurrent runs are quiet (their output shows when they end)
COLLECT_TIMEOUT = 300
LABELS = ("stock", "drop-in")


def say(message: str) -> None:
    print(f"celery-integration: {message}", flush=True)


def free_port(taken: Collection[int] = ()) -> int:
    """A loopback port nothing listens on now, other than ``taken`` (ports already handed to our own servers)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port in its own dir; stopped by its PID."""

    def __init__(self, directory: Path, taken: Collection[int] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("celery-integration: redis-server not found on PATH (apt-get install redis-server)")
        self.port = free_port(taken)
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "redis.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n"
            f"dir {directory}\nlogfile {directory / 'redis.log'}\n"
        )
        self.proc = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL, cwd=directory)
        deadline = time.monotonic() + READY_TIMEOUT
        # Exited (the port taken after all) is checked first: then a PONG would be some other server's.
        while self.proc.poll() is not None or self.command("PING") != "+PONG":
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


def pytest_env(work: Path, server: RedisServer, backend: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        TEST_BROKER=f"redis://127.0.0.1:{server.port}/1",
        TEST_BACKEND=backend,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(server.port),
        PYTHONPATH=str(work / "run"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def pytest_command(*args: str) -> List[str]:
    return [sys.executable, "-m", "pytest", "-p", "celery.contrib.pytest", "-p", "no:cacheprovider", *args]


def prefixed(label: str, text: str) -> str:
    """``text`` with every line prefixed by the run's name, so the two runs' outputs stay apart in the CI log."""
    return "".join(f"{label:>7} | {line}\n" for line in text.splitlines())


class Run:
    """One pytest run of the selection with one backend on ``server``: its process, log and JUnit report.

    With ``capture`` its output goes to ``pytest-<label>.log`` in the work dir and is printed (prefixed) when it
    ends; without, it streams to ours (``--sequential``).
    """

    def __init__(
        self, work: Path, label: str, server: RedisServer, backend: str, selection: Sequence[str],
        extra: Sequence[str], capture: bool,
    ) -> None:
        self.work = work
        self.label = label
        self.server = server
        self.backend = backend
        self.report = work / f"report-{label}.xml"
        self.log: Optional[Path] = work / f"pytest-{label}.log" if capture else None
        self.command = pytest_command("-q", "-rfE", f"--junitxml={self.report}", *selection, *extra)
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.started = 0.0
        self.timed_out = False

    def start(self) -> None:
        self.server.command("FLUSHALL")
        if self.report.exists():
            self.report.unlink()  # a run started again (--subset, an id found missing): no stale report
        say(f"{self.label}: TEST_BACKEND={self.backend}" + (f" (output: {self.log})" if self.log else ""))
        output: Optional[IO[bytes]] = self.log.open("wb") if self.log else None
        try:
            # Its own session, so a run that hangs past the timeout is stopped with the pool processes its worker
            # forked.
            self.proc = subprocess.Popen(
                self.command, cwd=self.work / "run", env=pytest_env(self.work, self.server, self.backend),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()  # pytest has its own copy
        self.started = time.monotonic()

    def wait(self, deadline: float) -> None:
        """Wait for pytest until ``deadline`` (``time.monotonic()``), stopping it then; print its output if captured."""
        assert self.proc is not None
        while self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                say(f"{self.label}: pytest still running after {time.monotonic() - self.started:.0f} s, stopping it")
                self.timed_out = True
                self.stop()
                break
            try:
                self.proc.wait(timeout=min(left, HEARTBEAT) if self.log else left)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    say(f"{self.label}: still running after {time.monotonic() - self.started:.0f} s ({self.log})")
        say(f"{self.label}: {time.monotonic() - self.started:.0f} s, pytest exit status {self.proc.returncode}")
        if self.log is not None and self.log.exists():
            say(f"{self.label}: pytest output (TEST_BACKEND={self.backend}), from {self.log}:")
            print(prefixed(self.label, self.log.read_text(errors="replace")), end="", flush=True)

    def stop(self) -> None:
        """Kill pytest's whole session (no-op unless it is still running)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def results(self) -> Dict[str, str]:
        """``{test id: outcome}`` from its JUnit report (empty when it wrote none or was stopped)."""
        return {} if self.timed_out else outcomes(self.report)


def start_collect(work: Path, server: RedisServer, files: Sequence[str]) -> subprocess.Popen[bytes]:
    """``pytest --collect-only`` of ``files`` into ``collect.log`` (Celery's conftest reads TEST_BACKEND: stock)."""
    env = pytest_env(work, server, f"redis://127.0.0.1:{server.port}/0")
    with (work / "collect.log").open("wb") as output:
        return subprocess.Popen(
            pytest_command("--collect-only", "-q", *files), cwd=work / "run", env=env, stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )


def collected_nodes(work: Path, proc: subprocess.Popen[bytes]) -> List[str]:
    """The node ids the collection :func:`start_collect` started lists (printing its output if it failed)."""
    try:
        proc.wait(timeout=COLLECT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = (work / "collect.log").read_text(errors="replace")
    lines = text.splitlines()
    listing = lines[: lines.index("")] if "" in lines else lines  # the node ids, then a blank line, then the rest
    nodes = [line for line in listing if "::" in line and not line.startswith(" ")]
    if proc.returncode != 0 or not nodes:
        print(text, flush=True)
    return nodes


def selects(listed: str, node: str) -> bool:
    """Whether the command-line node id ``listed`` selects the collected ``node`` (its cases, or its class's tests)."""
    return node == listed or node.startswith((listed + "[", listed + "::"))


def junit_name(node: str) -> str:
    """A pytest node id as :func:`outcomes` names it from the JUnit report (``classname::name``)."""
    path, *rest = node.split("::")
    module = path[: -len(".py")] if path.endswith(".py") else path
    return "::".join([".".join([module.replace("/", "."), *rest[:-1]]), rest[-1]])


def missing_tests(listed: Sequence[str], collected: Sequence[str]) -> List[str]:
    """The ids in ``listed`` that select none of the ``collected`` node ids."""
    return [name for name in listed if not any(selects(name, node) for node in collected)]


def not_run(
    listed: Sequence[str], collected: Sequence[str], results: Dict[str, str]
) -> List[Tuple[str, str]]:
    """``(test, why)`` for each collected test that ``listed`` selects but the report has not run."""
    problems: List[Tuple[str, str]] = []
    for node in collected:
        if any(selects(name, node) for name in listed):
            outcome = results.get(junit_name(node))
            if outcome is None:
                problems.append((node, "not in the report"))
            elif outcome == "skipped":
                problems.append((node, "skipped"))
    return problems


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


def compare(stock: Dict[str, str], dropin: Dict[str, str]) -> Tuple[List[str], List[str], List[str]]:
    """``(worse, both, better)``: the tests failing only with the drop-in, with both, and only with stock.

    An expected failure is a failure: several xfail markers apply only when TEST_BACKEND starts with redis://, so
    the same known Celery bug shows as xfailed with the stock backend and as failed with the drop-in.
    """
    failing = ("failed", "xfailed")
    worse = sorted(name for name, outcome in dropin.items() if outcome == "failed" and stock.get(name) not in failing)
    both = sorted(name for name, outcome in dropin.items() if outcome == "failed" and stock.get(name) in failing)
    better = sorted(n for n, outcome in dropin.items() if outcome in ("passed", "xpassed") and stock.get(n) in failing)
    return worse, both, better


def check_subset(
    listed: Sequence[str], collected: Sequence[str], runs: Dict[str, Dict[str, str]]
) -> List[str]:
    """What makes a --subset run red besides the comparison: a listed test that did not run with some backend."""
    problems = []
    for label, results in runs.items():
        for node, why in not_run(listed, collected, results):
            problems.append(f"{label}: {node}: {why}")
    return problems


def options(argv: Sequence[str]) -> Tuple[bool, bool, List[str]]:
    """``(--subset, --sequential, the arguments for pytest)``."""
    ours = ("--subset", "--sequential")
    return "--subset" in argv, "--sequential" in argv, [arg for arg in argv if arg not in ours]


def start_servers(work: Path, sequential: bool) -> List[RedisServer]:
    """A server per run (``LABELS``), or one for both with ``--sequential``."""
    servers: List[RedisServer] = []
    for label in LABELS[:1] if sequential else LABELS:
        servers.append(RedisServer(work / f"redis-{label}", taken=[server.port for server in servers]))
    return servers


def main(argv: List[str]) -> int:
    subset, sequential, extra = options(argv)
    work = Path(tempfile.mkdtemp(prefix="redisresults-celery-integration-"))
    servers: List[RedisServer] = []
    runs: List[Run] = []
    selection: Sequence[str] = SUBSET if subset else SELECTION
    collected: List[str] = []
    missing: List[str] = []
    timeout: float = SUBSET_RUN_TIMEOUT if subset else RUN_TIMEOUT
    if subset:
        extra = [f"--timeout={SUBSET_TEST_TIMEOUT}", *extra]

    def make_runs() -> List[Run]:
        return [
            Run(work, label, servers[n % len(servers)], f"{scheme}://127.0.0.1:{servers[n % len(servers)].port}/0",
                selection, extra, capture=not sequential)
            for n, (label, scheme) in enumerate(zip(LABELS, ("redis", "redisresults+redis")))
        ]

    try:
        version = fetch_tests(work)
        servers = start_servers(work, sequential)
        if subset:
            collecting = start_collect(work, servers[0], sorted({name.split("::", 1)[0] for name in SUBSET}))
            if not sequential:
                # Started with the whole list while the collection runs (it takes a second or two): started again
                # below, without them, should some listed id be missing (pytest stops on an id it cannot find).
                runs = make_runs()
                for one in runs:
                    one.start()
            collected = collected_nodes(work, collecting)
            missing = missing_tests(SUBSET, collected)
            for name in missing:
                say(f"--subset lists {name}, which Celery {version} does not have (renamed or removed?):"
                    " update SUBSET in .ci/celery_integration.py")
            selection = [name for name in SUBSET if name not in missing]
            if not selection:
                say(f"none of the {len(SUBSET)} tests of --subset is in Celery {version}")
                return 1
            collected = [node for node in collected if any(selects(name, node) for name in selection)]
            say(f"--subset: {len(collected)} tests from {len(selection)} of {len(SUBSET)} listed ids")
            if missing and runs:
                say("starting the runs again without the missing ids")
                for one in runs:
                    one.stop()
                runs = []
        if sequential:
            runs = make_runs()
            for one in runs:
                one.start()
                one.wait(one.started + timeout)
        else:
            if not runs:
                runs = make_runs()
                for one in runs:
                    one.start()
            deadline = min(one.started for one in runs) + timeout
            for one in runs:  # the stock run's output first, then the drop-in's
                one.wait(deadline)
    finally:
        for one in runs:
            one.stop()
        for server in servers:
            server.stop()
    stock, dropin = (one.results() for one in runs)
    say(f"Celery {version}: stock:   {counts(stock)}")
    say(f"Celery {version}: drop-in: {counts(dropin)}")
    if not stock or not dropin:
        say("a run produced no report")
        return 1
    worse, both, better = compare(stock, dropin)
    for name in worse:
        say(f"fails only with the drop-in: {name}")
    for name in both:
        say(f"fails with both backends ({'expected' if stock[name] == 'xfailed' else 'failed'} with stock): {name}")
    for name in better:
        say(f"passes only with the drop-in ({stock[name]} with stock): {name}")
    problems = check_subset(selection, collected, {"stock": stock, "drop-in": dropin}) if subset else []
    for problem in problems:
        say(f"--subset test did not run: {problem}")
    if worse or missing or problems:
        if missing or problems:
            say("--subset must run every test it lists with both backends")
        say(f"logs, JUnit reports and server logs kept in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    say("the drop-in has no failure the stock backend does not also have")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
