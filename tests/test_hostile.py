"""Hostile input: corrupt documents, poison messages and malicious exception payloads.

Nothing hangs, nothing executes, nothing is imported, the drainer survives, and payloads never reach the logs.
"""

from __future__ import annotations

import json
import pickle
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redisresults import ContentDisallowed, DecodeError, RedisBackend, RedisResultsError, RemoteError
from redisresults._meta import make_meta
from tests.helpers import wait_in_thread, wait_stats_at_least
from tests.logs import capture_logs
from tests.polling import poll

SECRET = "TOPSECRET-payload-7f3a9c"


def new_id() -> str:
    return str(uuid.uuid4())


def key_of(prefix: str, task_id: str) -> str:
    return f"{prefix}celery-task-meta-{task_id}"


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def doc(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


CORRUPT: dict[str, tuple[bytes, type[RedisResultsError]]] = {
    "garbage": (b"\xff\x00\x13garbage " + SECRET.encode() + b"\xfe", DecodeError),
    "truncated-json": (b'{"status": "SUCCESS", "result": "' + SECRET.encode(), DecodeError),
    "list": (b'["SUCCESS", 1]', DecodeError),
    "number": (b"42", DecodeError),
    "string": (b'"SUCCESS"', DecodeError),
    "missing-status": (doc(result=SECRET, task_id="x"), DecodeError),
    "unknown-state": (doc(status="bogus", result=SECRET), DecodeError),
    "status-not-str": (doc(status=["SUCCESS"], result=1), DecodeError),
    "failure-not-exception": (doc(status="FAILURE", result=SECRET), DecodeError),
    "failure-bad-exc-type": (doc(status="FAILURE", result={"exc_type": 7, "exc_message": []}), DecodeError),
    "bad-type-tag": (doc(status="SUCCESS", result={"__type__": "nope", "__value__": SECRET}), DecodeError),
    "bad-traceback": (doc(status="SUCCESS", result=1, traceback={"x": 1}), DecodeError),
    "pickle": (pickle.dumps({"status": "SUCCESS", "result": SECRET}, protocol=4), ContentDisallowed),
    "msgpack": (msgpack.packb({"status": "SUCCESS", "result": SECRET}), DecodeError),
    "deep-100k": (b'{"status": "SUCCESS", "result": ' + nested_list(100_000).encode() + b"}", DecodeError),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_stored_document(backend: RedisBackend, raw: redis.Redis, key_prefix: str, case: str) -> None:
    payload, error = CORRUPT[case]
    tid, bystander = new_id(), new_id()
    key = key_of(key_prefix, tid)
    raw.set(key, payload, ex=60)

    with pytest.raises(error) as info:
        backend.get_task_meta(tid)
    assert key in str(info.value)
    assert SECRET not in str(info.value)

    # A waiter of another id, subscribed before the corrupt read, is unaffected.
    thread, outcome, done = wait_in_thread(backend, bystander, name="bystander")

    with pytest.raises(error) as info:
        backend.AsyncResult(tid).get(timeout=5)
    assert key in str(info.value)
    wait_stats_at_least(backend, pending=1, subscribed=1)  # the bystander waits on the drainer, which lives on
    assert backend.stats()["drainer_alive"] is True, backend.stats()

    backend.mark_as_done(bystander, "fine")
    assert done.wait(10)
    thread.join(5)
    assert outcome == {"value": "fine"}
    stats = backend.stats()
    assert stats["drainer_alive"] is True and stats["failure"] is None


def test_deep_but_reasonable_nesting_decodes(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    tid = new_id()
    raw.set(key_of(key_prefix, tid), b'{"status": "SUCCESS", "result": ' + nested_list(200).encode() + b"}", ex=60)
    value = backend.AsyncResult(tid).get(timeout=5)
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == 200


def test_many_metas_with_one_corrupt_member(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    good, bad = new_id(), new_id()
    backend.mark_as_done(good, 1)
    raw.set(key_of(key_prefix, bad), b"not json", ex=60)
    with pytest.raises(DecodeError, match=bad):
        backend.get_many_metas([good, bad])


def test_corrupt_group_document(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    gid = new_id()
    for payload in (b"\xff\xfe", b'{"result": 5}', b'{"result": [["g", null], "not a list"]}'):
        raw.set(f"{key_prefix}celery-taskset-meta-{gid}", payload, ex=60)
        with pytest.raises(DecodeError):
            backend.restore_group(gid)


# -- poison messages -----------------------------------------------------------------------------------------------

POISON = [
    b"\xff\x00 garbage " + SECRET.encode(),
    b'{"status": "SUCCESS", "result": "' + SECRET.encode(),  # truncated
    doc(status="bogus", result=SECRET),
    doc(status="FAILURE", result=SECRET),
    pickle.dumps({"status": "SUCCESS", "result": SECRET}, protocol=4),
    msgpack.packb({"status": "SUCCESS", "result": SECRET}),
    b"[" * 50_000,
]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    poll(lambda: predicate() or None, timeout=timeout, what=what)


def numsub(raw: redis.Redis, channel: str) -> int:
    return int(dict(raw.pubsub_numsub(channel)).get(channel.encode(), 0))


def test_poison_messages_are_logged_and_skipped(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    waited, held, nobody = new_id(), new_id(), new_id()
    with capture_logs() as logs:
        thread, outcome, done = wait_in_thread(backend, waited, timeout=20, name="poisoned-waiter")
        backend.result_consumer.consume_from(held)  # subscribed, but nobody waits on it
        wait_until(lambda: numsub(raw, key_of(key_prefix, waited)) == 1, "the waiter's subscription")
        wait_until(lambda: numsub(raw, key_of(key_prefix, held)) == 1, "the held subscription")

        skipped_before = backend.stats()["skipped_messages"]
        for payload in POISON:
            raw.publish(key_of(key_prefix, waited), payload)
            raw.publish(key_of(key_prefix, held), payload)
            raw.publish(key_of(key_prefix, nobody), payload)
        expected = skipped_before + 2 * len(POISON)
        wait_until(lambda: backend.stats()["skipped_messages"] >= expected, "the poison to be skipped")
        assert not done.is_set()

        backend.mark_as_done(waited, "the real result")
        assert done.wait(10)
        thread.join(5)
        backend.result_consumer.cancel_for(held)

    assert outcome == {"value": "the real result"}
    skipped = [e for e in logs if e["event"] == "message_skipped"]
    assert len(skipped) == 2 * len(POISON)
    channels = {e["channel"] for e in skipped}
    assert channels == {key_of(key_prefix, waited), key_of(key_prefix, held)}
    for event, payload in zip(skipped[::2], POISON):
        assert event["size"] == len(payload)
        assert event["reason"]
    assert SECRET not in repr(logs)
    assert backend.stats()["drainer_alive"] is True


# -- malicious exception payloads ----------------------------------------------------------------------------------


def exc_doc(exc_type: str, exc_module: str, message: list[Any]) -> bytes:
    return json.dumps(
        make_meta("x", {"exc_type": exc_type, "exc_message": message, "exc_module": exc_module}, "FAILURE")
    ).encode()


def hostile_cases(canary: Path) -> list[tuple[str, str, list[Any]]]:
    return [
        ("system", "os", [f"touch {canary}"]),
        ("Popen", "subprocess", [["touch", str(canary)]]),
        ("eval", "builtins", [f"open({str(canary)!r}, 'w').close()"]),
        ("exec", "builtins", [f"open({str(canary)!r}, 'w').close()"]),
        ("OrderedDict", "collections", [[["a", 1]]]),
        ("Boom", "redisresults_never_imported_module", ["payload"]),
        ("ExitNow", "redisresults_never_imported_module.sub", ["x"]),
        ("SystemExit", "builtins", [1]),
        ("KeyboardInterrupt", "builtins", []),
        ("path.join", "os", ["a", "b"]),
        ("__class__", "os", ["x"]),
        ("a.b.c.d", "collections", []),
    ]


def test_exception_payloads_import_and_execute_nothing(
    backend: RedisBackend, raw: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    # Warm up: one ordinary remote failure, so lazy imports of the normal path are done before measuring.
    warm = new_id()
    raw.set(key_of(key_prefix, warm), exc_doc("Nope", "not_loaded_warmup", ["w"]), ex=60)
    with pytest.raises(RemoteError):
        backend.AsyncResult(warm).get(timeout=5)

    modules_before = set(sys.modules)
    for exc_type, exc_module, message in hostile_cases(canary):
        tid = new_id()
        raw.set(key_of(key_prefix, tid), exc_doc(exc_type, exc_module, message), ex=60)
        result = backend.AsyncResult(tid)
        with pytest.raises(RemoteError) as info:
            result.get(timeout=5)
        exc = info.value
        assert type(exc).exc_type == exc_type and type(exc).exc_module == exc_module
        assert list(exc.args) == message
        returned = backend.AsyncResult(tid).get(timeout=5, propagate=False)
        assert isinstance(returned, RemoteError) and type(returned).exc_type == exc_type
        assert isinstance(result.result, RemoteError)
    assert set(sys.modules) == modules_before
    assert "redisresults_never_imported_module" not in sys.modules
    assert not canary.exists()
    assert backend.stats()["failure"] is None  # stored results are read with one GET: no drainer needed


def test_huge_exception_message(backend: RedisBackend, raw: redis.Redis, key_prefix: str) -> None:
    tid = new_id()
    message = "M" * (10 * 1024 * 1024)
    raw.set(key_of(key_prefix, tid), exc_doc("Huge", "nowhere_loaded", [message]), ex=60)
    with capture_logs() as logs, pytest.raises(RemoteError) as info:
        backend.AsyncResult(tid).get(timeout=10)
    assert info.value.args == (message,)
    assert type(info.value).exc_type == "Huge"
    assert "M" * 1000 not in repr(logs)


def test_loaded_exception_class_with_hostile_arguments(
    backend: RedisBackend, raw: redis.Redis, key_prefix: str
) -> None:
    """A real, loaded exception class whose constructor refuses the stored arguments degrades to RemoteError."""
    tid = new_id()
    raw.set(key_of(key_prefix, tid), exc_doc("UnicodeDecodeError", "builtins", ["only one arg"]), ex=60)
    with pytest.raises(RemoteError) as info:
        backend.AsyncResult(tid).get(timeout=5)
    assert type(info.value).exc_type == "UnicodeDecodeError"


# -- fuzz: the backend's document decoder --------------------------------------------------------------------------

_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_STATES = st.sampled_from(["SUCCESS", "FAILURE", "REVOKED", "RETRY", "STARTED", "PENDING", "PROGRESS", "bogus", ""])
_META = st.fixed_dictionaries(
    {"status": _STATES | _JSON},
    optional={
        "result": _JSON
        | st.fixed_dictionaries(
            {"exc_type": _JSON | st.text(max_size=30)}, optional={"exc_message": _JSON, "exc_module": _JSON}
        )
        | st.fixed_dictionaries({"__type__": st.sampled_from(["datetime", "uuid", "bytes", "x"]), "__value__": _JSON}),
        "traceback": _JSON,
        "children": _JSON,
        "date_done": _JSON,
        "task_id": _JSON,
    },
)


@pytest.fixture(scope="module")
def offline_backend() -> Iterator[RedisBackend]:
    """Decoding needs no server: this backend never connects."""
    with RedisBackend("redis://127.0.0.1:1/0") as b:
        yield b


def _check_decode(backend: RedisBackend, data: bytes) -> None:
    try:
        meta = backend._decode_stored(b"celery-task-meta-fuzz", data)
    except RedisResultsError:
        return
    assert isinstance(meta, dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512))
def test_fuzz_decode_stored_bytes(offline_backend: RedisBackend, data: bytes) -> None:
    _check_decode(offline_backend, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=_META)
def test_fuzz_decode_stored_documents(offline_backend: RedisBackend, meta: dict[str, Any]) -> None:
    data = json.dumps(meta).encode()
    _check_decode(offline_backend, data)
    try:
        decoded = offline_backend._decode_stored(b"celery-task-meta-fuzz", data)
    except RedisResultsError:
        return
    # Whatever decodes can be turned into a value or an exception without anything but a redisresults error.
    from redisresults.result import _value

    try:
        _value(decoded, offline_backend.AsyncResult("fuzz"), propagate=False)
    except RedisResultsError:
        pass
