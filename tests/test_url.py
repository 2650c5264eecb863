"""URL rules of API.md §1, as one table, plus property tests that nothing but ConfigError escapes.

Every backend here points at an unreachable address and ``.client`` is never touched: building a
backend must not connect, so these tests need no server.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional
from urllib.parse import quote

import pytest
import redis
import redis.sentinel
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import redisresults
from redisresults import ConfigError, RedisBackend, SentinelBackend, backend_from_url
from redisresults._config import E_REDIS_SSL_CERT_REQS_MISSING_INVALID, E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH
from redisresults._url import SCHEMES, masked, parse_url, passwords, path_db, split_sentinel_url

MASTER = {"transport_options": {"master_name": "mymaster"}}
SSL_CLS = redis.SSLConnection
UNIX_CLS = redis.UnixDomainSocketConnection
SENTINEL_SSL_CLS = redis.sentinel.SentinelManagedSSLConnection
ACCEPTED = r"redis://, rediss://, socket://, redis\+socket://, unix://, sentinel://"
ABSENT = object()  # marks a connparams key that must not be there


def build(url: Optional[str], **options: Any) -> RedisBackend:
    """Build a backend and prove it did not connect (no pool, no client)."""
    backend = backend_from_url(url, **options)
    assert backend._pool is None and backend._client is None
    assert backend.stats()["drainer_alive"] is False
    return backend


def check_params(params: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if value is ABSENT:
            assert key not in params, f"{key} should be absent from {params}"
        else:
            assert key in params, f"{key} missing from {params}"
            assert params[key] == value, f"{key}: {params[key]!r} != {value!r}"
            if key == "ssl_cert_reqs":
                assert isinstance(params[key], ssl.VerifyMode)
            if key == "connection_class":
                assert params[key] is value


# (url, options, expected backend class, expected connparams subset)
ACCEPTED_CASES = [
    # --- the seed examples, verbatim
    pytest.param(
        "redis://:secret@localhost:6379/0", {}, RedisBackend,
        {"host": "localhost", "port": 6379, "db": 0, "password": "secret", "username": ABSENT,
         "connection_class": ABSENT, "ssl_cert_reqs": ABSENT},
        id="seed-redis",
    ),
    pytest.param(
        "rediss://:pw@host:6379/1?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/path/ca.pem", {}, RedisBackend,
        {"host": "host", "port": 6379, "db": 1, "password": "pw", "connection_class": SSL_CLS,
         "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/path/ca.pem"},
        id="seed-rediss",
    ),
    pytest.param(
        "sentinel://h1:26379/0;sentinel://h2:26379/0;sentinel://h3:26379/0",
        {"transport_options": {"master_name": "mymaster", "min_other_sentinels": 1,
                               "sentinel_kwargs": {"socket_timeout": 0.1}}},
        SentinelBackend,
        {"host": ABSENT, "port": ABSENT, "db": 0, "password": None, "connection_class": ABSENT,
         "hosts": [{"host": f"h{i}", "port": 26379, "db": 0, "password": None} for i in (1, 2, 3)]},
        id="seed-sentinel",
    ),
    # --- redis:// forms
    pytest.param(
        "redis://localhost", {}, RedisBackend,
        {"host": "localhost", "port": 6379, "db": 0, "password": None, "socket_timeout": 120.0,
         "socket_connect_timeout": None, "retry_on_timeout": False, "max_connections": None, "client_name": None,
         "socket_keepalive": ABSENT, "health_check_interval": ABSENT, "username": ABSENT},
        id="defaults",
    ),
    pytest.param("REDIS://h:1", {}, RedisBackend, {"host": "h", "port": 1}, id="scheme-case-insensitive"),
    pytest.param("redis://h:1/2", {}, RedisBackend, {"host": "h", "port": 1, "db": 2}, id="db-from-path"),
    pytest.param("redis://127.0.0.1:1/15", {}, RedisBackend, {"host": "127.0.0.1", "db": 15}, id="ipv4"),
    pytest.param("redis://[::1]:1/0", {}, RedisBackend, {"host": "::1", "port": 1}, id="ipv6"),
    pytest.param("redis://h:1?db=3", {}, RedisBackend, {"db": 3}, id="db-from-query"),
    pytest.param("redis://h:1/", {}, RedisBackend, {"db": 0}, id="empty-path-db0"),
    pytest.param("redis://user:pw@h:1/0", {}, RedisBackend, {"username": "user", "password": "pw"}, id="user-pw"),
    pytest.param("redis://user@h:1", {}, RedisBackend, {"username": "user", "password": None}, id="lone-user"),
    pytest.param(
        "redis://:p%40ss%3Aw%2Fd%3B%25@h:1/0", {}, RedisBackend, {"password": "p@ss:w/d;%"}, id="pw-percent-encoded",
    ),
    pytest.param("redis://us%40er:pw@h:1", {}, RedisBackend, {"username": "us@er"}, id="user-percent-encoded"),
    pytest.param("redis://:@h:1", {}, RedisBackend, {"password": None, "username": ABSENT}, id="empty-userinfo"),
    pytest.param("", {}, RedisBackend, {"host": "localhost", "port": 6379, "db": 0}, id="empty-url-defaults"),
    pytest.param(None, {}, RedisBackend, {"host": "localhost", "port": 6379, "db": 0}, id="no-url-defaults"),
    # --- coerced query parameters
    pytest.param(
        "redis://h:1/0?socket_timeout=1.5&socket_connect_timeout=2&max_connections=7&health_check_interval=5"
        "&retry_on_timeout=true&socket_keepalive=true&client_name=worker-1", {}, RedisBackend,
        {"socket_timeout": 1.5, "socket_connect_timeout": 2.0, "max_connections": 7, "health_check_interval": 5.0,
         "retry_on_timeout": True, "socket_keepalive": True, "client_name": "worker-1"},
        id="query-coerced",
    ),
    pytest.param("redis://h:1?retry_on_timeout=yes", {}, RedisBackend, {"retry_on_timeout": True}, id="bool-yes"),
    pytest.param("redis://h:1?retry_on_timeout=1", {}, RedisBackend, {"retry_on_timeout": True}, id="bool-1"),
    pytest.param("redis://h:1?retry_on_timeout=FALSE", {}, RedisBackend, {"retry_on_timeout": False}, id="bool-FALSE"),
    pytest.param(
        "redis://h:1?socket_keepalive=false", {}, RedisBackend, {"socket_keepalive": ABSENT}, id="keepalive-only-true",
    ),
    pytest.param(
        "redis://h:1?health_check_interval=0", {}, RedisBackend, {"health_check_interval": ABSENT},
        id="health-check-0-is-off",
    ),
    pytest.param("redis://h:1?socket_timeout=3", {}, RedisBackend, {"socket_timeout": 3.0}, id="timeout-int-text"),
    pytest.param("redis://h:1?client_name=a%20b", {}, RedisBackend, {"client_name": "a b"}, id="client-name-decoded"),
    # --- rediss:// and each ssl_cert_reqs spelling
    *[
        pytest.param(
            f"rediss://h:1/0?ssl_cert_reqs={spelling}", {}, RedisBackend,
            {"connection_class": SSL_CLS, "ssl_cert_reqs": mode}, id=f"cert-reqs-{spelling}",
        )
        for spelling, mode in [
            ("required", ssl.CERT_REQUIRED), ("optional", ssl.CERT_OPTIONAL), ("none", ssl.CERT_NONE),
            ("CERT_REQUIRED", ssl.CERT_REQUIRED), ("CERT_OPTIONAL", ssl.CERT_OPTIONAL), ("CERT_NONE", ssl.CERT_NONE),
        ]
    ],
    *[
        pytest.param(
            "rediss://h:1/0", {"ssl": {"ssl_cert_reqs": constant}}, RedisBackend,
            {"connection_class": SSL_CLS, "ssl_cert_reqs": constant}, id=f"ssl-dict-constant-{constant.name}",
        )
        for constant in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL, ssl.CERT_NONE)
    ],
    pytest.param(
        "rediss://h:1/0", {"ssl": {"ssl_cert_reqs": 2}}, RedisBackend, {"ssl_cert_reqs": ssl.CERT_REQUIRED},
        id="ssl-dict-int-constant",
    ),
    pytest.param(
        "rediss://h:1/0?ssl_cert_reqs=none", {}, RedisBackend, {"ssl_check_hostname": False},
        id="cert-none-no-hostname-check",
    ),
    pytest.param(
        "rediss://h:1/0?ssl_cert_reqs=required&ssl_ca_certs=%2Ftmp%2Fmy%20certs%2Fca.pem"
        "&ssl_certfile=%2Ftmp%2Fclient%2Bcert.pem&ssl_keyfile=%2Ftmp%2Fk%25ey.pem", {}, RedisBackend,
        {"ssl_ca_certs": "/tmp/my certs/ca.pem", "ssl_certfile": "/tmp/client+cert.pem",
         "ssl_keyfile": "/tmp/k%ey.pem"},
        id="ssl-paths-percent-decoded",
    ),
    pytest.param(
        "rediss://h:1/0",
        {"ssl": {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem",
                 "ssl_keyfile": "/k.pem"}},
        RedisBackend,
        {"connection_class": SSL_CLS, "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem",
         "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"},
        id="ssl-dict",
    ),
    pytest.param(
        "rediss://h:1/0?ssl_cert_reqs=none", {"ssl": {"ssl_cert_reqs": "required"}}, RedisBackend,
        {"ssl_cert_reqs": ssl.CERT_REQUIRED}, id="ssl-dict-beats-query",
    ),
    pytest.param(
        None, {"host": "h", "ssl": {"ssl_cert_reqs": "required"}}, RedisBackend,
        {"host": "h", "connection_class": SSL_CLS, "ssl_cert_reqs": ssl.CERT_REQUIRED}, id="ssl-dict-without-url",
    ),
    # --- Unix sockets
    pytest.param(
        "socket:///tmp/r.sock", {}, RedisBackend,
        {"path": "/tmp/r.sock", "db": 0, "connection_class": UNIX_CLS, "host": ABSENT, "port": ABSENT,
         "socket_connect_timeout": ABSENT},
        id="socket",
    ),
    pytest.param("socket:///tmp/r.sock?virtual_host=3", {}, RedisBackend, {"db": 3}, id="socket-virtual-host"),
    pytest.param(
        "socket:///tmp/r.sock?virtual_host=/3", {}, RedisBackend, {"db": 3}, id="socket-virtual-host-slash-as-celery",
    ),
    pytest.param(
        "socket:///tmp/r.sock?virtual_host=", {}, RedisBackend, {"db": 0}, id="socket-virtual-host-blank-as-celery",
    ),
    pytest.param(
        "socket:///tmp/r.sock?virtual_host=", {"db": 5}, RedisBackend, {"db": 5}, id="socket-virtual-host-blank-db",
    ),
    pytest.param(
        "redis+socket:///tmp/r.sock?virtual_host=2", {}, RedisBackend,
        {"path": "/tmp/r.sock", "db": 2, "connection_class": UNIX_CLS}, id="redis+socket",
    ),
    pytest.param(
        "unix:///tmp/r.sock?db=4", {}, RedisBackend, {"path": "/tmp/r.sock", "db": 4, "connection_class": UNIX_CLS},
        id="unix-db",
    ),
    pytest.param("socket://localhost/tmp/r.sock", {}, RedisBackend, {"path": "/tmp/r.sock"}, id="socket-localhost"),
    pytest.param("socket://:pw@/tmp/r.sock", {}, RedisBackend, {"password": "pw"}, id="socket-password"),
    pytest.param(
        "socket:///tmp/my%20dir/r.sock", {}, RedisBackend, {"path": "/tmp/my dir/r.sock"}, id="socket-path-decoded",
    ),
    pytest.param(
        "socket:///tmp/r.sock?socket_keepalive=true", {}, RedisBackend, {"socket_keepalive": ABSENT},
        id="socket-drops-keepalive",
    ),
    # --- sentinel://
    pytest.param(
        "sentinel://h1", MASTER, SentinelBackend, {"hosts": [{"host": "h1", "port": 26379, "db": 0, "password": None}]},
        id="sentinel-one-node-default-port",
    ),
    pytest.param(
        "sentinel://:pw@h1:26379/2;sentinel://:pw@h2:26380/2", MASTER, SentinelBackend,
        {"db": 2, "password": "pw", "hosts": [{"host": "h1", "port": 26379, "db": 2, "password": "pw"},
                                              {"host": "h2", "port": 26380, "db": 2, "password": "pw"}]},
        id="sentinel-password-db",
    ),
    pytest.param("sentinel://h1;", MASTER, SentinelBackend, {"hosts": [{"host": "h1", "port": 26379, "db": 0,
                                                                         "password": None}]},
                 id="sentinel-trailing-semicolon"),
    pytest.param(
        "sentinel://h1:26379;sentinel://h2:26379", {**MASTER, "ssl": {"ssl_cert_reqs": "required"}},
        SentinelBackend, {"connection_class": SENTINEL_SSL_CLS, "ssl_cert_reqs": ssl.CERT_REQUIRED},
        id="sentinel-ssl-dict",
    ),
    pytest.param(
        "sentinel://h1:26379?ssl_cert_reqs=required&ssl_ca_certs=%2Fca.pem", MASTER, SentinelBackend,
        {"connection_class": SENTINEL_SSL_CLS, "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"},
        id="sentinel-ssl-query",
    ),
    pytest.param(
        "sentinel://u:pw@h1:26379?socket_timeout=2", MASTER, SentinelBackend,
        {"username": "u", "socket_timeout": 2.0,
         "hosts": [{"host": "h1", "port": 26379, "db": 0, "password": "pw", "username": "u"}]},
        id="sentinel-username-query",
    ),
]


@pytest.mark.parametrize(("url", "options", "cls", "expected"), ACCEPTED_CASES)
def test_accepted_url(url: Optional[str], options: dict[str, Any], cls: type, expected: dict[str, Any]) -> None:
    with build(url, **options) as backend:
        assert type(backend) is cls
        check_params(backend.connparams, expected)


# (url, options, regex the ConfigError message must match)
REJECTED_CASES = [
    # --- schemes
    pytest.param("http://h:1", {}, f"accepted schemes: {ACCEPTED}", id="unknown-scheme"),
    pytest.param("amqp://guest@h//", {}, f"accepted schemes: {ACCEPTED}", id="amqp-scheme"),
    pytest.param("h:6379", {}, "no scheme", id="no-scheme"),
    pytest.param(" redis://h", {}, "no scheme", id="leading-space"),
    # --- ssl_cert_reqs
    pytest.param("rediss://h:1/0", {}, "ssl_cert_reqs", id="rediss-missing-cert-reqs"),
    pytest.param("rediss://h:1/0?ssl_ca_certs=/ca.pem", {}, "ssl_cert_reqs", id="rediss-ca-but-no-cert-reqs"),
    pytest.param("rediss://h:1/0?ssl_cert_reqs=", {}, "ssl_cert_reqs", id="cert-reqs-empty"),
    pytest.param("rediss://h:1/0?ssl_cert_reqs=Required", {}, "ssl_cert_reqs.*'Required'", id="cert-reqs-Required"),
    pytest.param("rediss://h:1/0?ssl_cert_reqs=bogus", {}, "ssl_cert_reqs.*'bogus'", id="cert-reqs-bogus"),
    pytest.param("rediss://h:1/0?ssl_cert_reqs=2", {}, "ssl_cert_reqs", id="cert-reqs-number-text"),
    pytest.param("rediss://h:1/0", {"ssl": {"ssl_cert_reqs": "bogus"}}, "ssl_cert_reqs", id="ssl-dict-bogus"),
    pytest.param("rediss://h:1/0", {"ssl": {"ssl_cert_reqs": 7}}, "ssl_cert_reqs", id="ssl-dict-int-7"),
    pytest.param("rediss://h:1/0", {"ssl": {"ssl_cert_reqs": True}}, "ssl_cert_reqs", id="ssl-dict-bool"),
    pytest.param("rediss://h:1/0", {"ssl": {"ssl_ca_certs": "/ca"}}, "ssl_cert_reqs", id="ssl-dict-missing-reqs"),
    pytest.param("rediss://h:1/0", {"ssl": {"cert_reqs": "required"}}, "unknown ssl option.*cert_reqs",
                 id="ssl-dict-unknown-key"),
    pytest.param("rediss://h:1/0", {"ssl": "yes"}, "ssl must be a dict", id="ssl-not-dict"),
    pytest.param(
        "rediss://h:1/0?ssl_cert_reqs=none&ssl_check_hostname=true", {}, "ssl_check_hostname",
        id="cert-none-with-hostname-check",
    ),
    # --- SSL with redis:// -> use rediss://
    pytest.param("redis://h:1/0?ssl_cert_reqs=required", {}, "rediss://", id="redis-with-ssl-query"),
    pytest.param("redis://h:1/0?ssl_ca_certs=%2Fca.pem", {}, "rediss://", id="redis-with-ssl-ca"),
    pytest.param("redis://h:1/0", {"ssl": {"ssl_cert_reqs": "required"}}, "rediss://", id="redis-with-ssl-dict"),
    pytest.param("redis://h:1/0", {"ssl": True}, "rediss://", id="redis-with-ssl-true"),
    pytest.param("socket:///tmp/r.sock?ssl_cert_reqs=required", {}, "TLS", id="socket-with-ssl"),
    # --- sentinel
    pytest.param("sentinel://h1:26379,sentinel://h2:26379", MASTER, "';'", id="sentinel-comma-urls"),
    pytest.param("sentinel://h1:26379,h2:26379", MASTER, "';'", id="sentinel-comma-hosts"),
    pytest.param("sentinel://h1:26379;sentinel://h2:26379", {}, "master_name", id="sentinel-no-master-name"),
    pytest.param("sentinel://h1:26379", {"transport_options": {"master_name": ""}}, "master_name",
                 id="sentinel-empty-master-name"),
    pytest.param("sentinel://h1:26379;redis://h2:6379", MASTER, "every node", id="sentinel-mixed-schemes"),
    pytest.param("sentinel://h1/1;sentinel://h2/2", MASTER, "disagree on db", id="sentinel-nodes-disagree"),
    pytest.param("sentinel://:26379", MASTER, "needs a host", id="sentinel-no-host"),
    pytest.param("sentinel://h1?foo=1", MASTER, "'foo'", id="sentinel-unknown-query"),
    # --- unknown query parameters, named
    pytest.param("redis://h:1/0?foo=bar", {}, "unknown URL query parameter 'foo'", id="unknown-query"),
    pytest.param("redis://h:1/0?password=x", {}, "'password'", id="password-in-query"),
    pytest.param("redis://h:1/0?ssl=true", {}, "'ssl'", id="ssl-in-query"),
    pytest.param("redis://h:1/0?Socket_Timeout=1", {}, "'Socket_Timeout'", id="query-name-case-sensitive"),
    # --- values that do not parse, naming the part
    pytest.param("redis://h:1/0?socket_timeout=abc", {}, "'socket_timeout'.*'abc'", id="socket-timeout-abc"),
    pytest.param("redis://h:1/0?socket_timeout=nan", {}, "'socket_timeout'", id="socket-timeout-nan"),
    pytest.param("redis://h:1/0?socket_timeout=1e309", {}, "'socket_timeout'", id="socket-timeout-inf"),
    pytest.param("redis://h:1/0?socket_timeout=0", {}, "socket_timeout", id="socket-timeout-0"),
    pytest.param("redis://h:1/0?socket_timeout=-1", {}, "socket_timeout", id="socket-timeout-negative"),
    pytest.param("redis://h:1/0?socket_connect_timeout=x", {}, "'socket_connect_timeout'", id="connect-timeout-x"),
    pytest.param("redis://h:1/0?max_connections=x", {}, "'max_connections'.*'x'", id="max-connections-x"),
    pytest.param("redis://h:1/0?max_connections=1.5", {}, "'max_connections'", id="max-connections-float"),
    pytest.param("redis://h:1/0?max_connections=-1", {}, "'max_connections'", id="max-connections-negative"),
    pytest.param("redis://h:1/0?max_connections=0", {}, "max_connections", id="max-connections-0-url"),
    pytest.param("redis://h:1/0?max_connections=%C2%B2", {}, "'max_connections'", id="max-connections-superscript"),
    pytest.param("redis://h:1/0?health_check_interval=soon", {}, "'health_check_interval'", id="health-soon"),
    pytest.param("redis://h:1/0?retry_on_timeout=maybe", {}, "'retry_on_timeout'.*'maybe'", id="retry-maybe"),
    pytest.param("redis://h:1/0?socket_keepalive=maybe", {}, "'socket_keepalive'", id="keepalive-maybe"),
    pytest.param("redis://h:1/0?client_name=", {}, "'client_name'", id="client-name-empty"),
    pytest.param("redis://h:99999/0", {}, "port.*99999", id="port-99999"),
    pytest.param("redis://h:0/0", {}, "port", id="port-0"),
    pytest.param("redis://h:abc/0", {}, "port.*'abc'", id="port-abc"),
    pytest.param("redis://h:/0", {}, "port", id="port-empty"),
    pytest.param("redis://h:%C2%B2/0", {}, "port", id="port-encoded-superscript"),
    pytest.param("redis://h:1/x", {}, "path.*database number.*'/x'", id="db-x"),
    pytest.param("redis://h:1/0/1", {}, "database number", id="db-two-segments"),
    pytest.param("redis://h:1/-1", {}, "database number", id="db-negative"),
    pytest.param("redis://h:1/1?db=2", {}, "twice", id="db-path-and-query"),
    pytest.param("redis://h:1?db=x", {}, "'db'", id="db-query-x"),
    pytest.param("redis://h:1?virtual_host=1", {}, "virtual_host is only for Unix socket", id="virtual-host-tcp"),
    pytest.param("socket:///tmp/r.sock?virtual_host=x", {}, "'virtual_host'", id="virtual-host-x"),
    pytest.param("socket:///tmp/r.sock?virtual_host=/", {}, "'virtual_host'.*'/'", id="virtual-host-slash-only"),
    pytest.param("socket:///tmp/r.sock?virtual_host=/-1", {}, "'virtual_host'", id="virtual-host-negative"),
    pytest.param("socket:///tmp/r.sock?virtual_host=1&db=2", {}, "once", id="virtual-host-and-db"),
    pytest.param("socket://somehost/tmp/r.sock", {}, "socket path, not a host", id="socket-with-host"),
    pytest.param("socket://", {}, "socket path", id="socket-no-path"),
    pytest.param("unix:///", {}, "socket path", id="unix-root-path"),
    # --- malformed URLs
    pytest.param("redis://h:1/0?socket_timeout=1&socket_timeout=2", {}, "more than once", id="duplicate-query"),
    pytest.param("redis://h:1/0?socket_timeout", {}, "query is malformed", id="query-no-equals"),
    pytest.param("redis://h:1/0#frag", {}, "fragment", id="fragment"),
    pytest.param("redis://h o:1/0", {}, "whitespace", id="whitespace"),
    pytest.param("redis://h\n:1/0", {}, "control", id="newline"),
    pytest.param("redis://h!x:1/0", {}, "host", id="bad-host"),
    pytest.param("redis://[::1:1/0", {}, "IPv6", id="ipv6-unclosed"),
    pytest.param("redis://[zz]:1/0", {}, "IPv6", id="ipv6-invalid"),
    pytest.param("redis://a:b:c/0", {}, "malformed", id="two-colons"),
    pytest.param("redis://h1:1,h2:2/0", {}, "malformed", id="comma-hosts-ports"),
    pytest.param("redis://h1,h2/0", {}, "','", id="comma-hosts"),
    pytest.param("sentinel://;;", MASTER, "needs a host", id="sentinel-empty-nodes"),
    # --- class does not fit the scheme
    pytest.param(123, {}, "must be a str", id="url-not-str"),
]


@pytest.mark.parametrize(("url", "options", "match"), REJECTED_CASES)
def test_rejected_url(url: Any, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        backend_from_url(url, **options)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("cls", "url", "match"),
    [
        (RedisBackend, "sentinel://h1:26379", "SentinelBackend"),
        (SentinelBackend, "redis://h:1/0", "sentinel://"),
        (SentinelBackend, None, "sentinel://"),
    ],
)
def test_class_must_fit_scheme(cls: type, url: Optional[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cls(url, **MASTER)


def test_ssl_error_messages_are_the_module_constants() -> None:
    with pytest.raises(ConfigError) as info:
        backend_from_url("redis://h:1/0?ssl_cert_reqs=required")
    assert str(info.value) == E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH
    with pytest.raises(ConfigError) as info:
        backend_from_url("rediss://h:1/0")
    assert str(info.value) == E_REDIS_SSL_CERT_REQS_MISSING_INVALID


def test_backend_from_url_picks_class_by_scheme() -> None:
    for url in ("redis://h:1", "rediss://h:1?ssl_cert_reqs=required", "socket:///r.sock", "redis+socket:///r.sock",
                "unix:///r.sock"):
        with build(url) as backend:
            assert type(backend) is RedisBackend
    with build("sentinel://h1:1;sentinel://h2:2", **MASTER) as backend:
        assert type(backend) is SentinelBackend
        assert isinstance(backend, RedisBackend)


# --- as_uri / repr masking ----------------------------------------------------------------------

MASKING_CASES = [
    ("redis://:secret@localhost:6379/0", {}, "redis://:**@localhost:6379/0"),
    ("redis://user:secret@h:1/0", {}, "redis://user:**@h:1/0"),
    ("redis://user@h:1/0", {}, "redis://user@h:1/0"),
    ("redis://h:1/0", {}, "redis://h:1/0"),
    (
        "rediss://:pw@host:6379/1?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/path/ca.pem", {},
        "rediss://:**@host:6379/1?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/path/ca.pem",
    ),
    ("socket://:secret@/tmp/r.sock?virtual_host=2", {}, "socket://:**@/tmp/r.sock?virtual_host=2"),
    ("redis+socket://:secret@/tmp/r.sock", {}, "redis+socket://:**@/tmp/r.sock"),
    ("unix://:secret@/tmp/r.sock", {}, "unix://:**@/tmp/r.sock"),
    (
        "sentinel://:secret@h1:26379;sentinel://u:secret@h2:26379", MASTER,
        "sentinel://:**@h1:26379;sentinel://u:**@h2:26379",
    ),
    ("redis://:s%40cret@h:1/0", {}, "redis://:**@h:1/0"),
    (None, {"host": "h", "port": 1, "db": 2, "password": "secret"}, "redis://:**@h:1/2"),
    (None, {"host": "h", "port": 1, "username": "u", "password": "secret"}, "redis://u:**@h:1/0"),
    (None, {"host": "h", "username": "u"}, "redis://u@h:6379/0"),
    (None, {"host": "h", "password": "secret", "ssl": {"ssl_cert_reqs": "required"}}, "rediss://:**@h:6379/0"),
]


@pytest.mark.parametrize(("url", "options", "expected"), MASKING_CASES)
def test_as_uri_masks_password(url: Optional[str], options: dict[str, Any], expected: str) -> None:
    with build(url, **options) as backend:
        assert backend.as_uri() == expected
        assert "secret" not in backend.as_uri()
        assert "secret" not in repr(backend)
        assert expected in repr(backend)
        if url is not None:
            assert backend.as_uri(include_password=True) == url
        elif "password" in options:
            assert options["password"] in backend.as_uri(include_password=True)


def test_masked_hides_query_password() -> None:
    assert masked("redis://h:1/0?password=secret&db=1") == "redis://h:1/0?password=**&db=1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s%40cret@h:1/0", ("s%40cret", "s@cret")),
        ("redis://user:pw@h:1/0", ("pw",)),
        ("redis://user@h:1/0", ()),
        ("redis://h:1/0?password=q", ("q",)),
        ("redis://:p@ss@h:1/0", ("p@ss",)),  # the last @ ends the userinfo, as parse_url splits it
        ("sentinel://:a@h1;sentinel://:b@h2", ("a", "b")),
        ("not a url", ()),
    ],
)
def test_passwords_found_as_parse_url_splits(url: str, expected: tuple[str, ...]) -> None:
    assert passwords(url) == expected


# --- the pure parsing layer ---------------------------------------------------------------------


def test_parse_url_is_a_frozen_value_without_password_in_repr() -> None:
    parsed = parse_url("rediss://u:secret@h:1/2?ssl_cert_reqs=none")
    assert (parsed.scheme, parsed.host, parsed.port, parsed.username, parsed.password, parsed.path) == (
        "rediss", "h", 1, "u", "secret", "/2",
    )
    assert parsed.query == (("ssl_cert_reqs", "none"),)
    assert parsed.is_tls and not parsed.is_socket
    assert "secret" not in repr(parsed)
    with pytest.raises(AttributeError):
        parsed.host = "x"  # type: ignore[misc]


def test_path_db_and_split_sentinel_url() -> None:
    assert path_db("") is None and path_db("/") is None and path_db("/7") == 7
    assert split_sentinel_url("sentinel://a:1; sentinel://b:2 ;") == ["sentinel://a:1", "sentinel://b:2"]
    with pytest.raises(ConfigError, match="not a sentinel"):
        split_sentinel_url("redis://h")


# --- property tests -----------------------------------------------------------------------------

URL_FRAGMENTS = [
    *(s + "://" for s in SCHEMES), "http://", "REDIS://", "redis+", ":", "@", "/", "//", "?", "&", "=", ";", ",",
    "#", "%", "%2F", "%zz", "%40", "%C2%B2", "[", "]", "[::1]", "::", "localhost", "h1", "127.0.0.1", "6379",
    "26379", "99999", "0", "-1", "1.5", "nan", "inf", "1e309", "true", "maybe", "²", "٣", " ", "\x00", "\n", "é",
    "ssl_cert_reqs", "required", "CERT_NONE", "optional", "Required", "ssl_ca_certs", "ssl_check_hostname",
    "virtual_host", "db", "socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval",
    "retry_on_timeout", "socket_keepalive", "client_name", "password", "foo", "/tmp/r.sock",
]
URLISH = st.lists(
    st.one_of(st.sampled_from(URL_FRAGMENTS), st.text("abc019:/@?&=;%.-_[]", max_size=6)), max_size=14
).map("".join)
EXTRA_OPTIONS = st.sampled_from(
    [{}, MASTER, {"ssl": {"ssl_cert_reqs": "required"}}, {**MASTER, "ssl": {"ssl_cert_reqs": "none"}}]
)


def _build_or_config_error(url: str, options: dict[str, Any]) -> None:
    try:
        backend = backend_from_url(url, **options)
    except ConfigError:
        return
    with backend:
        assert backend._pool is None
        assert isinstance(backend.connparams, dict)
        backend.as_uri()
        repr(backend)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_builds_or_raises_config_error(text: str) -> None:
    _build_or_config_error(text, {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["", "redis://", "rediss://", "sentinel://", "socket://", "unix://"]), URLISH, EXTRA_OPTIONS)
def test_urlish_text_builds_or_raises_config_error(prefix: str, text: str, options: dict[str, Any]) -> None:
    _build_or_config_error(prefix + text, options)


QUERY_NAMES = st.sampled_from(
    ["db", "virtual_host", "socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval",
     "retry_on_timeout", "socket_keepalive", "client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
     "ssl_keyfile", "ssl_ca_path", "ssl_check_hostname", "foo"]
)
QUERY_VALUES = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "1.5", "1e309", "nan", "inf", "true", "no", "maybe", "required", "none",
                     "CERT_OPTIONAL", "%2Fca.pem", "%zz", "%C2%B2", "٣"]),
    st.text(max_size=5).map(lambda text: quote(text, safe="")),
)
STRUCTURED = st.builds(
    "{}://{}{}{}?{}".format,
    st.sampled_from(["redis", "rediss", "socket", "unix", "sentinel"]),
    st.sampled_from(["", ":pw@", "u:pw@", "u@"]),
    st.sampled_from(["h:1", "", "[::1]:1", "h1:26379;sentinel://h2:26380"]),
    st.sampled_from(["", "/", "/0", "/3", "/tmp/r.sock"]),
    st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES).map("=".join), max_size=4).map("&".join),
)


@settings(max_examples=300, deadline=None)
@given(STRUCTURED, EXTRA_OPTIONS)
def test_structured_url_builds_or_raises_config_error(url: str, options: dict[str, Any]) -> None:
    _build_or_config_error(url, options)

PASSWORDS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=24)
USERS = st.one_of(st.just(""), st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6))
FORMS = {
    # form: (URL template with {auth}, options)
    "redis": ("redis://{auth}@db.example:1/3", {}),
    "rediss": ("rediss://{auth}@db.example:1/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fca.pem", {}),
    "socket": ("socket://{auth}@/run/r.sock?virtual_host=1", {}),
    "unix": ("unix://{auth}@/run/r.sock", {}),
    "sentinel": ("sentinel://{auth}@s1:26379;sentinel://{auth}@s2:26380", MASTER),
}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FORMS)), USERS, PASSWORDS)
def test_as_uri_never_shows_the_password(form: str, user: str, password: str) -> None:
    template, options = FORMS[form]
    shown = template.format(auth=f"{user}:**")
    encoded = quote(password, safe="")
    # A password that is a substring of the masked URL itself proves nothing.
    assume(password not in shown and encoded not in shown)
    url = template.format(auth=f"{user}:{encoded}")
    with build(url, **options) as backend:
        assert backend.connparams["password"] == password
        assert backend.as_uri() == shown
        assert backend.as_uri(include_password=True) == url
        for text in (backend.as_uri(), repr(backend), str(backend)):
            assert password not in text and encoded not in text


@settings(max_examples=100, deadline=None)
@given(USERS, PASSWORDS)
def test_as_uri_without_url_never_shows_the_password(user: str, password: str) -> None:
    shown = f"redis://{user + ':' if user else ':'}**@h:1/0"
    assume(password not in shown)
    with build(None, host="h", port=1, username=user or None, password=password) as backend:
        assert backend.as_uri() == shown
        assert password not in repr(backend)


def test_public_constants_exported() -> None:
    assert "man in the middle" in redisresults.W_REDIS_SSL_CERT_NONE
    assert "man in the middle" in redisresults.W_REDIS_SSL_CERT_OPTIONAL
