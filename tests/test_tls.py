"""TLS against a real TLS-only server: verification failures are clear and fast, never retried for 20 s."""

from __future__ import annotations

import ssl
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import redis

from redisresults import (
    W_REDIS_SSL_CERT_NONE,
    W_REDIS_SSL_CERT_OPTIONAL,
    ConnectionUnavailable,
    RedisBackend,
    ResultTimeout,
)
from tests.logs import capture_logs
from tests.servers import RedisServer


def tls_url(server: RedisServer, host: str = "localhost", ca: str | None = None, extra: str = "") -> str:
    ca_path = quote(ca or server.ca_path, safe="")
    return f"rediss://{host}:{server.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca_path}{extra}"


def test_verified_tls_round_trip(tls_server: RedisServer, key_prefix: str) -> None:
    with RedisBackend(tls_server.url, transport_options={"global_keyprefix": key_prefix}) as backend:
        assert backend.connparams["connection_class"] is redis.SSLConnection
        assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        tid = str(uuid.uuid4())
        backend.mark_as_done(tid, {"over": "tls"})
        assert backend.AsyncResult(tid).get(timeout=5) == {"over": "tls"}


def test_untrusted_ca_fails_fast_and_clearly(tls_server: RedisServer) -> None:
    url = tls_url(tls_server, ca=tls_server.wrong_ca_path)
    with RedisBackend(url) as backend, capture_logs() as logs:
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            backend.client.ping()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED") as info:
            backend.mark_as_done("t", 1)
        assert not isinstance(info.value, ConnectionUnavailable)  # not retried: the verdict would not change
        assert time.monotonic() - start < 5
        assert not [e for e in logs if e["event"] == "redis_retry"]
        # A waiter cannot be served either: it times out on its own deadline and says why.
        with pytest.raises(ResultTimeout, match="CERTIFICATE_VERIFY_FAILED"):
            backend.AsyncResult("t").get(timeout=0.5)


def test_hostname_mismatch_fails_unless_check_disabled(tls_server: RedisServer) -> None:
    """The certificate names localhost only; 127.0.0.1 is refused unless hostname checking is off."""
    with RedisBackend(tls_url(tls_server, host="127.0.0.1")) as backend:
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|mismatch"):
            backend.client.ping()
        with pytest.raises(redis.ConnectionError):
            backend.mark_as_done("t", 1)
        assert time.monotonic() - start < 5
    with RedisBackend(tls_url(tls_server, host="127.0.0.1", extra="&ssl_check_hostname=false")) as backend:
        assert backend.connparams["ssl_check_hostname"] is False
        assert backend.client.ping() is True


@pytest.mark.parametrize(
    ("reqs", "warning"), [("none", W_REDIS_SSL_CERT_NONE), ("CERT_OPTIONAL", W_REDIS_SSL_CERT_OPTIONAL)]
)
def test_weak_cert_reqs_log_a_warning(tls_server: RedisServer, reqs: str, warning: str) -> None:
    url = f"rediss://localhost:{tls_server.port}/0?ssl_cert_reqs={reqs}"
    with capture_logs() as logs:
        backend = RedisBackend(url)
    try:
        events = [e for e in logs if e["event"] == "insecure_tls_setting"]
        assert len(events) == 1 and events[0]["warning"] == warning
        assert events[0]["log_level"] == "warning"
        assert "man in the middle" in warning
        # no CA given: with verification off (none), or optional and no CA to verify against, it still connects
        if reqs == "none":
            assert backend.client.ping() is True
    finally:
        backend.close()


def test_required_logs_no_warning(tls_server: RedisServer) -> None:
    with capture_logs() as logs:
        RedisBackend(tls_server.url).close()
    assert not [e for e in logs if e["event"] == "insecure_tls_setting"]


def test_plain_client_against_tls_port_fails_fast(tls_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{tls_server.port}/0"
    fast: dict[str, Any] = {"max_retries": 1, "interval_start": 0.05, "interval_step": 0.05, "interval_max": 0.1}
    options: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    with RedisBackend(url, transport_options={"retry_policy": fast}, **options) as backend:
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            backend.client.ping()
        with pytest.raises((ConnectionUnavailable, redis.ConnectionError)) as info:
            backend.mark_as_done("t", 1)
        assert "connect" in str(info.value).lower() or "closed" in str(info.value).lower()
        with pytest.raises(ResultTimeout):
            backend.AsyncResult("t").get(timeout=0.5)
        assert time.monotonic() - start < 5
