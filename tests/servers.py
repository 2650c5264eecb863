"""Real ``redis-server`` and Sentinel processes for the tests, started and stopped by PID.

Every process is started by this module with :class:`subprocess.Popen`, its PID is kept, and it is stopped by that
PID only (SIGTERM, a bounded wait, then SIGKILL): nothing is ever looked up or killed by name. Each server lives
in a private temporary directory (config, log, data, unix socket) that :meth:`RedisServer.close` removes. Whatever
is still running when the interpreter exits is closed by an ``atexit`` hook, so a crashed test run leaves nothing
behind.

``stop()`` ends the process but keeps its directory, so ``start()`` can bring it back on the same port or socket
with its data (``appendonly=True``); ``close()`` stops it and removes the directory.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple, TypeVar
from urllib.parse import quote

import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisresults._process import terminate
from tests.polling import poll

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05

T = TypeVar("T")


class ServerUnavailable(Exception):
    """A binary is missing, lacks a feature (TLS), or a server did not come up in time."""


def find_binary(name: str) -> str:
    """The absolute path of ``name`` on PATH, or :class:`ServerUnavailable`."""
    path = shutil.which(name)
    if path is None:
        hint = "Debian/Ubuntu: apt-get install redis-server redis-sentinel"
        raise ServerUnavailable(f"{name} not found on PATH ({hint})")
    return path


def sentinel_command(config_path: str) -> List[str]:
    """How to start a sentinel: ``redis-sentinel CONF``, or ``redis-server CONF --sentinel`` when it is absent."""
    sentinel = shutil.which("redis-sentinel")
    if sentinel is not None:
        return [sentinel, config_path]
    return [find_binary("redis-server"), config_path, "--sentinel"]


def redis_server_supports_tls(executable: str | None = None) -> bool:
    """Whether ``redis-server`` was built with TLS.

    Asks for TLS replication without a CA: a TLS build refuses to configure TLS and exits at once; a build
    without TLS exits at once on the unknown directive. Neither starts a server.
    """
    executable = executable or find_binary("redis-server")
    proc = subprocess.run(
        [executable, "--port", "0", "--daemonize", "no", "--tls-replication", "yes"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return "Bad directive" not in proc.stdout + proc.stderr


def no_retry() -> Retry:
    """For ``redis.Redis(retry=...)``: fail at once. Polls retry themselves, and redis-py's default retries (with
    backoff) on a refused connection or a failed handshake would only slow them down."""
    return Retry(NoBackoff(), 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    details: Callable[[], str] = lambda: "",
) -> T:
    """``poll`` for a server coming up: connection errors count as "not yet"; ServerUnavailable after ``timeout``."""
    try:
        return poll(probe, timeout=timeout, what=what, interval=POLL_INTERVAL, tolerate=(redis.RedisError, OSError))
    except AssertionError as error:
        extra = details()
        raise ServerUnavailable(f"{error}\n{extra}" if extra else str(error)) from None


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` asking the kernel to SIGTERM the child when the test process dies, even by SIGKILL
    (when ``atexit`` cannot run). Only from the main thread: the signal follows the *thread* that started the child.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl: nobody will stop us
            os._exit(1)

    return preexec


def private_dir(prefix: str, parent: str | None = None) -> Path:
    """A new temporary directory, removed by :func:`remove_dir` or at interpreter exit."""
    path = Path(tempfile.mkdtemp(prefix=f"redisresults-{prefix}-", dir=parent))
    _DIRS.append(path)
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path in _DIRS:
        _DIRS.remove(path)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Certificates:
    """A trustme CA, a certificate it issued for ``hostnames``, and an unrelated CA, written as PEM files."""

    def __init__(self, directory: Path, hostnames: Sequence[str]) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert(*hostnames)
        self.hostnames = tuple(hostnames)
        self.ca_path = str(directory / "ca.pem")
        self.cert_path = str(directory / "server.pem")
        self.key_path = str(directory / "server.key")
        self.wrong_ca_path = str(directory / "wrong-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        cert.private_key_pem.write_to_path(self.key_path)
        with open(self.cert_path, "wb") as out:
            for pem in cert.cert_chain_pems:
                out.write(pem.bytes())
        trustme.CA().cert_pem.write_to_path(self.wrong_ca_path)

    def config(self) -> List[str]:
        """The redis.conf lines naming these files."""
        return [
            f"tls-cert-file {self.cert_path}",
            f"tls-key-file {self.key_path}",
            f"tls-ca-cert-file {self.ca_path}",
            "tls-auth-clients no",
        ]


class _Process:
    """One process started from a config file in a private directory; stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.config_path = directory / "redis.conf"
        self.log_path = directory / "redis.log"
        self.stdio_path = directory / "stdio.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        _LIVE.append(self)

    def _command(self) -> List[str]:
        raise NotImplementedError

    def connection_kwargs(self) -> Dict[str, Any]:
        """redis-py keyword arguments that reach this process."""
        raise NotImplementedError

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client for assertions; the caller closes it. ``kwargs`` override the defaults."""
        options: Dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
        options.update(self.connection_kwargs())
        options.update(kwargs)
        return redis.Redis(**options)

    def cli(self, *args: Any) -> Any:
        """Run one command on a fresh connection and return the decoded reply, e.g. ``cli("CONFIG", "GET", "port")``."""
        client = self.client(decode_responses=True, retry=no_retry())
        try:
            reply = client.execute_command(*args)
        finally:
            client.close()
        if [str(a).upper() for a in args[:2]] == ["CONFIG", "GET"] and isinstance(reply, list):
            reply = dict(zip(reply[::2], reply[1::2]))  # redis-py < 5.1 leaves the raw pairs
        return reply

    def _probe(self) -> bool | None:
        client = self.client(socket_timeout=1, socket_connect_timeout=1, retry=no_retry())
        try:
            return True if client.ping() else None
        finally:
            client.close()

    @property
    def pid(self) -> int | None:
        """The PID of the running process, ``None`` when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the process (again) from its config file; call :meth:`wait_ready` to wait for it."""
        if self._closed:
            raise ServerUnavailable(f"{self!r} was closed")
        if self.running:
            raise ServerUnavailable(f"{self!r} is already running")
        with open(self.stdio_path, "ab") as stdio:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )

    def log_tail(self) -> str:
        """The end of the process's output and log file, for error messages."""
        return f"--- {self.stdio_path} ---\n{_tail(self.stdio_path)}\n--- {self.log_path} ---\n{_tail(self.log_path)}"

    def _ready_probe(self) -> bool | None:
        if self._proc is None:
            raise ServerUnavailable(f"{self!r} is not started")
        code = self._proc.poll()
        if code is not None:
            raise ServerUnavailable(f"{self!r} exited with status {code}\n{self.log_tail()}")
        return self._probe()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the process answers; raise :class:`ServerUnavailable` with the log tail if it does not."""
        wait_for(self._ready_probe, timeout=timeout, what=f"{self!r} to answer PING", details=self.log_tail)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to this process's PID, wait up to ``timeout``, then SIGKILL to the same PID. Keeps the directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL to this process's PID (a crash: no shutdown, no final AOF fsync). Keeps the directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        """Stop the process and remove its directory. Safe to call more than once."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            remove_dir(self.dir)
            if self in _LIVE:
                _LIVE.remove(self)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RedisServer(_Process):
    """A ``redis-server`` on a free loopback port (or only a unix socket, or only a TLS port).

    ``tls=True``: plain port off, a ``tls-port`` with a trustme certificate for ``tls_hostnames`` (by default
    ``"localhost"`` only, so connecting to 127.0.0.1 with hostname checking fails). ``certificates`` reuses a CA
    and certificate already made (a Sentinel group shares one). ``extra_config`` lines are appended to redis.conf.
    """

    def __init__(
        self,
        *,
        unix: bool = False,
        tls: bool = False,
        appendonly: bool = False,
        extra_config: Sequence[str] = (),
        tls_hostnames: Sequence[str] = ("localhost",),
        certificates: Certificates | None = None,
        start: bool = True,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        if unix and tls:
            raise ValueError("a RedisServer is either unix=True or tls=True, not both")
        self.executable = find_binary("redis-server")
        if tls and not redis_server_supports_tls(self.executable):
            raise ServerUnavailable(
                f"{self.executable} was built without TLS support (tls-port is an unknown directive); "
                "install a TLS-enabled build, e.g. Debian's redis-server package"
            )
        # a unix socket path must fit in sun_path (108 bytes): fall back to /tmp when TMPDIR is long
        parent = "/tmp" if unix and len(tempfile.gettempdir()) > 60 else None
        super().__init__(private_dir("redis", parent))
        self.unix = unix
        self.tls = tls
        self.appendonly = appendonly
        self.extra_config = list(extra_config)
        self.certificates: Certificates | None = None
        if tls:
            self.certificates = certificates or Certificates(self.dir, tls_hostnames)
        self.unix_path: str | None = str(self.dir / "redis.sock") if unix else None
        self.port: int = 0 if unix else free_port()
        self.config_path.write_text(self._config())
        if start:
            try:
                self.start()
                self.wait_ready(ready_timeout)
            except BaseException:
                self.close()
                raise

    def _config(self) -> str:
        lines = [
            f"dir {self.dir}",
            f"logfile {self.log_path}",
            "daemonize no",
            "bind 127.0.0.1",
            "protected-mode no",
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "shutdown-timeout 2",
            # a replica's full sync starts at once instead of after the default 5 s wait for more replicas
            "repl-diskless-sync-delay 0",
        ]
        if self.unix:
            lines += ["port 0", f"unixsocket {self.unix_path}", "unixsocketperm 700"]
        elif self.certificates is not None:
            lines += ["port 0", f"tls-port {self.port}", *self.certificates.config()]
        else:
            lines += [f"port {self.port}"]
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def _command(self) -> List[str]:
        return [self.executable, str(self.config_path)]

    def __repr__(self) -> str:
        where = self.unix_path if self.unix else f"{HOST}:{self.port}{' tls' if self.tls else ''}"
        return f"<RedisServer {where} pid={self.pid}>"

    @property
    def host(self) -> str:
        return HOST

    @property
    def tls_hostname(self) -> str:
        """The name to connect to for hostname verification to pass (the certificate's first name)."""
        if self.certificates is None:
            raise AttributeError("tls_hostname: not a TLS server")
        return self.certificates.hostnames[0]

    @property
    def ca_path(self) -> str:
        """PEM file of the CA that signed this server's certificate."""
        if self.certificates is None:
            raise AttributeError("ca_path: not a TLS server")
        return self.certificates.ca_path

    @property
    def wrong_ca_path(self) -> str:
        """PEM file of a CA that did not sign this server's certificate."""
        if self.certificates is None:
            raise AttributeError("wrong_ca_path: not a TLS server")
        return self.certificates.wrong_ca_path

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, ``socket:///dir/redis.sock?virtual_host=0`` or a ``rediss://`` URL."""
        if self.unix:
            return f"socket://{self.unix_path}?virtual_host=0"
        if self.tls:
            ca = quote(self.ca_path, safe="")
            return f"rediss://{self.tls_hostname}:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
        return f"redis://{HOST}:{self.port}/0"

    def connection_kwargs(self) -> Dict[str, Any]:
        """redis-py keyword arguments that reach this server (TLS: by name, verified against ``ca_path``)."""
        if self.unix:
            return {"unix_socket_path": self.unix_path}
        if self.tls:
            return {"host": self.tls_hostname, "port": self.port, "ssl": True, "ssl_ca_certs": self.ca_path}
        return {"host": HOST, "port": self.port}

    def info(self, section: str = "default") -> Dict[str, Any]:
        client = self.client(retry=no_retry())
        try:
            return dict(client.info(section))
        finally:
            client.close()

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """Stop (SIGTERM) and start again on the same port/socket, and wait until it answers."""
        self.stop()
        self.start()
        self.wait_ready(timeout)


class SentinelProcess(_Process):
    """One sentinel: plain ``port`` for clients; with ``certificates``, TLS to data nodes and peer sentinels."""

    def __init__(
        self, *, master_name: str, master: Tuple[str, int], quorum: int, certificates: Certificates | None
    ) -> None:
        super().__init__(private_dir("sentinel"))
        self.port = free_port()
        lines = [
            f"dir {self.dir}",
            f"logfile {self.log_path}",
            "daemonize no",
            "bind 127.0.0.1",
            "protected-mode no",
            f"port {self.port}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {master_name} {master[0]} {master[1]} {quorum}",
            f"sentinel down-after-milliseconds {master_name} 1000",
            f"sentinel failover-timeout {master_name} 5000",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        if certificates is not None:
            # Sentinels reach data nodes and each other over TLS (tls-replication), and announce their tls-port
            # to their peers; clients keep using the plain port.
            self.tls_port = free_port()
            lines += [f"tls-port {self.tls_port}", "tls-replication yes", *certificates.config()]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.start()

    def _command(self) -> List[str]:
        return sentinel_command(str(self.config_path))

    def __repr__(self) -> str:
        return f"<Sentinel {HOST}:{self.port} pid={self.pid}>"

    def connection_kwargs(self) -> Dict[str, Any]:
        """Sentinels take plain clients on ``port``."""
        return {"host": HOST, "port": self.port}


def _pairs(reply: Any) -> Dict[str, str]:
    """A SENTINEL MASTER/REPLICAS entry (a flat list, or a dict in RESP3) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class SentinelGroup:
    """A master, one replica and three sentinels (quorum 2) watching ``master_name``.

    ``tls=True``: the data nodes listen on TLS only (certificates for ``localhost`` and ``127.0.0.1``, since
    sentinels report IPs), the replica and sentinels connect to them over TLS; sentinels still take plain clients.
    """

    master_name = "mymaster"

    def __init__(
        self,
        *,
        tls: bool = False,
        tls_hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
        ready_timeout: float = 30.0,
    ) -> None:
        self.tls = tls
        self.certificates: Certificates | None = None
        self.nodes: List[RedisServer] = []
        self.sentinels: List[SentinelProcess] = []
        self._cert_dir: Path | None = None
        try:
            sentinel_command("")  # fail early, before anything starts, when no sentinel binary exists
            if tls:
                self._cert_dir = private_dir("certs")
                self.certificates = Certificates(self._cert_dir, tls_hostnames)
            master = RedisServer(tls=tls, certificates=self.certificates)
            self.nodes.append(master)
            replica_config = [f"replicaof {HOST} {master.port}"]
            if tls:
                replica_config.append("tls-replication yes")
            replica = RedisServer(tls=tls, certificates=self.certificates, extra_config=replica_config)
            self.nodes.append(replica)
            # Sentinels learn replicas from the master's INFO, sent at once when they connect and then every 10 s:
            # start them only once the replica is attached, so the first INFO already lists it.
            wait_for(self._replica_attached, timeout=ready_timeout, what="the replica to sync", details=self._logs)
            self.sentinels = [
                SentinelProcess(
                    master_name=self.master_name,
                    master=(HOST, master.port),
                    quorum=2,
                    certificates=self.certificates,
                )
                for _ in range(3)
            ]
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def __repr__(self) -> str:
        return f"<SentinelGroup nodes={self.nodes!r} sentinels={self.sentinels!r}>"

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ca_path(self) -> str:
        if self.certificates is None:
            raise AttributeError("ca_path: not a TLS sentinel group")
        return self.certificates.ca_path

    @property
    def sentinel_addrs(self) -> List[Tuple[str, int]]:
        return [(HOST, s.port) for s in self.sentinels]

    @property
    def sentinel_url(self) -> str:
        return ";".join(f"sentinel://{host}:{port}" for host, port in self.sentinel_addrs)

    def node_at(self, address: Tuple[str, int]) -> RedisServer:
        """The data node listening at ``address``."""
        for node in self.nodes:
            if (HOST, node.port) == (address[0], int(address[1])):
                return node
        raise LookupError(f"no node of {self!r} at {address}")

    def master_address(self) -> Tuple[str, int]:
        """The master's address, as the first sentinel that answers reports it."""
        last: BaseException | None = None
        for sentinel in self.sentinels:
            try:
                host, port = sentinel.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                return str(host), int(port)
            except (redis.RedisError, OSError) as exc:
                last = exc
        raise ServerUnavailable(f"no sentinel of {self!r} answered: {last!r}")

    def _logs(self) -> str:
        return "\n".join(f"{p!r}\n{p.log_tail()}" for p in [*self.nodes, *self.sentinels])

    def _replica_attached(self) -> bool | None:
        master, replica = self.nodes
        for node in self.nodes:
            node._ready_probe()  # raises at once if a process died
        up = replica.info("replication").get("master_link_status") == "up"
        attached = int(master.info("replication").get("connected_slaves", 0)) >= 1
        return True if up and attached else None

    def _sentinels_agree(self) -> bool | None:
        """Every sentinel names the same master, sees the other node as a replica with its link ok, and the other
        sentinels; the master node reports role:master. Holds before and after a failover."""
        agreed: Tuple[str, int] | None = None
        for sentinel in self.sentinels:
            sentinel._ready_probe()
            state = _pairs(sentinel.cli("SENTINEL", "MASTER", self.master_name))
            if {"s_down", "o_down", "failover_in_progress"} & set(state.get("flags", "").split(",")):
                return None
            address = (state.get("ip", ""), int(state.get("port", 0)))
            if agreed is None:
                agreed = address
            if address != agreed or state.get("num-other-sentinels") != str(len(self.sentinels) - 1):
                return None
            replica_ports = {str(n.port) for n in self.nodes if (HOST, n.port) != address}
            healthy = {
                r.get("port")
                for r in map(_pairs, sentinel.cli("SENTINEL", "REPLICAS", self.master_name))
                if r.get("master-link-status") == "ok"
                and not {"s_down", "disconnected"} & set(r.get("flags", "").split(","))
            }
            if len(replica_ports) != len(self.nodes) - 1 or not replica_ports <= healthy:
                return None
            peers = [_pairs(p) for p in sentinel.cli("SENTINEL", "SENTINELS", self.master_name)]
            if len([p for p in peers if "disconnected" not in p.get("flags", "")]) != len(self.sentinels) - 1:
                return None
        if agreed is None or self.node_at(agreed).info("replication").get("role") != "master":
            return None
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every sentinel sees the master, the replica (link ok) and the other sentinels."""
        for process in [*self.nodes, *self.sentinels]:
            process.wait_ready(timeout)
        wait_for(self._sentinels_agree, timeout=timeout, what=f"the sentinels of {self!r} to agree", details=self._logs)

    def failover(self, timeout: float = 30.0) -> Tuple[str, int]:
        """``SENTINEL FAILOVER`` and wait until every sentinel names the other node and it reports role:master.

        Returns the new master's address. The old master rejoins as a replica later: the sentinels reconfigure it
        after ~10 s and see its link up on their next 10 s INFO poll; :meth:`wait_ready` waits for that (10-20 s),
        which a second failover of the same group needs.
        Error replies (``-NOGOODSLAVE`` while the old master is not yet a replica, ``-INPROG``) are retried until
        the deadline.
        """
        deadline = time.monotonic() + timeout
        old = self.master_address()
        candidates = [(HOST, n.port) for n in self.nodes if (HOST, n.port) != old]
        if len(candidates) != 1:
            raise ServerUnavailable(f"cannot tell the failover target of {self!r} (master {old})")
        target = candidates[0]

        def requested() -> bool | None:
            # a -NOGOODSLAVE / -INPROG reply raises ResponseError, which wait_for retries until the deadline
            return True if self.sentinels[0].cli("SENTINEL", "FAILOVER", self.master_name) else None

        def promoted() -> Tuple[str, int] | None:
            for sentinel in self.sentinels:
                host, port = sentinel.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if (str(host), int(port)) != target:
                    return None
            if self.node_at(target).info("replication").get("role") != "master":
                return None
            return target

        what = f"failover of {self!r} to {target}"
        wait_for(
            requested, timeout=deadline - time.monotonic(), what=f"sentinel to accept the {what}", details=self._logs
        )
        return wait_for(promoted, timeout=deadline - time.monotonic(), what=what, details=self._logs)

    def stop(self) -> None:
        """Stop all sentinels and data nodes by PID and remove their directories."""
        errors: List[BaseException] = []
        for process in [*self.sentinels, *reversed(self.nodes)]:
            try:
                process.close()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        if self._cert_dir is not None:
            remove_dir(self._cert_dir)
            self._cert_dir = None
        if errors:
            raise errors[0]

    close = stop


_LIVE: List[_Process] = []  # started and not closed
_DIRS: List[Path] = []  # created and not removed


@atexit.register
def _close_all() -> None:
    """Stop, by PID, whatever this process started and has not closed (a crashed or interrupted run)."""
    for process in list(reversed(_LIVE)):
        try:
            process.close()
        except Exception as exc:  # noqa: BLE001 - best effort at exit; report and go on
            print(f"tests.servers: could not stop {process!r}: {exc!r}", file=sys.stderr)
    for path in list(_DIRS):
        remove_dir(path)
