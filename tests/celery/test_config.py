"""How Celery finds the drop-in, and what it is built from: every ``result_backend`` form, Celery's settings
keeping their meaning, one core per process and settings, and ``import redisresults`` never importing Celery."""

from __future__ import annotations

import os
import pickle
import ssl
import subprocess
import sys
import threading
import uuid
from importlib.metadata import entry_points
from typing import Any, Callable, List

import celery
import celery._state
import kombu.serialization
import pytest
import redis
from celery.app.backends import by_url

import redisresults
from redisresults.celery import CeleryBackend, CelerySentinelBackend, inner_url
from redisresults.celery._core import shared_core
from redisresults.celery._settings import core_spec
from tests.servers import RedisServer, SentinelGroup

AppFactory = Callable[..., celery.Celery]


def round_trip(app: celery.Celery) -> None:
    """Store through the app's own backend (the worker side) while a thread waits with ``AsyncResult.get``."""
    task_id = str(uuid.uuid4())
    outcome: List[Any] = []
    waiter = threading.Thread(target=lambda: outcome.append(app.AsyncResult(task_id).get(timeout=10)))
    waiter.start()
    app.backend.mark_as_done(task_id, {"ok": task_id})
    waiter.join(15)
    assert outcome == [{"ok": task_id}]


def test_entry_point_is_registered() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="celery.result_backends")}
    assert names.get("redisresults") == "redisresults.celery:CeleryBackend"


@pytest.mark.parametrize(
    ("setting", "cls", "url"),
    [
        ("redisresults+redis://127.0.0.1:6379/3", CeleryBackend, "redis://127.0.0.1:6379/3"),
        ("redisresults://127.0.0.1:6379/3", CeleryBackend, "redisresults://127.0.0.1:6379/3"),
        ("redisresults.celery:CeleryBackend+redis://127.0.0.1/2", CeleryBackend, "redis://127.0.0.1/2"),
        ("redisresults.celery.CeleryBackend+redis://127.0.0.1/2", CeleryBackend, "redis://127.0.0.1/2"),
        ("redisresults+socket:///tmp/r.sock?virtual_host=1", CeleryBackend, "socket:///tmp/r.sock?virtual_host=1"),
        ("redisresults", CeleryBackend, None),
        ("redisresults+redis+cluster://127.0.0.1:7000;redis+cluster://127.0.0.1:7001", CeleryBackend,
         "redis+cluster://127.0.0.1:7000;redis+cluster://127.0.0.1:7001"),
    ],
)
def test_celery_resolves_every_form(setting: str, cls: type, url: Any) -> None:
    app = celery.Celery(set_as_current=False)
    backend_cls, handed_over = by_url(setting, app.loader)
    assert backend_cls is cls and handed_over == url
    app.close()


@pytest.mark.parametrize(
    ("url", "inner"),
    [
        ("redisresults://h:1/2", "redis://h:1/2"),
        ("redisresults+rediss://h:1/2?ssl_cert_reqs=required", "rediss://h:1/2?ssl_cert_reqs=required"),
        ("redis+socket:///a.sock", "socket:///a.sock"),
        ("unix:///a.sock", "socket:///a.sock"),
        ("sentinel://a:1;sentinel://b:2/0", "sentinel://a:1;sentinel://b:2/0"),
        ("redisresults+sentinel://a:1;redisresults+sentinel://b:2", "sentinel://a:1;sentinel://b:2"),
        ("redis+cluster://a:1;redis+cluster://b:2", "redis+cluster://a:1;redis+cluster://b:2"),
        ("redisresults+rediss+cluster://a:1?ssl_cert_reqs=none", "rediss+cluster://a:1?ssl_cert_reqs=none"),
        (None, None),
    ],
)
def test_inner_url(url: Any, inner: Any) -> None:
    assert inner_url(url) == inner


def test_app_backend_is_the_drop_in(make_app: AppFactory, redis_server: RedisServer) -> None:
    app = make_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0")
    assert isinstance(app.backend, CeleryBackend) and app.backend.thread_safe
    assert app.backend.as_uri() == f"redis://127.0.0.1:{redis_server.port}/0"
    round_trip(app)


def test_bare_scheme_and_class_forms(make_app: AppFactory, redis_server: RedisServer) -> None:
    round_trip(make_app(f"redisresults://127.0.0.1:{redis_server.port}/0"))
    by_class = make_app(f"redisresults.celery:CeleryBackend+redis://127.0.0.1:{redis_server.port}/0")
    round_trip(by_class)
    app = make_app(f"redis://127.0.0.1:{redis_server.port}/0")
    app.conf.result_backend = CeleryBackend  # a class: Celery hands it no URL, so redis_host/redis_port apply
    app.conf.redis_host, app.conf.redis_port = "127.0.0.1", redis_server.port
    assert isinstance(app.backend, CeleryBackend)
    round_trip(app)


def test_unix_socket(make_app: AppFactory, unix_server: RedisServer) -> None:
    app = make_app(f"redisresults+socket://{unix_server.unix_path}?virtual_host=0")
    assert app.backend.core().backend.connparams["path"] == unix_server.unix_path
    round_trip(app)


def test_tls(make_app: AppFactory, tls_server: RedisServer) -> None:
    app = make_app("redisresults+" + tls_server.url)
    params = app.backend.core().backend.connparams
    assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED and issubclass(params["connection_class"], redis.SSLConnection)
    round_trip(app)


def test_redis_backend_use_ssl_with_redis_scheme_is_honoured_as_celery_does(
    make_app: AppFactory, tls_server: RedisServer
) -> None:
    app = make_app(f"redisresults+redis://{tls_server.tls_hostname}:{tls_server.port}/0")
    app.conf.redis_backend_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": tls_server.ca_path}
    round_trip(app)


def test_sentinel(make_app: AppFactory, sentinel_group: SentinelGroup) -> None:
    nodes = ";".join(f"sentinel://{host}:{port}" for host, port in sentinel_group.sentinel_addrs)
    app = make_app("redisresults+" + nodes + "/0")
    app.conf.result_backend_transport_options = {"master_name": "mymaster"}
    assert isinstance(app.backend, CelerySentinelBackend)
    assert isinstance(app.backend.core().backend, redisresults.SentinelBackend)
    round_trip(app)
    previous = celery._state.get_current_app()
    app.set_current()  # Celery unpickles a backend with the current app's settings (master_name here)
    try:
        clone = pickle.loads(pickle.dumps(app.backend))
    finally:
        celery._state._set_current_app(previous)
    assert type(clone) is CelerySentinelBackend and clone.core() is app.backend.core()


def test_celery_settings_keep_their_meaning(make_app: AppFactory, redis_server: RedisServer, key_prefix: str) -> None:
    app = make_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0?socket_timeout=7")
    app.conf.update(
        redis_max_connections=7,
        redis_socket_timeout=99,  # the URL's value wins, as with Celery's own backend
        redis_client_name="rr-settings",
        redis_backend_health_check_interval=3,
        result_backend_transport_options={"global_keyprefix": key_prefix},
    )
    params = app.backend.core().backend.connparams
    assert params["max_connections"] == 7 and params["socket_timeout"] == 7.0
    assert params["client_name"] == "rr-settings" and params["health_check_interval"] == 3
    assert app.backend.get_key_for_task("x") == f"{key_prefix}celery-task-meta-x".encode()
    round_trip(app)


def test_what_the_core_cannot_honour_is_a_config_error(make_app: AppFactory, redis_server: RedisServer) -> None:
    url = f"redisresults+redis://127.0.0.1:{redis_server.port}/0"
    with pytest.raises(redisresults.ConfigError, match="decode_responses"):
        make_app(url + "?decode_responses=true").backend  # noqa: B018
    kombu.serialization.register("rr-text", str, str, content_type="application/x-rr-text")
    try:
        app = make_app(url)
        app.conf.update(result_serializer="rr-text", result_accept_content=["application/x-rr-text"])
        with pytest.raises(redisresults.ConfigError, match="rr-text"):
            app.backend  # noqa: B018
    finally:
        kombu.serialization.unregister("rr-text")


def test_core_spec_of_celery_connparams() -> None:
    spec = core_spec(
        {"host": "h", "port": 1, "db": 2, "password": None, "socket_timeout": 5.0, "driver_info": object()},
        serializer="json",
        accept={"application/json", "application/x-yaml"},
        transport_options={"global_keyprefix": "p:", "visibility_timeout": 3},
    )
    assert spec.url is None and spec.kind == "redis"
    assert spec.options["accept"] == ("json",) and spec.options["transport_options"] == {"global_keyprefix": "p:"}
    assert spec.options["max_publish_size"] is None and spec.options["result_cache_max"] == 0
    assert "password" not in spec.options
    assert spec.key() == core_spec(
        {"host": "h", "port": 1, "db": 2, "socket_timeout": 5.0},
        serializer="json",
        accept=["json"],
        transport_options={"global_keyprefix": "p:"},
    ).key()


def test_one_core_for_every_thread_app_and_unpickled_backend(make_app: AppFactory, redis_server: RedisServer) -> None:
    url = f"redisresults+redis://127.0.0.1:{redis_server.port}/0"
    app, other_app = make_app(url), make_app(url)
    barrier = threading.Barrier(50)
    cores: List[Any] = []

    def first_access() -> None:
        barrier.wait(10)
        cores.append(app.backend.core())  # 50 threads race on the first app.backend

    threads = [threading.Thread(target=first_access) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    result = app.AsyncResult(str(uuid.uuid4()))
    unpickled = pickle.loads(pickle.dumps(result))
    assert len({id(core) for core in cores}) == 1
    assert other_app.backend.core() is cores[0] is unpickled.backend.core()
    assert unpickled.backend is not app.backend


def test_different_settings_get_different_cores(make_app: AppFactory, redis_server: RedisServer) -> None:
    url = f"redisresults+redis://127.0.0.1:{redis_server.port}/0"
    app, other = make_app(url), make_app(url)
    other.conf.redis_max_connections = 3
    assert app.backend.core() is not other.backend.core()


def test_a_forked_child_builds_its_own_core(make_app: AppFactory, redis_server: RedisServer) -> None:
    app = make_app(f"redisresults+redis://127.0.0.1:{redis_server.port}/0")
    parent_core = app.backend.core()
    round_trip(app)  # the parent's drainer is running when the child is forked
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            child_core = app.backend.core()
            round_trip(app)
            code = 0 if child_core is not parent_core and child_core.pid == os.getpid() else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"\x00"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert app.backend.core() is parent_core
    round_trip(app)


def test_import_redisresults_does_not_import_celery() -> None:
    code = "import sys, redisresults; assert 'celery' not in sys.modules and 'kombu' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_shared_core_is_keyed_by_pid_and_settings(redis_server: RedisServer) -> None:
    spec = core_spec({"host": "127.0.0.1", "port": redis_server.port, "db": 0}, serializer="json", accept=["json"],
                     transport_options=None)
    core = shared_core(spec)
    try:
        assert shared_core(spec) is core and core.pid == os.getpid()
    finally:
        redisresults.celery.close_all()
