"""Fixtures: real Redis servers, started once per session (``fresh_server`` once per test), stopped by PID.

When a binary is missing or a server does not come up, the tests that need it are skipped with the reason, unless
``REDISRESULTS_REQUIRE_SERVERS=1`` (set by ``.ci/run``), in which case they fail loudly.

The gevent tests under ``tests/gevent`` need a monkey-patched process; they are collected only there
(``tox -e gevent`` runs ``python -m gevent.monkey --module pytest tests/gevent``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Callable, Iterator, List, NoReturn, Sequence, TypeVar

import pytest
import redis

from redisresults import RedisBackend
from tests.cluster import fresh_cluster, redis_cluster  # noqa: F401  # the Redis Cluster fixtures
from tests.servers import RedisServer, SentinelGroup, ServerUnavailable

__all__ = [
    "fresh_sentinel_group",
    "fresh_server",
    "key_prefix",
    "redis_server",
    "redis_url",
    "sentinel_group",
    "sentinel_tls_group",
    "tls_server",
    "unix_server",
]

T = TypeVar("T")


def _gevent_patched() -> bool:
    if "gevent" not in sys.modules:
        return False
    import gevent.monkey

    return bool(gevent.monkey.is_module_patched("socket"))


collect_ignore_glob: List[str] = [] if _gevent_patched() else ["gevent/*"]


def servers_required() -> bool:
    return os.environ.get("REDISRESULTS_REQUIRE_SERVERS", "") == "1"


def unavailable(reason: str) -> NoReturn:
    """Fail when servers are required (CI), skip otherwise."""
    if servers_required():
        pytest.fail(f"{reason} (REDISRESULTS_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def _start(what: str, factory: Callable[[], T]) -> T:
    try:
        return factory()
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"could not start {what}: {exc}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A plain TCP ``redis-server`` on 127.0.0.1, shared by the session: don't stop or reconfigure it."""
    server = _start("redis-server", RedisServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of :func:`redis_server`."""
    return redis_server.url


@pytest.fixture(scope="session")
def unix_server() -> Iterator[RedisServer]:
    """A ``redis-server`` listening on a unix socket only (``unix_path``; ``url`` is ``socket://...``)."""
    server = _start("redis-server on a unix socket", lambda: RedisServer(unix=True))
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_server() -> Iterator[RedisServer]:
    """A TLS-only ``redis-server``; its certificate names ``localhost`` only (``ca_path``, ``wrong_ca_path``)."""
    server = _start("redis-server with TLS", lambda: RedisServer(tls=True))
    yield server
    server.close()


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """Master, replica and three sentinels watching ``mymaster``. A failover moves the master for the session."""
    group = _start("a Sentinel group", SentinelGroup)
    yield group
    group.stop()


@pytest.fixture(scope="session")
def sentinel_tls_group() -> Iterator[SentinelGroup]:
    """Like :func:`sentinel_group` with TLS-only data nodes (certificate for localhost and 127.0.0.1)."""
    group = _start("a Sentinel group with TLS", lambda: SentinelGroup(tls=True))
    yield group
    group.stop()


@pytest.fixture
def fresh_server() -> Iterator[Callable[..., RedisServer]]:
    """A factory of private servers for destructive tests, all stopped at the end of the test.

    ``fresh_server(extra_config=["proto-max-bulk-len 1mb"], appendonly=False, unix=False, tls=False)``
    """
    started: List[RedisServer] = []

    def factory(
        extra_config: Sequence[str] = (),
        appendonly: bool = False,
        *,
        unix: bool = False,
        tls: bool = False,
    ) -> RedisServer:
        server = _start(
            "a fresh redis-server",
            lambda: RedisServer(extra_config=extra_config, appendonly=appendonly, unix=unix, tls=tls),
        )
        started.append(server)
        return server

    yield factory
    for server in started:
        server.close()


@pytest.fixture
def fresh_sentinel_group() -> Iterator[Callable[..., SentinelGroup]]:
    """A factory of private Sentinel groups (for failovers and other destructive tests), stopped at test end.

    ``fresh_sentinel_group(tls=False)``
    """
    started: List[SentinelGroup] = []

    def factory(tls: bool = False) -> SentinelGroup:
        group = _start("a fresh Sentinel group", lambda: SentinelGroup(tls=tls))
        started.append(group)
        return group

    yield factory
    for group in started:
        group.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix unique to this test, e.g. ``t1a2b3c4d5e6f:``, for ``transport_options={"global_keyprefix": ...}``."""
    return f"t{uuid.uuid4().hex[:12]}:"


def pytest_report_header() -> List[str]:
    if _gevent_patched():
        return ["gevent: socket is monkey-patched; collecting tests/gevent"]
    return ["gevent: not patched; tests/gevent not collected (run them with: tox -e gevent)"]


# The backend most tests want: on the shared TCP server, under the test's own key prefix; and a plain
# client for looking at (or tampering with) what is stored. Modules that need another backend define their own.
@pytest.fixture
def backend(redis_server: RedisServer, key_prefix: str) -> Iterator[RedisBackend]:
    with RedisBackend(redis_server.url, transport_options={"global_keyprefix": key_prefix}) as b:
        yield b


@pytest.fixture
def name() -> str:
    """A connection name unique to the test, so CLIENT LIST can tell our connections apart."""
    return f"rr-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()
