"""No password shows: not in logs, exception messages, reprs of public objects, nor ``as_uri()``.

Every URL form is covered (``:pw@``, ``user:pw@``, percent-encoded, Sentinel nodes, the ``password=`` option and
``sentinel_kwargs``). The CLI's output is covered by the CLI's own tests.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import quote

import pytest

import redisresults
from redisresults import ConfigError, RedisBackend, ResultTimeout, backend_from_url
from tests.logs import capture_logs
from tests.servers import RedisServer

PASSWORD = "pw-S3cr3t-4b1d"
# Characters that need percent-encoding, so both the raw and the encoded spelling are looked for.
ODD_PASSWORD = "p@ss:w/rd%S3cr3t#?&"
SECRETS = (PASSWORD, ODD_PASSWORD, quote(ODD_PASSWORD, safe=""), "S3cr3t")
FAST_POLICY = {"max_retries": 1, "interval_start": 0.01, "interval_step": 0.01, "interval_max": 0.05, "timeout": 2}


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret!r} leaked in: {text[:500]}"


def exception_text(error: BaseException) -> str:
    """Message, repr and the whole formatted chain (causes and contexts) of an exception."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def url_forms(host: str, port: int) -> dict[str, str]:
    encoded = quote(ODD_PASSWORD, safe="")
    return {
        "password-only": f"redis://:{PASSWORD}@{host}:{port}/0",
        "user-and-password": f"redis://app:{PASSWORD}@{host}:{port}/0",
        "percent-encoded": f"redis://app:{encoded}@{host}:{port}/0",
        "query-password": f"redis://{host}:{port}/0?password={PASSWORD}",
    }


@pytest.fixture
def protected(fresh_server: Callable[..., RedisServer]) -> RedisServer:
    """A server that wants a password none of the URLs here has."""
    server = fresh_server()
    server.cli("CONFIG", "SET", "requirepass", "the-right-one")  # set after start: the harness probes without auth
    return server


def build_all(host: str, port: int, **options: Any) -> list[RedisBackend]:
    backends: list[RedisBackend] = []
    for url in url_forms(host, port).values():
        try:
            backends.append(backend_from_url(url, **options))
        except ConfigError as error:  # e.g. a password query parameter is refused: the refusal must be clean too
            assert_clean(exception_text(error))
    backends.append(RedisBackend(f"redis://{host}:{port}/0", password=PASSWORD, **options))
    backends.append(RedisBackend(f"redis://{host}:{port}/0", username="app", password=ODD_PASSWORD, **options))
    backends.append(RedisBackend(host=host, port=port, password=PASSWORD, **options))
    return backends


def sentinel_backends() -> list[RedisBackend]:
    encoded = quote(ODD_PASSWORD, safe="")
    options: dict[str, Any] = {
        "transport_options": {
            "master_name": "mymaster",
            "sentinel_kwargs": {"password": PASSWORD, "socket_timeout": 0.2},
            "retry_policy": FAST_POLICY,
        }
    }
    return [
        backend_from_url(f"sentinel://:{PASSWORD}@127.0.0.1:1;sentinel://:{PASSWORD}@127.0.0.1:2", **options),
        backend_from_url(f"sentinel://app:{encoded}@127.0.0.1:1;sentinel://app:{encoded}@127.0.0.1:2", **options),
        backend_from_url("sentinel://127.0.0.1:1;sentinel://127.0.0.1:2", password=PASSWORD, **options),
    ]


def test_reprs_and_uris_never_show_the_password() -> None:
    backends = [*build_all("127.0.0.1", 1), *sentinel_backends()]
    try:
        for backend in backends:
            result = backend.AsyncResult("some-id")
            texts = [
                repr(backend),
                str(backend),
                backend.as_uri(),
                repr(backend._config),
                str(backend.stats()),
                repr(result),
                str(result),
                repr(backend.ResultSet(["a", "b"])),
                repr(backend.GroupResult("g", ["a"])),
                repr(backend.result_consumer),
                str(backend.result_consumer.stats()),
            ]
            for text in texts:
                assert_clean(text)
            shown = backend.as_uri(include_password=True)
            assert any(s in shown for s in SECRETS) or "@" not in backend.as_uri()
    finally:
        for backend in backends:
            backend.close()


BAD_URLS = [
    f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://:{PASSWORD}@127.0.0.1:99999/0",
    f"redis://:{PASSWORD}@127.0.0.1:1/0?bogus=1",
    f"redis://:{PASSWORD}@127.0.0.1:1/0?socket_timeout=abc",
    f"redis://:{PASSWORD}@127.0.0.1:1/0?ssl_cert_reqs=required",
    f"rediss://:{PASSWORD}@127.0.0.1:1/0",
    f"rediss://:{PASSWORD}@127.0.0.1:1/0?ssl_cert_reqs=sometimes",
    f"redis://:{PASSWORD}@127.0.0.1:1/not-a-db",
    f"redis://:{PASSWORD}@[::1/0",
    f"redis://:{PASSWORD}@host name/0",
    f"redis://:{PASSWORD}@127.0.0.1:1/0#frag",
    f"foo://:{PASSWORD}@127.0.0.1/0",
    f"sentinel://:{PASSWORD}@h:1,sentinel://:{PASSWORD}@h:2",
    f"sentinel://:{PASSWORD}@h:1;sentinel://:{PASSWORD}@h:2",  # no master_name
    f"redis://app:{quote(ODD_PASSWORD, safe='')}@127.0.0.1:x/0",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_config_errors_never_show_the_password(url: str) -> None:
    with capture_logs() as logs, pytest.raises(ConfigError) as info:
        backend_from_url(url)
    assert_clean(exception_text(info.value))
    assert_clean(repr(logs))


def test_insecure_tls_warnings_are_clean() -> None:
    with capture_logs() as logs:
        for reqs in ("none", "optional"):
            backend_from_url(f"rediss://app:{PASSWORD}@127.0.0.1:1/0?ssl_cert_reqs={reqs}").close()
    assert [e["event"] for e in logs] == ["insecure_tls_setting", "insecure_tls_setting"]
    assert_clean(repr(logs))


def test_wrong_password_errors_and_logs_are_clean(protected: RedisServer) -> None:
    backends = build_all("127.0.0.1", protected.port, transport_options={"retry_policy": FAST_POLICY})
    try:
        with capture_logs() as logs:
            for backend in backends:
                with pytest.raises(Exception) as stored:
                    backend.mark_as_done("t", 1)
                assert_clean(exception_text(stored.value))
                with pytest.raises(Exception) as read:
                    backend.get_task_meta("t")
                assert_clean(exception_text(read.value))
                with pytest.raises(Exception) as pinged:
                    backend.client.ping()
                assert_clean(exception_text(pinged.value))
                # The drainer cannot authenticate either: the wait times out, and says why, cleanly.
                with pytest.raises(ResultTimeout) as waited:
                    backend.AsyncResult("t").get(timeout=0.3)
                assert_clean(exception_text(waited.value))
                assert_clean(repr(backend.stats()))
        assert_clean(repr(logs))
    finally:
        for backend in backends:
            backend.close()


def test_unreachable_server_errors_and_logs_are_clean(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    port = server.port
    server.stop()  # a port nothing listens on any more
    options: dict[str, Any] = {"transport_options": {"retry_policy": FAST_POLICY}, "socket_connect_timeout": 0.5}
    backends = build_all("127.0.0.1", port, **options)
    try:
        with capture_logs() as logs:
            for backend in backends:
                start = time.monotonic()
                with pytest.raises(redisresults.ConnectionUnavailable) as info:
                    backend.mark_as_done("t", 1)
                assert time.monotonic() - start < 5
                assert_clean(exception_text(info.value))
                with pytest.raises(ResultTimeout) as waited:
                    backend.AsyncResult("t").get(timeout=0.2)
                assert_clean(exception_text(waited.value))
        assert any(e["event"] == "redis_retry" for e in logs)
        assert_clean(repr(logs))
    finally:
        for backend in backends:
            backend.close()


def test_sentinel_errors_and_logs_are_clean() -> None:
    backends = sentinel_backends()
    try:
        with capture_logs() as logs:
            for backend in backends:
                with pytest.raises(Exception) as info:
                    backend.mark_as_done("t", 1)
                assert_clean(exception_text(info.value))
                with pytest.raises(ResultTimeout) as waited:
                    backend.AsyncResult("t").get(timeout=0.2)
                assert_clean(exception_text(waited.value))
        assert_clean(repr(logs))
    finally:
        for backend in backends:
            backend.close()


@pytest.fixture
def tls_backend_with_password(tls_server: RedisServer) -> Iterator[RedisBackend]:
    ca = quote(tls_server.wrong_ca_path, safe="")
    url = f"rediss://:{PASSWORD}@localhost:{tls_server.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    with RedisBackend(url, transport_options={"retry_policy": FAST_POLICY}) as backend:
        yield backend


def test_tls_failures_are_clean(tls_backend_with_password: RedisBackend) -> None:
    with capture_logs() as logs:
        with pytest.raises(Exception) as info:
            tls_backend_with_password.mark_as_done("t", 1)
        assert_clean(exception_text(info.value))
        with pytest.raises(ResultTimeout) as waited:
            tls_backend_with_password.AsyncResult("t").get(timeout=0.3)
        assert_clean(exception_text(waited.value))
    assert_clean(repr(logs))
    assert_clean(repr(tls_backend_with_password))
