"""Resolved option values -> the keyword arguments of redis-py's connection pool (``connparams``).

The values are already validated (by their rows in ``_options``); this module only decides which
redis-py keys a scheme needs: TLS classes, Unix-socket paths, Sentinel node lists, and the keys that
are sent only when set (``username``, ``socket_keepalive``, ``health_check_interval``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import redis
import redis.sentinel

from ._exceptions import ConfigError
from ._options import E_REDIS_SSL_CERT_REQS_MISSING_INVALID
from ._url import ParsedURL

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
SENTINEL_PORT = 26379
CLUSTER_PORT = 6379
_SOCKET_DROPS = ("host", "port", "socket_connect_timeout", "socket_keepalive")  # meaningless on a Unix socket
_SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")


def redis_connparams(
    values: Mapping[str, Any], parsed: Optional[ParsedURL], url_ssl: Mapping[str, Any]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(connparams, warnings)`` for a ``redis://``, ``rediss://`` or Unix-socket URL (or none)."""
    connparams = _common(values)
    ssl_opts = dict(values["ssl"] or {})
    if parsed is not None and parsed.scheme == "redis" and (ssl_opts or url_ssl):
        raise ConfigError(E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH)
    wants_ssl = bool(ssl_opts or url_ssl) or (parsed is not None and parsed.is_tls)
    if parsed is not None and parsed.is_socket:
        if wants_ssl:
            raise ConfigError(f"TLS parameters cannot be used with a {parsed.scheme}:// Unix socket URL")
        for key in _SOCKET_DROPS:
            connparams.pop(key, None)
        connparams["path"] = parsed.path
        connparams["connection_class"] = redis.UnixDomainSocketConnection
        return connparams, ()
    if not wants_ssl:
        return connparams, ()
    tls, warnings = _tls({**url_ssl, **ssl_opts})
    connparams["connection_class"] = redis.SSLConnection
    connparams.update(tls)
    return connparams, warnings


def sentinel_connparams(
    values: Mapping[str, Any], nodes: Sequence[ParsedURL], node_values: Sequence[Mapping[str, Any]],
    url_ssl: Mapping[str, Any],
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(connparams, warnings)`` for a ``sentinel://`` URL: no host/port, a ``hosts`` list of the nodes."""
    connparams = _common(values)
    connparams.pop("host", None)
    connparams.pop("port", None)
    hosts: list[dict[str, Any]] = []
    for node, given in zip(nodes, node_values):
        entry: dict[str, Any] = {"host": node.host, "port": node.port if node.port is not None else SENTINEL_PORT}
        for key in ("db", "password", "username"):
            if key in given:
                entry[key] = given[key]
        entry.setdefault("db", connparams["db"])
        entry.setdefault("password", connparams["password"])
        if "username" in connparams:
            entry.setdefault("username", connparams["username"])
        hosts.append(entry)
    connparams["hosts"] = hosts
    ssl_opts = {**url_ssl, **(values["ssl"] or {})}
    if not ssl_opts:
        return connparams, ()
    tls, warnings = _tls(ssl_opts)
    connparams["connection_class"] = redis.sentinel.SentinelManagedSSLConnection
    connparams.update(tls)
    return connparams, warnings


def cluster_connparams(
    values: Mapping[str, Any], nodes: Sequence[ParsedURL], url_ssl: Mapping[str, Any], *, tls: bool
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(connparams, warnings)`` for a ``redis+cluster://`` URL: no host/port/db, a ``startup_nodes`` list.

    The other keys are the per-node connection kwargs ``redis.cluster.RedisCluster`` hands every node's pool.
    """
    connparams = _common(values)
    for key in ("host", "port", "db"):
        connparams.pop(key, None)
    connparams["startup_nodes"] = [
        {"host": node.host, "port": node.port if node.port is not None else CLUSTER_PORT} for node in nodes
    ]
    ssl_opts = {**url_ssl, **(values["ssl"] or {})}
    if not tls and ssl_opts:
        raise ConfigError(
            "SSL connection parameters have been provided but the URL scheme is redis+cluster://. "
            "A Redis Cluster SSL connection URL should use the scheme rediss+cluster://."
        )
    if not tls:
        return connparams, ()
    secure, warnings = _tls(ssl_opts)
    connparams["connection_class"] = redis.SSLConnection
    connparams.update(secure)
    return connparams, warnings


def _common(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keys every pool gets, plus the ones redis-py should see only when set."""
    connparams: dict[str, Any] = {
        key: values[key]
        for key in ("host", "port", "db", "password", "max_connections", "socket_timeout",
                    "socket_connect_timeout", "retry_on_timeout", "client_name")
    }
    if values["username"]:
        connparams["username"] = values["username"]
    if values["socket_keepalive"]:
        connparams["socket_keepalive"] = True
    if values["health_check_interval"]:  # 0 is redis-py's "no health checks", the same as not set
        connparams["health_check_interval"] = values["health_check_interval"]
    if values["credential_provider"] is not None:
        connparams["credential_provider"] = values["credential_provider"]
        connparams.pop("username", None)
        connparams["password"] = None
    return connparams


def _tls(ssl_opts: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The TLS connparams from validated ``ssl_*`` values; a missing ``ssl_cert_reqs`` never means "insecure"."""
    if "ssl_cert_reqs" not in ssl_opts:
        raise ConfigError(E_REDIS_SSL_CERT_REQS_MISSING_INVALID)
    reqs = ssl_opts["ssl_cert_reqs"]
    tls: dict[str, Any] = {"ssl_cert_reqs": reqs}
    tls.update((key, ssl_opts[key]) for key in _SSL_FILES if key in ssl_opts)
    if "ssl_check_hostname" in ssl_opts:
        tls["ssl_check_hostname"] = ssl_opts["ssl_check_hostname"]
    elif reqs == ssl.CERT_NONE:
        tls["ssl_check_hostname"] = False
    if reqs == ssl.CERT_NONE:
        if tls["ssl_check_hostname"]:
            raise ConfigError("ssl_check_hostname=true cannot be combined with ssl_cert_reqs=none")
        return tls, (W_REDIS_SSL_CERT_NONE,)
    if reqs == ssl.CERT_OPTIONAL:
        return tls, (W_REDIS_SSL_CERT_OPTIONAL,)
    return tls, ()


def uri_of(params: Mapping[str, Any], include_password: bool) -> str:
    """A URL for connparams built without one (from options); the password shows as ``**`` unless asked for."""
    scheme = "rediss" if "ssl_cert_reqs" in params else "redis"
    auth = ""
    if params.get("password") is not None:
        shown = params["password"] if include_password else "**"
        auth = f"{params.get('username', '')}:{shown}@"
    elif params.get("username"):
        auth = f"{params['username']}@"
    if "path" in params:
        return f"socket://{auth}{params['path']}?virtual_host={params['db']}"
    host = params["host"]
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{scheme}://{auth}{host}:{params['port']}/{params['db']}"
