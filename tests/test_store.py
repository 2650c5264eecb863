"""Storing against a real server: round trips, the exact wire format, one atomic write, size limits, retries."""

from __future__ import annotations

import json
import pickle
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest
import redis

import redisresults
from redisresults import (
    BackendStoreError,
    ConfigError,
    ContentDisallowed,
    EncodeError,
    RedisBackend,
    RemoteError,
)
from redisresults._meta import make_meta
from redisresults._serialization import dumps, get_serializer
from tests.logs import capture_logs
from tests.servers import RedisServer

MARKER = b"redisresults-test-marker"
FIXED_DONE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)  # same isoformat length as now()


def new_id() -> str:
    return str(uuid.uuid4())


def key_of(prefix: str, task_id: str) -> bytes:
    return f"{prefix}celery-task-meta-{task_id}".encode()


class Subscriber:
    """A raw subscriber on one channel; ``drain()`` returns what arrived before a marker it publishes itself."""

    def __init__(self, server: RedisServer, channel: bytes) -> None:
        self.channel = channel
        self.client = server.client()
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(channel)
        confirm = self.pubsub.get_message(timeout=5)
        assert confirm is not None and confirm["type"] == "subscribe"

    def drain(self, timeout: float = 5.0) -> list[bytes]:
        self.client.publish(self.channel, MARKER)
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=deadline - time.monotonic())
            if message is None or message["type"] != "message":
                continue
            if message["data"] == MARKER:
                return got
            got.append(message["data"])
        raise AssertionError("marker never arrived")

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def subscriber(redis_server: RedisServer) -> Iterator[Callable[[bytes], Subscriber]]:
    made: list[Subscriber] = []

    def factory(channel: bytes) -> Subscriber:
        sub = Subscriber(redis_server, channel)
        made.append(sub)
        return sub

    yield factory
    for sub in made:
        sub.close()


# -- round trips ---------------------------------------------------------------------------------------------------

VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**70,
    1.5,
    "",
    "text with \u00e9\u20ac\U0001f600 and \x00",
    [1, "a", None],
    {"nested": {"list": [1, {"deep": [True, None, 2.5]}]}, "empty": {}},
    datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
    datetime(2024, 1, 2, 3, 4, 5),
    date(2024, 2, 29),
    dtime(23, 59, 58, 1),
    Decimal("3.14159265358979323846264338327950288"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"utf-8 bytes \xc3\xa9",
    b"\x00\xff\xfe binary",
    {"mixed": [Decimal("1.1"), uuid.UUID(int=7), b"\x80", date(2000, 1, 1)]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_success_round_trip_of_every_value_type(backend: RedisBackend, value: Any) -> None:
    tid = new_id()
    backend.store_result(tid, value, "SUCCESS")
    assert backend.get_task_meta(tid)["result"] == value
    assert backend.AsyncResult(tid).get(timeout=5) == value


def test_tuple_comes_back_as_list(backend: RedisBackend) -> None:
    tid = new_id()
    backend.mark_as_done(tid, (1, (2, 3)))
    assert backend.AsyncResult(tid).get(timeout=5) == [1, [2, 3]]


def test_every_state_round_trips(backend: RedisBackend) -> None:
    started, done, failed, retry, revoked, custom = (new_id() for _ in range(6))
    backend.mark_as_started(started, pid=42, hostname="w1")
    backend.mark_as_done(done, {"ok": 1})
    backend.mark_as_failure(failed, ValueError("bad", 3), traceback="Traceback (most recent call last): ...")
    backend.mark_as_retry(retry, OSError("again"))
    backend.mark_as_revoked(revoked, reason="terminated")
    backend.store_result(custom, {"progress": 50}, "PROGRESS")

    meta = backend.get_task_meta(started)
    assert meta["status"] == "STARTED" and meta["result"] == {"pid": 42, "hostname": "w1"}
    assert meta["date_done"] is None
    assert backend.AsyncResult(started).ready() is False

    assert backend.AsyncResult(done).get(timeout=5) == {"ok": 1}
    assert backend.AsyncResult(done).successful()

    result = backend.AsyncResult(failed)
    with pytest.raises(ValueError) as info:
        result.get(timeout=5)
    assert info.value.args == ("bad", 3)
    assert result.failed() and result.traceback == "Traceback (most recent call last): ..."
    assert isinstance(result.get(timeout=5, propagate=False), ValueError)

    meta = backend.get_task_meta(retry)
    assert meta["status"] == "RETRY"
    assert meta["result"] == {"exc_type": "OSError", "exc_message": ["again"], "exc_module": "builtins"}
    assert isinstance(backend.AsyncResult(retry).result, OSError)

    with pytest.raises(Exception) as revoked_info:
        backend.AsyncResult(revoked).get(timeout=5)
    assert type(revoked_info.value).__name__ == "TaskRevokedError"
    assert revoked_info.value.args == ("terminated",)
    if isinstance(revoked_info.value, RemoteError):  # celery not imported in this process
        assert type(revoked_info.value).exc_module == "celery.exceptions"

    custom_meta = backend.get_task_meta(custom)
    assert custom_meta["status"] == "PROGRESS" and custom_meta["result"] == {"progress": 50}
    assert backend.AsyncResult(custom).state == "PROGRESS"


def test_msgpack_round_trip(redis_server: RedisServer, key_prefix: str, raw: redis.Redis) -> None:
    options: dict[str, Any] = {"serializer": "msgpack", "accept": ["msgpack"]}
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}, **options) as b:
        tid = new_id()
        b.store_result(tid, {"n": [1, 2.5, "x", None, True], "b": b"\x00\x01"}, "SUCCESS")
        assert b.AsyncResult(tid).get(timeout=5) == {"n": [1, 2.5, "x", None, True], "b": b"\x00\x01"}
        stored = raw.get(key_of(key_prefix, tid))
        assert stored is not None and not stored.startswith(b"{")  # really msgpack, not json


def test_pickle_refused_unless_accepted(redis_server: RedisServer, key_prefix: str, raw: redis.Redis) -> None:
    with pytest.raises(ConfigError, match="pickle"):
        RedisBackend(redis_server.url, serializer="pickle")
    tid = new_id()
    meta = make_meta(tid, {"v": 1}, "SUCCESS")
    raw.set(key_of(key_prefix, tid), pickle.dumps(meta, protocol=4))
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}) as b:
        with pytest.raises(ContentDisallowed, match="pickle"):
            b.get_task_meta(tid)
    opts: dict[str, Any] = {"serializer": "pickle", "accept": ["pickle", "json"]}
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}, **opts) as b:
        assert b.get_task_meta(tid)["result"] == {"v": 1}
        other = new_id()
        b.store_result(other, {1, 2}, "SUCCESS")  # a set is fine for pickle
        assert b.AsyncResult(other).get(timeout=5) == {1, 2}


def test_empty_task_id_is_a_value_error(backend: RedisBackend) -> None:
    with pytest.raises(ValueError):
        backend.store_result("", 1, "SUCCESS")
    with pytest.raises(ValueError):
        backend.get_task_meta("")


@pytest.mark.parametrize(
    ("value", "type_name"), [({1, 2}, "set"), (object(), "object"), ({"k": [frozenset()]}, "frozenset")]
)
def test_unserializable_result_is_encode_error_and_nothing_stored(
    backend: RedisBackend, raw: redis.Redis, key_prefix: str, value: Any, type_name: str
) -> None:
    tid = new_id()
    with pytest.raises(EncodeError, match=type_name):
        backend.store_result(tid, value, "SUCCESS")
    assert raw.exists(key_of(key_prefix, tid)) == 0


# -- wire format ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "separator"), [("", "_"), (":", ""), ("_", ""), ("-", ""), (".", "")])
def test_key_and_global_keyprefix_rule(
    redis_server: RedisServer, raw: redis.Redis, key_prefix: str, suffix: str, separator: str
) -> None:
    prefix = key_prefix.rstrip(":") + suffix
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": prefix}) as b:
        tid = new_id()
        b.mark_as_done(tid, 1)
    expected = f"{prefix}{separator}celery-task-meta-{tid}".encode()
    assert raw.exists(expected) == 1
    raw.delete(expected)


def test_no_prefix_writes_the_plain_celery_key(redis_server: RedisServer, raw: redis.Redis) -> None:
    tid = f"noprefix-{new_id()}"
    with RedisBackend(redis_server.url) as b:
        b.mark_as_done(tid, 1)
    try:
        assert raw.exists(f"celery-task-meta-{tid}") == 1
    finally:
        raw.delete(f"celery-task-meta-{tid}")


def test_document_fields_order_and_date_done(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    tid = new_id()
    before = datetime.now(timezone.utc)
    backend.mark_as_done(tid, {"x": 1})
    stored = raw.get(key_of(key_prefix, tid))
    assert stored is not None
    doc = json.loads(stored)
    assert list(doc) == ["status", "result", "traceback", "children", "date_done", "task_id"]
    assert doc["status"] == "SUCCESS" and doc["result"] == {"x": 1} and doc["task_id"] == tid
    assert doc["traceback"] is None and doc["children"] is None
    done = datetime.fromisoformat(doc["date_done"])
    assert done.utcoffset() is not None  # ISO-8601 with an offset, as Celery writes
    assert before - timedelta(seconds=1) <= done <= datetime.now(timezone.utc) + timedelta(seconds=1)
    # Celery's json (kombu) is ASCII-only with ", " and ": " separators.
    assert stored == json.dumps(doc).encode("ascii")


def test_exception_document_format(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    tid = new_id()
    backend.mark_as_failure(tid, KeyError("missing"))
    doc = json.loads(raw.get(key_of(key_prefix, tid)) or b"")
    assert doc["status"] == "FAILURE"
    assert doc["result"] == {"exc_type": "KeyError", "exc_message": ["missing"], "exc_module": "builtins"}
    assert list(doc["result"]) == ["exc_type", "exc_message", "exc_module"]


def test_ttl_default_one_day(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    tid = new_id()
    backend.mark_as_done(tid, 1)
    assert 86390 <= raw.ttl(key_of(key_prefix, tid)) <= 86400


@pytest.mark.parametrize(("expires", "low", "high"), [(None, -1, -1), (30, 25, 30), (timedelta(minutes=2), 115, 120)])
def test_ttl_follows_expires(
    redis_server: RedisServer, raw: redis.Redis, key_prefix: str, expires: Any, low: int, high: int
) -> None:
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}, expires=expires) as b:
        tid = new_id()
        b.mark_as_done(tid, 1)
    assert low <= raw.ttl(key_of(key_prefix, tid)) <= high


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name[len("cmdstat_") :]: int(value["calls"]) for name, value in stats.items()}


def test_one_atomic_script_call_per_store(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    tid = new_id()
    sub = Subscriber(server, key_of("", tid))
    with RedisBackend(server.url) as b, server.client() as stats_client:
        b.mark_as_done("warm-up", 0)  # connection setup and script loading happen here
        before = _command_calls(stats_client)
        b.mark_as_done(tid, {"v": 1})
        after = _command_calls(stats_client)
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        delta = {name: n for name, n in delta.items() if n and name != "info"}
        assert delta == {"evalsha": 1, "getrange": 1, "set": 1, "publish": 1}
        published = sub.drain()
        sub.close()
        assert published == [server.cli("GET", f"celery-task-meta-{tid}").encode()]


def test_stored_success_is_never_overwritten(
    backend: RedisBackend, raw: redis.Redis, key_prefix: str, subscriber: Callable[[bytes], Subscriber]
) -> None:
    tid = new_id()
    key = key_of(key_prefix, tid)
    backend.mark_as_done(tid, "first")
    stored = raw.get(key)
    sub = subscriber(key)
    with capture_logs() as logs:
        backend.mark_as_failure(tid, RuntimeError("late"))
        backend.mark_as_revoked(tid)
        backend.store_result(tid, "second", "SUCCESS")
    assert raw.get(key) == stored
    assert sub.drain() == []
    assert [e["event"] for e in logs].count("store_skipped_success_exists") == 3
    assert backend.AsyncResult(tid).get(timeout=5) == "first"


def test_non_success_states_are_overwritten(backend: RedisBackend) -> None:
    tid = new_id()
    backend.mark_as_started(tid)
    backend.mark_as_retry(tid, OSError("x"))
    backend.mark_as_failure(tid, OSError("y"))
    backend.mark_as_done(tid, "finally")
    assert backend.AsyncResult(tid).get(timeout=5) == "finally"


# -- size limit ----------------------------------------------------------------------------------------------------

LIMIT = 4096
JSON = get_serializer("json")


def encoded_size(tid: str, result: Any, state: str, traceback: str | None = None) -> int:
    return len(dumps(make_meta(tid, result, state, traceback, date_done=FIXED_DONE), JSON))


def padded_to(limit: int, size_of: Callable[[int], int]) -> int:
    """The padding length n with size_of(n) == limit (size_of grows by one byte per unit of padding)."""
    n = limit - size_of(0)
    assert size_of(n) == limit and size_of(n + 1) == limit + 1
    return n


BUILDERS: dict[str, Callable[[int], tuple[Any, str | None]]] = {
    "str": lambda n: ("a" * n, None),
    "bytes": lambda n: (b"b" * n, None),
    "multibyte": lambda n: ("\u00e9\u20ac\U0001f600" * 40 + "a" * n, None),
    "traceback": lambda n: ({"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}, "T" * n),
}


@pytest.fixture
def small_backend(redis_server: RedisServer, key_prefix: str) -> Iterator[RedisBackend]:
    opts: dict[str, Any] = {"transport_options": {"global_keyprefix": key_prefix}, "max_value_size": LIMIT}
    with RedisBackend(redis_server.url, **opts) as b:
        yield b


@pytest.mark.parametrize("kind", ["str", "bytes", "multibyte", "traceback"])
def test_size_limit_boundary_is_exact(
    small_backend: RedisBackend,
    raw: redis.Redis,
    key_prefix: str,
    subscriber: Callable[[bytes], Subscriber],
    kind: str,
) -> None:
    build = BUILDERS[kind]
    state = "FAILURE" if kind == "traceback" else "SUCCESS"
    fits, over = new_id(), new_id()

    def size(tid: str) -> Callable[[int], int]:
        return lambda n: encoded_size(tid, *_with_state(build(n), state))

    n = padded_to(LIMIT, size(fits))
    result, traceback = build(n)
    small_backend.store_result(fits, result, state, traceback)
    assert raw.strlen(key_of(key_prefix, fits)) == LIMIT

    n_over = padded_to(LIMIT, size(over)) + 1
    result, traceback = build(n_over)
    sub = subscriber(key_of(key_prefix, over))
    with pytest.raises(BackendStoreError) as info:
        small_backend.store_result(over, result, state, traceback)
    message = str(info.value)
    assert "value too large for Redis backend" in message
    assert str(LIMIT + 1) in message and str(LIMIT) in message
    assert info.value.task_id == over and info.value.state == state
    assert raw.exists(key_of(key_prefix, over)) == 0
    assert sub.drain() == []
    # the connection is still fine
    small_backend.mark_as_done(over, "small")
    assert small_backend.AsyncResult(over).get(timeout=5) == "small"


def _with_state(built: tuple[Any, str | None], state: str) -> tuple[Any, str, str | None]:
    return built[0], state, built[1]


def test_encoded_size_counts_bytes_not_characters(small_backend: RedisBackend) -> None:
    """1,000 characters of 6-byte JSON escapes are 6,000 bytes: over a 4,096-byte limit."""
    with pytest.raises(BackendStoreError, match="value too large for Redis backend"):
        small_backend.store_result(new_id(), "\u00e9" * 1000, "SUCCESS")


@pytest.mark.parametrize("value", ["a" * (10 * 1024 * 1024), b"b" * (10 * 1024 * 1024)], ids=["str", "bytes"])
def test_oversize_raw_value_rejected_before_serializing(
    small_backend: RedisBackend, raw: redis.Redis, key_prefix: str, value: Any
) -> None:
    tid = new_id()
    start = time.perf_counter()
    with pytest.raises(BackendStoreError) as info:
        small_backend.store_result(tid, value, "SUCCESS")
    assert time.perf_counter() - start < 0.5  # no 10 MB encoding, no round trip
    assert "raw result" in str(info.value) and str(len(value)) in str(info.value)
    assert raw.exists(key_of(key_prefix, tid)) == 0


def test_limit_plus_one_raw_str_rejected_early(small_backend: RedisBackend) -> None:
    with pytest.raises(BackendStoreError, match="raw result is 4097 bytes"):
        small_backend.store_result(new_id(), "x" * (LIMIT + 1), "SUCCESS")


def test_server_bulk_limit_is_a_clear_fast_error(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server(extra_config=["proto-max-bulk-len 1mb"])
    with RedisBackend(server.url) as b:
        start = time.monotonic()
        with capture_logs() as logs, pytest.raises(BackendStoreError) as info:
            b.store_result("big", "x" * (2 * 1024 * 1024), "SUCCESS")
        assert time.monotonic() - start < 2.0
        assert "value too large for Redis backend" in str(info.value)
        assert "proto-max-bulk-len" in str(info.value) and str(1024 * 1024) in str(info.value)
        assert not [e for e in logs if e["event"] == "redis_retry"]
        assert server.cli("EXISTS", "celery-task-meta-big") == 0
        b.mark_as_done("small", 1)
        assert b.AsyncResult("small").get(timeout=5) == 1


# -- retries -------------------------------------------------------------------------------------------------------


def test_store_during_server_restart_is_retried(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    policy = {"max_retries": 100, "interval_start": 0.05, "interval_step": 0.05, "interval_max": 0.2, "timeout": 20}
    with RedisBackend(server.url, transport_options={"retry_policy": policy}, socket_timeout=2) as b:
        b.mark_as_done("before", 1)
        server.stop()
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def store() -> None:
            try:
                b.mark_as_done("during", {"survived": True})
            except BaseException as error:  # noqa: BLE001 - reported by the test thread
                outcome["error"] = error
            finally:
                done.set()

        with capture_logs() as logs:
            thread = threading.Thread(target=store, name="store-during-restart")
            thread.start()
            deadline = time.monotonic() + 10
            while not any(e["event"] == "redis_retry" for e in list(logs)):
                assert time.monotonic() < deadline, "the store was never retried"
                time.sleep(0.02)
            server.start()
            server.wait_ready()
            assert done.wait(20)
            thread.join(5)
        assert "error" not in outcome, outcome
        assert b.AsyncResult("during").get(timeout=5) == {"survived": True}


def test_auth_error_is_not_retried(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    server.cli("CONFIG", "SET", "requirepass", "right-password")  # after start: the harness probes without auth
    url = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
    with RedisBackend(url) as b, capture_logs() as logs:
        start = time.monotonic()
        with pytest.raises((redis.AuthenticationError, redisresults.RedisResultsError)) as info:
            b.mark_as_done(new_id(), 1)
        assert time.monotonic() - start < 1.0
        assert not [e for e in logs if e["event"] == "redis_retry"]
        assert not isinstance(info.value, redisresults.ConnectionUnavailable)
