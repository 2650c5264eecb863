"""Celery-compatible result documents: task metas, exception dicts and group metas.

Documents are built with Celery's keys in Celery's order, so a payload written here is byte-identical to one a
Celery worker writes. Documents read back are validated before their shape is trusted, and stored exceptions are
rebuilt without importing anything: a stored document must never be able to run code in the reader.
"""

from __future__ import annotations

import re
import reprlib
import sys
import types
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._exceptions import ConfigError, DecodeError, EncodeError, RemoteError, remote_error_class
from ._log import get_logger
from ._serialization import Serializer, get_serializer

__all__ = [
    "EXCEPTION_STATES", "FAILURE", "PENDING", "PROPAGATE_STATES", "READY_STATES", "RECEIVED", "RETRY", "REVOKED",
    "STARTED", "SUCCESS", "carries_exception", "encode_exception", "is_valid_state", "make_group_meta", "make_meta",
    "parse_date_done", "parse_group_meta", "pending_meta", "rebuild_exception", "validate_meta",
]

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
RETRY = "RETRY"
REVOKED = "REVOKED"

KNOWN_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})

#: Custom states (``update_state(state="PROGRESS")``): upper-case identifiers of bounded length.
_CUSTOM_STATE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_STATE_LIKE = re.compile(r"[A-Za-z0-9_\-]{1,64}")

#: Optional keys in the order Celery's ``_get_result_meta`` writes them, between ``date_done`` and ``task_id``.
EXTENDED_KEYS = ("group_id", "parent_id", "name", "args", "kwargs", "worker", "retries", "queue")

#: The keys a read meta always has (None when the stored document lacks them, as Celery reads it).
_FILLED_KEYS = ("result", "traceback", "children", "date_done")
_FILLED_SET = frozenset(_FILLED_KEYS)
_MAX_NAME_LENGTH = 1000  # longest exc_type / exc_module accepted; real qualnames are far shorter
_MAX_REPR_LENGTH = 1000  # an unserializable exception argument is stored as a repr at most this long

# The C-level slots behind ``module.__dict__``, ``cls.__dict__`` and ``cls.__mro__``. Reading through them never
# runs Python code: no module ``__getattr__``, no metaclass hooks, no properties.
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_TYPE_DICT: Any = vars(type)["__dict__"]
_TYPE_MRO: Any = vars(type)["__mro__"]
_MISSING = object()

logger = get_logger()


def is_valid_state(state: Any) -> bool:
    """A known Celery state or a custom one (upper-case, digits and ``_``, at most 64 characters)."""
    return isinstance(state, str) and (state in KNOWN_STATES or _CUSTOM_STATE.fullmatch(state) is not None)


def _describe(value: Any) -> str:
    """A value's type (and length, for a str): enough to debug a document, never a piece of its payload."""
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    return f"a {type(value).__name__}"


def _describe_state(state: Any) -> str:
    """A state is a short name, not payload: shown when it looks like one (e.g. 'success'), else described."""
    if isinstance(state, str) and _STATE_LIKE.fullmatch(state):
        return repr(state)
    return _describe(state)


# -- writing -------------------------------------------------------------------------------------------------------


def make_meta(
    task_id: str,
    result: Any,
    state: str,
    traceback: str | None = None,
    *,
    children: list[Any] | None = None,
    date_done: datetime | None = None,
    extended: Mapping[str, Any] | None = None,
    serializer: Serializer | None = None,
) -> dict[str, Any]:
    """The document Celery's ``store_result`` writes, key for key and in the same order.

    ``children`` is None by default, as Celery writes outside a task. ``date_done`` (an aware datetime; now in UTC
    by default) is written only for ready states, as Celery does. For exception states ``result`` may be an
    exception (encoded with ``serializer``, json by default) or an exception dict. ``extended`` holds the optional
    keys of ``EXTENDED_KEYS``; ``group_id``/``parent_id`` are written only when set, as Celery does.
    """
    if not isinstance(task_id, str) or not task_id:
        raise ConfigError(f"task_id must be a non-empty str, got {_describe(task_id)}")
    if not is_valid_state(state):
        raise ConfigError(f"unknown state {_describe_state(state)}: use a Celery state or an upper-case custom state")
    if traceback is not None and not isinstance(traceback, str):
        raise ConfigError(f"traceback must be a str or None, got {_describe(traceback)}")
    if state in EXCEPTION_STATES:
        if isinstance(result, BaseException):
            result = encode_exception(result, serializer=serializer)
        else:
            problem = _exception_dict_problem(result)
            if problem is not None:
                raise ConfigError(f"a {state} result must be an exception or an exception dict: {problem}")
    done: str | None = None
    if state in READY_STATES:
        when = datetime.now(timezone.utc) if date_done is None else date_done
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ConfigError("date_done must be a timezone-aware datetime")
        done = when.isoformat()
    meta: dict[str, Any] = {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": None if children is None else list(children),
        "date_done": done,
    }
    if extended:
        unknown = sorted(str(name) for name in extended if name not in EXTENDED_KEYS)
        if unknown:
            raise ConfigError(f"unknown extended meta keys {unknown}; known: {', '.join(EXTENDED_KEYS)}")
        for name in EXTENDED_KEYS:
            if name in extended and (extended[name] or name not in ("group_id", "parent_id")):
                meta[name] = extended[name]
    meta["task_id"] = task_id
    return meta


def pending_meta(task_id: str) -> dict[str, Any]:
    """What a missing key reads as: Celery never writes PENDING, the absence of a result is the state."""
    return {
        "status": PENDING,
        "result": None,
        "traceback": None,
        "children": None,
        "date_done": None,
        "task_id": task_id,
    }


def _bounded_repr(obj: Any) -> str:
    limiter = reprlib.Repr()
    limiter.maxstring = limiter.maxother = _MAX_REPR_LENGTH
    limiter.maxlist = limiter.maxtuple = limiter.maxset = limiter.maxdict = 50
    try:
        text = limiter.repr(obj)
    except Exception:
        text = f"<unrepresentable {type(obj).__qualname__} object>"
    return text if len(text) <= _MAX_REPR_LENGTH else text[: _MAX_REPR_LENGTH - 3] + "..."


def _encodable(value: Any, codec: Serializer) -> bool:
    if codec.name == "json" and (value is None or type(value) in (str, int, float, bool)):
        return True
    try:
        codec.dumps(value)
    except Exception:  # includes RecursionError: Celery stores a repr for whatever does not encode
        return False
    return True


def encode_exception(exc: BaseException, *, serializer: Serializer | None = None) -> dict[str, Any]:
    """Celery's exception dict; arguments ``serializer`` (json by default) cannot encode become bounded reprs.

    A RemoteError (an exception rebuilt from a document) is written back under the type and module it came with.
    """
    if not isinstance(exc, BaseException):
        raise EncodeError(f"cannot encode object of type {type(exc).__qualname__!r} as an exception")
    cls = type(exc)
    if isinstance(exc, RemoteError):
        exc_type, exc_module = exc.exc_type, exc.exc_module
    else:
        exc_type, exc_module = getattr(cls, "__qualname__", cls.__name__), cls.__module__
    codec = serializer if serializer is not None else get_serializer("json")
    args = [arg if _encodable(arg, codec) else _bounded_repr(arg) for arg in exc.args]
    return {"exc_type": exc_type, "exc_message": args, "exc_module": exc_module}


def make_group_meta(group_id: str, task_ids: Sequence[str]) -> dict[str, Any]:
    """Celery's ``_save_group`` document: ``{"result": GroupResult.as_tuple()}`` for a group without parents."""
    if not isinstance(group_id, str) or not group_id:
        raise ConfigError(f"group_id must be a non-empty str, got {_describe(group_id)}")
    if isinstance(task_ids, (str, bytes)):
        raise ConfigError("task_ids must be a sequence of task ids, not a single string")
    nodes: list[Any] = []
    for task_id in task_ids:
        if not isinstance(task_id, str) or not task_id:
            raise ConfigError(f"group {group_id!r}: task ids must be non-empty str, got {_describe(task_id)}")
        nodes.append([[task_id, None], None])
    return {"result": [[group_id, None], nodes]}


# -- reading -------------------------------------------------------------------------------------------------------


def _exception_dict_problem(data: Any) -> str | None:
    """What makes ``data`` unusable as a stored exception, or None when its shape is right."""
    if not isinstance(data, dict):
        return f"got {_describe(data)} instead of a dict"
    exc_type = data.get("exc_type")
    if not isinstance(exc_type, str) or not exc_type:
        return "exc_type is missing or not a non-empty str"
    exc_module = data.get("exc_module")
    if exc_module is not None and not isinstance(exc_module, str):
        return "exc_module is not a str"
    if len(exc_type) > _MAX_NAME_LENGTH or (exc_module is not None and len(exc_module) > _MAX_NAME_LENGTH):
        return f"exc_type or exc_module is longer than {_MAX_NAME_LENGTH} characters"
    return None


def carries_exception(meta: dict[str, Any]) -> bool:
    """Whether a meta's result is an exception: FAILURE, REVOKED and RETRY do, except a RETRY stored with no
    result (what Celery writes for ``self.retry()`` called without ``exc`` outside an ``except`` block)."""
    status = meta.get("status")
    return status in EXCEPTION_STATES and not (status == RETRY and meta.get("result") is None)


def validate_meta(obj: Any, *, key: str) -> dict[str, Any]:
    """Check a decoded document is a task meta and fill Celery's optional keys; the dict is returned in place.

    Exception results are checked for shape only; :func:`rebuild_exception` turns them into exceptions.
    Every published result passes here on the drainer's path, so the common case (a known state, no
    exception) costs one lookup per key and skips the exception rules.
    """
    if not isinstance(obj, dict):
        raise DecodeError(f"document at key {key!r} is {_describe(obj)}, not a result meta")
    get = obj.get
    status = get("status")
    if not is_valid_state(status):
        raise DecodeError(f"document at key {key!r} has an unknown state: {_describe_state(status)}")
    result = get("result")
    # carries_exception() decides; asked only of the exception states (the common SUCCESS skips the call)
    if status in EXCEPTION_STATES and carries_exception(obj) and not isinstance(result, BaseException):  # pickle
        problem = _exception_dict_problem(result)
        if problem is not None:
            raise DecodeError(f"document at key {key!r} is {status} but its result is not an exception: {problem}")
    traceback = get("traceback")
    if traceback is not None and not isinstance(traceback, str):
        raise DecodeError(f"document at key {key!r} has a traceback that is {_describe(traceback)}, not a str")
    children = get("children")
    if children is not None and not isinstance(children, (list, tuple)):
        raise DecodeError(f"document at key {key!r} has children that are {_describe(children)}, not a list")
    date_done = get("date_done")
    if date_done is not None and not isinstance(date_done, (str, datetime)):
        raise DecodeError(f"document at key {key!r} has a date_done that is {_describe(date_done)}, not a str")
    if not _FILLED_SET.issubset(obj):
        for name in _FILLED_KEYS:
            obj.setdefault(name, None)
    return obj


def parse_date_done(value: Any) -> datetime | None:
    """``date_done`` as a datetime (aware when it was written with an offset, as Celery writes it)."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) <= 64:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value  # fromisoformat before 3.11
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise DecodeError(f"date_done is not an ISO-8601 date: {_describe(value)}")


def _lookup_exception_class(module_name: str, qualname: str) -> type[BaseException] | None:
    """The loaded class ``module_name.qualname`` if it is an Exception subclass, found without running any code.

    Only ``sys.modules`` is consulted (nothing is imported), and only through the dicts themselves: no getattr, so
    no module ``__getattr__`` (lazy imports), descriptor or metaclass hook runs.
    """
    module = sys.modules.get(module_name)
    if module is None or not issubclass(type(module), types.ModuleType):
        return None
    namespace = _MODULE_DICT.__get__(module)
    if not isinstance(namespace, dict):
        return None
    found: Any = namespace.get(qualname.split(".", 1)[0], _MISSING)
    for part in qualname.split(".")[1:]:
        if found is _MISSING or not issubclass(type(found), type):
            return None
        owner, found = found, _MISSING
        for klass in _TYPE_MRO.__get__(owner):
            attrs = _TYPE_DICT.__get__(klass)
            if part in attrs:
                found = attrs[part]
                break
    if found is _MISSING:
        return None
    # Exception, not BaseException: a stored SystemExit or KeyboardInterrupt re-raised by get() would stop the
    # reader's process. Whatever is not an exception class (os.system, eval, Popen) is never called.
    if not issubclass(type(found), type) or not issubclass(found, Exception):
        logger.warning(
            "remote_exception_type_refused",
            exc_module=module_name[:200],
            exc_type=qualname[:200],
            reason="not an Exception subclass",
        )
        return None
    exc_class: type[BaseException] = found
    return exc_class


def rebuild_exception(data: Any, *, key: str = "") -> BaseException:
    """The exception a stored exception dict describes, rebuilt without importing anything.

    The stored class is used only if its module is already loaded and it is an Exception subclass whose
    constructor accepts the stored arguments; otherwise the result is an instance of a generated RemoteError
    subclass carrying the stored type, module and arguments. An exception object (only pickle can produce one)
    is returned as it is.
    """
    if isinstance(data, BaseException):
        return data
    problem = _exception_dict_problem(data)
    if problem is not None:
        raise DecodeError(f"stored exception at key {key!r} cannot be rebuilt: {problem}")
    exc_type: str = data["exc_type"]
    exc_module: str = data.get("exc_module") or ""
    message = data.get("exc_message", "")  # Celery's default for a missing message
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _lookup_exception_class(exc_module, exc_type) if exc_module else None
    if cls is not None:
        try:
            exc = cls(*args)
        except Exception:
            exc = None
        if exc is not None and issubclass(type(exc), BaseException):
            return exc
    return remote_error_class(exc_module, exc_type)(*args)


def _split_result_node(node: Any, key: str) -> tuple[str, list[Any] | None]:
    """``(id, children)`` of one ``as_tuple()`` node: ``[[id, parent], children]`` (or ``[id, children]``)."""
    if not isinstance(node, (list, tuple)) or len(node) != 2:
        raise DecodeError(f"group document at key {key!r} has a result node that is {_describe(node)}")
    head, children = node
    node_id = head[0] if isinstance(head, (list, tuple)) and len(head) == 2 else head
    if not isinstance(node_id, str) or not node_id:
        raise DecodeError(f"group document at key {key!r} has a result id that is {_describe(node_id)}")
    if children is not None and not isinstance(children, (list, tuple)):
        raise DecodeError(f"group document at key {key!r} has children that are {_describe(children)}")
    return node_id, None if children is None else list(children)


def parse_group_meta(obj: Any, *, key: str) -> tuple[str, list[str]]:
    """``(group_id, ids of the group's direct children)`` from a ``_save_group`` document.

    A child that is itself a group (Celery's nested form ``[[id, parent], [...]]``) is returned by its group id;
    its own members are not flattened in. Parents are ignored.
    """
    if not isinstance(obj, dict) or "result" not in obj:
        raise DecodeError(f"document at key {key!r} is {_describe(obj)} without a 'result', not a group meta")
    group_id, nodes = _split_result_node(obj["result"], key)
    if nodes is None:
        raise DecodeError(f"document at key {key!r} describes a single result, not a group")
    return group_id, [_split_result_node(child, key)[0] for child in nodes]
