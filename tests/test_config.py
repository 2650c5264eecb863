"""Options, precedence, TLS warnings and Celery settings (API.md §1 options table).

One precedence rule: explicit argument > URL > default, where ``0``/``False`` are values. Backends
point at an unreachable port and ``.client`` is never touched: building must not connect.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from datetime import timedelta
from typing import Any, Optional

import celery
import pytest
import redis
import redis.sentinel

import redisresults
from redisresults import ConfigError, RedisBackend, SentinelBackend, backend_from_url, from_config
from redisresults._config import DEFAULT_RETRY_POLICY, build_config
from redisresults._keys import check_id, group_key, task_key

URL = "redis://:secret@127.0.0.1:1/2"  # port 1: nothing listens there
MASTER = {"master_name": "mymaster"}


def build(url: Optional[str] = URL, **options: Any) -> RedisBackend:
    backend = backend_from_url(url, **options)
    assert backend._pool is None and backend._client is None, "building a backend must not connect"
    return backend


def params(url: Optional[str] = URL, **options: Any) -> dict[str, Any]:
    with build(url, **options) as backend:
        return backend.connparams


# --- exact connparams -----------------------------------------------------------------------------


def test_connparams_exact_tcp() -> None:
    assert params("redis://:secret@localhost:6379/0") == {
        "host": "localhost",
        "port": 6379,
        "db": 0,
        "password": "secret",
        "max_connections": None,
        "socket_timeout": 120.0,
        "socket_connect_timeout": None,
        "retry_on_timeout": False,
        "client_name": None,
    }


def test_connparams_exact_tls() -> None:
    assert params("rediss://u:pw@host:6379/1?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/path/ca.pem") == {
        "host": "host",
        "port": 6379,
        "db": 1,
        "username": "u",
        "password": "pw",
        "max_connections": None,
        "socket_timeout": 120.0,
        "socket_connect_timeout": None,
        "retry_on_timeout": False,
        "client_name": None,
        "connection_class": redis.SSLConnection,
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/path/ca.pem",
    }


def test_connparams_exact_socket() -> None:
    assert params("socket:///var/run/redis.sock?virtual_host=4", max_connections=3) == {
        "path": "/var/run/redis.sock",
        "db": 4,
        "password": None,
        "max_connections": 3,
        "socket_timeout": 120.0,
        "retry_on_timeout": False,
        "client_name": None,
        "connection_class": redis.UnixDomainSocketConnection,
    }


def test_connparams_exact_sentinel() -> None:
    url = "sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0;sentinel://:pw@h3:26379/0"
    with build(url, transport_options=MASTER, ssl={"ssl_cert_reqs": "required"}) as backend:
        assert type(backend) is SentinelBackend
        assert backend.connparams == {
            "db": 0,
            "password": "pw",
            "max_connections": None,
            "socket_timeout": 120.0,
            "socket_connect_timeout": None,
            "retry_on_timeout": False,
            "client_name": None,
            "hosts": [{"host": f"h{i}", "port": 26379, "db": 0, "password": "pw"} for i in (1, 2, 3)],
            "connection_class": redis.sentinel.SentinelManagedSSLConnection,
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }


def test_connparams_is_a_copy() -> None:
    with build("sentinel://h1:26379", transport_options=MASTER) as backend:
        backend.connparams["db"] = 9
        backend.connparams["hosts"][0]["port"] = 1
        assert backend.connparams["db"] == 0
        assert backend.connparams["hosts"][0]["port"] == 26379


# --- precedence: explicit > URL > default ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "key", "expected"),
    [
        ("redis://h:1/2", {"db": 5}, "db", 5),
        ("redis://h:1/3", {"db": 0}, "db", 0),  # 0 is a value
        ("redis://h:1/3", {"db": None}, "db", 3),  # None means "not given"
        ("redis://h:1/3", {}, "db", 3),
        ("redis://h:1", {}, "db", 0),
        ("socket:///r.sock?virtual_host=3", {"db": 0}, "db", 0),
        ("redis://h:1/0", {"port": 2}, "port", 2),
        ("redis://h:1/0", {}, "port", 1),
        ("redis://h/0", {}, "port", 6379),
        ("redis://h:1/0", {"host": "other"}, "host", "other"),
        ("redis://:urlpw@h:1/0", {"password": "explicit"}, "password", "explicit"),
        ("redis://u:urlpw@h:1/0", {"username": "v"}, "username", "v"),
        ("redis://h:1/0?socket_timeout=5", {"socket_timeout": 7}, "socket_timeout", 7.0),
        ("redis://h:1/0?socket_timeout=5", {}, "socket_timeout", 5.0),
        ("redis://h:1/0?socket_timeout=5", {"socket_timeout": None}, "socket_timeout", None),  # None = no limit
        ("redis://h:1/0", {}, "socket_timeout", 120.0),
        ("redis://h:1/0?retry_on_timeout=true", {"retry_on_timeout": False}, "retry_on_timeout", False),
        ("redis://h:1/0?retry_on_timeout=true", {}, "retry_on_timeout", True),
        ("redis://h:1/0?max_connections=4", {"max_connections": 8}, "max_connections", 8),
        ("redis://h:1/0?max_connections=4", {}, "max_connections", 4),
        ("redis://h:1/0", {}, "max_connections", None),
        ("redis://h:1/0?client_name=url", {"client_name": "arg"}, "client_name", "arg"),
        ("redis://h:1/0?socket_connect_timeout=1", {"socket_connect_timeout": 2.5}, "socket_connect_timeout", 2.5),
        ("redis://h:1/0?health_check_interval=3", {"health_check_interval": 10}, "health_check_interval", 10),
        (None, {"host": "h", "port": 2, "db": 7}, "db", 7),
    ],
)
def test_precedence(url: Optional[str], options: dict[str, Any], key: str, expected: Any) -> None:
    assert params(url, **options)[key] == expected


def test_false_explicit_keepalive_beats_url_true() -> None:
    assert params("redis://h:1/0?socket_keepalive=true")["socket_keepalive"] is True
    assert "socket_keepalive" not in params("redis://h:1/0?socket_keepalive=true", socket_keepalive=False)
    assert params("redis://h:1/0", socket_keepalive=True)["socket_keepalive"] is True


def test_optional_keys_only_when_given() -> None:
    plain = params("redis://h:1/0")
    assert "username" not in plain and "socket_keepalive" not in plain and "health_check_interval" not in plain
    assert params("redis://h:1/0", username="u")["username"] == "u"
    assert params("redis://h:1/0", health_check_interval=2.5)["health_check_interval"] == 2.5
    # 0 is redis-py's "no health checks", so it is the same as not setting it.
    assert "health_check_interval" not in params("redis://h:1/0", health_check_interval=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": -3}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"max_connections": "many"}, "max_connections"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": "abc"}, "port"),
        ({"db": -1}, "db"),
        ({"db": 1.5}, "db"),
        ({"socket_timeout": 0}, "socket_timeout"),
        ({"socket_timeout": "abc"}, "socket_timeout"),
        ({"socket_timeout": float("inf")}, "socket_timeout"),
        ({"socket_connect_timeout": -1}, "socket_connect_timeout"),
        ({"retry_on_timeout": "maybe"}, "retry_on_timeout"),
        ({"retry_on_timeout": 2}, "retry_on_timeout"),
        ({"socket_keepalive": "sometimes"}, "socket_keepalive"),
        ({"health_check_interval": -1}, "health_check_interval"),
        ({"health_check_interval": True}, "health_check_interval"),
        ({"host": ""}, "host"),
        ({"host": 5}, "host"),
        ({"password": 123}, "password"),
        ({"client_name": 5}, "client_name"),
        ({"expires": -1}, "expires"),
        ({"expires": "soon"}, "expires"),
        ({"serializer": "yaml-ish"}, "yaml-ish"),
        ({"max_value_size": 0}, "max_value_size"),
        ({"concurrency": "fibers"}, "concurrency"),
        ({"transport_options": []}, "transport_options"),
        ({"transport_options": {"mastername": "x"}}, "mastername"),
        ({"transport_options": {"retry_policy": {"retries": 1}}}, "retries"),
        ({"transport_options": {"global_keyprefix": 5}}, "global_keyprefix"),
        ({"transport_options": {"sentinel_kwargs": "x"}}, "sentinel_kwargs"),
        ({"transport_options": {"min_other_sentinels": "two"}}, "min_other_sentinels"),
        ({"credential_provider": "not-a-provider"}, "credential_provider"),
        ({"socket_timout": 5}, "socket_timout"),
    ],
)
def test_invalid_option_names_it(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        backend_from_url(URL, **options)


def test_password_never_in_error_message() -> None:
    with pytest.raises(ConfigError) as info:
        backend_from_url(URL, password=["hunter2-secret"])
    assert "hunter2" not in str(info.value)


def test_other_options() -> None:
    config = build_config(URL)
    assert (config.expires, config.serializer, config.accept, config.max_value_size, config.concurrency) == (
        86400, "json", ("json",), 536870912, "auto",
    )
    assert dict(config.retry_policy) == dict(DEFAULT_RETRY_POLICY)
    assert build_config(URL, expires=None).expires is None
    assert build_config(URL, expires=0).expires is None
    assert build_config(URL, expires=timedelta(hours=1)).expires == 3600
    assert build_config(URL, expires=1.2).expires == 2  # rounded up: never expires early
    assert build_config(URL, accept=["json", "pickle"]).accept == ("json", "pickle")
    assert build_config(URL, transport_options={"global_keyprefix": "app"}).global_keyprefix == "app_"
    assert build_config(URL, transport_options={"global_keyprefix": "app:"}).global_keyprefix == "app:"
    policy = build_config(URL, transport_options={"retry_policy": {"max_retries": 3}}).retry_policy
    assert policy["max_retries"] == 3 and policy["interval_max"] == DEFAULT_RETRY_POLICY["interval_max"]
    sentinel = build_config(
        "sentinel://h1:1", transport_options={**MASTER, "min_other_sentinels": 1, "sentinel_kwargs": {"a": 1}}
    )
    assert (sentinel.kind, sentinel.master_name, sentinel.min_other_sentinels, sentinel.sentinel_kwargs) == (
        "sentinel", "mymaster", 1, {"a": 1},
    )


def test_pickle_serializer_must_be_accepted() -> None:
    with pytest.raises(ConfigError, match="pickle"):
        backend_from_url(URL, serializer="pickle")
    with build(URL, serializer="pickle", accept=["pickle", "json"]) as backend:
        assert backend.config.serializer == "pickle"


def test_credential_provider_replaces_username_and_password() -> None:
    provider = redis.UsernamePasswordCredentialProvider("u", "p")
    connparams = params("redis://x:y@h:1/0", credential_provider=provider)
    assert connparams["credential_provider"] is provider
    assert connparams["password"] is None and "username" not in connparams


# --- TLS warnings, logged through the library's logger ------------------------------------------------------------


def _tls_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records
        if record.name.startswith("redisresults") and record.levelno == logging.WARNING
        and record.getMessage() == "insecure_tls_setting"
    ]


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("rediss://h:1/0?ssl_cert_reqs=none", {}, redisresults.W_REDIS_SSL_CERT_NONE),
        ("rediss://h:1/0?ssl_cert_reqs=CERT_NONE", {}, redisresults.W_REDIS_SSL_CERT_NONE),
        ("rediss://h:1/0", {"ssl": {"ssl_cert_reqs": ssl.CERT_NONE}}, redisresults.W_REDIS_SSL_CERT_NONE),
        ("rediss://h:1/0?ssl_cert_reqs=optional", {}, redisresults.W_REDIS_SSL_CERT_OPTIONAL),
        ("rediss://h:1/0?ssl_cert_reqs=CERT_OPTIONAL", {}, redisresults.W_REDIS_SSL_CERT_OPTIONAL),
        ("sentinel://h1:1", {"transport_options": MASTER, "ssl": {"ssl_cert_reqs": "optional"}},
         redisresults.W_REDIS_SSL_CERT_OPTIONAL),
    ],
)
def test_insecure_tls_warns(
    url: str, options: dict[str, Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert build_config(url, **options).warnings == (message,)
    with caplog.at_level(logging.WARNING, logger="redisresults"):
        build(url, **options).close()
    records = _tls_warnings(caplog)
    assert len(records) == 1
    assert message in vars(records[0]).values()  # the text rides on the record as a field
    assert "man in the middle" in message


@pytest.mark.parametrize(
    "url", ["rediss://h:1/0?ssl_cert_reqs=required", "rediss://h:1/0?ssl_cert_reqs=CERT_REQUIRED", URL]
)
def test_verified_tls_does_not_warn(url: str, caplog: pytest.LogCaptureFixture) -> None:
    assert build_config(url).warnings == ()
    with caplog.at_level(logging.WARNING, logger="redisresults"):
        build(url).close()
    assert _tls_warnings(caplog) == []


def test_warning_constants_are_distinct_module_constants() -> None:
    from redisresults import _config

    assert redisresults.W_REDIS_SSL_CERT_NONE is _config.W_REDIS_SSL_CERT_NONE
    assert redisresults.W_REDIS_SSL_CERT_OPTIONAL is _config.W_REDIS_SSL_CERT_OPTIONAL
    assert redisresults.W_REDIS_SSL_CERT_NONE != redisresults.W_REDIS_SSL_CERT_OPTIONAL
    assert "W_REDIS_SSL_CERT_NONE" in redisresults.__all__ and "W_REDIS_SSL_CERT_OPTIONAL" in redisresults.__all__


# --- from_config with Celery's setting names ------------------------------------------------------


def test_from_config_plain_dict() -> None:
    settings = {
        "result_backend": "redis://:pw@127.0.0.1:1/2",
        "redis_max_connections": 5,
        "redis_socket_timeout": 3,
        "redis_socket_connect_timeout": 1,
        "redis_retry_on_timeout": True,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": 4,
        "redis_client_name": "worker",
        "redis_username": "u",
        "result_expires": None,
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "result_backend_transport_options": {"global_keyprefix": "pfx"},
        "result_extended": True,  # a Celery setting that does not matter here
        "broker_url": "amqp://guest@localhost//",  # not ours: ignored
        "worker_concurrency": 4,
        "task_acks_late": True,
    }
    with from_config(settings) as backend:
        assert type(backend) is RedisBackend
        assert backend._pool is None
        connparams = backend.connparams
        assert (connparams["host"], connparams["port"], connparams["db"], connparams["password"]) == (
            "127.0.0.1", 1, 2, "pw",
        )
        assert connparams["max_connections"] == 5
        assert connparams["socket_timeout"] == 3.0 and connparams["socket_connect_timeout"] == 1.0
        assert connparams["retry_on_timeout"] is True and connparams["socket_keepalive"] is True
        assert connparams["health_check_interval"] == 4 and connparams["client_name"] == "worker"
        assert connparams["username"] == "u"
        assert backend.config.expires is None  # result_expires=None: never expire
        assert backend.config.global_keyprefix == "pfx_"


def test_from_config_url_beats_settings_beat_defaults() -> None:
    settings = {"result_backend": "redis://h:1/3?socket_timeout=5", "redis_db": 7, "redis_socket_timeout": 9,
                "redis_host": "ignored", "redis_password": "fromsetting"}
    connparams = from_config(settings).connparams
    assert (connparams["host"], connparams["db"], connparams["socket_timeout"]) == ("h", 3, 5.0)
    assert connparams["password"] == "fromsetting"  # the URL has none, so the setting applies
    connparams = from_config({"redis_host": "h", "redis_port": 2, "redis_db": 4}).connparams
    assert (connparams["host"], connparams["port"], connparams["db"]) == ("h", 2, 4)


@pytest.mark.parametrize(
    "key",
    ["redis_max_conections", "result_expirse", "redis_hots", "result_backend_transport_option", "CELERY_REDIS_DBB"],
)
def test_from_config_unknown_setting_names_it(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_config({"result_backend": URL, key: 1})


def test_from_config_old_uppercase_names() -> None:
    with from_config(
        {"CELERY_RESULT_BACKEND": URL, "CELERY_TASK_RESULT_EXPIRES": 60, "CELERY_REDIS_MAX_CONNECTIONS": 3}
    ) as backend:
        assert backend.connparams["max_connections"] == 3 and backend.config.expires == 60


def test_from_config_picks_sentinel_and_socket() -> None:
    with from_config(
        {"result_backend": "sentinel://h1:26379;sentinel://h2:26379", "result_backend_transport_options": MASTER}
    ) as backend:
        assert type(backend) is SentinelBackend
    with pytest.raises(ConfigError, match="master_name"):
        from_config({"result_backend": "sentinel://h1:26379"})
    with from_config({"result_backend": "redis+socket:///tmp/r.sock?virtual_host=1"}) as backend:
        assert backend.connparams["path"] == "/tmp/r.sock" and backend.connparams["db"] == 1


def test_from_config_none_is_a_value_only_where_the_option_says_so() -> None:
    connparams = from_config({"result_backend": URL, "redis_socket_timeout": None, "redis_db": None}).connparams
    assert connparams["socket_timeout"] is None  # Celery: None = no timeout
    assert connparams["db"] == 2  # None = not set: the URL's db stays


def test_from_config_socket_virtual_host_with_celery_slash() -> None:
    with from_config({"result_backend": "redis+socket:///tmp/r.sock?virtual_host=/3"}) as backend:
        assert backend.connparams["db"] == 3
    with from_config({"result_backend": "redis+socket:///tmp/r.sock?virtual_host=", "redis_db": 4}) as backend:
        assert backend.connparams["db"] == 4  # a blank value is no value, as in Celery: the setting applies
    with pytest.raises(ConfigError, match="virtual_host"):
        from_config({"result_backend": "redis+socket:///tmp/r.sock?virtual_host=/"})


def test_from_config_accept_content_fallback() -> None:
    with from_config({"result_backend": URL, "accept_content": ["json", "msgpack"]}) as backend:
        assert backend.config.accept == ("json", "msgpack")
    with from_config(
        {"result_backend": URL, "accept_content": ["msgpack"], "result_accept_content": ["json"]}
    ) as backend:
        assert backend.config.accept == ("json",)


def test_from_config_rejects_non_mappings_and_bad_urls() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        from_config([("result_backend", URL)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="result_backend"):
        from_config({"result_backend": 5})
    with pytest.raises(ConfigError, match="accepted schemes"):
        from_config({"result_backend": "amqp://guest@h//"})


@pytest.fixture
def celery_app() -> Any:
    app = celery.Celery("redisresults-test-config", set_as_current=False)
    yield app
    app.close()


def test_from_config_real_celery_conf(celery_app: Any) -> None:
    celery_app.conf.result_backend = "redis://:pw@127.0.0.1:1/4"
    celery_app.conf.result_expires = None
    celery_app.conf.redis_max_connections = 11
    celery_app.conf.result_backend_transport_options = {"global_keyprefix": "app:"}
    with from_config(celery_app.conf) as backend:
        assert type(backend) is RedisBackend and backend._pool is None
        connparams = backend.connparams
        assert (connparams["db"], connparams["password"], connparams["max_connections"]) == (4, "pw", 11)
        assert connparams["socket_timeout"] == 120.0  # Celery's default, the same as ours
        assert backend.config.expires is None
        assert backend.config.global_keyprefix == "app:"
        assert backend.as_uri() == "redis://:**@127.0.0.1:1/4"


def test_real_celery_conf_defaults_do_not_beat_the_url(celery_app: Any) -> None:
    """app.conf always holds Celery's defaults (socket_timeout 120, keepalive False): the URL must still win."""
    celery_app.conf.result_backend = "redis://h:1/0?socket_timeout=5&socket_keepalive=true&retry_on_timeout=true"
    connparams = from_config(celery_app.conf).connparams
    assert connparams["socket_timeout"] == 5.0
    assert connparams["socket_keepalive"] is True and connparams["retry_on_timeout"] is True


def test_real_celery_conf_default_expires_is_one_day(celery_app: Any) -> None:
    celery_app.conf.result_backend = URL
    with from_config(celery_app.conf) as backend:
        assert backend.config.expires == 86400
        assert backend.config.accept == ("json",)


def test_real_celery_conf_unknown_setting(celery_app: Any) -> None:
    celery_app.conf.result_backend = URL
    celery_app.conf.redis_socket_timeot = 3
    with pytest.raises(ConfigError, match="redis_socket_timeot"):
        from_config(celery_app.conf)


def test_real_celery_conf_sentinel_with_ssl(celery_app: Any) -> None:
    celery_app.conf.result_backend = "sentinel://h1:26379;sentinel://h2:26379"
    celery_app.conf.result_backend_transport_options = MASTER
    celery_app.conf.redis_backend_use_ssl = {"ssl_cert_reqs": "CERT_REQUIRED", "ssl_ca_certs": "/ca.pem"}
    with from_config(celery_app.conf) as backend:
        assert type(backend) is SentinelBackend
        assert backend.connparams["connection_class"] is redis.sentinel.SentinelManagedSSLConnection
        assert backend.connparams["ssl_cert_reqs"] is ssl.CERT_REQUIRED


# --- ids -------------------------------------------------------------------------------------------------------------


def test_check_id_accepts_uuid_as_celery_writes_it() -> None:
    task_id = uuid.UUID("0b1f6a4e-5d3c-4b6a-9f1e-2a3b4c5d6e7f")
    checked = check_id("task", task_id)
    assert checked == "0b1f6a4e-5d3c-4b6a-9f1e-2a3b4c5d6e7f" and type(checked) is str
    assert task_key("", checked) == b"celery-task-meta-0b1f6a4e-5d3c-4b6a-9f1e-2a3b4c5d6e7f"
    assert group_key("app:", check_id("group", task_id)) == b"app:celery-taskset-meta-" + str(task_id).encode()
    assert check_id("task", "job-1") == "job-1"


@pytest.mark.parametrize(("value", "error"), [(5, TypeError), (b"id", TypeError), (None, TypeError), ("", ValueError)])
def test_check_id_rejects(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="task id"):
        check_id("task", value)
