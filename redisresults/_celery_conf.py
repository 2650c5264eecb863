"""Celery's setting names (``app.conf``) mapped to redisresults options.

Which setting sets which option is declared by the option table (``Option.celery``); this module adds
only what is Celery's alone: the settings that exist but change nothing here, the old upper-case
names, and ``accept_content`` as the fallback of ``result_accept_content``. Unknown
``redis_*``/``result_*`` names are errors (typos must not pass silently); everything else in a Celery
configuration is ignored, so a whole ``app.conf`` can be passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ._config import url_values
from ._exceptions import ConfigError
from ._options import CELERY_OPTIONS
from ._url import CLUSTER_SCHEMES, SENTINEL_SCHEMES, parse_url, scheme_of, split_cluster_url, split_sentinel_url

# Celery settings that exist but do not change how results are stored or awaited here.
CELERY_IGNORED = frozenset(
    {
        "result_backend",
        "result_backend_always_retry",
        "result_backend_base_sleep_between_retries_ms",
        "result_backend_max_retries",
        "result_backend_max_sleep_between_retries_ms",
        "result_backend_thread_safe",
        "result_chord_expires",
        "result_chord_join_timeout",
        "result_chord_retry_interval",
        "result_chord_ordered",
        "result_compression",
        "result_exchange",
        "result_exchange_type",
        "result_extended",
        "result_failure_expires",
        "result_persistent",
    }
)
_OLD_NAMES = {"celery_task_result_expires": "result_expires", "celery_result_backend": "result_backend"}


def options_from_celery(settings: Mapping[str, Any]) -> tuple[Optional[str], dict[str, Any]]:
    """``(url, options)`` from a mapping with Celery's setting names (``app.conf`` works).

    Unknown ``redis_*``/``result_*`` names raise ConfigError so that typos do not pass silently;
    other keys are ignored, so a whole Celery configuration can be passed.
    """
    if not isinstance(settings, Mapping):
        raise ConfigError(f"from_config needs a mapping of settings, got {type(settings).__name__}")
    url: Optional[str] = None
    options: dict[str, Any] = {}
    fallback_accept: Any = None
    for raw_key in list(settings.keys()):
        if not isinstance(raw_key, str):
            continue
        key = _normalize_setting(raw_key)
        value = settings[raw_key]
        if key == "accept_content":
            fallback_accept = value
            continue
        if not key.startswith(("redis_", "result_")):
            continue
        if key == "result_backend":
            if value is not None:
                if not isinstance(value, str):
                    raise ConfigError(f"result_backend must be a URL string, got {type(value).__name__}")
                url = _strip_backend_alias(value)
            continue
        row = CELERY_OPTIONS.get(key)
        if row is not None:
            if value is not None or row.none_is_value:
                options[row.name] = value
            continue
        if key in CELERY_IGNORED:
            continue
        raise ConfigError(f"unknown setting {raw_key!r} (not a Celery result/redis setting redisresults knows)")
    if "accept" not in options and fallback_accept is not None:
        options["accept"] = fallback_accept
    if url:
        # As in Celery, a value written in the URL beats a setting: app.conf always holds Celery's
        # defaults (redis_socket_timeout=120.0, ...), which must not silently override ?socket_timeout=5.
        for name in _url_option_names(url):
            options.pop(name, None)
    return url, options


def _url_option_names(url: str) -> set[str]:
    """The option names that ``url`` (every node of a sentinel URL) gives a value."""
    scheme = scheme_of(url)
    if scheme in SENTINEL_SCHEMES:
        nodes = split_sentinel_url(url)
    else:
        nodes = split_cluster_url(url) if scheme in CLUSTER_SCHEMES else [url]
    names: set[str] = set()
    for node in nodes:
        names.update(url_values(parse_url(node)))
    return names


def _normalize_setting(key: str) -> str:
    lowered = key.lower()
    if lowered in _OLD_NAMES:
        return _OLD_NAMES[lowered]
    if key.isupper() and lowered.startswith("celery_"):
        return lowered[len("celery_") :]
    return key


def _strip_backend_alias(url: str) -> str:
    """Celery's ``redis+socket://`` style (backend alias + URL) maps to the URL's own scheme."""
    scheme, sep, rest = url.partition("://")
    if sep and "+" in scheme and scheme.lower() not in ("redis+socket", *CLUSTER_SCHEMES):
        alias, _, inner = scheme.partition("+")
        if alias.lower() in ("redis", "rediss", "sentinel"):
            return f"{inner}://{rest}"
    return url

