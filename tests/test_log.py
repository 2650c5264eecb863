"""A library that logs like one: silent unless the application configures logging (real processes, real server)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(60)

SCRIPT = """
import logging, sys, uuid
import redisresults
{setup}
prefix = "log-test-" + uuid.uuid4().hex + ":"
backend = redisresults.RedisBackend(sys.argv[1], transport_options={{"global_keyprefix": prefix}})
backend.mark_as_done("done", 1)
backend.mark_as_done("done", 2)                     # refused (a SUCCESS is never replaced): an info event
assert backend.AsyncResult("done").get(timeout=5) == 1
future = backend.AsyncResult("waiting").as_future()
while backend.stats()["subscribed"] == 0 or backend.stats()["settling"]:
    pass
backend.client.publish(prefix + "celery-task-meta-waiting", b"garbage")   # a warning event
while backend.stats()["skipped_messages"] == 0:
    pass
backend.mark_as_done("waiting", 3)
assert future.result(timeout=5) == 3
backend.close()
"""


def run(server: RedisServer, setup: str) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(setup=textwrap.dedent(setup))
    return subprocess.run(
        [sys.executable, "-c", code, server.url], capture_output=True, text=True, timeout=50, check=False
    )


def test_unconfigured_application_sees_nothing(redis_server: RedisServer) -> None:
    done = run(redis_server, "")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_basic_config_debug_sees_every_event_with_fields(redis_server: RedisServer) -> None:
    done = run(redis_server, 'logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")')
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("redisresults")]
    events = {line.split()[2] for line in lines}
    assert {"pubsub_connected", "store_skipped_success_exists", "message_skipped"} <= events, lines


def test_warning_level_hides_debug_and_info(redis_server: RedisServer) -> None:
    done = run(redis_server, 'logging.basicConfig(level=logging.WARNING, format="%(message)s")')
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == ["message_skipped"]


def test_structlog_application_gets_the_fields(redis_server: RedisServer) -> None:
    setup = """
    import structlog
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    ))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    """
    done = run(redis_server, setup)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    skipped = [e for e in events if e["event"] == "message_skipped"]
    assert len(skipped) == 1 and skipped[0]["size"] == len(b"garbage") and skipped[0]["level"] == "warning"
    assert skipped[0]["channel"].startswith("log-test-") and skipped[0]["channel"].endswith(":celery-task-meta-waiting")
    stored = [e for e in events if e["event"] == "store_skipped_success_exists"]
    assert stored and stored[0]["task_id"] == "done"
    assert "garbage" not in done.stdout  # a payload is never logged
