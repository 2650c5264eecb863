"""redisresults: task results in Redis, awaited by any number of threads or greenlets without polling.

Celery-compatible keys and documents; one thread-safe backend with one connection pool; one
background drainer holding one Pub/Sub connection that routes results to per-task futures.
"""

from __future__ import annotations

from ._cluster import ClusterBackend
from ._config import W_REDIS_SSL_CERT_NONE, W_REDIS_SSL_CERT_OPTIONAL
from ._consumer import ResultConsumer, Watch
from ._exceptions import (
    AuthenticationFailed,
    BackendStoreError,
    CertificateRejected,
    ConfigError,
    ConnectionUnavailable,
    ContentDisallowed,
    DecodeError,
    DrainerError,
    EncodeError,
    PermissionDenied,
    PoolTimeout,
    RedisFailure,
    RedisResultsError,
    RemoteError,
    ResultTimeout,
    ServerError,
    UsageError,
)
from ._factory import backend_from_url, from_config
from ._meta import FAILURE, PENDING, READY_STATES, RETRY, REVOKED, STARTED, SUCCESS
from ._sentinel import SentinelBackend
from .backend import RedisBackend
from .result import AsyncResult, GroupResult, ResultSet

__version__ = "0.1.0"

__all__ = [
    "FAILURE",
    "PENDING",
    "READY_STATES",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "W_REDIS_SSL_CERT_NONE",
    "W_REDIS_SSL_CERT_OPTIONAL",
    "AsyncResult",
    "AuthenticationFailed",
    "BackendStoreError",
    "CertificateRejected",
    "ClusterBackend",
    "ConfigError",
    "ConnectionUnavailable",
    "ContentDisallowed",
    "DecodeError",
    "DrainerError",
    "EncodeError",
    "GroupResult",
    "PermissionDenied",
    "PoolTimeout",
    "RedisBackend",
    "RedisFailure",
    "RedisResultsError",
    "RemoteError",
    "ResultConsumer",
    "ResultSet",
    "ResultTimeout",
    "SentinelBackend",
    "ServerError",
    "UsageError",
    "Watch",
    "backend_from_url",
    "from_config",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "redisresults"
del _name, _obj
