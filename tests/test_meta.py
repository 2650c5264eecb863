"""Result documents: byte-identical to Celery's, validated on the way in, exceptions rebuilt without running code."""

from __future__ import annotations

import collections
import datetime as dt
import inspect
import pickle
import sys
import time
import types
from typing import Any, Iterator

import pytest
from celery import Celery
from celery.app.task import Context
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult, GroupResult
from hypothesis import given, settings
from hypothesis import strategies as st

from redisresults import _exceptions
from redisresults._exceptions import ConfigError, DecodeError, EncodeError, RemoteError, remote_error_class
from redisresults._meta import (
    EXCEPTION_STATES,
    FAILURE,
    PENDING,
    PROPAGATE_STATES,
    READY_STATES,
    RECEIVED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    carries_exception,
    encode_exception,
    is_valid_state,
    make_group_meta,
    make_meta,
    parse_date_done,
    parse_group_meta,
    pending_meta,
    rebuild_exception,
    validate_meta,
)
from redisresults._serialization import dumps, get_serializer, loads
from tests.logs import capture_logs

JSON = get_serializer("json")
WHEN = dt.datetime(2026, 11, 23, 22, 42, 18, 509094, tzinfo=dt.timezone.utc)
SECRET = "S3CRET-PAYLOAD-TOKEN"
hypothesis_settings = settings(deadline=None, database=None, max_examples=150)


class Outer:
    class Inner(Exception):
        pass


class NeedsTwo(Exception):
    def __init__(self, a: object, b: object) -> None:
        super().__init__(a, b)


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("probe", backend="cache+memory://", set_as_current=False)
    app.now = lambda: WHEN  # type: ignore[method-assign]
    yield app
    app.close()


def celery_bytes(app: Celery, task_id: str, result: Any, state: str, request: Any = None) -> bytes:
    """What Celery's store_result encodes for this store (the path up to the Redis SET)."""
    backend = app.backend
    meta = backend._get_result_meta(
        result=backend.encode_result(result, state), state=state, traceback=None, request=request
    )
    meta["task_id"] = task_id
    payload = backend.encode(meta)
    return payload.encode() if isinstance(payload, str) else payload


def test_state_sets() -> None:
    assert (PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED) == (
        "PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED",
    )
    assert READY_STATES == {SUCCESS, FAILURE, REVOKED}
    assert PROPAGATE_STATES == {FAILURE, REVOKED}
    assert EXCEPTION_STATES == {FAILURE, RETRY, REVOKED}


@pytest.mark.parametrize(
    "state, ok",
    [("SUCCESS", True), ("PROGRESS", True), ("A", True), ("X_1", True), ("A" * 64, True), ("A" * 65, False),
     ("success", False), ("", False), ("1ABC", False), ("PROGRESS\n", False), ("PRO GRESS", False), (None, False),
     (3, False), (["SUCCESS"], False)],
)
def test_is_valid_state(state: object, ok: bool) -> None:
    assert is_valid_state(state) is ok


# -- writing: byte-for-byte against Celery ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, state",
    [(3, SUCCESS), ({"a": [1, "\u00e9"]}, SUCCESS), (None, STARTED), ({"pid": 1, "hostname": "celery@h"}, STARTED),
     ({"current": 5}, "PROGRESS"), (dt.date(2020, 1, 2), SUCCESS), (b"\xff", SUCCESS)],
)
def test_make_meta_matches_celery(celery_app: Celery, result: Any, state: str) -> None:
    ours = dumps(make_meta("t-1", result, state, date_done=WHEN), JSON)
    assert ours == celery_bytes(celery_app, "t-1", result, state)


@pytest.mark.parametrize(
    "exc, state",
    [(ValueError("bad", 2), FAILURE), (KeyError("k"), FAILURE), (Outer.Inner("a", object(), {1, 2}), FAILURE),
     (RuntimeError(), RETRY), (TaskRevokedError("terminated"), REVOKED)],
)
def test_exception_metas_match_celery(celery_app: Celery, exc: BaseException, state: str) -> None:
    ours = dumps(make_meta("t-2", exc, state, date_done=WHEN), JSON)
    assert ours == celery_bytes(celery_app, "t-2", exc, state)


def test_extended_meta_matches_celery(celery_app: Celery) -> None:
    celery_app.conf.result_extended = True
    request = Context(task="probeapp.add", args=[2, 3], kwargs={"x": 1}, hostname="celery@vm", retries=0,
                      delivery_info={"routing_key": "celery"}, group="g-1", parent_id="p-1", children=[])
    extended = {"queue": "celery", "name": "probeapp.add", "args": [2, 3], "kwargs": {"x": 1},
                "worker": "celery@vm", "retries": 0, "group_id": "g-1", "parent_id": "p-1"}
    ours = dumps(make_meta("t-3", 5, SUCCESS, children=[], date_done=WHEN, extended=extended), JSON)
    assert ours == celery_bytes(celery_app, "t-3", 5, SUCCESS, request)


def test_meta_key_order_and_defaults() -> None:
    meta = make_meta("t", 1, SUCCESS, extended={"retries": 0, "group_id": None, "name": "n"})
    assert list(meta) == ["status", "result", "traceback", "children", "date_done", "name", "retries", "task_id"]
    assert meta["children"] is None
    done = parse_date_done(meta["date_done"])
    assert done is not None and done.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - done) < dt.timedelta(seconds=60)
    assert meta["date_done"].endswith("+00:00")
    for state in (STARTED, RETRY, "PROGRESS", RECEIVED):
        result = ValueError("x") if state == RETRY else None
        assert make_meta("t", result, state, date_done=WHEN)["date_done"] is None


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"task_id": ""}, "task_id"),
        ({"task_id": None}, "task_id"),
        ({"state": "success"}, "unknown state"),
        ({"state": ""}, "unknown state"),
        ({"state": FAILURE, "result": "oops"}, "FAILURE result must be an exception"),
        ({"state": REVOKED, "result": None}, "REVOKED result must be an exception"),
        ({"state": RETRY, "result": {"exc_message": []}}, "exc_type"),
        ({"traceback": 3}, "traceback"),
        ({"date_done": dt.datetime(2020, 1, 1)}, "timezone-aware"),
        ({"extended": {"nmae": "typo"}}, "nmae"),
    ],
)
def test_make_meta_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    args = {"task_id": "t", "result": 1, "state": SUCCESS, **kwargs}
    with pytest.raises(ConfigError, match=fragment) as info:
        make_meta(args.pop("task_id"), args.pop("result"), args.pop("state"), **args)
    assert isinstance(info.value, ValueError)


def test_make_meta_accepts_an_exception_dict() -> None:
    exc = {"exc_type": "Boom", "exc_message": ["m"], "exc_module": "remote.mod"}
    assert make_meta("t", exc, FAILURE)["result"] == exc


def test_pending_meta() -> None:
    assert pending_meta("t") == {"status": PENDING, "result": None, "traceback": None, "children": None,
                                 "date_done": None, "task_id": "t"}


# -- exceptions: encoding ----------------------------------------------------------------------------------------


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class HugeRepr:
    def __repr__(self) -> str:
        return "x" * 100_000


def test_encode_exception_matches_celery(celery_app: Celery) -> None:
    exc = Outer.Inner("a", 1, None, [1, 2], {1, 2})
    ours = encode_exception(exc)
    assert ours == {"exc_type": "Outer.Inner", "exc_message": ["a", 1, None, [1, 2], "{1, 2}"],
                    "exc_module": __name__}
    assert dumps(ours, JSON) == celery_app.backend.encode(celery_app.backend.prepare_exception(exc)).encode()


def test_encode_exception_bounds_reprs_and_survives_bad_ones() -> None:
    message = encode_exception(ValueError(BadRepr(), HugeRepr(), set(range(10_000))))["exc_message"]
    assert "BadRepr" in message[0] and "no repr" not in message[0]
    assert all(isinstance(arg, str) and len(arg) <= 1000 for arg in message)


def test_encode_exception_checks_args_with_the_given_serializer() -> None:
    exc = ValueError(dt.datetime(2020, 1, 1), b"x")
    assert encode_exception(exc)["exc_message"] == list(exc.args)
    encoded = encode_exception(exc, serializer=get_serializer("msgpack"))["exc_message"]
    assert encoded == ["datetime.datetime(2020, 1, 1, 0, 0)", b"x"]


def test_encode_exception_rejects_non_exceptions() -> None:
    with pytest.raises(EncodeError):
        encode_exception("not an exception")  # type: ignore[arg-type]


def test_remote_error_re_encodes_as_the_original_type() -> None:
    stored = {"exc_type": "Outer.Boom", "exc_message": ["m", 2], "exc_module": "remote.module"}
    rebuilt = rebuild_exception(stored, key="k")
    assert isinstance(rebuilt, RemoteError)
    assert encode_exception(rebuilt) == stored


# -- exceptions: rebuilding --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), KeyError("k"), TypeError("a", 2), Outer.Inner("x"), NeedsTwo(1, 2), TaskRevokedError("r")],
)
def test_rebuild_round_trip_matches_celery(celery_app: Celery, exc: BaseException) -> None:
    stored = loads(dumps(encode_exception(exc), JSON), JSON, frozenset({"json"}), key="k")
    ours = rebuild_exception(stored, key="k")
    theirs = celery_app.backend.exception_to_python(stored)
    assert type(ours) is type(theirs) is type(exc)
    assert ours.args == theirs.args == exc.args


def test_rebuild_message_forms() -> None:
    single = rebuild_exception({"exc_type": "ValueError", "exc_module": "builtins", "exc_message": "one"})
    assert single.args == ("one",)
    assert rebuild_exception({"exc_type": "ValueError", "exc_module": "builtins"}).args == ("",)
    bare = rebuild_exception({"exc_type": "Whatever", "exc_message": [1]})
    assert isinstance(bare, RemoteError) and type(bare).exc_module == "" and bare.args == (1,)


def test_rebuild_falls_back_when_the_constructor_fails() -> None:
    rebuilt = rebuild_exception({"exc_type": "NeedsTwo", "exc_module": __name__, "exc_message": ["only one"]})
    assert isinstance(rebuilt, RemoteError)
    assert (type(rebuilt).exc_type, type(rebuilt).exc_module, rebuilt.args) == ("NeedsTwo", __name__, ("only one",))


def _flags_module(name: str, flags: list[str]) -> types.ModuleType:
    """A loaded module whose every callable, hook and property records that it ran."""

    def run(*args: object) -> None:
        flags.append("function called")

    class NotAnException:
        def __init__(self, *args: object) -> None:
            flags.append("non-exception instantiated")

    class Meta(type):
        def __getattr__(cls, attr: str) -> object:
            flags.append("metaclass __getattr__")
            return ValueError

        def __getattribute__(cls, attr: str) -> object:
            flags.append(f"metaclass __getattribute__ {attr}")
            return super().__getattribute__(attr)

    class Tricky(Exception, metaclass=Meta):
        @property
        def Nested(self) -> object:  # noqa: N802
            flags.append("property ran")
            return ValueError

    def module_getattr(attr: str) -> object:
        flags.append(f"module __getattr__ {attr}")
        return ValueError

    module = types.ModuleType(name)
    module.run = run  # type: ignore[attr-defined]
    module.NotAnException = NotAnException  # type: ignore[attr-defined]
    module.Tricky = Tricky  # type: ignore[attr-defined]
    module.__getattr__ = module_getattr  # type: ignore[method-assign]
    flags.clear()  # defining the classes may have run hooks; only what happens after counts
    return module


HOSTILE_DOCS = [
    ("os", "system"),
    ("subprocess", "Popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "__import__"),
    ("collections", "OrderedDict"),
    ("some_unimported_module_xyz", "Anything"),
    ("builtins", "SystemExit"),
    ("builtins", "KeyboardInterrupt"),
    ("builtins", "object"),
    ("builtins", "type.__subclasses__"),
    ("os", "__class__"),
    ("os", "path.join"),
    ("flagmod", "run"),
    ("flagmod", "NotAnException"),
    ("flagmod", "missing_name"),
    ("flagmod", "__getattr__"),
    ("flagmod", "Tricky.Nested"),
    ("flagmod", "Tricky.absent"),
    ("flagmod", "Tricky.__init__"),
]


@pytest.mark.parametrize("module, name", HOSTILE_DOCS)
def test_hostile_exception_documents_execute_nothing(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    import subprocess  # noqa: F401  (loaded: the class exists but must not be used)

    flags: list[str] = []
    monkeypatch.setitem(sys.modules, "flagmod", _flags_module("flagmod", flags))
    calls: list[object] = []
    monkeypatch.setattr("os.system", lambda *a: calls.append(a))
    monkeypatch.setattr("subprocess.Popen.__init__", lambda *a, **k: calls.append(a))
    payload = ["touch /tmp/redisresults-pwned", SECRET]
    with capture_logs() as logs:
        rebuilt = rebuild_exception({"exc_type": name, "exc_module": module, "exc_message": payload}, key="k")
    assert isinstance(rebuilt, RemoteError)
    assert (type(rebuilt).exc_type, type(rebuilt).exc_module, rebuilt.args) == (name, module, tuple(payload))
    assert flags == [] and calls == []
    assert "some_unimported_module_xyz" not in sys.modules
    assert SECRET not in repr(logs)


def test_lookup_ignores_lazy_module_getattr(monkeypatch: pytest.MonkeyPatch) -> None:
    flags: list[str] = []

    class LazyModule(types.ModuleType):
        def __getattribute__(self, attr: str) -> object:
            flags.append(attr)
            return super().__getattribute__(attr)

    lazy = LazyModule("lazymod")
    lazy.Real = Outer.Inner  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lazymod", lazy)
    flags.clear()
    assert type(rebuild_exception({"exc_type": "Real", "exc_module": "lazymod", "exc_message": []})) is Outer.Inner
    assert isinstance(rebuild_exception({"exc_type": "Nope", "exc_module": "lazymod"}), RemoteError)
    assert flags == []


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("ValueError", "instead of a dict"),
        ([SECRET], "instead of a dict"),
        ({"exc_message": [SECRET]}, "exc_type"),
        ({"exc_type": 3, "exc_message": [SECRET]}, "exc_type"),
        ({"exc_type": "", "exc_module": "builtins"}, "exc_type"),
        ({"exc_type": "ValueError", "exc_module": ["builtins"], "exc_message": [SECRET]}, "exc_module"),
        ({"exc_type": "V" * 5000, "exc_module": "builtins"}, "longer than"),
    ],
)
def test_rebuild_rejects_wrong_shapes(data: object, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment) as info:
        rebuild_exception(data, key="celery-task-meta-z")
    assert "celery-task-meta-z" in str(info.value)
    assert SECRET not in str(info.value)


def test_huge_exception_message_is_cheap_and_stays_out_of_logs() -> None:
    huge = "x" * 10_000_000
    started = time.perf_counter()
    with capture_logs() as logs:
        known = rebuild_exception({"exc_type": "ValueError", "exc_module": "builtins", "exc_message": [huge]})
        unknown = rebuild_exception({"exc_type": "Gone", "exc_module": "nowhere_xyz", "exc_message": [huge]})
        refused = rebuild_exception({"exc_type": "system", "exc_module": "os", "exc_message": [huge]})
    assert time.perf_counter() - started < 2.0
    assert known.args[0] is huge and unknown.args[0] is huge and refused.args[0] is huge
    assert len(repr(logs)) < 10_000
    with pytest.raises(DecodeError) as info:
        rebuild_exception({"exc_type": 1, "exc_message": [huge]}, key="k")
    assert len(str(info.value)) < 500


def test_pickled_exception_objects_pass_through() -> None:
    exc = ValueError("x")
    assert rebuild_exception(exc) is exc
    assert validate_meta({"status": FAILURE, "result": exc}, key="k")["result"] is exc


# -- every exception class pickles -------------------------------------------------------------------------------


def _exception_classes() -> list[type[BaseException]]:
    classes = [cls for _, cls in inspect.getmembers(_exceptions, inspect.isclass)
               if issubclass(cls, _exceptions.RedisResultsError)]
    assert len(classes) >= 10
    return classes


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda c: c.__name__)
def test_every_exception_class_pickles(cls: type[BaseException]) -> None:
    exc = cls("message")
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.args == exc.args and str(clone) == str(exc)
    if cls is RemoteError:  # comes back as a generated subclass carrying the same type, module and args
        assert isinstance(clone, RemoteError)
        assert (type(clone).exc_type, type(clone).exc_module) == (RemoteError.exc_type, RemoteError.exc_module)
    else:
        assert type(clone) is cls


def test_generated_remote_errors_pickle() -> None:
    exc = remote_error_class("remote.mod", "Outer.Boom")("m", 2, [3])
    clone = pickle.loads(pickle.dumps(exc))
    assert isinstance(clone, RemoteError)
    assert (type(clone).exc_type, type(clone).exc_module, clone.args) == ("Outer.Boom", "remote.mod", ("m", 2, [3]))
    assert type(clone).__name__ == "Boom"
    store = _exceptions.BackendStoreError("too big", state=SUCCESS, task_id="t")
    store_clone = pickle.loads(pickle.dumps(store))
    assert (store_clone.state, store_clone.task_id, str(store_clone)) == (SUCCESS, "t", "too big")


# -- reading: validate_meta --------------------------------------------------------------------------------------


def test_validate_meta_accepts_celery_documents(celery_app: Celery) -> None:
    for result, state in ((3, SUCCESS), (ValueError("x"), FAILURE), (None, STARTED), ({"p": 1}, "PROGRESS")):
        payload = celery_bytes(celery_app, "t", result, state)
        meta = validate_meta(loads(payload, JSON, frozenset({"json"}), key="k"), key="k")
        assert meta["status"] == state and meta["task_id"] == "t"


def test_a_retry_without_exception_is_a_valid_document(celery_app: Celery) -> None:
    """``self.retry()`` without ``exc`` outside an ``except`` block: Celery stores RETRY with no result. A waiter
    that reads the key in that window must keep waiting, not fail."""
    payload = celery_bytes(celery_app, "t", None, RETRY)
    meta = validate_meta(loads(payload, JSON, frozenset({"json"}), key="k"), key="k")
    assert meta["status"] == RETRY and meta["result"] is None


def test_validate_meta_fills_optional_keys() -> None:
    doc: dict[str, Any] = {"status": SUCCESS}
    assert validate_meta(doc, key="k") is doc
    assert doc == {"status": SUCCESS, "result": None, "traceback": None, "children": None, "date_done": None}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ([SECRET], "is a list"),
        (SECRET, "a str of"),
        ({"result": SECRET}, "unknown state"),
        ({"status": "success", "result": SECRET}, "unknown state: 'success'"),
        ({"status": "", "result": SECRET}, "unknown state"),
        ({"status": 1, "result": SECRET}, "unknown state: a int"),
        ({"status": SECRET.lower() * 10, "result": SECRET}, "a str of 200 characters"),
        ({"status": FAILURE, "result": SECRET}, "not an exception"),
        ({"status": REVOKED, "result": None}, "not an exception"),
        ({"status": RETRY, "result": {"exc_type": 5, "exc_message": [SECRET]}}, "exc_type"),
        ({"status": SUCCESS, "result": SECRET, "traceback": 5}, "traceback"),
        ({"status": SUCCESS, "result": SECRET, "children": {"a": 1}}, "children"),
        ({"status": SUCCESS, "result": SECRET, "date_done": 12}, "date_done"),
    ],
)
def test_validate_meta_rejects(doc: object, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment) as info:
        validate_meta(doc, key="celery-task-meta-q")
    assert "celery-task-meta-q" in str(info.value)
    assert SECRET not in str(info.value)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
meta_like = st.fixed_dictionaries(
    {"status": st.sampled_from([SUCCESS, FAILURE, RETRY, REVOKED, "PROGRESS", "bad"]) | json_like},
    optional={"result": json_like | st.fixed_dictionaries(
        {"exc_type": json_like | st.text(), "exc_module": json_like | st.text(), "exc_message": json_like}),
        "traceback": json_like, "children": json_like, "date_done": json_like, "task_id": json_like},
)


@hypothesis_settings
@given(json_like | meta_like)
def test_validate_meta_returns_a_dict_or_raises_decode_error(doc: Any) -> None:
    try:
        meta = validate_meta(doc, key="k")
    except DecodeError:
        return
    assert isinstance(meta, dict) and is_valid_state(meta["status"])
    if carries_exception(meta):
        assert isinstance(rebuild_exception(meta["result"], key="k"), Exception)


@hypothesis_settings
@given(json_like)
def test_rebuild_exception_returns_or_raises_decode_error(data: Any) -> None:
    try:
        assert isinstance(rebuild_exception(data, key="k"), Exception)
    except DecodeError:
        pass


# -- date_done -----------------------------------------------------------------------------------------------------


def test_parse_date_done() -> None:
    assert parse_date_done("2026-11-23T22:42:18.509094+00:00") == WHEN
    assert parse_date_done("2026-11-23T22:42:18.509094Z") == WHEN
    assert parse_date_done("2026-11-23T22:42:18") == dt.datetime(2026, 11, 23, 22, 42, 18)
    assert parse_date_done(None) is None and parse_date_done("") is None
    assert parse_date_done(WHEN) is WHEN
    for bad in ("yesterday", SECRET, 5, "2026" * 100):
        with pytest.raises(DecodeError, match="date_done") as info:
            parse_date_done(bad)
        assert SECRET not in str(info.value)


# -- groups --------------------------------------------------------------------------------------------------------


def test_group_meta_matches_celery(celery_app: Celery) -> None:
    group = GroupResult("g-1", [AsyncResult("a", app=celery_app), AsyncResult("b", app=celery_app)], app=celery_app)
    celery_payload = celery_app.backend.encode({"result": group.as_tuple()}).encode()
    assert dumps(make_group_meta("g-1", ["a", "b"]), JSON) == celery_payload
    assert parse_group_meta(loads(celery_payload, JSON, frozenset({"json"}), key="k"), key="k") == ("g-1", ["a", "b"])


def test_parse_group_meta_nested_groups_and_parents(celery_app: Celery) -> None:
    parent = AsyncResult("parent", app=celery_app)
    inner = GroupResult("inner", [AsyncResult("c", app=celery_app)], app=celery_app)
    outer = GroupResult("outer", [AsyncResult("a", parent=parent, app=celery_app), inner], parent=parent,
                        app=celery_app)
    doc = loads(celery_app.backend.encode({"result": outer.as_tuple()}).encode(), JSON, frozenset({"json"}), key="k")
    assert parse_group_meta(doc, key="k") == ("outer", ["a", "inner"])
    assert parse_group_meta({"result": outer.as_tuple()}, key="k") == ("outer", ["a", "inner"])  # pickle's tuples
    assert parse_group_meta(make_group_meta("g", []), key="k") == ("g", [])
    assert parse_group_meta({"result": ["g", [["a", None]]]}, key="k") == ("g", ["a"])  # bare ids, as Celery reads


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ([SECRET], "not a group meta"),
        ({"status": SUCCESS}, "not a group meta"),
        ({"result": [["g", None], None]}, "single result"),
        ({"result": [["g", None]]}, "result node"),
        ({"result": [[5, None], []]}, "result id"),
        ({"result": [["g", None], [[["a", None, 1], None]]]}, "result id"),
        ({"result": [["g", None], [[["a", None], SECRET]]]}, "children"),
        ({"result": [["g", None], SECRET]}, "children"),
    ],
)
def test_parse_group_meta_rejects(doc: object, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment) as info:
        parse_group_meta(doc, key="celery-taskset-meta-g")
    assert "celery-taskset-meta-g" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("args", [("", ["a"]), ("g", "abc"), ("g", ["a", ""]), ("g", [None])])
def test_make_group_meta_rejects(args: tuple[Any, Any]) -> None:
    with pytest.raises(ConfigError):
        make_group_meta(*args)


def test_collections_ordereddict_is_loaded_but_refused() -> None:
    assert "collections" in sys.modules
    rebuilt = rebuild_exception({"exc_type": "OrderedDict", "exc_module": "collections", "exc_message": [[["a", 1]]]})
    assert isinstance(rebuilt, RemoteError) and not isinstance(rebuilt, collections.OrderedDict)
