"""The gevent tests run in their own monkey-patched process: ``tox -e gevent``, which runs
``python -m gevent.monkey --module pytest tests/gevent``. They use the fixtures of ``tests/conftest.py``
(imported here by name, so this directory also works as a pytest root of its own).
"""

from __future__ import annotations

from tests.conftest import (  # noqa: F401 - fixtures, re-exported for pytest
    fresh_sentinel_group,
    fresh_server,
    key_prefix,
    redis_server,
    redis_url,
    sentinel_group,
    sentinel_tls_group,
    tls_server,
    unix_server,
)
