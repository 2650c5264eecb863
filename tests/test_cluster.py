"""ClusterBackend against a real 3-primary + 3-replica Redis Cluster the suite starts itself (``tests/cluster.py``).

The topology tests (failover, SIGKILL, reshard, migration) each get a private cluster; they wait on results with
1,000 waits pending while the topology changes and a writer keeps storing, and check that nothing is lost.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from typing import Any, Callable, Dict, Iterator, List

import celery
import pytest
import redis
from redis.crc import key_slot

import redisresults
from redisresults import ClusterBackend, ResultTimeout
from redisresults._keys import task_key
from tests.cluster import ClusterGroup, keys_on
from tests.polling import poll

WAIT = 60.0


@pytest.fixture
def make_backend() -> Iterator[Callable[..., ClusterBackend]]:
    made: List[ClusterBackend] = []

    def factory(url: str, **options: Any) -> ClusterBackend:
        backend = redisresults.backend_from_url(url, **options)
        assert isinstance(backend, ClusterBackend)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def new_ids(count: int) -> List[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


class Waiters:
    """``len(ids)`` waits pending at once: ``threads`` threads, each joining a ResultSet of its share of the ids."""

    def __init__(self, backend: ClusterBackend, ids: List[str], threads: int) -> None:
        self.results: Dict[str, Any] = {}
        self.errors: List[BaseException] = []
        self._lock = threading.Lock()
        share = len(ids) // threads
        self._threads = [
            threading.Thread(target=self._wait, args=(backend, ids[i * share : (i + 1) * share]), daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _wait(self, backend: ClusterBackend, ids: List[str]) -> None:
        try:
            values = backend.ResultSet(ids).join(timeout=WAIT)
        except BaseException as error:  # reported by join() below
            with self._lock:
                self.errors.append(error)
            return
        with self._lock:
            self.results.update(zip(ids, values))

    def join(self) -> Dict[str, Any]:
        for thread in self._threads:
            thread.join(WAIT + 10)
        assert not self.errors, [repr(e) + " " + str(e) + " cause=" + repr(e.__cause__) for e in self.errors[:3]]
        return self.results


def wait_subscribed(backend: ClusterBackend, count: int) -> Dict[str, Any]:
    def settled() -> Dict[str, Any] | None:
        stats = backend.stats()
        return stats if stats["subscribed"] >= count and stats["settling"] == 0 else None

    return poll(settled, timeout=30, what=f"{count} channels subscribed")


def store_all(url: str, prefix: str, ids: List[str]) -> None:
    with redisresults.backend_from_url(url, transport_options={"global_keyprefix": prefix}) as writer:
        for task_id in ids:
            writer.mark_as_done(task_id, task_id)


def pending_then(group: ClusterGroup, make_backend: Callable[..., ClusterBackend], key_prefix: str,
                 change: Callable[[], None], count: int = 1000) -> ClusterBackend:
    """``count`` waits pending: a quarter stored before the topology change, a quarter while it happens, half
    after it (those reach only waits the drainer moved to the new owner); every result must arrive."""
    backend = make_backend(group.url, transport_options={"global_keyprefix": key_prefix})
    ids = new_ids(count)
    waiters = Waiters(backend, ids, threads=20)
    wait_subscribed(backend, count)
    store_all(group.url, key_prefix, ids[: count // 4])
    thread = threading.Thread(target=store_all, args=(group.url, key_prefix, ids[count // 4 : count // 2]),
                              daemon=True)
    thread.start()
    change()
    thread.join(WAIT)
    store_all(group.url, key_prefix, ids[count // 2 :])
    results = waiters.join()
    assert results == {task_id: task_id for task_id in ids}
    return backend


# ---------------------------------------------------------------------------------------------- configuration


def test_url_picks_cluster_backend_and_from_config() -> None:
    backend = redisresults.backend_from_url("redis+cluster://:pw@h1:7000;redis+cluster://h2:7001")
    assert type(backend) is ClusterBackend
    assert backend.connparams["startup_nodes"] == [{"host": "h1", "port": 7000}, {"host": "h2", "port": 7001}]
    assert backend.connparams["password"] == "pw" and "host" not in backend.connparams
    assert "pw" not in repr(backend) and backend.as_uri().startswith("redis+cluster://:**@h1:7000;")
    conf = redisresults.from_config({"result_backend": "redis+cluster://h1:7000", "redis_socket_timeout": 5})
    assert type(conf) is ClusterBackend and conf.connparams["socket_timeout"] == 5


def test_tls_form_keeps_the_ssl_rules() -> None:
    backend = redisresults.backend_from_url("rediss+cluster://h1:7000?ssl_cert_reqs=required")
    assert backend.connparams["connection_class"] is redis.SSLConnection
    with pytest.raises(redisresults.ConfigError, match="rediss"):
        redisresults.backend_from_url("rediss+cluster://h1:7000")
    with pytest.raises(redisresults.ConfigError, match="rediss\\+cluster"):
        redisresults.backend_from_url("redis+cluster://h1:7000", ssl=True)


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("redis+cluster://h1:7000/3", {}, "only database 0"),
        ("redis+cluster://h1:7000", {"db": 2}, "only database 0"),
        ("redis+cluster://h1:7000", {"host": "x"}, "host"),
        ("redis+cluster://h1:7000", {"transport_options": {"master_name": "m"}}, "master_name"),
        ("redis+cluster://h1:7000,h2:7001", {}, "';'"),
        ("redis+cluster://h1:7000;sentinel://h2:7001", {}, "redis\\+cluster://"),
        ("redis+cluster://h1:7000?nope=1", {}, "nope"),
    ],
)
def test_options_that_make_no_sense_on_a_cluster(url: str, options: Dict[str, Any], match: str) -> None:
    with pytest.raises(redisresults.ConfigError, match=match):
        redisresults.backend_from_url(url, **options)


def test_hash_tag_prefix_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="redisresults"):
        redisresults.backend_from_url("redis+cluster://h1:7000", transport_options={"global_keyprefix": "{app}"})
    assert [r.message for r in caplog.records] == ["cluster_keyprefix_hash_tag"]


# ---------------------------------------------------------------------------------------------- storing, reading


def _command_table_reads(cluster: ClusterGroup) -> int:
    """COMMAND calls served by every node: each RedisCluster built reads the command table once."""
    total = 0
    for node in cluster.live():
        client = node.client()
        try:
            total += int(client.info("commandstats").get("cmdstat_command", {}).get("calls", 0))
        finally:
            client.close()
    return total


def test_many_first_uses_at_once_build_one_cluster_client(redis_cluster: ClusterGroup,
                                                           make_backend: Callable[..., ClusterBackend]) -> None:
    """Twenty threads' first use of a fresh backend: one RedisCluster is built (slot map, command table), the
    others wait for it instead of building and throwing away their own."""
    backend = make_backend(redis_cluster.url)
    before = _command_table_reads(redis_cluster)
    start = threading.Barrier(20)
    clients: List[Any] = []

    def first_use() -> None:
        start.wait(10)
        clients.append(backend.client)

    threads = [threading.Thread(target=first_use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(clients) == 20 and all(client is clients[0] for client in clients)
    assert _command_table_reads(redis_cluster) - before == 1
    assert backend.client.ping()


def test_store_get_groups_forget(redis_cluster: ClusterGroup, make_backend: Callable[..., ClusterBackend],
                                 key_prefix: str) -> None:
    backend = make_backend(redis_cluster.url, transport_options={"global_keyprefix": key_prefix})
    ids = new_ids(60)
    for task_id in ids:
        backend.mark_as_done(task_id, {"id": task_id})
    assert len(keys_on(redis_cluster, [task_key(key_prefix, i) for i in ids])) == 3  # on every shard
    assert [m["result"]["id"] for m in backend.get_many_metas(ids)] == ids
    backend.mark_as_failure(ids[0], ValueError("late"))  # a stored SUCCESS is never replaced
    assert backend.get_task_meta(ids[0])["status"] == "SUCCESS"
    backend.save_group("g-" + ids[1], ids)
    group = backend.restore_group("g-" + ids[1])
    assert group is not None and group.join(timeout=5) == [{"id": i} for i in ids]
    backend.forget(ids[2])
    backend.delete_group("g-" + ids[1])
    assert backend.get_task_meta(ids[2])["status"] == "PENDING" and backend.restore_group("g-" + ids[1]) is None
    with pytest.raises(redisresults.BackendStoreError):
        make_backend(redis_cluster.url, max_value_size=10).mark_as_done(ids[3], "x" * 11)


def test_fan_in_5000_waits_100_threads_other_process(
    redis_cluster: ClusterGroup, make_backend: Callable[..., ClusterBackend], key_prefix: str, name: str
) -> None:
    backend = make_backend(redis_cluster.url, transport_options={"global_keyprefix": key_prefix}, client_name=name)
    ids = new_ids(5000)
    waiters = Waiters(backend, ids, threads=100)
    stats = wait_subscribed(backend, 5000)
    primaries = redis_cluster.primaries()
    assert sorted(stats["nodes"]) == sorted(f"127.0.0.1:{p}" for p in primaries)
    assert all(count > 1000 for count in stats["nodes"].values()), stats["nodes"]
    for port in primaries:  # exactly one redisresults Pub/Sub connection on each primary
        assert len(redis_cluster.pubsub_clients(port, name)) == 1
    script = ("import sys, redisresults\n"
              "b = redisresults.backend_from_url(sys.argv[1], transport_options={'global_keyprefix': sys.argv[2]})\n"
              "for line in sys.stdin: b.mark_as_done(line.strip(), line.strip())\n"
              "b.close()\n")
    subprocess.run([sys.executable, "-c", script, redis_cluster.url, key_prefix], input="\n".join(ids), text=True,
                   check=True, timeout=WAIT)
    assert waiters.join() == {task_id: task_id for task_id in ids}
    assert backend.stats()["messages"] >= 4900


def test_celery_encoded_document_set_and_spublished_by_plain_client(
    redis_cluster: ClusterGroup, make_backend: Callable[..., ClusterBackend], key_prefix: str
) -> None:
    backend = make_backend(redis_cluster.url, transport_options={"global_keyprefix": key_prefix})
    app = celery.Celery("t", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    task_id = new_ids(1)[0]
    result = backend.AsyncResult(task_id)
    done = threading.Event()
    result.then(lambda _: done.set())
    wait_subscribed(backend, 1)
    theirs = app.backend
    payload = theirs.encode(theirs._get_result_meta({"celery": [1, 2]}, "SUCCESS", None, None))
    key = theirs.get_key_for_task(task_id)
    assert key == task_key(key_prefix, task_id)
    plain = redis_cluster.client()
    try:
        plain.set(key, payload, ex=60)
        assert plain.execute_command("SPUBLISH", key, payload, target_nodes=plain.get_node_from_key(key)) == 1
    finally:
        plain.close()
        app.close()
    assert done.wait(10)
    assert result.get(timeout=1) == {"celery": [1, 2]}


def test_idle_node_connections_are_closed(redis_cluster: ClusterGroup, make_backend: Callable[..., ClusterBackend],
                                          key_prefix: str) -> None:
    backend = make_backend(redis_cluster.url, transport_options={"global_keyprefix": key_prefix})
    backend.result_consumer  # noqa: B018 - make the drainer
    drainer = backend._cluster_drainer
    assert drainer is not None
    drainer.idle_close = 0.2
    with pytest.raises(ResultTimeout):
        backend.AsyncResult(new_ids(1)[0]).get(timeout=0.3)
    poll(lambda: True if backend.stats()["nodes"] == {} else None, timeout=10, what="idle connections closed")


# ---------------------------------------------------------------------------------------------- topology changes


@pytest.mark.slow
def test_cluster_failover_loses_nothing(fresh_cluster: Callable[[], ClusterGroup],
                                        make_backend: Callable[..., ClusterBackend], key_prefix: str) -> None:
    group = fresh_cluster()
    group.wait_replicas_synced()
    primary = group.primaries()[0]
    backend = pending_then(group, make_backend, key_prefix, lambda: group.failover(primary))
    assert backend.stats()["topology_refreshes"] >= 2


@pytest.mark.slow
def test_primary_killed_loses_nothing(fresh_cluster: Callable[[], ClusterGroup],
                                      make_backend: Callable[..., ClusterBackend], key_prefix: str) -> None:
    group = fresh_cluster()
    group.wait_replicas_synced()
    primary = group.primaries()[1]
    replica = group.replica_of(primary)

    def kill() -> None:
        group.kill(primary)
        poll(lambda: True if replica in group.primaries() else None, timeout=30, what="the replica promoted",
             interval=0.05, tolerate=(redis.RedisError, OSError))

    backend = pending_then(group, make_backend, key_prefix, kill)
    stats = backend.stats()
    assert stats["reconnects"] >= 1 and f"127.0.0.1:{primary}" not in stats["nodes"]


@pytest.mark.slow
def test_reshard_of_pending_slots_loses_nothing(fresh_cluster: Callable[[], ClusterGroup],
                                                make_backend: Callable[..., ClusterBackend], key_prefix: str) -> None:
    group = fresh_cluster()
    source, target = group.primaries()[:2]
    backend = pending_then(group, make_backend, key_prefix, lambda: group.reshard(source, target, 2000))
    assert backend.stats()["topology_refreshes"] >= 2


def test_store_during_migration_is_delivered(fresh_cluster: Callable[[], ClusterGroup],
                                             make_backend: Callable[..., ClusterBackend], key_prefix: str) -> None:
    group = fresh_cluster()
    backend = make_backend(group.url, transport_options={"global_keyprefix": key_prefix})
    task_id = new_ids(1)[0]
    slot = key_slot(task_key(key_prefix, task_id))
    source = group.owner(slot)
    target = next(port for port in group.primaries() if port != source)
    result = backend.AsyncResult(task_id)
    done = threading.Event()
    result.then(lambda _: done.set())
    wait_subscribed(backend, 1)
    group.begin_migration(slot, source, target)
    backend.mark_as_done(task_id, "moved")  # a new key: ASK -> stored on the target, where nobody listens yet
    assert not done.wait(0.2)
    group.finish_migration(slot, source, target)  # the source drops the channel: resubscribe there, re-read
    assert done.wait(10)
    assert result.get(timeout=1) == "moved"
    assert backend.stats()["recovered"] == 1
