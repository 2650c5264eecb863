"""Options and a URL folded into one validated plain value, ``Config``.

One precedence rule everywhere: an explicit argument beats a URL value, which beats the default
(``0`` and ``False`` are values; ``None`` means "not given" unless the option's row says it is a
value). What each option accepts is declared once, in ``_options``; which redis-py keys a scheme
needs is ``_connparams``. Everything here is pure (no sockets); the backend turns ``Config`` into a pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ._connparams import (
    E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH,
    W_REDIS_SSL_CERT_NONE,
    W_REDIS_SSL_CERT_OPTIONAL,
    cluster_connparams,
    redis_connparams,
    sentinel_connparams,
)
from ._exceptions import ConfigError
from ._options import (
    DEFAULT_RETRY_POLICY,
    E_REDIS_SSL_CERT_REQS_MISSING_INVALID,
    OPTION_NAMES,
    QUERY_OPTIONS,
    SSL_KEYS,
    TRANSPORT_OPTION_KEYS,
    cert_reqs,
    option,
)
from ._serialization import check_writable
from ._url import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    ParsedURL,
    parse_url,
    path_db,
    scheme_of,
    split_cluster_url,
    split_sentinel_url,
)

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "E_REDIS_SSL_CERT_REQS_MISSING_INVALID",
    "E_REDIS_SSL_PARAMS_AND_SCHEME_MISMATCH",
    "OPTION_NAMES",
    "SSL_KEYS",
    "TRANSPORT_OPTION_KEYS",
    "W_REDIS_SSL_CERT_NONE",
    "W_REDIS_SSL_CERT_OPTIONAL",
    "Config",
    "build_config",
    "cert_reqs",
    "url_values",
]

_TRANSPORT = "transport_options"


@dataclass(frozen=True)
class Config:
    """Everything a backend needs, validated. ``connparams`` are redis-py pool kwargs."""

    kind: str  # "redis", "sentinel" or "cluster"
    url: Optional[str] = field(repr=False)
    connparams: dict[str, Any] = field(repr=False)
    master_name: Optional[str] = None
    min_other_sentinels: int = option("min_other_sentinels", _TRANSPORT).default
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    global_keyprefix: str = option("global_keyprefix", _TRANSPORT).default
    retry_policy: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_POLICY))
    expires: Optional[int] = option("expires").default
    serializer: str = option("serializer").default
    accept: tuple[str, ...] = option("accept").default
    max_value_size: int = option("max_value_size").default
    max_publish_size: Optional[int] = option("max_publish_size").default
    result_cache_max: int = option("result_cache_max").default
    concurrency: str = option("concurrency").default
    warnings: tuple[str, ...] = ()


def build_config(url: Optional[str] = None, **options: Any) -> Config:
    """Validate ``url`` and ``options`` into a ``Config``; every problem is a ConfigError naming it."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}")
    explicit = {
        name: option(name).validate(value)
        for name, value in options.items()
        if value is not None or option(name).none_is_value
    }
    url = url if url != "" else None
    scheme = scheme_of(url) if url is not None else None
    if url is not None and scheme in SENTINEL_SCHEMES:
        kind = "sentinel"
        nodes = [parse_url(node) for node in split_sentinel_url(url)]
        node_values = [url_values(node) for node in nodes]
        shared = _shared_values(nodes, node_values)
        values = _resolve(explicit, shared)
        connparams, warnings = sentinel_connparams(values, nodes, node_values, _ssl_part(shared))
    elif url is not None and scheme in CLUSTER_SCHEMES:
        kind = "cluster"
        nodes = [parse_url(node) for node in split_cluster_url(url)]
        shared = _shared_values(nodes, [url_values(node) for node in nodes], what="cluster")
        _check_cluster(explicit, shared)
        values = _resolve(explicit, shared)
        connparams, warnings = cluster_connparams(values, nodes, _ssl_part(shared), tls=scheme == "rediss+cluster")
    else:
        kind = "redis"
        parsed = parse_url(url) if url is not None else None
        from_url = url_values(parsed) if parsed is not None else {}
        values = _resolve(explicit, from_url)
        connparams, warnings = redis_connparams(values, parsed, _ssl_part(from_url))

    transport: Mapping[str, Any] = values[_TRANSPORT]

    def sub(name: str) -> Any:
        return transport.get(name, option(name, _TRANSPORT).default)

    master_name = sub("master_name")
    if kind == "sentinel" and not master_name:
        raise ConfigError(
            "a sentinel:// backend needs transport_options={'master_name': '<name>'} "
            "(result_backend_transport_options in Celery)"
        )
    check_writable(values["serializer"], frozenset(values["accept"]))
    return Config(
        kind=kind,
        url=url,
        connparams=connparams,
        master_name=master_name,
        min_other_sentinels=sub("min_other_sentinels"),
        sentinel_kwargs=dict(sub("sentinel_kwargs")),
        global_keyprefix=sub("global_keyprefix"),
        retry_policy=dict(sub("retry_policy")),
        expires=values["expires"],
        serializer=values["serializer"],
        accept=values["accept"],
        max_value_size=values["max_value_size"],
        max_publish_size=values["max_publish_size"],
        result_cache_max=values["result_cache_max"],
        concurrency=values["concurrency"],
        warnings=warnings,
    )


def url_values(parsed: ParsedURL) -> dict[str, Any]:
    """The option values a URL provides (host, port, userinfo, db, the query), validated by their rows.

    Keys are option names, plus ``ssl_*`` names for the ``ssl`` dict's keys given in the query.
    """
    values: dict[str, Any] = {}
    for key in ("host", "port", "username", "password"):
        if getattr(parsed, key) is not None:
            values[key] = getattr(parsed, key)
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
        row = QUERY_OPTIONS.get(name)
        if row is None:
            raise ConfigError(f"unknown URL query parameter {name!r}; accepted: {', '.join(sorted(QUERY_OPTIONS))}")
        if raw == "":
            if name == "virtual_host":  # Celery drops blank query values: no database given, the default applies
                continue
            raise ConfigError(f"URL query parameter {name!r} has no value")
        values[row.name] = row.validate(raw, f"URL query parameter {name!r}")
    return values


def _resolve(explicit: Mapping[str, Any], from_url: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit beats URL beats default — the only precedence rule — for every keyword option."""
    values: dict[str, Any] = {}
    for name in OPTION_NAMES:
        if name in explicit:
            values[name] = explicit[name]
        elif name in from_url:
            values[name] = from_url[name]
        else:
            values[name] = option(name).default
    return values


def _shared_values(
    nodes: Sequence[ParsedURL], node_values: Sequence[Mapping[str, Any]], what: str = "sentinel"
) -> dict[str, Any]:
    """What every sentinel (or cluster startup) node's URL says beside its address; nodes must not disagree."""
    shared: dict[str, Any] = {}
    for node, given in zip(nodes, node_values):
        if node.host is None:
            example = "sentinel://10.0.0.1:26379" if what == "sentinel" else f"{node.scheme}://10.0.0.1:7000"
            raise ConfigError(f"every {what} node needs a host, e.g. {example}")
        for key, value in given.items():
            if key in ("host", "port"):
                continue
            if key in shared and shared[key] != value:
                raise ConfigError(f"{what} nodes disagree on {key}; give it once (or as an option)")
            shared[key] = value
    return shared


# Options a Redis Cluster has no use for: naming them is a mistake worth an error, not a silent no-op.
_NOT_FOR_CLUSTER = ("host", "port")
_NOT_FOR_CLUSTER_TRANSPORT = ("master_name", "min_other_sentinels", "sentinel_kwargs")


def _check_cluster(explicit: Mapping[str, Any], from_url: Mapping[str, Any]) -> None:
    """A cluster has one database (0), its nodes come from the URL, and it has no Sentinel."""
    given = sorted(name for name in _NOT_FOR_CLUSTER if name in explicit)
    transport = explicit.get(_TRANSPORT) or {}
    given += sorted(f"transport_options[{key!r}]" for key in _NOT_FOR_CLUSTER_TRANSPORT if key in transport)
    if given:
        raise ConfigError(
            f"option(s) {', '.join(given)} do not apply to Redis Cluster (the startup nodes come from the "
            "redis+cluster:// URL; there is no Sentinel)"
        )
    db = explicit.get("db", from_url.get("db", 0))
    if db != 0:
        raise ConfigError(f"Redis Cluster has only database 0; db={db} cannot be used with redis+cluster://")


def _ssl_part(from_url: Mapping[str, Any]) -> dict[str, Any]:
    return {key: from_url[key] for key in SSL_KEYS if key in from_url}
