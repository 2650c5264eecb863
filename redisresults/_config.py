"""Options, URL and Celery settings folded into one validated plain value.

One precedence rule everywhere: an explicit argument beats a URL value, which beats the default.
Everything here is pure (no sockets); the backend turns ``Config`` into a connection pool.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Optional

import redis
import redis.sentinel

from ._exceptions import ConfigError
from ._url import (
    SENTINEL_SCHEMES,
    ParsedURL,
    parse_url,
    path_db,
    scheme_of,
    split_sentinel_url,
)

W_REDIS_SSL_CERT_NONE = (
    "Setting ssl_cert_reqs=CERT_NONE when connecting to redis means that redisresults will not validate "
    "the identity of the redis server when connecting. This leaves you vulnerable to man in the middle attacks."
)
W_REDIS_SSL_CERT_OPTIONAL = (
    "Setting ssl_cert_reqs=CERT_OPTIONAL when connecting to redis means that redisresults might not validate "
    "the identity of the redis server when connecting. This leaves you vulnerable to man in the middle attacks."
)
E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH = (
    "SSL connection parameters have been provided but the URL scheme is redis://. "
    "A Redis SSL connection URL should use the scheme rediss://."
)
E_REDIS_SSL_CERT_REQS_MISSING_INVALID = (
    "A rediss:// URL must have parameter ssl_cert_reqs and this must be set to "
    "CERT_REQUIRED, CERT_OPTIONAL, or CERT_NONE (or required, optional, none)"
)

DEFAULT_SOCKET_TIMEOUT = 120.0
DEFAULT_EXPIRES = 86400
MAX_VALUE_SIZE = 536870912
DEFAULT_PUBLISH_LIMIT = 1024 * 1024
DEFAULT_CACHE_MAX = 1024
CONCURRENCY_MODES = ("auto", "thread", "gevent")
DEFAULT_RETRY_POLICY: Mapping[str, float] = {
    "max_retries": 20,
    "interval_start": 0.0,
    "interval_step": 0.2,
    "interval_max": 1.0,
    "timeout": 20.0,
}

SSL_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_ca_path")
_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "CERT_REQUIRED": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "CERT_NONE": ssl.CERT_NONE,
}

# Query parameters a URL may carry, with the kind of value each takes.
_QUERY_KINDS = {
    "db": "db",
    "virtual_host": "db",
    "socket_timeout": "timeout",
    "socket_connect_timeout": "timeout",
    "max_connections": "posint",
    "health_check_interval": "interval",
    "retry_on_timeout": "bool",
    "socket_keepalive": "bool",
    "client_name": "str",
    "ssl_cert_reqs": "cert_reqs",
    "ssl_ca_certs": "str",
    "ssl_certfile": "str",
    "ssl_keyfile": "str",
    "ssl_ca_path": "str",
    "ssl_check_hostname": "bool",
}
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}

TRANSPORT_OPTION_KEYS = (
    "master_name",
    "min_other_sentinels",
    "sentinel_kwargs",
    "global_keyprefix",
    "retry_policy",
    "result_chord_ordered",
    "visibility_timeout",
)
OPTION_NAMES = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "max_connections",
    "socket_timeout",
    "socket_connect_timeout",
    "retry_on_timeout",
    "socket_keepalive",
    "health_check_interval",
    "client_name",
    "ssl",
    "transport_options",
    "expires",
    "serializer",
    "accept",
    "max_value_size",
    "max_publish_size",
    "result_cache_max",
    "concurrency",
    "credential_provider",
)


@dataclass(frozen=True)
class Config:
    """Everything a backend needs, validated. ``connparams`` are redis-py pool kwargs."""

    kind: str  # "redis" or "sentinel"
    url: Optional[str] = field(repr=False)
    connparams: dict[str, Any] = field(repr=False)
    master_name: Optional[str] = None
    min_other_sentinels: int = 0
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    global_keyprefix: str = ""
    retry_policy: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_POLICY))
    expires: Optional[int] = DEFAULT_EXPIRES
    serializer: str = "json"
    accept: tuple[str, ...] = ("json",)
    max_value_size: int = MAX_VALUE_SIZE
    max_publish_size: Optional[int] = DEFAULT_PUBLISH_LIMIT
    result_cache_max: int = DEFAULT_CACHE_MAX
    concurrency: str = "auto"
    warnings: tuple[str, ...] = ()


def build_config(url: Optional[str] = None, **options: Any) -> Config:
    """Validate ``url`` and ``options`` into a ``Config``; every problem is a ConfigError naming it."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}")
    explicit = {name: value for name, value in options.items() if value is not None or name in _NONE_IS_VALUE}
    transport = _transport_options(explicit.pop("transport_options", None))
    ssl_opts = _ssl_dict(explicit.pop("ssl", None))

    if url is not None and url != "":
        kind = "sentinel" if scheme_of(url) in SENTINEL_SCHEMES else "redis"
    else:
        url = None
        kind = "redis"

    warnings: list[str] = []
    if kind == "sentinel":
        assert url is not None
        connparams = _sentinel_connparams(url, explicit, ssl_opts, warnings)
        master_name = transport.get("master_name")
        if not isinstance(master_name, str) or not master_name:
            raise ConfigError(
                "a sentinel:// backend needs transport_options={'master_name': '<name>'} "
                "(result_backend_transport_options in Celery)"
            )
    else:
        connparams = _redis_connparams(url, explicit, ssl_opts, warnings)
        master_name = transport.get("master_name")

    serializer, accept = _serializer_and_accept(explicit.get("serializer"), explicit.get("accept"))
    return Config(
        kind=kind,
        url=url,
        connparams=connparams,
        master_name=master_name,
        min_other_sentinels=_int_option("min_other_sentinels", transport.get("min_other_sentinels", 0), 0),
        sentinel_kwargs=dict(transport.get("sentinel_kwargs") or {}),
        global_keyprefix=_keyprefix(transport.get("global_keyprefix")),
        retry_policy=_retry_policy(transport.get("retry_policy")),
        expires=_expires(explicit.get("expires", DEFAULT_EXPIRES)),
        serializer=serializer,
        accept=accept,
        max_value_size=_int_option("max_value_size", explicit.get("max_value_size", MAX_VALUE_SIZE), 1),
        max_publish_size=_publish_limit(explicit.get("max_publish_size", DEFAULT_PUBLISH_LIMIT)),
        result_cache_max=_int_option("result_cache_max", explicit.get("result_cache_max", DEFAULT_CACHE_MAX), -1),
        concurrency=_concurrency(explicit.get("concurrency", "auto")),
        warnings=tuple(warnings),
    )


# Options where an explicit None means something (not "unset").
_NONE_IS_VALUE = frozenset({"expires", "max_publish_size", "socket_timeout"})


def _redis_connparams(
    url: Optional[str], explicit: dict[str, Any], ssl_opts: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    parsed = parse_url(url) if url is not None else None
    if parsed is not None and parsed.scheme == "sentinel":
        raise ConfigError("use SentinelBackend (or backend_from_url) for sentinel:// URLs")
    from_url = url_values(parsed) if parsed is not None else {}
    values = _merge(from_url, explicit)
    connparams = _common_connparams(values)

    query_ssl = {k: from_url[k] for k in SSL_KEYS if k in from_url}
    wants_ssl = bool(ssl_opts) or bool(query_ssl) or (parsed is not None and parsed.is_tls)
    if parsed is not None and parsed.scheme == "redis" and (ssl_opts or query_ssl):
        raise ConfigError(E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH)

    if parsed is not None and parsed.is_socket:
        if wants_ssl:
            raise ConfigError(f"TLS parameters cannot be used with a {parsed.scheme}:// Unix socket URL")
        for key in ("host", "port", "socket_connect_timeout", "socket_keepalive"):
            connparams.pop(key, None)
        connparams["path"] = parsed.path
        connparams["connection_class"] = redis.UnixDomainSocketConnection
    elif wants_ssl:
        connparams["connection_class"] = redis.SSLConnection
        _apply_ssl(connparams, {**query_ssl, **ssl_opts}, warnings)
    return connparams


def _sentinel_connparams(
    url: str, explicit: dict[str, Any], ssl_opts: dict[str, Any], warnings: list[str]
) -> dict[str, Any]:
    nodes = [parse_url(node) for node in split_sentinel_url(url)]
    node_values = [url_values(node) for node in nodes]
    hosts: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    for node, values in zip(nodes, node_values):
        if node.host is None:
            raise ConfigError("every sentinel node needs a host, e.g. sentinel://10.0.0.1:26379")
        for key, value in values.items():
            if key in ("host", "port"):
                continue
            if key in shared and shared[key] != value:
                raise ConfigError(f"sentinel nodes disagree on {key}; give it once (or as an option)")
            shared[key] = value
        entry: dict[str, Any] = {"host": node.host, "port": node.port if node.port is not None else 26379}
        for key in ("db", "password", "username"):
            if key in values:
                entry[key] = values[key]
        hosts.append(entry)
    values = _merge(shared, explicit)
    connparams = _common_connparams(values)
    connparams.pop("host", None)
    connparams.pop("port", None)
    for entry in hosts:
        entry.setdefault("db", connparams["db"])
        entry.setdefault("password", connparams["password"])
        if "username" in connparams:
            entry.setdefault("username", connparams["username"])
    connparams["hosts"] = hosts
    query_ssl = {k: shared[k] for k in SSL_KEYS if k in shared}
    if ssl_opts or query_ssl:
        connparams["connection_class"] = redis.sentinel.SentinelManagedSSLConnection
        _apply_ssl(connparams, {**query_ssl, **ssl_opts}, warnings)
    return connparams


def url_values(parsed: ParsedURL) -> dict[str, Any]:
    """The option values a URL provides (host, port, userinfo, db, coerced query)."""
    values: dict[str, Any] = {}
    if parsed.host is not None:
        values["host"] = parsed.host
    if parsed.port is not None:
        values["port"] = parsed.port
    if parsed.username is not None:
        values["username"] = parsed.username
    if parsed.password is not None:
        values["password"] = parsed.password
    query = parsed.query_dict
    if parsed.is_socket:
        if parsed.path.strip("/") == "":
            raise ConfigError("socket URL needs a path")
        if "db" in query and "virtual_host" in query:
            raise ConfigError("give the database once: virtual_host or db, not both")
    else:
        if "virtual_host" in query:
            raise ConfigError(
                f"virtual_host is only for Unix socket URLs; with {parsed.scheme}:// write the database as the path"
            )
        db = path_db(parsed.path)
        if db is not None:
            if "db" in query:
                raise ConfigError("the database is given twice: in the URL path and as ?db=")
            values["db"] = db
    for name, raw in query.items():
        kind = _QUERY_KINDS.get(name)
        if kind is None:
            raise ConfigError(
                f"unknown URL query parameter {name!r}; accepted: {', '.join(sorted(_QUERY_KINDS))}"
            )
        target = "db" if name == "virtual_host" else name
        values[target] = _coerce_query(name, kind, raw)
    return values


def _coerce_query(name: str, kind: str, raw: str) -> Any:
    if raw == "":
        raise ConfigError(f"URL query parameter {name!r} has no value")
    try:
        if kind == "db":
            if not raw.isdigit() or not raw.isascii():
                raise ValueError
            return int(raw)
        if kind == "posint":
            if not raw.isdigit() or not raw.isascii():
                raise ValueError
            return int(raw)
        if kind in ("timeout", "interval"):
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == "bool":
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError
        if kind == "cert_reqs":
            return raw
        return raw
    except ValueError:
        expected = {
            "db": "a database number",
            "posint": "a whole number",
            "timeout": "a number of seconds",
            "interval": "a number of seconds",
            "bool": "true or false",
        }[kind]
        raise ConfigError(f"URL query parameter {name!r} must be {expected}, got {raw!r}") from None


def _merge(from_url: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit beats URL beats default — the only precedence rule."""
    merged = dict(from_url)
    merged.update(explicit)
    return merged


def _common_connparams(values: Mapping[str, Any]) -> dict[str, Any]:
    connparams: dict[str, Any] = {
        "host": _str_option("host", values.get("host", "localhost"), allow_none=False),
        "port": _port(values.get("port", 6379)),
        "db": _int_option("db", values.get("db", 0), 0),
        "password": _str_option("password", values.get("password"), allow_none=True),
        "max_connections": _max_connections(values.get("max_connections")),
        "socket_timeout": _timeout("socket_timeout", values.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT)),
        "socket_connect_timeout": _timeout("socket_connect_timeout", values.get("socket_connect_timeout")),
        "retry_on_timeout": _bool_option("retry_on_timeout", values.get("retry_on_timeout", False)),
        "client_name": _str_option("client_name", values.get("client_name"), allow_none=True),
    }
    username = _str_option("username", values.get("username"), allow_none=True)
    if username:
        connparams["username"] = username
    if _bool_option("socket_keepalive", values.get("socket_keepalive", False)):
        connparams["socket_keepalive"] = True
    interval = values.get("health_check_interval")
    if interval is not None:
        number = _number_option("health_check_interval", interval, minimum=0)
        if number:
            connparams["health_check_interval"] = number
    provider = values.get("credential_provider")
    if provider is not None:
        if not isinstance(provider, redis.CredentialProvider):
            raise ConfigError("credential_provider must be an instance of redis.CredentialProvider")
        connparams["credential_provider"] = provider
        connparams.pop("username", None)
        connparams["password"] = None
    return connparams


def _apply_ssl(connparams: dict[str, Any], ssl_opts: Mapping[str, Any], warnings: list[str]) -> None:
    if "ssl_cert_reqs" not in ssl_opts:
        raise ConfigError(E_REDIS_SSL_CERT_REQS_MISSING_INVALID)
    reqs = cert_reqs(ssl_opts["ssl_cert_reqs"])
    connparams["ssl_cert_reqs"] = reqs
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path"):
        if ssl_opts.get(key) is not None:
            connparams[key] = _str_option(key, ssl_opts[key], allow_none=False)
    if "ssl_check_hostname" in ssl_opts:
        connparams["ssl_check_hostname"] = _bool_option("ssl_check_hostname", ssl_opts["ssl_check_hostname"])
    elif reqs == ssl.CERT_NONE:
        connparams["ssl_check_hostname"] = False
    if reqs == ssl.CERT_NONE:
        warnings.append(W_REDIS_SSL_CERT_NONE)
        if connparams.get("ssl_check_hostname"):
            raise ConfigError("ssl_check_hostname=true cannot be combined with ssl_cert_reqs=none")
    elif reqs == ssl.CERT_OPTIONAL:
        warnings.append(W_REDIS_SSL_CERT_OPTIONAL)


def cert_reqs(value: Any) -> ssl.VerifyMode:
    """Map the accepted ``ssl_cert_reqs`` spellings to an ``ssl.VerifyMode``; anything else is a ConfigError."""
    if isinstance(value, str):
        if value in _CERT_REQS:
            return _CERT_REQS[value]
    elif isinstance(value, int) and not isinstance(value, bool):
        if value in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            return ssl.VerifyMode(value)
    raise ConfigError(f"{E_REDIS_SSL_CERT_REQS_MISSING_INVALID}; got {_short(value)}")


def _ssl_dict(value: Any) -> dict[str, Any]:
    if value is None or value is False:
        return {}
    if value is True:
        return {"ssl_cert_reqs": "required"}
    if not isinstance(value, Mapping):
        raise ConfigError(f"ssl must be a dict of {', '.join(SSL_KEYS)}; got {type(value).__name__}")
    unknown = sorted(set(value) - set(SSL_KEYS))
    if unknown:
        raise ConfigError(f"unknown ssl option(s) {', '.join(map(str, unknown))}; accepted: {', '.join(SSL_KEYS)}")
    return dict(value)


def _transport_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"transport_options must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(TRANSPORT_OPTION_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown transport option(s) {', '.join(map(str, unknown))}; accepted: {', '.join(TRANSPORT_OPTION_KEYS)}"
        )
    sentinel_kwargs = value.get("sentinel_kwargs")
    if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, Mapping):
        raise ConfigError("transport option sentinel_kwargs must be a dict")
    master_name = value.get("master_name")
    if master_name is not None and not isinstance(master_name, str):
        raise ConfigError("transport option master_name must be a str")
    return dict(value)


def _keyprefix(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"global_keyprefix must be a str, got {type(value).__name__}")
    return value if value[-1] in ":_-." else value + "_"


def _retry_policy(value: Any) -> dict[str, float]:
    policy = dict(DEFAULT_RETRY_POLICY)
    if value is None:
        return policy
    if not isinstance(value, Mapping):
        raise ConfigError("retry_policy must be a dict")
    for key, item in value.items():
        if key not in DEFAULT_RETRY_POLICY:
            raise ConfigError(f"unknown retry_policy key {key!r}; accepted: {', '.join(DEFAULT_RETRY_POLICY)}")
        if key == "max_retries" and item is None:
            policy[key] = math.inf
            continue
        policy[key] = _number_option(f"retry_policy[{key!r}]", item, minimum=0)
    return policy


def _expires(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        seconds = _number_option("expires", value, minimum=0)
    if seconds < 0:
        raise ConfigError(f"expires must be >= 0 seconds (or None for never), got {seconds}")
    if seconds == 0:
        return None
    return math.ceil(seconds)


def _publish_limit(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _int_option("max_publish_size", value, 1)


def _serializer_and_accept(serializer: Any, accept: Any) -> tuple[str, tuple[str, ...]]:
    from ._serialization import check_writable, get_serializer, normalize_accept

    name = "json" if serializer is None else serializer
    if not isinstance(name, str):
        raise ConfigError(f"serializer must be a str, got {type(name).__name__}")
    get_serializer(name)
    accepted = normalize_accept(accept)
    check_writable(name, accepted)
    return name, tuple(sorted(accepted))


def _concurrency(value: Any) -> str:
    if value not in CONCURRENCY_MODES:
        raise ConfigError(f"concurrency must be one of {', '.join(CONCURRENCY_MODES)}, got {_short(value)}")
    return str(value)


def _port(value: Any) -> int:
    port = _int_option("port", value, 1)
    if port > 65535:
        raise ConfigError(f"port must be from 1 to 65535, got {port}")
    return port


def _max_connections(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _int_option("max_connections", value, 1)


def _timeout(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    number = _number_option(name, value, minimum=0)
    if number == 0:
        raise ConfigError(f"{name} must be a positive number of seconds or None (no limit), got 0")
    return float(number)


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        else:
            raise ConfigError(f"{name} must be a whole number, got {_short(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _number_option(name: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {_short(value)}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {_short(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool_option(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false, got {_short(value)}")


def _str_option(name: str, value: Any, *, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (value == "" and not allow_none):
        kind = "a non-empty str" if not allow_none else "a str or None"
        shown = "<hidden>" if name == "password" else _short(value)
        raise ConfigError(f"{name} must be {kind}, got {shown}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
