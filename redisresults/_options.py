"""The option table: every option declared once, as a row that carries the rule validating it.

urllib3-style values that validate themselves: a row holds the option's name, default, its one
validator (the same for a Python value and a URL query string), the URL query names and the Celery
setting that may set it, and the line the README's configuration table shows. Adding an option is
adding a row. Rows ``within`` another option are the keys of that option's dict (``ssl``,
``transport_options``). Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Callable, Optional

import redis

from ._exceptions import ConfigError
from ._serialization import get_serializer, normalize_accept

Validator = Callable[[str, Any], Any]
"""``check(label, raw) -> value``: ``label`` names the option (or URL part) in the ConfigError."""

E_REDIS_SSL_CERT_REQS_MISSING_INVALID = (
    "A rediss:// URL must have parameter ssl_cert_reqs and this must be set to "
    "CERT_REQUIRED, CERT_OPTIONAL, or CERT_NONE (or required, optional, none)"
)
DEFAULT_RETRY_POLICY: Mapping[str, float] = MappingProxyType(
    {"max_retries": 20, "interval_start": 0.0, "interval_step": 0.2, "interval_max": 1.0, "timeout": 20.0}
)
CONCURRENCY_MODES = ("auto", "thread", "gevent")

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "CERT_REQUIRED": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "CERT_NONE": ssl.CERT_NONE,
}
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_WHOLE_RE = re.compile(r"-?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Option:
    """One option: where it may come from, its default, and the one rule that validates it."""

    name: str
    default: Any
    check: Validator = field(repr=False)
    doc: str
    celery: Optional[str] = None  # the Celery setting (``app.conf`` name) that sets it
    query: tuple[str, ...] = ()  # URL query names that set it
    none_is_value: bool = False  # an explicit None means something (not "use the URL or default")
    within: Optional[str] = None  # a key of that option's dict, not a keyword argument

    def validate(self, value: Any, label: Optional[str] = None) -> Any:
        """``value`` (a Python value or a URL string) checked and converted; ConfigError naming it."""
        return self.check(label or self.name, value)


# --- validators: each ``(label, raw) -> value`` -------------------------------------------------------------------


def shown(value: Any) -> str:
    """A short repr for error messages (secrets never get here: see ``_text(secret=True)``)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(label: str, expected: str, value: Any, *, secret: bool = False) -> ConfigError:
    got = f"a value of type {type(value).__name__} (hidden)" if secret else shown(value)
    return ConfigError(f"{label} must be {expected}, got {got}")


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and _WHOLE_RE.fullmatch(value):
        return int(value)
    return None


def _as_number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str) and not _NUMBER_RE.fullmatch(value):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _whole(minimum: int, maximum: Optional[int] = None, *, none_ok: bool = False) -> Validator:
    expected = f"a whole number from {minimum} to {maximum}" if maximum is not None else f"a whole number >= {minimum}"
    expected += " or None" if none_ok else ""

    def check(label: str, value: Any) -> Optional[int]:
        if value is None and none_ok:
            return None
        number = _as_int(value)
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise _fail(label, expected, value)
        return number

    return check


def _database(label: str, value: Any) -> int:
    """A database number; a string may carry Celery's slashes (``virtual_host=/3``, the path ``/3``)."""
    number = _as_int(value.strip("/") if isinstance(value, str) else value)
    if number is None or number < 0:
        raise _fail(label, "a database number (a whole number >= 0, like 0 or /0)", value)
    return number


def _seconds(*, zero_ok: bool, none_ok: bool) -> Validator:
    expected = "a number of seconds >= 0" if zero_ok else "a positive number of seconds"
    expected += " or None (no limit)" if none_ok else ""

    def check(label: str, value: Any) -> Optional[float]:
        if value is None and none_ok:
            return None
        number = _as_number(value)
        if number is None or number < 0 or (number == 0 and not zero_ok):
            raise _fail(label, expected, value)
        return number

    return check


def _flag(label: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise _fail(label, "true or false", value)


def _text(*, none_ok: bool, empty_ok: bool, secret: bool = False) -> Validator:
    expected = ("a str" if empty_ok else "a non-empty str") + (" or None" if none_ok else "")

    def check(label: str, value: Any) -> Optional[str]:
        if value is None and none_ok:
            return None
        if not isinstance(value, str) or (value == "" and not empty_ok):
            raise _fail(label, expected, value, secret=secret)
        return value

    return check


def cert_reqs(value: Any) -> ssl.VerifyMode:
    """Map the accepted ``ssl_cert_reqs`` spellings to an ``ssl.VerifyMode``; anything else is a ConfigError."""
    if isinstance(value, str):
        if value in _CERT_REQS:
            return _CERT_REQS[value]
    elif isinstance(value, int) and not isinstance(value, bool):
        if value in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            return ssl.VerifyMode(value)
    raise ConfigError(f"{E_REDIS_SSL_CERT_REQS_MISSING_INVALID}; got {shown(value)}")


def _cert_reqs(label: str, value: Any) -> ssl.VerifyMode:
    return cert_reqs(value)


def _choice(*choices: str) -> Validator:
    def check(label: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _fail(label, f"one of {', '.join(choices)}", value)
        return value

    return check


def _serializer(label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a str, got {type(value).__name__}")
    get_serializer(value)  # unknown name, or msgpack without the extra -> ConfigError
    return value


def _accept(label: str, value: Any) -> tuple[str, ...]:
    return tuple(sorted(normalize_accept(value)))


def _expires(label: str, value: Any) -> Optional[int]:
    """Whole seconds, rounded up (never expire early); ``None`` and ``0`` mean never."""
    if value is None:
        return None
    number = value.total_seconds() if isinstance(value, timedelta) else _as_number(value)
    if number is None or number < 0:
        raise _fail(label, "a number of seconds >= 0, a timedelta, or None (never)", value)
    return math.ceil(number) or None


def _keyprefix(label: str, value: Any) -> str:
    """Celery's rule: a prefix not ending in ``: _ - .`` gets a ``_``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _fail(label, "a str", value)
    return value if value[-1] in ":_-." else value + "_"


def _retry_policy(label: str, value: Any) -> dict[str, float]:
    """Given keys over ``DEFAULT_RETRY_POLICY``; ``max_retries=None`` means no count limit."""
    policy = dict(DEFAULT_RETRY_POLICY)
    if value is None:
        return policy
    if not isinstance(value, Mapping):
        raise _fail(label, "a dict", value)
    step = _seconds(zero_ok=True, none_ok=False)
    for key, item in value.items():
        if key not in DEFAULT_RETRY_POLICY:
            raise ConfigError(f"unknown retry_policy key {key!r}; accepted: {', '.join(DEFAULT_RETRY_POLICY)}")
        policy[key] = math.inf if key == "max_retries" and item is None else step(f"retry_policy[{key!r}]", item)
    return policy


def _plain_dict(label: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(label, "a dict", value)
    return dict(value)


def _credential_provider(label: str, value: Any) -> Optional[redis.CredentialProvider]:
    if value is None or isinstance(value, redis.CredentialProvider):
        return value
    raise ConfigError(f"{label} must be an instance of redis.CredentialProvider, got {type(value).__name__}")


def _anything(label: str, value: Any) -> Any:
    return value


def _keys_of(group: str) -> Callable[[str, Any], dict[str, Any]]:
    """A dict whose keys are the rows ``within`` ``group``, each value checked by its row; None values dropped."""

    def check(label: str, value: Any) -> dict[str, Any]:
        rows = {row.name: row for row in OPTIONS if row.within == group}
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label} must be a dict of {', '.join(rows)}; got {type(value).__name__}")
        unknown = sorted(str(key) for key in value if key not in rows)
        if unknown:
            raise ConfigError(f"unknown {label} option(s) {', '.join(unknown)}; accepted: {', '.join(rows)}")
        return {
            key: rows[key].validate(item, f"{label}[{key!r}]") for key, item in value.items() if item is not None
        }

    return check


def _ssl(label: str, value: Any) -> dict[str, Any]:
    """``True`` is TLS with a verified certificate; ``False``/``None`` no TLS options; else a dict of ``ssl_*``."""
    if value is False:
        return {}
    if value is True:
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return _keys_of("ssl")(label, value)


# --- the table ----------------------------------------------------------------------------------------------------

_ANY_TEXT = _text(none_ok=True, empty_ok=True)
_PATH = _text(none_ok=True, empty_ok=False)

OPTIONS: tuple[Option, ...] = (
    Option("host", "localhost", _text(none_ok=False, empty_ok=False), "from the URL's host",
           celery="redis_host"),
    Option("port", 6379, _whole(1, 65535), "from the URL's port",
           celery="redis_port"),
    Option("db", 0, _database,
           "from the URL path (`/3`) or `?db=`; `?virtual_host=` only for Unix sockets (`/3` too, as Celery)",
           celery="redis_db", query=("db", "virtual_host")),
    Option("username", None, _ANY_TEXT, "from the URL's userinfo; sent only when set",
           celery="redis_username"),
    Option("password", None, _text(none_ok=True, empty_ok=True, secret=True),
           "from the URL's userinfo; never shown in logs, reprs, errors or CLI output",
           celery="redis_password"),
    Option("max_connections", None, _whole(1, none_ok=True), "`None` = redis-py's default (100); `0` is an error",
           celery="redis_max_connections", query=("max_connections",)),
    Option("socket_timeout", 120.0, _seconds(zero_ok=False, none_ok=True),
           "seconds; `None` = no limit; `0` is an error",
           celery="redis_socket_timeout", query=("socket_timeout",), none_is_value=True),
    Option("socket_connect_timeout", None, _seconds(zero_ok=False, none_ok=True), "seconds; dropped for Unix sockets",
           celery="redis_socket_connect_timeout", query=("socket_connect_timeout",)),
    Option("retry_on_timeout", False, _flag, "passed to redis-py's connections",
           celery="redis_retry_on_timeout", query=("retry_on_timeout",)),
    Option("socket_keepalive", False, _flag, "dropped for Unix sockets",
           celery="redis_socket_keepalive", query=("socket_keepalive",)),
    Option("health_check_interval", None, _seconds(zero_ok=True, none_ok=True),
           "seconds; also the drainer's PING interval (unset: after 10 s idle); `0` = off",
           celery="redis_backend_health_check_interval", query=("health_check_interval",)),
    Option("client_name", None, _ANY_TEXT, "the connection name (`CLIENT SETNAME`)",
           celery="redis_client_name", query=("client_name",)),
    Option("ssl", None, _ssl,
           "a dict of the `ssl_*` keys the URL query takes, or `True` (verified TLS); with `redis://` → "
           "`ConfigError` (use `rediss://`)",
           celery="redis_backend_use_ssl"),
    Option("credential_provider", None, _credential_provider,
           "a `redis.CredentialProvider` instance; replaces username and password",
           celery="redis_backend_credential_provider"),
    Option("transport_options", MappingProxyType({}), _keys_of("transport_options"),
           "dict of `master_name` (required for `sentinel://`), `min_other_sentinels`, `sentinel_kwargs` (default "
           "timeouts 2 s), `global_keyprefix`, `retry_policy`; `result_chord_ordered`, `visibility_timeout` are "
           "accepted and ignored; unknown keys → `ConfigError`",
           celery="result_backend_transport_options"),
    Option("expires", 86400, _expires, "seconds (1 day) or a timedelta; `None`/`0` = never",
           celery="result_expires", none_is_value=True),
    Option("serializer", "json", _serializer, "`msgpack` with the `msgpack` extra; `pickle` only if in `accept`",
           celery="result_serializer"),
    Option("accept", ("json",), _accept, "Celery's `accept_content` if unset; pickle is refused unless listed",
           celery="result_accept_content"),
    Option("max_value_size", 536870912, _whole(1),
           "bytes; checked on the encoded document's bytes, and on the server's `proto-max-bulk-len`"),
    Option("max_publish_size", 1048576, _whole(1, none_ok=True),
           "bytes; larger documents are stored in full but announced by a small reference message (below); "
           "`None` = always publish in full", none_is_value=True),
    Option("result_cache_max", 1024, _whole(-1), "LRU of ready metas; `0`/`-1` disables",
           celery="result_cache_max"),
    Option("concurrency", "auto", _choice(*CONCURRENCY_MODES),
           "`thread`, `gevent` (needs a monkey-patched process), or `auto`"),
    # keys of the ``ssl`` dict, also URL query names
    Option("ssl_cert_reqs", None, _cert_reqs, "required/optional/none, CERT_*, or an `ssl` constant",
           query=("ssl_cert_reqs",), within="ssl"),
    Option("ssl_ca_certs", None, _PATH, "CA bundle file", query=("ssl_ca_certs",), within="ssl"),
    Option("ssl_certfile", None, _PATH, "client certificate file", query=("ssl_certfile",), within="ssl"),
    Option("ssl_keyfile", None, _PATH, "client key file", query=("ssl_keyfile",), within="ssl"),
    Option("ssl_check_hostname", None, _flag, "false by default with CERT_NONE",
           query=("ssl_check_hostname",), within="ssl"),
    Option("ssl_ca_path", None, _PATH, "CA directory", query=("ssl_ca_path",), within="ssl"),
    # keys of the ``transport_options`` dict
    Option("master_name", None, _PATH, "the Sentinel service name", within="transport_options"),
    Option("min_other_sentinels", 0, _whole(0), "redis-py Sentinel's quorum check", within="transport_options"),
    Option("sentinel_kwargs", MappingProxyType({}), _plain_dict, "kwargs of the Sentinel connections",
           within="transport_options"),
    Option("global_keyprefix", "", _keyprefix, "prepended to every key and channel", within="transport_options"),
    Option("retry_policy", DEFAULT_RETRY_POLICY, _retry_policy, "the retry budget of stores and reads",
           within="transport_options"),
    Option("result_chord_ordered", None, _anything, "Celery's; no chords here", within="transport_options"),
    Option("visibility_timeout", None, _anything, "a broker setting; ignored", within="transport_options"),
)

_BY_KEY: Mapping[tuple[Optional[str], str], Option] = MappingProxyType({(o.within, o.name): o for o in OPTIONS})


def option(name: str, within: Optional[str] = None) -> Option:
    """The row of ``name`` (a keyword option, or a key of the ``within`` option's dict); KeyError if none."""
    return _BY_KEY[(within, name)]


def names_within(group: Optional[str]) -> tuple[str, ...]:
    """Row names in table order: keyword options for ``None``, else the keys of option ``group``."""
    return tuple(row.name for row in OPTIONS if row.within == group)


OPTION_NAMES = names_within(None)
SSL_KEYS = names_within("ssl")
TRANSPORT_OPTION_KEYS = names_within("transport_options")
QUERY_OPTIONS: Mapping[str, Option] = MappingProxyType({query: row for row in OPTIONS for query in row.query})
"""URL query name -> its row (``virtual_host`` -> ``db``)."""
CELERY_OPTIONS: Mapping[str, Option] = MappingProxyType({row.celery: row for row in OPTIONS if row.celery})
"""Celery setting name -> its row."""
