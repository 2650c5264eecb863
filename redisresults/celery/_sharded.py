"""What Celery's Redis backend does differently on Redis Cluster (``redisresults+redis+cluster://``).

Stock Celery has no cluster result backend, so there is no stock worker to be byte-compatible with; the drop-in
keeps Celery's code and changes only what a cluster cannot run as written:

- a store is ``SET`` + ``SPUBLISH`` in one script on the key's primary — redisresults' own sharded store script,
  whose guard against replacing a stored SUCCESS is the check Celery's ``_store_result`` makes before it stores,
  made atomic (Celery's ``MULTI SET+PUBLISH`` would announce on the classic channel, which the drainer's shard
  subscriptions never see);
- ``MGET`` of many results is one MGET per slot (``mget_nonatomic``);
- a chord's working keys (``.j .t .s .d .c``) carry a hash tag, ``{celery-taskset-meta-<gid>}.j``, so they hash to
  the slot of the group key itself, ``celery-taskset-meta-<gid>``, and Celery's chord scripts, which touch all of
  them at once, stay legal. Task and group keys keep their names, so redisresults' own ``ClusterBackend`` reads
  them unchanged;
- a slot moving between primaries (CLUSTERDOWN, TRYAGAIN, an uncovered slot) counts as a connection error, so
  Celery's own store retries ride out a failover.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

import redis.exceptions

from redisresults import ConfigError
from redisresults._url import CLUSTER_SCHEMES, split_cluster_url

#: Errors that mean "a slot is moving or a primary is being replaced": worth Celery's retry, like a lost link.
SLOT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)

_HASH_TAG = re.compile(rb"\{[^{}]+\}")


def is_cluster_url(url: Optional[str]) -> bool:
    return bool(url) and str(url).partition("://")[0].lower() in CLUSTER_SCHEMES


def celery_url(url: str) -> str:
    """The one-node URL Celery's own parser reads for a cluster URL: the first startup node as ``redis://``
    (``rediss://``), with the user, password, database and query of the first node that gives each, so Celery's
    rules (``ssl_cert_reqs`` required with ``rediss``, its TLS warnings, ``redis_*`` settings) apply unchanged.
    """
    nodes = [urlsplit(node) for node in split_cluster_url(url)]
    scheme = nodes[0].scheme.lower().replace("+cluster", "")
    userinfo = next((n.netloc.rpartition("@")[0] for n in nodes if "@" in n.netloc), "")
    path = next((n.path for n in nodes if n.path.strip("/")), "")
    query = next((n.query for n in nodes if n.query), "")
    address = nodes[0].netloc.rpartition("@")[2]
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{address}{path}{'?' + query if query else ''}"


def core_url(url: str, *, tls: bool) -> str:
    """The startup nodes for the core, addresses only (credentials and TLS come from Celery's parsed settings);
    ``tls`` (``redis_backend_use_ssl`` with ``redis+cluster://``, honoured as Celery honours it with
    ``redis://``) makes them ``rediss+cluster://``."""
    scheme = "rediss+cluster" if tls else url.partition("://")[0].lower()
    nodes = []
    for node in split_cluster_url(url):
        parts = urlsplit(node)
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigError(f"Redis Cluster has only database 0; {parts.path.strip('/')} cannot be used")
        nodes.append(f"{scheme}://{parts.netloc.rpartition('@')[2]}")
    return ";".join(nodes)


def tagged_group_key(group_key: bytes, suffix: bytes) -> bytes:
    """``{group_key}suffix``: a chord working key in the group key's slot (left as Celery names it when the
    group key already carries a hash tag, e.g. from ``global_keyprefix``: then every key hashes to that tag)."""
    if not suffix or _HASH_TAG.search(group_key):
        return group_key + suffix
    return b"{" + group_key + b"}" + suffix

