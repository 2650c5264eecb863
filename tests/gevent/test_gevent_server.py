"""examples/gevent_server.py as a real server: 1,000 concurrent requests waiting on results stored by
another process, answered correctly over one Pub/Sub connection and within ``--max-connections``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any, Iterator, NamedTuple, Tuple

import gevent
import gevent.pool
import psutil
import pytest

from tests.gevent.helpers import ROOT, clients_named, run_python, wait_subscribed, wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.gevent

MAX_CONNECTIONS = 6  # the pool's cap; the drainer has its own two connections (Pub/Sub, key reads) on top
REQUESTS = 1000


class WebServer(NamedTuple):
    host: str
    port: int
    client_name: str
    pid: int


@pytest.fixture(scope="module")
def web_server(redis_server: RedisServer) -> Iterator[WebServer]:
    client_name = f"gevent-web-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "gevent_server.py"),
            "--url",
            redis_server.url,
            "--port",
            "0",
            "--max-connections",
            str(MAX_CONNECTIONS),
            "--client-name",
            client_name,
        ],
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    readers: list[gevent.Greenlet] = []
    try:
        with gevent.Timeout(30, AssertionError("the example server did not start")):
            line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("listening on http://"), line + proc.stderr.read()  # type: ignore[union-attr]
        host, port = line.strip().rsplit("/", 1)[-1].rsplit(":", 1)
        # Keep reading its output (its log lines) so a full pipe never blocks the server.
        readers = [gevent.spawn(stream.read) for stream in (proc.stdout, proc.stderr)]
        yield WebServer(host, int(port), client_name, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        gevent.joinall(readers, timeout=10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]


def request(server: WebServer, path: str, timeout: float = 60) -> Tuple[int, Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def redis_connections(server: WebServer, redis_port: int) -> int:
    """TCP connections from the server process to Redis, counted by the OS (names aside)."""
    return sum(
        1
        for conn in psutil.Process(server.pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == redis_port and conn.status == psutil.CONN_ESTABLISHED
    )


def store_elsewhere(url: str, ids: list[str]) -> None:
    """Store each id's result from another (plain, threaded) process."""
    proc = run_python(
        textwrap.dedent(
            """
            import sys, redisresults
            with redisresults.backend_from_url(sys.argv[1], concurrency="thread") as backend:
                for task_id in sys.argv[2:]:
                    backend.mark_as_done(task_id, {"echo": task_id})
            """
        ),
        url,
        *ids,
    )
    assert proc.returncode == 0, proc.stderr


def test_thousand_concurrent_requests(web_server: WebServer, redis_server: RedisServer) -> None:
    ids = [f"web-{uuid.uuid4().hex}" for _ in range(REQUESTS)]
    pool = gevent.pool.Pool(REQUESTS)
    replies = [pool.spawn(request, web_server, f"/result/{task_id}?timeout=60") for task_id in ids]
    admin = redis_server.client()
    try:

        def all_waiting() -> Any:
            stats = request(web_server, "/stats")[1]
            return stats if stats["pending"] == REQUESTS else None

        stats = wait_until(all_waiting, 30, "every request waiting in the server")
        assert stats["mode"] == "gevent"
        subscribers = wait_subscribed(admin, web_server.client_name, REQUESTS)
        assert len(subscribers) == 1
        assert len(clients_named(admin, web_server.client_name)) <= MAX_CONNECTIONS + 2
        assert redis_connections(web_server, redis_server.port) <= MAX_CONNECTIONS + 2

        storer = gevent.spawn(store_elsewhere, redis_server.url, ids)
        peak = 0
        while not storer.ready():  # observe the server's connections while results pour in
            peak = max(peak, redis_connections(web_server, redis_server.port))
            assert len(clients_named(admin, web_server.client_name, "pubsub")) <= 1
            gevent.sleep(0.05)
        storer.get()
        pool.join(timeout=60, raise_error=True)
        assert peak <= MAX_CONNECTIONS + 2
        for task_id, reply in zip(ids, replies):
            assert reply.value == (200, {"task_id": task_id, "result": {"echo": task_id}})
        assert len(clients_named(admin, web_server.client_name)) <= MAX_CONNECTIONS + 2
        assert redis_connections(web_server, redis_server.port) <= MAX_CONNECTIONS + 2
        stats = request(web_server, "/stats")[1]
        assert stats["pending"] == 0 and stats["drainer_alive"] and stats["reconnects"] == 0
    finally:
        admin.close()


def test_timeout_is_504(web_server: WebServer) -> None:
    status, body = request(web_server, f"/result/never-{uuid.uuid4().hex}?timeout=0.2")
    assert status == 504 and body["error"] == "ResultTimeout"


def test_failed_task_is_500_with_error_type(web_server: WebServer, redis_server: RedisServer) -> None:
    task_id = f"fail-{uuid.uuid4().hex}"
    proc = run_python(
        "import sys, redisresults\n"
        "with redisresults.backend_from_url(sys.argv[1], concurrency='thread') as b:\n"
        "    b.mark_as_failure(sys.argv[2], KeyError('missing'))\n",
        redis_server.url,
        task_id,
    )
    assert proc.returncode == 0, proc.stderr
    status, body = request(web_server, f"/result/{task_id}?timeout=5")
    assert status == 500
    assert body["task_id"] == task_id and body["state"] == "FAILURE" and body["error"] == "KeyError"


def test_bad_requests(web_server: WebServer) -> None:
    assert request(web_server, "/result/x?timeout=soon")[0] == 400
    assert request(web_server, "/nothing-here")[0] == 404
