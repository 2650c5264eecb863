"""Every error redisresults raises: one base class, and builtin bases where users expect them.

Errors from redis-py never reach a caller as they are: ``translate`` maps them, at the one I/O
boundary, to a redisresults error that keeps the cause and also subclasses the redis-py class a
caller may already catch (a permission error is both ``PermissionDenied`` and
``redis.exceptions.NoPermissionError``).
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

import redis.exceptions as rex


class RedisResultsError(Exception):
    """Base class of every error raised by redisresults."""


class ConfigError(RedisResultsError, ValueError):
    """A URL, option or setting that does not validate; nothing was sent to Redis."""


class BackendStoreError(RedisResultsError):
    """A result could not be stored (too large, refused by the server); nothing was written."""

    def __init__(self, message: str, *, state: Optional[str] = None, task_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.state = state
        self.task_id = task_id

    def __reduce__(self) -> Any:
        return (_rebuild_store_error, (str(self), self.state, self.task_id))

    def __repr__(self) -> str:
        return f"BackendStoreError({str(self)!r}, state={self.state!r}, task_id={self.task_id!r})"


def _rebuild_store_error(message: str, state: Optional[str], task_id: Optional[str]) -> BackendStoreError:
    return BackendStoreError(message, state=state, task_id=task_id)


class ResultTimeout(RedisResultsError, TimeoutError):
    """The result was not ready before the caller's deadline."""


class EncodeError(RedisResultsError, TypeError):
    """A result that cannot be serialized; nothing was stored."""


class ContentDisallowed(RedisResultsError):
    """A payload uses a serializer that is not in ``accept`` (pickle is refused by default)."""


class DecodeError(RedisResultsError):
    """A stored document or a published message that cannot be decoded into a result meta."""


class ConnectionUnavailable(RedisResultsError, rex.ConnectionError, rex.TimeoutError, ConnectionError):
    """Redis could not be reached within the caller's bounds."""


class CertificateRejected(RedisResultsError, rex.ConnectionError):
    """The server's TLS certificate (or host name) failed verification; retrying cannot change that."""


class PoolTimeout(RedisResultsError, TimeoutError):
    """No pooled connection became free within the call's budget: back-pressure, Redis itself is fine."""


class AuthenticationFailed(RedisResultsError, rex.AuthenticationError, rex.AuthorizationError):
    """Redis refused the credentials (wrong password or user); retrying cannot help."""


class PermissionDenied(RedisResultsError, rex.NoPermissionError):
    """The Redis user may not run a command or touch a key/channel (ACL ``NOPERM``)."""


class ServerError(RedisResultsError, rex.ResponseError):
    """Redis answered a command with an error reply."""


class RedisFailure(RedisResultsError, rex.RedisError):
    """Any other redis-py error (protocol, data); the redis-py error is the cause."""


class DrainerError(RedisResultsError):
    """The background drainer stopped; waits cannot be served. The cause is chained."""


class UsageError(RedisResultsError, RuntimeError):
    """An API used in a way that would corrupt shared state (e.g. a second concurrent drain)."""


class RemoteError(RedisResultsError):
    """A task failure whose exception class is not available here.

    Stored exception types are never imported; when the class is not already loaded
    (or is not an exception), a subclass of this is generated carrying the stored
    type name, module and arguments.
    """

    exc_type: str = "RemoteError"
    exc_module: str = "redisresults"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.exc_args = tuple(args)

    def __str__(self) -> str:
        if len(self.args) == 1:
            return str(self.args[0])
        return str(self.args) if self.args else ""

    def __reduce__(self) -> Any:
        if type(self) is RemoteError:  # the class itself is importable; only generated ones are rebuilt
            return (RemoteError, self.args)
        return (_rebuild_remote_error, (type(self).exc_module, type(self).exc_type, self.args))


def _rebuild_remote_error(module: str, name: str, args: tuple[Any, ...]) -> RemoteError:
    return remote_error_class(module, name)(*args)


def remote_error_class(module: str, name: str) -> type[RemoteError]:
    """A RemoteError subclass that reads like the remote type in tracebacks."""
    safe_name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name.rsplit(".", 1)[-1])
    if not safe_name or safe_name[0].isdigit():
        safe_name = "_" + safe_name
    cls = type(safe_name, (RemoteError,), {"exc_type": name, "exc_module": module, "__module__": "redisresults.remote"})
    cls.__qualname__ = safe_name
    return cls


# Most specific first: the first redis-py class an error is an instance of decides.
_TRANSLATIONS: tuple[tuple[type[BaseException], type[RedisResultsError]], ...] = (
    (rex.AuthenticationError, AuthenticationFailed),
    (rex.AuthorizationError, AuthenticationFailed),
    (rex.NoPermissionError, PermissionDenied),
    (rex.ResponseError, ServerError),
    (rex.ConnectionError, ConnectionUnavailable),
    (rex.TimeoutError, ConnectionUnavailable),
    (OSError, ConnectionUnavailable),
    (rex.RedisError, RedisFailure),
    (rex.RedisClusterException, RedisFailure),  # redis-py's cluster client errors are not RedisErrors
)


def certificate_rejected(error: BaseException) -> bool:
    """A TLS certificate (or hostname) that failed verification, possibly wrapped by redis-py."""
    current: Optional[BaseException] = error
    for _ in range(8):  # follow a short cause chain, never a cycle
        if current is None:
            break
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def translate(error: BaseException) -> BaseException:
    """The redisresults error for ``error`` (``__cause__`` set); ours and non-Redis errors pass unchanged."""
    if isinstance(error, RedisResultsError):
        return error
    if isinstance(error, (rex.ConnectionError, OSError)) and certificate_rejected(error):
        rejected = CertificateRejected(str(error))
        rejected.__cause__ = error
        return rejected
    for foreign, ours in _TRANSLATIONS:
        if isinstance(error, foreign):
            mapped = ours(str(error) or type(error).__name__)
            mapped.__cause__ = error
            return mapped
    return error
