"""Every redisresults exception pickles with its message and attributes (errors cross process boundaries)."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
import redis.exceptions

import redisresults
from redisresults import (
    BackendStoreError,
    ConfigError,
    ConnectionUnavailable,
    ContentDisallowed,
    DecodeError,
    DrainerError,
    EncodeError,
    RedisResultsError,
    RemoteError,
    ResultTimeout,
    UsageError,
)
from redisresults._exceptions import remote_error_class

# (instance, builtin bases it must also have)
CASES = [
    pytest.param(RedisResultsError("base"), (), id="RedisResultsError"),
    pytest.param(ConfigError("bad port 'abc'"), (ValueError,), id="ConfigError"),
    pytest.param(ResultTimeout("task t1 not ready after 0.1s"), (TimeoutError,), id="ResultTimeout"),
    pytest.param(ContentDisallowed("refusing pickle"), (), id="ContentDisallowed"),
    pytest.param(DecodeError("not JSON"), (), id="DecodeError"),
    pytest.param(EncodeError("cannot serialize <object>"), (TypeError,), id="EncodeError"),
    pytest.param(
        ConnectionUnavailable("redis at h:1 unreachable"),
        (ConnectionError, redis.exceptions.ConnectionError),
        id="ConnectionUnavailable",
    ),
    pytest.param(redisresults.PoolTimeout("no free connection"), (TimeoutError,), id="PoolTimeout"),
    pytest.param(
        redisresults.AuthenticationFailed("invalid password"),
        (redis.exceptions.AuthenticationError, redis.exceptions.ConnectionError),
        id="AuthenticationFailed",
    ),
    pytest.param(
        redisresults.CertificateRejected("CERTIFICATE_VERIFY_FAILED"),
        (redis.exceptions.ConnectionError,),
        id="CertificateRejected",
    ),
    pytest.param(
        redisresults.PermissionDenied("NOPERM"),
        (redis.exceptions.NoPermissionError, redis.exceptions.ResponseError),
        id="PermissionDenied",
    ),
    pytest.param(redisresults.ServerError("WRONGTYPE"), (redis.exceptions.ResponseError,), id="ServerError"),
    pytest.param(redisresults.RedisFailure("protocol"), (redis.exceptions.RedisError,), id="RedisFailure"),
    pytest.param(DrainerError("drainer stopped"), (), id="DrainerError"),
    pytest.param(UsageError("second concurrent drain"), (RuntimeError,), id="UsageError"),
    pytest.param(RemoteError("remote boom"), (), id="RemoteError"),
]


def roundtrip(exc: BaseException) -> Any:
    return pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.mark.parametrize(("exc", "bases"), CASES)
def test_pickle_roundtrip(exc: BaseException, bases: tuple[type, ...]) -> None:
    clone = roundtrip(exc)
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert clone.args == exc.args
    assert isinstance(clone, RedisResultsError)
    for base in bases:
        assert isinstance(clone, base)
    assert type(exc).__module__ == "redisresults"  # tracebacks say redisresults.ConfigError


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_backend_store_error_keeps_attributes(protocol: int) -> None:
    exc = BackendStoreError("value too large for Redis backend", state="SUCCESS", task_id="t-1")
    clone = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(clone) is BackendStoreError
    assert (str(clone), clone.state, clone.task_id) == ("value too large for Redis backend", "SUCCESS", "t-1")
    assert repr(clone) == repr(exc)
    bare = roundtrip(BackendStoreError("refused"))
    assert (bare.state, bare.task_id) == (None, None)


def test_remote_error_subclass_roundtrip() -> None:
    cls = remote_error_class("myapp.tasks", "QuotaExceeded")
    assert issubclass(cls, RemoteError) and issubclass(cls, RedisResultsError)
    assert cls.__name__ == "QuotaExceeded" and cls.exc_module == "myapp.tasks" and cls.exc_type == "QuotaExceeded"
    exc = cls("over quota", 42)
    clone = roundtrip(exc)
    assert isinstance(clone, RemoteError)
    assert type(clone).__name__ == "QuotaExceeded"
    assert (type(clone).exc_module, type(clone).exc_type) == ("myapp.tasks", "QuotaExceeded")
    assert clone.args == ("over quota", 42) and clone.exc_args == ("over quota", 42)
    assert str(clone) == str(exc)
    single = roundtrip(cls("just a message"))
    assert str(single) == "just a message"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.b.Err", "Err"), ("bad-name!", "bad_name_"), ("1st", "_1st"), ("", "_"), ("Ünïcode", "Ünïcode")],
)
def test_remote_error_class_name_is_an_identifier(name: str, expected: str) -> None:
    cls = remote_error_class("m", name)
    assert cls.__name__ == expected and cls.exc_type == name
    clone = roundtrip(cls("x"))
    assert type(clone).__name__ == expected and str(clone) == "x"


def test_every_exception_class_is_covered_and_subclasses_the_base() -> None:
    classes = {
        name
        for name, value in vars(redisresults).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    covered = {param.id for param in CASES} | {"BackendStoreError"}
    assert classes == covered
    for name in classes:
        assert issubclass(getattr(redisresults, name), RedisResultsError)
    assert issubclass(ConfigError, ValueError) and issubclass(ResultTimeout, TimeoutError)


def test_all_names_exist() -> None:
    assert len(set(redisresults.__all__)) == len(redisresults.__all__)
    for name in redisresults.__all__:
        assert hasattr(redisresults, name), name
    for name in ("RedisBackend", "SentinelBackend", "backend_from_url", "from_config", "AsyncResult", "ResultSet",
                 "GroupResult", "ConfigError", "BackendStoreError", "ResultTimeout", "ContentDisallowed",
                 "DecodeError", "RedisResultsError", "W_REDIS_SSL_CERT_NONE", "W_REDIS_SSL_CERT_OPTIONAL"):
        assert name in redisresults.__all__, name


@pytest.mark.parametrize(
    ("foreign", "ours"),
    [
        (redis.exceptions.NoPermissionError("NOPERM x"), "PermissionDenied"),
        (redis.exceptions.AuthenticationError("invalid"), "AuthenticationFailed"),
        (redis.exceptions.AuthorizationError("denied"), "AuthenticationFailed"),
        (redis.exceptions.ResponseError("WRONGTYPE"), "ServerError"),
        (redis.exceptions.ConnectionError("reset"), "ConnectionUnavailable"),
        (redis.exceptions.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] x"), "CertificateRejected"),
        (redis.exceptions.TimeoutError("slow"), "ConnectionUnavailable"),
        (redis.exceptions.DataError("bad"), "RedisFailure"),
    ],
)
def test_redis_errors_are_translated_keeping_cause_and_class(foreign: BaseException, ours: str) -> None:
    from redisresults._exceptions import translate

    mapped = translate(foreign)
    assert type(mapped).__name__ == ours and mapped.__cause__ is foreign
    assert isinstance(mapped, RedisResultsError)
    # callers that catch the redis-py class keep working (a protocol/data error: the RedisError base)
    assert isinstance(mapped, redis.exceptions.RedisError if ours == "RedisFailure" else type(foreign))
    assert translate(mapped) is mapped  # ours pass unchanged
    assert translate(KeyError("x")).__class__ is KeyError
