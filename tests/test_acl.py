"""The minimal Redis ACL of docs/ACL.md is enough for everything, and nothing outside the prefix is reachable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from redis.exceptions import NoPermissionError

import redisresults
from redisresults import BackendStoreError, RedisBackend
from tests.helpers import wait_in_thread
from tests.logs import capture_logs
from tests.servers import RedisServer

PREFIX = "myapp:"
PASSWORD = "acl-test-password"
# Exactly the list in docs/ACL.md.
COMMANDS = [
    "get",
    "mget",
    "set",
    "del",
    "getrange",
    "publish",
    "subscribe",
    "unsubscribe",
    "ping",
    "evalsha",
    "script|load",
]
OPTIONAL = ["select", "client|setname", "config|get"]


def set_user(server: RedisServer, name: str, commands: list[str], patterns: tuple[str, ...] = ()) -> None:
    patterns = patterns or (f"~{PREFIX}*", f"&{PREFIX}*")
    server.cli(
        "ACL",
        "SETUSER",
        name,
        "reset",
        "on",
        f">{PASSWORD}",
        *patterns,
        "-@all",
        *(f"+{command}" for command in commands),
    )


def url_for(server: RedisServer, user: str, db: int = 0) -> str:
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/{db}"


@pytest.fixture
def server(fresh_server: Callable[..., RedisServer]) -> RedisServer:
    """A private server (1 MB bulk limit) with the minimal user ``app`` and one that may also SELECT and name."""
    srv = fresh_server(extra_config=["proto-max-bulk-len 1mb"])
    set_user(srv, "app", COMMANDS)
    set_user(srv, "app_named", [*COMMANDS, "select", "client|setname"])
    return srv


@pytest.fixture
def backend(server: RedisServer) -> Iterator[RedisBackend]:
    with RedisBackend(url_for(server, "app"), transport_options={"global_keyprefix": PREFIX}) as b:
        yield b


def acl_denials(server: RedisServer) -> list[dict[str, Any]]:
    """ACL LOG entries as dicts (redis-py < 5.1 returns each entry as a flat list of pairs)."""

    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    entries = []
    for entry in server.cli("ACL", "LOG"):
        if isinstance(entry, list):
            entry = dict(zip(entry[::2], entry[1::2]))
        entries.append({text(key): text(value) for key, value in entry.items()})
    return entries


def exercise(backend: RedisBackend, server: RedisServer) -> None:
    """Store, read, wait, forget, groups: every operation the library has."""
    done_id, fail_id, waited = (str(uuid.uuid4()) for _ in range(3))
    backend.mark_as_started(done_id)
    backend.mark_as_done(done_id, {"v": 1})
    backend.mark_as_done(done_id, "ignored: a SUCCESS is kept")
    backend.mark_as_failure(fail_id, ValueError("x"))
    assert backend.get_task_meta(done_id)["result"] == {"v": 1}
    assert [m["status"] for m in backend.get_many_metas([done_id, fail_id, "missing"])] == [
        "SUCCESS",
        "FAILURE",
        "PENDING",
    ]

    thread, outcome, finished = wait_in_thread(backend, waited)
    deadline = time.monotonic() + 5
    while backend.stats()["subscribed"] < 1:  # observe the subscription before storing
        assert time.monotonic() < deadline
        time.sleep(0.01)
    backend.mark_as_done(waited, "woken")
    assert finished.wait(10)
    thread.join(5)
    assert outcome == {"value": "woken"}

    gid = str(uuid.uuid4())
    backend.save_group(gid, [done_id, waited])
    group = backend.restore_group(gid)
    assert group is not None and group.join(timeout=5) == [{"v": 1}, "woken"]
    assert backend.ResultSet([done_id, fail_id]).ready()
    backend.delete_group(gid)
    assert backend.restore_group(gid) is None

    backend.forget(done_id)
    assert backend.AsyncResult(done_id).state == "PENDING"
    assert backend.stats()["drainer_alive"] is True and backend.stats()["failure"] is None


def test_minimal_acl_is_enough(backend: RedisBackend, server: RedisServer) -> None:
    exercise(backend, server)
    assert acl_denials(server) == []


def test_without_a_prefix(server: RedisServer) -> None:
    plain = ("~celery-task-meta-*", "~celery-taskset-meta-*", "&celery-task-meta-*", "&celery-taskset-meta-*")
    set_user(server, "plain", COMMANDS, plain)
    with RedisBackend(url_for(server, "plain")) as backend:
        exercise(backend, server)
    assert acl_denials(server) == []


def test_select_and_client_name_need_their_commands(server: RedisServer) -> None:
    options: dict[str, Any] = {"transport_options": {"global_keyprefix": PREFIX}, "client_name": "results"}
    with RedisBackend(url_for(server, "app_named", db=1), **options) as backend:
        exercise(backend, server)
    assert acl_denials(server) == []
    with RedisBackend(url_for(server, "app", db=1), **options) as backend:
        with pytest.raises(NoPermissionError):
            backend.mark_as_done("t", 1)


def test_keys_outside_the_prefix_are_denied_fast(server: RedisServer) -> None:
    with RedisBackend(url_for(server, "app"), transport_options={"global_keyprefix": "other:"}) as backend:
        start = time.monotonic()
        with capture_logs() as logs:
            # Every public call maps the refusal at one boundary: a PermissionDenied that is also the
            # NoPermissionError callers already catch, with redis-py's error as the cause.
            for call in (lambda: backend.mark_as_done("t", 1), lambda: backend.get_task_meta("t"),
                         lambda: backend.forget("t"), lambda: backend.AsyncResult("t").get(timeout=5)):
                with pytest.raises(redisresults.PermissionDenied) as caught:
                    call()
                assert isinstance(caught.value, NoPermissionError)
                assert isinstance(caught.value.__cause__, NoPermissionError)
                assert not isinstance(caught.value.__cause__, redisresults.RedisResultsError)
            # The drainer's SUBSCRIBE is refused: the waiter fails at once with the server's reason
            # instead of hanging, and the drainer lives on to serve (and refuse) the next wait too.
            for task_id in ("t", "t2"):
                with pytest.raises(redisresults.PermissionDenied):
                    backend.AsyncResult(task_id).as_future().result(timeout=5)
                assert backend.stats()["drainer_alive"] is True
            assert backend.stats()["pending"] == 0
        assert time.monotonic() - start < 3
        assert not [e for e in logs if e["event"] == "redis_retry"]
    with RedisBackend(url_for(server, "app")) as backend:  # no prefix at all: plain celery-task-meta-* keys
        with pytest.raises(NoPermissionError):
            backend.mark_as_done("t", 1)
    reasons = {(entry["reason"], entry["object"]) for entry in acl_denials(server)}
    assert ("key", "other:celery-task-meta-t") in reasons
    assert ("channel", "other:celery-task-meta-t") in reasons


def test_large_values_without_config_get(backend: RedisBackend, server: RedisServer) -> None:
    """CONFIG GET is optional: when denied, a value over the server's bulk limit is still a clear, fast error."""
    with capture_logs() as logs:
        start = time.monotonic()
        with pytest.raises(BackendStoreError, match="value too large for Redis backend"):
            backend.mark_as_done("big", "x" * (2 * 1024 * 1024))
        assert time.monotonic() - start < 2
    assert not [e for e in logs if e["event"] == "redis_retry"]
    assert server.cli("EXISTS", f"{PREFIX}celery-task-meta-big") == 0
    backend.mark_as_done("medium", "y" * (900 * 1024))  # under the limit: fine
    assert len(backend.AsyncResult("medium").get(timeout=5)) == 900 * 1024
    assert {entry["object"] for entry in acl_denials(server)} <= {"config|get"}


def test_large_values_with_config_denied_under_default_limit(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    set_user(server, "app", COMMANDS)
    with RedisBackend(url_for(server, "app"), transport_options={"global_keyprefix": PREFIX}) as backend:
        backend.mark_as_done("two-mib", "z" * (2 * 1024 * 1024))
        assert len(backend.AsyncResult("two-mib").get(timeout=5)) == 2 * 1024 * 1024


def test_optional_commands_do_not_hurt(server: RedisServer) -> None:
    set_user(server, "app_all", [*COMMANDS, *OPTIONAL])
    options: dict[str, Any] = {"transport_options": {"global_keyprefix": PREFIX}}
    with RedisBackend(url_for(server, "app_all"), **options) as backend:
        with pytest.raises(BackendStoreError, match="proto-max-bulk-len"):  # CONFIG GET allowed: the limit is named
            backend.mark_as_done("big", "x" * (2 * 1024 * 1024))
        exercise(backend, server)
