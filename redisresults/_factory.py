"""Building a backend from a URL or from Celery's settings: the scheme picks the class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ._celery_conf import options_from_celery
from ._cluster import ClusterBackend
from ._sentinel import SentinelBackend
from ._url import CLUSTER_SCHEMES, scheme_of
from .backend import RedisBackend


def backend_from_url(url: Optional[str] = None, **options: Any) -> RedisBackend:
    """The backend class for ``url``'s scheme: RedisBackend, SentinelBackend for ``sentinel://``, or
    ClusterBackend for ``redis+cluster://`` and ``rediss+cluster://``."""
    if url:
        scheme = scheme_of(url)
        if scheme == "sentinel":
            return SentinelBackend(url, **options)
        if scheme in CLUSTER_SCHEMES:
            return ClusterBackend(url, **options)
    return RedisBackend(url, **options)


def from_config(settings: Mapping[str, Any]) -> RedisBackend:
    """A backend from Celery's setting names (``app.conf`` or any mapping)."""
    url, options = options_from_celery(settings)
    return backend_from_url(url, **options)
