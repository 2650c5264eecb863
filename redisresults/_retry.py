"""Retrying Redis calls that failed for a passing reason, within a bounded total time.

Connection drops, timeouts, READONLY (a demoted master after failover), LOADING and MASTERDOWN
are retried; everything else (auth, permissions, wrong type, protocol limits) fails at once.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Mapping
from typing import Callable, Optional, TypeVar

import redis.exceptions as rex

from ._exceptions import ConnectionUnavailable
from ._log import get_logger

T = TypeVar("T")
log = get_logger()

_TRANSIENT_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS")


def _certificate_rejected(error: BaseException) -> bool:
    """A TLS certificate (or hostname) that failed verification: retrying cannot change the verdict."""
    current: BaseException | None = error
    for _ in range(8):  # redis-py wraps the ssl error; follow a short cause chain, never a cycle
        if current is None:
            break
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def is_transient(error: BaseException) -> bool:
    """True for errors a later attempt can cure."""
    if isinstance(error, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return False
    if _certificate_rejected(error):
        return False
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
                raise
            attempt += 1
            delay = backoff(attempt, policy)
            now = time.monotonic()
            if attempt > policy["max_retries"] or (budget_end is not None and now + delay > budget_end):
                raise ConnectionUnavailable(
                    f"{what} failed: Redis unreachable after {attempt} attempt(s) in {now - start:.1f}s "
                    f"({type(error).__name__}: {error})"
                ) from error
            log.warning("redis_retry", what=what, attempt=attempt, delay=round(delay, 3), error=type(error).__name__)
            time.sleep(delay)
