"""Connection smoke tests: the connparams a URL produces really reach Redis (TCP, Unix socket, TLS, Sentinel).

And the other half of "fail at build time": a configuration that does not validate raises before any
pool exists, so nothing at all reaches the server.
"""

from __future__ import annotations

import ssl
import uuid
from typing import Any, Callable
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisresults import SUCCESS, ConfigError, RedisBackend, SentinelBackend, backend_from_url
from tests.servers import RedisServer, SentinelGroup

FAST = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


def tls_url(server: RedisServer, *, host: str, ca: str, reqs: str = "required") -> str:
    return f"rediss://{host}:{server.port}/0?ssl_cert_reqs={reqs}&ssl_ca_certs={quote(ca, safe='')}"


def round_trip(backend: RedisBackend, key_prefix: str) -> None:
    """Store a result and read it back through the backend's own pool."""
    task_id = f"{key_prefix}{uuid.uuid4()}"
    backend.store_result(task_id, {"answer": 42}, SUCCESS)
    try:
        meta = backend.get_task_meta(task_id)
        assert meta["status"] == SUCCESS and meta["result"] == {"answer": 42} and meta["task_id"] == task_id
    finally:
        backend.forget(task_id)
    assert backend.get_task_meta(task_id)["status"] == "PENDING"


def test_tcp_ping_and_connparams_reach_the_server(redis_server: RedisServer, key_prefix: str) -> None:
    url = f"redis://{redis_server.host}:{redis_server.port}/5?client_name=rr-connect-test"
    options = {"transport_options": {"global_keyprefix": key_prefix}, **FAST}
    with backend_from_url(url, **options) as backend:
        assert type(backend) is RedisBackend
        assert backend.client.ping() is True
        assert backend.client.client_getname() == "rr-connect-test"
        backend.client.set(f"{key_prefix}probe", b"db5")
        try:
            other = redis_server.client(db=5)
            try:
                assert other.get(f"{key_prefix}probe") == b"db5"  # the URL's /5 chose the database
            finally:
                other.close()
        finally:
            backend.client.delete(f"{key_prefix}probe")
        round_trip(backend, key_prefix)


def test_unix_socket_ping(unix_server: RedisServer, key_prefix: str) -> None:
    assert unix_server.url.startswith("socket://")
    for scheme in ("socket", "redis+socket", "unix"):
        url = unix_server.url.replace("socket://", f"{scheme}://", 1)
        with backend_from_url(url, transport_options={"global_keyprefix": key_prefix}, **FAST) as backend:
            assert backend.connparams["connection_class"] is redis.UnixDomainSocketConnection
            assert backend.client.ping() is True
            round_trip(backend, key_prefix)


def test_tls_cert_required_with_the_right_ca(tls_server: RedisServer, key_prefix: str) -> None:
    with backend_from_url(tls_server.url, transport_options={"global_keyprefix": key_prefix}, **FAST) as backend:
        assert backend.connparams["ssl_cert_reqs"] is ssl.CERT_REQUIRED
        assert backend.client.ping() is True
        round_trip(backend, key_prefix)


def test_tls_ssl_dict_with_the_right_ca(tls_server: RedisServer) -> None:
    url = f"rediss://{tls_server.tls_hostname}:{tls_server.port}/0"
    ssl_options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": tls_server.ca_path}
    with RedisBackend(url, ssl=ssl_options, **FAST) as backend:
        assert backend.client.ping() is True


def test_tls_wrong_ca_is_a_clear_certificate_error(tls_server: RedisServer) -> None:
    url = tls_url(tls_server, host=tls_server.tls_hostname, ca=tls_server.wrong_ca_path)
    with RedisBackend(url, **FAST) as backend:
        with pytest.raises((redis.ConnectionError, ssl.SSLError)) as info:
            backend.client.ping()
    assert "certificate verify failed" in str(info.value).lower()


def test_tls_hostname_is_checked(tls_server: RedisServer) -> None:
    """The certificate names localhost only: 127.0.0.1 with CERT_REQUIRED must not connect."""
    url = tls_url(tls_server, host="127.0.0.1", ca=tls_server.ca_path)
    with RedisBackend(url, **FAST) as backend:
        with pytest.raises((redis.ConnectionError, ssl.SSLError)) as info:
            backend.client.ping()
    assert "certificate verify failed" in str(info.value).lower() or "mismatch" in str(info.value).lower()


def test_tls_cert_none_connects_despite_the_wrong_ca(tls_server: RedisServer) -> None:
    url = tls_url(tls_server, host="127.0.0.1", ca=tls_server.wrong_ca_path, reqs="none")
    with RedisBackend(url, **FAST) as backend:
        assert backend.client.ping() is True


def test_sentinel_discovers_the_master(sentinel_group: SentinelGroup, key_prefix: str) -> None:
    options = {"transport_options": {"master_name": sentinel_group.master_name, "global_keyprefix": key_prefix}}
    with backend_from_url(sentinel_group.sentinel_url, **options, **FAST) as backend:
        assert type(backend) is SentinelBackend
        assert backend.client.ping() is True
        host, port = backend.client.connection_pool.get_master_address()
        assert (host, int(port)) == sentinel_group.master_address()
        assert backend.client.info("replication")["role"] == "master"
        round_trip(backend, key_prefix)


def test_sentinel_unknown_master_name_fails_at_use(sentinel_group: SentinelGroup) -> None:
    options = {"transport_options": {"master_name": "no-such-master"}}
    with SentinelBackend(sentinel_group.sentinel_url, **options, **FAST) as backend:
        with pytest.raises(redis.sentinel.MasterNotFoundError):
            backend.client.ping()


def test_sentinel_tls_data_nodes(sentinel_tls_group: SentinelGroup, key_prefix: str) -> None:
    options: dict[str, Any] = {
        "transport_options": {"master_name": sentinel_tls_group.master_name, "global_keyprefix": key_prefix},
        "ssl": {"ssl_cert_reqs": "required", "ssl_ca_certs": sentinel_tls_group.ca_path},
    }
    with SentinelBackend(sentinel_tls_group.sentinel_url, **options, **FAST) as backend:
        assert backend.connparams["connection_class"] is redis.sentinel.SentinelManagedSSLConnection
        assert backend.client.ping() is True
        round_trip(backend, key_prefix)


INVALID: list[Callable[[RedisServer], Any]] = [
    lambda s: RedisBackend(f"redis://127.0.0.1:{s.port}/0?socket_timeout=abc"),
    lambda s: RedisBackend(f"redis://127.0.0.1:{s.port}/0?foo=bar"),
    lambda s: RedisBackend(f"redis://127.0.0.1:{s.port}/0", max_connections=0),
    lambda s: RedisBackend(f"redis://127.0.0.1:{s.port}/0?ssl_cert_reqs=required"),
    lambda s: RedisBackend(f"rediss://127.0.0.1:{s.port}/0"),
    lambda s: RedisBackend(f"rediss://127.0.0.1:{s.port}/0?ssl_cert_reqs=Required"),
    lambda s: backend_from_url(f"sentinel://127.0.0.1:{s.port}"),
    lambda s: backend_from_url(f"sentinel://127.0.0.1:{s.port},127.0.0.1:{s.port}", transport_options={
        "master_name": "m"}),
    lambda s: backend_from_url(f"redis://127.0.0.1:{s.port}/0", serializer="pickle"),
]


def test_invalid_configuration_sends_nothing(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    observer = server.client(retry=Retry(NoBackoff(), 0))
    try:
        before = int(observer.info("stats")["total_connections_received"])
        for make in INVALID:
            with pytest.raises(ConfigError):
                make(server)
        after = int(observer.info("stats")["total_connections_received"])
        assert after == before, "a backend whose configuration did not validate connected to Redis"
        # The observer itself is the only client the server ever saw.
        assert [int(entry["id"]) for entry in observer.client_list()] == [observer.client_id()]
    finally:
        observer.close()
