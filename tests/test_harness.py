"""The server harness itself: each kind of server comes up, answers, and is configured as asked."""

from __future__ import annotations

import os
from typing import Callable
from urllib.parse import unquote

import pytest
import redis
import redis.sentinel

from tests.servers import RedisServer, SentinelGroup, no_retry


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only, sends nothing
    except ProcessLookupError:
        return False
    return True


def test_tcp_server_answers(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0" == redis_server.url
    assert redis_server.host == "127.0.0.1"
    assert redis_server.pid is not None and _pid_alive(redis_server.pid)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert redis_server.cli("CONFIG", "GET", "port") == {"port": str(redis_server.port)}
    assert redis_server.cli("CONFIG", "GET", "appendonly") == {"appendonly": "no"}


def test_unix_server_answers(unix_server: RedisServer) -> None:
    assert unix_server.unix_path is not None
    assert unix_server.url == f"socket://{unix_server.unix_path}?virtual_host=0"
    client = redis.Redis(unix_socket_path=unix_server.unix_path)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert unix_server.cli("CONFIG", "GET", "port") == {"port": "0"}


def test_tls_server_answers_with_its_ca(tls_server: RedisServer) -> None:
    client = redis.Redis(host="localhost", port=tls_server.port, ssl=True, ssl_ca_certs=tls_server.ca_path)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_tls_server_url(tls_server: RedisServer) -> None:
    url = tls_server.url
    assert url.startswith(f"rediss://localhost:{tls_server.port}/0?ssl_cert_reqs=required&ssl_ca_certs=")
    assert unquote(url.rsplit("ssl_ca_certs=", 1)[1]) == tls_server.ca_path
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_tls_server_rejects_wrong_ca(tls_server: RedisServer) -> None:
    client = redis.Redis(
        host="localhost", port=tls_server.port, ssl=True, ssl_ca_certs=tls_server.wrong_ca_path, retry=no_retry()
    )
    try:
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.ping()
    finally:
        client.close()


def test_tls_certificate_names_localhost_only(tls_server: RedisServer) -> None:
    client = redis.Redis(
        host="127.0.0.1", port=tls_server.port, ssl=True, ssl_ca_certs=tls_server.ca_path, retry=no_retry(),
        ssl_check_hostname=True,  # the default only from redis-py 6 on
    )
    try:
        with pytest.raises(redis.ConnectionError, match="(?i)mismatch|doesn't match|not valid for"):
            client.ping()
    finally:
        client.close()


def test_tls_server_has_no_plain_port(tls_server: RedisServer) -> None:
    assert tls_server.cli("CONFIG", "GET", "port") == {"port": "0"}


def test_sentinel_discovers_master(sentinel_group: SentinelGroup) -> None:
    assert sentinel_group.master_name == "mymaster"
    expected_url = ";".join(f"sentinel://127.0.0.1:{port}" for _, port in sentinel_group.sentinel_addrs)
    assert sentinel_group.sentinel_url == expected_url
    assert len(sentinel_group.sentinel_addrs) == 3
    sentinel = redis.sentinel.Sentinel(sentinel_group.sentinel_addrs, socket_timeout=5)
    try:
        assert sentinel.discover_master("mymaster") == sentinel_group.master_address()
        assert len(sentinel.discover_slaves("mymaster")) == 1
    finally:
        for client in sentinel.sentinels:
            client.close()


def test_sentinel_tls_group(sentinel_tls_group: SentinelGroup) -> None:
    sentinel = redis.sentinel.Sentinel(
        sentinel_tls_group.sentinel_addrs, socket_timeout=5, ssl=True, ssl_ca_certs=sentinel_tls_group.ca_path
    )
    master = sentinel.master_for("mymaster")
    try:
        assert sentinel.discover_master("mymaster") == sentinel_tls_group.master_address()
        assert master.set("harness:tls", "1") is True
        assert master.execute_command("WAIT", 1, 5000) == 1  # replicated over TLS
        assert master.connection_pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    finally:
        master.close()
        for client in sentinel.sentinels:
            client.close()


def test_restart_keeps_data_with_appendonly(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server(appendonly=True)
    port, pid = server.port, server.pid
    client = server.client()
    try:
        client.set("harness:kept", "yes")
    finally:
        client.close()
    server.restart()
    assert server.port == port
    assert server.pid != pid and pid is not None and not _pid_alive(pid)
    client = server.client()
    try:
        assert client.get("harness:kept") == b"yes"
    finally:
        client.close()


def test_fresh_server_applies_extra_config(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server(extra_config=["proto-max-bulk-len 1mb"])
    assert server.cli("CONFIG", "GET", "proto-max-bulk-len") == {"proto-max-bulk-len": "1048576"}


def test_close_stops_by_pid_and_removes_dir(fresh_server: Callable[..., RedisServer]) -> None:
    server = fresh_server()
    pid, directory = server.pid, server.dir
    assert pid is not None and _pid_alive(pid)
    server.close()
    assert not _pid_alive(pid)
    assert not directory.exists()
    assert server.pid is None
    server.close()  # idempotent


def test_key_prefix_is_unique(key_prefix: str) -> None:
    assert key_prefix.startswith("t") and key_prefix.endswith(":") and len(key_prefix) == 14


@pytest.mark.slow
def test_failover_moves_master_and_group_recovers(fresh_sentinel_group: Callable[..., SentinelGroup]) -> None:
    # A private group: the session group stays where it is for the other tests.
    group = fresh_sentinel_group()
    old = group.master_address()
    new = group.failover()
    assert new != old
    assert group.master_address() == new
    assert group.node_at(new).info("replication")["role"] == "master"
    group.wait_ready(timeout=30)  # the old master rejoins as a replica
    assert group.node_at(old).info("replication")["role"] == "slave"
