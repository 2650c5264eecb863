"""Retrying Redis calls that failed for a passing reason, within a bounded total time.

Connection drops, timeouts, READONLY (a demoted master after failover), LOADING and MASTERDOWN
are retried; everything else (auth, permissions, wrong type, protocol limits) fails at once.
This is the one boundary where redis-py errors become redisresults errors (``translate``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Callable, Optional, TypeVar

import redis.exceptions as rex

from ._exceptions import ConnectionUnavailable, RedisResultsError, certificate_rejected, translate
from ._log import get_logger

T = TypeVar("T")
log = get_logger()

_TRANSIENT_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS", "CLUSTERDOWN")
# Redis Cluster: a slot moving or a failover under way (redis-py strips the reply's code from these).
_TRANSIENT_CLUSTER = (rex.ClusterDownError, rex.TryAgainError, rex.AskError, rex.ClusterError,
                      rex.SlotNotCoveredError)


def is_transient(error: BaseException) -> bool:
    """True for errors a later attempt can cure (ours never: a pool timeout already waited its budget)."""
    if isinstance(error, RedisResultsError):
        return False
    if isinstance(error, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return False
    if certificate_rejected(error):
        return False
    if isinstance(error, _TRANSIENT_CLUSTER):
        return True
    if isinstance(error, rex.RedisClusterException):  # no startup node answered while mapping the slots
        return str(error).startswith(("Redis Cluster cannot be connected", "All slots are not covered"))
    if isinstance(error, (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError, rex.BusyLoadingError)):
        return True
    if isinstance(error, rex.ResponseError):
        return str(error).split(" ", 1)[0].upper() in _TRANSIENT_REPLIES
    return isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError))


def backoff(attempt: int, policy: Mapping[str, float]) -> float:
    """Seconds to wait before attempt ``attempt`` (1-based), with full jitter on the upper half."""
    base = min(policy["interval_start"] + policy["interval_step"] * (attempt - 1), policy["interval_max"])
    return base / 2 + random.uniform(0, base / 2)


def call_with_retry(
    call: Callable[[], T],
    policy: Mapping[str, float],
    *,
    what: str,
    deadline: Optional[float] = None,
) -> T:
    """Run ``call``; retry transient failures until ``max_retries`` or the time budget is spent."""
    start = time.monotonic()
    budget_end = start + policy["timeout"] if policy.get("timeout") else None
    if deadline is not None:
        budget_end = deadline if budget_end is None else min(budget_end, deadline)
    attempt = 0
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                mapped = translate(error)
                if mapped is error:
                    raise
                raise mapped from error
            attempt += 1
            delay = backoff(attempt, policy)
            now = time.monotonic()
            if attempt > policy["max_retries"] or (budget_end is not None and now + delay > budget_end):
                raise ConnectionUnavailable(  # a redis-py ConnectionError too, for callers that catch that
                    f"{what} failed: Redis unreachable after {attempt} attempt(s) in {now - start:.1f}s "
                    f"({type(error).__name__}: {error})"
                ) from error
            log.warning("redis_retry", what=what, attempt=attempt, delay=round(delay, 3), error=type(error).__name__)
            time.sleep(delay)
