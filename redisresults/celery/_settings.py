"""What the shared redisresults core is built from: the connection Celery's own ``RedisBackend`` worked out.

Celery parses ``result_backend`` and the ``redis_*`` settings into ``connparams`` (redis-py keyword arguments) with
its own precedence rules; the drop-in takes that result as it is, so every configuration keeps the meaning it has
with the stock backend (``redis_backend_use_ssl`` with ``redis://``, ``redis_socket_timeout``,
``redis_max_connections``, ...). A key redisresults cannot honour is a ``ConfigError`` naming it, never a silent drop.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote

import redis

import redisresults
from redisresults import ConfigError

from ._sharded import core_url

#: connparams keys that go to redisresults unchanged (``None`` = not given, so redisresults' default applies).
_DIRECT = (
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
    "credential_provider",
)
_SSL_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_ca_path")
#: Celery's client identification (redis-py ``CLIENT SETINFO``): redisresults' pool identifies itself.
_IDENTIFICATION = ("driver_info", "lib_name", "lib_version")
#: The transport options that change what the core subscribes to or where it connects.
_TRANSPORT_KEYS = ("global_keyprefix",)
_SENTINEL_TRANSPORT_KEYS = ("master_name", "min_other_sentinels", "sentinel_kwargs")
#: What redisresults can decode, by kombu content type.
_CODECS = {
    "application/json": "json",
    "application/x-msgpack": "msgpack",
    "application/x-python-serialize": "pickle",
}
_CERT_REQS = {"CERT_REQUIRED": ssl.CERT_REQUIRED, "CERT_OPTIONAL": ssl.CERT_OPTIONAL, "CERT_NONE": ssl.CERT_NONE}


@dataclass(frozen=True)
class CoreSpec:
    """How to build one core: a URL only where redisresults needs one (Unix socket, Sentinel nodes), options."""

    kind: str  # "redis", "sentinel" or "cluster"
    url: Optional[str]
    options: Mapping[str, Any]

    def key(self) -> tuple[Any, ...]:
        """Equal for equal settings, so every Celery-side backend with them shares one core."""
        return (self.kind, self.url, _freeze(self.options))

    def build(self) -> redisresults.RedisBackend:
        return redisresults.backend_from_url(self.url, **self.options)


def core_spec(
    connparams: Mapping[str, Any],
    *,
    serializer: str,
    accept: Iterable[str],
    transport_options: Optional[Mapping[str, Any]],
) -> CoreSpec:
    """The core for a Celery ``RedisBackend``'s ``connparams``, result serializer, accept list and transport options.

    The core always publishes in full (``max_publish_size=None``: no reference messages a stock Celery waiter would
    never be woken by) and keeps no ready-meta cache of its own (Celery caches SUCCESS only, and a FAILURE that a
    re-run overwrites must not be served from a cache).
    """
    params = dict(connparams)
    hosts = params.pop("hosts", None)
    connection_class = params.pop("connection_class", None)
    path = params.pop("path", None)
    for name in _IDENTIFICATION:
        params.pop(name, None)
    options: dict[str, Any] = {"max_publish_size": None, "result_cache_max": 0}
    for name in _DIRECT:
        value = params.pop(name, None)
        if value is not None:
            options[name] = value
    ssl_options = {name: params.pop(name) for name in _SSL_KEYS if name in params}
    if params.get("decode_responses"):
        raise ConfigError(
            "decode_responses=True cannot be used with the redisresults drop-in: results are bytes "
            "(and Celery's result_compression needs them undecoded)"
        )
    params.pop("decode_responses", None)
    if params:
        raise ConfigError(
            f"the redisresults drop-in does not support the connection setting(s) {', '.join(sorted(params))} "
            "(from the result_backend URL's query or redis_backend_use_ssl)"
        )
    if _is_tls(connection_class) or ssl_options:
        options["ssl"] = _ssl_dict(ssl_options)
    options["serializer"], options["accept"] = _codecs(serializer, accept)
    transport = dict(transport_options or {})
    wanted = _TRANSPORT_KEYS + (_SENTINEL_TRANSPORT_KEYS if hosts is not None else ())
    picked = {name: transport[name] for name in wanted if transport.get(name) is not None}
    if picked:
        options["transport_options"] = picked
    if hosts is not None:
        for name in ("host", "port"):
            options.pop(name, None)
        return CoreSpec("sentinel", _sentinel_url(hosts), options)
    if path is not None or _is_socket(connection_class):
        if not path:
            raise ConfigError("a Unix socket result backend needs a socket path")
        for name in ("host", "port", "socket_connect_timeout", "socket_keepalive"):
            options.pop(name, None)
        return CoreSpec("redis", "socket://" + quote(str(path)), options)
    return CoreSpec("redis", None, options)


def cluster_spec(
    url: str,
    connparams: Mapping[str, Any],
    *,
    serializer: str,
    accept: Iterable[str],
    transport_options: Optional[Mapping[str, Any]],
) -> CoreSpec:
    """The core for a cluster URL: its startup nodes, plus what Celery parsed from the first node's URL and its
    settings (credentials, timeouts, ``redis_max_connections`` per node, TLS)."""
    spec = core_spec(connparams, serializer=serializer, accept=accept, transport_options=transport_options)
    options = dict(spec.options)
    db = options.pop("db", 0)
    if db:
        raise ConfigError(f"Redis Cluster has only database 0; db={db} cannot be used with redis+cluster://")
    for name in ("host", "port"):
        options.pop(name, None)
    return CoreSpec("cluster", core_url(url, tls="ssl" in options), options)


def _is_tls(connection_class: Any) -> bool:
    # Sentinel over TLS uses SentinelManagedSSLConnection, itself a redis.SSLConnection.
    return isinstance(connection_class, type) and issubclass(connection_class, redis.SSLConnection)


def _is_socket(connection_class: Any) -> bool:
    return isinstance(connection_class, type) and issubclass(connection_class, redis.UnixDomainSocketConnection)


def _ssl_dict(ssl_options: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's TLS keys as redisresults' ``ssl`` option (Celery already turned ``ssl_cert_reqs`` into a constant)."""
    result = dict(ssl_options)
    reqs = result.get("ssl_cert_reqs")
    if isinstance(reqs, str):
        result["ssl_cert_reqs"] = _CERT_REQS.get(reqs, reqs)
    return result


def _codecs(serializer: str, accept: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """redisresults' serializer and accept list for Celery's (content types or names); others are left out."""
    names = {name: name for name in _CODECS.values()}
    chosen = names.get(serializer) or _CODECS.get(serializer)
    if chosen is None:
        raise ConfigError(
            f"result_serializer {serializer!r} cannot be read by redisresults' drainer; "
            f"use one of: {', '.join(sorted(names))}"
        )
    readable = sorted({name for item in accept if (name := _CODECS.get(item) or names.get(item)) is not None})
    if chosen not in readable:
        raise ConfigError(
            f"result_accept_content does not allow the result serializer {serializer!r}, "
            "so no result could be read back"
        )
    return chosen, tuple(readable)


def _sentinel_url(hosts: Iterable[Mapping[str, Any]]) -> str:
    """``sentinel://h1:p1;sentinel://h2:p2``: only the nodes' addresses (the rest is passed as options)."""
    nodes = []
    for node in hosts:
        host = str(node.get("host") or "localhost")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = node.get("port") or 26379
        nodes.append(f"sentinel://{host}:{int(port)}")
    if not nodes:
        raise ConfigError("a sentinel:// result backend needs at least one sentinel node")
    return ";".join(nodes)


def _freeze(value: Any) -> Any:
    """A hashable stand-in for ``value``: mappings and sequences by content, other objects by identity."""
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_freeze(item) for item in value))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(_freeze(item)) for item in value)))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value

