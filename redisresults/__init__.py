"""redisresults: task results in Redis, awaited by any number of threads or greenlets without polling.

Celery-compatible keys and documents; one thread-safe backend with one connection pool; one
background drainer holding one Pub/Sub connection that routes results to per-task futures.
"""

from __future__ import annotations

from ._config import W_REDIS_SSL_CERT_NONE, W_REDIS_SSL_CERT_OPTIONAL
from ._consumer import ResultConsumer
from ._exceptions import (
    BackendStoreError,
    ConfigError,
    ConnectionUnavailable,
    ContentDisallowed,
    DecodeError,
    DrainerError,
    EncodeError,
    RedisResultsError,
    RemoteError,
    ResultTimeout,
    UsageError,
)
from ._meta import FAILURE, PENDING, READY_STATES, RETRY, REVOKED, STARTED, SUCCESS
from .backend import RedisBackend, SentinelBackend, backend_from_url, from_config
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
    "BackendStoreError",
    "ConfigError",
    "ConnectionUnavailable",
    "ContentDisallowed",
    "DecodeError",
    "DrainerError",
    "EncodeError",
    "GroupResult",
    "RedisBackend",
    "RedisResultsError",
    "RemoteError",
    "ResultConsumer",
    "ResultSet",
    "ResultTimeout",
    "SentinelBackend",
    "UsageError",
    "backend_from_url",
    "from_config",
]

for _name in ("BackendStoreError", "ConfigError", "ContentDisallowed", "DecodeError", "RedisResultsError",
              "RemoteError", "ResultTimeout", "ConnectionUnavailable", "DrainerError", "EncodeError", "UsageError",
              "RedisBackend", "SentinelBackend", "AsyncResult", "ResultSet", "GroupResult", "ResultConsumer"):
    globals()[_name].__module__ = "redisresults"
del _name
