"""The parts of ``.ci/celery_integration.py`` (``tox -e celery-integration`` / ``celery-subset``) that need no
download and no server: reading the JUnit report, the stock-vs-drop-in comparison, the --subset completeness checks,
and how a run's process is started, captured, waited for and stopped (a stand-in command instead of pytest)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "celery_integration.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("celery_integration_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its main() runs only as a script
    return module


REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="6">
  <testcase classname="t.integration.test_tasks.test_tasks" name="test_basic_task" time="0.5"/>
  <testcase classname="t.integration.test_tasks.test_tasks" name="test_fail" time="0.1">
    <failure message="AssertionError: boom">trace</failure>
  </testcase>
  <testcase classname="t.integration.test_canvas.test_chord" name="test_simple_chord" time="0.1">
    <error message="failed on setup">trace</error>
  </testcase>
  <testcase classname="t.integration.test_canvas.test_chord" name="test_xfail" time="0.1">
    <skipped type="pytest.xfail" message="known bug"/>
  </testcase>
  <testcase classname="t.integration.test_canvas.test_chord" name="test_skip" time="0.0">
    <skipped type="pytest.skip" message="Requires redis result backend."/>
  </testcase>
  <testcase classname="t.integration.test_tasks.test_tasks" name="test_state[PROGRESS]" time="0.1">
    <failure message="[XPASS(strict)] fixed">trace</failure>
  </testcase>
</testsuite></testsuites>
"""


def test_outcomes_from_a_junit_report(script: ModuleType, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(REPORT)
    assert script.outcomes(report) == {
        "t.integration.test_tasks.test_tasks::test_basic_task": "passed",
        "t.integration.test_tasks.test_tasks::test_fail": "failed",
        "t.integration.test_canvas.test_chord::test_simple_chord": "failed",
        "t.integration.test_canvas.test_chord::test_xfail": "xfailed",
        "t.integration.test_canvas.test_chord::test_skip": "skipped",
        "t.integration.test_tasks.test_tasks::test_state[PROGRESS]": "xpassed",
    }
    assert script.outcomes(tmp_path / "absent.xml") == {}
    assert script.counts(script.outcomes(report)) == "2 failed, 1 passed, 1 skipped, 1 xfailed, 1 xpassed"
    assert script.counts({}) == "no tests ran"


def test_compare_counts_an_expected_failure_with_stock_as_a_failure(script: ModuleType) -> None:
    stock = {"a": "passed", "b": "failed", "c": "xfailed", "d": "failed", "e": "passed"}
    dropin = {"a": "failed", "b": "failed", "c": "failed", "d": "passed", "e": "passed", "new": "failed"}
    worse, both, better = script.compare(stock, dropin)
    assert worse == ["a", "new"]
    assert both == ["b", "c"]
    assert better == ["d"]
    assert script.compare(stock, dict(stock)) == ([], ["b", "d"], [])


def test_junit_name_matches_what_outcomes_reads(script: ModuleType) -> None:
    assert script.junit_name("t/integration/test_tasks.py::test_tasks::test_fail") == (
        "t.integration.test_tasks.test_tasks::test_fail"
    )
    assert script.junit_name("t/integration/test_canvas.py::test_chord::test_x[a-b]") == (
        "t.integration.test_canvas.test_chord::test_x[a-b]"
    )
    assert script.junit_name("t/integration/test_mod.py::test_function") == "t.integration.test_mod::test_function"


COLLECTED = [
    "t/integration/test_tasks.py::test_tasks::test_fail",
    "t/integration/test_tasks.py::test_tasks::test_state[STARTED]",
    "t/integration/test_tasks.py::test_tasks::test_state[PROGRESS]",
    "t/integration/test_canvas.py::test_chord::test_simple_chord",
    "t/integration/test_canvas.py::test_chord::test_simple_chord_with_a_delay_in_group_save",
]


def test_missing_tests_are_named_and_parametrized_ids_match_their_cases(script: ModuleType) -> None:
    listed = [
        "t/integration/test_tasks.py::test_tasks::test_fail",
        "t/integration/test_tasks.py::test_tasks::test_state",
        "t/integration/test_tasks.py::test_tasks::test_state[PROGRESS]",
        "t/integration/test_canvas.py::test_chord::test_simple_chord",
        "t/integration/test_canvas.py::test_chord",
        "t/integration/test_tasks.py::test_tasks::test_renamed",
        "t/integration/test_tasks.py::test_tasks::test_fai",
        "t/integration/test_tasks.py::test_tasks::test_state[GONE]",
    ]
    assert script.missing_tests(listed, COLLECTED) == listed[5:]
    assert script.missing_tests(listed, []) == listed


def test_check_subset_wants_every_selected_test_run_by_both_backends(script: ModuleType) -> None:
    listed = [
        "t/integration/test_tasks.py::test_tasks::test_state",
        "t/integration/test_tasks.py::test_tasks::test_fail",
    ]
    ran = {
        "t.integration.test_tasks.test_tasks::test_fail": "failed",
        "t.integration.test_tasks.test_tasks::test_state[STARTED]": "passed",
        "t.integration.test_tasks.test_tasks::test_state[PROGRESS]": "xfailed",
        "t.integration.test_canvas.test_chord::test_simple_chord": "skipped",  # not listed: ignored
    }
    assert script.check_subset(listed, COLLECTED, {"stock": ran, "drop-in": ran}) == []
    short = {k: v for k, v in ran.items() if "PROGRESS" not in k}
    skipped = {**ran, "t.integration.test_tasks.test_tasks::test_fail": "skipped"}
    assert script.check_subset(listed, COLLECTED, {"stock": short, "drop-in": skipped}) == [
        "stock: t/integration/test_tasks.py::test_tasks::test_state[PROGRESS]: not in the report",
        "drop-in: t/integration/test_tasks.py::test_tasks::test_fail: skipped",
    ]
    assert script.check_subset(listed, COLLECTED, {"stock": {}}) == [
        "stock: t/integration/test_tasks.py::test_tasks::test_fail: not in the report",
        "stock: t/integration/test_tasks.py::test_tasks::test_state[STARTED]: not in the report",
        "stock: t/integration/test_tasks.py::test_tasks::test_state[PROGRESS]: not in the report",
    ]


def test_the_subset_is_a_fixed_list_of_test_node_ids(script: ModuleType) -> None:
    assert script.SUBSET, "--subset needs tests"
    assert len(set(script.SUBSET)) == len(script.SUBSET)
    for name in script.SUBSET:
        path, _, test = name.partition("::")
        assert path.startswith("t/integration/test_") and path.endswith(".py") and test, name
        assert not any(name != other and script.selects(other, name) for other in script.SUBSET), name


def test_options_take_out_the_script_s_own_flags(script: ModuleType) -> None:
    assert script.options(["--subset", "-k", "chord", "--sequential"]) == (True, True, ["-k", "chord"])
    assert script.options(["-x"]) == (False, False, ["-x"])


def test_free_port_avoids_the_ports_already_taken(script: ModuleType) -> None:
    first = script.free_port()
    assert all(script.free_port([first]) != first for _ in range(20))


def test_prefixed_names_the_run_on_every_line(script: ModuleType) -> None:
    assert script.prefixed("stock", "..F\nFAILED t::x\n") == "  stock | ..F\n  stock | FAILED t::x\n"
    assert script.prefixed("drop-in", "") == ""


class StubServer:
    port = 6399

    def __init__(self) -> None:
        self.commands: List[str] = []

    def command(self, *words: str) -> str:
        self.commands.append(" ".join(words))
        return "+OK"


def stand_in_run(script: ModuleType, tmp_path: Path, label: str, code: str, capture: bool = True) -> object:
    (tmp_path / "run").mkdir(exist_ok=True)
    run = script.Run(tmp_path, label, StubServer(), "redis://127.0.0.1:6399/0", ["t"], [], capture=capture)
    run.command = [sys.executable, "-c", code]
    return run


def test_concurrent_runs_capture_their_output_and_print_it_prefixed(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "import os, sys, time; start = time.time(); time.sleep(1);"
        " print(os.environ['TEST_BACKEND'], os.environ['REDIS_PORT'], flush=True);"
        " print('to stderr', file=sys.stderr, flush=True); print('span', start, time.time(), flush=True);"
        " sys.exit(int(sys.argv[1]))"
    )
    runs = [stand_in_run(script, tmp_path, label, code) for label in ("stock", "drop-in")]
    runs[0].command.append("0")
    runs[1].command.append("1")
    started = time.monotonic()
    for run in runs:
        run.start()
    for run in runs:
        run.wait(started + 30)
    assert [run.proc.returncode for run in runs] == [0, 1]
    assert runs[0].server.commands == ["FLUSHALL"]
    out = capsys.readouterr().out
    assert "  stock | redis://127.0.0.1:6399/0 6399\n  stock | to stderr\n" in out
    assert "drop-in | to stderr\n" in out
    assert re.search(r"^celery-integration: drop-in: \d+ s, pytest exit status 1$", out, re.MULTILINE)
    log = (tmp_path / "pytest-drop-in.log").read_text().splitlines()
    assert log[:2] == ["redis://127.0.0.1:6399/0 6399", "to stderr"]
    # at the same time: each one's run (a 1 s sleep) started before the other one's ended
    spans = [tuple(map(float, line.split()[-2:])) for line in out.splitlines() if " span " in line]
    assert len(spans) == 2 and max(s[0] for s in spans) < min(s[1] for s in spans)
    assert runs[0].results() == {}  # wrote no report


def test_a_run_past_its_deadline_is_stopped_with_its_whole_session(script: ModuleType, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f" open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    run = stand_in_run(script, tmp_path, "stock", code)
    (tmp_path / "report-stock.xml").write_text(REPORT)  # stale: removed by start()
    run.start()
    assert not (tmp_path / "report-stock.xml").exists()
    deadline = time.monotonic() + 1.5
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the stand-in did not start its child"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    run.wait(time.monotonic() + 0.2)
    assert run.timed_out and run.proc.returncode == -signal.SIGKILL
    assert run.results() == {}
    deadline = time.monotonic() + 5
    while True:  # the child (in pytest's session, not ours) is killed too; reaped by init once orphaned
        try:
            os.kill(child, 0)
            with open(f"/proc/{child}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        assert time.monotonic() < deadline, "the child outlived the stopped run"
        time.sleep(0.05)
