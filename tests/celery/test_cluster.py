"""The drop-in on Redis Cluster (``redisresults+redis+cluster://``): what differs from one server.

Every client path of ``test_worker.py`` also runs against the suite's 3+3 cluster with real workers (the
``cluster-*`` deployments). These tests check what is particular to a cluster: the URL forms, the core being a
``ClusterBackend`` with one shard Pub/Sub connection per primary, stores announced by SPUBLISH, results spread
over the shards and read back per slot, chord working keys in their group key's slot, redisresults' own
``ClusterBackend`` reading what the drop-in writes, and a store riding out a failover.
"""

from __future__ import annotations

import pickle
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Dict, List

import celery
import pytest
import redis
from celery import chord
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

import redisresults
from redisresults._drainer import LINGER
from redisresults.celery import CeleryBackend, CeleryClusterBackend
from redisresults.celery._settings import cluster_spec
from redisresults.celery._sharded import SLOT_ERRORS, celery_url, core_url, tagged_group_key
from tests.celery.workers import CeleryWorker
from tests.cluster import ClusterGroup, keys_on
from tests.polling import poll

AppFactory = Callable[..., celery.Celery]
TIMEOUT = 20.0
TASK_TIME = 0.2  # a task still running while the test looks at its subscription (a ready result ends a hold)


def s(app: celery.Celery, name: str, *args: Any) -> Any:
    return app.signature(f"rr.{name}", args=args)


# ---------------------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://h1:7000;redis+cluster://h2:7001", "redis://h1:7000"),
        ("redis+cluster://:pw@h1:7000/0;redis+cluster://h2:7001", "redis://:pw@h1:7000/0"),
        ("redis+cluster://h1:7000;redis+cluster://u:pw@h2:7001", "redis://u:pw@h1:7000"),
        ("rediss+cluster://h1:7000;rediss+cluster://h2:7001?ssl_cert_reqs=required",
         "rediss://h1:7000?ssl_cert_reqs=required"),
        ("redis+cluster://[::1]:7000", "redis://[::1]:7000"),
    ],
)
def test_celery_url_is_the_first_node_with_the_shared_parts(url: str, expected: str) -> None:
    assert celery_url(url) == expected


@pytest.mark.parametrize(
    ("url", "tls", "expected"),
    [
        ("redis+cluster://:pw@h1:7000/0;redis+cluster://h2:7001?x=1", False,
         "redis+cluster://h1:7000;redis+cluster://h2:7001"),
        ("redis+cluster://h1:7000", True, "rediss+cluster://h1:7000"),
        ("rediss+cluster://u:pw@h1:7000?ssl_cert_reqs=none", True, "rediss+cluster://h1:7000"),
    ],
)
def test_core_url_keeps_addresses_only(url: str, tls: bool, expected: str) -> None:
    assert core_url(url, tls=tls) == expected


def test_core_url_refuses_a_database_other_than_0() -> None:
    with pytest.raises(redisresults.ConfigError, match="only database 0"):
        core_url("redis+cluster://h1:7000/2", tls=False)


@pytest.mark.parametrize(
    ("group_key", "suffix", "expected"),
    [
        (b"celery-taskset-meta-g1", b".j", b"{celery-taskset-meta-g1}.j"),
        (b"celery-taskset-meta-g1", b"", b"celery-taskset-meta-g1"),
        (b"{app}celery-taskset-meta-g1", b".t", b"{app}celery-taskset-meta-g1.t"),
    ],
)
def test_tagged_group_key(group_key: bytes, suffix: bytes, expected: bytes) -> None:
    assert tagged_group_key(group_key, suffix) == expected


@given(
    group_id=st.text(st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), min_size=1, max_size=40),
    suffix=st.sampled_from([".j", ".t", ".s", ".d", ".c"]),
    prefix=st.sampled_from(["", "app:", "{tenant}:"]),
)
def test_chord_keys_hash_to_their_group_keys_slot(group_id: str, suffix: str, prefix: str) -> None:
    group_key = f"{prefix}celery-taskset-meta-{group_id}".encode()
    assert key_slot(tagged_group_key(group_key, suffix.encode())) == key_slot(group_key)


# ---------------------------------------------------------------------------------------------- building it


def test_url_forms_make_a_cluster_backend(make_app: AppFactory) -> None:
    """Nothing connects before first use, so a made-up address and password are enough here."""
    app = make_app("redisresults+redis+cluster://:s3cret@127.0.0.1:1;redis+cluster://127.0.0.1:2")
    backend = app.backend
    assert type(backend) is CeleryClusterBackend and isinstance(backend, CeleryBackend)
    assert backend.core().spec.kind == "cluster"
    assert isinstance(backend.core().backend, redisresults.ClusterBackend)
    assert backend.core().spec.options["password"] == "s3cret"
    assert "s3cret" not in backend.as_uri() + repr(backend.core()) + repr(backend.core().backend)
    assert backend.as_uri() == "redis+cluster://:**@127.0.0.1:1;redis+cluster://127.0.0.1:2"
    assert all(issubclass(error, backend.connection_errors) for error in SLOT_ERRORS)
    by_class = make_app("redisresults.celery:CeleryBackend+redis+cluster://127.0.0.1:1")
    assert type(by_class.backend) is CeleryClusterBackend


def test_settings_keep_their_meaning_on_a_cluster() -> None:
    """``redis_backend_use_ssl`` with ``redis+cluster://`` means TLS, as Celery honours it with ``redis://``."""
    params = {"host": "h1", "port": 7000, "db": 0, "password": "pw", "max_connections": 7, "socket_timeout": 3.0,
              "connection_class": redis.SSLConnection, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    spec = cluster_spec("redis+cluster://h1:7000;redis+cluster://h2:7001", params, serializer="json",
                        accept=["application/json"], transport_options={"global_keyprefix": "p:"})
    assert spec.kind == "cluster" and spec.url == "rediss+cluster://h1:7000;rediss+cluster://h2:7001"
    assert "host" not in spec.options and "db" not in spec.options
    assert spec.options["max_connections"] == 7 and spec.options["ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    with pytest.raises(redisresults.ConfigError, match="only database 0"):
        cluster_spec("redis+cluster://h1:7000", dict(params, db=3), serializer="json",
                     accept=["application/json"], transport_options=None)


# ---------------------------------------------------------------------------------------------- on a live cluster


def test_waits_spread_over_the_shards_on_one_connection_per_primary(
    make_app: AppFactory, cluster_url: str, redis_cluster: ClusterGroup
) -> None:
    """The worker side (``mark_as_done``, Celery's own store) and 60 waiting threads: every result is stored on
    its key's primary and announced on its shard channel; the client holds one Pub/Sub connection per primary."""
    client = make_app(cluster_url, redis_client_name=f"rr-cl-{uuid.uuid4().hex[:6]}")
    worker_side = make_app(cluster_url)
    ids = [str(uuid.uuid4()) for _ in range(60)]
    keys = [client.backend.get_key_for_task(task_id) for task_id in ids]
    assert len(keys_on(redis_cluster, keys)) == 3  # the ids really spread over the three primaries
    results: Dict[str, Any] = {}
    lock = threading.Lock()

    def wait(task_id: str) -> None:
        value = client.AsyncResult(task_id).get(timeout=TIMEOUT)
        with lock:
            results[task_id] = value

    threads = [threading.Thread(target=wait, args=(task_id,)) for task_id in ids]
    for thread in threads:
        thread.start()
    poll(lambda: client.backend.stats()["subscribed"] >= len(ids) or None, timeout=TIMEOUT, what="60 subscribed")
    nodes = client.backend.stats()["nodes"]
    assert len(nodes) == 3 and sum(nodes.values()) == len(ids)
    name = client.backend.core().backend.connparams.get("client_name")
    assert name and sum(len(redis_cluster.pubsub_clients(port, name)) for port in redis_cluster.primaries()) == 3
    for task_id in ids:
        worker_side.backend.mark_as_done(task_id, {"id": task_id})
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == {task_id: {"id": task_id} for task_id in ids}
    assert client.backend.stats()["drainer_alive"]


def test_subscribed_from_delay_until_get_or_forget_returns_on_the_shards(
    cluster_threads: CeleryWorker, make_app: AppFactory, cluster_url: str, broker_url: str,
    redis_cluster: ClusterGroup,
) -> None:
    """As on one server (``test_worker.py``): the shard channel is subscribed on its primary once delay() returns,
    and get()/forget() return with its SUNSUBSCRIBE sent (neither subscribed nor lingering), after a quiet
    LINGER: a lone result's goes out before its waiter runs, forget()'s before forget() returns."""
    app = make_app(cluster_url, broker_url, cluster_threads.queue)
    cluster = redis_cluster.client()

    def on_its_primary(task_id: str) -> int:
        key = app.backend.get_key_for_task(task_id)
        owner = cluster.get_node_from_key(key).redis_connection
        return int(owner.execute_command("PUBSUB", "SHARDNUMSUB", key)[1])

    def left_subscribed() -> tuple[int, int]:
        stats = app.backend.stats()
        return stats["subscribed"], stats["unsubscribing"]

    try:
        for attempt in range(5):
            time.sleep(2 * LINGER)  # the precondition, not a synchronisation: no SUNSUBSCRIBE went out just before
            result = s(app, "sleep", TASK_TIME).delay()  # still running when checked: its result ends the hold
            assert on_its_primary(result.id) == 1, attempt
            assert result.get(timeout=TIMEOUT) == TASK_TIME
            assert left_subscribed() == (0, 0), attempt
            forgotten = s(app, "sleep", TASK_TIME).delay()
            assert on_its_primary(forgotten.id) == 1, attempt
            forgotten.forget()
            assert left_subscribed() == (0, 0), attempt
    finally:
        cluster.close()


def test_many_results_are_read_per_slot(make_app: AppFactory, cluster_url: str) -> None:
    """Keys of many slots in one call (one MGET per slot underneath), in the order asked."""
    app = make_app(cluster_url)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    for task_id in ids:
        app.backend.mark_as_done(task_id, task_id)
    values = app.backend.mget([app.backend.get_key_for_task(task_id) for task_id in ids] + [b"rr-missing"])
    assert [app.backend.decode_result(raw)["result"] for raw in values[:-1]] == ids and values[-1] is None
    assert dict((task_id, meta["result"]) for task_id, meta in app.backend.get_many(ids, timeout=TIMEOUT)) == {
        task_id: task_id for task_id in ids
    }


def test_what_the_drop_in_writes_redisresults_reads(make_app: AppFactory, cluster_url: str,
                                                    redis_cluster: ClusterGroup) -> None:
    app = make_app(cluster_url)
    with redisresults.backend_from_url(redis_cluster.url) as own:
        task_id = str(uuid.uuid4())
        waiting = own.AsyncResult(task_id)
        done = threading.Event()
        waiting.then(lambda _: done.set())
        poll(lambda: own.stats()["settling"] == 0 and own.stats()["subscribed"] == 1 or None, timeout=TIMEOUT,
             what="redisresults' own waiter subscribed")
        app.backend.mark_as_done(task_id, {"from": "celery"})  # Celery's document, SET + SPUBLISH by the drop-in
        assert done.wait(TIMEOUT)
        assert waiting.get(timeout=1) == {"from": "celery"}
        failed = str(uuid.uuid4())
        app.backend.mark_as_failure(failed, KeyError("nope"))
        with pytest.raises(KeyError):
            own.AsyncResult(failed).get(timeout=TIMEOUT)


def test_chord_keys_share_their_group_keys_slot(cluster_threads: CeleryWorker, make_app: AppFactory,
                                                cluster_url: str, broker_url: str,
                                                redis_cluster: ClusterGroup) -> None:
    app = make_app(cluster_url, broker_url, cluster_threads.queue)
    result = chord(s(app, "add", i, i) for i in range(20))(s(app, "xsum"))
    assert result.get(timeout=TIMEOUT) == 380
    gid = result.parent.id
    group_key = app.backend.get_key_for_group(gid)
    done_key = app.backend.get_key_for_group(gid, ".c")
    assert done_key == b"{" + group_key + b"}.c" and key_slot(done_key) == key_slot(group_key)
    cluster = redis_cluster.client()
    try:
        assert cluster.get(done_key) == b"done"  # Celery's cleanup script ran: every chord key in one slot
        assert not cluster.exists(app.backend.get_key_for_group(gid, ".j"))
    finally:
        cluster.close()


def test_pickled_results_rebuild_a_cluster_backend(make_app: AppFactory, cluster_url: str) -> None:
    app = make_app(cluster_url)
    task_id = str(uuid.uuid4())
    clone = pickle.loads(pickle.dumps(app.AsyncResult(task_id)))
    assert type(clone.backend) is CeleryClusterBackend and clone.backend.core() is app.backend.core()
    app.backend.mark_as_done(task_id, 7)
    assert clone.get(timeout=TIMEOUT) == 7


@pytest.mark.slow
def test_stores_ride_out_a_failover(fresh_cluster: Callable[[], ClusterGroup], make_app: AppFactory) -> None:
    """300 waits pending; a writer stores through Celery's own path while a primary fails over; nothing lost."""
    group = fresh_cluster()
    group.wait_replicas_synced()
    url = "redisresults+" + group.url
    client, writer = make_app(url), make_app(url)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    results = client.GroupResult(str(uuid.uuid4()), [client.AsyncResult(task_id) for task_id in ids])
    outcome: List[Any] = []
    joiner = threading.Thread(target=lambda: outcome.append(results.join_native(timeout=60)))
    joiner.start()
    poll(lambda: client.backend.stats()["subscribed"] >= len(ids) and client.backend.stats()["settling"] == 0
         or None, timeout=30, what="300 subscribed")

    def store(chunk: List[str]) -> None:
        for task_id in chunk:
            writer.backend.mark_as_done(task_id, task_id)

    store(ids[:100])
    during = threading.Thread(target=store, args=(ids[100:200],))
    during.start()
    group.failover(group.primaries()[0])
    during.join(60)
    store(ids[200:])
    joiner.join(70)
    assert outcome == [ids]


def test_tls_cluster_urls_follow_celerys_rules(make_app: AppFactory) -> None:
    with pytest.raises(ValueError, match="ssl_cert_reqs"):  # Celery's own error for a rediss:// URL
        make_app("redisresults+rediss+cluster://127.0.0.1:1").backend
    app = make_app("redisresults+rediss+cluster://127.0.0.1:1;rediss+cluster://127.0.0.1:2?ssl_cert_reqs=required")
    spec = app.backend.core().spec
    assert spec.url == "rediss+cluster://127.0.0.1:1;rediss+cluster://127.0.0.1:2"
    assert spec.options["ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
